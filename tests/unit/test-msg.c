/* test-msg.c: unit tests of proto/msg.c: parsing frames into objects, request ids, exec request
 * validation against every limit, error replies, binary-safe byte strings and base64. */
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cleanup.h"
#include "frame.h"
#include "msg-session.h"
#include "msg-snapshot.h"
#include "msg.h"

static json_t *parse(const char *s)
{
        char err[256] = "";
        json_t *obj = NULL;
        int r = op_parse_object(s, strlen(s), &obj, err, sizeof(err));

        if (r < 0)
                fail_msg("op_parse_object(%s): %d %s", s, r, err);
        return obj;
}

/* A string of n copies of c, malloc'd. */
static char *repeat(char c, size_t n)
{
        char *s = malloc(n + 1);

        assert_non_null(s);
        memset(s, c, n);
        s[n] = 0;
        return s;
}

/* ---- op_parse_object ---- */

static void parse_fails(const char *s, size_t len, const char *want_in_msg)
{
        json_t *obj = (json_t *)0x1;
        char err[256] = "";

        assert_int_equal(op_parse_object(s, len, &obj, err, sizeof(err)), -EBADMSG);
        assert_ptr_equal(obj, (json_t *)0x1); /* untouched */
        assert_true(strlen(err) > 0);
        if (want_in_msg && !strstr(err, want_in_msg))
                fail_msg("message \"%s\" lacks \"%s\"", err, want_in_msg);
}

/* A payload is refused by its count of JSON values before it is parsed; strings and escapes do
 * not count, and the bound is never below the real count. */
static void test_parse_object_values_max(void **state)
{
        const char *flat = "{\"a\":[[],[],[],{}],\"b\":\"[,:{\\\"\"}";
        struct op_limits lim = OP_LIMITS_DEFAULT;
        json_t *obj = NULL;
        char err[256] = "";
        size_t n = strlen(flat);

        /* 7 values (the object, the array and its 4 members, the string) and 2 keys; every
         * bracket, comma and colon outside the string counts: 13 */
        assert_int_equal(op_json_values_bound(flat, n), 13);
        assert_int_equal(op_parse_object_max(flat, n, 13, &obj, err, sizeof(err)), 0);
        json_decref(obj);
        obj = (json_t *)0x1;
        assert_int_equal(op_parse_object_max(flat, n, 12, &obj, err, sizeof(err)), -EBADMSG);
        assert_ptr_equal(obj, (json_t *)0x1);
        assert_non_null(strstr(err, "more than 12 JSON values"));
        /* the default limits admit a batch at every limit, and not a frame of empty arrays */
        assert_true(op_limits_values_max(&lim) >=
                    (lim.batch_max + 1) * (lim.args_max + 2 * lim.env_max));
        assert_true(op_limits_values_max(&lim) < 100000);
}

static void test_parse_object(void **state)
{
        json_auto_t *obj = parse("{\"id\":1,\"op\":\"exec\",\"x\":{\"y\":[1,\"\xc3\xa9\"]}}");

        assert_true(json_is_object(obj));
        assert_int_equal(json_object_size(obj), 3);

        /* invalid UTF-8, also where JSON would allow it inside a string */
        parse_fails("{\"a\":\"\xff\"}", 8, "UTF-8");
        parse_fails("{\"a\":\"\xc0\xaf\"}", 9, "UTF-8");
        parse_fails("{\"a\":\"\xed\xa0\x80\"}", 10, "UTF-8");
        parse_fails("{\"\xe2\x82\":1}", 8, "UTF-8");
        /* valid JSON, not an object */
        parse_fails("[1,2]", 5, "object");
        parse_fails("[]", 2, "object");
        parse_fails("\"str\"", 5, NULL);
        parse_fails("1", 1, NULL);
        parse_fails("null", 4, NULL);
        parse_fails("true", 4, NULL);
        /* invalid JSON */
        parse_fails("{", 1, "invalid JSON");
        parse_fails("{\"a\":}", 6, "invalid JSON");
        parse_fails("{\"a\":1,}", 8, "invalid JSON");
        parse_fails("{'a':1}", 7, "invalid JSON");
        parse_fails("{\"a\":1} {}", 10, "invalid JSON"); /* one object per frame */
        parse_fails("{\"a\":01}", 8, "invalid JSON");
        parse_fails("{\"a\":NaN}", 9, "invalid JSON");
        parse_fails("{\"a\":\"\\ud800\"}", 14, "invalid JSON"); /* lone surrogate escape */
        parse_fails("{\"a\":\"\\u0000\"}", 14, "invalid JSON"); /* no NUL in strings */
        parse_fails("{\"a\":\"tab\tin string\"}", 21, "invalid JSON");
        parse_fails("{\"a\":1}\0", 8, "invalid JSON"); /* a NUL after the object */
        parse_fails("\0{}", 3, "invalid JSON");
        /* duplicate keys: which one would win is not defined, so neither does */
        parse_fails("{\"a\":1,\"a\":2}", 13, "duplicate");
        parse_fails("{\"x\":{\"a\":1,\"a\":1}}", 19, "duplicate");
        /* empty */
        parse_fails("", 0, NULL);
}

static void test_parse_object_whitespace_and_escapes(void **state)
{
        json_auto_t *obj = parse(" \t\r\n{ \"k\" : \"\\u00e9\\ud83d\\ude00\\n\" } \n");
        const char *v = json_string_value(json_object_get(obj, "k"));

        assert_string_equal(v, "\xc3\xa9\xf0\x9f\x98\x80\n");
}

/* ---- op_request_id ---- */

static void test_request_id(void **state)
{
        char err[128];
        json_t *id;
        _cleanup_free_ char *s256 = repeat('x', 256), *s257 = repeat('x', 257);

        {
                json_auto_t *r = parse("{\"id\":\"abc\"}");
                assert_int_equal(op_request_id(r, &id, err, sizeof(err)), 0);
                assert_ptr_equal(id, json_object_get(r, "id")); /* borrowed, echoed as is */
                assert_string_equal(json_string_value(id), "abc");
        }
        {
                json_auto_t *r = parse("{\"id\":\"\"}");
                assert_int_equal(op_request_id(r, &id, err, sizeof(err)), 0);
                assert_string_equal(json_string_value(id), "");
        }
        {
                json_auto_t *r = parse("{\"id\":42}");
                assert_int_equal(op_request_id(r, &id, err, sizeof(err)), 0);
                assert_int_equal(json_integer_value(id), 42);
        }
        {
                json_auto_t *r = parse("{\"id\":-9223372036854775808}");
                assert_int_equal(op_request_id(r, &id, err, sizeof(err)), 0);
                assert_true(json_is_integer(id));
        }
        {
                json_auto_t *r = parse("{\"op\":\"ping\"}");
                id = (json_t *)0x1;
                assert_int_equal(op_request_id(r, &id, err, sizeof(err)), 0);
                assert_null(id);
        }
        {
                json_auto_t *r = parse("{\"id\":null}");
                id = (json_t *)0x1;
                assert_int_equal(op_request_id(r, &id, err, sizeof(err)), 0);
                assert_null(id);
        }
        {
                json_auto_t *r = json_pack("{s:s}", "id", s256);
                assert_int_equal(op_request_id(r, &id, err, sizeof(err)), 0);
        }
        {
                json_auto_t *r = json_pack("{s:s}", "id", s257);
                id = (json_t *)0x1;
                assert_int_equal(op_request_id(r, &id, err, sizeof(err)), -EINVAL);
                assert_ptr_equal(id, (json_t *)0x1);
                assert_non_null(strstr(err, "256"));
        }

        static const char *const wrong[] = {
            "{\"id\":1.5}", "{\"id\":1e3}", "{\"id\":true}", "{\"id\":false}",
            "{\"id\":[]}",  "{\"id\":[1]}", "{\"id\":{}}",
        };
        for (size_t i = 0; i < ELEMENTSOF(wrong); i++) {
                json_auto_t *r = parse(wrong[i]);
                id = (json_t *)0x1;
                err[0] = 0;
                assert_int_equal(op_request_id(r, &id, err, sizeof(err)), -EINVAL);
                assert_ptr_equal(id, (json_t *)0x1);
                assert_non_null(strstr(err, "\"id\""));
        }
        /* an integer too large for int64 is not an integer to jansson: refused at parse time */
        parse_fails("{\"id\":9223372036854775808}", 26, "invalid JSON");
}

/* ---- op_exec_decode ---- */

/* Decode json with lim; on failure check that *ret stayed untouched and that the request's
 * reference count is back where it was (no leaked reference). */
static int decode_lim(const char *json, const struct op_limits *lim, struct op_exec *ret, char *err,
                      size_t errlen)
{
        json_auto_t *req = parse(json);
        struct op_exec poison;
        int r;

        memset(&poison, 0xa5, sizeof(poison));
        *ret = poison;
        err[0] = 0;
        r = op_exec_decode(req, lim, ret, err, errlen);
        if (r < 0) {
                assert_memory_equal(ret, &poison, sizeof(poison));
                assert_int_equal(req->refcount, 1);
                assert_true(strlen(err) > 0);
        } else
                assert_int_equal(req->refcount, 2);
        return r;
}

static int decode(const char *json, struct op_exec *ret, char *err, size_t errlen)
{
        const struct op_limits lim = OP_LIMITS_DEFAULT;

        return decode_lim(json, &lim, ret, err, errlen);
}

#define DECODE_OK(json, e)                                                                         \
        do {                                                                                       \
                char _err[256];                                                                    \
                if (decode((json), (e), _err, sizeof(_err)) < 0)                                   \
                        fail_msg("decode %s: %s", (json), _err);                                   \
        } while (0)

