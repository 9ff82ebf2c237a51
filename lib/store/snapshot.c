/* snapshot.c: the snapshot cache on disk: manifest parsing and writing, verification, atomic
 * install (stage, hash, fsync, rename, switch "current") and garbage collection. */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-space.h"
#include "s3-config.h"
#include "snap-chunks.h"
#include "util.h"

bool snap_name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n >= SNAP_NAME_MAX || s[0] == '.')
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
                        return false;
        return true;
}

static int get_str(json_t *o, const char *key, char *dst, size_t dstlen, bool name, char *errbuf,
                   size_t errlen)
{
        json_t *v = json_object_get(o, key);

        if (!json_is_string(v) || json_string_length(v) >= dstlen ||
            strlen(json_string_value(v)) != json_string_length(v))
                return op_errf(errbuf, errlen, -EINVAL,
                               "manifest: \"%s\" must be a string under %zu bytes", key, dstlen);
        if (name && !snap_name_valid(json_string_value(v)))
                return op_errf(errbuf, errlen, -EINVAL, "manifest: \"%s\" is not a plain name",
                               key);
        strcpy(dst, json_string_value(v));
        return 0;
}

static int get_u32(json_t *o, const char *key, uint32_t lo, uint32_t hi, uint32_t *dst,
                   char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(o, key);

        if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
                return op_errf(errbuf, errlen, -EINVAL, "manifest: \"%s\" must be an integer %u-%u",
                               key, lo, hi);
        *dst = (uint32_t)json_integer_value(v);
        return 0;
}

int snap_manifest_parse(const char *text, size_t len, struct snap_manifest *ret, char *errbuf,
                        size_t errlen)
{
        struct snap_manifest m = {0};
        json_auto_t *o = NULL;
        json_error_t jerr;
        json_t *files, *f;
        uint64_t chunks = 0;
        size_t i;
        int r;

        if (len > SNAP_MANIFEST_MAX)
                return op_errf(errbuf, errlen, -EFBIG, "manifest over %d bytes", SNAP_MANIFEST_MAX);
        o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(o))
                return op_errf(errbuf, errlen, -EINVAL, "manifest: not a JSON object (%s)",
                               jerr.text);
        if ((r = get_str(o, "version", m.version, sizeof(m.version), true, errbuf, errlen)) < 0 ||
            (r = get_str(o, "language", m.lang, sizeof(m.lang), true, errbuf, errlen)) < 0 ||
            (r = get_str(o, "created", m.created, sizeof(m.created), false, errbuf, errlen)) < 0 ||
            (r = get_str(o, "agent_version", m.agent_version, sizeof(m.agent_version), false,
                         errbuf, errlen)) < 0 ||
            (r = get_str(o, "vmm", m.vmm, sizeof(m.vmm), true, errbuf, errlen)) < 0 ||
            (r = get_str(o, "vmm_version", m.vmm_version, sizeof(m.vmm_version), false, errbuf,
                         errlen)) < 0 ||
            (r = get_str(o, "accel", m.accel, sizeof(m.accel), true, errbuf, errlen)) < 0 ||
            (r = get_str(o, "language_version", m.lang_version, sizeof(m.lang_version), false,
                         errbuf, errlen)) < 0 ||
            (r = get_u32(o, "memory_mb", 16, 1 << 20, &m.memory_mb, errbuf, errlen)) < 0 ||
            (r = get_u32(o, "vcpus", 1, 256, &m.vcpus, errbuf, errlen)) < 0)
                return r;
        m.warm = json_is_true(json_object_get(o, "warm"));
        if (json_object_get(o, "chunk_size") &&
            (r = get_u32(o, "chunk_size", SNAP_CHUNK_SIZE_MIN, SNAP_CHUNK_SIZE_MAX, &m.chunk_size,
                         errbuf, errlen)) < 0)
                return r;
        files = json_object_get(o, "files");
        if (!json_is_array(files) || json_array_size(files) == 0 ||
            json_array_size(files) > SNAP_FILES_MAX)
                return op_errf(errbuf, errlen, -EINVAL, "manifest: \"files\" must list 1-%d files",
                               SNAP_FILES_MAX);
        json_array_foreach (files, i, f) {
                struct snap_file *sf = &m.files[i];
                json_t *size = json_object_get(f, "size");

                if ((r = get_str(f, "name", sf->name, sizeof(sf->name), true, errbuf, errlen)) <
                        0 ||
                    (r = get_str(f, "sha256", sf->sha256, sizeof(sf->sha256), false, errbuf,
                                 errlen)) < 0)
                        return r;
                if (!op_sha256_hex_valid(sf->sha256))
                        return op_errf(errbuf, errlen, -EINVAL, "manifest: bad sha256 for %s",
                                       sf->name);
                if (!json_is_integer(size) || json_integer_value(size) < 0 ||
                    (uint64_t)json_integer_value(size) > SNAP_FILE_SIZE_MAX)
                        return op_errf(errbuf, errlen, -EINVAL, "manifest: bad size for %s",
                                       sf->name);
                sf->size = (uint64_t)json_integer_value(size);
                if (!m.chunk_size != !json_object_get(f, "root"))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "manifest: %s: a \"root\" for every file with "
                                       "\"chunk_size\", none without",
                                       sf->name);
                if (m.chunk_size) {
                        if ((r = get_str(f, "root", sf->root, sizeof(sf->root), false, errbuf,
                                         errlen)) < 0)
                                return r;
                        if (!op_sha256_hex_valid(sf->root))
                                return op_errf(errbuf, errlen, -EINVAL, "manifest: bad root for %s",
                                               sf->name);
                        chunks += (sf->size + m.chunk_size - 1) / m.chunk_size;
                        if (chunks > SNAP_CHUNKS_MAX)
                                return op_errf(errbuf, errlen, -EINVAL,
                                               "manifest: over %u chunks of %u bytes",
                                               SNAP_CHUNKS_MAX, m.chunk_size);
                }
                for (size_t j = 0; j < i; j++)
                        if (strcmp(m.files[j].name, sf->name) == 0)
                                return op_errf(errbuf, errlen, -EINVAL,
                                               "manifest: file %s listed twice", sf->name);
                m.n_files++;
        }
        *ret = m;
        return 0;
}

