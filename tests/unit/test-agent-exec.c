/* test-agent-exec.c: the agent's execution engine against real programs on the host: exit codes,
 * signals, stdin, output caps, deadlines, user code that misbehaves, and children started ahead
 * (spawn, wait for "ready" on fd 3, attach with a hand-off). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "exec.h"
#include "util.h"

static const char *const test_env[] = {
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "LANG=C.UTF-8",
    "HOME=/tmp",
    NULL,
};

static int run_argv(const char *const *argv, const char *const *env, const char *in, size_t in_len,
                    uint32_t timeout_ms, size_t cap, struct agent_result *res)
{
        struct agent_job job = {
            .argv = argv,
            .env = env ? env : test_env,
            .workdir = "/tmp",
            .stdin_data = in,
            .stdin_len = in_len,
            .timeout_ms = timeout_ms,
            .output_max = cap,
            .uid = (uid_t)-1,
            .gid = (gid_t)-1,
        };
        return agent_exec(&job, res);
}

static void run_sh(const char *script, const char *in, size_t in_len, uint32_t timeout_ms,
                   size_t cap, struct agent_result *res)
{
        const char *argv[] = {"sh", "-c", script, NULL};

        assert_int_equal(run_argv(argv, NULL, in, in_len, timeout_ms, cap, res), 0);
}

/* Every pid printed one per line in out must be gone. */
static void assert_pids_gone(const char *out, size_t min_count)
{
        size_t count = 0;

        for (const char *p = out; *p;) {
                char *end;
                long pid = strtol(p, &end, 10);

                if (end == p)
                        break;
                assert_true(pid > 1);
                if (kill((pid_t)pid, 0) == 0) {
                        fprintf(stderr, "pid %ld still alive\n", pid);
                        fail();
                }
                assert_int_equal(errno, ESRCH);
                count++;
                p = end;
                while (*p == '\n')
                        p++;
        }
        assert_true(count >= min_count);
}

/* No deadline in these tests is a measurement: a run's own deadline is either far beyond what
 * the program needs (it must not be reached) or certain to be reached (the program sleeps far
 * longer), and what a program must have done before its deadline starts counting is waited for
 * (spawn, "ready" on fd 3, then attach). */
#define GENEROUS_MS 60000

static void spawn_sh(const char *script, struct agent_child *c);
static void attach(struct agent_child *c, const char *handoff, const char *in, uint32_t timeout_ms,
                   size_t cap, struct agent_result *r);

/* An empty scratch file (for a script to leave pids in); the caller unlinks it. */
static void scratch_file(char path[64])
{
        int fd;

        snprintf(path, 64, "/tmp/op-test-agent.XXXXXX");
        fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
}

static char *read_scratch(const char *path)
{
        char *text;
        size_t n;

        assert_int_equal(op_read_file(path, 1 << 20, &text, &n), 0);
        unlink(path);
        return text;
}

/* script, with %s its scratch file, started; it says "ready" on fd 3 when what must happen
 * before the deadline has happened. Then supervised with timeout_ms; *ret_pgid is its group. */
static void run_after_ready(const char *script_fmt, const char *path, uint32_t timeout_ms,
                            size_t cap, struct agent_result *r, pid_t *ret_pgid)
{
        char script[1024];
        struct agent_diag d;
        struct agent_child c;

        snprintf(script, sizeof(script), script_fmt, path);
        spawn_sh(script, &c);
        *ret_pgid = c.pgid;
        if (agent_child_wait_ready(&c, GENEROUS_MS, &d) != 0)
                fail_msg("not ready: %s", d.text);
        attach(&c, NULL, NULL, timeout_ms, cap, r);
}

static void assert_group_gone(pid_t pgid)
{
        assert_int_equal(kill(-pgid, 0), -1);
        assert_int_equal(errno, ESRCH);
}

