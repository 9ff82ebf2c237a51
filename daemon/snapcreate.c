/* snapcreate.c: making a snapshot: boot the language's image with guest RAM in a shared file,
 * warm its runtime, pause, save device state, then hash, fsync and install it atomically off
 * the loop. A failure leaves the serving version and "current" untouched. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "bgjob.h"
#include "cleanup.h"
#include "compile.h"
#include "fs-space.h"
#include "host.h"
#include "log.h"
#include "opd.h"
#include "pool.h"
#include "poolplan.h"
#include "snapcreate.h"
#include "util.h"
#include "vm.h"

#define WARM_TIMEOUT_MS 120000
struct snapcreate {
        struct opd *d;
        const struct op_lang *lang;
        char *stage;
        int stage_lock; /* held while the staging directory is ours (snap_stage_lock) */
        struct vm *vm;
        struct snap_manifest m;
        uint64_t t_start;
        struct event *deadline;
        snapcreate_done_fn done;
        void *userdata;
};

static void finish(struct snapcreate *sc, int r, const char *msg)
{
        struct opd *d = sc->d;

        if (sc->vm)
                vm_destroy(sc->vm);
        if (sc->deadline)
                event_free(sc->deadline);
        if (r < 0 && sc->stage)
                snap_rmtree(AT_FDCWD, sc->stage);
        safe_close(sc->stage_lock);
        if (r < 0)
                log_error("snapshot %s/%s failed: %s", sc->lang->name, sc->m.version, msg);
        else
                log_info("snapshot %s/%s installed in %.1f s", sc->lang->name, sc->m.version,
                         (double)(op_now_us() - sc->t_start) / 1e6);
        sc->done(d, r, msg, &sc->m, sc->userdata);
        if (r >= 0)
                pools_check_snapshots(d->pools);
        free(sc->stage);
        free(sc);
}

/* Hard-link an image file into the snapshot (images are replaced by rename, never rewritten);
 * copy it when the cache is on another filesystem. */
static int link_or_copy(const char *src, int dstdir, const char *name)
{
        _cleanup_close_ int in = -1, out = -1;
        struct stat st;
        off_t off = 0;

        if (linkat(AT_FDCWD, src, dstdir, name, 0) == 0)
                return 0;
        if (errno != EXDEV && errno != EPERM)
                return -errno;
        in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0 || fstat(in, &st) < 0)
                return -errno;
        out = openat(dstdir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (out < 0)
                return -errno;
        while (off < st.st_size) {
                ssize_t k = sendfile(out, in, &off, (size_t)(st.st_size - off));
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
        }
        return 0;
}

static int commit_in_child(void *arg, char *msg, size_t msglen)
{
        struct snapcreate *sc = arg;

        return snap_commit(sc->d->cfg.cache_dir, &sc->m, msg, msglen);
}

static void on_committed(struct opd *d, int r, const char *msg, void *userdata)
{
        struct snapcreate *sc = userdata;

        if (r >= 0) {
                /* The child filled in sizes and hashes; read them back from the installed copy. */
                _cleanup_close_ int dirfd = -1;
                char err[256];

                free(sc->stage);
                sc->stage = NULL;
                if (snap_open(d->cfg.cache_dir, sc->lang->name, sc->m.version, &dirfd, &sc->m, err,
                              sizeof(err)) < 0) {
                        finish(sc, -EIO, err);
                        return;
                }
                /* the version the pool serves stays until the pool has switched */
                snap_gc(d->cfg.cache_dir, sc->lang->name, d->cfg.snapshot_keep,
                        pool_serving_version(pool_for(d->pools, sc->lang)));
        }
        finish(sc, r, msg);
}

/* Room for the worst case before anything is written: guest RAM written in full to the memory
 * file, plus the image files when they are copied (the cache on another filesystem). A cache
 * that fills up anyway fails the creation; the serving version is never touched. */
