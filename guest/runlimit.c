/* runlimit.c: resource limits and usage of one run's process tree: a cgroup v2 group per run when
 * the guest kernel has one (memory.max, pids.max, cpu.stat, memory.peak, memory.events), rlimits
 * otherwise (and RLIMIT_FSIZE always: cgroups have no file size limit). */
#include "runlimit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

static int write_at(int dfd, const char *name, const char *text)
{
        _cleanup_close_ int fd = openat(dfd, name, O_WRONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (write(fd, text, strlen(text)) < 0)
                return -errno;
        return 0;
}

/* A group file's text (at most size - 1 bytes, NUL-ended): read from fd at offset 0 when the
 * group opened it ahead, else from name in dfd. Its length, or a negative errno. */
static ssize_t read_text(int fd, int dfd, const char *name, char *buf, size_t size)
{
        _cleanup_close_ int own = fd < 0 ? openat(dfd, name, O_RDONLY | O_CLOEXEC) : -1;
        ssize_t k;

        if (fd < 0 && own < 0)
                return -errno;
        k = pread(fd >= 0 ? fd : own, buf, size - 1, 0);
        if (k < 0)
                return -errno;
        buf[k] = 0;
        return k;
}

/* The value after "key " in a flat-keyed cgroup file (cpu.stat, memory.events), or a single
 * number file when key is NULL (fd, dfd and name as read_text()). */
static int read_value(int fd, int dfd, const char *name, const char *key, uint64_t *ret)
{
        char buf[1024], *p;
        ssize_t k = read_text(fd, dfd, name, buf, sizeof(buf));

        if (k < 0)
                return (int)k;
        if (!key) {
                *ret = strtoull(buf, NULL, 10);
                return 0;
        }
        for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                size_t n = strlen(key);
                if (strncmp(p, key, n) == 0 && p[n] == ' ') {
                        *ret = strtoull(p + n + 1, NULL, 10);
                        return 0;
                }
        }
        return -ENOENT;
}

/* Groups of earlier runs that could not be removed at once (empty by now). */
static void remove_stale(int root)
{
        int fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *de;
        DIR *d;

        if (fd < 0)
                return;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        while ((de = readdir(d)))
                if (strncmp(de->d_name, "op-run-", 7) == 0)
                        (void)unlinkat(root, de->d_name, AT_REMOVEDIR);
        closedir(d);
}

