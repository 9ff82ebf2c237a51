/* fc-api.c: Firecracker API calls through libcurl's multi interface, driven by libevent: curl
 * says which sockets and timeouts to watch, the loop tells curl when they fire. */
#include "fc-api.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cleanup.h"
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

/* curl's per-socket state: the event watching it. */
struct fc_sock {
        LIST_ENTRY(fc_sock) link;
        struct event *ev;
};

struct fc_api {
        struct event_base *base;
        CURLM *multi;
        struct event *timer, *retry;
        char *sock_path;
        TAILQ_HEAD(, fc_call) calls; /* first: in flight */
        LIST_HEAD(, fc_sock) socks;
        bool running; /* the first call is added to multi */
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
        struct fc_sock *fs;

        while ((c = TAILQ_FIRST(&a->calls))) {
                if (a->running)
                        curl_multi_remove_handle(a->multi, c->easy);
                a->running = false;
                TAILQ_REMOVE(&a->calls, c, link);
                call_free(c);
        }
        if (a->multi)
                curl_multi_cleanup(a->multi);
        while ((fs = LIST_FIRST(&a->socks))) {
                LIST_REMOVE(fs, link);
                if (fs->ev)
                        event_free(fs->ev);
                free(fs);
        }
        if (a->timer)
                event_free(a->timer);
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

static void check_done(struct fc_api *a)
{
        CURLMsg *m;
        int left;

        while (!a->free_pending && (m = curl_multi_info_read(a->multi, &left))) {
                struct fc_call *c = NULL;
                long status = 0;

                if (m->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
                if (!c || c != TAILQ_FIRST(&a->calls))
                        continue;
                if (m->data.result == CURLE_COULDNT_CONNECT && !a->ever_connected &&
                    op_now_us() - a->t_first_try < (uint64_t)a->connect_wait_ms * 1000) {
                        /* The process has not bound its socket yet: try again shortly. */
                        curl_multi_remove_handle(a->multi, c->easy);
                        a->running = false;
                        struct timeval tv = {0, RETRY_MS * 1000};
                        evtimer_add(a->retry, &tv);
                        return;
                }
                if (m->data.result == CURLE_OK) {
                        a->ever_connected = true;
                        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
                        call_finish(a, status, NULL);
                } else
                        call_finish(a, 0,
                                    c->answer_over ? "answer too large"
                                                   : curl_easy_strerror(m->data.result));
                return; /* the loop resumes through the next call's events */
        }
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

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
        struct fc_api *a = arg;
        int running, flags = (what & EV_READ ? CURL_CSELECT_IN : 0) |
                             (what & EV_WRITE ? CURL_CSELECT_OUT : 0);

        curl_multi_socket_action(a->multi, fd, flags, &running);
        check_done(a);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        struct fc_api *a = arg;
        int running;

        curl_multi_socket_action(a->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(a);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
        struct fc_api *a = userp;
        struct fc_sock *fs = socketp;
        short kind = EV_PERSIST;

        if (what == CURL_POLL_REMOVE) {
                if (fs) {
                        LIST_REMOVE(fs, link);
                        if (fs->ev)
                                event_free(fs->ev);
                        free(fs);
                        curl_multi_assign(a->multi, s, NULL);
                }
                return 0;
        }
        if (!fs) {
                fs = calloc(1, sizeof(*fs));
                if (!fs)
                        return -1;
                LIST_INSERT_HEAD(&a->socks, fs, link);
                curl_multi_assign(a->multi, s, fs);
        } else if (fs->ev) {
                event_free(fs->ev);
                fs->ev = NULL;
        }
        if (what & CURL_POLL_IN)
                kind |= EV_READ;
        if (what & CURL_POLL_OUT)
                kind |= EV_WRITE;
        fs->ev = event_new(a->base, s, kind, on_sock_event, a);
        if (!fs->ev || event_add(fs->ev, NULL) < 0)
                return -1;
        return 0;
}

static int on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
        struct fc_api *a = userp;

        if (timeout_ms < 0)
                evtimer_del(a->timer);
        else {
                struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
                evtimer_add(a->timer, &tv);
        }
        return 0;
}

int fc_api_new(struct event_base *base, const char *sock_path, uint32_t connect_wait_ms,
               uint32_t timeout_ms, struct fc_api **ret)
{
        struct fc_api *a = calloc(1, sizeof(*a));

        if (!a)
                return -ENOMEM;
        a->base = base;
        TAILQ_INIT(&a->calls);
        LIST_INIT(&a->socks);
        a->connect_wait_ms = connect_wait_ms;
        a->timeout_ms = timeout_ms;
        a->sock_path = strdup(sock_path);
        a->multi = curl_multi_init();
        a->timer = evtimer_new(base, on_timer, a);
        a->retry = evtimer_new(base, on_retry, a);
        if (!a->sock_path || !a->multi || !a->timer || !a->retry ||
            curl_multi_setopt(a->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
            curl_multi_setopt(a->multi, CURLMOPT_SOCKETDATA, a) != CURLM_OK ||
            curl_multi_setopt(a->multi, CURLMOPT_TIMERFUNCTION, on_timeout) != CURLM_OK ||
            curl_multi_setopt(a->multi, CURLMOPT_TIMERDATA, a) != CURLM_OK) {
                api_destroy(a);
                return -ENOMEM;
        }
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
