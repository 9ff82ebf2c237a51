/* piston.c: Piston v2 execute bodies to protocol exec requests, exec answers to Piston results,
 * and the semver selectors Piston clients send as "version". */
#include "piston.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-msg.h"
#include "cleanup.h"
#include "fail.h"
#include "util.h"

#define SELECTOR_MAX 256
#define TOKEN_MAX    64
#define NUMBER_MAX   999999999ULL

/* ---- version selectors ---- */

static int cmp3(const uint64_t a[3], const uint64_t b[3])
{
        for (int i = 0; i < 3; i++)
                if (a[i] != b[i])
                        return a[i] < b[i] ? -1 : 1;
        return 0;
}

/* The first m numbers of v with the last of them plus one, zeros after: the end of a range. */
static void bump(const uint64_t v[3], int m, uint64_t ret[3])
{
        for (int i = 0; i < 3; i++)
                ret[i] = i < m ? v[i] : 0;
        ret[m - 1]++;
}

/* "3", "3.11", "3.x", "3.11.2", "*", "v3": the numbers before the first wildcard in v, their
 * count in *ret_n. */
static int parse_partial(const char *s, uint64_t v[3], int *ret_n)
{
        bool wild = false;
        int n = 0, parts = 0;

        v[0] = v[1] = v[2] = 0;
        if (*s == 'v')
                s++;
        if (!*s)
                return -EINVAL;
        for (;;) {
                if (++parts > 3)
                        return -EINVAL;
                if (*s == 'x' || *s == 'X' || *s == '*') {
                        wild = true;
                        s++;
                } else if (*s >= '0' && *s <= '9' && !wild) {
                        uint64_t x = 0;

                        while (*s >= '0' && *s <= '9') {
                                x = x * 10 + (uint64_t)(*s++ - '0');
                                if (x > NUMBER_MAX)
                                        return -EINVAL;
                        }
                        v[n++] = x;
                } else
                        return -EINVAL;
                if (!*s)
                        break;
                if (*s++ != '.' || !*s)
                        return -EINVAL;
        }
        *ret_n = n;
        return 0;
}

/* One comparator ("^3.10", ">=3", "3.11.x") against a version (NULL: one without numbers,
 * which only "*" takes): 1, 0, or -EINVAL. */
static int comparator_match(const char *tok, const uint64_t ver[3])
{
        static const char *const ops[] = {">=", "<=", ">", "<", "=", "^", "~"};
        const char *op = "";
        uint64_t v[3], lo[3], hi[3];
        int n;

        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                if (strncmp(tok, ops[i], strlen(ops[i])) == 0) {
                        op = ops[i];
                        tok += strlen(op);
                        break;
                }
        if (parse_partial(tok, v, &n) < 0)
                return -EINVAL;
        if (n == 0) /* "*": everything, except "more than" or "less than" everything */
                return strcmp(op, ">") != 0 && strcmp(op, "<") != 0;
        if (!ver)
                return 0;
        memcpy(lo, v, sizeof(lo));
        switch (op[0]) {
        case '>':
                if (op[1] == '=')
                        return cmp3(ver, v) >= 0;
                bump(v, n, lo); /* ">3.9" is ">=3.10.0" */
                return cmp3(ver, lo) >= 0;
        case '<':
                if (op[1] == '=') {
                        bump(v, n, hi); /* "<=3.11" is "<3.12.0" */
                        return cmp3(ver, hi) < 0;
                }
                return cmp3(ver, v) < 0;
        case '^': {
                /* Up to the next change of the first number that is not zero. */
                int k = n - 1;

                for (int i = 0; i < n; i++)
                        if (v[i] != 0) {
                                k = i;
                                break;
                        }
                bump(v, k + 1, hi);
                break;
        }
        case '~':
                bump(v, n == 1 ? 1 : 2, hi);
                break;
        default: /* "3.11" or "=3.11": that release line */
                bump(v, n, hi);
                break;
        }
        return cmp3(ver, lo) >= 0 && cmp3(ver, hi) < 0;
}

