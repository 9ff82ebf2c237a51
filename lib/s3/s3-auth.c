/* s3-auth.c: credentials (environment and shared credentials file), request URLs and the
 * canonical query that libcurl's Signature V4 signs as given. */
#include "s3-auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "sha256.h"
#include "util.h"

void s3_creds_free(struct s3_creds *c)
{
        if (c->secret)
                explicit_bzero(c->secret, strlen(c->secret));
        free(c->key_id);
        free(c->secret);
        free(c->token);
        *c = (struct s3_creds){0};
}

int s3_creds_parse_file(const char *text, const char *profile, struct s3_creds *ret)
{
        _cleanup_free_ char *copy = strdup(text);
        struct s3_creds c = {0};
        bool in = false;
        char *save = NULL, *line;

        if (!copy)
                return -ENOMEM;
        for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *l = op_strip(line), *eq, **dst = NULL;

                if (*l == '#' || *l == ';' || !*l)
                        continue;
                if (*l == '[') {
                        char *e = strchr(l, ']');
                        if (!e)
                                continue;
                        *e = 0;
                        in = strcmp(op_strip(l + 1), profile) == 0;
                        continue;
                }
                if (!in || !(eq = strchr(l, '=')))
                        continue;
                *eq = 0;
                l = op_strip(l);
                if (strcmp(l, "aws_access_key_id") == 0)
                        dst = &c.key_id;
                else if (strcmp(l, "aws_secret_access_key") == 0)
                        dst = &c.secret;
                else if (strcmp(l, "aws_session_token") == 0)
                        dst = &c.token;
                if (dst) {
                        free(*dst);
                        *dst = strdup(op_strip(eq + 1));
                        if (!*dst) {
                                s3_creds_free(&c);
                                return -ENOMEM;
                        }
                }
        }
        if (!c.key_id || !c.secret || !*c.key_id || !*c.secret) {
                s3_creds_free(&c);
                return -ENOKEY;
        }
        *ret = c;
        return 0;
}

static bool creds_value_ok(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x21 || *s == 0x7f || *s == ':')
                        return false;
        return true;
}

int s3_creds_load(char *(*getenv_fn)(const char *), struct s3_creds *ret, char *errbuf,
                  size_t errlen)
{
        const char *id = getenv_fn("AWS_ACCESS_KEY_ID"),
                   *secret = getenv_fn("AWS_SECRET_ACCESS_KEY");
        const char *token = getenv_fn("AWS_SESSION_TOKEN"),
                   *file = getenv_fn("AWS_SHARED_CREDENTIALS_FILE");
        const char *profile = getenv_fn("AWS_PROFILE"), *home = getenv_fn("HOME");
        _cleanup_free_ char *path = NULL, *text = NULL;
        struct s3_creds c = {0};
        int r;

        if (id && *id && secret && *secret) {
                c.key_id = strdup(id);
                c.secret = strdup(secret);
                c.token = token && *token ? strdup(token) : NULL;
                if (!c.key_id || !c.secret || (token && *token && !c.token)) {
                        s3_creds_free(&c);
                        return -ENOMEM;
                }
        } else {
                if (file && *file)
                        path = strdup(file);
                else if (asprintf(&path, "%s/.aws/credentials", home ? home : "/root") < 0)
                        path = NULL;
                if (!path)
                        return -ENOMEM;
                r = op_read_file(path, S3_CREDS_FILE_MAX, &text, NULL);
                if (r < 0)
                        return op_errf(errbuf, errlen, -ENOKEY,
                                       "no S3 credentials: AWS_ACCESS_KEY_ID and "
                                       "AWS_SECRET_ACCESS_KEY are not set and %s: %s",
                                       path, strerror(-r));
                r = s3_creds_parse_file(text, profile && *profile ? profile : "default", &c);
                if (r < 0)
                        return op_errf(errbuf, errlen, r == -ENOKEY ? -ENOKEY : r,
                                       "no S3 credentials for profile \"%.64s\" in %s",
                                       profile && *profile ? profile : "default", path);
        }
        if (!creds_value_ok(c.key_id) || !creds_value_ok(c.secret) ||
            (c.token && !creds_value_ok(c.token))) {
                s3_creds_free(&c);
                return op_errf(errbuf, errlen, -EINVAL,
                               "S3 credentials hold spaces, control characters or ':'");
        }
        *ret = c;
        return 0;
}