static void test_exit_code(void **state)
{
        struct agent_result r;

        run_sh("exit 3", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.exit_code, 3);
        assert_int_equal(r.signal, 0);
        assert_false(r.timed_out);
        assert_false(r.truncated);
        assert_int_equal(r.out_len, 0);
        assert_non_null(r.out);
        assert_non_null(r.err);
        assert_true(r.run_us > 0);
        agent_result_done(&r);

        run_sh("true", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.exit_code, 0);
        agent_result_done(&r);
}

static void test_signal(void **state)
{
        struct agent_result r;

        run_sh("kill -9 $$", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.exit_code, -1);
        assert_int_equal(r.signal, 9);
        assert_false(r.timed_out);
        agent_result_done(&r);
}

static void test_signals_reset(void **state)
{
        struct sigaction ign = {.sa_handler = SIG_IGN}, old;
        sigset_t block, oldmask;
        struct agent_result r;

        /* Whatever the agent ignores or blocks, the program starts with the defaults. */
        sigaction(SIGTERM, &ign, &old);
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigprocmask(SIG_BLOCK, &block, &oldmask);
        run_sh("kill -TERM $$; sleep 1; exit 0", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.signal, SIGTERM);
        agent_result_done(&r);
        run_sh("kill -USR1 $$; sleep 1; exit 0", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.signal, SIGUSR1);
        agent_result_done(&r);
        sigaction(SIGTERM, &old, NULL);
        sigprocmask(SIG_SETMASK, &oldmask, NULL);
}

static void test_stdin_roundtrip(void **state)
{
        size_t n = 3 * 1024 * 1024 + 17;
        char *in = malloc(n);
        struct agent_result r;

        assert_non_null(in);
        for (size_t i = 0; i < n; i++)
                in[i] = (char)(i * 7 + i / 251);
        run_sh("cat", in, n, GENEROUS_MS, n, &r);
        assert_int_equal(r.exit_code, 0);
        assert_false(r.truncated);
        assert_int_equal(r.out_len, n);
        assert_memory_equal(r.out, in, n);
        agent_result_done(&r);
        free(in);
}

static void test_stdin_closed_early(void **state)
{
        size_t n = 4 * 1024 * 1024;
        char *in = calloc(1, n);
        struct agent_result r;

        assert_non_null(in);
        /* The program closes its stdin with megabytes unread: EPIPE, not SIGPIPE, for us. */
        run_sh("exec 0<&-; sleep 0.1; echo ok", in, n, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.exit_code, 0);
        assert_string_equal(r.out, "ok\n");
        agent_result_done(&r);
        /* Reads only a little, then exits. */
        run_sh("head -c 10 >/dev/null; echo done", in, n, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.exit_code, 0);
        assert_string_equal(r.out, "done\n");
        agent_result_done(&r);
        free(in);
}

static void test_no_stdin(void **state)
{
        struct agent_result r;

        run_sh("cat; echo done", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.exit_code, 0);
        assert_string_equal(r.out, "done\n");
        agent_result_done(&r);
}

static void test_output_cap(void **state)
{
        struct agent_result r;

        /* The cap ends the run (an endless stream would otherwise meet the deadline). */
        run_sh("yes", NULL, 0, GENEROUS_MS, 1000, &r);
        assert_true(r.truncated);
        assert_false(r.timed_out);
        assert_int_equal(r.out_len, 1000);
        assert_int_equal(strlen(r.out), 1000);
        assert_memory_equal(r.out, "y\ny\n", 4);
        agent_result_done(&r);

        /* The cap applies to stderr too, and an endless flood is ended. */
        run_sh("yes >&2", NULL, 0, GENEROUS_MS, 4096, &r);
        assert_true(r.truncated);
        assert_false(r.timed_out);
        assert_int_equal(r.err_len, 4096);
        assert_int_equal(r.out_len, 0);
        agent_result_done(&r);

        /* Exactly at the cap is not truncated. */
        run_sh("head -c 1000 /dev/zero | tr '\\0' a", NULL, 0, GENEROUS_MS, 1000, &r);
        assert_false(r.truncated);
        assert_int_equal(r.out_len, 1000);
        assert_int_equal(r.exit_code, 0);
        agent_result_done(&r);
}

