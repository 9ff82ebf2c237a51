/* test-agent-codec.c: unit tests of proto/agent-msg.c: every agent message encoded then decoded
 * back (whole, and fed one byte at a time through op_frame_next), the frame cap against the
 * largest valid answer, and hostile answers and events refused with a message naming the field. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent-msg.h"
#include "agent.h"
#include "cleanup.h"
#include "frame.h"
#include "msg.h"

static const char *const out_names[] = {"out.txt", "img.png", NULL};

/* An exec with a compile phase, streaming off, two output files. */
static struct op_agent_limits limits_full(void)
{
        return (struct op_agent_limits){
            .op = OP_AGENT_OP_EXEC,
            .output_max = 1024,
            .output_files = out_names,
            .n_output_files = 2,
            .output_file_max = 64,
            .compile = true,
            .compile_output_max = 256,
        };
}

static struct op_agent_limits limits_plain(size_t output_max, bool stream)
{
        return (struct op_agent_limits){
            .op = OP_AGENT_OP_EXEC, .output_max = output_max, .stream = stream};
}

static json_t *parse(const char *s)
{
        char err[256] = "";
        json_t *obj = NULL;

        if (op_parse_object(s, strlen(s), &obj, err, sizeof(err)) < 0)
                fail_msg("op_parse_object(%s): %s", s, err);
        return obj;
}

/* Frame obj, feed the frame one byte at a time through op_frame_next() under the cap of lim,
 * and decode the one payload it yields. */
static int decode_bytewise(json_t *obj, const struct op_agent_limits *lim, struct op_agent_msg *ret,
                           char *err, size_t errlen)
{
        _cleanup_free_ char *wire = NULL;
        size_t n, max = op_agent_frame_max(lim);
        struct op_frame f;
        int r;

        assert_int_equal(op_frame_encode(obj, OP_FRAME_MAX_CEILING, &wire, &n), 0);
        assert_true(n <= OP_FRAME_HEADER_SIZE + max);
        for (size_t have = 0; have < n; have++) {
                r = op_frame_next(wire, have, max, &f);
                assert_int_equal(r, 0);
        }
        assert_int_equal(op_frame_next(wire, n, max, &f), 1);
        assert_int_equal(f.frame_len, n);
        return op_agent_msg_parse(wire + f.payload_offset, f.payload_len, lim, ret, err, errlen);
}

/* Encode a, decode it back both ways, and compare. */
static void round_trip(const struct op_agent_answer *a, const struct op_agent_limits *lim)
{
        json_auto_t *id = json_string("job-1");
        json_auto_t *obj = op_agent_answer_encode(id, a);
        struct op_agent_answer back;
        struct op_agent_msg m;
        char err[512] = "";

        assert_non_null(obj);
        if (op_agent_answer_decode(obj, lim, &back, err, sizeof(err)) != 0)
                fail_msg("decode: %s", err);
        assert_true(op_agent_answer_equal(a, &back));
        op_agent_answer_done(&back);
        if (decode_bytewise(obj, lim, &m, err, sizeof(err)) != 0)
                fail_msg("decode from bytes: %s", err);
        assert_int_equal(m.kind, OP_AGENT_MSG_ANSWER);
        assert_true(op_agent_answer_equal(a, &m.answer));
        op_agent_msg_done(&m);
}

#define BYTES(s) ((struct op_agent_bytes){.data = (char *)(s), .len = sizeof(s) - 1})

/* stdout "hi\n", then stderr's 6 bytes, then the rest of stdout; compile: stderr only */
static struct op_agent_segment run_order[] = {{1, 3}, {2, 6}, {1, 4}};
static struct op_agent_segment compile_order[] = {{2, 9}};

static struct op_agent_answer full_answer(struct op_agent_file files[2])
{
        files[0] = (struct op_agent_file){.name = (char *)"out.txt", .content = BYTES("a\0b\xff")};
        files[1] =
            (struct op_agent_file){.name = (char *)"img.png", .error = OP_AGENT_FILE_TOO_LARGE};
        return (struct op_agent_answer){
            .op = OP_AGENT_OP_EXEC,
            .ok = true,
            .exec =
                {
                    .run = {.out = BYTES("hi\n\xc3\x28\x00!"),
                            .err = BYTES("caf\xc3\xa9\n"),
                            .order = {.known = true, .seg = run_order, .n = 3},
                            .exit_code = 3,
                            .timed_out = false,
                            .truncated = true,
                            .has_run_ms = true,
                            .run_ms = 12.345678901234567},
                    .warm_used = true,
                    .has_status = true,
                    .status = OP_STATUS_OUTPUT_LIMIT,
                    .has_usage = true,
                    .usage = {.cpu_time_ms = 1.5, .wall_ms = 12.25, .memory_peak_bytes = 123456},
                    .limits_by = OP_AGENT_LIMITS_BY_CGROUP,
                    .has_compile = true,
                    .compile =
                        {.out = BYTES(""),
                         .err = BYTES("warning\x01\n"),
                         .order = {.known = true, .partial = true, .seg = compile_order, .n = 1},
                         .exit_code = 0,
                         .has_run_ms = true,
                         .run_ms = 100},
                    .has_files = true,
                    .files = files,
                    .n_files = 2,
                },
        };
}

static void test_round_trip_exec(void **state)
{
        struct op_agent_file files[2];
        struct op_agent_answer a = full_answer(files);
        struct op_agent_limits lim = limits_full();

        round_trip(&a, &lim);
        /* killed by a signal, no status or usage (an older agent), no compile run_ms */
        a.exec.run.exit_code = -1;
        a.exec.run.signal = 9;
        a.exec.has_status = false;
        a.exec.has_usage = false;
        a.exec.limits_by = OP_AGENT_LIMITS_BY_NONE;
        a.exec.compile.has_run_ms = false;
        round_trip(&a, &lim);
        /* a compile error: empty run fields */
        a.exec.run = (struct op_agent_run){.exit_code = -1, .has_run_ms = true};
        a.exec.has_status = true;
        a.exec.status = OP_STATUS_COMPILE_ERROR;
        a.exec.compile.exit_code = 1;
        round_trip(&a, &lim);
        /* a repl call that ended its interpreter (exit()): "repl_ended", absent otherwise */
        a = full_answer(files);
        a.exec.repl_ended = true;
        round_trip(&a, &lim);
        {
                json_auto_t *obj = op_agent_answer_encode(NULL, &a);

                assert_true(json_is_true(json_object_get(obj, "repl_ended")));
                a.exec.repl_ended = false;
                json_decref(obj);
                obj = op_agent_answer_encode(NULL, &a);
                assert_null(json_object_get(obj, "repl_ended"));
        }
        /* a job with "timing": the agent's own time in the guest */
        a = full_answer(files);
        a.exec.has_agent_ms = true;
        a.exec.agent_ms = 15.25;
        lim.timing = true;
        round_trip(&a, &lim);
        {
                json_auto_t *obj = op_agent_answer_encode(NULL, &a);

                assert_true(json_real_value(json_object_get(obj, "agent_ms")) == 15.25);
        }
}

