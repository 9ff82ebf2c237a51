/* session-store.c: sessions paused to disk: their directories under <cache>/.paused/<uid>/,
 * session.json written and read back (as untrusted input), the checks before a resume, the
 * quotas' usage, and the paused sessions found again when opd starts. Directories are 0700 and
 * files 0400, root's: a saved VM's memory is its user's data. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-space.h"
#include "host.h"
#include "log.h"
#include "opd.h"
#include "session-store.h"
#include "session.h"
#include "util.h"

static int get_u64(json_t *o, const char *key, uint64_t max, uint64_t *ret, char *errbuf,
                   size_t errlen)
{
        json_t *v = json_object_get(o, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) > max)
                return op_errf(errbuf, errlen, -EINVAL, "session.json: bad \"%s\"", key);
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

static int get_str(json_t *o, const char *key, char *buf, size_t size, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(o, key);

        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= size ||
            strlen(json_string_value(v)) != json_string_length(v))
                return op_errf(errbuf, errlen, -EINVAL, "session.json: bad \"%s\"", key);
        memcpy(buf, json_string_value(v), json_string_length(v) + 1);
        return 0;
}

int session_meta_parse(const char *text, size_t len, struct session_meta *ret, char *errbuf,
                       size_t errlen)
{
        struct session_meta m = {0};
        _cleanup_(json_decrefp) json_t *o = NULL;
        _cleanup_free_ char *mtext = NULL;
        json_t *snap, *limits;
        json_error_t jerr;
        uint64_t v = 0;
        int r;

        if (len > SESSION_META_MAX)
                return op_errf(errbuf, errlen, -EINVAL, "session.json: over %d bytes",
                               SESSION_META_MAX);
        o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(o))
                return op_errf(errbuf, errlen, -EINVAL, "session.json: not a JSON object");
        if ((r = get_u64(o, "format", SESSION_META_FORMAT, &v, errbuf, errlen)) < 0)
                return r;
        if (v != SESSION_META_FORMAT)
                return op_errf(errbuf, errlen, -EINVAL, "session.json: format %llu",
                               (unsigned long long)v);
        if ((r = get_str(o, "session", m.id, sizeof(m.id), errbuf, errlen)) < 0)
                return r;
        if (!op_session_id_valid(m.id, strlen(m.id)))
                return op_errf(errbuf, errlen, -EINVAL, "session.json: bad session id");
        if ((r = get_str(o, "workdir", m.workdir, sizeof(m.workdir), errbuf, errlen)) < 0)
                return r;
        if (!op_session_id_valid(m.workdir, strlen(m.workdir)))
                return op_errf(errbuf, errlen, -EINVAL, "session.json: bad workdir");
        if ((r = get_u64(o, "uid", UINT32_MAX - 1, &v, errbuf, errlen)) < 0)
                return r;
        m.uid = (uid_t)v;
        if ((r = get_str(o, "lang", m.lang, sizeof(m.lang), errbuf, errlen)) < 0)
                return r;
        if ((r = get_u64(o, "idle_timeout_ms", UINT32_MAX, &v, errbuf, errlen)) < 0)
                return r;
        m.idle_timeout_ms = (uint32_t)v;
        if ((r = get_u64(o, "max_lifetime_ms", UINT32_MAX, &v, errbuf, errlen)) < 0)
                return r;
        m.max_lifetime_ms = (uint32_t)v;
        if ((r = get_u64(o, "age_ms", UINT32_MAX, &m.age_ms, errbuf, errlen)) < 0 ||
            (r = get_u64(o, "paused_at_ns", INT64_MAX, &m.paused_at_ns, errbuf, errlen)) < 0 ||
            (r = get_u64(o, "execs", INT64_MAX, &m.execs, errbuf, errlen)) < 0 ||
            (r = get_u64(o, "vmstate_size", SNAP_FILE_SIZE_MAX, &m.vmstate_size, errbuf, errlen)) <
                0 ||
            (r = get_u64(o, "mem_size", SNAP_FILE_SIZE_MAX, &m.mem_size, errbuf, errlen)) < 0)
                return r;
        if ((r = get_str(o, "vmstate_sha256", m.vmstate_sha256, sizeof(m.vmstate_sha256), errbuf,
                         errlen)) < 0)
                return r;
        if (!op_sha256_hex_valid(m.vmstate_sha256))
                return op_errf(errbuf, errlen, -EINVAL, "session.json: bad vmstate_sha256");
        limits = json_object_get(o, "limits");
        if (!json_is_object(limits) || json_object_size(limits) > op_session_n_limit_fields)
                return op_errf(errbuf, errlen, -EINVAL, "session.json: bad \"limits\"");
        snap = json_object_get(o, "snapshot");
        if (!json_is_object(snap) || !(mtext = json_dumps(snap, JSON_COMPACT)))
                return op_errf(errbuf, errlen, -EINVAL, "session.json: bad \"snapshot\"");
        r = snap_manifest_parse(mtext, strlen(mtext), &m.m, errbuf, errlen);
        if (r < 0)
                return r;
        if (strcmp(m.m.lang, m.lang) != 0)
                return op_errf(errbuf, errlen, -EINVAL, "session.json: the snapshot is not %s's",
                               m.lang);
        if (m.mem_size != (uint64_t)m.m.memory_mb << 20)
                return op_errf(errbuf, errlen, -EINVAL, "session.json: mem_size is not memory_mb");
        if (json_object_get(o, "repl") && !json_is_boolean(json_object_get(o, "repl")))
                return op_errf(errbuf, errlen, -EINVAL, "session.json: bad \"repl\"");
        m.repl = json_is_true(json_object_get(o, "repl"));
        m.limits = json_incref(limits);
        *ret = m;
        return 0;
}

json_t *session_meta_json(const struct session_meta *m)
{
        json_t *snap = snap_manifest_json(&m->m), *o;

        if (!snap)
                return NULL;
        o = json_pack("{s:i, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:O, s:I, s:I, s:s, s:o}",
                      "format", SESSION_META_FORMAT, "session", m->id, "workdir", m->workdir, "uid",
                      (json_int_t)m->uid, "lang", m->lang, "idle_timeout_ms",
                      (json_int_t)m->idle_timeout_ms, "max_lifetime_ms",
                      (json_int_t)m->max_lifetime_ms, "age_ms", (json_int_t)m->age_ms,
                      "paused_at_ns", (json_int_t)m->paused_at_ns, "execs", (json_int_t)m->execs,
                      "limits", m->limits ? m->limits : json_object(), "vmstate_size",
                      (json_int_t)m->vmstate_size, "mem_size", (json_int_t)m->mem_size,
                      "vmstate_sha256", m->vmstate_sha256, "snapshot", snap);
        if (o && m->repl && json_object_set_new(o, "repl", json_true()) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

void session_meta_done(struct session_meta *m)
{
        json_decref(m->limits);
        m->limits = NULL;
}

static int mkdir_0700(const char *path)
{
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int session_store_dir(struct opd *d, uid_t uid, const char *id, bool staging, char **ret)
{
        _cleanup_free_ char *top = NULL, *mine = NULL;
        int r;

        if (asprintf(&top, "%s/%s", d->cfg.cache_dir, SESSION_STORE_DIR) < 0)
                return -ENOMEM;
        if (asprintf(&mine, "%s/%u", top, (unsigned)uid) < 0) {
                mine = NULL;
                return -ENOMEM;
        }
        if ((r = mkdir_0700(d->cfg.cache_dir)) < 0 || (r = mkdir_0700(top)) < 0 ||
            (r = mkdir_0700(mine)) < 0)
                return r;
        if (asprintf(ret, "%s/%s%s", mine, staging ? ".tmp-" : "", id) < 0)
                return -ENOMEM;
        return 0;
}

/* Bytes a directory's files take on disk (a sparse memory file: only its pages). */
static uint64_t dir_bytes(int dfd)
{
        static const char *const names[] = {"vmstate", "mem", SESSION_META_NAME};
        uint64_t n = 0;
        struct stat st;

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0)
                        n += (uint64_t)st.st_blocks * 512;
        return n;
}

