/* exec.c: an exec from the wire to the wire: decoding and refusals, the job sent to the agent,
 * and the answer with its timing breakdown. Its life in between is request.c's. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel.h"
#include "cleanup.h"
#include "client.h"
#include "compile.h"
#include "exec-op.h"
#include "log.h"
#include "opd.h"
#include "pool.h"
#include "request.h"
#include "session.h"
#include "snap-ref.h"
#include "util.h"
#include "vm.h"

static double ms(uint64_t from, uint64_t to)
{
        return from && to >= from ? (double)(to - from) / 1000.0 : 0.0;
}

/* A repl session's exec: "repl" (the runner the agent starts when it has no interpreter yet:
 * the language's warm runner), "reseed" once after a fork. */
static int repl_job_add(struct session *s, json_t *job)
{
        json_t *argv = op_lang_runner_argv_json(s->lang);

        if (!argv || json_object_set_new(job, "repl", argv) < 0)
                return -ENOMEM;
        if (s->repl_reseed && json_object_set_new(job, "reseed", json_true()) < 0)
                return -ENOMEM;
        s->repl_reseed = false;
        return 0;
}

/* A session's exec that takes the clone's warm runner: "next_runner", the runner the agent starts
 * once it has answered, so that the session's next exec finds one waiting too (agents from
 * 0.6.0). Not for a repl session (its interpreter is kept) nor a fork's or a resumed session's
 * (they have no pool: no runner of theirs is warm), nor where the catalogue says the runner does
 * not serve session calls ("warm": {"sessions": false}). */
static int next_runner_add(struct request *r, json_t *job)
{
        const struct session *s = r->session;
        json_t *runner;

        if (!s || !s->pool || s->repl || r->exec.phase != OP_PHASE_ALL || !r->lang->warm[0] ||
            r->lang->warm_no_sessions || !r->vm->snap ||
            !op_agent_version_at_least(r->vm->snap->m.agent_version, OP_AGENT_VERSION_NEXT_RUNNER))
                return 0;
        runner = op_lang_runner_json(r->lang);
        if (!runner || json_object_set_new(job, "next_runner", runner) < 0)
                return -ENOMEM;
        return 0;
}

