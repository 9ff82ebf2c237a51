/* test-s3-sink.c: GETs whose answers go to a file (s3_req.sink), against a real HTTP server on
 * loopback (libevent's evhttp, on the same loop), with the loop hashing and writing (workers 0)
 * and with worker threads hashing what was written: every chunk lands at its offset with its
 * sha256, a failed write is reported as "write: ..." and not retried, a failed read-back as
 * "read back: ...", an error answer is not written, freeing the client with transfers and
 * workers' jobs in flight leaves nothing behind, and an answer that stops coming ends at the
 * attempt's deadline and is retried. An error answer's body is kept up to S3_ERROR_BODY_MAX
 * bytes whatever the request's max_body: a larger one is read for its code, not failed as too
 * big. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/http.h>

#include "cleanup.h"
#include "http-upstream.h"
#include "loop-wait.h"
#include "s3.h"
#include "sha256.h"

#define NCHUNK 24
#define CHUNK  (256 * 1024 + 17) /* not a multiple of curl's buffer */

struct fixture;

struct piece {
        struct fixture *f;
        unsigned idx;
        int done;
        struct s3_resp resp;
};

struct fixture {
        struct event_base *base;
        struct evhttp *http;
        char *data; /* NCHUNK chunks */
        struct s3_location loc;
        struct s3_client *client;
        struct piece p[NCHUNK];
        unsigned finished;
        char path[64];
        int fd;
        unsigned slow_gets;
        /* the slow answers, never ended: a request whose client left is the server's to free
         * (evhttp keeps it for evhttp_send_reply_end()), ended at teardown */
        struct evhttp_request *slow[4];
};

static unsigned char byte_at(size_t i)
{
        return (unsigned char)((i * 2654435761u) >> 13);
}

/* GET /bucket/chunk/<n> answers chunk n; GET /bucket/slow/<n> the first 1000 bytes of it and
 * nothing more; anything else 404 with S3's error body. */
static void on_request(struct evhttp_request *req, void *arg)
{
        struct fixture *f = arg;
        struct evbuffer *out = evhttp_request_get_output_buffer(req);
        unsigned n;

        if (sscanf(evhttp_request_get_uri(req), "/bucket/slow/%u", &n) == 1 && n < NCHUNK) {
                struct evbuffer *piece = evbuffer_new();
                char len[32];

                assert_non_null(piece);
                snprintf(len, sizeof(len), "%d", CHUNK);
                evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", len);
                evhttp_send_reply_start(req, 200, "OK");
                evbuffer_add(piece, f->data + (size_t)n * CHUNK, 1000);
                evhttp_send_reply_chunk(req, piece);
                evbuffer_free(piece);
                if (f->slow_gets < sizeof(f->slow) / sizeof(f->slow[0]))
                        f->slow[f->slow_gets] = req;
                f->slow_gets++;
                return;
        }
        if (sscanf(evhttp_request_get_uri(req), "/bucket/chunk/%u", &n) == 1 && n < NCHUNK) {
                evbuffer_add(out, f->data + (size_t)n * CHUNK, CHUNK);
                evhttp_send_reply(req, 200, "OK", NULL);
                return;
        }
        if (strcmp(evhttp_request_get_uri(req), "/bucket/bigerror") == 0) {
                /* S3's code and message first, then 1 MiB more */
                evbuffer_add_printf(out, "<Error><Code>NoSuchKey</Code><Message>gone</Message>"
                                         "<Pad>");
                for (unsigned i = 0; i < 1024; i++)
                        evbuffer_add(out, f->data, 1024);
                evbuffer_add_printf(out, "</Pad></Error>");
                evhttp_send_reply(req, 404, "Not Found", NULL);
                return;
        }
        evbuffer_add_printf(out, "<Error><Code>NoSuchKey</Code><Message>no such key</Message>"
                                 "</Error>");
        evhttp_send_reply(req, 404, "Not Found", NULL);
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        f->base = event_base_new();
        assert_non_null(f->base);
        f->http = http_upstream_start(f->base, on_request, f, &f->loc);
        f->data = malloc((size_t)NCHUNK * CHUNK);
        assert_non_null(f->data);
        for (size_t i = 0; i < (size_t)NCHUNK * CHUNK; i++)
                f->data[i] = (char)byte_at(i);
        snprintf(f->path, sizeof(f->path), "/tmp/test-s3-sink-XXXXXX");
        f->fd = mkostemp(f->path, O_CLOEXEC);
        assert_true(f->fd >= 0);
        unlink(f->path);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        s3_client_free(f->client);
        s3_location_free(&f->loc);
        for (size_t i = 0; i < f->slow_gets && i < sizeof(f->slow) / sizeof(f->slow[0]); i++)
                evhttp_send_reply_end(f->slow[i]);
        evhttp_free(f->http);
        event_base_free(f->base);
        close(f->fd);
        free(f->data);
        free(f);
        return 0;
}

