/* test-agent-proto.c: the agent's side of the protocol: agent_handle() on good and bad requests,
 * warm runners (test runners and the real Python one), and the real op-agent binary in --stdio
 * mode, spoken to frame by frame. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "frame.h"
#include "msg.h"
#include "util.h"

static char workdir[] = "/tmp/op-agent-test-XXXXXX";
static struct agent_config cfg;
static struct agent ag;

static json_t *handle(const char *text)
{
        json_error_t jerr;
        json_t *req = json_loads(text, JSON_ALLOW_NUL, &jerr), *answer;

        if (!req) {
                fprintf(stderr, "bad test JSON: %s: %s\n", text, jerr.text);
                fail();
        }
        answer = agent_handle(&ag, req);
        json_decref(req);
        assert_non_null(answer);
        return answer;
}

static json_int_t exit_code(json_t *a)
{
        return json_integer_value(json_object_get(a, "exit_code"));
}

static void assert_error(json_t *answer, const char *code)
{
        json_t *err = json_object_get(answer, "error");

        assert_true(json_is_false(json_object_get(answer, "ok")));
        assert_true(json_is_object(err));
        assert_string_equal(json_string_value(json_object_get(err, "code")), code);
        assert_true(json_is_string(json_object_get(err, "message")));
}

static void assert_request_error(const char *text, const char *code)
{
        json_t *a = handle(text);

        if (!json_is_false(json_object_get(a, "ok")))
                fprintf(stderr, "accepted: %s\n", text);
        assert_error(a, code);
        json_decref(a);
}

static const char *str(json_t *obj, const char *key)
{
        json_t *v = json_object_get(obj, key);

        assert_true(json_is_string(v));
        return json_string_value(v);
}

static int count_entries(const char *dir)
{
        char cmd[PATH_MAX + 32];
        FILE *f;
        int n = -1;

        snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
        f = popen(cmd, "r");
        assert_non_null(f);
        assert_int_equal(fscanf(f, "%d", &n), 1);
        pclose(f);
        return n;
}

/* What is left in the agents' directory once the last answer is out: the run's directory goes
 * then (agent_answered(), whose other steps some tests take one by one). */
static int rundirs_left(void)
{
        agent_rundir_drop(&ag);
        return count_entries(workdir);
}

static void test_ready(void **state)
{
        json_t *e = agent_ready_event();

        assert_string_equal(str(e, "event"), "ready");
        assert_string_equal(str(e, "agent_version"), OP_AGENT_VERSION);
        json_decref(e);
}

static void test_ping(void **state)
{
        json_t *a = handle("{\"op\":\"ping\"}");

        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_true(json_is_true(json_object_get(a, "pong")));
        assert_string_equal(str(a, "agent_version"), OP_AGENT_VERSION);
        json_decref(a);

        a = handle("{\"op\":\"ping\",\"id\":\"abc\"}");
        assert_string_equal(str(a, "id"), "abc");
        json_decref(a);
}

static void test_exec_full(void **state)
{
        json_t *a =
            handle("{\"op\":\"exec\",\"id\":42,\"argv\":[\"sh\",\"main.sh\",\"arg one\"],"
                   "\"file\":\"main.sh\","
                   "\"code\":\"cat data.txt; echo \\\"$FOO|$1|$LANG\\\"; [ \\\"$HOME\\\" = "
                   "\\\"$(pwd)\\\" ] "
                   "&& echo home-ok; [ \\\"$TMPDIR\\\" = \\\"$HOME\\\" ] && echo tmp-ok; cat; "
                   "echo oops >&2; exit 5\","
                   "\"stdin\":\"from stdin\\n\","
                   "\"env\":{\"FOO\":\"bar\",\"LANG\":\"C\"},"
                   "\"files\":[{\"name\":\"data.txt\",\"content\":\"hello\\n\"},"
                   "{\"name\":\"bin.dat\",\"content_b64\":\"AAEC\"}],"
                   "\"timeout_ms\":5000,\"output_max\":4096}");

        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_int_equal(json_integer_value(json_object_get(a, "id")), 42);
        assert_string_equal(str(a, "stdout"),
                            "hello\nbar|arg one|C\nhome-ok\ntmp-ok\nfrom stdin\n");
        assert_string_equal(str(a, "stderr"), "oops\n");
        assert_null(json_object_get(a, "stdout_b64"));
        assert_int_equal(exit_code(a), 5);
        assert_true(json_is_null(json_object_get(a, "signal")));
        assert_true(json_is_false(json_object_get(a, "timed_out")));
        assert_true(json_is_false(json_object_get(a, "truncated")));
        assert_true(json_is_real(json_object_get(a, "run_ms")));
        assert_true(json_real_value(json_object_get(a, "run_ms")) > 0);
        json_decref(a);
        /* The run's directory goes once the answer is out, not on its time. */
        assert_int_equal(count_entries(workdir), 1);
        agent_answered(&ag);
        assert_int_equal(count_entries(workdir), 0);
}

static void test_exec_minimal(void **state)
{
        json_t *a = handle("{\"op\":\"exec\",\"argv\":[\"echo\",\"hi\"]}");

        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_string_equal(str(a, "stdout"), "hi\n");
        assert_int_equal(exit_code(a), 0);
        json_decref(a);
}

static void test_exec_signal_timeout_truncated(void **state)
{
        json_t *a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"-c\",\"sleep 10\"],"
                           "\"timeout_ms\":200}");

        assert_true(json_is_true(json_object_get(a, "timed_out")));
        assert_true(json_is_null(json_object_get(a, "exit_code")));
        assert_int_equal(json_integer_value(json_object_get(a, "signal")), SIGKILL);
        json_decref(a);

        a = handle("{\"op\":\"exec\",\"argv\":[\"yes\"],\"output_max\":100}");
        assert_true(json_is_true(json_object_get(a, "truncated")));
        assert_int_equal(strlen(str(a, "stdout")), 100);
        json_decref(a);
}

static void test_exec_rundir_cleanup(void **state)
{
        /* Whatever the program leaves behind, unreadable or symlinked, goes with its directory. */
        json_t *a =
            handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"-c\",\"mkdir -p a/b/c && touch a/b/c/f && "
                   "ln -s / root && ln -s /etc a/etc && chmod 0 a/b && chmod 0 a\"]}");

        assert_int_equal(exit_code(a), 0);
        json_decref(a);
        assert_int_equal(rundirs_left(), 0);
        assert_int_equal(access("/etc/passwd", F_OK), 0);

        /* A compile that fails ends the run the same way: its directory is there as the
         * answer is made, gone once it is out. */
        a = handle("{\"op\":\"exec\",\"argv\":[\"./prog\"],\"file\":\"p.c\",\"code\":\"x\","
                   "\"compile\":{\"argv\":[\"sh\",\"-c\",\"mkdir obj && touch obj/o && exit 2\"],"
                   "\"timeout_ms\":60000,\"output_max\":4096}}");
        assert_string_equal(str(a, "status"), "compile_error");
        json_decref(a);
        assert_int_equal(count_entries(workdir), 1);
        assert_int_equal(rundirs_left(), 0);
}

/* "workdir": a session's calls share one directory, kept after each run; a name the program
 * left in it (a link to a file outside) is replaced by a file given again, never written
 * through. */
static void test_exec_kept_workdir(void **state)
{
        char dir[PATH_MAX], target[PATH_MAX], cmd[2 * PATH_MAX + 64], buf[64] = "";
        json_t *a;
        FILE *f;

        snprintf(dir, sizeof(dir), "%s/session-s-1", workdir);
        snprintf(target, sizeof(target), "%s.target", workdir);
        f = fopen(target, "w");
        assert_non_null(f);
        fputs("outside", f);
        fclose(f);
        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"-c\",\"echo two > b.txt; pwd\"],"
                   "\"workdir\":\"s-1\",\"files\":[{\"name\":\"a.txt\",\"content\":\"one\"}]}");
        assert_int_equal(exit_code(a), 0);
        snprintf(cmd, sizeof(cmd), "%s\n", dir);
        assert_string_equal(str(a, "stdout"), cmd);
        json_decref(a);
        assert_int_equal(count_entries(dir), 2);
        snprintf(cmd, sizeof(cmd),
                 "{\"op\":\"exec\",\"argv\":[\"sh\",\"-c\",\"cat a.txt b.txt; ln -s %s link\"],"
                 "\"workdir\":\"s-1\"}",
                 target);
        a = handle(cmd);
        assert_string_equal(str(a, "stdout"), "onetwo\n");
        json_decref(a);
        a = handle("{\"op\":\"exec\",\"argv\":[\"cat\",\"link\"],\"workdir\":\"s-1\","
                   "\"files\":[{\"name\":\"link\",\"content\":\"inside\"}]}");
        assert_string_equal(str(a, "stdout"), "inside");
        json_decref(a);
        f = fopen(target, "r");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        assert_string_equal(buf, "outside");
        /* a directory in the way of a file is an error, not a loss */
        a = handle("{\"op\":\"exec\",\"argv\":[\"mkdir\",\"d\"],\"workdir\":\"s-1\"}");
        json_decref(a);
        assert_request_error("{\"op\":\"exec\",\"argv\":[\"true\"],\"workdir\":\"s-1\","
                             "\"files\":[{\"name\":\"d\",\"content\":\"x\"}]}",
                             "internal_error");
        for (const char *const *bad =
                 (const char *const[]){
                     "\"\"", "\"../x\"", "\"A\"", "\"a/b\"", "1", "\"a\\u0000b\"",
                     "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"", NULL};
             *bad; bad++) {
                snprintf(cmd, sizeof(cmd), "{\"op\":\"exec\",\"argv\":[\"true\"],\"workdir\":%s}",
                         *bad);
                assert_request_error(cmd, "bad_request");
        }
        snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, target);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(rundirs_left(), 0);
}

static void test_exec_non_utf8(void **state)
{
        json_t *a = handle("{\"op\":\"exec\",\"argv\":[\"printf\",\"a\\\\377b\"]}");

        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_string_equal(str(a, "stdout"), "a\xef\xbf\xbd"
                                              "b");
        assert_string_equal(str(a, "stdout_b64"), "Yf9i");
        assert_null(json_object_get(a, "stderr_b64"));
        json_decref(a);
}

static void test_exec_identity_ignored(void **state)
{
        /* Outside a guest (apply_identity unset) identity fields are checked, not applied. */
        json_t *a = handle("{\"op\":\"exec\",\"argv\":[\"true\"],\"entropy\":\"AAECAwQFBgc=\","
                           "\"time_ns\":1700000000000000000,\"hostname\":\"op-vm-1\"}");

        assert_true(json_is_true(json_object_get(a, "ok")));
        json_decref(a);
}

/* Run fn in a child that first unshares `flags`; the child's exit code is the verdict, 77 for
 * "cannot unshare here" (skip). */
static void in_namespace(int flags, int (*fn)(void))
{
        pid_t pid = fork();
        int st;

        assert_true(pid >= 0);
        if (pid == 0) {
                if (unshare(flags) < 0)
                        _exit(77);
                if (flags & CLONE_NEWPID) {
                        /* The next child is PID 1 of the new namespace. */
                        pid_t init = fork();
                        if (init < 0)
                                _exit(2);
                        if (init == 0)
                                _exit(fn());
                        if (waitpid(init, &st, 0) != init || !WIFEXITED(st))
                                _exit(3);
                        _exit(WEXITSTATUS(st));
                }
                _exit(fn());
        }
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) == 77)
                skip();
        assert_int_equal(WEXITSTATUS(st), 0);
}

static int identity_child(void)
{
        struct agent_config c = cfg;
        struct agent a;
        json_t *req, *ans, *warm;
        int ok;

        c.apply_identity = true;
        agent_init(&a, &c);
        req = json_pack("{s:s, s:[s], s:s, s:s}", "op", "exec", "argv", "hostname", "entropy",
                        "AAECAwQFBgcICQoLDA0ODw==", "hostname", "op-vm-test");
        ans = agent_handle(&a, req);
        ok = json_is_true(json_object_get(ans, "ok")) &&
             strcmp(json_string_value(json_object_get(ans, "stdout")), "op-vm-test\n") == 0;
        json_decref(ans);
        json_decref(req);

        /* A warm runner started before (as in the snapshot) sees the identity of the exec. */
        warm = json_pack("{s:s, s:[s,s,s]}", "op", "warm", "argv", "sh", "-c",
                         "echo ready >&3; read -r job <&3; hostname");
        ans = agent_handle(&a, warm);
        ok = ok && json_is_true(json_object_get(ans, "ok"));
        json_decref(ans);
        json_decref(warm);
        req = json_pack("{s:s, s:[s,s], s:s, s:s, s:b, s:s}", "op", "exec", "argv", "sh", "m.sh",
                        "file", "m.sh", "code", "", "warm", 1, "hostname", "op-vm-warm");
        ans = agent_handle(&a, req);
        ok = ok && json_is_true(json_object_get(ans, "warm_used")) &&
             strcmp(json_string_value(json_object_get(ans, "stdout")), "op-vm-warm\n") == 0;
        if (!ok) {
                char *d = json_dumps(ans, 0);
                fprintf(stderr, "identity: %s\n", d);
                free(d);
        }
        json_decref(ans);
        json_decref(req);

        /* A runner the prime starts starts after the prime's identity is applied: it reads the
         * clone's host name (and entropy) as it starts, before it is handed its job. */
        req = json_pack("{s:s, s:{s:[s,s,s]}, s:[s], s:s}", "op", "prime", "runner", "argv", "sh",
                        "-c", "h=$(hostname); echo ready >&3; read -r job <&3; echo $h", "argv",
                        "sh", "hostname", "op-vm-prime");
        ans = agent_handle(&a, req);
        ok = ok && json_is_true(json_object_get(ans, "primed")) && a.warm_waiting;
        json_decref(ans);
        json_decref(req);
        req = json_pack("{s:s, s:[s,s], s:s, s:s, s:b, s:s}", "op", "exec", "argv", "sh", "m.sh",
                        "file", "m.sh", "code", "", "warm", 1, "hostname", "op-vm-exec");
        ans = agent_handle(&a, req);
        ok = ok && json_is_true(json_object_get(ans, "warm_used")) &&
             strcmp(json_string_value(json_object_get(ans, "stdout")), "op-vm-prime\n") == 0;
        if (!ok) {
                char *d = json_dumps(ans, 0);
                fprintf(stderr, "identity before the runner: %s\n", d);
                free(d);
        }
        json_decref(ans);
        json_decref(req);
        agent_done(&a);
        return ok ? 0 : 1;
}