static void test_timeout_kills_tree(void **state)
{
        struct agent_result r;
        char path[64];
        pid_t pgid;

        /* The deadline counts from the start; whatever was started by then dies with the run. */
        run_sh("sleep 100 & echo $!; sleep 100", NULL, 0, 300, 4096, &r);
        assert_true(r.timed_out);
        assert_int_equal(r.signal, SIGKILL);
        assert_true(r.run_us >= 300 * 1000);
        assert_pids_gone(r.out, 0);
        agent_result_done(&r);

        /* A child certainly started before the deadline: killed and reaped, group and all. */
        scratch_file(path);
        run_after_ready("sleep 100 & echo $! >%s; echo ready >&3; sleep 100", path, 300, 4096, &r,
                        &pgid);
        assert_true(r.timed_out);
        assert_int_equal(r.signal, SIGKILL);
        agent_result_done(&r);
        char *pids = read_scratch(path);
        assert_pids_gone(pids, 1);
        free(pids);
        assert_group_gone(pgid);
}

static void test_fork_storm(void **state)
{
        struct agent_result r;
        char path[64];
        pid_t pgid;

        /* 50 children, all running when the deadline starts: every one is killed and reaped. */
        scratch_file(path);
        run_after_ready("for i in $(seq 50); do sleep 100 & echo $! >>%s; done; echo ready >&3; "
                        "wait",
                        path, 300, 65536, &r, &pgid);
        assert_true(r.timed_out);
        assert_int_equal(r.signal, SIGKILL);
        agent_result_done(&r);
        char *pids = read_scratch(path);
        assert_pids_gone(pids, 50);
        free(pids);
        assert_group_gone(pgid);

        /* A bounded fork bomb (a tree of ~500 shells), still growing when the deadline hits:
         * however far it got, nothing of it is left. */
        scratch_file(path);
        run_after_ready(
            "f() { if [ $1 -gt 0 ]; then f $(($1 - 1)) & f $(($1 - 1)) & fi; sleep 100; "
            "}; echo ready >&3; f 8",
            path, 500, 4096, &r, &pgid);
        unlink(path);
        assert_true(r.timed_out);
        assert_int_equal(r.signal, SIGKILL);
        agent_result_done(&r);
        assert_group_gone(pgid);
}

static void test_closed_stdout(void **state)
{
        struct agent_result r;

        run_sh("exec >&-; echo x", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.out_len, 0);
        assert_true(r.exit_code != 0);
        assert_false(r.timed_out);
        agent_result_done(&r);

        /* Both output pipes closed while the program keeps running: its exit still counts. */
        run_sh("exec >&- 2>&-; sleep 0.2; exit 4", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.exit_code, 4);
        assert_false(r.timed_out);
        agent_result_done(&r);
}

static void test_missing_command(void **state)
{
        const char *argv[] = {"no-such-command-op-test", "x", NULL};
        struct agent_result r;

        assert_int_equal(run_argv(argv, NULL, NULL, 0, GENEROUS_MS, 1024, &r), 0);
        assert_int_equal(r.exit_code, 127);
        assert_non_null(strstr(r.err, "not found"));
        agent_result_done(&r);
}

static void test_path_from_env(void **state)
{
        const char *argv[] = {"sh", "-c", "exit 0", NULL};
        const char *env[] = {"PATH=/nonexistent", NULL};
        struct agent_result r;

        /* The program's PATH is searched, not the agent's. */
        assert_int_equal(run_argv(argv, env, NULL, 0, GENEROUS_MS, 1024, &r), 0);
        assert_int_equal(r.exit_code, 127);
        agent_result_done(&r);
}