json_t *snap_manifest_json(const struct snap_manifest *m)
{
        json_t *files = json_array(), *o;

        for (size_t i = 0; files && i < m->n_files; i++) {
                json_t *f = json_pack("{s:s, s:I, s:s}", "name", m->files[i].name, "size",
                                      (json_int_t)m->files[i].size, "sha256", m->files[i].sha256);
                if (f && m->chunk_size)
                        json_object_set_new(f, "root", json_string(m->files[i].root));
                json_array_append_new(files, f);
        }
        o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:b, s:o}", "format",
                      1, "version", m->version, "language", m->lang, "created", m->created,
                      "agent_version", m->agent_version, "vmm", m->vmm, "vmm_version",
                      m->vmm_version, "accel", m->accel, "language_version", m->lang_version,
                      "memory_mb", (int)m->memory_mb, "vcpus", (int)m->vcpus, "warm", m->warm,
                      "files", files);
        if (o && m->chunk_size)
                json_object_set_new(o, "chunk_size", json_integer(m->chunk_size));
        return o;
}

const struct snap_file *snap_manifest_file(const struct snap_manifest *m, const char *name)
{
        for (size_t i = 0; i < m->n_files; i++)
                if (strcmp(m->files[i].name, name) == 0)
                        return &m->files[i];
        return NULL;
}

int snap_version_new(char ret[SNAP_NAME_MAX])
{
        uint8_t rnd[3];
        struct tm tm;
        time_t now = time(NULL);

        if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
                return -EIO;
        gmtime_r(&now, &tm);
        snprintf(ret, SNAP_NAME_MAX, "%04d%02d%02dT%02d%02d%02dZ-%02x%02x%02x", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rnd[0], rnd[1],
                 rnd[2]);
        return 0;
}

