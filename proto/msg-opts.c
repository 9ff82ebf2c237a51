/* msg-opts.c: the optional exec fields added to protocol v1 (streaming, per-request limits,
 * output files, the entry file), stdin frames, exec_batch, and the run status names. */
#include "msg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fail.h"

static const char *const status_names[_OP_STATUS_MAX] = {
    [OP_STATUS_OK] = "ok",
    [OP_STATUS_RUNTIME_ERROR] = "runtime_error",
    [OP_STATUS_SIGNAL] = "signal",
    [OP_STATUS_TIMEOUT] = "timeout",
    [OP_STATUS_OUTPUT_LIMIT] = "output_limit",
    [OP_STATUS_MEMORY_LIMIT] = "memory_limit",
    [OP_STATUS_COMPILE_ERROR] = "compile_error",
    [OP_STATUS_INTERNAL_ERROR] = "internal_error",
};

const char *op_status_name(enum op_status s)
{
        if ((unsigned)s >= _OP_STATUS_MAX)
                return "internal_error";
        return status_names[s];
}

int op_status_from_name(const char *name, enum op_status *ret)
{
        for (size_t i = 0; name && i < _OP_STATUS_MAX; i++)
                if (strcmp(name, status_names[i]) == 0) {
                        *ret = (enum op_status)i;
                        return 0;
                }
        return -EINVAL;
}

enum op_status op_status_of(int exit_code, int signal, bool timed_out, bool cpu_exceeded,
                            bool truncated, bool oom_killed)
{
        if (oom_killed)
                return OP_STATUS_MEMORY_LIMIT;
        if (timed_out || cpu_exceeded)
                return OP_STATUS_TIMEOUT;
        if (truncated)
                return OP_STATUS_OUTPUT_LIMIT;
        if (signal)
                return OP_STATUS_SIGNAL;
        if (exit_code != 0)
                return OP_STATUS_RUNTIME_ERROR;
        return OP_STATUS_OK;
}

static int get_bool(json_t *req, const char *key, bool *ret, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, key);

        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return op_proto_fail(errbuf, errlen, "\"%s\" must be true or false", key);
        *ret = json_is_true(v);
        return 0;
}

/* An optional integer in [lo, hi]; *ret untouched when absent, *ret_set says whether given. */
static int get_range(json_t *req, const char *key, uint64_t lo, uint64_t hi, const char *limit,
                     uint64_t *ret, bool *ret_set, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, key);

        if (!v)
                return 0;
        if (!json_is_integer(v))
                return op_proto_fail(errbuf, errlen, "\"%s\" must be an integer", key);
        if (json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < lo ||
            (uint64_t)json_integer_value(v) > hi)
                return op_proto_fail(errbuf, errlen, "\"%s\" must be between %llu and %llu (%s)",
                                     key, (unsigned long long)lo, (unsigned long long)hi, limit);
        *ret = (uint64_t)json_integer_value(v);
        if (ret_set)
                *ret_set = true;
        return 0;
}

static int decode_output_files(json_t *v, const struct op_limits *lim, struct op_exec *e,
                               char *errbuf, size_t errlen)
{
        size_t i;
        json_t *a;

        if (!json_is_array(v))
                return op_proto_fail(errbuf, errlen,
                                     "\"output_files\" must be an array of file names");
        if (json_array_size(v) > lim->output_files_max)
                return op_proto_fail(errbuf, errlen,
                                     "\"output_files\" has %zu entries, over the limit of %zu",
                                     json_array_size(v), lim->output_files_max);
        e->output_files = calloc(json_array_size(v) + 1, sizeof(char *));
        if (!e->output_files)
                return -ENOMEM;
        json_array_foreach (v, i, a) {
                if (!json_is_string(a) ||
                    !op_file_name_valid(json_string_value(a), json_string_length(a)))
                        return op_proto_fail(
                            errbuf, errlen,
                            "\"output_files[%zu]\" must be a plain file name (1-255 "
                            "bytes, no '/', no control characters, not '.' or '..')",
                            i);
                for (size_t j = 0; j < e->n_output_files; j++)
                        if (strcmp(e->output_files[j], json_string_value(a)) == 0)
                                return op_proto_fail(errbuf, errlen,
                                                     "\"output_files[%zu]\" repeats \"%s\"", i,
                                                     json_string_value(a));
                e->output_files[e->n_output_files++] = json_string_value(a);
        }
        return 0;
}

