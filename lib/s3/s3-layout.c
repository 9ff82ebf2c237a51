/* s3-layout.c: the keys of the bucket layout (a version's current pointer, its chunk manifest,
 * its chunks, the plain layout's files). */
#include "s3-layout.h"

#include <stdarg.h>
#include <stdio.h>

static char *key(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *key(const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;
        int k;

        va_start(ap, fmt);
        k = vasprintf(&s, fmt, ap);
        va_end(ap);
        return k < 0 ? NULL : s;
}

char *s3_key_current(const char *prefix, const char *lang)
{
        return key("%s%s/current", prefix, lang);
}

char *s3_key_version(const char *prefix, const char *lang, const char *version)
{
        return key("%s%s/versions/%s.json", prefix, lang, version);
}

char *s3_key_chunk(const char *prefix, const char *sha256)
{
        return key("%schunks/%s", prefix, sha256);
}

char *s3_key_plain(const char *prefix, const char *lang, const char *version, const char *file)
{
        return key("%s%s/%s/%s", prefix, lang, version, file);
}
