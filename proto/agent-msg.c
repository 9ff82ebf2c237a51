/* agent-msg.c: the agent's messages to opd: decoding (every field checked against the request's
 * limits, since the guest is hostile), encoding (what op-agent sends), equality and frame caps. */
#include "agent-msg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fail.h"

static const char *const file_errors[_OP_AGENT_FILE_MAX] = {
    [OP_AGENT_FILE_OK] = "",
    [OP_AGENT_FILE_NOT_FOUND] = "not_found",
    [OP_AGENT_FILE_NOT_A_REGULAR_FILE] = "not_a_regular_file",
    [OP_AGENT_FILE_TOO_LARGE] = "too_large",
    [OP_AGENT_FILE_OUT_OF_MEMORY] = "out_of_memory",
};

const char *op_agent_file_error_name(enum op_agent_file_error e)
{
        return (unsigned)e < _OP_AGENT_FILE_MAX ? file_errors[e] : "";
}

static const char *const limits_by_names[] = {
    [OP_AGENT_LIMITS_BY_NONE] = NULL,
    [OP_AGENT_LIMITS_BY_CGROUP] = "cgroup",
    [OP_AGENT_LIMITS_BY_RLIMIT] = "rlimit",
};

/* ---- decoding helpers ---- */

static bool in_list(const char *key, const char *const *names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(key, names[i]) == 0)
                        return true;
        return false;
}

static int check_fields(json_t *obj, const char *what, const char *const *names, size_t n,
                        char *errbuf, size_t errlen)
{
        const char *key;
        json_t *v;

        json_object_foreach (obj, key, v) {
                if (!in_list(key, names, n))
                        return op_proto_fail(errbuf, errlen, "%s with an unknown field \"%.64s\"",
                                             what, key);
        }
        return 0;
}

static int check_id(json_t *obj, const char *what, char *errbuf, size_t errlen)
{
        char why[128];
        json_t *id;

        if (op_request_id(obj, &id, why, sizeof(why)) < 0)
                return op_proto_fail(errbuf, errlen, "%s whose %s", what, why);
        return 0;
}

/* a + b, or SIZE_MAX when it does not fit */
static size_t sat_add(size_t a, size_t b)
{
        return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static size_t sat_mul(size_t a, size_t b)
{
        return b && a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

static void bytes_done(struct op_agent_bytes *b)
{
        free(b->data);
        *b = (struct op_agent_bytes){0};
}

/* obj[key] (text) and obj[key "_b64"]: the bytes come from _b64 when it is there, the text is
 * then only checked for type and size. path names the field in messages ("compile.stdout"). */
static int get_bytes(json_t *obj, const char *what, const char *path, const char *key, size_t max,
                     struct op_agent_bytes *ret, char *errbuf, size_t errlen)
{
        json_t *text = json_object_get(obj, key), *b64;
        char b64key[64];
        uint8_t *raw;
        size_t n;
        int r;

        snprintf(b64key, sizeof(b64key), "%s_b64", key);
        b64 = json_object_get(obj, b64key);
        if (!text && !b64)
                return op_proto_fail(errbuf, errlen, "%s without \"%s%s\"", what, path, key);
        if (text && !json_is_string(text))
                return op_proto_fail(errbuf, errlen, "%s whose \"%s%s\" is not a string", what,
                                     path, key);
        if (b64 && !json_is_string(b64))
                return op_proto_fail(errbuf, errlen, "%s whose \"%s%s\" is not a string", what,
                                     path, b64key);
        /* Beside _b64, the text of max bytes is at most 3 x max (each invalid byte is U+FFFD). */
        if (text && json_string_length(text) > (b64 ? sat_mul(max, 3) : max))
                return op_proto_fail(
                    errbuf, errlen, "%s whose \"%s%s\" is %zu bytes, over the limit of %zu", what,
                    path, key, json_string_length(text), b64 ? sat_mul(max, 3) : max);
        if (!b64) {
                ret->data = malloc(json_string_length(text) + 1);
                if (!ret->data)
                        return -ENOMEM;
                memcpy(ret->data, json_string_value(text), json_string_length(text) + 1);
                ret->len = json_string_length(text);
                return 0;
        }
        if (json_string_length(b64) / 4 > max / 3 + 1)
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"%s%s\" decodes to more than the limit of %zu "
                                     "bytes",
                                     what, path, b64key, max);
        r = op_base64_decode(json_string_value(b64), json_string_length(b64), &raw, &n);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"%s%s\" is not base64 (RFC 4648, with padding)",
                                     what, path, b64key);
        if (n > max) {
                free(raw);
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"%s%s\" is %zu bytes, over the limit of %zu", what,
                                     path, b64key, n, max);
        }
        ret->data = (char *)raw;
        ret->len = n;
        return 0;
}

static int get_bool(json_t *obj, const char *what, const char *path, const char *key, bool required,
                    bool *ret, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(obj, key);

        if (!v && !required)
                return 0;
        if (!json_is_boolean(v))
                return op_proto_fail(errbuf, errlen, "%s whose \"%s%s\" is %s", what, path, key,
                                     v ? "not true or false" : "missing");
        *ret = json_is_true(v);
        return 0;
}

/* An integer from min to max, or null (or absent) for nullval. */
static int get_int_or_null(json_t *obj, const char *what, const char *path, const char *key,
                           int min, int max, int nullval, int *ret, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v)) {
                *ret = nullval;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"%s%s\" is not null or an integer from %d to %d",
                                     what, path, key, min, max);
        *ret = (int)json_integer_value(v);
        return 0;
}

/* A number of milliseconds: finite, from 0 to OP_AGENT_MS_MAX. */
static int get_ms(json_t *obj, const char *what, const char *path, const char *key, double *ret,
                  char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(obj, key);
        double x = json_number_value(v);

        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > OP_AGENT_MS_MAX)
                return op_proto_fail(
                    errbuf, errlen, "%s whose \"%s%s\" is %s, not a number of ms from 0 to %.0f",
                    what, path, key, v ? "out of range" : "missing", OP_AGENT_MS_MAX);
        *ret = x;
        return 0;
}