static void test_exec_identity_applied(void **state)
{
        /* Entropy and hostname, in a UTS namespace of its own (the clock is not namespaced). */
        if (geteuid() != 0)
                skip();
        in_namespace(CLONE_NEWUTS, identity_child);
}

static int pid1_child(void)
{
        json_t *req, *a;
        long pid;
        int ok;

        /* A process that leaves the group (given the time to) and closes its output escapes the
         * group kill; as PID 1 the agent ends it anyway. */
        req = json_pack("{s:s, s:[s,s,s]}", "op", "exec", "argv", "sh", "-c",
                        "setsid sleep 100 >/dev/null 2>&1 </dev/null & echo $!; sleep 0.3");
        a = agent_handle(&ag, req);
        pid = strtol(json_string_value(json_object_get(a, "stdout")), NULL, 10);
        ok = getpid() == 1 && json_is_true(json_object_get(a, "ok")) && pid > 1 &&
             kill((pid_t)pid, 0) < 0 && errno == ESRCH;
        json_decref(a);
        json_decref(req);
        agent_answered(&ag); /* this process's copy of the agent: the run's directory goes */
        return ok ? 0 : 1;
}

static void test_exec_pid1_kills_all(void **state)
{
        if (geteuid() != 0)
                skip();
        in_namespace(CLONE_NEWPID, pid1_child);
}

static void test_exec_missing_binary(void **state)
{
        json_t *a = handle("{\"op\":\"exec\",\"argv\":[\"no-such-program-op\"]}");

        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_int_equal(exit_code(a), 127);
        json_decref(a);
}

static void test_bad_requests(void **state)
{
        static const char *const bad[] = {
            "{}",
            "{\"op\":1}",
            "{\"op\":\"ping\",\"extra\":1}",
            "{\"op\":\"ping\",\"id\":{}}",
            "{\"op\":\"exec\"}",
            "{\"op\":\"exec\",\"argv\":\"ls\"}",
            "{\"op\":\"exec\",\"argv\":[]}",
            "{\"op\":\"exec\",\"argv\":[1]}",
            "{\"op\":\"exec\",\"argv\":[\"\"]}",
            "{\"op\":\"exec\",\"argv\":[\"a\\u0000b\"]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"bogus\":1}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"x.py\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"code\":\"x\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"../x\",\"code\":\"x\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"a/b\",\"code\":\"x\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":1,\"code\":\"x\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"x\",\"code\":1}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"x\",\"code\":\"x\",\"code_b64\":\"eA=="
            "\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"x\",\"code_b64\":\"not base64\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"files\":[{\"name\":\"../"
            "x\",\"content\":\"\"}]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"files\":[{\"name\":\"..\",\"content\":\"\"}]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"files\":[{\"name\":\"x\"}]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"files\":[{\"name\":\"x\",\"content\":3}]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"files\":[{\"name\":\"x\",\"content\":\"\","
            "\"mode\":7}]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"files\":[{\"name\":\"x\",\"content\":\"\"},"
            "{\"name\":\"x\",\"content\":\"\"}]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"x\",\"code\":\"\","
            "\"files\":[{\"name\":\"x\",\"content\":\"\"}]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"files\":{}}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"files\":[\"x\"]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"stdin\":5}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"env\":[]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"env\":{\"1X\":\"y\"}}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"env\":{\"A=B\":\"y\"}}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"env\":{\"X\":1}}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"timeout_ms\":0}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"timeout_ms\":600001}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"timeout_ms\":\"5\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"timeout_ms\":1.5}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"output_max\":-1}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"output_max\":67108865}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"entropy\":\"***\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"entropy\":7}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"time_ns\":-1}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"time_ns\":\"now\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"hostname\":\"\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"hostname\":\"a b\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"hostname\":\"x\\u0000y\"}",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_request_error(bad[i], "bad_request");
        assert_request_error("{\"op\":\"reboot\"}", "unknown_op");
        assert_int_equal(rundirs_left(), 0);
}

static void test_argv_limit(void **state)
{
        json_t *req = json_pack("{s:s, s:[]}", "op", "exec", "argv"), *a;

        for (int i = 0; i < 301; i++)
                json_array_append_new(json_object_get(req, "argv"), json_string("true"));
        a = agent_handle(&ag, req);
        assert_error(a, "bad_request");
        json_decref(a);
        json_array_remove(json_object_get(req, "argv"), 0);
        a = agent_handle(&ag, req);
        assert_true(json_is_true(json_object_get(a, "ok")));
        json_decref(a);
        json_decref(req);
}

static void test_bad_rundir(void **state)
{
        struct agent_config bad = cfg;
        json_t *req = json_pack("{s:s, s:[s]}", "op", "exec", "argv", "true"), *a;
        struct agent b;

        bad.workdir = "/nonexistent-op-test/sub";
        agent_init(&b, &bad);
        a = agent_handle(&b, req);
        assert_error(a, "internal_error");
        json_decref(a);
        json_decref(req);
        req = json_pack("{s:s, s:[s]}", "op", "warm", "argv", "true");
        a = agent_handle(&b, req);
        assert_error(a, "internal_error");
        json_decref(a);
        json_decref(req);
        agent_done(&b);
}

/* A test runner in Python: says "ready", reads its job, then becomes `sh FILE ARGS...` in the
 * job's directory with the job's environment. */
#define SH_RUNNER                                                                                  \
        "import json, os\n"                                                                        \
        "ctl = os.fdopen(3, 'r+b', buffering=0)\n"                                                 \
        "ctl.write(b'ready\\n')\n"                                                                 \
        "line = b''\n"                                                                             \
        "while not line.endswith(b'\\n'):\n"                                                       \
        "    chunk = ctl.read(65536)\n"                                                            \
        "    if not chunk:\n"                                                                      \
        "        os._exit(70)\n"                                                                   \
        "    line += chunk\n"                                                                      \
        "ctl.close()\n"                                                                            \
        "job = json.loads(line)\n"                                                                 \
        "os.chdir(job['cwd'])\n"                                                                   \
        "os.execve('/bin/sh', ['sh', job['file']] + job['argv'], job['env'])\n"

static void dump(const char *what, json_t *a)
{
        char *d = json_dumps(a, 0);

        fprintf(stderr, "%s: %s\n", what, d);
        free(d);
}

/* Handle req (a reference is taken over). */
static json_t *handle_obj(json_t *req)
{
        json_t *a;

        assert_non_null(req);
        a = agent_handle(&ag, req);
        json_decref(req);
        assert_non_null(a);
        return a;
}

/* Start a warm runner with this argv (a reference is taken over); its pid. */
static pid_t warm(json_t *argv)
{
        json_t *a = handle_obj(json_pack("{s:s, s:s, s:o}", "op", "warm", "id", "w", "argv", argv));
        pid_t pid;

        if (!json_is_true(json_object_get(a, "ok")))
                dump("warm", a);
        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_string_equal(str(a, "id"), "w");
        assert_true(json_is_true(json_object_get(a, "warm")));
        assert_true(json_is_integer(json_object_get(a, "pid")));
        pid = (pid_t)json_integer_value(json_object_get(a, "pid"));
        assert_true(pid > 1);
        assert_int_equal(kill(pid, 0), 0);
        assert_int_equal(json_object_size(a), 4);
        json_decref(a);
        assert_true(ag.warm_waiting);
        return pid;
}

static pid_t warm_sh_runner(void)
{
        return warm(json_pack("[s,s,s]", "python3", "-c", SH_RUNNER));
}

/* Wait (up to a generous minute) until pid has exited; it is left to be reaped. */
static void wait_exited(pid_t pid)
{
        char path[64], *stat = NULL, *state;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        for (int i = 0; i < 6000; i++) {
                if (op_read_file(path, 4096, &stat, &n) < 0)
                        return; /* gone altogether */
                state = strrchr(stat, ')');
                bool exited = state && state[1] == ' ' && (state[2] == 'Z' || state[2] == 'X');
                free(stat);
                if (exited)
                        return;
                usleep(10 * 1000);
        }
        fail_msg("pid %d did not exit within 60 s", (int)pid);
}

static void assert_gone(pid_t pid)
{
        assert_int_equal(kill(pid, 0), -1);
        assert_int_equal(errno, ESRCH);
}

static void assert_ok_warm_used(json_t *a, bool used)
{
        if (!json_is_true(json_object_get(a, "ok")))
                dump("exec", a);
        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_true(json_is_boolean(json_object_get(a, "warm_used")));
        assert_int_equal(json_is_true(json_object_get(a, "warm_used")), used);
}

/* A prime's answer a (a reference is taken over): the program ran and the clone is primed. */
static void assert_primed(json_t *a)
{
        if (!json_is_true(json_object_get(a, "primed")))
                dump("prime", a);
        assert_true(json_is_true(json_object_get(a, "primed")));
        json_decref(a);
}

/* An exec's answer a (a reference is taken over): run on the warm runner, with this output and
 * exit code. */
static void assert_ran_warm(json_t *a, const char *out, const char *err, int code)
{
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), out);
        assert_string_equal(str(a, "stderr"), err);
        assert_int_equal(exit_code(a), code);
        json_decref(a);
}

static const char *error_message(json_t *a)
{
        assert_error(a, "internal_error");
        return json_string_value(json_object_get(json_object_get(a, "error"), "message"));
}

/* have equals want (a reference to want is taken over). */
static void assert_json_equal(json_t *have, json_t *want)
{
        int eq = json_equal(have, want);

        json_decref(want);
        assert_true(eq);
}

static void test_warm_handoff_line(void **state)
{
        size_t wlen = strlen(workdir);
        const char *line, *cwd;
        char file[PATH_MAX];
        json_t *a, *job, *env;
        pid_t pid;

        /* A runner that prints the line it is handed: its exact shape. */
        pid = warm(json_pack("[s,s,s]", "sh", "-c", "echo ready >&3; exec cat <&3"));
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"sh\",\"main.sh\",\"p\",\"q\"],\"file\":\"main.sh\","
            "\"code\":\"x\",\"warm\":true,\"env\":{\"FOO\":\"bar\",\"LANG\":\"C\"}}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 0);
        line = str(a, "stdout");
        assert_non_null(strchr(line, '\n'));
        assert_int_equal(strchr(line, '\n') - line, strlen(line) - 1);
        job = json_loads(line, 0, NULL);
        assert_non_null(job);
        assert_int_equal(json_object_size(job), 4);
        cwd = str(job, "cwd");
        assert_memory_equal(cwd, workdir, wlen);
        assert_memory_equal(cwd + wlen, "/run-", 5);
        snprintf(file, sizeof(file), "%s/main.sh", cwd);
        assert_string_equal(str(job, "file"), file);
        /* Without "args": what follows the file's name in argv. */
        assert_json_equal(json_object_get(job, "argv"), json_pack("[s,s]", "p", "q"));
        env = json_object_get(job, "env");
        assert_int_equal(json_object_size(env), 5);
        assert_string_equal(str(env, "FOO"), "bar");
        assert_string_equal(str(env, "LANG"), "C");
        assert_string_equal(str(env, "HOME"), cwd);
        assert_string_equal(str(env, "TMPDIR"), cwd);
        assert_string_equal(str(env, "PATH"), "/usr/local/bin:/usr/bin:/bin");
        json_decref(job);
        json_decref(a);
        assert_gone(pid);
        assert_false(ag.warm_waiting);

        /* "args" given: that, whatever argv holds. */
        warm(json_pack("[s,s,s]", "sh", "-c", "echo ready >&3; exec cat <&3"));
        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"main.sh\",\"x\"],\"file\":\"main.sh\","
                   "\"code\":\"x\",\"warm\":true,\"args\":[\"a b\",\"\"]}");
        assert_ok_warm_used(a, true);
        job = json_loads(str(a, "stdout"), 0, NULL);
        assert_non_null(job);
        assert_json_equal(json_object_get(job, "argv"), json_pack("[s,s]", "a b", ""));
        json_decref(job);
        json_decref(a);

        /* The file's name not in argv: no arguments. */
        warm(json_pack("[s,s,s]", "sh", "-c", "echo ready >&3; exec cat <&3"));
        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"-c\",\"x\"],\"file\":\"main.sh\","
                   "\"code\":\"x\",\"warm\":true}");
        assert_ok_warm_used(a, true);
        job = json_loads(str(a, "stdout"), 0, NULL);
        assert_non_null(job);
        assert_int_equal(json_array_size(json_object_get(job, "argv")), 0);
        json_decref(job);
        json_decref(a);
        assert_int_equal(rundirs_left(), 0);
}

