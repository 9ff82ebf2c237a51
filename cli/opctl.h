/* opctl.h: what opctl's files share: the command line as parsed (struct opts), its limits and exit
 * statuses, the output helpers (print.c) and the commands main() dispatches to. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "msg.h"

#define OPCTL_SOCKET_DEFAULT "/run/opd/opd.sock"
#define OPCTL_FRAME_MAX      (64u * 1024u * 1024u) /* largest frame opctl sends or accepts */
#define OPCTL_INPUT_MAX      OPCTL_FRAME_MAX       /* largest program or stdin read locally */
#define OPCTL_WAIT_MS        10000u                /* default answer wait for ping and status */
#define OPCTL_RUN_MARGIN_MS  30000u                /* run: the program's timeout plus this */
#define OPCTL_RUN_TIMEOUT_MS 60000u  /* run without --timeout: opd's largest default */
#define OPCTL_COMPILE_MS     120000u /* run: a compiled language's compile phase, at most */
#define EXIT_COMPILE_ERROR   1       /* run: the program did not compile (as cc(1) exits) */

#define EXIT_FAIL      2   /* opd refused the request, or opctl could not do its part */
#define EXIT_TIMED_OUT 124 /* as timeout(1) */

struct opts {
        const char *socket;
        bool json;
        bool timings;
        uint64_t wait_ms; /* 0: by command */
        /* run */
        const char *lang;
        const char *code;
        const char *file; /* "-": standard input */
        const char *stdin_str;
        const char *mode;
        double timeout_s; /* 0: not given */
        const char **args;
        size_t n_args;
        const char **env;
        size_t n_env;
        const char **files_in; /* NAME=PATH: extra files */
        size_t n_files_in;
        const char **files_out; /* output_files, written back under their names */
        size_t n_files_out;
        /* limits: 0 when not given (none is 0 on the wire but output_max_bytes and
         * file_size_max_bytes, which keep has_* for it) */
        uint64_t cpu_time_ms, memory_bytes, max_processes, output_max, file_size_max;
        bool has_output_max, has_file_size_max;
        double compile_timeout_s; /* 0: not given */
        bool interactive;         /* stdin_stream: the terminal's input as it is typed */
        const char *run_only;     /* first run-only option seen, for the error message */
        /* snapshot push / list --remote: opctl talks to S3 itself */
        bool remote;
        const char *config;
        const char *s3_keys[8][2]; /* flags that set configuration keys */
        size_t n_s3_keys;
        int stream; /* run: 1 --stream, 0 --no-stream, -1 when stdout is a terminal */
        /* snapshot push --plain: whole files, multipart above a threshold */
        bool plain;
        uint64_t part_mib, threshold_mib; /* 0: the defaults */
        /* snapshot push --sign-key FILE [--serial N]; snapshot keygen --out FILE */
        const char *sign_key;
        uint64_t serial;
        uint64_t valid_for; /* push --valid-for, seconds (0: the signature never expires) */
        const char *out;
        /* session: the session an exec runs in (session_exec); open's idle timeout, lifetime */
        const char *session;
        const char *phase;  /* session exec --phase: all, compile or run */
        const char **cases; /* cases --case: each one case's stdin */
        size_t n_cases;
        double idle_timeout_s, lifetime_s; /* 0: not given */
        bool repl;                         /* session open --repl */
};

/* print.c */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int print_raw(const char *raw, size_t len);
int answer_error(json_t *answer);
void print_scalar(FILE *f, json_t *v);
void print_members(json_t *obj);
int write_stream(int fd, json_t *answer, const char *key);
/* The program's stdout and stderr from an answer (or its "compile") to opctl's, in the order the
 * guest read them ("output_order"); stdout then stderr when the answer has no order. 0, or the
 * exit status of a failure already reported. */
int write_output(json_t *answer);
/* The whole of path ("-": standard input), at most OPCTL_INPUT_MAX bytes. 0, or the exit status
 * of a failure already reported ("cannot read PATH: ..."). */
int read_input(const char *path, char **ret, size_t *ret_len);
/* A batch member's or a case's answer: *worst becomes 1 unless it ran with status ok, and
 * EXIT_FAIL when its output files could not be written. */
void note_run_status(json_t *answer, int *worst);

/* run.c */
int cmd_run(const struct opts *o);
/* The exec fields every flag of run sets, added to req (batch.c uses it for its members). */
int run_add_fields(const struct opts *o, json_t *req);
/* An answer's "files" (output_files) written to disk under their names; 0 or EXIT_FAIL. */
int run_write_files(json_t *answer);
/* The exit status a run's answer stands for. */
int run_exit_status(json_t *answer);

/* session.c: open, exec ID (cmd_run() with o->session), list, close ID */
int cmd_session(const struct opts *o, const char *action, const char *id);

/* batch.c */
int cmd_batch(const struct opts *o, const char *path);
/* JSON objects of text: one JSON array, else one object per non-empty line (*ret: an array). */
int parse_json_list(const char *what, const char *text, size_t len, json_t **ret);

/* cases.c: exec_cases, the cases of path (NULL: none) and of each --case */
int cmd_cases(const struct opts *o, const char *path);

/* status.c */
int cmd_ping(const struct opts *o);
int cmd_status(const struct opts *o);
int cmd_languages(const struct opts *o);
int cmd_metrics(const struct opts *o);
int cmd_reload(const struct opts *o);

/* snapshot.c */
int cmd_snapshot(const struct opts *o, const char *action);
int cmd_s3(const struct opts *o, const char *action);
int cmd_keygen(const struct opts *o);