static int get_uint(json_t *obj, const char *what, const char *path, const char *key, uint64_t min,
                    uint64_t max, uint64_t *ret, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(obj, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) < min || (uint64_t)json_integer_value(v) > max)
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"%s%s\" is %s, not an integer from %llu to %llu",
                                     what, path, key, v ? "out of range" : "missing",
                                     (unsigned long long)min, (unsigned long long)max);
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

/* "true" only: the marker fields of ping, warm and prime answers. */
static int get_true(json_t *obj, const char *what, const char *key, char *errbuf, size_t errlen)
{
        if (!json_is_true(json_object_get(obj, key)))
                return op_proto_fail(errbuf, errlen, "%s without \"%s\": true", what, key);
        return 0;
}

static int get_version(json_t *v, const char *what, char ret[static OP_AGENT_VERSION_MAX + 1],
                       char *errbuf, size_t errlen)
{
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);

        if (!json_is_string(v) || n == 0 || n > OP_AGENT_VERSION_MAX)
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"agent_version\" is not a string of 1 to %d "
                                     "bytes",
                                     what, OP_AGENT_VERSION_MAX);
        for (size_t i = 0; i < n; i++)
                if (s[i] < 0x20 || s[i] > 0x7e)
                        return op_proto_fail(errbuf, errlen,
                                             "%s whose \"agent_version\" is not printable ASCII",
                                             what);
        memcpy(ret, s, n + 1);
        return 0;
}

/* ---- output order ---- */

static const char *const stream_names[] = {"", "stdout", "stderr"};

static int order_reserve(struct op_agent_order *o, size_t n)
{
        struct op_agent_segment *seg;
        size_t cap = o->cap ? o->cap : 16;

        if (n <= o->cap)
                return 0;
        while (cap < n)
                cap *= 2;
        if (cap > OP_AGENT_ORDER_MAX)
                cap = OP_AGENT_ORDER_MAX;
        seg = n <= cap ? realloc(o->seg, cap * sizeof(*seg)) : NULL;
        if (!seg) {
                op_agent_order_done(o);
                return -ENOMEM;
        }
        o->seg = seg;
        o->cap = cap;
        return 0;
}

/* len bytes of stream after what is recorded: the last segment grows when it is of the same
 * stream, else a segment is added. */
static int order_push(struct op_agent_order *o, int stream, size_t len)
{
        int r;

        if (o->n > 0 && o->seg[o->n - 1].stream == stream) {
                o->seg[o->n - 1].len += len;
                return 0;
        }
        r = order_reserve(o, o->n + 1);
        if (r < 0)
                return r;
        o->seg[o->n++] = (struct op_agent_segment){.stream = stream, .len = len};
        return 0;
}

int op_agent_order_add(struct op_agent_order *o, int stream, size_t len)
{
        if (!o->known || len == 0 || (stream != 1 && stream != 2))
                return 0;
        /* Two segments stay free for the rest of each stream: a segment that would take one of
         * them starts the partial order (a last segment of the same stream still grows). */
        if (o->partial || (o->n == OP_AGENT_ORDER_MAX - 2 && o->seg[o->n - 1].stream != stream)) {
                o->partial = true;
                o->rest[stream - 1] += len;
                return 0;
        }
        return order_push(o, stream, len);
}

int op_agent_order_end(struct op_agent_order *o)
{
        if (!o->known || !o->partial)
                return 0;
        for (int s = 1; s <= 2; s++) {
                size_t len = o->rest[s - 1];
                int r;

                o->rest[s - 1] = 0;
                if (len > 0 && (r = order_push(o, s, len)) < 0)
                        return r;
        }
        return 0;
}

void op_agent_order_done(struct op_agent_order *o)
{
        free(o->seg);
        *o = (struct op_agent_order){0};
}

int op_agent_order_check(const struct op_agent_order *o, size_t out_len, size_t err_len,
                         const char *what, const char *path, char *errbuf, size_t errlen)
{
        size_t left[2] = {out_len, err_len};

        if (!o->known)
                return 0;
        if (o->n > OP_AGENT_ORDER_MAX)
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"%soutput_order\" has %zu segments, over the "
                                     "limit of %d",
                                     what, path, o->n, OP_AGENT_ORDER_MAX);
        for (size_t i = 0; i < o->n; i++) {
                const struct op_agent_segment *g = &o->seg[i];

                if ((g->stream != 1 && g->stream != 2) || g->len == 0)
                        return op_proto_fail(errbuf, errlen,
                                             "%s whose \"%soutput_order[%zu]\" is not [1 or 2, "
                                             "a count of bytes from 1]",
                                             what, path, i);
                if (i > 0 && o->seg[i - 1].stream == g->stream)
                        return op_proto_fail(errbuf, errlen,
                                             "%s whose \"%soutput_order[%zu]\" is of the same "
                                             "stream as the segment before it",
                                             what, path, i);
                if (g->len > left[g->stream - 1])
                        return op_proto_fail(errbuf, errlen,
                                             "%s whose \"%soutput_order\" counts more bytes of "
                                             "%s than the %zu of \"%s%s\"",
                                             what, path, stream_names[g->stream],
                                             g->stream == 1 ? out_len : err_len, path,
                                             stream_names[g->stream]);
                left[g->stream - 1] -= g->len;
        }
        for (int s = 1; s <= 2; s++)
                if (left[s - 1] > 0)
                        return op_proto_fail(errbuf, errlen,
                                             "%s whose \"%soutput_order\" counts %zu bytes of "
                                             "%s, not the %zu of \"%s%s\"",
                                             what, path, (s == 1 ? out_len : err_len) - left[s - 1],
                                             stream_names[s], s == 1 ? out_len : err_len, path,
                                             stream_names[s]);
        return 0;
}

