/* opctl.c: the thin blocking client of opd: one request frame out on opd's UNIX socket, frames in
 * until the answer with the same id, printed for humans or as raw JSON; exit status from the run.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "msg.h"
#include "s3-config.h"
#include "s3-publish.h"
#include "util.h"

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
        const char *run_only; /* first run-only option seen, for the error message */
        /* snapshot push / list --remote: opctl talks to S3 itself */
        bool remote;
        const char *config;
        const char *s3_keys[8][2]; /* flags that set configuration keys */
        size_t n_s3_keys;
        int stream; /* run: 1 --stream, 0 --no-stream, -1 when stdout is a terminal */
        /* snapshot push --plain: whole files, multipart above a threshold */
        bool plain;
        uint64_t part_mib, threshold_mib; /* 0: the defaults */
};

static const char *socket_path;
/* run --stream --json: events are printed raw, one JSON line each, like the answer. */
static bool events_as_json;

static void help(FILE *f)
{
        fprintf(
            f,
            "Usage: opctl [OPTIONS] COMMAND\n"
            "\n"
            "Commands:\n"
            "  run      run a program: --lang L (--code STR | --file PATH | -) [RUN OPTIONS]\n"
            "  status   opd's languages, versions, pools and counters\n"
            "  languages  the languages opd serves: version, kind, aliases\n"
            "  ping     check that opd answers, and how fast\n"
            "  metrics  opd's metrics in Prometheus text format (docs/metrics.md)\n"
            "  reload   administrators: opd reads its configuration again (as on SIGHUP)\n"
            "  snapshot ACTION [--lang L]\n"
            "           administrators: create (--lang L), list, reload, verify or sync\n"
            "           (fetch new versions from S3 now) snapshots through opd;\n"
            "           push --lang L uploads the cache's current version to S3 (with\n"
            "           --plain: whole files, as aws s3 sync would, multipart from\n"
            "           --multipart-threshold MIB, default 64, in parts of --part-size\n"
            "           MIB, default 8) and\n"
            "           list --remote lists the bucket (opctl talks to S3 itself, with\n"
            "           opd's configuration: --config FILE, default /etc/opd/opd.conf,\n"
            "           and --cache-dir, --s3-bucket, --s3-region, --s3-endpoint,\n"
            "           --s3-prefix; credentials from the AWS environment)\n"
            "\n"
            "Options (anywhere on the line):\n"
            "  --socket PATH      opd's socket (default: $OPD_SOCKET, else " OPCTL_SOCKET_DEFAULT
            ")\n"
            "  --json             print opd's answer as it came, one JSON line on stdout\n"
            "  --timeout-ms N     stop waiting for opd's answer after N ms (default: %u for\n"
            "                     ping and status; for run, the run's timeout + %u)\n"
            "  -h, --help         this help\n"
            "  --version          opctl's version and protocol\n"
            "\n"
            "Run options:\n"
            "  -l, --lang L       language name or alias (opctl status lists them)\n"
            "  -c, --code STR     the program text\n"
            "  -f, --file PATH    read the program from PATH (\"-\": standard input)\n"
            "  -                  read the program from standard input\n"
            "  --stdin STR        the program's standard input; without it, opctl's own\n"
            "                     standard input is passed on when it is not a terminal and\n"
            "                     the program is not read from it (--stdin '' sends none)\n"
            "  --timeout SECONDS  the program's time limit, e.g. 2.5 (default: opd's)\n"
            "  --mode MODE        warm (a paused VM from the pool), cold (a freshly booted\n"
            "                     VM) or auto (warm when a pool serves the language; default)\n"
            "  -a, --arg A        an argument for the program (repeat for more)\n"
            "  -e, --env NAME=V   an environment variable for the program (repeat for more)\n"
            "  --timings          print where the time went, on stderr\n"
            "  --stream           print the output as it comes (the default when stdout is a\n"
            "                     terminal); with --json, each event is one JSON line\n"
            "  --no-stream        print the output once the program has ended\n"
            "\n"
            "The program's stdout and stderr are written byte for byte to opctl's.\n"
            "\n"
            "Exit status of run:\n"
            "  N        the program's exit code N\n"
            "  124      the program ran past its time limit (as timeout(1) does)\n"
            "  128+S    the program was killed by signal S\n"
            "  1        a compiled language's program did not compile (the compiler's\n"
            "           output is on stderr); --json tells this apart from exit code 1\n"
            "  2        opd refused or failed the request (\"opctl: CODE: MESSAGE\" on\n"
            "           stderr), or opctl could not do its part (usage, connection); a\n"
            "           program may exit 2 itself: --json tells the cases apart\n"
            "ping, status and metrics exit 0 on success and 2 on any failure.\n",
            OPCTL_WAIT_MS, OPCTL_RUN_MARGIN_MS);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
        va_list ap;

        fputs("opctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return EXIT_FAIL;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
        unsigned long long v;
        char *end;

        if (!*s || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_seconds(const char *s, double *ret)
{
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        /* also refuses NaN and infinities; the top is what timeout_ms (a uint32) can carry */
        if (!*s || errno || *end || !(v > 0) || v > 4294967.295)
                return -EINVAL;
        *ret = v;
        return 0;
}

static uint32_t seconds_to_ms(double s)
{
        double ms = s * 1000.0;
        uint64_t v = (uint64_t)ms;

        if ((double)v < ms)
                v++; /* round up: 0.0001 s is 1 ms, not 0 */
        return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* ---- local input ---- */

static int read_fd_all(int fd, size_t max, char **ret, size_t *ret_len)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        for (;;) {
                ssize_t k;

                if (len == cap) {
                        char *nb;

                        if (len > max)
                                return -EFBIG;
                        cap = cap ? cap * 2 : 65536;
                        nb = realloc(buf, cap + 1);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                }
                k = read(fd, buf + len, cap - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t)k;
        }
        if (len > max)
                return -EFBIG;
        if (!buf && !(buf = malloc(1)))
                return -ENOMEM;
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* Request strings are JSON text: valid UTF-8 without NUL (protocol v1 has no binary input). */
static int check_text(const char *what, const char *s, size_t len)
{
        if (!op_utf8_valid(s, len))
                return fail("%s is not valid UTF-8 text (protocol 1 sends text only)", what);
        if (memchr(s, 0, len))
                return fail("%s holds a NUL byte (protocol 1 sends text only)", what);
        return 0;
}

/* ---- the connection ---- */

static int connect_opd(const char *path, int *ret_fd)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        size_t n = strlen(path);

        if (n == 0 || n >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, n + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                if (errno != EINTR)
                        return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int connect_error(int r)
{
        const char *hint = "";

        if (r == -ENOENT || r == -ECONNREFUSED)
                hint = " (is opd running? set --socket or OPD_SOCKET)";
        else if (r == -EACCES || r == -EPERM)
                hint = " (is your user allowed to use opd's socket?)";
        else if (r == -ENAMETOOLONG)
                return fail("cannot connect to %s: socket path is empty or longer than %zu bytes",
                            socket_path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return fail("cannot connect to %s: %s%s", socket_path, strerror(-r), hint);
}

/* Wait until fd is ready for events, or -ETIMEDOUT at deadline (CLOCK_MONOTONIC us). */
static int wait_fd(int fd, short events, uint64_t deadline)
{
        for (;;) {
                struct pollfd p = {.fd = fd, .events = events};
                uint64_t now = op_now_us(), left_ms;
                int r;

                if (now >= deadline)
                        return -ETIMEDOUT;
                left_ms = (deadline - now + 999) / 1000;
                r = poll(&p, 1, left_ms > INT_MAX ? INT_MAX : (int)left_ms);
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r > 0)
                        return 0;
        }
}

static int send_all(int fd, const char *buf, size_t n, uint64_t deadline)
{
        while (n > 0) {
                ssize_t k = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                int r;

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        r = wait_fd(fd, POLLOUT, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                buf += k;
                n -= (size_t)k;
        }
        return 0;
}

struct inbuf {
        char *p;
        size_t len, cap;
};

/* Read until buf starts with one whole frame. -EPIPE: opd closed the connection;
 * -EMSGSIZE: the frame announced is over OPCTL_FRAME_MAX; -ETIMEDOUT. */
static int read_frame(int fd, struct inbuf *b, uint64_t deadline, struct op_frame *ret)
{
        for (;;) {
                size_t want;
                ssize_t k;
                int r;

                r = op_frame_next(b->p, b->len, OPCTL_FRAME_MAX, ret);
                if (r != 0)
                        return r < 0 ? r : 0;
                want = OP_FRAME_HEADER_SIZE;
                if (b->len >= OP_FRAME_HEADER_SIZE)
                        want += (size_t)((uint8_t)b->p[0]) << 24 |
                                (size_t)((uint8_t)b->p[1]) << 16 | (size_t)((uint8_t)b->p[2]) << 8 |
                                (uint8_t)b->p[3];
                if (want < 65536)
                        want = 65536;
                if (b->cap < want) {
                        char *np = realloc(b->p, want);
                        if (!np)
                                return -ENOMEM;
                        b->p = np;
                        b->cap = want;
                }
                r = wait_fd(fd, POLLIN, deadline);
                if (r < 0)
                        return r;
                k = recv(fd, b->p + b->len, b->cap - b->len, MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return errno == ECONNRESET ? -EPIPE : -errno;
                }
                if (k == 0)
                        return -EPIPE;
                b->len += (size_t)k;
        }
}

static void consume(struct inbuf *b, size_t n)
{
        memmove(b->p, b->p + n, b->len - n);
        b->len -= n;
}

static uint32_t frame_announced(const struct inbuf *b)
{
        const uint8_t *p = (const uint8_t *)b->p;

        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int write_stream(int fd, json_t *answer, const char *key);

/* A streamed output event of our request: its bytes to our stdout or stderr. */
static int print_event(json_t *ev, const char *raw, size_t len)
{
        const char *name = json_string_value(json_object_get(ev, "event"));

        if (events_as_json)
                return op_write_all(STDOUT_FILENO, raw, len) < 0 ||
                               op_write_all(STDOUT_FILENO, "\n", 1) < 0
                           ? EXIT_FAIL
                           : 0;
        if (name && strcmp(name, "stdout") == 0)
                return write_stream(STDOUT_FILENO, ev, "data");
        if (name && strcmp(name, "stderr") == 0)
                return write_stream(STDERR_FILENO, ev, "data");
        return 0; /* an event opctl does not know: clients ignore those */
}

/* Send req and wait for its answer: the frame whose "id" equals req's, or an error frame with a
 * null id (opd could not tell which request it answers; we sent only one). On success *ret_answer
 * is the parsed answer and *ret_raw (*ret_raw_len bytes) its exact JSON text. Prints its own errors
 * and returns EXIT_FAIL on failure. */
static int exchange(json_t *req, uint64_t wait_ms, json_t **ret_answer, char **ret_raw,
                    size_t *ret_raw_len)
{
        _cleanup_free_ char *frame = NULL;
        _cleanup_close_ int fd = -1;
        struct inbuf b = {0};
        size_t frame_len;
        uint64_t deadline;
        json_t *id = json_object_get(req, "id");
        bool sent = true;
        int r;

        r = op_frame_encode(req, OPCTL_FRAME_MAX, &frame, &frame_len);
        if (r == -EMSGSIZE)
                return fail("the request is over the %u MiB frame limit", OPCTL_FRAME_MAX >> 20);
        if (r < 0)
                return fail("cannot encode the request: %s", strerror(-r));

        r = connect_opd(socket_path, &fd);
        if (r < 0)
                return connect_error(r);

        deadline = op_now_us() + wait_ms * 1000;
        r = send_all(fd, frame, frame_len, deadline);
        if (r == -ETIMEDOUT)
                return fail("opd did not take the request within %llu ms",
                            (unsigned long long)wait_ms);
        if (r == -EPIPE || r == -ECONNRESET)
                sent = false; /* opd may have said why before closing: read on */
        else if (r < 0)
                return fail("cannot send to %s: %s", socket_path, strerror(-r));

        for (;;) {
                _cleanup_(json_decrefp) json_t *answer = NULL;
                struct op_frame f;
                char err[256];
                json_t *aid;

                r = read_frame(fd, &b, deadline, &f);
                if (r < 0) {
                        int saved = r;

                        if (saved == -EMSGSIZE)
                                r = fail("opd sent a frame of %" PRIu32
                                         " bytes, over the client limit of %u MiB",
                                         frame_announced(&b), OPCTL_FRAME_MAX >> 20);
                        else if (saved == -EPIPE && !sent)
                                r = fail("connection closed by opd while sending the request");
                        else if (saved == -EPIPE)
                                r = fail("connection closed by opd before the answer");
                        else if (saved == -ETIMEDOUT)
                                r = fail("no answer from opd within %llu ms (see --timeout-ms)",
                                         (unsigned long long)wait_ms);
                        else
                                r = fail("cannot read from %s: %s", socket_path, strerror(-saved));
                        free(b.p);
                        return r;
                }
                if (op_parse_object(b.p + f.payload_offset, f.payload_len, &answer, err,
                                    sizeof(err)) < 0) {
                        free(b.p);
                        return fail("opd sent an invalid frame: %s", err);
                }
                aid = json_object_get(answer, "id");
                if (json_equal(aid, id) && json_object_get(answer, "event")) {
                        r = print_event(answer, b.p + f.payload_offset, f.payload_len);
                        consume(&b, f.frame_len);
                        if (r) {
                                free(b.p);
                                return r;
                        }
                        continue;
                }
                if (json_equal(aid, id) ||
                    ((!aid || json_is_null(aid)) && json_is_false(json_object_get(answer, "ok")))) {
                        char *raw = malloc(f.payload_len + 1);

                        if (!raw) {
                                free(b.p);
                                return fail("out of memory");
                        }
                        memcpy(raw, b.p + f.payload_offset, f.payload_len);
                        raw[f.payload_len] = 0;
                        free(b.p);
                        *ret_answer = TAKE_PTR(answer);
                        *ret_raw = raw;
                        *ret_raw_len = f.payload_len;
                        return 0;
                }
                consume(&b, f.frame_len); /* an answer to someone else: not ours to read */
        }
}

/* ---- printing answers ---- */

static int print_raw(const char *raw, size_t len)
{
        if (op_write_all(STDOUT_FILENO, raw, len) < 0 || op_write_all(STDOUT_FILENO, "\n", 1) < 0)
                return -EIO;
        return 0;
}

/* An answer with "ok": false: "opctl: CODE: MESSAGE", exit 2. */
static int answer_error(json_t *answer)
{
        json_t *e = json_object_get(answer, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));

        return fail("%s: %s", code ? code : "internal_error", msg ? msg : "(no message)");
}

static void print_scalar(FILE *f, json_t *v)
{
        _cleanup_free_ char *s = NULL;

        if (json_is_string(v))
                fputs(json_string_value(v), f);
        else if (json_is_integer(v))
                fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v))
                fprintf(f, "%g", json_real_value(v));
        else if (!v || json_is_null(v))
                fputs("-", f);
        else if ((s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)))
                fputs(s, f);
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
        print_ms(stderr, " (in the program", json_object_get(t, "guest_run"));
        print_ms(stderr, "), total", json_object_get(t, "total"));
        fprintf(stderr, "; round trip %.1f ms (", rtt_ms);
        print_scalar(stderr, json_object_get(answer, "mode"));
        fputs(", vm ", stderr);
        print_scalar(stderr, json_object_get(answer, "vm"));
        fputs(")\n", stderr);
}

static int write_stream(int fd, json_t *answer, const char *key)
{
        _cleanup_free_ char *bytes = NULL;
        size_t len;
        int r;

        r = op_json_get_bytes(answer, key, OPCTL_FRAME_MAX, &bytes, &len);
        if (r < 0)
                return fail("opd's answer has a malformed \"%s\": %s", key, strerror(-r));
        r = op_write_all(fd, bytes, len);
        if (r < 0 && r != -EPIPE)
                return fail("cannot write the program's %s: %s", key, strerror(-r));
        return 0;
}

/* ---- commands ---- */

/* The shared part of ping, status and snapshot: send req, wait for the answer. Returns -1 with
 * *ret_answer set when the caller has to print a successful answer, else the exit status
 * (the answer was printed raw for --json, or it was an error and has been reported). */
static int call(const struct opts *o, json_t *req, uint64_t default_wait_ms, json_t **ret_answer)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        _cleanup_free_ char *raw = NULL;
        size_t raw_len;
        int r;

        r = exchange(req, o->wait_ms ? o->wait_ms : default_wait_ms, &answer, &raw, &raw_len);
        if (r)
                return r;
        if (o->json) {
                print_raw(raw, raw_len);
                return json_is_true(json_object_get(answer, "ok")) ? 0 : EXIT_FAIL;
        }
        if (!json_is_true(json_object_get(answer, "ok")))
                return answer_error(answer);
        *ret_answer = TAKE_PTR(answer);
        return -1;
}

/* call() for an op that takes nothing but its id. */
static int call_op(const struct opts *o, const char *op, json_t **ret_answer)
{
        _cleanup_(json_decrefp) json_t *req =
            json_pack("{s:I, s:s}", "id", (json_int_t)getpid(), "op", op);

        if (!req)
                return fail("out of memory");
        return call(o, req, OPCTL_WAIT_MS, ret_answer);
}

static int cmd_ping(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        uint64_t t0;
        int r;

        t0 = op_now_us();
        r = call_op(o, "ping", &answer);
        if (r >= 0)
                return r;
        printf("pong (opd ");
        print_scalar(stdout, json_object_get(answer, "version"));
        printf(", protocol ");
        print_scalar(stdout, json_object_get(answer, "proto"));
        printf(") in %.2f ms\n", (double)(op_now_us() - t0) / 1000.0);
        return 0;
}

static void print_uptime(json_t *v)
{
        long long s = json_is_integer(v) ? (long long)json_integer_value(v)
                      : json_is_real(v)  ? (long long)json_real_value(v)
                                         : -1;

        if (s < 0)
                printf("-");
        else if (s >= 86400)
                printf("%lldd %02lldh", s / 86400, s % 86400 / 3600);
        else if (s >= 3600)
                printf("%lldh %02lldm", s / 3600, s % 3600 / 60);
        else if (s >= 60)
                printf("%lldm %02llds", s / 60, s % 60);
        else
                printf("%llds", s);
}

/* "k=v k=v" for every member of an object, in the order opd sent them. */
static void print_members(json_t *obj)
{
        const char *k;
        json_t *v;
        bool first = true;

        if (!json_is_object(obj) || json_object_size(obj) == 0) {
                printf("-");
                return;
        }
        json_object_foreach (obj, k, v) {
                printf("%s%s=", first ? "" : " ", k);
                print_scalar(stdout, v);
                first = false;
        }
}

static char *aliases_text(json_t *lang)
{
        json_t *a = json_object_get(lang, "aliases"), *v;
        char *s = NULL;
        size_t len = 0, i;
        FILE *f = open_memstream(&s, &len);

        if (!f)
                return NULL;
        json_array_foreach (a, i, v) {
                fprintf(f, "%s%s", i ? ", " : "", json_is_string(v) ? json_string_value(v) : "?");
        }
        if (json_array_size(a) == 0)
                fputs("-", f);
        fclose(f);
        return s;
}

static int cmd_metrics(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        json_t *text;
        int r;

        r = call_op(o, "metrics", &answer);
        if (r >= 0)
                return r;
        text = json_object_get(answer, "text");
        if (!json_is_string(text))
                return fail("opd's metrics answer has no text");
        fwrite(json_string_value(text), 1, json_string_length(text), stdout);
        return 0;
}

static int cmd_status(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        size_t i;
        json_t *langs, *l;
        int wname = 8, wver = 7, walias = 7;
        int r;

        r = call_op(o, "status", &answer);
        if (r >= 0)
                return r;

        printf("opd ");
        print_scalar(stdout, json_object_get(answer, "version"));
        printf(", protocol ");
        print_scalar(stdout, json_object_get(answer, "proto"));
        printf(", up ");
        print_uptime(json_object_get(answer, "uptime_s"));
        printf(", vmm ");
        print_scalar(stdout, json_object_get(answer, "vmm"));
        printf(" (");
        print_scalar(stdout, json_object_get(answer, "accel"));
        printf(")\n\n");

        langs = json_object_get(answer, "languages");
        json_array_foreach (langs, i, l) {
                const char *n = json_string_value(json_object_get(l, "name"));
                const char *v = json_string_value(json_object_get(l, "version"));
                _cleanup_free_ char *al = aliases_text(l);

                if (n && (int)strlen(n) > wname)
                        wname = (int)strlen(n);
                if (v && (int)strlen(v) > wver)
                        wver = (int)strlen(v);
                if (al && (int)strlen(al) > walias)
                        walias = (int)strlen(al);
        }
        printf("%-*s  %-*s  %-*s  %s\n", wname, "LANGUAGE", wver, "VERSION", walias, "ALIASES",
               "POOL");
        json_array_foreach (langs, i, l) {
                const char *n = json_string_value(json_object_get(l, "name"));
                const char *v = json_string_value(json_object_get(l, "version"));
                _cleanup_free_ char *al = aliases_text(l);

                printf("%-*s  %-*s  %-*s  ", wname, n ? n : "?", wver, v ? v : "-", walias,
                       al ? al : "-");
                print_members(json_object_get(l, "pool"));
                printf("\n");
        }
        if (json_array_size(langs) == 0)
                printf("(no languages)\n");
        printf("\ncounters: ");
        print_members(json_object_get(answer, "counters"));
        printf("\n");
        return 0;
}

/* languages: what status says about each language, as a table of what a user can run. */
static int cmd_languages(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        json_t *langs, *l;
        size_t i;
        int r;

        r = call_op(o, "status", &answer);
        if (r >= 0)
                return r;
        langs = json_object_get(answer, "languages");
        printf("%-10s %-12s %-11s %-12s %s\n", "LANGUAGE", "VERSION", "KIND", "STATE", "ALIASES");
        json_array_foreach (langs, i, l) {
                const char *n = json_string_value(json_object_get(l, "name"));
                const char *v = json_string_value(json_object_get(l, "version"));
                _cleanup_free_ char *al = aliases_text(l);
                const char *state = !json_is_true(json_object_get(l, "available")) ? "no image"
                                    : !json_is_true(json_object_get(l, "enabled")) ? "disabled"
                                                                                   : "served";

                printf("%-10s %-12s %-11s %-12s %s\n", n ? n : "?", v ? v : "-",
                       json_is_true(json_object_get(l, "compiled")) ? "compiled" : "interpreted",
                       state, al ? al : "-");
        }
        return 0;
}

/* snapshot create|list|reload [--lang L]: administrators only (opd checks). */
static int cmd_snapshot(const struct opts *o, const char *action)
{
        _cleanup_(json_decrefp) json_t *req = NULL, *answer = NULL;
        const char *key;
        size_t i;
        json_t *v, *ver;
        int r;

        if (strcmp(action, "create") == 0 && !o->lang)
                return fail("snapshot create needs --lang");
        req = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)getpid(), "op", "snapshot", "action",
                        action);
        if (!req || (o->lang && json_object_set_new(req, "lang", json_string(o->lang)) < 0))
                return fail("out of memory");
        /* Making a snapshot boots a VM and warms its runtime: minutes under emulation. */
        r = call(o, req, 15 * 60 * 1000, &answer);
        if (r >= 0)
                return r;
        if (strcmp(action, "create") == 0) {
                printf("%s: snapshot %s installed%s (", o->lang,
                       json_string_value(json_object_get(answer, "version")),
                       json_is_true(json_object_get(answer, "warm")) ? ", runtime warm" : "");
                print_members(json_object_get(answer, "sizes"));
                printf(" bytes)\n");
        } else if (strcmp(action, "list") == 0) {
                json_object_foreach (json_object_get(answer, "languages"), key, v) {
                        const char *serving = json_string_value(json_object_get(v, "serving"));
                        printf("%s (serving: %s)\n", key, serving ? serving : "none");
                        json_array_foreach (json_object_get(v, "versions"), i, ver) {
                                printf("  %s%s  ",
                                       json_string_value(json_object_get(ver, "version")),
                                       json_is_true(json_object_get(ver, "current")) ? " *" : "  ");
                                print_members(ver);
                                printf("\n");
                        }
                }
        } else if (strcmp(action, "sync") == 0 || strcmp(action, "verify") == 0) {
                bool all = true;

                json_object_foreach (json_object_get(answer, "languages"), key, v) {
                        const char *err = json_string_value(json_object_get(v, "error"));
                        printf("%s: ", key);
                        if (err) {
                                all = false;
                                printf("FAILED: %s\n", err);
                                continue;
                        }
                        print_members(v);
                        printf("\n");
                }
                return all ? 0 : EXIT_FAIL;
        } else
                printf("ok\n");
        return 0;
}

