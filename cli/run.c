/* run.c: opctl run: the program and its input read locally, the exec request, the answer (or
 * its streamed events) written byte for byte, and the run's exit status. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "call.h"
#include "cleanup.h"
#include "msg.h"
#include "opctl.h"
#include "util.h"

static uint32_t seconds_to_ms(double s)
{
        double ms = s * 1000.0;
        uint64_t v = (uint64_t)ms;

        if ((double)v < ms)
                v++; /* round up: 0.0001 s is 1 ms, not 0 */
        return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* ---- local input ---- */

/* Request strings are JSON text: valid UTF-8 without NUL (protocol v1 has no binary input). */
static int check_text(const char *what, const char *s, size_t len)
{
        if (!op_utf8_valid(s, len))
                return fail("%s is not valid UTF-8 text (protocol 1 sends text only)", what);
        if (memchr(s, 0, len))
                return fail("%s holds a NUL byte (protocol 1 sends text only)", what);
        return 0;
}

static void print_ms(FILE *f, const char *label, json_t *v)
{
        if (json_is_number(v))
                fprintf(f, "%s %.1f ms", label, json_number_value(v));
        else
                fprintf(f, "%s - ms", label);
}

static void print_timings(json_t *answer, double rtt_ms)
{
        json_t *t = json_object_get(answer, "timings_ms");

        fputs("opctl: timings: ", stderr);
        print_ms(stderr, "queue", json_object_get(t, "queue"));
        print_ms(stderr, ", boot/resume", json_object_get(t, "boot_or_resume"));
        print_ms(stderr, ", run", json_object_get(t, "run"));
        /* guest_job: agents from 0.7.0 */
        if (json_object_get(t, "guest_job"))
                print_ms(stderr, " (in the guest", json_object_get(t, "guest_job"));
        print_ms(stderr, json_object_get(t, "guest_job") ? ", in the program" : " (in the program",
                 json_object_get(t, "guest_run"));
        print_ms(stderr, "), total", json_object_get(t, "total"));
        fprintf(stderr, "; round trip %.1f ms (", rtt_ms);
        print_scalar(stderr, json_object_get(answer, "mode"));
        fputs(", vm ", stderr);
        print_scalar(stderr, json_object_get(answer, "vm"));
        fputs(")\n", stderr);
}

int run_exit_status(json_t *answer)
{
        json_t *sig = json_object_get(answer, "signal");
        json_t *code = json_object_get(answer, "exit_code");

        if (json_is_true(json_object_get(answer, "timed_out")))
                return EXIT_TIMED_OUT;
        if (json_is_integer(sig) && json_integer_value(sig) > 0 && json_integer_value(sig) < 128)
                return 128 + (int)json_integer_value(sig);
        if (json_is_integer(code))
                return (int)(json_integer_value(code) & 0xff);
        return fail("opd's answer has no exit_code");
}

/* A compiled language's compile phase: its output first, as a shell running "cc && ./a.out"
 * shows it. -1 when the program ran next, else the exit status of opctl. */
static int write_compile(json_t *answer)
{
        json_t *c = json_object_get(answer, "compile");
        const char *status = json_string_value(json_object_get(answer, "status"));

        if (!json_is_object(c))
                return -1;
        if (write_output(c))
                return EXIT_FAIL;
        if (!status || strcmp(status, "compile_error") != 0)
                return -1;
        if (json_is_true(json_object_get(c, "timed_out")))
                fail("compilation ran past its time limit and was stopped");
        else if (json_is_true(json_object_get(c, "truncated")))
                fail("the compiler's output was cut at its limit and it was stopped");
        else
                fail("compilation failed");
        return EXIT_COMPILE_ERROR;
}

/* ---- the fields of an exec ---- */

