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
#include "snap-ref.h"
#include "snapshot.h"
#include "util.h"

void vm_host_log(struct vm_host *h, int prio, const char *fmt, ...)
{
        char msg[1024];
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

struct vm_host *vm_host_free(struct vm_host *h)
{
        if (!h)
                return NULL;
        vm_host_kill_all(h);
        free(h->kernel);
        free(h->initrd);
        free(h);
        return NULL;
}

int vm_host_version(struct vm_host *h, char **ret)
{
        return h->drv->version ? h->drv->version(h, ret) : -EOPNOTSUPP;
}

static void slot_freed(struct vm_host *h)
{
        if (h->cb.slot_freed)
                h->cb.slot_freed(h, h->userdata);
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

static struct vm *find_pid(struct vm *first, pid_t pid)
{
        for (struct vm *vm = first; vm; vm = LIST_NEXT(vm, link))
                if (vm->proc.pid == pid)
                        return vm;
        return NULL;
}

bool vm_host_reap(struct vm_host *h, pid_t pid, int status)
{
        struct vm *vm;
        char why[128];

        if (pid <= 0)
                return false;
        vm = find_pid(LIST_FIRST(&h->vms), pid);
        if (!vm)
                vm = find_pid(LIST_FIRST(&h->dead_vms), pid);
        if (!vm)
                return false;
        vm->reaped = true;
        vm->exit_status = status;
        if (vm->state != VM_DEAD) {
                if (WIFSIGNALED(status))
                        snprintf(why, sizeof(why), "VMM process killed by signal %d",
                                 WTERMSIG(status));
                else
                        snprintf(why, sizeof(why), "VMM process exited with status %d",
                                 WEXITSTATUS(status));
                vm_drv_failed(vm, why);
        }
        slot_freed(h);
        return true;
}

static void vm_free(struct vm *vm)
{
        snap_rmtree(AT_FDCWD, vm->workdir); /* the VM's directory */
        free(vm->workdir);
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
                kill(vm->proc.pid, SIGKILL);
                while (waitpid(vm->proc.pid, &vm->exit_status, 0) < 0 && errno == EINTR)
                        ;
                vm->reaped = true;
        }
        vm_host_free_dead(h);
}
