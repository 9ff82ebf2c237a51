/* fuzz-check.h: what the fuzz targets assert about the codec's results: a decoded request keeps
 * every limit, and every reply opd would build goes through a frame and parses back. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "frame.h"
#include "msg-cases.h"
#include "msg-session.h"
#include "msg.h"

/* assert() vanishes under -DNDEBUG (RelWithDebInfo); a fuzz check must not. */
#define CHECK(x)                                                                                   \
        do {                                                                                       \
                if (!(x)) {                                                                        \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x);      \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* jansson seeds its hash tables at random (object key order, hence coverage): a fixed seed makes
 * a run with libFuzzer's -seed=N repeat itself. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        json_object_seed(1);
        return 0;
}

/* Small limits, so that inputs of a few hundred bytes reach every "over the limit" branch. */
#define FUZZ_LIMITS_TIGHT                                                                          \
        ((struct op_limits){                                                                       \
            .frame_max = 4096,                                                                     \
            .code_max = 16,                                                                        \
            .stdin_max = 8,                                                                        \
            .args_max = 2,                                                                         \
            .arg_len_max = 4,                                                                      \
            .env_max = 2,                                                                          \
            .env_len_max = 8,                                                                      \
            .files_max = 2,                                                                        \
            .file_size_max = 4,                                                                    \
            .timeout_ms_default = 10,                                                              \
            .timeout_ms_max = 100,                                                                 \
            .output_max = 64,                                                                      \
            .compile_timeout_ms_max = 50,                                                          \
            .cpu_time_ms_max = 50,                                                                 \
            .memory_max = 2 * 1024 * 1024,                                                         \
            .processes_max = 3,                                                                    \
            .written_file_max = 16,                                                                \
            .output_files_max = 2,                                                                 \
            .output_file_max = 8,                                                                  \
            .batch_max = 2,                                                                        \
            .cases_max = 3,                                                                        \
            .stdin_frame_max = 4,                                                                  \
        })

static inline int fuzz_env_name_ok(const char *s, size_t n)
{
        if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                        return 0;
        return 1;
}

/* Everything op_exec_decode() promises about a request it accepted. */
static inline void fuzz_check_exec(const struct op_exec *e, const struct op_limits *lim)
{
        CHECK(e->json);
        /* (strlen(lang) may be 0 when a NUL got past a lax parser: op_parse_object stops it) */
        CHECK(e->lang && strlen(e->lang) <= OP_LANG_NAME_MAX);
        /* the program is code, or (without code) one of files */
        CHECK((e->code && e->code_len <= lim->code_max && e->entry == -1) ||
              (!e->code && e->entry >= 0 && (size_t)e->entry < e->n_files));
        CHECK(!e->cpu_time_ms || e->cpu_time_ms <= lim->cpu_time_ms_max);
        CHECK(!e->memory_bytes ||
              (e->memory_bytes >= 1024 * 1024 && e->memory_bytes <= lim->memory_max));
        CHECK(!e->max_processes || e->max_processes <= lim->processes_max);
        CHECK(e->output_max <= lim->output_max);
        CHECK(!e->has_file_size_max || e->file_size_max <= lim->written_file_max);
        CHECK(e->n_output_files <= lim->output_files_max);
        CHECK(!e->output_files || !e->output_files[e->n_output_files]);
        for (size_t i = 0; i < e->n_output_files; i++)
                CHECK(op_file_name_valid(e->output_files[i], strlen(e->output_files[i])));
        CHECK(!e->stdin_data || e->stdin_len <= lim->stdin_max);
        CHECK(e->timeout_ms >= 1 && e->timeout_ms <= lim->timeout_ms_max);
        CHECK(e->compile_timeout_ms <= lim->compile_timeout_ms_max); /* 0: the language's */
        CHECK(e->mode == OP_MODE_AUTO || e->mode == OP_MODE_WARM || e->mode == OP_MODE_COLD);

        CHECK(e->n_args <= lim->args_max);
        CHECK(!e->args || !e->args[e->n_args]);
        for (size_t i = 0; i < e->n_args; i++)
                CHECK(e->args[i] && strlen(e->args[i]) <= lim->arg_len_max);

        CHECK(e->n_env <= lim->env_max);
        CHECK(!e->env || !e->env[e->n_env]);
        for (size_t i = 0; i < e->n_env; i++) {
                const char *eq = strchr(e->env[i], '=');
                CHECK(eq);
                CHECK(fuzz_env_name_ok(e->env[i], (size_t)(eq - e->env[i])));
                CHECK(strlen(e->env[i]) <= lim->env_len_max);
        }

        CHECK(e->n_files <= lim->files_max);
        for (size_t i = 0; i < e->n_files; i++) {
                const struct op_file *f = &e->files[i];
                CHECK(f->name && f->content);
                CHECK(op_file_name_valid(f->name, strlen(f->name)));
                CHECK(!strchr(f->name, '/') && strcmp(f->name, "..") != 0);
                CHECK(f->content_len <= lim->file_size_max);
                for (size_t j = 0; j < i; j++)
                        CHECK(strcmp(e->files[j].name, f->name) != 0);
        }
}

