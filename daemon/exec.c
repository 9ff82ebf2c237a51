/* exec.c: one exec request from decode to answer: validation, the wait for a VM slot, the job
 * sent to the agent, the host-side deadline, and the answer with its timing breakdown. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cleanup.h"
#include "compile.h"
#include "log.h"
#include "opd.h"
#include "util.h"

#define ENTROPY_BYTES 32

static void request_free(struct request *r)
{
        struct opd *d = r->d;
        struct client *c = r->client;

        if (c) {
                LIST_REMOVE(r, client_link);
                c->inflight--;
        }
        if (r->queued) {
                TAILQ_REMOVE(&d->queue, r, queue_link);
                d->n_queued--;
        }
        if (r->waiting) {
                TAILQ_REMOVE(&r->waiting->waiters, r, queue_link);
                r->waiting->n_waiters--;
                d->n_queued--;
        }
        if (r->timer)
                event_free(r->timer);
        if (r->vm)
                vm_destroy(r->vm);
        if (r->pool)
                pool_release(r->pool);
        op_exec_done(&r->exec);
        json_decref(r->id);
        json_decref(r->stdin_frames);
        if (r->batch)
                batch_release(r->batch);
        free(r);
        opd_schedule_reap(d); /* a VM slot is free: queued requests start from the loop */
        if (c && !c->closing)
                client_request_done(c);
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

void request_cancel(struct request *r)
{
        char idbuf[68];

        log_info("exec id=%s lang=%s outcome=cancelled", id_text(r, idbuf), r->lang->name);
        request_free(r);
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
                 id_text(r, idbuf), r->lang->name, r->pool ? "warm" : "cold", outcome,
                 (long long)json_integer_value(json_object_get(reply, "exit_code")),
                 ms(r->t_start, r->t_vm), ms(r->t_vm, r->t_ready), ms(r->t_ready, r->t_done),
                 ms(r->t_start, op_now_us()));
}

/* Answer and forget the request. Takes the reference to reply. */
static void request_finish(struct request *r, json_t *reply)
{
        struct opd *d = r->d;
        json_t *err = json_object_get(reply, "error");

        if (err) {
                d->stats.errors++;
                log_outcome(r, json_string_value(json_object_get(err, "code")), reply);
        } else {
                const char *status = json_string_value(json_object_get(reply, "status"));

                d->stats.ok++;
                log_outcome(r, status ? status : "ok", reply);
        }
        metrics_observe_exec(d, r, err ? json_string_value(json_object_get(err, "code")) : NULL,
                             reply);
        if (r->batch)
                batch_count(r->batch, reply);
        if (r->client) {
                client_send(r->client, reply);
                request_free(r);
        } else {
                exec_done_fn done = r->done;
                void *userdata = r->done_userdata;

                request_free(r);
                done(reply, userdata);
        }
}

