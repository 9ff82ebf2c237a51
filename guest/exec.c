/* exec.c: the agent's execution engine: fork one program in its own session (or take over one
 * started earlier), feed its stdin, keep its output up to a cap, and make sure its whole process
 * group is dead and reaped on return. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

/* How long a process that inherited the output pipes may keep them open after the program
 * itself has exited, before its group is killed; and how long to drain after that kill. */
#define EXEC_LINGER_US (100 * 1000)
#define EXEC_DRAIN_US  (100 * 1000)
/* Longest wait for the killed program to be reaped (a task stuck in the kernel). */
#define EXEC_REAP_MAX_US (5 * 1000 * 1000)
/* Longest time spent killing stragglers of the process group after the run. */
#define EXEC_SWEEP_MAX_US (2 * 1000 * 1000)
/* Poll tick when pidfds are not available and the child's exit must be polled for. */
#define EXEC_TICK_MS    10
#define EXEC_READ_CHUNK (64 * 1024)
/* Output buffers start this small and double up to output_max. */
#define EXEC_BUF_INITIAL (16 * 1024)

/* Why the child could not run the program: sent over a close-on-exec pipe before exec. */
struct exec_failure {
        int error; /* positive errno */
        char step[16];
};

struct stream {
        int fd;
        char *buf;
        size_t len, cap;
};

/* Bytes the agent writes to the program, then closes the fd (unless hold: more may come). */
struct feed {
        int fd;
        const char *data;
        size_t left;
        bool hold;
};

/* Streamed stdin waiting to be written: q[off..len). */
#define EXEC_STDIN_QUEUE_MAX (16u * 1024 * 1024)
struct stdin_queue {
        char *q;
        size_t off, len, cap;
};

struct run {
        pid_t pid;  /* the program */
        pid_t pgid; /* its process group (the program called setsid()): always > 1 */
        int pidfd;  /* -1 when the kernel has no pidfd_open() */
        bool reaped;
        int status;
        bool group_killed;
        struct feed in, ctl; /* stdin; the hand-off on fd 3 */
        struct stream out, err;
        struct op_agent_order order; /* of what out and err keep */
        size_t output_max;
        bool timed_out, truncated;
        const struct agent_io *io; /* streaming hooks, or NULL */
        struct stdin_queue sq;     /* with job->stdin_open: stdin waiting to be fed */
        bool input_done;           /* io->input said eof or failed */
        const struct limits_run *lr;
        bool cpu_over;
        /* A repl call: the program is a session's interpreter, which stays. The call ends when
         * it writes "done N\n" on fd 3 (done, status N); from then on only the other
         * processes are killed. */
        bool repl, done, ctl_eof;
        /* A step of a kept runner on its own pipes (agent_exec_step()): the step ends at "done N"
         * with what it wrote before that, not at the pipes' end. */
        bool step;
        /* A warm runner's run (agent_exec_attach() with ret_left): the runner may write
         * "done N\n" on fd 3 once its program is over and its output flushed, then close fds 0-2
         * and wait to be killed. The run ends there, at the pipes' end as usual, with status N,
         * without waiting for its exit. Anything else on fd 3 is ignored. */
        bool report;
        int done_status;
        char line[16];
        size_t line_len;
};

#define DONE_LINE_MAX 12 /* "done 255\n" and a margin */

static void stream_close(struct stream *s)
{
        s->fd = safe_close(s->fd);
}

unsigned agent_kill_others(pid_t keep, pid_t pgid)
{
        pid_t self = getpid();
        struct dirent *de;
        unsigned n = 0;
        DIR *d = opendir("/proc");

        if (!d)
                return 0;
        while ((de = readdir(d))) {
                char path[64], buf[512], *rp, state;
                pid_t pid, ppid, pgrp;
                _cleanup_close_ int fd = -1;
                ssize_t k;
                long v;

                v = strtol(de->d_name, &rp, 10);
                if (*rp || v <= 1 || v > INT_MAX)
                        continue;
                pid = (pid_t)v;
                if (pid == self || pid == keep)
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                k = read(fd, buf, sizeof(buf) - 1);
                if (k <= 0)
                        continue;
                buf[k] = 0;
                /* "pid (comm) state ppid ...": comm may hold anything, ')' last ends it. */
                rp = strrchr(buf, ')');
                if (!rp || sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) != 3)
                        continue;
                if (pid == 2 || ppid == 2 || state == 'Z' || state == 'X')
                        continue; /* kernel threads; the dead */
                if (self != 1 && pgrp != pgid)
                        continue;
                (void)kill(pid, SIGKILL);
                n++;
        }
        closedir(d);
        return n;
}

static void kill_group(struct run *r)
{
        if (r->repl && r->done) {
                /* The call is over: what it started goes, its interpreter stays. */
                (void)agent_kill_others(r->pid, r->pgid);
                r->group_killed = true;
                return;
        }
        (void)kill(-r->pgid, SIGKILL);
        /* The run's cgroup, when there is one, ends forks in flight and setsid() escapees too. */
        if (r->lr)
                (void)limits_kill(r->lr);
        r->group_killed = true;
}

/* Reap whatever of the group is ours to reap (the program itself; orphans too when the agent is
 * PID 1 or a child subreaper). Never blocks. */
static void reap_group(struct run *r)
{
        for (;;) {
                int st;
                pid_t p = waitpid(-r->pgid, &st, WNOHANG);

                if (p < 0 && errno == EINTR)
                        continue;
                if (p <= 0)
                        break;
                if (p == r->pid) {
                        r->status = st;
                        r->reaped = true;
                }
        }
        if (!r->reaped) {
                /* Not in the group (setsid() failed), or reaped by someone else (SIGCHLD ignored
                 * by the caller): then there is no status to report. */
                int st;
                pid_t p = waitpid(r->pid, &st, WNOHANG);

                if (p == r->pid) {
                        r->status = st;
                        r->reaped = true;
                } else if (p < 0 && errno == ECHILD) {
                        r->status = -1;
                        r->reaped = true;
                }
        }
}

/* Kill the process group until no member is left, reaping the ones we parent. A zombie still
 * counts as a member, so this ends when every member is dead and reaped by whoever parents it. */
