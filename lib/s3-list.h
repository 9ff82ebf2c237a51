/* s3-list.h: the ListObjectsV2 response body (XML) as plain structs. A pure function: bytes in,
 * entries out, every length and count bounded; the only XML this project reads. */
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

/* The <Code> and <Message> of an S3 error body, NUL-ended and truncated to fit ("" when absent). */
void s3_error_parse(const char *xml, size_t len, char *code, size_t codelen, char *msg,
                    size_t msglen);
