/* s3-config.c: S3 locations from the s3.* configuration keys (bucket, region and endpoint
 * syntax, https except to loopback), the s3.prefix rule and the pinned signing keys. */
#include "s3-config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "cleanup.h"
#include "util.h"

void s3_location_free(struct s3_location *l)
{
        free(l->endpoint);
        free(l->region);
        free(l->bucket);
        *l = (struct s3_location){0};
}

/* Bucket names: 3-63 of [a-z0-9.-] (S3's rules, which also make them safe in a host name). */
static bool bucket_valid(const char *b)
{
        size_t n = strlen(b);

        if (n < 3 || n > 63 || b[0] == '.' || b[0] == '-')
                return false;
        for (; *b; b++)
                if (!((*b >= 'a' && *b <= 'z') || (*b >= '0' && *b <= '9') || *b == '.' ||
                      *b == '-'))
                        return false;
        return true;
}

static bool region_valid(const char *r)
{
        size_t n = strlen(r);

        if (n < 1 || n > 32)
                return false;
        for (; *r; r++)
                if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-'))
                        return false;
        return true;
}

/* The host of an http:// URL is a loopback address: 127.0.0.0/8, [::1] or localhost. */
static bool loopback_url(const char *url)
{
        const char *host = url + 7, *end;
        char buf[64];
        struct in_addr a4;
        struct in6_addr a6;
        size_t n;

        if (*host == '[') {
                end = strchr(++host, ']');
                if (!end || (size_t)(end - host) >= sizeof(buf))
                        return false;
                memcpy(buf, host, (size_t)(end - host));
                buf[end - host] = 0;
                return inet_pton(AF_INET6, buf, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6) &&
                       (end[1] == 0 || end[1] == ':' || end[1] == '/');
        }
        n = strcspn(host, ":/");
        if (n >= sizeof(buf) || memchr(host, '@', n))
                return false;
        memcpy(buf, host, n);
        buf[n] = 0;
        if (strcmp(buf, "localhost") == 0)
                return true;
        return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

int s3_location_init(struct s3_location *l, const char *bucket, const char *region,
                     const char *endpoint, bool path_style, char *errbuf, size_t errlen)
{
        struct s3_location n = {.path_style = path_style};

        if (!bucket_valid(bucket))
                return op_errf(errbuf, errlen, -EINVAL,
                               "s3 bucket \"%.64s\" is not a valid bucket name", bucket);
        if (!region_valid(region))
                return op_errf(errbuf, errlen, -EINVAL, "s3 region \"%.32s\" is not valid", region);
        if (endpoint && *endpoint) {
                if ((strncmp(endpoint, "http://", 7) != 0 &&
                     strncmp(endpoint, "https://", 8) != 0) ||
                    strlen(endpoint) > 512 || strpbrk(endpoint, " \t\r\n?#"))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "s3 endpoint \"%.64s\" must be an http:// or https:// URL",
                                       endpoint);
                if (strncmp(endpoint, "http://", 7) == 0 && !loopback_url(endpoint))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "s3 endpoint \"%.64s\": http:// only to a loopback "
                                       "address (127.0.0.1, [::1], localhost); use https://",
                                       endpoint);
                n.endpoint = strdup(endpoint);
                if (n.endpoint && n.endpoint[strlen(n.endpoint) - 1] == '/')
                        n.endpoint[strlen(n.endpoint) - 1] = 0;
        } else if (asprintf(&n.endpoint, "https://s3.%s.amazonaws.com", region) < 0) {
                n.endpoint = NULL;
        }
        n.region = strdup(region);
        n.bucket = strdup(bucket);
        if (!n.endpoint || !n.region || !n.bucket) {
                s3_location_free(&n);
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        }
        *l = n;
        return 0;
}

int s3_locations_parse(const char *spec, bool path_style, struct s3_location *v, size_t *n,
                       char *errbuf, size_t errlen)
{
        _cleanup_free_ char *copy = strdup(spec);
        char *save = NULL, *tok;
        int r;

        if (!copy)
                return -ENOMEM;
        for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
                char *region = strchr(tok, '@'), *endpoint;

                if (!region)
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "s3 location \"%.64s\": expected BUCKET@REGION[@ENDPOINT]",
                                       tok);
                *region++ = 0;
                endpoint = strchr(region, '@');
                if (endpoint)
                        *endpoint++ = 0;
                if (*n >= S3_LOCATIONS_MAX)
                        return op_errf(errbuf, errlen, -E2BIG, "more than %d s3 locations",
                                       S3_LOCATIONS_MAX);
                r = s3_location_init(&v[*n], tok, region, endpoint, path_style, errbuf, errlen);
                if (r < 0)
                        return r;
                (*n)++;
        }
        return 0;
}

