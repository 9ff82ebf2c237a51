/* fc-api.c: Firecracker API calls through libcurl's multi interface, driven by the loop through
 * curl-ev.c; one call in flight at a time. */
#include "fc-api.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cleanup.h"
#include "curl-ev.h"
#include "fc-model.h"
#include "util.h"

#define RETRY_MS 10

struct fc_call {
        TAILQ_ENTRY(fc_call) link;
        struct fc_api *api;
        CURL *easy;
        struct curl_slist *headers;
        char *method, *path, *body;
        char *answer;
        size_t answer_len;
        bool answer_over;
        fc_api_done_fn cb;
        void *userdata;
};

struct fc_api {
        struct event_base *base;
        struct curl_ev *ev;
        CURLM *multi; /* ev's */
        struct event *retry;
        char *sock_path;
        TAILQ_HEAD(, fc_call) calls; /* first: in flight */
        bool running;                /* the first call is added to multi */
        bool ever_connected;
        uint64_t t_first_try;
        uint32_t connect_wait_ms, timeout_ms;
        unsigned busy;     /* inside a callback to the user */
        bool free_pending; /* fc_api_free() was called while busy */
};

static void call_free(struct fc_call *c)
{
        if (!c)
                return;
        if (c->easy)
                curl_easy_cleanup(c->easy); /* not in the multi handle any more */
        curl_slist_free_all(c->headers);
        free(c->method);
        free(c->path);
        free(c->body);
        free(c->answer);
        free(c);
}

static void api_destroy(struct fc_api *a)
{
        struct fc_call *c;

        while ((c = TAILQ_FIRST(&a->calls))) {
                if (a->running)
                        curl_multi_remove_handle(a->multi, c->easy);
                a->running = false;
                TAILQ_REMOVE(&a->calls, c, link);
                call_free(c);
        }
        curl_ev_free(a->ev);
        if (a->retry)
                event_free(a->retry);
        free(a->sock_path);
        free(a);
}

void fc_api_free(struct fc_api *a)
{
        if (!a)
                return;
        if (a->busy) {
                a->free_pending = true;
                return;
        }
        api_destroy(a);
}

static size_t on_write(char *ptr, size_t size, size_t n, void *arg)
{
        struct fc_call *c = arg;
        size_t len = size * n;
        char *p;

        if (c->answer_len + len > FC_API_ANSWER_MAX) {
                c->answer_over = true;
                return 0; /* aborts the transfer */
        }
        p = realloc(c->answer, c->answer_len + len + 1);
        if (!p)
                return 0;
        memcpy(p + c->answer_len, ptr, len);
        c->answer = p;
        c->answer_len += len;
        c->answer[c->answer_len] = 0;
        return len;
}

static int call_prepare(struct fc_api *a, struct fc_call *c)
{
        _cleanup_free_ char *url = NULL;

        if (asprintf(&url, "http://localhost%s", c->path) < 0)
                return -ENOMEM;
        if (c->easy)
                curl_easy_cleanup(c->easy);
        c->easy = curl_easy_init();
        if (!c->easy)
                return -ENOMEM;
        free(c->answer);
        c->answer = NULL;
        c->answer_len = 0;
        if (!c->headers) {
                struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
                if (h && c->body)
                        h = curl_slist_append(h, "Content-Type: application/json");
                if (h)
                        h = curl_slist_append(h, "Expect:");
                if (!h)
                        return -ENOMEM;
                c->headers = h;
        }
        if (curl_easy_setopt(c->easy, CURLOPT_UNIX_SOCKET_PATH, a->sock_path) != CURLE_OK ||
            curl_easy_setopt(c->easy, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, c->method) != CURLE_OK ||
            curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK ||
            curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK ||
            curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c) != CURLE_OK ||
            curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)a->timeout_ms) != CURLE_OK ||
            curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c) != CURLE_OK)
                return -EINVAL;
        if (c->body &&
            (curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body) != CURLE_OK ||
             curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body)) != CURLE_OK))
                return -EINVAL;
        return 0;
}

static void start_next(struct fc_api *a);