/* Refused with -EINVAL and a message that contains want. */
static void decode_fails_lim(const char *json, const struct op_limits *lim, const char *want)
{
        struct op_exec e;
        char err[256];
        int r = decode_lim(json, lim, &e, err, sizeof(err));

        if (r != -EINVAL)
                fail_msg("decode %s: %d, want -EINVAL", json, r);
        if (want && !strstr(err, want))
                fail_msg("decode %s: message \"%s\" lacks \"%s\"", json, err, want);
}

static void decode_fails(const char *json, const char *want)
{
        const struct op_limits lim = OP_LIMITS_DEFAULT;

        decode_fails_lim(json, &lim, want);
}

static void test_exec_minimal(void **state)
{
        struct op_exec e;

        DECODE_OK("{\"op\":\"exec\",\"lang\":\"python\",\"code\":\"print(1)\"}", &e);
        assert_non_null(e.json);
        assert_string_equal(e.lang, "python");
        assert_string_equal(e.code, "print(1)");
        assert_int_equal(e.code_len, 8);
        assert_null(e.stdin_data);
        assert_int_equal(e.stdin_len, 0);
        assert_int_equal(e.n_args, 0);
        assert_int_equal(e.n_env, 0);
        assert_int_equal(e.n_files, 0);
        assert_int_equal(e.timeout_ms, OP_LIMITS_DEFAULT.timeout_ms_default);
        assert_int_equal(e.mode, OP_MODE_AUTO);
        op_exec_done(&e);
        assert_null(e.json);
        assert_null(e.lang);

        /* empty code is a program that does nothing */
        DECODE_OK("{\"op\":\"exec\",\"lang\":\"python\",\"code\":\"\"}", &e);
        assert_int_equal(e.code_len, 0);
        op_exec_done(&e);
}

static void test_exec_all_fields(void **state)
{
        struct op_exec e;

        DECODE_OK("{\"id\":\"r1\",\"op\":\"exec\",\"lang\":\"py\",\"code\":\"import sys\","
                  "\"stdin\":\"in\\n\\u00e9\",\"args\":[\"-v\",\"\",\"x y\"],"
                  "\"env\":{\"HOME\":\"/tmp\",\"_X1\":\"a=b\",\"EMPTY\":\"\"},"
                  "\"files\":[{\"name\":\"data.txt\",\"content\":\"1 2 3\"},"
                  "{\"name\":\".hidden\",\"content\":\"\"}],"
                  "\"timeout_ms\":1234,\"mode\":\"cold\"}",
                  &e);
        assert_string_equal(e.lang, "py");
        assert_string_equal(e.code, "import sys");
        assert_int_equal(e.code_len, 10);
        assert_string_equal(e.stdin_data, "in\n\xc3\xa9");
        assert_int_equal(e.stdin_len, 5);
        assert_int_equal(e.n_args, 3);
        assert_string_equal(e.args[0], "-v");
        assert_string_equal(e.args[1], "");
        assert_string_equal(e.args[2], "x y");
        assert_null(e.args[3]); /* NULL-terminated, ready for an argv */
        assert_int_equal(e.n_env, 3);
        assert_string_equal(e.env[0], "HOME=/tmp"); /* jansson keeps insertion order */
        assert_string_equal(e.env[1], "_X1=a=b");
        assert_string_equal(e.env[2], "EMPTY=");
        assert_null(e.env[3]);
        assert_int_equal(e.n_files, 2);
        assert_string_equal(e.files[0].name, "data.txt");
        assert_string_equal(e.files[0].content, "1 2 3");
        assert_int_equal(e.files[0].content_len, 5);
        assert_string_equal(e.files[1].name, ".hidden");
        assert_int_equal(e.files[1].content_len, 0);
        assert_int_equal(e.timeout_ms, 1234);
        assert_int_equal(e.mode, OP_MODE_COLD);
        op_exec_done(&e);

        /* empty containers */
        DECODE_OK("{\"op\":\"exec\",\"lang\":\"py\",\"code\":\"\",\"args\":[],\"env\":{},"
                  "\"files\":[]}",
                  &e);
        assert_int_equal(e.n_args, 0);
        assert_int_equal(e.n_env, 0);
        assert_int_equal(e.n_files, 0);
        op_exec_done(&e);
}

#define BASE "\"op\":\"exec\",\"lang\":\"python\",\"code\":\"1\""