static void sweep_group(struct run *r)
{
        uint64_t end = op_now_us() + EXEC_SWEEP_MAX_US;
        long nap_ns = 100 * 1000;

        if (r->repl && r->done && !r->reaped) {
                while (agent_kill_others(r->pid, r->pgid) > 0 && op_now_us() < end) {
                        reap_group(r);
                        nanosleep(&(struct timespec){.tv_nsec = nap_ns}, NULL);
                        if (nap_ns < 10 * 1000 * 1000)
                                nap_ns *= 2;
                }
                reap_group(r);
                return;
        }
        for (;;) {
                if (r->lr)
                        (void)limits_kill(r->lr);
                if (kill(-r->pgid, SIGKILL) < 0 && errno == ESRCH)
                        break;
                reap_group(r);
                if (op_now_us() >= end)
                        break;
                nanosleep(&(struct timespec){.tv_nsec = nap_ns}, NULL);
                if (nap_ns < 10 * 1000 * 1000)
                        nap_ns *= 2;
        }
        reap_group(r);
}

/* Write to the program's stdin without ever taking a SIGPIPE, whatever the caller's disposition:
 * the signal is blocked for the write and a SIGPIPE it raised is consumed. */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t n)
{
        sigset_t pipe_set, old, pending;
        bool was_pending;
        ssize_t k;
        int saved;

        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        sigpending(&pending);
        was_pending = sigismember(&pending, SIGPIPE);
        sigprocmask(SIG_BLOCK, &pipe_set, &old);
        k = write(fd, buf, n);
        saved = errno;
        if (k < 0 && saved == EPIPE && !was_pending)
                (void)sigtimedwait(&pipe_set, NULL, &(struct timespec){0});
        sigprocmask(SIG_SETMASK, &old, NULL);
        errno = saved;
        return k;
}

static void feed(struct feed *f)
{
        while (f->left > 0) {
                ssize_t k = write_nosigpipe(f->fd, f->data,
                                            f->left < PIPE_BUF * 16 ? f->left : PIPE_BUF * 16);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        break; /* EPIPE: the program closed its end; that is its business */
                }
                f->data += k;
                f->left -= (size_t)k;
        }
        if (!f->hold)
                f->fd = safe_close(f->fd);
}

/* Append streamed stdin to what is still to be written; with eof, close after it. */
static int stdin_push(struct run *r, const char *data, size_t len, bool eof)
{
        struct stdin_queue *sq = &r->sq;

        if (r->in.fd < 0)
                return 0; /* the program closed its stdin: the bytes go nowhere */
        sq->off = sq->len - r->in.left;
        if (sq->off > 0) {
                memmove(sq->q, sq->q + sq->off, r->in.left);
                sq->len = r->in.left;
                sq->off = 0;
        }
        if (len > 0) {
                if (sq->len + len > sq->cap) {
                        size_t cap = sq->cap ? sq->cap : 4096;
                        char *nq;

                        while (cap < sq->len + len)
                                cap *= 2;
                        nq = realloc(sq->q, cap);
                        if (!nq)
                                return -ENOMEM;
                        sq->q = nq;
                        sq->cap = cap;
                }
                memcpy(sq->q + sq->len, data, len);
                sq->len += len;
        }
        r->in.data = sq->q;
        r->in.left = sq->len;
        if (eof) {
                r->in.hold = false;
                if (r->in.left == 0)
                        r->in.fd = safe_close(r->in.fd);
        }
        return 0;
}

/* The host's channel is readable: take what it has for stdin. false: the run must end. */
static bool take_input(struct run *r)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        bool eof = false;
        int k = r->io->input(r->io->userdata, &data, &len, &eof);

        if (k < 0) {
                r->input_done = true;
                return false;
        }
        if (eof)
                r->input_done = true;
        if ((data && len > 0) || eof)
                return stdin_push(r, data, len, eof) == 0;
        return true;
}

/* Read what is there. Returns false when the output cap was hit. */
static bool drain(struct run *r, struct stream *s)
{
        char chunk[EXEC_READ_CHUNK];
        ssize_t k;
        size_t room, keep;

        k = read(s->fd, chunk, sizeof(chunk));
        if (k < 0) {
                if (errno != EINTR && errno != EAGAIN)
                        stream_close(s);
                return true;
        }
        if (k == 0) {
                stream_close(s);
                return true;
        }
        room = r->output_max - s->len;
        keep = (size_t)k < room ? (size_t)k : room;
        if (r->io && r->io->output) {
                /* Streamed: passed on at once, only counted here. */
                if (keep > 0 &&
                    r->io->output(r->io->userdata, s == &r->out ? 1 : 2, chunk, keep) < 0)
                        return false;
                s->len += keep;
                if ((size_t)k > room) {
                        r->truncated = true;
                        return false;
                }
                return true;
        }
        if (s->len + keep + 1 > s->cap) {
                size_t cap = s->cap;
                char *nb;

                while (cap < s->len + keep + 1)
                        cap = cap * 2 < r->output_max + 1 ? cap * 2 : r->output_max + 1;
                nb = realloc(s->buf, cap);
                if (!nb) {
                        /* Out of memory is not the program's fault, but the run cannot go on. */
                        r->truncated = true;
                        return false;
                }
                s->buf = nb;
                s->cap = cap;
        }
        memcpy(s->buf + s->len, chunk, keep);
        s->len += keep;
        s->buf[s->len] = 0;
        /* Without memory for it, the order is dropped (unknown), not the output. */
        (void)op_agent_order_add(&r->order, s == &r->out ? 1 : 2, keep);
        if ((size_t)k > room) {
                r->truncated = true;
                return false;
        }
        return true;
}

static int stream_init(struct stream *s, size_t output_max)
{
        s->cap = output_max < EXEC_BUF_INITIAL ? output_max + 1 : EXEC_BUF_INITIAL;
        s->buf = malloc(s->cap);
        if (!s->buf)
                return -ENOMEM;
        s->buf[0] = 0;
        s->len = 0;
        return 0;
}

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
        int fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd >= 0)
                return fd; /* pidfds are always close-on-exec */
#endif
        return -1;
}