static int fsync_at(int dfd, const char *name)
{
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

int session_store_commit(struct opd *d, struct session_meta *meta, const char *stage, char *errbuf,
                         size_t errlen)
{
        _cleanup_close_ int dfd = open(stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_(json_decrefp) json_t *o = NULL;
        _cleanup_free_ char *text = NULL, *final = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        if (dfd < 0)
                return op_errf(errbuf, errlen, -errno, "%s: %s", stage, strerror(errno));
        r = op_sha256_file(dfd, "vmstate", meta->vmstate_sha256, &meta->vmstate_size);
        if (r < 0)
                return op_errf(errbuf, errlen, r, "hashing vmstate: %s", strerror(-r));
        if (fstatat(dfd, "mem", &st, AT_SYMLINK_NOFOLLOW) < 0)
                return op_errf(errbuf, errlen, -errno, "mem: %s", strerror(errno));
        meta->mem_size = (uint64_t)st.st_size;
        o = session_meta_json(meta);
        text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (!text)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        fd = openat(dfd, SESSION_META_NAME, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0400);
        r = fd < 0 ? -errno : op_write_all(fd, text, strlen(text));
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                return op_errf_fs(errbuf, errlen, r, stage, "writing %s/%s", stage,
                                  SESSION_META_NAME);
        if ((r = fsync_at(dfd, "vmstate")) < 0 || (r = fsync_at(dfd, "mem")) < 0 ||
            fchmod(dfd, 0700) < 0 || fsync(dfd) < 0)
                return op_errf_fs(errbuf, errlen, r < 0 ? r : -errno, stage,
                                  "syncing the saved VM in %s", stage);
        r = session_store_dir(d, meta->uid, meta->id, false, &final);
        if (r < 0)
                return op_errf(errbuf, errlen, r, "%s", strerror(-r));
        if (rename(stage, final) < 0)
                return op_errf(errbuf, errlen, -errno, "rename to %s: %s", final, strerror(errno));
        return 0;
}

static int read_meta(int dfd, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = openat(dfd, SESSION_META_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        ssize_t k;

        if (fd < 0)
                return -errno;
        buf = malloc(SESSION_META_MAX + 1);
        if (!buf)
                return -ENOMEM;
        while ((k = read(fd, buf + len, SESSION_META_MAX + 1 - len)) > 0)
                len += (size_t)k;
        if (k < 0)
                return -errno;
        if (len > SESSION_META_MAX)
                return -EFBIG;
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* An error reading a saved session back: damage (-EBADMSG: the session and its files go), unless
 * it says nothing about the files (out of fds or memory, an I/O error): then it is passed on and
 * the session stays paused. */
static int read_err(int r)
{
        switch (-r) {
        case EMFILE:
        case ENFILE:
        case ENOMEM:
        case ENOBUFS:
        case EIO:
        case EINTR:
        case EAGAIN:
                return r;
        default:
                return -EBADMSG;
        }
}

/* The files of a saved session against its metadata: regular files of the recorded sizes, the
 * device state's hash as recorded. */
static int check_files(int dfd, const struct session_meta *m, char *errbuf, size_t errlen)
{
        const struct snap_file *rootfs = snap_manifest_file(&m->m, "rootfs.ext4");
        const struct {
                const char *name;
                uint64_t size;
        } files[] = {
            {"vmstate", m->vmstate_size},
            {"mem", m->mem_size},
            {"rootfs.ext4", rootfs ? rootfs->size : 0},
        };
        char hex[SHA256_HEX_LEN + 1];
        uint64_t size;
        struct stat st;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                if (fstatat(dfd, files[i].name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return op_errf(errbuf, errlen, read_err(-errno), "%s: %s", files[i].name,
                                       strerror(errno));
                if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != files[i].size)
                        return op_errf(errbuf, errlen, -EBADMSG,
                                       "%s is not a file of the %llu bytes recorded", files[i].name,
                                       (unsigned long long)files[i].size);
        }
        r = op_sha256_file(dfd, "vmstate", hex, &size);
        if (r < 0)
                return op_errf(errbuf, errlen, read_err(r), "vmstate: %s", strerror(-r));
        if (strcmp(hex, m->vmstate_sha256) != 0)
                return op_errf(errbuf, errlen, -EBADMSG,
                               "vmstate does not match its recorded sha256");
        return 0;
}

int session_store_open(struct opd *d, const struct session *s, struct session_meta *ret,
                       char **ret_dir, char *errbuf, size_t errlen)
{
        _cleanup_free_ char *dir = NULL, *text = NULL;
        _cleanup_close_ int dfd = -1;
        struct session_meta m;
        size_t len;
        int r;

        r = session_store_dir(d, s->uid, s->id, false, &dir);
        if (r < 0)
                return op_errf(errbuf, errlen, r, "%s", strerror(-r));
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return op_errf(errbuf, errlen, read_err(-errno), "%s: %s", dir, strerror(errno));
        r = read_meta(dfd, &text, &len);
        if (r < 0)
                return op_errf(errbuf, errlen, read_err(r), "%s: %s", SESSION_META_NAME,
                               strerror(-r));
        r = session_meta_parse(text, len, &m, errbuf, errlen);
        if (r < 0)
                return -EBADMSG;
        if (m.uid != s->uid || strcmp(m.id, s->id) != 0 || strcmp(m.lang, s->lang->name) != 0) {
                session_meta_done(&m);
                return op_errf(errbuf, errlen, -EBADMSG,
                               "session.json names another session, user or language");
        }
        if (strcmp(m.m.vmm, d->vms_host->drv->name) != 0) {
                session_meta_done(&m);
                return op_errf(errbuf, errlen, -EBADMSG, "it was saved by %s, opd runs %s", m.m.vmm,
                               d->vms_host->drv->name);
        }
        r = check_files(dfd, &m, errbuf, errlen);
        if (r < 0) {
                session_meta_done(&m);
                return r;
        }
        *ret = m;
        *ret_dir = TAKE_PTR(dir);
        return 0;
}

static int uid_dir(struct opd *d, uid_t uid)
{
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/%s/%u", d->cfg.cache_dir, SESSION_STORE_DIR, (unsigned)uid) < 0)
                return -ENOMEM;
        return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int session_store_take(struct opd *d, uid_t uid, const char *id, char **ret)
{
        _cleanup_free_ char *from = NULL, *to = NULL;
        int r;

        r = session_store_dir(d, uid, id, false, &from);
        if (r < 0)
                return r;
        if (asprintf(&to, "%s/%s/%u/.run-%s-%llu", d->cfg.cache_dir, SESSION_STORE_DIR,
                     (unsigned)uid, id, (unsigned long long)op_now_us()) < 0) {
                to = NULL;
                return -ENOMEM;
        }
        if (rename(from, to) < 0)
                return -errno;
        *ret = TAKE_PTR(to);
        return 0;
}

int session_store_untake(struct opd *d, uid_t uid, const char *id, const char *taken)
{
        _cleanup_free_ char *to = NULL;
        int r;

        r = session_store_dir(d, uid, id, false, &to);
        if (r < 0)
                return r;
        return rename(taken, to) < 0 ? -errno : 0;
}

void session_store_remove(struct opd *d, uid_t uid, const char *id)
{
        _cleanup_close_ int ufd = uid_dir(d, uid);
        char stage[OP_SESSION_ID_LEN + 8];

        if (ufd < 0)
                return;
        snprintf(stage, sizeof(stage), ".tmp-%s", id);
        (void)snap_rmtree(ufd, id);
        (void)snap_rmtree(ufd, stage);
}

static void usage_of(int ufd, unsigned *count, uint64_t *bytes)
{
        _cleanup_close_ int fd = fcntl(ufd, F_DUPFD_CLOEXEC, 3);
        struct dirent *de;
        DIR *dir;

        if (fd < 0 || !(dir = fdopendir(fd)))
                return;
        fd = -1;
        while ((de = readdir(dir))) {
                /* The files of a session resumed from disk: its VM maps them while it runs.
                 * Not a paused session, but disk its uid holds: counted in bytes. */
                bool resumed = strncmp(de->d_name, ".run-", 5) == 0;
                _cleanup_close_ int dfd = -1;

                if (de->d_name[0] == '.' && !resumed)
                        continue;
                dfd =
                    openat(dirfd(dir), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dfd < 0)
                        continue;
                if (!resumed)
                        (*count)++;
                *bytes += dir_bytes(dfd);
        }
        closedir(dir);
}

uint64_t session_store_bytes(struct opd *d, uid_t uid, const char *id)
{
        _cleanup_close_ int ufd = uid_dir(d, uid), dfd = -1;

        if (ufd < 0 || !op_session_id_valid(id, strlen(id)))
                return 0;
        dfd = openat(ufd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return dfd < 0 ? 0 : dir_bytes(dfd);
}

void session_store_usage(struct opd *d, uid_t uid, unsigned *ret_count, uint64_t *ret_bytes)
{
        _cleanup_free_ char *top = NULL;
        _cleanup_close_ int tfd = -1;
        struct dirent *de;
        DIR *dir;

        *ret_count = 0;
        *ret_bytes = 0;
        if (uid != (uid_t)-1) {
                _cleanup_close_ int ufd = uid_dir(d, uid);

                if (ufd >= 0)
                        usage_of(ufd, ret_count, ret_bytes);
                return;
        }
        if (asprintf(&top, "%s/%s", d->cfg.cache_dir, SESSION_STORE_DIR) < 0)
                return;
        tfd = open(top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (tfd < 0 || !(dir = fdopendir(tfd)))
                return;
        tfd = -1;
        while ((de = readdir(dir))) {
                _cleanup_close_ int ufd = -1;

                if (de->d_name[0] == '.')
                        continue;
                ufd =
                    openat(dirfd(dir), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (ufd >= 0)
                        usage_of(ufd, ret_count, ret_bytes);
        }
        closedir(dir);
}

/* One saved session found at start: registered as paused, or removed with the reason logged. */
static void load_one(struct opd *d, int ufd, uid_t uid, const char *name)
{
        _cleanup_close_ int dfd =
            openat(ufd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ char *text = NULL;
        const struct op_lang *lang;
        struct session_meta m = {0};
        struct session *s;
        uint64_t now = op_realtime_ns(), age;
        char err[512];
        size_t len;
        int r;

        if (dfd < 0)
                return;
        r = read_meta(dfd, &text, &len);
        if (r < 0) {
                snprintf(err, sizeof(err), "%s: %s", SESSION_META_NAME, strerror(-r));
                goto bad;
        }
        if (session_meta_parse(text, len, &m, err, sizeof(err)) < 0)
                goto bad;
        if (m.uid != uid || strcmp(m.id, name) != 0) {
                snprintf(err, sizeof(err), "session.json names another session or user");
                goto bad;
        }
        lang = op_langs_find(&d->langs, m.lang);
        if (!lang) {
                snprintf(err, sizeof(err), "language %s is not configured", m.lang);
                goto bad;
        }
        /* Held to the bounds configured now: lowered since the pause, they apply to it too. */
        if (m.idle_timeout_ms > d->cfg.session.bounds.idle_timeout_ms_max)
                m.idle_timeout_ms = d->cfg.session.bounds.idle_timeout_ms_max;
        if (m.max_lifetime_ms > d->cfg.session.bounds.lifetime_ms_max)
                m.max_lifetime_ms = d->cfg.session.bounds.lifetime_ms_max;
        age = m.age_ms + (now > m.paused_at_ns ? (now - m.paused_at_ns) / 1000000 : 0);
        if (age >= m.max_lifetime_ms) {
                log_info("session %s (%s, uid %u): expired while paused; removed", m.id, m.lang,
                         (unsigned)uid);
                session_meta_done(&m);
                (void)snap_rmtree(ufd, name);
                return;
        }
        r = session_new(d, lang, uid, m.idle_timeout_ms, m.max_lifetime_ms, m.limits, &s);
        if (r < 0) {
                session_meta_done(&m);
                return;
        }
        if (session_set_id(s, m.id) < 0) { /* a session of that id exists already */
                session_destroy(s, SESSION_END_FAILED);
                snprintf(err, sizeof(err), "session id %s is taken", m.id);
                goto bad;
        }
        memcpy(s->workdir, m.workdir, sizeof(s->workdir));
        s->repl = m.repl;
        s->execs = m.execs;
        s->t_open = op_now_us() - age * 1000;
        snprintf(s->snap_version, sizeof(s->snap_version), "%s", m.m.version);
        session_set_state(s, SESSION_PAUSED);
        log_info("session %s (%s, uid %u): paused on disk, listed again", m.id, m.lang,
                 (unsigned)uid);
        session_meta_done(&m);
        return;
bad:
        log_warn("session %s (uid %u) paused on disk is damaged and was removed: %s", name,
                 (unsigned)uid, err);
        session_meta_done(&m);
        (void)snap_rmtree(ufd, name);
}

static void load_uid(struct opd *d, int tfd, const char *uname)
{
        _cleanup_close_ int ufd =
            openat(tfd, uname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int fd = -1;
        struct dirent *de;
        char *end;
        unsigned long uid;
        DIR *dir;

        uid = strtoul(uname, &end, 10);
        if (ufd < 0 || *end || end == uname || uid >= UINT32_MAX)
                return;
        fd = fcntl(ufd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0 || !(dir = fdopendir(fd)))
                return;
        fd = -1;
        while ((de = readdir(dir))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (strncmp(de->d_name, ".tmp-", 5) == 0 ||
                    !op_session_id_valid(de->d_name, strlen(de->d_name))) {
                        (void)snap_rmtree(ufd, de->d_name); /* a killed save, or not ours */
                        continue;
                }
                load_one(d, ufd, (uid_t)uid, de->d_name);
        }
        closedir(dir);
}

void session_store_load(struct opd *d)
{
        _cleanup_free_ char *top = NULL;
        _cleanup_close_ int tfd = -1;
        struct dirent *de;
        DIR *dir;

        if (asprintf(&top, "%s/%s", d->cfg.cache_dir, SESSION_STORE_DIR) < 0)
                return;
        tfd = open(top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (tfd < 0)
                return;
        dir = fdopendir(tfd);
        if (!dir)
                return;
        tfd = -1;
        while ((de = readdir(dir)))
                if (de->d_name[0] != '.')
                        load_uid(d, dirfd(dir), de->d_name);
        closedir(dir);
}
