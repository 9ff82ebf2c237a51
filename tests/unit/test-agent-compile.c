/* test-agent-compile.c: the compile phase of an agent exec: a compiler that succeeds (the
 * program runs, both phases reported), one that fails or overruns its deadline or output cap
 * (the program does not run; "status": "compile_error"), malformed "compile" objects, and the
 * same on a warm runner that compiles in its own process (a step ending with "done N"). The
 * "compiler" is sh, which is all a host has for certain; the test runner is python3's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"

static char workdir[] = "/tmp/op-agent-compile-test-XXXXXX";
static struct agent ag;

static json_t *handle(const char *text)
{
        json_error_t jerr;
        json_t *req = json_loads(text, 0, &jerr), *answer;

        if (!req) {
                fprintf(stderr, "bad test JSON: %s: %s\n", text, jerr.text);
                fail();
        }
        answer = agent_handle(&ag, req);
        json_decref(req);
        assert_non_null(answer);
        return answer;
}

static const char *str(json_t *obj, const char *key)
{
        json_t *v = json_object_get(obj, key);

        assert_true(json_is_string(v));
        return json_string_value(v);
}

/* "Compiles" main.src into ./main (a shell script), in the run's directory. */
#define BUILD                                                                                      \
        "\"compile\":{\"argv\":[\"sh\",\"-c\",\"echo compiling; echo warn >&2; "                   \
        "cp main.src main && chmod +x main\"],\"timeout_ms\":5000,\"output_max\":4096}"

static void test_compile_then_run(void **state)
{
        json_t *a = handle("{\"op\":\"exec\",\"id\":1,\"argv\":[\"./main\",\"x\"],"
                           "\"file\":\"main.src\",\"code\":\"#!/bin/sh\\ncat; echo \\\"ran $1\\\"; "
                           "exit 4\\n\",\"stdin\":\"in\\n\"," BUILD "}");
        json_t *c = json_object_get(a, "compile");

        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_string_equal(str(a, "stdout"), "in\nran x\n");
        assert_int_equal(json_integer_value(json_object_get(a, "exit_code")), 4);
        /* the compile worked: the status is the run's */
        assert_string_equal(str(a, "status"), "runtime_error");
        assert_true(json_is_object(c));
        assert_string_equal(str(c, "stdout"), "compiling\n");
        assert_string_equal(str(c, "stderr"), "warn\n");
        assert_int_equal(json_integer_value(json_object_get(c, "exit_code")), 0);
        assert_true(json_is_false(json_object_get(c, "timed_out")));
        assert_true(json_is_number(json_object_get(c, "run_ms")));
        json_decref(a);
}

static void assert_compile_error(json_t *a)
{
        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_string_equal(str(a, "status"), "compile_error");
        assert_true(json_is_object(json_object_get(a, "compile")));
        /* the program did not run */
        assert_string_equal(str(a, "stdout"), "");
        assert_string_equal(str(a, "stderr"), "");
        assert_true(json_is_null(json_object_get(a, "exit_code")));
}

static void test_compile_error(void **state)
{
        json_t *a = handle("{\"op\":\"exec\",\"argv\":[\"sh\",\"-c\",\"echo ran\"],"
                           "\"file\":\"m.c\",\"code\":\"x\",\"stdin\":\"in\","
                           "\"compile\":{\"argv\":[\"sh\",\"-c\",\"echo 'm.c:1: error' >&2; "
                           "exit 1\"],\"timeout_ms\":5000,\"output_max\":4096}}");
        json_t *c = json_object_get(a, "compile");

        assert_compile_error(a);
        assert_string_equal(str(c, "stderr"), "m.c:1: error\n");
        assert_int_equal(json_integer_value(json_object_get(c, "exit_code")), 1);
        json_decref(a);
}

