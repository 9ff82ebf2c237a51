/* s3-publish.c: push a cached snapshot to a bucket in the chunked layout (only the chunks the
 * bucket lacks travel) or the plain one (whole files), and list a bucket's snapshots; for tools
 * that may wait. */
#include "s3-publish.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "s3-layout.h"
#include "s3-list.h"
#include "snap-keys.h"
#include "util.h"

struct push_item {
        char sha256[SHA256_HEX_LEN + 1];
        uint16_t file;
        uint32_t chunk;
};

struct push {
        struct s3_client *c;
        const struct s3_location *l;
        const char *prefix;
        const struct s3_chunkman *m;
        int dirfd;
        struct push_item *items;
        size_t n, next, inflight, parallel;
        struct s3_push_stats *stats;
        int r;
        char *errbuf;
        size_t errlen;
};

struct push_xfer {
        struct push *p;
        struct push_item *it;
        char *key;
        char *data;
};

static int cmp_item(const void *a, const void *b)
{
        return strcmp(((const struct push_item *)a)->sha256, ((const struct push_item *)b)->sha256);
}

static void push_next(struct push *p);

static void push_xfer_free(struct push_xfer *x)
{
        free(x->key);
        free(x->data);
        free(x);
}

static void on_put(const struct s3_resp *resp, void *userdata)
{
        struct push_xfer *x = userdata;
        struct push *p = x->p;

        p->inflight--;
        if (resp->r < 0 && p->r == 0)
                p->r = op_errf(p->errbuf, p->errlen, resp->r, "PUT %s: %s", x->key, resp->error);
        else if (resp->r == 0) {
                p->stats->uploaded++;
        }
        push_xfer_free(x);
        push_next(p);
}

