/* msg.c: decoding and validation of v1 requests, encoding of answers and byte strings.
 * Every field is checked for type and bound here, once, so nothing behind it has to. */
#include "msg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fail.h"

static const char *const err_names[_OP_ERR_MAX] = {
    [OP_ERR_BAD_REQUEST] = "bad_request",       [OP_ERR_FRAME_TOO_LARGE] = "frame_too_large",
    [OP_ERR_UNKNOWN_OP] = "unknown_op",         [OP_ERR_UNKNOWN_LANGUAGE] = "unknown_language",
    [OP_ERR_POOL_EXHAUSTED] = "pool_exhausted", [OP_ERR_TIMEOUT] = "timeout",
    [OP_ERR_VM_FAILED] = "vm_failed",           [OP_ERR_BUSY] = "busy",
    [OP_ERR_SHUTTING_DOWN] = "shutting_down",   [OP_ERR_PERMISSION_DENIED] = "permission_denied",
    [OP_ERR_INTERNAL] = "internal_error",       [OP_ERR_UNAVAILABLE] = "unavailable",
    [OP_ERR_NOT_FOUND] = "not_found",           [OP_ERR_QUOTA_EXCEEDED] = "quota_exceeded",
};

const char *op_err_name(enum op_err e)
{
        if ((unsigned)e >= _OP_ERR_MAX)
                return "internal_error";
        return err_names[e];
}

int op_proto_fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (errbuf && errlen) {
                va_start(ap, fmt);
                vsnprintf(errbuf, errlen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

size_t op_json_values_bound(const char *payload, size_t len)
{
        size_t n = 1;
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                char ch = payload[i];

                if (in_string) {
                        if (ch == '\\')
                                i++;
                        else if (ch == '"')
                                in_string = false;
                        continue;
                }
                if (ch == '"')
                        in_string = true;
                else if (ch == '[' || ch == '{' || ch == ',' || ch == ':')
                        n++;
        }
        return n;
}

size_t op_limits_values_max(const struct op_limits *lim)
{
        /* one exec: its fixed fields and nested objects, args, env pairs, files (an object of up
         * to 3 keys each), output file names */
        size_t one =
            128 + lim->args_max + 2 * lim->env_max + 8 * lim->files_max + lim->output_files_max;

        return one * ((lim->batch_max > lim->cases_max ? lim->batch_max : lim->cases_max) + 1);
}

int op_parse_object(const char *payload, size_t len, json_t **ret_obj, char *errbuf, size_t errlen)
{
        return op_parse_object_max(payload, len, SIZE_MAX, ret_obj, errbuf, errlen);
}

int op_parse_object_max(const char *payload, size_t len, size_t values_max, json_t **ret_obj,
                        char *errbuf, size_t errlen)
{
        json_error_t jerr;
        json_t *obj;

        if (len == 0) {
                op_proto_fail(errbuf, errlen, "empty frame: a frame carries one JSON object");
                return -EBADMSG;
        }
        if (!op_utf8_valid(payload, len)) {
                op_proto_fail(errbuf, errlen, "frame is not valid UTF-8");
                return -EBADMSG;
        }
        if (values_max != SIZE_MAX && op_json_values_bound(payload, len) > values_max) {
                op_proto_fail(errbuf, errlen, "frame holds more than %zu JSON values", values_max);
                return -EBADMSG;
        }
        obj = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!obj) {
                op_proto_fail(errbuf, errlen, "invalid JSON at byte %d: %s", jerr.position,
                              jerr.text);
                return -EBADMSG;
        }
        if (!json_is_object(obj)) {
                json_decref(obj);
                op_proto_fail(errbuf, errlen, "frame must hold a JSON object");
                return -EBADMSG;
        }
        *ret_obj = obj;
        return 0;
}

int op_request_id(json_t *req, json_t **ret_id, char *errbuf, size_t errlen)
{
        json_t *id = json_object_get(req, "id");

        if (!id || json_is_null(id)) {
                *ret_id = NULL;
                return 0;
        }
        if (json_is_string(id)) {
                if (json_string_length(id) > 256)
                        return op_proto_fail(errbuf, errlen, "\"id\" longer than 256 bytes");
        } else if (!json_is_integer(id))
                return op_proto_fail(errbuf, errlen, "\"id\" must be a string or an integer");
        *ret_id = id;
        return 0;
}