/* Send reply through a frame as opd would, and parse it back as a client would (unless the
 * reply echoes a request that only a lax parser let in). When raw is given, reply["stdout"] must
 * come back as exactly those bytes. Consumes reply. */
static inline void fuzz_check_reply(json_t *reply, const void *raw, size_t raw_len, bool strict)
{
        _cleanup_free_ char *buf = NULL, *bytes = NULL;
        json_t *back = NULL;
        struct op_frame f;
        size_t n, bytes_len;
        char err[256];

        /* a reply that cannot be built means the client gets no answer at all */
        CHECK(reply);
        CHECK(op_frame_encode(reply, OP_FRAME_MAX_CEILING, &buf, &n) == 0);
        json_decref(reply);
        CHECK(op_frame_next(buf, n, OP_FRAME_MAX_CEILING, &f) == 1);
        CHECK(f.frame_len == n);
        if (!strict)
                return;
        CHECK(op_parse_object(buf + f.payload_offset, f.payload_len, &back, err, sizeof(err)) == 0);
        if (raw) {
                CHECK(op_json_get_bytes(back, "stdout", SIZE_MAX, &bytes, &bytes_len) == 0);
                CHECK(bytes_len == raw_len);
                CHECK(raw_len == 0 || memcmp(bytes, raw, raw_len) == 0);
        }
        json_decref(back);
}

/* What opd does with one parsed request object: id, then exec validation, then an answer.
 * strict: req came from op_parse_object(), so the answers must parse back too. */
static inline void fuzz_handle_request(json_t *req, const struct op_limits *lim, bool strict)
{
        struct op_exec e;
        json_t *id = NULL, *reply;
        char err[256] = "";
        int r;

        r = op_request_id(req, &id, err, sizeof(err));
        if (r < 0) {
                CHECK(r == -EINVAL && err[0]);
                fuzz_check_reply(op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", err), NULL, 0,
                                 strict);
                return;
        }
        r = op_exec_decode(req, lim, &e, err, sizeof(err));
        if (r < 0) {
                CHECK(r == -EINVAL && err[0]);
                fuzz_check_reply(op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err), NULL, 0,
                                 strict);
                return;
        }
        fuzz_check_exec(&e, lim);
        /* a success answer whose output is the program, byte for byte */
        const char *prog = e.code ? e.code : e.files[e.entry].content;
        size_t prog_len = e.code ? e.code_len : e.files[e.entry].content_len;
        reply = json_pack("{s:O?, s:b}", "id", id, "ok", 1);
        CHECK(reply);
        CHECK(op_json_set_bytes(reply, "stdout", prog, prog_len) == 0);
        if (e.stdin_data)
                CHECK(op_json_set_bytes(reply, "stderr", e.stdin_data, e.stdin_len) == 0);
        fuzz_check_reply(reply, prog, prog_len, strict);
        op_exec_done(&e);
}

/* The other request shapes of the codec: stdin frames and exec_batch. */
/* The session operations' decoders: what they accept keeps the bounds, refusals say why, and
 * the request is left as it was. */