char *s3_uri_encode(const char *s, bool keep_slash)
{
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *o = out;

        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;

                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~' ||
                    (keep_slash && ch == '/')) {
                        *o++ = (char)ch;
                } else {
                        *o++ = '%';
                        *o++ = hex[ch >> 4];
                        *o++ = hex[ch & 15];
                }
        }
        *o = 0;
        return out;
}

struct qpair {
        char *name, *value;
};

static int cmp_qpair(const void *a, const void *b)
{
        const struct qpair *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        return c ? c : strcmp(x->value, y->value);
}

char *s3_query(const char *const *names, const char *const *values, size_t n)
{
        struct qpair *v = calloc(n + 1, sizeof(*v));
        char *out = NULL;
        size_t len = 1;
        bool ok = v != NULL;

        for (size_t i = 0; ok && i < n; i++) {
                v[i].name = s3_uri_encode(names[i], false);
                v[i].value = s3_uri_encode(values[i] ? values[i] : "", false);
                ok = v[i].name && v[i].value;
                if (ok)
                        len += strlen(v[i].name) + strlen(v[i].value) + 2;
        }
        if (ok) {
                /* Signature V4 sorts by the encoded names. */
                qsort(v, n, sizeof(*v), cmp_qpair);
                out = malloc(len);
        }
        if (out) {
                char *o = out;
                *o = 0;
                for (size_t i = 0; i < n; i++)
                        o += sprintf(o, "%s%s=%s", i ? "&" : "", v[i].name, v[i].value);
        }
        for (size_t i = 0; v && i < n; i++) {
                free(v[i].name);
                free(v[i].value);
        }
        free(v);
        return out;
}

char *s3_url(const struct s3_location *l, const char *key, const char *query)
{
        _cleanup_free_ char *ekey = s3_uri_encode(key, true);
        const char *scheme_end = strstr(l->endpoint, "://");
        char *url = NULL;
        int k;

        if (!ekey || !scheme_end)
                return NULL;
        if (l->path_style)
                k = asprintf(&url, "%s/%s/%s%s%s", l->endpoint, l->bucket, ekey, *query ? "?" : "",
                             query);
        else
                k = asprintf(&url, "%.*s%s.%s/%s%s%s", (int)(scheme_end + 3 - l->endpoint),
                             l->endpoint, l->bucket, scheme_end + 3, ekey, *query ? "?" : "",
                             query);
        return k < 0 ? NULL : url;
}

char *s3_gateway_url(const struct s3_location *l, const char *key, const char *query)
{
        _cleanup_free_ char *ekey = s3_uri_encode(key, true);
        char *url = NULL;

        if (!ekey || asprintf(&url, "http://opd-s3d/%s/%s%s%s", l->bucket, ekey, *query ? "?" : "",
                              query) < 0)
                return NULL;
        return url;
}

int s3_sigv4_provider(const struct s3_location *l, char *buf, size_t len)
{
        int k = snprintf(buf, len, "aws:amz:%s:s3", l->region);

        return k < 0 || (size_t)k >= len ? -ENAMETOOLONG : 0;
}

void s3_payload_header(const void *body, size_t len, char *buf, size_t buflen)
{
        char hex[SHA256_HEX_LEN + 1];

        op_sha256_hex(body ? body : "", body ? len : 0, hex);
        snprintf(buf, buflen, "x-amz-content-sha256: %s", hex);
}
