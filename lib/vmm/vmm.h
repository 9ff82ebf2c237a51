/* vmm.h: what a VMM driver does for vm.c, and the process helpers the drivers share. Every
 * operation is asynchronous: it starts work on the host's loop and reports its end through the
 * vm_drv_*() calls below. vm.c owns the VM's state, its agent channel, its deadlines and its
 * process exit; a driver owns its control channel (QMP for QEMU, the HTTP API for Firecracker)
 * and whatever it keeps in vm->drv. A driver reads its settings from vm->host, never from the
 * daemon. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

struct vm;
struct vm_host;

struct vm_driver {
        const char *name; /* "qemu", "firecracker": what manifests record */
        /* The guest console is the VMM's stdout (Firecracker's): the end of the VMM's output
         * (vmm-output.h) is the console's. */
        bool console_is_output;
        /* Once when the host is made, before any VM (may be NULL): e.g. clean what a dead opd
         * left. */
        void (*init)(struct vm_host *h);
        /* The VMM's release: a snapshot loads only on the release that made it. */
        int (*version)(struct vm_host *h, char **ret);
        /* OP_ACCEL_AUTO: probe (QEMU); anything else: the only accelerator the VMM has. */
        enum op_accel only_accel;
        /* Start a VM that boots the kernel; the agent's ready event ends it. mem_fd >= 0: guest
         * RAM is that file, shared, for a snapshot (a driver may ignore it: see snapshot). */
        int (*boot)(struct vm *vm, int mem_fd);
        /* Start a clone of vm->snap, left paused: vm_drv_loaded(). */
        int (*restore)(struct vm *vm);
        /* Continue a paused VM: vm_drv_resumed() once it runs. */
        int (*resume)(struct vm *vm);
        /* Stop a running VM: vm_drv_paused(). */
        int (*pause)(struct vm *vm);
        /* Stop a running VM and write its state to dir/vmstate (and its RAM to dir/mem when
         * the driver did not boot with mem_fd): vm_drv_saved(). */
        int (*snapshot)(struct vm *vm, const char *dir);
        /* The VM failed and the owner is not told yet: read the end of the guest console from
         * the VMM and hand it to vm_drv_console(), within a bounded time (may be NULL: then the
         * VMM's output is the console when console_is_output). A negative return: nothing to
         * read. */
        int (*console_read)(struct vm *vm);
        /* Free vm->drv. The process is already killed (or never ran). */
        void (*release)(struct vm *vm);
};

extern const struct vm_driver vm_driver_qemu;
extern const struct vm_driver vm_driver_firecracker;
extern const struct vm_driver vm_driver_fake; /* fake.c: no process, for unit tests */

/* The driver for the "vmm" key (qemu, firecracker), or NULL. */
const struct vm_driver *vm_driver_find(const char *name);

/* Completions, called by drivers. */
void vm_drv_loaded(struct vm *vm);
void vm_drv_resumed(struct vm *vm);
void vm_drv_paused(struct vm *vm);
void vm_drv_saved(struct vm *vm, const char *err);
/* The save failed (err: why) and the VMM lives on with the VM stopped and whole: it is PAUSED
 * again, and its owner may continue it. */
void vm_drv_save_failed(struct vm *vm, const char *err);
/* console_read's answer: the console's last bytes (NULL, 0 when there were none to get). */
void vm_drv_console(struct vm *vm, const void *data, size_t len);
/* The VM cannot go on; why is human text (a Firecracker fault_message is passed on as is). */
void vm_drv_failed(struct vm *vm, const char *why);
/* The agent channel is connected (fd taken). hello: the agent opens each session with a
 * "ready" event that is not a boot (a reconnection after a restore). */
void vm_drv_agent_connected(struct vm *vm, int fd, bool hello);