static void test_round_trip_others(void **state)
{
        struct op_agent_limits lim = {.op = OP_AGENT_OP_PING};
        struct op_agent_answer a = {.op = OP_AGENT_OP_PING, .ok = true, .agent_version = "0.1.0"};

        round_trip(&a, &lim);
        lim.op = a.op = OP_AGENT_OP_WARM;
        a.pid = 4242;
        round_trip(&a, &lim);
        lim.op = a.op = OP_AGENT_OP_PRIME;
        a.run_ms = 0.25;
        round_trip(&a, &lim);
        /* an error answer, to any op */
        a = (struct op_agent_answer){
            .op = OP_AGENT_OP_EXEC,
            .ok = false,
            .error = {.code = OP_ERR_BAD_REQUEST, .message = (char *)"missing \"argv\""}};
        lim = limits_full();
        round_trip(&a, &lim);
        /* the same bytes as op_error_reply() makes in the guest */
        {
                json_auto_t *obj = op_error_reply(NULL, OP_ERR_INTERNAL, "could not start %s", "x");
                struct op_agent_answer back;
                char err[256];

                assert_int_equal(op_agent_answer_decode(obj, &lim, &back, err, sizeof(err)), 0);
                assert_false(back.ok);
                assert_int_equal(back.error.code, OP_ERR_INTERNAL);
                assert_string_equal(back.error.message, "could not start x");
                op_agent_answer_done(&back);
        }
}

static void test_round_trip_events(void **state)
{
        struct op_agent_limits lim = limits_plain(16, true);
        struct op_agent_output o = {.stream = 2, .data = BYTES("\xff\x00z")}, back;
        struct op_agent_ready rd = {.agent_version = "0.1.0"}, rd_back;
        json_auto_t *id = json_integer(7);
        json_auto_t *ev = op_agent_output_encode(id, &o);
        json_auto_t *ready = op_agent_ready_encode(&rd);
        struct op_agent_msg m;
        char err[256];

        assert_int_equal(op_agent_output_decode(ev, &lim, &back, err, sizeof(err)), 0);
        assert_true(op_agent_output_equal(&o, &back));
        op_agent_output_done(&back);
        assert_int_equal(decode_bytewise(ev, &lim, &m, err, sizeof(err)), 0);
        assert_int_equal(m.kind, OP_AGENT_MSG_OUTPUT);
        assert_true(op_agent_output_equal(&o, &m.output));
        op_agent_msg_done(&m);

        assert_int_equal(op_agent_ready_decode(ready, &rd_back, err, sizeof(err)), 0);
        assert_string_equal(rd_back.agent_version, "0.1.0");
        assert_int_equal(decode_bytewise(ready, &lim, &m, err, sizeof(err)), 0);
        assert_int_equal(m.kind, OP_AGENT_MSG_READY);
        assert_string_equal(m.ready.agent_version, "0.1.0");
        op_agent_msg_done(&m);
}

/* The largest valid answer (every byte string at its cap, in the byte values that cost most on
 * the wire) fits in op_agent_frame_max(). */
static void test_frame_cap(void **state)
{
        struct op_agent_limits lim = limits_full();
        struct op_agent_file files[2];
        struct op_agent_answer a = full_answer(files);
        _cleanup_free_ char *ctl = malloc(1024), *ff = malloc(1024), *wire = NULL;
        size_t n;

        assert_non_null(ctl);
        assert_non_null(ff);
        memset(ctl, 0x01, 1024); /* "\u0001" six times over, and base64 for the NUL */
        ctl[0] = 0;
        memset(ff, 0xff, 1024); /* U+FFFD and base64 */
        a.exec.run.out = (struct op_agent_bytes){ctl, 1024};
        a.exec.run.err = (struct op_agent_bytes){ff, 1024};
        a.exec.compile.out = (struct op_agent_bytes){ctl, 256};
        a.exec.compile.err = (struct op_agent_bytes){ctl, 256};
        files[0].content = (struct op_agent_bytes){ctl, 64};
        files[1] = files[0];
        files[1].name = (char *)"img.png";
        /* orders of the most segments: 2 bytes each on the run, 1 on the compile phase, in
         * turns; and no partial flag on the compile phase (round_trip() compares it) */
        static struct op_agent_segment run_max[OP_AGENT_ORDER_MAX], compile_max[OP_AGENT_ORDER_MAX];
        for (size_t i = 0; i < OP_AGENT_ORDER_MAX; i++) {
                run_max[i] = (struct op_agent_segment){.stream = 1 + (int)(i % 2), .len = 2};
                compile_max[i] = (struct op_agent_segment){.stream = 1 + (int)(i % 2), .len = 1};
        }
        a.exec.run.order = (struct op_agent_order){
            .known = true, .partial = true, .seg = run_max, .n = OP_AGENT_ORDER_MAX};
        a.exec.compile.order =
            (struct op_agent_order){.known = true, .partial = true, .seg = compile_max, .n = 512};
        {
                json_auto_t *id = json_string("preload");
                json_auto_t *obj = op_agent_answer_encode(id, &a);
                assert_int_equal(op_frame_encode(obj, OP_FRAME_MAX_CEILING, &wire, &n), 0);
                assert_true(n - OP_FRAME_HEADER_SIZE <= op_agent_frame_max(&lim));
                round_trip(&a, &lim);
        }
        /* the other operations get the small cap, an exec's grows with its limits */
        lim.op = OP_AGENT_OP_WARM;
        assert_int_equal(op_agent_frame_max(&lim), OP_AGENT_FRAME_SMALL);
        lim = limits_plain(1024, false);
        assert_true(op_agent_frame_max(&lim) < 128 * 1024);
        lim = limits_plain(SIZE_MAX / 2, false);
        assert_int_equal(op_agent_frame_max(&lim), OP_FRAME_MAX_CEILING);
}

