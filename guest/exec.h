/* exec.h: the agent's execution engine: start a program (or take over one already started),
 * feed its stdin, capture its output up to a cap, enforce a wall-clock deadline on the whole
 * process tree, report how it ended. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent-msg.h"
#include "runlimit.h"

/* Streaming hooks of a run (all optional). */
struct agent_io {
        /* Each piece of output as it is read (stream 1: stdout, 2: stderr), within output_max.
         * When set, output is passed on instead of kept (the result's out and err stay empty).
         * A negative return (the host is gone) ends the run. */
        int (*output)(void *userdata, int stream, const char *data, size_t len);
        /* With job->stdin_open: an fd polled during the run; when readable, input() may hand
         * more stdin bytes (*ret_data malloc'd, appended to what is fed) and say eof. A negative
         * return ends the run. */
        int input_fd;
        int (*input)(void *userdata, char **ret_data, size_t *ret_len, bool *ret_eof);
        void *userdata;
};

struct agent_job {
        const char *const *argv; /* argv[0] looked up in PATH of env */
        const char *const *env;  /* full environment for the program, NULL-terminated */
        const char *workdir;     /* cwd of the program; must exist */
        const char *stdin_data;  /* fed to the program's stdin, then closed */
        size_t stdin_len;
        uint32_t timeout_ms; /* wall clock, whole tree killed when it passes */
        size_t output_max;   /* bytes kept per stream; more sets truncated and ends the run */
        uid_t uid;           /* run as this uid/gid when not (uid_t)-1 */
        gid_t gid;
        /* agent_exec_attach() only: written to the child's ctl_fd (its fd 3), which is then
         * closed; part of the run, under the same deadline. */
        const char *handoff;
        size_t handoff_len;
        const struct agent_io *io;         /* NULL: output kept, stdin closed after stdin_data */
        bool stdin_open;                   /* stdin stays open for io->input until its eof */
        const struct agent_limits *limits; /* NULL: none, usage by rusage */
        struct limits_group *group;        /* a cgroup made ahead for the run (taken), or NULL */
};

/* A started program the agent supervises. Its fds are the agent's ends, close-on-exec. */
struct agent_child {
        pid_t pid;  /* the program itself, a child of the agent; 0 when none */
        pid_t pgid; /* its process group, what a kill ends (the program called setsid()) */
        int pidfd;  /* -1 when the kernel has no pidfd_open() */
        int in_fd, out_fd, err_fd; /* its stdin, stdout, stderr */
        int ctl_fd;                /* its fd 3 (a stream socket), or -1 */
        bool reaped;               /* someone else reaped pid and reported status */
        int status;                /* wait status when reaped */
        char group[128];           /* the cgroup it was started in (agent_spawn_in()), or "" */
};

#define AGENT_CHILD_INIT                                                                           \
        ((struct agent_child){.pidfd = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1, .ctl_fd = -1})

struct agent_result {
        char *out; /* malloc'd, out_len bytes (+ NUL) */
        size_t out_len;
        char *err;
        size_t err_len;
        int exit_code; /* -1 when killed by a signal */
        int signal;    /* 0 unless killed by a signal */
        bool timed_out;
        bool truncated;
        uint64_t run_us;             /* from fork (or hand-off) to the end of the last output */
        size_t out_total, err_total; /* bytes read per stream (up to output_max), kept or not */
        struct agent_usage usage;
        /* How the kept bytes of out and err interleaved, in the order they were read (not known
         * when the output was streamed, or when there was no memory to record it). */
        struct op_agent_order order;
};

/* Run the job. 0 with *ret filled (free with agent_result_done()), or a negative errno when the
 * program could not be started at all (a missing binary is an exit code 127, not an error). */
int agent_exec(const struct agent_job *job, struct agent_result *ret);
void agent_result_done(struct agent_result *r);

/* Start job->argv in its own session with pipes for fds 0-2 and, when with_ctl, one end of a
 * socketpair as fd 3. job->stdin_data, timeout_ms and output_max are not used. 0 with *ret
 * filled (end it with agent_exec_attach() or agent_child_kill()), or a negative errno when it
 * could not be started (nothing is left running then). */
int agent_spawn(const struct agent_job *job, bool with_ctl, struct agent_child *ret);
/* agent_spawn(), the child started in cgroup g (a warm runner in the next run's group). */
int agent_spawn_in(const struct agent_job *job, bool with_ctl, const struct limits_group *g,
                   struct agent_child *ret);