/* One alternative: comparators separated by spaces, all of which must hold. */
static int alternative_match(const char *s, size_t len, const uint64_t *ver)
{
        char tok[TOKEN_MAX];
        size_t i = 0, t = 0;
        bool any = false;

        for (;;) {
                size_t start;

                while (i < len && s[i] == ' ')
                        i++;
                if (i == len)
                        break;
                start = i;
                while (i < len && s[i] != ' ')
                        i++;
                if (t + (i - start) + 1 > sizeof(tok))
                        return -EINVAL;
                memcpy(tok + t, s + start, i - start);
                t += i - start;
                tok[t] = 0;
                if (strspn(tok, "<>=^~") == t)
                        continue; /* an operator standing alone (">= 3") joins what follows */
                int r = comparator_match(tok, ver);
                if (r <= 0)
                        return r;
                any = true;
                t = 0;
        }
        return t || !any ? -EINVAL : 1;
}

int piston_version_match(const char *selector, const char *version)
{
        uint64_t ver[3] = {0, 0, 0};
        const char *p = version;
        int n = 0;

        if (strlen(selector) > SELECTOR_MAX)
                return 0;
        /* The runtime's leading numbers: "3.11.2", "5.2.15(1)-release" -> 5.2.15. */
        while (n < 3 && *p >= '0' && *p <= '9') {
                uint64_t x = 0;

                while (*p >= '0' && *p <= '9' && x <= NUMBER_MAX)
                        x = x * 10 + (uint64_t)(*p++ - '0');
                ver[n++] = x;
                if (*p != '.')
                        break;
                p++;
        }
        for (const char *alt = selector;;) {
                const char *bar = strstr(alt, "||");
                size_t len = bar ? (size_t)(bar - alt) : strlen(alt);
                int r = alternative_match(alt, len, n ? ver : NULL);

                if (r < 0)
                        return 0; /* a malformed selector matches nothing */
                if (r > 0)
                        return 1;
                if (!bar)
                        return 0;
                alt = bar + 2;
        }
}

/* ---- execute requests ---- */

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* files[i].content decoded from base64 or hex (*ret_enc says which encoding it had): *ret holds
 * the bytes, or stays NULL for utf8 content, which needs no decoding. */
static int file_bytes(json_t *file, size_t i, uint8_t **ret, size_t *ret_len, const char **ret_enc,
                      char *errbuf, size_t errlen)
{
        json_t *content = json_object_get(file, "content"),
               *enc = json_object_get(file, "encoding");
        const char *s = json_string_value(content), *e;
        size_t len = json_string_length(content), n = 0;
        _cleanup_free_ uint8_t *bytes = NULL;

        *ret = NULL;
        e = enc && !json_is_null(enc) ? json_string_value(enc) : "utf8";
        if (!e)
                return op_proto_fail(errbuf, errlen, "files[%zu].encoding must be a string", i);
        *ret_enc = e;
        if (strcmp(e, "utf8") == 0)
                return 0;
        if (strcmp(e, "base64") == 0) {
                if (op_base64_decode(s, len, &bytes, &n) < 0)
                        return op_proto_fail(errbuf, errlen,
                                             "files[%zu].content is not valid base64", i);
        } else if (strcmp(e, "hex") == 0) {
                if (len % 2 || !(bytes = malloc(len / 2 + 1)))
                        return op_proto_fail(errbuf, errlen, "files[%zu].content is not valid hex",
                                             i);
                for (n = 0; n < len / 2; n++) {
                        int hi = hexval(s[2 * n]), lo = hexval(s[2 * n + 1]);

                        if (hi < 0 || lo < 0)
                                return op_proto_fail(errbuf, errlen,
                                                     "files[%zu].content is not valid hex", i);
                        bytes[n] = (uint8_t)(hi << 4 | lo);
                }
        } else
                return op_proto_fail(errbuf, errlen,
                                     "files[%zu].encoding must be \"utf8\", \"base64\" or \"hex\"",
                                     i);
        *ret = TAKE_PTR(bytes);
        *ret_len = n;
        return 0;
}