/* obj refused under lim, with want in the message; the result untouched. */
static void refused(json_t *obj, const struct op_agent_limits *lim, const char *want)
{
        struct op_agent_msg m;
        char err[512] = "";
        int r;

        memset(&m, 0xa5, sizeof(m));
        r = op_agent_msg_decode(obj, lim, &m, err, sizeof(err));
        if (r != -EINVAL)
                fail_msg("accepted (%d), wanted an error with \"%s\"", r, want);
        for (size_t i = 0; i < sizeof(m); i++)
                assert_int_equal(((unsigned char *)&m)[i], 0xa5);
        if (!strstr(err, want))
                fail_msg("message \"%s\" lacks \"%s\"", err, want);
}

static void refused_text(const char *json, const struct op_agent_limits *lim, const char *want)
{
        json_auto_t *obj = parse(json);

        refused(obj, lim, want);
}

#define OK_RUN "\"ok\":true,\"stdout\":\"\",\"stderr\":\"\",\"timed_out\":false,\"truncated\":false"

/* A valid exec answer with one field replaced (or added) by key: value. */
static void refused_with(const char *key, const char *value, const struct op_agent_limits *lim,
                         const char *want)
{
        json_auto_t *obj =
            parse("{" OK_RUN ",\"exit_code\":0,\"signal\":null,\"run_ms\":1.5,\"status\":\"ok\"}");
        json_auto_t *v = NULL;
        char vbuf[1024];

        snprintf(vbuf, sizeof(vbuf), "{\"v\":%s}", value);
        v = parse(vbuf);
        json_object_set(obj, key, json_object_get(v, "v"));
        refused(obj, lim, want);
}

static void test_hostile_output(void **state)
{
        struct op_agent_limits lim = limits_plain(1024, false);
        _cleanup_free_ char *big = malloc(64u << 20);
        json_auto_t *ans = parse("{" OK_RUN ",\"exit_code\":0,\"signal\":null,\"run_ms\":1}");
        json_auto_t *ev = NULL;
        struct op_agent_output o;
        char err[256];

        /* 64 MiB of stdout against output_max 1024 */
        assert_non_null(big);
        memset(big, 'x', 64u << 20);
        json_object_set_new(ans, "stdout", json_stringn(big, 64u << 20));
        refused(ans, &lim, "\"stdout\" is 67108864 bytes, over the limit of 1024");
        json_object_set_new(ans, "stdout", json_string(""));
        json_object_set_new(ans, "stderr_b64", json_stringn(big, 4096));
        refused(ans, &lim, "\"stderr_b64\" decodes to more than the limit of 1024");

        /* 4 MiB of text with an empty data_b64: the text is not what counts, and is bounded */
        lim.stream = true;
        ev = json_pack("{s:s, s:s%, s:s}", "event", "stdout", "data", big, (size_t)4 << 20,
                       "data_b64", "");
        refused(ev, &lim, "\"data\" is 4194304 bytes, over the limit of 3072");
        json_object_set_new(ev, "data", json_string("all this is ignored"));
        refused(ev, &lim, "an output event with no bytes of \"data\"");
        json_object_set_new(ev, "data_b64", json_string("aGk="));
        assert_int_equal(op_agent_output_decode(ev, &lim, &o, err, sizeof(err)), 0);
        assert_int_equal(o.data.len, 2);
        assert_memory_equal(o.data.data, "hi", 2);
        op_agent_output_done(&o);

        refused_text("{\"event\":\"stdout\",\"data\":\"\",\"data_b64\":\"!!not base64!!\"}", &lim,
                     "\"data_b64\" is not base64");
        refused_text("{\"event\":\"stdout\",\"data_b64\":\"aGk\"}", &lim,
                     "\"data_b64\" is not base64");
        refused_text("{\"event\":\"stdout\"}", &lim, "without \"data\"");
        refused_text("{\"event\":\"stdout\",\"data\":\"\"}", &lim, "no bytes");
        refused_text("{\"event\":\"stdout\",\"data\":5}", &lim, "\"data\" is not a string");
        refused_text("{\"event\":\"stdin\",\"data\":\"\"}", &lim, "\"event\" is not \"stdout\"");
        refused_text("{\"event\":\"stdout\",\"data\":\"\",\"more\":1}", &lim,
                     "unknown field \"more\"");
        refused_text("{\"event\":7}", &lim, "\"event\" is not a string");
        refused_text("{\"id\":[1],\"event\":\"stdout\",\"data\":\"\"}", &lim, "\"id\"");
        lim.stream = false;
        refused_text("{\"event\":\"stdout\",\"data\":\"x\"}", &lim, "did not ask to stream");

        lim.stream = false;
        refused_with("stdout_b64", "\"!!not base64!!\"", &lim, "\"stdout_b64\" is not base64");
        refused_with("stdout", "5", &lim, "\"stdout\" is not a string");
        refused_with("streamed", "true", &lim, "\"streamed\": true (the request did not stream)");
}