static void test_exec_wrong_types(void **state)
{
        static const struct {
                const char *json, *want;
        } cases[] = {
            {"{\"op\":\"exec\",\"code\":\"1\"}", "missing \"lang\""},
            {"{\"op\":\"exec\",\"lang\":\"python\"}", "missing \"code\""},
            {"{\"op\":\"exec\",\"lang\":1,\"code\":\"1\"}", "\"lang\""},
            {"{\"op\":\"exec\",\"lang\":null,\"code\":\"1\"}", "\"lang\""},
            {"{\"op\":\"exec\",\"lang\":[\"python\"],\"code\":\"1\"}", "\"lang\""},
            {"{\"op\":\"exec\",\"lang\":\"\",\"code\":\"1\"}", "\"lang\" is empty"},
            {"{\"op\":\"exec\",\"lang\":\"python\",\"code\":1}", "\"code\""},
            {"{\"op\":\"exec\",\"lang\":\"python\",\"code\":null}", "\"code\""},
            {"{\"op\":\"exec\",\"lang\":\"python\",\"code\":[\"print(1)\"]}", "\"code\""},
            {"{\"op\":\"exec\",\"lang\":\"python\",\"code\":{}}", "\"code\""},
            {"{" BASE ",\"stdin\":1}", "\"stdin\""},
            {"{" BASE ",\"stdin\":null}", "\"stdin\""}, /* optional means absent, not null */
            {"{" BASE ",\"stdin\":[]}", "\"stdin\""},
            {"{" BASE ",\"args\":\"-v\"}", "\"args\""},
            {"{" BASE ",\"args\":{}}", "\"args\""},
            {"{" BASE ",\"args\":null}", "\"args\""},
            {"{" BASE ",\"args\":[1]}", "\"args[0]\""},
            {"{" BASE ",\"args\":[\"a\",null]}", "\"args[1]\""},
            {"{" BASE ",\"args\":[[\"a\"]]}", "\"args[0]\""},
            {"{" BASE ",\"env\":[]}", "\"env\""},
            {"{" BASE ",\"env\":\"A=1\"}", "\"env\""},
            {"{" BASE ",\"env\":null}", "\"env\""},
            {"{" BASE ",\"env\":{\"A\":1}}", "\"env.A\""},
            {"{" BASE ",\"env\":{\"A\":null}}", "\"env.A\""},
            {"{" BASE ",\"env\":{\"A\":true}}", "\"env.A\""},
            {"{" BASE ",\"files\":{}}", "\"files\""},
            {"{" BASE ",\"files\":\"a\"}", "\"files\""},
            {"{" BASE ",\"files\":null}", "\"files\""},
            {"{" BASE ",\"files\":[\"a\"]}", "\"files[0]\""},
            {"{" BASE ",\"files\":[null]}", "\"files[0]\""},
            {"{" BASE ",\"files\":[{\"name\":\"a\"}]}", "\"files[0].content\""},
            {"{" BASE ",\"files\":[{\"content\":\"x\"}]}", "\"files[0].name\""},
            {"{" BASE ",\"files\":[{\"name\":1,\"content\":\"x\"}]}", "\"files[0].name\""},
            {"{" BASE ",\"files\":[{\"name\":\"a\",\"content\":1}]}", "\"files[0].content\""},
            {"{" BASE ",\"files\":[{\"name\":\"a\",\"content\":null}]}", "\"files[0].content\""},
            {"{" BASE ",\"files\":[{\"name\":\"a\",\"content\":\"\",\"mode\":420}]}",
             "unknown field \"mode\""},
            {"{" BASE ",\"timeout_ms\":\"5000\"}", "\"timeout_ms\""},
            {"{" BASE ",\"timeout_ms\":1.5}", "\"timeout_ms\""},
            {"{" BASE ",\"timeout_ms\":5000.0}", "\"timeout_ms\""},
            {"{" BASE ",\"timeout_ms\":true}", "\"timeout_ms\""},
            {"{" BASE ",\"timeout_ms\":null}", "\"timeout_ms\""},
            {"{" BASE ",\"mode\":1}", "\"mode\""},
            {"{" BASE ",\"mode\":null}", "\"mode\""},
            {"{" BASE ",\"mode\":[\"warm\"]}", "\"mode\""},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                decode_fails(cases[i].json, cases[i].want);
}

static void test_exec_unknown_fields(void **state)
{
        decode_fails("{" BASE ",\"timeout\":5}", "unknown field \"timeout\"");
        decode_fails("{" BASE ",\"Code\":\"x\"}", "unknown field \"Code\"");
        decode_fails("{" BASE ",\"stdin_b64\":\"AA==\"}", "unknown field \"stdin_b64\"");
        decode_fails("{" BASE ",\"\":1}", "unknown field");
        /* the unknown-field check runs first, even when a known field is also wrong */
        decode_fails("{\"op\":\"exec\",\"lang\":1,\"code\":\"1\",\"langs\":[]}", "unknown field");

        /* a long unknown name is quoted cut short, and the message stays well-formed UTF-8
         * even when the cut falls inside a multi-byte character */
        struct op_exec e;
        char err[256];
        _cleanup_free_ char *json = NULL;
        assert_true(asprintf(&json, "{" BASE ",\"%s\xc3\xa9\":1}",
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") >
                    0);
        assert_int_equal(decode(json, &e, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "unknown field"));
        json_auto_t *reply = op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", err);
        assert_non_null(reply); /* see test_error_reply_invalid_utf8 */
}

static void test_exec_limits(void **state)
{
        const struct op_limits lim = {
            .frame_max = OP_FRAME_MAX_DEFAULT,
            .code_max = 8,
            .stdin_max = 4,
            .args_max = 2,
            .arg_len_max = 3,
            .env_max = 2,
            .env_len_max = 5, /* bytes of NAME=value */
            .files_max = 2,
            .file_size_max = 3,
            .timeout_ms_default = 100,
            .timeout_ms_max = 200,
            .output_max = 1000,
        };
        struct op_exec e;
        char err[256];

#define OK(json)                                                                                   \
        do {                                                                                       \
                if (decode_lim((json), &lim, &e, err, sizeof(err)) < 0)                            \
                        fail_msg("decode %s: %s", (json), err);                                    \
                op_exec_done(&e);                                                                  \
        } while (0)
#define L "\"op\":\"exec\",\"lang\":\"python\""

        OK("{" L ",\"code\":\"12345678\"}");
        decode_fails_lim("{" L ",\"code\":\"123456789\"}", &lim, "\"code\" is 9 bytes");
        /* limits count bytes, not characters: 3 x U+20AC is 9 bytes */
        decode_fails_lim("{" L ",\"code\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}", &lim,
                         "\"code\"");
        OK("{" L ",\"code\":\"\",\"stdin\":\"1234\"}");
        decode_fails_lim("{" L ",\"code\":\"\",\"stdin\":\"12345\"}", &lim, "\"stdin\"");
        OK("{" L ",\"code\":\"\",\"args\":[\"123\",\"abc\"]}");
        decode_fails_lim("{" L ",\"code\":\"\",\"args\":[\"1\",\"2\",\"3\"]}", &lim,
                         "\"args\" has 3 entries");
        decode_fails_lim("{" L ",\"code\":\"\",\"args\":[\"1234\"]}", &lim, "\"args[0]\"");
        OK("{" L ",\"code\":\"\",\"env\":{\"A\":\"123\",\"B\":\"\"}}");
        decode_fails_lim("{" L ",\"code\":\"\",\"env\":{\"A\":\"1\",\"B\":\"2\",\"C\":\"3\"}}",
                         &lim, "\"env\" has 3 entries");
        decode_fails_lim("{" L ",\"code\":\"\",\"env\":{\"A\":\"1234\"}}", &lim, "\"env.A\"");
        decode_fails_lim("{" L ",\"code\":\"\",\"env\":{\"ABCDE\":\"\"}}", &lim, "\"env.ABCDE\"");
        OK("{" L ",\"code\":\"\",\"files\":[{\"name\":\"a\",\"content\":\"123\"},"
           "{\"name\":\"b\",\"content\":\"\"}]}");
        decode_fails_lim("{" L ",\"code\":\"\",\"files\":[{\"name\":\"a\",\"content\":\"\"},"
                         "{\"name\":\"b\",\"content\":\"\"},{\"name\":\"c\",\"content\":\"\"}]}",
                         &lim, "\"files\" has 3 entries");
        decode_fails_lim("{" L ",\"code\":\"\",\"files\":[{\"name\":\"a\",\"content\":\"1234\"}]}",
                         &lim, "\"files[0].content\"");
        OK("{" L ",\"code\":\"\",\"timeout_ms\":200}");
        decode_fails_lim("{" L ",\"code\":\"\",\"timeout_ms\":201}", &lim, "between 1 and 200");
        /* the configured default applies when timeout_ms is absent */
        assert_int_equal(decode_lim("{" L ",\"code\":\"\"}", &lim, &e, err, sizeof(err)), 0);
        assert_int_equal(e.timeout_ms, 100);
        op_exec_done(&e);

        /* lang: 64 bytes at most */
        _cleanup_free_ char *l64 = repeat('l', 64), *l65 = repeat('l', 65), *j64 = NULL,
                            *j65 = NULL;
        assert_true(asprintf(&j64, "{\"op\":\"exec\",\"lang\":\"%s\",\"code\":\"\"}", l64) > 0);
        assert_true(asprintf(&j65, "{\"op\":\"exec\",\"lang\":\"%s\",\"code\":\"\"}", l65) > 0);
        OK(j64);
        decode_fails_lim(j65, &lim, "\"lang\"");
#undef OK
#undef L
}

/* Fill files[] with one entry whose name is given as a JSON string literal. */
static void file_name_fails(const char *name_json)
{
        _cleanup_free_ char *json = NULL;

        assert_true(asprintf(&json, "{" BASE ",\"files\":[{\"name\":%s,\"content\":\"x\"}]}",
                             name_json) > 0);
        decode_fails(json, "\"files[0].name\"");
}

static void test_exec_file_names(void **state)
{
        static const char *const bad[] = {
            "\"..\"",       "\".\"",     "\"a/b\"",  "\"/abs\"",     "\"dir/\"",
            "\"\"",         "\"a\\nb\"", "\"\\t\"",  "\"a\\u0001\"", "\"\\u001f\"",
            "\"a\\u007f\"", "\"/\"",     "\"../x\"", "\"./x\"",
        };
        static const char *const good[] = {
            "main.py", "...", ".hidden", "a b", "\xc3\xbcn\xc3\xaf.txt", "a\\b", "-rf", "a..b",
        };
        struct op_exec e;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                file_name_fails(bad[i]);

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                json_auto_t *req = parse("{" BASE "}");
                json_t *files = json_pack("[{s:s,s:s}]", "name", good[i], "content", "");
                char err[256];

                assert_non_null(files);
                json_object_set_new(req, "files", files);
                assert_int_equal(op_exec_decode(req, &OP_LIMITS_DEFAULT, &e, err, sizeof(err)), 0);
                assert_string_equal(e.files[0].name, good[i]);
                op_exec_done(&e);
        }

        /* 255 bytes is the longest name */
        _cleanup_free_ char *n255 = repeat('n', 255), *n256 = repeat('n', 256), *q = NULL;
        assert_true(op_file_name_valid(n255, 255));
        assert_false(op_file_name_valid(n256, 256));
        assert_true(asprintf(&q, "\"%s\"", n256) > 0);
        file_name_fails(q);

        /* duplicates, also further apart */
        decode_fails("{" BASE ",\"files\":[{\"name\":\"a\",\"content\":\"1\"},"
                     "{\"name\":\"a\",\"content\":\"2\"}]}",
                     "repeats \"a\"");
        decode_fails("{" BASE ",\"files\":[{\"name\":\"a\",\"content\":\"\"},{\"name\":\"b\","
                     "\"content\":\"\"},{\"name\":\"c\",\"content\":\"\"},{\"name\":\"b\","
                     "\"content\":\"\"}]}",
                     "\"files[3].name\" repeats \"b\"");

        /* op_file_name_valid() directly: an embedded NUL is not part of a name */
        assert_false(op_file_name_valid("a\0b", 3));
        assert_false(op_file_name_valid("", 0));
        assert_true(op_file_name_valid("a", 1));
}

static void test_exec_timeout(void **state)
{
        struct op_exec e;
        char err[256];
        char json[128];
        const long long good[] = {1, 2, 5000, 60000};
        const long long bad[] = {
            0, -1, -5000, 60001, 4294967296LL, 4294967297LL, 9223372036854775807LL};

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                snprintf(json, sizeof(json), "{" BASE ",\"timeout_ms\":%lld}", good[i]);
                assert_int_equal(decode(json, &e, err, sizeof(err)), 0);
                assert_int_equal(e.timeout_ms, good[i]);
                op_exec_done(&e);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                snprintf(json, sizeof(json), "{" BASE ",\"timeout_ms\":%lld}", bad[i]);
                decode_fails(json, "\"timeout_ms\" must be between 1 and 60000");
        }
}

static void test_exec_compile_timeout(void **state)
{
        struct op_exec e;
        char err[256];
        char json[128];
        const long long good[] = {1, 30000, 120000};
        const long long bad[] = {0, -1, 120001, 4294967297LL};

        assert_int_equal(decode("{" BASE "}", &e, err, sizeof(err)), 0);
        assert_int_equal(e.compile_timeout_ms, 0); /* the language's default */
        op_exec_done(&e);
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                snprintf(json, sizeof(json), "{" BASE ",\"compile_timeout_ms\":%lld}", good[i]);
                assert_int_equal(decode(json, &e, err, sizeof(err)), 0);
                assert_int_equal(e.compile_timeout_ms, good[i]);
                op_exec_done(&e);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                snprintf(json, sizeof(json), "{" BASE ",\"compile_timeout_ms\":%lld}", bad[i]);
                decode_fails(json,
                             "\"compile_timeout_ms\" must be an integer between 1 and 120000");
        }
        decode_fails("{" BASE ",\"compile_timeout_ms\":\"5\"}", "\"compile_timeout_ms\"");
}

static void test_exec_mode(void **state)
{
        static const struct {
                const char *json;
                enum op_mode mode;
        } good[] = {
            {"{" BASE "}", OP_MODE_AUTO},
            {"{" BASE ",\"mode\":\"auto\"}", OP_MODE_AUTO},
            {"{" BASE ",\"mode\":\"warm\"}", OP_MODE_WARM},
            {"{" BASE ",\"mode\":\"cold\"}", OP_MODE_COLD},
        };
        static const char *const bad[] = {"\"WARM\"",  "\"\"",      "\"hot\"",
                                          "\"warm \"", "\"coldx\"", "\"auto-matic-mode-long\""};
        struct op_exec e;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                DECODE_OK(good[i].json, &e);
                assert_int_equal(e.mode, good[i].mode);
                op_exec_done(&e);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *json = NULL;
                assert_true(asprintf(&json, "{" BASE ",\"mode\":%s}", bad[i]) > 0);
                decode_fails(json, "\"mode\"");
        }
}