static void test_compile_timeout_and_cap(void **state)
{
        json_t *a = handle("{\"op\":\"exec\",\"argv\":[\"echo\",\"ran\"],\"timeout_ms\":60000,"
                           "\"compile\":{\"argv\":[\"sleep\",\"10\"],\"timeout_ms\":200,"
                           "\"output_max\":10}}");
        json_t *c = json_object_get(a, "compile");

        assert_compile_error(a);
        assert_true(json_is_true(json_object_get(c, "timed_out")));
        assert_true(json_is_null(json_object_get(c, "exit_code")));
        json_decref(a);

        a = handle("{\"op\":\"exec\",\"argv\":[\"echo\",\"ran\"],"
                   "\"compile\":{\"argv\":[\"yes\"],\"timeout_ms\":5000,\"output_max\":10}}");
        c = json_object_get(a, "compile");
        assert_compile_error(a);
        assert_true(json_is_true(json_object_get(c, "truncated")));
        assert_int_equal(strlen(str(c, "stdout")), 10);
        json_decref(a);
}

static void assert_bad(const char *compile)
{
        char text[512];
        json_t *a;

        snprintf(text, sizeof(text), "{\"op\":\"exec\",\"argv\":[\"true\"],\"compile\":%s}",
                 compile);
        a = handle(text);
        if (!json_is_false(json_object_get(a, "ok")))
                fprintf(stderr, "accepted: %s\n", text);
        assert_true(json_is_false(json_object_get(a, "ok")));
        assert_string_equal(str(json_object_get(a, "error"), "code"), "bad_request");
        json_decref(a);
}

static void test_bad_compile_objects(void **state)
{
        assert_bad("[]");
        assert_bad("{\"argv\":[],\"timeout_ms\":1,\"output_max\":1}");
        assert_bad("{\"argv\":[\"\"],\"timeout_ms\":1,\"output_max\":1}");
        assert_bad("{\"argv\":[1],\"timeout_ms\":1,\"output_max\":1}");
        assert_bad("{\"argv\":[\"cc\"],\"output_max\":1}");
        assert_bad("{\"argv\":[\"cc\"],\"timeout_ms\":0,\"output_max\":1}");
        assert_bad("{\"argv\":[\"cc\"],\"timeout_ms\":600001,\"output_max\":1}");
        assert_bad("{\"argv\":[\"cc\"],\"timeout_ms\":1}");
        assert_bad("{\"argv\":[\"cc\"],\"timeout_ms\":1,\"output_max\":-1}");
        assert_bad("{\"argv\":[\"cc\"],\"timeout_ms\":1,\"output_max\":1,\"env\":{}}");
}

/* A test runner that compiles: says "ready", reads its job; with "compile", runs that command
 * (its output on the runner's own stdout and stderr), writes "done N" and reads the run's job;
 * then becomes `sh FILE ARGS...` in the job's directory, START naming the directory it was
 * started in. */
#define COMPILING_RUNNER                                                                           \
        "import json, os, subprocess\n"                                                            \
        "ctl = os.fdopen(3, 'r+b', buffering=0)\n"                                                 \
        "ctl.write(b'ready\\n')\n"                                                                 \
        "def job():\n"                                                                             \
        "    line = b''\n"                                                                         \
        "    while not line.endswith(b'\\n'):\n"                                                   \
        "        chunk = ctl.read(65536)\n"                                                        \
        "        if not chunk:\n"                                                                  \
        "            os._exit(70)\n"                                                               \
        "        line += chunk\n"                                                                  \
        "    return json.loads(line)\n"                                                            \
        "j = job()\n"                                                                              \
        "if 'compile' in j:\n"                                                                     \
        "    r = subprocess.run(j['compile'], cwd=j['cwd'], stdin=subprocess.DEVNULL)\n"           \
        "    ctl.write(b'done %d\\n' % r.returncode)\n"                                            \
        "    j = job()\n"                                                                          \
        "env = dict(j['env'], START=os.getcwd())\n"                                                \
        "os.chdir(j['cwd'])\n"                                                                     \
        "os.execve('/bin/sh', ['sh', j['file']] + j['argv'], env)\n"

/* Start the compiling runner; its pid. */
static pid_t warm_runner(void)
{
        json_t *req = json_pack("{s:s, s:[s,s,s], s:i}", "op", "warm", "argv", "python3", "-c",
                                COMPILING_RUNNER, "ready_timeout_ms", 60000);
        json_t *a = agent_handle(&ag, req);
        pid_t pid;

        json_decref(req);
        assert_true(json_is_true(json_object_get(a, "ok")));
        pid = (pid_t)json_integer_value(json_object_get(a, "pid"));
        json_decref(a);
        return pid;
}

