/* httpd.c: the HTTP listeners opd may serve (metrics.listen, piston.listen): a loopback TCP port or
 * a UNIX socket, never anything else; connections capped per listener and per peer, a deadline
 * for each request to arrive whole, bounded headers and bodies, Host and Origin checked, fds kept
 * in reserve, and a pause on EMFILE. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "cleanup.h"
#include "client.h"
#include "httpd.h"
#include "log.h"
#include "opd.h"
#include "server.h"
#include "util.h"

#define HTTPD_HEADERS_MAX  (16 * 1024)
#define HTTPD_ACCEPT_RETRY 100 /* ms */
#define HTTPD_PEER_MAX     64  /* bytes of a peer's key: "uid 1000", "127.0.0.1" */
/* Bytes read ahead of evhttp while it answers: it keeps reading then (to see a close) and would
 * keep whatever a client pipelines behind its request. While a request arrives the bound is
 * httpd.read_max instead: evhttp takes a body sent with Content-Length from the input only once
 * all of it is there, so the input must have room for the whole request. */
#define HTTPD_READ_AHEAD (64 * 1024)

/* One accepted connection. evhttp makes it (its bufferevent comes from on_new_bev()); it is
 * adopted at the next turn of the loop, or by its first request if that comes first. */
struct hconn {
        LIST_ENTRY(hconn) link;
        struct httpd *h;
        struct bufferevent *bev;         /* a reference held until the connection closes */
        struct evhttp_connection *evcon; /* NULL until adopted */
        struct event *timer;             /* adoption, then the request deadline */
        char peer[HTTPD_PEER_MAX];
        bool busy; /* a request is being answered: the deadline waits for the answer */
};

struct route {
        LIST_ENTRY(route) link;
        struct httpd *h;
        httpd_cb cb;
        void *arg;
};

struct httpd {
        struct opd *d;
        const char *key; /* the config key, for logs */
        struct evhttp *http;
        struct evconnlistener *listener; /* evhttp accepts through it; freed by evhttp_free() */
        char *unix_path;                 /* unlinked at close */
        uint16_t port;                   /* TCP: the port Host and Origin must name */
        size_t read_max; /* bytes read ahead while a request arrives: its headers and body */
        LIST_HEAD(, hconn) conns;
        unsigned n_conns;
        bool full;            /* accepting stopped at http.max_connections */
        bool stopped;         /* paused for good (shutdown) or closing */
        httpd_admit_fn admit; /* NULL: every peer that can connect */
        LIST_HEAD(, route) routes;
};

static int bind_unix(const char *path, mode_t mode)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        struct stat st;
        mode_t old;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                unlink(path); /* left over by an earlier run */
        old = umask(~mode & 0777);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0 || listen(fd, 64) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int bind_tcp(const char *host, uint16_t port, uint16_t *ret_port)
{
        struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(port)};
        bool v6 = strchr(host, ':') != NULL;
        _cleanup_close_ int fd = -1;
        socklen_t len;
        int one = 1;

        if (v6 ? inet_pton(AF_INET6, host, &s6.sin6_addr) != 1
               : inet_pton(AF_INET, host, &s4.sin_addr) != 1)
                return -EINVAL;
        fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if ((v6 ? bind(fd, (struct sockaddr *)&s6, sizeof(s6))
                : bind(fd, (struct sockaddr *)&s4, sizeof(s4))) < 0 ||
            listen(fd, 64) < 0)
                return -errno;
        /* Port 0: the one the kernel chose. */
        len = v6 ? sizeof(s6) : sizeof(s4);
        if (getsockname(fd, v6 ? (struct sockaddr *)&s6 : (struct sockaddr *)&s4, &len) < 0)
                return -errno;
        *ret_port = ntohs(v6 ? s6.sin6_port : s4.sin_port);
        return TAKE_FD(fd);
}