static void client(struct fixture *f, unsigned workers)
{
        struct s3_creds creds = {.key_id = "AKIDEXAMPLE", .secret = "secret"};
        struct s3_client_opts o = S3_CLIENT_OPTS_DEFAULT;

        o.workers = workers;
        o.retries = 0;
        assert_int_equal(s3_client_new(f->base, &creds, &o, &f->client), 0);
}

static void on_piece(const struct s3_resp *resp, void *userdata)
{
        struct piece *p = userdata;

        p->done++;
        p->resp = *resp;
        p->resp.body = NULL;
        p->f->finished++;
}

static void get(struct fixture *f, unsigned idx, const char *key, int fd)
{
        struct s3_req req = {.method = "GET",
                             .key = key,
                             .max_body = CHUNK,
                             .sha256 = true,
                             .sink = true,
                             .sink_fd = fd,
                             .sink_off = (uint64_t)idx * CHUNK};

        f->p[idx] = (struct piece){.f = f, .idx = idx};
        assert_int_equal(s3_start(f->client, &f->loc, &req, on_piece, &f->p[idx], NULL), 0);
}

static bool all_finished(void *arg)
{
        struct fixture *f = arg;

        return f->finished == NCHUNK;
}

static void fetch_all(struct fixture *f, unsigned workers)
{
        char key[32];

        client(f, workers);
        for (unsigned i = 0; i < NCHUNK; i++) {
                snprintf(key, sizeof(key), "chunk/%u", i);
                get(f, i, key, f->fd);
        }
        loop_run_until(f->base, 100000, all_finished, f);
        for (unsigned i = 0; i < NCHUNK; i++) {
                char want[SHA256_HEX_LEN + 1];

                op_sha256_hex(f->data + (size_t)i * CHUNK, CHUNK, want);
                assert_int_equal(f->p[i].done, 1);
                assert_int_equal(f->p[i].resp.r, 0);
                assert_int_equal(f->p[i].resp.body_len, CHUNK);
                assert_string_equal(f->p[i].resp.sha256, want);
        }
        {
                _cleanup_free_ char *got = malloc((size_t)NCHUNK * CHUNK);

                assert_non_null(got);
                assert_int_equal(pread(f->fd, got, (size_t)NCHUNK * CHUNK, 0),
                                 (ssize_t)NCHUNK * CHUNK);
                assert_memory_equal(got, f->data, (size_t)NCHUNK * CHUNK);
        }
}

static void test_sink_on_loop(void **state)
{
        fetch_all(*state, 0);
}

static void test_sink_workers(void **state)
{
        fetch_all(*state, 2);
}

/* A write that fails (a read-only fd) ends the transfer at once with "write: ...", an error
 * answer is reported with S3's code and nothing is written. */
static void failures(struct fixture *f, unsigned workers)
{
        _cleanup_close_ int ro = -1;
        struct stat st;

        ro = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(ro >= 0);
        client(f, workers);
        get(f, 0, "chunk/0", ro);
        get(f, 1, "missing", f->fd);
        f->finished = NCHUNK - 2;
        loop_run_until(f->base, 100000, all_finished, f);
        assert_int_equal(f->p[0].resp.r, -EBADF);
        assert_string_equal(f->p[0].resp.error, "write: Bad file descriptor");
        assert_int_equal(f->p[0].resp.attempts, 1);
        assert_int_equal(f->p[1].resp.r, -ENOENT);
        assert_non_null(strstr(f->p[1].resp.error, "NoSuchKey"));
        assert_int_equal(fstat(f->fd, &st), 0);
        assert_int_equal(st.st_size, 0);
        if (workers) {
                /* a worker reads the chunk back to hash it: a write-only fd cannot be */
                _cleanup_close_ int wo = open("/dev/null", O_WRONLY | O_CLOEXEC);

                assert_true(wo >= 0);
                get(f, 2, "chunk/2", wo);
                f->finished = NCHUNK - 1;
                loop_run_until(f->base, 100000, all_finished, f);
                assert_int_equal(f->p[2].resp.r, -EBADF);
                assert_string_equal(f->p[2].resp.error, "read back: Bad file descriptor");
        }
}

static void test_failures_on_loop(void **state)
{
        failures(*state, 0);
}

static void test_failures_workers(void **state)
{
        failures(*state, 2);
}

/* The client freed as soon as the first chunk is reported, with the others anywhere between the
 * server, curl, the queue and a worker: no done() after, nothing leaked (ASan, TSan). */
static void on_first(const struct s3_resp *resp, void *userdata)
{
        struct piece *p = userdata;

        on_piece(resp, userdata);
        event_base_loopbreak(p->f->base);
}

