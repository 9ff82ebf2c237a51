/* test-msg-cases.c: unit tests of proto/msg-cases.c: an exec_cases request decoded into its
 * compile step and one run per case (the request's defaults under each case's own fields), and
 * every refusal, with its message, of the request and of a case. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "msg-cases.h"
#include "msg-session.h"
#include "msg.h"

static json_t *parse(const char *s)
{
        char err[256] = "";
        json_t *obj = NULL;

        if (op_parse_object(s, strlen(s), &obj, err, sizeof(err)) < 0)
                fail_msg("op_parse_object(%s): %s", s, err);
        return obj;
}

static const char *str(json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

static int64_t num(json_t *o, const char *key)
{
        return json_integer_value(json_object_get(o, key));
}

static void test_decode_steps(void **state)
{
        const struct op_limits lim = OP_LIMITS_DEFAULT;
        json_t *req = parse("{\"id\": 7, \"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"int "
                            "main(void){}\", \"compile_timeout_ms\": 30000, \"timeout_ms\": 2000, "
                            "\"args\": [\"d\"], \"memory_bytes\": 67108864, \"cases\": ["
                            "{\"stdin\": \"1 2\"},"
                            "{\"stdin\": \"3\", \"args\": [\"x\", \"y\"], \"timeout_ms\": 100, "
                            "\"files\": [{\"name\": \"in.txt\", \"content\": \"z\"}]}]}");
        struct op_cases c;
        char err[256] = "";

        assert_int_equal(op_cases_decode(req, &lim, &c, err, sizeof(err)), 0);
        assert_int_equal(c.n, 2);
        /* the compile step: the program and its compile deadline, no case's fields */
        assert_string_equal(str(c.compile, "op"), "session_exec");
        assert_string_equal(str(c.compile, "phase"), "compile");
        assert_string_equal(str(c.compile, "lang"), "c");
        assert_string_equal(str(c.compile, "code"), "int main(void){}");
        assert_int_equal(num(c.compile, "compile_timeout_ms"), 30000);
        assert_null(json_object_get(c.compile, "args"));
        assert_null(json_object_get(c.compile, "session"));
        /* the runs: no code; the request's defaults where the case gives none */
        assert_string_equal(str(c.runs[0], "phase"), "run");
        assert_null(json_object_get(c.runs[0], "code"));
        assert_string_equal(str(c.runs[0], "stdin"), "1 2");
        assert_int_equal(num(c.runs[0], "timeout_ms"), 2000);
        assert_int_equal(num(c.runs[0], "memory_bytes"), 67108864);
        assert_string_equal(
            json_string_value(json_array_get(json_object_get(c.runs[0], "args"), 0)), "d");
        assert_int_equal(num(c.runs[1], "timeout_ms"), 100);
        assert_int_equal(json_array_size(json_object_get(c.runs[1], "args")), 2);
        assert_int_equal(json_array_size(json_object_get(c.runs[1], "files")), 1);
        assert_null(json_object_get(c.runs[1], "session"));
        assert_null(json_object_get(c.runs[1], "compile_timeout_ms"));
        op_cases_done(&c);
        assert_int_equal(req->refcount, 1); /* nothing of the request kept */
        json_decref(req);
}

static void refused(const char *text, const struct op_limits *lim, const char *want)
{
        json_t *req = parse(text);
        struct op_cases c = {0};
        char err[256] = "";

        assert_int_equal(op_cases_decode(req, lim, &c, err, sizeof(err)), -EINVAL);
        if (!strstr(err, want))
                fail_msg("%s: \"%s\" does not say \"%s\"", text, err, want);
        assert_null(c.runs);
        assert_int_equal(req->refcount, 1);
        json_decref(req);
}

static void test_refusals(void **state)
{
        struct op_limits lim = OP_LIMITS_DEFAULT;

        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\"}", &lim,
                "missing \"cases\"");
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"cases\": {}}", &lim,
                "must be an array");
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"cases\": []}", &lim,
                "\"cases\" is empty");
        refused("{\"op\": \"exec_cases\", \"code\": \"x\", \"cases\": [{}]}", &lim,
                "\"lang\" must be a string");
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"cases\": [{}]}", &lim, "the program:");
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"stream\": true, "
                "\"cases\": [{}]}",
                &lim, "unknown field \"stream\" in exec_cases");
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"cases\": [1]}", &lim,
                "\"cases[0]\" must be an object");
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"cases\": [{}, "
                "{\"code\": \"y\"}]}",
                &lim, "unknown field \"code\" in cases[1]");
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"cases\": [{}, "
                "{\"phase\": \"all\"}]}",
                &lim, "unknown field \"phase\" in cases[1]");
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"cases\": [{}, "
                "{\"timeout_ms\": 99999999}]}",
                &lim, "cases[1]: ");
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"timeout_ms\": 0, "
                "\"cases\": [{}]}",
                &lim, "cases[0]: ");
        lim.cases_max = 2;
        refused("{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"cases\": [{}, {}, "
                "{}]}",
                &lim, "over the limit of 2 (limit.cases_max)");
}

/* Every byte cut of a valid request parses to a refusal or not at all, never a crash. */
static void test_cuts(void **state)
{
        const struct op_limits lim = OP_LIMITS_DEFAULT;
        const char *text = "{\"op\": \"exec_cases\", \"lang\": \"c\", \"code\": \"x\", \"cases\": "
                           "[{\"stdin\": \"1\"}, {\"args\": [\"a\"]}]}";

        for (size_t n = 0; n <= strlen(text); n++) {
                json_t *obj = NULL;
                struct op_cases c;
                char err[256] = "";

                if (op_parse_object(text, n, &obj, err, sizeof(err)) < 0)
                        continue;
                if (op_cases_decode(obj, &lim, &c, err, sizeof(err)) == 0) {
                        assert_int_equal(n, strlen(text));
                        assert_int_equal(c.n, 2);
                        op_cases_done(&c);
                }
                json_decref(obj);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_decode_steps),
            cmocka_unit_test(test_refusals),
            cmocka_unit_test(test_cuts),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