static void on_head(const struct s3_resp *resp, void *userdata)
{
        struct push_xfer *x = userdata;
        struct push *p = x->p;
        const struct snap_file *sf = &p->m->snap.files[x->it->file];
        uint64_t off = (uint64_t)x->it->chunk * p->m->chunk_size;
        size_t want =
            sf->size - off < p->m->chunk_size ? (size_t)(sf->size - off) : p->m->chunk_size;
        _cleanup_close_ int fd = -1;
        struct s3_req req = {.method = "PUT", .key = x->key};
        int r;

        if (resp->r == 0 || p->r < 0 || resp->r != -ENOENT) {
                if (resp->r < 0 && resp->r != -ENOENT && p->r == 0)
                        p->r = op_errf(p->errbuf, p->errlen, resp->r, "HEAD %s: %s", x->key,
                                       resp->error);
                p->inflight--;
                push_xfer_free(x);
                push_next(p);
                return;
        }
        fd = openat(p->dirfd, sf->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        x->data = malloc(want ? want : 1);
        if (fd < 0 || !x->data || pread(fd, x->data, want, (off_t)off) != (ssize_t)want) {
                r = fd < 0 ? -errno : -EIO;
                goto fail;
        }
        req.body = x->data;
        req.body_len = want;
        p->stats->bytes_uploaded += want;
        r = s3_start(p->c, p->l, &req, on_put, x, NULL);
        if (r == 0)
                return;
fail:
        if (p->r == 0)
                p->r = op_errf(p->errbuf, p->errlen, r, "upload %s: %s", x->key, strerror(-r));
        p->inflight--;
        push_xfer_free(x);
        push_next(p);
}

static void push_next(struct push *p)
{
        while (p->r == 0 && p->next < p->n && p->inflight < p->parallel) {
                struct push_item *it = &p->items[p->next++];
                struct push_xfer *x = calloc(1, sizeof(*x));
                struct s3_req req = {.method = "HEAD"};
                int r = -ENOMEM;

                if (x) {
                        x->p = p;
                        x->it = it;
                        x->key = s3_key_chunk(p->prefix, it->sha256);
                        req.key = x->key;
                        r = x->key ? s3_start(p->c, p->l, &req, on_head, x, NULL) : -ENOMEM;
                }
                if (r < 0) {
                        if (x)
                                push_xfer_free(x);
                        p->r = op_errf(p->errbuf, p->errlen, r, "cannot start a transfer: %s",
                                       strerror(-r));
                        return;
                }
                p->inflight++;
        }
}

static int put_text(struct s3_client *c, const struct s3_location *l, const char *key,
                    const char *text, char *errbuf, size_t errlen)
{
        struct s3_req req = {.method = "PUT", .key = key, .body = text, .body_len = strlen(text)};
        struct s3_resp resp;
        int r = s3_request_wait(c, l, &req, &resp, NULL);

        return r < 0 ? op_errf(errbuf, errlen, r, "PUT %s: %s", key, resp.error) : 0;
}

/* The serial of a new signed manifest: given, or above the one of the manifest the bucket's
 * current names and at least the Unix time (so that pushes from several hosts keep rising).
 * That manifest counts only when signed by the push's own key or one hosts trust: anyone who
 * can write the bucket can put a serial there, and hosts only ever accepted signed ones. */
static int push_serial(struct s3_client *c, const struct s3_location *l, const char *prefix,
                       const char *lang, const struct s3_push_sign *sign, uint64_t *ret,
                       char *errbuf, size_t errlen)
{
        _cleanup_free_ char *ckey = s3_key_current(prefix, lang), *vkey = NULL, *body = NULL,
                            *mtext = NULL;
        struct s3_req req = {.method = "GET", .max_body = 256};
        struct snap_signed env = {0};
        struct s3_chunkman m = {0};
        struct s3_resp resp;
        uint8_t keys[S3_TRUSTED_MAX + 1][SNAP_KEY_LEN];
        char version[SNAP_NAME_MAX], err[256];
        uint64_t serial = (uint64_t)time(NULL);
        size_t n, n_keys;
        int r;

        if (sign->serial) {
                if (sign->serial > S3_SERIAL_MAX)
                        return op_errf(errbuf, errlen, -ERANGE, "serial %llu: at most %llu",
                                       (unsigned long long)sign->serial,
                                       (unsigned long long)S3_SERIAL_MAX);
                *ret = sign->serial;
                return 0;
        }
        if (!ckey)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        req.key = ckey;
        r = s3_request_wait(c, l, &req, &resp, &body);
        if (r == -ENOENT) {
                *ret = serial;
                return 0;
        }
        if (r < 0)
                return op_errf(errbuf, errlen, r, "GET %s: %s", ckey, resp.error);
        n = strcspn(body, "\r\n");
        if (n >= sizeof(version))
                n = 0;
        memcpy(version, body, n);
        version[n] = 0;
        if (!snap_name_valid(version)) {
                *ret = serial;
                return 0;
        }
        vkey = s3_key_version(prefix, lang, version);
        if (!vkey)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        req.key = vkey;
        req.max_body = S3_CHUNKMAN_MAX;
        r = s3_request_wait(c, l, &req, &resp, &mtext);
        if (r == -ENOENT) {
                *ret = serial;
                return 0;
        }
        if (r < 0)
                return op_errf(errbuf, errlen, r, "GET %s: %s", vkey, resp.error);
        r = snap_key_public(sign->key, keys[0], errbuf, errlen);
        if (r < 0)
                return r;
        n_keys = 1;
        for (size_t i = 0; i < sign->n_trusted && i < S3_TRUSTED_MAX; i++)
                memcpy(keys[n_keys++], sign->trusted[i], SNAP_KEY_LEN);
        if (snap_signed_parse(mtext, resp.body_len, &env, err, sizeof(err)) < 0 ||
            snap_signed_verify(&env, (const uint8_t(*)[SNAP_KEY_LEN])keys, n_keys, err,
                               sizeof(err)) < 0) {
                /* not a serial any host took: it holds nobody back */
                snap_signed_free(&env);
                *ret = serial;
                return 0;
        }
        r = s3_chunkman_parse(env.payload, env.payload_len, &m, err, sizeof(err));
        snap_signed_free(&env);
        if (r < 0)
                return op_errf(errbuf, errlen, r,
                               "%s, signed by a trusted key: %s (its serial cannot be read)", vkey,
                               err);
        if (m.serial >= S3_SERIAL_MAX)
                r = op_errf(errbuf, errlen, -ERANGE,
                            "%s, signed by a trusted key, has serial %llu: no serial may be above "
                            "%llu, so no push can follow it (hosts that accepted it take no newer "
                            "version of %s until its .serial in their cache is removed)",
                            vkey, (unsigned long long)m.serial, (unsigned long long)S3_SERIAL_MAX,
                            lang);
        else if (m.serial >= serial)
                serial = m.serial + 1;
        s3_chunkman_free(&m);
        if (r < 0)
                return r;
        *ret = serial;
        return 0;
}

int s3_push(struct s3_client *c, const struct s3_location *l, const char *prefix,
            const char *cache_dir, const char *lang, const char *version, unsigned parallel,
            const struct s3_push_sign *sign, struct s3_push_stats *ret, char *errbuf, size_t errlen)
{
        struct s3_chunkman m = {.chunk_size = S3_CHUNK_SIZE_DEFAULT};
        struct s3_push_stats stats = {0};
        struct push p = {.c = c,
                         .l = l,
                         .prefix = prefix,
                         .m = &m,
                         .stats = &stats,
                         .parallel = parallel ? parallel : 1,
                         .errbuf = errbuf,
                         .errlen = errlen};
        _cleanup_free_ char *mtext = NULL, *vkey = NULL, *ckey = NULL, *cur = NULL;
        size_t total = 0, k = 0;
        int r;

        r = snap_open(cache_dir, lang, version, &p.dirfd, &m.snap, errbuf, errlen);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m.snap.n_files && r == 0; i++) {
                const struct snap_file *sf = &m.snap.files[i];
                char whole[SHA256_HEX_LEN + 1], root[SHA256_HEX_LEN + 1];

                r = s3_chunk_hash_file(p.dirfd, sf->name, sf->size, m.chunk_size, &m.files[i],
                                       whole);
                if (r < 0) {
                        op_errf(errbuf, errlen, r, "%s: %s", sf->name, strerror(-r));
                        break;
                }
                total += m.files[i].n_chunks;
                /* what is published is what the cache's manifest says: a damaged copy is not
                 * pushed (the chunk hashes made here become every host's checksum) */
                if (m.snap.chunk_size == m.chunk_size)
                        s3_chunkman_root(&m, i, root);
                if (strcmp(whole, sf->sha256) != 0 ||
                    (m.snap.chunk_size == m.chunk_size && strcmp(root, sf->root) != 0))
                        r = op_errf(errbuf, errlen, -EBADMSG,
                                    "%s/%s: checksum mismatch (sha256 %s, manifest says %s): "
                                    "the cache's copy is damaged",
                                    m.snap.version, sf->name, whole, sf->sha256);
        }
        if (r == 0)
                s3_chunkman_set_roots(&m);
        p.items = r == 0 ? calloc(total + 1, sizeof(*p.items)) : NULL;
        if (r == 0 && !p.items)
                r = op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        for (size_t i = 0; r == 0 && i < m.snap.n_files; i++)
                for (uint32_t j = 0; j < m.files[i].n_chunks; j++) {
                        if (!m.files[i].chunks[j].sha256[0]) {
                                stats.zero++;
                                continue;
                        }
                        strcpy(p.items[k].sha256, m.files[i].chunks[j].sha256);
                        p.items[k].file = (uint16_t)i;
                        p.items[k++].chunk = j;
                }
        if (r == 0) {
                /* one upload per distinct chunk */
                qsort(p.items, k, sizeof(*p.items), cmp_item);
                for (size_t i = 0; i < k; i++)
                        if (p.n == 0 || strcmp(p.items[p.n - 1].sha256, p.items[i].sha256) != 0)
                                p.items[p.n++] = p.items[i];
                stats.chunks = (uint32_t)p.n;
                push_next(&p);
                while (p.inflight > 0)
                        event_base_loop(s3_client_base(c), EVLOOP_ONCE);
                r = p.r;
        }
        if (r == 0 && sign && sign->key)
                r = push_serial(c, l, prefix, lang, sign, &m.serial, errbuf, errlen);
        if (r == 0 && sign && sign->key && sign->valid_for)
                m.expires = (uint64_t)time(NULL) + sign->valid_for;
        if (r == 0) {
                /* chunks first, then the manifest that names them, then the pointer to it */
                mtext = s3_chunkman_text(&m);
                if (mtext && sign && sign->key) {
                        char *env = NULL;

                        r = snap_sign(sign->key, mtext, strlen(mtext), &env, errbuf, errlen);
                        free(mtext);
                        mtext = env;
                        stats.serial = m.serial;
                        stats.expires = m.expires;
                }
                vkey = s3_key_version(prefix, lang, m.snap.version);
                ckey = s3_key_current(prefix, lang);
                if (r == 0 &&
                    (!mtext || !vkey || !ckey || asprintf(&cur, "%s\n", m.snap.version) < 0))
                        r = op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        }
        if (r == 0 && (r = put_text(c, l, vkey, mtext, errbuf, errlen)) == 0)
                r = put_text(c, l, ckey, cur, errbuf, errlen);
        safe_close(p.dirfd);
        free(p.items);
        s3_chunkman_free(&m);
        if (r == 0 && ret)
                *ret = stats;
        return r;
}