static json_t *build_job(struct request *r)
{
        const struct op_exec *e = &r->exec;
        struct op_lang lang = *r->lang;
        char **argv = NULL;
        json_t *job, *jargv, *v;

        /* Without "code", the entry file of "files" is the program. */
        if (op_exec_entry_name(e))
                lang.file = (char *)op_exec_entry_name(e);
        if (e->phase == OP_PHASE_COMPILE)
                /* The compile step alone: the program that runs after it does nothing. */
                jargv = json_pack("[s]", "true");
        else {
                if (op_lang_argv(&lang, e->args, e->n_args, &argv) < 0)
                        return NULL;
                jargv = json_array();
                for (char **a = argv; jargv && *a; a++)
                        json_array_append_new(jargv, json_string(*a));
                op_argv_free(argv);
        }
        job = json_pack("{s:s, s:o, s:s, s:s%, s:I, s:I}", "op", "exec", "argv", jargv, "file",
                        lang.file, "code", e->code ? e->code : "", e->code_len, "timeout_ms",
                        (json_int_t)e->timeout_ms, "output_max",
                        (json_int_t)r->d->cfg.limits.output_max);
        if (!job || vm_job_identity(r->vm, job) < 0) {
                json_decref(job);
                return NULL;
        }
        if (e->phase == OP_PHASE_RUN) {
                /* The program an earlier compile built runs: no main file is written (the
                 * source stays as that compile had it). */
                json_object_del(job, "file");
                json_object_del(job, "code");
        }
        if (e->stdin_data)
                json_object_set_new(job, "stdin", json_stringn(e->stdin_data, e->stdin_len));
        if ((v = json_object_get(e->json, "env")))
                json_object_set(job, "env", v);
        if ((v = json_object_get(e->json, "files")))
                json_object_set(job, "files", v);
        if (e->phase != OP_PHASE_RUN && compile_job_add(r->lang, e, &r->d->cfg.limits, job) < 0) {
                json_decref(job);
                return NULL;
        }
        if (r->session &&
            json_object_set_new(job, "workdir", json_string(r->session->workdir)) < 0) {
                json_decref(job);
                return NULL;
        }
        if (e->phase == OP_PHASE_ALL && (r->pool || (r->session && r->session->pool))) {
                /* A clone with a warm runtime runs the code in it, with the user's args (in a
                 * session, the first exec finds the runner; the agent runs the others as usual). */
                json_object_set_new(job, "warm", json_true());
                if ((v = json_object_get(e->json, "args")))
                        json_object_set(job, "args", v);
                else
                        json_object_set_new(job, "args", json_array());
        }
        if (next_runner_add(r, job) < 0 ||
            (r->session && r->session->repl && repl_job_add(r->session, job) < 0)) {
                json_decref(job);
                return NULL;
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
        json_t *t;

        reply = json_pack("{s:O?, s:b, s:s, s:s, s:s}", "id", r->id, "ok", 1, "lang", r->lang->name,
                          "mode", r->pool ? "warm" : "cold", "vm", r->vm->name);
        if (!reply || op_json_set_bytes(reply, "stdout", x->run.out.data, x->run.out.len) < 0 ||
            op_json_set_bytes(reply, "stderr", x->run.err.data, x->run.err.len) < 0 ||
            op_agent_order_encode(reply, &x->run.order) < 0 ||
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
        if (r->exec.phase != OP_PHASE_ALL)
                json_object_set_new(
                    reply, "phase",
                    json_string(r->exec.phase == OP_PHASE_COMPILE ? "compile" : "run"));
        if (r->session) {
                json_object_set_new(reply, "mode", json_string("session"));
                json_object_set_new(reply, "session", json_string(r->session->id));
        }
        if (r->session && x->repl_ended) {
                /* The interpreter is gone: the session ends with this exec (session_exec_end). */
                r->session->repl_ended = true;
                json_object_set_new(reply, "repl_ended", json_true());
        }
        t = json_pack("{s:f, s:f, s:f, s:f, s:f}", "queue", ms(r->t_start, r->t_vm),
                      "boot_or_resume", ms(r->t_vm, r->t_ready), "run", ms(r->t_ready, r->t_done),
                      "guest_run", x->run.run_ms, "total", ms(r->t_start, op_now_us()));
        if (t && x->has_agent_ms)
                json_object_set_new(t, "guest_job", json_real(x->agent_ms));
        json_object_set_new(reply, "timings_ms", t);
        if (exec_reply_add_opts(r, x, reply) < 0)
                return NULL;
        return TAKE_PTR(reply);
}

void exec_send_job(struct request *r)
{
        struct vm *vm = r->vm;
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
        request_set_state(r, REQ_RUNNING);
        exec_flush_stdin(r);
}

void exec_on_vm_answer(struct vm *vm, json_t *ans, void *userdata)
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
                pool_note_resume(r->pool, ms(r->t_vm, r->t_ready));
        }
        exec_agent_limits(r, &lim);
        k = op_agent_answer_decode(ans, &lim, &a, err, sizeof(err));
        if (k == -ENOMEM) {
                request_fail(r, OP_ERR_INTERNAL, "out of memory");
                return;
        }
        /* Decoded: the agent answered this job and waits for the next one. */
        r->agent_idle = k >= 0;
        if (k < 0) {
                log_warn("%s (%s): agent sent %s", vm->name, r->lang->name, err);
                request_fail(r, OP_ERR_VM_FAILED, "%s: agent sent %s", vm->name, err);
                return;
        }
        if (!a.ok) {
                /* A repl call that did not run: the agent has no interpreter for the next. */
                if (r->session && r->session->repl)
                        r->session->repl_ended = true;
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

/* Decode and look up: 0, or the refusal in *ret_err. */
static int decode(struct opd *d, json_t *id, json_t *req, struct session *s, struct op_exec *ret_e,
                  const struct op_lang **ret_lang, json_t **ret_err)
{
        const struct op_lang *lang;
        struct op_exec e;
        char err[512];
        int k;

        if (d->stopping) {
                *ret_err = op_error_reply(id, OP_ERR_SHUTTING_DOWN, "opd is shutting down");
                return -ESHUTDOWN;
        }
        if (d->tcg_refused) {
                *ret_err = op_error_reply(id, OP_ERR_UNAVAILABLE, "%s", ACCEL_TCG_REFUSED);
                return -EPERM;
        }
        if (s)
                k = op_session_exec_decode(req, s->lang->name, s->limits, &d->cfg.limits, &e, err,
                                           sizeof(err));
        else
                k = op_exec_decode(req, &d->cfg.limits, &e, err, sizeof(err));
        if (k == -ENOMEM) {
                *ret_err = op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
                return k;
        }
        if (k < 0) {
                *ret_err = op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err);
                return -EINVAL;
        }
        lang = op_langs_find(&d->langs, e.lang);
        if (s && lang != s->lang) {
                *ret_err = op_error_reply(id, OP_ERR_BAD_REQUEST, "session %s runs %s, not \"%s\"",
                                          s->id, s->lang->name, e.lang);
                op_exec_done(&e);
                return -EINVAL;
        }
        if (!lang) {
                char names[1024];

                op_langs_names(&d->langs, names, sizeof(names));
                *ret_err = op_error_reply(id, OP_ERR_UNKNOWN_LANGUAGE,
                                          "unknown language \"%s\"; available: %s", e.lang, names);
                op_exec_done(&e);
                return -ENOENT;
        }
        if (e.phase != OP_PHASE_ALL && !lang->compile[0]) {
                *ret_err = op_error_reply(id, OP_ERR_BAD_REQUEST,
                                          "\"phase\": %s is not a compiled language: its execs "
                                          "have no compile step",
                                          lang->name);
                op_exec_done(&e);
                return -EINVAL;
        }
        if (compile_check(lang, &e, err, sizeof(err)) < 0) {
                *ret_err = op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err);
                op_exec_done(&e);
                return -EINVAL;
        }
        *ret_e = e;
        *ret_lang = lang;
        return 0;
}

