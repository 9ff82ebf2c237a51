/* qemu.c: the QEMU driver: one command line for a boot and a restore, the agent channel and QMP
 * over socketpairs handed to the child as fds, and the QMP sequences that drive the VM. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "evtimer.h"
#include "host.h"
#include "lang.h"
#include "msg.h"
#include "poolplan.h"
#include "qmp.h"
#include "snap-ref.h"
#include "util.h"
#include "vm.h"
#include "vmm.h"

#define QEMU_ARGV_MAX 64
/* TCG's translation buffer, MiB. Its pages cost memory only once translated code fills them: a
 * primed clone's PSS is the same under a cap of 32, 64 or QEMU's default of 1 GiB, while a cap
 * under the working set makes QEMU flush and translate again (16: bash's prime program ran 5x
 * slower). A cold boot alone translates ~48 MB of code and a first python run ~30 MB more
 * (bench/restore, docs/benchmarks.md): 256 leaves room for that and bounds what a guest can make
 * QEMU allocate to a quarter of the default. */
#define QEMU_TCG_TB_MB 256
/* How long a failed VM's console may take to read before its owner is told anyway. */
#define QEMU_CONSOLE_READ_MS 1000

/* Kernel command line (measured in docs/images.md): quiet, no self-tests or timer checks that
 * cost seconds under emulation, one UART, panic ends the VM (-no-reboot). After "--": op-agent's
 * own options: user code runs as the unprivileged user "op" (1000:1000) of the image. */
#define GUEST_CMDLINE                                                                              \
        "console=ttyS0 quiet cryptomgr.notests no_timer_check rcupdate.rcu_expedited=1 "           \
        "i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 panic=-1 op.root=/dev/vda"
#define AGENT_ARGS "-- --uid 1000 --gid 1000"
/* Under software emulation translated code is found again by its address: with the guest's
 * user-space layout fixed, a program primed once runs from already translated code in every
 * later process of that VM. The guest runs one request's arbitrary code by design, so user-space
 * ASLR protects nothing there; the kernel keeps its own randomization. */
#define TCG_ARGS "norandmaps"

/* qboot starts a Linux kernel faster than SeaBIOS; used when QEMU ships it. */
#define QBOOT_ROM "/usr/share/qemu/qboot.rom"

/* q35 without the devices our guest never touches: VMware's I/O port, the SMBus and its
 * EEPROMs, the AHCI controller, the PS/2 controller and the HPET (the kernel calibrates its TSC
 * against the PIT). What is left on the ISA bus (PIT, PIC, RTC, DMA, speaker) q35 builds in any
 * case. Changing this line changes the device state a snapshot holds: bump QEMU_MACHINE_TAG. */
#define MACHINE "q35,vmport=off,smbus=off,sata=off,i8042=off,hpet=off"

/* QEMU's seccomp filter: no obsolete system calls, no set*uid/gid, no fork or exec, no
 * scheduler or affinity changes. Hence a snapshot's device state goes to an fd, not exec:. */
#define SANDBOX "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

struct argv_builder {
        char *v[QEMU_ARGV_MAX + 1];
        size_t n;
        int err;
};

static void add(struct argv_builder *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct argv_builder *a, const char *fmt, ...)
{
        va_list ap;
        char *s;

        if (a->err)
                return;
        if (a->n >= QEMU_ARGV_MAX) {
                a->err = -E2BIG;
                return;
        }
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0) {
                a->err = -ENOMEM;
                s = NULL;
        }
        va_end(ap);
        if (s)
                a->v[a->n++] = s;
}

/* QEMU's option syntax uses ',' as a separator: a path holding one cannot be passed safely. */
static int path_ok(const char *p)
{
        return p && *p && !strchr(p, ',');
}

static bool accel_ok(enum op_accel a)
{
        return a == OP_ACCEL_KVM || a == OP_ACCEL_TCG;
}

static int finish(struct argv_builder *a, char ***ret)
{
        char **out;

        if (!a->err && !(out = calloc(a->n + 1, sizeof(char *))))
                a->err = -ENOMEM;
        if (a->err) {
                for (size_t i = 0; i < a->n; i++)
                        free(a->v[i]);
                return a->err;
        }
        memcpy(out, a->v, a->n * sizeof(char *));
        *ret = out;
        return 0;
}

/* Booted or restored, every VM of ours has the same machine and devices: a restore needs those
 * of the boot that made the snapshot, so both are built here and only here. */