int op_file_name_valid(const char *name, size_t len)
{
        if (len == 0 || len > OP_FILE_NAME_MAX || strlen(name) != len)
                return 0;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return 0;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)name[i];
                if (c == '/' || c < 0x20 || c == 0x7f)
                        return 0;
        }
        return 1;
}

static int get_string(json_t *req, const char *key, bool required, size_t max, const char **ret,
                      size_t *ret_len, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, key);

        if (!v) {
                if (required)
                        return op_proto_fail(errbuf, errlen, "missing \"%s\"", key);
                return 0;
        }
        if (!json_is_string(v))
                return op_proto_fail(errbuf, errlen, "\"%s\" must be a string", key);
        if (json_string_length(v) > max)
                return op_proto_fail(errbuf, errlen, "\"%s\" is %zu bytes, over the limit of %zu",
                                     key, json_string_length(v), max);
        *ret = json_string_value(v);
        if (ret_len)
                *ret_len = json_string_length(v);
        return 0;
}

static int decode_args(json_t *v, const struct op_limits *lim, struct op_exec *e, char *errbuf,
                       size_t errlen)
{
        size_t i;
        json_t *a;

        if (!json_is_array(v))
                return op_proto_fail(errbuf, errlen, "\"args\" must be an array of strings");
        if (json_array_size(v) > lim->args_max)
                return op_proto_fail(errbuf, errlen,
                                     "\"args\" has %zu entries, over the limit of %zu",
                                     json_array_size(v), lim->args_max);
        e->args = calloc(json_array_size(v) + 1, sizeof(char *));
        if (!e->args)
                return -ENOMEM;
        json_array_foreach (v, i, a) {
                if (!json_is_string(a))
                        return op_proto_fail(errbuf, errlen, "\"args[%zu]\" must be a string", i);
                if (json_string_length(a) > lim->arg_len_max ||
                    strlen(json_string_value(a)) != json_string_length(a))
                        return op_proto_fail(errbuf, errlen,
                                             "\"args[%zu]\" is too long or holds NUL", i);
                e->args[e->n_args++] = json_string_value(a);
        }
        return 0;
}

static int env_name_valid(const char *k)
{
        if (!*k || (*k >= '0' && *k <= '9'))
                return 0;
        for (; *k; k++)
                if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') ||
                      (*k >= '0' && *k <= '9') || *k == '_'))
                        return 0;
        return 1;
}

static int decode_env(json_t *v, const struct op_limits *lim, struct op_exec *e, char *errbuf,
                      size_t errlen)
{
        const char *k;
        json_t *val;

        if (!json_is_object(v))
                return op_proto_fail(errbuf, errlen, "\"env\" must be an object of strings");
        if (json_object_size(v) > lim->env_max)
                return op_proto_fail(errbuf, errlen,
                                     "\"env\" has %zu entries, over the limit of %zu",
                                     json_object_size(v), lim->env_max);
        e->env = calloc(json_object_size(v) + 1, sizeof(char *));
        if (!e->env)
                return -ENOMEM;
        json_object_foreach (v, k, val) {
                size_t n;
                char *s;

                if (!env_name_valid(k))
                        return op_proto_fail(errbuf, errlen,
                                             "\"env\" name \"%.64s\" is not [A-Za-z_][A-Za-z0-9_]*",
                                             k);
                if (!json_is_string(val) ||
                    strlen(json_string_value(val)) != json_string_length(val))
                        return op_proto_fail(errbuf, errlen,
                                             "\"env.%.64s\" must be a string without NUL", k);
                n = strlen(k) + 1 + json_string_length(val);
                if (n > lim->env_len_max)
                        return op_proto_fail(errbuf, errlen, "\"env.%.64s\" is over %zu bytes", k,
                                             lim->env_len_max);
                s = malloc(n + 1);
                if (!s)
                        return -ENOMEM;
                snprintf(s, n + 1, "%s=%s", k, json_string_value(val));
                e->env[e->n_env++] = s;
        }
        return 0;
}

