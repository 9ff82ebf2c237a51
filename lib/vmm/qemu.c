/* qemu.c: the QEMU driver: one command line for a boot and a restore, the agent channel and QMP
 * over socketpairs handed to the child as fds, and the QMP sequences that drive the VM. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "evtimer.h"
#include "fs-space.h"
#include "host.h"
#include "lang.h"
#include "migsplit.h"
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

/* What a VM's name may hold on QEMU's command line. */
#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"

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
        if (m->name && (!m->name[0] || strspn(m->name, NAME_CHARS) != strlen(m->name)))
                return -EINVAL;
        add(a, "%s", binary);
        if (m->name) {
                add(a, "-name");
                add(a, "guest=%s", m->name);
        }
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
        /* One port (the agent's, number 1: 0 is a console's): each port has two queues, and
         * every queue costs its host notifier on every start and stop of the VM (a resume is
         * one). QEMU's default of 31 ports made 64 of them. */
        add(a, "-device");
        add(a, "virtio-serial-pci,max_ports=2");
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
        int sp[2], fds[8];
        int r;

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
        fds[0] = agent_vm;
        fds[1] = ctl_vm;
        for (size_t i = 0; i < n_extra; i++)
                fds[2 + i] = extra_fds[i];
        r = vm_host_spawn(vm->host, vm, 0, argv, fds, 2 + n_extra);
        if (r < 0)
                return r;
        vm->proc.agent_fd = TAKE_FD(agent_host);
        vm->proc.ctl_fd = TAKE_FD(ctl_host);
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

/* Saving a restored clone: QEMU sends the whole stream (its RAM is a private mapping, so its
 * pages are in it) over a socket; opd cuts the RAM out into dir/mem and writes the rest to
 * dir/vmstate (migsplit.h). The stream is read into one buffer and split where it lies: a run
 * of contiguous pages is written with one pwritev() from the buffer, no copy in between. */
#define SPLIT_READ_MAX (1024 * 1024)                        /* read per loop turn */
#define SPLIT_BUF      (SPLIT_READ_MAX + MIGSPLIT_ITEM_MAX) /* a read after an unsplit item */
#define SPLIT_IOV_MAX  256                                  /* pages written at once */

struct qemu_split {
        struct migsplit ms;
        int sock; /* opd's end; QEMU has the other */
        struct event *ev;
        uint8_t *buf; /* SPLIT_BUF: the stream read and not yet split */
        size_t len;
        int state_fd, mem_fd;
        uint64_t mem_size;
        uint64_t run_off; /* the n_run pages in run (in buf) start there */
        unsigned n_run;
        uint64_t end;                /* bytes of the memory file written so far, at most */
        bool eof;                    /* the stream is all read and whole */
        bool migrated;               /* QEMU reported the migration completed */
        bool ended;                  /* QEMU reported the migration's end (completed or failed) */
        bool asking;                 /* ... failed, and QMP is asked why */
        char *state_path, *mem_path; /* for messages */
        char err[600];               /* the save failed on opd's side: why */
        struct iovec run[SPLIT_IOV_MAX];
};

struct qemu_vm {
        struct qmp *qmp;
        bool saving;
        char *save_path;          /* the device state's file while saving a boot (messages) */
        struct qemu_split *split; /* saving a clone */
        int mem_fd;               /* a boot for a snapshot: its memory file, read-only once saved */
        struct event *console_timer; /* console_read: how long the answer may take */
};

static void split_end(struct vm *vm, const char *err);

static struct qmp *vm_qmp(struct vm *vm)
{
        struct qemu_vm *q = vm->drv;

        return q ? q->qmp : NULL;
}

static void on_save_failed_desc(struct qmp *q, json_t *ret, const char *err, void *arg);

/* QEMU's migration failed on its side: why it did is in query-migrate's error-desc. A broken
 * QMP channel fails the VM instead (on_qmp_broken). */