/* Child side, between fork() and exec: only async-signal-safe work, then exec or _exit(). */
static _Noreturn void child_fail(int status_fd, const char *step, int error)
{
        struct exec_failure f = {.error = error};

        strncpy(f.step, step, sizeof(f.step) - 1);
        (void)!write(status_fd, &f, sizeof(f));
        _exit(127);
}

/* fds[i] becomes fd i of the program, for i < nfds (3, or 4 with the control socket). */
static _Noreturn void child_run(const struct agent_job *job, const struct limits_run *lr,
                                pid_t parent, int status_fd, const int *fds, int nfds)
{
        extern char **environ;
        struct sigaction sa_dfl = {.sa_handler = SIG_DFL};
        sigset_t none;
        int moved[4];

        if (setsid() < 0)
                child_fail(status_fd, "setsid", errno);

        /* Lift the ends above the targets first, so that no dup2() below clobbers another end. */
        for (int i = 0; i < nfds; i++) {
                moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, nfds);
                if (moved[i] < 0)
                        child_fail(status_fd, "dup", errno);
        }
        for (int i = 0; i < nfds; i++)
                if (dup2(moved[i], i) < 0)
                        child_fail(status_fd, "dup2", errno);

#ifdef SYS_close_range
        /* Nothing of the agent but fds 0..nfds-1 crosses exec, even if someone forgot O_CLOEXEC. */
        (void)syscall(SYS_close_range, (unsigned)nfds, ~0u, CLOSE_RANGE_CLOEXEC);
#endif

        for (int sig = 1; sig < _NSIG; sig++)
                (void)sigaction(sig, &sa_dfl, NULL);
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                child_fail(status_fd, "sigprocmask", errno);

        if (chdir(job->workdir) < 0)
                child_fail(status_fd, "chdir", errno);
        /* As root still: join the run's cgroup, lower the rlimits (NPROC counts the new uid). */
        if (lr) {
                int k = limits_enter_child(lr);
                if (k < 0)
                        child_fail(status_fd, "limits", -k);
        }

        if (job->uid != (uid_t)-1) {
                if (setgroups(1, &job->gid) < 0)
                        child_fail(status_fd, "setgroups", errno);
                if (setgid(job->gid) < 0)
                        child_fail(status_fd, "setgid", errno);
                if (setuid(job->uid) < 0)
                        child_fail(status_fd, "setuid", errno);
        }

        /* Die with the agent; set after setuid(), which clears it. */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(127);

        /* execvpe() searches the PATH of the current environment: make that the job's. */
        environ = (char **)job->env;
        execvpe(job->argv[0], (char *const *)job->argv, (char *const *)job->env);

        {
                int e = errno;
                char msg[512];
                int n = snprintf(msg, sizeof(msg), "op-agent: %s: %s\n", job->argv[0],
                                 e == ENOENT ? "not found" : strerror(e));
                if (n > 0)
                        (void)!write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg));
                _exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
        }
}

/* Wait for exec or for a set-up failure in the child. 0, or the child's negative errno. */
static int wait_exec(int status_fd)
{
        struct exec_failure f;
        ssize_t k;

        do
                k = read(status_fd, &f, sizeof(f));
        while (k < 0 && errno == EINTR);
        if (k == 0)
                return 0;
        if (k != (ssize_t)sizeof(f))
                return k < 0 ? -errno : -EIO;
        return f.error > 0 ? -f.error : -EIO;
}

/* A repl call's or a step's fd 3: "done N\n" ends the call; anything else is the interpreter
 * (or the code it runs) breaking the protocol, and it is killed. A reporting runner's line that
 * is not "done N" is only ignored, with what follows it: the run ends at its exit then. */
static void read_ctl(struct run *r)
{
        char *nl, *end;
        ssize_t k;
        long v;

        for (;;) {
                k = read(r->ctl.fd, r->line + r->line_len, DONE_LINE_MAX - r->line_len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return;
                if (k <= 0) {
                        r->ctl_eof = true; /* it exits, or closed fd 3: see run_loop() */
                        return;
                }
                r->line_len += (size_t)k;
                r->line[r->line_len] = 0;
                nl = memchr(r->line, '\n', r->line_len);
                if (!nl && r->line_len < DONE_LINE_MAX)
                        continue;
                if (nl && nl + 1 == r->line + r->line_len && strncmp(r->line, "done ", 5) == 0) {
                        *nl = 0;
                        errno = 0;
                        v = strtol(r->line + 5, &end, 10);
                        if (!errno && end != r->line + 5 && !*end && v >= 0 && v <= 255) {
                                r->done = true;
                                r->done_status = (int)v;
                                return;
                        }
                }
                if (r->report)
                        r->ctl_eof = true;
                else
                        kill_group(r);
                return;
        }
}

/* Stop listening to the program and end it. */
static void run_stop(struct run *r)
{
        kill_group(r);
        r->in.fd = safe_close(r->in.fd);
        r->ctl.fd = safe_close(r->ctl.fd);
        stream_close(&r->out);
        stream_close(&r->err);
}

/* A step is over: read what the runner wrote before its "done" line, which is in the pipes by
 * now (it wrote it first), up to the cap. */
static void drain_pending(struct run *r)
{
        for (int s = 0; s < 2; s++) {
                struct stream *st = s ? &r->err : &r->out;

                while (st->fd >= 0) {
                        struct pollfd p = {.fd = st->fd, .events = POLLIN};

                        if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLIN | POLLHUP)))
                                break;
                        if (!drain(r, st))
                                return; /* over the cap: the step is cut short there */
                }
        }
}

