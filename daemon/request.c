/* request.c: an exec request's life from routing to its answer: the state machine and its one
 * timer, the cold queue and the wait for a clone (both round-robin by uid), the per-uid caps,
 * the VM it runs in, the retry, the sink. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel.h"
#include "client-private.h"
#include "client.h"
#include "compile.h"
#include "exec-op.h"
#include "host.h"
#include "log.h"
#include "metrics.h"
#include "opd.h"
#include "pool.h"
#include "request.h"
#include "session.h"
#include "snap-ref.h"
#include "util.h"
#include "vm.h"

static const char *const state_names[_REQ_STATE_MAX] = {
    [REQ_NEW] = "new",         [REQ_QUEUED] = "queued",   [REQ_WAITING] = "waiting",
    [REQ_BOOTING] = "booting", [REQ_RUNNING] = "running", [REQ_DONE] = "done",
};

const char *request_state_name(enum request_state state)
{
        return state >= 0 && state < _REQ_STATE_MAX ? state_names[state] : "?";
}

/* The request's id for a log line: the client chose it, so control characters (a forged
 * line) become '?' and it is cut at 64 bytes. */
static const char *id_text(const struct request *r, char buf[static 68])
{
        if (json_is_integer(r->id)) {
                snprintf(buf, 68, "%lld", (long long)json_integer_value(r->id));
                return buf;
        }
        if (!json_is_string(r->id))
                return "-";
        snprintf(buf, 68, "%.64s", json_string_value(r->id));
        for (char *p = buf; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = '?';
        return buf;
}

bool uid_exempt(const struct opd *d, uid_t uid)
{
        return uid == 0 || uid == d->self_uid;
}

static uid_t req_uid(const struct request *r)
{
        return r->uid ? r->uid->uid : REQUEST_UID_ANON;
}

struct uid_use *uid_use_get(struct opd *d, uid_t uid)
{
        struct uid_use *u;

        LIST_FOREACH(u, &d->uids, link)
        if (u->uid == uid) {
                u->refs++;
                return u;
        }
        u = calloc(1, sizeof(*u));
        if (!u)
                return NULL;
        u->uid = uid;
        u->refs = 1;
        LIST_INSERT_HEAD(&d->uids, u, link);
        return u;
}

void uid_use_put(struct uid_use *u)
{
        if (!u || --u->refs > 0)
                return;
        LIST_REMOVE(u, link);
        free(u);
}

/* Past its uid's max_queued_per_uid: the request may not wait. */
static bool uid_queue_full(const struct request *r)
{
        uint32_t max = r->d->cfg.max_queued_per_uid;

        return max && !r->uid_exempt && r->uid && r->uid->queued >= max;
}

/* Its uid holds max_vms_per_uid VMs (booted or from a pool): it waits for one of them to end. */
static bool uid_vms_full(const struct request *r)
{
        uint32_t max = r->d->cfg.max_vms_per_uid;

        return max && !r->uid_exempt && r->uid && r->uid->vms >= max;
}

static struct request *request_of_item(const struct fairq_item *it)
{
        return it ? (struct request *)((char *)it - offsetof(struct request, queue_item)) : NULL;
}

static struct request *request_of_waiter(const struct pool_waiter *w)
{
        return (struct request *)((char *)w - offsetof(struct request, waiter));
}

/* May a queued request boot now, as far as its uid goes? */
static bool queued_may_boot(const struct fairq_item *it, void *arg)
{
        return !uid_vms_full(request_of_item(it));
}

/* May a request take a paused clone now, as far as its uid goes? */
static bool waiter_may_take(const struct pool_waiter *w)
{
        return !uid_vms_full(request_of_waiter(w));
}

/* Why a request that waited for a VM got none, for its answer: its uid's cap when that is what
 * held it, else "". */
static const char *held_by_cap(const struct request *r, char buf[static 96])
{
        if (!uid_vms_full(r))
                return "";
        snprintf(buf, 96, " (this user already uses %u VMs: max_vms_per_uid)",
                 r->d->cfg.max_vms_per_uid);
        return buf;
}

static void count_vm(struct request *r)
{
        if (r->uid && !r->vm_counted) {
                r->uid->vms++;
                r->vm_counted = true;
        }
}

static void fail_retry(struct request *r, enum op_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Past max_queued or its uid's max_queued_per_uid: the request is answered busy. */
static bool queue_full(struct request *r)
{
        struct opd *d = r->d;

        if (d->n_queued >= d->cfg.max_queued) {
                fail_retry(r, OP_ERR_BUSY, "%u requests already waiting (max_queued)", d->n_queued);
                return true;
        }
        if (uid_queue_full(r)) {
                fail_retry(r, OP_ERR_BUSY,
                           "%u requests of this user already waiting (max_queued_per_uid)",
                           r->uid->queued);
                return true;
        }
        return false;
}

static uint32_t run_deadline_ms(const struct request *r)
{
        const struct opd *d = r->d;

        return r->exec.timeout_ms + d->cfg.agent_grace_ms +
               compile_timeout_ms(r->lang, &r->exec, &d->cfg.limits);
}

void request_set_state(struct request *r, enum request_state state)
{
        struct opd *d = r->d;
        enum request_state old = r->state;
        char idbuf[68];

        if (state == old)
                return;
        /* Leave the old state's queue. */
        if (old == REQ_QUEUED) {
                fairq_remove(&r->queue_item);
                d->n_queued--;
        } else if (old == REQ_WAITING) {
                pool_cancel(&r->waiter); /* nothing when the pool served it */
                d->n_queued--;
        }
        if ((old == REQ_QUEUED || old == REQ_WAITING) && r->uid)
                r->uid->queued--;
        if ((state == REQ_QUEUED || state == REQ_WAITING) && r->uid)
                r->uid->queued++;
        r->state = state;
        log_debug("exec id=%s lang=%s: %s -> %s", id_text(r, idbuf), r->lang->name,
                  state_names[old], state_names[state]);
        /* The new state's deadline, and no other. */
        evtimer_del(r->timer);
        switch (state) {
        case REQ_QUEUED:
        case REQ_WAITING:
                op_timer_arm_ms(r->timer, d->cfg.queue_timeout_ms);
                break;
        case REQ_BOOTING:
                op_timer_arm_ms(r->timer, d->cfg.boot_timeout_ms);
                break;
        case REQ_RUNNING:
                r->t_sent = op_now_us();
                op_timer_arm_ms(r->timer, run_deadline_ms(r));
                break;
        case REQ_NEW:
        case REQ_DONE:
        case _REQ_STATE_MAX:
                break;
        }
        /* Join the new state's queue last: a pool may serve a waiter at once. */
        if (state == REQ_QUEUED) {
                fairq_push(&d->queue, &r->queue_item, req_uid(r));
                d->n_queued++;
        } else if (state == REQ_WAITING) {
                d->n_queued++;
                pool_wait(pool_for(d->pools, r->lang), &r->waiter);
        }
}

/* Forget the VM and everything about it: destroyed, its pool told, its times cleared. */
static void drop_vm(struct request *r)
{
        struct session *s = r->session;

        /* A session's VM goes back to it: usable again when its agent answered. */
        r->session = NULL;
        if (s) {
                r->vm = NULL;
                session_exec_end(s, r->agent_idle);
        }
        if (r->vm)
                vm_destroy(r->vm);
        r->vm = NULL;
        if (r->vm_counted)
                r->uid->vms--;
        r->vm_counted = false;
        if (r->pool)
                pool_release(r->pool);
        r->pool = NULL;
        r->snap_version[0] = 0;
        r->t_vm = r->t_ready = r->t_sent = r->t_done = 0;
}

static void request_free(struct request *r)
{
        struct opd *d = r->d;
        struct client *c = r->client;

        request_set_state(r, REQ_DONE);
        if (c) {
                LIST_REMOVE(r, client_link);
                c->inflight--;
        }
        if (r->timer)
                event_free(r->timer);
        drop_vm(r);
        uid_use_put(r->uid);
        op_exec_done(&r->exec);
        json_decref(r->id);
        free(r->stdin_held);
        if (r->sink.release)
                r->sink.release(r->sink.userdata);
        free(r);
        opd_schedule_reap(d); /* a VM slot is free: queued requests start from the loop */
        if (c && !c->closing)
                client_request_done(c);
}

static double ms(uint64_t from, uint64_t to)
{
        return from && to >= from ? (double)(to - from) / 1000.0 : 0.0;
}

static void log_outcome(struct request *r, const char *outcome, json_t *reply)
{
        char idbuf[68];

        log_info("exec id=%s lang=%s mode=%s outcome=%s exit=%lld queue=%.1fms "
                 "boot_or_resume=%.1fms run=%.1fms total=%.1fms",
                 id_text(r, idbuf), r->lang->name,
                 r->session ? "session"
                 : r->pool  ? "warm"
                            : "cold",
                 outcome, (long long)json_integer_value(json_object_get(reply, "exit_code")),
                 ms(r->t_start, r->t_vm), ms(r->t_vm, r->t_ready), ms(r->t_ready, r->t_done),
                 ms(r->t_start, op_now_us()));
}

void request_cancel(struct request *r)
{
        char idbuf[68];

        /* One that had a VM is logged as an answered one is. One still waiting for a VM cost
         * nothing worth a line: a client that fills its share of the queue and closes, again
         * and again, would write one per request. */
        if (r->state == REQ_BOOTING || r->state == REQ_RUNNING)
                log_outcome(r, "cancelled", NULL);
        else
                log_debug("exec id=%s lang=%s outcome=cancelled (%s, never had a VM)",
                          id_text(r, idbuf), r->lang->name, state_names[r->state]);
        request_free(r);
}

void request_sink_answer(struct opd *d, const struct request_sink *sink, json_t *answer)
{
        if (json_object_get(answer, "error"))
                d->stats.errors++;
        else
                d->stats.ok++;
        sink->answer(answer, sink->userdata);
}

void request_finish(struct request *r, json_t *reply)
{
        struct opd *d = r->d;
        json_t *err = json_object_get(reply, "error");
        const char *status = json_string_value(json_object_get(reply, "status"));

        request_set_state(r, REQ_DONE);
        if (err)
                log_outcome(r, json_string_value(json_object_get(err, "code")), reply);
        else
                log_outcome(r, status ? status : "ok", reply);
        metrics_observe_exec(d, r, err ? json_string_value(json_object_get(err, "code")) : NULL,
                             reply);
        request_sink_answer(d, &r->sink, reply);
        request_free(r);
}

void request_fail(struct request *r, enum op_err code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        request_finish(r, op_error_reply(r->id, code, "%s", msg));
}

uint32_t request_retry_after_ms(struct opd *d, const struct op_lang *lang, bool cold)
{
        return pool_retry_after_ms(d->pools, cold || !lang ? NULL : pool_for(d->pools, lang));
}

/* busy or pool_exhausted, with the pools' guess of when a VM is likely free. */
static void fail_retry(struct request *r, enum op_err code, const char *fmt, ...)
{
        char msg[512];
        json_t *reply;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        reply = op_error_reply(r->id, code, "%s", msg);
        json_object_set_new(
            json_object_get(reply, "error"), "retry_after_ms",
            json_integer(request_retry_after_ms(r->d, r->lang, r->exec.mode == OP_MODE_COLD)));
        request_finish(r, reply);
}

static void on_vm_ready(struct vm *vm, void *userdata)
{
        struct request *r = userdata;

        r->t_ready = op_now_us();
        exec_send_job(r);
}

bool request_may_retry(const struct request *r)
{
        return r->pool && r->vm && !vm_resumed(r->vm) && !r->retried;
}

static void on_vm_failed(struct vm *vm, const char *why, void *userdata)
{
        struct request *r = userdata;

        /* A pooled clone that died before "cont" was acknowledged never ran the job: the
         * request goes once more to the pool, as if it had just arrived. */
        if (request_may_retry(r)) {
                log_warn("%s died before resuming (%s); retrying on another VM", vm->name, why);
                r->retried = true;
                drop_vm(r);
                request_set_state(r, REQ_NEW);
                request_route(r);
                return;
        }
        request_fail(r, OP_ERR_VM_FAILED, "%s: %s", vm->name, why);
}

static void on_vm_drained(struct vm *vm, void *userdata)
{
        exec_stdin_pump(userdata, true);
}

static const struct vm_events request_vm_events = {
    .ready = on_vm_ready,
    .answer = exec_on_vm_answer,
    .event = exec_on_vm_event,
    .drained = on_vm_drained,
    .failed = on_vm_failed,
};

static bool can_start(struct opd *d)
{
        return d->vms_host->accel != OP_ACCEL_AUTO && d->vms_host->n_vms < d->cfg.max_vms;
}

/* A VM slot for a boot: a free one, else the slot of an idle paused clone (destroyed). */
static bool take_slot(struct opd *d)
{
        return can_start(d) || (d->vms_host->accel != OP_ACCEL_AUTO &&
                                pools_reclaim_slot(d->pools) && can_start(d));
}

static void boot(struct request *r)
{
        struct opd *d = r->d;
        int k;

        r->t_vm = op_now_us();
        k = vm_boot(d->vms_host, r->lang, d->vms_host->accel, -1, &request_vm_events, r, &r->vm);
        if (k < 0) {
                request_fail(r, OP_ERR_VM_FAILED, "cannot start a VM: %s", strerror(-k));
                return;
        }
        count_vm(r);
        fairq_served(&d->queue, req_uid(r)); /* the next slot goes to the next uid */
        request_set_state(r, REQ_BOOTING);
}

/* The next queued request to get a VM slot: round-robin by uid (the first uid after the one
 * served last, in order of value, wrapping round), the oldest request of that uid; uids at
 * max_vms_per_uid wait, keeping their turn. */
static struct request *next_queued(struct opd *d)
{
        return request_of_item(fairq_peek(&d->queue, queued_may_boot, NULL));
}

void requests_kick(struct opd *d)
{
        struct request *r;

        while (d->tcg_refused && (r = request_of_item(fairq_first(&d->queue))))
                request_fail(r, OP_ERR_UNAVAILABLE, "%s", ACCEL_TCG_REFUSED);
        /* Paused clones to the waiters whose uid may have one again (a VM of theirs ended). */
        pools_serve_waiters(d->pools);
        /* boot() takes r out of the queue, booting or failed; an idle paused clone gives its
         * slot up to a queued request rather than hold it. */
        while ((r = next_queued(d)) && take_slot(d))
                boot(r);
        pools_refill(d->pools); /* slots left go to the pools' waiters and targets */
}

unsigned requests_queued(const struct opd *d)
{
        return d->n_queued;
}

/* Cold: boot now if a VM slot is free and no queued request may have it, else wait in line. */
static void start_cold(struct request *r)
{
        struct opd *d = r->d;

        if (!next_queued(d) && !uid_vms_full(r) && take_slot(d)) {
                boot(r);
                return;
        }
        if (queue_full(r))
                return;
        request_set_state(r, REQ_QUEUED);
}

/* A paused clone of p for the request: resume it and send the job at once (it waits in the
 * channel until the guest runs). */
static void start_warm(struct request *r, struct pool *p, struct vm *vm)
{
        int k;

        r->pool = p;
        r->vm = vm;
        count_vm(r);
        snprintf(r->snap_version, sizeof(r->snap_version), "%s", vm->snap->m.version);
        vm_set_events(vm, &request_vm_events, r);
        r->t_vm = op_now_us();
        k = vm_resume(vm);
        if (k < 0) {
                request_fail(r, OP_ERR_VM_FAILED, "cannot resume %s: %s", vm->name, strerror(-k));
                return;
        }
        r->t_ready = r->t_vm;
        exec_send_job(r);
}

static void on_served(struct pool_waiter *w, struct vm *vm)
{
        struct request *r = request_of_waiter(w);

        start_warm(r, pool_for(r->d->pools, r->lang), vm);
}

/* No clone came in time: cold when allowed, else pool_exhausted. A uid at its VM cap would
 * wait once more in the cold queue for the same thing: it is answered now. */
static void wait_failed(struct request *r)
{
        struct opd *d = r->d;
        char why[96];

        request_set_state(r, REQ_NEW);
        if (d->cfg.pool_fallback_cold && r->exec.mode == OP_MODE_AUTO && !uid_vms_full(r)) {
                start_cold(r);
                return;
        }
        fail_retry(r, OP_ERR_POOL_EXHAUSTED, "%s pool: no paused VM became free within %u ms%s",
                   r->lang->name, d->cfg.queue_timeout_ms, held_by_cap(r, why));
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        struct request *r = arg;
        const struct op_config *cfg = &r->d->cfg;
        uint32_t compile_ms = compile_timeout_ms(r->lang, &r->exec, &cfg->limits);
        char why[96];

        switch (r->state) {
        case REQ_QUEUED:
                fail_retry(r, OP_ERR_POOL_EXHAUSTED, "no VM became free within %u ms%s",
                           cfg->queue_timeout_ms, held_by_cap(r, why));
                break;
        case REQ_WAITING:
                wait_failed(r);
                break;
        case REQ_BOOTING:
                request_fail(r, OP_ERR_VM_FAILED, "the VM did not boot within %u ms",
                             cfg->boot_timeout_ms);
                break;
        case REQ_RUNNING:
                /* A clone whose "cont" was never acknowledged never started the program: its
                 * VMM failed, the program did not time out. */
                if (r->pool && !vm_resumed(r->vm))
                        request_fail(r, OP_ERR_VM_FAILED,
                                     "%s did not resume within %u ms (the program never started)",
                                     r->vm->name, run_deadline_ms(r));
                else if (compile_ms)
                        request_fail(r, OP_ERR_TIMEOUT,
                                     "the guest did not answer within %u ms (compile %u + "
                                     "timeout_ms %u + grace %u)",
                                     run_deadline_ms(r), compile_ms, r->exec.timeout_ms,
                                     cfg->agent_grace_ms);
                else
                        request_fail(r, OP_ERR_TIMEOUT,
                                     "the guest did not answer within %u ms (timeout_ms %u + "
                                     "grace %u)",
                                     run_deadline_ms(r), r->exec.timeout_ms, cfg->agent_grace_ms);
                break;
        case REQ_NEW:
        case REQ_DONE:
        case _REQ_STATE_MAX:
                break; /* no deadline is armed in these states */
        }
}

void request_session_gone(struct request *r, enum op_err code, const char *why)
{
        r->session = NULL;
        r->vm = NULL;
        request_fail(r, code, "%s", why);
}

/* An exec in a session: the session's VM, if the session is idle (one exec at a time). */
static void start_in_session(struct request *r)
{
        struct session *s = r->session;

        if (s->state != SESSION_IDLE) {
                r->session = NULL;
                request_fail(r, OP_ERR_BUSY,
                             "session %s is %s: it runs one exec at a time; send this one when "
                             "the other is answered",
                             s->id, session_state_name(s->state));
                return;
        }
        session_exec_start(s, r);
        r->vm = s->vm;
        vm_set_events(r->vm, &request_vm_events, r);
        r->t_vm = r->t_ready = op_now_us();
        exec_send_job(r);
}

void request_route(struct request *r)
{
        struct opd *d = r->d;
        struct pool *p = pool_for(d->pools, r->lang);
        struct vm *vm;

        if (r->session) {
                start_in_session(r);
                return;
        }
        if (r->exec.mode == OP_MODE_COLD) {
                start_cold(r);
                return;
        }
        if (!pool_serves(p)) {
                /* auto means "warm if you can"; warm means warm or nothing. */
                if (r->exec.mode == OP_MODE_AUTO) {
                        start_cold(r);
                        return;
                }
                request_fail(r, OP_ERR_POOL_EXHAUSTED, "%s has no pool of warm VMs%s%s",
                             r->lang->name, pool_error(p)[0] ? ": " : "", pool_error(p));
                return;
        }
        /* A uid at its VM cap takes no clone: it waits for one in its turn once a VM of its
         * ends. */
        vm = pool_take(p, &r->waiter);
        if (vm) {
                start_warm(r, p, vm);
                return;
        }
        /* Restores are failing: a cold boot, where allowed, is sooner than the backoff. */
        if (pool_backing_off(p) && r->exec.mode == OP_MODE_AUTO && d->cfg.pool_fallback_cold) {
                start_cold(r);
                return;
        }
        if (queue_full(r))
                return;
        request_set_state(r, REQ_WAITING);
}

int request_new(struct opd *d, json_t *id, struct op_exec *e, const struct op_lang *lang,
                struct client *c, const struct request_sink *sink, struct request **ret)
{
        return request_new_for(d, id, e, lang, c, c ? c->uid : REQUEST_UID_ANON, sink, ret);
}

int request_new_for(struct opd *d, json_t *id, struct op_exec *e, const struct op_lang *lang,
                    struct client *c, uid_t uid, const struct request_sink *sink,
                    struct request **ret)
{
        struct request *r = calloc(1, sizeof(*r));

        if (!r || !(r->timer = evtimer_new(d->base, on_timer, r))) {
                free(r);
                op_exec_done(e);
                return -ENOMEM;
        }
        r->d = d;
        r->state = REQ_NEW;
        r->id = json_incref(id);
        r->exec = *e;
        r->lang = lang;
        r->sink = *sink;
        r->waiter.served = on_served;
        r->waiter.may_take = waiter_may_take;
        r->t_start = op_now_us();
        r->uid = uid_use_get(d, uid);
        r->uid_exempt = uid_exempt(d, uid) || (c && c->may_admin);
        r->waiter.key = req_uid(r);
        if (c) {
                r->client = c;
                LIST_INSERT_HEAD(&c->requests, r, client_link);
                c->inflight++;
        }
        *ret = r;
        return 0;
}