int s3_push_plain(struct s3_client *c, const struct s3_location *l, const char *prefix,
                  const char *cache_dir, const char *lang, const char *version,
                  const struct s3_put_opts *o, struct s3_put_stats *st, char *errbuf, size_t errlen)
{
        struct snap_manifest m;
        _cleanup_close_ int dirfd = -1;
        struct stat sb;
        int r;

        r = snap_open(cache_dir, lang, version, &dirfd, &m, errbuf, errlen);
        if (r < 0)
                return r;
        r = snap_check_files(dirfd, &m, errbuf, errlen);
        if (r < 0)
                return r;
        for (size_t i = 0; i <= m.n_files; i++) {
                /* the files first, then the manifest that names them */
                const char *name = i < m.n_files ? m.files[i].name : "manifest.json";
                _cleanup_free_ char *key = s3_key_plain(prefix, lang, m.version, name);
                uint64_t size = i < m.n_files ? m.files[i].size : 0;

                if (!key)
                        return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
                if (i == m.n_files) {
                        if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
                                return op_errf(errbuf, errlen, -errno, "%s: %s", name,
                                               strerror(errno));
                        size = (uint64_t)sb.st_size;
                }
                r = s3_put_file(c, l, key, dirfd, name, size, o, st, errbuf, errlen);
                if (r < 0)
                        return r;
        }
        return 0;
}