static void run_loop(struct run *r, uint64_t start, uint32_t timeout_ms)
{
        uint64_t deadline = timeout_ms ? start + (uint64_t)timeout_ms * 1000 : UINT64_MAX;
        uint64_t linger = 0, reap_by = 0, ctl_grace = 0;

        for (;;) {
                struct pollfd p[7];
                struct feed *feeds[2] = {&r->in, &r->ctl};
                int n = 0, i_feed[2] = {-1, -1}, i_out = -1, i_err = -1, i_pid = -1, i_input = -1;
                int i_ctl = -1;
                bool cpu_watch = r->lr && r->lr->cpu_time_ms && r->lr->g.fd >= 0 && !r->done;
                bool ended;
                uint64_t now, wake;
                int timeout;

                if (!r->reaped && (r->pidfd < 0 || r->group_killed))
                        reap_group(r);
                if (r->step && r->done && !r->reaped) {
                        drain_pending(r);
                        break;
                }
                ended = r->reaped || ((r->repl || r->report) && r->done);
                if (ended && r->out.fd < 0 && r->err.fd < 0)
                        break;

                now = op_now_us();
                if (!r->group_killed && !r->done && now >= deadline) {
                        r->timed_out = true;
                        kill_group(r);
                }
                if (!r->group_killed && cpu_watch && limits_cpu_over(r->lr)) {
                        r->cpu_over = true;
                        kill_group(r);
                }
                if (r->group_killed && !r->reaped && !r->done) {
                        if (!reap_by)
                                reap_by = now + EXEC_REAP_MAX_US;
                        else if (now >= reap_by)
                                break; /* stuck in the kernel: reported as killed, reaped later */
                }
                if (r->repl && r->ctl_eof && !r->done && !r->reaped && !r->group_killed) {
                        /* fd 3 closed without "done": it exits, or it cannot answer any more. */
                        if (!ctl_grace)
                                ctl_grace = now + EXEC_LINGER_US;
                        else if (now >= ctl_grace)
                                kill_group(r);
                }
                if (ended && (r->out.fd >= 0 || r->err.fd >= 0)) {
                        /* The program is gone but something it started holds the pipes. */
                        if (!linger)
                                linger = now + (r->group_killed ? EXEC_DRAIN_US : EXEC_LINGER_US);
                        else if (now >= linger) {
                                if (r->group_killed)
                                        break; /* escaped the group (setsid): stop listening */
                                kill_group(r);
                                linger = now + EXEC_DRAIN_US;
                        }
                }

                wake = r->group_killed || r->done ? UINT64_MAX : deadline;
                if (ctl_grace && !r->group_killed && ctl_grace < wake)
                        wake = ctl_grace;
                if (linger && linger < wake)
                        wake = linger;
                if (reap_by && reap_by < wake)
                        wake = reap_by;
                timeout = wake == UINT64_MAX ? -1
                          : wake <= now      ? 0
                                             : (int)((wake - now + 999) / 1000);
                if (((!r->reaped && (r->pidfd < 0 || r->group_killed)) ||
                     (cpu_watch && !r->group_killed)) &&
                    (timeout < 0 || timeout > EXEC_TICK_MS))
                        timeout = EXEC_TICK_MS;

                if (r->io && r->io->input && r->io->input_fd >= 0 && !r->input_done &&
                    !r->group_killed && r->in.left < EXEC_STDIN_QUEUE_MAX) {
                        i_input = n;
                        p[n++] = (struct pollfd){.fd = r->io->input_fd, .events = POLLIN};
                }
                for (int f = 0; f < 2; f++)
                        if (feeds[f]->fd >= 0 && feeds[f]->left > 0) {
                                i_feed[f] = n;
                                p[n++] = (struct pollfd){.fd = feeds[f]->fd, .events = POLLOUT};
                        }
                if (r->out.fd >= 0) {
                        i_out = n;
                        p[n++] = (struct pollfd){.fd = r->out.fd, .events = POLLIN};
                }
                if (r->err.fd >= 0) {
                        i_err = n;
                        p[n++] = (struct pollfd){.fd = r->err.fd, .events = POLLIN};
                }
                if ((r->repl || r->report) && !r->done && !r->ctl_eof && r->ctl.fd >= 0) {
                        i_ctl = n;
                        p[n++] = (struct pollfd){.fd = r->ctl.fd, .events = POLLIN};
                }
                if (!r->reaped && r->pidfd >= 0) {
                        i_pid = n;
                        p[n++] = (struct pollfd){.fd = r->pidfd, .events = POLLIN};
                }
                if (poll(p, (nfds_t)n, timeout) < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        /* Cannot watch the program any more: end it. */
                        run_stop(r);
                        continue;
                }
                for (int f = 0; f < 2; f++) {
                        if (i_feed[f] < 0 || !p[i_feed[f]].revents)
                                continue;
                        if (p[i_feed[f]].revents & (POLLERR | POLLHUP | POLLNVAL))
                                feeds[f]->fd = safe_close(feeds[f]->fd);
                        else
                                feed(feeds[f]);
                }
                for (int s = 0; s < 2; s++) {
                        int idx = s ? i_err : i_out;
                        struct stream *st = s ? &r->err : &r->out;

                        if (idx < 0 || !p[idx].revents)
                                continue;
                        if (!drain(r, st)) {
                                /* Over the cap: the run ends here, and what is left unread goes. */
                                run_stop(r);
                                break;
                        }
                }
                if (i_pid >= 0 && p[i_pid].revents)
                        reap_group(r);
                if (i_ctl >= 0 && p[i_ctl].revents)
                        read_ctl(r);
                if (i_input >= 0 && p[i_input].revents && !take_input(r))
                        run_stop(r); /* the host is gone, or out of memory */
        }
}

static void child_close(struct agent_child *c)
{
        safe_close(c->pidfd);
        safe_close(c->in_fd);
        safe_close(c->out_fd);
        safe_close(c->err_fd);
        safe_close(c->ctl_fd);
        *c = AGENT_CHILD_INIT;
}

static int spawn(const struct agent_job *job, bool with_ctl, const struct limits_run *lr,
                 struct agent_child *ret)
{
        _cleanup_close_ int in_r = -1, in_w = -1, out_r = -1, out_w = -1, err_r = -1, err_w = -1;
        _cleanup_close_ int status_r = -1, status_w = -1, ctl_r = -1, ctl_w = -1, pidfd = -1;
        pid_t parent = getpid(), pid;
        int p[2], rc;

