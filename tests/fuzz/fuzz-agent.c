/* fuzz-agent.c: libFuzzer target for the agent's messages to opd (proto/agent-msg.c): one frame's
 * payload decoded under every kind of request (exec with and without streaming, output files,
 * a compile phase and timing; ping, warm, prime). What is accepted keeps the request's limits (an
 * output order adds up to the bytes of each stream), fits its frame cap once re-encoded, and
 * decodes back to the same value. A ready event's version is compared as the pool compares it. */
#include <math.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>

#include "agent-msg.h"
#include "fuzz-check.h"

static const char *const names[] = {"out.txt", "b", NULL};

static void check_bytes(const struct op_agent_bytes *b, size_t max)
{
        CHECK(b->data && b->len <= max && b->data[b->len] == 0);
}

static void check_run(const struct op_agent_run *r, size_t max, bool run_ms_required)
{
        check_bytes(&r->out, max);
        check_bytes(&r->err, max);
        CHECK(r->exit_code == -1 || (r->exit_code >= 0 && r->exit_code <= 255));
        CHECK(r->signal == 0 || (r->signal >= 1 && r->signal <= 64));
        CHECK(r->exit_code == -1 || r->signal == 0);
        CHECK(r->has_run_ms || !run_ms_required);
        CHECK(!r->has_run_ms ||
              (isfinite(r->run_ms) && r->run_ms >= 0 && r->run_ms <= OP_AGENT_MS_MAX));
        /* an order accepted fits the bytes exactly: joining them takes each byte once */
        CHECK(r->order.known || (!r->order.partial && r->order.n == 0));
        if (r->order.known) {
                size_t used[2] = {0, 0};
                char err[256];

                CHECK(r->order.n <= OP_AGENT_ORDER_MAX);
                CHECK(op_agent_order_check(&r->order, r->out.len, r->err.len, "x", "", err,
                                           sizeof(err)) == 0);
                for (size_t i = 0; i < r->order.n; i++) {
                        CHECK(r->order.seg[i].stream == 1 || r->order.seg[i].stream == 2);
                        CHECK(i == 0 || r->order.seg[i].stream != r->order.seg[i - 1].stream);
                        used[r->order.seg[i].stream - 1] += r->order.seg[i].len;
                }
                CHECK(used[0] == r->out.len && used[1] == r->err.len);
                free(op_agent_order_join(&r->order, r->out.data, r->out.len, r->err.data,
                                         r->err.len));
        }
}

static void check_answer(const struct op_agent_answer *a, const struct op_agent_limits *lim)
{
        const struct op_agent_exec *x = &a->exec;

        CHECK(a->op == lim->op);
        if (!a->ok) {
                CHECK((unsigned)a->error.code < _OP_ERR_MAX);
                CHECK(a->error.message && strlen(a->error.message) <= OP_AGENT_MESSAGE_MAX);
                return;
        }
        switch (a->op) {
        case OP_AGENT_OP_PING:
                CHECK(strlen(a->agent_version) >= 1);
                return;
        case OP_AGENT_OP_WARM:
                CHECK(a->pid >= 1 && a->pid <= OP_AGENT_PID_MAX);
                return;
        case OP_AGENT_OP_PRIME:
                CHECK(isfinite(a->run_ms) && a->run_ms >= 0 && a->run_ms <= OP_AGENT_MS_MAX);
                return;
        case OP_AGENT_OP_EXEC:
                break;
        }
        check_run(&x->run, lim->output_max, true);
        CHECK(!x->has_status || (unsigned)x->status < _OP_STATUS_MAX);
        CHECK(!x->has_status || x->status != OP_STATUS_COMPILE_ERROR || x->has_compile);
        CHECK(!x->has_usage ||
              (x->usage.cpu_time_ms >= 0 && x->usage.cpu_time_ms <= OP_AGENT_MS_MAX &&
               x->usage.wall_ms >= 0 && x->usage.wall_ms <= OP_AGENT_MS_MAX &&
               x->usage.memory_peak_bytes <= OP_AGENT_MEMORY_MAX));
        CHECK(!x->streamed || lim->stream);
        CHECK(!x->has_agent_ms || (lim->timing && isfinite(x->agent_ms) && x->agent_ms >= 0 &&
                                   x->agent_ms <= OP_AGENT_MS_MAX));
        CHECK(x->has_compile == lim->compile);
        if (x->has_compile)
                check_run(&x->compile, lim->compile_output_max, false);
        CHECK(x->has_files == (lim->output_files != NULL) ||
              (lim->output_files && x->has_status && x->status == OP_STATUS_COMPILE_ERROR));
        CHECK(x->n_files == (x->has_files ? lim->n_output_files : 0));
        for (size_t i = 0; i < x->n_files; i++) {
                CHECK(strcmp(x->files[i].name, lim->output_files[i]) == 0);
                CHECK((unsigned)x->files[i].error < _OP_AGENT_FILE_MAX);
                if (x->files[i].error == OP_AGENT_FILE_OK)
                        check_bytes(&x->files[i].content, lim->output_file_max);
                else
                        CHECK(!x->files[i].content.data && x->files[i].content.len == 0);
        }
}

