/* s3-multipart.h: uploading one file as one object: a single PUT below a threshold, S3's
 * multipart upload above it (CreateMultipartUpload, parts in parallel, CompleteMultipartUpload;
 * AbortMultipartUpload on any failure so no parts are left stored and billed). For command-line
 * tools: the calls run the client's loop until done. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "s3.h"

#define S3_PART_MIN                    (5ull << 20) /* S3: every part but the last is at least 5 MiB */
#define S3_PARTS_MAX                   10000u       /* S3: parts of one upload */
#define S3_PART_MAX                    (1ull << 30) /* ours: a part is held in memory while it travels */
#define S3_ETAG_MAX                    128
#define S3_PARTS_INFLIGHT_BYTES        (512ull << 20) /* ours: parts held in memory at once, in all */
#define S3_PART_SIZE_DEFAULT           (8ull << 20)
#define S3_MULTIPART_THRESHOLD_DEFAULT (64ull << 20)

struct s3_part_plan {
        uint64_t part_size; /* every part but the last */
        uint32_t n_parts;
};

/* The parts of a size-byte object: part_size (S3_PART_MIN..S3_PART_MAX) as asked, raised to a
 * whole MiB large enough for at most S3_PARTS_MAX parts. -EINVAL on a part size out of bounds,
 * -EFBIG when the object needs parts over S3_PART_MAX. */
int s3_part_plan(uint64_t size, uint64_t part_size, struct s3_part_plan *ret);

/* The CompleteMultipartUpload body for n parts (numbered from 1) with their ETags, malloc'd.
 * NULL when an ETag is empty or holds anything but [A-Za-z0-9-] (or on no memory). */
char *s3_complete_xml(const char (*etags)[S3_ETAG_MAX], uint32_t n);

struct s3_put_opts {
        /* files of at least this size go multipart (S3_PART_MIN..S3_PART_MAX) */
        uint64_t threshold;
        uint64_t part_size; /* asked part size, see s3_part_plan */
        unsigned parallel;  /* parts in flight at once (fewer when they would pass
                             * S3_PARTS_INFLIGHT_BYTES together) */
};

struct s3_put_stats {
        uint32_t objects;
        uint32_t multipart; /* of the objects, uploaded in parts */
        uint32_t parts;
        uint64_t bytes;
        uint32_t aborted; /* multipart uploads aborted after a failure */
};

/* Upload the regular file name (size bytes) of dirfd as key. Adds to *st. -errno with a message;
 * a failed multipart upload is aborted and the message says whether the abort worked. */
int s3_put_file(struct s3_client *c, const struct s3_location *l, const char *key, int dirfd,
                const char *name, uint64_t size, const struct s3_put_opts *o,
                struct s3_put_stats *st, char *errbuf, size_t errlen);
