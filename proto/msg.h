/* msg.h: protocol v1 messages as C values: decoding and validating requests, encoding answers.
 * Pure code on top of jansson: no I/O, no globals; every size and count is bounded by struct
 * op_limits. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

/* Stable error codes; the spec (docs/protocol.md) lists them. Never renumber or rename. */
enum op_err {
        OP_ERR_BAD_REQUEST,
        OP_ERR_FRAME_TOO_LARGE,
        OP_ERR_UNKNOWN_OP,
        OP_ERR_UNKNOWN_LANGUAGE,
        OP_ERR_POOL_EXHAUSTED,
        OP_ERR_TIMEOUT,
        OP_ERR_VM_FAILED,
        OP_ERR_BUSY,
        OP_ERR_SHUTTING_DOWN,
        OP_ERR_PERMISSION_DENIED,
        OP_ERR_INTERNAL,
        OP_ERR_UNAVAILABLE,
        OP_ERR_NOT_FOUND,      /* no such session (or not the caller's) */
        OP_ERR_QUOTA_EXCEEDED, /* a count the configuration bounds (sessions per uid, ...) */
        _OP_ERR_MAX,
};

const char *op_err_name(enum op_err e);

/* Bounds on what one request may carry. Defaults are OP_LIMITS_DEFAULT; opd takes them from config.
 */
struct op_limits {
        size_t frame_max;
        size_t code_max;
        size_t stdin_max;
        size_t args_max;      /* number of args */
        size_t arg_len_max;   /* bytes per arg */
        size_t env_max;       /* number of variables */
        size_t env_len_max;   /* bytes per name=value */
        size_t files_max;     /* number of files */
        size_t file_size_max; /* bytes per file */
        uint32_t timeout_ms_default;
        uint32_t timeout_ms_max;
        size_t output_max; /* bytes per stream (stdout, stderr) */
        /* a compiled language's compile phase */
        uint32_t compile_timeout_ms_max;
        /* msg-opts.c: upper bounds of the optional per-request limits, output files, batch */
        uint32_t cpu_time_ms_max; /* largest cpu_time_ms */
        size_t memory_max;        /* largest memory_bytes */
        uint32_t processes_max;   /* largest max_processes */
        size_t written_file_max;  /* largest file_size_max_bytes */
        size_t output_files_max;  /* entries of output_files */
        size_t output_file_max;   /* bytes read back per output file */
        size_t batch_max;         /* requests in one exec_batch */
        size_t cases_max;         /* cases in one exec_cases */
        size_t stdin_frame_max;   /* bytes of data in one stdin frame */
};

#define OP_LIMITS_DEFAULT                                                                          \
        ((struct op_limits){                                                                       \
            .frame_max = OP_FRAME_MAX_DEFAULT,                                                     \
            .code_max = 1024 * 1024,                                                               \
            .stdin_max = 4 * 1024 * 1024,                                                          \
            .args_max = 256,                                                                       \
            .arg_len_max = 4096,                                                                   \
            .env_max = 256,                                                                        \
            .env_len_max = 32 * 1024,                                                              \
            .files_max = 64,                                                                       \
            .file_size_max = 4 * 1024 * 1024,                                                      \
            .timeout_ms_default = 5000,                                                            \
            .timeout_ms_max = 60000,                                                               \
            .output_max = 1024 * 1024,                                                             \
            .compile_timeout_ms_max = 120000,                                                      \
            .cpu_time_ms_max = 60000,                                                              \
            .memory_max = 512 * 1024 * 1024,                                                       \
            .processes_max = 256,                                                                  \
            .written_file_max = 64 * 1024 * 1024,                                                  \
            .output_files_max = 16,                                                                \
            .output_file_max = 1024 * 1024,                                                        \
            .batch_max = 16,                                                                       \
            .cases_max = 32,                                                                       \
            .stdin_frame_max = 64 * 1024,                                                          \
        })

#define OP_LANG_NAME_MAX 64
#define OP_FILE_NAME_MAX 255

enum op_mode {
        OP_MODE_AUTO, /* warm when a pool serves the language, else cold */
        OP_MODE_WARM,
        OP_MODE_COLD,
};

struct op_file {
        const char *name;
        const char *content; /* the bytes: into the request, or decoded (owned) for base64 */
        size_t content_len;
        bool base64; /* "encoding": "base64": content is owned and may hold any byte */
};

/* Which part of a compiled language's exec runs (session_exec "phase"): both, the compile step
 * alone (the program is not run), or the program compiled by an earlier exec in the session. */
enum op_phase { OP_PHASE_ALL, OP_PHASE_COMPILE, OP_PHASE_RUN };

/* A decoded exec request. Strings point into the json_t it was decoded from (kept in .json). */
struct op_exec {
        json_t *json; /* owned reference to the request object */
        const char *lang;
        const char *code;
        size_t code_len;
        const char *stdin_data;
        size_t stdin_len;
        const char **args;
        size_t n_args;
        const char **env; /* "NAME=value" strings, owned (malloc'd) */
        size_t n_env;
        struct op_file *files;
        size_t n_files;
        uint32_t timeout_ms;
        uint32_t compile_timeout_ms; /* 0: the language's default (compiled languages only) */
        enum op_mode mode;
        enum op_phase phase; /* session_exec only; OP_PHASE_ALL elsewhere */
        /* msg-opts.c; 0 / false / NULL when the request leaves them out */
        bool stream;               /* send output as events while it runs */
        bool stdin_stream;         /* stdin stays open for "stdin" frames */
        uint32_t cpu_time_ms;      /* CPU time of the whole process tree */
        uint64_t memory_bytes;     /* memory of the whole process tree */
        uint32_t max_processes;    /* processes (and threads) alive at once */
        size_t output_max;         /* bytes per stream: output_max_bytes or limit.output_max */
        bool has_file_size_max;    /* file_size_max_bytes given (0 is a valid limit) */
        uint64_t file_size_max;    /* largest file the program may write */
        const char **output_files; /* names to read back after the run, NULL-terminated */
        size_t n_output_files;
        /* No "code": files[entry] is the program (the one named main or main.*, else the
         * first). -1 when "code" is given. */
        ssize_t entry;
};