/* files[i].content with its "encoding": "utf8" (the default) or "base64" (decoded, owned). */
static int decode_file_content(json_t *f, size_t i, const struct op_limits *lim,
                               struct op_file *ret, char *errbuf, size_t errlen)
{
        json_t *content = json_object_get(f, "content"), *enc = json_object_get(f, "encoding");
        const char *s = json_string_value(content);
        size_t len = json_string_length(content);
        uint8_t *raw;
        size_t n;

        if (enc && (!json_is_string(enc) || (strcmp(json_string_value(enc), "utf8") != 0 &&
                                             strcmp(json_string_value(enc), "base64") != 0)))
                return op_proto_fail(errbuf, errlen,
                                     "\"files[%zu].encoding\" must be \"utf8\" or \"base64\"", i);
        if (!enc || strcmp(json_string_value(enc), "utf8") == 0) {
                if (len > lim->file_size_max)
                        return op_proto_fail(
                            errbuf, errlen, "\"files[%zu].content\" is over the limit of %zu bytes",
                            i, lim->file_size_max);
                *ret = (struct op_file){.content = s, .content_len = len};
                return 0;
        }
        if (len / 4 * 3 > lim->file_size_max + 2)
                return op_proto_fail(errbuf, errlen,
                                     "\"files[%zu].content\" is over the limit of %zu bytes", i,
                                     lim->file_size_max);
        if (op_base64_decode(s, len, &raw, &n) < 0)
                return op_proto_fail(
                    errbuf, errlen, "\"files[%zu].content\" is not base64 (RFC 4648, with padding)",
                    i);
        if (n > lim->file_size_max) {
                free(raw);
                return op_proto_fail(errbuf, errlen,
                                     "\"files[%zu].content\" is over the limit of %zu bytes", i,
                                     lim->file_size_max);
        }
        *ret = (struct op_file){.content = (char *)raw, .content_len = n, .base64 = true};
        return 0;
}

static int decode_files(json_t *v, const struct op_limits *lim, struct op_exec *e, char *errbuf,
                        size_t errlen)
{
        size_t i;
        json_t *f;
        int r;

        if (!json_is_array(v))
                return op_proto_fail(errbuf, errlen, "\"files\" must be an array of objects");
        if (json_array_size(v) > lim->files_max)
                return op_proto_fail(errbuf, errlen,
                                     "\"files\" has %zu entries, over the limit of %zu",
                                     json_array_size(v), lim->files_max);
        e->files = calloc(json_array_size(v) + 1, sizeof(struct op_file));
        if (!e->files)
                return -ENOMEM;
        json_array_foreach (v, i, f) {
                json_t *name, *content;
                const char *key;
                json_t *x;

                if (!json_is_object(f))
                        return op_proto_fail(errbuf, errlen, "\"files[%zu]\" must be an object", i);
                json_object_foreach (f, key, x) {
                        if (strcmp(key, "name") != 0 && strcmp(key, "content") != 0 &&
                            strcmp(key, "encoding") != 0)
                                return op_proto_fail(errbuf, errlen,
                                                     "\"files[%zu]\": unknown field \"%.64s\"", i,
                                                     key);
                }
                name = json_object_get(f, "name");
                content = json_object_get(f, "content");
                if (!json_is_string(name) ||
                    !op_file_name_valid(json_string_value(name), json_string_length(name)))
                        return op_proto_fail(
                            errbuf, errlen,
                            "\"files[%zu].name\" must be a plain file name (1-255 bytes, "
                            "no '/', no control characters, not '.' or '..')",
                            i);
                if (!json_is_string(content))
                        return op_proto_fail(errbuf, errlen,
                                             "\"files[%zu].content\" must be a string", i);
                for (size_t j = 0; j < e->n_files; j++)
                        if (strcmp(e->files[j].name, json_string_value(name)) == 0)
                                return op_proto_fail(errbuf, errlen,
                                                     "\"files[%zu].name\" repeats \"%s\"", i,
                                                     json_string_value(name));
                r = decode_file_content(f, i, lim, &e->files[e->n_files], errbuf, errlen);
                if (r < 0)
                        return r;
                e->files[e->n_files++].name = json_string_value(name);
        }
        return 0;
}

