/* session-fork.c: the session operations that save a session's VM whole (vm_snapshot() of a
 * clone): session_fork (saved once, then N new sessions restored from it with its memory mapped
 * privately, the parent resumed), session_pause (saved into the cache, its VM destroyed; see
 * session-store.c) and session_resume (restored under the same id). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bgjob.h"
#include "cleanup.h"
#include "client.h"
#include "evtimer.h"
#include "fs-space.h"
#include "host.h"
#include "log.h"
#include "msg-session-fork.h"
#include "opd.h"
#include "pool.h"
#include "request.h"
#include "session-fork.h"
#include "session-store.h"
#include "session.h"
#include "snap-ref.h"
#include "util.h"
#include "vm.h"

#define FORK_DIR "forks" /* <cache>/.paused/../forks: images of forks in the making */

enum job_kind { JOB_FORK, JOB_PAUSE, JOB_RESUME, JOB_IMAGE };

struct child {
        struct job *job;
        char id[OP_SESSION_ID_LEN + 1];
        bool done, ok;
};

/* One fork, pause or resume in progress: the VM being saved (detached from its session) or the
 * VMs being restored, and the answer owed. */
struct job {
        enum job_kind kind;
        struct opd *d;
        char id[OP_SESSION_ID_LEN + 1]; /* the session asked about */
        uid_t uid;
        char workdir[OP_SESSION_ID_LEN + 1]; /* the session's guest directory */
        const struct op_lang *lang;
        bool repl;           /* the session is a repl session (its children are too) */
        struct vm *vm;       /* saving: the session's VM */
        struct pool *pool;   /* ... and the pool it came from */
        struct uid_use *use; /* ... and its count against the uid (session_detach_vm()) */
        char *dir;           /* where it is saved */
        struct snap_manifest m;
        struct reply_slot *reply;
        struct event *timer; /* the bound on restoring the children */
        struct session_meta meta;
        uint32_t count;
        unsigned pending;
        bool timer_fired;
        bool kept_paused; /* JOB_RESUME: the restore failed, the session is paused again */
        char failed[256]; /* ... and why */
        bool committing;  /* JOB_PAUSE: its files are hashed and synced by a background job */
        bool orphan;      /* ... when opd stopped: answered, off the list, freed by that job */
        struct child *children;
        uint64_t t_start, t_saved, t_done;
        uint64_t t_open;             /* the session's birth: its forks share its age and lifetime */
        session_image_fn image_done; /* JOB_IMAGE */
        LIST_ENTRY(job) link;        /* on d->session_jobs from job_new() to job_free() */
};

struct session_jobs {
        LIST_HEAD(, job) list;
};

/* A job of d's, on its list (so that opd's stop finds it), or NULL. */
static struct job *job_alloc(struct opd *d, enum job_kind kind)
{
        struct job *j;

        if (!d->session_jobs && !(d->session_jobs = calloc(1, sizeof(*d->session_jobs))))
                return NULL;
        j = calloc(1, sizeof(*j));
        if (!j)
                return NULL;
        j->kind = kind;
        j->d = d;
        j->t_start = op_now_us();
        LIST_INSERT_HEAD(&d->session_jobs->list, j, link);
        return j;
}

/* The VM the job held is destroyed or given back to its session: the job counts it no more. */
static void job_uncount(struct job *j)
{
        if (!j->use)
                return;
        j->use->vms--;
        uid_use_put(j->use);
        j->use = NULL;
        opd_schedule_reap(j->d); /* a uid's VM slot is free: its queued requests may start */
}

static void job_free(struct job *j)
{
        if (!j)
                return;
        job_uncount(j);
        if (!j->orphan)
                LIST_REMOVE(j, link);
        if (j->timer)
                event_free(j->timer);
        free(j->children);
        free(j->dir);
        session_meta_done(&j->meta);
        free(j);
}

static double ms(uint64_t from, uint64_t to)
{
        return to >= from ? (double)(to - from) / 1000.0 : 0.0;
}

static void job_answer(struct job *j, json_t *reply)
{
        struct reply_slot *slot = j->reply;

        j->reply = NULL;
        if (slot)
                reply_slot_send(slot, reply);
        else
                json_decref(reply);
}

