/* test-agent-stream.c: the engine's streaming hooks and per-run limits against real programs on
 * the host: output passed on as it is read (in order per stream, within the cap), stdin fed
 * while the program runs, the rlimits used when there is no cgroup (CPU time, file size,
 * address space), and the usage reported. The cgroup side runs in the guest (integration). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent-opts.h"
#include "cleanup.h"
#include "exec.h"
#include "msg.h"
#include "util.h"

static const char *const test_env[] = {
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "LANG=C.UTF-8",
    "HOME=/tmp",
    NULL,
};

/* What the output hook saw: both streams' bytes in arrival order, and each stream apart. */
struct seen {
        char all[8192], out[8192], err[8192];
        size_t n_all, n_out, n_err;
        unsigned events;
        int fail_after; /* return -EPIPE from this event on (0: never) */
        /* stdin hook: a pipe the test writes to */
        int in_fd;
        bool input_failed;
};

static void append(char *buf, size_t *n, size_t cap, const char *data, size_t len)
{
        assert_true(*n + len < cap);
        memcpy(buf + *n, data, len);
        *n += len;
        buf[*n] = 0;
}

static int on_output(void *userdata, int stream, const char *data, size_t len)
{
        struct seen *s = userdata;

        assert_true(stream == 1 || stream == 2);
        assert_true(len > 0);
        s->events++;
        if (s->fail_after && (int)s->events >= s->fail_after)
                return -EPIPE;
        append(s->all, &s->n_all, sizeof(s->all), stream == 1 ? "O:" : "E:", 2);
        append(s->all, &s->n_all, sizeof(s->all), data, len);
        if (stream == 1)
                append(s->out, &s->n_out, sizeof(s->out), data, len);
        else
                append(s->err, &s->n_err, sizeof(s->err), data, len);
        return 0;
}

/* Reads the test's pipe: what is there is stdin, its end is eof. */
static int on_input(void *userdata, char **ret_data, size_t *ret_len, bool *ret_eof)
{
        struct seen *s = userdata;
        char *buf = malloc(4096);
        ssize_t k;

        if (!buf)
                return -ENOMEM;
        k = read(s->in_fd, buf, 4096);
        if (k < 0) {
                free(buf);
                s->input_failed = true;
                return -errno;
        }
        *ret_data = buf;
        *ret_len = (size_t)k;
        *ret_eof = k == 0;
        return 0;
}

static int run_io(const char *script, struct seen *s, bool stream, bool stdin_open,
                  const struct agent_limits *lim, uint32_t timeout_ms, size_t cap,
                  struct agent_result *res)
{
        const char *argv[] = {"sh", "-c", script, NULL};
        struct agent_io io = {.input_fd = stdin_open ? s->in_fd : -1, .userdata = s};
        struct agent_job job = {
            .argv = argv,
            .env = test_env,
            .workdir = "/tmp",
            .timeout_ms = timeout_ms,
            .output_max = cap,
            .uid = (uid_t)-1,
            .gid = (gid_t)-1,
            .io = &io,
            .stdin_open = stdin_open,
            .limits = lim,
        };

        if (stream)
                io.output = on_output;
        if (stdin_open)
                io.input = on_input;
        return agent_exec(&job, res);
}

static void test_stream_order(void **state)
{
        struct seen s = {0};
        struct agent_result res;

        assert_int_equal(run_io("for i in 1 2 3; do echo o$i; sleep 0.05; echo e$i >&2; "
                                "sleep 0.05; done",
                                &s, true, false, NULL, 60000, 1 << 20, &res),
                         0);
        assert_string_equal(s.out, "o1\no2\no3\n");
        assert_string_equal(s.err, "e1\ne2\ne3\n");
        /* Each stream in order; how the two interleave depends on when the agent reads. */
        assert_true(s.events >= 2);
        assert_non_null(strstr(s.all, "O:o1"));
        assert_non_null(strstr(s.all, "E:e1"));
        /* Passed on, not kept; counted all the same. */
        assert_int_equal(res.out_len, 0);
        assert_int_equal(res.err_len, 0);
        assert_string_equal(res.out, "");
        assert_int_equal(res.out_total, 9);
        assert_int_equal(res.err_total, 9);
        assert_int_equal(res.exit_code, 0);
        agent_result_done(&res);
}