/* The file named "main" or "main.<anything>", else the first one. */
static ssize_t pick_entry(const struct op_exec *e)
{
        for (size_t i = 0; i < e->n_files; i++)
                if (strcmp(e->files[i].name, "main") == 0 ||
                    strncmp(e->files[i].name, "main.", 5) == 0)
                        return (ssize_t)i;
        return 0;
}

int op_exec_decode_opts(json_t *req, const struct op_limits *lim, struct op_exec *e, char *errbuf,
                        size_t errlen)
{
        uint64_t v;
        int r;

        r = get_bool(req, "stream", &e->stream, errbuf, errlen);
        if (r == 0)
                r = get_bool(req, "stdin_stream", &e->stdin_stream, errbuf, errlen);
        if (r < 0)
                return r;

        v = 0;
        r = get_range(req, "cpu_time_ms", 1, lim->cpu_time_ms_max, "limit.cpu_time_ms_max", &v,
                      NULL, errbuf, errlen);
        if (r < 0)
                return r;
        e->cpu_time_ms = (uint32_t)v;
        v = 0;
        r = get_range(req, "memory_bytes", 1024 * 1024, lim->memory_max, "limit.memory_max", &v,
                      NULL, errbuf, errlen);
        if (r < 0)
                return r;
        e->memory_bytes = v;
        v = 0;
        r = get_range(req, "max_processes", 1, lim->processes_max, "limit.processes_max", &v, NULL,
                      errbuf, errlen);
        if (r < 0)
                return r;
        e->max_processes = (uint32_t)v;
        v = lim->output_max;
        r = get_range(req, "output_max_bytes", 0, lim->output_max, "limit.output_max", &v, NULL,
                      errbuf, errlen);
        if (r < 0)
                return r;
        e->output_max = (size_t)v;
        r = get_range(req, "file_size_max_bytes", 0, lim->written_file_max,
                      "limit.written_file_max", &e->file_size_max, &e->has_file_size_max, errbuf,
                      errlen);
        if (r < 0)
                return r;

        if (json_object_get(req, "output_files")) {
                r = decode_output_files(json_object_get(req, "output_files"), lim, e, errbuf,
                                        errlen);
                if (r < 0)
                        return r;
        }
        if (!e->code) {
                if (e->n_files == 0)
                        return op_proto_fail(errbuf, errlen,
                                             "missing \"code\" (or a program in \"files\")");
                e->entry = pick_entry(e);
        }
        return 0;
}

const char *op_exec_entry_name(const struct op_exec *e)
{
        return e->entry >= 0 && (size_t)e->entry < e->n_files ? e->files[e->entry].name : NULL;
}

static const char *const stdin_fields[] = {"id", "op", "data", "data_b64", "eof"};

int op_stdin_decode(json_t *req, const struct op_limits *lim, struct op_stdin *ret, char *errbuf,
                    size_t errlen)
{
        json_t *data = json_object_get(req, "data"), *b64 = json_object_get(req, "data_b64");
        json_t *eof = json_object_get(req, "eof"), *v;
        struct op_stdin s = {0};
        const char *key;
        uint8_t *raw;
        size_t n;

        json_object_foreach (req, key, v) {
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(stdin_fields); i++)
                        if (strcmp(key, stdin_fields[i]) == 0)
                                known = true;
                if (!known)
                        return op_proto_fail(errbuf, errlen, "unknown field \"%.64s\" in stdin",
                                             key);
        }
        v = json_object_get(req, "id");
        if (!v || json_is_null(v))
                return op_proto_fail(errbuf, errlen,
                                     "\"id\" is required: the id of the exec to feed");
        if (data && b64)
                return op_proto_fail(errbuf, errlen, "give \"data\" or \"data_b64\", not both");
        if (eof && !json_is_boolean(eof))
                return op_proto_fail(errbuf, errlen, "\"eof\" must be true or false");
        if (!data && !b64 && !json_is_true(eof))
                return op_proto_fail(errbuf, errlen,
                                     "a stdin frame needs \"data\", \"data_b64\" or "
                                     "\"eof\": true");
        if (data && !json_is_string(data))
                return op_proto_fail(errbuf, errlen, "\"data\" must be a string");
        if (b64 && !json_is_string(b64))
                return op_proto_fail(errbuf, errlen, "\"data_b64\" must be a string");
        if (data && json_string_length(data) > lim->stdin_frame_max)
                return op_proto_fail(errbuf, errlen, "\"data\" is %zu bytes, over the limit of %zu",
                                     json_string_length(data), lim->stdin_frame_max);
        if (b64 && json_string_length(b64) / 4 * 3 > lim->stdin_frame_max + 2)
                return op_proto_fail(errbuf, errlen, "\"data_b64\" is over the limit of %zu bytes",
                                     lim->stdin_frame_max);
        if (b64) {
                if (op_base64_decode(json_string_value(b64), json_string_length(b64), &raw, &n) < 0)
                        return op_proto_fail(errbuf, errlen, "\"data_b64\" is not base64");
                if (n > lim->stdin_frame_max) {
                        free(raw);
                        return op_proto_fail(errbuf, errlen,
                                             "\"data_b64\" is over the limit of %zu bytes",
                                             lim->stdin_frame_max);
                }
                s.data = (char *)raw;
                s.len = n;
        } else {
                n = data ? json_string_length(data) : 0;
                s.data = malloc(n + 1);
                if (!s.data)
                        return -ENOMEM;
                memcpy(s.data, data ? json_string_value(data) : "", n + 1);
                s.len = n;
        }
        s.eof = json_is_true(eof);
        if (s.len == 0 && !s.eof) {
                free(s.data);
                return op_proto_fail(errbuf, errlen,
                                     "a stdin frame with empty \"%s\" needs \"eof\": true",
                                     b64 ? "data_b64" : "data");
        }
        *ret = s;
        return 0;
}

