/* snap-chunks.c: the chunk manifest of a snapshot version: parse (bounded), write, and hash a
 * local file into chunks. */
#include "snap-chunks.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "msg.h"
#include "s3-config.h"
#include "util.h"

void s3_chunkman_free(struct s3_chunkman *m)
{
        for (size_t i = 0; i < SNAP_FILES_MAX; i++)
                free(m->files[i].chunks);
        *m = (struct s3_chunkman){0};
}

uint32_t s3_chunk_count(uint64_t size, uint32_t chunk_size)
{
        return (uint32_t)((size + chunk_size - 1) / chunk_size);
}

int s3_chunkman_object(const char *text, size_t len, json_t **ret, char *errbuf, size_t errlen)
{
        json_error_t jerr;
        json_t *o;

        if (len > S3_CHUNKMAN_MAX)
                return op_errf(errbuf, errlen, -EFBIG, "chunk manifest over %u bytes",
                               S3_CHUNKMAN_MAX);
        if (op_json_values_bound(text, len) > S3_CHUNKMAN_VALUES_MAX)
                return op_errf(errbuf, errlen, -EFBIG,
                               "chunk manifest: more than %u JSON values (refused unparsed)",
                               S3_CHUNKMAN_VALUES_MAX);
        o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(o)) {
                json_decref(o);
                return op_errf(errbuf, errlen, -EINVAL, "chunk manifest: not a JSON object (%s)",
                               jerr.text);
        }
        *ret = o;
        return 0;
}