int op_agent_order_decode(json_t *obj, size_t out_len, size_t err_len, const char *what,
                          const char *path, struct op_agent_order *ret, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(obj, "output_order");
        struct op_agent_order o = {0};
        size_t n;
        int r;

        if (!v) {
                if (json_object_get(obj, "output_order_partial"))
                        return op_proto_fail(errbuf, errlen,
                                             "%s with \"%soutput_order_partial\" and no "
                                             "\"%soutput_order\"",
                                             what, path, path);
                *ret = o;
                return 0;
        }
        if (!json_is_array(v))
                return op_proto_fail(errbuf, errlen, "%s whose \"%soutput_order\" is not an array",
                                     what, path);
        n = json_array_size(v);
        if (n > OP_AGENT_ORDER_MAX)
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"%soutput_order\" has %zu segments, over the "
                                     "limit of %d",
                                     what, path, n, OP_AGENT_ORDER_MAX);
        r = get_bool(obj, what, path, "output_order_partial", false, &o.partial, errbuf, errlen);
        if (r < 0)
                return r;
        o.seg = calloc(n ? n : 1, sizeof(*o.seg));
        if (!o.seg)
                return -ENOMEM;
        o.known = true;
        o.n = o.cap = n;
        for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(v, i), *s = json_array_get(e, 0),
                       *len = json_array_get(e, 1);

                if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_integer(s) ||
                    !json_is_integer(len) || json_integer_value(len) < 1 ||
                    (uint64_t)json_integer_value(len) > (out_len > err_len ? out_len : err_len) ||
                    (json_integer_value(s) != 1 && json_integer_value(s) != 2)) {
                        op_agent_order_done(&o);
                        return op_proto_fail(errbuf, errlen,
                                             "%s whose \"%soutput_order[%zu]\" is not [1 or 2, "
                                             "a count of bytes from 1]",
                                             what, path, i);
                }
                o.seg[i] = (struct op_agent_segment){.stream = (int)json_integer_value(s),
                                                     .len = (size_t)json_integer_value(len)};
        }
        r = op_agent_order_check(&o, out_len, err_len, what, path, errbuf, errlen);
        if (r < 0) {
                op_agent_order_done(&o);
                return r;
        }
        *ret = o;
        return 0;
}

int op_agent_order_encode(json_t *obj, const struct op_agent_order *o)
{
        json_t *list;

        if (!o->known)
                return 0;
        list = json_array();
        if (!list || json_object_set_new(obj, "output_order", list) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < o->n; i++)
                if (json_array_append_new(
                        list, json_pack("[i, I]", o->seg[i].stream, (json_int_t)o->seg[i].len)) < 0)
                        return -ENOMEM;
        if (o->partial && json_object_set_new(obj, "output_order_partial", json_true()) < 0)
                return -ENOMEM;
        return 0;
}

char *op_agent_order_join(const struct op_agent_order *o, const char *out, size_t out_len,
                          const char *err, size_t err_len)
{
        size_t at[2] = {0, 0}, n = 0;
        const char *src[2] = {out, err};
        char *buf;

        if (err_len >= SIZE_MAX - out_len)
                return NULL;
        buf = malloc(out_len + err_len + 1);
        if (!buf)
                return NULL;
        if (!o || !o->known) {
                if (out_len)
                        memcpy(buf, out, out_len);
                if (err_len)
                        memcpy(buf + out_len, err, err_len);
                buf[out_len + err_len] = 0;
                return buf;
        }
        for (size_t i = 0; i < o->n; i++) {
                int s = o->seg[i].stream - 1;

                memcpy(buf + n, src[s] + at[s], o->seg[i].len);
                at[s] += o->seg[i].len;
                n += o->seg[i].len;
        }
        buf[n] = 0;
        return buf;
}

static void run_done(struct op_agent_run *r)
{
        bytes_done(&r->out);
        bytes_done(&r->err);
        op_agent_order_done(&r->order);
}

/* stdout, stderr, exit_code, signal, timed_out, truncated, run_ms of the run or "compile." */
static int decode_run(json_t *obj, const char *what, const char *path, size_t output_max,
                      bool run_ms_required, struct op_agent_run *ret, char *errbuf, size_t errlen)
{
        struct op_agent_run k = {0};
        int r;

        r = get_bytes(obj, what, path, "stdout", output_max, &k.out, errbuf, errlen);
        if (r == 0)
                r = get_bytes(obj, what, path, "stderr", output_max, &k.err, errbuf, errlen);
        if (r == 0)
                r = op_agent_order_decode(obj, k.out.len, k.err.len, what, path, &k.order, errbuf,
                                          errlen);
        if (r == 0)
                r = get_int_or_null(obj, what, path, "exit_code", 0, 255, -1, &k.exit_code, errbuf,
                                    errlen);
        if (r == 0)
                r = get_int_or_null(obj, what, path, "signal", 1, 64, 0, &k.signal, errbuf, errlen);
        if (r == 0 && k.exit_code >= 0 && k.signal)
                r = op_proto_fail(errbuf, errlen,
                                  "%s with both \"%sexit_code\" and \"%ssignal\" set", what, path,
                                  path);
        if (r == 0)
                r = get_bool(obj, what, path, "timed_out", true, &k.timed_out, errbuf, errlen);
        if (r == 0)
                r = get_bool(obj, what, path, "truncated", true, &k.truncated, errbuf, errlen);
        if (r == 0 && (run_ms_required || json_object_get(obj, "run_ms"))) {
                k.has_run_ms = true;
                r = get_ms(obj, what, path, "run_ms", &k.run_ms, errbuf, errlen);
        }
        if (r < 0) {
                run_done(&k);
                return r;
        }
        *ret = k;
        return 0;
}

static const char *const compile_fields[] = {
    "stdout",
    "stdout_b64",
    "stderr",
    "stderr_b64",
    "exit_code",
    "signal",
    "timed_out",
    "truncated",
    "run_ms",
    "output_order",
    "output_order_partial",
};