static int check_space(struct snapcreate *sc, char *msg, size_t msglen)
{
        struct opd *d = sc->d;
        const char *srcs[] = {d->vms_host->kernel, d->vms_host->initrd, sc->lang->rootfs};
        uint64_t need = (uint64_t)op_lang_memory_mb(&d->cfg, sc->lang) << 20, have;
        struct stat cst, st;
        struct statvfs sv;

        if (statvfs(d->cfg.cache_dir, &sv) < 0 || stat(d->cfg.cache_dir, &cst) < 0)
                return 0; /* the creation reports what goes wrong */
        for (size_t i = 0; i < ELEMENTSOF(srcs); i++)
                if (srcs[i] && stat(srcs[i], &st) == 0 && st.st_dev != cst.st_dev)
                        need += (uint64_t)st.st_size;
        have = (uint64_t)sv.f_bavail * sv.f_frsize;
        if (have >= need)
                return 0;
        return op_errf(msg, msglen, -ENOSPC,
                       "not enough space in %s: %llu MiB free, a snapshot of %s may need %llu MiB "
                       "(vm.memory_mb and the image files)",
                       d->cfg.cache_dir, (unsigned long long)(have >> 20), sc->lang->name,
                       (unsigned long long)((need + (1 << 20) - 1) >> 20));
}

