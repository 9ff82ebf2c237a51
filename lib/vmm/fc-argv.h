/* fc-argv.h: the command line of one Firecracker VM, run directly or through the jailer (uid,
 * gid, chroot, cgroup v2 limits, network namespace). Pure, for tests. */
#pragma once

#include <stdint.h>

struct fc_launch {
        const char *binary; /* firecracker */
        const char *id;     /* the VM's name: the jail's directory, the process's --id */
        const char *api_sock;
        /* Jailer: NULL runs firecracker directly and ignores the rest. */
        const char *jailer;
        uint32_t uid, gid;
        const char *chroot_base;
        uint32_t memory_max_mb; /* 0: no memory.max */
        uint32_t cpu_max_pct;   /* 0: no cpu.max */
        const char *netns;      /* NULL or "": none */
};

/* The jailed API socket, as the jailed process names it (inside its chroot). */
#define FC_JAIL_API_SOCK "/run/firecracker.socket"

/* argv for vmm_spawn(); free with op_argv_free(). -EINVAL on a missing or unsafe value. */
int fc_argv(const struct fc_launch *l, char ***ret);

/* The jail's root on the host: <chroot_base>/<basename of binary>/<id>/root. */
int fc_jail_root(const struct fc_launch *l, char **ret);

/* Before a spawn: Firecracker binds its API and vsock sockets and refuses a path that exists.
 * Remove what is there unless it is a directory; 0 when the path is free. */
int fc_remove_stale(const char *path);
