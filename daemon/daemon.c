/* daemon.c: the daemon's lifetime: set-up from config, the loop's safe point where closed
 * objects are freed and queued work restarts, signals, and an orderly stop. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "accel.h"
#include "access.h"
#include "bgjob.h"
#include "cleanup.h"
#include "client.h"
#include "door.h"
#include "host.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "opd.h"
#include "privsep.h"
#include "pool.h"
#include "reload.h"
#include "request.h"
#include "s3sync.h"
#include "session-fork.h"
#include "session-store.h"
#include "session.h"
#include "snapauto.h"
#include "server.h"
#include "util.h"
#include "vm.h"
#include "vmm.h"

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
        struct opd *d = arg;

        clients_reap(d);
        vm_host_free_dead(d->vms_host);
        if (!d->stopping)
                requests_kick(d);
}

void opd_schedule_reap(struct opd *d)
{
        if (d->reap_ev)
                event_active(d->reap_ev, EV_TIMEOUT, 0);
}

/* Every exited child: a VMM's goes to the VM layer (a live VM fails), a background job's to
 * bgjob.c (its result comes through its pipe). */
static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
        struct opd *d = arg;
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                if (!vm_host_reap(d->vms_host, pid, status))
                        bgjob_reaped(d, pid, status);
        opd_schedule_reap(d);
}

static void on_slot_freed(struct vm_host *h, void *userdata)
{
        opd_schedule_reap(userdata);
}

static void on_log(int prio, const char *msg, void *userdata)
{
        log_msg(prio, "%s", msg);
}

/* The pools' slow work (verifying a snapshot's checksums) runs as a background job. */
struct pool_job {
        pool_job_done_fn done;
        void *userdata;
};

static void on_pool_job_done(struct opd *d, int r, const char *msg, void *userdata)
{
        struct pool_job j = *(struct pool_job *)userdata;

        free(userdata);
        j.done(r, msg, j.userdata);
}

static int on_pool_run_off_loop(pool_job_fn fn, void *arg, int *keep_fd, pool_job_done_fn done,
                                void *done_userdata, void *userdata)
{
        struct pool_job *j = malloc(sizeof(*j));
        int r;

        if (!j)
                return -ENOMEM;
        *j = (struct pool_job){.done = done, .userdata = done_userdata};
        r = bgjob_start(userdata, fn, arg, keep_fd, on_pool_job_done, j);
        if (r < 0)
                free(j);
        return r;
}

static void on_sighup(evutil_socket_t fd, short what, void *arg)
{
        char err[512];

        log_info("reloading the configuration on SIGHUP");
        opd_reload(arg, err, sizeof(err));
}

static void on_sigterm(evutil_socket_t fd, short what, void *arg)
{
        log_info("stopping on signal %d", (int)fd);
        opd_stop(arg);
}

/* Staging directories and half-made links left in the cache by a killed opd (one being filled
 * by a live process is locked and stays). */
static void remove_stale_staging(struct opd *d)
{
        for (size_t i = 0; i < d->langs.n; i++) {
                int n = snap_clean_stale(d->cfg.cache_dir, d->langs.v[i].name);

                if (n > 0)
                        log_info("removed %d staging entries left in %s/%s", n, d->cfg.cache_dir,
                                 d->langs.v[i].name);
        }
}

int opd_init(struct opd *d)
{
        const struct vm_driver *drv = vm_driver_find(d->cfg.vmm);

        if (!drv)
                return log_error_errno(-EINVAL, "vmm: unknown driver \"%s\"", d->cfg.vmm);
        d->privsep = true;
        return opd_init_driver(d, drv, NULL);
}

