/* vmm-jail.h: opd's end of its privileged helper opd-jail: start it, ask it to start a VMM in a
 * jail or to kill one, and hear of their exits. The helper is the parent of every jailed VMM. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "jail-proto.h"

struct vm_jail;

struct vm_jail_opts {
        const char *helper;  /* opd-jail's path */
        const char *run_dir; /* absolute */
        uid_t uid_min, uid_max;
        uid_t owner_uid; /* opd's user, once it has dropped root */
        gid_t owner_gid;
        const char *vmm[JAIL_VMMS_MAX]; /* absolute paths; NULL: none */
};

/* Fork and exec the helper (as the caller: root) with the socket at fd 3, nothing else open and
 * an empty environment, and read its hello. Blocks until it answers. */
int vm_jail_start(const struct vm_jail_opts *o, struct vm_jail **ret);
/* Close the socket (the helper kills its VMs and exits) and wait for the helper. NULL ok. */
struct vm_jail *vm_jail_free(struct vm_jail *j);

int vm_jail_fd(const struct vm_jail *j);
pid_t vm_jail_pid(const struct vm_jail *j);
/* From the hello: whether per-VM cgroup limits apply, and the helper's words about it. */
bool vm_jail_cgroup(const struct vm_jail *j);
const char *vm_jail_cgroup_text(const struct vm_jail *j);

struct vm_jail_limits {
        uint32_t memory_max_mb, pids_max, cpu_weight;
};

/* Start binary vmm with argv[1..]; fds[0] is its stdout and stderr, fds[1..] its 3, 4, ...
 * Blocks for the answer; exits heard meanwhile are kept for vm_jail_read(). *ret_seq names the
 * VMM for vm_jail_kill() and in its exit: its pid alone could be a later VMM's once the kernel
 * gives it again. */
int vm_jail_spawn(struct vm_jail *j, uint32_t vmm, const char *name, char *const *argv,
                  const int *fds, size_t n_fds, const struct vm_jail_limits *lim, uint32_t *ret_seq,
                  pid_t *ret_pid, uid_t *ret_uid);
/* SIGKILL to the VMM of spawn seq, when it still has pid. */
int vm_jail_kill(struct vm_jail *j, uint32_t seq, pid_t pid);
/* Exits kept by vm_jail_spawn(): true while some wait to be read. */
bool vm_jail_pending(const struct vm_jail *j);

/* A VMM was reaped: seq names it (vm_jail_spawn()), pid and status as waitpid() gave them. */
typedef void (*vm_jail_exited_fn)(uint32_t seq, pid_t pid, int status, void *userdata);
/* Deliver the kept exits, then read what the socket has (block: wait for one packet at least,
 * up to timeout_ms). -EPIPE once the helper is gone. */
int vm_jail_read(struct vm_jail *j, bool block, int timeout_ms, vm_jail_exited_fn exited,
                 void *userdata);