int qemu_argv(const char *binary, const struct qemu_machine *m, char ***ret)
{
        struct argv_builder b = {0}, *a = &b;
        bool restore = !m->kernel, mem_backend = restore || m->mem_file;

        if (!accel_ok(m->accel))
                return -EINVAL;
        if (!restore && (!path_ok(m->kernel) || !path_ok(m->initrd) || !path_ok(m->rootfs)))
                return -EINVAL;
        add(a, "%s", binary);
        add(a, "-M");
        add(a, "%s%s", MACHINE, mem_backend ? ",memory-backend=mem" : "");
        if (access(QBOOT_ROM, R_OK) == 0) {
                add(a, "-bios");
                add(a, QBOOT_ROM);
        }
        add(a, "-accel");
        if (m->accel == OP_ACCEL_KVM)
                add(a, "kvm");
        else
                add(a, "tcg,tb-size=%u", QEMU_TCG_TB_MB);
        add(a, "-cpu");
        add(a, "%s", m->accel == OP_ACCEL_KVM ? "host" : "max");
        add(a, "-m");
        add(a, "%uM", m->memory_mb);
        if (mem_backend) {
                /* A boot for a snapshot shares RAM with its file. A clone maps it privately and
                 * writable but opens it read-only (readonly=on, rom=off: QEMU >= 8.2): its
                 * writes stay in its own copied pages and never reach the file. */
                add(a, "-object");
                add(a, "memory-backend-file,id=mem,size=%uM,mem-path=/proc/self/fd/%d,%s",
                    m->memory_mb, VMM_FD_MEM,
                    restore ? "share=off,readonly=on,rom=off" : "share=on");
        }
        add(a, "-smp");
        add(a, "%u", m->vcpus);
        add(a, "-nodefaults");
        add(a, "-no-user-config");
        add(a, "-nographic");
        add(a, "-no-reboot");
        add(a, "-sandbox");
        add(a, SANDBOX);
        /* The console goes to a ring in QEMU's memory: bounded whatever the guest writes, read
         * over QMP when the VM fails. */
        add(a, "-chardev");
        add(a, "ringbuf,id=%s,size=%u", QEMU_CONSOLE_ID, QEMU_CONSOLE_RING);
        add(a, "-serial");
        add(a, "chardev:%s", QEMU_CONSOLE_ID);
        add(a, "-drive");
        if (restore)
                add(a, "file=/proc/self/fd/%d,if=none,id=root,format=raw,readonly=on",
                    VMM_FD_ROOTFS);
        else
                add(a, "file=%s,if=none,id=root,format=raw,readonly=on", m->rootfs);
        add(a, "-device");
        add(a, "virtio-blk-pci,drive=root");
        add(a, "-device");
        add(a, "virtio-serial-pci");
        add(a, "-chardev");
        add(a, "socket,id=agent,fd=%d", VMM_FD_AGENT);
        add(a, "-device");
        add(a, "virtserialport,chardev=agent,name=op.agent");
        add(a, "-chardev");
        add(a, "socket,id=qmp,fd=%d", VMM_FD_CTL);
        add(a, "-mon");
        add(a, "chardev=qmp,mode=control");
        if (restore) {
                /* Stay paused after the device state is in; x-ignore-shared must be set before
                 * the incoming migration starts, which only QMP can do (no -global for it, QEMU
                 * 10): hence "defer". */
                add(a, "-S");
                add(a, "-incoming");
                add(a, "defer");
        } else {
                add(a, "-kernel");
                add(a, "%s", m->kernel);
                add(a, "-initrd");
                add(a, "%s", m->initrd);
                add(a, "-append");
                add(a, "%s%s%s%s %s", GUEST_CMDLINE, m->accel == OP_ACCEL_TCG ? " " TCG_ARGS : "",
                    m->extra_args ? " " : "", m->extra_args ? m->extra_args : "", AGENT_ARGS);
        }
        return finish(a, ret);
}

/* Start QEMU with the agent and QMP socketpairs at fds 3 and 4 and extra fds from 5 on. */
static int spawn(struct vm *vm, char **argv, const int *extra_fds, size_t n_extra)
{
        _cleanup_close_ int agent_host = -1, agent_vm = -1, ctl_host = -1, ctl_vm = -1;
        _cleanup_free_ char *log_path = NULL;
        int sp[2], fds[8];
        pid_t pid;

        if (n_extra + 2 > ELEMENTSOF(fds))
                return -E2BIG;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
                return -errno;
        agent_host = sp[0];
        agent_vm = sp[1];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
                return -errno;
        ctl_host = sp[0];
        ctl_vm = sp[1];
        if (asprintf(&log_path, "%s/qemu.log", vm->workdir) < 0)
                return -ENOMEM;
        fds[0] = agent_vm;
        fds[1] = ctl_vm;
        for (size_t i = 0; i < n_extra; i++)
                fds[2 + i] = extra_fds[i];
        pid = vmm_spawn(argv, fds, 2 + n_extra, vm->workdir, log_path);
        if (pid < 0)
                return pid;
        vm->proc = (struct vmm_proc){
            .pid = pid,
            .agent_fd = TAKE_FD(agent_host),
            .ctl_fd = TAKE_FD(ctl_host),
        };
        return 0;
}

