/* s3sync.h: snapshot versions from S3 into the cache (s3sync.c, docs/s3.md). */
#pragma once

#include <jansson.h>
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
        /* versions refused before a byte was staged (docs/s3.md) */
        uint64_t refused_unsigned;  /* no signature, s3.allow_unsigned = no */
        uint64_t refused_key;       /* signed by a key not in s3.trusted_keys */
        uint64_t refused_signature; /* the signature does not match the manifest */
        uint64_t refused_rollback;  /* a serial below (or a version beside) the highest seen */
        uint64_t refused_bounds;    /* memory_mb, vcpus, free space or s3.cache_max_mb */
        uint64_t refused_expired;   /* the signature's "expires" has passed */
        uint64_t refused_no_expiry; /* no "expires", s3.require_expiry = yes */
};
int s3sync_init(struct opd *d); /* syncs at once when s3.bucket is set */
void s3sync_done(struct opd *d);
void s3sync_reload(struct opd *d);
/* Sync now; the slot is answered with every language's outcome. -ENOENT: no bucket set. */
int s3sync_request(struct opd *d, struct reply_slot *slot);
const struct s3_sync_stats *s3sync_stats(struct opd *d);
/* Language name -> Unix time at which the signature of the version last accepted for it expires
 * (languages whose version has no expiry are absent); opd's, not the caller's. */
const json_t *s3sync_expires(struct opd *d);
