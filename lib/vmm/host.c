/* host.c: the VM registry: the live and destroyed VMs, run_dir and its VM directories, reaping
 * by pid, freeing at a safe point, and the kill-all at stop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "cleanup.h"
#include "host.h"
#include "lang.h"
#include "poolplan.h"
#include "snap-ref.h"
#include "snapshot.h"
#include "util.h"
#include "vmm-output.h"
#include "workq.h"

void vm_host_log(struct vm_host *h, int prio, const char *fmt, ...)
{
        char msg[VM_HOST_LOG_MAX];
        va_list ap;

        if (!h->cb.log)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        h->cb.log(prio, msg, h->userdata);
}

/* run_dir is the host's alone: VM directories left by an opd that was killed are removed (their
 * names may come back: a restarted opd in a container has the same pid). */
static void remove_stale_vm_dirs(struct vm_host *h)
{
        DIR *dir = opendir(h->cfg->run_dir);
        struct dirent *de;
        unsigned n = 0;

        if (!dir)
                return;
        while ((de = readdir(dir)))
                if (strncmp(de->d_name, "vm-", 3) == 0 && snap_rmtree(dirfd(dir), de->d_name) == 0)
                        n++;
        closedir(dir);
        if (n)
                vm_host_log(h, LOG_INFO, "removed %u VM directories left in %s", n,
                            h->cfg->run_dir);
}

int vm_host_new(struct event_base *base, const struct op_config *cfg, const struct vm_driver *drv,
                void *drv_data, const struct vm_host_callbacks *cb, void *userdata,
                struct vm_host **ret)
{
        struct vm_host *h;
        int r;

        if (!base || !cfg || !drv)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->base = base;
        h->cfg = cfg;
        h->drv = drv;
        h->drv_data = drv_data;
        h->accel = OP_ACCEL_AUTO;
        if (cb)
                h->cb = *cb;
        h->userdata = userdata;
        LIST_INIT(&h->vms);
        LIST_INIT(&h->dead_vms);
        if (asprintf(&h->kernel, "%s/vmlinux", cfg->images_dir) < 0)
                h->kernel = NULL;
        if (asprintf(&h->initrd, "%s/initrd.img", cfg->images_dir) < 0)
                h->initrd = NULL;
        if (!h->kernel || !h->initrd) {
                vm_host_free(h);
                return -ENOMEM;
        }
        r = op_mkdir_p(cfg->run_dir, 0700);
        if (r < 0) {
                vm_host_free(h);
                return r;
        }
        remove_stale_vm_dirs(h);
        if (drv->init)
                drv->init(h);
        *ret = h;
        return 0;
}

static void slot_freed(struct vm_host *h)
{
        if (h->cb.slot_freed)
                h->cb.slot_freed(h, h->userdata);
}

static void reaped(struct vm_host *h, struct vm *vm, int status);

static struct vm *find_jailed(struct vm *first, uint32_t seq, pid_t pid)
{
        for (struct vm *vm = first; vm; vm = LIST_NEXT(vm, link))
                if (vm->proc.jail_seq == seq && vm->proc.pid == pid)
                        return vm;
        return NULL;
}

/* A jailed VMM's exit names it by its spawn's seq as well as its pid: a pid the kernel gave again
 * to a later VMM, reported before this exit was read, never takes that one's exit. */
static void jail_exited(uint32_t seq, pid_t pid, int status, void *userdata)
{
        struct vm_host *h = userdata;
        struct vm *vm = find_jailed(LIST_FIRST(&h->vms), seq, pid);

        if (!vm)
                vm = find_jailed(LIST_FIRST(&h->dead_vms), seq, pid);
        if (vm)
                reaped(h, vm, status);
}

/* The helper reports exits; EOF: it is gone, and with it every VMM (they die with it). */
static void on_jail(evutil_socket_t fd, short what, void *arg)
{
        struct vm_host *h = arg;
        struct vm *vm;
        int r;

        r = vm_jail_read(h->jail, false, 0, jail_exited, h);
        if (r >= 0 || h->jail_lost)
                return;
        h->jail_lost = true;
        event_del(h->jail_ev);
        vm_host_log(h, LOG_CRIT, "opd-jail is gone (%s): no VM can start", strerror(-r));
        while ((vm = LIST_FIRST(&h->vms))) {
                vm->reaped = true;
                vm->exit_said = true; /* how it ended is not known */
                vm_drv_failed(vm, "opd-jail is gone");
                if (LIST_FIRST(&h->vms) == vm)
                        vm_destroy(vm);
        }
        LIST_FOREACH(vm, &h->dead_vms, link)
        vm->reaped = true;
        slot_freed(h);
}

