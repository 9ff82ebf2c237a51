/* snap-chunks.h: the chunk manifest of a snapshot version: every file of the snapshot cut into
 * chunks of one size, each named by its sha256 (zero chunks are not named). It is how a version
 * is stored in a bucket (s3-layout.h) and what a staged version keeps (chunks.json, snap-stage.h).
 * A chunk manifest is untrusted input: sizes, counts and names are bounded before use. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "snapshot.h"

#define S3_CHUNK_SIZE_DEFAULT (4u << 20)
#define S3_CHUNK_SIZE_MIN     (64u << 10)
#define S3_CHUNK_SIZE_MAX     (64u << 20)
#define S3_CHUNKS_MAX         65536u /* all files of one version together */
#define S3_CHUNKMAN_MAX       (8u << 20)

struct s3_chunk {
        char sha256[SHA256_HEX_LEN + 1]; /* "" for a chunk of zeros (not stored) */
};

struct s3_chunk_file {
        struct s3_chunk *chunks; /* NULL in the plain layout: fetched by ranges of the file */
        uint32_t n_chunks;
};

struct s3_chunkman {
        uint32_t chunk_size;
        /* The publisher's counter for this language, higher for every newer version (0: none);
         * inside the signed bytes, so a replayed older version is told apart (docs/s3.md). */
        uint64_t serial;
        bool plain;                /* from the plain layout: no per-chunk hashes */
        struct snap_manifest snap; /* files[] carry each whole file's size and sha256 */
        struct s3_chunk_file files[SNAP_FILES_MAX];
};

void s3_chunkman_free(struct s3_chunkman *m);
/* The number of chunks of a file of size bytes. */
uint32_t s3_chunk_count(uint64_t size, uint32_t chunk_size);
int s3_chunkman_parse(const char *text, size_t len, struct s3_chunkman *ret, char *errbuf,
                      size_t errlen);
/* The envelope every manifest text shares, signed or bare: at most S3_CHUNKMAN_MAX bytes, one
 * JSON object without duplicate keys. *ret is the caller's (json_decref). */
struct json_t;
int s3_chunkman_object(const char *text, size_t len, struct json_t **ret, char *errbuf,
                       size_t errlen);
/* Serialized, malloc'd. */
char *s3_chunkman_text(const struct s3_chunkman *m);
/* The plain layout: every file fetched whole (by ranges of chunk_size), checked as a whole. */
int s3_chunkman_plain(const struct snap_manifest *snap, uint32_t chunk_size,
                      struct s3_chunkman *ret);

/* Hash every chunk of a file (zero chunks get ""); fills f (malloc'd chunks). */
int s3_chunk_hash_file(int dirfd, const char *name, uint64_t size, uint32_t chunk_size,
                       struct s3_chunk_file *f);
bool s3_is_zero(const void *buf, size_t len);
