/* host.h: the VM registry: the loop, the settings and the driver every VM uses, the live and
 * destroyed VMs, their run directories, reaping by pid and the kill-all at stop. The daemon owns
 * one; unit tests make their own with the fake driver. */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "config.h"
#include "vm.h"
#include "vmm-jail.h"
#include "vmm.h"

/* The longest line vm_host_log() passes on (the daemon's log line is 2048). */
#define VM_HOST_LOG_MAX 1900

struct workq;

struct vm_host_callbacks {
        /* A VM was destroyed or reaped: a VM slot may have freed up, and destroyed VMs can be
         * freed with vm_host_free_dead() at a safe point of the loop. */
        void (*slot_freed)(struct vm_host *h, void *userdata);
        /* One line for the log (the VM layer does not log itself); prio is syslog's. */
        void (*log)(int prio, const char *msg, void *userdata);
};

struct vm_host {
        struct event_base *base;
        const struct op_config *cfg; /* run_dir, deadlines, VM sizes, the VMMs' settings */
        const struct vm_driver *drv;
        void *drv_data;      /* the driver instance's own (fake.c's settings) */
        char *kernel;        /* <images_dir>/vmlinux */
        char *initrd;        /* <images_dir>/initrd.img */
        enum op_accel accel; /* OP_ACCEL_AUTO until the owner decides; clones use it */

        LIST_HEAD(, vm) vms;
        LIST_HEAD(, vm) dead_vms; /* destroyed, freed once reaped */
        unsigned n_vms;           /* live VMs: every VMM process, paused clones included */
        uint64_t next_vm_id;
        uint64_t vms_started; /* booted or restored */
        uint64_t vms_failed;  /* failed or died unexpectedly (not while stopping) */
        bool stopping;        /* set by vm_host_kill_all(): failures are expected */

        /* opd-jail: every VMM starts through it, in a jail of its own (vm_host_jail()); NULL:
         * VMMs are opd's own children, unconfined. */
        struct vm_jail *jail;
        struct event *jail_ev;
        bool jail_lost; /* the helper is gone: no VM can start */

        /* Worker threads for a driver's file work that must not hold up the loop (Firecracker's
         * copy out of a jail): started at its first use (vm_host_workq()), freed with the host
         * once every VM has been released. */
        struct workq *wq;

        struct vm_host_callbacks cb;
        void *userdata;
};

/* Make the registry: the driver's paths, run_dir created (and VM directories a killed opd left
 * there removed), the driver's init. cfg must outlive the host. */
int vm_host_new(struct event_base *base, const struct op_config *cfg, const struct vm_driver *drv,
                void *drv_data, const struct vm_host_callbacks *cb, void *userdata,
                struct vm_host **ret);
/* Kills every VM (vm_host_kill_all) first. Accepts NULL; returns NULL. */
struct vm_host *vm_host_free(struct vm_host *h);
/* The VMM's release (the driver asks the binary). */
int vm_host_version(struct vm_host *h, char **ret);
/* One child reaped by the owner's SIGCHLD loop: true when it was a VM's (a live one fails). */
bool vm_host_reap(struct vm_host *h, pid_t pid, int status);
/* Free destroyed VMs whose process has been reaped. */
void vm_host_free_dead(struct vm_host *h);
/* Stop: every live VM fails ("opd is stopping": owners drop their pointers), every VMM process
 * is killed and waited for, and every VM freed. */
void vm_host_kill_all(struct vm_host *h);
/* Start opd-jail (the caller is still root): from now on every VMM is started, killed and
 * reaped through it. */
int vm_host_jail(struct vm_host *h, const struct vm_jail_opts *o);

/* For drivers: start a VMM, in a jail when the host has one (binary vmm: 0 qemu, 1
 * firecracker), else as a child of opd. fds go to 3, 4, ...; its stdout and stderr are the VM's
 * output pipe (vm_host_output()). Sets vm->proc.pid (and uid). */
int vm_host_spawn(struct vm_host *h, struct vm *vm, uint32_t vmm, char *const *argv, const int *fds,
                  size_t n_fds);
/* For a driver that starts its VMM itself (vmm_spawn()): the VM's output pipe (vmm-output.h),
 * drained by the host's loop and freed with the VM; *ret_wr is the VMM's end, the caller's to
 * close once passed on. */
int vm_host_output(struct vm_host *h, struct vm *vm, int *ret_wr);
/* The lowest uid of jail.uid_min..jail.uid_max no VM of this host runs as (for a VMM whose own
 * jailer changes its uid: Firecracker's). */
int vm_host_free_uid(struct vm_host *h, uid_t *ret);
/* For drivers: the host's worker threads (h->wq), started now if they were not. */
int vm_host_workq(struct vm_host *h, struct workq **ret);
/* SIGKILL to the VM's process (through opd-jail when jailed). */
void vm_host_kill_proc(struct vm_host *h, struct vm *vm);

/* For the VM layer and its drivers: a line through cb.log. */
void vm_host_log(struct vm_host *h, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* vm.c and host.c only: wire a new VM in, and take a destroyed one out of the live list. */
void vm_host_attach(struct vm_host *h, struct vm *vm);
void vm_host_detach(struct vm_host *h, struct vm *vm);