static void test_hostile_numbers(void **state)
{
        struct op_agent_limits lim = limits_plain(1024, false);

        refused_with("exit_code", "-7", &lim,
                     "\"exit_code\" is not null or an integer from 0 to 255");
        refused_with("exit_code", "256", &lim, "\"exit_code\"");
        refused_with("exit_code", "1.0", &lim, "\"exit_code\"");
        refused_with("exit_code", "\"0\"", &lim, "\"exit_code\"");
        refused_with("signal", "123456789", &lim,
                     "\"signal\" is not null or an integer from 1 to 64");
        refused_with("signal", "0", &lim, "\"signal\"");
        refused_with("signal", "9", &lim, "both \"exit_code\" and \"signal\"");
        refused_with("run_ms", "-1e300", &lim, "\"run_ms\" is out of range");
        refused_with("run_ms", "1e300", &lim, "\"run_ms\"");
        refused_with("run_ms", "-0.001", &lim, "\"run_ms\"");
        refused_with("run_ms", "\"12\"", &lim, "\"run_ms\"");
        refused_with("run_ms", "null", &lim, "\"run_ms\"");
        refused_with("timed_out", "\"yes\"", &lim, "\"timed_out\" is not true or false");
        refused_with("truncated", "1", &lim, "\"truncated\"");
        refused_with("warm_used", "null", &lim, "\"warm_used\"");
        refused_with("repl_ended", "1", &lim, "\"repl_ended\"");
        /* "agent_ms" only where the job asked for "timing", and a time like any other */
        refused_with("agent_ms", "1", &lim, "\"agent_ms\" (the job did not ask for it)");
        lim.timing = true;
        refused_with("agent_ms", "-1", &lim, "\"agent_ms\" is out of range");
        refused_with("agent_ms", "1e300", &lim, "\"agent_ms\"");
        refused_with("agent_ms", "\"3\"", &lim, "\"agent_ms\"");
        refused_with("agent_ms", "null", &lim, "\"agent_ms\"");
        lim.timing = false;
        refused_with("status", "\"great\"", &lim, "\"status\" is not a status");
        refused_with("status", "\"compile_error\"", &lim, "\"compile_error\" and no compile");
        refused_with("limits_by", "\"magic\"", &lim, "\"limits_by\"");
        refused_with("usage", "[]", &lim, "\"usage\" is not an object");
        refused_with("usage", "{\"cpu_time_ms\":-1,\"wall_ms\":1,\"memory_peak_bytes\":1}", &lim,
                     "\"usage.cpu_time_ms\"");
        refused_with("usage", "{\"cpu_time_ms\":1,\"wall_ms\":1e12,\"memory_peak_bytes\":1}", &lim,
                     "\"usage.wall_ms\"");
        refused_with("usage",
                     "{\"cpu_time_ms\":1,\"wall_ms\":1,\"memory_peak_bytes\":2199023255552}", &lim,
                     "\"usage.memory_peak_bytes\"");
        refused_with("usage", "{\"cpu_time_ms\":1,\"wall_ms\":1,\"memory_peak_bytes\":1.5}", &lim,
                     "\"usage.memory_peak_bytes\"");
        refused_with("usage", "{\"cpu_time_ms\":1,\"wall_ms\":1}", &lim,
                     "\"usage.memory_peak_bytes\" is missing");
        refused_with("usage", "{\"cpu_time_ms\":1,\"wall_ms\":1,\"memory_peak_bytes\":1,\"io\":2}",
                     &lim, "unknown field \"io\"");
        refused_with("surprise", "1", &lim, "unknown field \"surprise\"");
        refused_with("ok", "\"yes\"", &lim, "\"ok\" is not true or false");
        refused_with("id", "{}", &lim, "\"id\"");

        refused_text("{\"ok\":true}", &lim, "without \"stdout\"");
        refused_text("{" OK_RUN "}", &lim, "\"run_ms\" is missing");
        refused_text("{\"stdout\":\"\"}", &lim, "\"ok\" is missing");
}

static void test_hostile_files(void **state)
{
        struct op_agent_limits lim = limits_plain(1024, false);
        const char *good = "{\"name\":\"out.txt\",\"content\":\"x\"}";
        char files[1024];

        refused_with("files", "[]", &lim, "\"files\" (the request has no output_files)");
        lim.output_files = out_names;
        lim.n_output_files = 1;
        lim.output_file_max = 8;
        refused_text("{" OK_RUN ",\"exit_code\":0,\"run_ms\":1}", &lim, "without \"files\"");
        refused_with("files", "{}", &lim, "\"files\" is not an array");
        snprintf(files, sizeof(files), "[%s,%s]", good, good);
        refused_with("files", files, &lim, "\"files\" has 2 entries, not the 1");
        refused_with("files", "[]", &lim, "\"files\" has 0 entries");
        refused_with("files", "[\"out.txt\"]", &lim, "\"files[0]\" is not an object");
        refused_with("files", "[{\"name\":\"../etc/passwd\",\"content\":\"x\"}]", &lim,
                     "\"files[0].name\" is not \"out.txt\"");
        {
                /* a NUL reaches no parsed frame (op_parse_object refuses it), but the decoder
                 * does not rely on that */
                json_auto_t *obj = parse("{" OK_RUN ",\"exit_code\":0,\"run_ms\":1}");
                json_object_set_new(
                    obj, "files",
                    json_pack("[{s:s%, s:s}]", "name", "out.txt\0", (size_t)8, "content", "x"));
                refused(obj, &lim, "\"files[0].name\"");
        }
        refused_with("files", "[{\"content\":\"x\"}]", &lim, "\"files[0].name\"");
        refused_with("files", "[{\"name\":\"out.txt\",\"content\":\"123456789\"}]", &lim,
                     "\"files[0].content\" is 9 bytes, over the limit of 8");
        refused_with("files", "[{\"name\":\"out.txt\",\"content_b64\":\"MTIzNDU2Nzg5\"}]", &lim,
                     "\"files[0].content_b64\" is 9 bytes, over the limit of 8");
        refused_with("files", "[{\"name\":\"out.txt\",\"content_b64\":\"*\"}]", &lim,
                     "\"files[0].content_b64\" is not base64");
        refused_with("files", "[{\"name\":\"out.txt\"}]", &lim, "without \"files[0].content\"");
        refused_with("files", "[{\"name\":\"out.txt\",\"error\":\"gone\"}]", &lim,
                     "\"files[0].error\" is not one of");
        refused_with("files", "[{\"name\":\"out.txt\",\"error\":\"not_found\",\"content\":\"\"}]",
                     &lim, "both \"error\" and content");
        refused_with("files", "[{\"name\":\"out.txt\",\"content\":\"\",\"mode\":420}]", &lim,
                     "unknown field \"mode\"");
}