int s3_list_all(struct s3_client *c, const struct s3_location *l, const char *prefix, bool delimit,
                unsigned *pages_left,
                int (*fn)(const char *key, uint64_t size, bool is_prefix, void *ud), void *ud,
                char *errbuf, size_t errlen)
{
        _cleanup_free_ char *token = NULL;

        do {
                const char *names[] = {"list-type", "prefix", "delimiter", "continuation-token"};
                const char *values[] = {"2", prefix, "/", token};
                size_t n = 2;
                _cleanup_free_ char *query = NULL, *body = NULL;
                struct s3_list_page pg;
                struct s3_resp resp;
                struct s3_req req = {.method = "GET", .key = "", .max_body = S3_LIST_BODY_MAX};
                int r;

                if (delimit)
                        n = 3;
                if (token) {
                        if (!delimit) {
                                names[2] = names[3];
                                values[2] = values[3];
                        }
                        n++;
                }
                if (*pages_left == 0)
                        return op_errf(errbuf, errlen, -E2BIG,
                                       "listing %s: more pages than the listing may read in all",
                                       prefix);
                (*pages_left)--;
                query = s3_query(names, values, n);
                if (!query)
                        return -ENOMEM;
                req.query = query;
                r = s3_request_wait(c, l, &req, &resp, &body);
                if (r < 0)
                        return op_errf(errbuf, errlen, r, "list %s: %s", prefix, resp.error);
                r = s3_list_parse(body ? body : "", resp.body_len, &pg);
                if (r < 0)
                        return op_errf(errbuf, errlen, r, "list %s: unreadable answer", prefix);
                for (size_t i = 0; r == 0 && i < pg.n_objects; i++)
                        r = fn(pg.objects[i].key, pg.objects[i].size, false, ud);
                for (size_t i = 0; r == 0 && i < pg.n_prefixes; i++)
                        r = fn(pg.prefixes[i], 0, true, ud);
                free(token);
                token = pg.truncated ? TAKE_PTR(pg.next_token) : NULL;
                s3_list_page_free(&pg);
                if (r != 0)
                        return r < 0 ? r : 0;
        } while (token);
        return 0;
}