static void test_warm_exec(void **state)
{
        pid_t pid = warm_sh_runner();
        json_t *a =
            handle("{\"op\":\"exec\",\"id\":7,\"argv\":[\"sh\",\"main.sh\",\"one two\",\"3\"],"
                   "\"args\":[\"one two\",\"3\"],\"file\":\"main.sh\",\"warm\":true,"
                   "\"code\":\"cat data.txt; echo \\\"$#|$1|$2|$FOO\\\"; [ \\\"$HOME\\\" = "
                   "\\\"$(pwd)\\\" ] && echo cwd-ok; [ \\\"$0\\\" = \\\"$(pwd)/main.sh\\\" ] && "
                   "echo file-ok; cat; echo oops >&2; exit 5\","
                   "\"stdin\":\"from stdin\\n\",\"env\":{\"FOO\":\"bar\"},"
                   "\"files\":[{\"name\":\"data.txt\",\"content\":\"hello\\n\"}],"
                   "\"timeout_ms\":5000,\"output_max\":4096}");

        assert_ok_warm_used(a, true);
        assert_int_equal(json_integer_value(json_object_get(a, "id")), 7);
        assert_string_equal(str(a, "stdout"),
                            "hello\n2|one two|3|bar\ncwd-ok\nfile-ok\nfrom stdin\n");
        assert_string_equal(str(a, "stderr"), "oops\n");
        assert_int_equal(exit_code(a), 5);
        assert_true(json_is_null(json_object_get(a, "signal")));
        assert_true(json_is_false(json_object_get(a, "timed_out")));
        assert_true(json_is_false(json_object_get(a, "truncated")));
        assert_true(json_real_value(json_object_get(a, "run_ms")) > 0);
        json_decref(a);
        assert_gone(pid);
        assert_int_equal(rundirs_left(), 0);

        /* Killed by a signal: reported as such. */
        pid = warm_sh_runner();
        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"m.sh\"],\"file\":\"m.sh\",\"warm\":true,"
                   "\"code\":\"kill -TERM $$\"}");
        assert_ok_warm_used(a, true);
        assert_true(json_is_null(json_object_get(a, "exit_code")));
        assert_int_equal(json_integer_value(json_object_get(a, "signal")), SIGTERM);
        json_decref(a);
        assert_gone(pid);
}

static void test_warm_timeout_and_cap(void **state)
{
        pid_t pid = warm_sh_runner();
        long bg;
        json_t *a;

        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"m.sh\"],\"file\":\"m.sh\",\"warm\":true,"
                   "\"code\":\"sleep 100 & echo $!; sleep 100\",\"timeout_ms\":300}");
        assert_ok_warm_used(a, true);
        assert_true(json_is_true(json_object_get(a, "timed_out")));
        assert_true(json_is_null(json_object_get(a, "exit_code")));
        assert_int_equal(json_integer_value(json_object_get(a, "signal")), SIGKILL);
        /* Counted from the hand-off. */
        assert_true(json_real_value(json_object_get(a, "run_ms")) >= 300);
        /* The background child, if it got as far as being printed before the deadline. */
        bg = strtol(str(a, "stdout"), NULL, 10);
        if (bg > 1)
                assert_gone((pid_t)bg);
        assert_gone(pid);
        json_decref(a);

        pid = warm_sh_runner();
        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"m.sh\"],\"file\":\"m.sh\",\"warm\":true,"
                   "\"code\":\"yes\",\"output_max\":100}");
        assert_ok_warm_used(a, true);
        assert_true(json_is_true(json_object_get(a, "truncated")));
        assert_int_equal(strlen(str(a, "stdout")), 100);
        json_decref(a);
        assert_gone(pid);
        assert_int_equal(rundirs_left(), 0);
}

static void test_warm_fallback(void **state)
{
        json_t *a;
        pid_t pid;

        /* No runner: the normal way, silently. */
        assert_false(ag.warm_waiting);
        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"m.sh\",\"x\"],\"file\":\"m.sh\","
                   "\"warm\":true,\"code\":\"echo \\\"$0 $1\\\"\"}");
        assert_ok_warm_used(a, false);
        assert_string_equal(str(a, "stdout"), "m.sh x\n");
        json_decref(a);
        a = handle("{\"op\":\"exec\",\"argv\":[\"true\"],\"warm\":false}");
        assert_ok_warm_used(a, false);
        json_decref(a);

        /* An exec that does not ask for the runner ends it first: one exec per runner. */
        pid = warm_sh_runner();
        a = handle("{\"op\":\"exec\",\"argv\":[\"echo\",\"plain\"]}");
        assert_ok_warm_used(a, false);
        assert_string_equal(str(a, "stdout"), "plain\n");
        json_decref(a);
        assert_gone(pid);
        assert_false(ag.warm_waiting);

        /* A bad request leaves it waiting. */
        pid = warm_sh_runner();
        assert_request_error("{\"op\":\"exec\",\"argv\":[\"true\"],\"bogus\":1}", "bad_request");
        assert_int_equal(kill(pid, 0), 0);
        assert_true(ag.warm_waiting);

        /* agent_done() ends it. */
        agent_done(&ag);
        assert_gone(pid);
        assert_false(ag.warm_waiting);
        agent_done(&ag);
}

static void test_warm_one_at_a_time(void **state)
{
        pid_t pid = warm_sh_runner();
        json_t *a;

        assert_request_error("{\"op\":\"warm\",\"argv\":[\"sh\",\"-c\",\"echo ready >&3\"]}",
                             "bad_request");
        assert_int_equal(kill(pid, 0), 0);
        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"m.sh\"],\"file\":\"m.sh\",\"warm\":true,"
                   "\"code\":\"echo $$\"}");
        assert_ok_warm_used(a, true);
        /* The runner became the program: same process. */
        assert_int_equal(strtol(str(a, "stdout"), NULL, 10), pid);
        json_decref(a);
        /* Consumed: a new one may start. */
        warm_sh_runner();
        agent_done(&ag);
}

static void test_warm_not_ready(void **state)
{
        uint64_t t0;
        const char *msg;
        json_t *a;
        long pid;

        /* Exits first: its exit code and stderr. */
        a = handle("{\"op\":\"warm\",\"id\":\"w1\",\"argv\":[\"python3\",\"-c\",\"import sys; "
                   "sys.stderr.write('boom\\\\n'); sys.exit(3)\"]}");
        msg = error_message(a);
        assert_string_equal(str(a, "id"), "w1");
        assert_non_null(strstr(msg, "warm runner python3 exited with code 3"));
        assert_non_null(strstr(msg, ": boom"));
        json_decref(a);

        /* Never ready: killed at the deadline, group and all. */
        t0 = op_now_us();
        a = handle("{\"op\":\"warm\",\"argv\":[\"sh\",\"-c\",\"sleep 100 & echo $! >&2; sleep "
                   "100\"],\"ready_timeout_ms\":300}");
        assert_true(op_now_us() - t0 >= 300 * 1000);
        msg = error_message(a);
        assert_non_null(strstr(msg, "not ready after 300 ms: "));
        /* Its background child, if it was printed before the deadline. */
        pid = strtol(strrchr(msg, ' ') + 1, NULL, 10);
        if (pid > 1)
                assert_gone((pid_t)pid);
        json_decref(a);

        a = handle("{\"op\":\"warm\",\"argv\":[\"no-such-runner-op\"]}");
        msg = error_message(a);
        assert_non_null(strstr(msg, "exited with code 127"));
        assert_non_null(strstr(msg, "not found"));
        json_decref(a);

        a = handle("{\"op\":\"warm\",\"argv\":[\"sh\",\"-c\",\"exec 3>&-; sleep 100\"]}");
        assert_non_null(strstr(error_message(a), "closed fd 3"));
        json_decref(a);

        a = handle("{\"op\":\"warm\",\"argv\":[\"sh\",\"-c\",\"echo steady >&3; sleep 100\"]}");
        assert_non_null(strstr(error_message(a), "other than"));
        json_decref(a);

        /* Not UTF-8, NULs, and far more than 1 KiB on stderr: a valid message, cut short. */
        a = handle("{\"op\":\"warm\",\"argv\":[\"sh\",\"-c\",\"printf 'a\\\\377\\\\000b' >&2; "
                   "head -c 5000 /dev/zero | tr '\\\\0' e >&2; exit 1\"]}");
        msg = error_message(a);
        assert_non_null(strstr(msg, ": a\xef\xbf\xbd\xef\xbf\xbd"
                                    "beee"));
        assert_true(strlen(msg) < AGENT_DIAG_MAX + 200);
        assert_string_equal(msg + strlen(msg) - 4, "e...");
        assert_null(json_object_get(json_object_get(a, "error"), "message_b64"));
        json_decref(a);

        a = handle("{\"op\":\"warm\",\"argv\":[\"false\"]}");
        assert_non_null(strstr(error_message(a),
                               "exited with code 1 before it was ready: (nothing on stderr)"));
        json_decref(a);

        /* Nothing waits after a failure: exec falls back. */
        assert_false(ag.warm_waiting);
        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"m.sh\"],\"file\":\"m.sh\",\"warm\":true,"
                   "\"code\":\"echo cold\"}");
        assert_ok_warm_used(a, false);
        assert_string_equal(str(a, "stdout"), "cold\n");
        json_decref(a);
        assert_int_equal(rundirs_left(), 0);
}

static void test_warm_runner_died_while_waiting(void **state)
{
        for (int reap = 0; reap < 2; reap++) {
                pid_t pid = warm(json_pack("[s,s,s]", "sh", "-c",
                                           "echo ready >&3; sleep 0.1; echo bye >&2; exit 7"));
                json_t *a;

                wait_exited(pid);
                /* Reaped between requests (as op-agent does), or still a zombie. */
                if (reap) {
                        agent_reap_orphans(&ag);
                        assert_gone(pid);
                }
                a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"m.sh\"],\"file\":\"m.sh\","
                           "\"warm\":true,\"code\":\"echo never\",\"stdin\":\"x\"}");
                assert_ok_warm_used(a, true);
                assert_int_equal(exit_code(a), 7);
                assert_string_equal(str(a, "stdout"), "");
                assert_string_equal(str(a, "stderr"), "bye\n");
                json_decref(a);
                assert_gone(pid);
        }
}

/* A session's call with "next_runner" ({"op":"exec", ..., "workdir", "warm": true}), timeout_ms
 * as given (0: the agent's default). */
static json_t *next_runner_call(const char *runner_sh, int timeout_ms)
{
        json_t *req = json_pack("{s:s, s:[s,s], s:s, s:s, s:b, s:s, s:{s:[s,s,s]}}", "op", "exec",
                                "argv", "sh", "m.sh", "file", "m.sh", "code", "echo cold", "warm",
                                1, "workdir", "nr-1", "next_runner", "argv", "sh", "-c", runner_sh);

        if (req && timeout_ms)
                json_object_set_new(req, "timeout_ms", json_integer(timeout_ms));
        return handle_obj(req);
}

/* The session's directory gone, nothing else is left: no runner's own directory. */
static void rm_next_runner_dir(void)
{
        char cmd[PATH_MAX + 64];

        snprintf(cmd, sizeof(cmd), "rm -rf %s/session-nr-1", workdir);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(rundirs_left(), 0);
}

/* Until the starting runner has written its ready line (it is not read). */
static void wait_runner_ready(void)
{
        struct pollfd p = {.fd = ag.warm.ctl_fd, .events = POLLIN};

        assert_true(ag.warm_pending);
        assert_int_equal(poll(&p, 1, 60 * 1000), 1);
}

/* "next_runner": once a session's call is answered (agent_answered()) the runner it names starts
 * without being waited for; the next call runs on it once it is ready, and leaves the next one
 * starting. A call without "warm" ends one. */
static void test_next_runner(void **state)
{
        static const char runner[] = "echo ready >&3; read -r job <&3; echo runner $$";
        char want[64];
        pid_t prev = 0;
        json_t *a;

        a = next_runner_call(runner, 0); /* nothing waits yet: the cold way */
        assert_ok_warm_used(a, false);
        assert_string_equal(str(a, "stdout"), "cold\n");
        json_decref(a);
        for (int i = 0; i < 3; i++) {
                assert_false(ag.warm_pending);
                agent_answered(&ag);
                assert_true(ag.warm_pending);
                assert_false(ag.warm_waiting);
                assert_true(ag.warm.pid > 1 && ag.warm.pid != prev);
                prev = ag.warm.pid;
                wait_runner_ready();
                a = next_runner_call(runner, 0);
                assert_ok_warm_used(a, true);
                snprintf(want, sizeof(want), "runner %d\n", (int)prev);
                assert_string_equal(str(a, "stdout"), want);
                json_decref(a);
                assert_gone(prev);
        }
        agent_answered(&ag);
        prev = ag.warm.pid;
        assert_true(ag.warm_pending && prev > 1);
        a = handle("{\"op\":\"exec\",\"argv\":[\"echo\",\"plain\"],\"workdir\":\"nr-1\"}");
        assert_ok_warm_used(a, false);
        assert_string_equal(str(a, "stdout"), "plain\n");
        json_decref(a);
        assert_gone(prev);
        assert_false(ag.warm_pending || ag.warm_waiting);
        agent_answered(&ag); /* that call asked for none */
        assert_false(ag.warm_pending || ag.warm_waiting);
        rm_next_runner_dir();
}

/* A runner that is not ready when the next call comes is ended, and the call runs the cold way
 * (waiting would take longer); so is one that ended before it was ready. */