static void save_failed(struct vm *vm)
{
        int r = qmp_command(vm_qmp(vm), "query-migrate", NULL, on_save_failed_desc, vm);

        if (r < 0 && r != -EPIPE)
                on_save_failed_desc(vm_qmp(vm), NULL, NULL, vm);
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
        if (qv->split) {
                qv->split->ended = true;
                qv->split->migrated = completed;
                if (completed || qv->split->err[0]) {
                        split_end(vm, NULL);
                        return;
                }
                qv->split->asking = true;
                save_failed(vm);
                return;
        }
        if (qv->saving) {
                /* the memory file it booted with is the snapshot's: read-only from now on */
                if (completed && qv->mem_fd >= 0 && fchmod(qv->mem_fd, 0444) < 0)
                        completed = false;
                if (completed) {
                        qv->saving = false;
                        vm_drv_saved(vm, NULL);
                } else
                        save_failed(vm);
        }
}

static struct qemu_split *split_free(struct qemu_split *sp)
{
        if (!sp)
                return NULL;
        if (sp->ev)
                event_free(sp->ev);
        free(sp->buf);
        free(sp->state_path);
        free(sp->mem_path);
        safe_close(sp->sock);
        safe_close(sp->state_fd);
        safe_close(sp->mem_fd);
        free(sp);
        return NULL;
}

/* The save of a clone ends once QEMU says the migration completed and its stream is all split;
 * or, when it failed on opd's side (sp->err) or on QEMU's (err), once QEMU says its migration
 * ended: the VM is stopped and whole then, and may run on. */
static void split_end(struct vm *vm, const char *err)
{
        struct qemu_vm *qv = vm->drv;
        struct qemu_split *sp = qv->split;
        char why[sizeof(sp->err)];
        int r;

        if (!err && !sp->err[0] && !(sp->eof && sp->migrated))
                return;
        if (!err && sp->err[0] && (!sp->ended || sp->asking))
                return;
        if (!err && !sp->err[0]) {
                r = fchmod(sp->mem_fd, 0444) < 0 || fchmod(sp->state_fd, 0444) < 0 ? -errno : 0;
                if (r < 0)
                        op_errf(sp->err, sizeof(sp->err), r, "saving the clone: %s", strerror(-r));
        }
        snprintf(why, sizeof(why), "%s", err ? err : sp->err);
        qv->split = split_free(sp);
        qv->saving = false;
        if (why[0])
                vm_drv_save_failed(vm, why);
        else
                vm_drv_saved(vm, NULL);
}

/* The save cannot go on on opd's side (sp->err says why): the stream is closed, so that QEMU's
 * migration fails too (or has ended), and split_end() reports it once QEMU says so. A QEMU that
 * died instead breaks its QMP channel: the VM fails. */
static void split_fail(struct vm *vm)
{
        struct qemu_vm *qv = vm->drv;
        struct qemu_split *sp = qv->split;

        if (sp->ev)
                event_del(sp->ev);
        sp->sock = safe_close(sp->sock);
        split_end(vm, NULL);
}

static void on_save_failed_desc(struct qmp *q, json_t *ret, const char *err, void *arg)
{
        struct vm *vm = arg;
        struct qemu_vm *qv = vm->drv;
        const char *desc = json_string_value(json_object_get(ret, "error-desc"));
        const char *path = qv->split ? qv->split->state_path : qv->save_path;
        char why[600];
        int r = desc && strstr(desc, strerror(ENOSPC))   ? -ENOSPC
                : desc && strstr(desc, strerror(EDQUOT)) ? -EDQUOT
                                                         : 0;

        if (err) /* QMP broke: the VM fails with it */
                return;
        if (!desc)
                desc = "no reason given";
        if (qv->split && qv->split->err[0]) /* what opd saw first (the stream ended early) */
                snprintf(why, sizeof(why), "%.400s (QEMU: %.150s)", qv->split->err, desc);
        else if (r < 0 && path) /* QEMU wrote the file: a full file system named from its text */
                op_errf_fs(why, sizeof(why), r, path, "saving the device state to %s (QEMU: %s)",
                           path, desc);
        else
                snprintf(why, sizeof(why), "saving the %s failed (QEMU: %s)",
                         qv->split ? "clone's state" : "device state", desc);
        if (qv->split) {
                split_end(vm, why);
                return;
        }
        qv->saving = false;
        vm_drv_save_failed(vm, why);
}

