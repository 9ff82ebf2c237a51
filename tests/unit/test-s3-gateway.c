/* test-s3-gateway.c: opd-s3d's server (s3-gateway.h) between a real HTTP server on loopback
 * (libevent's evhttp, standing in for S3) and requesters on its UNIX socket, all on one loop:
 * an object streams through intact to opd's own S3 client; a missing key and a key outside the
 * prefix are answered with S3-style errors; a requester that does not read holds the gateway to
 * GATEWAY_BUFFERED bytes ahead of it and still gets every byte once it reads; an upstream that
 * breaks off part way closes the requester's connection (a short body, never a wrong one) and the
 * gateway goes on serving; a requester that leaves, and a gateway freed with a request in flight,
 * end the upstream transfer and leave nothing behind (ASan in scripts/test-sanitize). A listing
 * goes upstream as the query rebuilt from its checked pairs ('#' and the like cannot cut off its
 * prefix); a percent-encoded key is asked for decoded, and one holding %00 is refused. */
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
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/http.h>

#include "cleanup.h"
#include "http-upstream.h"
#include "loop-wait.h"
#include "s3-gateway.h"
#include "s3.h"
#include "sha256.h"

#define BIG (4u * 1024 * 1024 + 17) /* several times GATEWAY_BUFFERED, not a multiple of it */
#define CUT (512u * 1024)           /* what the breaking upstream sends of BIG */

struct fixture {
        struct event_base *base;
        struct evhttp *upstream;
        char *data;
        struct s3_location loc;
        struct s3_client *up_client; /* the gateway's, with credentials */
        struct s3_client *client;    /* opd's, through the gateway */
        struct s3_gateway *gw;
        char dir[64], sock[96];
        unsigned upstream_requests;
        char upstream_uri[1024]; /* the last request's */
};

static unsigned char byte_at(size_t i)
{
        return (unsigned char)((i * 2654435761u) >> 11);
}

static void cut_now(evutil_socket_t fd, short what, void *arg)
{
        evhttp_connection_free(arg);
}

static void on_cut_written(struct evhttp_connection *evcon, void *arg)
{
        struct fixture *f = arg;
        struct timeval now = {0, 0};

        event_base_once(f->base, -1, EV_TIMEOUT, cut_now, evcon, &now);
}

/* /bucket/p/big: BIG bytes; /bucket/p/cut: BIG announced, CUT sent, then the connection
 * closed; anything else 404 with S3's error body. */
static void on_upstream(struct evhttp_request *req, void *arg)
{
        struct fixture *f = arg;
        const char *uri = evhttp_request_get_uri(req);
        struct evbuffer *out = evhttp_request_get_output_buffer(req);

        f->upstream_requests++;
        snprintf(f->upstream_uri, sizeof(f->upstream_uri), "%s", uri);
        if (strcmp(uri, "/bucket/p/big") == 0) {
                evbuffer_add(out, f->data, BIG);
                evhttp_send_reply(req, 200, "OK", NULL);
        } else if (strcmp(uri, "/bucket/p/cut") == 0) {
                struct evbuffer *b = evbuffer_new();
                char cl[32];

                snprintf(cl, sizeof(cl), "%u", BIG);
                evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", cl);
                evhttp_send_reply_start(req, 200, "OK");
                evbuffer_add(b, f->data, CUT);
                /* once it is written, the connection goes */
                evhttp_send_reply_chunk_with_cb(req, b, on_cut_written, f);
                evbuffer_free(b);
        } else {
                evbuffer_add_printf(out, "<Error><Code>NoSuchKey</Code><Message>no such "
                                         "key</Message></Error>");
                evhttp_send_reply(req, 404, "Not Found", NULL);
        }
}

