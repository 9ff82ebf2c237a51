/* vsock-connect.c: the CONNECT/OK handshake of Firecracker's vsock device, host side. The
 * acknowledgement is read with MSG_PEEK first, so that not one byte of the guest's stream that
 * may follow it in the same segment is taken. */
#include "vsock-connect.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"

struct vsock_conn {
        struct event *ev, *deadline;
        int fd;
        char line[24];
        size_t line_len, sent;
        bool connecting;
        vsock_conn_fn cb;
        void *userdata;
};

int vsock_parse_ack(const char *buf, size_t len, uint32_t *ret_host_port)
{
        const char *nl = memchr(buf, '\n', len < VSOCK_REPLY_MAX ? len : VSOCK_REPLY_MAX);
        uint64_t v = 0;
        size_t i;

        if (!nl) {
                if (len >= VSOCK_REPLY_MAX)
                        return -EPROTO;
                return memcmp(buf, "OK ", len < 3 ? len : 3) == 0 ? 0 : -EPROTO;
        }
        if ((size_t)(nl - buf) < 4 || memcmp(buf, "OK ", 3) != 0)
                return -EPROTO;
        for (i = 3; buf + i < nl; i++) {
                if (buf[i] < '0' || buf[i] > '9' || v > UINT32_MAX / 10)
                        return -EPROTO;
                v = v * 10 + (uint64_t)(buf[i] - '0');
        }
        if (v > UINT32_MAX)
                return -EPROTO;
        *ret_host_port = (uint32_t)v;
        return (int)(nl - buf + 1);
}

static void conn_free(struct vsock_conn *c)
{
        if (c->ev)
                event_free(c->ev);
        if (c->deadline)
                event_free(c->deadline);
        safe_close(c->fd);
        free(c);
}

void vsock_connect_cancel(struct vsock_conn *c)
{
        if (c)
                conn_free(c);
}

static void finish(struct vsock_conn *c, int err)
{
        vsock_conn_fn cb = c->cb;
        void *userdata = c->userdata;
        int fd = -1;

        if (!err) {
                fd = c->fd;
                c->fd = -1;
        }
        conn_free(c);
        cb(fd, err, userdata);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
        finish(arg, -ETIMEDOUT);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
        struct vsock_conn *c = arg;
        char buf[VSOCK_REPLY_MAX];
        uint32_t port;
        ssize_t k;
        int r;

        if (c->connecting) {
                int err = 0;
                socklen_t len = sizeof(err);

                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err) {
                        finish(c, -err);
                        return;
                }
                c->connecting = false;
        }
        while (c->sent < c->line_len) {
                k = send(c->fd, c->line + c->sent, c->line_len - c->sent, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        finish(c, errno == EPIPE || errno == ECONNRESET ? -ECONNREFUSED : -errno);
                        return;
                }
                c->sent += (size_t)k;
        }
        event_del(c->ev);
        event_assign(c->ev, event_get_base(c->ev), c->fd, EV_READ | EV_PERSIST, on_io, c);
        event_add(c->ev, NULL);
        if (!(what & EV_READ))
                return;
        k = recv(c->fd, buf, sizeof(buf), MSG_PEEK);
        if (k < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                finish(c, errno == ECONNRESET ? -ECONNREFUSED : -errno);
                return;
        }
        if (k == 0) {
                finish(c, -ECONNREFUSED); /* closed without OK: nobody listens on the port */
                return;
        }
        r = vsock_parse_ack(buf, (size_t)k, &port);
        if (r == 0)
                return; /* the rest of the line is still coming (recv waits for it) */
        if (r < 0) {
                finish(c, r);
                return;
        }
        k = recv(c->fd, buf, (size_t)r, 0); /* exactly the line */
        finish(c, k == r ? 0 : -EIO);
}

int vsock_connect_start(struct event_base *base, const char *uds_path, uint32_t port,
                        uint32_t timeout_ms, vsock_conn_fn cb, void *userdata,
                        struct vsock_conn **ret)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct vsock_conn *c;
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

        if (strlen(uds_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, uds_path, strlen(uds_path));
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->cb = cb;
        c->userdata = userdata;
        c->line_len = (size_t)snprintf(c->line, sizeof(c->line), "CONNECT %u\n", port);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                int e = -errno;
                free(c);
                return e;
        }
        c->ev = event_new(base, c->fd, EV_WRITE, on_io, c);
        c->deadline = evtimer_new(base, on_deadline, c);
        if (!c->ev || !c->deadline) {
                conn_free(c);
                return -ENOMEM;
        }
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno != EINPROGRESS && errno != EAGAIN) {
                        int e = -errno;
                        conn_free(c);
                        return e;
                }
                c->connecting = true;
        }
        /* Even a connected socket reports through the loop, so cb never runs from here. */
        event_add(c->ev, NULL);
        evtimer_add(c->deadline, &tv);
        *ret = c;
        return 0;
}
