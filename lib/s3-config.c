/* s3-config.c: S3 locations from the s3.* configuration keys. */
#include "s3-config.h"

#include <errno.h>

#include "s3-layout.h"
#include "util.h"

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
