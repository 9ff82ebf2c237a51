/* exec-opts.c: what an exec carries beyond protocol v1's core: per-request limits, streamed
 * output and stdin, file encodings and output files in the job and the answer, and exec_batch. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "client.h"
#include "compile.h"
#include "exec-op.h"
#include "log.h"
#include "opd.h"
#include "request.h"
#include "snap-ref.h"
#include "util.h"
#include "vm.h"

struct batch {
        struct client *client; /* NULL once the client is gone */
        json_t *id;
        unsigned pending; /* members still running */
        unsigned count, ok, failed;
};

static int set_new(json_t *obj, const char *key, json_t *v)
{
        return v && json_object_set_new(obj, key, v) == 0 ? 0 : -ENOMEM;
}

/* The job's "files" (with content_b64 for base64 ones) and, without "code", the entry file's
 * content as the job's "code". */
static int job_files(struct request *r, json_t *job)
{
        const struct op_exec *e = &r->exec;
        json_t *src = json_object_get(e->json, "files"), *files;

        if (!src)
                return 0;
        files = json_array();
        if (set_new(job, "files", files) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < e->n_files; i++) {
                json_t *content = json_object_get(json_array_get(src, i), "content");
                const char *key = e->files[i].base64 ? "content_b64" : "content";
                json_t *f;

                if ((ssize_t)i == e->entry) {
                        json_object_del(job, "code");
                        if (json_object_set(job, e->files[i].base64 ? "code_b64" : "code",
                                            content) < 0)
                                return -ENOMEM;
                        continue;
                }
                f = json_pack("{s:s, s:O}", "name", e->files[i].name, key, content);
                if (!f || json_array_append_new(files, f) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Does the VM's agent take "timing" (and answer with "agent_ms")? By its version: the one it
 * greeted with when it booted here, else its snapshot's. */
static bool agent_timing(const struct request *r)
{
        const struct vm *vm = r->vm;
        const char *v = vm->agent_version[0] ? vm->agent_version
                        : vm->snap           ? vm->snap->m.agent_version
                                             : "";

        return op_agent_version_at_least(v, OP_AGENT_VERSION_TIMING);
}

int exec_job_add_opts(struct request *r, json_t *job)
{
        const struct op_exec *e = &r->exec;
        const struct op_limits *lim = &r->d->cfg.limits;
        int k = 0;

        k = set_new(job, "output_max", json_integer((json_int_t)e->output_max));
        if (k == 0 && e->stream)
                k = set_new(job, "stream", json_true());
        if (k == 0 && e->stdin_stream)
                k = set_new(job, "stdin_stream", json_true());
        if (k == 0 && e->cpu_time_ms)
                k = set_new(job, "cpu_time_ms", json_integer(e->cpu_time_ms));
        if (k == 0 && e->memory_bytes)
                k = set_new(job, "memory_bytes", json_integer((json_int_t)e->memory_bytes));
        if (k == 0 && e->max_processes)
                k = set_new(job, "max_processes", json_integer(e->max_processes));
        if (k == 0 && e->has_file_size_max)
                k = set_new(job, "file_size_max_bytes", json_integer((json_int_t)e->file_size_max));
        if (k == 0 && e->output_files) {
                k = json_object_set(job, "output_files", json_object_get(e->json, "output_files"));
                if (k == 0)
                        k = set_new(job, "output_file_max",
                                    json_integer((json_int_t)lim->output_file_max));
        }
        if (k == 0)
                k = job_files(r, job);
        if (k == 0 && agent_timing(r))
                k = set_new(job, "timing", json_true());
        return k < 0 ? -ENOMEM : 0;
}

void exec_agent_limits(const struct request *r, struct op_agent_limits *ret)
{
        const struct op_exec *e = &r->exec;

        *ret = (struct op_agent_limits){
            .op = OP_AGENT_OP_EXEC,
            .output_max = e->output_max,
            .stream = e->stream,
            .output_files = e->output_files,
            .n_output_files = e->n_output_files,
            .output_file_max = r->d->cfg.limits.output_file_max,
            .timing = agent_timing(r),
        };
        compile_agent_limits(r->lang, ret);
        if (e->phase == OP_PHASE_RUN)
                ret->compile = false; /* the job has no compile step: its answer neither */
}

static int reply_files(struct request *r, const struct op_agent_exec *x, json_t *reply)
{
        json_t *files;

        if (!r->exec.output_files)
                return 0;
        files = json_array();
        if (set_new(reply, "files", files) < 0)
                return -ENOMEM;
        /* A compile error: the program did not run, none of its files is there. */
        for (size_t i = 0; !x->has_files && i < r->exec.n_output_files; i++)
                if (json_array_append_new(files,
                                          json_pack("{s:s, s:s}", "name", r->exec.output_files[i],
                                                    "error", "not_found")) < 0)
                        return -ENOMEM;
        for (size_t i = 0; i < x->n_files; i++) {
                const struct op_agent_file *f = &x->files[i];
                json_t *o = json_pack("{s:s}", "name", f->name);

                if (!o || json_array_append_new(files, o) < 0)
                        return -ENOMEM;
                if (f->error != OP_AGENT_FILE_OK
                        ? set_new(o, "error", json_string(op_agent_file_error_name(f->error))) < 0
                        : op_json_set_bytes(o, "content", f->content.data, f->content.len) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int exec_reply_add_opts(struct request *r, const struct op_agent_exec *x, json_t *reply)
{
        enum op_status st = x->status;

        if (!x->has_status) /* an agent that predates status: from the raw fields */
                st = op_status_of(x->run.exit_code, x->run.signal, x->run.timed_out, false,
                                  x->run.truncated, false);
        if (set_new(reply, "status", json_string(op_status_name(st))) < 0)
                return -ENOMEM;
        if (x->has_usage) {
                if (set_new(reply, "usage",
                            json_pack("{s:f, s:f, s:I}", "cpu_time_ms", x->usage.cpu_time_ms,
                                      "wall_ms", x->usage.wall_ms, "memory_peak_bytes",
                                      (json_int_t)x->usage.memory_peak_bytes)) < 0)
                        return -ENOMEM;
        } else if (set_new(reply, "usage",
                           json_pack("{s:n, s:f, s:n}", "cpu_time_ms", "wall_ms", x->run.run_ms,
                                     "memory_peak_bytes")) < 0)
                return -ENOMEM;
        if (r->exec.stream) {
                /* The output went out as events; the answer carries none. */
                json_object_del(reply, "stdout_b64");
                json_object_del(reply, "stderr_b64");
                json_object_del(reply, "output_order");
                json_object_del(reply, "output_order_partial");
                if (set_new(reply, "stdout", json_string("")) < 0 ||
                    set_new(reply, "stderr", json_string("")) < 0 ||
                    set_new(reply, "streamed", json_true()) < 0)
                        return -ENOMEM;
        }
        return reply_files(r, x, reply);
}

/* {"event": "stdout" | "stderr", "data"[, "data_b64"]} from the agent: decoded, counted against
 * output_max per stream, re-encoded under the request's id. A bad event, one the request did not
 * ask for, or one past the cap fails the VM (and so the request: vm_failed). */
void exec_on_vm_event(struct vm *vm, json_t *ev, void *userdata)
{
        struct request *r = userdata;
        _cleanup_(op_agent_output_done) struct op_agent_output o = {0};
        struct op_agent_limits lim;
        char err[512], why[600];
        json_t *out;
        int k;

        exec_agent_limits(r, &lim);
        k = op_agent_output_decode(ev, &lim, &o, err, sizeof(err));
        if (k == 0 && r->streamed[o.stream - 1] + o.data.len > r->exec.output_max) {
                snprintf(err, sizeof(err),
                         "more than %zu bytes of %s (the request's output_max) in output events",
                         r->exec.output_max, o.stream == 1 ? "stdout" : "stderr");
                k = -EMSGSIZE;
        }
        if (k < 0) {
                snprintf(why, sizeof(why), "agent sent %s",
                         k == -ENOMEM ? "an event opd could not hold in memory" : err);
                /* The program ran: the request is not moved to another VM. */
                r->retried = true;
                vm_abort(vm, why);
                return;
        }
        r->streamed[o.stream - 1] += o.data.len;
        if (!r->client)
                return;
        out = op_agent_output_encode(r->id, &o);
        client_send(r->client, out);
}

static json_t *stdin_frame(const void *data, size_t len, bool eof)
{
        json_t *frame = json_pack("{s:s, s:b}", "op", "stdin", "eof", eof);

        if (frame && op_json_set_bytes(frame, "data", len ? data : "", len) < 0) {
                json_decref(frame);
                return NULL;
        }
        return frame;
}

static void stdin_drop(struct request *r)
{
        free(r->stdin_held);
        r->stdin_held = NULL;
        r->stdin_held_len = r->stdin_held_cap = r->stdin_sent = 0;
}

/* Kept as one run of bytes, not as the frames they came in: what a request holds is at most
 * limit.stdin_max, however small the frames (a frame kept as JSON costs over 600 bytes). */
static int stdin_hold(struct request *r, const void *data, size_t len)
{
        size_t max = r->d->cfg.limits.stdin_max, cap = r->stdin_held_cap ?: 4096;
        uint8_t *p;

        if (len == 0) /* an eof alone: nothing to keep (and no buffer to copy into yet) */
                return 0;
        if (len > r->stdin_held_cap - r->stdin_held_len) {
                while (cap - r->stdin_held_len < len)
                        cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
                if (cap > max && max >= r->stdin_held_len + len)
                        cap = max;
                p = realloc(r->stdin_held, cap);
                if (!p)
                        return -ENOMEM;
                r->stdin_held = p;
                r->stdin_held_cap = cap;
        }
        memcpy(r->stdin_held + r->stdin_held_len, data, len);
        r->stdin_held_len += len;
        return 0;
}

/* Bytes the VM has are of no more use once the program cannot start over: they go when they
 * are all of it or at least half (each byte is moved at most once on average). */
static void stdin_compact(struct request *r)
{
        if (request_may_retry(r) || r->stdin_sent == 0)
                return;
        if (r->stdin_sent == r->stdin_held_len) {
                stdin_drop(r);
                return;
        }
        if (r->stdin_sent < r->stdin_held_len / 2)
                return;
        memmove(r->stdin_held, r->stdin_held + r->stdin_sent, r->stdin_held_len - r->stdin_sent);
        r->stdin_held_len -= r->stdin_sent;
        r->stdin_sent = 0;
}

void exec_stdin_pump(struct request *r, bool now)
{
        size_t max = r->d->cfg.limits.stdin_frame_max ?: 1;

        if (r->state != REQ_RUNNING || !r->vm || !r->exec.stdin_stream)
                return;
        /* While the channel still has bytes to write, more stdin waits for its drained event and
         * then goes in frames as large as it has come to. */
        while (vm_send_queued(r->vm) < (now ? EXEC_STDIN_QUEUE_MAX : 1)) {
                size_t left = r->stdin_held_len - r->stdin_sent, len = left < max ? left : max;
                bool eof = r->stdin_eof && len == left;
                json_t *frame;
                int k;

                if (len == 0 && (!r->stdin_eof || r->stdin_eof_sent))
                        break;
                frame = stdin_frame(len ? r->stdin_held + r->stdin_sent : NULL, len, eof);
                k = frame ? vm_send_more(r->vm, frame) : -ENOMEM;
                json_decref(frame);
                if (k < 0)
                        break; /* kept: the drained event or the next frame tries again */
                r->stdin_sent += len;
                r->stdin_eof_sent = eof;
        }
        stdin_compact(r);
}

void exec_flush_stdin(struct request *r)
{
        /* All of it, not only what came since: a request moved to another clone (the first
         * died before it resumed) starts its stdin again there. */
        r->stdin_sent = 0;
        r->stdin_eof_sent = false;
        exec_stdin_pump(r, true);
}

int exec_stdin_take(struct request *r, const void *data, size_t len, bool eof)
{
        if (stdin_hold(r, data, len) < 0)
                return -ENOMEM;
        r->stdin_total += len;
        r->stdin_eof = eof;
        exec_stdin_pump(r, false);
        return 0;
}

/* A refused stdin frame: an event under its id, not an answer (the exec's answer is still to
 * come, and a stdin frame that is taken gets nothing). */
static void stdin_refuse(struct client *c, json_t *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stdin_refuse(struct client *c, json_t *id, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        json_t *e;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        e = op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", msg);
        if (e) {
                json_object_del(e, "ok");
                json_object_set_new(e, "event", json_string("stdin_error"));
        }
        client_send(c, e);
}

void op_stdin(struct client *c, json_t *id, json_t *req)
{
        const struct op_limits *lim = &client_opd(c)->cfg.limits;
        struct op_stdin s;
        struct request *r;
        char err[256];
        int k;

        k = op_stdin_decode(req, lim, &s, err, sizeof(err));
        if (k < 0) {
                stdin_refuse(c, id, "%s", k == -ENOMEM ? "out of memory" : err);
                return;
        }
        r = client_find_request(c, id);
        if (!r)
                stdin_refuse(c, id, "no exec with this id is running on this connection");
        else if (!r->exec.stdin_stream)
                stdin_refuse(c, id, "the exec was not sent with \"stdin_stream\": true");
        else if (r->stdin_eof)
                stdin_refuse(c, id, "stdin was already closed (\"eof\": true)");
        else if (r->stdin_total + s.len > lim->stdin_max)
                stdin_refuse(c, id, "stdin over the limit of %zu bytes (limit.stdin_max)",
                             lim->stdin_max);
        else if (exec_stdin_take(r, s.data, s.len, s.eof) < 0)
                stdin_refuse(c, id, "out of memory");
        op_stdin_done(&s);
}

void batch_hold(struct batch *b)
{
        b->pending++;
}

void batch_answer(struct batch *b, json_t *reply)
{
        if (json_is_true(json_object_get(reply, "ok")) &&
            strcmp(json_string_value(json_object_get(reply, "status")) ?: "", "ok") == 0)
                b->ok++;
        else
                b->failed++;
        client_send(b->client, reply);
}

void batch_release(struct batch *b)
{
        if (--b->pending > 0)
                return;
        if (b->client && !client_closing(b->client))
                client_send(b->client, json_pack("{s:O?, s:b, s:{s:i, s:i, s:i}}", "id", b->id,
                                                 "ok", 1, "batch", "count", (int)b->count, "ok",
                                                 (int)b->ok, "failed", (int)b->failed));
        json_decref(b->id);
        free(b);
}

void op_exec_batch(struct client *c, json_t *id, json_t *req)
{
        struct op_batch ob;
        struct batch *b;
        char err[256];
        int k;

        k = op_batch_decode(req, &client_opd(c)->cfg.limits, &ob, err, sizeof(err));
        if (k < 0) {
                client_send(c,
                            op_error_reply(id, k == -ENOMEM ? OP_ERR_INTERNAL : OP_ERR_BAD_REQUEST,
                                           "%s", k == -ENOMEM ? "out of memory" : err));
                return;
        }
        b = calloc(1, sizeof(*b));
        if (!b) {
                op_batch_done(&ob);
                client_send(c, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                return;
        }
        *b = (struct batch){.client = c, .id = json_incref(id), .count = (unsigned)ob.n};
        /* Held while the members start: one may finish at once. */
        b->pending = 1;
        for (size_t i = 0; i < ob.n; i++)
                exec_submit(c, json_object_get(ob.members[i], "id"), ob.members[i], b);
        op_batch_done(&ob);
        batch_release(b);
}