static void test_next_runner_not_ready(void **state)
{
        static const char *const runners[] = {
            "read -r never; echo ready >&3", /* waits on its stdin, which nothing writes */
            "exit 3",
        };

        for (size_t i = 0; i < sizeof(runners) / sizeof(runners[0]); i++) {
                json_t *a;
                pid_t pid;

                a = next_runner_call(runners[i], 0);
                assert_ok_warm_used(a, false);
                json_decref(a);
                agent_answered(&ag);
                pid = ag.warm.pid;
                assert_true(ag.warm_pending && pid > 1);
                if (i == 1)
                        wait_exited(pid);
                a = next_runner_call("exit 0", 0);
                assert_ok_warm_used(a, false);
                assert_string_equal(str(a, "stdout"), "cold\n");
                json_decref(a);
                assert_gone(pid);
                assert_false(ag.warm_waiting);
                agent_done(&ag); /* the runner that call asked for is not started */
                assert_false(ag.warm_pending || ag.next_runner);
        }
        rm_next_runner_dir();
}

/* While the agent is idle a starting runner has its ready deadline: past it, one that is ready
 * waits for the next call, one that is not is ended. */
static void test_next_runner_idle_deadline(void **state)
{
        json_t *a =
            handle_obj(json_pack("{s:s, s:[s], s:s, s:{s:[s,s,s], s:i}}", "op", "exec", "argv",
                                 "true", "workdir", "nr-1", "next_runner", "argv", "sh", "-c",
                                 "read -r never; echo ready >&3", "ready_timeout_ms", 300));
        pid_t pid;
        int ms;

        assert_ok_warm_used(a, false);
        json_decref(a);
        assert_int_equal(agent_idle_timeout_ms(&ag), -1);
        agent_answered(&ag);
        pid = ag.warm.pid;
        ms = agent_idle_timeout_ms(&ag);
        assert_true(ms >= 0 && ms <= 300);
        agent_idle_expired(&ag);
        assert_gone(pid);
        assert_false(ag.warm_pending || ag.warm_waiting);
        assert_int_equal(agent_idle_timeout_ms(&ag), -1);

        a = handle_obj(json_pack("{s:s, s:[s], s:s, s:{s:[s,s,s]}}", "op", "exec", "argv", "true",
                                 "workdir", "nr-1", "next_runner", "argv", "sh", "-c",
                                 "echo ready >&3; read -r job <&3"));
        json_decref(a);
        agent_answered(&ag);
        wait_runner_ready();
        agent_idle_expired(&ag);
        assert_true(ag.warm_waiting && !ag.warm_pending);
        assert_int_equal(agent_idle_timeout_ms(&ag), -1);
        agent_done(&ag);
        rm_next_runner_dir();
}

static void test_warm_bad_requests(void **state)
{
        static const char *const bad[] = {
            "{\"op\":\"warm\"}",
            "{\"op\":\"warm\",\"argv\":[]}",
            "{\"op\":\"warm\",\"argv\":[\"\"]}",
            "{\"op\":\"warm\",\"argv\":\"python3\"}",
            "{\"op\":\"warm\",\"argv\":[\"sh\"],\"bogus\":1}",
            "{\"op\":\"warm\",\"argv\":[\"sh\"],\"file\":\"x\"}",
            "{\"op\":\"warm\",\"argv\":[\"sh\"],\"ready_timeout_ms\":0}",
            "{\"op\":\"warm\",\"argv\":[\"sh\"],\"ready_timeout_ms\":300001}",
            "{\"op\":\"warm\",\"argv\":[\"sh\"],\"ready_timeout_ms\":\"5\"}",
            "{\"op\":\"warm\",\"argv\":[\"sh\"],\"env\":{\"1X\":\"y\"}}",
            "{\"op\":\"warm\",\"argv\":[\"sh\"],\"env\":[]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"warm\":1}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"warm\":\"yes\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"warm\":true}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"m\",\"code\":\"\",\"args\":\"x\"}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"m\",\"code\":\"\",\"args\":[1]}",
            ("{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"m\",\"code\":\"\","
             "\"args\":[\"a\\u0000b\"]}"),
            /* "next_runner": an object like "warm"'s, on a session's call that is not a repl's */
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"workdir\":\"s\",\"next_runner\":[\"sh\"]}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"next_runner\":{\"argv\":[\"sh\"]}}",
            "{\"op\":\"exec\",\"argv\":[\"true\"],\"workdir\":\"s\",\"next_runner\":{}}",
            ("{\"op\":\"exec\",\"argv\":[\"true\"],\"workdir\":\"s\","
             "\"next_runner\":{\"argv\":[\"sh\"],\"file\":\"x\"}}"),
            ("{\"op\":\"exec\",\"argv\":[\"true\"],\"workdir\":\"s\","
             "\"next_runner\":{\"argv\":[\"sh\"],\"ready_timeout_ms\":0}}"),
            ("{\"op\":\"exec\",\"argv\":[\"sh\"],\"file\":\"m\",\"code\":\"\",\"workdir\":\"s\","
             "\"repl\":[\"sh\"],\"next_runner\":{\"argv\":[\"sh\"]}}"),
            ("{\"op\":\"prime\",\"argv\":[\"sh\"],\"runner\":{\"argv\":[\"sh\"]},"
             "\"workdir\":\"s\",\"next_runner\":{\"argv\":[\"sh\"]}}"),
        };
        json_t *req, *a;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_request_error(bad[i], "bad_request");
        assert_false(ag.warm_waiting);

        req = json_pack("{s:s, s:[s], s:s, s:s, s:[]}", "op", "exec", "argv", "true", "file", "m",
                        "code", "", "args");
        for (int i = 0; i < 301; i++)
                json_array_append_new(json_object_get(req, "args"), json_string("x"));
        a = agent_handle(&ag, req);
        assert_error(a, "bad_request");
        json_decref(a);
        json_decref(req);

        a = handle("{\"op\":\"exec\",\"argv\":[\"true\"],\"file\":\"m\",\"code\":\"\","
                   "\"args\":[],\"warm\":false}");
        assert_ok_warm_used(a, false);
        json_decref(a);
        assert_int_equal(rundirs_left(), 0);
}

/* languages/warm/python.py in the source tree. */
/* languages/warm/<name> in the source tree. */
static char *warm_file(const char *name)
{
        char *path, *here = strdup(__FILE__);
        const char *src = getenv("OP_SOURCE_DIR");

        assert_non_null(here);
        if (!src)
                src = dirname(dirname(dirname(here))); /* tests/unit/test-agent-proto.c */
        assert_true(asprintf(&path, "%s/languages/warm/%s", src, name) > 0);
        free(here);
        return path;
}

static void test_warm_python(void **state)
{
        char *runner = warm_file("python.py");
        json_t *a;
        pid_t pid;

        if (access(runner, R_OK) < 0) {
                fprintf(stderr, "%s: %s\n", runner, strerror(errno));
                fail();
        }
        pid = warm(json_pack("[s,s,s]", "python3", "-I", runner));
        a = handle("{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\",\"a\"],\"args\":[\"a\"],"
                   "\"file\":\"main.py\",\"warm\":true,"
                   "\"code\":\"import sys; print(\\\"hi\\\", sys.argv[1:]); sys.exit(3)\"}");
        assert_ran_warm(a, "hi ['a']\n", "", 3);
        assert_gone(pid);

        /* stdin, env, cwd, files, __main__ as with `python3 main.py`. */
        warm(json_pack("[s,s,s]", "python3", "-I", runner));
        a = handle("{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\"],\"file\":\"main.py\","
                   "\"warm\":true,\"stdin\":\"abc\",\"env\":{\"FOO\":\"bar\"},"
                   "\"files\":[{\"name\":\"data.txt\",\"content\":\"hello\"}],"
                   "\"code\":\"import os, sys\\nprint(sys.stdin.read().upper(), "
                   "os.environ['FOO'], os.getcwd() == os.environ['HOME'], __name__, "
                   "open('data.txt').read())\\n\"}");
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "ABC bar True __main__ hello\n");
        assert_int_equal(exit_code(a), 0);
        json_decref(a);

        /* An exception: exit code 1, a traceback of the user's file only. */
        warm(json_pack("[s,s,s]", "python3", "-I", runner));
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\"],\"file\":\"main.py\","
            "\"warm\":true,\"code\":\"def f():\\n    raise ValueError('nope')\\n\\nf()\\n\"}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 1);
        assert_non_null(strstr(str(a, "stderr"), "Traceback (most recent call last):\n"));
        assert_non_null(strstr(str(a, "stderr"), "main.py\", line 4, in <module>"));
        assert_non_null(strstr(str(a, "stderr"), "main.py\", line 2, in f"));
        assert_non_null(strstr(str(a, "stderr"), "ValueError: nope\n"));
        assert_null(strstr(str(a, "stderr"), "runpy"));
        assert_null(strstr(str(a, "stderr"), "python.py"));
        json_decref(a);
        assert_int_equal(rundirs_left(), 0);
        free(runner);
}

/* "prime" with "runner": the runner is started by the prime, then primed (with "file" and
 * "code") or left waiting (without). */
static void test_prime_starts_runner(void **state)
{
        char *runner = warm_file("python.py");
        json_t *a;

        /* No program: the runner is started and waits; the next exec runs on it. */
        a = handle_obj(json_pack("{s:s, s:s, s:{s:[s,s,s], s:i}, s:[s]}", "op", "prime", "id", "p",
                                 "runner", "argv", "python3", "-c", SH_RUNNER, "ready_timeout_ms",
                                 60000, "argv", "sh"));
        if (!json_is_true(json_object_get(a, "ok")))
                dump("prime", a);
        assert_true(json_is_true(json_object_get(a, "primed")));
        assert_true(json_is_number(json_object_get(a, "run_ms")));
        json_decref(a);
        assert_true(ag.warm_waiting);
        /* one runner at a time */
        assert_request_error("{\"op\":\"prime\",\"runner\":{\"argv\":[\"true\"]},"
                             "\"argv\":[\"sh\"]}",
                             "bad_request");
        assert_true(ag.warm_waiting);
        a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"m.sh\"],\"file\":\"m.sh\",\"warm\":true,"
                   "\"args\":[\"x\"],\"code\":\"echo \\\"on the runner $1\\\"\"}");
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "on the runner x\n");
        json_decref(a);
        assert_false(ag.warm_waiting);

        /* With a program: the runner is started, then primed, and serves the exec after. */
        a = handle_obj(json_pack("{s:s, s:{s:[s,s,s]}, s:[s,s], s:s, s:s}", "op", "prime", "runner",
                                 "argv", "python3", "-I", runner, "argv", "python3", "main.py",
                                 "file", "main.py", "code", "import sys; print('primed')"));
        assert_primed(a);
        assert_true(ag.warm_waiting);
        a = handle("{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\"],\"file\":\"main.py\","
                   "\"warm\":true,\"code\":\"print('user')\"}");
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "user\n");
        json_decref(a);

        /* A runner that cannot start: the prime fails, saying why, and nothing waits. */
        a = handle(
            "{\"op\":\"prime\",\"runner\":{\"argv\":[\"sh\",\"-c\",\"echo no >&2; exit 4\"]},"
            "\"argv\":[\"sh\"],\"file\":\"m.sh\",\"code\":\"\"}");
        assert_non_null(strstr(error_message(a), "exited with code 4 before it was ready: no"));
        json_decref(a);
        assert_false(ag.warm_waiting);

        /* Bad requests start nothing. */
        assert_request_error("{\"op\":\"prime\",\"argv\":[\"sh\"]}", "bad_request");
        assert_request_error("{\"op\":\"prime\",\"runner\":[\"sh\"],\"argv\":[\"sh\"]}",
                             "bad_request");
        assert_request_error("{\"op\":\"prime\",\"runner\":{\"argv\":[]},\"argv\":[\"sh\"]}",
                             "bad_request");
        assert_request_error("{\"op\":\"prime\",\"runner\":{\"argv\":[\"sh\"],\"file\":\"x\"},"
                             "\"argv\":[\"sh\"]}",
                             "bad_request");
        assert_request_error("{\"op\":\"prime\",\"runner\":{\"argv\":[\"sh\"],"
                             "\"ready_timeout_ms\":0},\"argv\":[\"sh\"]}",
                             "bad_request");
        assert_request_error("{\"op\":\"prime\",\"runner\":{\"argv\":[\"sh\"]},\"argv\":[\"sh\"],"
                             "\"bogus\":1}",
                             "bad_request");
        assert_request_error("{\"op\":\"exec\",\"runner\":{\"argv\":[\"sh\"]},\"argv\":[\"sh\"]}",
                             "bad_request");
        assert_false(ag.warm_waiting);
        assert_int_equal(rundirs_left(), 0);
        free(runner);
}

/* languages/warm/node.js on this host's node, when there is one: a program run by it behaves as
 * with `node main.js` (argv, stdin, exit code, an uncaught exception, a syntax error), primed or
 * not. */