/* snapshot push --plain: the current version as whole files, multipart from the threshold. */
static int push_plain(const struct opts *o, const struct op_config *cfg, struct s3_client *client,
                      const struct s3_location *l)
{
        struct s3_put_opts po = {
            .threshold = o->threshold_mib ? o->threshold_mib << 20 : S3_MULTIPART_THRESHOLD_DEFAULT,
            .part_size = o->part_mib ? o->part_mib << 20 : S3_PART_SIZE_DEFAULT,
            .parallel = cfg->s3_parallel};
        struct s3_put_stats st = {0};
        uint64_t t0 = op_now_us();
        char err[1024];
        int r = s3_push_plain(client, l, cfg->s3_prefix, cfg->cache_dir, o->lang, NULL, &po, &st,
                              err, sizeof(err));

        if (r < 0)
                return fail("push --plain to s3://%s (%s): %s", l->bucket, l->region, err);
        if (o->json)
                printf("{\"bucket\":\"%s\",\"layout\":\"plain\",\"objects\":%u,"
                       "\"multipart\":%u,\"parts\":%u,\"bytes_uploaded\":%" PRIu64 "}\n",
                       l->bucket, st.objects, st.multipart, st.parts, st.bytes);
        else
                printf("%s: pushed to s3://%s/%s (plain layout): %u files, %u of them in %u "
                       "parts, %" PRIu64 " bytes, in %.1f s\n",
                       o->lang, l->bucket, cfg->s3_prefix, st.objects, st.multipart, st.parts,
                       st.bytes, (double)(op_now_us() - t0) / 1e6);
        return 0;
}