static void request_fail(struct request *r, enum op_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void request_fail(struct request *r, enum op_err code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        request_finish(r, op_error_reply(r->id, code, "%s", msg));
}

static json_t *build_job(struct request *r)
{
        const struct op_exec *e = &r->exec;
        struct op_lang lang = *r->lang;
        uint8_t entropy[ENTROPY_BYTES];
        _cleanup_free_ char *b64 = NULL;
        char **argv = NULL;
        json_t *job, *jargv, *v;

        if (getrandom(entropy, sizeof(entropy), 0) != sizeof(entropy))
                return NULL;
        b64 = op_base64_encode(entropy, sizeof(entropy));
        /* Without "code", the entry file of "files" is the program. */
        if (op_exec_entry_name(e))
                lang.file = (char *)op_exec_entry_name(e);
        if (!b64 || op_lang_argv(&lang, e->args, e->n_args, &argv) < 0)
                return NULL;
        jargv = json_array();
        for (char **a = argv; jargv && *a; a++)
                json_array_append_new(jargv, json_string(*a));
        op_argv_free(argv);
        job = json_pack("{s:s, s:o, s:s, s:s%, s:I, s:I, s:s, s:I, s:s}", "op", "exec", "argv",
                        jargv, "file", lang.file, "code", e->code ? e->code : "", e->code_len,
                        "timeout_ms", (json_int_t)e->timeout_ms, "output_max",
                        (json_int_t)r->d->cfg.limits.output_max, "entropy", b64, "time_ns",
                        (json_int_t)op_realtime_ns(), "hostname", r->vm->name);
        if (!job)
                return NULL;
        if (e->stdin_data)
                json_object_set_new(job, "stdin", json_stringn(e->stdin_data, e->stdin_len));
        if ((v = json_object_get(e->json, "env")))
                json_object_set(job, "env", v);
        if ((v = json_object_get(e->json, "files")))
                json_object_set(job, "files", v);
        if (compile_job_add(r->lang, e, &r->d->cfg.limits, job) < 0) {
                json_decref(job);
                return NULL;
        }
        if (r->pool) {
                /* A clone with a warm runtime runs the code in it, with the user's args. */
                json_object_set_new(job, "warm", json_true());
                if ((v = json_object_get(e->json, "args")))
                        json_object_set(job, "args", v);
                else
                        json_object_set_new(job, "args", json_array());
        }
        if (exec_job_add_opts(r, job) < 0) {
                json_decref(job);
                return NULL;
        }
        return job;
}

/* The client's answer, built from the agent's answer as decoded (and checked) by agent-msg.c:
 * the bytes are re-encoded here, nothing of the guest's text is passed on. */
static json_t *build_reply(struct request *r, const struct op_agent_exec *x)
{
        _cleanup_(json_decrefp) json_t *reply = NULL;

        reply = json_pack("{s:O?, s:b, s:s, s:s, s:s}", "id", r->id, "ok", 1, "lang", r->lang->name,
                          "mode", r->pool ? "warm" : "cold", "vm", r->vm->name);
        if (!reply || op_json_set_bytes(reply, "stdout", x->run.out.data, x->run.out.len) < 0 ||
            op_json_set_bytes(reply, "stderr", x->run.err.data, x->run.err.len) < 0 ||
            json_object_set_new(reply, "exit_code",
                                x->run.exit_code >= 0 ? json_integer(x->run.exit_code)
                                                      : json_null()) < 0 ||
            json_object_set_new(reply, "signal",
                                x->run.signal ? json_integer(x->run.signal) : json_null()) < 0 ||
            compile_reply(reply, x) < 0 ||
            json_object_set_new(reply, "timed_out", json_boolean(x->run.timed_out)) < 0 ||
            json_object_set_new(reply, "truncated", json_boolean(x->run.truncated)) < 0)
                return NULL;
        if (r->snap_version[0])
                json_object_set_new(reply, "snapshot", json_string(r->snap_version));
        json_object_set_new(reply, "timings_ms",
                            json_pack("{s:f, s:f, s:f, s:f, s:f}", "queue", ms(r->t_start, r->t_vm),
                                      "boot_or_resume", ms(r->t_vm, r->t_ready), "run",
                                      ms(r->t_ready, r->t_done), "guest_run", x->run.run_ms,
                                      "total", ms(r->t_start, op_now_us())));
        if (exec_reply_add_opts(r, x, reply) < 0)
                return NULL;
        return TAKE_PTR(reply);
}

/* Hand the job to the VM's agent and start the host-side deadline. */
static void send_job(struct request *r, struct vm *vm)
{
        json_t *job = build_job(r);
        struct op_agent_limits lim;
        int k;

        if (!job) {
                request_fail(r, OP_ERR_INTERNAL, "cannot build the job for the agent");
                return;
        }
        exec_agent_limits(r, &lim);
        vm_set_frame_max(vm, op_agent_frame_max(&lim));
        k = vm_send(vm, job);
        json_decref(job);
        if (k < 0) {
                request_fail(r, OP_ERR_VM_FAILED, "cannot send the job to %s: %s", vm->name,
                             strerror(-k));
                return;
        }
        r->t_sent = op_now_us();
        exec_flush_stdin(r);
        evtimer_del(r->timer);
        timer_arm_ms(r->timer, r->exec.timeout_ms + r->d->cfg.agent_grace_ms +
                                   compile_timeout_ms(r->lang, &r->exec, &r->d->cfg.limits));
}

static void on_vm_ready(struct vm *vm, void *userdata)
{
        struct request *r = userdata;

        r->t_ready = op_now_us();
        send_job(r, vm);
}

static void on_vm_answer(struct vm *vm, json_t *ans, void *userdata)
{
        struct request *r = userdata;
        _cleanup_(op_agent_answer_done) struct op_agent_answer a = {0};
        struct op_agent_limits lim;
        char err[512];
        json_t *reply;
        int k;

        r->t_done = op_now_us();
        if (r->pool) {
                /* Resumed: "cont" was acknowledged; the job was already waiting in the channel. */
                r->t_ready = vm->t_resumed && vm->t_resumed < r->t_done ? vm->t_resumed : r->t_vm;
                r->pool->stats.last_resume_ms = ms(r->t_vm, r->t_ready);
        }
        exec_agent_limits(r, &lim);
        k = op_agent_answer_decode(ans, &lim, &a, err, sizeof(err));
        if (k == -ENOMEM) {
                request_fail(r, OP_ERR_INTERNAL, "out of memory");
                return;
        }
        if (k < 0) {
                log_warn("%s (%s): agent sent %s", vm->name, r->lang->name, err);
                request_fail(r, OP_ERR_VM_FAILED, "%s: agent sent %s", vm->name, err);
                return;
        }
        if (!a.ok) {
                request_fail(r, OP_ERR_VM_FAILED, "agent in %s: %s", vm->name, a.error.message);
                return;
        }
        reply = build_reply(r, &a.exec);
        if (!reply) {
                request_fail(r, OP_ERR_INTERNAL, "out of memory");
                return;
        }
        request_finish(r, reply);
}

static void route(struct request *r);

static void on_vm_failed(struct vm *vm, const char *why, void *userdata)
{
        struct request *r = userdata;

        /* A pooled clone that died before "cont" was acknowledged never ran the job: the
         * request goes once more to the pool, as if it had just arrived. */
        if (r->pool && vm->t_resumed == 0 && !r->retried) {
                log_warn("%s died before resuming (%s); retrying on another VM", vm->name, why);
                r->retried = true;
                vm_destroy(vm);
                r->vm = NULL;
                pool_release(r->pool);
                r->pool = NULL;
                r->snap_version[0] = 0;
                evtimer_del(r->timer);
                route(r);
                return;
        }
        request_fail(r, OP_ERR_VM_FAILED, "%s: %s", vm->name, why);
}

static const struct vm_events request_vm_events = {
    .ready = on_vm_ready,
    .answer = on_vm_answer,
    .event = exec_on_vm_event,
    .failed = on_vm_failed,
};

static void start_cold(struct request *r);

void exec_pool_wait_failed(struct request *r, const char *why)
{
        struct pool *p = r->waiting;

        TAILQ_REMOVE(&p->waiters, r, queue_link);
        p->n_waiters--;
        r->d->n_queued--;
        r->waiting = NULL;
        if (r->d->cfg.pool_fallback_cold && r->exec.mode == OP_MODE_AUTO) {
                start_cold(r);
                return;
        }
        request_fail(r, OP_ERR_POOL_EXHAUSTED, "%s pool: %s", p->lang->name, why);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        struct request *r = arg;

        if (r->waiting) {
                char why[128];
                snprintf(why, sizeof(why), "no paused VM became free within %u ms",
                         r->d->cfg.queue_timeout_ms);
                exec_pool_wait_failed(r, why);
        } else if (r->queued)
                request_fail(r, OP_ERR_POOL_EXHAUSTED, "no VM became free within %u ms",
                             r->d->cfg.queue_timeout_ms);
        else if (r->t_sent && compile_timeout_ms(r->lang, &r->exec, &r->d->cfg.limits))
                request_fail(r, OP_ERR_TIMEOUT,
                             "the guest did not answer within %u ms (compile %u + timeout_ms %u "
                             "+ grace %u)",
                             compile_timeout_ms(r->lang, &r->exec, &r->d->cfg.limits) +
                                 r->exec.timeout_ms + r->d->cfg.agent_grace_ms,
                             compile_timeout_ms(r->lang, &r->exec, &r->d->cfg.limits),
                             r->exec.timeout_ms, r->d->cfg.agent_grace_ms);
        else if (r->t_sent)
                request_fail(r, OP_ERR_TIMEOUT,
                             "the guest did not answer within %u ms (timeout_ms %u + grace %u)",
                             r->exec.timeout_ms + r->d->cfg.agent_grace_ms, r->exec.timeout_ms,
                             r->d->cfg.agent_grace_ms);
        else
                request_fail(r, OP_ERR_VM_FAILED, "the VM did not boot within %u ms",
                             r->d->cfg.boot_timeout_ms);
}

static void request_start(struct request *r)
{
        struct opd *d = r->d;
        int k;

        r->t_vm = op_now_us();
        k = vm_boot(d, r->lang, d->accel, -1, &request_vm_events, r, &r->vm);
        if (k < 0) {
                request_fail(r, OP_ERR_VM_FAILED, "cannot start a VM: %s", strerror(-k));
                return;
        }
        timer_arm_ms(r->timer, d->cfg.boot_timeout_ms);
}

static bool can_start(struct opd *d)
{
        return d->accel != OP_ACCEL_AUTO && d->n_vms < d->cfg.max_vms;
}

void exec_kick(struct opd *d)
{
        struct request *r;

        while (can_start(d) && (r = TAILQ_FIRST(&d->queue))) {
                TAILQ_REMOVE(&d->queue, r, queue_link);
                d->n_queued--;
                r->queued = false;
                evtimer_del(r->timer);
                request_start(r);
        }
}

/* Cold: boot now if a VM slot is free, else wait in line for one. */
static void start_cold(struct request *r)
{
        struct opd *d = r->d;

        if (can_start(d) && TAILQ_EMPTY(&d->queue)) {
                request_start(r);
                return;
        }
        if (d->n_queued >= d->cfg.max_queued) {
                request_fail(r, OP_ERR_BUSY, "%u requests already waiting (max_queued)",
                             d->n_queued);
                return;
        }
        TAILQ_INSERT_TAIL(&d->queue, r, queue_link);
        d->n_queued++;
        r->queued = true;
        timer_arm_ms(r->timer, d->cfg.queue_timeout_ms);
}

void exec_start_warm(struct request *r, struct vm *vm)
{
        struct pool *p = pool_for(r->d, r->lang);
        int k;

        evtimer_del(r->timer);
        r->pool = p;
        r->vm = vm;
        snprintf(r->snap_version, sizeof(r->snap_version), "%s", vm->snap->m.version);
        vm_set_events(vm, &request_vm_events, r);
        r->t_vm = op_now_us();
        k = vm_resume(vm);
        if (k < 0) {
                request_fail(r, OP_ERR_VM_FAILED, "cannot resume %s: %s", vm->name, strerror(-k));
                return;
        }
        r->t_ready = r->t_vm;
        send_job(r, vm);
}

/* Warm when the language's pool serves a snapshot (or should), cold otherwise. */
static void route(struct request *r)
{
        struct opd *d = r->d;
        struct pool *p = pool_for(d, r->lang);
        struct vm *vm;

        if (r->exec.mode == OP_MODE_COLD) {
                start_cold(r);
                return;
        }
        if (!p || p->target == 0 || !p->serving) {
                /* auto means "warm if you can"; warm means warm or nothing. */
                if (r->exec.mode == OP_MODE_AUTO) {
                        start_cold(r);
                        return;
                }
                request_fail(r, OP_ERR_POOL_EXHAUSTED, "%s has no pool of warm VMs%s%s",
                             r->lang->name, p && p->error[0] ? ": " : "", p ? p->error : "");
                return;
        }
        vm = pool_take(p);
        if (vm) {
                exec_start_warm(r, vm);
                return;
        }
        if (d->n_queued >= d->cfg.max_queued) {
                request_fail(r, OP_ERR_BUSY, "%u requests already waiting (max_queued)",
                             d->n_queued);
                return;
        }
        TAILQ_INSERT_TAIL(&p->waiters, r, queue_link);
        p->n_waiters++;
        d->n_queued++;
        r->waiting = p;
        timer_arm_ms(r->timer, d->cfg.queue_timeout_ms);
        pool_refill(p);
}

/* Decode and look up; NULL and the error answer in *ret_err when the request is refused. */
static struct request *request_new(struct opd *d, json_t *id, json_t *req, json_t **ret_err)
{
        struct op_exec e;
        struct request *r;
        char err[512];

        d->stats.requests++;
        *ret_err = NULL;
        if (d->stopping)
                *ret_err = op_error_reply(id, OP_ERR_SHUTTING_DOWN, "opd is shutting down");
        else if (op_exec_decode(req, &d->cfg.limits, &e, err, sizeof(err)) < 0)
                *ret_err = op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err);
        if (d->stopping || *ret_err) {
                d->stats.errors++;
                return NULL;
        }
        const struct op_lang *lang = op_langs_find(&d->langs, e.lang);
        if (!lang) {
                char names[1024];

                op_langs_names(&d->langs, names, sizeof(names));
                d->stats.errors++;
                *ret_err = op_error_reply(id, OP_ERR_UNKNOWN_LANGUAGE,
                                          "unknown language \"%s\"; available: %s", e.lang, names);
                op_exec_done(&e);
                return NULL;
        }
        if (compile_check(lang, &e, err, sizeof(err)) < 0) {
                d->stats.errors++;
                *ret_err = op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err);
                op_exec_done(&e);
                return NULL;
        }
        r = calloc(1, sizeof(*r));
        if (!r || !(r->timer = evtimer_new(d->base, on_timer, r))) {
                free(r);
                op_exec_done(&e);
                d->stats.errors++;
                *ret_err = op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
                return NULL;
        }
        r->d = d;
        r->id = json_incref(id);
        r->exec = e;
        r->lang = lang;
        r->t_start = op_now_us();
        return r;
}