static const char *const exec_fields[] = {
    "id",
    "op",
    "lang",
    "code",
    "stdin",
    "args",
    "env",
    "files",
    "timeout_ms",
    "mode",
    "stream",
    "stdin_stream",
    "cpu_time_ms",
    "memory_bytes",
    "max_processes",
    "output_max_bytes",
    "file_size_max_bytes",
    "output_files",
};
/* Fields of an exec request that only some languages take. */
static const char *const exec_compile_fields[] = {"compile_timeout_ms"};

int op_exec_decode(json_t *req, const struct op_limits *lim, struct op_exec *ret, char *errbuf,
                   size_t errlen)
{
        struct op_exec e = {.timeout_ms = lim->timeout_ms_default, .entry = -1};
        const char *key, *mode = NULL;
        size_t lang_len = 0;
        json_t *v;
        int r;

        json_object_foreach (req, key, v) {
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(exec_fields); i++)
                        if (strcmp(key, exec_fields[i]) == 0)
                                known = true;
                for (size_t i = 0; i < ELEMENTSOF(exec_compile_fields); i++)
                        if (strcmp(key, exec_compile_fields[i]) == 0)
                                known = true;
                if (!known)
                        return op_proto_fail(errbuf, errlen, "unknown field \"%.64s\" in exec",
                                             key);
        }

        r = get_string(req, "lang", true, OP_LANG_NAME_MAX, &e.lang, &lang_len, errbuf, errlen);
        if (r < 0)
                return r;
        if (lang_len == 0)
                return op_proto_fail(errbuf, errlen, "\"lang\" is empty");
        /* "code" may be left out when "files" holds the program (msg-opts.c picks it). */
        r = get_string(req, "code", !json_object_get(req, "files"), lim->code_max, &e.code,
                       &e.code_len, errbuf, errlen);
        if (r < 0)
                return r;
        r = get_string(req, "stdin", false, lim->stdin_max, &e.stdin_data, &e.stdin_len, errbuf,
                       errlen);
        if (r < 0)
                return r;
        r = get_string(req, "mode", false, 16, &mode, NULL, errbuf, errlen);
        if (r < 0)
                return r;
        if (!mode || strcmp(mode, "auto") == 0)
                e.mode = OP_MODE_AUTO;
        else if (strcmp(mode, "warm") == 0)
                e.mode = OP_MODE_WARM;
        else if (strcmp(mode, "cold") == 0)
                e.mode = OP_MODE_COLD;
        else
                return op_proto_fail(errbuf, errlen,
                                     "\"mode\" must be \"warm\", \"cold\" or \"auto\"");

        v = json_object_get(req, "timeout_ms");
        if (v) {
                if (!json_is_integer(v))
                        return op_proto_fail(errbuf, errlen, "\"timeout_ms\" must be an integer");
                if (json_integer_value(v) < 1 || json_integer_value(v) > lim->timeout_ms_max)
                        return op_proto_fail(errbuf, errlen,
                                             "\"timeout_ms\" must be between 1 and %u",
                                             lim->timeout_ms_max);
                e.timeout_ms = (uint32_t)json_integer_value(v);
        }

        v = json_object_get(req, "compile_timeout_ms");
        if (v) {
                if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                    json_integer_value(v) > lim->compile_timeout_ms_max)
                        return op_proto_fail(
                            errbuf, errlen,
                            "\"compile_timeout_ms\" must be an integer between 1 and %u",
                            lim->compile_timeout_ms_max);
                e.compile_timeout_ms = (uint32_t)json_integer_value(v);
        }

        e.json = json_incref(req);
        if ((v = json_object_get(req, "args")))
                r = decode_args(v, lim, &e, errbuf, errlen);
        if (r >= 0 && (v = json_object_get(req, "env")))
                r = decode_env(v, lim, &e, errbuf, errlen);
        if (r >= 0 && (v = json_object_get(req, "files")))
                r = decode_files(v, lim, &e, errbuf, errlen);
        if (r >= 0)
                r = op_exec_decode_opts(req, lim, &e, errbuf, errlen);
        if (r < 0) {
                op_exec_done(&e);
                return r;
        }
        *ret = e;
        return 0;
}