static void test_stderr_separate(void **state)
{
        struct agent_result r;

        run_sh("echo out; echo err >&2; echo out2", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_string_equal(r.out, "out\nout2\n");
        assert_string_equal(r.err, "err\n");
        assert_int_equal(r.exit_code, 0);
        agent_result_done(&r);
}

/* A program that writes each piece only once the agent has read the one before (FIONREAD on its
 * own end of the pipe says when): the order the agent records is then the order of the writes,
 * whatever the scheduling. */
#define ORDERED_WRITER                                                                             \
        "import fcntl, os, struct, sys, termios\n"                                                 \
        "def put(fd, b):\n"                                                                        \
        "    os.write(fd, b)\n"                                                                    \
        "    while struct.unpack('i', fcntl.ioctl(fd, termios.FIONREAD, b'1234'))[0]:\n"           \
        "        os.sched_yield()\n"                                                               \
        "for i in range(int(sys.argv[1])):\n"                                                      \
        "    put(1 + i % 2, b'ab'[i % 2:i % 2 + 1] * (1 + i % 3))\n"

static bool have_python3(void)
{
        return access("/usr/bin/python3", X_OK) == 0;
}

static void test_output_order(void **state)
{
        const char *argv[] = {"python3", "-c", ORDERED_WRITER, "5", NULL};
        struct agent_result r;
        char err[256] = "";
        _cleanup_free_ char *joined = NULL;

        if (!have_python3())
                skip();
        assert_int_equal(run_argv(argv, NULL, NULL, 0, GENEROUS_MS, 1024, &r), 0);
        assert_int_equal(r.exit_code, 0);
        /* a, bb, aaa, b, aa */
        assert_string_equal(r.out, "aaaaaa");
        assert_string_equal(r.err, "bbb");
        assert_true(r.order.known);
        assert_false(r.order.partial);
        assert_int_equal(r.order.n, 5);
        assert_int_equal(
            op_agent_order_check(&r.order, r.out_len, r.err_len, "x", "", err, sizeof(err)), 0);
        joined = op_agent_order_join(&r.order, r.out, r.out_len, r.err, r.err_len);
        assert_string_equal(joined, "abbaaabaa");
        agent_result_done(&r);

        /* More switches than the cap: the first ones in order, then the rest per stream. */
        argv[3] = "1500";
        assert_int_equal(run_argv(argv, NULL, NULL, 0, GENEROUS_MS, 1 << 20, &r), 0);
        assert_int_equal(r.exit_code, 0);
        assert_true(r.order.partial);
        assert_int_equal(r.order.n, OP_AGENT_ORDER_MAX);
        assert_int_equal(
            op_agent_order_check(&r.order, r.out_len, r.err_len, "x", "", err, sizeof(err)), 0);
        for (size_t i = 0; i < OP_AGENT_ORDER_MAX - 2; i++) {
                assert_int_equal(r.order.seg[i].stream, 1 + (int)(i % 2));
                assert_int_equal(r.order.seg[i].len, 1 + i % 3);
        }
        agent_result_done(&r);
}

/* The order covers what was kept, also when a cap cut the output. */
static void test_output_order_capped(void **state)
{
        struct agent_result r;
        char err[256] = "";

        run_sh("echo err >&2; yes", NULL, 0, GENEROUS_MS, 1000, &r);
        assert_true(r.truncated);
        assert_true(r.order.known);
        assert_int_equal(
            op_agent_order_check(&r.order, r.out_len, r.err_len, "x", "", err, sizeof(err)), 0);
        agent_result_done(&r);
}

static void test_lingering_grandchild(void **state)
{
        struct agent_result r;

        /* sh exits at once; the background sleep keeps stdout open. The run ends with sh (not at
         * the deadline, which the sleep would reach). */
        run_sh("sleep 100 & echo $!", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_false(r.timed_out);
        assert_int_equal(r.exit_code, 0);
        assert_pids_gone(r.out, 1);
        agent_result_done(&r);

        /* A background process with its output elsewhere is ended too. */
        run_sh("sleep 100 >/dev/null 2>&1 & echo $!", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_false(r.timed_out);
        assert_int_equal(r.exit_code, 0);
        assert_pids_gone(r.out, 1);
        agent_result_done(&r);
}

static void test_setsid_escape(void **state)
{
        struct agent_result r;
        char path[64], script[512];
        long pid;

        /* Out of the group and holding stdout: the agent stops listening instead of hanging. sh
         * exits only once the escaped process is in its own session (it wrote its pid). */
        scratch_file(path);
        snprintf(script, sizeof(script),
                 "setsid sh -c 'echo $$ >%s.new; mv %s.new %s; exec sleep 100' & "
                 "while [ ! -s %s ]; do sleep 0.05; done",
                 path, path, path, path);
        run_sh(script, NULL, 0, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.exit_code, 0);
        assert_false(r.timed_out);
        char *text = read_scratch(path);
        pid = strtol(text, NULL, 10);
        free(text);
        assert_true(pid > 1);
        assert_int_equal(kill((pid_t)pid, 0), 0); /* it did escape */
        /* We are its subreaper: clean up after it. */
        kill((pid_t)pid, SIGKILL);
        waitpid((pid_t)pid, NULL, 0);
        agent_result_done(&r);
}

static void test_no_fd_leak(void **state)
{
        struct agent_result r;

        /* 0, 1, 2 and the directory ls reads. */
        run_sh("ls /proc/self/fd | wc -l", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_string_equal(r.out, "4\n");
        agent_result_done(&r);
}

static void test_workdir(void **state)
{
        const char *argv[] = {"pwd", NULL};
        struct agent_result r;

        assert_int_equal(run_argv(argv, NULL, NULL, 0, GENEROUS_MS, 1024, &r), 0);
        assert_string_equal(r.out, "/tmp\n");
        agent_result_done(&r);
}

static void test_bad_workdir(void **state)
{
        const char *argv[] = {"true", NULL};
        struct agent_job job = {
            .argv = argv,
            .env = test_env,
            .workdir = "/nonexistent-op-test",
            .timeout_ms = 1000,
            .output_max = 10,
            .uid = (uid_t)-1,
            .gid = (gid_t)-1,
        };
        struct agent_result r = {0};

        assert_int_equal(agent_exec(&job, &r), -ENOENT);
        assert_null(r.out);
}

static void test_uid(void **state)
{
        const char *argv[] = {"sh", "-c", "id -u; id -g; id -G", NULL};
        struct agent_job job = {
            .argv = argv,
            .env = test_env,
            .workdir = "/",
            .timeout_ms = GENEROUS_MS,
            .output_max = 1024,
            .uid = 65534,
            .gid = 65534,
        };
        struct agent_result r;

        if (geteuid() != 0)
                skip();
        assert_int_equal(agent_exec(&job, &r), 0);
        assert_string_equal(r.out, "65534\n65534\n65534\n");
        agent_result_done(&r);
}

/* A program of another user opens its standard streams by name: /dev/stdin and friends are links
 * to /proc/self/fd/N, which opens the pipe itself and checks its owner. */
static void test_uid_streams_by_name(void **state)
{
        const char *argv[] = {"sh", "-c",
                              "cat /dev/stdin; echo out >/dev/stdout; echo err >/dev/stderr", NULL};
        struct agent_job job = {
            .argv = argv,
            .env = test_env,
            .workdir = "/",
            .stdin_data = "in\n",
            .stdin_len = 3,
            .timeout_ms = GENEROUS_MS,
            .output_max = 1024,
            .uid = 65534,
            .gid = 65534,
        };
        struct agent_result r;

        if (geteuid() != 0)
                skip();
        assert_int_equal(agent_exec(&job, &r), 0);
        assert_string_equal(r.out, "in\nout\n");
        assert_string_equal(r.err, "err\n");
        assert_int_equal(r.exit_code, 0);
        agent_result_done(&r);
}

/* The rehearsal of a run's path leaves nothing behind: no child, no fd. */
static void test_rehearse(void **state)
{
        struct agent_result r;
        int status;

        run_sh("ls /proc/$PPID/fd | wc -l", NULL, 0, GENEROUS_MS, 1024, &r);
        char *before = strdup(r.out);
        agent_result_done(&r);
        agent_rehearse(geteuid() == 0 ? 65534 : (uid_t)-1, geteuid() == 0 ? 65534 : (gid_t)-1,
                       NULL);
        assert_int_equal(waitpid(-1, &status, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
        run_sh("ls /proc/$PPID/fd | wc -l", NULL, 0, GENEROUS_MS, 1024, &r);
        assert_string_equal(r.out, before);
        agent_result_done(&r);
        free(before);
}

static void spawn_sh(const char *script, struct agent_child *c)
{
        const char *argv[] = {"sh", "-c", script, NULL};
        struct agent_job job = {
            .argv = argv,
            .env = test_env,
            .workdir = "/tmp",
            .uid = (uid_t)-1,
            .gid = (gid_t)-1,
        };

        *c = AGENT_CHILD_INIT;
        assert_int_equal(agent_spawn(&job, true, c), 0);
        assert_true(c->pid > 1);
        assert_int_equal(c->pgid, c->pid);
        assert_true(c->ctl_fd >= 0);
}

static void attach(struct agent_child *c, const char *handoff, const char *in, uint32_t timeout_ms,
                   size_t cap, struct agent_result *r)
{
        struct agent_job job = {
            .stdin_data = in,
            .stdin_len = in ? strlen(in) : 0,
            .timeout_ms = timeout_ms,
            .output_max = cap,
            .handoff = handoff,
            .handoff_len = handoff ? strlen(handoff) : 0,
        };

        assert_int_equal(agent_exec_attach(&job, c, r, NULL), 0);
        assert_int_equal(c->pid, 0);
        assert_int_equal(c->ctl_fd, -1);
}

static void test_attach_handoff(void **state)
{
        struct agent_diag d;
        struct agent_child c;
        struct agent_result r;

        /* What it writes before "ready" is not the program's output; fd 3 is a socket, the
         * agent's end is closed after the hand-off, and stdin is fed. */
        spawn_sh("echo noise; echo warming >&2; test -S /dev/fd/3 && echo ready >&3; "
                 "read -r job <&3; cat <&3; echo \"job:$job\"; cat; echo e >&2; exit 6",
                 &c);
        assert_int_equal(agent_child_wait_ready(&c, GENEROUS_MS, &d), 0);
        attach(&c, "hello world\n", "from stdin\n", GENEROUS_MS, 1024, &r);
        assert_string_equal(r.out, "job:hello world\nfrom stdin\n");
        assert_string_equal(r.err, "e\n");
        assert_int_equal(r.exit_code, 6);
        assert_false(r.timed_out);
        agent_result_done(&r);
}

static void test_attach_exited_early(void **state)
{
        size_t n = 4 * 1024 * 1024;
        char *big = malloc(n + 1);
        struct agent_diag d;
        struct agent_child c;
        struct agent_result r;

        /* Ready, then gone before reading its job: a hand-off far over the socket buffer and a
         * big stdin must not hang the agent; it ended like any program. */
        assert_non_null(big);
        memset(big, 'x', n);
        big[n] = 0;
        spawn_sh("echo ready >&3; echo bye >&2; exit 7", &c);
        assert_int_equal(agent_child_wait_ready(&c, GENEROUS_MS, &d), 0);
        usleep(100 * 1000); /* likely gone before the hand-off; the outcome is the same if not */
        attach(&c, big, big, GENEROUS_MS, 1024, &r);
        assert_int_equal(r.exit_code, 7);
        assert_false(r.timed_out);
        agent_result_done(&r);
        free(big);
}

static void attach_report(struct agent_child *c, struct agent_result *r, struct agent_child *left)
{
        struct agent_job job = {
            .timeout_ms = GENEROUS_MS,
            .output_max = 1024,
            .handoff = "go\n",
            .handoff_len = 3,
        };

        assert_int_equal(agent_exec_attach(&job, c, r, left), 0);
        assert_int_equal(c->pid, 0);
}

static void test_attach_report(void **state)
{
        struct agent_child c, left;
        struct agent_diag d;
        struct agent_result r;
        pid_t pgid;

        /* "done N" on fd 3, then its streams closed: the run is over with N, whatever the runner
         * does next. Without a cgroup to tell whether it is alone, it is not left: killed. */
        spawn_sh("echo ready >&3; read -r x <&3; echo out; echo 'done 7' >&3; exec >&- 2>&-; "
                 "sleep 100",
                 &c);
        pgid = c.pgid;
        assert_int_equal(agent_child_wait_ready(&c, GENEROUS_MS, &d), 0);
        attach_report(&c, &r, &left);
        assert_string_equal(r.out, "out\n");
        assert_int_equal(r.exit_code, 7);
        assert_int_equal(r.signal, 0);
        assert_false(r.timed_out);
        assert_true(r.run_us < 60ull * 1000 * 1000);
        assert_int_equal(left.pid, 0);
        assert_int_equal(left.pidfd, -1);
        agent_result_done(&r);
        assert_group_gone(pgid);

        /* Anything else on fd 3 is not a report: the run ends at the runner's exit. */
        spawn_sh("echo ready >&3; read -r x <&3; echo 'done 9 please' >&3; echo 'done 8' >&3; "
                 "exit 4",
                 &c);
        assert_int_equal(agent_child_wait_ready(&c, GENEROUS_MS, &d), 0);
        attach_report(&c, &r, &left);
        assert_int_equal(r.exit_code, 4);
        assert_int_equal(left.pid, 0);
        agent_result_done(&r);

        /* A runner that closes fd 3 and exits: the status of its exit, as before. */
        spawn_sh("echo ready >&3; read -r x <&3; exec 3>&-; echo bye; exit 2", &c);
        assert_int_equal(agent_child_wait_ready(&c, GENEROUS_MS, &d), 0);
        attach_report(&c, &r, &left);
        assert_string_equal(r.out, "bye\n");
        assert_int_equal(r.exit_code, 2);
        agent_result_done(&r);
}

static void test_attach_timeout(void **state)
{
        struct agent_diag d;
        struct agent_child c;
        struct agent_result r;

        char path[64], script[256];
        pid_t pgid;

        scratch_file(path);
        snprintf(script, sizeof(script),
                 "sleep 100 & echo $! >%s; echo ready >&3; read -r x <&3; sleep 100", path);
        spawn_sh(script, &c);
        pgid = c.pgid;
        assert_int_equal(agent_child_wait_ready(&c, GENEROUS_MS, &d), 0);
        attach(&c, "go\n", NULL, 300, 1024, &r);
        assert_true(r.timed_out);
        assert_int_equal(r.signal, SIGKILL);
        assert_true(r.run_us >= 300 * 1000);
        agent_result_done(&r);
        char *pids = read_scratch(path);
        assert_pids_gone(pids, 1);
        free(pids);
        assert_group_gone(pgid);
}

static void test_wait_ready_failures(void **state)
{
        static const struct {
                const char *script;
                int rc;
                const char *diag;
                int exit_code; /* -1: not checked */
        } cases[] = {
            {"echo nope >&2; exit 3", -ECHILD, "nope\n", 3},
            {"echo slow >&2; sleep 100", -ETIMEDOUT, "slow\n", -1},
            {"echo hello >&3; sleep 100", -EPROTO, "", -1},
            {"printf readyyyyyyyy >&3; sleep 100", -EPROTO, "", -1},
            {"echo closing >&2; exec 3>&-; sleep 100", -EPIPE, "closing\n", -1},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                bool timeout = cases[i].rc == -ETIMEDOUT;
                struct agent_diag d;
                struct agent_child c;
                pid_t pid;

                spawn_sh(cases[i].script, &c);
                pid = c.pid;
                /* The cases that end on their own must not need the deadline. The one that must
                 * meet it has written its diagnostic before the deadline starts counting. */
                if (timeout) {
                        struct pollfd p = {.fd = c.err_fd, .events = POLLIN};
                        assert_int_equal(poll(&p, 1, GENEROUS_MS), 1);
                }
                assert_int_equal(agent_child_wait_ready(&c, timeout ? 300 : GENEROUS_MS, &d),
                                 cases[i].rc);
                assert_int_equal(c.pid, 0);
                assert_int_equal(c.err_fd, -1);
                assert_string_equal(d.text, cases[i].diag);
                if (cases[i].exit_code >= 0) {
                        assert_true(WIFEXITED(d.status));
                        assert_int_equal(WEXITSTATUS(d.status), cases[i].exit_code);
                }
                assert_int_equal(kill(-pid, 0), -1);
                assert_int_equal(errno, ESRCH);
        }
}

static void test_wait_ready_diag_cap(void **state)
{
        struct agent_diag d;
        struct agent_child c;

        spawn_sh("head -c 100000 /dev/zero | tr '\\0' e >&2; exit 1", &c);
        assert_int_equal(agent_child_wait_ready(&c, GENEROUS_MS, &d), -ECHILD);
        assert_int_equal(d.len, AGENT_DIAG_MAX);
        assert_true(d.truncated);
        assert_int_equal(strlen(d.text), AGENT_DIAG_MAX);
}

static void test_child_kill(void **state)
{
        struct agent_diag d;
        struct agent_child c;
        pid_t pid;

        spawn_sh("sleep 100 & echo ready >&3; sleep 100", &c);
        assert_int_equal(agent_child_wait_ready(&c, GENEROUS_MS, &d), 0);
        pid = c.pid;
        agent_child_kill(&c);
        assert_int_equal(c.pid, 0);
        assert_int_equal(kill(-pid, 0), -1);
        assert_int_equal(errno, ESRCH);
        agent_child_kill(&c); /* idempotent */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_exit_code),
            cmocka_unit_test(test_signal),
            cmocka_unit_test(test_signals_reset),
            cmocka_unit_test(test_stdin_roundtrip),
            cmocka_unit_test(test_stdin_closed_early),
            cmocka_unit_test(test_no_stdin),
            cmocka_unit_test(test_output_cap),
            cmocka_unit_test(test_timeout_kills_tree),
            cmocka_unit_test(test_fork_storm),
            cmocka_unit_test(test_closed_stdout),
            cmocka_unit_test(test_missing_command),
            cmocka_unit_test(test_path_from_env),
            cmocka_unit_test(test_stderr_separate),
            cmocka_unit_test(test_output_order),
            cmocka_unit_test(test_output_order_capped),
            cmocka_unit_test(test_lingering_grandchild),
            cmocka_unit_test(test_setsid_escape),
            cmocka_unit_test(test_no_fd_leak),
            cmocka_unit_test(test_workdir),
            cmocka_unit_test(test_bad_workdir),
            cmocka_unit_test(test_uid),
            cmocka_unit_test(test_uid_streams_by_name),
            cmocka_unit_test(test_rehearse),
            cmocka_unit_test(test_attach_handoff),
            cmocka_unit_test(test_attach_exited_early),
            cmocka_unit_test(test_attach_report),
            cmocka_unit_test(test_attach_timeout),
            cmocka_unit_test(test_wait_ready_failures),
            cmocka_unit_test(test_wait_ready_diag_cap),
            cmocka_unit_test(test_child_kill),
        };

        /* Like op-agent outside a VM: orphans of user code are re-parented to us and reaped, so
         * "gone" means gone, whatever PID 1 of the host does. */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