static int read_manifest(int dirfd, struct snap_manifest *ret, char *errbuf, size_t errlen)
{
        /* O_NONBLOCK: a FIFO put there must not block the open; only a regular file is read */
        _cleanup_close_ int fd =
            openat(dirfd, "manifest.json", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        char buf[SNAP_MANIFEST_MAX + 1];
        ssize_t n = 0, k;
        struct stat st;

        if (fd < 0)
                return op_errf(errbuf, errlen, -errno, "manifest.json: %s", strerror(errno));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return op_errf(errbuf, errlen, -EBADMSG, "manifest.json: not a regular file");
        while ((k = read(fd, buf + n, sizeof(buf) - (size_t)n)) > 0)
                n += k;
        if (k < 0)
                return op_errf(errbuf, errlen, -errno, "manifest.json: %s", strerror(errno));
        return snap_manifest_parse(buf, (size_t)n, ret, errbuf, errlen);
}

int snap_open(const char *cache_dir, const char *lang, const char *version, int *ret_dirfd,
              struct snap_manifest *ret, char *errbuf, size_t errlen)
{
        _cleanup_close_ int cache = -1, langfd = -1, dirfd = -1;
        struct snap_manifest m;
        char target[SNAP_NAME_MAX + 1];
        ssize_t n;
        int r;

        if (!snap_name_valid(lang) || (version && !snap_name_valid(version)))
                return op_errf(errbuf, errlen, -EINVAL, "invalid snapshot name");
        cache = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cache < 0)
                return op_errf(errbuf, errlen, -errno, "%s: %s", cache_dir, strerror(errno));
        langfd = openat(cache, lang, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (langfd < 0)
                return op_errf(errbuf, errlen, -errno, "no snapshot for %s in %s", lang, cache_dir);
        if (!version) {
                /* "current" is a symlink holding a plain version name, nothing else. */
                n = readlinkat(langfd, "current", target, sizeof(target) - 1);
                if (n < 0)
                        return op_errf(errbuf, errlen, -errno, "%s/%s/current: %s", cache_dir, lang,
                                       strerror(errno));
                target[n] = 0;
                if (!snap_name_valid(target))
                        return op_errf(errbuf, errlen, -EINVAL, "%s/%s/current points outside",
                                       cache_dir, lang);
                version = target;
        }
        dirfd = openat(langfd, version, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dirfd < 0)
                return op_errf(errbuf, errlen, -errno, "%s/%s/%s: %s", cache_dir, lang, version,
                               strerror(errno));
        r = read_manifest(dirfd, &m, errbuf, errlen);
        if (r < 0)
                return r;
        if (strcmp(m.lang, lang) != 0 || strcmp(m.version, version) != 0)
                return op_errf(errbuf, errlen, -EINVAL, "%s/%s/%s: manifest names %s/%s", cache_dir,
                               lang, version, m.lang, m.version);
        r = snap_check_files(dirfd, &m, errbuf, errlen);
        if (r < 0)
                return r;
        *ret_dirfd = TAKE_FD(dirfd);
        *ret = m;
        return 0;
}

int snap_check_files(int dirfd, const struct snap_manifest *m, char *errbuf, size_t errlen)
{
        for (size_t i = 0; i < m->n_files; i++) {
                struct stat st;

                if (fstatat(dirfd, m->files[i].name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return op_errf(errbuf, errlen, -errno, "%s/%s: %s", m->version,
                                       m->files[i].name, strerror(errno));
                if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != m->files[i].size)
                        return op_errf(errbuf, errlen, -EBADMSG,
                                       "%s/%s: size %lld, manifest says %llu", m->version,
                                       m->files[i].name, (long long)st.st_size,
                                       (unsigned long long)m->files[i].size);
        }
        return 0;
}

struct root_ctx {
        EVP_MD_CTX *md;
};

static int root_begin(struct root_ctx *c, uint32_t chunk_size, uint64_t size)
{
        uint8_t head[16];

        for (int i = 0; i < 8; i++) {
                head[i] = (uint8_t)((uint64_t)chunk_size >> (56 - 8 * i));
                head[8 + i] = (uint8_t)(size >> (56 - 8 * i));
        }
        c->md = EVP_MD_CTX_new();
        if (!c->md || !EVP_DigestInit_ex(c->md, EVP_sha256(), NULL)) {
                EVP_MD_CTX_free(c->md);
                c->md = NULL;
                return -ENOMEM;
        }
        EVP_DigestUpdate(c->md, SNAP_ROOT_CONTEXT, strlen(SNAP_ROOT_CONTEXT));
        EVP_DigestUpdate(c->md, head, sizeof(head));
        return 0;
}

static void root_end(struct root_ctx *c, char ret_hex[SHA256_HEX_LEN + 1])
{
        unsigned char md[32];

        EVP_DigestFinal_ex(c->md, md, NULL);
        EVP_MD_CTX_free(c->md);
        c->md = NULL;
        s3_tohex(md, sizeof(md), ret_hex);
}

void snap_chunk_root(uint32_t chunk_size, uint64_t size, const char *const *leaves, size_t n,
                     char ret_hex[SHA256_HEX_LEN + 1])
{
        struct root_ctx c;

        if (root_begin(&c, chunk_size, size) < 0) {
                ret_hex[0] = 0; /* out of memory: matches no root */
                return;
        }
        for (size_t k = 0; k < n; k++) {
                uint8_t leaf[32] = {0};

                /* "" (a chunk of zeros) stays 32 zero bytes; the others are checked hex */
                if (leaves[k][0] && s3_unhex(leaves[k], leaf, sizeof(leaf)) < 0)
                        memset(leaf, 0, sizeof(leaf));
                EVP_DigestUpdate(c.md, leaf, sizeof(leaf));
        }
        root_end(&c, ret_hex);
}

#define ROOT_READ_BLOCK (1u << 20)

int snap_chunk_root_file(int dirfd, const char *name, uint64_t size, uint32_t chunk_size,
                         char ret_hex[SHA256_HEX_LEN + 1])
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ unsigned char *buf = malloc(ROOT_READ_BLOCK);
        EVP_MD_CTX *leaf = EVP_MD_CTX_new();
        struct root_ctx c = {0};
        uint64_t off = 0;
        int r = 0;

        if (fd < 0) {
                EVP_MD_CTX_free(leaf);
                return -errno;
        }
        if (!buf || !leaf || root_begin(&c, chunk_size, size) < 0) {
                EVP_MD_CTX_free(leaf);
                return -ENOMEM;
        }
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        while (r == 0 && off < size) {
                uint64_t end = size - off < chunk_size ? size : off + chunk_size;
                uint8_t md[32] = {0};
                bool zero = true;

                EVP_DigestInit_ex(leaf, EVP_sha256(), NULL);
                while (off < end) {
                        size_t want =
                            end - off < ROOT_READ_BLOCK ? (size_t)(end - off) : ROOT_READ_BLOCK;
                        ssize_t k = pread(fd, buf, want, (off_t)off);

                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                r = k < 0 ? -errno : -EBADMSG; /* shorter than its size */
                                break;
                        }
                        zero = zero && op_is_zero(buf, (size_t)k);
                        EVP_DigestUpdate(leaf, buf, (size_t)k);
                        off += (uint64_t)k;
                }
                if (r == 0 && !zero)
                        EVP_DigestFinal_ex(leaf, md, NULL);
                EVP_DigestUpdate(c.md, md, sizeof(md));
        }
        EVP_MD_CTX_free(leaf);
        if (r == 0 && pread(fd, buf, 1, (off_t)size) != 0)
                r = -EBADMSG; /* longer than its size */
        root_end(&c, ret_hex);
        return r;
}

