/* s3sync.h: snapshot versions from S3 into the cache (s3sync.c, docs/s3.md). */
#pragma once

#include <stdint.h>

struct opd;
struct reply_slot;

struct s3_sync_stats {
        uint64_t syncs;
        uint64_t failures; /* a language that failed at a location */
        uint64_t chunks_fetched;
        uint64_t chunks_reused; /* already staged or copied from an installed version */
        uint64_t bytes_fetched;
        uint64_t retries; /* requests retried, all runs */
};
int s3sync_init(struct opd *d); /* syncs at once when s3.bucket is set */
void s3sync_done(struct opd *d);
void s3sync_reload(struct opd *d);
/* Sync now; the slot is answered with every language's outcome. -ENOENT: no bucket set. */
int s3sync_request(struct opd *d, struct reply_slot *slot);
const struct s3_sync_stats *s3sync_stats(struct opd *d);
