/* s3-config.h: the S3 locations a configuration names (s3.bucket/s3.region/s3.endpoint first,
 * then s3.locations in order), checked, and the rule for s3.prefix. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define S3_LOCATIONS_MAX 8
#define S3_PREFIX_MAX    256

struct s3_location {
        char *endpoint; /* "https://s3.us-east-1.amazonaws.com" or "http://127.0.0.1:9000" */
        char *region;
        char *bucket;
        bool path_style; /* endpoint/bucket/key instead of bucket.endpoint/key */
};

void s3_location_free(struct s3_location *l);

/* A location from its parts; endpoint NULL or "": AWS's own for the region (virtual-host
 * style). -EINVAL with a message when a part is malformed. */
int s3_location_init(struct s3_location *l, const char *bucket, const char *region,
                     const char *endpoint, bool path_style, char *errbuf, size_t errlen);

/* "BUCKET@REGION" or "BUCKET@REGION@ENDPOINT", separated by commas or spaces, into up to
 * S3_LOCATIONS_MAX locations appended to v (n in and out). */
int s3_locations_parse(const char *spec, bool path_style, struct s3_location *v, size_t *n,
                       char *errbuf, size_t errlen);

/* A prefix is "" or up to S3_PREFIX_MAX bytes of printable characters ending in '/'. */
bool s3_prefix_valid(const char *p);

/* 0 with *n == 0 when S3 is not configured (s3.bucket is ""). */
int s3_config_locations(const struct op_config *c, struct s3_location v[S3_LOCATIONS_MAX],
                        size_t *n, char *errbuf, size_t errlen);
void s3_locations_free(struct s3_location *v, size_t n);
/* op_config_check()'s part for the s3.* keys. */
int s3_config_check(const struct op_config *c, char *errbuf, size_t errlen);