/* Raw, for a connection refused before evhttp has read anything of it: 403 or 503. */
static void refuse_raw(int fd, int status, const char *why)
{
        char buf[512];
        int body, n;
        char msg[256];

        body = snprintf(msg, sizeof(msg), "{\"message\":\"%s\"}", why);
        n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json; "
                     "charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                     status, status == 403 ? "Forbidden" : "Service Unavailable", body, msg);
        (void)!send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void reopen_if_room(struct httpd *h)
{
        if (h->full && h->n_conns < h->d->cfg.http_max_conns && !h->stopped) {
                h->full = false;
                evconnlistener_enable(h->listener);
        }
}

static void hconn_free(struct hconn *hc)
{
        struct httpd *h = hc->h;

        LIST_REMOVE(hc, link);
        h->n_conns--;
        event_free(hc->timer);
        bufferevent_decref(hc->bev);
        free(hc);
        reopen_if_room(h);
}

/* evhttp frees the connection (closed by the peer, an error, a timeout, or us). */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
        hconn_free(arg);
}

static void deadline_arm(struct hconn *hc)
{
        op_timer_arm_ms(hc->timer, hc->h->d->cfg.http_request_timeout_ms);
}

/* Who the peer is, for the per-peer cap: its uid on a UNIX socket, its address on TCP. */
static void peer_key(struct hconn *hc, int fd)
{
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        struct ucred cred;
        socklen_t clen = sizeof(cred);

        if (hc->h->unix_path) {
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
                        snprintf(hc->peer, sizeof(hc->peer), "uid %u", (unsigned)cred.uid);
                else
                        snprintf(hc->peer, sizeof(hc->peer), "unknown");
                return;
        }
        if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0 ||
            !inet_ntop(ss.ss_family,
                       ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                                : (void *)&((struct sockaddr_in *)&ss)->sin_addr,
                       hc->peer, sizeof(hc->peer)))
                snprintf(hc->peer, sizeof(hc->peer), "unknown");
}

static bool root_peer(const char *peer)
{
        char own[32];

        snprintf(own, sizeof(own), "uid %u", (unsigned)getuid());
        return strcmp(peer, "uid 0") == 0 || strcmp(peer, own) == 0;
}

/* Link the connection to evhttp's; -EMFILE when its fd eats into the reserve, -EACCES when the
 * listener's admit() refuses its peer, -EBUSY when its peer already holds
 * http.max_connections_per_peer. The caller closes a refused one. */
static int adopt(struct hconn *hc, struct evhttp_connection *evcon)
{
        struct httpd *h = hc->h;
        int fd = bufferevent_getfd(hc->bev);
        unsigned same = 0;
        struct hconn *o;

        hc->evcon = evcon;
        evhttp_connection_set_closecb(evcon, on_conn_close, hc);
        peer_key(hc, fd);
        deadline_arm(hc);
        if (!server_fd_spare(h->d, fd, true))
                return -EMFILE;
        if (h->admit && !h->admit(h->d, fd))
                return -EACCES;
        if (root_peer(hc->peer))
                return 0;
        LIST_FOREACH(o, &h->conns, link)
        if (o != hc && o->evcon && strcmp(o->peer, hc->peer) == 0)
                same++;
        return same >= h->d->cfg.http_max_conns_per_peer ? -EBUSY : 0;
}

static const char *refusal(int r)
{
        return r == -EMFILE ? "opd keeps its remaining file descriptors for VMs: try later"
               : r == -EACCES
                   ? "not allowed (access.group only)"
                   : "too many connections from this peer (http.max_connections_per_peer)";
}

