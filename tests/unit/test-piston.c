/* test-piston.c: unit tests of proto/piston.c: semver selectors against runtime versions,
 * Piston execute bodies turned into exec requests (and refused with Piston-style messages), exec
 * answers turned into Piston results, and the HTTP status of each error code. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msg.h"
#include "piston.h"

static json_t *load(const char *s)
{
        json_error_t e;
        json_t *v = json_loads(s, 0, &e);

        if (!v)
                fail_msg("bad test JSON %s: %s", s, e.text);
        return v;
}

static void test_version_match(void **state)
{
        static const struct {
                const char *selector, *version;
                int want;
        } cases[] = {
            {"*", "3.11.2", 1},
            {"x", "3.11.2", 1},
            {"3.11.2", "3.11.2", 1},
            {"3.11.3", "3.11.2", 0},
            {"3", "3.11.2", 1},
            {"3.x", "3.11.2", 1},
            {"3.11", "3.11.2", 1},
            {"3.11.x", "3.11.2", 1},
            {"3.12", "3.11.2", 0},
            {"2", "3.11.2", 0},
            {"v3.11.2", "3.11.2", 1},
            {"=3.11", "3.11.2", 1},
            {">=3.9", "3.11.2", 1},
            {">= 3.9", "3.11.2", 1},
            {">=3.12", "3.11.2", 0},
            {">3.11", "3.11.2", 0}, /* ">3.11" is ">=3.12.0" */
            {">3.11.1", "3.11.2", 1},
            {"<3.12", "3.11.2", 1},
            {"<3.11.2", "3.11.2", 0},
            {"<=3.11", "3.11.2", 1},
            {"<=3.10", "3.11.2", 0},
            {"^3.10", "3.11.2", 1},
            {"^3.12", "3.11.2", 0},
            {"^2.7", "3.11.2", 0},
            {"^0.2.3", "0.2.9", 1},
            {"^0.2.3", "0.3.0", 0},
            {"^0.0.3", "0.0.4", 0},
            {"~3.11.1", "3.11.2", 1},
            {"~3.10", "3.11.2", 0},
            {"~3", "3.11.2", 1},
            {">=3 <4", "3.11.2", 1},
            {">=3 <3.11", "3.11.2", 0},
            {"2.x || 3.x", "3.11.2", 1},
            {"2.x || 4.x", "3.11.2", 0},
            {"5.2.15", "5.2.15(1)-release", 1},
            {"*", "unknown", 1},
            {"1", "unknown", 0},
            {">*", "3.11.2", 0},
            /* malformed: nothing matches */
            {"", "3.11.2", 0},
            {"3..1", "3.11.2", 0},
            {"3.11.2.1", "3.11.2", 0},
            {"latest", "3.11.2", 0},
            {"3.x.1", "3.11.2", 0},
            {"1.2 - 4", "3.11.2", 0},
            {">=", "3.11.2", 0},
            {"99999999999", "3.11.2", 0},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                if (piston_version_match(cases[i].selector, cases[i].version) != cases[i].want)
                        fail_msg("\"%s\" against %s: expected %d", cases[i].selector,
                                 cases[i].version, cases[i].want);
}

static json_t *convert(const char *body_text, char *err, size_t errlen, int *ret)
{
        struct op_limits lim = OP_LIMITS_DEFAULT;
        json_t *body = load(body_text), *id = json_string("piston-1"), *exec = NULL;

        *ret = piston_exec_request(body, id, &lim, &exec, err, errlen);
        json_decref(body);
        json_decref(id);
        return exec;
}

/* The request of Piston's documentation, with the language swapped for one opd serves. */
static void test_exec_request_documented(void **state)
{
        char err[256] = "", want[] = "{\"op\": \"exec\", \"id\": \"piston-1\", \"lang\": \"py\", "
                                     "\"code\": \"import sys; print(sys.argv)\", "
                                     "\"stdin\": \"\", \"args\": [\"1\", \"2\", \"3\"], "
                                     "\"timeout_ms\": 3000, \"cpu_time_ms\": 3000, "
                                     "\"file_size_max_bytes\": 10000000}";
        json_t *exec, *expected = load(want);
        int r;

        exec = convert("{\"language\": \"py\", \"version\": \"3.x\", \"files\": [{\"name\": "
                       "\"my_cool_code.py\", \"content\": \"import sys; print(sys.argv)\"}], "
                       "\"stdin\": \"\", \"args\": [\"1\", \"2\", \"3\"], \"compile_timeout\": "
                       "10000, \"run_timeout\": 3000, \"compile_cpu_time\": 10000, "
                       "\"run_cpu_time\": 3000, \"compile_memory_limit\": -1, "
                       "\"run_memory_limit\": -1}",
                       err, sizeof(err), &r);
        assert_int_equal(r, 0);
        if (!json_equal(exec, expected))
                fail_msg("got %s", json_dumps(exec, JSON_COMPACT));
        json_decref(exec);
        json_decref(expected);
}

