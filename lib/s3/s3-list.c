/* s3-list.c: a minimal reader for the XML S3 answers with: ListObjectsV2 pages, error bodies and
 * the multipart upload answers.
 * Not a general XML parser: elements, text, the five named entities and numeric references;
 * attributes, comments, CDATA and processing instructions are skipped. */
#include "s3-list.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

struct cursor {
        const char *p, *end;
};

/* Move to the next tag; returns its name (without '<' '/' '>') and whether it closes. Skips
 * declarations, comments and everything else that is not an element. */
static int next_tag(struct cursor *c, const char **name, size_t *namelen, bool *closing,
                    bool *empty)
{
        for (;;) {
                const char *lt = memchr(c->p, '<', (size_t)(c->end - c->p)), *q, *gt;

                if (!lt)
                        return 0;
                if (c->end - lt >= 4 && memcmp(lt, "<!--", 4) == 0) {
                        const char *e = memmem(lt + 4, (size_t)(c->end - lt - 4), "-->", 3);
                        if (!e)
                                return -EINVAL;
                        c->p = e + 3;
                        continue;
                }
                gt = memchr(lt, '>', (size_t)(c->end - lt));
                if (!gt)
                        return -EINVAL;
                c->p = gt + 1;
                if (lt + 1 < gt && (lt[1] == '?' || lt[1] == '!'))
                        continue;
                q = lt + 1;
                *closing = q < gt && *q == '/';
                if (*closing)
                        q++;
                *empty = gt > q && gt[-1] == '/';
                *name = q;
                while (q < gt && *q != ' ' && *q != '\t' && *q != '\r' && *q != '\n' && *q != '/')
                        q++;
                *namelen = (size_t)(q - *name);
                if (*namelen == 0)
                        return -EINVAL;
                return 1;
        }
}

static bool is(const char *name, size_t len, const char *want)
{
        return strlen(want) == len && memcmp(name, want, len) == 0;
}