static void test_hostile_compile(void **state)
{
        struct op_agent_limits lim = limits_plain(1024, false);
        const char *ok = "\"stdout\":\"\",\"stderr\":\"\",\"exit_code\":0,\"signal\":null,"
                         "\"timed_out\":false,\"truncated\":false";
        char c[1024];

        snprintf(c, sizeof(c), "{%s}", ok);
        refused_with("compile", c, &lim, "\"compile\" (the job had no compile phase)");
        lim.compile = true;
        lim.compile_output_max = 4;
        refused_text("{" OK_RUN ",\"exit_code\":0,\"run_ms\":1}", &lim, "without \"compile\"");
        refused_with("compile", "[]", &lim, "\"compile\" is not an object");
        refused_with("compile", "{\"stdout\":\"\",\"stderr\":\"\"}", &lim,
                     "\"compile.timed_out\" is missing");
        snprintf(c, sizeof(c), "{%s,\"stdout\":\"12345\"}", ok + strlen("\"stdout\":\"\","));
        refused_with("compile", c, &lim, "\"compile.stdout\" is 5 bytes, over the limit of 4");
        snprintf(c, sizeof(c), "{%s,\"stderr_b64\":\"MTIzNDU=\"}", ok);
        refused_with("compile", c, &lim, "\"compile.stderr_b64\" is 5 bytes");
        snprintf(c, sizeof(c), "{%s,\"run_ms\":-1e300}", ok);
        refused_with("compile", c, &lim, "\"compile.run_ms\"");
        snprintf(c, sizeof(c), "{%s,\"warm_used\":true}", ok);
        refused_with("compile", c, &lim, "unknown field \"warm_used\"");
        refused_with("compile",
                     "{\"stdout\":\"\",\"stderr\":\"\",\"exit_code\":-1,\"signal\":null,"
                     "\"timed_out\":false,\"truncated\":false}",
                     &lim, "\"compile.exit_code\"");
        refused_with("compile",
                     "{\"stdout\":\"\",\"stderr\":\"\",\"exit_code\":null,\"signal\":65,"
                     "\"timed_out\":false,\"truncated\":false}",
                     &lim, "\"compile.signal\"");
}

/* An exec answer whose run has out and err (text) and output_order order (JSON, or NULL),
 * plus extra fields ("" or ",\"k\":v"). */
static json_t *order_answer(const char *out, const char *err, const char *order, const char *extra)
{
        char text[16384];

        snprintf(text, sizeof(text),
                 "{\"ok\":true,\"stdout\":\"%s\",\"stderr\":\"%s\",\"timed_out\":false,"
                 "\"truncated\":false,\"exit_code\":0,\"signal\":null,\"run_ms\":1%s%s%s}",
                 out, err, order ? ",\"output_order\":" : "", order ? order : "", extra);
        return parse(text);
}

static void refused_order(const char *order, const char *extra, const char *want)
{
        struct op_agent_limits lim = limits_plain(1024, false);
        json_auto_t *obj = order_answer("abcd", "xy", order, extra);

        refused(obj, &lim, want);
}

/* The agent records the order as it reads: adjacent reads of a stream merged, the cap kept
 * with the rest of each stream after it, and what it records is what opd accepts. */
static void test_order_record(void **state)
{
        struct op_agent_order o = {.known = true};
        char err[256] = "";
        _cleanup_free_ char *joined = NULL, *plain = NULL;

        assert_int_equal(op_agent_order_add(&o, 1, 2), 0);
        assert_int_equal(op_agent_order_add(&o, 1, 1), 0);
        assert_int_equal(op_agent_order_add(&o, 2, 0), 0); /* nothing read: nothing noted */
        assert_int_equal(op_agent_order_add(&o, 2, 2), 0);
        assert_int_equal(op_agent_order_add(&o, 1, 1), 0);
        assert_int_equal(op_agent_order_end(&o), 0);
        assert_int_equal(o.n, 3);
        assert_false(o.partial);
        assert_int_equal(o.seg[0].stream, 1);
        assert_int_equal(o.seg[0].len, 3);
        assert_int_equal(o.seg[1].stream, 2);
        assert_int_equal(o.seg[1].len, 2);
        assert_int_equal(o.seg[2].stream, 1);
        assert_int_equal(o.seg[2].len, 1);
        assert_int_equal(op_agent_order_check(&o, 4, 2, "x", "", err, sizeof(err)), 0);
        joined = op_agent_order_join(&o, "abcd", 4, "XY", 2);
        assert_string_equal(joined, "abcXYd");
        plain = op_agent_order_join(NULL, "abcd", 4, "XY", 2);
        assert_string_equal(plain, "abcdXY");
        op_agent_order_done(&o);
        assert_false(o.known);

        /* 3000 switches: the first OP_AGENT_ORDER_MAX - 2 segments, then the rest of stdout
         * (which follows a stderr segment) and of stderr */
        o = (struct op_agent_order){.known = true};
        for (int i = 0; i < 3000; i++)
                assert_int_equal(op_agent_order_add(&o, 1 + i % 2, 1 + (size_t)(i % 2)), 0);
        assert_true(o.partial);
        assert_int_equal(o.n, OP_AGENT_ORDER_MAX - 2);
        assert_int_equal(op_agent_order_end(&o), 0);
        assert_int_equal(o.n, OP_AGENT_ORDER_MAX);
        assert_int_equal(o.seg[OP_AGENT_ORDER_MAX - 2].stream, 1);
        assert_int_equal(o.seg[OP_AGENT_ORDER_MAX - 2].len, 1500 - (OP_AGENT_ORDER_MAX - 2) / 2);
        assert_int_equal(o.seg[OP_AGENT_ORDER_MAX - 1].stream, 2);
        assert_int_equal(o.seg[OP_AGENT_ORDER_MAX - 1].len,
                         2 * (1500 - (OP_AGENT_ORDER_MAX - 2) / 2));
        assert_int_equal(op_agent_order_check(&o, 1500, 3000, "x", "", err, sizeof(err)), 0);
        {
                /* through the wire and back */
                struct op_agent_answer a = {.op = OP_AGENT_OP_EXEC, .ok = true};
                struct op_agent_limits lim = limits_plain(4096, false);
                _cleanup_free_ char *out = malloc(1500), *er = malloc(3000);

                assert_non_null(out);
                assert_non_null(er);
                memset(out, 'o', 1500);
                memset(er, 'e', 3000);
                a.exec.run = (struct op_agent_run){.out = {out, 1500},
                                                   .err = {er, 3000},
                                                   .order = o,
                                                   .exit_code = 0,
                                                   .has_run_ms = true};
                round_trip(&a, &lim);
        }
        op_agent_order_done(&o);

        /* The last segment is stderr when the cap is reached by a stdout read: the rest of
         * stdout merges into nothing before it, stderr's rest comes last. */
        o = (struct op_agent_order){.known = true};
        for (int i = 0; i < OP_AGENT_ORDER_MAX - 2; i++)
                assert_int_equal(op_agent_order_add(&o, 2 - i % 2, 1), 0);
        assert_int_equal(o.seg[o.n - 1].stream, 1);
        assert_int_equal(op_agent_order_add(&o, 2, 5), 0); /* over the cap */
        assert_int_equal(op_agent_order_add(&o, 1, 7), 0); /* not merged into the last one */
        assert_true(o.partial);
        assert_int_equal(op_agent_order_end(&o), 0);
        assert_int_equal(o.n, OP_AGENT_ORDER_MAX - 1);
        assert_int_equal(o.seg[o.n - 2].len, 1 + 7);
        assert_int_equal(o.seg[o.n - 1].stream, 2);
        assert_int_equal(o.seg[o.n - 1].len, 5);
        op_agent_order_done(&o);

        /* not recording (streamed output): nothing kept */
        o = (struct op_agent_order){0};
        assert_int_equal(op_agent_order_add(&o, 1, 5), 0);
        assert_int_equal(op_agent_order_end(&o), 0);
        assert_int_equal(o.n, 0);
        assert_null(o.seg);
}