static void assert_gone(pid_t pid)
{
        assert_int_equal(kill(pid, 0), -1);
        assert_int_equal(errno, ESRCH);
}

/* On a warm runner the compile phase is the runner's step: what it writes until "done 0" is
 * the compiler's, what follows the program's; the runner started in the run's directory. */
static void test_compile_on_the_runner(void **state)
{
        json_t *a, *c;
        pid_t pid;

        pid = warm_runner();
        a = handle("{\"op\":\"exec\",\"argv\":[\"./main\",\"x\"],\"args\":[\"x\"],\"warm\":true,"
                   "\"file\":\"main.src\",\"code\":\"cat; echo \\\"ran $1\\\"; "
                   "[ \\\"$START\\\" = \\\"$(pwd)\\\" ] && echo same-dir; exit "
                   "4\\n\",\"stdin\":\"in\\n\"," BUILD "}");
        c = json_object_get(a, "compile");
        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_true(json_is_true(json_object_get(a, "warm_used")));
        assert_string_equal(str(a, "stdout"), "in\nran x\nsame-dir\n");
        assert_string_equal(str(a, "stderr"), "");
        assert_int_equal(json_integer_value(json_object_get(a, "exit_code")), 4);
        assert_true(json_is_object(c));
        assert_string_equal(str(c, "stdout"), "compiling\n");
        assert_string_equal(str(c, "stderr"), "warn\n");
        assert_int_equal(json_integer_value(json_object_get(c, "exit_code")), 0);
        json_decref(a);
        assert_gone(pid);

        /* A failed compile: compile_error, with the runner's "done N" as the exit code; the
         * runner is ended with the request. */
        pid = warm_runner();
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"sh\"],\"warm\":true,\"file\":\"m.c\",\"code\":\"x\","
            "\"compile\":{\"argv\":[\"sh\",\"-c\",\"echo 'm.c:1: error' >&2; exit 3\"],"
            "\"timeout_ms\":5000,\"output_max\":4096}}");
        c = json_object_get(a, "compile");
        assert_compile_error(a);
        assert_string_equal(str(c, "stderr"), "m.c:1: error\n");
        assert_int_equal(json_integer_value(json_object_get(c, "exit_code")), 3);
        json_decref(a);
        assert_gone(pid);

        /* Its deadline and output cap are the compiler's. */
        pid = warm_runner();
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"sh\"],\"warm\":true,\"file\":\"m.c\",\"code\":\"x\","
            "\"timeout_ms\":60000,\"compile\":{\"argv\":[\"sleep\",\"10\"],"
            "\"timeout_ms\":200,\"output_max\":10}}");
        c = json_object_get(a, "compile");
        assert_compile_error(a);
        assert_true(json_is_true(json_object_get(c, "timed_out")));
        json_decref(a);
        assert_gone(pid);
        pid = warm_runner();
        a = handle(
            "{\"op\":\"exec\",\"argv\":[\"sh\"],\"warm\":true,\"file\":\"m.c\",\"code\":\"x\","
            "\"compile\":{\"argv\":[\"yes\"],\"timeout_ms\":5000,\"output_max\":10}}");
        c = json_object_get(a, "compile");
        assert_compile_error(a);
        assert_true(json_is_true(json_object_get(c, "truncated")));
        assert_int_equal(strlen(str(c, "stdout")), 10);
        json_decref(a);
        assert_gone(pid);
}

static int setup(void **state)
{
        struct agent_config cfg = {.workdir = workdir, .uid = (uid_t)-1, .gid = (gid_t)-1};

        if (!mkdtemp(workdir))
                return -1;
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
            cmocka_unit_test(test_compile_then_run),
            cmocka_unit_test(test_compile_error),
            cmocka_unit_test(test_compile_timeout_and_cap),
            cmocka_unit_test(test_bad_compile_objects),
            cmocka_unit_test(test_compile_on_the_runner),
        };

        int failed = cmocka_run_group_tests(tests, setup, teardown);

        /* cmocka reports a failed group teardown without counting it: the tests left files */
        return failed ? failed : access(workdir, F_OK) == 0;
}