static int decode_compile(json_t *c, const struct op_agent_limits *lim, struct op_agent_exec *x,
                          char *errbuf, size_t errlen)
{
        const char *what = "an exec answer";
        int r;

        if (!c) {
                if (lim->compile)
                        return op_proto_fail(errbuf, errlen,
                                             "%s without \"compile\" (the job had a compile "
                                             "phase)",
                                             what);
                return 0;
        }
        if (!lim->compile)
                return op_proto_fail(errbuf, errlen,
                                     "%s with \"compile\" (the job had no compile phase)", what);
        if (!json_is_object(c))
                return op_proto_fail(errbuf, errlen, "%s whose \"compile\" is not an object", what);
        r = check_fields(c, "an exec answer's \"compile\"", compile_fields,
                         ELEMENTSOF(compile_fields), errbuf, errlen);
        if (r < 0)
                return r;
        r = decode_run(c, what, "compile.", lim->compile_output_max, false, &x->compile, errbuf,
                       errlen);
        if (r < 0)
                return r;
        x->has_compile = true;
        return 0;
}

static const char *const usage_fields[] = {"cpu_time_ms", "wall_ms", "memory_peak_bytes"};

static int decode_usage(json_t *u, struct op_agent_exec *x, char *errbuf, size_t errlen)
{
        const char *what = "an exec answer";
        uint64_t mem = 0;
        int r;

        if (!u)
                return 0;
        if (!json_is_object(u))
                return op_proto_fail(errbuf, errlen, "%s whose \"usage\" is not an object", what);
        r = check_fields(u, "an exec answer's \"usage\"", usage_fields, ELEMENTSOF(usage_fields),
                         errbuf, errlen);
        if (r == 0)
                r = get_ms(u, what, "usage.", "cpu_time_ms", &x->usage.cpu_time_ms, errbuf, errlen);
        if (r == 0)
                r = get_ms(u, what, "usage.", "wall_ms", &x->usage.wall_ms, errbuf, errlen);
        if (r == 0)
                r = get_uint(u, what, "usage.", "memory_peak_bytes", 0, OP_AGENT_MEMORY_MAX, &mem,
                             errbuf, errlen);
        if (r < 0)
                return r;
        x->usage.memory_peak_bytes = mem;
        x->has_usage = true;
        return 0;
}

static void files_done(struct op_agent_file *files, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(files[i].name);
                bytes_done(&files[i].content);
        }
        free(files);
}

static const char *const file_fields[] = {"name", "content", "content_b64", "error"};

static int decode_file(json_t *f, size_t i, const struct op_agent_limits *lim,
                       struct op_agent_file *ret, char *errbuf, size_t errlen)
{
        const char *what = "an exec answer", *want = lim->output_files[i];
        json_t *name = json_object_get(f, "name"), *err = json_object_get(f, "error");
        char path[32], fwhat[48];
        int r;

        snprintf(path, sizeof(path), "files[%zu].", i);
        snprintf(fwhat, sizeof(fwhat), "an exec answer's \"files[%zu]\"", i);
        if (!json_is_object(f))
                return op_proto_fail(errbuf, errlen, "%s whose \"files[%zu]\" is not an object",
                                     what, i);
        r = check_fields(f, fwhat, file_fields, ELEMENTSOF(file_fields), errbuf, errlen);
        if (r < 0)
                return r;
        if (!json_is_string(name) || strlen(json_string_value(name)) != json_string_length(name) ||
            strcmp(json_string_value(name), want) != 0)
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"files[%zu].name\" is not \"%.64s\" (the "
                                     "request's output_files[%zu])",
                                     what, i, want, i);
        if (err) {
                size_t e;

                for (e = OP_AGENT_FILE_OK + 1; json_is_string(err) && e < _OP_AGENT_FILE_MAX; e++)
                        if (strcmp(json_string_value(err), file_errors[e]) == 0)
                                break;
                if (!json_is_string(err) || e == _OP_AGENT_FILE_MAX)
                        return op_proto_fail(errbuf, errlen,
                                             "%s whose \"files[%zu].error\" is not one of "
                                             "not_found, not_a_regular_file, too_large, "
                                             "out_of_memory",
                                             what, i);
                if (json_object_get(f, "content") || json_object_get(f, "content_b64"))
                        return op_proto_fail(errbuf, errlen,
                                             "%s whose \"files[%zu]\" has both \"error\" and "
                                             "content",
                                             what, i);
                ret->error = (enum op_agent_file_error)e;
        } else {
                r = get_bytes(f, what, path, "content", lim->output_file_max, &ret->content, errbuf,
                              errlen);
                if (r < 0)
                        return r;
        }
        ret->name = strdup(want);
        if (!ret->name) {
                bytes_done(&ret->content);
                return -ENOMEM;
        }
        return 0;
}

static int decode_files(json_t *v, const struct op_agent_limits *lim, struct op_agent_exec *x,
                        char *errbuf, size_t errlen)
{
        const char *what = "an exec answer";
        struct op_agent_file *files;
        size_t n = 0;
        int r = 0;

        if (!v) {
                /* After a compile error the program did not run: there are no files. */
                if (lim->output_files && !(x->has_status && x->status == OP_STATUS_COMPILE_ERROR))
                        return op_proto_fail(errbuf, errlen,
                                             "%s without \"files\" (the request has output_files)",
                                             what);
                return 0;
        }
        if (!lim->output_files)
                return op_proto_fail(errbuf, errlen,
                                     "%s with \"files\" (the request has no output_files)", what);
        if (!json_is_array(v))
                return op_proto_fail(errbuf, errlen, "%s whose \"files\" is not an array", what);
        if (json_array_size(v) != lim->n_output_files || json_array_size(v) > OP_AGENT_FILES_MAX)
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"files\" has %zu entries, not the %zu of the "
                                     "request's output_files",
                                     what, json_array_size(v), lim->n_output_files);
        files = calloc(lim->n_output_files + 1, sizeof(*files));
        if (!files)
                return -ENOMEM;
        for (; n < lim->n_output_files && r == 0; n++)
                r = decode_file(json_array_get(v, n), n, lim, &files[n], errbuf, errlen);
        if (r < 0) {
                files_done(files, n);
                return r;
        }
        x->files = files;
        x->n_files = n;
        x->has_files = true;
        return 0;
}

static void exec_done(struct op_agent_exec *x)
{
        run_done(&x->run);
        run_done(&x->compile);
        files_done(x->files, x->n_files);
        *x = (struct op_agent_exec){0};
}