static int listen_unix(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        assert_true(fd >= 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 16), 0);
        return fd;
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct s3_creds creds = {.key_id = "AKIDEXAMPLE", .secret = "secret"};
        struct s3_client_opts o = S3_CLIENT_OPTS_DEFAULT;

        assert_non_null(f);
        f->base = event_base_new();
        f->upstream = http_upstream_start(f->base, on_upstream, f, &f->loc);
        f->data = malloc(BIG);
        assert_non_null(f->data);
        for (size_t i = 0; i < BIG; i++)
                f->data[i] = (char)byte_at(i);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-s3-gateway-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->sock, sizeof(f->sock), "%s/s3.sock", f->dir);
        o.retries = 0;
        assert_int_equal(s3_client_new(f->base, &creds, &o, &f->up_client), 0);
        assert_int_equal(
            s3_gateway_new(f->base, f->up_client, &f->loc, 1, "p/", listen_unix(f->sock), &f->gw),
            0);
        o.gateway = f->sock;
        assert_int_equal(s3_client_new(f->base, NULL, &o, &f->client), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        s3_client_free(f->client);
        s3_gateway_free(f->gw);
        s3_client_free(f->up_client);
        s3_location_free(&f->loc);
        evhttp_free(f->upstream);
        event_base_free(f->base);
        unlink(f->sock);
        rmdir(f->dir);
        free(f->data);
        free(f);
        return 0;
}

struct answer {
        bool done;
        struct s3_resp resp;
};

static void on_answer(const struct s3_resp *resp, void *userdata)
{
        struct answer *a = userdata;

        a->resp = *resp;
        a->resp.body = NULL;
        a->done = true;
}

static bool answered(void *arg)
{
        return ((struct answer *)arg)->done;
}

/* GET key through the gateway with opd's client, hashing the body. */
static struct s3_resp get(struct fixture *f, const char *key)
{
        struct s3_req req = {.method = "GET", .key = key, .max_body = BIG, .sha256 = true};
        struct answer a = {0};

        assert_int_equal(s3_start(f->client, &f->loc, &req, on_answer, &a, NULL), 0);
        loop_run_until(f->base, 1000000, answered, &a);
        return a.resp;
}

static void assert_big(const struct s3_resp *r, const struct fixture *f)
{
        char want[SHA256_HEX_LEN + 1];

        op_sha256_hex(f->data, BIG, want);
        assert_int_equal(r->r, 0);
        assert_int_equal(r->status, 200);
        assert_int_equal(r->body_len, BIG);
        assert_string_equal(r->sha256, want);
}

static bool idle(void *arg)
{
        return s3_gateway_stats(arg)->active == 0;
}

static void test_streams_and_errors(void **state)
{
        struct fixture *f = *state;
        struct s3_resp r = get(f, "p/big");

        assert_big(&r, f);
        r = get(f, "p/none");
        assert_int_equal(r.r, -ENOENT);
        assert_non_null(strstr(r.error, "NoSuchKey"));
        r = get(f, "q/big"); /* outside the prefix */
        assert_int_equal(r.r, -EACCES);
        assert_non_null(strstr(r.error, "not a snapshot object"));
        loop_run_until(f->base, 100000, idle, f->gw);
        assert_int_equal(s3_gateway_stats(f->gw)->served, 2);
        assert_int_equal(s3_gateway_stats(f->gw)->refused, 1);
        assert_int_equal(s3_gateway_stats(f->gw)->aborted, 0);
}

/* GET key?query through the gateway with opd's client: its outcome. */
static int get_query(struct fixture *f, const char *key, const char *query)
{
        struct s3_req req = {.method = "GET", .key = key, .query = query, .max_body = BIG};
        struct answer a = {0};

        assert_int_equal(s3_start(f->client, &f->loc, &req, on_answer, &a, NULL), 0);
        loop_run_until(f->base, 1000000, answered, &a);
        return a.resp.r;
}

/* A key or listing prefix with "." or ".." segments, or an empty one, is refused before anything
 * is asked upstream: resolved, they would name objects outside the prefix or the bucket, which
 * the credentials may read. opd's client sends the path as it is (no client-side resolving). */
static void test_dot_segments_refused(void **state)
{
        static const char *const keys[] = {
            "p/../../otherbucket/secret",
            "p/../secret",
            "p/x/../big",
            "p/./big",
            "p//big",
            "p/x/..",
        };
        static const char *const queries[] = {
            "list-type=2&prefix=p%2F..%2F..%2Fotherbucket%2F",
            "list-type=2&prefix=p%2F.%2F",
            "list-type=2&prefix=p%2F%2F",
        };
        struct fixture *f = *state;

        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                assert_int_equal(get_query(f, keys[i], NULL), -EACCES);
        for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
                assert_int_equal(get_query(f, "", queries[i]), -EACCES);
        assert_int_equal(f->upstream_requests, 0);
        /* names that only look like them are keys like any other */
        assert_int_equal(get_query(f, "p/..x/big", NULL), -ENOENT);
        assert_int_equal(get_query(f, "p/.../big", NULL), -ENOENT);
        assert_int_equal(f->upstream_requests, 2);
        loop_run_until(f->base, 100000, idle, f->gw);
        assert_int_equal(s3_gateway_stats(f->gw)->refused, 9);
}