int vm_host_jail(struct vm_host *h, const struct vm_jail_opts *o)
{
        int r;

        if (h->jail)
                return -EALREADY;
        r = vm_jail_start(o, &h->jail);
        if (r < 0)
                return r;
        h->jail_ev = event_new(h->base, vm_jail_fd(h->jail), EV_READ | EV_PERSIST, on_jail, h);
        if (!h->jail_ev) {
                h->jail = vm_jail_free(h->jail);
                return -ENOMEM;
        }
        event_add(h->jail_ev, NULL);
        return 0;
}

int vm_host_output(struct vm_host *h, struct vm *vm, int *ret_wr)
{
        if (vm->out)
                return -EEXIST;
        return vmm_output_new(h->base, ret_wr, &vm->out);
}

int vm_host_spawn(struct vm_host *h, struct vm *vm, uint32_t vmm, char *const *argv, const int *fds,
                  size_t n_fds)
{
        _cleanup_close_ int out = -1;
        int all[JAIL_FDS_MAX];
        struct vm_jail_limits lim = {
            .memory_max_mb = op_lang_memory_mb(h->cfg, vm->lang) + h->cfg->jail.memory_extra_mb,
            .pids_max = h->cfg->jail.pids_max,
            .cpu_weight = h->cfg->jail.cpu_weight,
        };
        uint32_t seq = 0;
        pid_t pid;
        uid_t uid;
        int r;

        if (h->jail && h->jail_lost)
                return -EPIPE;
        if (n_fds + 1 > JAIL_FDS_MAX)
                return -E2BIG;
        r = vm_host_output(h, vm, &out);
        if (r < 0)
                return r;
        if (!h->jail) {
                pid = vmm_spawn(argv, fds, n_fds, vm->workdir, out);
                if (pid < 0)
                        return pid;
                vm->proc.pid = pid;
                vm->proc.uid = getuid();
                return 0;
        }
        all[0] = out;
        for (size_t i = 0; i < n_fds; i++)
                all[1 + i] = fds[i];
        r = vm_jail_spawn(h->jail, vmm, vm->name, argv, all, n_fds + 1, &lim, &seq, &pid, &uid);
        if (vm_jail_pending(h->jail))
                event_active(h->jail_ev, EV_READ, 0);
        if (r < 0)
                return r;
        vm->proc.jail_seq = seq;
        vm->proc.pid = pid;
        vm->proc.uid = uid;
        return 0;
}

static bool uid_used(struct vm *first, uid_t uid)
{
        for (struct vm *vm = first; vm; vm = LIST_NEXT(vm, link))
                if (vm->proc.uid == uid && !vm->reaped)
                        return true;
        return false;
}

int vm_host_free_uid(struct vm_host *h, uid_t *ret)
{
        for (uint64_t u = h->cfg->jail.uid_min; u <= h->cfg->jail.uid_max; u++)
                if (!uid_used(LIST_FIRST(&h->vms), (uid_t)u) &&
                    !uid_used(LIST_FIRST(&h->dead_vms), (uid_t)u)) {
                        *ret = (uid_t)u;
                        return 0;
                }
        return -EUSERS;
}

void vm_host_kill_proc(struct vm_host *h, struct vm *vm)
{
        if (vm->proc.pid <= 0 || vm->reaped)
                return;
        if (h->jail)
                (void)vm_jail_kill(h->jail, vm->proc.jail_seq, vm->proc.pid);
        else
                kill(vm->proc.pid, SIGKILL);
}

/* Two threads: a copy runs while another waits on the disk, and no more compete for it. */
#define VM_HOST_WORKERS 2

int vm_host_workq(struct vm_host *h, struct workq **ret)
{
        int r;

        if (!h->wq && (r = workq_new(h->base, workq_threads_for(VM_HOST_WORKERS), &h->wq)) < 0) {
                h->wq = NULL;
                return r;
        }
        *ret = h->wq;
        return 0;
}

