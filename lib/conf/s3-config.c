/* s3-config.c: S3 locations from the s3.* configuration keys (bucket, region and endpoint
 * syntax), and the s3.prefix rule. */
#include "s3-config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        size_t n;
        int r;

        if (!s3_prefix_valid(c->s3_prefix))
                return op_errf(errbuf, errlen, -EINVAL,
                               "s3.prefix: \"\" or up to %d printable bytes ending in '/'",
                               S3_PREFIX_MAX);
        r = s3_config_locations(c, v, &n, errbuf, errlen);
        s3_locations_free(v, n);
        return r;
}