/* The program, files[0]: protocol text for opd's "code", decoded from its encoding. */
static int program_text(json_t *file, json_t **ret, char *errbuf, size_t errlen)
{
        _cleanup_free_ uint8_t *bytes = NULL;
        const char *enc;
        size_t n = 0;
        int r = file_bytes(file, 0, &bytes, &n, &enc, errbuf, errlen);

        if (r < 0)
                return r;
        if (!bytes) {
                *ret = json_incref(json_object_get(file, "content"));
                return 0;
        }
        if (memchr(bytes, 0, n) || !op_utf8_valid((const char *)bytes, n))
                return op_proto_fail(
                    errbuf, errlen,
                    "files[0]: the program must be text (its decoded bytes UTF-8 without "
                    "NUL); binary content is taken in the other files");
        *ret = json_stringn((const char *)bytes, n);
        return *ret ? 0 : -ENOMEM;
}

/* An extra file, files[i] (i > 0), as opd's {"name", "content", "encoding"}: utf8 content as
 * text, base64 as it came (checked), hex converted to base64. */
static int extra_file(json_t *file, size_t i, json_t **ret, char *errbuf, size_t errlen)
{
        json_t *name = json_object_get(file, "name"), *content = json_object_get(file, "content");
        _cleanup_free_ uint8_t *bytes = NULL;
        _cleanup_free_ char *b64 = NULL;
        const char *enc;
        char gen[32];
        size_t n = 0;
        int r = file_bytes(file, i, &bytes, &n, &enc, errbuf, errlen);

        if (r < 0)
                return r;
        snprintf(gen, sizeof(gen), "file%zu", i);
        if (!bytes)
                *ret = json_pack("{s:o, s:O}", "name",
                                 json_is_string(name) ? json_incref(name) : json_string(gen),
                                 "content", content);
        else if (strcmp(enc, "base64") == 0)
                *ret = json_pack("{s:o, s:O, s:s}", "name",
                                 json_is_string(name) ? json_incref(name) : json_string(gen),
                                 "content", content, "encoding", "base64");
        else {
                b64 = op_base64_encode(bytes, n);
                if (!b64)
                        return -ENOMEM;
                *ret = json_pack("{s:o, s:s, s:s}", "name",
                                 json_is_string(name) ? json_incref(name) : json_string(gen),
                                 "content", b64, "encoding", "base64");
        }
        return *ret ? 0 : -ENOMEM;
}

/* A number of milliseconds or bytes: absent or null (0), or a number; -1 when minus_one_ok. */
static int get_number(json_t *body, const char *key, bool minus_one_ok, double *ret, char *errbuf,
                      size_t errlen)
{
        json_t *v = json_object_get(body, key);

        *ret = 0;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_number(v))
                return op_proto_fail(errbuf, errlen, "%s must be a number", key);
        *ret = json_number_value(v);
        if (*ret < 0 && !(minus_one_ok && *ret == -1))
                return op_proto_fail(errbuf, errlen, "%s must not be negative%s", key,
                                     minus_one_ok ? " (except -1: no limit)" : "");
        return 0;
}