/* busy: the connection has max_inflight requests in flight. Its retry_after_ms is the guess
 * of when a VM for the language the request names (not decoded yet: a name that is no string or
 * no language counts as any VM) is likely free, as for the other busy answers. */
static json_t *inflight_busy(struct opd *d, json_t *id, json_t *req, struct client *c)
{
        const char *name = json_string_value(json_object_get(req, "lang"));
        const char *mode = json_string_value(json_object_get(req, "mode"));
        const struct op_lang *lang = name ? op_langs_find(&d->langs, name) : NULL;
        json_t *err =
            op_error_reply(id, OP_ERR_BUSY, "%u requests already in flight on this connection",
                           client_inflight(c));

        json_object_set_new(
            json_object_get(err, "error"), "retry_after_ms",
            json_integer(request_retry_after_ms(d, lang, mode && strcmp(mode, "cold") == 0)));
        return err;
}

/* Every exec, from the socket, a batch or the door, comes in here and is counted; sink gets
 * its answer, and its release once the request is gone (at once when it is refused). err: the
 * caller refused it already (takes the reference). */
static void submit(struct opd *d, json_t *id, json_t *req, struct client *c, uid_t uid, bool batch,
                   struct session *s, json_t *err, const struct request_sink *sink,
                   struct request **ret_r)
{
        const struct op_lang *lang;
        struct request *r = NULL;
        struct op_exec e;

        d->stats.requests++;
        if (err)
                ;
        else if (c && !d->stopping && client_inflight(c) >= d->cfg.max_inflight)
                err = inflight_busy(d, id, req, c);
        else if (decode(d, id, req, s, &e, &lang, &err) < 0)
                ;
        else if (batch && e.stdin_stream) {
                op_exec_done(&e);
                err = op_error_reply(id, OP_ERR_BAD_REQUEST,
                                     "\"stdin_stream\" is not possible in exec_batch");
        } else if (request_new_for(d, id, &e, lang, c, uid, sink, &r) < 0)
                err = op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        if (err) {
                request_sink_answer(d, sink, err);
                if (sink->release)
                        sink->release(sink->userdata);
                return;
        }
        if (ret_r)
                *ret_r = r;
        r->session = s;
        request_route(r);
}

static void answer_client(json_t *answer, void *userdata)
{
        client_send(userdata, answer);
}

/* A member of a batch: counted, then answered on the batch's connection. */
static void answer_batch_member(json_t *answer, void *userdata)
{
        struct batch *b = userdata;

        batch_answer(b, answer);
}

static void release_batch_member(void *userdata)
{
        batch_release(userdata);
}

void exec_handle(struct client *c, json_t *id, json_t *req)
{
        exec_submit(c, id, req, NULL);
}

void exec_submit(struct client *c, json_t *id, json_t *req, struct batch *b)
{
        struct request_sink sink = {answer_client, NULL, c};

        if (b) {
                batch_hold(b); /* given back by the sink's release */
                sink = (struct request_sink){answer_batch_member, release_batch_member, b};
        }
        submit(client_opd(c), id, req, c, client_uid(c), b != NULL, NULL, NULL, &sink, NULL);
}

void exec_submit_cb(struct opd *d, json_t *req, uid_t uid, exec_done_fn done, void *userdata,
                    struct request **ret_r)
{
        struct request_sink sink = {done, NULL, userdata};
        json_t *id = NULL, *err = NULL;
        char msg[256];

        *ret_r = NULL;
        if (op_request_id(req, &id, msg, sizeof(msg)) < 0)
                err = op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", msg);
        submit(d, id, req, NULL, uid, false, NULL, err, &sink, ret_r);
}

void exec_submit_session(struct client *c, json_t *id, json_t *req, struct session *s, json_t *err)
{
        struct request_sink sink = {answer_client, NULL, c};

        submit(client_opd(c), id, req, c, client_uid(c), false, s, err, &sink, NULL);
}

void exec_submit_session_cb(struct opd *d, json_t *req, struct session *s, exec_done_fn done,
                            void *userdata, struct request **ret_r)
{
        struct request_sink sink = {done, NULL, userdata};
        json_t *id = NULL, *err = NULL;
        char msg[256];

        *ret_r = NULL;
        if (op_request_id(req, &id, msg, sizeof(msg)) < 0)
                err = op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", msg);
        submit(d, id, req, NULL, s->uid, false, err ? NULL : s, err, &sink, ret_r);
}
