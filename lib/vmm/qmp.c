/* qmp.c: the QMP client: line framing over a bufferevent, a FIFO of pending commands matched
 * by id, and events handed to the owner. No logging; failures reach the callbacks. */
#include "qmp.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cleanup.h"
#include "util.h"

struct pending {
        uint64_t id;
        qmp_reply_fn cb;
        void *userdata;
};

struct qmp {
        struct bufferevent *bev;
        qmp_event_fn on_event;
        qmp_broken_fn on_broken;
        void *userdata;
        struct pending pending[QMP_PENDING_MAX];
        size_t head, count;
        uint64_t next_id;
        bool greeted;
        bool broken;
        unsigned busy; /* inside a callback: qmp_free() only marks the object dead */
        bool dead;
};

static void qmp_destroy(struct qmp *q)
{
        bufferevent_free(q->bev);
        free(q);
}

int qmp_parse_line(const char *line, size_t len, json_t **ret)
{
        json_t *v = json_loadb(line, len, 0, NULL);

        if (!v || !json_is_object(v)) {
                json_decref(v);
                return -EBADMSG;
        }
        *ret = v;
        return 0;
}

void qmp_msg_read(json_t *msg, struct qmp_msg *ret)
{
        json_t *ev = json_object_get(msg, "event"), *err = json_object_get(msg, "error");
        json_t *id = json_object_get(msg, "id");
        struct qmp_msg m = {
            .greeting = json_object_get(msg, "QMP") != NULL,
            .event = json_is_string(ev) ? json_string_value(ev) : NULL,
            .data = json_object_get(msg, "data"),
            .ret = json_object_get(msg, "return"),
            .error = err != NULL,
            .has_id = json_is_integer(id),
            .id = json_is_integer(id) ? (uint64_t)json_integer_value(id) : 0,
        };

        if (err)
                snprintf(m.error_text, sizeof(m.error_text), "%s: %s",
                         json_string_value(json_object_get(err, "class")) ?: "Error",
                         json_string_value(json_object_get(err, "desc")) ?: "no description");
        *ret = m;
}

static void fail_all(struct qmp *q, const char *why)
{
        while (q->count > 0 && !q->dead) {
                struct pending p = q->pending[q->head];

                q->head = (q->head + 1) % QMP_PENDING_MAX;
                q->count--;
                if (p.cb)
                        p.cb(q, NULL, why, p.userdata);
        }
}

static void broken(struct qmp *q, const char *why)
{
        if (q->broken)
                return;
        q->broken = true;
        bufferevent_disable(q->bev, EV_READ);
        fail_all(q, why);
        if (q->on_broken && !q->dead)
                q->on_broken(q, why, q->userdata);
}

static void handle(struct qmp *q, json_t *msg)
{
        struct qmp_msg m;

        qmp_msg_read(msg, &m);
        if (!q->greeted) {
                if (!m.greeting) {
                        broken(q, "QMP greeting missing");
                        return;
                }
                q->greeted = true;
                return;
        }
        if (m.event) {
                if (q->on_event)
                        q->on_event(q, m.event, m.data, q->userdata);
                return;
        }
        if ((!m.ret && !m.error) || q->count == 0) {
                broken(q, "unexpected QMP message");
                return;
        }
        struct pending p = q->pending[q->head];

        if (!m.has_id || m.id != p.id) {
                broken(q, "QMP answer out of order");
                return;
        }
        q->head = (q->head + 1) % QMP_PENDING_MAX;
        q->count--;
        if (!p.cb)
                return;
        if (m.ret)
                p.cb(q, m.ret, NULL, p.userdata);
        else
                p.cb(q, NULL, m.error_text, p.userdata);
}

static void on_read(struct bufferevent *bev, void *arg)
{
        struct qmp *q = arg;
        struct evbuffer *in = bufferevent_get_input(bev);

        q->busy++;
        while (!q->broken && !q->dead) {
                size_t len;
                char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
                json_t *msg;

                if (!line) {
                        if (evbuffer_get_length(in) > QMP_LINE_MAX)
                                broken(q, "QMP line too long");
                        break;
                }
                if (len == 0) {
                        free(line);
                        continue;
                }
                if (qmp_parse_line(line, len, &msg) < 0) {
                        free(line);
                        broken(q, "malformed QMP message");
                        break;
                }
                free(line);
                handle(q, msg);
                json_decref(msg);
        }
        if (--q->busy == 0 && q->dead)
                qmp_destroy(q);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
        struct qmp *q = arg;

        if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
                return;
        q->busy++;
        broken(q, "QMP channel closed");
        if (--q->busy == 0 && q->dead)
                qmp_destroy(q);
}