        if (!job || !job->argv || !job->argv[0] || !job->env || !job->workdir || !ret)
                return -EINVAL;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        in_r = p[0], in_w = p[1];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        out_r = p[0], out_w = p[1];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        err_r = p[0], err_w = p[1];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        status_r = p[0], status_w = p[1];
        /* The program's user owns its standard streams, so that it may open them again by name
         * (/dev/stdin, /dev/stdout, /dev/stderr are links to /proc/self/fd/N, which opens the
         * pipe's inode and checks its owner). */
        if (job->uid != (uid_t)-1 &&
            (fchown(in_r, job->uid, job->gid) < 0 || fchown(out_w, job->uid, job->gid) < 0 ||
             fchown(err_w, job->uid, job->gid) < 0))
                return -errno;
        if (with_ctl) {
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
                        return -errno;
                ctl_r = p[0], ctl_w = p[1];
        }

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int fds[4] = {in_r, out_w, err_w, ctl_w};
                child_run(job, lr, parent, status_w, fds, with_ctl ? 4 : 3);
        }

        status_w = safe_close(status_w);
        in_r = safe_close(in_r);
        out_w = safe_close(out_w);
        err_w = safe_close(err_w);
        ctl_w = safe_close(ctl_w);
        /* The child cannot be reaped before we do, so its pid cannot be reused in between. */
        pidfd = open_pidfd(pid);

        rc = wait_exec(status_r);
        if (rc < 0) {
                struct run dead = {.pid = pid, .pgid = pid, .pidfd = -1};
                sweep_group(&dead);
                while (!dead.reaped && waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                return rc;
        }

        /* It called setsid() before exec: its group is its own. */
        *ret = (struct agent_child){
            .pid = pid,
            .pgid = pid,
            .pidfd = TAKE_FD(pidfd),
            .in_fd = TAKE_FD(in_w),
            .out_fd = TAKE_FD(out_r),
            .err_fd = TAKE_FD(err_r),
            .ctl_fd = TAKE_FD(ctl_r),
        };
        return 0;
}

int agent_spawn(const struct agent_job *job, bool with_ctl, struct agent_child *ret)
{
        return spawn(job, with_ctl, NULL, ret);
}

int agent_spawn_in(const struct agent_job *job, bool with_ctl, const struct limits_group *g,
                   struct agent_child *ret)
{
        struct limits_run lr = LIMITS_RUN_INIT;
        int r;

        if (!g || g->procs_fd < 0)
                return spawn(job, with_ctl, NULL, ret);
        lr.g.procs_fd = g->procs_fd; /* only joins the group: no limits yet */
        r = spawn(job, with_ctl, &lr, ret);
        if (r == 0)
                snprintf(ret->group, sizeof(ret->group), "%s", g->path);
        return r;
}

/* Takes lr (prepared): its cgroup is removed on return. With ret_kept, the child is a kept
 * runner (a repl call, or a step when step is set) that may stay after the call. With ret_left,
 * a reporting runner (see struct run's report) that is alone in the run's cgroup when the run
 * ends is left alive there, for the caller to end. */
static int exec_attach(const struct agent_job *job, struct agent_child *child, uint64_t start,
                       struct limits_run *lr, struct agent_result *ret, bool *ret_kept, bool step,
                       struct agent_child *ret_left)
{
        struct run r = {
            .pid = child->pid,
            .pgid = child->pgid,
            .pidfd = child->pidfd,
            .reaped = child->reaped,
            .status = child->status,
            .in.fd = child->in_fd,
            .ctl.fd = child->ctl_fd,
            .out.fd = child->out_fd,
            .err.fd = child->err_fd,
            .lr = lr,
            .repl = ret_kept != NULL,
            .ctl.hold = ret_kept != NULL || ret_left != NULL,
            .step = ret_kept != NULL && step,
            .report = ret_kept == NULL && ret_left != NULL,
        };
        bool left;
        int rc = 0;

        if (ret_kept)
                *ret_kept = false;
        if (ret_left)
                *ret_left = AGENT_CHILD_INIT;

        if (r.pid <= 0 || r.pgid <= 1) {
                /* Nothing to supervise (and kill(-0) or kill(-1) would hit far more than it). */
                child_close(child);
                limits_done(lr);
                return -EINVAL;
        }
        *child = AGENT_CHILD_INIT;
        if (!job || !ret || (job->stdin_len > 0 && !job->stdin_data) ||
            (job->handoff_len > 0 && !job->handoff) || job->output_max > SIZE_MAX / 4)
                rc = -EINVAL;
        if (rc == 0)
                rc = stream_init(&r.out, job->output_max);
        if (rc == 0)
                rc = stream_init(&r.err, job->output_max);

        if (rc == 0) {
                r.order.known = !(job->io && job->io->output);
                r.output_max = job->output_max;
                r.in.data = job->stdin_data;
                r.in.left = job->stdin_len;
                r.ctl.data = job->handoff;
                r.ctl.left = job->handoff_len;
                r.io = job->io;
        }
        if (rc == 0 && job->stdin_open && job->io && job->io->input && job->io->input_fd >= 0) {
                /* Interactive: stdin goes through a queue that input() refills. */
                r.in.hold = true;
                r.in.left = 0;
                rc = stdin_push(&r, job->stdin_data, job->stdin_len, false);
        }
        if (r.in.left == 0 && !r.in.hold)
                r.in.fd = safe_close(r.in.fd);
        if (r.ctl.left == 0 && !r.repl && !r.report)
                r.ctl.fd = safe_close(r.ctl.fd);
        /* The agent never blocks on the program: all its ends are non-blocking. */
        if (rc == 0 && r.in.fd >= 0)
                rc = op_fd_nonblock(r.in.fd, 1);
        if (rc == 0 && r.ctl.fd >= 0)
                rc = op_fd_nonblock(r.ctl.fd, 1);
        if (rc == 0 && r.out.fd >= 0)
                rc = op_fd_nonblock(r.out.fd, 1);
        if (rc == 0 && r.err.fd >= 0)
                rc = op_fd_nonblock(r.err.fd, 1);
        if (rc < 0)
                kill_group(&r);