/* opd takes the order only when it fits the bytes it got, exactly. */
static void test_hostile_order(void **state)
{
        struct op_agent_limits lim = limits_plain(1024, false);
        _cleanup_free_ char *many = malloc(16384);
        char err[512];
        struct op_agent_answer a;
        size_t n = 0;

        /* accepted: in order, partial, absent (an older agent), empty with empty output */
        {
                json_auto_t *obj = order_answer("abcd", "xy", "[[1,2],[2,2],[1,2]]",
                                                ",\"output_order_partial\":true");

                assert_int_equal(op_agent_answer_decode(obj, &lim, &a, err, sizeof(err)), 0);
                assert_true(a.exec.run.order.known);
                assert_true(a.exec.run.order.partial);
                assert_int_equal(a.exec.run.order.n, 3);
                op_agent_answer_done(&a);
        }
        {
                json_auto_t *obj = order_answer("abcd", "xy", NULL, "");

                assert_int_equal(op_agent_answer_decode(obj, &lim, &a, err, sizeof(err)), 0);
                assert_false(a.exec.run.order.known);
                op_agent_answer_done(&a);
        }
        {
                json_auto_t *obj = order_answer("", "", "[]", "");

                assert_int_equal(op_agent_answer_decode(obj, &lim, &a, err, sizeof(err)), 0);
                assert_true(a.exec.run.order.known);
                assert_int_equal(a.exec.run.order.n, 0);
                op_agent_answer_done(&a);
        }
        {
                /* the byte counts are of the bytes (the _b64 form), not of the text */
                json_auto_t *obj =
                    order_answer("a\\ufffd", "", "[[1,2]]", ",\"stdout_b64\":\"Yf8=\"");

                assert_int_equal(op_agent_answer_decode(obj, &lim, &a, err, sizeof(err)), 0);
                op_agent_answer_done(&a);
        }

        refused_order("{}", "", "\"output_order\" is not an array");
        refused_order("[[1,2],[2,2],[1,3]]", "", "counts more bytes of stdout than the 4");
        refused_order("[[1,4],[2,3]]", "", "counts more bytes of stderr than the 2");
        refused_order("[[1,3],[2,2]]", "", "counts 3 bytes of stdout, not the 4");
        refused_order("[[1,4]]", "", "counts 0 bytes of stderr, not the 2");
        refused_order("[]", "", "counts 0 bytes of stdout, not the 4");
        refused_order("[[1,2],[1,2],[2,2]]", "", "\"output_order[1]\" is of the same stream");
        refused_order("[[1,4],[3,2]]", "", "\"output_order[1]\" is not [1 or 2");
        refused_order("[[1,4],[0,2]]", "", "\"output_order[1]\" is not [1 or 2");
        refused_order("[[1,4],[2,0],[2,2]]", "", "\"output_order[1]\" is not [1 or 2");
        refused_order("[[1,4],[2,-2]]", "", "\"output_order[1]\" is not [1 or 2");
        refused_order("[[1,4],[2,2,0]]", "", "\"output_order[1]\" is not [1 or 2");
        refused_order("[[1,4],[2]]", "", "\"output_order[1]\" is not [1 or 2");
        refused_order("[[1,4],{\"2\":2}]", "", "\"output_order[1]\" is not [1 or 2");
        refused_order("[[1,4],[2,2.0]]", "", "\"output_order[1]\" is not [1 or 2");
        refused_order("[[1,4],[\"stderr\",2]]", "", "\"output_order[1]\" is not [1 or 2");
        /* lengths that would wrap a sum */
        refused_order("[[1,4],[2,9223372036854775807]]", "", "\"output_order[1]\"");
        refused_order("[[1,-9223372036854775808],[2,2]]", "", "\"output_order[0]\"");
        refused_order("[[1,4],[2,2]]", ",\"output_order_partial\":1",
                      "\"output_order_partial\" is not true or false");
        refused_order(NULL, ",\"output_order_partial\":false",
                      "\"output_order_partial\" and no \"output_order\"");
        /* more segments than the cap: refused before each is looked at */
        assert_non_null(many);
        n += (size_t)snprintf(many + n, 16384 - n, "[");
        for (int i = 0; i <= OP_AGENT_ORDER_MAX; i++)
                n += (size_t)snprintf(many + n, 16384 - n, "%s[%d,1]", i ? "," : "", 1 + i % 2);
        snprintf(many + n, 16384 - n, "]");
        refused_order(many, "", "has 1025 segments, over the limit of 1024");
        {
                /* the compile phase's, named as such */
                char c[256];

                lim.compile = true;
                lim.compile_output_max = 16;
                snprintf(c, sizeof(c),
                         "{\"stdout\":\"ab\",\"stderr\":\"\",\"exit_code\":0,\"signal\":null,"
                         "\"timed_out\":false,\"truncated\":false,\"output_order\":[[1,1]]}");
                refused_with("compile", c, &lim,
                             "\"compile.output_order\" counts 1 bytes of stdout, not the 2 of "
                             "\"compile.stdout\"");
        }
        {
                /* a hostile order of the most segments, each at the largest length: still
                 * refused with a message, whatever the sums */
                struct op_agent_order o = {.known = true, .n = OP_AGENT_ORDER_MAX};
                static struct op_agent_segment seg[OP_AGENT_ORDER_MAX];

                for (size_t i = 0; i < OP_AGENT_ORDER_MAX; i++)
                        seg[i] = (struct op_agent_segment){1 + (int)(i % 2), SIZE_MAX};
                o.seg = seg;
                assert_int_equal(
                    op_agent_order_check(&o, SIZE_MAX, SIZE_MAX, "x", "", err, sizeof(err)),
                    -EINVAL);
                o.n = OP_AGENT_ORDER_MAX + 1;
                assert_int_equal(
                    op_agent_order_check(&o, SIZE_MAX, SIZE_MAX, "x", "", err, sizeof(err)),
                    -EINVAL);
                assert_non_null(strstr(err, "over the limit"));
        }
}