static int refusal_status(int r)
{
        return r == -EACCES ? 403 : 503;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        struct hconn *hc = arg;
        struct evhttp_connection *evcon;
        void *cbarg = NULL;
        bufferevent_data_cb readcb = NULL;
        int r;

        if (hc->evcon) {
                /* The request deadline. */
                if (hc->busy)
                        return;
                log_debug("%s: %s: no whole request within %u ms: closing", hc->h->key, hc->peer,
                          hc->h->d->cfg.http_request_timeout_ms);
                evhttp_connection_free(hc->evcon); /* on_conn_close() frees hc */
                return;
        }
        /* Adoption: evhttp has set its callbacks on our bufferevent, with the connection as
         * their argument; none means evhttp has already freed it. */
        bufferevent_getcb(hc->bev, &readcb, NULL, NULL, &cbarg);
        if (!readcb || !cbarg) {
                hconn_free(hc);
                return;
        }
        evcon = cbarg;
        r = adopt(hc, evcon);
        if (r < 0) {
                if (opd_count_refusal(hc->h->d))
                        log_warn("%s: refused a connection from %s (%llu so far): %s", hc->h->key,
                                 hc->peer, (unsigned long long)hc->h->d->stats.refused,
                                 r == -EMFILE   ? "file descriptors kept in reserve"
                                 : r == -EACCES ? "not in access.group"
                                                : "http.max_connections_per_peer reached");
                refuse_raw(bufferevent_getfd(hc->bev), refusal_status(r), refusal(r));
                evhttp_connection_free(evcon);
        }
}

/* evhttp is taking a connection: its bufferevent is ours, so that we see it come and go. */
static struct bufferevent *on_new_bev(struct event_base *base, void *arg)
{
        struct httpd *h = arg;
        struct hconn *hc = calloc(1, sizeof(*hc));

        if (!hc)
                return NULL; /* evhttp makes its own; the connection is not counted */
        hc->h = h;
        hc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        hc->timer = evtimer_new(base, on_timer, hc);
        if (!hc->bev || !hc->timer) {
                if (hc->bev)
                        bufferevent_free(hc->bev);
                if (hc->timer)
                        event_free(hc->timer);
                free(hc);
                return NULL;
        }
        bufferevent_incref(hc->bev);
        bufferevent_setwatermark(hc->bev, EV_READ, 0, h->read_max);
        op_timer_arm_ms(hc->timer, 0);
        LIST_INSERT_HEAD(&h->conns, hc, link);
        if (++h->n_conns >= h->d->cfg.http_max_conns) {
                /* The rest wait in the listen backlog until one closes. */
                h->full = true;
                evconnlistener_disable(h->listener);
        }
        return hc->bev;
}

static struct hconn *find_conn(struct httpd *h, struct evhttp_request *req)
{
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
        struct hconn *hc;

        LIST_FOREACH(hc, &h->conns, link)
        if (hc->bev == bev)
                return hc;
        return NULL;
}

static void on_request_complete(struct evhttp_request *req, void *arg)
{
        struct hconn *hc = arg;

        /* The next request on this connection has its own deadline from now, and room to arrive
         * whole. */
        hc->busy = false;
        bufferevent_setwatermark(hc->bev, EV_READ, 0, hc->h->read_max);
        deadline_arm(hc);
}

void httpd_send_message(struct evhttp_request *req, int status, const char *msg)
{
        json_t *body = json_pack("{s:s}", "message", msg);
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        struct evbuffer *out = evbuffer_new();

        json_decref(body);
        if (!text || !out || evbuffer_add(out, text, strlen(text)) < 0)
                evhttp_send_error(req, HTTP_INTERNAL, NULL);
        else {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                                  "application/json; charset=utf-8");
                evhttp_send_reply(req, status, NULL, out);
        }
        if (out)
                evbuffer_free(out);
}

/* Host names this listener: 127.0.0.1:PORT, [::1]:PORT or localhost:PORT (the port may be left
 * out when it is 80). A UNIX socket cannot be reached by a web page: any Host does. */
static bool host_ok(const struct httpd *h, const char *host, size_t len)
{
        static const char *const names[] = {"127.0.0.1", "[::1]", "localhost"};

        if (h->unix_path)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                size_t n = strlen(names[i]);
                char port[8];

                if (len < n || strncasecmp(host, names[i], n) != 0)
                        continue;
                if (len == n)
                        return h->port == 80;
                snprintf(port, sizeof(port), ":%u", (unsigned)h->port);
                if (len - n == strlen(port) && memcmp(host + n, port, len - n) == 0)
                        return true;
        }
        return false;
}

/* DNS rebinding: a web page whose name now points at 127.0.0.1 sends its own Host; a page that
 * calls us cross-origin sends its Origin. Both must name this listener. */
