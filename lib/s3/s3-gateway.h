/* s3-gateway.h: the server side of opd-s3d (docs/s3.md): GETs of objects under one prefix of
 * the configured buckets, and listings of that prefix, over HTTP on a listening socket, each
 * sent on with the client's credentials. An answer is streamed to the requester as it arrives,
 * at most GATEWAY_BUFFERED bytes ahead of what the requester has read. */
#pragma once

#include <event2/event.h>
#include <stddef.h>

#include "s3-auth.h"
#include "s3.h"

#define GATEWAY_BODY_MAX (64u << 20) /* a chunk (S3_CHUNK_SIZE_MAX) or a manifest */
#define GATEWAY_BUFFERED (1u << 20)  /* per answer, written but not yet read by opd */

struct s3_gateway;

struct s3_gateway_stats {
        unsigned long served;  /* requests sent on */
        unsigned long refused; /* outside the prefix, not a GET, malformed */
        unsigned long aborted; /* a streamed answer that failed part way: connection closed */
        unsigned long paused;  /* times an answer waited for its requester to read */
        unsigned active;       /* requests in flight now */
};

/* Serves on listen_fd (a listening UNIX socket, taken over on success), in a process that
 * ignores SIGPIPE. locs, prefix and client
 * must outlive the gateway. */
int s3_gateway_new(struct event_base *base, struct s3_client *client,
                   const struct s3_location *locs, size_t n_locs, const char *prefix, int listen_fd,
                   struct s3_gateway **ret);
/* Closes every connection and cancels their transfers. */
void s3_gateway_free(struct s3_gateway *g);
const struct s3_gateway_stats *s3_gateway_stats(const struct s3_gateway *g);
