/* cases.c: exec_cases, one program and many test cases: a session opd owns takes a clone from
 * the pool and compiles the program once; compiled, it is saved once (session_save_image()) and
 * each case runs in a fresh session restored from that image (the first case in the compiled
 * session itself), at most 1 + session.fork_max sessions at once, a new one restored as soon as
 * a case is done. The cases' answers go out in order as "case" events, then the request's own
 * answer; its connection closing ends it and every VM it holds. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "client.h"
#include "exec-op.h"
#include "log.h"
#include "msg-cases.h"
#include "opd.h"
#include "request.h"
#include "session-fork.h"
#include "session.h"
#include "snap-ref.h"
#include "util.h"
#include "vm.h"

enum cases_state {
        CASES_OPENING,   /* the compile session waits for its VM */
        CASES_COMPILING, /* the compile step runs in it */
        CASES_SAVING,    /* the compiled session is saved whole */
        CASES_RUNNING,   /* the cases run, each in a session of its own */
        CASES_DONE,      /* answered or cancelled, being freed */
        _CASES_STATE_MAX,
};

static const char *const state_names[_CASES_STATE_MAX] = {
    [CASES_OPENING] = "opening", [CASES_COMPILING] = "compiling", [CASES_SAVING] = "saving",
    [CASES_RUNNING] = "running", [CASES_DONE] = "done",
};

struct cases;

/* One case: the session it runs in (the compile session for case 0), its exec, its answer. */
struct case_run {
        struct cases *x;
        size_t index;
        struct session *s; /* while it has one */
        json_t *result;    /* its answer, until sent in order */
        bool started;      /* its exec was submitted */
        uint64_t t_restore, t_ready, t_done;
};

struct cases {
        struct opd *d;
        enum cases_state state; /* cases_set_state() only */
        uid_t uid;
        const struct op_lang *lang;
        struct reply_slot *reply;
        struct event *step; /* the next step, at a safe point of the loop */
        struct op_cases req;
        char workdir[OP_SESSION_ID_LEN + 1]; /* the compile session's: every case runs there */
        struct snap_ref *img; /* the compiled session saved, while cases are left to restore */
        struct case_run *runs;
        json_t *compiled; /* the compile step's answer */
        size_t next_start, next_send;
        unsigned alive, window; /* sessions held, and the most at once */
        unsigned ok, failed;
        uint64_t t_start, t_vm, t_compiled, t_saved, t_done, restore_us, run_us;
};

static void cases_step(struct cases *x);

static double ms(uint64_t from, uint64_t to)
{
        return from && to >= from ? (double)(to - from) / 1000.0 : 0.0;
}

/* The only writer of x->state. */
static void cases_set_state(struct cases *x, enum cases_state state)
{
        if (x->state == state)
                return;
        log_debug("exec_cases (uid %u, %s, %zu cases): %s -> %s", (unsigned)x->uid, x->lang->name,
                  x->req.n, state_names[x->state], state_names[state]);
        x->state = state;
}

static void schedule(struct cases *x)
{
        if (x->state != CASES_DONE)
                event_active(x->step, EV_TIMEOUT, 0);
}

/* The session goes, without telling us. */
static void drop_session(struct case_run *c)
{
        struct session *s = c->s;

        if (!s)
                return;
        c->s = NULL;
        c->x->alive--;
        s->owner = NULL;
        session_destroy(s, SESSION_END_CLOSED);
}

static void cases_free(struct cases *x)
{
        if (!x)
                return;
        for (size_t i = 0; i < x->req.n; i++)
                json_decref(x->runs[i].result);
        free(x->runs);
        op_cases_done(&x->req);
        json_decref(x->compiled);
        snap_ref_put(x->img);
        if (x->step)
                event_free(x->step);
        free(x);
}

