/* client.c: one client connection: frames in with a read deadline and bounded buffering,
 * answers out under a high-water mark and a hard cap, and a close that flushes (within a
 * deadline) before the object is freed at a safe point. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "access.h"
#include "cleanup.h"
#include "client-private.h"
#include "client.h"
#include "evframe.h"
#include "log.h"
#include "opd.h"
#include "ops.h"
#include "request.h"
#include "util.h"

/* Every connection: open, or closed and waiting for the reap point to be freed. */
struct clients {
        LIST_HEAD(, client) open;
        LIST_HEAD(, client) closing;
        unsigned n; /* both lists */
        /* A turn: the callbacks the loop runs together, from the first read of a connection to
         * turn_ev, made active then at the normal priority, so run after those ready with it. */
        struct event *turn_ev;
        uint64_t turn;             /* turns counted */
        bool turn_open;            /* turn_ev is active: the turn has not ended */
        struct turn_use deferred;  /* what the deferred connections were answered this turn */
        uint64_t deferred_next_us; /* no deferred connection is answered before (op_now_us()) */
};

struct reply_slot {
        LIST_ENTRY(reply_slot) link;
        struct client *client; /* NULL once the client is gone */
        json_t *id;
        void (*gone)(void *data); /* told when the client goes */
        void *gone_data;
};

static void on_event(struct bufferevent *bev, short what, void *arg);

static void client_move_to_closing(struct client *c)
{
        LIST_REMOVE(c, link);
        LIST_INSERT_HEAD(&c->d->clients->closing, c, link);
        opd_schedule_reap(c->d);
}

static void on_read_timeout(evutil_socket_t fd, short what, void *arg)
{
        struct client *c = arg;

        /* A frame that arrived whole and waits for a later turn is not late: on_read() goes on
         * with it (and restarts the deadline for what follows). */
        if (evframe_complete(bufferevent_get_input(c->bev)))
                return;
        client_send(c, op_error_reply(NULL, OP_ERR_BAD_REQUEST,
                                      "incomplete frame: no complete frame within %u ms",
                                      c->d->cfg.read_timeout_ms));
        client_close(c, "read deadline");
}

/* Idle: nothing read for idle_timeout_ms. A connection still owed an answer is kept (its
 * requests have their own deadlines); one owed nothing is closed without a word. */
static void idle_arm(struct client *c)
{
        if (c->d->cfg.idle_timeout_ms)
                op_timer_arm_ms(c->idle_timer, c->d->cfg.idle_timeout_ms);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
        struct client *c = arg;

        if (c->overflow) {
                client_close(c, "answers past client.output_max");
                return;
        }
        if (c->inflight > 0 || !LIST_EMPTY(&c->slots)) {
                idle_arm(c);
                return;
        }
        c->d->stats.idle_closed++;
        client_close(c, "idle");
}