static void test_exec_request_files(void **state)
{
        char err[256] = "";
        json_t *exec, *files;
        int r;

        /* base64 and hex contents that decode to text; an unnamed extra file is named by its
         * position; a fractional timeout is rounded up. */
        exec = convert("{\"language\": \"bash\", \"version\": \"*\", \"files\": ["
                       "{\"content\": \"Y2F0IGQudHh0\", \"encoding\": \"base64\"},"
                       "{\"name\": \"d.txt\", \"content\": \"6869\", \"encoding\": \"hex\"},"
                       "{\"content\": \"plain\", \"encoding\": \"utf8\"}], \"run_timeout\": 10.2}",
                       err, sizeof(err), &r);
        assert_int_equal(r, 0);
        assert_string_equal(json_string_value(json_object_get(exec, "code")), "cat d.txt");
        files = json_object_get(exec, "files");
        assert_int_equal(json_array_size(files), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "name")),
                            "d.txt");
        /* hex is handed to opd as base64 ("hi"), utf8 as it came, without an encoding. */
        assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "content")),
                            "aGk=");
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(files, 0), "encoding")), "base64");
        assert_null(json_object_get(json_array_get(files, 1), "encoding"));
        assert_string_equal(json_string_value(json_object_get(json_array_get(files, 1), "name")),
                            "file2");
        assert_int_equal(json_integer_value(json_object_get(exec, "timeout_ms")), 11);
        assert_null(json_object_get(exec, "stdin"));
        json_decref(exec);
}

/* Piston's run limits become opd's; binary files go to opd as base64. */
static void test_exec_request_limits_binary(void **state)
{
        char err[256] = "";
        json_t *exec, *f;
        int r;

        exec = convert("{\"language\": \"bash\", \"version\": \"*\", \"files\": ["
                       "{\"content\": \"od -c b\"},"
                       "{\"name\": \"b\", \"content\": \"AAEC/w==\", \"encoding\": \"base64\"},"
                       "{\"name\": \"h\", \"content\": \"00FFfe\", \"encoding\": \"hex\"}],"
                       "\"run_memory_limit\": 67108864, \"run_cpu_time\": 250.5}",
                       err, sizeof(err), &r);
        assert_int_equal(r, 0);
        assert_int_equal(json_integer_value(json_object_get(exec, "memory_bytes")), 67108864);
        assert_int_equal(json_integer_value(json_object_get(exec, "cpu_time_ms")), 251);
        f = json_array_get(json_object_get(exec, "files"), 0);
        assert_string_equal(json_string_value(json_object_get(f, "content")), "AAEC/w==");
        assert_string_equal(json_string_value(json_object_get(f, "encoding")), "base64");
        f = json_array_get(json_object_get(exec, "files"), 1);
        assert_string_equal(json_string_value(json_object_get(f, "content")), "AP/+");
        assert_string_equal(json_string_value(json_object_get(f, "encoding")), "base64");
        json_decref(exec);

        /* -1 (memory) and 0 are no limit: the fields are left out. */
        exec = convert("{\"language\": \"bash\", \"version\": \"*\", \"files\": [{\"content\": "
                       "\"\"}], \"run_memory_limit\": -1, \"run_cpu_time\": 0}",
                       err, sizeof(err), &r);
        assert_int_equal(r, 0);
        assert_null(json_object_get(exec, "memory_bytes"));
        assert_null(json_object_get(exec, "cpu_time_ms"));
        json_decref(exec);
}