/* Under emulation the kernel's code paths cost most the first time a clone runs them (they are
 * translated then). A warm runner's prime runs none of a run's own: this rehearses them with
 * `true` as the program, started and attached as a warm runner's job is (a cgroup of its own
 * with limits set, the user's ids, fd 3, the sweep, the usage read), plus the all-processes
 * check of the end of a run. Best effort: it reports nothing. */
void agent_rehearse(uid_t uid, gid_t gid, const char *cgroup_root);

/* Supervise a started child as agent_exec() does its own: write job->handoff to its ctl_fd,
 * feed job->stdin_data, keep its output up to job->output_max, kill its process group at
 * job->timeout_ms (counted from this call, as is run_us), and report how it ended. Takes
 * ownership of *child in every case (it is AGENT_CHILD_INIT on return): when it returns a
 * negative errno, the child is dead and reaped all the same.
 *
 * With ret_left, the child is a warm runner that may end the run itself: "done N\n" on its fd 3
 * (N its program's exit status, written once the program is over and its output flushed),
 * then its fds 0-2 closed. The run ends at the pipes' end with exit code N. When the runner is
 * then all that is left of the run (alone in the run's cgroup), it is not killed: *ret_left
 * holds it (its pid, process group and pidfd), waiting to be killed, and the caller ends it
 * with agent_child_kill() once the answer is out, so that its exit is not on the answer's time.
 * Otherwise *ret_left is AGENT_CHILD_INIT. */
int agent_exec_attach(const struct agent_job *job, struct agent_child *child,
                      struct agent_result *ret, struct agent_child *ret_left);

/* One call to a session's interpreter (*repl: a warm runner that took a "repl" hand-off, kept
 * between calls). New pipes for the call's stdin, stdout and stderr go to it over its fd 3
 * (SCM_RIGHTS) with the start of job->handoff; it joins the call's cgroup and limits. The call
 * ends when it writes "done N\n" on fd 3 (exit code N): then every other process is killed, it
 * is not, and *ret_alive is true. When it ends or is killed in the call (a timeout, a limit,
 * the output cap, a broken fd 3), the call reports that as agent_exec() would, *ret_alive is
 * false and *repl is AGENT_CHILD_INIT; so too on a negative errno (nothing ran). */
int agent_exec_repl(const struct agent_job *job, struct agent_child *repl, struct agent_result *ret,
                    bool *ret_alive);

/* One step of a kept runner (a warm runner's compile phase) on the pipes it was started with:
 * job->handoff goes to its fd 3; its stdout and stderr are read as a run's (up to
 * job->output_max, deadline job->timeout_ms) until it writes "done N\n" on fd 3 (exit code N),
 * and then what it wrote before that line. It stays then (*ret_alive true) with its fds, for
 * the next step or agent_exec_attach(); every other process is killed. When it ends or is
 * killed in the step (deadline, output cap, a broken fd 3), that is reported as agent_exec()
 * would, *ret_alive is false and *runner is AGENT_CHILD_INIT; so too on a negative errno. No
 * stdin, no limits: the step runs as the runner's warm-up did. */
int agent_exec_step(const struct agent_job *job, struct agent_child *runner,
                    struct agent_result *ret, bool *ret_alive);

/* SIGKILL once every process but the caller, keep, kernel threads and zombies: as PID 1 (in the
 * guest) all of them, else only the members of process group pgid. The number signalled. */
unsigned agent_kill_others(pid_t keep, pid_t pgid);

/* Bytes of the child's stderr kept for an error message. */
#define AGENT_DIAG_MAX 1024

struct agent_diag {
        char text[AGENT_DIAG_MAX + 1]; /* NUL-ended; may hold other NULs and invalid UTF-8 */
        size_t len;
        bool truncated;
        int status; /* wait status when the child ended, -1 when it did not or is unknown */
};

/* Wait up to timeout_ms (0: look once) for the child to write the line "ready\n" on its ctl_fd,
 * discarding what it writes on stdout and stderr meanwhile. 0 when it did; otherwise the child is
 * killed, reaped and closed (*child is AGENT_CHILD_INIT), *ret_diag holds the start of its stderr
 * and how it ended, and the result says why: -ETIMEDOUT (deadline), -ECHILD (it ended), -EPIPE (it
 * closed fd 3 and did not end), -EPROTO (it wrote something else), or another negative errno. */
int agent_child_wait_ready(struct agent_child *child, uint32_t timeout_ms,
                           struct agent_diag *ret_diag);

/* Kill the child's process group, reap it, close the fds. *child becomes AGENT_CHILD_INIT. */
void agent_child_kill(struct agent_child *child);