        /* Frames that came in with the job are already read: take them before polling. */
        if (rc == 0 && r.in.hold && !take_input(&r))
                run_stop(&r);
        if (rc == 0)
                run_loop(&r, start, job->timeout_ms);
        if (rc == 0)
                ret->run_us = op_now_us() - start;
        free(r.sq.q);
        r.in.fd = safe_close(r.in.fd);
        r.ctl.fd = safe_close(r.ctl.fd);
        stream_close(&r.out);
        stream_close(&r.err);
        /* Nothing the program started in its group outlives the run. A runner that reported and
         * is all that is left of the run waits to be killed: its exit is not the answer's to
         * wait for. */
        left = r.report && r.done && !r.reaped && !r.group_killed && rc == 0 &&
               limits_only_member(lr, r.pid);
        if (left) {
                ret_left->pid = r.pid;
                ret_left->pgid = r.pgid;
                ret_left->pidfd = TAKE_FD(r.pidfd);
        } else
                sweep_group(&r);
        r.pidfd = safe_close(r.pidfd);
        limits_usage(lr, r.reaped ? r.status : -1, &ret->usage);
        if (r.cpu_over)
                ret->usage.cpu_exceeded = true;
        limits_done(lr);
        if (rc < 0)
                goto fail;

        (void)op_agent_order_end(&r.order);
        ret->order = r.order;
        r.order = (struct op_agent_order){0};
        ret->out = r.out.buf;
        ret->out_total = r.out.len;
        ret->err = r.err.buf;
        ret->err_total = r.err.len;
        /* Streamed output was passed on, not kept. */
        ret->out_len = r.io && r.io->output ? 0 : r.out.len;
        ret->err_len = r.io && r.io->output ? 0 : r.err.len;
        if (r.io && r.io->output)
                r.out.buf[0] = r.err.buf[0] = 0;
        ret->timed_out = r.timed_out;
        ret->truncated = r.truncated;
        if (r.repl && r.done && !r.reaped) {
                /* The interpreter finished the call and waits for the next one. */
                ret->exit_code = r.done_status;
                ret->signal = 0;
                *ret_kept = true;
        } else if (r.report && r.done) {
                /* What the runner said, whether or not the sweep has killed it since. */
                ret->exit_code = r.done_status;
                ret->signal = 0;
        } else if (r.reaped && r.status >= 0 && WIFEXITED(r.status)) {
                ret->exit_code = WEXITSTATUS(r.status);
                ret->signal = 0;
        } else if (r.reaped && r.status >= 0 && WIFSIGNALED(r.status)) {
                ret->exit_code = -1;
                ret->signal = WTERMSIG(r.status);
        } else {
                /* Not reaped in time, or reaped by someone else: it was killed by us. */
                ret->exit_code = -1;
                ret->signal = r.group_killed ? SIGKILL : 0;
        }
        return 0;

fail:
        free(r.out.buf);
        free(r.err.buf);
        op_agent_order_done(&r.order);
        return rc;
}

static const struct agent_limits no_limits;

int agent_exec_attach(const struct agent_job *job, struct agent_child *child,
                      struct agent_result *ret, struct agent_child *ret_left)
{
        struct limits_run lr;
        int rc;

        if (!child)
                return -EINVAL;
        rc = limits_prepare(job && job->limits ? job->limits : &no_limits, job ? job->group : NULL,
                            &lr);
        if (rc < 0) {
                agent_child_kill(child);
                return rc;
        }
        /* Started earlier (a warm runner): it joins the run's cgroup and limits now (it is there
         * already when it was started in that group and is alive). */
        if (child->pid > 0 &&
            limits_attach(&lr, child->pid, child->reaped ? NULL : child->group) < 0) {
                agent_child_kill(child);
                limits_done(&lr);
                return -EPERM;
        }
        return exec_attach(job, child, op_now_us(), &lr, ret, NULL, false, ret_left);
}

/* Send the start of data with fds (SCM_RIGHTS) without blocking: the bytes sent (at least one),
 * or a negative errno. */
static ssize_t send_with_fds(int sock, const char *data, size_t len, const int *fds, size_t n_fds)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(3 * sizeof(int))];
        } u = {0};
        struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        struct cmsghdr *c;
        ssize_t k;

        if (n_fds == 0 || n_fds > 3 || len == 0)
                return -EINVAL;
        m.msg_control = u.buf;
        m.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
        c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
        do
                k = sendmsg(sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return -errno;
        return k > 0 ? k : -EIO;
}

int agent_exec_repl(const struct agent_job *job, struct agent_child *repl, struct agent_result *ret,
                    bool *ret_alive)
{
        _cleanup_close_ int in_r = -1, in_w = -1, out_r = -1, out_w = -1, err_r = -1, err_w = -1;
        _cleanup_close_ int ctl = -1, pidfd = -1;
        struct agent_child call;
        struct limits_run lr;
        struct agent_job j;
        int p[2], fds[3], rc;
        ssize_t sent;
        bool kept = false;

        if (ret_alive)
                *ret_alive = false;
        if (!job || !repl || !ret || !ret_alive || repl->pid <= 0 || repl->pgid <= 1 ||
            repl->ctl_fd < 0 || repl->reaped || !job->handoff || job->handoff_len == 0 ||
            (job->stdin_len > 0 && !job->stdin_data) || job->output_max > SIZE_MAX / 4) {
                agent_child_kill(repl);
                return -EINVAL;
        }
        /* The pipes it was started with: it takes the call's instead. */
        repl->in_fd = safe_close(repl->in_fd);
        repl->out_fd = safe_close(repl->out_fd);
        repl->err_fd = safe_close(repl->err_fd);

        rc = pipe2(p, O_CLOEXEC) < 0 ? -errno : 0;
        if (rc == 0) {
                in_r = p[0], in_w = p[1];
                rc = pipe2(p, O_CLOEXEC) < 0 ? -errno : 0;
        }
        if (rc == 0) {
                out_r = p[0], out_w = p[1];
                rc = pipe2(p, O_CLOEXEC) < 0 ? -errno : 0;
        }
        if (rc == 0) {
                err_r = p[0], err_w = p[1];
                /* Its user owns them, as a spawned program's (see spawn()). */
                if (job->uid != (uid_t)-1 && (fchown(in_r, job->uid, job->gid) < 0 ||
                                              fchown(out_w, job->uid, job->gid) < 0 ||
                                              fchown(err_w, job->uid, job->gid) < 0))
                        rc = -errno;
        }
        if (rc == 0 && (ctl = fcntl(repl->ctl_fd, F_DUPFD_CLOEXEC, 3)) < 0)
                rc = -errno;
        if (rc == 0 && repl->pidfd >= 0 && (pidfd = fcntl(repl->pidfd, F_DUPFD_CLOEXEC, 3)) < 0)
                rc = -errno;
        if (rc < 0) {
                agent_child_kill(repl);
                return rc;
        }
        rc = limits_prepare(job->limits ? job->limits : &no_limits, job->group, &lr);
        if (rc < 0) {
                agent_child_kill(repl);
                return rc;
        }
        /* Into this call's cgroup and limits, from the last call's (or the spare it started in). */
        if (limits_attach(&lr, repl->pid, NULL) < 0) {
                agent_child_kill(repl);
                limits_done(&lr);
                return -EPERM;
        }
        fds[0] = in_r, fds[1] = out_w, fds[2] = err_w;
        sent = send_with_fds(repl->ctl_fd, job->handoff, job->handoff_len, fds, 3);
        if (sent < 0) {
                agent_child_kill(repl);
                limits_done(&lr);
                return (int)sent;
        }
        in_r = safe_close(in_r);
        out_w = safe_close(out_w);
        err_w = safe_close(err_w);

        j = *job;
        j.handoff += sent;
        j.handoff_len -= (size_t)sent;
        call = (struct agent_child){
            .pid = repl->pid,
            .pgid = repl->pgid,
            .pidfd = TAKE_FD(pidfd),
            .in_fd = TAKE_FD(in_w),
            .out_fd = TAKE_FD(out_r),
            .err_fd = TAKE_FD(err_r),
            .ctl_fd = TAKE_FD(ctl),
        };
        rc = exec_attach(&j, &call, op_now_us(), &lr, ret, &kept, false, NULL);
        if (rc < 0 || !kept) {
                /* It ended (or was ended) in the call: reaped by the sweep, or killed now. */
                repl->reaped = true;
                agent_child_kill(repl);
                return rc;
        }
        *ret_alive = true;
        return 0;
}