struct vm_host *vm_host_free(struct vm_host *h)
{
        if (!h)
                return NULL;
        vm_host_kill_all(h); /* each VM's release takes back its jobs first */
        workq_free(h->wq);
        if (h->jail_ev)
                event_free(h->jail_ev);
        h->jail = vm_jail_free(h->jail);
        free(h->kernel);
        free(h->initrd);
        free(h);
        return NULL;
}

int vm_host_version(struct vm_host *h, char **ret)
{
        return h->drv->version ? h->drv->version(h, ret) : -EOPNOTSUPP;
}

void vm_host_attach(struct vm_host *h, struct vm *vm)
{
        LIST_INSERT_HEAD(&h->vms, vm, link);
        h->n_vms++;
        h->vms_started++;
}

void vm_host_detach(struct vm_host *h, struct vm *vm)
{
        LIST_REMOVE(vm, link);
        h->n_vms--;
        LIST_INSERT_HEAD(&h->dead_vms, vm, link);
        slot_freed(h);
}

static void reaped(struct vm_host *h, struct vm *vm, int status)
{
        vm->reaped = true;
        vm->exit_status = status;
        vm_reaped(vm); /* may destroy the VM */
        slot_freed(h);
}

/* opd's own child pid: a VM whose VMM opd started itself (a jailed one is opd-jail's child, and
 * its pid may be the kernel's again for a child of opd's). */
static struct vm *find_pid(struct vm *first, pid_t pid)
{
        for (struct vm *vm = first; vm; vm = LIST_NEXT(vm, link))
                if (vm->proc.pid == pid && vm->proc.jail_seq == 0)
                        return vm;
        return NULL;
}

bool vm_host_reap(struct vm_host *h, pid_t pid, int status)
{
        struct vm *vm;

        if (pid <= 0)
                return false;
        vm = find_pid(LIST_FIRST(&h->vms), pid);
        if (!vm)
                vm = find_pid(LIST_FIRST(&h->dead_vms), pid);
        if (!vm)
                return false;
        reaped(h, vm, status);
        return true;
}

static void vm_free(struct vm *vm)
{
        /* The VM's directory. Under Firecracker its VMM writes there: a tree deeper than
         * snap_rmtree() goes is left, and said. */
        int r = snap_rmtree(AT_FDCWD, vm->workdir);

        if (r < 0)
                vm_host_log(vm->host, LOG_WARNING,
                            "%s: cannot remove %s: %s (left for removal by hand)", vm->name,
                            vm->workdir, strerror(-r));
        free(vm->workdir);
        vmm_output_free(vm->out);
        free(vm->ram_path);
        snap_ref_put(vm->snap);
        free(vm);
}

void vm_host_free_dead(struct vm_host *h)
{
        struct vm *vm, *next;

        for (vm = LIST_FIRST(&h->dead_vms); vm; vm = next) {
                next = LIST_NEXT(vm, link);
                if (!vm->reaped)
                        continue;
                LIST_REMOVE(vm, link);
                vm_free(vm);
        }
}

static bool unreaped(struct vm_host *h)
{
        struct vm *vm;

        LIST_FOREACH(vm, &h->dead_vms, link)
        if (!vm->reaped)
                return true;
        return false;
}

void vm_host_kill_all(struct vm_host *h)
{
        struct vm *vm;

        h->stopping = true;
        /* Owners hear of it (and drop their pointers) before the VM goes. */
        while ((vm = LIST_FIRST(&h->vms))) {
                vm_drv_failed(vm, "opd is stopping");
                if (LIST_FIRST(&h->vms) == vm)
                        vm_destroy(vm);
        }
        LIST_FOREACH(vm, &h->dead_vms, link)
        {
                if (vm->reaped)
                        continue;
                if (h->jail) {
                        vm_host_kill_proc(h, vm);
                        continue;
                }
                kill(vm->proc.pid, SIGKILL);
                while (waitpid(vm->proc.pid, &vm->exit_status, 0) < 0 && errno == EINTR)
                        ;
                vm->reaped = true;
        }
        /* Jailed: the helper reaps them and says so; a helper that stops answering is lost, and
         * the VMMs die with it. */
        while (h->jail && !h->jail_lost && unreaped(h))
                if (vm_jail_read(h->jail, true, 30000, jail_exited, h) < 0)
                        break;
        LIST_FOREACH(vm, &h->dead_vms, link)
        vm->reaped = vm->reaped || h->jail_lost || h->jail;
        vm_host_free_dead(h);
}