static void test_hostile_other_answers(void **state)
{
        struct op_agent_limits lim = {.op = OP_AGENT_OP_PING};
        _cleanup_free_ char *long_msg = malloc(OP_AGENT_MESSAGE_MAX + 2);

        refused_text("{\"ok\":true,\"pong\":true}", &lim, "\"agent_version\"");
        refused_text("{\"ok\":true,\"pong\":true,\"agent_version\":\"0.1.0-with-a-very-long-"
                     "suffix-indeed\"}",
                     &lim, "\"agent_version\" is not a string of 1 to 31");
        refused_text("{\"ok\":true,\"pong\":true,\"agent_version\":\"0.1\\n\"}", &lim, "printable");
        refused_text("{\"ok\":true,\"pong\":false,\"agent_version\":\"1\"}", &lim,
                     "without \"pong\": true");
        refused_text("{\"ok\":true,\"pong\":true,\"agent_version\":\"1\",\"stdout\":\"\"}", &lim,
                     "unknown field \"stdout\"");
        lim.op = OP_AGENT_OP_WARM;
        refused_text("{\"ok\":true,\"warm\":true,\"pid\":0}", &lim, "\"pid\"");
        refused_text("{\"ok\":true,\"warm\":true,\"pid\":-1}", &lim, "\"pid\"");
        refused_text("{\"ok\":true,\"warm\":true,\"pid\":99999999999}", &lim, "\"pid\"");
        lim.op = OP_AGENT_OP_PRIME;
        refused_text("{\"ok\":true,\"primed\":true,\"run_ms\":-1e300}", &lim, "\"run_ms\"");
        refused_text("{\"ok\":true,\"primed\":true}", &lim, "\"run_ms\" is missing");
        /* error answers */
        refused_text("{\"ok\":false}", &lim, "\"error\" is missing");
        refused_text("{\"ok\":false,\"error\":\"x\"}", &lim, "\"error\" is not an object");
        refused_text("{\"ok\":false,\"error\":{\"code\":\"oops\",\"message\":\"\"}}", &lim,
                     "\"error.code\" is not an error code");
        refused_text("{\"ok\":false,\"error\":{\"code\":\"internal_error\"}}", &lim,
                     "\"error.message\"");
        {
                json_auto_t *obj = json_pack("{s:b, s:{s:s, s:s%}}", "ok", 0, "error", "code",
                                             "internal_error", "message", "a\0b", (size_t)3);
                refused(obj, &lim, "\"error.message\"");
        }
        refused_text("{\"ok\":false,\"error\":{\"code\":\"internal_error\",\"message\":\"\","
                     "\"x\":1}}",
                     &lim, "unknown field \"x\"");
        refused_text("{\"ok\":false,\"error\":{\"code\":\"internal_error\",\"message\":\"\"},"
                     "\"stdout\":\"\"}",
                     &lim, "unknown field \"stdout\"");
        assert_non_null(long_msg);
        memset(long_msg, 'm', OP_AGENT_MESSAGE_MAX + 1);
        long_msg[OP_AGENT_MESSAGE_MAX + 1] = 0;
        {
                json_auto_t *obj = json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error", "code",
                                             "internal_error", "message", long_msg);
                refused(obj, &lim, "\"error.message\" is not a string of at most 8192");
        }
        /* ready events */
        refused_text("{\"event\":\"ready\"}", &lim, "\"agent_version\"");
        refused_text("{\"event\":\"ready\",\"agent_version\":\"\"}", &lim, "\"agent_version\"");
        refused_text("{\"event\":\"ready\",\"agent_version\":\"1\",\"id\":1}", &lim,
                     "unknown field \"id\"");
}

/* Bytes that are not one JSON object are refused as such. */
static void test_parse_bytes(void **state)
{
        struct op_agent_limits lim = limits_plain(16, false);
        struct op_agent_msg m;
        char err[256];

        assert_int_equal(op_agent_msg_parse("[]", 2, &lim, &m, err, sizeof(err)), -EINVAL);
        assert_int_equal(op_agent_msg_parse("{\"ok\":", 6, &lim, &m, err, sizeof(err)), -EINVAL);
        assert_int_equal(op_agent_msg_parse("\xff", 1, &lim, &m, err, sizeof(err)), -EINVAL);
        assert_int_equal(op_agent_msg_parse("", 0, &lim, &m, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "not one JSON object"));
}

/* ---- what op-agent really sends decodes under the limits of the job it was given ---- */

static char workdir[] = "/tmp/op-agent-codec-test-XXXXXX";

static void agent_answers(const char *text, const struct op_agent_limits *lim,
                          struct op_agent_answer *ret)
{
        struct agent ag;
        struct agent_config cfg = {.workdir = workdir, .uid = (uid_t)-1, .gid = (gid_t)-1};
        json_auto_t *req = parse(text);
        json_auto_t *ans = NULL;
        struct op_agent_msg m;
        char err[512] = "";

        agent_init(&ag, &cfg);
        ans = agent_handle(&ag, req);
        agent_done(&ag);
        assert_non_null(ans);
        if (decode_bytewise(ans, lim, &m, err, sizeof(err)) != 0)
                fail_msg("the agent's answer is refused: %s", err);
        assert_int_equal(m.kind, OP_AGENT_MSG_ANSWER);
        *ret = m.answer;
        m.answer = (struct op_agent_answer){0};
        op_agent_msg_done(&m);
}