static void test_stream_cap(void **state)
{
        struct seen s = {0};
        struct agent_result res;

        assert_int_equal(run_io("yes | head -c 100000", &s, true, false, NULL, 10000, 1000, &res),
                         0);
        assert_int_equal(s.n_out, 1000);
        assert_int_equal(res.out_total, 1000);
        assert_true(res.truncated);
        agent_result_done(&res);
}

static void test_stream_host_gone(void **state)
{
        struct seen s = {.fail_after = 2};
        struct agent_result res;

        /* The hook failing (the host went away) ends the run, long before its deadline. */
        assert_int_equal(run_io("while :; do echo x; sleep 0.01; done", &s, true, false, NULL,
                                60000, 1 << 20, &res),
                         0);
        assert_int_equal(res.signal, SIGKILL);
        assert_false(res.timed_out);
        agent_result_done(&res);
}

static void test_stdin_interactive(void **state)
{
        struct seen s = {0};
        struct agent_result res;
        int p[2];
        pid_t writer;

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        writer = fork();
        assert_true(writer >= 0);
        if (writer == 0) {
                close(p[0]);
                /* One line, a pause while the program waits for the next, then the end. */
                (void)!write(p[1], "one\n", 4);
                nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
                (void)!write(p[1], "two\n", 4);
                nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
                _exit(0);
        }
        close(p[1]);
        s.in_fd = p[0];
        assert_int_equal(run_io("read a; echo got:$a; read b; echo got:$b; cat; echo end", &s, true,
                                true, NULL, 10000, 1 << 20, &res),
                         0);
        assert_int_equal(waitpid(writer, NULL, 0), writer);
        close(p[0]);
        /* cat ended: the pipe's end reached the program as the end of its stdin. */
        assert_string_equal(s.out, "got:one\ngot:two\nend\n");
        assert_int_equal(res.exit_code, 0);
        assert_false(res.timed_out);
        assert_false(s.input_failed);
        agent_result_done(&res);
}

static void test_stdin_stays_open(void **state)
{
        struct seen s = {0};
        struct agent_result res;
        int p[2];

        /* No eof from the host: the program waiting for more input runs into its deadline. */
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        s.in_fd = p[0];
        assert_int_equal(write(p[1], "hi\n", 3), 3);
        assert_int_equal(run_io("cat", &s, true, true, NULL, 500, 1 << 20, &res), 0);
        assert_string_equal(s.out, "hi\n");
        assert_true(res.timed_out);
        close(p[0]);
        close(p[1]);
        agent_result_done(&res);
}

static enum op_status status_of(const struct agent_result *res)
{
        return op_status_of(res->signal ? -1 : res->exit_code, res->signal, res->timed_out,
                            res->usage.cpu_exceeded, res->truncated, res->usage.oom_killed);
}

static void test_rlimit_cpu(void **state)
{
        const struct agent_limits lim = {.cpu_time_ms = 300};
        struct seen s = {0};
        struct agent_result res;

        assert_int_equal(run_io("while :; do :; done", &s, false, false, &lim, 20000, 4096, &res),
                         0);
        /* RLIMIT_CPU in whole seconds: SIGXCPU at 1 s (SIGKILL a second later). */
        assert_true(res.signal == SIGXCPU || res.signal == SIGKILL);
        assert_false(res.timed_out);
        assert_true(res.usage.cpu_exceeded);
        assert_false(res.usage.by_cgroup);
        assert_true(res.usage.cpu_us >= 300 * 1000);
        assert_int_equal(status_of(&res), OP_STATUS_TIMEOUT);
        agent_result_done(&res);
}

static void test_rlimit_file_size(void **state)
{
        const struct agent_limits lim = {.has_file_size = true, .file_size_max = 1000};
        char script[256];
        struct seen s = {0};
        struct agent_result res;

        snprintf(script, sizeof(script), "exec head -c 100000 /dev/zero > /tmp/op-fsize-%d",
                 (int)getpid());
        assert_int_equal(run_io(script, &s, false, false, &lim, 10000, 4096, &res), 0);
        assert_int_equal(res.signal, SIGXFSZ);
        assert_int_equal(status_of(&res), OP_STATUS_SIGNAL);
        snprintf(script, sizeof(script), "/tmp/op-fsize-%d", (int)getpid());
        unlink(script);
        agent_result_done(&res);

        /* Under the limit: nothing happens. */
        assert_int_equal(run_io("head -c 500 /dev/zero > /dev/null; echo ok", &s, false, false,
                                &lim, 10000, 4096, &res),
                         0);
        assert_string_equal(res.out, "ok\n");
        assert_int_equal(status_of(&res), OP_STATUS_OK);
        agent_result_done(&res);
}