/* snapshot push / list --remote: opctl is the S3 client here, with opd's configuration. */
static int cmd_s3(const struct opts *o, const char *action)
{
        struct op_config cfg;
        struct s3_location locs[S3_LOCATIONS_MAX];
        struct s3_creds creds = {0};
        struct s3_client_opts copts = S3_CLIENT_OPTS_DEFAULT;
        struct s3_client *client = NULL;
        struct event_base *base = NULL;
        const char *config = o->config;
        size_t n = 0;
        char err[768];
        int r, status = EXIT_FAIL;

        if (op_config_init(&cfg) < 0)
                return fail("out of memory");
        if (!config && access("/etc/opd/opd.conf", R_OK) == 0)
                config = "/etc/opd/opd.conf";
        r = config ? op_config_load(&cfg, config, err, sizeof(err)) : 0;
        for (size_t i = 0; r >= 0 && i < o->n_s3_keys; i++)
                r = op_config_set(&cfg, o->s3_keys[i][0], o->s3_keys[i][1], err, sizeof(err));
        if (r >= 0)
                r = op_config_check(&cfg, err, sizeof(err));
        if (r >= 0)
                r = s3_config_locations(&cfg, locs, &n, err, sizeof(err));
        if (r >= 0 && n == 0)
                r = op_errf(err, sizeof(err), -EINVAL, "no S3 bucket (s3.bucket, --s3-bucket)");
        if (r >= 0)
                r = s3_creds_load(getenv, &creds, err, sizeof(err));
        copts.retries = cfg.s3_retries;
        if (r >= 0 && !(base = event_base_new()))
                r = op_errf(err, sizeof(err), -ENOMEM, "out of memory");
        if (r >= 0 && (r = s3_client_new(base, &creds, &copts, &client)) < 0)
                op_errf(err, sizeof(err), r, "cannot start the S3 client");
        if (r < 0) {
                fail("%s", err);
                goto out;
        }
        status = 0;
        for (size_t i = 0; i < n; i++) {
                const struct s3_location *l = &locs[i];

                if (strcmp(action, "push") == 0 && o->plain) {
                        if (push_plain(o, &cfg, client, l) != 0)
                                status = EXIT_FAIL;
                } else if (strcmp(action, "push") == 0) {
                        struct s3_push_stats st;
                        uint64_t t0 = op_now_us();

                        r = s3_push(client, l, cfg.s3_prefix, cfg.cache_dir, o->lang, NULL,
                                    cfg.s3_parallel, &st, err, sizeof(err));
                        if (r < 0) {
                                status =
                                    fail("push to s3://%s (%s): %s", l->bucket, l->region, err);
                                continue;
                        }
                        if (o->json)
                                printf("{\"bucket\":\"%s\",\"chunks\":%u,\"uploaded\":%u,"
                                       "\"zero\":%u,\"bytes_uploaded\":%" PRIu64 "}\n",
                                       l->bucket, st.chunks, st.uploaded, st.zero,
                                       st.bytes_uploaded);
                        else
                                printf("%s: pushed to s3://%s/%s: %u chunks, %u uploaded (%" PRIu64
                                       " bytes), %u of zeros, in %.1f s\n",
                                       o->lang, l->bucket, cfg.s3_prefix, st.chunks, st.uploaded,
                                       st.bytes_uploaded, st.zero,
                                       (double)(op_now_us() - t0) / 1e6);
                } else {
                        _cleanup_(json_decrefp) json_t *list = NULL;
                        _cleanup_free_ char *text = NULL;

                        r = s3_remote_list(client, l, cfg.s3_prefix, &list, err, sizeof(err));
                        if (r < 0) {
                                status = fail("list s3://%s (%s): %s", l->bucket, l->region, err);
                                continue;
                        }
                        text = json_dumps(list, JSON_SORT_KEYS | JSON_COMPACT);
                        if (o->json) {
                                printf("%s\n", text ? text : "{}");
                        } else {
                                const char *key;
                                json_t *v, *ver;
                                size_t k;

                                printf("s3://%s/%s (%s)\n", l->bucket, cfg.s3_prefix, l->region);
                                json_object_foreach (list, key, v) {
                                        const char *cur =
                                            json_string_value(json_object_get(v, "current"));
                                        printf("%s (current: %s)\n", key, cur ? cur : "none");
                                        json_array_foreach (json_object_get(v, "versions"), k, ver)
                                                printf("  %s%s\n", json_string_value(ver),
                                                       cur && !strcmp(cur, json_string_value(ver))
                                                           ? " *"
                                                           : "");
                                }
                        }
                        break; /* the first location that answers */
                }
        }
out:
        s3_client_free(client);
        if (base)
                event_base_free(base);
        s3_creds_free(&creds);
        s3_locations_free(locs, n);
        op_config_free(&cfg);
        return status;
}