static inline void fuzz_handle_session(json_t *req, const struct op_limits *lim)
{
        const struct op_session_bounds b = {5, 10, 7, 20};
        struct op_session_open o;
        char id[OP_SESSION_ID_LEN + 1], err[256] = "";
        size_t refs = req->refcount;
        json_t *defaults;
        struct op_exec e;
        int r;

        r = op_session_open_decode(req, lim, &b, &o, err, sizeof(err));
        CHECK(r == 0 || (r == -EINVAL && err[0]) || r == -ENOMEM);
        if (r == 0) {
                CHECK(o.lang && o.lang[0]);
                CHECK(o.idle_timeout_ms >= 1 && o.idle_timeout_ms <= b.idle_timeout_ms_max);
                CHECK(o.max_lifetime_ms >= 1 && o.max_lifetime_ms <= b.lifetime_ms_max);
                CHECK(json_is_object(o.limits));
                op_session_open_done(&o);
        }
        err[0] = 0;
        r = op_session_close_decode(req, id, err, sizeof(err));
        CHECK(r == 0 || (r == -EINVAL && err[0]));
        if (r == 0)
                CHECK(op_session_id_valid(id, strlen(id)));
        err[0] = 0;
        r = op_session_list_decode(req, err, sizeof(err));
        CHECK(r == 0 || (r == -EINVAL && err[0]));
        err[0] = 0;
        defaults = json_pack("{s:i, s:i}", "timeout_ms", 3, "cpu_time_ms", 2);
        r = op_session_exec_decode(req, "python", defaults, lim, &e, err, sizeof(err));
        json_decref(defaults);
        CHECK(r == 0 || (r == -EINVAL && err[0]) || r == -ENOMEM);
        if (r == 0) {
                CHECK(e.lang && e.timeout_ms >= 1 && e.timeout_ms <= lim->timeout_ms_max);
                CHECK(!json_object_get(e.json, "session") && !json_object_get(e.json, "mode"));
                CHECK(!json_object_get(e.json, "phase"));
                CHECK(e.phase == OP_PHASE_ALL || e.phase == OP_PHASE_COMPILE ||
                      e.phase == OP_PHASE_RUN);
                /* the run phase writes no program of the caller's */
                CHECK(e.phase != OP_PHASE_RUN || !json_object_get(req, "code"));
                op_exec_done(&e);
        }
        CHECK(req->refcount == refs);
}

/* exec_cases: every step it yields is a valid session_exec once given a session. */
static inline void fuzz_handle_cases(json_t *req, const struct op_limits *lim)
{
        struct op_cases c;
        char err[256] = "";
        int r;

        r = op_cases_decode(req, lim, &c, err, sizeof(err));
        CHECK(r == 0 || r == -ENOMEM || (r == -EINVAL && err[0]));
        if (r < 0)
                return;
        CHECK(c.n >= 1 && c.n <= lim->cases_max && c.compile);
        for (size_t i = 0; i <= c.n; i++) {
                json_t *step = i < c.n ? c.runs[i] : c.compile;
                struct op_exec e;

                CHECK(!json_object_get(step, "session"));
                CHECK(json_object_set_new(step, "session",
                                          json_string("0f84e6c1-0595-4e2a-9778-53c262b9fc53")) ==
                      0);
                CHECK(op_session_exec_decode(step, json_string_value(json_object_get(step, "lang")),
                                             NULL, lim, &e, err, sizeof(err)) == 0);
                CHECK(e.phase == (i < c.n ? OP_PHASE_RUN : OP_PHASE_COMPILE));
                op_exec_done(&e);
        }
        op_cases_done(&c);
}

static inline void fuzz_handle_other(json_t *req, const struct op_limits *lim)
{
        struct op_stdin in;
        struct op_batch b;
        char err[256] = "";
        int r;

        r = op_stdin_decode(req, lim, &in, err, sizeof(err));
        CHECK(r == 0 || (r == -EINVAL && err[0]));
        if (r == 0) {
                CHECK(in.data && in.len <= lim->stdin_frame_max);
                CHECK(in.len > 0 || in.eof);
                op_stdin_done(&in);
        }
        err[0] = 0;
        r = op_batch_decode(req, lim, &b, err, sizeof(err));
        CHECK(r == 0 || (r == -EINVAL && err[0]));
        if (r == 0) {
                CHECK(b.n >= 1 && b.n <= lim->batch_max);
                for (size_t i = 0; i < b.n; i++) {
                        json_t *id = json_object_get(b.members[i], "id");
                        CHECK(json_is_string(id) || json_is_integer(id));
                        for (size_t j = 0; j < i; j++)
                                CHECK(!json_equal(id, json_object_get(b.members[j], "id")) ||
                                      json_typeof(id) !=
                                          json_typeof(json_object_get(b.members[j], "id")));
                }
                op_batch_done(&b);
        }
        fuzz_handle_cases(req, lim);
        fuzz_handle_session(req, lim);
}