/* Write the run of pages gathered (they point into buf: before it changes). */
static int split_flush(struct qemu_split *sp)
{
        struct iovec *iov = sp->run;
        unsigned n = sp->n_run;
        uint64_t off = sp->run_off, end = sp->run_off + (uint64_t)n * MIGSPLIT_PAGE;

        while (n) {
                ssize_t k = pwritev(sp->mem_fd, iov, (int)n, (off_t)off);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return op_errf_fs(sp->err, sizeof(sp->err), k < 0 ? -errno : -EIO,
                                          sp->mem_path, "writing %s", sp->mem_path);
                off += (uint64_t)k;
                /* a short write: go on from where it stopped */
                while (n && (size_t)k >= iov->iov_len) {
                        k -= (ssize_t)iov->iov_len;
                        iov++;
                        n--;
                }
                if (n) {
                        iov->iov_base = (uint8_t *)iov->iov_base + k;
                        iov->iov_len -= (size_t)k;
                }
        }
        if (end > sp->end)
                sp->end = end;
        sp->n_run = 0;
        return 0;
}

static int split_size(void *arg, uint64_t size)
{
        struct qemu_split *sp = arg;

        if (size != sp->mem_size)
                return -EBADMSG;
        return 0;
}

static int split_state(void *arg, const void *data, size_t len)
{
        struct qemu_split *sp = arg;
        int r = op_write_all(sp->state_fd, data, len);

        if (r < 0)
                return op_errf_fs(sp->err, sizeof(sp->err), r, sp->state_path, "writing %s",
                                  sp->state_path);
        return 0;
}

/* Pages arrive in address order within a pass: gather contiguous ones, write a run at once. A
 * page of zeros is a hole of the (sparse) file unless written before. */
static int split_page(void *arg, uint64_t off, const void *data)
{
        struct qemu_split *sp = arg;
        int r;

        if (sp->n_run && (off != sp->run_off + (uint64_t)sp->n_run * MIGSPLIT_PAGE ||
                          sp->n_run == SPLIT_IOV_MAX || !data)) {
                r = split_flush(sp);
                if (r < 0)
                        return r;
        }
        if (!data) {
                if (off < sp->end &&
                    fallocate(sp->mem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                              MIGSPLIT_PAGE) < 0)
                        return op_errf_fs(sp->err, sizeof(sp->err), -errno, sp->mem_path,
                                          "punching a page of zeros out of %s", sp->mem_path);
                return 0;
        }
        if (!sp->n_run)
                sp->run_off = off;
        sp->run[sp->n_run++] = (struct iovec){(void *)data, MIGSPLIT_PAGE};
        return 0;
}

static const struct migsplit_ops split_ops = {
    .state = split_state,
    .page = split_page,
    .size = split_size,
};