/* reload: opd builds its configuration again and applies it (administrators only). */
static int cmd_reload(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        int r;

        r = call_op(o, "reload", &answer);
        if (r >= 0)
                return r;
        printf("reloaded\n");
        return 0;
}

static int run_exit_status(json_t *answer)
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
        if (write_stream(STDOUT_FILENO, c, "stdout") || write_stream(STDERR_FILENO, c, "stderr"))
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

static int cmd_run(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *req = NULL, *answer = NULL;
        _cleanup_free_ char *code = NULL, *in = NULL, *raw = NULL;
        size_t code_len, in_len = 0, raw_len;
        bool code_from_stdin = o->file && strcmp(o->file, "-") == 0;
        uint32_t timeout_ms = o->timeout_s > 0 ? seconds_to_ms(o->timeout_s) : 0;
        uint64_t t0;
        int r;

        if (!o->lang)
                return fail("run needs --lang (opctl status lists the languages)");
        if (!!o->code + !!o->file != 1)
                return fail("run needs the program: one of --code STR, --file PATH or -");

        if (o->code) {
                code = strdup(o->code);
                code_len = strlen(o->code);
                if (!code)
                        return fail("out of memory");
        } else if (code_from_stdin) {
                r = read_fd_all(STDIN_FILENO, OPCTL_INPUT_MAX, &code, &code_len);
                if (r < 0)
                        return fail("cannot read the program from standard input: %s",
                                    r == -EFBIG ? "over 64 MiB" : strerror(-r));
        } else {
                r = op_read_file(o->file, OPCTL_INPUT_MAX, &code, &code_len);
                if (r < 0)
                        return fail("cannot read %s: %s", o->file,
                                    r == -EFBIG ? "over 64 MiB" : strerror(-r));
        }
        if (check_text("the program", code, code_len))
                return EXIT_FAIL;

        if (o->stdin_str) {
                in = strdup(o->stdin_str);
                in_len = strlen(o->stdin_str);
                if (!in)
                        return fail("out of memory");
        } else if (!code_from_stdin && !isatty(STDIN_FILENO)) {
                r = read_fd_all(STDIN_FILENO, OPCTL_INPUT_MAX, &in, &in_len);
                if (r == -EBADF) /* stdin closed: nothing to pass on */
                        in_len = 0;
                else if (r < 0)
                        return fail("cannot read standard input: %s",
                                    r == -EFBIG ? "over 64 MiB" : strerror(-r));
        }
        if (in && check_text("standard input", in, in_len))
                return EXIT_FAIL;

        req = json_pack("{s:I, s:s, s:s, s:s%}", "id", (json_int_t)getpid(), "op", "exec", "lang",
                        o->lang, "code", code, code_len);
        if (!req)
                return fail("the language name is not valid UTF-8");
        if (in && in_len > 0 && json_object_set_new(req, "stdin", json_stringn(in, in_len)) < 0)
                return fail("out of memory");
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
        if (timeout_ms && json_object_set_new(req, "timeout_ms", json_integer(timeout_ms)) < 0)
                return fail("out of memory");
        if (o->mode && json_object_set_new(req, "mode", json_string(o->mode)) < 0)
                return fail("--mode is not valid UTF-8");
        if ((o->stream == 1 || (o->stream < 0 && !o->json && isatty(STDOUT_FILENO))) &&
            json_object_set_new(req, "stream", json_true()) < 0)
                return fail("out of memory");
        events_as_json = o->json;

        t0 = op_now_us();
        r = exchange(req,
                     o->wait_ms ? o->wait_ms
                                : (uint64_t)(timeout_ms ? timeout_ms : OPCTL_RUN_TIMEOUT_MS) +
                                      OPCTL_RUN_MARGIN_MS + OPCTL_COMPILE_MS,
                     &answer, &raw, &raw_len);
        if (r)
                return r;
        if (o->timings && json_is_true(json_object_get(answer, "ok")))
                print_timings(answer, (double)(op_now_us() - t0) / 1000.0);
        if (o->json) {
                print_raw(raw, raw_len);
                if (!json_is_true(json_object_get(answer, "ok")))
                        return EXIT_FAIL;
                return run_exit_status(answer);
        }
        if (!json_is_true(json_object_get(answer, "ok")))
                return answer_error(answer);
        r = write_compile(answer);
        if (r >= 0)
                return r;
        if (write_stream(STDOUT_FILENO, answer, "stdout") ||
            write_stream(STDERR_FILENO, answer, "stderr"))
                return EXIT_FAIL;
        if (json_is_true(json_object_get(answer, "truncated")))
                fail("the program's output was cut at opd's limit (limit.output_max)");
        if (json_is_true(json_object_get(answer, "timed_out")))
                fail("the program ran past its time limit and was stopped");
        return run_exit_status(answer);
}

