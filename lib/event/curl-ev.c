/* curl-ev.c: libcurl's multi socket interface on libevent (see curl-ev.h). */
#include "curl-ev.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/socket.h>

/* One event per socket curl watches, replaced only when what curl waits for changes (an event
 * is never re-assigned while libevent may hold it active). */
struct curl_ev_sock {
        LIST_ENTRY(curl_ev_sock) link;
        struct event *ev;
        int what;
};

struct curl_ev {
        struct event_base *base;
        CURLM *multi;
        struct event *timer;
        LIST_HEAD(, curl_ev_sock) socks;
        curl_ev_done_fn done;
        void *userdata;
        unsigned dispatching; /* inside dispatch(), possibly nested through the callback */
        bool free_pending;    /* curl_ev_free() was called while dispatching */
};

static void destroy(struct curl_ev *ce)
{
        struct curl_ev_sock *s;

        if (ce->multi)
                curl_multi_cleanup(ce->multi);
        while ((s = LIST_FIRST(&ce->socks))) {
                LIST_REMOVE(s, link);
                if (s->ev)
                        event_free(s->ev);
                free(s);
        }
        if (ce->timer)
                event_free(ce->timer);
        free(ce);
}

void curl_ev_free(struct curl_ev *ce)
{
        if (!ce)
                return;
        if (ce->dispatching) {
                ce->free_pending = true;
                return;
        }
        destroy(ce);
}

CURLM *curl_ev_multi(const struct curl_ev *ce)
{
        return ce->multi;
}

static curl_socket_t open_cloexec(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
        int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

        return fd < 0 ? CURL_SOCKET_BAD : fd;
}

void curl_ev_cloexec(CURL *easy)
{
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_cloexec);
}

/* Let curl act on a socket (or its timeout), then report every finished transfer. */
static void dispatch(struct curl_ev *ce, curl_socket_t fd, int action)
{
        CURLMsg *m;
        int running, left;

        ce->dispatching++;
        curl_multi_socket_action(ce->multi, fd, action, &running);
        while (!ce->free_pending && (m = curl_multi_info_read(ce->multi, &left)))
                if (m->msg == CURLMSG_DONE)
                        ce->done(m->easy_handle, m->data.result, ce->userdata);
        if (--ce->dispatching == 0 && ce->free_pending)
                destroy(ce);
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
        dispatch(arg, fd,
                 (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0));
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        dispatch(arg, CURL_SOCKET_TIMEOUT, 0);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
        struct curl_ev *ce = userp;
        struct curl_ev_sock *s = socketp;
        short kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) |
                             (what & CURL_POLL_OUT ? EV_WRITE : 0) | EV_PERSIST);

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        LIST_REMOVE(s, link);
                        if (s->ev)
                                event_free(s->ev);
                        free(s);
                }
                curl_multi_assign(ce->multi, fd, NULL);
                return 0;
        }
        if (s && s->what == what)
                return 0;
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -1;
                LIST_INSERT_HEAD(&ce->socks, s, link);
                curl_multi_assign(ce->multi, fd, s);
        } else if (s->ev) {
                event_free(s->ev);
        }
        s->what = what;
        s->ev = event_new(ce->base, fd, kind, on_socket_event, ce);
        if (!s->ev || event_add(s->ev, NULL) < 0)
                return -1;
        return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
        struct curl_ev *ce = userp;

        if (timeout_ms < 0) {
                evtimer_del(ce->timer);
        } else {
                struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
                evtimer_add(ce->timer, &tv);
        }
        return 0;
}

int curl_ev_new(struct event_base *base, curl_ev_done_fn done, void *userdata, struct curl_ev **ret)
{
        struct curl_ev *ce = calloc(1, sizeof(*ce));

        if (!ce)
                return -ENOMEM;
        ce->base = base;
        ce->done = done;
        ce->userdata = userdata;
        LIST_INIT(&ce->socks);
        ce->multi = curl_multi_init();
        ce->timer = evtimer_new(base, on_timer, ce);
        if (!ce->multi || !ce->timer ||
            curl_multi_setopt(ce->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
            curl_multi_setopt(ce->multi, CURLMOPT_SOCKETDATA, ce) != CURLM_OK ||
            curl_multi_setopt(ce->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
            curl_multi_setopt(ce->multi, CURLMOPT_TIMERDATA, ce) != CURLM_OK) {
                destroy(ce);
                return -ENOMEM;
        }
        *ret = ce;
        return 0;
}