static const char *const exec_fields[] = {
    "id",         "ok",        "stdout", "stdout_b64",   "stderr",
    "stderr_b64", "exit_code", "signal", "timed_out",    "truncated",
    "run_ms",     "warm_used", "status", "usage",        "limits_by",
    "streamed",   "compile",   "files",  "output_order", "output_order_partial",
    "repl_ended", "agent_ms",
};

static int decode_exec(json_t *obj, const struct op_agent_limits *lim, struct op_agent_exec *ret,
                       char *errbuf, size_t errlen)
{
        const char *what = "an exec answer";
        struct op_agent_exec x = {0};
        json_t *status = json_object_get(obj, "status"), *by = json_object_get(obj, "limits_by");
        int r;

        r = check_fields(obj, what, exec_fields, ELEMENTSOF(exec_fields), errbuf, errlen);
        if (r == 0)
                r = decode_run(obj, what, "", lim->output_max, true, &x.run, errbuf, errlen);
        if (r == 0)
                r = get_bool(obj, what, "", "warm_used", false, &x.warm_used, errbuf, errlen);
        if (r == 0 && status) {
                if (!json_is_string(status) ||
                    op_status_from_name(json_string_value(status), &x.status) < 0)
                        r = op_proto_fail(errbuf, errlen, "%s whose \"status\" is not a status",
                                          what);
                x.has_status = true;
        }
        if (r == 0 && by) {
                if (json_is_string(by) && strcmp(json_string_value(by), "cgroup") == 0)
                        x.limits_by = OP_AGENT_LIMITS_BY_CGROUP;
                else if (json_is_string(by) && strcmp(json_string_value(by), "rlimit") == 0)
                        x.limits_by = OP_AGENT_LIMITS_BY_RLIMIT;
                else
                        r = op_proto_fail(errbuf, errlen,
                                          "%s whose \"limits_by\" is not \"cgroup\" or \"rlimit\"",
                                          what);
        }
        if (r == 0)
                r = get_bool(obj, what, "", "streamed", false, &x.streamed, errbuf, errlen);
        if (r == 0)
                r = get_bool(obj, what, "", "repl_ended", false, &x.repl_ended, errbuf, errlen);
        if (r == 0 && json_object_get(obj, "agent_ms")) {
                x.has_agent_ms = true;
                r = lim->timing
                        ? get_ms(obj, what, "", "agent_ms", &x.agent_ms, errbuf, errlen)
                        : op_proto_fail(errbuf, errlen,
                                        "%s with \"agent_ms\" (the job did not ask for it)", what);
        }
        if (r == 0 && x.streamed && !lim->stream)
                r = op_proto_fail(errbuf, errlen,
                                  "%s with \"streamed\": true (the request did not stream)", what);
        if (r == 0)
                r = decode_usage(json_object_get(obj, "usage"), &x, errbuf, errlen);
        if (r == 0)
                r = decode_compile(json_object_get(obj, "compile"), lim, &x, errbuf, errlen);
        if (r == 0 && x.has_status && x.status == OP_STATUS_COMPILE_ERROR && !x.has_compile)
                r = op_proto_fail(errbuf, errlen,
                                  "%s with \"status\": \"compile_error\" and no compile phase",
                                  what);
        if (r == 0)
                r = decode_files(json_object_get(obj, "files"), lim, &x, errbuf, errlen);
        if (r < 0) {
                exec_done(&x);
                return r;
        }
        *ret = x;
        return 0;
}

static const char *const error_fields[] = {"id", "ok", "error"};
static const char *const error_obj_fields[] = {"code", "message"};

static int decode_error(json_t *obj, struct op_agent_error *ret, char *errbuf, size_t errlen)
{
        const char *what = "an error answer";
        json_t *e = json_object_get(obj, "error"), *code, *msg;
        int c;
        int r;

        r = check_fields(obj, what, error_fields, ELEMENTSOF(error_fields), errbuf, errlen);
        if (r < 0)
                return r;
        if (!json_is_object(e))
                return op_proto_fail(errbuf, errlen, "%s whose \"error\" is %s", what,
                                     e ? "not an object" : "missing");
        r = check_fields(e, "an error answer's \"error\"", error_obj_fields,
                         ELEMENTSOF(error_obj_fields), errbuf, errlen);
        if (r < 0)
                return r;
        code = json_object_get(e, "code");
        msg = json_object_get(e, "message");
        for (c = 0; json_is_string(code) && c < _OP_ERR_MAX; c++)
                if (strcmp(json_string_value(code), op_err_name((enum op_err)c)) == 0)
                        break;
        if (!json_is_string(code) || c == _OP_ERR_MAX)
                return op_proto_fail(errbuf, errlen, "%s whose \"error.code\" is not an error code",
                                     what);
        if (!json_is_string(msg) || json_string_length(msg) > OP_AGENT_MESSAGE_MAX ||
            strlen(json_string_value(msg)) != json_string_length(msg))
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"error.message\" is not a string of at most %d "
                                     "bytes without NUL",
                                     what, OP_AGENT_MESSAGE_MAX);
        ret->message = strdup(json_string_value(msg));
        if (!ret->message)
                return -ENOMEM;
        ret->code = (enum op_err)c;
        return 0;
}

static const char *const ping_fields[] = {"id", "ok", "pong", "agent_version"};
static const char *const warm_fields[] = {"id", "ok", "warm", "pid"};
static const char *const prime_fields[] = {"id", "ok", "primed", "run_ms"};

int op_agent_answer_decode(json_t *obj, const struct op_agent_limits *lim,
                           struct op_agent_answer *ret, char *errbuf, size_t errlen)
{
        struct op_agent_answer a = {.op = lim->op};
        const char *what = lim->op == OP_AGENT_OP_EXEC   ? "an exec answer"
                           : lim->op == OP_AGENT_OP_PING ? "a ping answer"
                           : lim->op == OP_AGENT_OP_WARM ? "a warm answer"
                                                         : "a prime answer";
        json_t *ok = json_object_get(obj, "ok");
        uint64_t pid = 0;
        int r;