static void test_warm_node(void **state)
{
        char *node;
        json_t *a;

        if (system("node --version >/dev/null 2>&1") != 0)
                skip();
        node = warm_file("node.js");
        warm(json_pack("[s,s]", "node", node));
        a = handle_obj(json_pack("{s:s, s:[s,s], s:s, s:s}", "op", "prime", "argv", "node",
                                 "main.js", "file", "main.js", "code",
                                 "console.log('hello', process.argv.slice(2))"));
        assert_primed(a);
        a = handle("{\"op\":\"exec\",\"argv\":[\"node\",\"main.js\",\"a b\"],\"args\":[\"a b\"],"
                   "\"file\":\"main.js\",\"warm\":true,\"stdin\":\"in\","
                   "\"code\":\"const p = require('path');\\n"
                   "console.log(process.argv.slice(1).map((s) => p.basename(s)), require.main === "
                   "module, require('fs').readFileSync(0, 'utf8'), process.cwd() === "
                   "process.env.HOME);\\nconsole.error('e');\\nprocess.exitCode = 3;\"}");
        assert_ran_warm(a, "[ 'main.js', 'a b' ] true in true\n", "e\n", 3);

        warm(json_pack("[s,s]", "node", node));
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"node\",\"main.js\"],\"file\":\"main.js\","
            "\"warm\":true,\"code\":\"function f() { throw new TypeError('nope'); }\\nf();\"}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 1);
        assert_non_null(strstr(str(a, "stderr"), "main.js:1\n"));
        assert_non_null(strstr(str(a, "stderr"), "TypeError: nope\n    at f ("));
        assert_null(strstr(str(a, "stderr"), "node.js"));
        json_decref(a);

        warm(json_pack("[s,s]", "node", node));
        a = handle("{\"op\":\"exec\",\"argv\":[\"node\",\"main.js\"],\"file\":\"main.js\","
                   "\"warm\":true,\"code\":\"console.log(1);\\nlet x = ;\"}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 1);
        assert_string_equal(str(a, "stdout"), "");
        assert_non_null(strstr(str(a, "stderr"), "main.js:2\nlet x = ;\n        ^\n"));
        assert_non_null(strstr(str(a, "stderr"), "SyntaxError: Unexpected token ';'\n"));
        json_decref(a);

        warm(json_pack("[s,s]", "node", node));
        a = handle("{\"op\":\"exec\",\"argv\":[\"node\",\"main.js\"],\"file\":\"main.js\","
                   "\"warm\":true,\"code\":\"setTimeout(() => { console.log('later'); "
                   "process.exit(5); }, 10);\\nconsole.log('now');\"}");
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "now\nlater\n");
        assert_int_equal(exit_code(a), 5);
        json_decref(a);
        assert_int_equal(rundirs_left(), 0);
        free(node);
}

/* tsc's compile command for main.ts on this host, with the catalogue's arguments and
 * declarations (languages/typescript/node.d.ts of this tree). */
static json_t *tsc_compile(void)
{
        char *decls = warm_file("../typescript/node.d.ts");
        json_t *c = json_pack("{s:[s,s,s,s,s,s,s,s], s:i, s:i}", "argv", "tsc", "--target",
                              "es2020", "--module", "commonjs", "--noEmitOnError", decls, "main.ts",
                              "timeout_ms", 120000, "output_max", 65536);

        free(decls);
        assert_non_null(c);
        return c;
}

/* An exec of main.ts's code through tsc then `node main.js`, on the runner. */
static json_t *tsc_exec(const char *code, const char *arg, const char *env_name,
                        const char *env_value)
{
        json_t *req = json_pack("{s:s, s:[s,s], s:[], s:s, s:b, s:s, s:s, s:o}", "op", "exec",
                                "argv", "node", "main.js", "args", "file", "main.ts", "warm", 1,
                                "stdin", "in", "code", code, "compile", tsc_compile());

        assert_non_null(req);
        if (arg) {
                json_array_append_new(json_object_get(req, "argv"), json_string(arg));
                json_array_append_new(json_object_get(req, "args"), json_string(arg));
        }
        if (env_name)
                json_object_set_new(req, "env", json_pack("{s:s}", env_name, env_value));
        return handle_obj(req);
}

/* The compile phase of an answer a: tsc's stdout and exit code, nothing on stderr. */
static void assert_tsc(json_t *a, const char *out, int code)
{
        json_t *c = json_object_get(a, "compile");

        if (!json_is_object(c))
                dump("tsc", a);
        assert_true(json_is_object(c));
        assert_string_equal(str(c, "stdout"), out);
        assert_string_equal(str(c, "stderr"), "");
        assert_int_equal(exit_code(c), code);
}

/* languages/warm/node.js with its TypeScript front end (languages/warm/typescript.js) on this
 * host's node, when it has Debian's tsc: the agent hands the runner the compile command, which
 * it runs with tsc's compiler in its process (tsc's diagnostics on stdout, its exit status;
 * --noEmitOnError), then main.js runs as with `node main.js` (argv, stdin, exit code, an
 * uncaught exception); primed by a compile and a run, or not; NODE_OPTIONS compiled and run by
 * processes of their own. */
static void test_warm_typescript(void **state)
{
        char *node, *ts;
        json_t *a;

        if (system("node --version >/dev/null 2>&1 && tsc --version >/dev/null 2>&1") != 0)
                skip();
        node = warm_file("node.js");
        ts = warm_file("typescript.js");
        warm(json_pack("[s,s,s]", "node", node, ts));
        /* The prime compiles (tsc takes seconds) and runs. */
        a = handle_obj(json_pack("{s:s, s:[s,s], s:s, s:s, s:o, s:i}", "op", "prime", "argv",
                                 "node", "main.js", "file", "main.ts", "code",
                                 "const args: string[] = process.argv.slice(2);\n"
                                 "console.log('hello', args.join(' '));\n",
                                 "compile", tsc_compile(), "timeout_ms", 120000));
        assert_primed(a);
        a = tsc_exec("const p = require('path');\n"
                     "const s: string = require('fs').readFileSync(0, 'utf8');\n"
                     "console.log(process.argv.slice(1).map((a: string) => p.basename(a)),\n"
                     "  (require as any).main === module, s, process.cwd() === process.env.HOME);\n"
                     "console.error('e');\nprocess.exitCode = 3;\n",
                     "a b", NULL, NULL);
        assert_tsc(a, "", 0);
        assert_ran_warm(a, "[ 'main.js', 'a b' ] true in true\n", "e\n", 3);

        /* A type error: tsc's report and exit status, nothing run. */
        warm(json_pack("[s,s,s]", "node", node, ts));
        a = tsc_exec("const s: string = 1;\nconsole.log(s);\n", NULL, NULL, NULL);
        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_string_equal(str(a, "status"), "compile_error");
        assert_tsc(a,
                   "main.ts(1,7): error TS2322: Type 'number' is not assignable to type "
                   "'string'.\n",
                   1);
        assert_string_equal(str(a, "stdout"), "");
        json_decref(a);

        /* Thrown as the program runs: node's report, exit 1. */
        warm(json_pack("[s,s,s]", "node", node, ts));
        a = tsc_exec("function f(): void { throw new TypeError('nope'); }\nf();\n", NULL, NULL,
                     NULL);
        assert_tsc(a, "", 0);
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 1);
        assert_non_null(strstr(str(a, "stderr"), "main.js:1\n"));
        assert_non_null(strstr(str(a, "stderr"), "TypeError: nope\n    at f ("));
        assert_null(strstr(str(a, "stderr"), "/warm/"));
        json_decref(a);

        /* NODE_OPTIONS is read as node starts: a tsc and a node of their own. */
        warm(json_pack("[s,s,s]", "node", node, ts));
        a = tsc_exec("console.log(process.title, process.argv.slice(2));\nprocess.exit(4);\n", "x",
                     "NODE_OPTIONS", "--title=fresh");
        assert_tsc(a, "", 0);
        assert_ran_warm(a, "fresh [ 'x' ]\n", "", 4);
        assert_int_equal(rundirs_left(), 0);
        free(ts);
        free(node);
}

/* languages/warm/node.js with its CoffeeScript front end (languages/warm/coffee.js) on this
 * host's node, when it has coffee: a program run by it behaves as with `coffee main.coffee`
 * (argv, stdin, exit code, an error thrown as it runs, a compile error, NODE_OPTIONS), primed or
 * not. */
static void test_warm_coffee(void **state)
{
        char *node, *coffee;
        json_t *a;

        if (system("node --version >/dev/null 2>&1 && coffee --version >/dev/null 2>&1") != 0)
                skip();
        node = warm_file("node.js");
        coffee = warm_file("coffee.js");
        warm(json_pack("[s,s,s]", "node", node, coffee));
        a = handle_obj(json_pack("{s:s, s:[s,s], s:s, s:s}", "op", "prime", "argv", "coffee",
                                 "main.coffee", "file", "main.coffee", "code",
                                 "console.log 'hello', process.argv[2..]"));
        assert_primed(a);
        a = handle("{\"op\":\"exec\",\"argv\":[\"coffee\",\"main.coffee\",\"a b\"],"
                   "\"args\":[\"a b\"],\"file\":\"main.coffee\",\"warm\":true,\"stdin\":\"in\","
                   "\"code\":\"p = require 'path'\\nconsole.log process.argv[0], "
                   "(p.basename s for s in process.argv[1..]), require.main is module, "
                   "require('fs').readFileSync(0, 'utf8'), process.cwd() is process.env.HOME\\n"
                   "console.error 'e'\\nprocess.exitCode = 3\"}");
        assert_ran_warm(a, "coffee [ 'main.coffee', 'a b' ] true in true\n", "e\n", 3);

        /* Thrown as the program runs: coffee prints the stack and exits 1. */
        warm(json_pack("[s,s,s]", "node", node, coffee));
        a = handle("{\"op\":\"exec\",\"argv\":[\"coffee\",\"main.coffee\"],"
                   "\"file\":\"main.coffee\",\"warm\":true,"
                   "\"code\":\"f = -> throw new TypeError 'nope'\\nf()\"}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 1);
        assert_non_null(strstr(str(a, "stderr"), "TypeError: nope\n    at f ("));
        assert_non_null(strstr(str(a, "stderr"), "/main.coffee:"));
        assert_null(strstr(str(a, "stderr"), "node.js"));
        assert_null(strstr(str(a, "stderr"), "coffee.js"));
        json_decref(a);

        /* A compile error: coffee's report, exit 1, nothing run. */
        warm(json_pack("[s,s,s]", "node", node, coffee));
        a = handle("{\"op\":\"exec\",\"argv\":[\"coffee\",\"main.coffee\"],"
                   "\"file\":\"main.coffee\",\"warm\":true,"
                   "\"code\":\"console.log 1\\nx = )\"}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 1);
        assert_string_equal(str(a, "stdout"), "");
        assert_non_null(
            strstr(str(a, "stderr"), "/main.coffee:2:5: error: unmatched )\nx = )\n    ^\n"));
        json_decref(a);

        /* NODE_OPTIONS is read as node starts: a coffee of its own runs the program. */
        warm(json_pack("[s,s,s]", "node", node, coffee));
        a = handle("{\"op\":\"exec\",\"argv\":[\"coffee\",\"main.coffee\",\"x\"],"
                   "\"args\":[\"x\"],\"file\":\"main.coffee\",\"warm\":true,"
                   "\"env\":{\"NODE_OPTIONS\":\"--title=fresh\"},"
                   "\"code\":\"console.log process.title, process.argv[0], process.argv[2..]\\n"
                   "process.exit 4\"}");
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "fresh coffee [ 'x' ]\n");
        assert_int_equal(exit_code(a), 4);
        json_decref(a);
        assert_int_equal(rundirs_left(), 0);
        free(coffee);
        free(node);
}

/* An exec of file with code, on the command cmd (a reference is taken over) with the
 * request's args appended, as opd sends it; on the warm runner or not. */
static json_t *lang_exec(json_t *cmd, const char *file, const char *code, json_t *args,
                         const char *stdin_text, json_t *env, bool warm)
{
        size_t i;
        json_t *v;

        assert_non_null(cmd);
        json_array_foreach (args, i, v)
                assert_int_equal(json_array_append(cmd, v), 0);
        return handle_obj(json_pack("{s:s, s:o, s:o, s:s, s:b, s:s, s:o, s:s}", "op", "exec",
                                    "argv", cmd, "args", args, "file", file, "warm", warm, "stdin",
                                    stdin_text, "env", env, "code", code));
}

/* w ran on the runner and c cold, and they read the same: stdout, exit status, and stderrs of
 * one length (a backtrace names the run's own directory). */
static void assert_same_run(json_t *w, json_t *c)
{
        assert_ok_warm_used(w, true);
        assert_ok_warm_used(c, false);
        assert_string_equal(str(w, "stdout"), str(c, "stdout"));
        assert_int_equal(exit_code(w), exit_code(c));
        assert_int_equal(strlen(str(w, "stderr")), strlen(str(c, "stderr")));
}

/* languages/warm/guile.scm on this host's guile: primed, it hands the program to guile's own
 * `-s`, so a warm run reads as `guile-3.0 --no-auto-compile -s main.scm` run cold by the same
 * agent: the command line, stdin, the environment, the directory, `random`'s numbers, the exit
 * status, an error's backtrace; a variable guile reads as it starts gets a fresh guile. */
static json_t *guile_exec(const char *code, json_t *args, json_t *env, bool warm)
{
        return lang_exec(json_pack("[s,s,s,s]", "guile-3.0", "--no-auto-compile", "-s", "main.scm"),
                         "main.scm", code, args, "x\ny\n", env, warm);
}

static void test_warm_guile(void **state)
{
        static const char *const programs[] = {
            "(use-modules (ice-9 format) (ice-9 textual-ports))\n"
            "(format #t \"~s ~s ~s ~a~%\" (command-line) (get-string-all (current-input-port))\n"
            "        (getenv \"GREETING\") (string=? (getcwd) (getenv \"HOME\")))\n"
            "(display (list (random 1000000) (module-name (current-module))))\n"
            "(newline)\n(display \"to stderr\\n\" (current-error-port))\n(exit 3)\n",
            "(display 1)\n(newline)\n(define (f v) (vector-ref v 5))\n(f (vector 1 2))\n",
            "(display (read-line))\n",
        };
        char *runner = warm_file("guile.scm");
        json_t *a, *c;

        (void)state;
        if (system("guile-3.0 -c '' >/dev/null 2>&1") != 0)
                skip();
        for (size_t i = 0; i < sizeof(programs) / sizeof(programs[0]); i++) {
                warm(json_pack("[s,s,s,s,s,s]", "guile-3.0", "--no-auto-compile", "-l", runner,
                               "-s", "main.scm"));
                a = handle_obj(json_pack("{s:s, s:[s,s], s:s, s:s}", "op", "prime", "argv",
                                         "guile-3.0", "main.scm", "file", "main.scm", "code",
                                         "(display (random 10))\n(set! x 1)\n"));
                assert_primed(a);
                a = guile_exec(programs[i], json_pack("[s,s]", "a b", "c"),
                               json_pack("{s:s}", "GREETING", "hi"), true);
                c = guile_exec(programs[i], json_pack("[s,s]", "a b", "c"),
                               json_pack("{s:s}", "GREETING", "hi"), false);
                assert_same_run(a, c);
                if (i == 0) {
                        assert_non_null(strstr(str(a, "stdout"), "(\"main.scm\" \"a b\" \"c\") "
                                                                 "\"x\\ny\\n\" \"hi\" #t\n("));
                        assert_string_equal(str(a, "stderr"), "to stderr\n");
                        assert_int_equal(exit_code(a), 3);
                } else
                        assert_int_equal(exit_code(a), 1);
                json_decref(a);
                json_decref(c);
        }

        /* GUILE_* is read as guile starts: a guile of its own runs the program. */
        warm(json_pack("[s,s,s,s,s,s]", "guile-3.0", "--no-auto-compile", "-l", runner, "-s",
                       "main.scm"));
        a = guile_exec("(use-modules (ice-9 textual-ports))\n"
                       "(display (list (command-line) (getenv \"GUILE_WARN_DEPRECATED\")))\n"
                       "(display (string-contains (call-with-input-file \"/proc/self/cmdline\"\n"
                       "  (lambda (p) (get-string-all p))) \"warm\"))\n",
                       json_pack("[s]", "q"), json_pack("{s:s}", "GUILE_WARN_DEPRECATED", "no"),
                       true);
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "((main.scm q) no)#f");
        assert_int_equal(exit_code(a), 0);
        json_decref(a);
        free(runner);
}

