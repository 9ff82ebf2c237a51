/* s3-config.h: the S3 locations a configuration names (s3.bucket/s3.region/s3.endpoint first,
 * then s3.locations in order), checked. */
#pragma once

#include <stddef.h>

#include "config.h"
#include "s3-auth.h"

/* 0 with *n == 0 when S3 is not configured (s3.bucket is ""). */
int s3_config_locations(const struct op_config *c, struct s3_location v[S3_LOCATIONS_MAX],
                        size_t *n, char *errbuf, size_t errlen);
void s3_locations_free(struct s3_location *v, size_t n);
/* op_config_check()'s part for the s3.* keys. */
int s3_config_check(const struct op_config *c, char *errbuf, size_t errlen);
