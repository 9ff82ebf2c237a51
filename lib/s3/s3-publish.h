/* s3-publish.h: publishing from a host's cache to a bucket, for command-line tools (they run
 * their own loop until done): push one snapshot version in the chunked layout, list what a
 * bucket holds. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "s3-multipart.h"
#include "s3.h"
#include "snap-sign.h"

struct s3_push_stats {
        uint32_t chunks;   /* distinct non-zero chunks of the version */
        uint32_t uploaded; /* of those, not yet in the bucket */
        uint32_t zero;     /* chunks of zeros, never stored */
        uint64_t bytes_uploaded;
        uint64_t serial;  /* of the manifest pushed (0: unsigned) */
        uint64_t expires; /* of the manifest pushed, Unix seconds (0: never) */
};

/* How a chunked push signs its manifest (snap-keys.h): key NULL: unsigned (format 1). */
struct s3_push_sign {
        const char *key;    /* Ed25519 private key file (PEM) */
        uint64_t serial;    /* 1 to S3_SERIAL_MAX; 0: one above the serial of the manifest the
                             * bucket's current names, when key or one of trusted signed it (a
                             * serial hosts may have accepted), and at least the Unix time */
        uint64_t valid_for; /* seconds from now until the signature expires (0: never) */
        /* The public keys hosts trust besides key's own (s3.trusted_keys), at most
         * S3_TRUSTED_MAX: a manifest in the bucket signed by none of them (or by nobody) is
         * one hosts refuse, and its serial is not taken up. */
        const uint8_t (*trusted)[SNAP_KEY_LEN];
        size_t n_trusted;
};

/* Upload <cache>/<lang>/<version> (NULL: "current") to l under prefix: the chunks the bucket
 * lacks (HEAD first), then the chunk manifest (signed when sign->key is set), then
 * <lang>/current. parallel transfers at once. The serial used goes to ret->serial. -ERANGE
 * when the trusted manifest the bucket serves already has S3_SERIAL_MAX: no serial can follow. */
int s3_push(struct s3_client *c, const struct s3_location *l, const char *prefix,
            const char *cache_dir, const char *lang, const char *version, unsigned parallel,
            const struct s3_push_sign *sign, struct s3_push_stats *ret, char *errbuf,
            size_t errlen);

/* Upload <cache>/<lang>/<version> (NULL: "current") to l in the plain layout, as `aws s3 sync`
 * of the cache would: P<lang>/<version>/<file> for every file, whole, then manifest.json last
 * (a reader finds everything the manifest names). Files of at least o->threshold bytes go as
 * multipart uploads. Counts go to *st. */
int s3_push_plain(struct s3_client *c, const struct s3_location *l, const char *prefix,
                  const char *cache_dir, const char *lang, const char *version,
                  const struct s3_put_opts *o, struct s3_put_stats *st, char *errbuf,
                  size_t errlen);

/* What `opctl snapshot list --remote` reads of a bucket at most, in all: pages of listings, and
 * languages and versions listed. */
#define S3_REMOTE_LIST_PAGES_MAX   1000
#define S3_REMOTE_LIST_ENTRIES_MAX 100000

/* {"lang": {"current": "V" or null, "versions": ["V", ...]}} for every language under prefix,
 * within S3_REMOTE_LIST_PAGES_MAX and S3_REMOTE_LIST_ENTRIES_MAX (else -E2BIG). */
int s3_remote_list(struct s3_client *c, const struct s3_location *l, const char *prefix,
                   json_t **ret, char *errbuf, size_t errlen);

/* Every page of a listing, with delimiter "/" (prefixes) or without (objects), calling fn for
 * each key (is_prefix tells which); a non-zero return of fn stops. Each page read takes one of
 * *pages_left: none left is -E2BIG. */
int s3_list_all(struct s3_client *c, const struct s3_location *l, const char *prefix, bool delimit,
                unsigned *pages_left,
                int (*fn)(const char *key, uint64_t size, bool is_prefix, void *ud), void *ud,
                char *errbuf, size_t errlen);