/* languages/warm/emacs.el on this host's emacs: primed, it hands the program to emacs's own
 * command-line loop as `--script main.el` would, so a warm run reads as `emacs --batch
 * --no-site-file --script main.el` run cold by the same agent: the arguments, stdin, the
 * environment, the directory, the exit status, an error's backtrace; a variable emacs reads as
 * it starts gets an emacs of its own. */
static json_t *emacs_exec(const char *code, json_t *args, json_t *env, bool warm)
{
        return lang_exec(
            json_pack("[s,s,s,s,s]", "emacs", "--batch", "--no-site-file", "--script", "main.el"),
            "main.el", code, args, "x\ny\n", env, warm);
}

static void test_warm_emacs(void **state)
{
        static const char *const programs[] = {
            "(princ (format \"%S %S %S %S %S\\n\" command-line-args-left\n"
            "  (read-from-minibuffer \"\") (getenv \"GREETING\") default-directory\n"
            "  (equal (expand-file-name default-directory)\n"
            "         (file-name-as-directory (getenv \"HOME\")))))\n"
            "(message \"to stderr\")\n(kill-emacs 3)\n",
            "(princ 1)\n(defun f (v) (aref v 5))\n(f (vector 1 2))\n",
            "(princ (undefined-thing 1))\n",
            /* A message before any output: no newline before it, as in a fresh emacs. */
            "(message \"first\")\n(princ 2)\n",
        };
        char *runner = warm_file("emacs.el");
        json_t *a, *c;

        (void)state;
        if (system("emacs --batch --eval '(kill-emacs 0)' >/dev/null 2>&1") != 0)
                skip();
        for (size_t i = 0; i < sizeof(programs) / sizeof(programs[0]); i++) {
                warm(json_pack("[s,s,s,s,s]", "emacs", "--batch", "--no-site-file", "-l", runner));
                a = handle_obj(json_pack("{s:s, s:[s,s], s:s, s:s}", "op", "prime", "argv", "emacs",
                                         "main.el", "file", "main.el", "code",
                                         "(princ (format \"hello %s\\n\" command-line-args-left))\n"
                                         "(car 1)\n"));
                assert_primed(a);
                a = emacs_exec(programs[i], json_pack("[s,s]", "a b", "c"),
                               json_pack("{s:s}", "GREETING", "hi"), true);
                c = emacs_exec(programs[i], json_pack("[s,s]", "a b", "c"),
                               json_pack("{s:s}", "GREETING", "hi"), false);
                assert_same_run(a, c);
                if (i == 0) {
                        assert_string_equal(str(a, "stdout"),
                                            "(\"a b\" \"c\") \"x\" \"hi\" \"~/\" t\n");
                        /* emacs starts a message on a new line once its standard output
                         * was written to */
                        assert_string_equal(str(a, "stderr"), "\nto stderr\n");
                        assert_string_equal(str(a, "stderr"), str(c, "stderr"));
                        assert_int_equal(exit_code(a), 3);
                } else if (i == 3) {
                        assert_string_equal(str(a, "stderr"), "first\n");
                        assert_string_equal(str(c, "stderr"), "first\n");
                        assert_int_equal(exit_code(a), 0);
                } else {
                        assert_non_null(strstr(str(a, "stderr"), "command-line-1((\"-scriptload\" "
                                                                 "\"main.el\" \"a b\" \"c\"))"));
                        assert_int_equal(exit_code(a), 255);
                }
                json_decref(a);
                json_decref(c);
        }

        /* LC_ALL is read as emacs starts: an emacs of its own runs the program. */
        warm(json_pack("[s,s,s,s,s]", "emacs", "--batch", "--no-site-file", "-l", runner));
        a = emacs_exec("(princ (format \"%S %S %S %S\" command-line-args-left (getenv \"LC_ALL\")\n"
                       "  (read-from-minibuffer \"\")\n"
                       "  (with-temp-buffer\n"
                       "    (insert-file-contents-literally \"/proc/self/cmdline\")\n"
                       "    (string-match-p \"warm\" (buffer-string)))))\n(kill-emacs 4)\n",
                       json_pack("[s]", "q"), json_pack("{s:s}", "LC_ALL", "C"), true);
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "(\"q\") \"C\" \"x\" nil");
        assert_int_equal(exit_code(a), 4);
        json_decref(a);
        free(runner);
}

/* languages/warm/raku/OpWarmRaku.rakumod on this host's rakudo, when there is one: started as a
 * clone starts it, primed, it runs a program as `raku main.raku` would: @*ARGS, $*PROGRAM-NAME,
 * stdin, the environment, the run's directory, the exit status; an uncaught exception, a compile
 * error and `sub MAIN`'s usage as raku reports them; a variable raku reads as it starts gets a
 * fresh raku. */
static json_t *raku_exec(const char *code, json_t *args, const char *stdin_text, json_t *env)
{
        return lang_exec(json_pack("[s,s]", "raku", "main.raku"), "main.raku", code, args,
                         stdin_text, env, true);
}

static void test_warm_raku(void **state)
{
        char dir[] = "/tmp/op-raku-runner-XXXXXX", *module, *cmd, *runner;
        json_t *a;

        (void)state;
        if (system("raku -e '' >/dev/null 2>&1") != 0)
                skip();
        /* The module in a directory of its own, where raku precompiles it (as the image's
         * setup does), started as the catalogue's warm.run starts it. */
        assert_non_null(mkdtemp(dir));
        module = warm_file("raku/OpWarmRaku.rakumod");
        assert_true(asprintf(&cmd, "cp '%s' '%s/'", module, dir) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        assert_true(asprintf(&runner,
                             "my %%e; BEGIN { %%e = %%*ENV; %%*ENV<HOME>:delete }; use lib '%s'; "
                             "use OpWarmRaku; op-warm-run(%%e)",
                             dir) > 0);
        warm(json_pack("[s,s,s]", "raku", "-e", runner));
        a = handle_obj(json_pack("{s:s, s:[s,s], s:s, s:s}", "op", "prime", "argv", "raku",
                                 "main.raku", "file", "main.raku", "code",
                                 "END { say 'end' }\nour $x = 1;\nsay \"hello @*ARGS[]\";\n"));
        assert_primed(a);
        a = raku_exec("say @*ARGS.raku, ' ', $*PROGRAM-NAME, ' ', $*PROGRAM.absolute eq "
                      "\"$*CWD/main.raku\";\n"
                      "say $*IN.lines.reverse.join(','), ' ', %*ENV<GREETING>, ' ', "
                      "$*CWD eq %*ENV<HOME>, ' ', GLOBAL::.keys.elems;\n"
                      "say '/proc/self/cmdline'.IO.slurp.contains('OpWarmRaku');\n"
                      "note 'to stderr';\nEND { say 'program end' }\nexit 3;\n",
                      json_pack("[s,s]", "a b", "c"), "x\ny\n",
                      json_pack("{s:s}", "GREETING", "hi"));
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "[\"a b\", \"c\"] main.raku True\ny,x hi True 0\n"
                                              "True\nprogram end\n");
        assert_string_equal(str(a, "stderr"), "to stderr\n");
        assert_int_equal(exit_code(a), 3);
        json_decref(a);

        /* An uncaught exception: raku's report, the program's frames only, status 1. */
        warm(json_pack("[s,s,s]", "raku", "-e", runner));
        a = raku_exec("sub f { die 'boom' }\nsay 'before';\nf();\n", json_array(), "",
                      json_object());
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "before\n");
        assert_string_equal(str(a, "stderr"),
                            "boom\n  in sub f at main.raku line 1\n  in block <unit> at main.raku "
                            "line 3\n\n");
        assert_int_equal(exit_code(a), 1);
        json_decref(a);

        /* A compile error: nothing runs, ===SORRY!=== and status 1. */
        warm(json_pack("[s,s,s]", "raku", "-e", runner));
        a = raku_exec("say 1;\nmy $x = ;\n", json_array(), "", json_object());
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "");
        assert_non_null(strstr(str(a, "stderr"), "SORRY!"));
        assert_non_null(strstr(str(a, "stderr"), "/main.raku\nMalformed initializer\n"));
        assert_int_equal(exit_code(a), 1);
        json_decref(a);

        /* sub MAIN: called with the arguments, or its usage and status 2. */
        warm(json_pack("[s,s,s]", "raku", "-e", runner));
        a = raku_exec("sub MAIN(Int $n, :$loud) { say $loud ?? \"N=$n\" !! \"n=$n\" }\n",
                      json_pack("[s,s]", "--loud", "4"), "", json_object());
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "N=4\n");
        assert_int_equal(exit_code(a), 0);
        json_decref(a);
        warm(json_pack("[s,s,s]", "raku", "-e", runner));
        a = raku_exec("sub MAIN(Int $n) { say $n }\n", json_pack("[s]", "x"), "", json_object());
        assert_ran_warm(a, "", "Usage:\n  main.raku <n>\n", 2);

        /* RAKULIB is read as raku starts: a raku of its own runs the program. */
        warm(json_pack("[s,s,s]", "raku", "-e", runner));
        a = raku_exec("say $*REPO.repo-chain[0].path-spec, ' ', @*ARGS[0], ' ', "
                      "'/proc/self/cmdline'.IO.slurp.split(\"\\0\")[1];\nexit 4;\n",
                      json_pack("[s]", "x"), "", json_pack("{s:s}", "RAKULIB", "/nonexistent"));
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "file#/nonexistent x main.raku\n");
        assert_int_equal(exit_code(a), 4);
        json_decref(a);
        assert_int_equal(rundirs_left(), 0);
        assert_true(asprintf(&cmd, "rm -rf '%s'", dir) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(module);
        free(runner);
}

/* languages/warm/Runner.java on this host's java, when there is one: started as the snapshot
 * starts it, primed with a compile, it compiles (javac in its JVM) and runs a program as
 * `javac Main.java && java -cp . Main` would: argv, stdin, env, the run's directory, files,
 * System.exit() from another thread; a compile error and an uncaught exception as they
 * report them. */
/* Start a warm runner on a JVM with this argv (a reference is taken over), allowed ready_ms to
 * say ready; its pid. */
static pid_t warm_jvm(json_t *argv, int ready_ms)
{
        json_t *a = handle_obj(
            json_pack("{s:s, s:o, s:i}", "op", "warm", "argv", argv, "ready_timeout_ms", ready_ms));
        pid_t pid;

        if (!json_is_true(json_object_get(a, "ok")))
                dump("warm", a);
        assert_true(json_is_true(json_object_get(a, "ok")));
        pid = (pid_t)json_integer_value(json_object_get(a, "pid"));
        json_decref(a);
        assert_true(ag.warm_waiting);
        return pid;
}

static pid_t warm_java(const char *runner)
{
        return warm_jvm(json_pack("[s,s,s,s,s,s,s]", "java", "-XX:+UseSerialGC", runner, "java",
                                  "-cp", ".", "Main"),
                        120000);
}

#define JAVAC                                                                                      \
        "\"compile\":{\"argv\":[\"javac\",\"-J-XX:+UseSerialGC\",\"-encoding\",\"UTF-8\","         \
        "\"Main.java\"],\"timeout_ms\":120000,\"output_max\":65536}"