static void test_exec_env_names(void **state)
{
        static const char *const bad[] = {
            "",    "1A",  "9",  "A-B", "A=B", "A B", " A",   "A ",      "\xc3\x84",
            "A.B", "\\t", "$A", "A$",  "a-b", "=",   "A\\n", "\\u007f",
        };
        static const char *const good[] = {"_", "A", "a", "A1", "a_b", "_1", "PATH", "LC_ALL"};
        struct op_exec e;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *json = NULL;
                assert_true(asprintf(&json, "{" BASE ",\"env\":{\"%s\":\"v\"}}", bad[i]) > 0);
                decode_fails(json, "\"env\" name");
        }
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *json = NULL, *want = NULL;
                assert_true(asprintf(&json, "{" BASE ",\"env\":{\"%s\":\"v=1\"}}", good[i]) > 0);
                assert_true(asprintf(&want, "%s=v=1", good[i]) > 0);
                DECODE_OK(json, &e);
                assert_int_equal(e.n_env, 1);
                assert_string_equal(e.env[0], want);
                op_exec_done(&e);
        }
}

/* A failure after args and env were decoded frees them (ASan/valgrind see a leak otherwise). */
static void test_exec_late_failure_frees(void **state)
{
        decode_fails("{" BASE ",\"args\":[\"a\",\"b\"],\"env\":{\"A\":\"1\",\"B\":\"2\"},"
                     "\"files\":[{\"name\":\"..\",\"content\":\"\"}]}",
                     "\"files[0].name\"");
        decode_fails("{" BASE ",\"args\":[\"a\"],\"env\":{\"A\":\"1\",\"1\":\"2\"}}",
                     "\"env\" name");
}

/* ---- op_error_reply ---- */

static void test_error_names(void **state)
{
        /* the stable codes of the spec, in enum order */
        static const char *const names[_OP_ERR_MAX] = {
            "bad_request",    "frame_too_large",   "unknown_op",     "unknown_language",
            "pool_exhausted", "timeout",           "vm_failed",      "busy",
            "shutting_down",  "permission_denied", "internal_error", "unavailable",
            "not_found",      "quota_exceeded",
        };

        for (int i = 0; i < _OP_ERR_MAX; i++)
                assert_string_equal(op_err_name((enum op_err)i), names[i]);
        assert_string_equal(op_err_name(_OP_ERR_MAX), "internal_error");
        assert_string_equal(op_err_name((enum op_err) - 1), "internal_error");
}

static void check_error_shape(json_t *reply, const char *code, const char *message)
{
        json_t *err = json_object_get(reply, "error");

        assert_non_null(reply);
        assert_int_equal(json_object_size(reply), 3);
        assert_true(json_is_false(json_object_get(reply, "ok")));
        assert_true(json_is_object(err));
        assert_int_equal(json_object_size(err), 2);
        assert_string_equal(json_string_value(json_object_get(err, "code")), code);
        assert_string_equal(json_string_value(json_object_get(err, "message")), message);
}

static void test_error_reply(void **state)
{
        {
                json_auto_t *id = json_string("req-7");
                json_auto_t *r = op_error_reply(id, OP_ERR_UNKNOWN_LANGUAGE,
                                                "unknown language \"%s\"; available: %s", "cobol",
                                                "bash, python");
                check_error_shape(r, "unknown_language",
                                  "unknown language \"cobol\"; available: bash, python");
                assert_true(json_equal(json_object_get(r, "id"), id));
                assert_int_equal(id->refcount, 2); /* the reply holds its own reference */
        }
        {
                json_auto_t *id = json_integer(9);
                json_auto_t *r = op_error_reply(id, OP_ERR_TIMEOUT, "no answer in %d ms", 7000);
                check_error_shape(r, "timeout", "no answer in 7000 ms");
                assert_int_equal(json_integer_value(json_object_get(r, "id")), 9);
        }
        {
                json_auto_t *r =
                    op_error_reply(NULL, OP_ERR_FRAME_TOO_LARGE, "frame over %u bytes", 16u);
                check_error_shape(r, "frame_too_large", "frame over 16 bytes");
                /* "id" is present and null, not absent */
                assert_true(json_is_null(json_object_get(r, "id")));
        }
        {
                /* a long message is cut, not refused */
                _cleanup_free_ char *big = repeat('m', 4000);
                json_auto_t *r = op_error_reply(NULL, OP_ERR_INTERNAL, "%s", big);
                assert_non_null(r);
                assert_true(strlen(json_string_value(
                                json_object_get(json_object_get(r, "error"), "message"))) < 4000);
        }
        for (int i = 0; i <= _OP_ERR_MAX; i++) {
                json_auto_t *r = op_error_reply(NULL, (enum op_err)i, "x");
                check_error_shape(r, op_err_name((enum op_err)i), "x");
        }
}

/* Messages are often cut (%.64s, a fixed buffer) and may then end inside a UTF-8 sequence; an
 * error reply must still be produced, or the client would get no answer at all. */
static void test_error_reply_invalid_utf8(void **state)
{
        json_auto_t *cut =
            op_error_reply(NULL, OP_ERR_BAD_REQUEST, "unknown field \"%.5s\"", "abcd\xc3\xa9");
        json_auto_t *raw = op_error_reply(NULL, OP_ERR_BAD_REQUEST, "bad byte \xff here");
        _cleanup_free_ char *big = repeat('m', 600);

        assert_non_null(cut);
        assert_non_null(raw);
        big[509] = '\xe2'; /* U+20AC straddling the 512-byte message buffer's end */
        big[510] = '\x82';
        big[511] = '\xac';
        json_auto_t *straddle = op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", big);
        assert_non_null(straddle);

        /* jansson's own message quotes the input near the error, cut inside a character
         * (found by fuzz-request: the client of such a frame got no answer) */
        static const char bad_json[] =
            "{\"op\":\"exec\",\"lang\":\"py\",\"code\":\"ate\\u\xe6\x9c\xac'5bfalse\"}";
        json_t *obj = NULL;
        char err[256];
        assert_int_equal(op_parse_object(bad_json, sizeof(bad_json) - 1, &obj, err, sizeof(err)),
                         -EBADMSG);
        json_auto_t *parse_err = op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", err);
        assert_non_null(parse_err);
}

/* ---- op_json_set_bytes / op_json_get_bytes ---- */

/* set, get back, and also send through a frame and parse the frame again (the real trip). */
static void round_trip(const void *data, size_t len, bool want_b64)
{
        json_auto_t *obj = json_object(), *back = NULL;
        _cleanup_free_ char *got = NULL, *frame = NULL, *got2 = NULL;
        size_t got_len = 0, frame_len, got2_len = 0;
        struct op_frame f;
        char err[256];
        json_t *s;

        assert_int_equal(op_json_set_bytes(obj, "stdout", data, len), 0);
        s = json_object_get(obj, "stdout");
        assert_true(json_is_string(s));
        /* the text form is always valid UTF-8 without NUL... */
        assert_true(op_utf8_valid(json_string_value(s), json_string_length(s)));
        assert_null(memchr(json_string_value(s), 0, json_string_length(s)));
        /* ...and the exact bytes ride along exactly when the text form would lose them */
        assert_int_equal(json_object_get(obj, "stdout_b64") != NULL, want_b64);

        assert_int_equal(op_json_get_bytes(obj, "stdout", SIZE_MAX, &got, &got_len), 0);
        assert_int_equal(got_len, len);
        if (len)
                assert_memory_equal(got, data, len);
        assert_int_equal(got[len], 0); /* NUL-ended */

        assert_int_equal(op_frame_encode(obj, OP_FRAME_MAX_DEFAULT, &frame, &frame_len), 0);
        assert_int_equal(op_frame_next(frame, frame_len, OP_FRAME_MAX_DEFAULT, &f), 1);
        assert_int_equal(f.frame_len, frame_len);
        if (op_parse_object(frame + f.payload_offset, f.payload_len, &back, err, sizeof(err)) < 0)
                fail_msg("answer frame does not parse back: %s", err);
        assert_int_equal(op_json_get_bytes(back, "stdout", SIZE_MAX, &got2, &got2_len), 0);
        assert_int_equal(got2_len, len);
        if (len)
                assert_memory_equal(got2, data, len);
}

static void test_bytes_round_trip(void **state)
{
        uint8_t all[256];

        for (int i = 0; i < 256; i++)
                all[i] = (uint8_t)i;

        round_trip("", 0, false);
        round_trip("hello\n", 6, false);
        round_trip("h\xc3\xa9llo \xf0\x9f\x98\x80\n", 12, false);
        round_trip("\t\r\n\x01\x1f\"\\/", 8, false); /* control characters are escaped JSON */
        round_trip("a\0b", 3, true);                 /* NUL: valid UTF-8, yet sent as base64 */
        round_trip("\0", 1, true);
        round_trip("\xff", 1, true);
        round_trip("a\xff\xfe\x62", 4, true);
        round_trip("\xc3", 1, true);         /* truncated at the end of the output */
        round_trip("\xed\xa0\x80", 3, true); /* surrogate */
        round_trip("\xc0\xaf", 2, true);     /* overlong */
        round_trip(all, sizeof(all), true);
        round_trip(all + 1, 127, false);
}