static bool request_origin_ok(const struct httpd *h, struct evhttp_request *req)
{
        struct evkeyvalq *in = evhttp_request_get_input_headers(req);
        const char *host = evhttp_find_header(in, "Host");
        const char *origin = evhttp_find_header(in, "Origin");

        if (h->unix_path)
                return true;
        if (!host || !host_ok(h, host, strlen(host)))
                return false;
        if (origin)
                return strncasecmp(origin, "http://", 7) == 0 &&
                       host_ok(h, origin + 7, strlen(origin + 7));
        return true;
}

/* Every request enters through here, read whole: its connection is adopted if it was not yet,
 * its deadline waits for the answer, what is read ahead meanwhile is bounded by
 * HTTPD_READ_AHEAD, and a foreign Host or Origin gets 403. */
static void on_route(struct evhttp_request *req, void *arg)
{
        struct route *rt = arg;
        struct httpd *h = rt->h;
        struct hconn *hc = find_conn(h, req);

        if (hc && !hc->evcon) {
                int r = adopt(hc, evhttp_request_get_connection(req));

                if (r < 0) {
                        h->d->stats.refused++;
                        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                                          "close");
                        httpd_send_message(req, refusal_status(r), refusal(r));
                        return;
                }
        }
        if (hc) {
                hc->busy = true;
                bufferevent_setwatermark(hc->bev, EV_READ, 0, HTTPD_READ_AHEAD);
                evhttp_request_set_on_complete_cb(req, on_request_complete, hc);
        }
        if (!request_origin_ok(h, req)) {
                httpd_send_message(req, 403,
                                   "forbidden: the Host (and Origin) must name this listener "
                                   "(localhost, 127.0.0.1 or [::1] and its port)");
                return;
        }
        rt->cb(req, rt->arg);
}

static struct route *route_new(struct httpd *h, httpd_cb cb, void *arg)
{
        struct route *rt = calloc(1, sizeof(*rt));

        if (!rt)
                return NULL;
        rt->h = h;
        rt->cb = cb;
        rt->arg = arg;
        LIST_INSERT_HEAD(&h->routes, rt, link);
        return rt;
}

int httpd_set_cb(struct httpd *h, const char *path, httpd_cb cb, void *arg)
{
        struct route *rt = route_new(h, cb, arg);

        if (!rt)
                return -ENOMEM;
        return evhttp_set_cb(h->http, path, on_route, rt) == 0 ? 0 : -EEXIST;
}

int httpd_set_gencb(struct httpd *h, httpd_cb cb, void *arg)
{
        struct route *rt = route_new(h, cb, arg);

        if (!rt)
                return -ENOMEM;
        evhttp_set_gencb(h->http, on_route, rt);
        return 0;
}

/* The listener's user pointer is evhttp's (evhttp_bind_listener() sets it), not ours: this
 * callback reaches nothing but the listener. It stops accepting and leaves a timer, found again
 * by httpd_close(), to start again. */
static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
        struct event *self = event_base_get_running_event(evconnlistener_get_base(arg));

        evconnlistener_enable(arg);
        event_free(self);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
        int e = EVUTIL_SOCKET_ERROR();
        struct event *retry;

        if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM)
                return;
        retry = evtimer_new(evconnlistener_get_base(l), on_accept_retry, l);
        if (!retry)
                return; /* out of memory: accept is tried again at once */
        log_warn("HTTP listener (fd %d): accept: %s; pausing for %d ms",
                 (int)evconnlistener_get_fd(l), strerror(e), HTTPD_ACCEPT_RETRY);
        evconnlistener_disable(l);
        op_timer_arm_ms(retry, HTTPD_ACCEPT_RETRY);
}

struct retry_find {
        struct evconnlistener *l;
        struct event *found[8];
        unsigned n;
};

static int find_retry(const struct event_base *base, const struct event *ev, void *arg)
{
        struct retry_find *f = arg;

        if (event_get_callback(ev) == on_accept_retry && event_get_callback_arg(ev) == f->l &&
            f->n < ELEMENTSOF(f->found))
                f->found[f->n++] = (struct event *)ev;
        return 0;
}