static int check_body(json_t *body, char *errbuf, size_t errlen)
{
        static const struct {
                const char *key;
                bool minus_one_ok;
        } numbers[] = {
            {"run_timeout", false},      {"compile_timeout", false}, {"run_cpu_time", false},
            {"compile_cpu_time", false}, {"run_memory_limit", true}, {"compile_memory_limit", true},
        };
        json_t *v, *files = json_object_get(body, "files");
        size_t i;
        double x;

        if (!json_is_string(json_object_get(body, "language")) ||
            !json_string_length(json_object_get(body, "language")))
                return op_proto_fail(errbuf, errlen, "language is required as a string");
        if (!json_is_string(json_object_get(body, "version")) ||
            !json_string_length(json_object_get(body, "version")))
                return op_proto_fail(errbuf, errlen, "version is required as a string");
        if (!json_is_array(files))
                return op_proto_fail(errbuf, errlen, "files is required as an array");
        if (json_array_size(files) == 0)
                return op_proto_fail(errbuf, errlen,
                                     "files must hold at least one file: the program");
        json_array_foreach (files, i, v) {
                json_t *name = json_object_get(v, "name");

                if (!json_is_object(v))
                        return op_proto_fail(errbuf, errlen, "files[%zu] must be an object", i);
                if (!json_is_string(json_object_get(v, "content")))
                        return op_proto_fail(errbuf, errlen,
                                             "files[%zu].content is required as a string", i);
                if (name && !json_is_null(name) && !json_is_string(name))
                        return op_proto_fail(errbuf, errlen, "files[%zu].name must be a string", i);
        }
        v = json_object_get(body, "stdin");
        if (v && !json_is_null(v) && !json_is_string(v))
                return op_proto_fail(errbuf, errlen, "stdin must be a string");
        v = json_object_get(body, "args");
        if (v && !json_is_null(v)) {
                json_t *a;

                if (!json_is_array(v))
                        return op_proto_fail(errbuf, errlen, "args must be an array of strings");
                json_array_foreach (v, i, a)
                        if (!json_is_string(a))
                                return op_proto_fail(errbuf, errlen, "args[%zu] must be a string",
                                                     i);
        }
        for (i = 0; i < ELEMENTSOF(numbers); i++)
                if (get_number(body, numbers[i].key, numbers[i].minus_one_ok, &x, errbuf, errlen) <
                    0)
                        return -EINVAL;
        return 0;
}

int piston_exec_request(json_t *body, json_t *id, const struct op_limits *lim, json_t **ret_exec,
                        char *errbuf, size_t errlen)
{
        json_t *exec = NULL, *files, *extra = NULL, *text = NULL, *v, *f;
        double run_timeout, run_memory, run_cpu;
        size_t i;
        int r;

        if (!json_is_object(body))
                return op_proto_fail(errbuf, errlen, "the request body must be a JSON object");
        r = check_body(body, errbuf, errlen);
        if (r < 0)
                return r;
        get_number(body, "run_timeout", false, &run_timeout, errbuf, errlen);
        if (run_timeout > lim->timeout_ms_max)
                return op_proto_fail(errbuf, errlen,
                                     "run_timeout cannot be over the configured limit of %u",
                                     lim->timeout_ms_max);
        get_number(body, "run_memory_limit", true, &run_memory, errbuf, errlen);
        if (run_memory > (double)lim->memory_max)
                return op_proto_fail(errbuf, errlen,
                                     "run_memory_limit cannot be over the configured limit of %zu",
                                     lim->memory_max);
        get_number(body, "run_cpu_time", false, &run_cpu, errbuf, errlen);
        if (run_cpu > lim->cpu_time_ms_max)
                return op_proto_fail(errbuf, errlen,
                                     "run_cpu_time cannot be over the configured limit of %u",
                                     lim->cpu_time_ms_max);

        files = json_object_get(body, "files");
        exec = json_pack("{s:s, s:O?, s:O}", "op", "exec", "id", id, "lang",
                         json_object_get(body, "language"));
        extra = json_array();
        if (!exec || !extra)
                goto oom;
        json_array_foreach (files, i, f) {
                if (i == 0) {
                        /* The program: written to the language's main file. */
                        r = program_text(f, &text, errbuf, errlen);
                        if (r < 0)
                                goto out;
                        if (json_object_set_new(exec, "code", text) < 0)
                                goto oom;
                        text = NULL;
                        continue;
                }
                r = extra_file(f, i, &v, errbuf, errlen);
                if (r == -ENOMEM)
                        goto oom;
                if (r < 0)
                        goto out;
                if (json_array_append_new(extra, v) < 0)
                        goto oom;
        }
        if (json_array_size(extra) && json_object_set(exec, "files", extra) < 0)
                goto oom;
        if ((v = json_object_get(body, "stdin")) && json_is_string(v) &&
            json_object_set(exec, "stdin", v) < 0)
                goto oom;
        if ((v = json_object_get(body, "args")) && json_is_array(v) &&
            json_object_set(exec, "args", v) < 0)
                goto oom;
        /* Whole milliseconds, rounded up; 0 (as in Piston) takes the default. */
        if (run_timeout > 0 &&
            json_object_set_new(exec, "timeout_ms",
                                json_integer((json_int_t)run_timeout +
                                             (run_timeout > (json_int_t)run_timeout))) < 0)
                goto oom;
        /* Piston's limits for the run, when set: -1 (memory) or 0 means none. */
        if (run_memory > 0 &&
            json_object_set_new(exec, "memory_bytes", json_integer((json_int_t)run_memory)) < 0)
                goto oom;
        if (run_cpu > 0 && json_object_set_new(exec, "cpu_time_ms",
                                               json_integer((json_int_t)run_cpu +
                                                            (run_cpu > (json_int_t)run_cpu))) < 0)
                goto oom;
        /* Piston bounds each file a program writes (10 MB by default; its requests cannot
         * change it): the same, within limit.written_file_max. */
        if (lim->written_file_max > 0 &&
            json_object_set_new(
                exec, "file_size_max_bytes",
                json_integer((json_int_t)(lim->written_file_max < PISTON_FILE_SIZE_MAX
                                              ? lim->written_file_max
                                              : PISTON_FILE_SIZE_MAX))) < 0)
                goto oom;
        json_decref(extra);
        *ret_exec = exec;
        return 0;
oom:
        op_proto_fail(errbuf, errlen, "out of memory");
        r = -ENOMEM;
out:
        json_decref(text);
        json_decref(extra);
        json_decref(exec);
        return r;
}