static void test_warm_java(void **state)
{
        char *runner;
        json_t *a, *c;
        pid_t pid;

        if (system("java -version >/dev/null 2>&1") != 0)
                skip();
        runner = warm_file("Runner.java");
        warm_java(runner);
        a = handle(
            "{\"op\":\"prime\",\"argv\":[\"java\",\"-cp\",\".\",\"Main\"],"
            "\"file\":\"Main.java\",\"timeout_ms\":120000,\"code\":\"public class Main { "
            "public static void main(String[] a) { System.out.println(a.length); } }\"," JAVAC "}");
        assert_primed(a);
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"java\",\"-cp\",\".\",\"Main\",\"a b\"],"
            "\"args\":[\"a b\"],\"file\":\"Main.java\",\"warm\":true,\"stdin\":\"in\","
            "\"env\":{\"FOO\":\"bar\"},\"timeout_ms\":60000,"
            "\"files\":[{\"name\":\"data.txt\",\"content\":\"hello\"}],"
            "\"code\":\"import java.nio.file.*;\\npublic class Main { public static void "
            "main(String[] a) throws Exception { System.out.println(a[0] + \\\" \\\" + "
            "new String(System.in.readAllBytes()) + \\\" \\\" + System.getenv(\\\"FOO\\\") + "
            "\\\" \\\" + System.getenv(\\\"HOME\\\").equals(System.getProperty(\\\"user.dir\\\")) "
            "+ \\\" \\\" + Files.readString(Path.of(\\\"data.txt\\\"))); "
            "System.err.println(\\\"e\\\");"
            " new Thread(() -> System.exit(3)).start(); } }\"," JAVAC "}");
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "a b in bar true hello\n");
        assert_string_equal(str(a, "stderr"), "e\n");
        assert_int_equal(exit_code(a), 3);
        c = json_object_get(a, "compile");
        assert_int_equal(json_integer_value(json_object_get(c, "exit_code")), 0);
        assert_string_equal(str(c, "stderr"), "");
        json_decref(a);

        pid = warm_java(runner);
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"java\",\"-cp\",\".\",\"Main\"],\"file\":\"Main.java\","
            "\"warm\":true,\"code\":\"public class Main {\\n  public static void main(String[] "
            "a) {\\n    int x = y;\\n  }\\n}\\n\"," JAVAC "}");
        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_string_equal(str(a, "status"), "compile_error");
        c = json_object_get(a, "compile");
        assert_int_equal(json_integer_value(json_object_get(c, "exit_code")), 1);
        assert_string_equal(str(c, "stderr"), "Main.java:3: error: cannot find symbol\n"
                                              "    int x = y;\n"
                                              "            ^\n"
                                              "  symbol:   variable y\n"
                                              "  location: class Main\n"
                                              "1 error\n");
        json_decref(a);
        assert_gone(pid);

        warm_java(runner);
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"java\",\"-cp\",\".\",\"Main\"],\"file\":\"Main.java\","
            "\"warm\":true,\"code\":\"public class Main {\\n  public static void main(String[] "
            "a) {\\n    throw new IllegalStateException(\\\"nope\\\");\\n  }\\n}\\n\"," JAVAC "}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 1);
        assert_string_equal(str(a, "stderr"),
                            "Exception in thread \"main\" java.lang.IllegalStateException: nope\n"
                            "\tat Main.main(Main.java:3)\n");
        json_decref(a);

        /* Thrown by a static initializer, as main() is called: as the java launcher reports it
         * (the ExceptionInInitializerError has no frame of its own). */
        warm_java(runner);
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"java\",\"-cp\",\".\",\"Main\"],\"file\":\"Main.java\","
            "\"warm\":true,\"code\":\"public class Main {\\n  static int x = 1 / zero();\\n  "
            "static int zero() { return 0; }\\n  public static void main(String[] a) { "
            "System.out.println(x); }\\n}\\n\"," JAVAC "}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 1);
        assert_string_equal(str(a, "stdout"), "");
        assert_string_equal(str(a, "stderr"),
                            "Exception in thread \"main\" java.lang.ExceptionInInitializerError\n"
                            "Caused by: java.lang.ArithmeticException: / by zero\n"
                            "\tat Main.<clinit>(Main.java:2)\n");
        json_decref(a);
        assert_int_equal(rundirs_left(), 0);
        free(runner);
}

/* languages/warm/Runner.java in its groovy mode, on this host's groovy (Debian's 2.4 under
 * /usr/share/groovy) when there is one: started as the catalogue starts it, primed, it runs a
 * script as `groovy main.groovy` would: argv, stdin, env, files, the run's directory,
 * System.exit() from another thread; groovy's own report of an uncaught exception (nothing of
 * the runner in the stack) with exit status 1. (Compile errors and the fresh `groovy` are in
 * tests/integration/test_warm.py, against the cold command.) */
#define GROOVY_HOME "/usr/share/groovy"
#define GROOVY_JAR  "/usr/share/java/groovy.jar" /* the packaged version, whichever */

static pid_t warm_groovy(const char *runner)
{
        return warm_jvm(json_pack("[s,s,s,s,s,s,s,s,s,s,s,s]", "java", "-XX:+UseSerialGC",
                                  "-XX:TieredStopAtLevel=1", "-cp", GROOVY_JAR,
                                  "-Dscript.name=/usr/bin/groovy", "-Dprogram.name=groovy",
                                  "-Dgroovy.starter.conf=" GROOVY_HOME "/conf/groovy-starter.conf",
                                  "-Dgroovy.home=" GROOVY_HOME,
                                  "-Dtools.jar=/usr/lib/jvm/default-java/lib/tools.jar", runner,
                                  "groovy"),
                        300000);
}

static void test_warm_groovy(void **state)
{
        char *runner;
        json_t *a;

        if (access(GROOVY_JAR, R_OK) != 0 || system("java -version >/dev/null 2>&1") != 0)
                skip();
        runner = warm_file("Runner.java");
        warm_groovy(runner);
        a = handle("{\"op\":\"prime\",\"argv\":[\"groovy\",\"main.groovy\"],"
                   "\"file\":\"main.groovy\",\"timeout_ms\":120000,"
                   "\"code\":\"println args.length\"}");
        assert_primed(a);
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"groovy\",\"main.groovy\",\"a b\",\"c\"],"
            "\"args\":[\"a "
            "b\",\"c\"],\"file\":\"main.groovy\",\"warm\":true,\"stdin\":\"x\\ny\\n\","
            "\"env\":{\"FOO\":\"bar\"},\"timeout_ms\":60000,"
            "\"files\":[{\"name\":\"data.txt\",\"content\":\"hello\"}],"
            "\"code\":\"println args.join(',') + ' ' + System.in.readLines().reverse() + ' ' + "
            "System.getenv('FOO') + ' ' + (System.getenv('HOME') == System.getProperty('user.dir'))"
            " + ' ' + new File('data.txt').text + ' ' + Thread.currentThread().name\\n"
            "System.err.println 'e'\\nThread.start { System.exit(3) }\\n\"}");
        assert_ran_warm(a, "a b,c [y, x] bar true hello main\n", "e\n", 3);

        warm_groovy(runner);
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"groovy\",\"main.groovy\"],\"file\":\"main.groovy\","
            "\"warm\":true,\"code\":\"def f() { throw new IllegalStateException('nope') }\\n"
            "println 1\\nf()\\n\"}");
        assert_ok_warm_used(a, true);
        assert_string_equal(str(a, "stdout"), "1\n");
        assert_int_equal(exit_code(a), 1);
        assert_string_equal(
            str(a, "stderr"),
            "Caught: java.lang.IllegalStateException: nope\n"
            "java.lang.IllegalStateException: nope\n"
            "\tat java.base/jdk.internal.reflect.NativeConstructorAccessorImpl.newInstance0(Native "
            "Method)\n"
            "\tat java.base/jdk.internal.reflect.NativeConstructorAccessorImpl.newInstance("
            "NativeConstructorAccessorImpl.java:77)\n"
            "\tat java.base/jdk.internal.reflect.DelegatingConstructorAccessorImpl.newInstance("
            "DelegatingConstructorAccessorImpl.java:45)\n"
            "\tat main.f(main.groovy:1)\n"
            "\tat main.run(main.groovy:3)\n"
            "\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)\n"
            "\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke("
            "NativeMethodAccessorImpl.java:77)\n"
            "\tat java.base/jdk.internal.reflect.DelegatingMethodAccessorImpl.invoke("
            "DelegatingMethodAccessorImpl.java:43)\n");
        json_decref(a);

        assert_int_equal(rundirs_left(), 0);
        free(runner);
}

/* A repl session's calls: one interpreter (started from "repl" when none waits), its globals
 * kept across calls, each call's own stdin, output and exit status; a child of a call killed
 * after it while the interpreter stays; exit() ends it ("repl_ended"). */
