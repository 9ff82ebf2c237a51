/* test-agent-compile.c: the compile phase of an agent exec: a compiler that succeeds (the
 * program runs, both phases reported), one that fails or overruns its deadline or output cap
 * (the program does not run; "status": "compile_error"), and malformed "compile" objects. The
 * "compiler" is sh, which is all a host has for certain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