int snap_verify(int dirfd, const struct snap_manifest *m, char *errbuf, size_t errlen)
{
        for (size_t i = 0; i < m->n_files; i++) {
                char hex[SHA256_HEX_LEN + 1];
                uint64_t size;
                int r;

                if (m->chunk_size) {
                        r = snap_chunk_root_file(dirfd, m->files[i].name, m->files[i].size,
                                                 m->chunk_size, hex);
                        if (r == -EBADMSG || (r == 0 && strcmp(hex, m->files[i].root) != 0))
                                return op_errf(errbuf, errlen, -EBADMSG,
                                               "%s/%s: checksum mismatch (chunk root %s, "
                                               "manifest says %s)",
                                               m->version, m->files[i].name,
                                               r == 0 ? hex : "of another size", m->files[i].root);
                        if (r < 0)
                                return op_errf(errbuf, errlen, r, "%s: %s", m->files[i].name,
                                               strerror(-r));
                        continue;
                }
                r = op_sha256_file(dirfd, m->files[i].name, hex, &size);

                if (r < 0)
                        return op_errf(errbuf, errlen, r, "%s: %s", m->files[i].name, strerror(-r));
                if (size != m->files[i].size || strcmp(hex, m->files[i].sha256) != 0)
                        return op_errf(errbuf, errlen, -EBADMSG,
                                       "%s/%s: checksum mismatch (sha256 %s, manifest says %s)",
                                       m->version, m->files[i].name, hex, m->files[i].sha256);
        }
        return 0;
}

