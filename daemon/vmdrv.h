/* vmdrv.h: what a VMM driver does for vm.c. Every operation is asynchronous: it starts work on
 * the daemon's loop and reports its end through the vm_drv_*() calls below. vm.c owns the VM's
 * state, its agent channel, its deadline and its process exit; a driver owns its control channel
 * (QMP for QEMU, the HTTP API for Firecracker) and whatever it keeps in vm->drv. */
#pragma once

#include <stdbool.h>

#include "config.h"

struct opd;
struct vm;

struct vm_driver {
        const char *name;    /* "qemu", "firecracker": what manifests record */
        const char *console; /* the guest console's file in the VM's directory */
        /* Once at start, before any VM (may be NULL): e.g. clean what a dead opd left. */
        void (*init)(struct opd *d);
        /* The VMM's release, asked once at start: a snapshot loads only on the release that
         * made it. */
        int (*version)(struct opd *d, char **ret);
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
        /* Free vm->drv. The process is already killed (or never ran). */
        void (*release)(struct vm *vm);
};

extern const struct vm_driver vm_driver_qemu;
extern const struct vm_driver vm_driver_firecracker;

/* The driver for cfg->vmm, or NULL. */
const struct vm_driver *vm_driver_find(const char *name);

/* Completions, called by drivers. */
void vm_drv_loaded(struct vm *vm);
void vm_drv_resumed(struct vm *vm);
void vm_drv_paused(struct vm *vm);
void vm_drv_saved(struct vm *vm, const char *err);
/* The VM cannot go on; why is human text (a Firecracker fault_message is passed on as is). */
void vm_drv_failed(struct vm *vm, const char *why);
/* The agent channel is connected (fd taken). hello: the agent opens each session with a
 * "ready" event that is not a boot (a reconnection after a restore). */
void vm_drv_agent_connected(struct vm *vm, int fd, bool hello);