static void test_bytes_replacement(void **state)
{
        json_auto_t *obj = json_object();

        assert_int_equal(op_json_set_bytes(obj, "out", "a\xff\x62\xc3", 4), 0);
        /* one U+FFFD per bad byte */
        assert_string_equal(json_string_value(json_object_get(obj, "out")),
                            "a\xef\xbf\xbd\x62\xef\xbf\xbd");
        assert_string_equal(json_string_value(json_object_get(obj, "out_b64")), "Yf9iww==");
}

static void test_get_bytes_errors(void **state)
{
        char *got = (char *)0x1;
        size_t n = 77;

        {
                json_auto_t *o = parse("{}");
                assert_int_equal(op_json_get_bytes(o, "stdout", 10, &got, &n), 0);
                assert_int_equal(n, 0); /* absent reads as empty */
                assert_string_equal(got, "");
                free(got);
                got = (char *)0x1;
                n = 77;
        }
        static const char *const bad[] = {
            "{\"stdout\":1}",
            "{\"stdout\":null}",
            "{\"stdout_b64\":1}",
            "{\"stdout\":\"x\",\"stdout_b64\":\"!!!!\"}",
            "{\"stdout\":\"x\",\"stdout_b64\":\"YQ\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_auto_t *o = parse(bad[i]);
                assert_int_equal(op_json_get_bytes(o, "stdout", 10, &got, &n), -EINVAL);
                assert_ptr_equal(got, (char *)0x1);
                assert_int_equal(n, 77);
        }
        {
                json_auto_t *o = parse("{\"stdout\":\"12345678901\"}");
                assert_int_equal(op_json_get_bytes(o, "stdout", 10, &got, &n), -E2BIG);
        }
        {
                json_auto_t *o = parse("{\"stdout\":\"x\",\"stdout_b64\":\"MTIzNDU2Nzg5MDE=\"}");
                assert_int_equal(op_json_get_bytes(o, "stdout", 10, &got, &n), -E2BIG);
                assert_ptr_equal(got, (char *)0x1);
                assert_int_equal(op_json_get_bytes(o, "stdout", 11, &got, &n), 0);
                assert_int_equal(n, 11);
                assert_string_equal(got, "12345678901");
                free(got);
        }
}

/* ---- op_frame_encode ---- */

static void test_frame_encode(void **state)
{
        json_auto_t *o = json_pack("{s:i,s:b}", "id", 1, "ok", 1);
        _cleanup_free_ char *buf = NULL;
        char *untouched = (char *)0x1;
        size_t n = 0;

        assert_int_equal(op_frame_encode(o, OP_FRAME_MAX_DEFAULT, &buf, &n), 0);
        assert_int_equal(n, 4 + strlen("{\"id\":1,\"ok\":true}"));
        assert_memory_equal(buf, "\0\0\0\x12{\"id\":1,\"ok\":true}", n);
        /* The buffer is cut to the frame: a queue of short answers holds what it counts. */
        assert_in_range(malloc_usable_size(buf), n, n + 64);
        assert_int_equal(op_frame_encode(o, 17, &untouched, &n), -EMSGSIZE);
        assert_ptr_equal(untouched, (char *)0x1);
        assert_int_equal(op_frame_encode(o, 18, &untouched, &n), 0);
        free(untouched);
}

/* A large answer, as the metrics one: a text of many escaped characters, encoded in one pass
 * the same as jansson's own encoder writes it; a payload of exactly max is taken, one byte more
 * is refused with the outputs untouched. */
static void test_frame_encode_large(void **state)
{
        const size_t text_len = 3 * 1000 * 1000;
        _cleanup_free_ char *text = malloc(text_len + 1), *buf = NULL, *want = NULL;
        json_t *o;
        char *untouched = (char *)0x1;
        size_t n = 0, want_len;

        assert_non_null(text);
        for (size_t i = 0; i < text_len; i++)
                text[i] = "opd_x{lang=\"bash\"} 1\n\\\t\x01"[i % 25];
        text[text_len] = '\0';
        o = json_pack("{s:i, s:b, s:s}", "id", 7, "ok", 1, "text", text);
        assert_non_null(o);
        want = json_dumps(o, JSON_COMPACT);
        assert_non_null(want);
        want_len = strlen(want);
        assert_int_equal(op_frame_encode(o, OP_FRAME_MAX_CEILING, &buf, &n), 0);
        assert_int_equal(n, OP_FRAME_HEADER_SIZE + want_len);
        assert_int_equal(((size_t)(uint8_t)buf[0] << 24 | (size_t)(uint8_t)buf[1] << 16 |
                          (size_t)(uint8_t)buf[2] << 8 | (uint8_t)buf[3]),
                         want_len);
        assert_memory_equal(buf + OP_FRAME_HEADER_SIZE, want, want_len);
        /* Not the 4 MiB the encoder doubled to: the frame and at most a page more. */
        assert_in_range(malloc_usable_size(buf), n, n + 8192);
        free(buf);
        buf = NULL;
        assert_int_equal(op_frame_encode(o, want_len, &buf, &n), 0);
        assert_int_equal(n, OP_FRAME_HEADER_SIZE + want_len);
        n = 42;
        assert_int_equal(op_frame_encode(o, want_len - 1, &untouched, &n), -EMSGSIZE);
        assert_ptr_equal(untouched, (char *)0x1);
        assert_int_equal(n, 42);
        json_decref(o);
        o = json_integer(1); /* not an object: refused */
        assert_int_equal(op_frame_encode(o, SIZE_MAX, &untouched, &n), -EINVAL);
        json_decref(o);
}

/* ---- base64 ---- */