/* Tell the user how the first call ended, drop it and start the next. */
static void call_finish(struct fc_api *a, long status, const char *transport_err)
{
        struct fc_call *c = TAILQ_FIRST(&a->calls);
        _cleanup_(json_decrefp) json_t *body = NULL;
        char err[512];
        const char *msg = NULL;

        curl_multi_remove_handle(a->multi, c->easy);
        a->running = false;
        TAILQ_REMOVE(&a->calls, c, link);
        if (c->answer_len)
                body = json_loadb(c->answer, c->answer_len, 0, NULL);
        if (transport_err) {
                snprintf(err, sizeof(err), "API socket: %s", transport_err);
                msg = err;
        } else if (status < 200 || status > 299) {
                const char *fault = fc_fault_message(body);

                if (fault)
                        snprintf(err, sizeof(err), "%s", fault);
                else
                        snprintf(err, sizeof(err), "HTTP %ld from %s %s", status, c->method,
                                 c->path);
                msg = err;
        }
        a->busy++;
        c->cb(a, transport_err ? 0 : status, body, msg, c->userdata);
        a->busy--;
        call_free(c);
        if (a->free_pending && !a->busy) {
                api_destroy(a);
                return;
        }
        start_next(a);
}

static void on_done(CURL *easy, CURLcode result, void *userdata)
{
        struct fc_api *a = userdata;
        struct fc_call *c = NULL;
        long status = 0;

        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
        if (a->free_pending || !c || c != TAILQ_FIRST(&a->calls))
                return;
        if (result == CURLE_COULDNT_CONNECT && !a->ever_connected &&
            op_now_us() - a->t_first_try < (uint64_t)a->connect_wait_ms * 1000) {
                /* The process has not bound its socket yet: try again shortly. */
                curl_multi_remove_handle(a->multi, c->easy);
                a->running = false;
                struct timeval tv = {0, RETRY_MS * 1000};
                evtimer_add(a->retry, &tv);
                return;
        }
        if (result == CURLE_OK) {
                a->ever_connected = true;
                curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
                call_finish(a, status, NULL);
        } else
                call_finish(a, 0, c->answer_over ? "answer too large" : curl_easy_strerror(result));
}

static void start_next(struct fc_api *a)
{
        struct fc_call *c = TAILQ_FIRST(&a->calls);
        int r;

        if (!c || a->running || evtimer_pending(a->retry, NULL))
                return;
        if (!a->t_first_try)
                a->t_first_try = op_now_us();
        r = call_prepare(a, c);
        if (r >= 0)
                curl_ev_cloexec(c->easy);
        if (r >= 0 && curl_multi_add_handle(a->multi, c->easy) != CURLM_OK)
                r = -ENOMEM;
        if (r < 0) {
                a->running = true; /* call_finish removes it; harmless for a handle not added */
                call_finish(a, 0, "cannot start the call");
                return;
        }
        a->running = true;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
        start_next(arg);
}

int fc_api_new(struct event_base *base, const char *sock_path, uint32_t connect_wait_ms,
               uint32_t timeout_ms, struct fc_api **ret)
{
        struct fc_api *a = calloc(1, sizeof(*a));

        if (!a)
                return -ENOMEM;
        a->base = base;
        TAILQ_INIT(&a->calls);
        a->connect_wait_ms = connect_wait_ms;
        a->timeout_ms = timeout_ms;
        a->sock_path = strdup(sock_path);
        a->retry = evtimer_new(base, on_retry, a);
        if (!a->sock_path || !a->retry || curl_ev_new(base, on_done, a, &a->ev) < 0) {
                api_destroy(a);
                return -ENOMEM;
        }
        a->multi = curl_ev_multi(a->ev);
        *ret = a;
        return 0;
}

int fc_api_call(struct fc_api *a, const char *method, const char *path, json_t *body,
                fc_api_done_fn cb, void *userdata)
{
        struct fc_call *c = calloc(1, sizeof(*c));

        if (!c) {
                json_decref(body);
                return -ENOMEM;
        }
        c->api = a;
        c->cb = cb;
        c->userdata = userdata;
        c->method = strdup(method);
        c->path = strdup(path);
        if (body) {
                c->body = json_dumps(body, JSON_COMPACT);
                json_decref(body);
                if (!c->body) {
                        call_free(c);
                        return -ENOMEM;
                }
        }
        if (!c->method || !c->path) {
                call_free(c);
                return -ENOMEM;
        }
        TAILQ_INSERT_TAIL(&a->calls, c, link);
        start_next(a);
        return 0;
}