/* ---- processes (spawn.c) ---- */
struct vmm_proc {
        pid_t pid;
        uid_t uid;         /* jailed: the VM's own uid from the configured range; else opd's */
        uint32_t jail_seq; /* jailed: what opd-jail names it by (its spawn's seq); 0: not jailed */
        int agent_fd;      /* stream to op-agent: frames */
        int ctl_fd;        /* QMP for qemu */
};

/* The child's fd numbers, fixed: what vmm_spawn() puts at 3, 4, ... */
enum {
        VMM_FD_AGENT = 3,
        VMM_FD_CTL = 4,
        VMM_FD_MEM = 5,     /* boot with mem_fd, or restore */
        VMM_FD_ROOTFS = 6,  /* restore */
        VMM_FD_VMSTATE = 7, /* restore */
        /* boot in a jail: the files a boot reads, opened by opd (the VM's uid may not) */
        VMM_FD_BOOT_KERNEL = 7,
        VMM_FD_BOOT_INITRD = 8,
};

/* Run `binary --version`: its stdout (at most 511 bytes), when it exits 0. */
int vmm_version_output(const char *binary, char **ret);

/* Fork and exec argv with the given fds at numbers 3, 4, ... in the child, stdin from /dev/null,
 * stdout and stderr out_fd (a vmm-output.h pipe), cwd workdir, in its own session, killed when
 * the caller dies (PR_SET_PDEATHSIG). Returns the pid or a negative errno. */
pid_t vmm_spawn(char *const *argv, const int *fds, size_t n_fds, const char *workdir, int out_fd);

/* ---- QEMU (qemu.c) ---- */
/* One QEMU guest, booted or restored: a restore needs the same machine and devices as the boot
 * that made the snapshot, so both are one description and one command line. */
struct qemu_machine {
        enum op_accel accel; /* OP_ACCEL_KVM or OP_ACCEL_TCG, never AUTO */
        /* The VM's name ([A-Za-z0-9-]), QEMU's -name: a process listing says which VM a QEMU
         * is. NULL: none. */
        const char *name;
        uint32_t memory_mb;
        uint32_t vcpus;
        /* Boot: the kernel, its initrd and the rootfs by path (attached read-only). NULL kernel:
         * a restore, with the rootfs at VMM_FD_ROOTFS, RAM mapping VMM_FD_MEM privately (copy on
         * write, pages read lazily), and device state from VMM_FD_VMSTATE once the incoming
         * migration starts (QMP migrate-incoming with uri QEMU_INCOMING_URI). */
        const char *kernel;
        const char *initrd;
        const char *rootfs;
        const char *extra_args; /* appended to the kernel command line, may be NULL */
        bool mem_file;          /* boot: guest RAM is VMM_FD_MEM, mapped shared */
};
#define QEMU_INCOMING_URI "fd:7"
/* The guest console: a ring of this many bytes in QEMU (a power of two), chardev QEMU_CONSOLE_ID,
 * read with QMP ringbuf-read. */
#define QEMU_CONSOLE_ID   "console"
#define QEMU_CONSOLE_RING 4096
/* What the release opd records in snapshots says about the machine besides QEMU's version
 * ("10.0.2/q35.3"): changed whenever the machine or its devices change, so that a snapshot of
 * another machine is refused rather than loaded into the wrong one. */
#define QEMU_MACHINE_TAG "q35.3"
/* The oldest QEMU opd runs: 8.2 maps a file privately with readonly=on,rom=off. */
#define QEMU_MIN_MAJOR 8
#define QEMU_MIN_MINOR 2

/* Build the qemu argv; pure, for tests. Free with op_argv_free() from lang.h. */
int qemu_argv(const char *binary, const struct qemu_machine *m, char ***ret);

/* The release of the qemu binary, e.g. "10.0.2" (runs `binary --version`). */
int qemu_version(const char *binary, char **ret);
/* 0 when opd runs on that release (QEMU_MIN_MAJOR.QEMU_MIN_MINOR or later), else a negative
 * errno and why in err. Pure. */
int qemu_version_supported(const char *version, char *err, size_t errlen);