/* --file-in NAME=PATH: the file's bytes, as text when they are UTF-8 without NUL, else base64. */
static int add_files_in(const struct opts *o, json_t *req)
{
        json_t *files;

        if (o->n_files_in == 0)
                return 0;
        files = json_array();
        if (!files || json_object_set_new(req, "files", files) < 0)
                return fail("out of memory");
        for (size_t i = 0; i < o->n_files_in; i++) {
                const char *eq = strchr(o->files_in[i], '=');
                _cleanup_free_ char *name = strndup(o->files_in[i], (size_t)(eq - o->files_in[i]));
                _cleanup_free_ char *data = NULL, *b64 = NULL;
                size_t len;
                json_t *f;
                int r;

                if (!name)
                        return fail("out of memory");
                r = op_read_file(eq + 1, OPCTL_INPUT_MAX, &data, &len);
                if (r < 0)
                        return fail("--file-in %s: cannot read %s: %s", name, eq + 1,
                                    r == -EFBIG ? "over 64 MiB" : strerror(-r));
                if (op_utf8_valid(data, len) && !memchr(data, 0, len))
                        f = json_pack("{s:s, s:s%}", "name", name, "content", data, len);
                else if ((b64 = op_base64_encode(data, len)))
                        f = json_pack("{s:s, s:s, s:s}", "name", name, "content", b64, "encoding",
                                      "base64");
                else
                        return fail("out of memory");
                if (!f)
                        return fail("--file-in %s: the name is not valid UTF-8", name);
                if (json_array_append_new(files, f) < 0)
                        return fail("out of memory");
        }
        return 0;
}

static int set_uint(json_t *req, const char *key, uint64_t v)
{
        if (json_object_set_new(req, key, json_integer((json_int_t)v)) < 0)
                return fail("out of memory");
        return 0;
}

int run_add_fields(const struct opts *o, json_t *req)
{
        uint32_t timeout_ms = o->timeout_s > 0 ? seconds_to_ms(o->timeout_s) : 0;

        if (o->n_args > 0) {
                json_t *a = json_array();

                if (!a || json_object_set_new(req, "args", a) < 0)
                        return fail("out of memory");
                for (size_t i = 0; i < o->n_args; i++)
                        if (json_array_append_new(a, json_string(o->args[i])) < 0)
                                return fail("--arg \"%s\" is not valid UTF-8", o->args[i]);
        }
        if (o->n_env > 0) {
                json_t *env = json_object();

                if (!env || json_object_set_new(req, "env", env) < 0)
                        return fail("out of memory");
                for (size_t i = 0; i < o->n_env; i++) {
                        const char *eq = strchr(o->env[i], '=');
                        _cleanup_free_ char *name = strndup(o->env[i], (size_t)(eq - o->env[i]));

                        if (!name)
                                return fail("out of memory");
                        if (json_object_set_new(env, name, json_string(eq + 1)) < 0)
                                return fail("--env %s is not valid UTF-8", o->env[i]);
                }
        }
        if (add_files_in(o, req))
                return EXIT_FAIL;
        if (o->n_files_out > 0) {
                json_t *names = json_array();

                if (!names || json_object_set_new(req, "output_files", names) < 0)
                        return fail("out of memory");
                for (size_t i = 0; i < o->n_files_out; i++)
                        if (json_array_append_new(names, json_string(o->files_out[i])) < 0)
                                return fail("--output-file \"%s\" is not valid UTF-8",
                                            o->files_out[i]);
        }
        if (timeout_ms && set_uint(req, "timeout_ms", timeout_ms))
                return EXIT_FAIL;
        if (o->compile_timeout_s > 0 &&
            set_uint(req, "compile_timeout_ms", seconds_to_ms(o->compile_timeout_s)))
                return EXIT_FAIL;
        if ((o->cpu_time_ms && set_uint(req, "cpu_time_ms", o->cpu_time_ms)) ||
            (o->memory_bytes && set_uint(req, "memory_bytes", o->memory_bytes)) ||
            (o->max_processes && set_uint(req, "max_processes", o->max_processes)) ||
            (o->has_output_max && set_uint(req, "output_max_bytes", o->output_max)) ||
            (o->has_file_size_max && set_uint(req, "file_size_max_bytes", o->file_size_max)))
                return EXIT_FAIL;
        if (o->mode && json_object_set_new(req, "mode", json_string(o->mode)) < 0)
                return fail("--mode is not valid UTF-8");
        return 0;
}

/* A name from opd's answer that may be written in the current directory: a plain file name
 * (opd accepts no other in output_files). */
static bool plain_name(const char *name)
{
        return name && name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 &&
               strcmp(name, "..") != 0;
}