/* GET target (the request line's, as is) on a connection of its own: the answer's status. */
static int raw_status(struct fixture *f, const char *target)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), status = 0;
        char buf[4096];
        size_t got = 0;
        int n;

        assert_true(fd >= 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        n = snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: opd-s3d\r\n\r\n", target);
        assert_int_equal(write(fd, buf, (size_t)n), n);
        while (!memmem(buf, got, "\r\n\r\n", 4)) {
                ssize_t k = read(fd, buf + got, sizeof(buf) - 1 - got);

                if (k < 0 && errno == EAGAIN) {
                        event_base_loop(f->base, EVLOOP_ONCE);
                        continue;
                }
                assert_true(k > 0);
                got += (size_t)k;
        }
        buf[got] = 0;
        assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &status), 1);
        close(fd);
        loop_run_until(f->base, 100000, idle, f->gw);
        return status;
}

/* A listing is sent upstream as its checked pairs, encoded again: a '#', which libcurl takes
 * for the end of the URL (so that S3 saw "list-type=2" alone and listed the whole bucket),
 * stays inside its value. A name outside the four, one given twice, a list-type other than 2 or
 * no prefix at all: refused before anything is asked. */
static void test_listing_query_rebuilt(void **state)
{
        static const char *const refused[] = {
            "/bucket/?list-type=2#&prefix=p%2F",
            "/bucket/?list-type=2&prefix=p%2F&prefix=q%2F",
            "/bucket/?list-type=2&prefix=p%2F&list-type=2",
            "/bucket/?list-type=1&prefix=p%2F",
            "/bucket/?list-type=2&prefix=p%2F&max-keys=5",
            "/bucket/?list-type=2&delimiter=%2F",
            "/bucket/?list-type=2&prefix=q%2F",
            "/bucket/?list-type=2&prefix",
        };
        struct fixture *f = *state;

        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
                assert_int_equal(raw_status(f, refused[i]), 403);
        assert_int_equal(f->upstream_requests, 0);

        assert_int_equal(raw_status(f, "/bucket/?delimiter=/#&prefix=p/&list-type=2"), 404);
        assert_string_equal(f->upstream_uri, "/bucket/?delimiter=%2F%23&list-type=2&prefix=p%2F");
        assert_int_equal(raw_status(f, "/bucket/?list-type=2&prefix=p%2F#x"), 404);
        assert_string_equal(f->upstream_uri, "/bucket/?list-type=2&prefix=p%2F%23x");
        /* opd's own listing, canonical already, goes on byte for byte */
        assert_int_equal(get_query(f, "",
                                   "continuation-token=a%2Bb&delimiter=%2F&list-type=2&"
                                   "prefix=p%2F"),
                         -ENOENT);
        assert_string_equal(f->upstream_uri, "/bucket/?continuation-token=a%2Bb&delimiter=%2F&"
                                             "list-type=2&prefix=p%2F");
        assert_int_equal(f->upstream_requests, 3);
}

/* A key with percent-encoded bytes is asked for decoded (it was refused whenever it had one); a
 * %00, which would end the key checked before the key asked for, is refused. */
static void test_percent_encoded_key(void **state)
{
        struct fixture *f = *state;

        assert_int_equal(get_query(f, "p/a b+c", NULL), -ENOENT);
        assert_string_equal(f->upstream_uri, "/bucket/p/a%20b%2Bc");
        assert_int_equal(raw_status(f, "/bucket/p/%62ig"), 200);
        assert_string_equal(f->upstream_uri, "/bucket/p/big");
        assert_int_equal(f->upstream_requests, 2);
        assert_int_equal(raw_status(f, "/bucket/p/big%00x"), 403);
        assert_int_equal(raw_status(f, "/bucket/%00?list-type=2&prefix=p%2F"), 403);
        assert_int_equal(raw_status(f, "/bucket/p/big?x=1"), 403);
        assert_int_equal(f->upstream_requests, 2);
}

