/* jail-run.h: what opd-jail does for a spawn request: a VMM in a jail of its own (a uid and gid
 * from the configured range, no groups, no capabilities, no_new_privs; new mount, pid, net, ipc
 * and uts namespaces; pivot_root into a read-only tmpfs holding /usr, a minimal /dev and its own
 * /proc, with no writable file system; only the fds passed on purpose; a fixed environment) and
 * its cgroup v2 leaf. Only opd-jail runs this. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "jail-proto.h"

struct jail_conf {
        const char *run_dir;    /* absolute; the mount point of each jail's root */
        uid_t uid_min, uid_max; /* VMs' uids (and gids, same numbers) */
        uid_t owner_uid;        /* opd's: never in the VMs' range */
        gid_t owner_gid;
        const char *vmm[JAIL_VMMS_MAX]; /* absolute paths of the binaries; NULL: none */
};

struct jail_cgroup {
        int base_fd; /* the delegated cgroup v2 directory holding the VMs' leaves; -1: none */
        char why[JAIL_TEXT_MAX]; /* what is applied, or why nothing is */
};

/* Find a delegated cgroup v2 subtree with the memory, pids and cpu controllers: the helper's own
 * cgroup. Its processes (opd and the helper) move to a leaf "supervisor" so that the controllers
 * can be enabled for the VMs' leaves. On failure base_fd is -1 and why says why. */
void jail_cgroup_init(struct jail_cgroup *cg, pid_t opd_pid);

/* Start the VMM of req (SPAWN, already decoded) as uid:uid in a jail of its own, its cgroup leaf
 * named req->name; fds as req->n_fds. cgroup: whether the leaf was made (limits applied). On
 * failure no leaf is left and ret_step names the step of the jail's set-up that failed (0: before
 * the child ran). */
int jail_spawn(const struct jail_conf *c, struct jail_cgroup *cg, const struct jail_req *req,
               const int *fds, uid_t uid, pid_t *ret_pid, bool *ret_cgroup, int *ret_step);

/* After the VMM was reaped: its cgroup leaf removed (the kernel has killed and reaped every
 * process of its pid namespace, so the leaf is empty). */
void jail_release(struct jail_cgroup *cg, const char *name);

/* Remove dirfd's entry name and, if it is a directory, everything in it, whatever its depth:
 * iterative, with two fds open, never following a link (a link is unlinked like a file) nor
 * entering a directory of another file system. It climbs back through "..", so it is only for a
 * tree that nothing renames while it runs (a stale VM directory at opd's start). */
int jail_remove_tree(int dirfd, const char *name);

/* Drop every capability the helper does not use, from the bounding set too. */
int jail_drop_caps(void);