int run_write_files(json_t *answer)
{
        json_t *files = json_object_get(answer, "files"), *f;
        size_t i;
        int ret = 0;

        json_array_foreach (files, i, f) {
                const char *name = json_string_value(json_object_get(f, "name"));
                const char *err = json_string_value(json_object_get(f, "error"));
                const char *b64 = json_string_value(json_object_get(f, "content_b64"));
                json_t *text = json_object_get(f, "content");
                _cleanup_free_ uint8_t *bytes = NULL;
                _cleanup_close_ int fd = -1;
                const void *data;
                size_t len;

                if (!plain_name(name)) {
                        ret = fail("opd sent an output file without a plain name");
                        continue;
                }
                if (err) {
                        ret = fail("output file %s: %s", name, err);
                        continue;
                }
                if (b64) {
                        if (op_base64_decode(b64, strlen(b64), &bytes, &len) < 0) {
                                ret = fail("output file %s: opd sent invalid base64", name);
                                continue;
                        }
                        data = bytes;
                } else if (json_is_string(text)) {
                        data = json_string_value(text);
                        len = json_string_length(text);
                } else {
                        ret = fail("output file %s: opd sent no content", name);
                        continue;
                }
                fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (fd < 0 || op_write_all(fd, data, len) < 0) {
                        ret =
                            fail("output file %s: cannot write it here: %s", name, strerror(errno));
                        continue;
                }
        }
        return ret ? EXIT_FAIL : 0;
}

/* ---- interactive: the terminal's input to the program as it is typed ---- */

struct forward {
        json_t *id;
};

static int forward_input(int sock, int in, void *userdata)
{
        struct forward *fw = userdata;
        _cleanup_(json_decrefp) json_t *frame = NULL;
        _cleanup_free_ char *buf = NULL, *b64 = NULL;
        char data[16384];
        size_t len;
        ssize_t k;
        int r;

        do
                k = read(in, data, sizeof(data));
        while (k < 0 && errno == EINTR);
        if (k < 0 && errno == EAGAIN)
                return 0;
        if (k < 0)
                k = 0; /* unreadable: as the end of the input */
        frame = json_pack("{s:s, s:O}", "op", "stdin", "id", fw->id);
        if (!frame)
                return -ENOMEM;
        if (k == 0)
                r = json_object_set_new(frame, "eof", json_true());
        else if (op_utf8_valid(data, (size_t)k) && !memchr(data, 0, (size_t)k))
                r = json_object_set_new(frame, "data", json_stringn(data, (size_t)k));
        else if ((b64 = op_base64_encode(data, (size_t)k)))
                r = json_object_set_new(frame, "data_b64", json_string(b64));
        else
                r = -1;
        if (r < 0)
                return -ENOMEM;
        r = op_frame_encode(frame, OPCTL_FRAME_MAX, &buf, &len);
        if (r < 0)
                return r;
        r = send_all(sock, buf, len, op_now_us() + 30 * 1000000ull);
        if (r < 0)
                return r;
        return k == 0 ? 1 : 0;
}