bool s3_prefix_valid(const char *p)
{
        size_t n = strlen(p);

        if (n == 0)
                return true;
        if (n > S3_PREFIX_MAX || p[n - 1] != '/' || p[0] == '/')
                return false;
        for (; *p; p++)
                if ((unsigned char)*p < 0x21 || *p == 0x7f || *p == '\\')
                        return false;
        return true;
}

int s3_unhex(const char *s, uint8_t *out, size_t n)
{
        if (strlen(s) != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < 2 * n; i++) {
                char c = s[i];
                int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

                if (v < 0)
                        return -EINVAL;
                if (i % 2 == 0)
                        out[i / 2] = (uint8_t)(v << 4);
                else
                        out[i / 2] |= (uint8_t)v;
        }
        return 0;
}

void s3_tohex(const uint8_t *in, size_t n, char *out)
{
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * n] = 0;
}

int s3_key_parse(const char *text, uint8_t ret[S3_KEY_LEN])
{
        uint8_t k[S3_KEY_LEN];

        if (strncmp(text, "ed25519:", 8) != 0 || s3_unhex(text + 8, k, S3_KEY_LEN) < 0)
                return -EINVAL;
        memcpy(ret, k, S3_KEY_LEN);
        return 0;
}

void s3_key_text(const uint8_t key[S3_KEY_LEN], char ret[S3_KEY_TEXT_LEN + 1])
{
        memcpy(ret, "ed25519:", 8);
        s3_tohex(key, S3_KEY_LEN, ret + 8);
}

int s3_keys_parse(const char *spec, uint8_t (*ret)[S3_KEY_LEN], size_t *ret_n, char *errbuf,
                  size_t errlen)
{
        _cleanup_free_ char *copy = strdup(spec);
        char *save = NULL, *tok;
        size_t n = 0;

        if (!copy)
                return -ENOMEM;
        for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
                if (n >= S3_TRUSTED_MAX)
                        return op_errf(errbuf, errlen, -E2BIG, "more than %d trusted keys",
                                       S3_TRUSTED_MAX);
                if (s3_key_parse(tok, ret[n]) < 0)
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "trusted key \"%.80s\": expected ed25519: and 64 lowercase "
                                       "hex digits (opctl snapshot keygen prints it)",
                                       tok);
                n++;
        }
        *ret_n = n;
        return 0;
}

void s3_locations_free(struct s3_location *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                s3_location_free(&v[i]);
}

int s3_config_locations(const struct op_config *c, struct s3_location v[S3_LOCATIONS_MAX],
                        size_t *n, char *errbuf, size_t errlen)
{
        int r;

        *n = 0;
        if (!c->s3_bucket[0]) {
                if (c->s3_locations[0])
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "s3.locations needs s3.bucket (the first location)");
                return 0;
        }
        r = s3_location_init(&v[0], c->s3_bucket, c->s3_region, c->s3_endpoint, c->s3_path_style,
                             errbuf, errlen);
        if (r < 0)
                return r;
        *n = 1;
        r = s3_locations_parse(c->s3_locations, c->s3_path_style, v, n, errbuf, errlen);
        if (r < 0) {
                s3_locations_free(v, *n);
                *n = 0;
        }
        return r;
}

int s3_config_check(const struct op_config *c, char *errbuf, size_t errlen)
{
        struct s3_location v[S3_LOCATIONS_MAX];
        uint8_t keys[S3_TRUSTED_MAX][S3_KEY_LEN];
        size_t n;
        int r;

        if (!s3_prefix_valid(c->s3_prefix))
                return op_errf(errbuf, errlen, -EINVAL,
                               "s3.prefix: \"\" or up to %d printable bytes ending in '/'",
                               S3_PREFIX_MAX);
        r = s3_config_locations(c, v, &n, errbuf, errlen);
        s3_locations_free(v, n);
        if (r == 0)
                r = s3_keys_parse(c->s3_trusted_keys, keys, &n, errbuf, errlen);
        return r;
}