int s3_chunkman_parse(const char *text, size_t len, struct s3_chunkman *ret, char *errbuf,
                      size_t errlen)
{
        struct s3_chunkman m = {0};
        json_auto_t *o = NULL;
        _cleanup_free_ char *snaptext = NULL;
        json_t *cs, *files, *f;
        uint64_t total = 0;
        size_t i;
        int r;

        r = s3_chunkman_object(text, len, &o, errbuf, errlen);
        if (r < 0)
                return r;
        if (json_integer_value(json_object_get(o, "format")) != 1)
                return op_errf(errbuf, errlen, -EINVAL, "chunk manifest: unknown \"format\"");
        cs = json_object_get(o, "chunk_size");
        if (!json_is_integer(cs) || json_integer_value(cs) < S3_CHUNK_SIZE_MIN ||
            json_integer_value(cs) > S3_CHUNK_SIZE_MAX)
                return op_errf(errbuf, errlen, -EINVAL,
                               "chunk manifest: \"chunk_size\" must be %u-%u", S3_CHUNK_SIZE_MIN,
                               S3_CHUNK_SIZE_MAX);
        m.chunk_size = (uint32_t)json_integer_value(cs);
        cs = json_object_get(o, "serial");
        if (cs && (!json_is_integer(cs) || json_integer_value(cs) < 0 ||
                   (uint64_t)json_integer_value(cs) > S3_SERIAL_MAX))
                return op_errf(errbuf, errlen, -EINVAL,
                               "chunk manifest: \"serial\" must be an integer from 0 to %llu",
                               (unsigned long long)S3_SERIAL_MAX);
        m.serial = cs ? (uint64_t)json_integer_value(cs) : 0;
        cs = json_object_get(o, "expires");
        if (cs && (!json_is_integer(cs) || json_integer_value(cs) <= 0))
                return op_errf(errbuf, errlen, -EINVAL,
                               "chunk manifest: \"expires\" must be a positive integer (Unix "
                               "seconds)");
        m.expires = cs ? (uint64_t)json_integer_value(cs) : 0;
        snaptext = json_dumps(json_object_get(o, "snapshot"), JSON_COMPACT);
        if (!snaptext)
                return op_errf(errbuf, errlen, -EINVAL, "chunk manifest: no \"snapshot\"");
        r = snap_manifest_parse(snaptext, strlen(snaptext), &m.snap, errbuf, errlen);
        if (r < 0)
                return r;
        files = json_object_get(o, "chunks");
        if (!json_is_object(files) || json_object_size(files) != m.snap.n_files)
                return op_errf(errbuf, errlen, -EINVAL,
                               "chunk manifest: \"chunks\" must list every file of the snapshot");
        for (i = 0; i < m.snap.n_files; i++) {
                const struct snap_file *sf = &m.snap.files[i];
                uint32_t n = s3_chunk_count(sf->size, m.chunk_size);
                size_t k;

                f = json_object_get(files, sf->name);
                if (!json_is_array(f) || json_array_size(f) != n || (total += n) > S3_CHUNKS_MAX) {
                        s3_chunkman_free(&m);
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "chunk manifest: %s needs %u chunks (at most %u in all)",
                                       sf->name, n, S3_CHUNKS_MAX);
                }
                m.files[i].n_chunks = n;
                m.files[i].chunks = calloc(n ? n : 1, sizeof(struct s3_chunk));
                if (!m.files[i].chunks) {
                        s3_chunkman_free(&m);
                        return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
                }
                for (k = 0; k < n; k++) {
                        json_t *c = json_array_get(f, k);

                        if (json_is_null(c))
                                continue;
                        if (!json_is_string(c) || !op_sha256_hex_valid(json_string_value(c))) {
                                s3_chunkman_free(&m);
                                return op_errf(errbuf, errlen, -EINVAL,
                                               "chunk manifest: chunk %zu of %s is not a sha256", k,
                                               sf->name);
                        }
                        strcpy(m.files[i].chunks[k].sha256, json_string_value(c));
                }
        }
        /* The chunk roots: checked against the chunk lists when the publisher wrote them (a
         * publisher of before the roots wrote none: then computed from the signed lists). */
        if (m.snap.chunk_size && m.snap.chunk_size != m.chunk_size) {
                s3_chunkman_free(&m);
                return op_errf(errbuf, errlen, -EINVAL,
                               "chunk manifest: the snapshot's \"chunk_size\" is not the "
                               "manifest's");
        }
        for (i = 0; i < m.snap.n_files; i++) {
                char root[SHA256_HEX_LEN + 1];

                s3_chunkman_root(&m, i, root);
                if (m.snap.chunk_size && strcmp(root, m.snap.files[i].root) != 0) {
                        r = op_errf(errbuf, errlen, -EINVAL,
                                    "chunk manifest: the root of %s is %s, its chunks make %s",
                                    m.snap.files[i].name, m.snap.files[i].root, root);
                        s3_chunkman_free(&m);
                        return r;
                }
                strcpy(m.snap.files[i].root, root);
        }
        m.snap.chunk_size = m.chunk_size;
        *ret = m;
        return 0;
}

int s3_chunkman_check_expiry(const struct s3_chunkman *m, uint64_t now, bool require, char *errbuf,
                             size_t errlen)
{
        char when[32];

        if (!m->expires)
                return require ? op_errf(errbuf, errlen, -ENODATA,
                                         "version %s refused: its signed manifest has no expiry "
                                         "and s3.require_expiry is yes (push it again with "
                                         "--valid-for)",
                                         m->snap.version)
                               : 0;
        if (now < m->expires)
                return 0;
        op_format_utc(m->expires, when, sizeof(when));
        return op_errf(errbuf, errlen, -EKEYEXPIRED,
                       "version %s refused: its signature expired at %s, %llu s ago (the bucket "
                       "serves a version its publisher has not signed again: frozen?)",
                       m->snap.version, when, (unsigned long long)(now - m->expires));
}

void s3_chunkman_root(const struct s3_chunkman *m, size_t i, char ret_hex[SHA256_HEX_LEN + 1])
{
        const struct s3_chunk_file *f = &m->files[i];
        const char **leaves = calloc(f->n_chunks + 1, sizeof(*leaves));

        if (!leaves) {
                ret_hex[0] = 0; /* matches no root */
                return;
        }
        for (uint32_t k = 0; k < f->n_chunks; k++)
                leaves[k] = f->chunks[k].sha256;
        snap_chunk_root(m->chunk_size, m->snap.files[i].size, leaves, f->n_chunks, ret_hex);
        free(leaves);
}