static int put_utf8(char *dst, size_t *o, unsigned long cp)
{
        if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return -EINVAL;
        if (cp < 0x80) {
                dst[(*o)++] = (char)cp;
        } else if (cp < 0x800) {
                dst[(*o)++] = (char)(0xc0 | (cp >> 6));
                dst[(*o)++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
                dst[(*o)++] = (char)(0xe0 | (cp >> 12));
                dst[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                dst[(*o)++] = (char)(0x80 | (cp & 0x3f));
        } else {
                dst[(*o)++] = (char)(0xf0 | (cp >> 18));
                dst[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                dst[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                dst[(*o)++] = (char)(0x80 | (cp & 0x3f));
        }
        return 0;
}

/* The text up to the next '<', entities decoded, into a malloc'd string of at most max bytes. */
static int text(struct cursor *c, size_t max, char **ret)
{
        const char *lt = memchr(c->p, '<', (size_t)(c->end - c->p)), *s = c->p;
        _cleanup_free_ char *out = NULL;
        size_t o = 0;

        if (!lt)
                return -EINVAL;
        if ((size_t)(lt - s) > max * 10 + 16)
                return -E2BIG;
        out = malloc((size_t)(lt - s) + 1);
        if (!out)
                return -ENOMEM;
        while (s < lt) {
                if (*s != '&') {
                        out[o++] = *s++;
                } else {
                        const char *semi = memchr(s, ';', (size_t)(lt - s));
                        size_t n;

                        if (!semi || semi - s > 10)
                                return -EINVAL;
                        n = (size_t)(semi - s - 1);
                        if (n >= 2 && s[1] == '#') {
                                char num[12] = {0}, *end;
                                unsigned long cp;
                                bool hex = s[2] == 'x';

                                memcpy(num, s + (hex ? 3 : 2), n - (hex ? 2 : 1));
                                if (!num[0])
                                        return -EINVAL;
                                cp = strtoul(num, &end, hex ? 16 : 10);
                                if (*end || put_utf8(out, &o, cp) < 0)
                                        return -EINVAL;
                        } else if (n == 3 && !memcmp(s + 1, "amp", 3)) {
                                out[o++] = '&';
                        } else if (n == 2 && !memcmp(s + 1, "lt", 2)) {
                                out[o++] = '<';
                        } else if (n == 2 && !memcmp(s + 1, "gt", 2)) {
                                out[o++] = '>';
                        } else if (n == 4 && !memcmp(s + 1, "quot", 4)) {
                                out[o++] = '"';
                        } else if (n == 4 && !memcmp(s + 1, "apos", 4)) {
                                out[o++] = '\'';
                        } else {
                                return -EINVAL;
                        }
                        s = semi + 1;
                }
        }
        if (o > max)
                return -E2BIG;
        out[o] = 0;
        if (strlen(out) != o)
                return -EINVAL;
        c->p = lt;
        *ret = TAKE_PTR(out);
        return 0;
}

static int parse_u64(const char *s, uint64_t *ret)
{
        uint64_t x = 0;

        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || x > (UINT64_MAX - 9) / 10)
                        return -EINVAL;
                x = x * 10 + (uint64_t)(*s - '0');
        }
        *ret = x;
        return 0;
}

void s3_list_page_free(struct s3_list_page *p)
{
        /* The arrays hold S3_LIST_PAGE_MAX slots; one past the count may be half-filled. */
        for (size_t i = 0; p->objects && i < S3_LIST_PAGE_MAX; i++)
                free(p->objects[i].key);
        for (size_t i = 0; p->prefixes && i < S3_LIST_PAGE_MAX; i++)
                free(p->prefixes[i]);
        free(p->objects);
        free(p->prefixes);
        free(p->next_token);
        *p = (struct s3_list_page){0};
}

enum where { TOP, CONTENTS, PREFIXES };

static int parse(struct cursor *c, struct s3_list_page *pg)
{
        enum where in = TOP;
        bool seen_result = false, have_key = false, have_size = false;
        struct s3_object *cur = NULL;
        int r;

        for (;;) {
                const char *name;
                size_t nl;
                bool closing, empty;
                _cleanup_free_ char *t = NULL;

                r = next_tag(c, &name, &nl, &closing, &empty);
                if (r <= 0)
                        return r < 0 ? r : seen_result && in == TOP ? 0 : -EINVAL;
                if (is(name, nl, "ListBucketResult")) {
                        seen_result = true;
                        continue;
                }
                if (closing) {
                        if (in == CONTENTS && is(name, nl, "Contents")) {
                                if (!have_key || !have_size)
                                        return -EINVAL;
                                pg->n_objects++;
                                in = TOP;
                        } else if (in == PREFIXES && is(name, nl, "CommonPrefixes")) {
                                in = TOP;
                        }
                        continue;
                }
                if (empty)
                        continue;
                if (in == TOP && is(name, nl, "Contents")) {
                        if (pg->n_objects + pg->n_prefixes >= S3_LIST_PAGE_MAX)
                                return -E2BIG;
                        cur = &pg->objects[pg->n_objects]; /* counted once complete */
                        in = CONTENTS;
                        have_key = have_size = false;
                } else if (in == TOP && is(name, nl, "CommonPrefixes")) {
                        in = PREFIXES;
                } else if (in == CONTENTS && is(name, nl, "Key")) {
                        if (have_key)
                                return -EINVAL;
                        if ((r = text(c, S3_KEY_MAX, &cur->key)) < 0)
                                return r;
                        have_key = true;
                } else if (in == CONTENTS && is(name, nl, "Size")) {
                        if ((r = text(c, 20, &t)) < 0 || (r = parse_u64(t, &cur->size)) < 0)
                                return r;
                        have_size = true;
                } else if (in == PREFIXES && is(name, nl, "Prefix")) {
                        if (pg->n_objects + pg->n_prefixes >= S3_LIST_PAGE_MAX)
                                return -E2BIG;
                        if ((r = text(c, S3_KEY_MAX, &t)) < 0)
                                return r;
                        pg->prefixes[pg->n_prefixes++] = TAKE_PTR(t);
                } else if (in == TOP && is(name, nl, "IsTruncated")) {
                        if ((r = text(c, 8, &t)) < 0)
                                return r;
                        pg->truncated = strcmp(t, "true") == 0;
                } else if (in == TOP && is(name, nl, "NextContinuationToken")) {
                        if (pg->next_token)
                                return -EINVAL;
                        if ((r = text(c, S3_KEY_MAX, &pg->next_token)) < 0)
                                return r;
                }
        }
}

int s3_list_parse(const char *xml, size_t len, struct s3_list_page *ret)
{
        struct s3_list_page pg = {0};
        struct cursor c = {xml, xml + len};
        int r;

        if (len > S3_LIST_BODY_MAX)
                return -E2BIG;
        pg.objects = calloc(S3_LIST_PAGE_MAX, sizeof(*pg.objects));
        pg.prefixes = calloc(S3_LIST_PAGE_MAX, sizeof(*pg.prefixes));
        if (!pg.objects || !pg.prefixes) {
                s3_list_page_free(&pg);
                return -ENOMEM;
        }
        r = parse(&c, &pg);
        if (r == 0 && pg.truncated && !pg.next_token)
                r = -EINVAL; /* a truncated page must say where to go on */
        if (r < 0) {
                s3_list_page_free(&pg);
                return r;
        }
        *ret = pg;
        return 0;
}

static void element_text(const char *xml, size_t len, const char *tag, char *dst, size_t dstlen)
{
        struct cursor c = {xml, xml + len};
        const char *name;
        size_t nl;
        bool closing, empty;

        dst[0] = 0;
        while (next_tag(&c, &name, &nl, &closing, &empty) > 0) {
                _cleanup_free_ char *t = NULL;

                if (closing || empty || !is(name, nl, tag))
                        continue;
                if (text(&c, 4096, &t) == 0) {
                        size_t n = strlen(t) < dstlen ? strlen(t) : dstlen - 1;
                        /* keep it printable ASCII: it ends up in logs and in JSON answers,
                         * cut anywhere (a byte of UTF-8 would be, too) */
                        for (size_t i = 0; i < n; i++) {
                                unsigned char ch = (unsigned char)t[i];

                                dst[i] = ch < 0x20 ? ' ' : ch >= 0x7f ? '?' : t[i];
                        }
                        dst[n] = 0;
                }
                return;
        }
}

void s3_error_parse(const char *xml, size_t len, char *code, size_t codelen, char *msg,
                    size_t msglen)
{
        element_text(xml, len, "Code", code, codelen);
        element_text(xml, len, "Message", msg, msglen);
}

/* The name of the first element (the root), or -EINVAL when there is none. */
static int root_element(const char *xml, size_t len, const char **name, size_t *nl)
{
        struct cursor c = {xml, xml + len};
        bool closing, empty;
        int r = next_tag(&c, name, nl, &closing, &empty);

        return r <= 0 || closing ? -EINVAL : 0;
}

int s3_upload_id_parse(const char *xml, size_t len, char *id, size_t idlen, char *code,
                       size_t codelen, char *msg, size_t msglen)
{
        struct cursor c = {xml, xml + len};
        const char *name;
        size_t nl;
        bool closing, empty;
        int r;

        id[0] = code[0] = msg[0] = 0;
        if (len > S3_MULTIPART_ANSWER_MAX)
                return -E2BIG;
        if (root_element(xml, len, &name, &nl) < 0)
                return -EINVAL;
        if (is(name, nl, "Error")) {
                s3_error_parse(xml, len, code, codelen, msg, msglen);
                return -EIO;
        }
        if (!is(name, nl, "InitiateMultipartUploadResult"))
                return -EINVAL;
        while ((r = next_tag(&c, &name, &nl, &closing, &empty)) > 0) {
                _cleanup_free_ char *t = NULL;
                size_t n;

                if (closing || empty || !is(name, nl, "UploadId"))
                        continue;
                if ((r = text(&c, S3_UPLOAD_ID_MAX, &t)) < 0)
                        return r;
                n = strlen(t);
                if (n == 0)
                        return -EINVAL;
                if (n >= idlen)
                        return -E2BIG;
                /* it travels in a query string and in logs: printable ASCII only */
                for (size_t i = 0; i < n; i++)
                        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
                                return -EINVAL;
                memcpy(id, t, n + 1);
                return 0;
        }
        return r < 0 ? r : -EINVAL;
}

int s3_complete_parse(const char *xml, size_t len, char *code, size_t codelen, char *msg,
                      size_t msglen)
{
        const char *name;
        size_t nl;

        code[0] = msg[0] = 0;
        if (len > S3_MULTIPART_ANSWER_MAX)
                return -E2BIG;
        if (root_element(xml, len, &name, &nl) < 0)
                return -EINVAL;
        if (is(name, nl, "Error")) {
                s3_error_parse(xml, len, code, codelen, msg, msglen);
                return -EIO;
        }
        return is(name, nl, "CompleteMultipartUploadResult") ? 0 : -EINVAL;
}