int cmd_run(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *req = NULL, *answer = NULL;
        _cleanup_free_ char *code = NULL, *in = NULL, *raw = NULL;
        size_t code_len = 0, in_len = 0, raw_len;
        bool code_from_stdin = o->file && strcmp(o->file, "-") == 0;
        bool run_phase = o->phase && strcmp(o->phase, "run") == 0;
        uint32_t timeout_ms = o->timeout_s > 0 ? seconds_to_ms(o->timeout_s) : 0;
        struct forward fw = {0};
        struct exchange_ext x = {.input_fd = o->interactive ? STDIN_FILENO : -1,
                                 .input = forward_input,
                                 .userdata = &fw};
        uint64_t t0;
        int r;

        if (!o->lang && !o->session)
                return fail("run needs --lang (opctl status lists the languages)");
        if (o->session && o->mode)
                return fail("--mode does not go with a session: its VM runs the program");
        if (run_phase && (o->code || o->file))
                return fail("--phase run runs what an earlier --phase compile built: no --code "
                            "or --file");
        if (!run_phase && !!o->code + !!o->file != 1)
                return fail("run needs the program: one of --code STR, --file PATH or -");

        if (run_phase)
                code = NULL;
        else if (o->code) {
                code = strdup(o->code);
                code_len = strlen(o->code);
                if (!code)
                        return fail("out of memory");
        } else if (code_from_stdin) {
                r = op_read_fd(STDIN_FILENO, OPCTL_INPUT_MAX, &code, &code_len);
                if (r < 0)
                        return fail("cannot read the program from standard input: %s",
                                    r == -EFBIG ? "over 64 MiB" : strerror(-r));
        } else {
                r = op_read_file(o->file, OPCTL_INPUT_MAX, &code, &code_len);
                if (r < 0)
                        return fail("cannot read %s: %s", o->file,
                                    r == -EFBIG ? "over 64 MiB" : strerror(-r));
        }
        if (code && check_text("the program", code, code_len))
                return EXIT_FAIL;

        if (o->stdin_str) {
                in = strdup(o->stdin_str);
                in_len = strlen(o->stdin_str);
                if (!in)
                        return fail("out of memory");
        } else if (!code_from_stdin && !o->interactive && !isatty(STDIN_FILENO)) {
                r = op_read_fd(STDIN_FILENO, OPCTL_INPUT_MAX, &in, &in_len);
                if (r == -EBADF) /* stdin closed: nothing to pass on */
                        in_len = 0;
                else if (r < 0)
                        return fail("cannot read standard input: %s",
                                    r == -EFBIG ? "over 64 MiB" : strerror(-r));
        }
        if (in && check_text("standard input", in, in_len))
                return EXIT_FAIL;

        req = json_pack("{s:I, s:s}", "id", (json_int_t)getpid(), "op",
                        o->session ? "session_exec" : "exec");
        if (!req || (code && json_object_set_new(req, "code", json_stringn(code, code_len)) < 0))
                return fail("out of memory");
        if (o->phase && json_object_set_new(req, "phase", json_string(o->phase)) < 0)
                return fail("out of memory");
        if (o->lang && json_object_set_new(req, "lang", json_string(o->lang)) < 0)
                return fail("the language name is not valid UTF-8");
        if (o->session && json_object_set_new(req, "session", json_string(o->session)) < 0)
                return fail("the session id is not valid UTF-8");
        if (in && in_len > 0 && json_object_set_new(req, "stdin", json_stringn(in, in_len)) < 0)
                return fail("out of memory");
        r = run_add_fields(o, req);
        if (r)
                return r;
        if (o->interactive && json_object_set_new(req, "stdin_stream", json_true()) < 0)
                return fail("out of memory");
        if ((o->stream == 1 || o->interactive ||
             (o->stream < 0 && !o->json && isatty(STDOUT_FILENO))) &&
            json_object_set_new(req, "stream", json_true()) < 0)
                return fail("out of memory");

        if (o->interactive && code_from_stdin)
                return fail("--interactive reads standard input: the program cannot come from it");
        fw.id = json_object_get(req, "id");
        t0 = op_now_us();
        r = exchange_ext(o->socket, o->json, req,
                         o->wait_ms ? o->wait_ms
                                    : (uint64_t)(timeout_ms ? timeout_ms : OPCTL_RUN_TIMEOUT_MS) +
                                          OPCTL_RUN_MARGIN_MS + OPCTL_COMPILE_MS,
                         &x, &answer, &raw, &raw_len);
        if (r)
                return r;
        if (o->timings && json_is_true(json_object_get(answer, "ok")))
                print_timings(answer, (double)(op_now_us() - t0) / 1000.0);
        if (o->json) {
                print_raw(raw, raw_len);
                if (!json_is_true(json_object_get(answer, "ok")))
                        return EXIT_FAIL;
                if (run_write_files(answer))
                        return EXIT_FAIL;
                return run_exit_status(answer);
        }
        if (!json_is_true(json_object_get(answer, "ok")))
                return answer_error(answer);
        r = write_compile(answer);
        if (r >= 0)
                return r;
        if (write_output(answer))
                return EXIT_FAIL;
        if (json_is_true(json_object_get(answer, "truncated")))
                fail("the program's output was cut at opd's limit (limit.output_max)");
        if (json_is_true(json_object_get(answer, "timed_out")))
                fail("the program ran past its time limit and was stopped");
        if (run_write_files(answer))
                return EXIT_FAIL;
        return run_exit_status(answer);
}