int qemu_version(const char *binary, char **ret)
{
        _cleanup_free_ char *out = NULL;
        char *p, *end;
        int r;

        r = vmm_version_output(binary, &out);
        if (r < 0)
                return r;
        /* "QEMU emulator version 7.2.22 (Debian ...)" */
        p = strstr(out, "version ");
        if (!p)
                return -ENOEXEC;
        p += strlen("version ");
        end = p + strcspn(p, " \n");
        *ret = strndup(p, (size_t)(end - p));
        return *ret ? 0 : -ENOMEM;
}

int qemu_version_supported(const char *version, char *err, size_t errlen)
{
        unsigned major = 0, minor = 0;

        if (!version || sscanf(version, "%u.%u", &major, &minor) != 2)
                return op_errf(err, errlen, -ENOEXEC, "cannot read a QEMU release from \"%s\"",
                               version ? version : "");
        if (major < QEMU_MIN_MAJOR || (major == QEMU_MIN_MAJOR && minor < QEMU_MIN_MINOR))
                return op_errf(err, errlen, -EPROTONOSUPPORT,
                               "QEMU %.*s is too old: opd needs QEMU %u.%u or later (read-only "
                               "snapshot memory: memory-backend-file readonly=on,rom=off)",
                               (int)strcspn(version, "/"), version, QEMU_MIN_MAJOR, QEMU_MIN_MINOR);
        return 0;
}

struct qemu_vm {
        struct qmp *qmp;
        bool saving;
        struct event *console_timer; /* console_read: how long the answer may take */
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
        r = qmp_new(vm->host->base, ctl, on_qmp_event, on_qmp_broken, vm, &qv->qmp);
        if (r < 0)
                return r;
        vm_drv_agent_connected(vm, vm->proc.agent_fd, false);
        vm->proc.agent_fd = -1;
        return 0;
}

static int qemu_boot(struct vm *vm, int mem_fd)
{
        const struct vm_host *h = vm->host;
        struct qemu_machine m = {
            .accel = vm->accel,
            .memory_mb = op_lang_memory_mb(h->cfg, vm->lang),
            .vcpus = h->cfg->vm_vcpus,
            .kernel = h->kernel,
            .initrd = h->initrd,
            .rootfs = vm->lang->rootfs,
            .mem_file = mem_fd >= 0,
        };
        char **argv = NULL;
        int r;

        r = qemu_argv(h->cfg->qemu_binary, &m, &argv);
        if (r < 0)
                return r;
        /* fd 5 is the memory file when there is one; nothing otherwise. */
        r = spawn(vm, argv, &mem_fd, mem_fd >= 0 ? 1 : 0);
        op_argv_free(argv);
        return r < 0 ? r : attach(vm);
}

