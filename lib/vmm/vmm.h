/* vmm.h: the VMM driver interface. A driver turns a boot (or, later, restore) description into
 * a supervised child process plus two connected streams: the agent channel and the control
 * channel. Everything asynchronous on those streams is the daemon's business. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "config.h"

struct vmm_boot {
        const char *kernel;
        const char *initrd;
        const char *rootfs;     /* attached read-only */
        const char *workdir;    /* the VM's own directory: logs, sockets */
        const char *extra_args; /* appended to the kernel command line, may be NULL */
        uint32_t memory_mb;
        uint32_t vcpus;
        enum op_accel accel; /* OP_ACCEL_KVM or OP_ACCEL_TCG, never AUTO */
        int mem_fd;          /* >= 0: guest RAM is this file, mapped shared (snapshot source) */
};

/* A clone of a snapshot, left paused: RAM maps the snapshot's memory file privately (copy on
 * write, pages read lazily), device state comes from vmstate_fd once the daemon starts the
 * incoming migration (QMP migrate-incoming with uri VMM_QEMU_INCOMING_URI). */
struct vmm_restore {
        const char *workdir;
        int rootfs_fd;
        int mem_fd;
        int vmstate_fd;
        uint32_t memory_mb;
        uint32_t vcpus;
        enum op_accel accel;
};

struct vmm_proc {
        pid_t pid;
        int agent_fd; /* stream to op-agent: frames */
        int ctl_fd;   /* QMP for qemu */
};

struct vmm_driver {
        const char *name;
        /* Start a VM that boots the kernel. On success the child runs and *ret owns it. */
        int (*boot)(const char *binary, const struct vmm_boot *b, struct vmm_proc *ret);
        /* Start a clone of a snapshot, paused, waiting for its device state. */
        int (*restore)(const char *binary, const struct vmm_restore *r, struct vmm_proc *ret);
};

extern const struct vmm_driver vmm_qemu;

/* The child's fd numbers, fixed: what vmm_spawn() puts at 3, 4, ... */
enum {
        VMM_FD_AGENT = 3,
        VMM_FD_CTL = 4,
        VMM_FD_MEM = 5,     /* boot with mem_fd, or restore */
        VMM_FD_ROOTFS = 6,  /* restore */
        VMM_FD_VMSTATE = 7, /* restore */
};
#define VMM_QEMU_INCOMING_URI "fd:7"

/* Build the qemu argv; pure, for tests. Free with op_argv_free() from lang.h. */
int qemu_boot_argv(const char *binary, const struct vmm_boot *b, char ***ret);
int qemu_restore_argv(const char *binary, const struct vmm_restore *r, char ***ret);

/* The release of the qemu binary, e.g. "7.2.22" (runs `binary --version`). */
int qemu_version(const char *binary, char **ret);

/* Run `binary --version`: its stdout (at most 511 bytes), when it exits 0. */
int vmm_version_output(const char *binary, char **ret);

/* Fork and exec argv with the given fds at numbers 3, 4, ... in the child, stdin from /dev/null,
 * stdout+stderr appended to log_path, cwd workdir, in its own session, killed when the caller
 * dies (PR_SET_PDEATHSIG). Returns the pid or a negative errno. */
pid_t vmm_spawn(char *const *argv, const int *fds, size_t n_fds, const char *workdir,
                const char *log_path);
