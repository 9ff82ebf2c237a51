/* session.c: sessions, VMs kept across execs for the uid that opened them: the registry, each
 * session's one state and the one deadline it has, opening (a clone from the pool as for a warm
 * exec, else a cold boot), ending (its VM destroyed), and the session operations. An exec in a
 * session is an ordinary request (request.c) that borrows the session's VM. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "accel.h"
#include "cleanup.h"
#include "client.h"
#include "exec-op.h"
#include "host.h"
#include "log.h"
#include "opd.h"
#include "pool.h"
#include "request.h"
#include "session-store.h"
#include "session.h"
#include "snap-ref.h"
#include "util.h"
#include "vm.h"

struct sessions {
        LIST_HEAD(, session) list;
        unsigned n; /* in the list: every state but CLOSED */
        uint64_t opened, closed, expired, failed, refused;
};

static const char *const state_names[_SESSION_STATE_MAX] = {
    [SESSION_NEW] = "new",       [SESSION_WAITING] = "waiting", [SESSION_BOOTING] = "booting",
    [SESSION_IDLE] = "idle",     [SESSION_BUSY] = "busy",       [SESSION_SAVING] = "saving",
    [SESSION_PAUSED] = "paused", [SESSION_CLOSED] = "closed",
};

static const char *const end_names[_SESSION_END_MAX] = {
    [SESSION_END_CLOSED] = "closed",         [SESSION_END_IDLE] = "idle_timeout",
    [SESSION_END_LIFETIME] = "lifetime",     [SESSION_END_FAILED] = "failed",
    [SESSION_END_STOPPING] = "opd_stopping", [SESSION_END_REPL] = "repl_ended",
};

const char *session_state_name(enum session_state state)
{
        return (unsigned)state < _SESSION_STATE_MAX ? state_names[state] : "?";
}

int sessions_init(struct opd *d)
{
        struct sessions *all = calloc(1, sizeof(*all));

        if (!all)
                return -ENOMEM;
        LIST_INIT(&all->list);
        d->sessions = all;
        return 0;
}

void sessions_stop(struct opd *d)
{
        struct session *s;

        while (d->sessions && (s = LIST_FIRST(&d->sessions->list)))
                session_destroy(s, SESSION_END_STOPPING);
}

void sessions_free(struct opd *d)
{
        sessions_stop(d);
        free(d->sessions);
        d->sessions = NULL;
}

void sessions_counts(const struct opd *d, struct session_counts *ret)
{
        const struct sessions *all = d->sessions;
        const struct session *s;

        *ret = (struct session_counts){0};
        if (!all)
                return;
        LIST_FOREACH(s, &all->list, link)
        {
                ret->open++;
                ret->busy += s->state == SESSION_BUSY;
                ret->paused += s->state == SESSION_PAUSED;
        }
        ret->opened = all->opened;
        ret->closed = all->closed;
        ret->expired = all->expired;
        ret->failed = all->failed;
        ret->refused = all->refused;
}

struct session *session_find(struct opd *d, const char *id, uid_t uid, bool admin)
{
        struct session *s;

        if (!d->sessions)
                return NULL;
        LIST_FOREACH(s, &d->sessions->list, link)
        if (strcmp(s->id, id) == 0)
                return (admin || s->uid == uid) && !s->owner ? s : NULL;
        return NULL;
}

struct session *session_lookup(struct opd *d, const char *id, uid_t uid)
{
        struct session *s;

        if (!d->sessions)
                return NULL;
        LIST_FOREACH(s, &d->sessions->list, link)
        if (strcmp(s->id, id) == 0)
                return s->uid == uid ? s : NULL;
        return NULL;
}

unsigned sessions_of(const struct opd *d, uid_t uid)
{
        const struct session *s;
        unsigned n = 0;

        if (!d->sessions)
                return 0;
        LIST_FOREACH(s, &d->sessions->list, link)
        n += uid == (uid_t)-1 || s->uid == uid;
        return n;
}

