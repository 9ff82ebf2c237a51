/* s3-config.h: the S3 locations a configuration names (s3.bucket/s3.region/s3.endpoint first,
 * then s3.locations in order), checked, the rule for s3.prefix, and the public keys pinned by
 * s3.trusted_keys. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define S3_LOCATIONS_MAX 8
#define S3_PREFIX_MAX    256
#define S3_KEY_LEN       32                   /* an Ed25519 public key */
#define S3_KEY_TEXT_LEN  (8 + 2 * S3_KEY_LEN) /* "ed25519:" and hex */
#define S3_TRUSTED_MAX   8
/* s3.min_rate_kib: 64 KiB/s gives a 4 MiB chunk 79 s in all (s3_attempt_deadline_ms), many
 * times the 4 s it takes at 1 MiB/s. */
#define S3_MIN_RATE_KIB_DEFAULT 64

struct s3_location {
        char *endpoint; /* "https://s3.us-east-1.amazonaws.com" or "http://127.0.0.1:9000" */
        char *region;
        char *bucket;
        bool path_style; /* endpoint/bucket/key instead of bucket.endpoint/key */
};

void s3_location_free(struct s3_location *l);

/* A location from its parts; endpoint NULL or "": AWS's own for the region (virtual-host
 * style). -EINVAL with a message when a part is malformed or the endpoint is http:// to
 * anything but a loopback address (127.0.0.0/8, [::1], localhost). */
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

/* "ed25519:" and 64 lowercase hex digits. */
int s3_key_parse(const char *text, uint8_t ret[S3_KEY_LEN]);
void s3_key_text(const uint8_t key[S3_KEY_LEN], char ret[S3_KEY_TEXT_LEN + 1]);
/* Keys separated by commas or blanks, at most S3_TRUSTED_MAX (s3.trusted_keys). */
int s3_keys_parse(const char *spec, uint8_t (*ret)[S3_KEY_LEN], size_t *ret_n, char *errbuf,
                  size_t errlen);
/* Lowercase hex of n bytes and back (2n digits exactly). */
int s3_unhex(const char *s, uint8_t *out, size_t n);
void s3_tohex(const uint8_t *in, size_t n, char *out);