static void on_split_read(evutil_socket_t fd, short what, void *arg)
{
        struct vm *vm = arg;
        struct qemu_vm *qv = vm->drv;
        struct qemu_split *sp = qv->split;
        size_t used = 0;
        ssize_t k;
        int r;

        k = read(sp->sock, sp->buf + sp->len, SPLIT_BUF - sp->len);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (k < 0) {
                op_errf(sp->err, sizeof(sp->err), -errno, "reading the clone's state: %s",
                        strerror(errno));
                split_fail(vm);
                return;
        }
        sp->len += (size_t)k;
        r = migsplit_feed(&sp->ms, sp->buf, sp->len, &split_ops, sp, &used);
        if (r >= 0)
                r = split_flush(sp); /* its pages are in buf */
        if (r >= 0) {
                /* what is left is part of one item, smaller than MIGSPLIT_ITEM_MAX */
                memmove(sp->buf, sp->buf + used, sp->len - used);
                sp->len -= used;
        }
        if (r >= 0 && k == 0) {
                if (sp->len > 0)
                        r = -EBADMSG;
                if (r >= 0 && migsplit_finish(&sp->ms) < 0)
                        r = -EBADMSG;
                if (r >= 0) {
                        event_del(sp->ev);
                        sp->eof = true;
                        split_end(vm, NULL);
                        return;
                }
        }
        if (r < 0) {
                /* a write that failed said so with its file; the stream's own faults here */
                if (!sp->err[0])
                        snprintf(sp->err, sizeof(sp->err), "splitting the clone's state: %s",
                                 r == -EBADMSG && sp->ms.err[0] ? sp->ms.err : strerror(-r));
                split_fail(vm);
        }
}

static void on_qmp_broken(struct qmp *q, const char *why, void *arg)
{
        struct vm *vm = arg;
        struct qemu_vm *qv = vm->drv;
        char both[sizeof(qv->split->err) + 64];

        /* saving a clone: what the stream said first (it ended early) goes with it */
        if (qv && qv->split && qv->split->err[0]) {
                snprintf(both, sizeof(both), "%s; %s", qv->split->err, why);
                why = both;
        }
        vm_drv_failed(vm, why);
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
        qv->mem_fd = -1;
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
            .name = vm->name,
            .memory_mb = op_lang_memory_mb(h->cfg, vm->lang),
            .vcpus = h->cfg->vm_vcpus,
            .kernel = h->kernel,
            .initrd = h->initrd,
            .rootfs = vm->lang->rootfs,
            .mem_file = mem_fd >= 0,
        };
        _cleanup_close_ int null = -1, kernel = -1, initrd = -1, rootfs = -1, keep = -1;
        char kernel_fd[32], initrd_fd[32], rootfs_fd[32];
        char **argv = NULL;
        int r;

        if (h->jail) {
                /* Jailed, the VM sees none of the host's files: opd opens them (read-only) and
                 * QEMU reads them through /proc/self/fd. The memory file of a boot for a
                 * snapshot is reopened read-write by the VM's uid: writable by others until it
                 * is saved (in the staging directory no VM can reach), read-only after. */
                kernel = open(h->kernel, O_RDONLY | O_CLOEXEC);
                initrd = open(h->initrd, O_RDONLY | O_CLOEXEC);
                rootfs = open(vm->lang->rootfs, O_RDONLY | O_CLOEXEC);
                null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (kernel < 0 || initrd < 0 || rootfs < 0 || null < 0)
                        return -errno;
                if (mem_fd >= 0) {
                        if (fchmod(mem_fd, 0666) < 0)
                                return -errno;
                        keep = fcntl(mem_fd, F_DUPFD_CLOEXEC, 3);
                        if (keep < 0)
                                return -errno;
                }
                snprintf(kernel_fd, sizeof(kernel_fd), "/proc/self/fd/%d", VMM_FD_BOOT_KERNEL);
                snprintf(initrd_fd, sizeof(initrd_fd), "/proc/self/fd/%d", VMM_FD_BOOT_INITRD);
                snprintf(rootfs_fd, sizeof(rootfs_fd), "/proc/self/fd/%d", VMM_FD_ROOTFS);
                m.kernel = kernel_fd;
                m.initrd = initrd_fd;
                m.rootfs = rootfs_fd;
        }
        r = qemu_argv(h->cfg->qemu_binary, &m, &argv);
        if (r < 0)
                return r;
        /* fd 5 is the memory file when there is one; nothing otherwise. Jailed: then the rootfs,
         * the kernel and the initrd (fds 6, 7, 8), fd 5 /dev/null without a memory file. */
        if (h->jail)
                r = spawn(vm, argv,
                          (const int[]){mem_fd >= 0 ? mem_fd : null, rootfs, kernel, initrd}, 4);
        else
                r = spawn(vm, argv, &mem_fd, mem_fd >= 0 ? 1 : 0);
        op_argv_free(argv);
        if (r >= 0)
                r = attach(vm);
        if (r >= 0)
                ((struct qemu_vm *)vm->drv)->mem_fd = TAKE_FD(keep);
        return r;
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
            .name = vm->name,
            .memory_mb = snap->m.memory_mb,
            .vcpus = snap->m.vcpus,
        };
        char **argv = NULL;
        int r;

        /* Mapped privately and read-only (readonly=on,rom=off): no clone writes it back. */
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