int limits_group_make(const char *cgroup_root, struct limits_group *ret)
{
        _cleanup_close_ int root = -1;
        struct limits_group g = LIMITS_GROUP_INIT;
        int r;

        root = open(cgroup_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return -errno;
        /* Let child groups use the memory and pids controllers (already on: no harm). */
        (void)write_at(root, "cgroup.subtree_control", "+memory");
        (void)write_at(root, "cgroup.subtree_control", "+pids");
        remove_stale(root);
        snprintf(g.path, sizeof(g.path), "op-run-%d-%" PRIu64, (int)getpid(), op_now_us());
        if (mkdirat(root, g.path, 0755) < 0)
                return -errno;
        g.fd = openat(root, g.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (g.fd >= 0)
                g.procs_fd = openat(g.fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        if (g.fd < 0 || g.procs_fd < 0) {
                r = -errno;
                limits_group_drop(&g);
                return r;
        }
        g.kill_fd = openat(g.fd, "cgroup.kill", O_WRONLY | O_CLOEXEC);
        g.cpu_fd = openat(g.fd, "cpu.stat", O_RDONLY | O_CLOEXEC);
        g.peak_fd = openat(g.fd, "memory.peak", O_RDONLY | O_CLOEXEC);
        g.events_fd = openat(g.fd, "memory.events", O_RDONLY | O_CLOEXEC);
        g.list_fd = openat(g.fd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
        *ret = g;
        return 0;
}

static void group_files_close(struct limits_group *g)
{
        g->procs_fd = safe_close(g->procs_fd);
        g->kill_fd = safe_close(g->kill_fd);
        g->cpu_fd = safe_close(g->cpu_fd);
        g->peak_fd = safe_close(g->peak_fd);
        g->events_fd = safe_close(g->events_fd);
        g->list_fd = safe_close(g->list_fd);
}

void limits_group_drop(struct limits_group *g)
{
        group_files_close(g);
        if (g->fd >= 0) {
                _cleanup_close_ int parent =
                    openat(g->fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                g->fd = safe_close(g->fd);
                /* One try, not a wait: the answer is not held up for it. A group the kernel
                 * still counts as busy (a dying task) stays, empty; the VM is thrown away after
                 * its one run anyway, and the next limits_group_make() removes it. */
                if (parent >= 0)
                        (void)unlinkat(parent, g->path, AT_REMOVEDIR);
        }
        *g = LIMITS_GROUP_INIT;
}

/* The request's limits on the run's group; false when they cannot be set (no group then). */
static bool group_limit(struct limits_run *lr, const struct agent_limits *lim)
{
        char num[32];

        if (lim->memory_bytes) {
                snprintf(num, sizeof(num), "%" PRIu64, lim->memory_bytes);
                if (write_at(lr->g.fd, "memory.max", num) < 0)
                        return false;
                (void)write_at(lr->g.fd, "memory.swap.max", "0");
        }
        if (lim->max_processes) {
                snprintf(num, sizeof(num), "%" PRIu32, lim->max_processes);
                if (write_at(lr->g.fd, "pids.max", num) < 0)
                        return false;
        }
        return true;
}

int limits_prepare(const struct agent_limits *lim, struct limits_group *spare,
                   struct limits_run *lr)
{
        bool cg;

        *lr = LIMITS_RUN_INIT;
        if (!lim)
                return -EINVAL;
        if (spare && spare->fd >= 0) {
                lr->g = *spare;
                *spare = LIMITS_GROUP_INIT;
        } else if (lim->cgroup_root)
                (void)limits_group_make(lim->cgroup_root, &lr->g);
        if (lr->g.fd >= 0 && !group_limit(lr, lim))
                limits_group_drop(&lr->g);
        if (lr->g.fd >= 0)
                (void)read_value(lr->g.cpu_fd, lr->g.fd, "cpu.stat", "usage_usec",
                                 &lr->cpu_base_us);
        cg = lr->g.fd >= 0;
        lr->cpu_time_ms = lim->cpu_time_ms;
        if (lim->cpu_time_ms) {
                /* Whole seconds: with a cgroup the run loop stops the tree at the millisecond,
                 * and this is the backstop; without one it is the limit (per process). */
                rlim_t s = (lim->cpu_time_ms + 999) / 1000 + (cg ? 1 : 0);
                lr->rl_cpu = (struct rlimit){s, s + 1};
                lr->set_cpu = true;
        }
        if (lim->memory_bytes && !cg) {
                lr->rl_as = (struct rlimit){lim->memory_bytes, lim->memory_bytes};
                lr->set_as = true;
        }
        if (lim->max_processes && !cg) {
                lr->rl_nproc = (struct rlimit){lim->max_processes, lim->max_processes};
                lr->set_nproc = true;
        }
        if (lim->has_file_size) {
                lr->rl_fsize = (struct rlimit){lim->file_size_max, lim->file_size_max};
                lr->set_fsize = true;
        }
        (void)getrusage(RUSAGE_CHILDREN, &lr->before);
        return 0;
}

int limits_enter_child(const struct limits_run *lr)
{
        if (lr->g.procs_fd >= 0 && write(lr->g.procs_fd, "0", 1) < 0)
                return -errno;
        if (lr->set_cpu && setrlimit(RLIMIT_CPU, &lr->rl_cpu) < 0)
                return -errno;
        if (lr->set_as && setrlimit(RLIMIT_AS, &lr->rl_as) < 0)
                return -errno;
        if (lr->set_nproc && setrlimit(RLIMIT_NPROC, &lr->rl_nproc) < 0)
                return -errno;
        if (lr->set_fsize && setrlimit(RLIMIT_FSIZE, &lr->rl_fsize) < 0)
                return -errno;
        return 0;
}

/* CPU seconds pid has used so far (utime + stime of /proc/<pid>/stat), rounded up. */
static rlim_t cpu_used_s(pid_t pid)
{
        char path[64], buf[1024], *p;
        unsigned long long ut = 0, st = 0;
        long hz = sysconf(_SC_CLK_TCK);
        _cleanup_close_ int fd = -1;
        ssize_t k;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (k = read(fd, buf, sizeof(buf) - 1)) <= 0 || hz <= 0)
                return 0;
        buf[k] = 0;
        /* After the command's closing parenthesis: state is field 3, utime 14, stime 15. */
        p = strrchr(buf, ')');
        if (!p ||
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return 0;
        return (rlim_t)((ut + st + (unsigned long long)hz - 1) / (unsigned long long)hz);
}

static bool in_group(const struct limits_group *g, pid_t pid)
{
        char path[64], buf[512], want[160];
        _cleanup_close_ int fd = -1;
        ssize_t k;

        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
        snprintf(want, sizeof(want), "0::/%s\n", g->path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (k = read(fd, buf, sizeof(buf) - 1)) <= 0)
                return false;
        buf[k] = 0;
        return strcmp(buf, want) == 0;
}

int limits_attach(const struct limits_run *lr, pid_t pid, const char *started_in)
{
        char num[32];
        struct rlimit cpu = lr->rl_cpu;
        bool there = started_in && lr->g.path[0] && strcmp(started_in, lr->g.path) == 0;

        /* A warm runner started in the group (the agent's spare) is there already: moving a
         * process costs more than checking, and knowing costs nothing (group names are never
         * reused, and the program's user cannot move a process out of it). */
        if (lr->g.procs_fd >= 0 && !there && !in_group(&lr->g, pid)) {
                snprintf(num, sizeof(num), "%d", (int)pid);
                if (write(lr->g.procs_fd, num, strlen(num)) < 0)
                        return -errno;
        }
        if (lr->set_cpu) {
                /* RLIMIT_CPU counts the process's whole life: add what it used warming up. */
                rlim_t used = cpu_used_s(pid);
                cpu.rlim_cur += used;
                cpu.rlim_max += used;
                if (prlimit(pid, RLIMIT_CPU, &cpu, NULL) < 0)
                        return -errno;
        }
        if (lr->set_as && prlimit(pid, RLIMIT_AS, &lr->rl_as, NULL) < 0)
                return -errno;
        if (lr->set_nproc && prlimit(pid, RLIMIT_NPROC, &lr->rl_nproc, NULL) < 0)
                return -errno;
        if (lr->set_fsize && prlimit(pid, RLIMIT_FSIZE, &lr->rl_fsize, NULL) < 0)
                return -errno;
        return 0;
}

bool limits_kill(const struct limits_run *lr)
{
        return lr->g.kill_fd >= 0 && write(lr->g.kill_fd, "1", 1) == 1;
}

bool limits_only_member(const struct limits_run *lr, pid_t pid)
{
        char buf[64], *end;
        long v;

        if (lr->g.fd < 0 || pid <= 0)
                return false;
        /* One pid and a newline fit: more than that is more than one process. */
        if (read_text(lr->g.list_fd, lr->g.fd, "cgroup.procs", buf, sizeof(buf)) <= 0)
                return false;
        errno = 0;
        v = strtol(buf, &end, 10);
        return !errno && end != buf && strcmp(end, "\n") == 0 && v == (long)pid;
}

bool limits_cpu_over(const struct limits_run *lr)
{
        uint64_t us;

        if (!lr->cpu_time_ms || lr->g.fd < 0)
                return false;
        return read_value(lr->g.cpu_fd, lr->g.fd, "cpu.stat", "usage_usec", &us) == 0 &&
               us - lr->cpu_base_us >= (uint64_t)lr->cpu_time_ms * 1000;
}

static uint64_t tv_us(struct timeval tv)
{
        return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

void limits_usage(const struct limits_run *lr, int wait_status, struct agent_usage *ret)
{
        struct rusage now = {0};
        uint64_t v;

        *ret = (struct agent_usage){0};
        (void)getrusage(RUSAGE_CHILDREN, &now);
        ret->cpu_us = tv_us(now.ru_utime) + tv_us(now.ru_stime) - tv_us(lr->before.ru_utime) -
                      tv_us(lr->before.ru_stime);
        ret->memory_peak_bytes = (uint64_t)now.ru_maxrss * 1024;
        if (lr->g.fd >= 0) {
                ret->by_cgroup = true;
                if (read_value(lr->g.cpu_fd, lr->g.fd, "cpu.stat", "usage_usec", &v) == 0)
                        ret->cpu_us = v - lr->cpu_base_us;
                if (read_value(lr->g.peak_fd, lr->g.fd, "memory.peak", NULL, &v) == 0)
                        ret->memory_peak_bytes = v;
                if (read_value(lr->g.events_fd, lr->g.fd, "memory.events", "oom_kill", &v) == 0 &&
                    v > 0)
                        ret->oom_killed = true;
        }
        if (lr->cpu_time_ms &&
            (ret->cpu_us >= (uint64_t)lr->cpu_time_ms * 1000 ||
             (wait_status >= 0 && WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGXCPU)))
                ret->cpu_exceeded = true;
}

void limits_done(struct limits_run *lr)
{
        /* The group itself is removed by the next limits_group_make(), while the agent is idle:
         * not while the answer waits (and a VM serves one run only). */
        group_files_close(&lr->g);
        safe_close(lr->g.fd);
        *lr = LIMITS_RUN_INIT;
}