static void test_base64_rfc4648(void **state)
{
        static const char *const vec[][2] = {
            {"", ""},
            {"f", "Zg=="},
            {"fo", "Zm8="},
            {"foo", "Zm9v"},
            {"foob", "Zm9vYg=="},
            {"fooba", "Zm9vYmE="},
            {"foobar", "Zm9vYmFy"},
        };

        for (size_t i = 0; i < ELEMENTSOF(vec); i++) {
                _cleanup_free_ char *enc = op_base64_encode(vec[i][0], strlen(vec[i][0]));
                _cleanup_free_ uint8_t *dec = NULL;
                size_t n = 99;

                assert_non_null(enc);
                assert_string_equal(enc, vec[i][1]);
                assert_int_equal(op_base64_decode(vec[i][1], strlen(vec[i][1]), &dec, &n), 0);
                assert_int_equal(n, strlen(vec[i][0]));
                assert_memory_equal(dec, vec[i][0], n);
                assert_int_equal(dec[n], 0);
        }

        /* the whole alphabet, both ways */
        static const uint8_t bytes[] = {0x00, 0x10, 0x83, 0x10, 0x51, 0x87, 0x20, 0x92, 0x8b, 0x30,
                                        0xd3, 0x8f, 0x41, 0x14, 0x93, 0x51, 0x55, 0x97, 0x61, 0x96,
                                        0x9b, 0x71, 0xd7, 0x9f, 0x82, 0x18, 0xa3, 0x92, 0x59, 0xa7,
                                        0xa2, 0x9a, 0xab, 0xb2, 0xdb, 0xaf, 0xc3, 0x1c, 0xb3, 0xd3,
                                        0x5d, 0xb7, 0xe3, 0x9e, 0xbb, 0xf3, 0xdf, 0xbf};
        _cleanup_free_ char *enc = op_base64_encode(bytes, sizeof(bytes));
        assert_string_equal(enc,
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
}

static void test_base64_invalid(void **state)
{
        static const char *const bad[] = {
            "Zg=",                                /* length not a multiple of 4 */
            "Zg",   "Z",    "Zm9vY",  "Z===",     /* a single sextet cannot make a byte */
            "====", "=Zg=", "Z=g=",   "Zg==Zg==", /* padding before the end */
            "Zm=v", "Zm9*", "Zm9v\n", "Zm9vYg==\n",
            " Zm9", "Zm 9", "Zm-_", /* the URL-safe alphabet is not accepted */
            "Zg=A",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint8_t *out = (uint8_t *)0x1;
                size_t n = 77;

                if (op_base64_decode(bad[i], strlen(bad[i]), &out, &n) != -EINVAL)
                        fail_msg("\"%s\" was accepted", bad[i]);
                assert_ptr_equal(out, (uint8_t *)0x1);
                assert_int_equal(n, 77);
        }
        /* an embedded NUL is not a base64 character either */
        uint8_t *out = NULL;
        size_t n;
        assert_int_equal(op_base64_decode("Zg\0=", 4, &out, &n), -EINVAL);
        assert_int_equal(op_base64_decode("\0\0\0\0", 4, &out, &n), -EINVAL);
        assert_int_equal(op_base64_decode("Zm9\xff", 4, &out, &n), -EINVAL);
}

static void test_base64_random_round_trip(void **state)
{
        unsigned seed = 12345;

        for (int iter = 0; iter < 2000; iter++) {
                uint8_t data[200];
                size_t len = (size_t)(rand_r(&seed) % (int)sizeof(data));
                _cleanup_free_ char *enc = NULL;
                _cleanup_free_ uint8_t *dec = NULL;
                size_t n;

                for (size_t i = 0; i < len; i++)
                        data[i] = (uint8_t)rand_r(&seed);
                enc = op_base64_encode(data, len);
                assert_non_null(enc);
                assert_int_equal(strlen(enc), (len + 2) / 3 * 4);
                assert_int_equal(op_base64_decode(enc, strlen(enc), &dec, &n), 0);
                assert_int_equal(n, len);
                if (len)
                        assert_memory_equal(dec, data, len);
        }
}

/* ---- protocol v1 additions (msg-opts.c) ---- */

static void test_exec_opts_decode(void **state)
{
        struct op_exec e;

        DECODE_OK("{" BASE "}", &e);
        assert_false(e.stream);
        assert_false(e.stdin_stream);
        assert_int_equal(e.cpu_time_ms, 0);
        assert_int_equal(e.memory_bytes, 0);
        assert_int_equal(e.max_processes, 0);
        assert_int_equal(e.output_max, OP_LIMITS_DEFAULT.output_max);
        assert_false(e.has_file_size_max);
        assert_null(e.output_files);
        assert_int_equal(e.entry, -1);
        op_exec_done(&e);

        DECODE_OK("{" BASE ",\"stream\":true,\"stdin_stream\":true,\"cpu_time_ms\":250,"
                  "\"memory_bytes\":67108864,\"max_processes\":8,\"output_max_bytes\":0,"
                  "\"file_size_max_bytes\":0,\"output_files\":[\"out.txt\",\".x\"]}",
                  &e);
        assert_true(e.stream);
        assert_true(e.stdin_stream);
        assert_int_equal(e.cpu_time_ms, 250);
        assert_int_equal(e.memory_bytes, 67108864);
        assert_int_equal(e.max_processes, 8);
        assert_int_equal(e.output_max, 0);
        assert_true(e.has_file_size_max);
        assert_int_equal(e.file_size_max, 0);
        assert_int_equal(e.n_output_files, 2);
        assert_string_equal(e.output_files[0], "out.txt");
        assert_string_equal(e.output_files[1], ".x");
        assert_null(e.output_files[2]);
        op_exec_done(&e);
}

static void test_exec_opts_bad(void **state)
{
        static const struct {
                const char *json, *want;
        } cases[] = {
            {"{" BASE ",\"stream\":1}", "\"stream\""},
            {"{" BASE ",\"stream\":null}", "\"stream\""},
            {"{" BASE ",\"stdin_stream\":\"true\"}", "\"stdin_stream\""},
            {"{" BASE ",\"cpu_time_ms\":0}", "\"cpu_time_ms\""},
            {"{" BASE ",\"cpu_time_ms\":60001}", "limit.cpu_time_ms_max"},
            {"{" BASE ",\"cpu_time_ms\":1.5}", "\"cpu_time_ms\""},
            {"{" BASE ",\"memory_bytes\":1000}", "\"memory_bytes\""},
            {"{" BASE ",\"memory_bytes\":-1}", "\"memory_bytes\""},
            {"{" BASE ",\"memory_bytes\":536870913}", "limit.memory_max"},
            {"{" BASE ",\"max_processes\":0}", "\"max_processes\""},
            {"{" BASE ",\"max_processes\":257}", "limit.processes_max"},
            {"{" BASE ",\"max_processes\":\"4\"}", "\"max_processes\""},
            {"{" BASE ",\"output_max_bytes\":1048577}", "limit.output_max"},
            {"{" BASE ",\"output_max_bytes\":-1}", "\"output_max_bytes\""},
            {"{" BASE ",\"file_size_max_bytes\":67108865}", "limit.written_file_max"},
            {"{" BASE ",\"file_size_max_bytes\":true}", "\"file_size_max_bytes\""},
            {"{" BASE ",\"output_files\":\"a\"}", "\"output_files\""},
            {"{" BASE ",\"output_files\":[1]}", "\"output_files[0]\""},
            {"{" BASE ",\"output_files\":[\"../etc/passwd\"]}", "\"output_files[0]\""},
            {"{" BASE ",\"output_files\":[\"\"]}", "\"output_files[0]\""},
            {"{" BASE ",\"output_files\":[\"a\",\"a\"]}", "repeats"},
            {"{" BASE ",\"output_files\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\","
             "\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}",
             "\"output_files\""},
            {"{" BASE ",\"files\":[{\"name\":\"a\",\"content\":\"\",\"encoding\":\"hex\"}]}",
             "files[0].encoding"},
            {"{" BASE ",\"files\":[{\"name\":\"a\",\"content\":\"\",\"encoding\":null}]}",
             "files[0].encoding"},
            {"{" BASE ",\"files\":[{\"name\":\"a\",\"content\":\"abc\",\"encoding\":\"base64\"}]}",
             "files[0].content"},
            {"{" BASE ",\"files\":[{\"name\":\"a\",\"content\":\"YW=j\",\"encoding\":\"base64\"}]}",
             "files[0].content"},
            {"{\"op\":\"exec\",\"lang\":\"python\",\"files\":[]}", "\"code\""},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                decode_fails(cases[i].json, cases[i].want);
}

static void test_files_base64_and_entry(void **state)
{
        _cleanup_free_ char *json = NULL, *b64 = NULL;
        uint8_t all[256];
        struct op_exec e;
        struct op_limits lim = OP_LIMITS_DEFAULT;

        for (int i = 0; i < 256; i++)
                all[i] = (uint8_t)i;
        b64 = op_base64_encode(all, sizeof(all));
        assert_non_null(b64);
        assert_true(
            asprintf(&json,
                     "{\"op\":\"exec\",\"lang\":\"python\",\"files\":["
                     "{\"name\":\"data.bin\",\"content\":\"%s\",\"encoding\":\"base64\"},"
                     "{\"name\":\"main.py\",\"content\":\"print(1)\",\"encoding\":\"utf8\"}]}",
                     b64) > 0);
        DECODE_OK(json, &e);
        assert_null(e.code);
        assert_int_equal(e.n_files, 2);
        assert_true(e.files[0].base64);
        assert_int_equal(e.files[0].content_len, 256);
        assert_memory_equal(e.files[0].content, all, 256);
        assert_false(e.files[1].base64);
        /* No "code": the file named main.* is the program. */
        assert_int_equal(e.entry, 1);
        assert_string_equal(op_exec_entry_name(&e), "main.py");
        op_exec_done(&e);

        /* Without one named main, the first file is. */
        DECODE_OK("{\"op\":\"exec\",\"lang\":\"bash\",\"files\":[{\"name\":\"run.sh\","
                  "\"content\":\"echo\"},{\"name\":\"lib.sh\",\"content\":\"\"}]}",
                  &e);
        assert_string_equal(op_exec_entry_name(&e), "run.sh");
        op_exec_done(&e);
        DECODE_OK("{\"op\":\"exec\",\"lang\":\"bash\",\"files\":[{\"name\":\"x\","
                  "\"content\":\"\"},{\"name\":\"main\",\"content\":\"\"}]}",
                  &e);
        assert_string_equal(op_exec_entry_name(&e), "main");
        op_exec_done(&e);
        /* With "code", there is no entry file. */
        DECODE_OK("{" BASE ",\"files\":[{\"name\":\"main.py\",\"content\":\"\"}]}", &e);
        assert_null(op_exec_entry_name(&e));
        op_exec_done(&e);

        /* The limit counts decoded bytes. */
        lim.file_size_max = 255;
        free(json);
        assert_true(asprintf(&json,
                             "{" BASE ",\"files\":[{\"name\":\"d\",\"content\":\"%s\","
                             "\"encoding\":\"base64\"}]}",
                             b64) > 0);
        decode_fails_lim(json, &lim, "files[0].content");
        lim.file_size_max = 256;
        assert_int_equal(decode_lim(json, &lim, &e, (char[256]){0}, 256), 0);
        op_exec_done(&e);
}

static void test_stdin_decode(void **state)
{
        static const struct {
                const char *json, *want;
        } bad[] = {
            {"{\"op\":\"stdin\",\"data\":\"x\"}", "\"id\""},
            {"{\"op\":\"stdin\",\"id\":null,\"data\":\"x\"}", "\"id\""},
            {"{\"op\":\"stdin\",\"id\":1}", "needs"},
            {"{\"op\":\"stdin\",\"id\":1,\"eof\":false}", "needs"},
            /* empty data is no frame: it carries data or eof */
            {"{\"id\":2,\"data_b64\":\"\"}", "empty \"data_b64\" needs \"eof\": true"},
            {"{\"op\":\"stdin\",\"id\":2,\"data\":\"\"}", "empty \"data\" needs"},
            {"{\"op\":\"stdin\",\"id\":2,\"data\":\"\",\"eof\":false}", "empty \"data\""},
            {"{\"op\":\"stdin\",\"id\":1,\"data\":5}", "\"data\""},
            {"{\"op\":\"stdin\",\"id\":1,\"data\":\"x\",\"eof\":1}", "\"eof\""},
            {"{\"op\":\"stdin\",\"id\":1,\"data\":\"x\",\"data_b64\":\"eA==\"}", "not both"},
            {"{\"op\":\"stdin\",\"id\":1,\"data_b64\":\"e\"}", "\"data_b64\""},
            {"{\"op\":\"stdin\",\"id\":1,\"data\":\"x\",\"more\":1}", "more"},
            {"{\"op\":\"stdin\",\"id\":1,\"data\":\"0123456789\"}", "over the limit"},
        };
        struct op_limits lim = OP_LIMITS_DEFAULT;
        struct op_stdin s;
        char err[256];

        lim.stdin_frame_max = 8;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_auto_t *req = parse(bad[i].json);

                if (op_stdin_decode(req, &lim, &s, err, sizeof(err)) != -EINVAL)
                        fail_msg("accepted %s", bad[i].json);
                if (!strstr(err, bad[i].want))
                        fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].json, err, bad[i].want);
        }
        json_auto_t *a =
            parse("{\"op\":\"stdin\",\"id\":\"r\",\"data_b64\":\"AP8=\",\"eof\":true}");
        assert_int_equal(op_stdin_decode(a, &lim, &s, err, sizeof(err)), 0);
        assert_int_equal(s.len, 2);
        assert_memory_equal(s.data, "\x00\xff", 2);
        assert_true(s.eof);
        op_stdin_done(&s);
        json_auto_t *b = parse("{\"op\":\"stdin\",\"id\":3,\"eof\":true}");
        assert_int_equal(op_stdin_decode(b, &lim, &s, err, sizeof(err)), 0);
        assert_int_equal(s.len, 0);
        assert_true(s.eof);
        op_stdin_done(&s);
        json_auto_t *c = parse("{\"op\":\"stdin\",\"id\":3,\"data\":\"\",\"eof\":true}");
        assert_int_equal(op_stdin_decode(c, &lim, &s, err, sizeof(err)), 0);
        assert_int_equal(s.len, 0);
        assert_true(s.eof);
        op_stdin_done(&s);
}