int agent_exec_step(const struct agent_job *job, struct agent_child *runner,
                    struct agent_result *ret, bool *ret_alive)
{
        _cleanup_close_ int out = -1, err = -1, ctl = -1, pidfd = -1;
        struct agent_child step;
        struct limits_run lr;
        bool kept = false;
        int rc = 0;

        if (ret_alive)
                *ret_alive = false;
        if (!job || !runner || !ret || !ret_alive || runner->pid <= 0 || runner->pgid <= 1 ||
            runner->ctl_fd < 0 || runner->out_fd < 0 || runner->err_fd < 0 || runner->reaped ||
            !job->handoff || job->handoff_len == 0 || job->output_max > SIZE_MAX / 4) {
                agent_child_kill(runner);
                return -EINVAL;
        }
        /* The step reads and closes copies: the runner's own fds stay for what comes next. */
        if ((out = fcntl(runner->out_fd, F_DUPFD_CLOEXEC, 3)) < 0 ||
            (err = fcntl(runner->err_fd, F_DUPFD_CLOEXEC, 3)) < 0 ||
            (ctl = fcntl(runner->ctl_fd, F_DUPFD_CLOEXEC, 3)) < 0 ||
            (runner->pidfd >= 0 && (pidfd = fcntl(runner->pidfd, F_DUPFD_CLOEXEC, 3)) < 0))
                rc = -errno;
        if (rc == 0)
                rc = limits_prepare(&no_limits, NULL, &lr);
        if (rc < 0) {
                agent_child_kill(runner);
                return rc;
        }
        step = (struct agent_child){
            .pid = runner->pid,
            .pgid = runner->pgid,
            .pidfd = TAKE_FD(pidfd),
            .in_fd = -1,
            .out_fd = TAKE_FD(out),
            .err_fd = TAKE_FD(err),
            .ctl_fd = TAKE_FD(ctl),
        };
        rc = exec_attach(job, &step, op_now_us(), &lr, ret, &kept, true, NULL);
        if (rc < 0 || !kept) {
                /* It ended (or was ended) in the step: reaped by the sweep, or killed now. */
                runner->reaped = true;
                agent_child_kill(runner);
                return rc;
        }
        *ret_alive = true;
        return 0;
}

int agent_exec(const struct agent_job *job, struct agent_result *ret)
{
        struct agent_child c = AGENT_CHILD_INIT;
        struct limits_run lr;
        uint64_t start;
        int rc;

        if (!job || !ret || (job->stdin_len > 0 && !job->stdin_data) ||
            job->output_max > SIZE_MAX / 4)
                return -EINVAL;
        rc = limits_prepare(job->limits ? job->limits : &no_limits, job->group, &lr);
        if (rc < 0)
                return rc;
        start = op_now_us();
        rc = spawn(job, false, &lr, &c);
        if (rc < 0) {
                limits_done(&lr);
                return rc;
        }
        return exec_attach(job, &c, start, &lr, ret, NULL, false, NULL);
}

void agent_rehearse(uid_t uid, gid_t gid, const char *cgroup_root)
{
        static const char *const argv[] = {"true", NULL};
        static const char *const env[] = {"PATH=/usr/bin:/bin", NULL};
        const struct agent_limits lim = {
            .cpu_time_ms = 1000,
            .memory_bytes = 64 << 20,
            .max_processes = 8,
            .has_file_size = true,
            .file_size_max = 1 << 20,
            .cgroup_root = cgroup_root,
        };
        struct limits_group g = LIMITS_GROUP_INIT;
        struct agent_child child = AGENT_CHILD_INIT;
        struct agent_result res;
        struct agent_job job = {
            .argv = argv,
            .env = env,
            .workdir = "/",
            .timeout_ms = 10000,
            .output_max = 64,
            .uid = uid,
            .gid = gid,
            .limits = &lim,
            .group = &g,
        };

        if (cgroup_root)
                (void)limits_group_make(cgroup_root, &g);
        if (agent_spawn_in(&job, true, &g, &child) < 0) {
                limits_group_drop(&g);
                return;
        }
        if (agent_exec_attach(&job, &child, &res, NULL) == 0)
                agent_result_done(&res);
        limits_group_drop(&g); /* not taken when the attach failed early */
        if (getpid() == 1)
                (void)kill(-1, 0); /* the walk over every process that ends each run */
}