static void test_free_in_flight(void **state)
{
        struct fixture *f = *state;
        struct loop_tick tick;
        unsigned at_free;
        char key[32];

        client(f, 2);
        for (unsigned i = 0; i < NCHUNK; i++) {
                struct s3_req req = {.method = "GET",
                                     .key = key,
                                     .max_body = CHUNK,
                                     .sha256 = true,
                                     .sink = true,
                                     .sink_fd = f->fd,
                                     .sink_off = (uint64_t)i * CHUNK};

                snprintf(key, sizeof(key), "chunk/%u", i);
                f->p[i] = (struct piece){.f = f, .idx = i};
                assert_int_equal(s3_start(f->client, &f->loc, &req, on_first, &f->p[i], NULL), 0);
        }
        while (f->finished == 0)
                event_base_loop(f->base, EVLOOP_ONCE);
        s3_client_free(f->client);
        f->client = NULL;
        at_free = f->finished;
        assert_true(at_free < NCHUNK);
        loop_tick_start(&tick, f->base);
        loop_run_turns(f->base, &tick, 50);
        loop_tick_stop(&tick);
        assert_int_equal(f->finished, at_free);
}

/* An answer that stops after its first bytes, as one trickling slower than the attempt's
 * deadline allows: the attempt ends at its deadline, long before the stall timeout, and is
 * retried like any other network failure, then fails with "deadline" in its error. */
static void test_deadline(void **state)
{
        struct fixture *f = *state;
        struct s3_creds creds = {.key_id = "AKIDEXAMPLE", .secret = "secret"};
        struct s3_client_opts o = S3_CLIENT_OPTS_DEFAULT;
        uint64_t t0;

        o.retries = 1;
        o.backoff_ms = 1;
        o.stall_timeout_ms = 60000;
        o.connect_timeout_ms = 200;
        o.deadline_slack_ms = 300;
        o.min_rate = 1u << 30; /* CHUNK at this rate: 0 ms */
        assert_int_equal(s3_client_new(f->base, &creds, &o, &f->client), 0);
        t0 = op_now_us();
        get(f, 0, "slow/0", f->fd);
        f->finished = NCHUNK - 1;
        loop_run_until(f->base, 30000, all_finished, f);
        assert_int_equal(f->p[0].done, 1);
        assert_int_equal(f->p[0].resp.r, -EIO);
        assert_int_equal(f->p[0].resp.attempts, 2);
        assert_int_equal(f->slow_gets, 2);
        assert_non_null(strstr(f->p[0].resp.error, "deadline of 500 ms"));
        assert_true(op_now_us() - t0 >= 2 * 500000);
        assert_true(op_now_us() - t0 < 20000000);
        assert_int_equal(s3_client_stats(f->client)->retries, 1);
}

/* A 404 with a body of over 1 MiB: reported as the 404 it is, with S3's code and message,
 * from the first S3_ERROR_BODY_MAX bytes, the rest read and dropped, for a request that would
 * take a 64 MiB answer (opd-s3d's) and for one that takes 256 bytes (`current`). */
static void test_error_body_capped(void **state)
{
        static const size_t max_body[] = {64u << 20, 256};
        struct fixture *f = *state;

        client(f, 0);
        for (size_t i = 0; i < sizeof(max_body) / sizeof(max_body[0]); i++) {
                struct s3_req req = {
                    .method = "GET", .key = "bigerror", .max_body = max_body[i], .sha256 = true};

                f->p[i] = (struct piece){.f = f, .idx = (unsigned)i};
                assert_int_equal(s3_start(f->client, &f->loc, &req, on_piece, &f->p[i], NULL), 0);
        }
        f->finished = NCHUNK - 2;
        loop_run_until(f->base, 100000, all_finished, f);
        for (size_t i = 0; i < 2; i++) {
                const struct s3_resp *r = &f->p[i].resp;

                assert_int_equal(f->p[i].done, 1);
                assert_int_equal(r->r, -ENOENT);
                assert_int_equal(r->status, 404);
                assert_string_equal(r->error, "HTTP 404 NoSuchKey: gone");
                assert_int_equal(r->body_len, S3_ERROR_BODY_MAX);
                assert_int_equal(r->attempts, 1);
        }
        assert_true(s3_client_stats(f->client)->bytes_in > 2u << 20);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_sink_on_loop, setup, teardown),
            cmocka_unit_test_setup_teardown(test_sink_workers, setup, teardown),
            cmocka_unit_test_setup_teardown(test_error_body_capped, setup, teardown),
            cmocka_unit_test_setup_teardown(test_failures_on_loop, setup, teardown),
            cmocka_unit_test_setup_teardown(test_failures_workers, setup, teardown),
            cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
            cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        };

        /* the server writes to connections the client closed (as opd, which ignores it too) */
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