/* The end: every session goes, reply (NULL: none, the client is gone) is sent, x is freed. */
static void cases_end(struct cases *x, json_t *reply)
{
        cases_set_state(x, CASES_DONE);
        for (size_t i = 0; i < x->req.n; i++)
                drop_session(&x->runs[i]);
        x->img = snap_ref_put(x->img);
        x->t_done = op_now_us();
        log_info("exec_cases uid=%u lang=%s cases=%zu ok=%u failed=%u in %.1fms (vm %.1fms, "
                 "compile %.1fms, save %.1fms, cases %.1fms)",
                 (unsigned)x->uid, x->lang->name, x->req.n, x->ok, x->failed,
                 ms(x->t_start, x->t_done), ms(x->t_start, x->t_vm), ms(x->t_vm, x->t_compiled),
                 ms(x->t_compiled, x->t_saved),
                 ms(x->t_saved ? x->t_saved : x->t_compiled, x->t_done));
        if (!reply && reply_slot_live(x->reply)) /* json_pack() out of memory */
                reply = op_error_reply(reply_slot_id(x->reply), OP_ERR_INTERNAL, "out of memory");
        reply_slot_send(x->reply, reply);
        cases_free(x);
}

static void cases_fail(struct cases *x, enum op_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cases_fail(struct cases *x, enum op_err code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        log_info("exec_cases (uid %u, %s): %s", (unsigned)x->uid, x->lang->name, msg);
        cases_end(x, op_error_reply(reply_slot_id(x->reply), code, "%s", msg));
}

/* An answer as a case's result: what names the session opd used is left out. */
static json_t *case_result(json_t *answer)
{
        json_object_del(answer, "id");
        json_object_del(answer, "session");
        json_object_del(answer, "mode");
        json_object_del(answer, "phase");
        return answer;
}

/* ---- the sessions' and the execs' news: noted, acted on in the next step ---- */

static void on_ready(struct session *s, void *data)
{
        struct case_run *c = data;

        if (!c->t_ready)
                c->t_ready = op_now_us();
        schedule(c->x);
}

static void on_ended(struct session *s, enum session_end why, void *data)
{
        struct case_run *c = data;
        struct cases *x = c->x;

        c->s = NULL;
        x->alive--;
        if (why == SESSION_END_STOPPING) {
                cases_fail(x, OP_ERR_SHUTTING_DOWN, "opd is shutting down");
                return;
        }
        if (x->state < CASES_RUNNING) {
                cases_fail(x, OP_ERR_VM_FAILED,
                           "the VM to compile the program in could not be had or failed (%s)",
                           x->state == CASES_OPENING ? "no VM came within queue_timeout_ms, or "
                                                       "it failed to start"
                                                     : "it ended while the program was compiled "
                                                       "or saved");
                return;
        }
        if (!c->result)
                c->result = op_error_reply(NULL, OP_ERR_VM_FAILED,
                                           "the VM of case %zu failed before it ran", c->index);
        schedule(x);
}

static const struct session_owner owner = {.ready = on_ready, .ended = on_ended};

static void on_compiled(json_t *answer, void *data)
{
        struct case_run *c = data;

        if (c->x->state == CASES_DONE) {
                json_decref(answer);
                return;
        }
        c->x->compiled = answer;
        schedule(c->x);
}

static void on_case_done(json_t *answer, void *data)
{
        struct case_run *c = data;

        if (c->x->state == CASES_DONE || c->result) {
                json_decref(answer);
                return;
        }
        c->t_done = op_now_us();
        c->result = case_result(answer);
        schedule(c->x);
}

static void on_saved(struct session *s, struct snap_ref *img, const char *err)
{
        struct case_run *c = s->owner_data;
        struct cases *x = c->x;

        if (!img) {
                cases_fail(x, OP_ERR_INTERNAL, "saving the compiled VM failed: %s", err);
                return;
        }
        x->img = img;
        x->t_saved = op_now_us();
        cases_set_state(x, CASES_RUNNING);
        schedule(x);
}

/* ---- the steps ---- */

/* Submit req (a step of the request) in c's session. */
static void submit(struct case_run *c, json_t *req, exec_done_fn done)
{
        struct request *r = NULL;

        c->started = true;
        if (json_object_set_new(req, "session", json_string(c->s->id)) < 0) {
                done(op_error_reply(NULL, OP_ERR_INTERNAL, "out of memory"), c);
                return;
        }
        /* answered through done(), maybe at once (a refusal) */
        exec_submit_session_cb(c->x->d, req, c->s, done, c, &r);
}

/* A new session for the next case, restored from the compiled image. */
static void start_case(struct cases *x, struct case_run *c)
{
        struct opd *d = x->d;
        struct session *s;
        int k;

        k = session_new(d, x->lang, x->uid, d->cfg.session.bounds.idle_timeout_ms_default,
                        d->cfg.session.bounds.lifetime_ms_default, NULL, &s);
        if (k < 0) {
                c->result = op_error_reply(NULL, OP_ERR_INTERNAL, "out of memory");
                return;
        }
        memcpy(s->workdir, x->workdir, sizeof(s->workdir));
        s->owner = &owner;
        s->owner_data = c;
        c->s = s;
        x->alive++;
        c->t_restore = op_now_us();
        k = session_restore(s, x->img);
        if (k < 0) {
                drop_session(c);
                c->result =
                    op_error_reply(NULL, OP_ERR_VM_FAILED, "cannot restore a VM for case %zu: %s",
                                   c->index, strerror(-k));
        }
}

static void send_in_order(struct cases *x)
{
        while (x->next_send < x->req.n && x->runs[x->next_send].result) {
                struct case_run *c = &x->runs[x->next_send];
                json_t *ev;

                if (json_is_true(json_object_get(c->result, "ok")) &&
                    strcmp(json_string_value(json_object_get(c->result, "status")) ?: "", "ok") ==
                        0)
                        x->ok++;
                else
                        x->failed++;
                if (c->t_ready && c->t_done > c->t_ready)
                        x->run_us += c->t_done - c->t_ready;
                if (c->t_restore && c->t_ready > c->t_restore)
                        x->restore_us += c->t_ready - c->t_restore;
                ev = json_pack("{s:s, s:O?, s:I, s:O}", "event", "case", "id",
                               reply_slot_id(x->reply), "case", (json_int_t)c->index, "result",
                               c->result);
                if (ev)
                        reply_slot_event(x->reply, ev);
                json_decref(c->result);
                c->result = NULL;
                x->next_send++;
        }
}

static void run_step(struct cases *x)
{
        char why[512];

        for (size_t i = 0; i < x->next_start; i++) {
                struct case_run *c = &x->runs[i];

                if (c->result)
                        drop_session(c); /* done: its VM goes, the next case may have its room */
                else if (c->s && !c->started && c->s->state == SESSION_IDLE)
                        submit(c, x->req.runs[i], on_case_done);
        }
        /* A case started at most window cases after the first one not sent: the answers of
         * cases that ended early, held until those before them are sent, are fewer than
         * window (not all of the request's, whose output could then be held at once). */
        while (x->next_start < x->req.n && x->alive < x->window &&
               x->next_start - x->next_send < x->window) {
                struct case_run *c = &x->runs[x->next_start];

                if (!session_room_for(x->d, x->uid, 1, 1, why, sizeof(why))) {
                        if (x->alive)
                                break; /* one of ours ends first */
                        c->result = op_error_reply(NULL, OP_ERR_QUOTA_EXCEEDED, "%s", why);
                } else
                        start_case(x, c);
                x->next_start++;
        }
        if (x->next_start == x->req.n)
                x->img = snap_ref_put(x->img); /* the restored VMs hold it */
        send_in_order(x);
        if (x->next_send < x->req.n)
                return;
        x->t_done = op_now_us();
        cases_end(x,
                  json_pack("{s:O?, s:b, s:s, s:s, s:O, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:f, "
                            "s:f, s:f, s:f, s:f, s:f, s:f}}",
                            "id", reply_slot_id(x->reply), "ok", 1, "lang", x->lang->name, "status",
                            "ok", "compile", json_object_get(x->compiled, "compile"), "cases",
                            "count", (json_int_t)x->req.n, "run", (json_int_t)x->req.n, "ok",
                            (json_int_t)x->ok, "failed", (json_int_t)x->failed, "at_once",
                            (json_int_t)x->window, "timings_ms", "vm", ms(x->t_start, x->t_vm),
                            "compile", ms(x->t_vm, x->t_compiled), "save",
                            ms(x->t_compiled, x->t_saved), "restore_sum",
                            (double)x->restore_us / 1000.0, "run_sum", (double)x->run_us / 1000.0,
                            "cases", ms(x->t_saved ? x->t_saved : x->t_compiled, x->t_done),
                            "total", ms(x->t_start, x->t_done)));
}

/* The compile step answered: a compile error is the answer; else the cases run. */
static void compiled(struct cases *x)
{
        json_t *a = x->compiled;
        struct case_run *c0 = &x->runs[0];
        const char *status = json_string_value(json_object_get(a, "status"));
        char why[512];
        int k;

        x->t_compiled = op_now_us();
        if (!json_is_true(json_object_get(a, "ok"))) {
                json_object_set(a, "id", reply_slot_id(x->reply) ?: json_null());
                cases_end(x, json_incref(a));
                return;
        }
        if (!status || strcmp(status, "ok") != 0) {
                cases_end(x,
                          json_pack("{s:O?, s:b, s:s, s:s?, s:O, s:{s:I, s:I, s:I, s:I}, "
                                    "s:{s:f, s:f, s:f}}",
                                    "id", reply_slot_id(x->reply), "ok", 1, "lang", x->lang->name,
                                    "status", status, "compile",
                                    json_object_get(a, "compile") ?: json_null(), "cases", "count",
                                    (json_int_t)x->req.n, "run", (json_int_t)0, "ok", (json_int_t)0,
                                    "failed", (json_int_t)0, "timings_ms", "vm",
                                    ms(x->t_start, x->t_vm), "compile", ms(x->t_vm, x->t_compiled),
                                    "total", ms(x->t_start, x->t_compiled)));
                return;
        }
        c0->started = false;
        c0->t_ready = op_now_us();
        x->next_start = 1;
        if (x->req.n == 1) {
                cases_set_state(x, CASES_RUNNING);
                run_step(x);
                return;
        }
        if (!c0->s || !c0->s->vm || !c0->s->vm->snap) {
                cases_fail(x, OP_ERR_UNAVAILABLE,
                           "%s has no snapshot (its VM was booted cold): the compiled VM cannot "
                           "be copied for each case",
                           x->lang->name);
                return;
        }
        cases_set_state(x, CASES_SAVING);
        k = session_save_image(c0->s, on_saved, why, sizeof(why));
        if (k < 0)
                cases_fail(x, session_save_err_code(k), "cannot save the compiled VM: %s", why);
}

static void cases_step(struct cases *x)
{
        struct case_run *c0 = &x->runs[0];

        switch (x->state) {
        case CASES_OPENING:
                if (!c0->s || c0->s->state != SESSION_IDLE)
                        return;
                x->t_vm = op_now_us();
                memcpy(x->workdir, c0->s->workdir, sizeof(x->workdir));
                cases_set_state(x, CASES_COMPILING);
                submit(c0, x->req.compile, on_compiled);
                return;
        case CASES_COMPILING:
                if (x->compiled && (!c0->s || c0->s->state != SESSION_BUSY))
                        compiled(x);
                return;
        case CASES_RUNNING:
                run_step(x);
                return;
        case CASES_SAVING:
        case CASES_DONE:
        case _CASES_STATE_MAX:
                return;
        }
}

static void on_step(evutil_socket_t fd, short what, void *arg)
{
        cases_step(arg);
}

/* The connection closed: nobody is left to answer; every VM goes now. */
static void on_client_gone(void *data)
{
        struct cases *x = data;

        log_info("exec_cases (uid %u, %s): its connection closed; %u sessions ended",
                 (unsigned)x->uid, x->lang->name, x->alive);
        cases_end(x, NULL);
}

void op_exec_cases(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        struct op_cases oc = {0};
        const struct op_lang *lang;
        struct session *s = NULL;
        struct cases *x;
        unsigned window;
        char err[512];
        int k;

        if (d->stopping) {
                client_send(c, op_error_reply(id, OP_ERR_SHUTTING_DOWN, "opd is shutting down"));
                return;
        }
        k = op_cases_decode(req, &d->cfg.limits, &oc, err, sizeof(err));
        if (k < 0) {
                client_send(c,
                            op_error_reply(id, k == -ENOMEM ? OP_ERR_INTERNAL : OP_ERR_BAD_REQUEST,
                                           "%s", k == -ENOMEM ? "out of memory" : err));
                return;
        }
        lang = op_langs_find(&d->langs, json_string_value(json_object_get(req, "lang")));
        if (!lang) {
                char names[1024];

                op_langs_names(&d->langs, names, sizeof(names));
                client_send(c,
                            op_error_reply(id, OP_ERR_UNKNOWN_LANGUAGE,
                                           "unknown language \"%s\"; available: %s",
                                           json_string_value(json_object_get(req, "lang")), names));
                op_cases_done(&oc);
                return;
        }
        if (!lang->compile[0]) {
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST,
                                              "%s has no compile step: exec_cases is for compiled "
                                              "languages (run each case as an exec, or "
                                              "exec_batch)",
                                              lang->name));
                op_cases_done(&oc);
                return;
        }
        /* The compile session and the cases' sessions: up to 1 + session.fork_max at once, fewer
         * when fewer fit the caller's quotas now (one at a time at least: else refused). */
        window =
            1 + (unsigned)(oc.n - 1 < d->cfg.session.fork_max ? oc.n - 1 : d->cfg.session.fork_max);
        while (window > 1 && !session_room_for(d, client_uid(c), window, window, err, sizeof(err)))
                window--;
        if (!session_room_for(d, client_uid(c), window, window, err, sizeof(err))) {
                client_send(c, op_error_reply(id, OP_ERR_QUOTA_EXCEEDED,
                                              "exec_cases needs a session and a VM: %s", err));
                op_cases_done(&oc);
                return;
        }
        x = calloc(1, sizeof(*x));
        if (x) {
                x->req = oc;
                oc = (struct op_cases){0};
                x->runs = calloc(x->req.n, sizeof(*x->runs));
                x->step = event_new(d->base, -1, 0, on_step, x);
                x->reply = reply_slot_new(c, id);
        }
        if (x && x->runs && x->step && x->reply)
                k = session_new(d, lang, client_uid(c),
                                d->cfg.session.bounds.idle_timeout_ms_default,
                                d->cfg.session.bounds.lifetime_ms_default, NULL, &s);
        if (!x || !x->runs || !x->step || !x->reply || k < 0) {
                if (x && x->reply)
                        reply_slot_send(x->reply, NULL);
                cases_free(x);
                op_cases_done(&oc);
                client_send(c, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                return;
        }
        x->d = d;
        x->uid = client_uid(c);
        x->lang = lang;
        x->window = window;
        x->t_start = op_now_us();
        for (size_t i = 0; i < x->req.n; i++)
                x->runs[i] = (struct case_run){.x = x, .index = i};
        reply_slot_on_gone(x->reply, on_client_gone, x);
        s->owner = &owner;
        s->owner_data = &x->runs[0];
        x->runs[0].s = s;
        x->alive = 1;
        log_info("exec_cases uid=%u lang=%s cases=%zu: up to %u VMs at once", (unsigned)x->uid,
                 lang->name, x->req.n, window);
        session_start(s); /* IDLE (on_ready) once it has a clone; ended if none comes */
}
