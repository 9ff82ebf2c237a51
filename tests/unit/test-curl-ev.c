/* test-curl-ev.c: the libcurl-on-libevent glue against a real HTTP server on loopback (libevent's
 * evhttp, on the same loop): parallel transfers each reported once with its CURLcode, a refused
 * connection, and curl_ev_free() from inside the done callback leaving nothing on the loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/http.h>

#include "cleanup.h"
#include "curl-ev.h"

#define NXFER 3

struct xfer {
        CURL *easy;
        char body[64];
        size_t len;
        int done; /* times reported */
        CURLcode result;
        long status;
};

struct fixture {
        struct event_base *base;
        struct evhttp *http;
        int port;
        struct curl_ev *ce;
        struct xfer x[NXFER];
        int finished;
        bool free_in_cb;
        int idle_events; /* on the loop before the server */
};

/* GET /<word> answers "<word> ok". */
static void on_request(struct evhttp_request *req, void *arg)
{
        struct evbuffer *out = evhttp_request_get_output_buffer(req);

        evbuffer_add_printf(out, "%s ok", evhttp_request_get_uri(req) + 1);
        evhttp_send_reply(req, 200, "OK", NULL);
}

static size_t on_write(char *ptr, size_t size, size_t n, void *arg)
{
        struct xfer *x = arg;
        size_t len = size * n;

        if (x->len + len >= sizeof(x->body))
                return 0;
        memcpy(x->body + x->len, ptr, len);
        x->len += len;
        x->body[x->len] = 0;
        return len;
}

static void on_done(CURL *easy, CURLcode result, void *userdata)
{
        struct fixture *f = userdata;
        struct xfer *x = NULL;

        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        assert_non_null(x);
        x->done++;
        x->result = result;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &x->status);
        curl_multi_remove_handle(curl_ev_multi(f->ce), easy);
        if (++f->finished == NXFER || f->free_in_cb) {
                if (f->free_in_cb) {
                        for (int i = 0; i < NXFER; i++)
                                if (f->x[i].easy != easy)
                                        curl_multi_remove_handle(curl_ev_multi(f->ce),
                                                                 f->x[i].easy);
                        curl_ev_free(f->ce);
                        f->ce = NULL;
                }
                event_base_loopbreak(f->base);
        }
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct evhttp_bound_socket *bs;
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);

        assert_non_null(f);
        f->base = event_base_new();
        assert_non_null(f->base);
        f->idle_events = event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED);
        f->http = evhttp_new(f->base);
        assert_non_null(f->http);
        evhttp_set_gencb(f->http, on_request, f);
        bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
        assert_non_null(bs);
        assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl),
                         0);
        f->port = ntohs(sa.sin_port);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        for (int i = 0; i < NXFER; i++)
                if (f->x[i].easy)
                        curl_easy_cleanup(f->x[i].easy);
        curl_ev_free(f->ce);
        if (f->http)
                evhttp_free(f->http);
        event_base_free(f->base);
        free(f);
        return 0;
}

static void start(struct fixture *f, int port)
{
        static const char *const words[NXFER] = {"alpha", "beta", "gamma"};

        for (int i = 0; i < NXFER; i++) {
                struct xfer *x = &f->x[i];
                char url[128];

                snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s", port, words[i]);
                if (x->easy)
                        curl_easy_cleanup(x->easy);
                memset(x, 0, sizeof(*x));
                x->easy = curl_easy_init();
                assert_non_null(x->easy);
                curl_easy_setopt(x->easy, CURLOPT_URL, url);
                curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_write);
                curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
                curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
                curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, 30000L);
                assert_int_equal(curl_multi_add_handle(curl_ev_multi(f->ce), x->easy), CURLM_OK);
        }
        f->finished = 0;
        assert_int_equal(event_base_loop(f->base, 0), 0);
}

static void test_parallel_transfers(void **state)
{
        struct fixture *f = *state;
        static const char *const want[NXFER] = {"alpha ok", "beta ok", "gamma ok"};

        assert_int_equal(curl_ev_new(f->base, on_done, f, &f->ce), 0);
        /* twice: the second round reuses the kept connections and their events */
        for (int round = 0; round < 2; round++) {
                start(f, f->port);
                for (int i = 0; i < NXFER; i++) {
                        assert_int_equal(f->x[i].done, 1);
                        assert_int_equal(f->x[i].result, CURLE_OK);
                        assert_int_equal(f->x[i].status, 200);
                        assert_string_equal(f->x[i].body, want[i]);
                }
        }
}

static void test_refused(void **state)
{
        struct fixture *f = *state;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM, 0);
        int port;

        /* a port bound but not listening refuses connections */
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
        port = ntohs(sa.sin_port);
        assert_int_equal(curl_ev_new(f->base, on_done, f, &f->ce), 0);
        start(f, port);
        for (int i = 0; i < NXFER; i++) {
                assert_int_equal(f->x[i].done, 1);
                assert_int_equal(f->x[i].result, CURLE_COULDNT_CONNECT);
        }
}

static void test_free_in_callback(void **state)
{
        struct fixture *f = *state;
        assert_int_equal(curl_ev_new(f->base, on_done, f, &f->ce), 0);
        f->free_in_cb = true;
        start(f, f->port);
        assert_null(f->ce);
        /* only the first transfer was reported; the others went with the object */
        assert_int_equal(f->x[0].done + f->x[1].done + f->x[2].done, 1);
        /* with the server gone too, curl's sockets and timer have left the loop */
        evhttp_free(f->http);
        f->http = NULL;
        event_base_loop(f->base, EVLOOP_NONBLOCK); /* runs the freed connections' finalizers */
        assert_int_equal(event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED),
                         f->idle_events);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_parallel_transfers, setup, teardown),
            cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
            cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
        };

        curl_global_init(CURL_GLOBAL_DEFAULT);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