/* An exec refused before it started; a batch counts it as failed. */
static void submit_refuse(struct client *c, struct batch *b, json_t *reply)
{
        if (b)
                batch_count(b, reply);
        client_send(c, reply);
}

void exec_handle(struct client *c, json_t *id, json_t *req)
{
        exec_submit(c, id, req, NULL);
}

void exec_submit(struct client *c, json_t *id, json_t *req, struct batch *b)
{
        struct opd *d = c->d;
        struct request *r;
        json_t *err;

        if (!d->stopping && c->inflight >= d->cfg.max_inflight) {
                d->stats.requests++;
                d->stats.errors++;
                submit_refuse(c, b,
                              op_error_reply(id, OP_ERR_BUSY,
                                             "%u requests already in flight on this connection",
                                             c->inflight));
                return;
        }
        r = request_new(d, id, req, &err);
        if (!r) {
                submit_refuse(c, b, err);
                return;
        }
        if (b && r->exec.stdin_stream) {
                d->stats.errors++;
                request_free(r);
                submit_refuse(c, b,
                              op_error_reply(id, OP_ERR_BAD_REQUEST,
                                             "\"stdin_stream\" is not possible in exec_batch"));
                return;
        }
        r->client = c;
        if (b) {
                r->batch = b;
                b->pending++;
        }
        LIST_INSERT_HEAD(&c->requests, r, client_link);
        c->inflight++;
        route(r);
}

void exec_submit_cb(struct opd *d, json_t *req, exec_done_fn done, void *userdata,
                    struct request **ret_r)
{
        json_t *id = NULL, *err;
        char msg[256];
        struct request *r;

        *ret_r = NULL;
        if (op_request_id(req, &id, msg, sizeof(msg)) < 0) {
                done(op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", msg), userdata);
                return;
        }
        r = request_new(d, id, req, &err);
        if (!r) {
                done(err, userdata);
                return;
        }
        r->done = done;
        r->done_userdata = userdata;
        *ret_r = r;
        route(r);
}