static void job_fail(struct job *j, enum op_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_fail(struct job *j, enum op_err code, const char *fmt, ...)
{
        char msg[640];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        log_info("session %s (uid %u): %s refused: %s", j->id, (unsigned)j->uid,
                 j->kind == JOB_FORK    ? "fork"
                 : j->kind == JOB_PAUSE ? "pause"
                 : j->kind == JOB_IMAGE ? "save"
                                        : "resume",
                 msg);
        if (j->reply)
                job_answer(j, op_error_reply(reply_slot_id(j->reply), code, "%s", msg));
}

/* The session asked about, if it still exists (another client may have closed it meanwhile). */
static struct session *job_session(struct job *j)
{
        return session_lookup(j->d, j->id, j->uid);
}

/* The saved VM goes back to its session (fork: it continues) or is destroyed. */
static void give_back(struct job *j, bool resume)
{
        struct session *s = job_session(j);
        struct vm *vm = j->vm;
        int k;

        j->vm = NULL;
        if (!vm)
                return;
        if (!resume || !s || s->state != SESSION_SAVING || (k = vm_resume(vm)) < 0) {
                vm_destroy(vm);
                job_uncount(j);
                if (j->pool)
                        pool_release(j->pool);
                j->pool = NULL;
                if (s && s->state == SESSION_SAVING)
                        session_destroy(s, SESSION_END_FAILED);
                return;
        }
        session_attach_vm(s, vm, j->pool);
        job_uncount(j);
        j->pool = NULL;
}

/* ---- the children of a fork, and a resumed session: restored, resumed, attached ---- */

static struct child *child_of(struct vm *vm, void *userdata)
{
        return userdata;
}

static void child_done(struct child *c, bool ok)
{
        struct job *j = c->job;

        if (c->done)
                return;
        c->done = true;
        c->ok = ok;
        if (--j->pending == 0)
                job_finish(j);
}

/* A resume whose VM failed after its files were checked (the restore failed or missed its
 * deadline, the VMM died, the VM could not be resumed): nothing says they are damaged, so the
 * session stays paused with them, back under its name, and may be resumed again. Its VM goes.
 * false: they could not be put back, and the session ends. */
static bool keep_paused(struct job *j, struct session *s, const char *why)
{
        struct vm *vm;
        int k;

        if (j->kind != JOB_RESUME || !s || s->state != SESSION_BOOTING || !j->dir)
                return false;
        k = session_store_untake(j->d, j->uid, j->id, j->dir);
        if (k < 0) {
                log_warn("session %s (uid %u): cannot keep it paused: %s", j->id, (unsigned)j->uid,
                         strerror(-k));
                return false;
        }
        /* the restoring VM's image removes the taken name when it goes, which is gone now */
        free(j->dir);
        j->dir = NULL;
        vm = s->vm;
        s->vm = NULL;
        if (vm)
                vm_destroy(vm);
        session_saved(s); /* paused, its VM no longer counted */
        j->kept_paused = true;
        snprintf(j->failed, sizeof(j->failed), "%s", why);
        log_warn("session %s (uid %u): not resumed (%s); it stays paused", j->id, (unsigned)j->uid,
                 why);
        return true;
}

static void on_child_loaded(struct vm *vm, void *userdata)
{
        struct child *c = child_of(vm, userdata);
        struct session *s = session_lookup(c->job->d, c->id, c->job->uid);
        int k;

        if (!s || s->state != SESSION_BOOTING || s->vm != vm) {
                child_done(c, false);
                return;
        }
        k = vm_resume(vm);
        if (k < 0) {
                if (!keep_paused(c->job, s, strerror(-k)))
                        session_destroy(s, SESSION_END_FAILED);
                child_done(c, false);
                return;
        }
        s->vm = NULL;
        session_attach_vm(s, vm, NULL); /* IDLE: execs may come */
        child_done(c, true);
}

static void on_child_failed(struct vm *vm, const char *why, void *userdata)
{
        struct child *c = child_of(vm, userdata);
        struct job *j = c->job;
        struct session *s = session_lookup(j->d, c->id, j->uid);

        log_warn("session %s (uid %u): restoring %s failed: %s", c->id, (unsigned)j->uid, vm->name,
                 why);
        if (s && !keep_paused(j, s, why))
                session_destroy(s, SESSION_END_FAILED);
        child_done(c, false);
}

static const struct vm_events child_events = {
    .ready = on_child_loaded,
    .failed = on_child_failed,
};

/* Start restoring session s (BOOTING) from img; its VM counted against its uid. */
static int start_child(struct job *j, struct child *c, struct session *s, struct snap_ref *img)
{
        struct vm *vm;
        int k;

        c->job = j;
        memcpy(c->id, s->id, sizeof(c->id));
        k = vm_restore(j->d->vms_host, s->lang, img, &child_events, c, &vm);
        if (k < 0)
                return k;
        session_restoring(s, vm);
        j->pending++;
        return 0;
}

/* Bound on the children: whatever has not loaded by then is reported as failed. */
static void on_job_timer(evutil_socket_t fd, short what, void *arg)
{
        struct job *j = arg;

        j->timer_fired = true;
        for (uint32_t i = 0; i < j->count; i++) {
                struct child *c = &j->children[i];
                struct session *s;

                if (c->done)
                        continue;
                /* Its VM's callbacks point at the job: the VM goes with the session. */
                s = session_lookup(j->d, c->id, j->uid);
                c->done = true;
                j->pending--;
                if (s && !keep_paused(j, s, "its restore took longer than restore_timeout_ms"))
                        session_destroy(s, SESSION_END_FAILED);
        }
        job_finish(j);
}

/* ---- quotas ---- */

/* count more sessions and VMs for uid: session.max, session.max_per_uid, max_vms,
 * max_vms_per_uid. */
bool session_room_for(struct opd *d, uid_t uid, uint32_t sessions, uint32_t vms, char *why,
                      size_t whylen)
{
        const struct op_session_config *c = &d->cfg.session;
        unsigned mine = sessions_of(d, uid), all = sessions_of(d, (uid_t)-1);
        struct uid_use *u;
        unsigned used;

        if (all + sessions > c->max) {
                snprintf(why, whylen,
                         "%u sessions are open and this needs %u more: session.max is %u", all,
                         sessions, c->max);
                return false;
        }
        if (c->max_per_uid && mine + sessions > c->max_per_uid) {
                snprintf(why, whylen,
                         "uid %u has %u sessions and this needs %u more: session.max_per_uid is "
                         "%u; close one first",
                         (unsigned)uid, mine, sessions, c->max_per_uid);
                return false;
        }
        if (d->cfg.max_vms_per_uid && !uid_exempt(d, uid)) {
                u = uid_use_get(d, uid);
                used = u ? u->vms : 0;
                uid_use_put(u);
                if (used + vms > d->cfg.max_vms_per_uid) {
                        snprintf(why, whylen,
                                 "uid %u uses %u VMs and this needs %u more: max_vms_per_uid is "
                                 "%u",
                                 (unsigned)uid, used, vms, d->cfg.max_vms_per_uid);
                        return false;
                }
        }
        while (d->vms_host->n_vms + vms > d->cfg.max_vms && pools_reclaim_slot(d->pools))
                ;
        if (d->vms_host->n_vms + vms > d->cfg.max_vms) {
                snprintf(why, whylen, "%u VMs run and this needs %u more: max_vms is %u",
                         d->vms_host->n_vms, vms, d->cfg.max_vms);
                return false;
        }
        return true;
}

/* The paused sessions' quotas (session.paused_max, paused_max_per_uid, paused_disk_mb,
 * paused_disk_mb_per_uid) on what the store holds: before a save, with room for more (1)
 * sessions; once a save is committed (more: 0), with its directory counted, and those of the
 * pauses committed while it was saved. */
static bool paused_room(struct opd *d, uid_t uid, unsigned more, char *why, size_t whylen)
{
        const struct op_session_config *c = &d->cfg.session;
        unsigned mine, all;
        uint64_t mine_b, all_b;

        session_store_usage(d, uid, &mine, &mine_b);
        session_store_usage(d, (uid_t)-1, &all, &all_b);
        if (all + more > c->paused_max) {
                snprintf(why, whylen, "%u sessions are paused on disk: session.paused_max is %u",
                         all, c->paused_max);
                return false;
        }
        if (mine + more > c->paused_max_per_uid) {
                snprintf(why, whylen,
                         "uid %u has %u sessions paused on disk: session.paused_max_per_uid is %u",
                         (unsigned)uid, mine, c->paused_max_per_uid);
                return false;
        }
        if (all_b >> 20 > c->paused_disk_mb) {
                snprintf(why, whylen,
                         "paused sessions would take %llu MiB on disk: session.paused_disk_mb is "
                         "%u",
                         (unsigned long long)(all_b >> 20), c->paused_disk_mb);
                return false;
        }
        if (mine_b >> 20 > c->paused_disk_mb_per_uid) {
                snprintf(why, whylen,
                         "uid %u's paused sessions would take %llu MiB on disk: "
                         "session.paused_disk_mb_per_uid is %u",
                         (unsigned)uid, (unsigned long long)(mine_b >> 20),
                         c->paused_disk_mb_per_uid);
                return false;
        }
        return true;
}

/* ---- the end of a job ---- */

static void finish_fork(struct job *j)
{
        json_t *forks = json_array(), *reply;
        unsigned ok = 0;

        for (uint32_t i = 0; i < j->count; i++)
                if (j->children[i].ok) {
                        json_array_append_new(forks, json_string(j->children[i].id));
                        ok++;
                }
        log_info("session %s uid=%u forked into %u of %u in %.1fms (save %.1fms)", j->id,
                 (unsigned)j->uid, ok, j->count, ms(j->t_start, j->t_done),
                 ms(j->t_start, j->t_saved));
        if (!ok) {
                json_decref(forks);
                job_fail(j, OP_ERR_VM_FAILED, "no fork of session %s could be restored", j->id);
                return;
        }
        reply =
            json_pack("{s:O?, s:b, s:s, s:o, s:I, s:{s:f, s:f, s:f}}", "id",
                      reply_slot_id(j->reply), "ok", 1, "session", j->id, "forks", forks, "failed",
                      (json_int_t)(j->count - ok), "timings_ms", "save", ms(j->t_start, j->t_saved),
                      "restore", ms(j->t_saved, j->t_done), "total", ms(j->t_start, j->t_done));
        job_answer(j, reply ? reply : op_error_reply(NULL, OP_ERR_INTERNAL, "out of memory"));
}

void job_finish(struct job *j)
{
        struct session *s;

        if (j->pending)
                return;
        j->t_done = op_now_us();
        if (j->kind == JOB_FORK)
                finish_fork(j);
        else if (j->kind == JOB_RESUME) {
                s = job_session(j);
                if (j->children[0].ok && s && s->state == SESSION_IDLE) {
                        log_info("session %s uid=%u resumed in %.1fms", j->id, (unsigned)j->uid,
                                 ms(j->t_start, j->t_done));
                        job_answer(j, json_pack("{s:O?, s:b, s:s, s:s, s:{s:f}}", "id",
                                                reply_slot_id(j->reply), "ok", 1, "session", j->id,
                                                "state", "idle", "timings_ms", "resume",
                                                ms(j->t_start, j->t_done)));
                } else if (j->kept_paused)
                        job_fail(j, OP_ERR_VM_FAILED,
                                 "session %s could not be restored from disk (%s); it stays "
                                 "paused, its saved VM kept: resume it again, or close it",
                                 j->id, j->failed);
                else
                        job_fail(j, OP_ERR_VM_FAILED,
                                 "session %s could not be restored from disk; it was removed",
                                 j->id);
        }
        job_free(j);
}

/* opd stops while j resumes a session. Still being restored, the session stays paused on disk:
 * its files go back under its name (the restoring VM's reference removes the taken name, which
 * is gone then). Closed meanwhile (its VM destroyed, perhaps not yet freed), its files go. */
static void stop_resume(struct job *j)
{
        struct session *s = job_session(j);
        int k;

        if (j->children[0].done || !j->dir)
                return;
        if (!s || s->state != SESSION_BOOTING) {
                k = snap_rmtree(AT_FDCWD, j->dir);
                if (k < 0)
                        log_warn("session %s (uid %u): cannot remove %s: %s", j->id,
                                 (unsigned)j->uid, j->dir, strerror(-k));
                return;
        }
        k = session_store_untake(j->d, j->uid, j->id, j->dir);
        if (k < 0)
                log_warn("session %s (uid %u): cannot keep it paused: %s", j->id, (unsigned)j->uid,
                         strerror(-k));
}

void session_jobs_stop(struct opd *d)
{
        struct job *j;

        while (d->session_jobs && (j = LIST_FIRST(&d->session_jobs->list))) {
                job_fail(j, OP_ERR_SHUTTING_DOWN, "opd is shutting down");
                if (j->kind == JOB_RESUME)
                        stop_resume(j);
                for (uint32_t i = 0; i < j->count; i++) {
                        struct child *c = &j->children[i];
                        struct session *s = c->job ? session_lookup(d, c->id, j->uid) : NULL;

                        /* its VM's callbacks point at the job: the VM goes with the session */
                        if (!c->done && s)
                                session_destroy(s, SESSION_END_STOPPING);
                        c->done = true;
                }
                if (j->vm) {
                        /* still saving: the VM goes; its session, SAVING, ends with the others
                         * in sessions_stop() */
                        vm_destroy(j->vm);
                        j->vm = NULL;
                        job_uncount(j);
                        if (j->pool)
                                pool_release(j->pool);
                        j->pool = NULL;
                        if (j->kind == JOB_PAUSE)
                                session_store_remove(d, j->uid, j->id);
                }
                /* a fork's image, saved or not: its restores ended above (a VMM that maps it
                 * keeps what it mapped until it dies) */
                if ((j->kind == JOB_FORK || j->kind == JOB_IMAGE) && j->dir)
                        snap_rmtree(AT_FDCWD, j->dir);
                if (j->committing) {
                        /* its background job is killed next (bgjobs_cancel_all()) and ends it */
                        LIST_REMOVE(j, link);
                        j->orphan = true;
                        continue;
                }
                job_free(j);
        }
        free(d->session_jobs);
        d->session_jobs = NULL;
}

void session_forks_clean(struct opd *d)
{
        _cleanup_free_ char *dir = NULL;
        int k;

        if (asprintf(&dir, "%s/%s", d->cfg.cache_dir, FORK_DIR) < 0)
                return;
        k = snap_rmtree(AT_FDCWD, dir);
        if (k < 0)
                log_warn("cannot remove %s: %s", dir, strerror(-k));
}

enum op_err session_save_err_code(int k)
{
        return op_err_is_nospace(k) ? OP_ERR_INTERNAL : OP_ERR_VM_FAILED;
}

/* The save failed (err). A VM the VMM kept whole (PAUSED) goes back to its session, which runs
 * on: the failure was the save's (its files: a file system full), internal_error. A VM that died
 * takes its session with it: vm_failed. */
static void fail_saved(struct job *j, struct vm *vm, const char *what, const char *err)
{
        bool whole = vm->state == VM_PAUSED;
        struct session *s = job_session(j);

        job_fail(j, whole ? OP_ERR_INTERNAL : OP_ERR_VM_FAILED, "session %s %s: %s; %s", j->id,
                 what, err,
                 !s      ? "it was closed meanwhile"
                 : whole ? "it runs on"
                         : "its VM is gone and the session with it");
        give_back(j, whole);
}

/* ---- fork ---- */

static void on_fork_saved(struct vm *vm, const char *err, void *userdata)
{
        struct job *j = userdata;
        struct opd *d = j->d;
        struct snap_ref *img = NULL;
        struct session *parent;
        char why[512];
        int k;

        j->t_saved = op_now_us();
        if (err) {
                fail_saved(j, vm, "not forked", err);
                snap_rmtree(AT_FDCWD, j->dir);
                job_free(j);
                return;
        }
        k = snap_ref_image(j->dir, &j->m, true, &img);
        give_back(j, true); /* the parent runs on */
        if (k < 0) {
                snap_rmtree(AT_FDCWD, j->dir);
                job_fail(j, OP_ERR_INTERNAL, "opening the saved session: %s", strerror(-k));
                job_free(j);
                return;
        }
        parent = job_session(j);
        /* The quota was checked before the save; what changed meanwhile is checked again. */
        if (!session_room_for(d, j->uid, j->count, j->count, why, sizeof(why))) {
                snap_ref_put(img);
                job_fail(j, OP_ERR_QUOTA_EXCEEDED, "%s", why);
                job_free(j);
                return;
        }
        for (uint32_t i = 0; i < j->count; i++) {
                struct session *s;

                k = session_new(d, j->lang, j->uid,
                                parent ? parent->idle_timeout_ms
                                       : d->cfg.session.bounds.idle_timeout_ms_default,
                                parent ? parent->max_lifetime_ms
                                       : d->cfg.session.bounds.lifetime_ms_default,
                                parent ? parent->limits : NULL, &s);
                if (k < 0) {
                        /* the rest are never started: failed, and not pending */
                        for (uint32_t m = i; m < j->count; m++)
                                j->children[m].done = true;
                        break;
                }
                /* A fork is as old as its parent: forking does not prolong max_lifetime_ms. */
                s->t_open = j->t_open;
                snprintf(s->snap_version, sizeof(s->snap_version), "%s", j->m.version);
                if (parent)
                        s->execs = parent->execs;
                /* Its interpreter, a copy of the parent's, draws its own random numbers. */
                s->repl = j->repl;
                s->repl_reseed = j->repl;
                memcpy(s->workdir, j->workdir, sizeof(s->workdir));
                k = start_child(j, &j->children[i], s, img);
                if (k < 0) {
                        session_destroy(s, SESSION_END_FAILED);
                        j->children[i].done = true;
                }
        }
        snap_ref_put(img); /* the children hold it; the last one removes the directory */
        if (j->pending) {
                j->timer = evtimer_new(d->base, on_job_timer, j);
                if (j->timer)
                        op_timer_arm_ms(j->timer, d->cfg.restore_timeout_ms + 1000);
                return;
        }
        job_finish(j);
}

static struct job *job_new(struct client *c, json_t *id, enum job_kind kind, struct session *s,
                           uint32_t count)
{
        struct job *j = job_alloc(client_opd(c), kind);

        if (!j)
                return NULL;
        memcpy(j->id, s->id, sizeof(j->id));
        memcpy(j->workdir, s->workdir, sizeof(j->workdir));
        j->uid = s->uid;
        j->lang = s->lang;
        j->repl = s->repl;
        j->t_open = s->t_open;
        j->count = count;
        j->children = calloc(count ? count : 1, sizeof(*j->children));
        j->reply = reply_slot_new(c, id);
        if (!j->children || !j->reply) {
                job_free(j);
                return NULL;
        }
        return j;
}

/* Room to save s's VM into dir, checked before it is stopped: its RAM takes up to its memory size
 * there (pages of zeros stay holes), and on a tmpfs, reading the pages its snapshot's memory
 * file has none for yet takes them from the same file system (that file's holes fill in; dir is
 * on it, as the rootfs is linked). A save that runs out anyway fails and the session runs on. */
static int save_room(struct session *s, const char *dir, char *why, size_t whylen)
{
        const struct snap_ref *snap = s->vm->snap;
        uint64_t need = (uint64_t)snap->m.memory_mb << 20, holes = 0;
        struct op_fs_space fs;
        struct stat st;

        if (op_fs_space(dir, &fs) < 0)
                return 0; /* the save says what goes wrong */
        if (fs.tmpfs && fstatat(snap->dirfd, "mem", &st, 0) == 0 &&
            (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size)
                holes = (uint64_t)st.st_size - (uint64_t)st.st_blocks * 512;
        if (fs.avail >= need + holes)
                return 0;
        return op_errf(why, whylen, -ENOSPC,
                       "not enough space in %s: %.1f MiB free, saving the VM may need %llu MiB "
                       "(its memory%s)",
                       fs.mount, (double)fs.avail / (1 << 20),
                       (unsigned long long)((need + holes + (1 << 20) - 1) >> 20),
                       holes ? ", and the pages its snapshot's memory file on this tmpfs has yet "
                               "to take"
                             : "");
}

/* The session s (IDLE, a clone) stops and is saved into dir by the job: its VM detached. On
 * failure why says what failed. */
static int start_save(struct job *j, struct session *s, const char *dir,
                      void (*done)(struct vm *, const char *, void *), char *why, size_t whylen)
{
        int k;

        j->m = s->vm->snap->m;
        k = save_room(s, dir, why, whylen);
        if (k < 0)
                return k;
        k = snap_ref_link_rootfs(s->vm->snap, dir);
        if (k < 0)
                return op_errf_fs(why, whylen, k, dir, "linking the snapshot's rootfs into %s",
                                  dir);
        j->vm = session_detach_vm(s, &j->pool, &j->use);
        session_set_state(s, SESSION_SAVING);
        k = vm_snapshot(j->vm, dir, done, j);
        if (k < 0) {
                /* Not started: the VM runs as it did; the session gets it back as it was. */
                session_attach_vm(s, j->vm, j->pool);
                job_uncount(j);
                j->vm = NULL;
                j->pool = NULL;
                op_errf_fs(why, whylen, k, dir, "saving the VM into %s", dir);
        }
        return k;
}

static bool session_saveable(struct client *c, json_t *id, struct session *s, const char *what)
{
        if (s->state != SESSION_IDLE) {
                client_send(c, op_error_reply(id, OP_ERR_BUSY,
                                              "session %s is %s: only an idle session can be %s",
                                              s->id, session_state_name(s->state), what));
                return false;
        }
        if (!s->vm || !s->vm->snap) {
                client_send(c, op_error_reply(id, OP_ERR_UNAVAILABLE,
                                              "session %s runs a cold-booted VM (%s has no "
                                              "snapshot): only a VM restored from a snapshot can "
                                              "be %s",
                                              s->id, s->lang->name, what));
                return false;
        }
        return true;
}

/* The caller's session sid; NULL when it has none of that id (answered not_found). */
static struct session *find_own(struct client *c, json_t *id, const char *sid)
{
        struct session *s = session_find(client_opd(c), sid, client_uid(c), false);

        if (!s)
                client_send(c, session_not_found(id, sid));
        return s;
}

void op_session_fork(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        char sid[OP_SESSION_ID_LEN + 1], err[512];
        _cleanup_free_ char *dir = NULL;
        struct session *s;
        uint32_t count;
        struct job *j;
        int k;

        if (op_session_fork_decode(req, d->cfg.session.fork_max, sid, &count, err, sizeof(err)) <
            0) {
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err));
                return;
        }
        s = find_own(c, id, sid);
        if (!s)
                return;
        if (!session_saveable(c, id, s, "forked"))
                return;
        if (!session_room_for(d, s->uid, count, count, err, sizeof(err))) {
                client_send(c, op_error_reply(id, OP_ERR_QUOTA_EXCEEDED, "%s", err));
                return;
        }
        j = job_new(c, id, JOB_FORK, s, count);
        if (!j || asprintf(&j->dir, "%s/%s", d->cfg.cache_dir, FORK_DIR) < 0 ||
            (mkdir(j->dir, 0700) < 0 && errno != EEXIST) ||
            asprintf(&dir, "%s/%s-%llu", j->dir, s->id, (unsigned long long)j->t_start) < 0 ||
            mkdir(dir, 0700) < 0) {
                k = errno ? -errno : -ENOMEM;
                if (j) {
                        const char *in = j->dir ? j->dir : d->cfg.cache_dir;

                        op_errf_fs(err, sizeof(err), k, in,
                                   "cannot make a directory for the fork in %s", in);
                        job_fail(j, OP_ERR_INTERNAL, "%s", err);
                } else
                        client_send(c, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                job_free(j);
                return;
        }
        free(j->dir);
        j->dir = TAKE_PTR(dir);
        k = start_save(j, s, j->dir, on_fork_saved, err, sizeof(err));
        if (k < 0) {
                snap_rmtree(AT_FDCWD, j->dir);
                job_fail(j, session_save_err_code(k), "session %s not forked: %s; it runs on",
                         s->id, err);
                job_free(j);
        }
}

/* ---- an image to restore from, for opd's own sessions (exec_cases) ---- */

static void on_image_saved(struct vm *vm, const char *err, void *userdata)
{
        struct job *j = userdata;
        struct snap_ref *img = NULL;
        bool whole = err && vm->state == VM_PAUSED;
        struct session *s;
        int k = 0;

        j->t_saved = op_now_us();
        if (!err)
                k = snap_ref_image(j->dir, &j->m, true, &img);
        /* resumed (after a save that failed with the VM whole too), or destroyed with its
         * session */
        give_back(j, (!err && k >= 0) || whole);
        s = job_session(j);
        if (err || k < 0) {
                log_warn("session %s (uid %u): saving it failed: %s", j->id, (unsigned)j->uid,
                         err ? err : strerror(-k));
                snap_rmtree(AT_FDCWD, j->dir);
                if (whole && s && s->state == SESSION_IDLE)
                        j->image_done(s, NULL, err);
        } else if (s && s->state == SESSION_IDLE) {
                log_info("session %s uid=%u saved in %.1fms", j->id, (unsigned)j->uid,
                         ms(j->t_start, j->t_saved));
                j->image_done(s, TAKE_PTR(img), NULL);
        }
        snap_ref_put(img);
        job_free(j);
}

int session_save_image(struct session *s, session_image_fn done, char *why, size_t whylen)
{
        struct opd *d = s->d;
        _cleanup_free_ char *dir = NULL;
        struct job *j;
        int k;

        if (s->state != SESSION_IDLE || !s->vm || !s->vm->snap)
                return op_errf(why, whylen, -EBUSY, "the session is not idle on a snapshot's VM");
        j = job_alloc(d, JOB_IMAGE);
        if (!j)
                return op_errf(why, whylen, -ENOMEM, "out of memory");
        memcpy(j->id, s->id, sizeof(j->id));
        memcpy(j->workdir, s->workdir, sizeof(j->workdir));
        j->uid = s->uid;
        j->lang = s->lang;
        j->image_done = done;
        if (asprintf(&dir, "%s/%s", d->cfg.cache_dir, FORK_DIR) < 0) {
                job_free(j);
                return op_errf(why, whylen, -ENOMEM, "out of memory");
        }
        (void)mkdir(dir, 0700);
        if (asprintf(&j->dir, "%s/%s-%llu", dir, s->id, (unsigned long long)j->t_start) < 0) {
                j->dir = NULL;
                job_free(j);
                return op_errf(why, whylen, -ENOMEM, "out of memory");
        }
        if (mkdir(j->dir, 0700) < 0) {
                k = op_errf_fs(why, whylen, -errno, dir, "cannot make %s", j->dir);
                job_free(j);
                return k;
        }
        k = start_save(j, s, j->dir, on_image_saved, why, whylen);
        if (k < 0) {
                snap_rmtree(AT_FDCWD, j->dir);
                job_free(j);
        }
        return k;
}

static void on_restored(struct vm *vm, void *userdata)
{
        struct session *s = userdata;
        int k = vm_resume(vm);

        if (k < 0) {
                log_warn("session %s (uid %u): resuming %s failed: %s", s->id, (unsigned)s->uid,
                         vm->name, strerror(-k));
                session_destroy(s, SESSION_END_FAILED);
                return;
        }
        s->vm = NULL;
        session_attach_vm(s, vm, NULL);
}

static void on_restore_failed(struct vm *vm, const char *why, void *userdata)
{
        struct session *s = userdata;

        log_warn("session %s (uid %u): restoring %s failed: %s", s->id, (unsigned)s->uid, vm->name,
                 why);
        session_destroy(s, SESSION_END_FAILED);
}

static const struct vm_events restore_events = {
    .ready = on_restored,
    .failed = on_restore_failed,
};

int session_restore(struct session *s, struct snap_ref *img)
{
        struct vm *vm;
        int k;

        k = vm_restore(s->d->vms_host, s->lang, img, &restore_events, s, &vm);
        if (k < 0)
                return k;
        snprintf(s->snap_version, sizeof(s->snap_version), "%s", img->m.version);
        session_restoring(s, vm);
        return 0;
}

/* ---- pause ---- */

/* The session being paused was closed meanwhile: the pause is answered not_found, its VM and
 * files go. */
static void pause_closed(struct job *j)
{
        job_fail(j, OP_ERR_NOT_FOUND, "session %s was closed while it was saved", j->id);
        give_back(j, true);
        session_store_remove(j->d, j->uid, j->id);
        job_free(j);
}

/* In the background job's child: the device state hashed, the metadata written, every file
 * fsynced, the directory renamed to the session's name. */
static int commit_in_child(void *arg, char *msg, size_t msglen)
{
        struct job *j = arg;

        return session_store_commit(j->d, &j->meta, j->dir, msg, msglen);
}

static void on_pause_committed(struct opd *d, int r, const char *msg, void *userdata);

static void on_pause_saved(struct vm *vm, const char *err, void *userdata)
{
        struct job *j = userdata;
        struct opd *d = j->d;
        struct session *s;
        int k;

        j->t_saved = op_now_us();
        s = job_session(j);
        if (err) {
                fail_saved(j, vm, "not paused", err);
                session_store_remove(d, j->uid, j->id);
                job_free(j);
                return;
        }
        if (!s || s->state != SESSION_SAVING) {
                pause_closed(j);
                return;
        }
        j->meta.uid = j->uid;
        memcpy(j->meta.id, j->id, sizeof(j->meta.id));
        snprintf(j->meta.lang, sizeof(j->meta.lang), "%s", j->lang->name);
        j->meta.m = j->m;
        memcpy(j->meta.workdir, s->workdir, sizeof(j->meta.workdir));
        j->meta.idle_timeout_ms = s->idle_timeout_ms;
        j->meta.max_lifetime_ms = s->max_lifetime_ms;
        j->meta.age_ms = (op_now_us() - s->t_open) / 1000;
        j->meta.paused_at_ns = op_realtime_ns();
        j->meta.execs = s->execs;
        j->meta.limits = json_incref(s->limits);
        j->meta.repl = s->repl;
        /* Hashing the device state and syncing up to the whole guest RAM to the disk takes
         * long: off the loop, in a child. */
        k = bgjob_start(d, commit_in_child, j, NULL, on_pause_committed, j);
        if (k < 0) {
                job_fail(j, OP_ERR_INTERNAL,
                         "session %s not paused: cannot start its commit: %s; it runs on", j->id,
                         strerror(-k));
                session_store_remove(d, j->uid, j->id);
                give_back(j, true);
                job_free(j);
                return;
        }
        j->committing = true;
}

/* The saved files are on disk, synced, under the session's name (or r < 0, and msg says why). */
static void on_pause_committed(struct opd *d, int r, const char *msg, void *userdata)
{
        struct job *j = userdata;
        struct session *s;
        uint64_t bytes = 0;
        char why[512];
        int k = r;

        j->committing = false;
        if (j->orphan) {
                /* opd stopped meanwhile and answered then: a pause that had not finished leaves
                 * nothing on disk */
                session_store_remove(d, j->uid, j->id);
                job_free(j);
                return;
        }
        if (r == -ECANCELED)
                return; /* opd is stopping: session_jobs_stop() ends the job */
        s = job_session(j);
        if (!s || s->state != SESSION_SAVING) {
                pause_closed(j);
                return;
        }
        snprintf(why, sizeof(why), "%s", msg);
        if (k >= 0)
                bytes = session_store_bytes(d, j->uid, j->id);
        /* The counts too: pauses checked before this one was committed are counted now. */
        if (k >= 0 && !paused_room(d, j->uid, 0, why, sizeof(why)))
                k = -EDQUOT;
        if (k < 0) {
                job_fail(j, k == -EDQUOT ? OP_ERR_QUOTA_EXCEEDED : OP_ERR_INTERNAL,
                         "session %s not paused: %s; it runs on", j->id, why);
                session_store_remove(d, j->uid, j->id);
                give_back(j, true);
                job_free(j);
                return;
        }
        /* On disk: the VM goes, the session waits there. */
        vm_destroy(j->vm);
        j->vm = NULL;
        job_uncount(j);
        if (j->pool)
                pool_release(j->pool);
        j->pool = NULL;
        session_saved(s);
        opd_schedule_reap(d);
        log_info("session %s uid=%u paused to disk in %.1fms (%llu bytes)", j->id, (unsigned)j->uid,
                 ms(j->t_start, op_now_us()), (unsigned long long)bytes);
        job_answer(j, json_pack("{s:O?, s:b, s:s, s:s, s:I, s:{s:f, s:f}}", "id",
                                reply_slot_id(j->reply), "ok", 1, "session", j->id, "state",
                                "paused", "disk_bytes", (json_int_t)bytes, "timings_ms", "save",
                                ms(j->t_start, j->t_saved), "pause", ms(j->t_start, op_now_us())));
        job_free(j);
}

void op_session_pause(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        char sid[OP_SESSION_ID_LEN + 1], err[512];
        struct session *s;
        struct job *j;
        int k;

        if (op_session_save_decode(req, "session_pause", sid, err, sizeof(err)) < 0) {
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err));
                return;
        }
        s = find_own(c, id, sid);
        if (!s)
                return;
        if (!session_saveable(c, id, s, "paused"))
                return;
        if (!paused_room(d, s->uid, 1, err, sizeof(err))) {
                client_send(c, op_error_reply(id, OP_ERR_QUOTA_EXCEEDED, "%s", err));
                return;
        }
        j = job_new(c, id, JOB_PAUSE, s, 0);
        if (!j) {
                client_send(c, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                return;
        }
        session_store_remove(d, s->uid, s->id); /* a staging directory left over */
        k = session_store_dir(d, s->uid, s->id, true, &j->dir);
        if (k < 0)
                op_errf_fs(err, sizeof(err), k, d->cfg.cache_dir,
                           "cannot make a directory for it in %s", d->cfg.cache_dir);
        else if (mkdir(j->dir, 0700) < 0)
                k = op_errf_fs(err, sizeof(err), -errno, j->dir, "cannot make %s", j->dir);
        if (k >= 0)
                k = start_save(j, s, j->dir, on_pause_saved, err, sizeof(err));
        if (k < 0) {
                session_store_remove(d, j->uid, j->id);
                job_fail(j, session_save_err_code(k), "session %s not paused: %s; it runs on", sid,
                         err);
                job_free(j);
        }
}

