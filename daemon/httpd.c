/* httpd.c: the HTTP listeners opd may serve (metrics.listen, piston.listen): a loopback TCP port or
 * a UNIX socket, never anything else; bounded headers, bodies and idle time; a pause on EMFILE. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "cleanup.h"
#include "httpd.h"
#include "log.h"
#include "opd.h"

#define HTTPD_HEADERS_MAX  (16 * 1024)
#define HTTPD_ACCEPT_RETRY 100 /* ms */

struct httpd {
        const char *key; /* the config key, for logs */
        struct evhttp *http;
        struct evconnlistener *listener; /* owned by http once bound */
        struct event *retry_ev;          /* accepting again after EMFILE */
        char *unix_path;                 /* unlinked at close */
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

static int bind_tcp(const char *host, uint16_t port)
{
        struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(port)};
        bool v6 = strchr(host, ':') != NULL;
        _cleanup_close_ int fd = -1;
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
        return TAKE_FD(fd);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
        struct httpd *h = arg;

        evconnlistener_enable(h->listener);
}

/* evhttp accepts; a failure that would repeat at once (out of fds) pauses accepting. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
        struct httpd *h = arg;
        int e = EVUTIL_SOCKET_ERROR();

        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                log_warn("%s: accept: %s; pausing for %d ms", h->key, strerror(e),
                         HTTPD_ACCEPT_RETRY);
                evconnlistener_disable(l);
                op_timer_arm_ms(h->retry_ev, HTTPD_ACCEPT_RETRY);
        }
}

int httpd_open(struct opd *d, const char *key, const char *spec, size_t body_max,
               struct httpd **ret)
{
        const char *path, *host;
        uint16_t port;
        struct timeval idle = {d->cfg.read_timeout_ms / 1000,
                               (d->cfg.read_timeout_ms % 1000) * 1000};
        struct httpd *h;
        int fd;

        if (op_config_local_listen(spec, &path, &host, &port) < 0) {
                log_error("%s: loopback or unix: only, not \"%s\"", key, spec);
                return -EINVAL;
        }
        fd = path ? bind_unix(path, d->cfg.socket_mode) : bind_tcp(host, port);
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
        h->key = key;
        h->http = evhttp_new(d->base);
        h->retry_ev = evtimer_new(d->base, on_accept_retry, h);
        if (h->http && h->retry_ev)
                h->listener = evconnlistener_new(
                    d->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
        if (!h->listener) {
                close(fd);
                httpd_close(h);
                return -ENOMEM;
        }
        if (!evhttp_bind_listener(h->http, h->listener)) {
                evconnlistener_free(h->listener);
                httpd_close(h);
                return -ENOMEM;
        }
        evconnlistener_set_error_cb(h->listener, on_accept_error);
        evhttp_set_max_headers_size(h->http, HTTPD_HEADERS_MAX);
        evhttp_set_max_body_size(h->http, (ev_ssize_t)body_max);
        evhttp_set_timeout_tv(h->http, &idle);
        *ret = h;
        return 0;
}

struct evhttp *httpd_http(struct httpd *h)
{
        return h->http;
}

bool httpd_is_unix(const struct httpd *h)
{
        return h && h->unix_path;
}

void httpd_pause(struct httpd *h)
{
        if (!h)
                return;
        if (h->listener)
                evconnlistener_disable(h->listener);
        if (h->retry_ev)
                evtimer_del(h->retry_ev);
}

struct httpd *httpd_close(struct httpd *h)
{
        if (!h)
                return NULL;
        /* evhttp_free frees the bound listener (and closes its fd) with it. */
        if (h->http)
                evhttp_free(h->http);
        if (h->retry_ev)
                event_free(h->retry_ev);
        if (h->unix_path)
                unlink(h->unix_path);
        free(h->unix_path);
        free(h);
        return NULL;
}