struct list_ctx {
        struct s3_client *c;
        const struct s3_location *l;
        const char *prefix;
        json_t *out;
        json_t *versions; /* the language being listed */
        unsigned pages_left, entries_left;
        char *errbuf;
        size_t errlen;
};

/* One more language or version in the answer, within S3_REMOTE_LIST_ENTRIES_MAX. */
static int take_entry(struct list_ctx *x)
{
        if (x->entries_left == 0)
                return op_errf(x->errbuf, x->errlen, -E2BIG,
                               "the bucket lists more than %u languages and versions under %s",
                               S3_REMOTE_LIST_ENTRIES_MAX, x->prefix);
        x->entries_left--;
        return 0;
}

static int on_version(const char *key, uint64_t size, bool is_prefix, void *ud)
{
        struct list_ctx *x = ud;
        const char *base = strrchr(key, '/');
        char name[SNAP_NAME_MAX];
        size_t n;

        base = base ? base + 1 : key;
        n = strlen(base);
        if (is_prefix || n < 6 || n - 5 >= sizeof(name) || strcmp(base + n - 5, ".json") != 0)
                return 0;
        memcpy(name, base, n - 5);
        name[n - 5] = 0;
        if (!snap_name_valid(name))
                return 0;
        if (take_entry(x) < 0)
                return -E2BIG;
        return json_array_append_new(x->versions, json_string(name)) < 0 ? -ENOMEM : 0;
}

static int on_lang(const char *key, uint64_t size, bool is_prefix, void *ud)
{
        struct list_ctx *x = ud;
        size_t plen = strlen(x->prefix), n = strlen(key);
        char lang[SNAP_NAME_MAX];
        _cleanup_free_ char *ckey = NULL, *vprefix = NULL, *body = NULL;
        struct s3_req req = {.method = "GET", .max_body = 4096};
        struct s3_resp resp;
        json_t *versions;
        int r;

        if (!is_prefix || n <= plen + 1 || n - plen - 1 >= sizeof(lang))
                return 0;
        memcpy(lang, key + plen, n - plen - 1);
        lang[n - plen - 1] = 0;
        if (!snap_name_valid(lang) || strcmp(lang, "chunks") == 0)
                return 0;
        if (take_entry(x) < 0)
                return -E2BIG;
        ckey = s3_key_current(x->prefix, lang);
        if (!ckey || asprintf(&vprefix, "%s%s/versions/", x->prefix, lang) < 0)
                return -ENOMEM;
        req.key = ckey;
        r = s3_request_wait(x->c, x->l, &req, &resp, &body);
        if (r < 0 && r != -ENOENT)
                return op_errf(x->errbuf, x->errlen, r, "GET %s: %s", ckey, resp.error);
        if (body)
                body[strcspn(body, "\r\n")] = 0;
        versions = json_array();
        if (!versions ||
            json_object_set_new(x->out, lang,
                                json_pack("{s:s?, s:O}", "current",
                                          r == 0 && snap_name_valid(body) ? body : NULL, "versions",
                                          versions)) < 0) {
                json_decref(versions);
                return -ENOMEM;
        }
        x->versions = versions;
        r = s3_list_all(x->c, x->l, vprefix, true, &x->pages_left, on_version, x, x->errbuf,
                        x->errlen);
        json_decref(versions);
        return r;
}

int s3_remote_list(struct s3_client *c, const struct s3_location *l, const char *prefix,
                   json_t **ret, char *errbuf, size_t errlen)
{
        struct list_ctx x = {.c = c,
                             .l = l,
                             .prefix = prefix,
                             .out = json_object(),
                             .pages_left = S3_REMOTE_LIST_PAGES_MAX,
                             .entries_left = S3_REMOTE_LIST_ENTRIES_MAX,
                             .errbuf = errbuf,
                             .errlen = errlen};
        int r;

        if (!x.out)
                return -ENOMEM;
        r = s3_list_all(c, l, prefix, true, &x.pages_left, on_lang, &x, errbuf, errlen);
        if (r < 0) {
                json_decref(x.out);
                return r;
        }
        *ret = x.out;
        return 0;
}