static void test_snapshot_decode(void **state)
{
        static const struct {
                const char *json, *want;
        } bad[] = {
            {"{\"op\":\"snapshot\"}", "\"action\" must be create, list, reload, verify or sync"},
            {"{\"op\":\"snapshot\",\"action\":5}", "\"action\" must be"},
            {"{\"op\":\"snapshot\",\"action\":\"explode\"}",
             "unknown action \"explode\"; known: create, list, reload, verify, sync"},
            {"{\"op\":\"snapshot\",\"action\":\"List\"}", "unknown action \"List\""},
            {"{\"op\":\"snapshot\",\"action\":\"create\"}", "create needs \"lang\""},
            {"{\"op\":\"snapshot\",\"action\":\"create\",\"lang\":null}", "create needs"},
            {"{\"op\":\"snapshot\",\"action\":\"list\",\"lang\":[\"bash\"]}",
             "\"lang\" must be a string"},
        };
        static const struct {
                const char *json;
                enum op_snapshot_action action;
                const char *lang;
        } good[] = {
            {"{\"op\":\"snapshot\",\"action\":\"create\",\"lang\":\"python\"}", OP_SNAPSHOT_CREATE,
             "python"},
            {"{\"op\":\"snapshot\",\"action\":\"list\",\"id\":3}", OP_SNAPSHOT_LIST, NULL},
            {"{\"op\":\"snapshot\",\"action\":\"list\",\"lang\":null}", OP_SNAPSHOT_LIST, NULL},
            {"{\"action\":\"reload\",\"lang\":\"nosuch\"}", OP_SNAPSHOT_RELOAD, "nosuch"},
            {"{\"action\":\"verify\",\"lang\":\"bash\"}", OP_SNAPSHOT_VERIFY, "bash"},
            {"{\"action\":\"sync\"}", OP_SNAPSHOT_SYNC, NULL},
        };
        struct op_snapshot_req s;
        char err[256];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_auto_t *req = parse(bad[i].json);

                if (op_snapshot_decode(req, &s, err, sizeof(err)) != -EINVAL)
                        fail_msg("accepted %s", bad[i].json);
                if (!strstr(err, bad[i].want))
                        fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].json, err, bad[i].want);
        }
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                json_auto_t *req = parse(good[i].json);

                s = (struct op_snapshot_req){.action = _OP_SNAPSHOT_ACTION_MAX};
                if (op_snapshot_decode(req, &s, err, sizeof(err)) != 0)
                        fail_msg("refused %s: %s", good[i].json, err);
                assert_int_equal(s.action, good[i].action);
                if (good[i].lang)
                        assert_string_equal(s.lang, good[i].lang);
                else
                        assert_null(s.lang);
                assert_string_equal(op_snapshot_action_name(s.action),
                                    json_string_value(json_object_get(req, "action")));
        }
        assert_null(op_snapshot_action_name(_OP_SNAPSHOT_ACTION_MAX));
}

static void test_batch_decode(void **state)
{
        static const struct {
                const char *json, *want;
        } bad[] = {
            {"{\"op\":\"exec_batch\"}", "\"requests\""},
            {"{\"op\":\"exec_batch\",\"requests\":{}}", "\"requests\""},
            {"{\"op\":\"exec_batch\",\"requests\":[]}", "empty"},
            {"{\"op\":\"exec_batch\",\"requests\":[1]}", "requests[0]"},
            {"{\"op\":\"exec_batch\",\"requests\":[{\"lang\":\"bash\"}]}", "\"id\""},
            {"{\"op\":\"exec_batch\",\"requests\":[{\"id\":[1]}]}", "requests[0]"},
            {"{\"op\":\"exec_batch\",\"requests\":[{\"id\":1},{\"id\":1}]}", "repeats"},
            {"{\"op\":\"exec_batch\",\"id\":5,\"requests\":[{\"id\":5}]}", "batch itself"},
            {"{\"op\":\"exec_batch\",\"requests\":[{\"id\":1,\"op\":\"ping\"}]}", "\"exec\""},
            {"{\"op\":\"exec_batch\",\"requests\":[{\"id\":1}],\"x\":1}", "\"x\""},
            {"{\"op\":\"exec_batch\",\"requests\":[{\"id\":1},{\"id\":2},{\"id\":3}]}",
             "over the limit"},
        };
        struct op_limits lim = OP_LIMITS_DEFAULT;
        struct op_batch b;
        char err[256];

        lim.batch_max = 2;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_auto_t *req = parse(bad[i].json);

                if (op_batch_decode(req, &lim, &b, err, sizeof(err)) != -EINVAL)
                        fail_msg("accepted %s", bad[i].json);
                if (!strstr(err, bad[i].want))
                        fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].json, err, bad[i].want);
        }
        /* 1 and "1" are different ids. */
        json_auto_t *ok = parse("{\"op\":\"exec_batch\",\"id\":\"b\",\"requests\":[{\"id\":1},"
                                "{\"id\":\"1\",\"op\":\"exec\"}]}");
        assert_int_equal(op_batch_decode(ok, &lim, &b, err, sizeof(err)), 0);
        assert_int_equal(b.n, 2);
        assert_ptr_equal(b.members[1], json_array_get(json_object_get(ok, "requests"), 1));
        op_batch_done(&b);
}

static void test_status(void **state)
{
        enum op_status st;

        for (int i = 0; i < _OP_STATUS_MAX; i++) {
                assert_int_equal(op_status_from_name(op_status_name((enum op_status)i), &st), 0);
                assert_int_equal(st, i);
        }
        assert_int_equal(op_status_from_name("fine", &st), -EINVAL);
        assert_int_equal(op_status_from_name(NULL, &st), -EINVAL);
        assert_string_equal(op_status_name(_OP_STATUS_MAX), "internal_error");
        /* exit_code, signal, timed_out, cpu_exceeded, truncated, oom_killed */
        assert_int_equal(op_status_of(0, 0, false, false, false, false), OP_STATUS_OK);
        assert_int_equal(op_status_of(3, 0, false, false, false, false), OP_STATUS_RUNTIME_ERROR);
        assert_int_equal(op_status_of(-1, 11, false, false, false, false), OP_STATUS_SIGNAL);
        assert_int_equal(op_status_of(-1, 9, true, false, false, false), OP_STATUS_TIMEOUT);
        assert_int_equal(op_status_of(-1, 24, false, true, false, false), OP_STATUS_TIMEOUT);
        assert_int_equal(op_status_of(-1, 9, false, false, true, false), OP_STATUS_OUTPUT_LIMIT);
        assert_int_equal(op_status_of(-1, 9, true, false, true, true), OP_STATUS_MEMORY_LIMIT);
}

/* ---- sessions ---- */

static void test_session_open(void **state)
{
        const struct op_limits lim = OP_LIMITS_DEFAULT;
        const struct op_session_bounds b = OP_SESSION_BOUNDS_DEFAULT;
        struct op_session_open o;
        char err[256];
        json_t *req;

        req = parse("{\"op\":\"session_open\",\"id\":1,\"lang\":\"python\"}");
        assert_int_equal(op_session_open_decode(req, &lim, &b, &o, err, sizeof(err)), 0);
        assert_string_equal(o.lang, "python");
        assert_int_equal(o.idle_timeout_ms, b.idle_timeout_ms_default);
        assert_int_equal(o.max_lifetime_ms, b.lifetime_ms_default);
        assert_int_equal(json_object_size(o.limits), 0);
        assert_false(o.repl);
        op_session_open_done(&o);
        json_decref(req);

        req = parse("{\"op\":\"session_open\",\"lang\":\"python\",\"repl\":true}");
        assert_int_equal(op_session_open_decode(req, &lim, &b, &o, err, sizeof(err)), 0);
        assert_true(o.repl);
        assert_int_equal(json_object_size(o.limits), 0);
        op_session_open_done(&o);
        json_decref(req);

        req = parse("{\"op\":\"session_open\",\"lang\":\"py\",\"idle_timeout_ms\":1,"
                    "\"max_lifetime_ms\":86400000,\"timeout_ms\":1500,\"memory_bytes\":67108864}");
        assert_int_equal(op_session_open_decode(req, &lim, &b, &o, err, sizeof(err)), 0);
        assert_int_equal(o.idle_timeout_ms, 1);
        assert_int_equal(o.max_lifetime_ms, 86400000);
        assert_int_equal(json_object_size(o.limits), 2);
        assert_int_equal(json_integer_value(json_object_get(o.limits, "timeout_ms")), 1500);
        op_session_open_done(&o);
        assert_int_equal(req->refcount, 1);
        json_decref(req);

        static const struct {
                const char *json, *msg;
        } bad[] = {
            {"{\"op\":\"session_open\"}", "\"lang\""},
            {"{\"op\":\"session_open\",\"lang\":\"\"}", "\"lang\""},
            {"{\"op\":\"session_open\",\"lang\":7}", "\"lang\""},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"code\":\"1\"}", "unknown field"},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"idle_timeout_ms\":0}",
             "idle_timeout_ms"},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"idle_timeout_ms\":3600001}",
             "session.max_idle_timeout_ms"},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"max_lifetime_ms\":\"1\"}",
             "max_lifetime_ms"},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"max_lifetime_ms\":86400001}",
             "session.max_lifetime_ms"},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"timeout_ms\":0}", "timeout_ms"},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"memory_bytes\":1}", "memory_bytes"},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"mode\":\"warm\"}", "unknown field"},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"repl\":1}", "\"repl\" must be true"},
            {"{\"op\":\"session_open\",\"lang\":\"python\",\"repl\":null}", "\"repl\""},
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                req = parse(bad[i].json);
                err[0] = 0;
                assert_int_equal(op_session_open_decode(req, &lim, &b, &o, err, sizeof(err)),
                                 -EINVAL);
                if (!strstr(err, bad[i].msg))
                        fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].json, err, bad[i].msg);
                json_decref(req);
        }
}