static void test_rlimit_memory(void **state)
{
        const struct agent_limits lim = {.memory_bytes = 64 << 20};
        struct seen s = {0};
        struct agent_result res;

        /* RLIMIT_AS: the allocation fails inside the program, which decides what to do. */
        assert_int_equal(run_io("python3 -c 'b = bytearray(256 << 20)'", &s, false, false, &lim,
                                10000, 1 << 16, &res),
                         0);
        assert_int_equal(res.exit_code, 1);
        assert_non_null(strstr(res.err, "MemoryError"));
        assert_int_equal(status_of(&res), OP_STATUS_RUNTIME_ERROR);
        agent_result_done(&res);

        assert_int_equal(run_io("python3 -c 'b = bytearray(16 << 20); print(len(b))'", &s, false,
                                false, &lim, 10000, 1 << 16, &res),
                         0);
        assert_string_equal(res.out, "16777216\n");
        agent_result_done(&res);
}

static void test_usage(void **state)
{
        struct seen s = {0};
        struct agent_result res;

        assert_int_equal(run_io("python3 -c 'b = bytearray(32 << 20); n = 0\n"
                                "for i in range(2000000): n += i'",
                                &s, false, false, NULL, 20000, 4096, &res),
                         0);
        assert_int_equal(res.exit_code, 0);
        assert_true(res.usage.cpu_us > 10 * 1000);
        assert_true(res.usage.cpu_us <= res.run_us + 100 * 1000);
        /* Without a cgroup the peak is the largest child's maxrss: at least the 32 MiB. */
        assert_true(res.usage.memory_peak_bytes >= 32u << 20);
        assert_false(res.usage.oom_killed);
        agent_result_done(&res);
}

/* agent_opts_decode: the agent's own checks of the optional fields. */
static void test_opts_decode(void **state)
{
        static const char *const bad[] = {
            "{\"stream\": 1}",
            "{\"stdin_stream\": \"yes\"}",
            "{\"cpu_time_ms\": 0}",
            "{\"memory_bytes\": -5}",
            "{\"max_processes\": 1.5}",
            "{\"file_size_max_bytes\": \"1\"}",
            "{\"output_files\": \"a\"}",
            "{\"output_files\": [\"../a\"]}",
            "{\"output_file_max\": 99999999999}",
        };
        struct agent_opts o;
        char err[256];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_auto_t *req = json_loads(bad[i], 0, NULL);

                assert_non_null(req);
                if (agent_opts_decode(req, &o, err, sizeof(err)) != -EINVAL)
                        fail_msg("accepted %s", bad[i]);
                agent_opts_done(&o);
        }
        json_auto_t *req = json_loads("{\"stream\": true, \"cpu_time_ms\": 5, \"memory_bytes\": "
                                      "1048576, \"max_processes\": 3, \"file_size_max_bytes\": 0, "
                                      "\"output_files\": [\"a\", \"b.txt\"]}",
                                      0, NULL);
        assert_int_equal(agent_opts_decode(req, &o, err, sizeof(err)), 0);
        assert_true(o.stream);
        assert_false(o.stdin_stream);
        assert_int_equal(o.limits.cpu_time_ms, 5);
        assert_int_equal(o.limits.memory_bytes, 1048576);
        assert_int_equal(o.limits.max_processes, 3);
        assert_true(o.limits.has_file_size);
        assert_int_equal(o.limits.file_size_max, 0);
        assert_int_equal(o.n_output_files, 2);
        assert_string_equal(o.output_files[1], "b.txt");
        agent_opts_done(&o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_stream_order),
            cmocka_unit_test(test_stream_cap),
            cmocka_unit_test(test_stream_host_gone),
            cmocka_unit_test(test_stdin_interactive),
            cmocka_unit_test(test_stdin_stays_open),
            cmocka_unit_test(test_rlimit_cpu),
            cmocka_unit_test(test_rlimit_file_size),
            cmocka_unit_test(test_rlimit_memory),
            cmocka_unit_test(test_usage),
            cmocka_unit_test(test_opts_decode),
        };

        /* Programs' fork storms and closed pipes must not end the test. */
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
