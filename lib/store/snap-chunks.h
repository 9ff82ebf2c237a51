/* snap-chunks.h: the chunk manifest of a snapshot version: every file of the snapshot cut into
 * chunks of one size, each named by its sha256 (zero chunks are not named). It is how a version
 * is stored in a bucket (s3-layout.h) and what a staged version keeps (chunks.json, snap-stage.h).
 * A chunk manifest is untrusted input: sizes, counts and names are bounded before use. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "snapshot.h"

#define S3_CHUNK_SIZE_DEFAULT (4u << 20)
#define S3_CHUNK_SIZE_MIN     SNAP_CHUNK_SIZE_MIN
#define S3_CHUNK_SIZE_MAX     SNAP_CHUNK_SIZE_MAX
#define S3_CHUNKS_MAX         SNAP_CHUNKS_MAX /* all files of one version together */
#define S3_CHUNKMAN_MAX       (8u << 20)
/* The most JSON values (op_json_values_bound()) a manifest text may hold, counted before it is
 * parsed: a parsed value costs far more than its bytes (an 8 MiB "[{},{},...]" is ~600 MiB of
 * tree). A valid bare manifest holds one value per chunk, a few per file and a "snapshot" object
 * of at most SNAP_MANIFEST_MAX bytes (two bytes or more per value); the signed envelope holds 9. */
#define S3_CHUNKMAN_VALUES_MAX (2 * S3_CHUNKS_MAX + SNAP_MANIFEST_MAX / 2)
/* The highest serial a manifest may carry, written or read: 2^53, which every JSON reader holds
 * exactly and which no run of pushes (each one above the last) takes past what json_int_t
 * holds. A push after a manifest at this serial is refused (s3-publish.h). */
#define S3_SERIAL_MAX (UINT64_C(1) << 53)

struct s3_chunk {
        char sha256[SHA256_HEX_LEN + 1]; /* "" for a chunk of zeros (not stored) */
};

struct s3_chunk_file {
        struct s3_chunk *chunks; /* NULL in the plain layout: fetched by ranges of the file */
        uint32_t n_chunks;
};

struct s3_chunkman {
        uint32_t chunk_size;
        /* The publisher's counter for this language, higher for every newer version (0: none;
         * at most S3_SERIAL_MAX); inside the signed bytes, so a replayed older version is told
         * apart (docs/s3.md). */
        uint64_t serial;
        /* When the publisher's signature stops vouching for this manifest, in Unix seconds (0:
         * never); inside the signed bytes, so a bucket frozen on an old version is told apart
         * once it has passed (docs/s3.md, "Trust"). */
        uint64_t expires;
        bool plain; /* from the plain layout: no per-chunk hashes */
        /* files[] carry each whole file's size and sha256, and (chunked) its chunk root, from
         * the manifest or, from an older publisher, computed from the chunk list */
        struct snap_manifest snap;
        struct s3_chunk_file files[SNAP_FILES_MAX];
};

void s3_chunkman_free(struct s3_chunkman *m);
/* The number of chunks of a file of size bytes. */
uint32_t s3_chunk_count(uint64_t size, uint32_t chunk_size);
int s3_chunkman_parse(const char *text, size_t len, struct s3_chunkman *ret, char *errbuf,
                      size_t errlen);
/* Whether a signed manifest still vouches for its version at Unix time now: 0, or -EKEYEXPIRED
 * once its "expires" has passed, or -ENODATA when it has none and require is set (the host's
 * s3.require_expiry). The error names the version and the time. */
int s3_chunkman_check_expiry(const struct s3_chunkman *m, uint64_t now, bool require, char *errbuf,
                             size_t errlen);
/* The envelope every manifest text shares, signed or bare: at most S3_CHUNKMAN_MAX bytes and
 * S3_CHUNKMAN_VALUES_MAX JSON values (-EFBIG, checked before any parse), one JSON object without
 * duplicate keys. *ret is the caller's (json_decref). */
struct json_t;
int s3_chunkman_object(const char *text, size_t len, struct json_t **ret, char *errbuf,
                       size_t errlen);
/* The chunk root of file i from its chunk list (snap_chunk_root()). */
void s3_chunkman_root(const struct s3_chunkman *m, size_t i, char ret_hex[SHA256_HEX_LEN + 1]);
/* Set every file's chunk root from its chunk list (a publisher, before it signs). */
void s3_chunkman_set_roots(struct s3_chunkman *m);
/* Serialized, malloc'd. */
char *s3_chunkman_text(const struct s3_chunkman *m);
/* The plain layout: every file fetched whole (by ranges of chunk_size), checked as a whole. */
int s3_chunkman_plain(const struct snap_manifest *snap, uint32_t chunk_size,
                      struct s3_chunkman *ret);

/* Hash every chunk of a file (zero chunks get ""); fills f (malloc'd chunks), and with
 * ret_sha256 the whole file's sha256 too, in the same read. */
int s3_chunk_hash_file(int dirfd, const char *name, uint64_t size, uint32_t chunk_size,
                       struct s3_chunk_file *f, char *ret_sha256);