/* The command's line: {"execute": cmd, "id": N, "arguments": args}, newline-ended. */
static int command_line(struct qmp *q, const char *cmd, json_t *args, char **ret)
{
        json_t *msg;
        char *s;

        if (q->broken || q->dead) {
                json_decref(args);
                return -EPIPE;
        }
        if (q->count >= QMP_PENDING_MAX) {
                json_decref(args);
                return -EBUSY;
        }
        msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)(q->next_id + 1));
        if (!msg) {
                json_decref(args);
                return -ENOMEM;
        }
        if (args)
                json_object_set_new(msg, "arguments", args);
        s = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        if (!s || asprintf(ret, "%s\n", s) < 0) {
                free(s);
                return -ENOMEM;
        }
        free(s);
        return 0;
}

static void push_pending(struct qmp *q, qmp_reply_fn cb, void *userdata)
{
        q->pending[(q->head + q->count) % QMP_PENDING_MAX] =
            (struct pending){.id = ++q->next_id, .cb = cb, .userdata = userdata};
        q->count++;
}

int qmp_command(struct qmp *q, const char *cmd, json_t *args, qmp_reply_fn cb, void *userdata)
{
        _cleanup_free_ char *line = NULL;
        int r;

        r = command_line(q, cmd, args, &line);
        if (r < 0)
                return r;
        if (evbuffer_add(bufferevent_get_output(q->bev), line, strlen(line)) < 0)
                return -ENOMEM;
        push_pending(q, cb, userdata);
        return 0;
}

int qmp_command_fd(struct qmp *q, const char *cmd, json_t *args, int fd, qmp_reply_fn cb,
                   void *userdata)
{
        _cleanup_free_ char *line = NULL;
        struct evbuffer *out = bufferevent_get_output(q->bev);
        int sock = bufferevent_getfd(q->bev), r;
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u = {0};
        struct iovec iov;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        struct cmsghdr *c;
        size_t len;
        ssize_t k;

        r = command_line(q, cmd, args, &line);
        if (r < 0)
                return r;
        /* The fd travels with the line's first byte, so whatever is queued goes out first. */
        while (evbuffer_get_length(out) > 0)
                if (evbuffer_write(out, sock) <= 0)
                        return -EAGAIN;
        len = strlen(line);
        iov = (struct iovec){.iov_base = line, .iov_len = len};
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof(u.buf);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        do
                k = sendmsg(sock, &mh, MSG_NOSIGNAL);
        while (k < 0 && errno == EINTR);
        if (k <= 0)
                return k < 0 ? -errno : -EIO;
        if ((size_t)k < len && evbuffer_add(out, line + k, len - (size_t)k) < 0)
                return -ENOMEM;
        push_pending(q, cb, userdata);
        return 0;
}

int qmp_new(struct event_base *base, int fd, qmp_event_fn on_event_cb, qmp_broken_fn on_broken,
            void *userdata, struct qmp **ret)
{
        struct qmp *q = calloc(1, sizeof(*q));
        int r;

        if (!q) {
                safe_close(fd);
                return -ENOMEM;
        }
        op_fd_nonblock(fd, 1);
        q->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (!q->bev) {
                safe_close(fd);
                free(q);
                return -ENOMEM;
        }
        q->on_event = on_event_cb;
        q->on_broken = on_broken;
        q->userdata = userdata;
        bufferevent_setcb(q->bev, on_read, NULL, on_event, q);
        bufferevent_enable(q->bev, EV_READ | EV_WRITE);
        r = qmp_command(q, "qmp_capabilities", NULL, NULL, NULL);
        if (r < 0) {
                qmp_free(q);
                return r;
        }
        *ret = q;
        return 0;
}

struct qmp *qmp_free(struct qmp *q)
{
        if (!q)
                return NULL;
        if (q->busy) {
                q->dead = true;
                bufferevent_disable(q->bev, EV_READ | EV_WRITE);
                return NULL;
        }
        qmp_destroy(q);
        return NULL;
}