bool session_quota_ok(const struct opd *d, uid_t uid, char *why, size_t whylen)
{
        const struct op_session_config *c = &d->cfg.session;
        unsigned mine = sessions_of(d, uid), all = sessions_of(d, (uid_t)-1);

        if (c->max == 0) {
                snprintf(why, whylen, "sessions are off (session.max = 0)");
                return false;
        }
        if (all >= c->max) {
                snprintf(why, whylen, "%u sessions are open, the most opd allows (session.max)",
                         all);
                return false;
        }
        if (c->max_per_uid && mine >= c->max_per_uid) {
                snprintf(why, whylen,
                         "uid %u has %u sessions open, the most one user may have "
                         "(session.max_per_uid); close one first",
                         (unsigned)uid, mine);
                return false;
        }
        return true;
}

/* The lifetime's end in ms from now (0 when it has passed). */
static uint32_t lifetime_left_ms(const struct session *s)
{
        uint64_t end = s->t_open + (uint64_t)s->max_lifetime_ms * 1000, now = op_now_us();

        return end > now ? (uint32_t)((end - now + 999) / 1000) : 0;
}

void session_set_state(struct session *s, enum session_state state)
{
        struct opd *d = s->d;
        enum session_state old = s->state;
        uint32_t ms = 0;
        bool arm = true;

        if (state == old)
                return;
        if (old == SESSION_WAITING)
                pool_cancel(&s->waiter); /* nothing when the pool served it */
        s->state = state;
        log_debug("session %s (%s, uid %u): %s -> %s", s->id, s->lang->name, (unsigned)s->uid,
                  state_names[old], state_names[state]);
        /* The new state's deadline, and no other. */
        evtimer_del(s->timer);
        switch (state) {
        case SESSION_WAITING:
                ms = d->cfg.queue_timeout_ms;
                break;
        case SESSION_BOOTING:
                ms = d->cfg.boot_timeout_ms;
                break;
        case SESSION_IDLE:
                ms = lifetime_left_ms(s);
                s->timer_is_lifetime = ms <= s->idle_timeout_ms;
                if (!s->timer_is_lifetime)
                        ms = s->idle_timeout_ms;
                break;
        case SESSION_BUSY:
        case SESSION_PAUSED:
                ms = lifetime_left_ms(s);
                s->timer_is_lifetime = true;
                break;
        case SESSION_NEW:
        case SESSION_SAVING:
        case SESSION_CLOSED:
        case _SESSION_STATE_MAX:
                arm = false;
                break;
        }
        if (arm)
                op_timer_arm_ms(s->timer, ms);
}

/* The open's answer, once: ok with the session's id, or an error. */
static void answer_open(struct session *s, json_t *reply)
{
        struct reply_slot *slot = s->open_reply;

        s->open_reply = NULL;
        if (slot)
                reply_slot_send(slot, reply);
        else
                json_decref(reply);
}