/* ---- results ---- */

static json_t *signal_name(json_t *sig)
{
        char buf[32];
        const char *abbrev;

        if (!json_is_integer(sig))
                return json_null();
        abbrev = sigabbrev_np((int)json_integer_value(sig));
        if (abbrev)
                snprintf(buf, sizeof(buf), "SIG%s", abbrev);
        else
                snprintf(buf, sizeof(buf), "SIG%lld", (long long)json_integer_value(sig));
        return json_string(buf);
}

/* A number rounded to an integer, or null. */
/* A count rounded to a whole number; null when it is not a finite number in 0..2^53 (the
 * cast of anything else to an integer would be undefined). */
static json_t *whole(json_t *v)
{
        double x = json_is_number(v) ? json_number_value(v) : -1.0;

        return x >= 0.0 && x <= 9007199254740992.0 ? json_integer((json_int_t)(x + 0.5))
                                                   : json_null();
}

/* Piston's status and message for a phase, from opd's "status" when the answer has one, else
 * from the phase's own fields (an opd without it, and every compile phase). */
static const char *phase_status(json_t *ph, const char *opd_status, size_t output_max,
                                char *message, size_t len)
{
        json_t *code = json_object_get(ph, "exit_code"), *sig = json_object_get(ph, "signal");
        bool stdout_full = json_string_length(json_object_get(ph, "stdout")) >= output_max;

        message[0] = 0;
        if (opd_status && strcmp(opd_status, "memory_limit") == 0) {
                snprintf(message, len, "Memory limit exceeded");
                return "SG";
        }
        if (opd_status && strcmp(opd_status, "internal_error") == 0) {
                snprintf(message, len, "Internal error in the guest");
                return "XX";
        }
        if ((opd_status && strcmp(opd_status, "timeout") == 0) ||
            json_is_true(json_object_get(ph, "timed_out"))) {
                snprintf(message, len, "Time limit exceeded");
                return "TO";
        }
        if (json_is_true(json_object_get(ph, "truncated"))) {
                snprintf(message, len, "%s length exceeded", stdout_full ? "stdout" : "stderr");
                return stdout_full ? "OL" : "EL";
        }
        if (json_is_integer(sig)) {
                snprintf(message, len, "Killed by signal %lld", (long long)json_integer_value(sig));
                return "SG";
        }
        if (json_is_integer(code) && json_integer_value(code) != 0) {
                snprintf(message, len, "Exited with status %lld",
                         (long long)json_integer_value(code));
                return "RE";
        }
        return NULL;
}

/* Piston's "output" of a phase: its stdout and stderr bytes interleaved as its "output_order"
 * says, as text (bytes that are not UTF-8 become U+FFFD, as in "stdout"); stdout then stderr
 * when the phase has no order (streamed output, an older agent) or one that does not fit the
 * bytes. NULL when out of memory or the bytes are malformed. */