        if (!json_is_object(obj))
                return op_proto_fail(errbuf, errlen, "an answer that is not an object");
        if (!json_is_boolean(ok))
                return op_proto_fail(errbuf, errlen, "%s whose \"ok\" is %s", what,
                                     ok ? "not true or false" : "missing");
        r = check_id(obj, what, errbuf, errlen);
        if (r < 0)
                return r;
        a.ok = json_is_true(ok);
        if (!a.ok) {
                r = decode_error(obj, &a.error, errbuf, errlen);
                if (r < 0)
                        return r;
                *ret = a;
                return 0;
        }
        switch (lim->op) {
        case OP_AGENT_OP_EXEC:
                r = decode_exec(obj, lim, &a.exec, errbuf, errlen);
                break;
        case OP_AGENT_OP_PING:
                r = check_fields(obj, what, ping_fields, ELEMENTSOF(ping_fields), errbuf, errlen);
                if (r == 0)
                        r = get_true(obj, what, "pong", errbuf, errlen);
                if (r == 0)
                        r = get_version(json_object_get(obj, "agent_version"), what,
                                        a.agent_version, errbuf, errlen);
                break;
        case OP_AGENT_OP_WARM:
                r = check_fields(obj, what, warm_fields, ELEMENTSOF(warm_fields), errbuf, errlen);
                if (r == 0)
                        r = get_true(obj, what, "warm", errbuf, errlen);
                if (r == 0)
                        r = get_uint(obj, what, "", "pid", 1, OP_AGENT_PID_MAX, &pid, errbuf,
                                     errlen);
                a.pid = (int64_t)pid;
                break;
        case OP_AGENT_OP_PRIME:
                r = check_fields(obj, what, prime_fields, ELEMENTSOF(prime_fields), errbuf, errlen);
                if (r == 0)
                        r = get_true(obj, what, "primed", errbuf, errlen);
                if (r == 0)
                        r = get_ms(obj, what, "", "run_ms", &a.run_ms, errbuf, errlen);
                break;
        default:
                r = op_proto_fail(errbuf, errlen, "an answer to an unknown operation");
        }
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

static const char *const ready_fields[] = {"event", "agent_version"};

int op_agent_ready_decode(json_t *obj, struct op_agent_ready *ret, char *errbuf, size_t errlen)
{
        const char *what = "a ready event";
        struct op_agent_ready k;
        int r;

        if (!json_is_object(obj))
                return op_proto_fail(errbuf, errlen, "%s that is not an object", what);
        r = check_fields(obj, what, ready_fields, ELEMENTSOF(ready_fields), errbuf, errlen);
        if (r < 0)
                return r;
        if (!json_is_string(json_object_get(obj, "event")) ||
            strcmp(json_string_value(json_object_get(obj, "event")), "ready") != 0)
                return op_proto_fail(errbuf, errlen, "%s whose \"event\" is not \"ready\"", what);
        r = get_version(json_object_get(obj, "agent_version"), what, k.agent_version, errbuf,
                        errlen);
        if (r < 0)
                return r;
        *ret = k;
        return 0;
}

static const char *const output_fields[] = {"id", "event", "data", "data_b64"};

int op_agent_output_decode(json_t *obj, const struct op_agent_limits *lim,
                           struct op_agent_output *ret, char *errbuf, size_t errlen)
{
        const char *what = "an output event", *ev;
        struct op_agent_output o = {0};
        int r;

        if (!json_is_object(obj))
                return op_proto_fail(errbuf, errlen, "%s that is not an object", what);
        r = check_fields(obj, what, output_fields, ELEMENTSOF(output_fields), errbuf, errlen);
        if (r == 0)
                r = check_id(obj, what, errbuf, errlen);
        if (r < 0)
                return r;
        ev = json_string_value(json_object_get(obj, "event"));
        if (ev && strcmp(ev, "stdout") == 0)
                o.stream = 1;
        else if (ev && strcmp(ev, "stderr") == 0)
                o.stream = 2;
        else
                return op_proto_fail(errbuf, errlen,
                                     "%s whose \"event\" is not \"stdout\" or \"stderr\"", what);
        if (lim->op != OP_AGENT_OP_EXEC || !lim->stream)
                return op_proto_fail(errbuf, errlen, "%s (the request did not ask to stream)",
                                     what);
        r = get_bytes(obj, what, "", "data", lim->output_max, &o.data, errbuf, errlen);
        if (r < 0)
                return r;
        /* The agent sends only what it read: an empty event would be a free one. */
        if (o.data.len == 0) {
                op_agent_output_done(&o);
                return op_proto_fail(errbuf, errlen, "%s with no bytes of \"data\"", what);
        }
        *ret = o;
        return 0;
}

int op_agent_msg_decode(json_t *obj, const struct op_agent_limits *lim, struct op_agent_msg *ret,
                        char *errbuf, size_t errlen)
{
        json_t *ev = json_object_get(obj, "event");
        struct op_agent_msg m = {0};
        int r;

        if (!json_is_object(obj))
                return op_proto_fail(errbuf, errlen, "a message that is not an object");
        if (ev && !json_is_string(ev))
                return op_proto_fail(errbuf, errlen, "an event whose \"event\" is not a string");
        if (!ev) {
                m.kind = OP_AGENT_MSG_ANSWER;
                r = op_agent_answer_decode(obj, lim, &m.answer, errbuf, errlen);
        } else if (strcmp(json_string_value(ev), "ready") == 0) {
                m.kind = OP_AGENT_MSG_READY;
                r = op_agent_ready_decode(obj, &m.ready, errbuf, errlen);
        } else {
                m.kind = OP_AGENT_MSG_OUTPUT;
                r = op_agent_output_decode(obj, lim, &m.output, errbuf, errlen);
        }
        if (r < 0)
                return r;
        *ret = m;
        return 0;
}

int op_agent_msg_parse(const void *payload, size_t len, const struct op_agent_limits *lim,
                       struct op_agent_msg *ret, char *errbuf, size_t errlen)
{
        _cleanup_(json_decrefp) json_t *obj = NULL;
        int r;

