/* s3-list.h: the XML bodies S3 answers with, as plain values: ListObjectsV2 pages, error bodies,
 * and the multipart upload answers. Pure functions: bytes in, values out, every length and count
 * bounded; the only XML this project reads. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3_KEY_MAX       1024 /* S3's own limit on a key, in bytes */
#define S3_LIST_PAGE_MAX 1000 /* entries (keys + common prefixes) on one page */
#define S3_LIST_BODY_MAX (4u << 20)

struct s3_object {
        char *key;
        uint64_t size;
};

struct s3_list_page {
        struct s3_object *objects;
        size_t n_objects;
        char **prefixes; /* CommonPrefixes, when listed with a delimiter */
        size_t n_prefixes;
        bool truncated;
        char *next_token; /* NextContinuationToken, or NULL */
};

/* Parse one page. -EINVAL on anything malformed, -E2BIG over the bounds, -ENOMEM. */
int s3_list_parse(const char *xml, size_t len, struct s3_list_page *ret);
void s3_list_page_free(struct s3_list_page *p);

/* The <Code> and <Message> of an S3 error body, NUL-ended and truncated to fit ("" when absent),
 * in printable ASCII: a control byte becomes ' ', any other byte outside it (UTF-8 included)
 * '?', so the text stays valid UTF-8 however it is cut later. */
void s3_error_parse(const char *xml, size_t len, char *code, size_t codelen, char *msg,
                    size_t msglen);

#define S3_UPLOAD_ID_MAX        1024 /* bytes of an UploadId we accept */
#define S3_MULTIPART_ANSWER_MAX (64u << 10)

/* The UploadId of a CreateMultipartUpload answer (<InitiateMultipartUploadResult>) into id
 * (idlen bytes, NUL-ended). -EIO when the body is an <Error> (code/msg filled as by
 * s3_error_parse), -E2BIG over the bounds, -EINVAL on anything else (no UploadId, an empty one,
 * one with characters outside printable ASCII). */
int s3_upload_id_parse(const char *xml, size_t len, char *id, size_t idlen, char *code,
                       size_t codelen, char *msg, size_t msglen);

/* A CompleteMultipartUpload answer. S3 may answer 200 and then send an <Error> body: that is
 * -EIO (code/msg filled); a <CompleteMultipartUploadResult> is 0; anything else -EINVAL. */
int s3_complete_parse(const char *xml, size_t len, char *code, size_t codelen, char *msg,
                      size_t msglen);
