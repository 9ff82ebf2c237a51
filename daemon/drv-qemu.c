/* drv-qemu.c: the QEMU driver: processes from lib/vmm-qemu.c, driven over QMP. A snapshot is a
 * migration with x-ignore-shared (RAM stays in the shared memory file), a restore an incoming
 * migration into a paused clone whose RAM maps that file privately. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "opd.h"
#include "poolplan.h"

struct qemu_vm {
        struct qmp *qmp;
        bool saving;
};

static struct qmp *vm_qmp(struct vm *vm)
{
        struct qemu_vm *q = vm->drv;

        return q ? q->qmp : NULL;
}

static void on_qmp_event(struct qmp *q, const char *name, json_t *data, void *arg)
{
        struct vm *vm = arg;
        struct qemu_vm *qv = vm->drv;
        const char *status = json_string_value(json_object_get(data, "status"));
        bool completed;

        if (strcmp(name, "MIGRATION") != 0 || !status)
                return;
        completed = strcmp(status, "completed") == 0;
        if (!completed && strcmp(status, "failed") != 0)
                return;
        if (vm->state == VM_RESTORING) {
                if (completed)
                        vm_drv_loaded(vm);
                else
                        vm_drv_failed(vm, "loading the snapshot's device state failed");
                return;
        }
        if (qv->saving) {
                qv->saving = false;
                vm_drv_saved(vm, completed ? NULL : "saving device state failed");
        }
}

static void on_qmp_broken(struct qmp *q, const char *why, void *arg)
{
        vm_drv_failed(arg, why);
}

/* Any failed QMP command fails the VM: none of ours is optional. */
static void on_qmp_reply(struct qmp *q, json_t *ret, const char *err, void *arg)
{
        char why[600];

        if (!err)
                return;
        snprintf(why, sizeof(why), "QMP: %s", err);
        vm_drv_failed(arg, why);
}

/* The child runs: keep its QMP channel and hand its agent channel to vm.c. */
static int attach(struct vm *vm)
{
        struct qemu_vm *qv = calloc(1, sizeof(*qv));
        int ctl = vm->proc.ctl_fd, r;

        vm->proc.ctl_fd = -1;
        if (!qv) {
                safe_close(ctl);
                return -ENOMEM;
        }
        vm->drv = qv;
        r = qmp_new(vm->d->base, ctl, on_qmp_event, on_qmp_broken, vm, &qv->qmp);
        if (r < 0)
                return r;
        vm_drv_agent_connected(vm, vm->proc.agent_fd, false);
        vm->proc.agent_fd = -1;
        return 0;
}

static int qemu_boot(struct vm *vm, int mem_fd)
{
        struct opd *d = vm->d;
        struct vmm_boot b = {
            .kernel = d->kernel,
            .initrd = d->initrd,
            .rootfs = vm->lang->rootfs,
            .workdir = vm->workdir,
            .memory_mb = op_lang_memory_mb(&d->cfg, vm->lang),
            .vcpus = d->cfg.vm_vcpus,
            .accel = vm->accel,
            .mem_fd = mem_fd,
        };
        int r = vmm_qemu.boot(d->cfg.qemu_binary, &b, &vm->proc);

        return r < 0 ? r : attach(vm);
}

/* Both ends of a snapshot: guest RAM stays in its file (x-ignore-shared), and QEMU reports the
 * migration's progress as MIGRATION events. */
static int set_migration_caps(struct vm *vm)
{
        return qmp_command(vm_qmp(vm), "migrate-set-capabilities",
                           json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}", "capabilities", "capability",
                                     "x-ignore-shared", "state", 1, "capability", "events", "state",
                                     1),
                           on_qmp_reply, vm);
}

static int qemu_restore(struct vm *vm)
{
        _cleanup_close_ int mem = -1, rootfs = -1, vmstate = -1;
        struct opd *d = vm->d;
        struct snap_ref *snap = vm->snap;
        struct vmm_restore rs;
        int r;

        mem = openat(snap->dirfd, "mem", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        rootfs = openat(snap->dirfd, "rootfs.ext4", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        vmstate = openat(snap->dirfd, "vmstate", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (mem < 0 || rootfs < 0 || vmstate < 0)
                return -errno;
        rs = (struct vmm_restore){
            .workdir = vm->workdir,
            .rootfs_fd = rootfs,
            .mem_fd = mem,
            .vmstate_fd = vmstate,
            .memory_mb = snap->m.memory_mb,
            .vcpus = snap->m.vcpus,
            .accel = vm->accel,
        };
        r = vmm_qemu.restore(d->cfg.qemu_binary, &rs, &vm->proc);
        if (r >= 0)
                r = attach(vm);
        /* All queued at once: QEMU reads them after its greeting, in order. */
        if (r >= 0)
                r = set_migration_caps(vm);
        if (r >= 0)
                r = qmp_command(vm_qmp(vm), "migrate-incoming",
                                json_pack("{s:s}", "uri", VMM_QEMU_INCOMING_URI), on_qmp_reply, vm);
        return r;
}

static void on_cont_reply(struct qmp *q, json_t *ret, const char *err, void *arg)
{
        if (!err)
                vm_drv_resumed(arg);
        on_qmp_reply(q, ret, err, arg);
}

static int qemu_resume(struct vm *vm)
{
        return qmp_command(vm_qmp(vm), "cont", NULL, on_cont_reply, vm);
}

static void on_stop_reply(struct qmp *q, json_t *ret, const char *err, void *arg)
{
        if (err)
                on_qmp_reply(q, ret, err, arg);
        else
                vm_drv_paused(arg);
}

static int qemu_pause(struct vm *vm)
{
        return qmp_command(vm_qmp(vm), "stop", NULL, on_stop_reply, vm);
}

static bool shell_safe(const char *p)
{
        for (; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || strchr("/._-+", *p)))
                        return false;
        return true;
}

static int qemu_snapshot(struct vm *vm, const char *dir)
{
        struct qemu_vm *qv = vm->drv;
        _cleanup_free_ char *uri = NULL;
        int r;

        if (qv->saving)
                return -EBUSY;
        /* QEMU 7.2 writes an outgoing migration to a command or a named fd; the path is ours. */
        if (!shell_safe(dir) || asprintf(&uri, "exec:cat > %s/vmstate", dir) < 0)
                return -EINVAL;
        qv->saving = true;
        r = set_migration_caps(vm);
        if (r >= 0)
                r = qmp_command(qv->qmp, "stop", NULL, on_qmp_reply, vm);
        if (r >= 0)
                r = qmp_command(qv->qmp, "migrate", json_pack("{s:s}", "uri", uri), on_qmp_reply,
                                vm);
        if (r < 0)
                qv->saving = false;
        return r;
}

static void qemu_release(struct vm *vm)
{
        struct qemu_vm *qv = vm->drv;

        safe_close(vm->proc.agent_fd);
        safe_close(vm->proc.ctl_fd);
        vm->proc.agent_fd = vm->proc.ctl_fd = -1;
        if (!qv)
                return;
        qmp_free(qv->qmp);
        free(qv);
        vm->drv = NULL;
}

static int qemu_version_of(struct opd *d, char **ret)
{
        return qemu_version(d->cfg.qemu_binary, ret);
}

const struct vm_driver vm_driver_qemu = {
    .name = "qemu",
    .console = "console.log",
    .version = qemu_version_of,
    .only_accel = OP_ACCEL_AUTO,
    .boot = qemu_boot,
    .restore = qemu_restore,
    .resume = qemu_resume,
    .pause = qemu_pause,
    .snapshot = qemu_snapshot,
    .release = qemu_release,
};