static void fail_open(struct session *s, enum op_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_open(struct session *s, enum op_err code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (s->open_reply)
                answer_open(s, op_error_reply(reply_slot_id(s->open_reply), code, "%s", msg));
        log_info("session %s (%s, uid %u) not opened: %s", s->id, s->lang->name, (unsigned)s->uid,
                 msg);
        session_destroy(s, SESSION_END_FAILED);
}

static double ms_between(uint64_t from, uint64_t to)
{
        return from && to >= from ? (double)(to - from) / 1000.0 : 0.0;
}

/* What session_list shows of a session, and session_open answers. */
static json_t *session_json(const struct session *s)
{
        uint64_t now = op_now_us();
        uint64_t idle = s->state == SESSION_IDLE && now > s->t_last ? (now - s->t_last) / 1000 : 0;
        json_t *o;

        o = json_pack(
            "{s:s, s:s, s:I, s:s, s:s?, s:s?, s:I, s:I, s:I, s:I, s:I, s:O}", "session", s->id,
            "lang", s->lang->name, "uid", (json_int_t)s->uid, "state", state_names[s->state], "vm",
            s->vm ? s->vm->name : NULL, "snapshot", s->snap_version[0] ? s->snap_version : NULL,
            "idle_timeout_ms", (json_int_t)s->idle_timeout_ms, "max_lifetime_ms",
            (json_int_t)s->max_lifetime_ms, "age_ms", (json_int_t)((now - s->t_open) / 1000),
            "idle_ms", (json_int_t)idle, "execs", (json_int_t)s->execs, "limits", s->limits);
        if (o && s->repl && json_object_set_new(o, "repl", json_true()) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static void on_vm_failed(struct vm *vm, const char *why, void *userdata)
{
        struct session *s = userdata;

        if (s->open_reply) {
                fail_open(s, OP_ERR_VM_FAILED, "%s: %s", vm->name, why);
                return;
        }
        log_warn("session %s (%s, uid %u): %s failed: %s", s->id, s->lang->name, (unsigned)s->uid,
                 vm->name, why);
        session_destroy(s, SESSION_END_FAILED);
}

/* A cold VM booted: its agent is ready. */
static void on_vm_ready(struct vm *vm, void *userdata)
{
        struct session *s = userdata;

        if (s->state == SESSION_BOOTING)
                session_attach_vm(s, vm, NULL);
}

static const struct vm_events session_vm_events = {
    .ready = on_vm_ready,
    .failed = on_vm_failed,
};

static void count_vm(struct session *s, bool on)
{
        if (!s->use || s->vm_counted == on)
                return;
        if (on)
                s->use->vms++;
        else
                s->use->vms--;
        s->vm_counted = on;
}

/* The open is answered once the session has its VM: ok, or an error when the client that asked
 * has gone (the session would be nobody's to use: it is closed). */
static void opened(struct session *s)
{
        json_t *reply;

        if (s->owner) {
                s->owner->ready(s, s->owner_data);
                return;
        }
        if (!s->open_reply)
                return;
        if (!reply_slot_live(s->open_reply)) {
                log_info("session %s (%s, uid %u): its opener went away before it opened", s->id,
                         s->lang->name, (unsigned)s->uid);
                answer_open(s, json_null());
                session_destroy(s, SESSION_END_CLOSED);
                return;
        }
        reply = session_json(s);
        if (reply) {
                json_object_set(reply, "id", reply_slot_id(s->open_reply) ?: json_null());
                json_object_set_new(reply, "ok", json_true());
                json_object_set_new(reply, "mode", json_string(s->pool ? "warm" : "cold"));
                json_object_set_new(reply, "timings_ms",
                                    json_pack("{s:f}", "open", ms_between(s->t_open, s->t_ready)));
        } else
                reply =
                    op_error_reply(reply_slot_id(s->open_reply), OP_ERR_INTERNAL, "out of memory");
        log_info("session %s lang=%s uid=%u mode=%s vm=%s opened in %.1fms", s->id, s->lang->name,
                 (unsigned)s->uid, s->pool ? "warm" : "cold", s->vm->name,
                 ms_between(s->t_open, s->t_ready));
        answer_open(s, reply);
}

void session_attach_vm(struct session *s, struct vm *vm, struct pool *pool)
{
        s->vm = vm;
        if (pool)
                s->pool = pool;
        if (vm->snap && !s->snap_version[0])
                snprintf(s->snap_version, sizeof(s->snap_version), "%s", vm->snap->m.version);
        count_vm(s, true);
        vm_set_events(vm, &session_vm_events, s);
        s->t_ready = s->t_last = op_now_us();
        session_set_state(s, SESSION_IDLE);
        opened(s);
}

struct vm *session_detach_vm(struct session *s, struct pool **ret_pool, struct uid_use **ret_use)
{
        struct vm *vm = s->vm;

        s->vm = NULL;
        /* The count goes to the caller with the VM: the uid's vms stays as it is. */
        *ret_use = vm && s->vm_counted ? uid_use_get(s->d, s->uid) : NULL;
        if (*ret_use)
                s->vm_counted = false;
        if (vm)
                vm_set_events(vm, &(struct vm_events){0}, NULL);
        if (ret_pool)
                *ret_pool = s->pool;
        else if (s->pool)
                pool_release(s->pool);
        s->pool = NULL;
        return vm;
}

void session_restoring(struct session *s, struct vm *vm)
{
        s->vm = vm;
        count_vm(s, true);
        session_set_state(s, SESSION_BOOTING);
}

void session_saved(struct session *s)
{
        count_vm(s, false); /* counted only when the detach could not hand the count over */
        session_set_state(s, SESSION_PAUSED);
}

static enum op_err gone_code(enum session_end why)
{
        switch (why) {
        case SESSION_END_LIFETIME:
                return OP_ERR_TIMEOUT;
        case SESSION_END_STOPPING:
                return OP_ERR_SHUTTING_DOWN;
        default:
                return OP_ERR_VM_FAILED;
        }
}

static const char *gone_text(enum session_end why)
{
        switch (why) {
        case SESSION_END_LIFETIME:
                return "the session reached its max_lifetime_ms while this exec ran; the session "
                       "is gone";
        case SESSION_END_CLOSED:
                return "the session was closed while this exec ran";
        case SESSION_END_STOPPING:
                return "opd is shutting down";
        default:
                return "the session ended while this exec ran";
        }
}

void session_destroy(struct session *s, enum session_end why)
{
        struct opd *d = s->d;
        struct sessions *all = d->sessions;
        struct request *r = s->exec;

        if (s->state == SESSION_CLOSED)
                return; /* already ending: the request it cancels comes back here */
        s->end = why;
        /* Paused to disk: its files go with it, unless opd only stops (it is listed again at the
         * next start). */
        if (s->state == SESSION_PAUSED && why != SESSION_END_STOPPING)
                session_store_remove(d, s->uid, s->id);
        /* An exec running is answered (a deadline) or dropped (its client went) by its request;
         * told first, it gives the VM back, and the session ends below. */
        session_set_state(s, SESSION_CLOSED);
        if (r) {
                s->exec = NULL;
                request_session_gone(r, gone_code(why), gone_text(why));
        }
        if (s->open_reply)
                answer_open(s, op_error_reply(reply_slot_id(s->open_reply),
                                              why == SESSION_END_STOPPING ? OP_ERR_SHUTTING_DOWN
                                                                          : OP_ERR_VM_FAILED,
                                              "the session ended before it opened"));
        if (s->vm)
                vm_destroy(s->vm);
        s->vm = NULL;
        count_vm(s, false);
        if (s->pool)
                pool_release(s->pool);
        s->pool = NULL;
        LIST_REMOVE(s, link);
        all->n--;
        if (why == SESSION_END_IDLE || why == SESSION_END_LIFETIME)
                all->expired++;
        else if (why == SESSION_END_FAILED)
                all->failed++;
        else
                all->closed++;
        log_info("session %s lang=%s uid=%u end=%s execs=%llu age=%.1fms", s->id, s->lang->name,
                 (unsigned)s->uid, end_names[why], (unsigned long long)s->execs,
                 ms_between(s->t_open, op_now_us()));
        if (s->owner)
                s->owner->ended(s, why, s->owner_data);
        uid_use_put(s->use);
        event_free(s->timer);
        json_decref(s->limits);
        free(s);
        opd_schedule_reap(d); /* a VM slot is free: the pools refill, queued requests start */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        struct session *s = arg;
        struct opd *d = s->d;

        switch (s->state) {
        case SESSION_WAITING:
                fail_open(s, OP_ERR_POOL_EXHAUSTED,
                          "%s pool: no paused VM became free within %u ms", s->lang->name,
                          d->cfg.queue_timeout_ms);
                break;
        case SESSION_BOOTING:
                fail_open(s, OP_ERR_VM_FAILED, "the VM did not boot within %u ms",
                          d->cfg.boot_timeout_ms);
                break;
        case SESSION_IDLE:
                /* Which deadline was armed, not the clock now: a timer may fire a little
                 * before the lifetime's end by op_now_us()'s reckoning. */
                session_destroy(s, s->timer_is_lifetime ? SESSION_END_LIFETIME : SESSION_END_IDLE);
                break;
        case SESSION_BUSY:
        case SESSION_PAUSED:
                session_destroy(s, SESSION_END_LIFETIME);
                break;
        case SESSION_NEW:
        case SESSION_SAVING:
        case SESSION_CLOSED:
        case _SESSION_STATE_MAX:
                break; /* no deadline is armed in these states */
        }
}

static struct session *session_of_waiter(const struct pool_waiter *w)
{
        return (struct session *)((char *)w - offsetof(struct session, waiter));
}

/* A clone for a waiting session: resumed now; the session is IDLE at once (an exec may be sent
 * while the VMM acknowledges, as for a warm exec). */
static void start_warm(struct session *s, struct pool *p, struct vm *vm)
{
        int k = vm_resume(vm);

        if (k < 0) {
                s->pool = p; /* released by the end */
                vm_destroy(vm);
                fail_open(s, OP_ERR_VM_FAILED, "cannot resume %s: %s", vm->name, strerror(-k));
                return;
        }
        session_attach_vm(s, vm, p);
}

static void on_served(struct pool_waiter *w, struct vm *vm)
{
        struct session *s = session_of_waiter(w);

        start_warm(s, pool_for(s->d->pools, s->lang), vm);
}

/* Its uid holds max_vms_per_uid VMs: it waits for one of them to end. */
static bool waiter_may_take(const struct pool_waiter *w)
{
        const struct session *s = session_of_waiter(w);
        uint32_t max = s->d->cfg.max_vms_per_uid;

        return !max || uid_exempt(s->d, s->uid) || !s->use || s->use->vms < max;
}

int session_new(struct opd *d, const struct op_lang *lang, uid_t uid, uint32_t idle_timeout_ms,
                uint32_t max_lifetime_ms, json_t *limits, struct session **ret)
{
        _cleanup_free_ struct session *s = calloc(1, sizeof(*s));
        uuid_t u;

        if (!s || !d->sessions)
                return -ENOMEM;
        s->timer = evtimer_new(d->base, on_timer, s);
        s->use = uid_use_get(d, uid);
        if (!s->timer || !s->use) {
                if (s->timer)
                        event_free(s->timer);
                uid_use_put(s->use);
                return -ENOMEM;
        }
        uuid_generate_random(u);
        uuid_unparse_lower(u, s->id);
        memcpy(s->workdir, s->id, sizeof(s->workdir));
        s->d = d;
        s->state = SESSION_NEW;
        s->uid = uid;
        s->lang = lang;
        s->idle_timeout_ms = idle_timeout_ms;
        s->max_lifetime_ms = max_lifetime_ms;
        s->limits = limits ? json_incref(limits) : json_object();
        s->t_open = op_now_us();
        s->waiter.served = on_served;
        s->waiter.may_take = waiter_may_take;
        s->waiter.key = uid;
        LIST_INSERT_HEAD(&d->sessions->list, s, link);
        d->sessions->n++;
        d->sessions->opened++;
        *ret = TAKE_PTR(s);
        return 0;
}

int session_set_id(struct session *s, const char *id)
{
        struct session *o;

        if (!op_session_id_valid(id, strlen(id)))
                return -EINVAL;
        LIST_FOREACH(o, &s->d->sessions->list, link)
        if (o != s && strcmp(o->id, id) == 0)
                return -EEXIST;
        memcpy(s->id, id, sizeof(s->id));
        return 0;
}

/* A cold VM slot: a free one, else the slot of an idle paused clone (destroyed). */
static bool take_slot(struct opd *d)
{
        struct vm_host *h = d->vms_host;

        if (h->accel == OP_ACCEL_AUTO)
                return false;
        return h->n_vms < d->cfg.max_vms ||
               (pools_reclaim_slot(d->pools) && h->n_vms < d->cfg.max_vms);
}

/* Find the session a VM: a clone from the language's pool when it serves (waiting for one if
 * none is ready), else a cold boot when a VM slot is free. */
void session_start(struct session *s)
{
        struct opd *d = s->d;
        struct pool *p = pool_for(d->pools, s->lang);
        struct vm *vm;
        int k;

        if (pool_serves(p)) {
                vm = pool_take(p, &s->waiter);
                if (vm) {
                        start_warm(s, p, vm);
                        return;
                }
                session_set_state(s, SESSION_WAITING);
                pool_wait(p, &s->waiter);
                return;
        }
        if (!take_slot(d)) {
                fail_open(s, OP_ERR_POOL_EXHAUSTED,
                          "%s has no pool of warm VMs and no VM slot is free (max_vms %u)",
                          s->lang->name, d->cfg.max_vms);
                return;
        }
        k = vm_boot(d->vms_host, s->lang, d->vms_host->accel, -1, &session_vm_events, s, &s->vm);
        if (k < 0) {
                s->vm = NULL;
                fail_open(s, OP_ERR_VM_FAILED, "cannot start a VM: %s", strerror(-k));
                return;
        }
        count_vm(s, true);
        session_set_state(s, SESSION_BOOTING);
}

void session_exec_start(struct session *s, struct request *r)
{
        s->exec = r;
        session_set_state(s, SESSION_BUSY);
}

void session_exec_end(struct session *s, bool ok)
{
        if (s->state == SESSION_CLOSED)
                return; /* ending already (session_destroy() asked the request to go) */
        s->exec = NULL;
        s->execs++;
        s->t_last = op_now_us();
        if (!ok || !s->vm || s->vm->state != VM_READY) {
                log_warn("session %s (%s, uid %u): its exec left %s unusable; the session ends",
                         s->id, s->lang->name, (unsigned)s->uid, s->vm ? s->vm->name : "its VM");
                session_destroy(s, SESSION_END_FAILED);
                return;
        }
        vm_set_events(s->vm, &session_vm_events, s);
        if (s->repl_ended) {
                log_info("session %s (%s, uid %u): its interpreter ended; the session ends", s->id,
                         s->lang->name, (unsigned)s->uid);
                session_destroy(s, SESSION_END_REPL);
                return;
        }
        if (lifetime_left_ms(s) == 0) {
                session_destroy(s, SESSION_END_LIFETIME);
                return;
        }
        session_set_state(s, SESSION_IDLE);
}

/* ---- the operations ---- */

static bool sessions_usable(struct client *c, json_t *id)
{
        struct opd *d = client_opd(c);

        if (d->stopping) {
                client_send(c, op_error_reply(id, OP_ERR_SHUTTING_DOWN, "opd is shutting down"));
                return false;
        }
        if (d->tcg_refused) {
                client_send(c, op_error_reply(id, OP_ERR_UNAVAILABLE, "%s", ACCEL_TCG_REFUSED));
                return false;
        }
        return true;
}

json_t *session_not_found(json_t *id, const char *sid)
{
        return op_error_reply(id, OP_ERR_NOT_FOUND,
                              "no session %s (it was closed, expired, or never existed)", sid);
}

void op_session_open(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        _cleanup_(op_session_open_done) struct op_session_open o = {0};
        const struct op_lang *lang;
        struct session *s;
        char err[512];
        int k;

        if (!sessions_usable(c, id))
                return;
        k = op_session_open_decode(req, &d->cfg.limits, &d->cfg.session.bounds, &o, err,
                                   sizeof(err));
        if (k < 0) {
                client_send(c,
                            op_error_reply(id, k == -ENOMEM ? OP_ERR_INTERNAL : OP_ERR_BAD_REQUEST,
                                           "%s", k == -ENOMEM ? "out of memory" : err));
                return;
        }
        lang = op_langs_find(&d->langs, o.lang);
        if (!lang) {
                char names[1024];

                op_langs_names(&d->langs, names, sizeof(names));
                client_send(c, op_error_reply(id, OP_ERR_UNKNOWN_LANGUAGE,
                                              "unknown language \"%s\"; available: %s", o.lang,
                                              names));
                return;
        }
        if (o.repl && !lang->repl) {
                char names[512] = "";

                for (size_t i = 0; i < d->langs.n; i++)
                        if (d->langs.v[i].repl && d->langs.v[i].available &&
                            d->langs.v[i].enabled && strlen(names) + 64 < sizeof(names))
                                snprintf(names + strlen(names), sizeof(names) - strlen(names),
                                         "%s%s", names[0] ? ", " : "", d->langs.v[i].name);
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST,
                                              "\"repl\": %s has no repl sessions; languages "
                                              "that have them: %s",
                                              lang->name, names[0] ? names : "none"));
                return;
        }
        if (!session_quota_ok(d, client_uid(c), err, sizeof(err))) {
                d->sessions->refused++;
                client_send(c, op_error_reply(id, OP_ERR_QUOTA_EXCEEDED, "%s", err));
                return;
        }
        k = session_new(d, lang, client_uid(c), o.idle_timeout_ms, o.max_lifetime_ms, o.limits, &s);
        if (k >= 0 && !(s->open_reply = reply_slot_new(c, id))) {
                session_destroy(s, SESSION_END_FAILED);
                k = -ENOMEM;
        }
        if (k < 0) {
                client_send(c, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                return;
        }
        s->repl = o.repl;
        session_start(s);
}

void op_session_exec(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        char sid[OP_SESSION_ID_LEN + 1], err[256];
        struct session *s;

        if (op_session_id_get(req, sid, err, sizeof(err)) < 0) {
                exec_submit_session(c, id, req, NULL,
                                    op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err));
                return;
        }
        s = session_find(d, sid, client_uid(c), false);
        if (!s) {
                exec_submit_session(c, id, req, NULL, session_not_found(id, sid));
                return;
        }
        exec_submit_session(c, id, req, s, NULL);
}

void op_session_list(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        bool admin = client_may_admin(c);
        json_t *list, *reply;
        struct session *s;
        char err[256];

        if (op_session_list_decode(req, err, sizeof(err)) < 0) {
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err));
                return;
        }
        list = json_array();
        LIST_FOREACH(s, &d->sessions->list, link)
        if ((admin || s->uid == client_uid(c)) && !s->owner)
                json_array_append_new(list, session_json(s));
        reply =
            json_pack("{s:O?, s:b, s:o, s:b}", "id", id, "ok", 1, "sessions", list, "all", admin);
        client_send(c, reply ? reply : op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
}

void op_session_close(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        char sid[OP_SESSION_ID_LEN + 1], err[256];
        struct session *s;

        if (op_session_close_decode(req, sid, err, sizeof(err)) < 0) {
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err));
                return;
        }
        s = session_find(d, sid, client_uid(c), client_may_admin(c));
        if (!s) {
                client_send(c, session_not_found(id, sid));
                return;
        }
        session_destroy(s, SESSION_END_CLOSED);
        client_send(
            c, json_pack("{s:O?, s:b, s:s, s:b}", "id", id, "ok", 1, "session", sid, "closed", 1));
}
