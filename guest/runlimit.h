/* runlimit.h: resource limits and usage of one run's process tree: a cgroup v2 child group
 * (memory.max, pids.max, cpu.stat, memory.peak, memory.events) when the kernel offers one, and
 * rlimits (RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE) otherwise or in addition. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* What a request asks for; 0 (or has_file_size false) leaves that resource unlimited. */
struct agent_limits {
        uint32_t cpu_time_ms;
        uint64_t memory_bytes;
        uint32_t max_processes;
        bool has_file_size;
        uint64_t file_size_max;
        /* Where cgroup v2 is mounted ("/sys/fs/cgroup" in the guest); NULL: rlimits only. */
        const char *cgroup_root;
};

/* A cgroup for one run. Making one takes tens of ms under emulation, so the agent makes the
 * next run's group ahead, while idle (and a warm runner starts in it). */
struct limits_group {
        int fd;       /* the group's directory, or -1 */
        int procs_fd; /* its cgroup.procs, opened for writing */
        int kill_fd;  /* its cgroup.kill (Linux 5.14+), or -1 */
        /* Opened with the group, read from offset 0 during and after a run (a cgroup file reads
         * afresh there): opening them then would cost the answer each time. -1: opened when
         * read. cpu.stat, memory.peak, memory.events, cgroup.procs (for reading). */
        int cpu_fd, peak_fd, events_fd, list_fd;
        char path[128]; /* its name under the root */
};

#define LIMITS_GROUP_INIT                                                                          \
        ((struct limits_group){.fd = -1,                                                           \
                               .procs_fd = -1,                                                     \
                               .kill_fd = -1,                                                      \
                               .cpu_fd = -1,                                                       \
                               .peak_fd = -1,                                                      \
                               .events_fd = -1,                                                    \
                               .list_fd = -1})

/* A new empty group "op-run-*" under cgroup_root, with the memory and pids controllers. */
int limits_group_make(const char *cgroup_root, struct limits_group *ret);
/* Close it and remove it (one try: a group still busy stays, empty, until the next make). */
void limits_group_drop(struct limits_group *g);

/* One run's enforcement state. LIMITS_RUN_INIT before limits_prepare(). */
struct limits_run {
        struct limits_group g; /* the run's cgroup; g.fd -1: rlimits only */
        uint64_t cpu_base_us;  /* the group's CPU time when the run started (a warm runner's) */
        struct rlimit rl_cpu, rl_as, rl_nproc, rl_fsize;
        bool set_cpu, set_as, set_nproc, set_fsize;
        struct rusage before; /* RUSAGE_CHILDREN at the start: usage without a cgroup */
        uint32_t cpu_time_ms;
};

#define LIMITS_RUN_INIT ((struct limits_run){.g = LIMITS_GROUP_INIT})

struct agent_usage {
        uint64_t cpu_us;
        uint64_t memory_peak_bytes;
        bool oom_killed;   /* the cgroup's OOM killer ended a process of the run */
        bool cpu_exceeded; /* the tree used more than cpu_time_ms */
        bool by_cgroup;    /* measured and enforced by a cgroup (else rlimits and rusage) */
};

/* Set up the run's cgroup (spare when it holds one, taken; else a new one when
 * lim->cgroup_root works) and compute the rlimits. Never fails for want of a cgroup: the
 * rlimits are used then. 0 or a negative errno. */
int limits_prepare(const struct agent_limits *lim, struct limits_group *spare,
                   struct limits_run *lr);
/* In the forked child before exec (async-signal-safe): join the cgroup and set the rlimits.
 * 0 or a negative errno. */
int limits_enter_child(const struct limits_run *lr);
/* For a program started earlier (a warm runner): move pid into the cgroup and set its rlimits.
 * started_in: the name of the group pid was started in and has not left, when the caller knows
 * it, else NULL or "": pid is not moved when that is the run's group. */
int limits_attach(const struct limits_run *lr, pid_t pid, const char *started_in);
/* SIGKILL every process of the run's cgroup at once, forks in flight included (cgroup.kill).
 * false when there is no cgroup to do it with. */
bool limits_kill(const struct limits_run *lr);
/* True when pid is the only process in the run's cgroup (cgroup.procs lists it alone); false
 * when there are others, when there is no cgroup to tell, or on an error. */
bool limits_only_member(const struct limits_run *lr, pid_t pid);
/* True when the tree has used more CPU than allowed (checked by the run loop). */
bool limits_cpu_over(const struct limits_run *lr);
/* After the run (every process of it reaped): what it used. */
void limits_usage(const struct limits_run *lr, int wait_status, struct agent_usage *ret);
/* Close the run's fds; its (empty) cgroup goes at the next limits_group_make(). */
void limits_done(struct limits_run *lr);