static size_t output_len(const struct client *c)
{
        return evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* Half-closed: every request it sent is answered once none is in flight and no whole frame is
 * left unread (one turn reads at most TURN_FRAMES; the rest wait in the input buffer for the
 * next turns). What is left then is at most the start of a frame that can no longer come
 * whole: it is dropped. */
static bool all_answered(struct client *c)
{
        return c->inflight == 0 && !evframe_complete(bufferevent_get_input(c->bev));
}

/* One turn of the loop answers at most this much of one connection's pipelined requests, and
 * of all the connections of one uid together (root, opd's user and admins aside): frames, bytes
 * of frames read (a frame is read whole, so one large frame ends the turn), bytes of answers. A
 * connection with more to answer is deferred: its events, and the rest of its requests, run at
 * OPD_PRI_DEFERRED, only in turns where no other event was ready, and then at most
 * DEFERRED_FRAMES, DEFERRED_INPUT or DEFERRED_OUTPUT of all the deferred connections together; and
 * the deferred connections take at most half of the loop's time (after answering them for t, none
 * is answered for the next t). It is back at the normal priority once it has answered all it
 * has read. So a client that sends little is answered ahead of one that floods, waiting at most
 * for one deferred share of work, and opd does not spend all its CPU time on the one that
 * floods. */
#define TURN_FRAMES     16
#define TURN_INPUT      (1024 * 1024)
#define TURN_OUTPUT     (256 * 1024)
#define DEFERRED_FRAMES 4
#define DEFERRED_INPUT  (256 * 1024)
#define DEFERRED_OUTPUT (64 * 1024)

static void on_turn_end(evutil_socket_t fd, short what, void *arg)
{
        ((struct clients *)arg)->turn_open = false;
}

/* t for this turn: emptied when a new turn began. */
static struct turn_use *turn_now(struct opd *d, struct turn_use *t)
{
        struct clients *cs = d->clients;

        if (!cs->turn_open) {
                cs->turn++;
                cs->turn_open = true;
                event_active(cs->turn_ev, EV_TIMEOUT, 0);
        }
        if (t->turn != cs->turn) {
                t->turn = cs->turn;
                t->frames = 0;
                t->output = 0;
                t->input = 0;
        }
        return t;
}

static bool turn_spent(const struct turn_use *t, unsigned frames, size_t input, size_t output)
{
        return t && (t->frames >= frames || t->input >= input || t->output >= output);
}

static void turn_count(struct turn_use *t, unsigned frames, size_t input, size_t output)
{
        if (t) {
                t->frames += frames;
                t->input += input;
                t->output += output;
        }
}

/* Past its turn (deferred) or not: its socket's events at that priority. */
static void client_defer(struct client *c, bool deferred)
{
        if (c->deferred == deferred)
                return;
        /* Refused while one of its events is active: tried again at its next read. */
        if (bufferevent_priority_set(c->bev, deferred ? OPD_PRI_DEFERRED : OPD_PRI_NORMAL) == 0)
                c->deferred = deferred;
}

static void on_read(struct bufferevent *bev, void *arg)
{
        struct client *c = arg;
        struct evbuffer *in = bufferevent_get_input(bev);
        struct turn_use *share =
            c->uid_use && !c->exempt ? turn_now(c->d, &c->uid_use->turn) : NULL;
        struct turn_use *deferred = c->deferred ? turn_now(c->d, &c->d->clients->deferred) : NULL;
        size_t out0 = output_len(c), out_prev = out0, took = 0;
        uint64_t t0 = deferred ? op_now_us() : 0;
        unsigned frames = 0;
        bool more = false;
        char err[256];

        idle_arm(c);
        if (deferred && t0 < c->d->clients->deferred_next_us) {
                op_timer_arm_us(c->more_timer, c->d->clients->deferred_next_us - t0);
                return;
        }
        while (!c->closing && !c->out_paused && !c->overflow) {
                size_t grew = output_len(c) > out_prev ? output_len(c) - out_prev : 0;
                size_t len = evbuffer_get_length(in);
                json_t *obj = NULL;
                int r;

                turn_count(share, 0, 0, grew);
                turn_count(deferred, 0, 0, grew);
                out_prev = output_len(c);
                if (frames >= TURN_FRAMES || took >= TURN_INPUT ||
                    output_len(c) > out0 + TURN_OUTPUT ||
                    turn_spent(share, TURN_FRAMES, TURN_INPUT, TURN_OUTPUT) ||
                    turn_spent(deferred, DEFERRED_FRAMES, DEFERRED_INPUT, DEFERRED_OUTPUT)) {
                        more = len > 0;
                        break;
                }
                r = evframe_next(in, c->d->cfg.limits.frame_max,
                                 op_limits_values_max(&c->d->cfg.limits), &obj, err, sizeof(err));
                if (r == 0)
                        break;
                len -= evbuffer_get_length(in); /* the frame's bytes */
                took += len;
                frames++;
                turn_count(share, 1, len, 0);
                turn_count(deferred, 1, len, 0);
                if (r == -EMSGSIZE) {
                        client_send(c, op_error_reply(NULL, OP_ERR_FRAME_TOO_LARGE,
                                                      "frame larger than %zu bytes",
                                                      c->d->cfg.limits.frame_max));
                        client_close(c, "frame too large");
                        return;
                }
                if (r == -EBADMSG) {
                        client_send(c, op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", err));
                        continue;
                }
                if (r < 0) {
                        client_close(c, "out of memory");
                        return;
                }
                op_dispatch(c, obj);
                json_decref(obj);
        }
        /* The deadline bounds how long one frame takes to arrive: a frame read whole restarts
         * it for the next one, even when a write of the client left a part of that behind. */
        if (frames)
                evtimer_del(c->read_timer);
        if (deferred && frames) {
                uint64_t t1 = op_now_us();

                c->d->clients->deferred_next_us = t1 + (t1 - t0);
        }
        if (more) {
                /* A timer, not an active event: it runs after the next poll, and only in a turn
                 * where no event of normal priority was ready. */
                client_defer(c, true);
                op_timer_arm_ms(c->more_timer, 0);
                return;
        }
        if (c->closing || c->out_paused || c->overflow)
                return;
        client_defer(c, false); /* all it sent is answered */
        if (c->read_eof) {
                /* Nothing more comes: no frame to wait for, and no read to close it at. */
                if (all_answered(c))
                        client_close(c, "peer closed, all answered");
                return;
        }
        if (evframe_partial(in)) {
                if (!evtimer_pending(c->read_timer, NULL))
                        op_timer_arm_ms(c->read_timer, c->d->cfg.read_timeout_ms);
        } else
                evtimer_del(c->read_timer);
}

/* Closing: called once the output buffer has drained. Open and paused: called once it is down
 * to half the high-water mark, and reading (and answering what was read) resumes. */
static void on_more(evutil_socket_t fd, short what, void *arg)
{
        struct client *c = arg;

        if (!c->closing && !c->out_paused && !c->overflow)
                on_read(c->bev, c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
        struct client *c = arg;

        if (c->closing) {
                if (output_len(c) == 0)
                        client_move_to_closing(c);
                return;
        }
        if (!c->out_paused)
                return;
        c->out_paused = false;
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
        if (!c->read_eof)
                bufferevent_enable(c->bev, EV_READ);
        on_read(c->bev, c);
}

/* Above the high-water mark: read nothing more (and answer nothing more of what was read)
 * until the client has taken its answers. Past the hard cap: drop them and close. */
static void output_check(struct client *c)
{
        size_t len = output_len(c);

        if (c->closing || c->overflow)
                return;
        if (c->d->cfg.client_output_max && len > c->d->cfg.client_output_max) {
                log_warn("client pid %d uid %u: %zu bytes of answers not taken, past "
                         "client.output_max: closing",
                         (int)c->pid, (unsigned)c->uid, len);
                c->overflow = true;
                c->d->stats.output_overflow++;
                bufferevent_disable(c->bev, EV_READ | EV_WRITE);
                evbuffer_drain(bufferevent_get_output(c->bev), len);
                /* Not from here: the caller may be a request finishing. */
                evtimer_del(c->read_timer);
                op_timer_arm_ms(c->idle_timer, 0);
                return;
        }
        if (!c->out_paused && c->d->cfg.client_output_high && len > c->d->cfg.client_output_high) {
                c->out_paused = true;
                c->d->stats.output_paused++;
                evtimer_del(c->read_timer); /* its partial frame waits for us, not for it */
                bufferevent_disable(c->bev, EV_READ);
                bufferevent_setwatermark(c->bev, EV_WRITE, c->d->cfg.client_output_high / 2, 0);
                bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
        }
}

/* After an end of file: whether the peer closed its socket (or exited), rather than shut down
 * only its sending side. A UNIX stream socket reports POLLHUP once both directions are shut, as
 * its peer's close does; shutdown(SHUT_WR) shuts only this side's reading. */
static bool peer_closed(struct bufferevent *bev)
{
        struct pollfd p = {.fd = bufferevent_getfd(bev)};

        return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
        struct client *c = arg;

        if ((what & BEV_EVENT_TIMEOUT) && c->closing) {
                /* The flush deadline of a closing connection: drop what it did not take. */
                bufferevent_disable(bev, EV_READ | EV_WRITE);
                evbuffer_drain(bufferevent_get_output(bev), output_len(c));
                client_move_to_closing(c);
                return;
        }
        if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
                if (c->closing) {
                        client_move_to_closing(c);
                        return;
                }
                if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
                    !(what & BEV_EVENT_WRITING) && !peer_closed(bev)) {
                        /* Half-close: what was read is still answered, the frames left
                         * to later turns included (on_more() goes on with them). */
                        c->read_eof = true;
                        evtimer_del(c->read_timer);
                        bufferevent_disable(bev, EV_READ);
                        if (all_answered(c))
                                client_close(c, "peer closed");
                        return;
                }
                /* Nothing more can be written: drop queued output, close now (its requests
                 * are cancelled, their VMs destroyed). */
                evbuffer_drain(bufferevent_get_output(bev),
                               evbuffer_get_length(bufferevent_get_output(bev)));
                client_close(c, what & BEV_EVENT_EOF ? "peer closed" : "connection error");
        }
}

/* One error answer (taken) on a connection not made into a client, then the close. */
static void refuse(int fd, json_t *e)
{
        char *buf;
        size_t n;

        if (e && op_frame_encode(e, SIZE_MAX, &buf, &n) == 0) {
                (void)!send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                free(buf);
        }
        json_decref(e);
        safe_close(fd);
}

bool opd_count_refusal(struct opd *d)
{
        uint64_t n = ++d->stats.refused;

        return (n & (n - 1)) == 0;
}

/* A connection refused: counted (opd_connections_refused_total), logged at the 1st, 2nd, 4th...
 * refusal so that a client connecting in a loop does not flood the log (naming the peer's uid
 * when it is known: uid (uid_t)-1 when not), answered with reply, closed. */
static void refuse_counted(struct opd *d, int fd, uid_t uid, const char *why, json_t *reply)
{
        if (opd_count_refusal(d)) {
                if (uid == (uid_t)-1)
                        log_warn("refused a connection (%llu so far): %s",
                                 (unsigned long long)d->stats.refused, why);
                else
                        log_warn("refused a connection of uid %u (%llu so far): %s", (unsigned)uid,
                                 (unsigned long long)d->stats.refused, why);
        }
        refuse(fd, reply);
}

void client_refuse(struct opd *d, int fd, const char *why)
{
        refuse_counted(d, fd, (uid_t)-1, why,
                       op_error_reply(NULL, OP_ERR_BUSY, "%s: try later", why));
}

int client_new(struct opd *d, int fd)
{
        struct ucred cred = {0};
        socklen_t len = sizeof(cred);
        struct client *c;

        if (d->clients->n >= d->cfg.max_clients || d->stopping) {
                refuse_counted(
                    d, fd, (uid_t)-1, d->stopping ? "shutting down" : "max_clients reached",
                    d->stopping
                        ? op_error_reply(NULL, OP_ERR_SHUTTING_DOWN, "opd is shutting down")
                        : op_error_reply(NULL, OP_ERR_BUSY, "too many connections (max_clients %u)",
                                         d->cfg.max_clients));
                return -EBUSY;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                safe_close(fd);
                return -errno;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->d = d;
        c->uid = cred.uid;
        c->gid = cred.gid;
        c->pid = cred.pid;
        c->may_use = access_may_use(d, fd, c->uid, c->gid);
        c->may_admin = access_may_admin(d, fd, c->uid, c->gid);
        if (!c->may_use && !c->may_admin) {
                /* Nothing it could ask would be allowed: it takes no connection slot. */
                free(c);
                refuse_counted(d, fd, cred.uid, "not in access.group",
                               op_error_reply(NULL, OP_ERR_PERMISSION_DENIED,
                                              "uid %u may not use opd (access.group only)",
                                              (unsigned)cred.uid));
                return -EACCES;
        }
        c->uid_use = uid_use_get(d, c->uid);
        c->exempt = uid_exempt(d, c->uid) || c->may_admin;
        if (c->uid_use && d->cfg.max_clients_per_uid && !c->exempt &&
            c->uid_use->clients >= d->cfg.max_clients_per_uid) {
                uid_use_put(c->uid_use);
                free(c);
                refuse_counted(d, fd, cred.uid, "max_clients_per_uid reached",
                               op_error_reply(NULL, OP_ERR_BUSY,
                                              "too many connections of this user "
                                              "(max_clients_per_uid %u)",
                                              d->cfg.max_clients_per_uid));
                return -EBUSY;
        }
        if (c->uid_use)
                c->uid_use->clients++;
        LIST_INIT(&c->requests);
        LIST_INIT(&c->slots);
        c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
        c->read_timer = evtimer_new(d->base, on_read_timeout, c);
        c->idle_timer = evtimer_new(d->base, on_idle_timeout, c);
        c->more_timer = evtimer_new(d->base, on_more, c);
        if (!c->bev || !c->read_timer || !c->idle_timer || !c->more_timer ||
            event_priority_set(c->more_timer, OPD_PRI_DEFERRED) < 0) {
                if (!c->bev)
                        safe_close(fd);
                if (c->bev)
                        bufferevent_free(c->bev);
                if (c->read_timer)
                        event_free(c->read_timer);
                if (c->idle_timer)
                        event_free(c->idle_timer);
                if (c->more_timer)
                        event_free(c->more_timer);
                if (c->uid_use)
                        c->uid_use->clients--;
                uid_use_put(c->uid_use);
                free(c);
                return -ENOMEM;
        }
        /* Never buffer more than one maximal frame from a client. */
        bufferevent_setwatermark(c->bev, EV_READ, 0,
                                 d->cfg.limits.frame_max + OP_FRAME_HEADER_SIZE);
        bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        idle_arm(c);
        LIST_INSERT_HEAD(&d->clients->open, c, link);
        d->clients->n++;
        d->stats.connections++;
        log_debug("client connected: pid %d uid %u", (int)c->pid, (unsigned)c->uid);
        return 0;
}

void client_send(struct client *c, json_t *obj)
{
        int r;

        if (!obj) {
                log_error("out of memory building an answer");
                client_close(c, "out of memory");
                return;
        }
        if (c->overflow) {
                json_decref(obj);
                return;
        }
        r = evframe_add(bufferevent_get_output(c->bev), obj, SIZE_MAX);
        if (r < 0)
                log_error_errno(r, "queue answer");
        json_decref(obj);
        output_check(c);
}

void client_request_done(struct client *c)
{
        if (c->read_eof && all_answered(c))
                client_close(c, "peer closed, all answered");
}

void client_close(struct client *c, const char *why)
{
        struct reply_slot *s;
        struct request *r;

        if (c->closing)
                return;
        c->closing = true;
        log_debug("closing client pid %d: %s (%u requests in flight cancelled)", (int)c->pid, why,
                  c->inflight);
        evtimer_del(c->read_timer);
        evtimer_del(c->idle_timer);
        evtimer_del(c->more_timer);
        bufferevent_disable(c->bev, EV_READ);
        while ((r = LIST_FIRST(&c->requests)))
                request_cancel(r);
        while ((s = LIST_FIRST(&c->slots))) {
                LIST_REMOVE(s, link);
                s->client = NULL;
                if (s->gone)
                        s->gone(s->gone_data);
        }
        if (c->overflow || output_len(c) == 0)
                client_move_to_closing(c);
        else {
                /* What is queued goes out, if the client takes it within read_timeout_ms. */
                struct timeval tv = {c->d->cfg.read_timeout_ms / 1000,
                                     (c->d->cfg.read_timeout_ms % 1000) * 1000};

                bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
                bufferevent_set_timeouts(c->bev, NULL, &tv);
                bufferevent_setcb(c->bev, NULL, on_write, on_event, c);
                bufferevent_enable(c->bev, EV_WRITE);
        }
}

void clients_shutdown(struct opd *d)
{
        struct request *r;
        struct client *c, *next;

        for (c = LIST_FIRST(&d->clients->open); c; c = next) {
                next = LIST_NEXT(c, link);
                while ((r = LIST_FIRST(&c->requests)))
                        request_fail(r, OP_ERR_SHUTTING_DOWN, "opd is shutting down");
                client_close(c, "shutdown");
        }
}

void clients_reap(struct opd *d)
{
        struct client *c;

        if (!d->clients)
                return;
        while ((c = LIST_FIRST(&d->clients->closing))) {
                LIST_REMOVE(c, link);
                bufferevent_free(c->bev);
                event_free(c->read_timer);
                event_free(c->idle_timer);
                event_free(c->more_timer);
                if (c->uid_use)
                        c->uid_use->clients--;
                uid_use_put(c->uid_use);
                d->clients->n--;
                free(c);
        }
}

int clients_init(struct opd *d)
{
        d->clients = calloc(1, sizeof(*d->clients));
        if (!d->clients)
                return -ENOMEM;
        LIST_INIT(&d->clients->open);
        LIST_INIT(&d->clients->closing);
        d->clients->turn_ev = event_new(d->base, -1, 0, on_turn_end, d->clients);
        if (!d->clients->turn_ev)
                return -ENOMEM;
        return 0;
}

unsigned clients_count(const struct opd *d)
{
        return d->clients ? d->clients->n : 0;
}

/* Exit: free every connection now, flushed or not. */
void clients_free_all(struct opd *d)
{
        struct client *c;

        if (!d->clients)
                return;
        while ((c = LIST_FIRST(&d->clients->open))) {
                client_close(c, "exit");
                if (LIST_FIRST(&d->clients->open) == c)
                        client_move_to_closing(c);
        }
        clients_reap(d);
        if (d->clients->turn_ev)
                event_free(d->clients->turn_ev);
        free(d->clients);
        d->clients = NULL;
}

struct reply_slot *reply_slot_new(struct client *c, json_t *id)
{
        struct reply_slot *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->client = c;
        s->id = json_incref(id);
        LIST_INSERT_HEAD(&c->slots, s, link);
        return s;
}

struct opd *client_opd(const struct client *c)
{
        return c->d;
}

uid_t client_uid(const struct client *c)
{
        return c->uid;
}

bool client_may_use(const struct client *c)
{
        return c->may_use;
}

bool client_may_admin(const struct client *c)
{
        return c->may_admin;
}

bool client_closing(const struct client *c)
{
        return c->closing;
}

unsigned client_inflight(const struct client *c)
{
        return c->inflight;
}

struct request *client_find_request(struct client *c, json_t *id)
{
        struct request *r;

        LIST_FOREACH(r, &c->requests, client_link)
        if (r->id && json_typeof(r->id) == json_typeof(id) && json_equal(r->id, id))
                return r;
        return NULL;
}

json_t *reply_slot_id(const struct reply_slot *s)
{
        return s->id;
}

bool reply_slot_live(const struct reply_slot *s)
{
        return s->client && !s->client->closing;
}

void reply_slot_event(struct reply_slot *s, json_t *obj)
{
        if (s->client && !s->client->closing)
                client_send(s->client, obj);
        else
                json_decref(obj);
}

void reply_slot_on_gone(struct reply_slot *s, void (*gone)(void *data), void *data)
{
        s->gone = gone;
        s->gone_data = data;
}

void reply_slot_send(struct reply_slot *s, json_t *obj)
{
        if (s->client) {
                LIST_REMOVE(s, link);
                client_send(s->client, obj);
        } else
                json_decref(obj);
        json_decref(s->id);
        free(s);
}