static void test_exec_request_refused(void **state)
{
        static const struct {
                const char *body, *message;
        } cases[] = {
            {"[]", "the request body must be a JSON object"},
            {"{\"version\": \"*\", \"files\": []}", "language is required as a string"},
            {"{\"language\": \"\", \"version\": \"*\", \"files\": []}",
             "language is required as a string"},
            {"{\"language\": \"py\", \"files\": []}", "version is required as a string"},
            {"{\"language\": \"py\", \"version\": 3, \"files\": []}",
             "version is required as a string"},
            {"{\"language\": \"py\", \"version\": \"*\"}", "files is required as an array"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": []}",
             "files must hold at least one file: the program"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{}]}",
             "files[0].content is required as a string"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}, 7]}",
             "files[1] must be an object"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\", "
             "\"name\": 1}]}",
             "files[0].name must be a string"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"x\", "
             "\"encoding\": \"rot13\"}]}",
             "files[0].encoding must be \"utf8\", \"base64\" or \"hex\""},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"!!\", "
             "\"encoding\": \"base64\"}]}",
             "files[0].content is not valid base64"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"abc\", "
             "\"encoding\": \"hex\"}]}",
             "files[0].content is not valid hex"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"AP8=\", "
             "\"encoding\": \"base64\"}]}",
             "files[0]: the program must be text (its decoded bytes UTF-8 without NUL); binary "
             "content is taken in the other files"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}, "
             "{\"content\": \"0g\", \"encoding\": \"hex\"}]}",
             "files[1].content is not valid hex"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}], "
             "\"run_memory_limit\": 1e15}",
             "run_memory_limit cannot be over the configured limit of 536870912"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}], "
             "\"run_cpu_time\": 1e12}",
             "run_cpu_time cannot be over the configured limit of 60000"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}], "
             "\"stdin\": 5}",
             "stdin must be a string"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}], "
             "\"args\": \"-v\"}",
             "args must be an array of strings"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}], "
             "\"args\": [1]}",
             "args[0] must be a string"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}], "
             "\"run_timeout\": \"3s\"}",
             "run_timeout must be a number"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}], "
             "\"run_timeout\": -5}",
             "run_timeout must not be negative"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}], "
             "\"run_memory_limit\": -2}",
             "run_memory_limit must not be negative (except -1: no limit)"},
            {"{\"language\": \"py\", \"version\": \"*\", \"files\": [{\"content\": \"\"}], "
             "\"run_timeout\": 60001}",
             "run_timeout cannot be over the configured limit of 60000"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[256] = "";
                json_t *exec;
                int r;

                exec = convert(cases[i].body, err, sizeof(err), &r);
                if (r != -EINVAL || exec)
                        fail_msg("%s: accepted", cases[i].body);
                if (strcmp(err, cases[i].message) != 0)
                        fail_msg("%s: got \"%s\", expected \"%s\"", cases[i].body, err,
                                 cases[i].message);
        }
}

static json_t *result(const char *answer_text)
{
        json_t *answer = load(answer_text);
        json_t *res = piston_result(answer, "python", "3.11.2", 10);

        json_decref(answer);
        assert_non_null(res);
        return res;
}

static void check_run(json_t *res, const char *status, const char *signal, json_int_t code)
{
        json_t *run = json_object_get(res, "run");

        assert_string_equal(json_string_value(json_object_get(res, "language")), "python");
        assert_string_equal(json_string_value(json_object_get(res, "version")), "3.11.2");
        if (status)
                assert_string_equal(json_string_value(json_object_get(run, "status")), status);
        else
                assert_true(json_is_null(json_object_get(run, "status")));
        if (signal)
                assert_string_equal(json_string_value(json_object_get(run, "signal")), signal);
        else
                assert_true(json_is_null(json_object_get(run, "signal")));
        if (code >= 0)
                assert_int_equal(json_integer_value(json_object_get(run, "code")), code);
        else
                assert_true(json_is_null(json_object_get(run, "code")));
        json_decref(res);
}

static void test_result(void **state)
{
        json_t *res = result("{\"ok\": true, \"stdout\": \"out\\n\", \"stderr\": \"err\\n\", "
                             "\"exit_code\": 0, \"signal\": null, \"timed_out\": false, "
                             "\"truncated\": false, \"timings_ms\": {\"guest_run\": 12.6}}");
        json_t *run = json_object_get(res, "run");

        assert_string_equal(json_string_value(json_object_get(run, "stdout")), "out\n");
        assert_string_equal(json_string_value(json_object_get(run, "stderr")), "err\n");
        assert_string_equal(json_string_value(json_object_get(run, "output")), "out\nerr\n");
        assert_true(json_is_null(json_object_get(run, "message")));
        assert_int_equal(json_integer_value(json_object_get(run, "wall_time")), 13);
        assert_true(json_is_null(json_object_get(run, "cpu_time")));
        assert_true(json_is_null(json_object_get(run, "memory")));
        assert_null(json_object_get(res, "compile"));
        check_run(res, NULL, NULL, 0);

        check_run(result("{\"stdout\": \"\", \"stderr\": \"\", \"exit_code\": 3, \"signal\": "
                         "null, \"timed_out\": false, \"truncated\": false}"),
                  "RE", NULL, 3);
        check_run(result("{\"stdout\": \"\", \"stderr\": \"\", \"exit_code\": null, \"signal\": "
                         "11, \"timed_out\": false, \"truncated\": false}"),
                  "SG", "SIGSEGV", -1);
        check_run(result("{\"stdout\": \"\", \"stderr\": \"\", \"exit_code\": null, \"signal\": "
                         "9, \"timed_out\": true, \"truncated\": false}"),
                  "TO", "SIGKILL", -1);
        check_run(result("{\"stdout\": \"0123456789\", \"stderr\": \"\", \"exit_code\": null, "
                         "\"signal\": 9, \"timed_out\": false, \"truncated\": true}"),
                  "OL", "SIGKILL", -1);
        check_run(result("{\"stdout\": \"\", \"stderr\": \"0123456789\", \"exit_code\": null, "
                         "\"signal\": 9, \"timed_out\": false, \"truncated\": true}"),
                  "EL", "SIGKILL", -1);
}