/* Read what is there from *fd, keeping the start of it in d (when given); close *fd at EOF. */
static void discard_output(int *fd, struct agent_diag *d)
{
        char chunk[EXEC_READ_CHUNK];
        ssize_t k;

        for (;;) {
                k = read(*fd, chunk, sizeof(chunk));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return;
                if (k <= 0) {
                        *fd = safe_close(*fd);
                        return;
                }
                if (d) {
                        size_t keep = AGENT_DIAG_MAX - d->len;

                        if ((size_t)k > keep)
                                d->truncated = true;
                        else
                                keep = (size_t)k;
                        memcpy(d->text + d->len, chunk, keep);
                        d->len += keep;
                        d->text[d->len] = 0;
                }
        }
}

#define READY_LINE "ready\n"

int agent_child_wait_ready(struct agent_child *c, uint32_t timeout_ms, struct agent_diag *ret_diag)
{
        struct run r;
        uint64_t deadline = op_now_us() + (uint64_t)timeout_ms * 1000, grace = 0;
        char line[32];
        size_t n = 0;
        bool nonblock = false, polled = false;
        int rc;

        if (!c || !ret_diag)
                return -EINVAL;
        *ret_diag = (struct agent_diag){.status = -1};
        if (c->pid <= 0 || c->pgid <= 1 || c->ctl_fd < 0) {
                agent_child_kill(c);
                return -EINVAL;
        }
        r = (struct run){.pid = c->pid,
                         .pgid = c->pgid,
                         .pidfd = c->pidfd,
                         .reaped = c->reaped,
                         .status = c->status};

        rc = op_fd_nonblock(c->ctl_fd, 1);
        if (rc == 0 && c->out_fd >= 0)
                rc = op_fd_nonblock(c->out_fd, 1);
        if (rc == 0 && c->err_fd >= 0)
                rc = op_fd_nonblock(c->err_fd, 1);
        if (rc < 0)
                goto fail;
        nonblock = true;

        for (;;) {
                struct pollfd p[4];
                int np = 0, i_ctl = -1, i_out = -1, i_err = -1, i_pid = -1, timeout;
                uint64_t now, wake;

                if (!r.reaped && r.pidfd < 0)
                        reap_group(&r);
                if (r.reaped) {
                        rc = -ECHILD;
                        goto fail;
                }
                now = op_now_us();
                if (now >= deadline && polled) { /* looked at least once: a timeout of 0 too */
                        rc = -ETIMEDOUT;
                        goto fail;
                }
                if (grace && now >= grace) {
                        rc = -EPIPE;
                        goto fail;
                }
                wake = grace && grace < deadline ? grace : deadline;
                timeout = wake > now ? (int)((wake - now + 999) / 1000) : 0;
                if (r.pidfd < 0 && timeout > EXEC_TICK_MS)
                        timeout = EXEC_TICK_MS;

                if (!grace) {
                        i_ctl = np;
                        p[np++] = (struct pollfd){.fd = c->ctl_fd, .events = POLLIN};
                }
                if (c->out_fd >= 0) {
                        i_out = np;
                        p[np++] = (struct pollfd){.fd = c->out_fd, .events = POLLIN};
                }
                if (c->err_fd >= 0) {
                        i_err = np;
                        p[np++] = (struct pollfd){.fd = c->err_fd, .events = POLLIN};
                }
                if (r.pidfd >= 0) {
                        i_pid = np;
                        p[np++] = (struct pollfd){.fd = r.pidfd, .events = POLLIN};
                }
                if (poll(p, (nfds_t)np, timeout) < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        rc = -errno;
                        goto fail;
                }
                polled = true;
                if (i_out >= 0 && p[i_out].revents)
                        discard_output(&c->out_fd, NULL);
                if (i_err >= 0 && p[i_err].revents)
                        discard_output(&c->err_fd, ret_diag);
                if (i_pid >= 0 && p[i_pid].revents)
                        reap_group(&r);
                if (i_ctl >= 0 && p[i_ctl].revents) {
                        ssize_t k = read(c->ctl_fd, line + n, sizeof(line) - n);

                        if (k < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (k <= 0) {
                                /* Closed fd 3 (or broke it): wait a moment for it to end. */
                                grace = now + EXEC_LINGER_US;
                                continue;
                        }
                        n += (size_t)k;
                        if (n == strlen(READY_LINE) && memcmp(line, READY_LINE, n) == 0)
                                break;
                        if (memchr(line, '\n', n) || n >= strlen(READY_LINE)) {
                                rc = -EPROTO;
                                goto fail;
                        }
                }
        }

        /* Warm: what it wrote while warming up is not a program's output. */
        if (c->out_fd >= 0)
                discard_output(&c->out_fd, NULL);
        if (c->err_fd >= 0)
                discard_output(&c->err_fd, NULL);
        c->reaped = r.reaped;
        c->status = r.status;
        *ret_diag = (struct agent_diag){.status = -1};
        return 0;

fail:
        c->ctl_fd = safe_close(c->ctl_fd);
        c->in_fd = safe_close(c->in_fd);
        c->out_fd = safe_close(c->out_fd);
        sweep_group(&r);
        /* Every writer of the stderr pipe is dead now (unless it left the group): read the rest. */
        if (nonblock && c->err_fd >= 0)
                discard_output(&c->err_fd, ret_diag);
        ret_diag->status = r.reaped ? r.status : -1;
        child_close(c);
        return rc;
}

void agent_child_kill(struct agent_child *c)
{
        if (!c)
                return;
        c->in_fd = safe_close(c->in_fd);
        c->ctl_fd = safe_close(c->ctl_fd);
        c->out_fd = safe_close(c->out_fd);
        c->err_fd = safe_close(c->err_fd);
        if (c->pid > 0 && c->pgid > 1) {
                struct run r = {.pid = c->pid,
                                .pgid = c->pgid,
                                .pidfd = -1,
                                .reaped = c->reaped,
                                .status = c->status};
                sweep_group(&r);
        }
        child_close(c);
}

void agent_result_done(struct agent_result *r)
{
        if (!r)
                return;
        free(r->out);
        free(r->err);
        op_agent_order_done(&r->order);
        *r = (struct agent_result){0};
}