/* No rate limit on a save: the VM is stopped, the stream goes to a local file or to opd. */
static int set_migration_speed(struct vm *vm)
{
        return qmp_command(vm_qmp(vm), "migrate-set-parameters",
                           json_pack("{s:I}", "max-bandwidth", (json_int_t)1 << 40), on_qmp_reply,
                           vm);
}

/* A restored clone: its RAM is a private mapping of the snapshot's memory file, so the stream
 * carries it; it is split into dir/mem (sparse) and dir/vmstate as it arrives. */
static int snapshot_clone(struct vm *vm, const char *dir)
{
        struct qemu_vm *qv = vm->drv;
        _cleanup_free_ char *state = NULL, *mem = NULL;
        _cleanup_close_ int qemu_end = -1;
        struct qemu_split *sp;
        int sv[2], r;

        if (asprintf(&state, "%s/vmstate", dir) < 0 || asprintf(&mem, "%s/mem", dir) < 0)
                return -ENOMEM;
        sp = calloc(1, sizeof(*sp));
        if (!sp)
                return -ENOMEM;
        sp->sock = sp->state_fd = sp->mem_fd = -1;
        sp->mem_size = (uint64_t)vm->snap->m.memory_mb << 20;
        sp->state_path = TAKE_PTR(state);
        sp->mem_path = TAKE_PTR(mem);
        migsplit_init(&sp->ms, "mem");
        qv->split = sp;
        sp->state_fd =
            open(sp->state_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        sp->mem_fd = open(sp->mem_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (sp->state_fd < 0 || sp->mem_fd < 0)
                return -errno;
        if (ftruncate(sp->mem_fd, (off_t)sp->mem_size) < 0)
                return -errno;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        sp->sock = sv[0];
        qemu_end = sv[1];
        op_fd_nonblock(sp->sock, 1);
        sp->buf = malloc(SPLIT_BUF);
        sp->ev = event_new(vm->host->base, sp->sock, EV_READ | EV_PERSIST, on_split_read, vm);
        if (!sp->buf || !sp->ev || event_add(sp->ev, NULL) < 0)
                return -ENOMEM;
        qv->saving = true;
        r = qmp_command_fd(qv->qmp, "getfd", json_pack("{s:s}", "fdname", "vmstate"), qemu_end,
                           on_qmp_reply, vm);
        if (r >= 0)
                r = set_migration_caps(vm);
        if (r >= 0)
                r = set_migration_speed(vm);
        if (r >= 0)
                r = qmp_command(qv->qmp, "stop", NULL, on_qmp_reply, vm);
        if (r >= 0)
                r = qmp_command(qv->qmp, "migrate", json_pack("{s:s}", "uri", "fd:vmstate"),
                                on_qmp_reply, vm);
        return r;
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
        if (vm->snap) {
                r = snapshot_clone(vm, dir);
                if (r < 0) {
                        qv->split = split_free(qv->split);
                        qv->saving = false;
                }
                return r;
        }
        if (asprintf(&path, "%s/vmstate", dir) < 0)
                return -ENOMEM;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        free(qv->save_path);
        qv->save_path = TAKE_PTR(path);
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
        split_free(qv->split);
        free(qv->save_path);
        safe_close(qv->mem_fd);
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
    .console_is_output = false, /* a ring in QEMU: console_read */
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