int opd_init_driver(struct opd *d, const struct vm_driver *drv, void *drv_data)
{
        static const struct vm_host_callbacks vm_callbacks = {
            .slot_freed = on_slot_freed,
            .log = on_log,
        };
        static const struct pools_callbacks pool_callbacks = {
            .run_off_loop = on_pool_run_off_loop,
            .log = on_log,
        };
        char err[512];
        int r;

        d->started_us = op_now_us();
        fairq_init(&d->queue);

        r = op_langs_load(d->cfg.languages_file, d->cfg.images_dir, &d->langs, err, sizeof(err));
        if (r >= 0)
                r = op_langs_enable(&d->langs, d->cfg.languages_enabled, err, sizeof(err));
        if (r < 0) {
                log_error("languages: %s", err);
                return r;
        }
        for (size_t i = 0; i < d->langs.n; i++)
                log_info("language %s %s: %s", d->langs.v[i].name, d->langs.v[i].version,
                         d->langs.v[i].available ? "image ready" : "no image built");
        d->base = event_base_new();
        if (!d->base)
                return -ENOMEM;
        /* Before any event exists: every event gets OPD_PRI_NORMAL, the middle priority. */
        if (event_base_priority_init(d->base, OPD_PRIORITIES) < 0)
                return -ENOMEM;
        d->self_uid = getuid();
        r = clients_init(d);
        if (r < 0)
                return r;
        /* The VM layer: run_dir made and cleaned, the driver's own clean-up. */
        r = vm_host_new(d->base, &d->cfg, drv, drv_data, &vm_callbacks, d, &d->vms_host);
        if (r < 0)
                return log_error_errno(r, "set up VMs in %s", d->cfg.run_dir);
        if (d->privsep) {
                r = privsep_start(d);
                if (r < 0)
                        return r;
        }
        if (access(d->vms_host->kernel, R_OK) < 0 || access(d->vms_host->initrd, R_OK) < 0)
                log_warn("guest kernel or initrd missing in %s: build images with "
                         "packaging/images/build-images",
                         d->cfg.images_dir);
        r = op_mkdir_p(d->cfg.cache_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "create %s", d->cfg.cache_dir);
        remove_stale_staging(d);
        r = vm_host_version(d->vms_host, &d->vmm_version);
        if (r < 0)
                return log_error_errno(r, "ask the %s binary for its version", drv->name);
        log_info("vmm: %s %s", drv->name, d->vmm_version);
        if (drv == &vm_driver_qemu &&
            qemu_version_supported(d->vmm_version, err, sizeof(err)) < 0) {
                log_error("%s", err);
                return -EPROTONOSUPPORT;
        }
        d->reap_ev = event_new(d->base, -1, 0, on_reap, d);
        d->sigchld_ev = evsignal_new(d->base, SIGCHLD, on_sigchld, d);
        d->sigterm_ev = evsignal_new(d->base, SIGTERM, on_sigterm, d);
        d->sigint_ev = evsignal_new(d->base, SIGINT, on_sigterm, d);
        d->sighup_ev = evsignal_new(d->base, SIGHUP, on_sighup, d);
        if (!d->reap_ev || !d->sigchld_ev || !d->sigterm_ev || !d->sigint_ev || !d->sighup_ev)
                return -ENOMEM;
        event_add(d->sighup_ev, NULL);
        r = bgjobs_init(d);
        if (r < 0)
                return r;
        r = pools_new(d->base, &d->cfg, &d->langs, d->vms_host, d->vmm_version, &pool_callbacks, d,
                      &d->pools);
        if (r < 0)
                return r;
        r = metrics_init(d);
        if (r < 0)
                return r;
        r = s3sync_init(d);
        if (r < 0)
                return r;
        r = door_init(d);
        if (r < 0)
                return r;
        r = access_init(d);
        if (r < 0)
                return r;
        r = sessions_init(d);
        if (r < 0)
                return r;
        session_store_load(d);  /* sessions paused to disk before a restart */
        session_forks_clean(d); /* fork images outlive no opd */
        event_add(d->sigchld_ev, NULL);
        event_add(d->sigterm_ev, NULL);
        event_add(d->sigint_ev, NULL);
        signal(SIGPIPE, SIG_IGN);

        if (!d->no_listen) {
                r = server_listen(d);
                if (r < 0)
                        return r;
                r = notify_start(d);
                if (r < 0)
                        return r;
                r = snapauto_init(d);
                if (r < 0)
                        return r;
        }
        if (d->privsep) {
                r = privsep_drop(d);
                if (r < 0)
                        return r;
                d->self_uid = getuid(); /* jail.user's, from now on */
        }
        return accel_start(d);
}

void opd_stop(struct opd *d)
{
        if (d->stopping)
                return;
        d->stopping = true;
        pools_stop(d->pools);
        notify_stop(d);
        server_close(d);
        door_stop(d);
        /* Every request still waiting or running gets an answer before the connection closes:
         * forks, pauses and resumes under way, then the others. */
        session_jobs_stop(d);
        clients_shutdown(d);
        sessions_stop(d); /* after the requests: an exec in a session was answered */
        vm_host_kill_all(d->vms_host);
        bgjobs_cancel_all(d);
        event_base_loopexit(d->base, &(struct timeval){0, 200 * 1000});
}

void opd_done(struct opd *d)
{
        notify_stop(d);
        bgjobs_done(d); /* their done() still finds their owners */
        door_done(d);
        s3sync_done(d);
        session_jobs_stop(d);
        sessions_free(d); /* its VMs go before the pools they came from */
        d->pools = pools_free(d->pools);
        metrics_done(d);
        if (d->vms_host)
                vm_host_kill_all(d->vms_host);
        clients_free_all(d);
        server_close(d);
        access_done(d);
        accel_done(d);
        if (d->reap_ev)
                event_free(d->reap_ev);
        if (d->sigchld_ev)
                event_free(d->sigchld_ev);
        if (d->sigterm_ev)
                event_free(d->sigterm_ev);
        if (d->sigint_ev)
                event_free(d->sigint_ev);
        if (d->sighup_ev)
                event_free(d->sighup_ev);
        d->vms_host = vm_host_free(d->vms_host);
        snapauto_done(d); /* after every creation has reported (or cannot any more) */
        if (d->base)
                event_base_free(d->base);
        op_langs_free(&d->langs);
        free(d->vmm_version);
        op_config_free(&d->cfg);
}
