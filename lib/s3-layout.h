/* s3-layout.h: how snapshots live in a bucket. Under the prefix P:
 *   P<lang>/current                    the version to serve, as text
 *   P<lang>/versions/<version>.json    the chunk manifest of one version (below)
 *   Pchunks/<sha256>                   one chunk's bytes, content-addressed, shared by all
 * and, read only, the plain layout `aws s3 sync <cache_dir> s3://bucket/P` makes:
 *   P<lang>/<version>/manifest.json + the files it names.
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
#define S3_PREFIX_MAX         256

struct s3_chunk {
        char sha256[SHA256_HEX_LEN + 1]; /* "" for a chunk of zeros (not stored) */
};

struct s3_chunk_file {
        struct s3_chunk *chunks; /* NULL in the plain layout: fetched by ranges of the file */
        uint32_t n_chunks;
};

struct s3_chunkman {
        uint32_t chunk_size;
        bool plain;                /* from the plain layout: no per-chunk hashes */
        struct snap_manifest snap; /* files[] carry each whole file's size and sha256 */
        struct s3_chunk_file files[SNAP_FILES_MAX];
};

void s3_chunkman_free(struct s3_chunkman *m);
/* The number of chunks of a file of size bytes. */
uint32_t s3_chunk_count(uint64_t size, uint32_t chunk_size);
int s3_chunkman_parse(const char *text, size_t len, struct s3_chunkman *ret, char *errbuf,
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

/* A prefix is "" or up to S3_PREFIX_MAX bytes of printable characters ending in '/'. */
bool s3_prefix_valid(const char *p);
/* Keys, malloc'd. */
char *s3_key_current(const char *prefix, const char *lang);
char *s3_key_version(const char *prefix, const char *lang, const char *version);
char *s3_key_chunk(const char *prefix, const char *sha256);
char *s3_key_plain(const char *prefix, const char *lang, const char *version, const char *file);