static void check_output(const char *answer_text, const char *phase, const char *want,
                         size_t want_len)
{
        json_t *res = result(answer_text);
        json_t *out = json_object_get(json_object_get(res, phase), "output");

        assert_true(json_is_string(out));
        assert_int_equal(json_string_length(out), want_len);
        assert_memory_equal(json_string_value(out), want, want_len);
        json_decref(res);
}

/* "output" holds stdout and stderr in the order of "output_order"; without one, or with one that
 * does not fit the bytes, stdout then stderr. */
static void test_result_output_order(void **state)
{
#define RUN_FIELDS "\"exit_code\": 0, \"signal\": null, \"timed_out\": false, \"truncated\": false"
        check_output("{\"stdout\": \"a\\nc\\n\", \"stderr\": \"b\\n\", " RUN_FIELDS
                     ", \"output_order\": [[1, 2], [2, 2], [1, 2]]}",
                     "run", "a\nb\nc\n", 6);
        /* partial: the order as given (the rest of each stream comes last) */
        check_output("{\"stdout\": \"a\\nc\\n\", \"stderr\": \"b\\n\", " RUN_FIELDS
                     ", \"output_order\": [[2, 2], [1, 4]], \"output_order_partial\": true}",
                     "run", "b\na\nc\n", 6);
        check_output("{\"stdout\": \"a\\nc\\n\", \"stderr\": \"b\\n\", " RUN_FIELDS "}", "run",
                     "a\nc\nb\n", 6);
        check_output("{\"stdout\": \"a\\nc\\n\", \"stderr\": \"b\\n\", " RUN_FIELDS
                     ", \"output_order\": [[1, 2], [2, 2], [1, 3]]}",
                     "run", "a\nc\nb\n", 6);
        check_output("{\"stdout\": \"a\\nc\\n\", \"stderr\": \"b\\n\", " RUN_FIELDS
                     ", \"output_order\": \"1,2\"}",
                     "run", "a\nc\nb\n", 6);
        /* counted in bytes (from "_b64"); a character split by the other stream's bytes
         * becomes U+FFFD on both sides */
        check_output("{\"stdout\": \"\\u00e9\", \"stderr\": \"!\", " RUN_FIELDS
                     ", \"output_order\": [[1, 1], [2, 1], [1, 1]]}",
                     "run", "\xef\xbf\xbd!\xef\xbf\xbd", 7);
        check_output(
            "{\"stdout\": \"a\\ufffd\", \"stdout_b64\": \"YQA=\", \"stderr\": \"b\", " RUN_FIELDS
            ", \"output_order\": [[1, 1], [2, 1], [1, 1]]}",
            "run", "ab\xef\xbf\xbd", 5);
        /* the compile phase has its own */
        check_output("{\"stdout\": \"\", \"stderr\": \"\", " RUN_FIELDS
                     ", \"compile\": {\"stdout\": \"o\", \"stderr\": \"e\", " RUN_FIELDS
                     ", \"output_order\": [[2, 1], [1, 1]]}}",
                     "compile", "eo", 2);
#undef RUN_FIELDS
}

/* Counts out of range (negative, huge, not finite) become null rather than an integer cast
 * from a double it cannot hold. */
static void test_result_counts_out_of_range(void **state)
{
        json_t *res = result("{\"stdout\": \"\", \"stderr\": \"\", \"exit_code\": 0, "
                             "\"signal\": null, \"timed_out\": false, \"truncated\": false, "
                             "\"status\": \"ok\", \"usage\": {\"cpu_time_ms\": 1e300, "
                             "\"wall_ms\": -1e300, \"memory_peak_bytes\": -5}}");
        json_t *run = json_object_get(res, "run");

        assert_true(json_is_null(json_object_get(run, "cpu_time")));
        assert_true(json_is_null(json_object_get(run, "wall_time")));
        assert_true(json_is_null(json_object_get(run, "memory")));
        check_run(res, NULL, NULL, 0);
}

