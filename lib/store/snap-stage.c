/* snap-stage.c: staging a snapshot version fetched from S3: resume from what is staged, reuse
 * chunks an installed version holds, then verify, fsync and install atomically. */
#include "snap-stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#define PLAN_NAME   ".need"
#define SERIAL_NAME ".serial" /* the highest serial accepted: "<serial> <version>\n" */

int s3_stage_name(const char *version, char *buf, size_t len)
{
        int k = snprintf(buf, len, ".sync-%s", version);

        return snap_name_valid(version) && k > 0 && (size_t)k < len ? 0 : -EINVAL;
}

static int open_lang(const char *cache_dir, const char *lang)
{
        _cleanup_close_ int cache = -1;
        int fd;

        if (!snap_name_valid(lang))
                return -EINVAL;
        if (mkdir(cache_dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        cache = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cache < 0)
                return -errno;
        if (mkdirat(cache, lang, 0755) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(cache, lang, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

static int open_stage(const char *cache_dir, const struct s3_chunkman *m, bool create)
{
        _cleanup_close_ int langfd = open_lang(cache_dir, m->snap.lang);
        char name[SNAP_NAME_MAX + 8];
        int fd;

        if (langfd < 0)
                return langfd;
        if (s3_stage_name(m->snap.version, name, sizeof(name)) < 0)
                return -EINVAL;
        if (create && mkdirat(langfd, name, 0755) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(langfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* Chunks an installed version holds, by hash: from the chunks.json kept next to it. */
struct local_chunk {
        char sha256[SHA256_HEX_LEN + 1];
        uint16_t file;
        uint32_t chunk;
};

struct local_source {
        int dirfd;
        struct s3_chunkman m;
        struct local_chunk *v;
        size_t n;
};

static int cmp_local(const void *a, const void *b)
{
        return strcmp(((const struct local_chunk *)a)->sha256,
                      ((const struct local_chunk *)b)->sha256);
}

static void local_source_free(struct local_source *s)
{
        safe_close(s->dirfd);
        s3_chunkman_free(&s->m);
        free(s->v);
}

static int local_source_open(const char *cache_dir, const char *lang, uint32_t chunk_size,
                             struct local_source *ret)
{
        struct local_source s = {.dirfd = -1};
        _cleanup_free_ char *text = NULL;
        struct snap_manifest sm;
        char err[256];
        size_t len;
        int r, fd;

        r = snap_open(cache_dir, lang, NULL, &s.dirfd, &sm, err, sizeof(err));
        if (r < 0)
                return r;
        fd = openat(s.dirfd, "chunks.json", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                safe_close(s.dirfd);
                return r;
        }
        text = malloc(S3_CHUNKMAN_MAX + 1);
        len = 0;
        if (text) {
                ssize_t k;
                while (len < S3_CHUNKMAN_MAX &&
                       (k = read(fd, text + len, S3_CHUNKMAN_MAX - len)) > 0)
                        len += (size_t)k;
        }
        safe_close(fd);
        if (!text || s3_chunkman_parse(text, len, &s.m, err, sizeof(err)) < 0 ||
            s.m.chunk_size != chunk_size || strcmp(s.m.snap.version, sm.version) != 0) {
                local_source_free(&s);
                return -ENOENT;
        }
        for (size_t i = 0; i < s.m.snap.n_files; i++)
                s.n += s.m.files[i].n_chunks;
        s.v = calloc(s.n + 1, sizeof(*s.v));
        if (!s.v) {
                local_source_free(&s);
                return -ENOMEM;
        }
        s.n = 0;
        for (size_t i = 0; i < s.m.snap.n_files; i++)
                for (uint32_t k = 0; k < s.m.files[i].n_chunks; k++)
                        if (s.m.files[i].chunks[k].sha256[0]) {
                                strcpy(s.v[s.n].sha256, s.m.files[i].chunks[k].sha256);
                                s.v[s.n].file = (uint16_t)i;
                                s.v[s.n++].chunk = k;
                        }
        qsort(s.v, s.n, sizeof(*s.v), cmp_local);
        *ret = s;
        return 0;
}

/* Copy a chunk with this hash from the installed version into buf, checking it. */
static bool local_copy(struct local_source *s, const char *sha256, char *buf, size_t want)
{
        struct local_chunk key, *hit;
        _cleanup_close_ int fd = -1;
        char hex[SHA256_HEX_LEN + 1];
        uint64_t off;

        if (!s->v)
                return false;
        strcpy(key.sha256, sha256);
        hit = bsearch(&key, s->v, s->n, sizeof(*s->v), cmp_local);
        if (!hit)
                return false;
        fd = openat(s->dirfd, s->m.snap.files[hit->file].name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        off = (uint64_t)hit->chunk * s->m.chunk_size;
        if (fd < 0 || pread(fd, buf, want, (off_t)off) != (ssize_t)want)
                return false;
        op_sha256_hex(buf, want, hex);
        return strcmp(hex, sha256) == 0;
}

/* The same content as file i of m, installed already: a file of the current version of any
 * language in the cache (the languages of one image group share their root filesystem, and
 * every version has the same kernel) of the same size whose content is known to be what m's
 * file must hold: the same chunk root for the same chunk size when m is chunked (what every chunk
 * fetched would be checked against), the same whole-file sha256 when m is plain (the install
 * hashes it again). The donor version's record (.verified) must still describe its files: a file
 * written since is not trusted. On a match, *ret_dirfd is the donor version's directory and
 * ret_name the file's name there. */
static bool donor_find(const char *cache_dir, const struct s3_chunkman *m, size_t i, int *ret_dirfd,
                       char ret_name[SNAP_NAME_MAX])
{
        const struct snap_file *want = &m->snap.files[i];
        _cleanup_close_ int cache = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *de;
        bool found = false;
        DIR *dir;

        if (cache < 0 || !(dir = fdopendir(cache)))
                return false;
        cache = -1; /* the DIR owns it */
        while (!found && (de = readdir(dir))) {
                struct snap_manifest sm;
                char err[128];
                int fd;

                if (!snap_name_valid(de->d_name) ||
                    snap_open(cache_dir, de->d_name, NULL, &fd, &sm, err, sizeof(err)) < 0)
                        continue;
                for (size_t k = 0; !found && k < sm.n_files; k++) {
                        const struct snap_file *f = &sm.files[k];

                        if (f->size != want->size)
                                continue;
                        if (m->plain ? want->sha256[0] && strcmp(f->sha256, want->sha256) == 0
                                     : sm.chunk_size == m->chunk_size && want->root[0] &&
                                           strcmp(f->root, want->root) == 0) {
                                found = snap_verified_check(fd, &sm);
                                if (found)
                                        snprintf(ret_name, SNAP_NAME_MAX, "%s", f->name);
                        }
                }
                if (found)
                        *ret_dirfd = fd;
                else
                        close(fd);
        }
        closedir(dir);
        return found;
}

/* Stage file i of m as a hard link to an installed file of the same content (donor_find()): it
 * costs neither a fetch nor a byte of disk, and the languages of one image group keep sharing
 * their root's inode (and page cache) after a sync as they do after snapshot create. A staged file
 * that is that file already (a resumed sync) is kept. False when there is no such file or the link
 * cannot be made (another filesystem; a file the daemon may not link): then the file is fetched.
 * A linked file is never written: it belongs to the donor too. */
static bool stage_link(const char *cache_dir, const struct s3_chunkman *m, size_t i, int stage)
{
        const char *name = m->snap.files[i].name;
        _cleanup_close_ int dirfd = -1;
        char from[SNAP_NAME_MAX];
        struct stat a, b;

        if (!donor_find(cache_dir, m, i, &dirfd, from) ||
            fstatat(dirfd, from, &a, AT_SYMLINK_NOFOLLOW) < 0)
                return false;
        if (fstatat(stage, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
                return true;
        if (unlinkat(stage, name, 0) < 0 && errno != ENOENT)
                return false;
        return linkat(dirfd, from, stage, name, 0) == 0;
}

/* stage_link(), and for a file it does not link, a link an earlier run staged whose source is no
 * longer trusted removed: it is staged anew, never written through. 1: linked; 0: to stage;
 * or a negative errno with the message in errbuf. */
static int stage_link_or_unlink(const char *cache_dir, const struct s3_chunkman *m, size_t i,
                                int stage, char *errbuf, size_t errlen)
{
        const char *name = m->snap.files[i].name;
        struct stat st;

        if (stage_link(cache_dir, m, i, stage))
                return 1;
        if (fstatat(stage, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_nlink > 1 &&
            unlinkat(stage, name, 0) < 0)
                return op_errf(errbuf, errlen, -errno, "staging %s: %s", name, strerror(errno));
        return 0;
}

int s3_stage_link(const char *cache_dir, const struct s3_chunkman *m, char *errbuf, size_t errlen)
{
        _cleanup_close_ int stage = open_stage(cache_dir, m, true);
        int r = 0;

        if (stage < 0)
                return op_errf(errbuf, errlen, stage, "staging %s/%s: %s", m->snap.lang,
                               m->snap.version, strerror(-stage));
        for (size_t i = 0; i < m->snap.n_files && r >= 0; i++)
                r = stage_link_or_unlink(cache_dir, m, i, stage, errbuf, errlen);
        return r < 0 ? r : 0;
}

int s3_stage_prepare(const char *cache_dir, const struct s3_chunkman *m, char *errbuf,
                     size_t errlen)
{
        _cleanup_close_ int stage = open_stage(cache_dir, m, true), planfd = -1;
        _cleanup_free_ char *buf = malloc(m->chunk_size);
        _cleanup_fclose_ FILE *plan = NULL;
        struct local_source src = {.dirfd = -1};
        uint32_t present = 0, copied = 0, zero = 0, linked = 0;
        int r = 0;

        if (stage < 0)
                return op_errf(errbuf, errlen, stage, "staging %s/%s: %s", m->snap.lang,
                               m->snap.version, strerror(-stage));
        if (!buf)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        planfd =
            openat(stage, PLAN_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (planfd < 0 || !(plan = fdopen(planfd, "w")))
                return op_errf(errbuf, errlen, -errno, "staging plan: %s", strerror(errno));
        planfd = -1;
        if (!m->plain)
                local_source_open(cache_dir, m->snap.lang, m->chunk_size, &src);
        for (size_t i = 0; i < m->snap.n_files && r == 0; i++) {
                const struct snap_file *sf = &m->snap.files[i];
                _cleanup_close_ int fd = -1;
                struct stat st;

                r = stage_link_or_unlink(cache_dir, m, i, stage, errbuf, errlen);
                if (r < 0)
                        break;
                if (r == 1) {
                        linked += m->files[i].n_chunks;
                        r = 0;
                        continue;
                }
                fd = openat(stage, sf->name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);

                if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
                    ftruncate(fd, (off_t)sf->size) < 0) {
                        r = op_errf(errbuf, errlen, -errno, "staging %s: %s", sf->name,
                                    strerror(errno));
                        break;
                }
                for (uint32_t k = 0; k < m->files[i].n_chunks; k++) {
                        uint64_t off = (uint64_t)k * m->chunk_size;
                        size_t want = sf->size - off < m->chunk_size ? (size_t)(sf->size - off)
                                                                     : m->chunk_size;
                        const char *sha = m->plain ? NULL : m->files[i].chunks[k].sha256;
                        char hex[SHA256_HEX_LEN + 1];
                        bool was_there = off + want <= (uint64_t)st.st_size;

                        if (sha && was_there && pread(fd, buf, want, (off_t)off) == (ssize_t)want) {
                                if (!sha[0] ? op_is_zero(buf, want)
                                            : (op_sha256_hex(buf, want, hex), !strcmp(hex, sha))) {
                                        sha[0] ? present++ : zero++;
                                        continue;
                                }
                        }
                        if (sha && !sha[0]) { /* zeros: a hole if new, else written */
                                if (was_there) {
                                        memset(buf, 0, want);
                                        if (pwrite(fd, buf, want, (off_t)off) != (ssize_t)want) {
                                                r = op_errf(errbuf, errlen, -EIO, "staging %s: %s",
                                                            sf->name, strerror(errno));
                                                break;
                                        }
                                }
                                zero++;
                                continue;
                        }
                        if (sha && local_copy(&src, sha, buf, want)) {
                                if (pwrite(fd, buf, want, (off_t)off) != (ssize_t)want) {
                                        r = op_errf(errbuf, errlen, -EIO, "staging %s: %s",
                                                    sf->name, strerror(errno));
                                        break;
                                }
                                copied++;
                                continue;
                        }
                        fprintf(plan, "%zu %u\n", i, k);
                }
        }
        local_source_free(&src);
        if (r == 0) {
                fprintf(plan, "stats %u %u %u %u\n", present, copied, zero, linked);
                if (fflush(plan) != 0)
                        r = op_errf(errbuf, errlen, -EIO, "staging plan: %s", strerror(errno));
        }
        return r;
}

void s3_stage_plan_free(struct s3_stage_plan *p)
{
        free(p->need);
        *p = (struct s3_stage_plan){0};
}

int s3_stage_plan_read(const char *cache_dir, const struct s3_chunkman *m,
                       struct s3_stage_plan *ret)
{
        _cleanup_close_ int stage = open_stage(cache_dir, m, false), fd = -1;
        _cleanup_fclose_ FILE *f = NULL;
        struct s3_stage_plan p = {0};
        uint32_t total = 0;
        char line[64];
        bool stats = false;

        if (stage < 0)
                return stage;
        fd = openat(stage, PLAN_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || !(f = fdopen(fd, "r")))
                return -errno;
        fd = -1;
        for (size_t i = 0; i < m->snap.n_files; i++)
                total += m->files[i].n_chunks;
        p.need = calloc(total + 1, sizeof(*p.need));
        if (!p.need)
                return -ENOMEM;
        while (fgets(line, sizeof(line), f)) {
                unsigned file, chunk;

                if (sscanf(line, "stats %u %u %u %u", &p.present, &p.copied, &p.zero, &p.linked) ==
                    4) {
                        stats = true;
                } else if (sscanf(line, "%u %u", &file, &chunk) == 2 && file < m->snap.n_files &&
                           chunk < m->files[file].n_chunks && p.n_need < total) {
                        p.need[p.n_need].file = (uint16_t)file;
                        p.need[p.n_need++].chunk = chunk;
                } else {
                        s3_stage_plan_free(&p);
                        return -EBADMSG;
                }
        }
        if (!stats) {
                s3_stage_plan_free(&p);
                return -EBADMSG;
        }
        *ret = p;
        return 0;
}

int s3_stage_open(const char *cache_dir, const struct s3_chunkman *m, size_t file)
{
        _cleanup_close_ int stage = open_stage(cache_dir, m, false);
        int fd;

        if (stage < 0)
                return stage;
        if (file >= m->snap.n_files)
                return -EINVAL;
        fd = openat(stage, m->snap.files[file].name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

static int write_file(int dirfd, const char *name, const char *text)
{
        _cleanup_close_ int fd =
            openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);

        if (fd < 0)
                return -errno;
        if (op_write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

/* Staging left by syncs of versions that are not coming any more. */
static void remove_other_stages(int langfd)
{
        int fd = fcntl(langfd, F_DUPFD_CLOEXEC, 3);
        struct dirent *de;
        DIR *dir;

        if (fd < 0 || !(dir = fdopendir(fd))) {
                safe_close(fd);
                return;
        }
        while ((de = readdir(dir)))
                if (strncmp(de->d_name, ".sync-", 6) == 0)
                        snap_rmtree(langfd, de->d_name);
        closedir(dir);
}

int s3_stage_install(const char *cache_dir, const struct s3_chunkman *m, bool record_serial,
                     char *errbuf, size_t errlen)
{
        _cleanup_close_ int langfd = open_lang(cache_dir, m->snap.lang), stage = -1;
        _cleanup_free_ char *mtext = NULL, *ctext = NULL;
        char name[SNAP_NAME_MAX + 8];
        json_t *o;
        int r;

        if (langfd < 0 || s3_stage_name(m->snap.version, name, sizeof(name)) < 0)
                return op_errf(errbuf, errlen, -EINVAL, "cannot open %s/%s", cache_dir,
                               m->snap.lang);
        stage = openat(langfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (stage < 0)
                return op_errf(errbuf, errlen, -errno, "staging %s: %s", name, strerror(errno));
        for (size_t i = 0; i < m->snap.n_files; i++) {
                const struct snap_file *sf = &m->snap.files[i];
                char hex[SHA256_HEX_LEN + 1];
                uint64_t size;
                _cleanup_close_ int fd = -1;

                /* Chunked: every chunk was checked against the signed manifest as it arrived,
                 * was found staged, or was copied (s3_stage_prepare()): the chunk hashes are
                 * the file's checksum, no second pass over the whole file. The plain layout
                 * has only the whole file's hash. */
                if (!m->plain) {
                        struct stat st;

                        fd = openat(stage, sf->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size != sf->size)
                                return op_errf(errbuf, errlen, fd < 0 ? -errno : -EBADMSG,
                                               "staging %s: missing or of the wrong size",
                                               sf->name);
                        if (fsync(fd) < 0)
                                return op_errf(errbuf, errlen, -errno, "fsync %s: %s", sf->name,
                                               strerror(errno));
                        continue;
                }
                r = op_sha256_file(stage, sf->name, hex, &size);
                if (r < 0)
                        return op_errf(errbuf, errlen, r, "staging %s: %s", sf->name, strerror(-r));
                if (size != sf->size || strcmp(hex, sf->sha256) != 0) {
                        /* No chunk was wrong, yet the whole is: start over next time. */
                        snap_rmtree(langfd, name);
                        return op_errf(errbuf, errlen, -EBADMSG,
                                       "%s/%s: checksum mismatch (sha256 %s, manifest says %s)",
                                       m->snap.version, sf->name, hex, sf->sha256);
                }
                fd = openat(stage, sf->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0 || fsync(fd) < 0)
                        return op_errf(errbuf, errlen, -errno, "fsync %s: %s", sf->name,
                                       strerror(errno));
        }
        /* every byte was checked (above, or chunk by chunk): the pool does not hash the
         * files again while they are these files, unchanged */
        if ((r = snap_verified_write(stage, &m->snap)) < 0)
                return op_errf(errbuf, errlen, r, "write %s: %s", SNAP_VERIFIED_NAME, strerror(-r));
        o = snap_manifest_json(&m->snap);
        mtext = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        json_decref(o);
        ctext = m->plain ? NULL : s3_chunkman_text(m);
        if (!mtext || (!m->plain && !ctext))
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        unlinkat(stage, PLAN_NAME, 0);
        if ((r = write_file(stage, "manifest.json", mtext)) < 0 ||
            (ctext && (r = write_file(stage, "chunks.json", ctext)) < 0))
                return op_errf(errbuf, errlen, r, "write manifest: %s", strerror(-r));
        if (fsync(stage) < 0 || renameat(langfd, name, langfd, m->snap.version) < 0 ||
            fsync(langfd) < 0)
                return op_errf(errbuf, errlen, -errno, "install %s: %s", m->snap.version,
                               strerror(errno));
        /* The serial before "current": once current names this version, no older one may pass
         * the serial check again, whenever opd stops. */
        if (record_serial &&
            (r = s3_serial_write(cache_dir, m->snap.lang, m->serial, m->snap.version)) < 0)
                return op_errf(errbuf, errlen, r,
                               "install %s: cannot record serial %llu in %s/%s/" SERIAL_NAME
                               ": %s (current not switched)",
                               m->snap.version, (unsigned long long)m->serial, cache_dir,
                               m->snap.lang, strerror(-r));
        r = snap_set_current(cache_dir, m->snap.lang, m->snap.version);
        if (r < 0)
                return op_errf(errbuf, errlen, r, "switch current: %s", strerror(-r));
        remove_other_stages(langfd);
        return 0;
}

/* The inodes with more than one name du() has counted: the root of an image group, linked into
 * each of its languages' versions, is on the disk once. */
struct du_seen {
        struct stat *v;
        size_t n, cap;
};

/* Counted already? Remembers it when not (when it cannot, it counts it again: more, not less). */
static bool du_counted(struct du_seen *seen, const struct stat *st)
{
        if (st->st_nlink < 2 || S_ISDIR(st->st_mode))
                return false;
        for (size_t i = 0; i < seen->n; i++)
                if (seen->v[i].st_dev == st->st_dev && seen->v[i].st_ino == st->st_ino)
                        return true;
        if (seen->n == seen->cap) {
                size_t cap = seen->cap ? seen->cap * 2 : 16;
                struct stat *v = reallocarray(seen->v, cap, sizeof(*v));

                if (!v)
                        return false;
                seen->v = v;
                seen->cap = cap;
        }
        seen->v[seen->n++] = *st;
        return false;
}

/* Bytes allocated under a directory (st_blocks), without following links; a file of several
 * names counted once. */
static uint64_t du(int dirfd, struct du_seen *seen)
{
        int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        uint64_t total = 0;
        struct dirent *de;
        struct stat st;
        DIR *dir;

        if (fd < 0 || !(dir = fdopendir(fd))) {
                safe_close(fd);
                return 0;
        }
        while ((de = readdir(dir))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    du_counted(seen, &st))
                        continue;
                total += (uint64_t)st.st_blocks * 512;
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int sub = openat(
                            dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                total += du(sub, seen);
                }
        }
        closedir(dir);
        return total;
}

int s3_stage_check_space(const char *cache_dir, const struct s3_chunkman *m, uint64_t reserve,
                         uint64_t cache_max, char *errbuf, size_t errlen)
{
        _cleanup_close_ int langfd = open_lang(cache_dir, m->snap.lang), cache = -1, stage = -1;
        char name[SNAP_NAME_MAX + 8];
        uint64_t need = 0, staged = 0, avail, used;
        struct statvfs vfs;

        if (langfd < 0)
                return op_errf(errbuf, errlen, langfd, "%s: %s", cache_dir, strerror(-langfd));
        if (s3_stage_name(m->snap.version, name, sizeof(name)) == 0)
                stage = openat(langfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        for (size_t i = 0; i < m->snap.n_files; i++) {
                const struct snap_file *sf = &m->snap.files[i];
                struct stat st;

                /* linked to an installed file (s3_stage_link()): no new bytes. Only a link
                 * made counts: one that could not be made is fetched whole. */
                if (stage >= 0 && fstatat(stage, sf->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    st.st_nlink > 1)
                        continue;
                for (uint32_t k = 0; k < m->files[i].n_chunks; k++) {
                        uint64_t off = (uint64_t)k * m->chunk_size;

                        if (m->plain || m->files[i].chunks[k].sha256[0])
                                need +=
                                    sf->size - off < m->chunk_size ? sf->size - off : m->chunk_size;
                }
                if (stage >= 0 && fstatat(stage, sf->name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        staged += (uint64_t)st.st_blocks * 512;
        }
        need = need > staged ? need - staged : 0;
        if (fstatvfs(langfd, &vfs) < 0)
                return op_errf(errbuf, errlen, -errno, "statvfs %s: %s", cache_dir,
                               strerror(errno));
        avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        if (need + reserve > avail)
                return op_errf(errbuf, errlen, -ENOSPC,
                               "not enough space: %s/%s needs %llu MiB more in %s and "
                               "s3.reserve_mb = %llu, but only %llu MiB are free",
                               m->snap.lang, m->snap.version, (unsigned long long)(need >> 20),
                               cache_dir, (unsigned long long)(reserve >> 20),
                               (unsigned long long)(avail >> 20));
        if (cache_max) {
                struct du_seen seen = {0};

                cache = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                used = cache >= 0 ? du(cache, &seen) : 0;
                free(seen.v);
                if (used + need > cache_max)
                        return op_errf(errbuf, errlen, -ENOSPC,
                                       "not enough space: %s/%s needs %llu MiB more; the cache "
                                       "holds %llu MiB and s3.cache_max_mb = %llu",
                                       m->snap.lang, m->snap.version,
                                       (unsigned long long)(need >> 20),
                                       (unsigned long long)(used >> 20),
                                       (unsigned long long)(cache_max >> 20));
        }
        return 0;
}

int s3_stage_remove(const char *cache_dir, const struct s3_chunkman *m)
{
        _cleanup_close_ int langfd = open_lang(cache_dir, m->snap.lang);
        char name[SNAP_NAME_MAX + 8];

        if (langfd < 0)
                return langfd;
        if (s3_stage_name(m->snap.version, name, sizeof(name)) < 0)
                return -EINVAL;
        return snap_rmtree(langfd, name);
}

int s3_serial_read(const char *cache_dir, const char *lang, uint64_t *ret_serial,
                   char ret_version[SNAP_NAME_MAX])
{
        _cleanup_close_ int langfd = open_lang(cache_dir, lang), fd = -1;
        char buf[128], version[SNAP_NAME_MAX];
        unsigned long long serial;
        ssize_t n;

        if (langfd < 0)
                return langfd;
        fd = openat(langfd, SERIAL_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
                *ret_serial = 0;
                ret_version[0] = 0;
                return 0;
        }
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        if (sscanf(buf, "%llu %63s", &serial, version) != 2 || !snap_name_valid(version))
                return -EBADMSG;
        *ret_serial = serial;
        snprintf(ret_version, SNAP_NAME_MAX, "%s", version);
        return 0;
}

int s3_serial_write(const char *cache_dir, const char *lang, uint64_t serial, const char *version)
{
        _cleanup_close_ int langfd = open_lang(cache_dir, lang), fd = -1;
        char old[SNAP_NAME_MAX], text[128];
        uint64_t have;
        int r, k;

        if (langfd < 0)
                return langfd;
        r = s3_serial_read(cache_dir, lang, &have, old);
        if (r == 0 && have > serial)
                return 0;
        k = snprintf(text, sizeof(text), "%llu %s\n", (unsigned long long)serial, version);
        if (!snap_name_valid(version) || k < 0 || (size_t)k >= sizeof(text))
                return -EINVAL;
        fd = openat(langfd, SERIAL_NAME ".new",
                    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        if (op_write_all(fd, text, (size_t)k) < 0 || fsync(fd) < 0 ||
            renameat(langfd, SERIAL_NAME ".new", langfd, SERIAL_NAME) < 0 || fsync(langfd) < 0)
                return -errno;
        return 0;
}
