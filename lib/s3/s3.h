/* s3.h: an S3 client on libcurl's multi interface, driven by a libevent loop: every transfer is
 * non-blocking, signed with Signature V4 by libcurl, and retried with exponential backoff and
 * full jitter on 5xx, throttling and network errors; 4xx answers fail at once with S3's code. */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3-auth.h"
#include "sha256.h"

struct s3_client;
struct s3_xfer;

struct s3_client_opts {
        unsigned retries;            /* attempts after the first on a retryable failure */
        uint32_t backoff_ms;         /* first retry waits up to this, doubling each time */
        uint32_t backoff_max_ms;     /* cap on one wait */
        uint32_t connect_timeout_ms; /* per attempt */
        uint32_t stall_timeout_ms;   /* an attempt moving under 1 KiB/s this long is retried */
        /* Bytes per second an attempt must average at least: it has the connect timeout,
         * deadline_slack_ms and its largest body at this rate to end (s3_attempt_deadline_ms),
         * then fails as timed out and is retried. 0: no deadline. */
        uint32_t min_rate;
        uint32_t deadline_slack_ms; /* for the request and the server's first byte */
        unsigned max_conns;         /* connections per host */
        /* A UNIX socket of opd-s3d (docs/s3.md): requests go there unsigned, as
         * http://opd-s3d/<bucket>/<key>?<query>, and opd-s3d signs and sends them with its own
         * credentials and network. NULL: straight to the endpoint, signed here. */
        const char *gateway;
        /* Worker threads (workq.h) that hash sunk bodies (s3_req.sink with sha256) once they
         * are written: the loop only writes. 0: the loop hashes as the bytes arrive. */
        unsigned workers;
};

struct s3_resp;

/* A piece of a streamed answer (s3_req.stream), with the done() callback's userdata. Returns
 * 0 to go on, S3_STREAM_FULL to take this piece but no more until s3_resume(), or a negative
 * errno to end the transfer with it. */
typedef int (*s3_stream_fn)(const struct s3_resp *resp, const char *data, size_t len,
                            void *userdata);
#define S3_STREAM_FULL 1

/* What is kept of a non-2xx answer's body (resp.body): S3 puts its <Code> and <Message> first;
 * the rest is read and dropped, so a large error body costs no memory and is no failure. */
#define S3_ERROR_BODY_MAX (64u << 10)

struct s3_req {
        const char *method; /* "GET", "HEAD", "PUT", "POST", "DELETE" */
        const char *key;    /* object key, "" for the bucket */
        const char *query;  /* canonical query (s3_query), "" or NULL for none */
        uint64_t range_off; /* GET: bytes range_off..range_off+range_len-1; len 0: whole */
        uint64_t range_len;
        const void *body; /* PUT/POST payload, borrowed until done() */
        size_t body_len;
        /* A 2xx answer's body over this fails with -EFBIG (0: 1 MiB). An error answer's body
         * is kept up to S3_ERROR_BODY_MAX bytes whatever this is, the rest dropped. */
        size_t max_body;
        bool sha256;              /* hash the answer body as it arrives (resp.sha256) */
        const char *content_type; /* of the body; NULL: application/octet-stream */
        /* GET: a 2xx body goes to sink_fd at sink_off as it arrives, not into resp.body; a
         * retry writes it again from sink_off. With sha256 it is hashed on the way, or with
         * workers by a worker that reads it back once it is all written (sink_fd must then be
         * readable too). The fd must outlive the transfer. */
        bool sink;
        int sink_fd;
        uint64_t sink_off;
        /* GET: a 2xx body is handed to stream() piece by piece as it arrives (with the
         * status and, when the server gave one, content_length set in its resp), not kept in
         * resp.body. Once a piece has been handed on, a failure is final: no retry. */
        s3_stream_fn stream;
};

struct s3_resp {
        int r;            /* 0 or negative errno: -ENOENT (404), -EACCES (403), -EIO, ... */
        long status;      /* HTTP status of the last attempt, 0 when none came */
        const char *body; /* answer body, valid during done() only, NUL-ended ("" when sunk) */
        size_t body_len;
        uint64_t content_length; /* HEAD: the object's size; streamed: the body's, or 0 */
        char etag[128];
        char sha256[SHA256_HEX_LEN + 1];
        unsigned attempts;
        char error[512]; /* what went wrong, for a human, when r < 0 */
};

typedef void (*s3_done_fn)(const struct s3_resp *resp, void *userdata);

struct s3_stats {
        uint64_t requests; /* attempts sent */
        uint64_t retries;
        uint64_t failures; /* requests that failed for good */
        uint64_t bytes_in;
        uint64_t bytes_out;
};

#define S3_CLIENT_OPTS_DEFAULT                                                                     \
        {                                                                                          \
                .retries = 5, .backoff_ms = 200, .backoff_max_ms = 10000,                          \
                .connect_timeout_ms = 5000, .stall_timeout_ms = 30000,                             \
                .min_rate = S3_MIN_RATE_KIB_DEFAULT << 10, .deadline_slack_ms = 10000,             \
                .max_conns = 8                                                                     \
        }

/* creds may be NULL with opts->gateway (the gateway holds them). */
int s3_client_new(struct event_base *base, const struct s3_creds *creds,
                  const struct s3_client_opts *opts, struct s3_client **ret);
/* Drops every transfer in flight without calling its done(). */
void s3_client_free(struct s3_client *c);
const struct s3_stats *s3_client_stats(const struct s3_client *c);
struct event_base *s3_client_base(const struct s3_client *c);

/* The longest one attempt of req may take in all, in ms (0: no bound): the connect timeout,
 * the slack, and at o->min_rate the body it sends and the largest one it may receive
 * (req->max_body, or 1 MiB; nothing for HEAD). An attempt past it is a network failure. */
uint64_t s3_attempt_deadline_ms(const struct s3_client_opts *o, const struct s3_req *req);

/* Start a request; done() is called exactly once, from the loop, unless it is cancelled.
 * l and req->body must outlive the transfer; other fields are copied. */
int s3_start(struct s3_client *c, const struct s3_location *l, const struct s3_req *req,
             s3_done_fn done, void *userdata, struct s3_xfer **ret);
/* done() is not called for a cancelled transfer. */
void s3_cancel(struct s3_xfer *x);
/* A streamed transfer whose stream() answered S3_STREAM_FULL goes on: the next piece may be
 * handed on from within this call. */
void s3_resume(struct s3_xfer *x);

/* For command-line tools only: run the loop until the request is done. The body is copied
 * into *ret_body (malloc'd, NUL-ended) when ret_body is not NULL. */
int s3_request_wait(struct s3_client *c, const struct s3_location *l, const struct s3_req *req,
                    struct s3_resp *ret, char **ret_body);