/* Encode obj as a frame, as the agent would send it: it fits the request's cap, and decodes to
 * a message of the same kind. Consumes obj. */
static void check_reencoded(json_t *obj, const struct op_agent_limits *lim,
                            struct op_agent_msg *ret)
{
        _cleanup_free_ char *wire = NULL;
        struct op_frame f;
        char err[512] = "";
        size_t n;

        CHECK(obj);
        CHECK(op_frame_encode(obj, OP_FRAME_MAX_CEILING, &wire, &n) == 0);
        json_decref(obj);
        CHECK(op_frame_next(wire, n, op_agent_frame_max(lim), &f) == 1);
        if (op_agent_msg_parse(wire + f.payload_offset, f.payload_len, lim, ret, err,
                               sizeof(err)) != 0) {
                fprintf(stderr, "re-encoded message refused: %s\n", err);
                CHECK(0);
        }
}

static void check_one(const uint8_t *data, size_t size, const struct op_agent_limits *lim)
{
        struct op_agent_msg m, back;
        json_t *id = json_string("job");
        char err[512] = "";
        int r;

        r = op_agent_msg_parse(data, size, lim, &m, err, sizeof(err));
        if (r < 0) {
                CHECK((r == -EINVAL && err[0]) || r == -ENOMEM);
                json_decref(id);
                return;
        }
        switch (m.kind) {
        case OP_AGENT_MSG_READY:
                CHECK(strlen(m.ready.agent_version) >= 1 &&
                      strlen(m.ready.agent_version) <= OP_AGENT_VERSION_MAX);
                check_reencoded(op_agent_ready_encode(&m.ready), lim, &back);
                CHECK(back.kind == OP_AGENT_MSG_READY);
                CHECK(strcmp(back.ready.agent_version, m.ready.agent_version) == 0);
                /* the version as the pool compares it: at least a newer one, at least older ones;
                 * equal to itself only when it is a version at all */
                if (op_agent_version_at_least(m.ready.agent_version, OP_AGENT_VERSION_RUNNER))
                        CHECK(op_agent_version_at_least(m.ready.agent_version, "0.2.9"));
                CHECK(op_agent_version_at_least(m.ready.agent_version, m.ready.agent_version) ==
                      op_agent_version_at_least(m.ready.agent_version, "0"));
                break;
        case OP_AGENT_MSG_OUTPUT:
                CHECK(lim->op == OP_AGENT_OP_EXEC && lim->stream);
                CHECK(m.output.stream == 1 || m.output.stream == 2);
                check_bytes(&m.output.data, lim->output_max);
                check_reencoded(op_agent_output_encode(id, &m.output), lim, &back);
                CHECK(back.kind == OP_AGENT_MSG_OUTPUT);
                CHECK(op_agent_output_equal(&m.output, &back.output));
                break;
        case OP_AGENT_MSG_ANSWER:
                check_answer(&m.answer, lim);
                check_reencoded(op_agent_answer_encode(id, &m.answer), lim, &back);
                CHECK(back.kind == OP_AGENT_MSG_ANSWER);
                CHECK(op_agent_answer_equal(&m.answer, &back.answer));
                break;
        default:
                CHECK(0);
        }
        op_agent_msg_done(&back);
        op_agent_msg_done(&m);
        CHECK(id->refcount == 1);
        json_decref(id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* every shape of exec: stream, output files, compile phase, timing on or off */
        for (unsigned k = 0; k < 16; k++) {
                struct op_agent_limits lim = {
                    .op = OP_AGENT_OP_EXEC,
                    .output_max = 16,
                    .stream = k & 1,
                    .output_files = k & 2 ? names : NULL,
                    .n_output_files = k & 2 ? 2 : 0,
                    .output_file_max = 8,
                    .compile = k & 4,
                    .compile_output_max = 4,
                    .timing = k & 8,
                };
                check_one(data, size, &lim);
        }
        for (enum op_agent_op op = OP_AGENT_OP_PING; op <= OP_AGENT_OP_PRIME; op++)
                check_one(data, size, &(struct op_agent_limits){.op = op});
        return 0;
}