/* A snapshot is a migration with x-ignore-shared (RAM stays in the shared memory file), a
 * restore an incoming migration into a paused clone whose RAM maps that file privately. Both
 * ends: guest RAM stays in its file, and QEMU reports the migration's progress as MIGRATION
 * events. */
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
        struct snap_ref *snap = vm->snap;
        struct qemu_machine m = {
            .accel = vm->accel,
            .memory_mb = snap->m.memory_mb,
            .vcpus = snap->m.vcpus,
        };
        char **argv = NULL;
        int r;

        mem = openat(snap->dirfd, "mem", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        rootfs = openat(snap->dirfd, "rootfs.ext4", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        vmstate = openat(snap->dirfd, "vmstate", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (mem < 0 || rootfs < 0 || vmstate < 0)
                return -errno;
        r = qemu_argv(vm->host->cfg->qemu_binary, &m, &argv);
        if (r < 0)
                return r;
        r = spawn(vm, argv, (const int[]){mem, rootfs, vmstate}, 3);
        op_argv_free(argv);
        if (r >= 0)
                r = attach(vm);
        /* All queued at once: QEMU reads them after its greeting, in order. */
        if (r >= 0)
                r = set_migration_caps(vm);
        if (r >= 0)
                r = qmp_command(vm_qmp(vm), "migrate-incoming",
                                json_pack("{s:s}", "uri", QEMU_INCOMING_URI), on_qmp_reply, vm);
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

/* The device state goes to dir/vmstate through an fd QEMU is handed over QMP ("getfd"): QEMU
 * opens nothing and runs nothing (its sandbox denies spawning a command). */
static int qemu_snapshot(struct vm *vm, const char *dir)
{
        struct qemu_vm *qv = vm->drv;
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if (qv->saving)
                return -EBUSY;
        if (asprintf(&path, "%s/vmstate", dir) < 0)
                return -ENOMEM;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        qv->saving = true;
        r = qmp_command_fd(qv->qmp, "getfd", json_pack("{s:s}", "fdname", "vmstate"), fd,
                           on_qmp_reply, vm);
        if (r >= 0)
                r = set_migration_caps(vm);
        if (r >= 0)
                r = qmp_command(qv->qmp, "stop", NULL, on_qmp_reply, vm);
        if (r >= 0)
                r = qmp_command(qv->qmp, "migrate", json_pack("{s:s}", "uri", "fd:vmstate"),
                                on_qmp_reply, vm);
        if (r < 0)
                qv->saving = false;
        return r;
}

static void console_done(struct vm *vm, const void *data, size_t len)
{
        struct qemu_vm *qv = vm->drv;

        if (qv->console_timer) {
                event_free(qv->console_timer);
                qv->console_timer = NULL;
        }
        vm_drv_console(vm, data, len); /* may destroy the VM */
}

static void on_ringbuf_read(struct qmp *q, json_t *ret, const char *err, void *arg)
{
        struct vm *vm = arg;
        _cleanup_free_ uint8_t *data = NULL;
        size_t len = 0;

        if (!err && json_is_string(ret) &&
            op_base64_decode(json_string_value(ret), json_string_length(ret), &data, &len) < 0)
                len = 0;
        console_done(vm, data, len);
}

static void on_console_timeout(evutil_socket_t fd, short what, void *arg)
{
        console_done(arg, NULL, 0);
}

/* The ring's whole content (the oldest bytes come first: ringbuf-read takes from the front),
 * as base64: the guest's bytes exactly, whatever they are. */
static int qemu_console_read(struct vm *vm)
{
        struct qemu_vm *qv = vm->drv;
        int r;

        if (!qv || qv->console_timer)
                return -EBUSY;
        qv->console_timer = evtimer_new(vm->host->base, on_console_timeout, vm);
        if (!qv->console_timer)
                return -ENOMEM;
        r = qmp_command(qv->qmp, "ringbuf-read",
                        json_pack("{s:s, s:i, s:s}", "device", QEMU_CONSOLE_ID, "size",
                                  QEMU_CONSOLE_RING, "format", "base64"),
                        on_ringbuf_read, vm);
        if (r < 0) {
                event_free(qv->console_timer);
                qv->console_timer = NULL;
                return r;
        }
        op_timer_arm_ms(qv->console_timer, QEMU_CONSOLE_READ_MS);
        return 0;
}

static void qemu_release(struct vm *vm)
{
        struct qemu_vm *qv = vm->drv;

        safe_close(vm->proc.agent_fd);
        safe_close(vm->proc.ctl_fd);
        vm->proc.agent_fd = vm->proc.ctl_fd = -1;
        if (!qv)
                return;
        if (qv->console_timer)
                event_free(qv->console_timer);
        qmp_free(qv->qmp);
        free(qv);
        vm->drv = NULL;
}

/* The release, and the machine this driver builds: a snapshot loads only into both. */
static int qemu_version_of(struct vm_host *h, char **ret)
{
        _cleanup_free_ char *v = NULL;
        int r;

        r = qemu_version(h->cfg->qemu_binary, &v);
        if (r < 0)
                return r;
        return asprintf(ret, "%s/%s", v, QEMU_MACHINE_TAG) < 0 ? -ENOMEM : 0;
}

const struct vm_driver vm_driver_qemu = {
    .name = "qemu",
    .console = NULL, /* a ring in QEMU: console_read */
    .version = qemu_version_of,
    .only_accel = OP_ACCEL_AUTO,
    .boot = qemu_boot,
    .restore = qemu_restore,
    .resume = qemu_resume,
    .pause = qemu_pause,
    .snapshot = qemu_snapshot,
    .console_read = qemu_console_read,
    .release = qemu_release,
};