/* One level: an fd, a directory stream and a stack frame each, so the depth is bounded. */
static int rmtree_at(int parent_fd, const char *name, unsigned depth)
{
        _cleanup_close_ int fd =
            openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        DIR *dir;
        int r = 0, k;

        if (fd < 0) {
                if (errno == ENOTDIR || errno == ELOOP)
                        return unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
                return errno == ENOENT ? 0 : -errno;
        }
        if (depth >= SNAP_RMTREE_DEPTH_MAX)
                return -ELOOP;
        dir = fdopendir(fd);
        if (!dir)
                return -errno;
        fd = -1;
        while ((de = readdir(dir))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (op_dirent_is_dir(dirfd(dir), de))
                        k = rmtree_at(dirfd(dir), de->d_name, depth + 1);
                else
                        k = unlinkat(dirfd(dir), de->d_name, 0) < 0 && errno != ENOENT ? -errno : 0;
                r = r < 0 ? r : k;
        }
        closedir(dir);
        if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return r < 0 ? r : -errno;
        return r;
}

int snap_rmtree(int parent_fd, const char *name)
{
        return rmtree_at(parent_fd, name, 0);
}

static int lang_dir(const char *cache_dir, const char *lang, bool create)
{
        _cleanup_close_ int cache = -1;
        int fd;

        if (create && mkdir(cache_dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        cache = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cache < 0)
                return -errno;
        if (create && mkdirat(cache, lang, 0755) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(cache, lang, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int snap_stage_path(const char *cache_dir, const char *lang, const char *version, char **ret)
{
        if (!snap_name_valid(lang) || !snap_name_valid(version))
                return -EINVAL;
        return asprintf(ret, "%s/%s/.tmp-%s", cache_dir, lang, version) < 0 ? -ENOMEM : 0;
}

int snap_stage_begin(const char *cache_dir, const char *lang, const char *version, char **ret)
{
        _cleanup_close_ int langfd = -1;
        char name[SNAP_NAME_MAX + 8];
        int r;

        r = snap_stage_path(cache_dir, lang, version, ret);
        if (r < 0)
                return r;
        langfd = lang_dir(cache_dir, lang, true);
        if (langfd < 0) {
                free(*ret);
                return langfd;
        }
        snprintf(name, sizeof(name), ".tmp-%s", version);
        snap_rmtree(langfd, name);
        /* Only opd's user may reach what is staged by its path: the memory file of a boot for
         * a snapshot is writable by every uid until it is saved (the VM's uid reopens it through
         * /proc/self/fd, which no directory's mode guards), and the version keeps this mode. */
        if (mkdirat(langfd, name, 0700) < 0) {
                r = -errno;
                free(*ret);
                return r;
        }
        return 0;
}

int snap_stage_lock(const char *stage_path)
{
        _cleanup_close_ int fd = open(stage_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int snap_clean_stale(const char *cache_dir, const char *lang)
{
        _cleanup_close_ int langfd = lang_dir(cache_dir, lang, false);
        struct dirent *de;
        int fd, n = 0;
        DIR *dir;

        if (langfd < 0)
                return langfd == -ENOENT ? 0 : langfd;
        if (unlinkat(langfd, ".current.new", 0) == 0)
                n++;
        fd = fcntl(langfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0 || !(dir = fdopendir(fd))) {
                safe_close(fd);
                return -errno;
        }
        while ((de = readdir(dir))) {
                _cleanup_close_ int sfd = -1;

                if (strncmp(de->d_name, ".tmp-", 5) != 0)
                        continue;
                sfd = openat(langfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                /* held: a live process is filling it */
                if (sfd >= 0 && flock(sfd, LOCK_EX | LOCK_NB) < 0)
                        continue;
                if (snap_rmtree(langfd, de->d_name) == 0)
                        n++;
        }
        closedir(dir);
        return n;
}

static int cmp_name_desc(const void *a, const void *b)
{
        return -strcmp(a, b);
}

int snap_list_versions(const char *cache_dir, const char *lang, char (**ret)[SNAP_NAME_MAX],
                       size_t *ret_n)
{
        _cleanup_close_ int langfd = lang_dir(cache_dir, lang, false);
        char(*v)[SNAP_NAME_MAX] = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *dir;
        int fd;

        if (langfd < 0)
                return langfd;
        fd = fcntl(langfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0 || !(dir = fdopendir(fd))) {
                safe_close(fd);
                return -errno;
        }
        while ((de = readdir(dir))) {
                if (!snap_name_valid(de->d_name) || !op_dirent_is_dir(dirfd(dir), de))
                        continue;
                if (n == cap) {
                        char(*nv)[SNAP_NAME_MAX] =
                            realloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*v));
                        if (!nv) {
                                closedir(dir);
                                free(v);
                                return -ENOMEM;
                        }
                        v = nv;
                }
                memcpy(v[n++], de->d_name, strlen(de->d_name) + 1); /* valid names fit */
        }
        closedir(dir);
        /* Version names start with their UTC creation time: newest first. */
        if (n)
                qsort(v, n, sizeof(*v), cmp_name_desc);
        *ret = v;
        *ret_n = n;
        return 0;
}

int snap_set_aside(const char *cache_dir, const char *lang, const char *version)
{
        _cleanup_close_ int langfd = lang_dir(cache_dir, lang, false);
        char name[SNAP_NAME_MAX + 16];

        if (langfd < 0)
                return langfd;
        if (!snap_name_valid(version))
                return -EINVAL;
        snprintf(name, sizeof(name), ".damaged-%s", version);
        snap_rmtree(langfd, name);
        return renameat(langfd, version, langfd, name) < 0 ? -errno : 0;
}

static int fsync_at(int dirfd, const char *name)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        return fsync(fd) < 0 ? -errno : 0;
}

int snap_set_current(const char *cache_dir, const char *lang, const char *version)
{
        _cleanup_close_ int langfd = lang_dir(cache_dir, lang, false);

        if (langfd < 0)
                return langfd;
        if (!snap_name_valid(version))
                return -EINVAL;
        unlinkat(langfd, ".current.new", 0);
        if (symlinkat(version, langfd, ".current.new") < 0)
                return -errno;
        if (renameat(langfd, ".current.new", langfd, "current") < 0)
                return -errno;
        return fsync(langfd) < 0 ? -errno : 0;
}

int snap_commit(const char *cache_dir, struct snap_manifest *m, char *errbuf, size_t errlen)
{
        _cleanup_close_ int langfd = -1, stage = -1, mfd = -1;
        _cleanup_free_ char *text = NULL, *stagepath = NULL;
        char stagename[SNAP_NAME_MAX + 8];
        json_t *o;
        int r;

        langfd = lang_dir(cache_dir, m->lang, false);
        if (langfd < 0)
                return op_errf(errbuf, errlen, langfd, "%s/%s: %s", cache_dir, m->lang,
                               strerror(-langfd));
        snprintf(stagename, sizeof(stagename), ".tmp-%s", m->version);
        if (asprintf(&stagepath, "%s/%s/%s", cache_dir, m->lang, stagename) < 0) {
                stagepath = NULL;
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        }
        stage = openat(langfd, stagename, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (stage < 0)
                return op_errf(errbuf, errlen, -errno, "staging %s: %s", stagename,
                               strerror(errno));
        for (size_t i = 0; i < m->n_files; i++) {
                r = op_sha256_file(stage, m->files[i].name, m->files[i].sha256, &m->files[i].size);
                if (r == 0)
                        r = fsync_at(stage, m->files[i].name);
                if (r < 0) {
                        op_errf_fs(errbuf, errlen, r, stagepath, "hashing and syncing %s/%s",
                                   stagepath, m->files[i].name);
                        goto abort;
                }
        }
        /* every byte was hashed just now: the pool does not hash the files again while they are
         * these files, unchanged (as after an S3 install) */
        r = snap_verified_write(stage, m);
        if (r < 0) {
                op_errf_fs(errbuf, errlen, r, stagepath, "writing %s/%s", stagepath,
                           SNAP_VERIFIED_NAME);
                goto abort;
        }
        o = snap_manifest_json(m);
        text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        json_decref(o);
        if (!text) {
                r = op_errf(errbuf, errlen, -ENOMEM, "out of memory");
                goto abort;
        }
        mfd = openat(stage, "manifest.json", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0644);
        r = mfd < 0 ? -errno : op_write_all(mfd, text, strlen(text));
        if (r >= 0 && (fsync(mfd) < 0 || fsync(stage) < 0))
                r = -errno;
        if (r < 0) {
                op_errf_fs(errbuf, errlen, r, stagepath, "writing %s/manifest.json", stagepath);
                goto abort;
        }
        if (renameat(langfd, stagename, langfd, m->version) < 0) {
                r = op_errf(errbuf, errlen, -errno, "install %s: %s", m->version, strerror(errno));
                goto abort;
        }
        if (fsync(langfd) < 0) {
                r = op_errf(errbuf, errlen, -errno, "fsync: %s", strerror(errno));
                return r;
        }
        r = snap_set_current(cache_dir, m->lang, m->version);
        if (r < 0)
                return op_errf_fs(errbuf, errlen, r, cache_dir, "switching %s/%s/current to %s",
                                  cache_dir, m->lang, m->version);
        return 0;
abort:
        snap_rmtree(langfd, stagename);
        return r;
}

int snap_gc(const char *cache_dir, const char *lang, unsigned keep, const char *except)
{
        _cleanup_close_ int langfd = lang_dir(cache_dir, lang, false);
        _cleanup_free_ char(*v)[SNAP_NAME_MAX] = NULL;
        char current[SNAP_NAME_MAX] = "";
        struct dirent *de;
        size_t n = 0;
        DIR *dir;
        ssize_t k;
        int fd, r;

        if (langfd < 0)
                return langfd;
        k = readlinkat(langfd, "current", current, sizeof(current) - 1);
        current[k > 0 ? k : 0] = 0;
        fd = fcntl(langfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0 || !(dir = fdopendir(fd))) {
                safe_close(fd);
                return -errno;
        }
        while ((de = readdir(dir))) {
                struct stat st;

                /* Staging left by a creation that died: gone after an hour (one in progress
                 * elsewhere is younger). */
                if (strncmp(de->d_name, ".tmp-", 5) == 0 &&
                    fstatat(langfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISDIR(st.st_mode) && time(NULL) - st.st_mtime > 3600)
                        snap_rmtree(langfd, de->d_name);
        }
        closedir(dir);
        r = snap_list_versions(cache_dir, lang, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = keep; i < n; i++) {
                if (!strcmp(v[i], current) || (except && !strcmp(v[i], except)))
                        continue;
                snap_rmtree(langfd, v[i]);
        }
        return 0;
}

#define VERIFIED_HEAD "opd verified at install v1"

char *snap_verified_text(const struct snap_manifest *m, const struct snap_file_id *ids)
{
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        if (!f)
                return NULL;
        fprintf(f, "%s %s\n", VERIFIED_HEAD, m->version);
        for (size_t i = 0; i < m->n_files; i++)
                fprintf(f, "%s %llu %llu %llu %lld %ld\n", m->files[i].name,
                        (unsigned long long)ids[i].dev, (unsigned long long)ids[i].ino,
                        (unsigned long long)ids[i].size, (long long)ids[i].mtime_s,
                        ids[i].mtime_ns);
        if (fclose(f) != 0) {
                free(text);
                return NULL;
        }
        return text;
}

bool snap_verified_match(const char *text, size_t len, const struct snap_manifest *m,
                         const struct snap_file_id *ids)
{
        _cleanup_free_ char *want = snap_verified_text(m, ids);

        return want && strlen(want) == len && memcmp(want, text, len) == 0;
}

static int file_ids(int dirfd, const struct snap_manifest *m, struct snap_file_id *ids)
{
        for (size_t i = 0; i < m->n_files; i++) {
                struct stat st;

                if (fstatat(dirfd, m->files[i].name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != m->files[i].size)
                        return -EBADMSG;
                ids[i] = (struct snap_file_id){.dev = st.st_dev,
                                               .ino = st.st_ino,
                                               .size = (uint64_t)st.st_size,
                                               .mtime_s = st.st_mtim.tv_sec,
                                               .mtime_ns = st.st_mtim.tv_nsec};
        }
        return 0;
}

int snap_verified_write(int dirfd, const struct snap_manifest *m)
{
        struct snap_file_id ids[SNAP_FILES_MAX];
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -1;
        int r = file_ids(dirfd, m, ids);

        if (r < 0)
                return r;
        text = snap_verified_text(m, ids);
        if (!text)
                return -ENOMEM;
        fd = openat(dirfd, SNAP_VERIFIED_NAME,
                    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        if (op_write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

bool snap_verified_check(int dirfd, const struct snap_manifest *m)
{
        struct snap_file_id ids[SNAP_FILES_MAX];
        _cleanup_close_ int fd =
            openat(dirfd, SNAP_VERIFIED_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        char buf[SNAP_FILES_MAX * 192 + 192];
        struct stat st;
        ssize_t n;

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || file_ids(dirfd, m, ids) < 0)
                return false;
        n = read(fd, buf, sizeof(buf));
        return n > 0 && (size_t)n < sizeof(buf) && snap_verified_match(buf, (size_t)n, m, ids);
}