void op_stdin_done(struct op_stdin *s)
{
        free(s->data);
        *s = (struct op_stdin){0};
}

static const char *const batch_fields[] = {"id", "op", "requests"};

static bool same_id(json_t *a, json_t *b)
{
        return json_equal(a, b) && json_typeof(a) == json_typeof(b);
}

int op_batch_decode(json_t *req, const struct op_limits *lim, struct op_batch *ret, char *errbuf,
                    size_t errlen)
{
        json_t *reqs = json_object_get(req, "requests"), *m, *v;
        _cleanup_free_ json_t **members = NULL;
        const char *key;
        size_t i, n = 0;

        json_object_foreach (req, key, v) {
                bool known = false;
                for (size_t k = 0; k < ELEMENTSOF(batch_fields); k++)
                        if (strcmp(key, batch_fields[k]) == 0)
                                known = true;
                if (!known)
                        return op_proto_fail(errbuf, errlen,
                                             "unknown field \"%.64s\" in exec_batch", key);
        }
        if (!reqs)
                return op_proto_fail(errbuf, errlen, "missing \"requests\"");
        if (!json_is_array(reqs))
                return op_proto_fail(errbuf, errlen,
                                     "\"requests\" must be an array of exec requests");
        if (json_array_size(reqs) == 0)
                return op_proto_fail(errbuf, errlen, "\"requests\" is empty");
        if (json_array_size(reqs) > lim->batch_max)
                return op_proto_fail(errbuf, errlen,
                                     "\"requests\" has %zu entries, over the limit of %zu",
                                     json_array_size(reqs), lim->batch_max);
        members = calloc(json_array_size(reqs), sizeof(json_t *));
        if (!members)
                return -ENOMEM;
        json_array_foreach (reqs, i, m) {
                json_t *id, *op;
                char iderr[128];

                if (!json_is_object(m))
                        return op_proto_fail(errbuf, errlen, "\"requests[%zu]\" must be an object",
                                             i);
                if (op_request_id(m, &id, iderr, sizeof(iderr)) < 0)
                        return op_proto_fail(errbuf, errlen, "\"requests[%zu]\": %s", i, iderr);
                if (!id)
                        return op_proto_fail(
                            errbuf, errlen,
                            "\"requests[%zu]\" needs an \"id\": its answer carries it", i);
                if (same_id(id, json_object_get(req, "id")))
                        return op_proto_fail(errbuf, errlen,
                                             "\"requests[%zu].id\" is the id of the batch itself",
                                             i);
                for (size_t j = 0; j < n; j++)
                        if (same_id(id, json_object_get(members[j], "id")))
                                return op_proto_fail(
                                    errbuf, errlen,
                                    "\"requests[%zu].id\" repeats the id of requests[%zu]", i, j);
                op = json_object_get(m, "op");
                if (op && (!json_is_string(op) || strcmp(json_string_value(op), "exec") != 0))
                        return op_proto_fail(errbuf, errlen,
                                             "\"requests[%zu].op\" must be \"exec\" (or left out)",
                                             i);
                members[n++] = m;
        }
        *ret = (struct op_batch){.members = TAKE_PTR(members), .n = n};
        return 0;
}

void op_batch_done(struct op_batch *b)
{
        free(b->members);
        *b = (struct op_batch){0};
}