/* ---- resume ---- */

void op_session_resume(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        char sid[OP_SESSION_ID_LEN + 1], err[512];
        struct snap_ref *img = NULL;
        struct session *s;
        struct job *j;
        int k;

        if (op_session_save_decode(req, "session_resume", sid, err, sizeof(err)) < 0) {
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err));
                return;
        }
        s = find_own(c, id, sid);
        if (!s)
                return;
        if (s->state != SESSION_PAUSED) {
                client_send(c, op_error_reply(id, OP_ERR_BUSY,
                                              "session %s is %s: only a paused session can be "
                                              "resumed",
                                              s->id, session_state_name(s->state)));
                return;
        }
        if (!session_room_for(d, s->uid, 0, 1, err, sizeof(err))) {
                client_send(c, op_error_reply(id, OP_ERR_QUOTA_EXCEEDED, "%s", err));
                return;
        }
        j = job_new(c, id, JOB_RESUME, s, 1);
        if (!j) {
                client_send(c, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                return;
        }
        k = session_store_open(d, s, &j->meta, &j->dir, err, sizeof(err));
        if (k < 0 && k != -EBADMSG) {
                /* Not read now (out of fds or memory, an I/O error): nothing said they are
                 * damaged. */
                job_fail(j, OP_ERR_INTERNAL,
                         "session %s cannot be resumed now: %s; it stays paused, its saved VM kept",
                         sid, err);
                job_free(j);
                return;
        }
        if (k < 0) {
                /* Damaged (or gone): nothing to resume; the session and its files go. */
                log_warn("session %s (uid %u): its saved VM is refused: %s", s->id,
                         (unsigned)s->uid, err);
                job_fail(j, k == -EBADMSG ? OP_ERR_VM_FAILED : OP_ERR_INTERNAL,
                         "session %s cannot be resumed: its saved VM is damaged (%s); it was "
                         "removed",
                         sid, err);
                session_destroy(s, SESSION_END_FAILED);
                job_free(j);
                return;
        }
        /* The restored VM maps these files: moved out of the way (a restart while it runs does
         * not list it as paused again, a later pause writes anew), they go with its last
         * reference. */
        free(j->dir);
        j->dir = NULL;
        k = session_store_take(d, s->uid, s->id, &j->dir);
        if (k >= 0)
                k = snap_ref_image(j->dir, &j->meta.m, true, &img);
        if (k >= 0)
                k = start_child(j, &j->children[0], s, img);
        if (k < 0) {
                /* No VM was started: the files go back under the session's name before the
                 * image's last reference would remove the taken one, and it stays paused. */
                int u = j->dir ? session_store_untake(d, s->uid, s->id, j->dir) : 0;

                snap_ref_put(img);
                if (u < 0) {
                        log_warn("session %s (uid %u): cannot keep it paused: %s", sid,
                                 (unsigned)s->uid, strerror(-u));
                        job_fail(j, OP_ERR_VM_FAILED,
                                 "cannot restore session %s: %s; its saved VM could not be kept, "
                                 "the session is gone",
                                 sid, strerror(-k));
                        session_destroy(s, SESSION_END_FAILED);
                } else
                        job_fail(j, OP_ERR_INTERNAL,
                                 "cannot restore session %s now: %s; it stays paused, its saved "
                                 "VM kept",
                                 sid, strerror(-k));
                job_free(j);
                return;
        }
        snap_ref_put(img);
        j->timer = evtimer_new(d->base, on_job_timer, j);
        if (j->timer)
                op_timer_arm_ms(j->timer, d->cfg.restore_timeout_ms + 1000);
}