        r = op_parse_object_max(payload, len, OP_AGENT_VALUES_MAX, &obj, errbuf, errlen);
        if (r < 0)
                return op_proto_fail(errbuf, errlen, "a frame that is not one JSON object");
        return op_agent_msg_decode(obj, lim, ret, errbuf, errlen);
}

void op_agent_output_done(struct op_agent_output *o)
{
        bytes_done(&o->data);
        *o = (struct op_agent_output){0};
}

void op_agent_answer_done(struct op_agent_answer *a)
{
        exec_done(&a->exec);
        free(a->error.message);
        *a = (struct op_agent_answer){0};
}

void op_agent_msg_done(struct op_agent_msg *m)
{
        op_agent_output_done(&m->output);
        op_agent_answer_done(&m->answer);
        *m = (struct op_agent_msg){0};
}

/* ---- encoding ---- */

static int set_new(json_t *obj, const char *key, json_t *v)
{
        return v && json_object_set_new(obj, key, v) == 0 ? 0 : -ENOMEM;
}

static int set_bytes(json_t *obj, const char *key, const struct op_agent_bytes *b)
{
        return op_json_set_bytes(obj, key, b->data ? b->data : "", b->data ? b->len : 0);
}

static int encode_run(json_t *o, const struct op_agent_run *run)
{
        if (set_bytes(o, "stdout", &run->out) < 0 || set_bytes(o, "stderr", &run->err) < 0 ||
            set_new(o, "exit_code",
                    run->exit_code >= 0 ? json_integer(run->exit_code) : json_null()) < 0 ||
            set_new(o, "signal", run->signal ? json_integer(run->signal) : json_null()) < 0 ||
            set_new(o, "timed_out", json_boolean(run->timed_out)) < 0 ||
            set_new(o, "truncated", json_boolean(run->truncated)) < 0 ||
            op_agent_order_encode(o, &run->order) < 0)
                return -ENOMEM;
        if (run->has_run_ms && set_new(o, "run_ms", json_real(run->run_ms)) < 0)
                return -ENOMEM;
        return 0;
}

static int encode_exec(json_t *o, const struct op_agent_exec *x)
{
        json_t *files, *c;

        if (encode_run(o, &x->run) < 0 || set_new(o, "warm_used", json_boolean(x->warm_used)) < 0)
                return -ENOMEM;
        if (x->repl_ended && set_new(o, "repl_ended", json_true()) < 0)
                return -ENOMEM;
        if (x->has_compile) {
                c = json_object();
                if (set_new(o, "compile", c) < 0 || encode_run(c, &x->compile) < 0)
                        return -ENOMEM;
        }
        if (x->has_status && set_new(o, "status", json_string(op_status_name(x->status))) < 0)
                return -ENOMEM;
        if (x->has_usage &&
            set_new(o, "usage",
                    json_pack("{s:f, s:f, s:I}", "cpu_time_ms", x->usage.cpu_time_ms, "wall_ms",
                              x->usage.wall_ms, "memory_peak_bytes",
                              (json_int_t)x->usage.memory_peak_bytes)) < 0)
                return -ENOMEM;
        if (x->limits_by != OP_AGENT_LIMITS_BY_NONE &&
            set_new(o, "limits_by", json_string(limits_by_names[x->limits_by])) < 0)
                return -ENOMEM;
        if (x->streamed && set_new(o, "streamed", json_true()) < 0)
                return -ENOMEM;
        if (x->has_agent_ms && set_new(o, "agent_ms", json_real(x->agent_ms)) < 0)
                return -ENOMEM;
        if (!x->has_files)
                return 0;
        files = json_array();
        if (set_new(o, "files", files) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < x->n_files; i++) {
                const struct op_agent_file *f = &x->files[i];
                json_t *e = json_pack("{s:s}", "name", f->name);

                if (!e || json_array_append_new(files, e) < 0)
                        return -ENOMEM;
                if (f->error != OP_AGENT_FILE_OK
                        ? set_new(e, "error", json_string(op_agent_file_error_name(f->error))) < 0
                        : set_bytes(e, "content", &f->content) < 0)
                        return -ENOMEM;
        }
        return 0;
}

json_t *op_agent_answer_encode(json_t *id, const struct op_agent_answer *a)
{
        _cleanup_(json_decrefp) json_t *o = NULL;
        int r = 0;

        if (!a->ok)
                return json_pack("{s:O?, s:b, s:{s:s, s:s}}", "id", id, "ok", 0, "error", "code",
                                 op_err_name(a->error.code), "message",
                                 a->error.message ? a->error.message : "");
        o = json_pack("{s:O?, s:b}", "id", id, "ok", 1);
        if (!o)
                return NULL;
        switch (a->op) {
        case OP_AGENT_OP_EXEC:
                r = encode_exec(o, &a->exec);
                break;
        case OP_AGENT_OP_PING:
                r = set_new(o, "pong", json_true()) < 0 ||
                            set_new(o, "agent_version", json_string(a->agent_version)) < 0
                        ? -ENOMEM
                        : 0;
                break;
        case OP_AGENT_OP_WARM:
                r = set_new(o, "warm", json_true()) < 0 ||
                            set_new(o, "pid", json_integer((json_int_t)a->pid)) < 0
                        ? -ENOMEM
                        : 0;
                break;
        case OP_AGENT_OP_PRIME:
                r = set_new(o, "primed", json_true()) < 0 ||
                            set_new(o, "run_ms", json_real(a->run_ms)) < 0
                        ? -ENOMEM
                        : 0;
                break;
        }
        return r < 0 ? NULL : TAKE_PTR(o);
}

json_t *op_agent_ready_encode(const struct op_agent_ready *r)
{
        return json_pack("{s:s, s:s}", "event", "ready", "agent_version", r->agent_version);
}

json_t *op_agent_output_encode(json_t *id, const struct op_agent_output *o)
{
        _cleanup_(json_decrefp) json_t *ev =
            json_pack("{s:O?, s:s}", "id", id, "event", o->stream == 2 ? "stderr" : "stdout");

        if (!ev || set_bytes(ev, "data", &o->data) < 0)
                return NULL;
        return TAKE_PTR(ev);
}

/* ---- equality ---- */

static bool bytes_equal(const struct op_agent_bytes *a, const struct op_agent_bytes *b)
{
        return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static bool order_equal(const struct op_agent_order *a, const struct op_agent_order *b)
{
        if (a->known != b->known || (a->known && (a->partial != b->partial || a->n != b->n)))
                return false;
        for (size_t i = 0; a->known && i < a->n; i++)
                if (a->seg[i].stream != b->seg[i].stream || a->seg[i].len != b->seg[i].len)
                        return false;
        return true;
}

static bool run_equal(const struct op_agent_run *a, const struct op_agent_run *b)
{
        return order_equal(&a->order, &b->order) && bytes_equal(&a->out, &b->out) &&
               bytes_equal(&a->err, &b->err) && a->exit_code == b->exit_code &&
               a->signal == b->signal && a->timed_out == b->timed_out &&
               a->truncated == b->truncated && a->has_run_ms == b->has_run_ms &&
               (!a->has_run_ms || a->run_ms == b->run_ms);
}

static bool exec_equal(const struct op_agent_exec *a, const struct op_agent_exec *b)
{
        if (!run_equal(&a->run, &b->run) || a->warm_used != b->warm_used ||
            a->has_status != b->has_status || (a->has_status && a->status != b->status) ||
            a->has_usage != b->has_usage || a->limits_by != b->limits_by ||
            a->streamed != b->streamed || a->repl_ended != b->repl_ended ||
            a->has_agent_ms != b->has_agent_ms || (a->has_agent_ms && a->agent_ms != b->agent_ms) ||
            a->has_compile != b->has_compile || a->has_files != b->has_files ||
            a->n_files != b->n_files)
                return false;
        if (a->has_usage &&
            (a->usage.cpu_time_ms != b->usage.cpu_time_ms || a->usage.wall_ms != b->usage.wall_ms ||
             a->usage.memory_peak_bytes != b->usage.memory_peak_bytes))
                return false;
        if (a->has_compile && !run_equal(&a->compile, &b->compile))
                return false;
        for (size_t i = 0; i < a->n_files; i++)
                if (strcmp(a->files[i].name, b->files[i].name) != 0 ||
                    a->files[i].error != b->files[i].error ||
                    !bytes_equal(&a->files[i].content, &b->files[i].content))
                        return false;
        return true;
}

int op_agent_answer_stamp(json_t *answer, double agent_ms)
{
        if (!json_is_true(json_object_get(answer, "ok")))
                return 0;
        return set_new(answer, "agent_ms", json_real(agent_ms));
}

bool op_agent_answer_equal(const struct op_agent_answer *a, const struct op_agent_answer *b)
{
        if (a->op != b->op || a->ok != b->ok)
                return false;
        if (!a->ok)
                return a->error.code == b->error.code &&
                       strcmp(a->error.message ?: "", b->error.message ?: "") == 0;
        switch (a->op) {
        case OP_AGENT_OP_EXEC:
                return exec_equal(&a->exec, &b->exec);
        case OP_AGENT_OP_PING:
                return strcmp(a->agent_version, b->agent_version) == 0;
        case OP_AGENT_OP_WARM:
                return a->pid == b->pid;
        case OP_AGENT_OP_PRIME:
                return a->run_ms == b->run_ms;
        }
        return false;
}

bool op_agent_output_equal(const struct op_agent_output *a, const struct op_agent_output *b)
{
        return a->stream == b->stream && bytes_equal(&a->data, &b->data);
}

/* ---- frame caps ---- */

/* One byte string of at most max bytes on the wire: its text (each byte at most 6 characters,
 * "\u00XX"), its base64, the two keys. */
static size_t bytes_wire_max(size_t max)
{
        return sat_add(sat_add(sat_mul(max, 6), sat_mul(max / 3 + 1, 4)), 64);
}

/* An output order of OP_AGENT_ORDER_MAX segments ("[2,N]," with N of up to 20 digits), the
 * keys and the partial flag. */
#define ORDER_WIRE_MAX (OP_AGENT_ORDER_MAX * 26u + 64u)

size_t op_agent_frame_max(const struct op_agent_limits *lim)
{
        size_t n = OP_AGENT_FRAME_SLACK;

        if (lim->op != OP_AGENT_OP_EXEC)
                return OP_AGENT_FRAME_SMALL;
        n = sat_add(n, sat_add(sat_mul(bytes_wire_max(lim->output_max), 2), ORDER_WIRE_MAX));
        if (lim->compile)
                n = sat_add(n, sat_add(sat_mul(bytes_wire_max(lim->compile_output_max), 2),
                                       ORDER_WIRE_MAX));
        for (size_t i = 0; lim->output_files && i < lim->n_output_files; i++)
                n = sat_add(n, sat_add(bytes_wire_max(lim->output_file_max),
                                       sat_add(sat_mul(strlen(lim->output_files[i]), 6), 64)));
        return n < OP_FRAME_MAX_CEILING ? n : OP_FRAME_MAX_CEILING;
}

/* The next dot-separated number of *s, or -1 when *s is not one (or over a million). */
static long version_part(const char **s)
{
        long n = 0;

        if (**s < '0' || **s > '9')
                return -1;
        for (; **s >= '0' && **s <= '9'; (*s)++)
                if ((n = n * 10 + (**s - '0')) > 1000000)
                        return -1;
        if (**s == '.' && (*s)[1] >= '0' && (*s)[1] <= '9')
                (*s)++;
        else if (**s)
                return -1;
        return n;
}

static bool version_valid(const char *s)
{
        if (!s || !*s)
                return false;
        while (*s)
                if (version_part(&s) < 0)
                        return false;
        return true;
}

bool op_agent_version_at_least(const char *version, const char *min)
{
        const char *v = version, *m = min;

        /* all of it first: a difference in an early number must not hide a bad later one */
        if (!version_valid(v) || !version_valid(m))
                return false;
        while (*v || *m) {
                long a = *v ? version_part(&v) : 0, b = *m ? version_part(&m) : 0;

                if (a < 0 || b < 0)
                        return false;
                if (a != b)
                        return a > b;
        }
        return true;
}