/* A requester of its own: the request written, the socket left unread. */
static int raw_get(struct fixture *f, const char *key)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char req[256];
        int n;

        assert_true(fd >= 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        n = snprintf(req, sizeof(req), "GET /bucket/%s HTTP/1.1\r\nHost: opd-s3d\r\n\r\n", key);
        assert_int_equal(write(fd, req, (size_t)n), n);
        assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
        return fd;
}

static bool paused(void *arg)
{
        return s3_gateway_stats(arg)->paused > 0;
}

static void test_slow_reader_is_waited_for(void **state)
{
        struct fixture *f = *state;
        int fd = raw_get(f, "p/big");
        size_t cap = BIG + 4096, got = 0, head = 0;
        _cleanup_free_ char *buf = malloc(cap);
        const struct s3_gateway_stats *st = s3_gateway_stats(f->gw);

        assert_non_null(buf);
        loop_run_until(f->base, 1000000, paused, f->gw);
        assert_int_equal(st->active, 1);
        /* read it all: the transfer resumes as the buffered part is written */
        while (!head || got < head + BIG) {
                ssize_t k = read(fd, buf + got, cap - got);

                if (k < 0 && errno == EAGAIN) {
                        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
                        continue;
                }
                assert_true(k > 0);
                got += (size_t)k;
                if (!head) {
                        char *end = memmem(buf, got, "\r\n\r\n", 4);

                        if (end) {
                                head = (size_t)(end + 4 - buf);
                                assert_non_null(strstr(buf, "HTTP/1.1 200"));
                                assert_non_null(strcasestr(buf, "Content-Length: 4194321"));
                        }
                }
        }
        assert_int_equal(got, head + BIG);
        assert_memory_equal(buf + head, f->data, BIG);
        close(fd);
        loop_run_until(f->base, 100000, idle, f->gw);
        assert_int_equal(st->aborted, 0);
}

static void test_upstream_breaks_off(void **state)
{
        struct fixture *f = *state;
        struct s3_resp r = get(f, "p/cut");

        /* the requester sees its connection end short of the announced length */
        assert_int_equal(r.r, -EIO);
        assert_int_equal(s3_gateway_stats(f->gw)->aborted, 1);
        loop_run_until(f->base, 100000, idle, f->gw);
        /* and the gateway goes on serving */
        r = get(f, "p/big");
        assert_big(&r, f);
}

static void test_requester_leaves(void **state)
{
        struct fixture *f = *state;
        int fd = raw_get(f, "p/big");

        loop_run_until(f->base, 1000000, paused, f->gw);
        close(fd);
        /* the write fails, the connection goes, and its transfer with it */
        loop_run_until(f->base, 1000000, idle, f->gw);
        assert_int_equal(s3_gateway_stats(f->gw)->served, 1);
}

static void test_freed_with_request_in_flight(void **state)
{
        struct fixture *f = *state;
        int fd = raw_get(f, "p/big");

        loop_run_until(f->base, 1000000, paused, f->gw);
        s3_gateway_free(f->gw); /* teardown frees the upstream client after it */
        f->gw = NULL;
        close(fd);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_streams_and_errors, setup, teardown),
            cmocka_unit_test_setup_teardown(test_slow_reader_is_waited_for, setup, teardown),
            cmocka_unit_test_setup_teardown(test_dot_segments_refused, setup, teardown),
            cmocka_unit_test_setup_teardown(test_listing_query_rebuilt, setup, teardown),
            cmocka_unit_test_setup_teardown(test_percent_encoded_key, setup, teardown),
            cmocka_unit_test_setup_teardown(test_upstream_breaks_off, setup, teardown),
            cmocka_unit_test_setup_teardown(test_requester_leaves, setup, teardown),
            cmocka_unit_test_setup_teardown(test_freed_with_request_in_flight, setup, teardown),
        };

        signal(SIGPIPE, SIG_IGN); /* as opd-s3d: a requester that left is a write error */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