void op_exec_done(struct op_exec *e)
{
        for (size_t i = 0; i < e->n_env; i++)
                free((char *)e->env[i]);
        free(e->env);
        free(e->args);
        for (size_t i = 0; i < e->n_files; i++)
                if (e->files[i].base64)
                        free((char *)e->files[i].content);
        free(e->files);
        free(e->output_files);
        json_decref(e->json);
        *e = (struct op_exec){0};
}

static char *utf8_sanitize(const uint8_t *p, size_t len, size_t *ret_len);

json_t *op_error_reply(json_t *id, enum op_err code, const char *fmt, ...)
{
        _cleanup_free_ char *clean = NULL;
        size_t clean_len;
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* Truncation may have cut a character in half, and callers quote client input. */
        clean = utf8_sanitize((const uint8_t *)msg, strlen(msg), &clean_len);
        if (!clean)
                return NULL;
        return json_pack("{s:O?, s:b, s:{s:s, s:s%}}", "id", id, "ok", 0, "error", "code",
                         op_err_name(code), "message", clean, clean_len);
}

/* Copy with every invalid UTF-8 sequence replaced by U+FFFD. */
static char *utf8_sanitize(const uint8_t *p, size_t len, size_t *ret_len)
{
        char *out = malloc(len * 3 + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len;) {
                size_t k = p[i] < 0x80                      ? 1
                           : (p[i] >= 0xc2 && p[i] <= 0xdf) ? 2
                           : (p[i] >= 0xe0 && p[i] <= 0xef) ? 3
                           : (p[i] >= 0xf0 && p[i] <= 0xf4) ? 4
                                                            : 0;
                if (k && p[i] != 0 && i + k <= len && op_utf8_valid(p + i, k)) {
                        memcpy(o, p + i, k);
                        o += k;
                        i += k;
                } else {
                        memcpy(o, "\xef\xbf\xbd", 3);
                        o += 3;
                        i++;
                }
        }
        *o = 0;
        *ret_len = (size_t)(o - out);
        return out;
}

int op_json_set_bytes(json_t *obj, const char *key, const void *data, size_t len)
{
        char b64key[64];

        if (op_utf8_valid(data, len) && memchr(data, 0, len) == NULL)
                return json_object_set_new(obj, key, json_stringn(data, len)) < 0 ? -ENOMEM : 0;

        _cleanup_free_ char *clean = NULL, *b64 = NULL;
        size_t clean_len;

        clean = utf8_sanitize(data, len, &clean_len);
        b64 = op_base64_encode(data, len);
        if (!clean || !b64)
                return -ENOMEM;
        /* NUL is valid UTF-8, but many clients cut strings there: output holding NUL is sent
         * as base64 too, so its exact bytes survive. */
        snprintf(b64key, sizeof(b64key), "%s_b64", key);
        if (json_object_set_new(obj, key, json_stringn(clean, clean_len)) < 0 ||
            json_object_set_new(obj, b64key, json_string(b64)) < 0)
                return -ENOMEM;
        return 0;
}

int op_json_get_bytes(json_t *obj, const char *key, size_t max, char **ret, size_t *ret_len)
{
        char b64key[64];
        json_t *v;
        char *out;

        snprintf(b64key, sizeof(b64key), "%s_b64", key);
        v = json_object_get(obj, b64key);
        if (v) {
                uint8_t *raw;
                size_t n;
                int r;

                if (!json_is_string(v))
                        return -EINVAL;
                r = op_base64_decode(json_string_value(v), json_string_length(v), &raw, &n);
                if (r < 0)
                        return r;
                if (n > max) {
                        free(raw);
                        return -E2BIG;
                }
                *ret = (char *)raw;
                *ret_len = n;
                return 0;
        }
        v = json_object_get(obj, key);
        if (!v) {
                out = strdup("");
                if (!out)
                        return -ENOMEM;
                *ret = out;
                *ret_len = 0;
                return 0;
        }
        if (!json_is_string(v))
                return -EINVAL;
        if (json_string_length(v) > max)
                return -E2BIG;
        out = malloc(json_string_length(v) + 1);
        if (!out)
                return -ENOMEM;
        memcpy(out, json_string_value(v), json_string_length(v) + 1);
        *ret = out;
        *ret_len = json_string_length(v);
        return 0;
}