static void test_session_id(void **state)
{
        char id[OP_SESSION_ID_LEN + 1], err[256];
        json_t *req;

        assert_true(op_session_id_valid("0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b", 36));
        assert_false(op_session_id_valid("0F8E3A2C-1B4D-4E5F-8A9B-0C1D2E3F4A5B", 36));
        assert_false(op_session_id_valid("0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5", 35));
        assert_false(op_session_id_valid("0f8e3a2c11b4d-4e5f-8a9b-0c1d2e3f4a5b", 36));
        assert_false(op_session_id_valid("0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5g", 36));
        assert_false(op_session_id_valid(NULL, 0));
        req = parse("{\"op\":\"session_close\",\"id\":\"c\","
                    "\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\"}");
        assert_int_equal(op_session_close_decode(req, id, err, sizeof(err)), 0);
        assert_string_equal(id, "0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b");
        json_decref(req);
        req = parse("{\"op\":\"session_close\",\"session\":\"../../x\"}");
        assert_int_equal(op_session_close_decode(req, id, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "session id"));
        json_decref(req);
        req = parse("{\"op\":\"session_close\"}");
        assert_int_equal(op_session_close_decode(req, id, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "missing \"session\""));
        json_decref(req);
        req = parse("{\"op\":\"session_list\",\"id\":1}");
        assert_int_equal(op_session_list_decode(req, err, sizeof(err)), 0);
        json_decref(req);
        req = parse("{\"op\":\"session_list\",\"all\":true}");
        assert_int_equal(op_session_list_decode(req, err, sizeof(err)), -EINVAL);
        json_decref(req);
}

static void test_session_exec(void **state)
{
        const struct op_limits lim = OP_LIMITS_DEFAULT;
        json_t *defaults = parse("{\"timeout_ms\":1500,\"cpu_time_ms\":900}"), *req;
        struct op_exec e;
        char err[256];

        req = parse("{\"op\":\"session_exec\",\"id\":3,\"session\":"
                    "\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\",\"code\":\"print(1)\","
                    "\"timeout_ms\":2500,\"stdin_stream\":true}");
        assert_int_equal(
            op_session_exec_decode(req, "python", defaults, &lim, &e, err, sizeof(err)), 0);
        assert_string_equal(e.lang, "python");
        assert_int_equal(e.timeout_ms, 2500); /* the call's own */
        assert_int_equal(e.cpu_time_ms, 900); /* the session's default */
        assert_true(e.stdin_stream);
        assert_null(json_object_get(e.json, "session"));
        assert_string_equal(json_string_value(json_object_get(e.json, "op")), "exec");
        op_exec_done(&e);
        assert_int_equal(req->refcount, 1);
        assert_non_null(json_object_get(req, "session")); /* the caller's request is untouched */
        json_decref(req);

        /* "lang" given is kept for the caller to check against the session's */
        req = parse("{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
                    "\"lang\":\"bash\",\"code\":\"1\"}");
        assert_int_equal(op_session_exec_decode(req, "python", NULL, &lim, &e, err, sizeof(err)),
                         0);
        assert_string_equal(e.lang, "bash");
        op_exec_done(&e);
        json_decref(req);

        /* "phase": the compile step alone; the run alone needs no "code" (none is written) */
        assert_int_equal(e.phase, OP_PHASE_ALL);
        req = parse("{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
                    "\"phase\":\"compile\",\"code\":\"int main(void){}\"}");
        assert_int_equal(op_session_exec_decode(req, "c", NULL, &lim, &e, err, sizeof(err)), 0);
        assert_int_equal(e.phase, OP_PHASE_COMPILE);
        assert_null(json_object_get(e.json, "phase"));
        op_exec_done(&e);
        json_decref(req);
        req = parse("{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
                    "\"phase\":\"run\",\"stdin\":\"1 2\",\"args\":[\"x\"]}");
        assert_int_equal(op_session_exec_decode(req, "c", NULL, &lim, &e, err, sizeof(err)), 0);
        assert_int_equal(e.phase, OP_PHASE_RUN);
        assert_string_equal(e.code, "");
        assert_int_equal(e.n_args, 1);
        op_exec_done(&e);
        assert_null(json_object_get(req, "code")); /* the caller's request is untouched */
        json_decref(req);
        /* a run's files are input files: none of them is taken for the program */
        req = parse("{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
                    "\"phase\":\"run\",\"files\":[{\"name\":\"in.txt\",\"content\":\"x\"}]}");
        assert_int_equal(op_session_exec_decode(req, "c", NULL, &lim, &e, err, sizeof(err)), 0);
        assert_int_equal(e.n_files, 1);
        assert_null(op_exec_entry_name(&e));
        op_exec_done(&e);
        json_decref(req);
        req = parse("{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
                    "\"phase\":\"all\",\"code\":\"1\"}");
        assert_int_equal(op_session_exec_decode(req, "c", NULL, &lim, &e, err, sizeof(err)), 0);
        assert_int_equal(e.phase, OP_PHASE_ALL);
        op_exec_done(&e);
        json_decref(req);

        static const struct {
                const char *json, *msg;
        } bad[] = {
            {"{\"op\":\"session_exec\",\"code\":\"1\"}", "missing \"session\""},
            {"{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
             "\"code\":\"1\",\"phase\":\"link\"}",
             "\"phase\" must be"},
            {"{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
             "\"code\":\"1\",\"phase\":null}",
             "\"phase\" must be"},
            {"{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
             "\"code\":\"1\",\"phase\":\"run\"}",
             "\"code\" is not allowed"},
            {"{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
             "\"phase\":\"compile\"}",
             "\"code\""},
            {"{\"op\":\"session_exec\",\"session\":1,\"code\":\"1\"}", "session id"},
            {"{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
             "\"code\":\"1\",\"mode\":\"warm\"}",
             "\"mode\""},
            {"{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\"}",
             "\"code\""},
            {"{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
             "\"code\":\"1\",\"timeout_ms\":0}",
             "timeout_ms"},
            {"{\"op\":\"session_exec\",\"session\":\"0f8e3a2c-1b4d-4e5f-8a9b-0c1d2e3f4a5b\","
             "\"code\":\"1\",\"bogus\":0}",
             "unknown field"},
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                req = parse(bad[i].json);
                err[0] = 0;
                assert_int_equal(
                    op_session_exec_decode(req, "python", defaults, &lim, &e, err, sizeof(err)),
                    -EINVAL);
                if (!strstr(err, bad[i].msg))
                        fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].json, err, bad[i].msg);
                assert_int_equal(req->refcount, 1);
                json_decref(req);
        }
        json_decref(defaults);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse_object),
            cmocka_unit_test(test_parse_object_values_max),
            cmocka_unit_test(test_parse_object_whitespace_and_escapes),
            cmocka_unit_test(test_request_id),
            cmocka_unit_test(test_exec_minimal),
            cmocka_unit_test(test_exec_all_fields),
            cmocka_unit_test(test_exec_wrong_types),
            cmocka_unit_test(test_exec_unknown_fields),
            cmocka_unit_test(test_exec_limits),
            cmocka_unit_test(test_exec_file_names),
            cmocka_unit_test(test_exec_timeout),
            cmocka_unit_test(test_exec_compile_timeout),
            cmocka_unit_test(test_exec_mode),
            cmocka_unit_test(test_exec_env_names),
            cmocka_unit_test(test_exec_late_failure_frees),
            cmocka_unit_test(test_error_names),
            cmocka_unit_test(test_session_open),
            cmocka_unit_test(test_session_id),
            cmocka_unit_test(test_session_exec),
            cmocka_unit_test(test_error_reply),
            cmocka_unit_test(test_error_reply_invalid_utf8),
            cmocka_unit_test(test_bytes_round_trip),
            cmocka_unit_test(test_bytes_replacement),
            cmocka_unit_test(test_get_bytes_errors),
            cmocka_unit_test(test_frame_encode),
            cmocka_unit_test(test_frame_encode_large),
            cmocka_unit_test(test_base64_rfc4648),
            cmocka_unit_test(test_base64_invalid),
            cmocka_unit_test(test_base64_random_round_trip),
            cmocka_unit_test(test_exec_opts_decode),
            cmocka_unit_test(test_exec_opts_bad),
            cmocka_unit_test(test_files_base64_and_entry),
            cmocka_unit_test(test_stdin_decode),
            cmocka_unit_test(test_snapshot_decode),
            cmocka_unit_test(test_batch_decode),
            cmocka_unit_test(test_status),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