static void on_saved(struct vm *vm, const char *err, void *userdata)
{
        struct snapcreate *sc = userdata;
        _cleanup_close_ int stage = -1;
        static const char *const names[] = {"mem", "vmstate", "kernel", "initrd.img",
                                            "rootfs.ext4"};
        const char *srcs[] = {NULL, NULL, sc->d->vms_host->kernel, sc->d->vms_host->initrd,
                              sc->lang->rootfs};
        struct tm tm;
        time_t now = time(NULL);
        int r;

        vm_destroy(vm);
        sc->vm = NULL;
        evtimer_del(sc->deadline);
        if (err) {
                char msg[1024];

                snprintf(msg, sizeof(msg), "saving the VM: %s", err);
                finish(sc, -EIO, msg);
                return;
        }
        stage = open(sc->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (stage < 0) {
                finish(sc, -errno, "staging directory vanished");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                if (srcs[i] && (r = link_or_copy(srcs[i], stage, names[i])) < 0) {
                        char msg[1024];

                        op_errf_fs(msg, sizeof(msg), r, sc->stage, "copying %s into %s/%s", srcs[i],
                                   sc->stage, names[i]);
                        finish(sc, r, msg);
                        return;
                }
                snprintf(sc->m.files[i].name, sizeof(sc->m.files[i].name), "%s", names[i]);
        }
        sc->m.n_files = ELEMENTSOF(names);
        gmtime_r(&now, &tm);
        strftime(sc->m.created, sizeof(sc->m.created), "%Y-%m-%dT%H:%M:%SZ", &tm);
        r = bgjob_start(sc->d, commit_in_child, sc, NULL, on_committed, sc);
        if (r < 0)
                finish(sc, r, "cannot start the install job");
}

static void save(struct snapcreate *sc)
{
        int r = vm_snapshot(sc->vm, sc->stage, on_saved, sc);
        char msg[1024];

        if (r < 0)
                finish(sc,
                       op_errf_fs(msg, sizeof(msg), r, sc->stage,
                                  "cannot start saving the VM into %s", sc->stage),
                       msg);
}

/* How long the snapshot's runner may take to say "ready": the catalogue's (a runner on a JVM,
 * java's and groovy's, compiles its own source and warms up for minutes under TCG). */
static uint32_t runner_ready_ms(const struct op_lang *lang)
{
        return op_lang_warm_in_snapshot(lang) ? op_lang_warm_ready_ms(lang) : WARM_TIMEOUT_MS;
}

/* The VM runs the preload program rather than a warm runner before its snapshot. */
static bool is_preload(const struct snapcreate *sc)
{
        return !op_lang_warm_in_snapshot(sc->lang) && sc->lang->compile[0] && sc->lang->prime;
}

static void answer_limits(struct snapcreate *sc, struct op_agent_limits *ret);

/* A compiled language's snapshot is taken after its prime program was compiled and run once:
 * the compiler's files (and any build cache it keeps under /tmp) are then in the guest's page
 * cache, in the snapshot. */
static int send_preload(struct snapcreate *sc)
{
        struct op_agent_limits lim;
        json_t *job, *argv = json_array();
        char **run = NULL;
        int r;

        if (!argv || op_lang_argv(sc->lang, NULL, 0, &run) < 0) {
                json_decref(argv);
                return -ENOMEM;
        }
        for (char **a = run; *a; a++)
                json_array_append_new(argv, json_string(*a));
        op_argv_free(run);
        job = json_pack("{s:s, s:s, s:o, s:s, s:s, s:i}", "op", "exec", "id", "preload", "argv",
                        argv, "file", sc->lang->file, "code", sc->lang->prime, "timeout_ms",
                        WARM_TIMEOUT_MS / 4);
        /* Nothing is translated yet in this VM: the compiler gets the longest deadline allowed. */
        if (!job || compile_job_add(sc->lang,
                                    &(struct op_exec){.compile_timeout_ms =
                                                          sc->d->cfg.limits.compile_timeout_ms_max},
                                    &sc->d->cfg.limits, job) < 0)
                r = -ENOMEM;
        else {
                answer_limits(sc, &lim);
                vm_set_frame_max(sc->vm, op_agent_frame_max(&lim));
                r = vm_send(sc->vm, job);
        }
        json_decref(job);
        return r;
}

static void on_ready(struct vm *vm, void *userdata)
{
        struct snapcreate *sc = userdata;
        uint32_t ready_ms;
        json_t *job, *argv;
        int r;

        snprintf(sc->m.agent_version, sizeof(sc->m.agent_version), "%s", vm->agent_version);
        if (is_preload(sc)) {
                r = send_preload(sc);
                if (r < 0)
                        finish(sc, r, "cannot send the preload request");
                return;
        }
        /* A runner that starts in each clone is not in the snapshot: the pool starts it. */
        if (!op_lang_warm_in_snapshot(sc->lang)) {
                save(sc);
                return;
        }
        argv = json_array();
        for (char *const *a = sc->lang->warm; *a; a++)
                json_array_append_new(argv, json_string(*a));
        ready_ms = runner_ready_ms(sc->lang);
        job = json_pack("{s:s, s:s, s:o, s:I}", "op", "warm", "id", "warm", "argv", argv,
                        "ready_timeout_ms", (json_int_t)ready_ms);
        r = job ? vm_send(vm, job) : -ENOMEM;
        json_decref(job);
        if (r < 0)
                finish(sc, r, "cannot send the warm request");
}

/* What the answer may hold: a warm answer, or the preload's exec answer (the agent's default
 * output cap: the job sets none) with the language's compile phase. */
static void answer_limits(struct snapcreate *sc, struct op_agent_limits *ret)
{
        *ret = (struct op_agent_limits){
            .op = is_preload(sc) ? OP_AGENT_OP_EXEC : OP_AGENT_OP_WARM,
            .output_max = OP_LIMITS_DEFAULT.output_max,
        };
        compile_agent_limits(sc->lang, ret);
}

static void on_answer(struct vm *vm, json_t *ans, void *userdata)
{
        struct snapcreate *sc = userdata;
        _cleanup_(op_agent_answer_done) struct op_agent_answer a = {0};
        struct op_agent_limits lim;
        char err[512], why[600];
        int r;

        answer_limits(sc, &lim);
        r = op_agent_answer_decode(ans, &lim, &a, err, sizeof(err));
        if (r < 0) {
                snprintf(why, sizeof(why), "agent sent %s",
                         r == -ENOMEM ? "an answer opd could not hold in memory" : err);
                finish(sc, r == -ENOMEM ? r : -EIO, why);
                return;
        }
        if (!a.ok) {
                finish(sc, -EIO,
                       a.error.message[0] ? a.error.message : "warming the runtime failed");
                return;
        }
        if (lim.op == OP_AGENT_OP_EXEC) { /* the preload: its program must build and run */
                const struct op_agent_exec *x = &a.exec;
                const struct op_agent_run *c = &x->compile;

                /* "status" is the run's; compile_error says the compiler failed */
                if ((x->has_status && x->status != OP_STATUS_OK) || x->run.exit_code != 0) {
                        log_error("snapshot %s: preload program failed (compiler: exit %d%s; "
                                  "program: exit %d%s): %.300s",
                                  sc->lang->name, x->has_compile ? c->exit_code : -1,
                                  x->has_compile && c->timed_out ? ", timed out" : "",
                                  x->run.exit_code, x->run.timed_out ? ", timed out" : "",
                                  x->has_compile && c->err.len ? c->err.data : x->run.err.data);
                        finish(sc, -EIO, "the catalogue's prime program did not compile and run");
                        return;
                }
                save(sc);
                return;
        }
        sc->m.warm = true;
        save(sc);
}

static void on_failed(struct vm *vm, const char *why, void *userdata)
{
        char msg[1024];

        snprintf(msg, sizeof(msg), "the VM failed: %s", why);
        finish(userdata, -EIO, msg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
        finish(arg, -ETIMEDOUT, "the VM did not get ready for its snapshot in time");
}

static const struct vm_events snapcreate_events = {
    .ready = on_ready,
    .answer = on_answer,
    .failed = on_failed,
};

int snapcreate_start(struct opd *d, const struct op_lang *lang, snapcreate_done_fn done,
                     void *userdata)
{
        _cleanup_close_ int mem = -1;
        _cleanup_free_ char *mem_path = NULL;
        struct snapcreate *sc;
        char msg[512];
        int r;

        if (d->vms_host->accel == OP_ACCEL_AUTO)
                return -EAGAIN;
        sc = calloc(1, sizeof(*sc));
        if (!sc)
                return -ENOMEM;
        sc->d = d;
        sc->stage_lock = -1;
        sc->lang = lang;
        sc->done = done;
        sc->userdata = userdata;
        sc->t_start = op_now_us();
        snprintf(sc->m.lang, sizeof(sc->m.lang), "%s", lang->name);
        snprintf(sc->m.vmm, sizeof(sc->m.vmm), "%s", d->vms_host->drv->name);
        snprintf(sc->m.vmm_version, sizeof(sc->m.vmm_version), "%s", d->vmm_version);
        snprintf(sc->m.accel, sizeof(sc->m.accel), "%s", op_accel_name(d->vms_host->accel));
        snprintf(sc->m.lang_version, sizeof(sc->m.lang_version), "%s", lang->version);
        sc->m.memory_mb = op_lang_memory_mb(&d->cfg, lang);
        sc->m.vcpus = d->cfg.vm_vcpus;
        /* From here on every outcome, failure included, is reported once through done(). */
        r = check_space(sc, msg, sizeof(msg));
        if (r < 0) {
                finish(sc, r, msg);
                return 0;
        }
        r = snap_version_new(sc->m.version);
        if (r >= 0)
                r = snap_stage_begin(d->cfg.cache_dir, lang->name, sc->m.version, &sc->stage);
        if (r >= 0)
                r = sc->stage_lock = snap_stage_lock(sc->stage);
        if (r < 0) {
                op_errf_fs(msg, sizeof(msg), r, d->cfg.cache_dir,
                           "cannot create the staging directory in %s/%s", d->cfg.cache_dir,
                           lang->name);
                finish(sc, r, msg);
                return 0;
        }
        sc->deadline = evtimer_new(d->base, on_deadline, sc);
        if (!sc->deadline || asprintf(&mem_path, "%s/mem", sc->stage) < 0) {
                finish(sc, -ENOMEM, "out of memory");
                return 0;
        }
        mem = open(mem_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (mem < 0) {
                r = op_errf_fs(msg, sizeof(msg), -errno, mem_path, "cannot create %s", mem_path);
                finish(sc, r, msg);
                return 0;
        }
        r = vm_boot(d->vms_host, lang, d->vms_host->accel, mem, &snapcreate_events, sc, &sc->vm);
        if (r < 0) {
                sc->vm = NULL;
                finish(sc, r, "cannot boot the VM");
                return 0;
        }
        op_timer_arm_ms(sc->deadline,
                        d->cfg.boot_timeout_ms + runner_ready_ms(lang) + 30000 +
                            (lang->compile[0] ? d->cfg.limits.compile_timeout_ms_max : 0));
        log_info("snapshot %s/%s: booting", lang->name, sc->m.version);
        return 0;
}