static json_t *phase_output(json_t *ph)
{
        _cleanup_free_ char *out = NULL, *err = NULL, *joined = NULL;
        _cleanup_(json_decrefp) json_t *tmp = NULL;
        struct op_agent_order order = {0};
        size_t nout, nerr;
        char why[256];

        if (op_json_get_bytes(ph, "stdout", SIZE_MAX, &out, &nout) < 0 ||
            op_json_get_bytes(ph, "stderr", SIZE_MAX, &err, &nerr) < 0)
                return NULL;
        if (op_agent_order_decode(ph, nout, nerr, "an answer", "", &order, why, sizeof(why)) < 0)
                order = (struct op_agent_order){0};
        joined = op_agent_order_join(&order, out, nout, err, nerr);
        op_agent_order_done(&order);
        tmp = json_object();
        if (!joined || !tmp || op_json_set_bytes(tmp, "output", joined, nout + nerr) < 0)
                return NULL;
        return json_incref(json_object_get(tmp, "output"));
}

/* One Piston stage ({stdout, stderr, output, code, signal, message, status, cpu_time, wall_time,
 * memory}) from a phase of an exec answer: the run (the answer itself) or its "compile". */
static json_t *stage(json_t *ph, const char *opd_status, size_t output_max, json_t *usage,
                     json_t *wall_ms)
{
        json_t *out = json_object_get(ph, "stdout"), *err = json_object_get(ph, "stderr");
        json_t *code = json_object_get(ph, "exit_code"), *sig = json_object_get(ph, "signal");
        _cleanup_(json_decrefp) json_t *output = NULL;
        const char *status;
        char message[128];

        if (!json_is_string(out) || !json_is_string(err))
                return NULL;
        output = phase_output(ph);
        if (!output)
                return NULL;
        status = phase_status(ph, opd_status, output_max, message, sizeof(message));
        return json_pack("{s:O, s:O, s:O, s:O, s:o, s:s?, s:s?, s:o, s:o, s:o}", "stdout", out,
                         "stderr", err, "output", output, "code",
                         json_is_integer(code) ? code : json_null(), "signal", signal_name(sig),
                         "message", message[0] ? message : NULL, "status", status, "cpu_time",
                         whole(json_object_get(usage, "cpu_time_ms")), "wall_time", whole(wall_ms),
                         "memory", whole(json_object_get(usage, "memory_peak_bytes")));
}

json_t *piston_result(json_t *answer, const char *language, const char *version, size_t output_max)
{
        json_t *usage = json_object_get(answer, "usage"),
               *comp = json_object_get(answer, "compile");
        json_t *wall = json_object_get(usage, "wall_ms");
        const char *st = json_string_value(json_object_get(answer, "status"));
        json_t *res, *run, *cstage = NULL;

        if (!wall)
                wall = json_object_get(json_object_get(answer, "timings_ms"), "guest_run");
        res = json_pack("{s:s, s:s}", "language", language, "version", version);
        if (json_is_object(comp)) {
                cstage = stage(comp, NULL, output_max, NULL, json_object_get(comp, "run_ms"));
                if (!cstage || json_object_set_new(res, "compile", cstage) < 0)
                        goto fail;
        }
        /* When compiling failed the program did not run: Piston then gives the compile stage as
         * "run" too. */
        if (cstage && st && strcmp(st, "compile_error") == 0)
                run = json_deep_copy(cstage);
        else
                run = stage(answer, st, output_max, usage, wall);
        if (!run || json_object_set_new(res, "run", run) < 0)
                goto fail;
        return res;
fail:
        json_decref(res);
        return NULL;
}

int piston_http_status(const char *code)
{
        static const struct {
                const char *code;
                int status;
        } map[] = {
            {"bad_request", 400}, {"unknown_language", 400}, {"permission_denied", 403},
            {"busy", 503},        {"pool_exhausted", 503},   {"shutting_down", 503},
            {"unavailable", 503},
        };

        for (size_t i = 0; code && i < ELEMENTSOF(map); i++)
                if (strcmp(code, map[i].code) == 0)
                        return map[i].status;
        return 500;
}