/* ---- main ---- */

enum {
        ARG_SOCKET = 0x100,
        ARG_JSON,
        ARG_TIMEOUT_MS,
        ARG_TIMINGS,
        ARG_STDIN,
        ARG_TIMEOUT,
        ARG_MODE,
        ARG_VERSION,
        ARG_REMOTE,
        ARG_CONFIG,
        ARG_CACHE_DIR,
        ARG_S3_BUCKET,
        ARG_S3_REGION,
        ARG_S3_ENDPOINT,
        ARG_S3_PREFIX,
        ARG_STREAM,
        ARG_NO_STREAM,
        ARG_PLAIN,
        ARG_PART_SIZE,
        ARG_MULTIPART_THRESHOLD,
};

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"socket", required_argument, NULL, ARG_SOCKET},
            {"json", no_argument, NULL, ARG_JSON},
            {"timeout-ms", required_argument, NULL, ARG_TIMEOUT_MS},
            {"timings", no_argument, NULL, ARG_TIMINGS},
            {"lang", required_argument, NULL, 'l'},
            {"code", required_argument, NULL, 'c'},
            {"file", required_argument, NULL, 'f'},
            {"stdin", required_argument, NULL, ARG_STDIN},
            {"timeout", required_argument, NULL, ARG_TIMEOUT},
            {"mode", required_argument, NULL, ARG_MODE},
            {"stream", no_argument, NULL, ARG_STREAM},
            {"no-stream", no_argument, NULL, ARG_NO_STREAM},
            {"arg", required_argument, NULL, 'a'},
            {"env", required_argument, NULL, 'e'},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, ARG_VERSION},
            {"remote", no_argument, NULL, ARG_REMOTE},
            {"config", required_argument, NULL, ARG_CONFIG},
            {"cache-dir", required_argument, NULL, ARG_CACHE_DIR},
            {"s3-bucket", required_argument, NULL, ARG_S3_BUCKET},
            {"s3-region", required_argument, NULL, ARG_S3_REGION},
            {"s3-endpoint", required_argument, NULL, ARG_S3_ENDPOINT},
            {"s3-prefix", required_argument, NULL, ARG_S3_PREFIX},
            {"plain", no_argument, NULL, ARG_PLAIN},
            {"part-size", required_argument, NULL, ARG_PART_SIZE},
            {"multipart-threshold", required_argument, NULL, ARG_MULTIPART_THRESHOLD},
            {0},
        };
        _cleanup_free_ const char **args = calloc((size_t)argc + 1, sizeof(char *));
        _cleanup_free_ const char **env = calloc((size_t)argc + 1, sizeof(char *));
        struct opts o = {.args = args, .env = env, .stream = -1};
        const char *cmd, *stdin_dash = NULL;
        int c;

        if (!args || !env)
                return fail("out of memory");
        o.socket = getenv("OPD_SOCKET");
        if (!o.socket || !*o.socket)
                o.socket = OPCTL_SOCKET_DEFAULT;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hl:c:f:a:e:", longopts, NULL)) != -1) {
                switch (c) {
                case ARG_SOCKET:
                        o.socket = optarg;
                        break;
                case ARG_JSON:
                        o.json = true;
                        break;
                case ARG_TIMEOUT_MS:
                        if (parse_u64(optarg, 1, UINT64_C(1) << 40, &o.wait_ms) < 0)
                                return fail("--timeout-ms wants a whole number of ms > 0, not "
                                            "\"%s\"",
                                            optarg);
                        break;
                case ARG_TIMINGS:
                        o.timings = true;
                        o.run_only = o.run_only ? o.run_only : "--timings";
                        break;
                case 'l':
                        o.lang = optarg;
                        o.run_only = o.run_only ? o.run_only : "--lang";
                        break;
                case 'c':
                case 'f':
                        if (o.code || o.file)
                                return fail("give the program once: --code, --file or -");
                        if (c == 'c')
                                o.code = optarg;
                        else
                                o.file = optarg;
                        o.run_only = o.run_only ? o.run_only : c == 'c' ? "--code" : "--file";
                        break;
                case ARG_STDIN:
                        o.stdin_str = optarg;
                        o.run_only = o.run_only ? o.run_only : "--stdin";
                        break;
                case ARG_TIMEOUT:
                        if (parse_seconds(optarg, &o.timeout_s) < 0)
                                return fail("--timeout wants seconds > 0 (e.g. 2.5), not \"%s\"",
                                            optarg);
                        o.run_only = o.run_only ? o.run_only : "--timeout";
                        break;
                case ARG_STREAM:
                case ARG_NO_STREAM:
                        o.stream = c == ARG_STREAM;
                        o.run_only = o.run_only        ? o.run_only
                                     : c == ARG_STREAM ? "--stream"
                                                       : "--no-stream";
                        break;
                case ARG_MODE:
                        o.mode = optarg;
                        o.run_only = o.run_only ? o.run_only : "--mode";
                        break;
                case 'a':
                        o.args[o.n_args++] = optarg;
                        o.run_only = o.run_only ? o.run_only : "--arg";
                        break;
                case 'e':
                        if (!strchr(optarg, '='))
                                return fail("--env wants NAME=VALUE, not \"%s\"", optarg);
                        o.env[o.n_env++] = optarg;
                        o.run_only = o.run_only ? o.run_only : "--env";
                        break;
                case 'h':
                        help(stdout);
                        return 0;
                case ARG_REMOTE:
                        o.remote = true;
                        break;
                case ARG_CONFIG:
                        o.config = optarg;
                        break;
                case ARG_CACHE_DIR:
                case ARG_S3_BUCKET:
                case ARG_S3_REGION:
                case ARG_S3_ENDPOINT:
                case ARG_S3_PREFIX: {
                        static const char *const keys[] = {"cache_dir", "s3.bucket", "s3.region",
                                                           "s3.endpoint", "s3.prefix"};
                        if (o.n_s3_keys == ELEMENTSOF(o.s3_keys))
                                return fail("too many S3 options");
                        o.s3_keys[o.n_s3_keys][0] = keys[c - ARG_CACHE_DIR];
                        o.s3_keys[o.n_s3_keys++][1] = optarg;
                        break;
                }
                case ARG_PLAIN:
                        o.plain = true;
                        break;
                case ARG_PART_SIZE:
                case ARG_MULTIPART_THRESHOLD:
                        if (parse_u64(optarg, S3_PART_MIN >> 20, S3_PART_MAX >> 20,
                                      c == ARG_PART_SIZE ? &o.part_mib : &o.threshold_mib) < 0)
                                return fail("%s wants MiB, %llu to %llu, not \"%s\"",
                                            argv[optind - 1], S3_PART_MIN >> 20, S3_PART_MAX >> 20,
                                            optarg);
                        break;
                case ARG_VERSION:
                        printf("opctl %s (protocol %d)\n", OP_VERSION, OP_PROTO_VERSION);
                        return 0;
                case ':':
                        return fail("%s needs a value (see opctl --help)", argv[optind - 1]);
                default:
                        if (optopt)
                                return fail("unknown option -%c (see opctl --help)", optopt);
                        return fail("unknown option %s (see opctl --help)", argv[optind - 1]);
                }
        }
        socket_path = o.socket;

        if (optind >= argc) {
                help(stderr);
                return EXIT_FAIL;
        }
        cmd = argv[optind++];
        if (strcmp(cmd, "snapshot") == 0) {
                if (optind + 1 != argc)
                        return fail("snapshot takes one action: create, list, reload, verify, "
                                    "sync or push");
                if (o.run_only && strcmp(o.run_only, "--lang") != 0)
                        return fail("%s only goes with run", o.run_only);
                if (strcmp(argv[optind], "push") == 0 && !o.lang)
                        return fail("snapshot push needs --lang");
                if ((o.part_mib || o.threshold_mib) && !o.plain)
                        return fail("--part-size and --multipart-threshold go with push --plain");
                if (o.plain && strcmp(argv[optind], "push") != 0)
                        return fail("--plain only goes with snapshot push");
                if (strcmp(argv[optind], "push") == 0 ||
                    (o.remote && strcmp(argv[optind], "list") == 0))
                        return cmd_s3(&o, argv[optind]);
                return cmd_snapshot(&o, argv[optind]);
        }
        for (; optind < argc; optind++) {
                if (strcmp(cmd, "run") == 0 && strcmp(argv[optind], "-") == 0 && !stdin_dash)
                        stdin_dash = argv[optind];
                else
                        return fail("unexpected argument \"%s\" (see opctl --help)", argv[optind]);
        }

        if (strcmp(cmd, "run") == 0) {
                if (stdin_dash) {
                        if (o.code || o.file)
                                return fail("give the program once: --code, --file or -");
                        o.file = stdin_dash;
                }
                return cmd_run(&o);
        }
        if (o.run_only)
                return fail("%s only goes with run", o.run_only);
        if (strcmp(cmd, "ping") == 0)
                return cmd_ping(&o);
        if (strcmp(cmd, "status") == 0)
                return cmd_status(&o);
        if (strcmp(cmd, "languages") == 0)
                return cmd_languages(&o);
        if (strcmp(cmd, "metrics") == 0)
                return cmd_metrics(&o);
        if (strcmp(cmd, "reload") == 0)
                return cmd_reload(&o);
        return fail("unknown command \"%s\" (run, status, languages, ping, metrics, reload, "
                    "snapshot; see "
                    "opctl --help)",
                    cmd);
}