/* The frame being encoded: header room, then the JSON text as jansson hands it over. */
struct frame_out {
        char *buf;
        size_t len, cap, max; /* len counts the header; max: the payload's */
        int err;
};

static int frame_out_add(const char *data, size_t size, void *arg)
{
        struct frame_out *o = arg;

        if (size > o->max || o->len - OP_FRAME_HEADER_SIZE > o->max - size) {
                o->err = -EMSGSIZE;
                return -1;
        }
        if (size > o->cap - o->len) {
                size_t cap = o->cap;
                char *p;

                while (size > cap - o->len)
                        cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
                p = realloc(o->buf, cap);
                if (!p) {
                        o->err = -ENOMEM;
                        return -1;
                }
                o->buf = p;
                o->cap = cap;
        }
        memcpy(o->buf + o->len, data, size);
        o->len += size;
        return 0;
}

/* One pass of jansson's encoder, stopped as soon as the payload passes max: a large answer
 * (metrics, an exec's output) is escaped once, not measured first and written again. The
 * buffer is then cut to the frame's length: callers queue it as it is, and a queue of small
 * frames must hold what they count, not the room the encoder started with (or doubled to). */
int op_frame_encode(json_t *obj, size_t max, char **ret, size_t *ret_len)
{
        struct frame_out o = {
            .cap = 4096, .len = OP_FRAME_HEADER_SIZE, .max = max < UINT32_MAX ? max : UINT32_MAX};
        char *p;

        o.buf = malloc(o.cap);
        if (!o.buf)
                return -ENOMEM;
        if (json_dump_callback(obj, frame_out_add, &o, JSON_COMPACT) < 0 ||
            o.len == OP_FRAME_HEADER_SIZE) {
                free(o.buf);
                return o.err < 0 ? o.err : -EINVAL;
        }
        op_frame_header(o.len - OP_FRAME_HEADER_SIZE, max, (uint8_t *)o.buf);
        /* A shrink that fails leaves the buffer as it was: still the frame, only larger. */
        p = o.len < o.cap ? realloc(o.buf, o.len) : NULL;
        if (p)
                o.buf = p;
        *ret = o.buf;
        *ret_len = o.len;
        return 0;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *op_base64_encode(const void *data, size_t len)
{
        const uint8_t *p = data;
        char *out, *o;

        if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
                return NULL;
        out = o = malloc((len + 2) / 3 * 4 + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)p[i + 1] << 8;
                if (i + 2 < len)
                        v |= p[i + 2];
                *o++ = b64chars[v >> 18 & 63];
                *o++ = b64chars[v >> 12 & 63];
                *o++ = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
                *o++ = i + 2 < len ? b64chars[v & 63] : '=';
        }
        *o = 0;
        return out;
}

static int b64val(char c)
{
        const char *p = c ? strchr(b64chars, c) : NULL;
        return p ? (int)(p - b64chars) : -1;
}

int op_base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len)
{
        uint8_t *out;
        size_t n = 0;

        if (len % 4 != 0)
                return -EINVAL;
        out = malloc(len / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i += 4) {
                int a = b64val(s[i]), b = b64val(s[i + 1]), c, d;
                bool last = i + 4 == len;

                c = (last && s[i + 2] == '=' && s[i + 3] == '=') ? -2 : b64val(s[i + 2]);
                d = (last && s[i + 3] == '=') ? -2 : b64val(s[i + 3]);
                if (a < 0 || b < 0 || c == -1 || d == -1 || (c == -2 && d != -2)) {
                        free(out);
                        return -EINVAL;
                }
                out[n++] = (uint8_t)(a << 2 | b >> 4);
                if (c >= 0)
                        out[n++] = (uint8_t)(b << 4 | c >> 2);
                if (d >= 0)
                        out[n++] = (uint8_t)(c << 6 | d);
        }
        out[n] = 0;
        *ret = out;
        *ret_len = n;
        return 0;
}
