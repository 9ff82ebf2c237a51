/* vmm-qemu.c: the QEMU driver: command lines for booting a guest (KVM or TCG), with the agent
 * channel on virtio-serial and QMP both over socketpairs handed to the child as fds. */
#include "vmm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "lang.h"

#define QEMU_ARGV_MAX 64

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

/* What every VM of ours has, booted or restored: a restore needs the same machine and devices
 * as the boot that made the snapshot, so both are built here and only here. */
static void machine_args(struct argv_builder *a, const char *binary, enum op_accel accel,
                         uint32_t memory_mb, uint32_t vcpus, bool mem_backend, bool shared,
                         const char *rootfs)
{
        add(a, "%s", binary);
        add(a, "-M");
        add(a, "q35%s", mem_backend ? ",memory-backend=mem" : "");
        if (access(QBOOT_ROM, R_OK) == 0) {
                add(a, "-bios");
                add(a, QBOOT_ROM);
        }
        add(a, "-accel");
        add(a, "%s", accel == OP_ACCEL_KVM ? "kvm" : "tcg");
        add(a, "-cpu");
        add(a, "%s", accel == OP_ACCEL_KVM ? "host" : "max");
        add(a, "-m");
        add(a, "%uM", memory_mb);
        if (mem_backend) {
                add(a, "-object");
                add(a, "memory-backend-file,id=mem,size=%uM,mem-path=/proc/self/fd/%d,share=%s",
                    memory_mb, VMM_FD_MEM, shared ? "on" : "off");
        }
        add(a, "-smp");
        add(a, "%u", vcpus);
        add(a, "-nodefaults");
        add(a, "-no-user-config");
        add(a, "-nographic");
        add(a, "-no-reboot");
        add(a, "-serial");
        add(a, "file:console.log");
        add(a, "-drive");
        add(a, "file=%s,if=none,id=root,format=raw,readonly=on", rootfs);
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

static bool accel_ok(enum op_accel a)
{
        return a == OP_ACCEL_KVM || a == OP_ACCEL_TCG;
}

int qemu_boot_argv(const char *binary, const struct vmm_boot *b, char ***ret)
{
        struct argv_builder a = {0};

        if (!path_ok(b->kernel) || !path_ok(b->initrd) || !path_ok(b->rootfs) ||
            !accel_ok(b->accel))
                return -EINVAL;
        machine_args(&a, binary, b->accel, b->memory_mb, b->vcpus, b->mem_fd >= 0, true, b->rootfs);
        add(&a, "-kernel");
        add(&a, "%s", b->kernel);
        add(&a, "-initrd");
        add(&a, "%s", b->initrd);
        add(&a, "-append");
        add(&a, "%s%s%s%s %s", GUEST_CMDLINE, b->accel == OP_ACCEL_TCG ? " " TCG_ARGS : "",
            b->extra_args ? " " : "", b->extra_args ? b->extra_args : "", AGENT_ARGS);
        return finish(&a, ret);
}

int qemu_restore_argv(const char *binary, const struct vmm_restore *r, char ***ret)
{
        struct argv_builder a = {0};
        char rootfs[32];

        if (!accel_ok(r->accel))
                return -EINVAL;
        snprintf(rootfs, sizeof(rootfs), "/proc/self/fd/%d", VMM_FD_ROOTFS);
        machine_args(&a, binary, r->accel, r->memory_mb, r->vcpus, true, false, rootfs);
        /* Stay paused after the device state is in; x-ignore-shared must be set before the
         * incoming migration starts, which only QMP can do in QEMU 7.2: hence "defer". */
        add(&a, "-S");
        add(&a, "-incoming");
        add(&a, "defer");
        return finish(&a, ret);
}

static int spawn(const char *binary, char **argv, const char *workdir, const int *extra_fds,
                 size_t n_extra, struct vmm_proc *ret)
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
        if (asprintf(&log_path, "%s/qemu.log", workdir) < 0)
                return -ENOMEM;
        fds[0] = agent_vm;
        fds[1] = ctl_vm;
        for (size_t i = 0; i < n_extra; i++)
                fds[2 + i] = extra_fds[i];
        pid = vmm_spawn(argv, fds, 2 + n_extra, workdir, log_path);
        if (pid < 0)
                return pid;
        *ret = (struct vmm_proc){
            .pid = pid,
            .agent_fd = TAKE_FD(agent_host),
            .ctl_fd = TAKE_FD(ctl_host),
        };
        return 0;
}

static int qemu_boot(const char *binary, const struct vmm_boot *b, struct vmm_proc *ret)
{
        char **argv = NULL;
        int r;

        r = qemu_boot_argv(binary, b, &argv);
        if (r < 0)
                return r;
        /* fd 5 is the memory file when there is one; nothing otherwise. */
        r = spawn(binary, argv, b->workdir, &b->mem_fd, b->mem_fd >= 0 ? 1 : 0, ret);
        op_argv_free(argv);
        return r;
}

static int qemu_restore(const char *binary, const struct vmm_restore *rs, struct vmm_proc *ret)
{
        const int extra[] = {rs->mem_fd, rs->rootfs_fd, rs->vmstate_fd};
        char **argv = NULL;
        int r;

        r = qemu_restore_argv(binary, rs, &argv);
        if (r < 0)
                return r;
        r = spawn(binary, argv, rs->workdir, extra, ELEMENTSOF(extra), ret);
        op_argv_free(argv);
        return r;
}

const struct vmm_driver vmm_qemu = {
    .name = "qemu",
    .boot = qemu_boot,
    .restore = qemu_restore,
};

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