/* Fields of newer opds (status, usage, compile) map onto Piston's when the answer has them. */
static void test_result_newer_fields(void **state)
{
        json_t *res = result("{\"stdout\": \"\", \"stderr\": \"\", \"exit_code\": null, "
                             "\"signal\": 9, \"timed_out\": false, \"truncated\": false, "
                             "\"status\": \"memory_limit\", \"usage\": {\"cpu_time_ms\": 7.4, "
                             "\"wall_ms\": 20.6, \"memory_peak_bytes\": 1048576}}");
        json_t *run = json_object_get(res, "run");

        assert_int_equal(json_integer_value(json_object_get(run, "cpu_time")), 7);
        assert_int_equal(json_integer_value(json_object_get(run, "wall_time")), 21);
        assert_int_equal(json_integer_value(json_object_get(run, "memory")), 1048576);
        assert_string_equal(json_string_value(json_object_get(run, "message")),
                            "Memory limit exceeded");
        check_run(res, "SG", "SIGKILL", -1);

        /* a CPU-time limit: status timeout without timed_out */
        check_run(result("{\"stdout\": \"\", \"stderr\": \"\", \"exit_code\": null, \"signal\": "
                         "9, \"timed_out\": false, \"truncated\": false, \"status\": "
                         "\"timeout\"}"),
                  "TO", "SIGKILL", -1);

        /* a compiled language that compiled and ran */
        res = result("{\"stdout\": \"hi\\n\", \"stderr\": \"\", \"exit_code\": 0, \"signal\": "
                     "null, \"timed_out\": false, \"truncated\": false, \"status\": \"ok\", "
                     "\"compile\": {\"stdout\": \"\", \"stderr\": \"warn\\n\", \"exit_code\": 0, "
                     "\"signal\": null, \"timed_out\": false, \"truncated\": false, "
                     "\"run_ms\": 861.2}}");
        json_t *comp = json_object_get(res, "compile");
        assert_string_equal(json_string_value(json_object_get(comp, "output")), "warn\n");
        assert_int_equal(json_integer_value(json_object_get(comp, "code")), 0);
        assert_int_equal(json_integer_value(json_object_get(comp, "wall_time")), 861);
        assert_true(json_is_null(json_object_get(comp, "status")));
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(res, "run"), "stdout")), "hi\n");
        check_run(res, NULL, NULL, 0);

        /* compiling failed: Piston gives the compile stage as "run" too */
        res = result("{\"stdout\": \"\", \"stderr\": \"\", \"exit_code\": null, \"signal\": "
                     "null, \"timed_out\": false, \"truncated\": false, \"status\": "
                     "\"compile_error\", \"compile\": {\"stdout\": \"\", \"stderr\": \"error\\n\", "
                     "\"exit_code\": 1, \"signal\": null, \"timed_out\": false, \"truncated\": "
                     "false, \"run_ms\": 883.5}}");
        assert_true(json_equal(json_object_get(res, "run"), json_object_get(res, "compile")));
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(res, "run"), "stderr")), "error\n");
        check_run(res, "RE", NULL, 1);
}

static void test_http_status(void **state)
{
        assert_int_equal(piston_http_status("bad_request"), 400);
        assert_int_equal(piston_http_status("unknown_language"), 400);
        assert_int_equal(piston_http_status("permission_denied"), 403);
        assert_int_equal(piston_http_status("busy"), 503);
        assert_int_equal(piston_http_status("pool_exhausted"), 503);
        assert_int_equal(piston_http_status("shutting_down"), 503);
        assert_int_equal(piston_http_status("vm_failed"), 500);
        assert_int_equal(piston_http_status("timeout"), 500);
        assert_int_equal(piston_http_status(NULL), 500);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_version_match),
            cmocka_unit_test(test_exec_request_documented),
            cmocka_unit_test(test_exec_request_files),
            cmocka_unit_test(test_exec_request_limits_binary),
            cmocka_unit_test(test_exec_request_refused),
            cmocka_unit_test(test_result),
            cmocka_unit_test(test_result_newer_fields),
            cmocka_unit_test(test_result_output_order),
            cmocka_unit_test(test_result_counts_out_of_range),
            cmocka_unit_test(test_http_status),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