/* The status of a finished run, from the raw fields the agent reports. */
enum op_status {
        OP_STATUS_OK,
        OP_STATUS_RUNTIME_ERROR,
        OP_STATUS_SIGNAL,
        OP_STATUS_TIMEOUT,
        OP_STATUS_OUTPUT_LIMIT,
        OP_STATUS_MEMORY_LIMIT,
        OP_STATUS_COMPILE_ERROR,
        OP_STATUS_INTERNAL_ERROR,
        _OP_STATUS_MAX,
};
const char *op_status_name(enum op_status s);
/* -EINVAL for a name that is not a status. */
int op_status_from_name(const char *name, enum op_status *ret);
/* Precedence: memory_limit, timeout (wall or CPU), output_limit, signal, runtime_error, ok. */
enum op_status op_status_of(int exit_code, int signal, bool timed_out, bool cpu_exceeded,
                            bool truncated, bool oom_killed);

/* Parse one frame's payload into a JSON object. On failure returns -EBADMSG and a message in
 * errbuf. On success *ret_obj holds a new reference. */
int op_parse_object(const char *payload, size_t len, json_t **ret_obj, char *errbuf, size_t errlen);
/* The same, refusing (-EBADMSG, before any parse) a payload that could hold more than values_max
 * JSON values: a parsed value costs far more memory than its bytes on the wire (a frame of
 * "[],[],..." grows about 30-fold), so what a peer may send is bounded in values as well as
 * bytes. */
int op_parse_object_max(const char *payload, size_t len, size_t values_max, json_t **ret_obj,
                        char *errbuf, size_t errlen);
/* An upper bound of the JSON values in payload: containers, keys and elements, counted from the
 * structural characters outside strings. Pure; never less than the real count. */
size_t op_json_values_bound(const char *payload, size_t len);
/* The most JSON values a valid client frame can hold under lim (an exec_batch of batch_max
 * members or an exec_cases of cases_max cases, each with every list at its limit), for
 * op_parse_object_max(). */
size_t op_limits_values_max(const struct op_limits *lim);

/* The request's "id" (string or integer) or NULL when absent. -EINVAL (with message) when it has
 * another type or a string longer than 256 bytes. */
int op_request_id(json_t *req, json_t **ret_id, char *errbuf, size_t errlen);

/* Decode and validate an exec request. 0 on success (*ret filled, free with op_exec_done()),
 * -EINVAL with a human message in errbuf otherwise. Unknown fields are refused. */
int op_exec_decode(json_t *req, const struct op_limits *lim, struct op_exec *ret, char *errbuf,
                   size_t errlen);
void op_exec_done(struct op_exec *e);

/* msg-opts.c: the optional exec fields beyond the core of protocol v1 (streaming, limits, file
 * encodings, output files, entry point). Called by op_exec_decode(). */
int op_exec_decode_opts(json_t *req, const struct op_limits *lim, struct op_exec *e, char *errbuf,
                        size_t errlen);
/* The entry file's name when "code" is absent: files[entry]. */
const char *op_exec_entry_name(const struct op_exec *e);

/* A decoded stdin frame: {"op": "stdin", "id", "data" | "data_b64", "eof"}. data points into req
 * or is owned (base64): free with op_stdin_done(). */
struct op_stdin {
        char *data;
        size_t len;
        bool eof;
};
int op_stdin_decode(json_t *req, const struct op_limits *lim, struct op_stdin *ret, char *errbuf,
                    size_t errlen);
void op_stdin_done(struct op_stdin *s);

/* A decoded exec_batch: its members, each an exec request object with a distinct non-null id
 * ("op" absent or "exec"). The members are borrowed from req. */
struct op_batch {
        json_t **members;
        size_t n;
};
int op_batch_decode(json_t *req, const struct op_limits *lim, struct op_batch *ret, char *errbuf,
                    size_t errlen);
void op_batch_done(struct op_batch *b);

/* 1 when name is an acceptable file name for files[]: 1..255 bytes, no '/', not "." or "..",
 * no control characters. */
int op_file_name_valid(const char *name, size_t len);

/* {"id": id, "ok": false, "error": {"code": ..., "message": ...}}; id may be NULL (sent as null).
 */
json_t *op_error_reply(json_t *id, enum op_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Set obj[key] to the bytes as a string. Bytes that are not valid UTF-8 are replaced by U+FFFD
 * in obj[key], and the exact bytes are added as base64 in obj[key "_b64"]. */
int op_json_set_bytes(json_t *obj, const char *key, const void *data, size_t len);

/* Get bytes back from obj[key] (or obj[key "_b64"] when present). *ret is malloc'd, NUL-ended. */
int op_json_get_bytes(json_t *obj, const char *key, size_t max, char **ret, size_t *ret_len);

/* Encode obj as one frame (header + compact JSON) in a single malloc'd buffer. */
int op_frame_encode(json_t *obj, size_t max, char **ret, size_t *ret_len);

/* base64 (RFC 4648, with padding). Encoded output is NUL-terminated. */
char *op_base64_encode(const void *data, size_t len);
int op_base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len);
