/* call.c: opctl's connection to opd: connect, send one request frame, read frames until its
 * answer, printing the request's streamed output events on the way; call() and call_op(). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "call.h"
#include "cleanup.h"
#include "msg.h"
#include "opctl.h"
#include "util.h"

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

static int connect_error(const char *socket_path, int r)
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

int send_all(int fd, const char *buf, size_t n, uint64_t deadline)
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

/* Wait until fd is readable; meanwhile pass x's input on as it becomes readable. */
static int wait_in(int fd, struct exchange_ext *x, uint64_t deadline)
{
        if (!x || x->input_fd < 0)
                return wait_fd(fd, POLLIN, deadline);
        for (;;) {
                struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                                      {.fd = x->input_fd, .events = POLLIN}};
                uint64_t now = op_now_us(), left_ms;
                int r;

                if (now >= deadline)
                        return -ETIMEDOUT;
                left_ms = (deadline - now + 999) / 1000;
                r = poll(p, x->input_fd >= 0 ? 2 : 1, left_ms > INT_MAX ? INT_MAX : (int)left_ms);
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r <= 0)
                        continue;
                if (x->input_fd >= 0 && p[1].revents) {
                        r = x->input(fd, x->input_fd, x->userdata);
                        if (r > 0)
                                x->input_fd = -1; /* the input ended */
                        else if (r < 0)
                                return r;
                }
                if (p[0].revents)
                        return 0;
        }
}

/* Read until buf starts with one whole frame. -EPIPE: opd closed the connection;
 * -EMSGSIZE: the frame announced is over OPCTL_FRAME_MAX; -ETIMEDOUT. */
static int read_frame(int fd, struct inbuf *b, uint64_t deadline, struct exchange_ext *x,
                      struct op_frame *ret)
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
                r = wait_in(fd, x, deadline);
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

/* A streamed output event of our request: its bytes to our stdout or stderr; with events_as_json
 * (run --stream --json), the event raw, one JSON line each, like the answer. */
static int print_event(json_t *ev, const char *raw, size_t len, bool events_as_json)
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
        if (name && strcmp(name, "stdin_error") == 0) {
                json_t *e = json_object_get(ev, "error");
                fail("opd refused input: %s", json_string_value(json_object_get(e, "message"))
                                                  ?: "(no message)"); /* the run goes on */
                return 0;
        }
        return 0; /* an event opctl does not know: clients ignore those */
}

/* Send req and wait for its answer: the frame whose "id" equals req's, or an error frame with a
 * null id (opd could not tell which request it answers; we sent only one). On success *ret_answer
 * is the parsed answer and *ret_raw (*ret_raw_len bytes) its exact JSON text. Prints its own errors
 * and returns EXIT_FAIL on failure. */
int exchange(const char *socket_path, bool events_as_json, json_t *req, uint64_t wait_ms,
             json_t **ret_answer, char **ret_raw, size_t *ret_raw_len)
{
        return exchange_ext(socket_path, events_as_json, req, wait_ms, NULL, ret_answer, ret_raw,
                            ret_raw_len);
}

int exchange_ext(const char *socket_path, bool events_as_json, json_t *req, uint64_t wait_ms,
                 struct exchange_ext *x, json_t **ret_answer, char **ret_raw, size_t *ret_raw_len)
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
                return connect_error(socket_path, r);

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

                r = read_frame(fd, &b, deadline, x, &f);
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
                        r = x && x->event ? x->event(answer, b.p + f.payload_offset, f.payload_len,
                                                     x->userdata)
                                          : print_event(answer, b.p + f.payload_offset,
                                                        f.payload_len, events_as_json);
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
                if (x && x->other) { /* e.g. a batch member's answer */
                        r = x->other(answer, b.p + f.payload_offset, f.payload_len, x->userdata);
                        if (r) {
                                free(b.p);
                                return r;
                        }
                }
                consume(&b, f.frame_len); /* an answer to someone else: not ours to read */
        }
}

/* The shared part of ping, status and snapshot: send req, wait for the answer. Returns -1 with
 * *ret_answer set when the caller has to print a successful answer, else the exit status
 * (the answer was printed raw for --json, or it was an error and has been reported). */
int call(const struct opts *o, json_t *req, uint64_t default_wait_ms, json_t **ret_answer)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        _cleanup_free_ char *raw = NULL;
        size_t raw_len;
        int r;

        r = exchange(o->socket, false, req, o->wait_ms ? o->wait_ms : default_wait_ms, &answer,
                     &raw, &raw_len);
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
int call_op(const struct opts *o, const char *op, json_t **ret_answer)
{
        _cleanup_(json_decrefp) json_t *req =
            json_pack("{s:I, s:s}", "id", (json_int_t)getpid(), "op", op);

        if (!req)
                return fail("out of memory");
        return call(o, req, OPCTL_WAIT_MS, ret_answer);
}