void s3_chunkman_set_roots(struct s3_chunkman *m)
{
        m->snap.chunk_size = m->chunk_size;
        for (size_t i = 0; i < m->snap.n_files; i++)
                s3_chunkman_root(m, i, m->snap.files[i].root);
}

char *s3_chunkman_text(const struct s3_chunkman *m)
{
        json_auto_t *o = NULL;
        json_t *chunks = json_object();

        for (size_t i = 0; chunks && i < m->snap.n_files; i++) {
                json_t *a = json_array();
                for (uint32_t k = 0; a && k < m->files[i].n_chunks; k++)
                        json_array_append_new(a, m->files[i].chunks[k].sha256[0]
                                                     ? json_string(m->files[i].chunks[k].sha256)
                                                     : json_null());
                json_object_set_new(chunks, m->snap.files[i].name, a);
        }
        o = json_pack("{s:i, s:i, s:o, s:o}", "format", 1, "chunk_size", (int)m->chunk_size,
                      "snapshot", snap_manifest_json(&m->snap), "chunks", chunks);
        if (o && m->serial)
                json_object_set_new(o, "serial", json_integer((json_int_t)m->serial));
        if (o && m->expires)
                json_object_set_new(o, "expires", json_integer((json_int_t)m->expires));
        return o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
}

int s3_chunkman_plain(const struct snap_manifest *snap, uint32_t chunk_size,
                      struct s3_chunkman *ret)
{
        *ret = (struct s3_chunkman){.chunk_size = chunk_size, .plain = true, .snap = *snap};
        /* no chunk hashes: the whole-file sha256 is the checksum, whatever roots it names */
        ret->snap.chunk_size = 0;
        for (size_t i = 0; i < snap->n_files; i++)
                ret->snap.files[i].root[0] = 0;
        for (size_t i = 0; i < snap->n_files; i++)
                ret->files[i].n_chunks = s3_chunk_count(snap->files[i].size, chunk_size);
        return 0;
}

int s3_chunk_hash_file(int dirfd, const char *name, uint64_t size, uint32_t chunk_size,
                       struct s3_chunk_file *f, char *ret_sha256)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ char *buf = malloc(chunk_size);
        uint32_t n = s3_chunk_count(size, chunk_size);
        EVP_MD_CTX *whole = NULL;
        unsigned char md[32];
        struct s3_chunk *v;

        if (fd < 0)
                return -errno;
        if (!buf || !(v = calloc(n ? n : 1, sizeof(*v))))
                return -ENOMEM;
        if (ret_sha256 &&
            (!(whole = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(whole, EVP_sha256(), NULL))) {
                EVP_MD_CTX_free(whole);
                free(v);
                return -ENOMEM;
        }
        for (uint32_t k = 0; k < n; k++) {
                uint64_t off = (uint64_t)k * chunk_size;
                size_t want = size - off < chunk_size ? (size_t)(size - off) : chunk_size;
                ssize_t got = pread(fd, buf, want, (off_t)off);

                if (got != (ssize_t)want) {
                        EVP_MD_CTX_free(whole);
                        free(v);
                        return got < 0 ? -errno : -EIO;
                }
                if (!op_is_zero(buf, want))
                        op_sha256_hex(buf, want, v[k].sha256);
                if (whole)
                        EVP_DigestUpdate(whole, buf, want);
        }
        if (whole) {
                EVP_DigestFinal_ex(whole, md, NULL);
                EVP_MD_CTX_free(whole);
                s3_tohex(md, sizeof(md), ret_sha256);
        }
        f->chunks = v;
        f->n_chunks = n;
        return 0;
}
