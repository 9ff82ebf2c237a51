/* s3-auth.h: where an S3 request goes and what signs it: credentials from the AWS environment
 * and shared credentials file, the URL and canonical query of a request at a location
 * (s3-config.h), and the payload hash header. libcurl computes the Signature V4 itself
 * (CURLOPT_AWS_SIGV4) from exactly these inputs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "s3-config.h"

#define S3_CREDS_FILE_MAX (256 * 1024)

struct s3_creds {
        char *key_id;
        char *secret;
        char *token; /* session token or NULL */
};

void s3_creds_free(struct s3_creds *c);

/* Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, else the profile
 * AWS_PROFILE (default "default") of AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials).
 * getenv_fn lets tests supply an environment. -ENOKEY with a message when none is found. */
int s3_creds_load(char *(*getenv_fn)(const char *), struct s3_creds *ret, char *errbuf,
                  size_t errlen);
/* Parse the INI text of a shared credentials file for one profile. */
int s3_creds_parse_file(const char *text, const char *profile, struct s3_creds *ret);

/* Percent-encode as Signature V4 wants: unreserved characters kept, everything else %XX
 * (uppercase); '/' kept when keep_slash (object keys in paths). malloc'd. */
char *s3_uri_encode(const char *s, bool keep_slash);

/* The canonical query string of name/value pairs (n of them, names[i] with values[i], values
 * may be NULL for none): sorted by name, encoded; "" when n == 0. malloc'd. */
char *s3_query(const char *const *names, const char *const *values, size_t n);

/* The URL of key (may be "") with query (may be "") at location l. malloc'd. */
/* The same request to opd-s3d: http://opd-s3d/<bucket>/<key>[?query] over its UNIX socket. */
char *s3_gateway_url(const struct s3_location *l, const char *key, const char *query);
char *s3_url(const struct s3_location *l, const char *key, const char *query);

/* libcurl's CURLOPT_AWS_SIGV4 provider string for l: "aws:amz:REGION:s3". */
int s3_sigv4_provider(const struct s3_location *l, char *buf, size_t len);

/* "x-amz-content-sha256: <hex of the payload>" (empty payload for GET/HEAD). */
void s3_payload_header(const void *body, size_t len, char *buf, size_t buflen);
