/* exec-op.h: the exec op from decode to the job for the agent and the answer (exec.c), and
 * what goes beyond protocol v1's core: streaming, stdin frames, limits and files in the job,
 * exec_batch (exec-opts.c). (guest/exec.h is the agent's side.) */
#pragma once

#include <jansson.h>

struct batch;
struct client;
struct op_agent_exec;
struct op_agent_limits;
struct opd;
struct request;
struct session;
struct vm;

/* The answer to an exec submitted from inside opd (the Piston door); takes the reference. */
typedef void (*exec_done_fn)(json_t *answer, void *userdata);

void exec_handle(struct client *c, json_t *id, json_t *req);
/* Validate and start one exec (of a batch when b is set). */
void exec_submit(struct client *c, json_t *id, json_t *req, struct batch *b);
/* A session_exec of c for session s (found and the caller's); err: refused already (takes the
 * reference; s is then NULL). Counted and answered as an exec. */
void exec_submit_session(struct client *c, json_t *id, json_t *req, struct session *s, json_t *err);
/* An exec in session s (IDLE: else answered busy) from inside opd, on behalf of the session's uid:
 * req is a session_exec request (its "session" must be s's id), answered through done() as
 * exec_submit_cb() says. */
void exec_submit_session_cb(struct opd *d, json_t *req, struct session *s, exec_done_fn done,
                            void *userdata, struct request **ret_r);
/* The same exec for a caller that is not a socket client, on behalf of uid (REQUEST_UID_ANON
 * when unknown): req is a protocol exec request (its "id" names it in logs). done() is called
 * exactly once with the answer, ok or error, unless the caller drops the request with
 * request_cancel() first; it may be called before exec_submit_cb() returns (a refusal, busy), so
 * the caller must not touch what done() frees. *ret_r is set, before anything can finish, to the
 * request while it runs, and left NULL when it never started. */
void exec_submit_cb(struct opd *d, json_t *req, uid_t uid, exec_done_fn done, void *userdata,
                    struct request **ret_r);
/* The VM is ready for the job (booted, or resumed with the job sent at once): build it, send
 * it with the stdin frames held so far, and the request runs. */
void exec_send_job(struct request *r);
void exec_on_vm_answer(struct vm *vm, json_t *ans, void *userdata);

/* ---- exec-opts.c ---- */
/* The job's fields beyond protocol v1's core (limits, stream, files, entry point). */
int exec_job_add_opts(struct request *r, json_t *job);
/* What the agent's answer and events to r may hold (agent-msg.h). */
void exec_agent_limits(const struct request *r, struct op_agent_limits *ret);
/* The client's answer's fields beyond the core, from the decoded agent answer. */
int exec_reply_add_opts(struct request *r, const struct op_agent_exec *x, json_t *reply);
void exec_on_vm_event(struct vm *vm, json_t *ev, void *userdata);
/* The job was sent: the stdin held so far follows it from its first byte (exec_stdin_pump()). */
void exec_flush_stdin(struct request *r);
/* A stdin frame of r's client that passed the checks (op_stdin()): its bytes are counted in
 * r->stdin_total and held until exec_stdin_pump() sends them. -ENOMEM: nothing taken. */
int exec_stdin_take(struct request *r, const void *data, size_t len, bool eof);
/* While r runs: held stdin goes to its VM in frames of up to limit.stdin_frame_max bytes (the
 * last with eof once the client sent it) until the VM's channel holds EXEC_STDIN_QUEUE_MAX
 * bytes; the rest waits for the channel to drain (the VM's drained event: now), and without
 * now nothing goes while the channel has bytes to write (so that stdin coming in small frames
 * leaves in large ones). What opd holds of a request's stdin is thus at most limit.stdin_max
 * bytes and one channel's worth, however small the client's frames and however slowly the
 * guest reads. Bytes sent are dropped once the program cannot start over elsewhere
 * (request_may_retry()). */
void exec_stdin_pump(struct request *r, bool now);
#define EXEC_STDIN_QUEUE_MAX (256u << 10)
/* A member of a batch starts: the batch waits for it. */
void batch_hold(struct batch *b);
/* A member of a batch was answered: count its outcome and send the answer (takes it) on the
 * batch's connection. */
void batch_answer(struct batch *b, json_t *reply);
/* A member of a batch is gone: the last one sends the batch's answer and frees it. */
void batch_release(struct batch *b);
void op_stdin(struct client *c, json_t *id, json_t *req);
void op_exec_batch(struct client *c, json_t *id, json_t *req);