static void test_repl_python(void **state)
{
        char *runner = warm_file("python.py"), *req;
        json_t *a;
        pid_t pid, child;

        if (asprintf(&req,
                     "{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\"],\"file\":\"main.py\","
                     "\"workdir\":\"repl-1\",\"repl\":[\"python3\",\"-I\",\"%s\"],"
                     "\"code\":\"import os\\nx = 41\\nprint(os.getpid())\"}",
                     runner) < 0)
                fail();
        a = handle(req);
        assert_ok_warm_used(a, true);
        assert_null(json_object_get(a, "repl_ended"));
        pid = (pid_t)atoi(str(a, "stdout"));
        assert_true(pid > 0);
        assert_int_equal(kill(pid, 0), 0);
        json_decref(a);
        free(req);
        assert_true(ag.repl_alive);

        /* The next call: the same interpreter and globals, its own stdin; a child it starts
         * is killed after it. */
        a = handle("{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\"],\"file\":\"main.py\","
                   "\"workdir\":\"repl-1\",\"repl\":[\"false\"],\"stdin\":\"in\","
                   "\"code\":\"import subprocess\\nx += 1\\n"
                   "c = subprocess.Popen(['sleep', '1000'])\\n"
                   "print(x, input(), os.getpid(), c.pid)\"}");
        assert_ok_warm_used(a, true);
        {
                int x = 0, p = 0, c = 0;
                char in[8] = "";

                assert_int_equal(sscanf(str(a, "stdout"), "%d %7s %d %d", &x, in, &p, &c), 4);
                assert_int_equal(x, 42);
                assert_string_equal(in, "in");
                assert_int_equal(p, pid);
                child = c;
        }
        json_decref(a);
        assert_int_equal(kill(pid, 0), 0);
        {
                /* killed; a zombie of the interpreter's until its next call reaps it */
                char path[64], st[512] = "";
                FILE *f;

                snprintf(path, sizeof(path), "/proc/%d/stat", (int)child);
                f = fopen(path, "r");
                if (f) {
                        assert_non_null(fgets(st, sizeof(st), f));
                        fclose(f);
                        assert_non_null(strstr(st, ") Z "));
                }
        }

        /* An exception: exit code 1 and a traceback; the interpreter stays. */
        a = handle("{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\"],\"file\":\"main.py\","
                   "\"workdir\":\"repl-1\",\"repl\":[\"false\"],\"code\":\"print(x)\\nx.nope\"}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 1);
        assert_string_equal(str(a, "stdout"), "42\n");
        assert_non_null(strstr(str(a, "stderr"), "AttributeError"));
        assert_null(json_object_get(a, "repl_ended"));
        json_decref(a);
        assert_int_equal(kill(pid, 0), 0);

        /* exit() ends it, with its status */
        a = handle("{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\"],\"file\":\"main.py\","
                   "\"workdir\":\"repl-1\",\"repl\":[\"false\"],\"code\":\"print(x)\\nexit(4)\"}");
        assert_ok_warm_used(a, true);
        assert_int_equal(exit_code(a), 4);
        assert_string_equal(str(a, "stdout"), "42\n");
        assert_true(json_is_true(json_object_get(a, "repl_ended")));
        json_decref(a);
        assert_gone(pid);
        assert_false(ag.repl_alive);
        /* the session's directory is all that is left (it lives as long as the session's VM) */
        assert_true(asprintf(&req, "rm -r %s/session-repl-1", workdir) > 0);
        assert_int_equal(system(req), 0);
        free(req);
        assert_int_equal(rundirs_left(), 0);

        /* a call needs the session's directory and its code */
        assert_request_error("{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\"],"
                             "\"file\":\"main.py\",\"code\":\"1\",\"repl\":[\"python3\"]}",
                             "bad_request");
        assert_request_error("{\"op\":\"exec\",\"argv\":[\"python3\"],\"workdir\":\"repl-1\","
                             "\"repl\":[\"python3\"]}",
                             "bad_request");
        assert_request_error("{\"op\":\"exec\",\"argv\":[\"python3\",\"main.py\"],"
                             "\"file\":\"main.py\",\"code\":\"1\",\"workdir\":\"repl-1\","
                             "\"repl\":[]}",
                             "bad_request");
        free(runner);
}

/* The binary: $OP_AGENT_BIN, or ../guest/op-agent next to this test in the build tree. */
static char *agent_bin(void)
{
        char self[PATH_MAX], *path;
        ssize_t n;

        if (getenv("OP_AGENT_BIN"))
                return strdup(getenv("OP_AGENT_BIN"));
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        assert_true(n > 0);
        self[n] = 0;
        assert_true(asprintf(&path, "%s/../guest/op-agent", dirname(self)) > 0);
        return path;
}

struct agent_proc {
        pid_t pid;
        int to, from;
};

static void spawn_agent(struct agent_proc *p)
{
        char *bin = agent_bin();
        int in[2], out[2];

        if (access(bin, X_OK) < 0) {
                fprintf(stderr, "op-agent not found at %s (set OP_AGENT_BIN)\n", bin);
                fail();
        }
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        p->pid = fork();
        assert_true(p->pid >= 0);
        if (p->pid == 0) {
                dup2(in[0], 0);
                dup2(out[1], 1);
                execl(bin, bin, "--stdio", "--workdir", workdir, (char *)NULL);
                _exit(126);
        }
        close(in[0]);
        close(out[1]);
        p->to = in[1];
        p->from = out[0];
        free(bin);
}

static int wait_agent(struct agent_proc *p)
{
        int st;

        close(p->to);
        close(p->from);
        assert_int_equal(waitpid(p->pid, &st, 0), p->pid);
        assert_true(WIFEXITED(st));
        return WEXITSTATUS(st);
}

static json_t *read_frame(int fd)
{
        uint8_t hdr[OP_FRAME_HEADER_SIZE];
        char errbuf[256];
        size_t len;
        char *buf;
        json_t *obj;

        assert_int_equal(op_read_all(fd, hdr, sizeof(hdr)), 0);
        len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
        assert_true(len <= OP_FRAME_MAX_DEFAULT);
        buf = malloc(len + 1);
        assert_non_null(buf);
        assert_int_equal(op_read_all(fd, buf, len), 0);
        assert_int_equal(op_parse_object(buf, len, &obj, errbuf, sizeof(errbuf)), 0);
        free(buf);
        return obj;
}

static void write_raw(int fd, const char *payload, size_t len)
{
        uint8_t hdr[OP_FRAME_HEADER_SIZE];

        assert_int_equal(op_frame_header(len, OP_FRAME_MAX_CEILING, hdr), 0);
        assert_int_equal(op_write_all(fd, hdr, sizeof(hdr)), 0);
        assert_int_equal(op_write_all(fd, payload, len), 0);
}

static void write_json(int fd, const char *text)
{
        write_raw(fd, text, strlen(text));
}

static void test_binary_stdio(void **state)
{
        struct agent_proc p;
        json_t *m;

        alarm(60);
        spawn_agent(&p);
        m = read_frame(p.from);
        assert_string_equal(str(m, "event"), "ready");
        assert_string_equal(str(m, "agent_version"), OP_AGENT_VERSION);
        json_decref(m);

        /* Two requests pipelined in one write. */
        write_json(p.to, "{\"op\":\"ping\",\"id\":1}");
        write_json(p.to,
                   "{\"op\":\"exec\",\"id\":2,\"argv\":[\"python3\",\"main.py\"],"
                   "\"file\":\"main.py\",\"code\":\"import sys; print(sys.stdin.read()[::-1])\","
                   "\"stdin\":\"abc\",\"env\":{\"PATH\":\"/usr/local/bin:/usr/bin:/bin\"},"
                   "\"timeout_ms\":10000,\"output_max\":1024}");
        m = read_frame(p.from);
        assert_int_equal(json_integer_value(json_object_get(m, "id")), 1);
        assert_true(json_is_true(json_object_get(m, "pong")));
        json_decref(m);
        m = read_frame(p.from);
        assert_int_equal(json_integer_value(json_object_get(m, "id")), 2);
        assert_true(json_is_true(json_object_get(m, "ok")));
        if (json_integer_value(json_object_get(m, "exit_code")) == 127)
                fprintf(stderr, "python3 missing on this host: exec checked for shape only\n");
        else
                assert_string_equal(str(m, "stdout"), "cba\n");
        json_decref(m);

        /* A broken frame is answered, and the session goes on. */
        write_json(p.to, "{not json");
        m = read_frame(p.from);
        assert_error(m, "bad_request");
        json_decref(m);
        write_raw(p.to, "{\"op\":\"ping\"}\xff", 14);
        m = read_frame(p.from);
        assert_error(m, "bad_request");
        json_decref(m);
        write_json(p.to, "[1]");
        m = read_frame(p.from);
        assert_error(m, "bad_request");
        json_decref(m);
        write_json(p.to, "{\"op\":\"exec\",\"argv\":[\"sh\",\"-c\",\"echo x; exit 9\"]}");
        m = read_frame(p.from);
        assert_int_equal(json_integer_value(json_object_get(m, "exit_code")), 9);
        assert_string_equal(str(m, "stdout"), "x\n");
        json_decref(m);

        /* EOF from the host: not PID 1, so the agent exits cleanly. */
        assert_int_equal(wait_agent(&p), 0);
        alarm(0);
}

/* Bytes of an event's or a file's text (with the _b64 rule). */
static void append_bytes(json_t *obj, const char *key, char *buf, size_t *n, size_t cap)
{
        char *bytes;
        size_t len;

        assert_int_equal(op_json_get_bytes(obj, key, cap, &bytes, &len), 0);
        assert_true(*n + len < cap);
        memcpy(buf + *n, bytes, len);
        *n += len;
        buf[*n] = 0;
        free(bytes);
}

/* The real binary streams: output events before the answer, stdin frames fed while the program
 * runs (one sent with the job, one after the first answer line), output files, status, usage. */
static void test_binary_stream(void **state)
{
        struct agent_proc p;
        char out[256] = "", err[256] = "";
        size_t n_out = 0, n_err = 0;
        bool sent = false;
        json_t *m, *files;

        alarm(60);
        spawn_agent(&p);
        m = read_frame(p.from);
        json_decref(m);
        write_json(p.to, "{\"op\":\"exec\",\"id\":\"s\",\"argv\":[\"sh\",\"-c\",\"echo start; "
                         "read a; echo got:$a; echo warn >&2; read b; echo got:$b; cat; "
                         "printf 'x\\\\377' > out.bin; exit 3\"],\"stream\":true,"
                         "\"stdin_stream\":true,\"output_files\":[\"out.bin\",\"none\"],"
                         "\"timeout_ms\":20000}");
        write_json(p.to, "{\"op\":\"stdin\",\"data\":\"one\\n\"}");
        for (;;) {
                m = read_frame(p.from);
                assert_string_equal(str(m, "id"), "s");
                if (!json_object_get(m, "event"))
                        break;
                if (strcmp(str(m, "event"), "stdout") == 0)
                        append_bytes(m, "data", out, &n_out, sizeof(out));
                else {
                        assert_string_equal(str(m, "event"), "stderr");
                        append_bytes(m, "data", err, &n_err, sizeof(err));
                }
                /* The second line goes out once the first has come back. */
                if (strstr(out, "got:one\n") && !sent) {
                        sent = true;
                        write_json(p.to, "{\"op\":\"stdin\",\"data_b64\":\"dHdvCg==\"}");
                        write_json(p.to, "{\"op\":\"stdin\",\"data\":\"rest\",\"eof\":true}");
                        out[n_out++] = '|'; /* mark: sent */
                        out[n_out] = 0;
                }
                json_decref(m);
        }
        assert_string_equal(out, "start\ngot:one\n|got:two\nrest");
        assert_string_equal(err, "warn\n");
        assert_true(json_is_true(json_object_get(m, "ok")));
        assert_string_equal(str(m, "stdout"), "");
        assert_true(json_is_true(json_object_get(m, "streamed")));
        assert_int_equal(json_integer_value(json_object_get(m, "exit_code")), 3);
        assert_string_equal(str(m, "status"), "runtime_error");
        assert_true(json_is_number(json_object_get(json_object_get(m, "usage"), "cpu_time_ms")));
        assert_true(json_is_number(json_object_get(json_object_get(m, "usage"), "wall_ms")));
        assert_true(
            json_is_integer(json_object_get(json_object_get(m, "usage"), "memory_peak_bytes")));
        files = json_object_get(m, "files");
        assert_int_equal(json_array_size(files), 2);
        assert_string_equal(str(json_array_get(files, 0), "content_b64"), "eP8=");
        assert_string_equal(str(json_array_get(files, 1), "error"), "not_found");
        json_decref(m);

        /* A stdin frame after the run gets no answer: the next answer is the ping's. */
        write_json(p.to, "{\"op\":\"stdin\",\"data\":\"late\"}");
        write_json(p.to, "{\"op\":\"ping\",\"id\":9}");
        m = read_frame(p.from);
        assert_int_equal(json_integer_value(json_object_get(m, "id")), 9);
        json_decref(m);
        assert_int_equal(wait_agent(&p), 0);
        alarm(0);
}

static void test_binary_oversize(void **state)
{
        uint8_t hdr[OP_FRAME_HEADER_SIZE];
        struct agent_proc p;
        json_t *m;
        char c;

        alarm(60);
        spawn_agent(&p);
        m = read_frame(p.from);
        json_decref(m);
        assert_int_equal(op_frame_header(OP_FRAME_MAX_DEFAULT + 1, OP_FRAME_MAX_CEILING, hdr), 0);
        assert_int_equal(op_write_all(p.to, hdr, sizeof(hdr)), 0);
        m = read_frame(p.from);
        assert_error(m, "frame_too_large");
        json_decref(m);
        /* stdio cannot be reopened: the connection is closed. */
        assert_int_equal(read(p.from, &c, 1), 0);
        assert_int_equal(wait_agent(&p), 1);
        alarm(0);
}

static void test_binary_warm(void **state)
{
        struct agent_proc p;
        json_t *m;
        pid_t pid;

        alarm(60);
        spawn_agent(&p);
        m = read_frame(p.from);
        json_decref(m);

        write_json(p.to, "{\"op\":\"warm\",\"id\":1,\"argv\":[\"sh\",\"-c\",\"echo ready >&3; "
                         "exec cat <&3\"]}");
        m = read_frame(p.from);
        assert_int_equal(json_integer_value(json_object_get(m, "id")), 1);
        assert_true(json_is_true(json_object_get(m, "warm")));
        pid = (pid_t)json_integer_value(json_object_get(m, "pid"));
        json_decref(m);
        /* Requests in between (and the reaping after each) leave it waiting. */
        write_json(p.to, "{\"op\":\"ping\",\"id\":2}");
        m = read_frame(p.from);
        assert_true(json_is_true(json_object_get(m, "pong")));
        json_decref(m);
        assert_int_equal(kill(pid, 0), 0);

        write_json(p.to, "{\"op\":\"exec\",\"id\":3,\"argv\":[\"sh\",\"m.sh\"],\"file\":\"m.sh\","
                         "\"code\":\"x\",\"warm\":true}");
        m = read_frame(p.from);
        assert_true(json_is_true(json_object_get(m, "warm_used")));
        assert_non_null(strstr(str(m, "stdout"), "\"cwd\":"));
        json_decref(m);
        write_json(p.to, "{\"op\":\"exec\",\"id\":4,\"argv\":[\"sh\",\"m.sh\"],\"file\":\"m.sh\","
                         "\"code\":\"echo cold\",\"warm\":true}");
        m = read_frame(p.from);
        assert_true(json_is_false(json_object_get(m, "warm_used")));
        assert_string_equal(str(m, "stdout"), "cold\n");
        json_decref(m);

        /* A runner still waiting when the agent ends dies with it. */
        write_json(p.to, "{\"op\":\"warm\",\"id\":5,\"argv\":[\"sh\",\"-c\",\"echo ready >&3; "
                         "exec cat <&3\"]}");
        m = read_frame(p.from);
        pid = (pid_t)json_integer_value(json_object_get(m, "pid"));
        assert_true(pid > 1);
        json_decref(m);
        assert_int_equal(wait_agent(&p), 0);
        for (int i = 0; i < 6000 && kill(pid, 0) == 0; i++)
                usleep(10 * 1000);
        assert_gone(pid);
        assert_int_equal(rundirs_left(), 0); /* nor is its directory left */
        alarm(0);
}

static int setup(void **state)
{
        if (!mkdtemp(workdir))
                return -1;
        cfg = (struct agent_config){
            .workdir = workdir,
            .uid = (uid_t)-1,
            .gid = (gid_t)-1,
        };
        agent_init(&ag, &cfg);
        return 0;
}

static int teardown(void **state)
{
        agent_done(&ag);
        return rmdir(workdir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_ready),
            cmocka_unit_test(test_ping),
            cmocka_unit_test(test_exec_full),
            cmocka_unit_test(test_exec_minimal),
            cmocka_unit_test(test_exec_signal_timeout_truncated),
            cmocka_unit_test(test_exec_rundir_cleanup),
            cmocka_unit_test(test_exec_kept_workdir),
            cmocka_unit_test(test_exec_non_utf8),
            cmocka_unit_test(test_exec_identity_ignored),
            cmocka_unit_test(test_exec_identity_applied),
            cmocka_unit_test(test_exec_pid1_kills_all),
            cmocka_unit_test(test_exec_missing_binary),
            cmocka_unit_test(test_bad_requests),
            cmocka_unit_test(test_argv_limit),
            cmocka_unit_test(test_bad_rundir),
            cmocka_unit_test(test_warm_handoff_line),
            cmocka_unit_test(test_warm_exec),
            cmocka_unit_test(test_warm_timeout_and_cap),
            cmocka_unit_test(test_warm_fallback),
            cmocka_unit_test(test_warm_one_at_a_time),
            cmocka_unit_test(test_warm_not_ready),
            cmocka_unit_test(test_warm_runner_died_while_waiting),
            cmocka_unit_test(test_warm_bad_requests),
            cmocka_unit_test(test_next_runner),
            cmocka_unit_test(test_next_runner_not_ready),
            cmocka_unit_test(test_next_runner_idle_deadline),
            cmocka_unit_test(test_warm_python),
            cmocka_unit_test(test_prime_starts_runner),
            cmocka_unit_test(test_warm_node),
            cmocka_unit_test(test_warm_coffee),
            cmocka_unit_test(test_warm_typescript),
            cmocka_unit_test(test_warm_raku),
            cmocka_unit_test(test_warm_guile),
            cmocka_unit_test(test_warm_emacs),
            cmocka_unit_test(test_warm_java),
            cmocka_unit_test(test_warm_groovy),
            cmocka_unit_test(test_repl_python),
            cmocka_unit_test(test_binary_stdio),
            cmocka_unit_test(test_binary_stream),
            cmocka_unit_test(test_binary_oversize),
            cmocka_unit_test(test_binary_warm),
        };

        /* The agent ignores SIGPIPE; so does its test, which writes to agents that may be gone. */
        signal(SIGPIPE, SIG_IGN);
        int failed = cmocka_run_group_tests(tests, setup, teardown);

        /* cmocka reports a failed group teardown without counting it: the tests left files */
        return failed ? failed : access(workdir, F_OK) == 0;
}