int httpd_open(struct opd *d, const char *key, const char *spec, size_t body_max,
               struct httpd **ret)
{
        const char *path, *host;
        uint16_t port, bound_port = 0;
        struct timeval idle = {d->cfg.read_timeout_ms / 1000,
                               (d->cfg.read_timeout_ms % 1000) * 1000};
        struct httpd *h;
        int fd;

        if (op_config_local_listen(spec, &path, &host, &port) < 0) {
                log_error("%s: loopback or unix: only, not \"%s\"", key, spec);
                return -EINVAL;
        }
        fd = path ? bind_unix(path, d->cfg.socket_mode) : bind_tcp(host, port, &bound_port);
        if (fd < 0)
                return log_error_errno(fd, "%s: cannot listen on %s", key, spec);
        h = calloc(1, sizeof(*h));
        if (!h || (path && !(h->unix_path = strdup(path)))) {
                free(h);
                close(fd);
                if (path)
                        unlink(path);
                return -ENOMEM;
        }
        h->d = d;
        h->key = key;
        h->port = bound_port;
        /* Headers and body, what evhttp must see whole; never less than HTTPD_READ_AHEAD. */
        h->read_max = HTTPD_HEADERS_MAX + body_max > HTTPD_READ_AHEAD ? HTTPD_HEADERS_MAX + body_max
                                                                      : HTTPD_READ_AHEAD;
        LIST_INIT(&h->conns);
        LIST_INIT(&h->routes);
        h->http = evhttp_new(d->base);
        if (h->http)
                h->listener = evconnlistener_new(
                    d->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
        if (!h->listener) {
                close(fd);
                httpd_close(h);
                return -ENOMEM;
        }
        if (!evhttp_bind_listener(h->http, h->listener)) {
                evconnlistener_free(h->listener);
                h->listener = NULL;
                httpd_close(h);
                return -ENOMEM;
        }
        evconnlistener_set_error_cb(h->listener, on_accept_error);
        evhttp_set_bevcb(h->http, on_new_bev, h);
        evhttp_set_max_headers_size(h->http, HTTPD_HEADERS_MAX);
        evhttp_set_max_body_size(h->http, (ev_ssize_t)body_max);
        /* Idle reading or writing for read_timeout_ms closes a connection; the whole request
         * has http.request_timeout_ms. */
        evhttp_set_timeout_tv(h->http, &idle);
        *ret = h;
        return 0;
}

struct evhttp *httpd_http(struct httpd *h)
{
        return h->http;
}

void httpd_set_admit(struct httpd *h, httpd_admit_fn admit)
{
        h->admit = admit;
}

bool httpd_is_unix(const struct httpd *h)
{
        return h && h->unix_path;
}

uint16_t httpd_port(const struct httpd *h)
{
        return h ? h->port : 0;
}

static void cancel_retries(struct httpd *h)
{
        struct retry_find f = {.l = h->listener};

        event_base_foreach_event(h->d->base, find_retry, &f);
        for (unsigned i = 0; i < f.n; i++)
                event_free(f.found[i]);
}

void httpd_pause(struct httpd *h)
{
        if (!h || !h->listener)
                return;
        h->stopped = true;
        cancel_retries(h);
        evconnlistener_disable(h->listener);
}

unsigned httpd_connections(const struct httpd *h)
{
        return h ? h->n_conns : 0;
}

struct httpd *httpd_close(struct httpd *h)
{
        struct route *rt;

        if (!h)
                return NULL;
        h->stopped = true;
        if (h->listener)
                cancel_retries(h);
        /* evhttp_free() frees the bound listener (and closes its fd), and every connection,
         * calling on_conn_close() for each. */
        if (h->http)
                evhttp_free(h->http);
        while (!LIST_EMPTY(&h->conns)) /* taken, never adopted */
                hconn_free(LIST_FIRST(&h->conns));
        while ((rt = LIST_FIRST(&h->routes))) {
                LIST_REMOVE(rt, link);
                free(rt);
        }
        if (h->unix_path)
                unlink(h->unix_path);
        free(h->unix_path);
        free(h);
        return NULL;
}