static void test_real_agent(void **state)
{
        struct op_agent_limits lim = limits_full();
        struct op_agent_answer a;
        struct op_agent_ready rd;
        json_auto_t *ready = agent_ready_event();
        char err[256];

        assert_non_null(mkdtemp(workdir));
        /* a compile phase, a run that writes one of its two output files and bytes that are
         * not UTF-8 */
        agent_answers(
            "{\"op\":\"exec\",\"argv\":[\"./main\"],\"file\":\"main.src\","
            "\"code\":\"#!/bin/sh\\nprintf 'a\\\\377' > out.txt; printf 'x\\\\0y'; exit 3\\n\","
            "\"output_max\":1024,\"output_files\":[\"out.txt\",\"img.png\"],"
            "\"output_file_max\":64,\"compile\":{\"argv\":[\"sh\",\"-c\","
            "\"cp main.src main && chmod +x main && echo built\"],\"timeout_ms\":5000,"
            "\"output_max\":256}}",
            &lim, &a);
        assert_true(a.ok);
        assert_int_equal(a.exec.run.exit_code, 3);
        assert_int_equal(a.exec.run.out.len, 3);
        assert_memory_equal(a.exec.run.out.data, "x\0y", 3);
        assert_true(a.exec.has_compile && a.exec.has_status && a.exec.has_usage);
        assert_int_equal(a.exec.status, OP_STATUS_RUNTIME_ERROR);
        assert_int_equal(a.exec.compile.out.len, 6);
        assert_int_equal(a.exec.n_files, 2);
        assert_int_equal(a.exec.files[0].content.len, 2);
        assert_memory_equal(a.exec.files[0].content.data, "a\377", 2);
        assert_int_equal(a.exec.files[1].error, OP_AGENT_FILE_NOT_FOUND);
        op_agent_answer_done(&a);
        /* a compiler that fails */
        agent_answers("{\"op\":\"exec\",\"argv\":[\"./main\"],\"file\":\"main.src\","
                      "\"code\":\"\",\"output_files\":[\"out.txt\",\"img.png\"],"
                      "\"compile\":{\"argv\":[\"sh\",\"-c\",\"echo no >&2; exit 1\"],"
                      "\"timeout_ms\":5000,\"output_max\":256}}",
                      &lim, &a);
        assert_true(a.ok);
        assert_int_equal(a.exec.status, OP_STATUS_COMPILE_ERROR);
        assert_int_equal(a.exec.compile.exit_code, 1);
        assert_false(a.exec.has_files); /* the program did not run */
        op_agent_answer_done(&a);
        /* "timing": the agent's time from the job read to the answer made, the program's run
         * within it; an answer without it otherwise */
        lim = limits_plain(1024, false);
        lim.timing = true;
        agent_answers("{\"op\":\"exec\",\"argv\":[\"sh\",\"-c\",\"sleep 0.05\"],"
                      "\"timing\":true}",
                      &lim, &a);
        assert_true(a.ok && a.exec.has_agent_ms && a.exec.run.has_run_ms);
        assert_true(a.exec.run.run_ms >= 50 && a.exec.agent_ms >= a.exec.run.run_ms);
        op_agent_answer_done(&a);
        agent_answers("{\"op\":\"exec\",\"argv\":[\"true\"],\"timing\":false}", &lim, &a);
        assert_true(a.ok && !a.exec.has_agent_ms);
        op_agent_answer_done(&a);
        agent_answers("{\"op\":\"exec\",\"argv\":[\"true\"],\"timing\":1}", &lim, &a);
        assert_false(a.ok);
        assert_non_null(strstr(a.error.message, "\"timing\" must be true or false"));
        op_agent_answer_done(&a);
        lim = limits_full();
        /* a request the agent refuses, and a ping */
        agent_answers("{\"op\":\"exec\",\"argv\":[]}", &lim, &a);
        assert_false(a.ok);
        assert_int_equal(a.error.code, OP_ERR_BAD_REQUEST);
        op_agent_answer_done(&a);
        lim = (struct op_agent_limits){.op = OP_AGENT_OP_PING};
        agent_answers("{\"op\":\"ping\",\"id\":3}", &lim, &a);
        assert_true(a.ok);
        assert_string_equal(a.agent_version, OP_AGENT_VERSION);
        op_agent_answer_done(&a);
        assert_int_equal(op_agent_ready_decode(ready, &rd, err, sizeof(err)), 0);
        assert_string_equal(rd.agent_version, OP_AGENT_VERSION);
        assert_int_equal(rmdir(workdir), 0);
        /* the agent built here starts runners in clones */
        assert_true(op_agent_version_at_least(OP_AGENT_VERSION, OP_AGENT_VERSION_RUNNER));
}

/* Versions compared number by number; anything else is older than every version. */
static void test_agent_version(void **state)
{
        static const struct {
                const char *v, *min;
                bool want;
        } cases[] = {
            {"0.3.0", "0.3.0", true},   {"0.3.1", "0.3.0", true},      {"0.10.0", "0.3.0", true},
            {"1", "0.3.0", true},       {"0.3", "0.3.0", true},        {"0.3.0.0", "0.3", true},
            {"0.2.0", "0.3.0", false},  {"0.2.99", "0.3.0", false},    {"0.1.0", "0.3.0", false},
            {"", "0.3.0", false},       {"fake", "0.3.0", false},      {"0.3.x", "0.3.0", false},
            {"0..3", "0.3.0", false},   {"0.3.", "0.3.0", false},      {".3", "0.3.0", false},
            {"-1", "0.3.0", false},     {"0.3.0-rc1", "0.3.0", false}, {"9999999", "0.3.0", false},
            {"5.1.!0", "0.3.0", false},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                if (op_agent_version_at_least(cases[i].v, cases[i].min) != cases[i].want)
                        fail_msg("\"%s\" at least \"%s\": want %d", cases[i].v, cases[i].min,
                                 cases[i].want);
        assert_false(op_agent_version_at_least(NULL, "0.3.0"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip_exec),
            cmocka_unit_test(test_round_trip_others),
            cmocka_unit_test(test_round_trip_events),
            cmocka_unit_test(test_frame_cap),
            cmocka_unit_test(test_hostile_output),
            cmocka_unit_test(test_hostile_numbers),
            cmocka_unit_test(test_hostile_files),
            cmocka_unit_test(test_hostile_compile),
            cmocka_unit_test(test_order_record),
            cmocka_unit_test(test_hostile_order),
            cmocka_unit_test(test_hostile_other_answers),
            cmocka_unit_test(test_parse_bytes),
            cmocka_unit_test(test_real_agent),
            cmocka_unit_test(test_agent_version),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
