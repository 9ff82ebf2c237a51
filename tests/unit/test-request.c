/* test-request.c: an exec request's life (daemon/request.c) in a real opd on the fake VMM driver
 * (lib/vmm/fake.c): cold and warm routing, each state's deadline, the retry, cancellation in each
 * state, and one answer per request; sessions, also paused to the cache and resumed through a
 * client's connection (daemon/session-fork.c). No process, no image: the loop runs until the
 * answer. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent-msg.h"
#include "bgjob.h"
#include "client.h"
#include "exec-op.h"
#include "fake.h"
#include "loop-wait.h"
#include "host.h"
#include "opd.h"
#include "pool.h"
#include "request.h"
#include "session-fork.h"
#include "session-store.h"
#include "session.h"
#include "snap-ref.h"
#include "snapshot.h"
#include "util.h"

#define LONG_MS   600000 /* a deadline that must not fire */
#define SHORT_MS  20     /* a deadline that must fire: what it races with never happens */
#define TURNS_MAX 1000000

enum { SH, CC }; /* the languages, in the registry's order */

#define REGISTRY                                                                                   \
        "{\"languages\":["                                                                         \
        "{\"name\":\"sh\",\"file\":\"main.sh\",\"run\":[\"sh\",\"{file}\"]},"                      \
        "{\"name\":\"cc\",\"file\":\"main.c\",\"run\":[\"./main\"],"                               \
        "\"compile\":{\"argv\":[\"cc\",\"-o\",\"main\",\"{file}\"],\"timeout_ms\":5000}}]}"

/* One exec submitted as the Piston door does: what its sink heard. */
struct call {
        struct request *r; /* NULL once answered or cancelled */
        unsigned answers;
        json_t *answer;
        bool cancelled;
        /* when its job reached an agent: the request's state, warm or not, and how many answers
         * (to any request) had been given by then */
        unsigned jobs;
        enum request_state state_at_job;
        bool warm_at_job;
        unsigned answers_before_job;
        unsigned job_order; /* its job was the nth to reach an agent (from 1) */
};

#define CALLS_MAX 12

struct fx {
        struct opd d;
        struct fake_vmm fake;
        struct loop_tick tick;
        char dir[64];
        unsigned jobs;      /* exec jobs the agents read */
        bool agent_silent;  /* the agents read jobs and never answer */
        bool agent_refuses; /* the agents answer {"ok": false} */
        bool agent_garbles; /* the agents answer with a field no answer has */
        json_t *last_job;
        unsigned stdin_frames; /* stdin frames the agents read, */
        size_t stdin_bytes;    /* their bytes, */
        bool stdin_eof;        /* and whether one had eof */
        struct call calls[CALLS_MAX];
        unsigned n_calls;
};

/* A job reached vm's agent: what its request was then. */
static void note_job(struct fx *f, struct vm *vm)
{
        unsigned answers = 0;

        for (unsigned i = 0; i < f->n_calls; i++)
                answers += f->calls[i].answers;
        for (unsigned i = 0; i < f->n_calls; i++) {
                struct call *c = &f->calls[i];

                if (!c->r || c->r->vm != vm)
                        continue;
                c->jobs++;
                c->job_order = f->jobs + 1;
                c->state_at_job = c->r->state;
                c->warm_at_job = c->r->pool != NULL;
                c->answers_before_job = answers;
        }
}

/* The guest's agent: an exec answered with "hi\n" (and a compile phase when the job had one). */
static json_t *agent(struct vm *vm, json_t *frame, void *userdata)
{
        struct fx *f = userdata;
        const char *op = json_string_value(json_object_get(frame, "op"));
        struct op_agent_answer a = {.op = OP_AGENT_OP_EXEC, .ok = true};

        if (op && strcmp(op, "stdin") == 0) {
                f->stdin_frames++;
                f->stdin_bytes += json_string_length(json_object_get(frame, "data"));
                f->stdin_eof |= json_is_true(json_object_get(frame, "eof"));
                return NULL;
        }
        if (!op || strcmp(op, "exec") != 0)
                return NULL;
        note_job(f, vm);
        f->jobs++;
        json_decref(f->last_job);
        f->last_job = json_incref(frame);
        if (f->agent_silent)
                return NULL;
        if (f->agent_refuses) {
                a.ok = false;
                a.error = (struct op_agent_error){OP_ERR_INTERNAL, (char *)"no runner"};
                return op_agent_answer_encode(json_object_get(frame, "id"), &a);
        }
        if (f->agent_garbles)
                return json_pack("{s:O?, s:b, s:i}", "id", json_object_get(frame, "id"), "ok", 1,
                                 "surprise", 1);
        a.exec.run = (struct op_agent_run){
            .out = {(char *)"hi\n", 3}, .exit_code = 0, .has_run_ms = true, .run_ms = 1};
        if (json_object_get(frame, "compile")) {
                a.exec.has_compile = true;
                a.exec.compile = (struct op_agent_run){.exit_code = 0};
        }
        return op_agent_answer_encode(json_object_get(frame, "id"), &a);
}

static void write_file(const char *path, const char *text)
{
        FILE *fp = fopen(path, "w");

        assert_non_null(fp);
        fputs(text, fp);
        assert_int_equal(fclose(fp), 0);
}

static void set_path(char **key, const char *dir, const char *name)
{
        free(*key);
        assert_true(asprintf(key, "%s/%s", dir, name) > 0);
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct op_config *cfg;
        char path[256];

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-request-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(path, sizeof(path), "%s/images", f->dir);
        assert_int_equal(mkdir(path, 0755), 0);
        for (const char *const *l = (const char *const[]){"sh", "cc", NULL}; *l; l++) {
                snprintf(path, sizeof(path), "%s/images/%s", f->dir, *l);
                assert_int_equal(mkdir(path, 0755), 0);
                snprintf(path, sizeof(path), "%s/images/%s/rootfs.ext4", f->dir, *l);
                write_file(path, "");
        }
        snprintf(path, sizeof(path), "%s/images/vmlinux", f->dir);
        write_file(path, "");
        snprintf(path, sizeof(path), "%s/images/initrd.img", f->dir);
        write_file(path, "");
        snprintf(path, sizeof(path), "%s/languages.json", f->dir);
        write_file(path, REGISTRY);

        cfg = &f->d.cfg;
        assert_int_equal(op_config_init(cfg), 0);
        set_path(&cfg->images_dir, f->dir, "images");
        set_path(&cfg->languages_file, f->dir, "languages.json");
        set_path(&cfg->run_dir, f->dir, "run");
        set_path(&cfg->cache_dir, f->dir, "cache");
        /* No pool serves until a test says so; every deadline is far unless a test shortens
         * the one it waits for. */
        cfg->pool_size = 0;
        cfg->pool_max_size = 0; /* a pool keeps the size its test sets, whatever the demand */
        cfg->pool_prime = OP_NO;
        cfg->snapshot_check_ms = 0;
        cfg->max_vms = 8;
        cfg->max_queued = 8;
        cfg->pool_fallback_cold = 1;
        cfg->boot_timeout_ms = LONG_MS;
        cfg->restore_timeout_ms = LONG_MS;
        cfg->queue_timeout_ms = LONG_MS;
        cfg->agent_grace_ms = LONG_MS;
        f->d.no_listen = true;
        f->fake.agent = agent;
        f->fake.agent_userdata = f;
        assert_int_equal(opd_init_driver(&f->d, &vm_driver_fake, &f->fake), 0);
        assert_int_equal(f->d.vms_host->accel, OP_ACCEL_TCG);
        assert_int_equal(f->d.langs.n, 2);
        loop_tick_start(&f->tick, f->d.base);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        /* Every request was answered or cancelled; nothing waits. */
        for (unsigned i = 0; i < f->n_calls; i++) {
                assert_null(f->calls[i].r);
                json_decref(f->calls[i].answer);
        }
        assert_int_equal(requests_queued(&f->d), 0);
        assert_int_equal(fairq_len(&f->d.queue), 0);
        loop_tick_stop(&f->tick);
        opd_done(&f->d);
        assert_int_equal(f->fake.n_live, 0);
        json_decref(f->last_job);
        assert_int_equal(snap_rmtree(AT_FDCWD, f->dir), 0);
        free(f);
        return 0;
}

/* Run the loop until cond(arg) holds; a generous cap turns a hang into a failure. */
static void run_until(struct fx *f, bool (*cond)(void *), void *arg)
{
        loop_run_until(f->d.base, TURNS_MAX, cond, arg);
}

/* Some turns of the loop (each at least one tick), for "nothing more happens" checks. */
static void run_turns(struct fx *f, unsigned turns)
{
        loop_run_turns(f->d.base, &f->tick, turns);
}

static void on_done(json_t *answer, void *userdata)
{
        struct call *c = userdata;

        c->answers++;
        json_decref(c->answer);
        c->answer = answer;
        c->r = NULL;
}

/* An exec request as a client sends it; mode and the timeouts are left out when NULL or 0. */
static json_t *exec_req(const char *lang, const char *mode, uint32_t timeout_ms,
                        uint32_t compile_timeout_ms)
{
        static unsigned next_id;
        json_t *req = json_pack("{s:s, s:I, s:s, s:s}", "op", "exec", "id", (json_int_t)++next_id,
                                "lang", lang, "code", "echo hi");

        assert_non_null(req);
        if (mode)
                json_object_set_new(req, "mode", json_string(mode));
        if (timeout_ms)
                json_object_set_new(req, "timeout_ms", json_integer(timeout_ms));
        if (compile_timeout_ms)
                json_object_set_new(req, "compile_timeout_ms", json_integer(compile_timeout_ms));
        return req;
}

/* Submit through the entry the Piston door uses (takes req). */
static struct call *submit(struct fx *f, json_t *req)
{
        struct call *c;

        assert_true(f->n_calls < CALLS_MAX);
        c = &f->calls[f->n_calls++];
        exec_submit_cb(&f->d, req, REQUEST_UID_ANON, on_done, c, &c->r);
        json_decref(req);
        return c;
}

static struct call *submit_lang(struct fx *f, const char *lang, const char *mode)
{
        return submit(f, exec_req(lang, mode, 0, 0));
}

/* An exec of "sh" on behalf of uid (neither root nor the test's user: the per-uid caps apply). */
static struct call *submit_as(struct fx *f, uid_t uid, const char *mode)
{
        json_t *req = exec_req("sh", mode, 0, 0);
        struct call *c;

        assert_true(f->n_calls < CALLS_MAX);
        assert_false(uid_exempt(&f->d, uid));
        c = &f->calls[f->n_calls++];
        exec_submit_cb(&f->d, req, uid, on_done, c, &c->r);
        json_decref(req);
        return c;
}

static void cancel(struct call *c)
{
        assert_non_null(c->r);
        assert_int_equal(c->answers, 0);
        request_cancel(c->r);
        c->r = NULL;
        c->cancelled = true;
}

static bool answered(void *arg)
{
        return ((struct call *)arg)->answers > 0;
}

static void wait_answer(struct fx *f, struct call *c)
{
        run_until(f, answered, c);
}

static enum request_state state_of(const struct call *c)
{
        assert_non_null(c->r);
        return c->r->state;
}

/* The request has left state s (or was answered): the loop ran until then. */
struct leave {
        struct call *c;
        enum request_state s;
};

static bool left(void *arg)
{
        struct leave *l = arg;

        return l->c->answers > 0 || l->c->r->state != l->s;
}

static void run_until_left(struct fx *f, struct call *c, enum request_state s)
{
        struct leave l = {c, s};

        run_until(f, left, &l);
}

static const char *error_code(const struct call *c)
{
        return json_string_value(json_object_get(json_object_get(c->answer, "error"), "code"));
}

static const char *error_message(const struct call *c)
{
        return json_string_value(json_object_get(json_object_get(c->answer, "error"), "message"));
}

/* busy and pool_exhausted: the hint of when to retry, -1 when absent. */
static json_int_t retry_after_ms(const struct call *c)
{
        json_t *v = json_object_get(json_object_get(c->answer, "error"), "retry_after_ms");

        return json_is_integer(v) ? json_integer_value(v) : -1;
}

static void assert_ok(const struct call *c, const char *mode)
{
        assert_int_equal(c->answers, 1);
        assert_null(json_object_get(c->answer, "error"));
        assert_true(json_is_true(json_object_get(c->answer, "ok")));
        assert_string_equal(json_string_value(json_object_get(c->answer, "mode")), mode);
        assert_string_equal(json_string_value(json_object_get(c->answer, "stdout")), "hi\n");
        assert_int_equal(json_integer_value(json_object_get(c->answer, "exit_code")), 0);
}

static void assert_error(const struct call *c, const char *code)
{
        assert_int_equal(c->answers, 1);
        assert_non_null(error_code(c));
        assert_string_equal(error_code(c), code);
        assert_non_null(error_message(c));
}

/* A while after the last answer: every request answered once, cancelled ones never. */
static void settle(struct fx *f)
{
        run_turns(f, 10);
        for (unsigned i = 0; i < f->n_calls; i++)
                assert_int_equal(f->calls[i].answers, f->calls[i].cancelled ? 0 : 1);
}

static struct pool *pool_of(struct fx *f, int lang)
{
        struct pool *p = pool_for(f->d.pools, &f->d.langs.v[lang]);

        assert_non_null(p);
        return p;
}

static struct pool_counts counts(struct fx *f, int lang)
{
        struct pool_counts pc;

        pool_counts(pool_of(f, lang), &pc);
        return pc;
}

/* The pool of lang serves a snapshot (a stand-in: the fake restores without files) and keeps
 * target paused clones. */
static void serve(struct fx *f, int lang, uint32_t target)
{
        struct snap_ref *s = calloc(1, sizeof(*s));

        assert_non_null(s);
        s->refs = 1;
        s->dirfd = -1;
        snprintf(s->m.version, sizeof(s->m.version), "v1");
        snprintf(s->m.lang, sizeof(s->m.lang), "%s", f->d.langs.v[lang].name);
        pool_serve(pool_of(f, lang), s);
        pool_set_target(pool_of(f, lang), target);
        assert_true(pool_serves(pool_of(f, lang)));
}

struct ready_wait {
        struct fx *f;
        int lang;
        unsigned n;
};

static bool pool_ready(void *arg)
{
        struct ready_wait *w = arg;

        return counts(w->f, w->lang).ready >= w->n;
}

static void wait_ready(struct fx *f, int lang, unsigned n)
{
        struct ready_wait w = {f, lang, n};

        run_until(f, pool_ready, &w);
}

/* The request's current deadline passes now (every deadline of the test is far): the test
 * has seen the state it waited for, and nothing else can move the request meanwhile. */
static void expire_deadline(struct call *c)
{
        struct timeval now = {0, 0};

        assert_non_null(c->r);
        assert_true(evtimer_pending(c->r->timer, NULL));
        assert_int_equal(evtimer_add(c->r->timer, &now), 0);
}

/* Nothing is counted as waiting or in use: the cold queue, the waiters and the pools agree. */
static void assert_idle(struct fx *f)
{
        assert_int_equal(requests_queued(&f->d), 0);
        assert_int_equal(fairq_len(&f->d.queue), 0);
        for (int l = SH; l <= CC; l++) {
                struct pool_counts pc = counts(f, l);

                assert_int_equal(pc.waiting, 0);
                assert_int_equal(pc.in_use, 0);
        }
}

/* ---- cold ---- */

static void test_cold_ok(void **state)
{
        struct fx *f = *state;
        struct call *c = submit_lang(f, "sh", NULL);

        /* NEW -> BOOTING at once: a VM slot is free and no pool serves */
        assert_int_equal(state_of(c), REQ_BOOTING);
        assert_int_equal(f->d.vms_host->n_vms, 1);
        wait_answer(f, c);
        assert_ok(c, "cold");
        /* booted, then RUNNING when the job reached the agent */
        assert_int_equal(c->jobs, 1);
        assert_int_equal(c->state_at_job, REQ_RUNNING);
        assert_false(c->warm_at_job);
        assert_int_equal(f->jobs, 1);
        assert_null(json_object_get(f->last_job, "warm"));
        assert_null(json_object_get(c->answer, "snapshot"));
        settle(f);
        assert_int_equal(f->d.vms_host->n_vms, 0);
        assert_int_equal(f->d.stats.ok, 1);
        assert_idle(f);
}

/* A compiled language: the job has its compile phase, the answer the compiler's result. */
static void test_cold_compile_ok(void **state)
{
        struct fx *f = *state;
        struct call *c = submit_lang(f, "cc", "cold");

        wait_answer(f, c);
        assert_ok(c, "cold");
        assert_non_null(json_object_get(f->last_job, "compile"));
        assert_non_null(json_object_get(c->answer, "compile"));
        settle(f);
        assert_idle(f);
}

/* max_vms reached: the next request waits in the cold queue and boots once a slot frees. */
static void test_cold_queued_then_boots(void **state)
{
        struct fx *f = *state;
        struct call *a, *b, *c;

        f->d.cfg.max_vms = 1;
        a = submit_lang(f, "sh", NULL);
        b = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(a), REQ_BOOTING);
        assert_int_equal(state_of(b), REQ_QUEUED);
        assert_int_equal(requests_queued(&f->d), 1);
        assert_ptr_equal(fairq_first(&f->d.queue), &b->r->queue_item);
        wait_answer(f, b);
        assert_ok(a, "cold");
        assert_ok(b, "cold");
        /* the slot was a's: b's job went out only once a was answered */
        assert_int_equal(b->jobs, 1);
        assert_int_equal(b->answers_before_job, 1);
        assert_int_equal(f->d.vms_host->vms_started, 2);

        /* a VM that never boots holds the slot: the next request stays BOOTING once it left
         * the queue */
        a = submit_lang(f, "sh", NULL);
        f->fake.opts.fault = FAKE_FAULT_SILENT; /* VMs from now on never boot */
        c = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(c), REQ_QUEUED);
        cancel(a); /* its slot frees: c boots from the loop */
        assert_int_equal(state_of(c), REQ_QUEUED);
        run_until_left(f, c, REQ_QUEUED);
        assert_int_equal(state_of(c), REQ_BOOTING);
        assert_int_equal(requests_queued(&f->d), 0);
        assert_int_equal(fairq_len(&f->d.queue), 0);
        cancel(c);
        settle(f);
        assert_idle(f);
}

/* Every VM slot is held by an idle paused clone: a cold request takes the slot of one (it is
 * destroyed), and a request for another language's pool is served in the slot of the other. */
static void test_idle_clone_gives_slot(void **state)
{
        struct fx *f = *state;
        struct call *a, *b;

        f->d.cfg.max_vms = 1;
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        a = submit_lang(f, "sh", "cold");
        wait_answer(f, a);
        assert_ok(a, "cold");
        assert_int_equal(counts(f, SH).stats.evicted, 1);
        wait_ready(f, SH, 1); /* the slot comes back to the pool */
        serve(f, CC, 1);      /* no slot for its standing clone: sh holds it */
        run_turns(f, 5);
        assert_int_equal(counts(f, CC).ready + counts(f, CC).restoring, 0);
        b = submit_lang(f, "cc", "warm");
        wait_answer(f, b);
        assert_int_equal(b->answers, 1);
        assert_true(json_is_true(json_object_get(b->answer, "ok")));
        assert_string_equal(json_string_value(json_object_get(b->answer, "mode")), "warm");
        assert_int_equal(counts(f, SH).stats.evicted, 2);
        settle(f);
        assert_idle(f);
}

/* max_queued requests already wait: the next one is refused busy at once. */
static void test_cold_busy(void **state)
{
        struct fx *f = *state;
        struct call *a, *b, *c;

        f->d.cfg.max_vms = 1;
        f->d.cfg.max_queued = 1;
        a = submit_lang(f, "sh", NULL);
        b = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(b), REQ_QUEUED);
        c = submit_lang(f, "sh", NULL);
        assert_null(c->r);
        assert_error(c, "busy");
        assert_true(retry_after_ms(c) > 0);
        assert_non_null(strstr(error_message(c), "max_queued"));
        assert_int_equal(requests_queued(&f->d), 1);
        wait_answer(f, a);
        wait_answer(f, b);
        assert_ok(a, "cold");
        assert_ok(b, "cold");
        settle(f);
        assert_idle(f);
}

/* No slot frees within queue_timeout_ms: pool_exhausted. */
static void test_cold_queue_deadline(void **state)
{
        struct fx *f = *state;
        struct call *a, *b;
        char want[128];

        f->d.cfg.max_vms = 1;
        f->d.cfg.queue_timeout_ms = SHORT_MS;
        f->agent_silent = true;
        a = submit_lang(f, "sh", NULL);
        b = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(b), REQ_QUEUED);
        wait_answer(f, b);
        assert_error(b, "pool_exhausted");
        snprintf(want, sizeof(want), "no VM became free within %u ms", SHORT_MS);
        assert_string_equal(error_message(b), want);
        assert_int_equal(requests_queued(&f->d), 0);
        assert_int_equal(fairq_len(&f->d.queue), 0);
        run_until_left(f, a, REQ_BOOTING);
        assert_int_equal(state_of(a), REQ_RUNNING); /* and stays so: its agent never answers */
        cancel(a);
        settle(f);
        assert_idle(f);
}

/* The VM never boots: vm_failed, naming the boot. */
static void test_boot_deadline(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->d.cfg.boot_timeout_ms = SHORT_MS;
        f->fake.opts.fault = FAKE_FAULT_SILENT;
        c = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(c), REQ_BOOTING);
        wait_answer(f, c);
        assert_error(c, "vm_failed");
        assert_non_null(strstr(error_message(c), "boot"));
        settle(f);
        assert_int_equal(f->d.vms_host->n_vms, 0);
        assert_idle(f);
}

/* The request's own BOOTING deadline (the VM layer's, as long, is not reached): vm_failed "did
 * not boot", with boot_timeout_ms. */
static void test_boot_deadline_request(void **state)
{
        struct fx *f = *state;
        struct call *c;
        char want[128];

        f->fake.opts.fault = FAKE_FAULT_SILENT;
        c = submit_lang(f, "sh", NULL);
        run_turns(f, 3);
        assert_int_equal(state_of(c), REQ_BOOTING);
        expire_deadline(c);
        wait_answer(f, c);
        snprintf(want, sizeof(want), "the VM did not boot within %u ms", LONG_MS);
        assert_error(c, "vm_failed");
        assert_string_equal(error_message(c), want);
        settle(f);
        assert_int_equal(f->d.vms_host->n_vms, 0);
        assert_idle(f);
}

/* The VM fails to boot: vm_failed with the VM's reason. */
static void test_boot_fault(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->fake.opts.fault = FAKE_FAULT_BOOT;
        c = submit_lang(f, "sh", NULL);
        wait_answer(f, c);
        assert_error(c, "vm_failed");
        assert_non_null(strstr(error_message(c), "fake: the boot failed"));
        settle(f);
        assert_idle(f);
}

/* The VM dies while the job runs: vm_failed, and a cold request is not moved. */
static void test_running_fault(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->fake.opts.fault = FAKE_FAULT_RUNNING;
        c = submit_lang(f, "sh", NULL);
        wait_answer(f, c);
        assert_error(c, "vm_failed");
        assert_non_null(strstr(error_message(c), "died"));
        assert_int_equal(f->d.vms_host->vms_started, 1);
        settle(f);
        assert_idle(f);
}

/* The agent cannot run the job, or breaks the protocol: vm_failed, the VM destroyed. */
static void test_agent_error_answers(void **state)
{
        struct fx *f = *state;
        struct call *a, *b;

        f->agent_refuses = true;
        a = submit_lang(f, "sh", NULL);
        wait_answer(f, a);
        assert_error(a, "vm_failed");
        assert_non_null(strstr(error_message(a), "no runner"));
        f->agent_refuses = false;
        f->agent_garbles = true;
        b = submit_lang(f, "sh", NULL);
        wait_answer(f, b);
        assert_error(b, "vm_failed");
        assert_non_null(strstr(error_message(b), "agent sent"));
        settle(f);
        assert_int_equal(f->d.vms_host->n_vms, 0);
        assert_idle(f);
}

/* The guest never answers: timeout, with the deadline's figures. */
static void test_run_deadline(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->d.cfg.agent_grace_ms = 10;
        f->agent_silent = true;
        c = submit(f, exec_req("sh", NULL, 10, 0));
        wait_answer(f, c);
        assert_error(c, "timeout");
        assert_string_equal(error_message(c),
                            "the guest did not answer within 20 ms (timeout_ms 10 + grace 10)");
        settle(f);
        assert_int_equal(f->d.vms_host->n_vms, 0);
        assert_idle(f);
}

static void test_run_deadline_compile(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->d.cfg.agent_grace_ms = 10;
        f->agent_silent = true;
        c = submit(f, exec_req("cc", NULL, 10, 5));
        wait_answer(f, c);
        assert_error(c, "timeout");
        assert_string_equal(
            error_message(c),
            "the guest did not answer within 25 ms (compile 5 + timeout_ms 10 + grace 10)");
        settle(f);
        assert_idle(f);
}

/* ---- warm ---- */

static void test_warm_ok(void **state)
{
        struct fx *f = *state;
        struct call *c;

        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        c = submit_lang(f, "sh", NULL);
        /* a paused clone: resumed with the job sent at once */
        assert_int_equal(state_of(c), REQ_RUNNING);
        assert_int_equal(counts(f, SH).in_use, 1);
        assert_int_equal(counts(f, SH).ready, 0);
        wait_answer(f, c);
        assert_ok(c, "warm");
        assert_string_equal(json_string_value(json_object_get(c->answer, "snapshot")), "v1");
        assert_true(json_is_true(json_object_get(f->last_job, "warm")));
        settle(f);
        assert_idle(f);
        assert_int_equal(counts(f, SH).stats.served, 1);
        /* the pool refills once the request is done */
        wait_ready(f, SH, 1);
}

/* No paused clone yet: the request waits for one, and is served when it is ready. */
static void test_warm_waiting_served(void **state)
{
        struct fx *f = *state;
        struct call *c;

        serve(f, SH, 1); /* its clone is restoring */
        assert_int_equal(counts(f, SH).restoring, 1);
        c = submit_lang(f, "sh", "warm");
        assert_int_equal(state_of(c), REQ_WAITING);
        assert_int_equal(requests_queued(&f->d), 1);
        assert_int_equal(counts(f, SH).waiting, 1);
        assert_int_equal(fairq_len(&f->d.queue), 0);
        wait_answer(f, c);
        assert_ok(c, "warm");
        assert_int_equal(c->state_at_job, REQ_RUNNING);
        assert_true(c->warm_at_job);
        assert_int_equal(counts(f, SH).stats.served, 1);
        settle(f);
        assert_idle(f);
}

/* Waiters count against max_queued like the cold queue. */
static void test_warm_busy(void **state)
{
        struct fx *f = *state;
        struct call *a, *b;

        f->d.cfg.max_queued = 1;
        f->fake.opts.fault = FAKE_FAULT_SILENT; /* clones never finish restoring */
        serve(f, SH, 1);
        a = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(a), REQ_WAITING);
        b = submit_lang(f, "sh", NULL);
        assert_error(b, "busy");
        cancel(a);
        settle(f);
        assert_idle(f);
}

static bool backing_off(void *arg)
{
        struct fx *f = arg;

        return pool_backing_off(pool_of(f, SH));
}

/* No clone within queue_timeout_ms, mode auto and pool.fallback_cold: a cold boot serves it. */
static void test_warm_wait_deadline_fallback(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->d.cfg.queue_timeout_ms = SHORT_MS;
        f->fake.opts.fault = FAKE_FAULT_SILENT; /* the clone never finishes restoring */
        serve(f, SH, 1);
        f->fake.opts.fault = FAKE_FAULT_NONE; /* the cold VM boots */
        c = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(c), REQ_WAITING);
        wait_answer(f, c);
        assert_ok(c, "cold");
        assert_false(c->warm_at_job);
        assert_int_equal(f->d.vms_host->vms_started, 2); /* the clone, then the cold VM */
        assert_int_equal(counts(f, SH).stats.served, 0);
        assert_null(json_object_get(c->answer, "snapshot"));
        settle(f);
        assert_idle(f);
}

/* The pool's restores fail (it backs off): mode auto with the fallback boots cold at once
 * rather than wait for the backoff; mode warm waits. */
static void test_backoff_goes_cold(void **state)
{
        struct fx *f = *state;
        struct call *a, *b;

        f->fake.opts.fault = FAKE_FAULT_RESTORE;
        serve(f, SH, 1);
        run_until(f, backing_off, f);
        f->fake.opts.fault = FAKE_FAULT_NONE;
        a = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(a), REQ_BOOTING);
        wait_answer(f, a);
        assert_ok(a, "cold");
        b = submit_lang(f, "sh", "warm");
        assert_int_equal(state_of(b), REQ_WAITING);
        wait_answer(f, b);
        assert_ok(b, "warm");
        settle(f);
        assert_idle(f);
}

/* ... without the fallback, or in mode warm: pool_exhausted. */
static void test_warm_wait_deadline_exhausted(void **state)
{
        struct fx *f = *state;
        struct call *a, *b;
        char want[128];

        f->d.cfg.queue_timeout_ms = SHORT_MS;
        f->fake.opts.fault = FAKE_FAULT_SILENT;
        serve(f, SH, 1);
        f->fake.opts.fault = FAKE_FAULT_NONE;
        a = submit_lang(f, "sh", "warm"); /* warm or nothing, fallback or not */
        assert_int_equal(state_of(a), REQ_WAITING);
        wait_answer(f, a);
        f->d.cfg.pool_fallback_cold = 0;
        b = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(b), REQ_WAITING);
        wait_answer(f, b);
        snprintf(want, sizeof(want), "sh pool: no paused VM became free within %u ms", SHORT_MS);
        assert_error(a, "pool_exhausted");
        assert_string_equal(error_message(a), want);
        assert_error(b, "pool_exhausted");
        assert_string_equal(error_message(b), want);
        assert_true(retry_after_ms(a) > 0 && retry_after_ms(b) > 0);
        assert_int_equal(f->d.vms_host->vms_started, 1); /* the clone only: nothing booted */
        settle(f);
        assert_idle(f);
}

/* Mode warm where no pool serves: pool_exhausted at once; mode cold skips a serving pool. */
static void test_mode_warm_without_pool(void **state)
{
        struct fx *f = *state;
        struct call *a, *b;

        a = submit_lang(f, "sh", "warm");
        assert_null(a->r);
        assert_error(a, "pool_exhausted");
        assert_non_null(strstr(error_message(a), "no pool"));
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        b = submit_lang(f, "sh", "cold");
        assert_int_equal(state_of(b), REQ_BOOTING);
        wait_answer(f, b);
        assert_ok(b, "cold");
        assert_int_equal(counts(f, SH).stats.served, 0);
        settle(f);
        assert_idle(f);
}

/* ---- retry ---- */

/* Two paused clones: the oldest dies before its resume is acknowledged (when faulty), the other
 * is healthy unless both_faulty. */
static void two_clones(struct fx *f, bool both_faulty)
{
        f->fake.opts.fault = FAKE_FAULT_RESUME;
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        if (!both_faulty)
                f->fake.opts.fault = FAKE_FAULT_NONE;
        pool_set_target(pool_of(f, SH), 2);
        wait_ready(f, SH, 2);
}

/* A clone that died before resuming never ran the job: the request goes to another clone. */
static void test_retry_ok(void **state)
{
        struct fx *f = *state;
        struct call *c;

        two_clones(f, false);
        c = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(c), REQ_RUNNING);
        wait_answer(f, c);
        assert_ok(c, "warm");
        assert_int_equal(f->jobs, 1); /* the first clone's agent never read it */
        assert_int_equal(f->d.vms_host->vms_failed, 1);
        assert_int_equal(counts(f, SH).stats.served, 2);
        settle(f);
        assert_idle(f);
}

/* The clone handed to a waiter dies before resuming: the request waits again and the next
 * clone serves it. */
static void test_retry_from_waiter(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->fake.opts.fault = FAKE_FAULT_RESUME;
        serve(f, SH, 1); /* the first clone restores with the fault */
        f->fake.opts.fault = FAKE_FAULT_NONE;
        c = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(c), REQ_WAITING);
        wait_answer(f, c);
        assert_ok(c, "warm");
        assert_int_equal(c->jobs, 1); /* the faulty clone's agent never read it */
        assert_true(c->warm_at_job);
        assert_int_equal(f->d.vms_host->vms_failed, 1);
        assert_int_equal(counts(f, SH).stats.served, 2);
        settle(f);
        assert_idle(f);
}

/* Moved once only: the second clone dying the same way fails the request. */
static void test_retry_twice_fails(void **state)
{
        struct fx *f = *state;
        struct call *c;

        two_clones(f, true);
        c = submit_lang(f, "sh", NULL);
        wait_answer(f, c);
        assert_error(c, "vm_failed");
        assert_non_null(strstr(error_message(c), "before resuming"));
        assert_int_equal(f->jobs, 0);
        assert_int_equal(f->d.vms_host->vms_failed, 2);
        assert_int_equal(counts(f, SH).stats.served, 2);
        settle(f);
        assert_idle(f);
}

/* The request moved off a dead clone waits, falls back to a cold boot, and that VM does not
 * boot in time: the answer is vm_failed for the boot, never a timeout with the figures of the
 * run on the first clone. */
static void test_retry_cold_boot_deadline(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->d.cfg.queue_timeout_ms = SHORT_MS;
        f->d.cfg.boot_timeout_ms = SHORT_MS;
        f->fake.opts.fault = FAKE_FAULT_RESUME;
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        f->fake.opts.fault = FAKE_FAULT_SILENT; /* refills never restore, cold VMs never boot */
        c = submit(f, exec_req("sh", NULL, 10, 0));
        assert_int_equal(state_of(c), REQ_RUNNING);
        wait_answer(f, c);
        assert_error(c, "vm_failed");
        assert_non_null(strstr(error_message(c), "boot"));
        assert_null(strstr(error_message(c), "did not answer"));
        /* the clone, its refill (never restored), then the cold VM */
        assert_int_equal(f->d.vms_host->vms_started, 3);
        assert_int_equal(counts(f, SH).stats.served, 1);
        assert_int_equal(c->jobs, 0);
        settle(f);
        assert_idle(f);
}

/* The same step by step, every deadline far and passed by the test once the request is in
 * the state: it waits after the retry, boots cold once the wait's deadline passes, and the
 * request's own BOOTING deadline answers for the boot, with boot_timeout_ms. */
static void test_retry_cold_boot_deadline_request(void **state)
{
        struct fx *f = *state;
        struct call *c;
        char want[128];

        f->fake.opts.fault = FAKE_FAULT_RESUME;
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        f->fake.opts.fault = FAKE_FAULT_SILENT;
        c = submit(f, exec_req("sh", NULL, 10, 0));
        assert_int_equal(state_of(c), REQ_RUNNING);
        assert_int_equal(counts(f, SH).in_use, 1);
        run_until_left(f, c, REQ_RUNNING);
        assert_int_equal(state_of(c), REQ_WAITING); /* moved: no clone is ready */
        assert_null(c->r->vm);
        assert_int_equal(counts(f, SH).in_use, 0);
        assert_int_equal(counts(f, SH).waiting, 1);
        expire_deadline(c);
        run_until_left(f, c, REQ_WAITING);
        assert_int_equal(state_of(c), REQ_BOOTING); /* fell back to a cold boot */
        assert_null(c->r->pool);
        assert_int_equal(counts(f, SH).waiting, 0);
        assert_int_equal(requests_queued(&f->d), 0);
        expire_deadline(c);
        wait_answer(f, c);
        snprintf(want, sizeof(want), "the VM did not boot within %u ms", LONG_MS);
        assert_error(c, "vm_failed");
        assert_string_equal(error_message(c), want);
        settle(f);
        assert_idle(f);
}

/* The VMM never acknowledges the resume of a clone (the job waits in the channel): the run's
 * deadline ends it as vm_failed, since the program never ran, not as a timeout of the program. */
static void test_warm_resume_never_acknowledged(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->d.cfg.agent_grace_ms = 10;
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        c = submit(f, exec_req("sh", NULL, 10, 0));
        assert_int_equal(state_of(c), REQ_RUNNING);
        fake_vm_opts(c->r->vm)->fault = FAKE_FAULT_SILENT; /* before its resume completes */
        wait_answer(f, c);
        assert_int_equal(f->jobs, 0);
        assert_error(c, "vm_failed");
        assert_non_null(strstr(error_message(c), "did not resume within 20 ms"));
        settle(f);
        assert_idle(f);
}

/* An exec with "stdin_stream", submitted while its stdin frames may not come yet. */
static struct call *submit_stdin(struct fx *f, const char *mode)
{
        json_t *req = exec_req("sh", mode, 0, 0);

        json_object_set_new(req, "stdin_stream", json_true());
        return submit(f, req);
}

/* n stdin frames of one byte each, as op_stdin() takes them; eof on the last one. */
static void stdin_flood(struct call *c, size_t n, bool eof)
{
        for (size_t i = 0; i < n; i++)
                assert_int_equal(exec_stdin_take(c->r, "x", 1, eof && i + 1 == n), 0);
}

static bool stdin_read(void *arg)
{
        struct fx *f = arg;

        return f->stdin_bytes == 100000 && f->stdin_eof;
}

/* 100000 one-byte stdin frames before the program starts: kept as their 100000 bytes (what
 * limit.stdin_max bounds), not one object per frame, and sent after the job in frames of up to
 * limit.stdin_frame_max. opd serves the next request as usual. */
static void test_stdin_flood_before_start(void **state)
{
        struct fx *f = *state;
        struct call *c, *next;

        f->agent_silent = true;
        serve(f, SH, 1); /* its clone is restoring */
        c = submit_stdin(f, "warm");
        assert_int_equal(state_of(c), REQ_WAITING);
        stdin_flood(c, 100000, true);
        assert_int_equal(c->r->stdin_total, 100000);
        assert_int_equal(c->r->stdin_held_len, 100000);
        assert_in_range(c->r->stdin_held_cap, 100000, 2 * 100000);
        run_until(f, stdin_read, f);
        assert_int_equal(f->stdin_frames, (100000 + 65535) / 65536);
        cancel(c);
        f->agent_silent = false;
        next = submit_lang(f, "sh", NULL);
        wait_answer(f, next);
        assert_ok(next, "warm");
        settle(f);
        assert_idle(f);
}

static bool channel_empty(void *arg)
{
        struct call *c = arg;

        return c->r->vm && vm_send_queued(c->r->vm) == 0;
}

/* Until the VM's agent channel has written all it holds (the job). */
static void run_until_drained(struct fx *f, struct call *c)
{
        run_until(f, channel_empty, c);
}

/* A program that runs and can no longer start over elsewhere: stdin coming in 100000 one-byte
 * frames while the channel has bytes to write is held as bytes and leaves in frames of up to
 * limit.stdin_frame_max once it drains (the first goes at once: the channel is empty), and
 * nothing is held once all of it was sent. */
static void test_stdin_flood_running_coalesced(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->agent_silent = true;
        c = submit_stdin(f, "cold");
        run_until_left(f, c, REQ_BOOTING);
        assert_int_equal(state_of(c), REQ_RUNNING);
        run_until_drained(f, c);
        stdin_flood(c, 100000, true);
        assert_int_equal(c->r->stdin_held_len - c->r->stdin_sent, 99999);
        assert_in_range(c->r->stdin_held_cap, 99999, 2 * 100000);
        run_until(f, stdin_read, f);
        assert_int_equal(f->stdin_frames, 1 + (99999 + 65535) / 65536);
        assert_null(c->r->stdin_held);
        assert_int_equal(c->r->stdin_held_cap, 0);
        cancel(c);
        settle(f);
        assert_idle(f);
}

static bool stdin_read_1000(void *arg)
{
        struct fx *f = arg;

        return f->stdin_bytes == 1000;
}

/* Stdin taken while the clone's resume is not acknowledged is kept: the clone dies before it
 * resumed, and the next one gets all of it again, in one frame. */
static void test_stdin_kept_for_retry(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->agent_silent = true;
        two_clones(f, false);
        c = submit_stdin(f, NULL);
        assert_int_equal(state_of(c), REQ_RUNNING);
        stdin_flood(c, 1000, false);
        assert_int_equal(c->r->stdin_held_len, 1000);
        run_until(f, stdin_read_1000, f);
        assert_int_equal(f->d.vms_host->vms_failed, 1);
        assert_int_equal(f->stdin_frames, 1);
        assert_false(f->stdin_eof);
        cancel(c);
        settle(f);
        assert_idle(f);
}

/* A clone that dies after its resume was acknowledged may have run the job: not moved. */
static void test_warm_running_fault(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->fake.opts.fault = FAKE_FAULT_RUNNING;
        serve(f, SH, 2);
        wait_ready(f, SH, 2);
        c = submit_lang(f, "sh", NULL);
        wait_answer(f, c);
        assert_error(c, "vm_failed");
        assert_non_null(strstr(error_message(c), "died"));
        assert_int_equal(f->fake.n_frames, 1);
        assert_int_equal(counts(f, SH).stats.served, 1);
        settle(f);
        assert_idle(f);
}

/* ---- cancel ---- */

static void test_cancel_queued(void **state)
{
        struct fx *f = *state;
        struct call *a, *b, *c;

        f->d.cfg.max_vms = 1;
        a = submit_lang(f, "sh", NULL);
        b = submit_lang(f, "sh", NULL);
        c = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(b), REQ_QUEUED);
        assert_int_equal(state_of(c), REQ_QUEUED);
        assert_int_equal(requests_queued(&f->d), 2);
        cancel(b); /* from the middle of the line */
        assert_int_equal(requests_queued(&f->d), 1);
        assert_ptr_equal(fairq_first(&f->d.queue), &c->r->queue_item);
        assert_int_equal(fairq_len(&f->d.queue), 1);
        wait_answer(f, c);
        assert_ok(a, "cold");
        assert_ok(c, "cold");
        settle(f);
        assert_idle(f);
}

static void test_cancel_waiting(void **state)
{
        struct fx *f = *state;
        struct call *a, *b;

        f->fake.opts.fault = FAKE_FAULT_SILENT;
        serve(f, SH, 1);
        a = submit_lang(f, "sh", NULL);
        b = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(a), REQ_WAITING);
        assert_int_equal(state_of(b), REQ_WAITING);
        assert_int_equal(counts(f, SH).waiting, 2);
        cancel(a);
        assert_int_equal(counts(f, SH).waiting, 1);
        assert_int_equal(requests_queued(&f->d), 1);
        cancel(b);
        settle(f);
        assert_idle(f);
        assert_int_equal(counts(f, SH).restoring, 1); /* the pool's own clone is untouched */
}

static void test_cancel_booting(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->fake.opts.fault = FAKE_FAULT_SILENT;
        c = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(c), REQ_BOOTING);
        run_turns(f, 5);
        assert_int_equal(state_of(c), REQ_BOOTING);
        cancel(c);
        assert_int_equal(f->d.vms_host->n_vms, 0);
        settle(f);
        assert_idle(f);
}

static void test_cancel_running_cold(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->agent_silent = true;
        c = submit_lang(f, "sh", NULL);
        run_until_left(f, c, REQ_BOOTING);
        assert_int_equal(state_of(c), REQ_RUNNING);
        cancel(c);
        assert_int_equal(f->d.vms_host->n_vms, 0);
        settle(f);
        assert_idle(f);
}

static void test_cancel_running_warm(void **state)
{
        struct fx *f = *state;
        struct call *c;

        f->agent_silent = true;
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        c = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(c), REQ_RUNNING);
        assert_int_equal(counts(f, SH).in_use, 1);
        run_turns(f, 5);
        cancel(c);
        assert_int_equal(counts(f, SH).in_use, 0);
        settle(f);
        assert_idle(f);
        wait_ready(f, SH, 1); /* refilled */
}

/* A waiter cancelled while a clone is on its way: the clone goes to the next waiter, or stays
 * ready when there is none. */
static void test_cancel_waiting_then_ready(void **state)
{
        struct fx *f = *state;
        struct call *a, *b;

        serve(f, SH, 1);
        a = submit_lang(f, "sh", NULL);
        b = submit_lang(f, "sh", NULL);
        assert_int_equal(state_of(a), REQ_WAITING);
        cancel(a);
        wait_answer(f, b);
        assert_ok(b, "warm");
        settle(f);
        assert_idle(f);
        assert_int_equal(counts(f, SH).stats.served, 1);
}

/* ---- one uid against another ---- */

#define UID_A 1001
#define UID_B 1002

struct job_wait {
        struct fx *f;
        unsigned n;
};

static bool jobs_sent(void *arg)
{
        struct job_wait *w = arg;

        return w->f->jobs >= w->n;
}

/* Until n jobs in all reached an agent. */
static void wait_jobs(struct fx *f, unsigned n)
{
        struct job_wait w = {f, n};

        run_until(f, jobs_sent, &w);
}

/* Paused clones go to the waiters round-robin by uid: uid A holds the pool's one clone and has
 * three more requests waiting, uid B's one request arrives last and is served next. */
static void test_warm_waiters_round_robin_by_uid(void **state)
{
        struct fx *f = *state;
        struct call *a[4], *b;

        f->agent_silent = true; /* every request holds its VM until cancelled */
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        a[0] = submit_as(f, UID_A, NULL);
        assert_int_equal(state_of(a[0]), REQ_RUNNING);
        for (int i = 1; i < 4; i++) {
                a[i] = submit_as(f, UID_A, NULL);
                assert_int_equal(state_of(a[i]), REQ_WAITING);
        }
        b = submit_as(f, UID_B, NULL);
        assert_int_equal(state_of(b), REQ_WAITING);
        assert_int_equal(counts(f, SH).waiting, 4);
        /* one clone at a time (pool size 1): each goes to the next uid in turn */
        for (unsigned n = 2; n <= 5; n++)
                wait_jobs(f, n);
        assert_int_equal(a[0]->job_order, 1);
        assert_int_equal(b->job_order, 2);
        assert_int_equal(a[1]->job_order, 3);
        assert_int_equal(a[2]->job_order, 4);
        assert_int_equal(a[3]->job_order, 5);
        for (int i = 0; i < 4; i++) {
                assert_true(a[i]->warm_at_job);
                cancel(a[i]);
        }
        assert_true(b->warm_at_job);
        cancel(b);
        settle(f);
        assert_idle(f);
}

/* max_vms_per_uid counts VMs from a pool: a uid at its cap waits although a clone is ready,
 * another uid takes that clone meanwhile, and the waiter is served once a VM of its uid ends;
 * one that waits out queue_timeout_ms is answered pool_exhausted, saying why (no cold boot:
 * the cap holds there too). */
static void test_warm_uid_at_its_vm_cap_waits(void **state)
{
        struct fx *f = *state;
        struct call *a1, *a2, *a3, *b;

        f->d.cfg.max_vms_per_uid = 1;
        f->agent_silent = true;
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        a1 = submit_as(f, UID_A, NULL);
        assert_int_equal(state_of(a1), REQ_RUNNING);
        a2 = submit_as(f, UID_A, NULL);
        assert_int_equal(state_of(a2), REQ_WAITING);
        wait_ready(f, SH, 1); /* refilled: a2 still waits, held by its uid's cap */
        run_turns(f, 5);
        assert_int_equal(state_of(a2), REQ_WAITING);
        assert_int_equal(counts(f, SH).ready, 1);
        b = submit_as(f, UID_B, NULL);
        assert_int_equal(state_of(b), REQ_RUNNING); /* the clone a2 could not have */
        assert_non_null(b->r->pool);                /* warm */
        wait_ready(f, SH, 1);
        assert_int_equal(state_of(a2), REQ_WAITING);
        cancel(a1); /* a VM of A's ends: a2 takes the ready clone */
        run_until_left(f, a2, REQ_WAITING);
        assert_int_equal(state_of(a2), REQ_RUNNING);
        assert_non_null(a2->r->pool);
        /* a3 waits for a2's VM, in vain */
        a3 = submit_as(f, UID_A, NULL);
        assert_int_equal(state_of(a3), REQ_WAITING);
        expire_deadline(a3);
        wait_answer(f, a3);
        assert_error(a3, "pool_exhausted");
        assert_non_null(strstr(error_message(a3), "max_vms_per_uid"));
        assert_true(retry_after_ms(a3) > 0);
        cancel(a2);
        cancel(b);
        settle(f);
        assert_idle(f);
}

/* VM slots for cold boots go round-robin by uid too, and a uid at its cap keeps its turn. */
static void test_cold_queue_round_robin_by_uid(void **state)
{
        struct fx *f = *state;
        struct call *a[3], *b;

        f->agent_silent = true;
        f->d.cfg.max_vms = 1;
        for (int i = 0; i < 3; i++)
                a[i] = submit_as(f, UID_A, "cold");
        b = submit_as(f, UID_B, "cold");
        wait_jobs(f, 1);
        assert_int_equal(a[0]->job_order, 1);
        assert_int_equal(state_of(b), REQ_QUEUED);
        cancel(a[0]);
        wait_jobs(f, 2);
        assert_int_equal(b->job_order, 2);
        cancel(b);
        wait_jobs(f, 3);
        assert_int_equal(a[1]->job_order, 3);
        cancel(a[1]);
        wait_jobs(f, 4);
        assert_int_equal(a[2]->job_order, 4);
        cancel(a[2]);
        settle(f);
        assert_idle(f);
}

/* ---- the sink ---- */

struct sink_log {
        unsigned answers, releases;
        bool released_after_answer;
};

static void sink_answer(json_t *answer, void *userdata)
{
        struct sink_log *l = userdata;

        assert_int_equal(l->releases, 0);
        l->answers++;
        json_decref(answer);
}

static void sink_release(void *userdata)
{
        struct sink_log *l = userdata;

        l->released_after_answer = l->answers > 0;
        l->releases++;
}

static bool released(void *arg)
{
        return ((struct sink_log *)arg)->releases > 0;
}

/* A request made directly (as exec.c does for a batch member): r, routed. */
static struct request *new_request(struct fx *f, struct sink_log *l)
{
        const struct request_sink sink = {sink_answer, sink_release, l};
        json_t *req = exec_req("sh", NULL, 0, 0);
        struct request *r = NULL;
        struct op_exec e;
        char err[256];

        assert_int_equal(op_exec_decode(req, &f->d.cfg.limits, &e, err, sizeof(err)), 0);
        assert_int_equal(
            request_new(&f->d, json_object_get(req, "id"), &e, &f->d.langs.v[SH], NULL, &sink, &r),
            0);
        json_decref(req);
        assert_int_equal(r->state, REQ_NEW);
        request_route(r);
        return r;
}

/* The sink hears the answer once, then its release once; a cancelled request only the
 * release. */
static void test_sink_answer_then_release(void **state)
{
        struct fx *f = *state;
        struct sink_log done = {0}, cancelled = {0};
        struct request *r;

        f->d.cfg.max_vms = 1;
        new_request(f, &done);
        r = new_request(f, &cancelled);
        assert_int_equal(r->state, REQ_QUEUED);
        request_cancel(r);
        assert_int_equal(cancelled.answers, 0);
        assert_int_equal(cancelled.releases, 1);
        run_until(f, released, &done);
        settle(f);
        assert_int_equal(done.answers, 1);
        assert_int_equal(done.releases, 1);
        assert_true(done.released_after_answer);
        assert_int_equal(cancelled.answers, 0);
        assert_int_equal(cancelled.releases, 1);
        assert_int_equal(f->d.stats.ok, 1);
        assert_idle(f);
}

/* A bad exec frame (answered bad_request without a VM, counted in requests) with this id, into
 * buf: its length. */
static size_t bad_exec_frame(char *buf, size_t size, int id)
{
        int n = snprintf(buf + 4, size - 4,
                         "{\"op\":\"exec\",\"lang\":\"sh\",\"code\":42,\"id\":%d}", id);

        assert_true(n > 0 && (size_t)n + 4 < size);
        buf[0] = buf[1] = 0;
        buf[2] = (char)(n >> 8);
        buf[3] = (char)n;
        return (size_t)n + 4;
}

/* Write a bad exec with this id. */
static void send_bad_exec(int fd, int id)
{
        char frame[128];
        size_t n = bad_exec_frame(frame, sizeof(frame), id);

        assert_int_equal(write(fd, frame, n), (ssize_t)n);
}

/* A normal-priority event ready in every turn, for `left` turns, then the loop stops: with it,
 * no turn is one where nothing else was ready. */
struct busy {
        struct event *ev;
        unsigned left;
};

static void on_busy(evutil_socket_t fd, short what, void *arg)
{
        struct busy *b = arg;

        if (--b->left == 0)
                event_base_loopbreak(event_get_base(b->ev));
        else
                op_timer_arm_ms(b->ev, 0);
}

static void run_busy_turns(struct fx *f, struct busy *b, unsigned turns)
{
        b->left = turns;
        op_timer_arm_ms(b->ev, 0);
        assert_true(event_base_loop(f->d.base, 0) >= 0);
}

/* The ids of the answers on fd so far (up to max), in order; their count. */
static unsigned read_answer_ids(int fd, int *ids, unsigned max)
{
        static char buf[1 << 16];
        size_t len = 0, off = 0;
        unsigned n = 0;
        ssize_t k;

        while ((k = recv(fd, buf + len, sizeof(buf) - len, MSG_DONTWAIT)) > 0)
                len += (size_t)k;
        while (off + 4 <= len && n < max) {
                size_t flen =
                    ((size_t)(unsigned char)buf[off + 2] << 8) | (unsigned char)buf[off + 3];
                json_t *a;

                assert_true(off + 4 + flen <= len);
                a = json_loadb(buf + off + 4, flen, 0, NULL);
                assert_non_null(a);
                ids[n++] = (int)json_integer_value(json_object_get(a, "id"));
                json_decref(a);
                off += 4 + flen;
        }
        return n;
}

struct answered {
        struct fx *f;
        uint64_t n;
};

static bool requests_counted(void *arg)
{
        struct answered *a = arg;

        return a->f->d.stats.requests >= a->n;
}

/* A connection that pipelines more than a turn's share is deferred: while other events are
 * ready in every turn, it gets no turn; another connection's request is answered at once; once
 * the loop has turns with nothing else ready, the flood is answered, in order, nothing lost.
 * The turns are counted, no clock decides the verdict. */
static void test_flooding_connection_is_deferred(void **state)
{
        struct fx *f = *state;
        struct busy busy = {0};
        struct answered all = {f, 200};
        static const char status[] = "\0\0\0\x19{\"op\":\"status\",\"id\":1000}";
        int a[2], b[2], ids[256];
        char buf[16384];
        json_t *ans;
        ssize_t k;
        unsigned n;

        busy.ev = evtimer_new(f->d.base, on_busy, &busy);
        assert_non_null(busy.ev);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
        assert_int_equal(client_new(&f->d, a[1]), 0);
        assert_int_equal(client_new(&f->d, b[1]), 0);
        for (int i = 0; i < 200; i++)
                send_bad_exec(a[0], i);
        run_busy_turns(f, &busy, 20); /* the flood's first turn (16 requests), then none */
        assert_int_equal(f->d.stats.requests, 16);
        assert_int_equal(write(b[0], status, sizeof(status) - 1), (ssize_t)sizeof(status) - 1);
        run_busy_turns(f, &busy, 20); /* the status request, answered in its first turn */
        assert_int_equal(f->d.stats.requests, 16);
        k = recv(b[0], buf, sizeof(buf), MSG_DONTWAIT);
        assert_true(k > 4);
        ans = json_loadb(buf + 4, (size_t)k - 4, 0, NULL);
        assert_non_null(ans);
        assert_int_equal(json_integer_value(json_object_get(ans, "id")), 1000);
        json_decref(ans);
        /* Turns with nothing else ready: the rest of the flood. */
        run_until(f, requests_counted, &all);
        n = 0;
        while (n < 200) {
                run_turns(f, 1);
                n += read_answer_ids(a[0], ids + n, 256 - n);
        }
        for (int i = 0; i < 200; i++)
                assert_int_equal(ids[i], i);
        event_free(busy.ev);
        close(a[0]);
        close(b[0]);
        run_turns(f, 5); /* both connections close and are freed */
}

static void send_all(int fd, const char *p, size_t n)
{
        assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* A socketpair whose peer credentials (SO_PEERCRED: those of its maker) are uid's, so opd
 * counts it as uid's connection: made by a child that took uid, handed back over SCM_RIGHTS.
 * Root only. */
static void socketpair_of(uid_t uid, int sv[2])
{
        char cbuf[CMSG_SPACE(2 * sizeof(int))], byte;
        struct iovec iov = {&byte, 1};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        struct cmsghdr *cm;
        int ch[2], status;
        pid_t pid;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int p[2];

                if (setgid((gid_t)uid) < 0 || setuid(uid) < 0 ||
                    socketpair(AF_UNIX, SOCK_STREAM, 0, p) < 0)
                        _exit(1);
                mh.msg_control = cbuf;
                mh.msg_controllen = sizeof(cbuf);
                cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
                memcpy(CMSG_DATA(cm), p, 2 * sizeof(int));
                _exit(sendmsg(ch[1], &mh, 0) == 1 ? 0 : 1);
        }
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof(cbuf);
        assert_int_equal(recvmsg(ch[0], &mh, MSG_CMSG_CLOEXEC), 1);
        cm = CMSG_FIRSTHDR(&mh);
        assert_non_null(cm);
        assert_int_equal(cm->cmsg_type, SCM_RIGHTS);
        memcpy(sv, CMSG_DATA(cm), 2 * sizeof(int));
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        close(ch[0]);
        close(ch[1]);
}

static unsigned unread(int fd)
{
        int n = 0;

        assert_int_equal(ioctl(fd, SIOCOUTQ, &n), 0);
        return (unsigned)n;
}

#define FLOOD_UID   4343 /* neither root nor an administrator: its shares count */
#define BIG_CONNS   10
#define BIG_PAD     (150 * 1024)
#define TURN_INPUT_ (1024 * 1024) /* client.c's TURN_INPUT */

/* A uid's share of a turn counts the bytes of the frames read, not only their number: ten
 * connections of one uid, each with a 150 KiB frame that completes in the same turn, are
 * answered in that turn only up to 1 MiB of frames (before, all ten: fewer than 16 frames);
 * the others are deferred and answered later, nothing lost. Root only (the connections must be
 * of a uid the shares count: root is exempt). */
static void test_uid_share_counts_frame_bytes(void **state)
{
        struct fx *f = *state;
        struct busy busy = {0};
        struct answered all = {f, BIG_CONNS};
        int sv[BIG_CONNS][2], ids[4];
        size_t flen;
        char *frame;
        int n;

        if (geteuid() != 0)
                skip();
        frame = malloc(BIG_PAD + 256);
        assert_non_null(frame);
        n = snprintf(frame + 4, 256,
                     "{\"op\":\"exec\",\"lang\":\"sh\",\"code\":42,\"id\":7,\"pad\":\"");
        memset(frame + 4 + n, 'x', BIG_PAD);
        memcpy(frame + 4 + n + BIG_PAD, "\"}", 2);
        flen = (size_t)n + BIG_PAD + 2;
        frame[0] = (char)(flen >> 24);
        frame[1] = (char)(flen >> 16);
        frame[2] = (char)(flen >> 8);
        frame[3] = (char)flen;
        flen += 4;
        busy.ev = evtimer_new(f->d.base, on_busy, &busy);
        assert_non_null(busy.ev);
        /* each connection's frame but its last byte, read by opd as it comes */
        for (int i = 0; i < BIG_CONNS; i++) {
                size_t off = 0;

                socketpair_of(FLOOD_UID, sv[i]);
                assert_int_equal(client_new(&f->d, sv[i][1]), 0);
                while (off < flen - 1) {
                        ssize_t k = send(sv[i][0], frame + off, flen - 1 - off,
                                         MSG_DONTWAIT | MSG_NOSIGNAL);

                        if (k < 0) {
                                assert_int_equal(errno, EAGAIN);
                                run_turns(f, 1);
                                continue;
                        }
                        off += (size_t)k;
                }
        }
        for (int i = 0; i < BIG_CONNS; i++)
                while (unread(sv[i][0]) > 0)
                        run_turns(f, 1);
        assert_int_equal(f->d.stats.requests, 0);
        /* the last bytes together: every frame completes in the next turn */
        for (int i = 0; i < BIG_CONNS; i++)
                send_all(sv[i][0], frame + flen - 1, 1);
        run_busy_turns(f, &busy, 2);
        assert_int_equal(f->d.stats.requests, (TURN_INPUT_ + flen - 1) / flen);
        assert_true(f->d.stats.requests < BIG_CONNS);
        /* turns with nothing else ready: the others */
        run_until(f, requests_counted, &all);
        for (int i = 0; i < BIG_CONNS; i++) {
                unsigned got = 0;

                while (got == 0) {
                        run_turns(f, 1);
                        got = read_answer_ids(sv[i][0], ids, 4);
                }
                assert_int_equal(got, 1);
                assert_int_equal(ids[0], 7);
                close(sv[i][0]);
        }
        event_free(busy.ev);
        free(frame);
        run_turns(f, 5); /* the connections close and are freed */
}

static bool no_client(void *arg)
{
        return clients_count(arg) == 0;
}

/* Wait until n requests are counted, or the clock (op_now_us()) reached us; or until the
 * connection is gone. */
struct until {
        struct fx *f;
        uint64_t n;
        uint64_t us;
};

static bool clock_reached_or_closed(void *arg)
{
        struct until *u = arg;

        return op_now_us() >= u->us || clients_count(&u->f->d) == 0;
}

static bool counted_or_closed(void *arg)
{
        struct until *u = arg;

        return u->f->d.stats.requests >= u->n || clients_count(&u->f->d) == 0;
}

/* The answers on fd, to its end of file: their count; the last one in *last. */
static unsigned read_answers_to_eof(int fd, json_t **last)
{
        static char buf[1 << 16];
        size_t len = 0, off = 0;
        unsigned n = 0;
        ssize_t k;

        while ((k = recv(fd, buf + len, sizeof(buf) - len, 0)) > 0)
                len += (size_t)k;
        assert_int_equal(k, 0);
        *last = NULL;
        while (off + 4 <= len) {
                size_t flen =
                    ((size_t)(unsigned char)buf[off + 2] << 8) | (unsigned char)buf[off + 3];

                assert_true(off + 4 + flen <= len);
                json_decref(*last);
                *last = json_loadb(buf + off + 4, flen, 0, NULL);
                assert_non_null(*last);
                n++;
                off += 4 + flen;
        }
        assert_int_equal(off, len);
        return n;
}

#define DEADLINE_MS 2000

/* read_timeout_ms bounds how long one frame takes to arrive. A client whose writes never end on
 * a frame boundary (each completes a frame and starts the next) always has a part of a frame
 * unread, for longer in all than the deadline: each frame is answered and it is not cut off.
 * Once it stalls in the middle of a frame, that frame's deadline closes it, with bad_request.
 * The verdict does not hang on how fast the loop turns: frame 1 is completed at 3/4 of the
 * deadline after frame 0 (or later, when the loop is slow), which restarts the deadline, so the
 * client is still open at 3/2 of it (its first deadline has passed then) unless a turn of the
 * loop took more than a quarter of the deadline. */
static void test_read_deadline_per_frame(void **state)
{
        struct fx *f = *state;
        struct until u = {f, 0, 0};
        char frames[3][128];
        size_t len[3];
        uint64_t t_first, t_last, t_close;
        json_t *last;
        int s[2];

        f->d.cfg.read_timeout_ms = DEADLINE_MS;
        for (int i = 0; i < 3; i++)
                len[i] = bad_exec_frame(frames[i], sizeof(frames[i]), i);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
        assert_int_equal(client_new(&f->d, s[1]), 0);
        /* frame 0 whole and the first half of frame 1 */
        t_first = op_now_us();
        send_all(s[0], frames[0], len[0]);
        send_all(s[0], frames[1], len[1] / 2);
        u.n = 1;
        run_until(f, counted_or_closed, &u);
        assert_int_equal(f->d.stats.requests, 1);
        /* at 3/4 of the deadline: the rest of frame 1 and the first half of frame 2 */
        u.us = t_first + DEADLINE_MS * 750ull;
        run_until(f, clock_reached_or_closed, &u);
        assert_int_equal(clients_count(&f->d), 1);
        t_last = op_now_us();
        send_all(s[0], frames[1] + len[1] / 2, len[1] - len[1] / 2);
        send_all(s[0], frames[2], len[2] / 2);
        u.n = 2;
        run_until(f, counted_or_closed, &u);
        assert_int_equal(f->d.stats.requests, 2);
        /* at 3/2 of the deadline, past the first one: still served */
        u.us = t_first + DEADLINE_MS * 1500ull;
        run_until(f, clock_reached_or_closed, &u);
        assert_int_equal(clients_count(&f->d), 1);
        /* it stalls in the middle of frame 2: closed a deadline after that frame began (the
         * loop's clock may be a coarse one, a tick behind this one: a tenth of the deadline is
         * far more than a tick) */
        run_until(f, no_client, &f->d);
        t_close = op_now_us();
        assert_true(t_close + DEADLINE_MS * 100ull >= t_last + DEADLINE_MS * 1000ull);
        assert_int_equal(read_answers_to_eof(s[0], &last), 3);
        assert_true(json_is_null(json_object_get(last, "id")));
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(last, "error"), "code")),
            "bad_request");
        assert_non_null(
            strstr(json_string_value(json_object_get(json_object_get(last, "error"), "message")),
                   "incomplete frame"));
        json_decref(last);
        assert_int_equal(f->d.stats.requests, 2);
        close(s[0]);
}

/* stderr (opd's log) into a file while a test looks at what is logged. */
struct log_capture {
        FILE *fp;
        int saved;
};

static void log_capture_start(struct log_capture *l)
{
        fflush(stderr);
        l->fp = tmpfile();
        assert_non_null(l->fp);
        l->saved = dup(STDERR_FILENO);
        assert_true(l->saved >= 0);
        assert_true(dup2(fileno(l->fp), STDERR_FILENO) >= 0);
}

/* Stop capturing. */
static void log_capture_stop(struct log_capture *l)
{
        fflush(stderr);
        assert_true(dup2(l->saved, STDERR_FILENO) >= 0);
        close(l->saved);
}

/* Once stopped: the lines logged that hold needle. */
static unsigned log_captured(struct log_capture *l, const char *needle)
{
        char line[4096];
        unsigned n = 0;

        rewind(l->fp);
        while (fgets(line, sizeof(line), l->fp))
                if (strstr(line, needle))
                        n++;
        return n;
}

static void log_capture_done(struct log_capture *l)
{
        fclose(l->fp);
}

#define OVER_MAX_CLIENTS 100

/* Connections past max_clients: each gets one busy answer and is closed, each counts in
 * opd_connections_refused_total, and the log names only the 1st, 2nd, 4th, 8th... of them. */
static void test_max_clients_refusals_counted(void **state)
{
        struct fx *f = *state;
        struct log_capture cap;
        uint64_t refused0 = f->d.stats.refused;
        json_t *last;
        int held[2];

        f->d.cfg.max_clients = 1;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, held), 0);
        assert_int_equal(client_new(&f->d, held[1]), 0);
        log_capture_start(&cap);
        for (int i = 0; i < OVER_MAX_CLIENTS; i++) {
                int s[2];

                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
                assert_int_equal(client_new(&f->d, s[1]), -EBUSY);
                assert_int_equal(read_answers_to_eof(s[0], &last), 1);
                assert_string_equal(
                    json_string_value(json_object_get(json_object_get(last, "error"), "code")),
                    "busy");
                json_decref(last);
                close(s[0]);
        }
        log_capture_stop(&cap);
        /* 1, 2, 4, 8, 16, 32, 64 */
        assert_int_equal(log_captured(&cap, "max_clients reached"), 7);
        log_capture_done(&cap);
        assert_int_equal(f->d.stats.refused - refused0, OVER_MAX_CLIENTS);
        assert_int_equal(clients_count(&f->d), 1);
        close(held[0]);
        run_until(f, no_client, &f->d);
}

/* Write an exec of sh with this id. */
static void send_exec(int fd, int id)
{
        char frame[128];
        int n = snprintf(frame + 4, sizeof(frame) - 4,
                         "{\"op\":\"exec\",\"lang\":\"sh\",\"code\":\"echo hi\",\"id\":%d}", id);

        frame[0] = frame[1] = 0;
        frame[2] = (char)(n >> 8);
        frame[3] = (char)n;
        send_all(fd, frame, (size_t)n + 4);
}

struct running_and_queued {
        struct fx *f;
        unsigned queued;
};

static bool one_running_rest_queued(void *arg)
{
        struct running_and_queued *w = arg;

        return w->f->jobs == 1 && requests_queued(&w->f->d) == w->queued;
}

#define QUEUED_THEN_GONE 5

/* A connection closes with one exec running and others queued: all are cancelled; the one that
 * had a VM is logged (outcome=cancelled, with its mode), the queued ones, which never had a VM,
 * write no line (but with OPD_DEBUG). */
static void test_cancelled_queued_execs_not_logged(void **state)
{
        struct fx *f = *state;
        struct running_and_queued w = {f, QUEUED_THEN_GONE};
        struct log_capture cap;
        char *debug = getenv("OPD_DEBUG") ? strdup(getenv("OPD_DEBUG")) : NULL;
        int s[2];

        f->d.cfg.max_vms = 1;
        f->agent_silent = true; /* the first exec runs until it is cancelled */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
        assert_int_equal(client_new(&f->d, s[1]), 0);
        for (int i = 0; i <= QUEUED_THEN_GONE; i++)
                send_exec(s[0], i);
        run_until(f, one_running_rest_queued, &w);
        unsetenv("OPD_DEBUG");
        log_capture_start(&cap);
        close(s[0]);
        run_until(f, no_client, &f->d);
        log_capture_stop(&cap);
        if (debug)
                setenv("OPD_DEBUG", debug, 1);
        free(debug);
        assert_int_equal(requests_queued(&f->d), 0);
        assert_int_equal(log_captured(&cap, "outcome=cancelled"), 1);
        assert_int_equal(log_captured(&cap, "exec id=0 lang=sh mode=cold outcome=cancelled"), 1);
        log_capture_done(&cap);
}

/* ---- sessions ---- */

#define SESSION_UID 4242

/* A session of SESSION_UID in sh, started: its id (the session may end while the test runs). */
static void open_session(struct fx *f, uint32_t idle_ms, uint32_t lifetime_ms,
                         char id[static OP_SESSION_ID_LEN + 1])
{
        struct session *s;

        assert_int_equal(
            session_new(&f->d, &f->d.langs.v[SH], SESSION_UID, idle_ms, lifetime_ms, NULL, &s), 0);
        assert_int_equal(s->state, SESSION_NEW);
        assert_true(op_session_id_valid(s->id, strlen(s->id)));
        memcpy(id, s->id, OP_SESSION_ID_LEN + 1);
        session_start(s);
}

static struct session *find(struct fx *f, const char *id)
{
        return session_find(&f->d, id, SESSION_UID, false);
}

struct session_wait {
        struct fx *f;
        const char *id;
        enum session_state state; /* _SESSION_STATE_MAX: until it is gone */
};

static bool session_reached(void *arg)
{
        struct session_wait *w = arg;
        struct session *s = find(w->f, w->id);

        return w->state == _SESSION_STATE_MAX ? !s : s && s->state == w->state;
}

static void wait_session(struct fx *f, const char *id, enum session_state state)
{
        struct session_wait w = {f, id, state};

        run_until(f, session_reached, &w);
}

/* An exec in the session (takes nothing). */
static struct call *submit_in(struct fx *f, const char *id)
{
        json_t *req =
            json_pack("{s:s, s:s, s:s}", "op", "session_exec", "session", id, "code", "echo hi");
        struct call *c;

        assert_true(f->n_calls < CALLS_MAX);
        c = &f->calls[f->n_calls++];
        exec_submit_session_cb(&f->d, req, find(f, id), on_done, c, &c->r);
        json_decref(req);
        return c;
}

static void expire_session(struct fx *f, const char *id)
{
        struct timeval now = {0, 0};
        struct session *s = find(f, id);

        assert_non_null(s);
        assert_true(evtimer_pending(s->timer, NULL));
        assert_int_equal(evtimer_add(s->timer, &now), 0);
}

static unsigned uid_vms(struct fx *f, uid_t uid)
{
        struct uid_use *u;

        LIST_FOREACH(u, &f->d.uids, link)
        if (u->uid == uid)
                return u->vms;
        return 0;
}

/* Open takes a paused clone as a warm exec does, keeps it across execs (each in the session's
 * kept directory, the first on the warm runner), and its uid counts it as a VM. */
static void test_session_warm_execs(void **state)
{
        struct fx *f = *state;
        char id[OP_SESSION_ID_LEN + 1];
        struct session *s;
        struct call *c;
        struct vm *vm;

        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        open_session(f, LONG_MS, LONG_MS, id);
        s = find(f, id);
        assert_non_null(s);
        assert_int_equal(s->state, SESSION_IDLE);
        assert_non_null(s->vm);
        vm = s->vm;
        assert_string_equal(s->snap_version, "v1");
        assert_int_equal(counts(f, SH).in_use, 1);
        assert_int_equal(uid_vms(f, SESSION_UID), 1);
        /* another uid does not find it; an administrator does */
        assert_null(session_find(&f->d, id, SESSION_UID + 1, false));
        assert_ptr_equal(session_find(&f->d, id, SESSION_UID + 1, true), s);
        for (int i = 0; i < 2; i++) {
                c = submit_in(f, id);
                assert_int_equal(find(f, id)->state, SESSION_BUSY);
                wait_answer(f, c);
                assert_ok(c, "session");
                assert_string_equal(json_string_value(json_object_get(c->answer, "session")), id);
                assert_string_equal(json_string_value(json_object_get(f->last_job, "workdir")), id);
                assert_true(json_is_true(json_object_get(f->last_job, "warm")));
                s = find(f, id);
                assert_non_null(s);
                assert_int_equal(s->state, SESSION_IDLE);
                assert_ptr_equal(s->vm, vm); /* the same VM every time */
                assert_int_equal(s->execs, (uint64_t)i + 1);
        }
        /* ids are unique; a session restored under its old id keeps it */
        {
                struct session *t;
                char old[OP_SESSION_ID_LEN + 1];

                assert_int_equal(
                    session_new(&f->d, &f->d.langs.v[SH], SESSION_UID, LONG_MS, LONG_MS, NULL, &t),
                    0);
                assert_string_not_equal(t->id, id);
                assert_string_equal(t->workdir, t->id);
                memcpy(old, t->id, sizeof(old));
                assert_int_equal(session_set_id(t, id), -EEXIST);
                assert_int_equal(session_set_id(t, "not-an-id"), -EINVAL);
                assert_string_equal(t->id, old);
                session_destroy(t, SESSION_END_CLOSED);
        }
        session_destroy(s, SESSION_END_CLOSED);
        assert_null(find(f, id));
        assert_int_equal(counts(f, SH).in_use, 0);
        assert_int_equal(uid_vms(f, SESSION_UID), 0);
        settle(f);
        wait_ready(f, SH, 1); /* the pool refills */
}

/* A session_exec of the session id with this "phase" (and code unless the phase is run). */
static struct call *submit_phase(struct fx *f, const char *id, const char *phase)
{
        json_t *req =
            json_pack("{s:s, s:s, s:s}", "op", "session_exec", "session", id, "phase", phase);
        struct call *c;

        if (strcmp(phase, "run") != 0)
                json_object_set_new(req, "code", json_string("int main(void) { return 0; }"));
        assert_true(f->n_calls < CALLS_MAX);
        c = &f->calls[f->n_calls++];
        exec_submit_session_cb(&f->d, req, find(f, id), on_done, c, &c->r);
        json_decref(req);
        return c;
}

/* "phase": compile sends the compile step with a program that does nothing; run sends the
 * language's run command with neither a compile step nor a main file; a language without a
 * compile step refuses a phase. */
static void test_session_phases(void **state)
{
        struct fx *f = *state;
        char id[OP_SESSION_ID_LEN + 1], sh[OP_SESSION_ID_LEN + 1];
        struct session *s;
        json_t *argv;
        struct call *c;

        serve(f, CC, 1);
        wait_ready(f, CC, 1);
        assert_int_equal(
            session_new(&f->d, &f->d.langs.v[CC], SESSION_UID, LONG_MS, LONG_MS, NULL, &s), 0);
        memcpy(id, s->id, sizeof(id));
        session_start(s);
        wait_session(f, id, SESSION_IDLE);

        c = submit_phase(f, id, "compile");
        wait_answer(f, c);
        assert_ok(c, "session");
        assert_string_equal(json_string_value(json_object_get(c->answer, "phase")), "compile");
        assert_non_null(json_object_get(c->answer, "compile"));
        assert_non_null(json_object_get(f->last_job, "compile"));
        argv = json_object_get(f->last_job, "argv");
        assert_int_equal(json_array_size(argv), 1);
        assert_string_equal(json_string_value(json_array_get(argv, 0)), "true");
        assert_null(json_object_get(f->last_job, "warm"));
        assert_string_equal(json_string_value(json_object_get(f->last_job, "file")), "main.c");

        c = submit_phase(f, id, "run");
        wait_answer(f, c);
        assert_ok(c, "session");
        assert_string_equal(json_string_value(json_object_get(c->answer, "phase")), "run");
        assert_null(json_object_get(c->answer, "compile"));
        assert_null(json_object_get(f->last_job, "compile"));
        assert_null(json_object_get(f->last_job, "file"));
        assert_null(json_object_get(f->last_job, "code"));
        argv = json_object_get(f->last_job, "argv");
        assert_string_equal(json_string_value(json_array_get(argv, 0)), "./main");
        assert_string_equal(json_string_value(json_object_get(f->last_job, "workdir")), id);
        assert_int_equal(find(f, id)->execs, 2);

        /* sh has no compile step */
        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        open_session(f, LONG_MS, LONG_MS, sh);
        wait_session(f, sh, SESSION_IDLE);
        c = submit_phase(f, sh, "compile");
        wait_answer(f, c);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(c->answer, "error"), "code")),
            "bad_request");
        assert_non_null(strstr(
            json_string_value(json_object_get(json_object_get(c->answer, "error"), "message")),
            "not a compiled language"));
        assert_int_equal(find(f, sh)->state, SESSION_IDLE);
        session_destroy(find(f, sh), SESSION_END_CLOSED);
        session_destroy(find(f, id), SESSION_END_CLOSED);
        settle(f);
}

/* One exec at a time; the lifetime ends the session under a running exec, which is answered. */
static void test_session_busy_then_lifetime(void **state)
{
        struct fx *f = *state;
        char id[OP_SESSION_ID_LEN + 1];
        struct call *c1, *c2;

        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        open_session(f, LONG_MS, LONG_MS, id);
        f->agent_silent = true;
        c1 = submit_in(f, id);
        c2 = submit_in(f, id);
        assert_error(c2, "busy");
        assert_non_null(strstr(error_message(c2), "one exec at a time"));
        assert_int_equal(find(f, id)->state, SESSION_BUSY);
        expire_session(f, id);
        wait_answer(f, c1);
        assert_error(c1, "timeout");
        assert_non_null(strstr(error_message(c1), "max_lifetime_ms"));
        assert_null(find(f, id));
        assert_int_equal(uid_vms(f, SESSION_UID), 0);
        settle(f);
        assert_idle(f);
}

/* The idle deadline ends an idle session; its VM goes. */
static void test_session_idle_deadline(void **state)
{
        struct fx *f = *state;
        char id[OP_SESSION_ID_LEN + 1];
        struct session_counts n;

        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        open_session(f, SHORT_MS, LONG_MS, id);
        wait_session(f, id, _SESSION_STATE_MAX);
        sessions_counts(&f->d, &n);
        assert_int_equal(n.open, 0);
        assert_int_equal(n.expired, 1);
        assert_int_equal(counts(f, SH).in_use, 0);
}

/* Without a pool the session boots a VM of its own, and is IDLE once its agent is ready. */
static void test_session_cold(void **state)
{
        struct fx *f = *state;
        char id[OP_SESSION_ID_LEN + 1];
        struct call *c;

        open_session(f, LONG_MS, LONG_MS, id);
        assert_int_equal(find(f, id)->state, SESSION_BOOTING);
        wait_session(f, id, SESSION_IDLE);
        c = submit_in(f, id);
        wait_answer(f, c);
        assert_ok(c, "session");
        assert_null(json_object_get(f->last_job, "warm"));
        assert_int_equal(find(f, id)->state, SESSION_IDLE);
        sessions_stop(&f->d);
        assert_null(find(f, id));
}

/* A clone that never comes: the wait's deadline ends the session. */
static void test_session_wait_deadline(void **state)
{
        struct fx *f = *state;
        char id[OP_SESSION_ID_LEN + 1];

        f->fake.opts.fault = FAKE_FAULT_SILENT; /* clones never finish restoring */
        serve(f, SH, 1);
        open_session(f, LONG_MS, LONG_MS, id);
        assert_int_equal(find(f, id)->state, SESSION_WAITING);
        assert_int_equal(counts(f, SH).waiting, 1);
        expire_session(f, id);
        wait_session(f, id, _SESSION_STATE_MAX);
        assert_int_equal(counts(f, SH).waiting, 0);
}

/* An answer the agent garbles leaves the VM untrusted: the exec fails and the session ends. */
static void test_session_bad_answer_ends_it(void **state)
{
        struct fx *f = *state;
        char id[OP_SESSION_ID_LEN + 1];
        struct call *c;

        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        open_session(f, LONG_MS, LONG_MS, id);
        f->agent_garbles = true;
        c = submit_in(f, id);
        wait_answer(f, c);
        assert_error(c, "vm_failed");
        assert_null(find(f, id));
        assert_int_equal(uid_vms(f, SESSION_UID), 0);
        settle(f);
        assert_idle(f);
}

/* The VM dies while the session is idle: the session ends. */
static void test_session_vm_dies_idle(void **state)
{
        struct fx *f = *state;
        char id[OP_SESSION_ID_LEN + 1];

        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        open_session(f, LONG_MS, LONG_MS, id);
        vm_abort(find(f, id)->vm, "killed by the test");
        wait_session(f, id, _SESSION_STATE_MAX);
        assert_int_equal(counts(f, SH).in_use, 0);
}

/* A request cancelled in a session (its client went) takes the session with it: the agent may
 * still be running it. */
static void test_session_cancelled_exec(void **state)
{
        struct fx *f = *state;
        char id[OP_SESSION_ID_LEN + 1];
        struct call *c;

        serve(f, SH, 1);
        wait_ready(f, SH, 1);
        open_session(f, LONG_MS, LONG_MS, id);
        f->agent_silent = true;
        c = submit_in(f, id);
        cancel(c);
        assert_null(find(f, id));
        settle(f);
        assert_idle(f);
}

/* ---- sessions saved whole: pause and resume (daemon/session-fork.c) ---- */

/* lang's pool serves a snapshot that is a directory (an empty rootfs, a manifest of the fake
 * VMM), and its clones' saves write their files: a clone can be paused into the cache and
 * restored from there. */
static void serve_saveable(struct fx *f, int lang, uint32_t target)
{
        struct snap_ref *s = calloc(1, sizeof(*s));
        char path[256];

        assert_non_null(s);
        f->fake.opts.save_files = true;
        snprintf(path, sizeof(path), "%s/snap-%s", f->dir, f->d.langs.v[lang].name);
        assert_int_equal(mkdir(path, 0755), 0);
        s->refs = 1;
        s->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(s->dirfd >= 0);
        s->path = strdup(path);
        s->rm_parent_fd = -1;
        snprintf(path, sizeof(path), "%s/snap-%s/rootfs.ext4", f->dir, f->d.langs.v[lang].name);
        write_file(path, "");
        snprintf(s->m.version, sizeof(s->m.version), "v1");
        snprintf(s->m.lang, sizeof(s->m.lang), "%s", f->d.langs.v[lang].name);
        snprintf(s->m.vmm, sizeof(s->m.vmm), "fake");
        snprintf(s->m.accel, sizeof(s->m.accel), "tcg");
        s->m.memory_mb = 16;
        s->m.vcpus = 1;
        s->m.n_files = 1;
        snprintf(s->m.files[0].name, sizeof(s->m.files[0].name), "rootfs.ext4");
        memset(s->m.files[0].sha256, '0', SHA256_HEX_LEN);
        pool_serve(pool_of(f, lang), s);
        pool_set_target(pool_of(f, lang), target);
        assert_true(pool_serves(pool_of(f, lang)));
}

/* A connection of the test's own uid (its peer credentials), as a client's. */
struct conn {
        struct fx *f;
        int fd;
        char buf[1 << 16];
        size_t len;
};

static void conn_open(struct fx *f, struct conn *c)
{
        int sp[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(client_new(&f->d, sp[1]), 0);
        c->f = f;
        c->fd = sp[0];
        c->len = 0;
}

static void conn_close(struct conn *c)
{
        close(c->fd);
        run_turns(c->f, 5); /* the connection closes and is freed */
}

/* Send a request of op on session id (a frame as clients send them); no loop turn runs. */
static void conn_send(struct conn *c, const char *op, const char *id)
{
        json_t *req = json_pack("{s:s, s:s, s:s}", "op", op, "id", op, "session", id);
        char *text = json_dumps(req, JSON_COMPACT);
        uint32_t n = (uint32_t)strlen(text);
        unsigned char len[4] = {n >> 24, n >> 16, n >> 8, n};

        assert_int_equal(write(c->fd, len, 4), 4);
        assert_int_equal(write(c->fd, text, n), (ssize_t)n);
        free(text);
        json_decref(req);
}

static size_t frame_len(const struct conn *c)
{
        const unsigned char *b = (const unsigned char *)c->buf;

        if (c->len < 4)
                return 0;
        return ((size_t)b[0] << 24 | (size_t)b[1] << 16 | (size_t)b[2] << 8 | b[3]) + 4;
}

static bool conn_answered(void *arg)
{
        struct conn *c = arg;
        ssize_t k;

        while ((k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT)) > 0)
                c->len += (size_t)k;
        return frame_len(c) && c->len >= frame_len(c);
}

/* The next answer on the connection (the loop runs until it is there). */
static json_t *conn_answer(struct conn *c)
{
        size_t n;
        json_t *a;

        run_until(c->f, conn_answered, c);
        n = frame_len(c);
        a = json_loadb(c->buf + 4, n - 4, 0, NULL);
        assert_non_null(a);
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
        return a;
}

static const char *answer_error(json_t *a)
{
        return json_string_value(json_object_get(json_object_get(a, "error"), "code"));
}

/* A session of the test's own uid (a connection's), started and IDLE on a clone. */
static struct session *open_mine(struct fx *f, char id[static OP_SESSION_ID_LEN + 1])
{
        struct session *s;

        assert_int_equal(
            session_new(&f->d, &f->d.langs.v[SH], geteuid(), LONG_MS, LONG_MS, NULL, &s), 0);
        memcpy(id, s->id, OP_SESSION_ID_LEN + 1);
        session_start(s);
        s = session_find(&f->d, id, geteuid(), false);
        assert_non_null(s);
        assert_int_equal(s->state, SESSION_IDLE);
        return s;
}

static struct session *mine(struct fx *f, const char *id)
{
        return session_find(&f->d, id, geteuid(), false);
}

static bool mine_reached(void *arg)
{
        struct session_wait *w = arg;
        struct session *s = mine(w->f, w->id);

        return s && s->state == w->state;
}

/* The loop runs until the test's own session id is in state. */
static void wait_mine(struct fx *f, const char *id, enum session_state state)
{
        struct session_wait w = {f, id, state};

        run_until(f, mine_reached, &w);
}

/* The names in the test's uid's directory of paused sessions; how many. */
static unsigned paused_names(struct fx *f, char names[][64], unsigned max)
{
        char path[256];
        struct dirent *de;
        unsigned n = 0;
        DIR *dir;

        snprintf(path, sizeof(path), "%s/.paused/%u", f->d.cfg.cache_dir, (unsigned)geteuid());
        dir = opendir(path);
        if (!dir)
                return 0;
        while ((de = readdir(dir)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                        if (n < max)
                                snprintf(names[n], 64, "%.63s", de->d_name);
                        n++;
                }
        closedir(dir);
        return n;
}

/* Pauses sent back to back are each checked before any is saved: the count is checked again on
 * what is on disk once each is committed, so session.paused_max_per_uid holds; the pause over it
 * is undone and its session runs on. */
static void test_session_pauses_back_to_back(void **state)
{
        struct fx *f = *state;
        char a[OP_SESSION_ID_LEN + 1], b[OP_SESSION_ID_LEN + 1], names[4][64];
        const char *ids[2] = {a, b};
        json_t *ans[2];
        unsigned paused = 0, refused = 0;
        struct conn c;

        f->d.cfg.session.paused_max_per_uid = 1;
        serve_saveable(f, SH, 2);
        wait_ready(f, SH, 2);
        open_mine(f, a);
        open_mine(f, b);
        conn_open(f, &c);
        conn_send(&c, "session_pause", a);
        conn_send(&c, "session_pause", b);
        ans[0] = conn_answer(&c);
        ans[1] = conn_answer(&c);
        for (int i = 0; i < 2; i++) {
                const char *sid = json_string_value(json_object_get(ans[i], "session"));
                struct session *s;

                if (json_is_true(json_object_get(ans[i], "ok"))) {
                        assert_string_equal(json_string_value(json_object_get(ans[i], "state")),
                                            "paused");
                        s = mine(f, sid);
                        assert_int_equal(s->state, SESSION_PAUSED);
                        assert_null(s->vm);
                        paused++;
                        continue;
                }
                assert_string_equal(answer_error(ans[i]), "quota_exceeded");
                assert_non_null(strstr(
                    json_string_value(json_object_get(json_object_get(ans[i], "error"), "message")),
                    "session.paused_max_per_uid"));
                refused++;
        }
        assert_int_equal(paused, 1);
        assert_int_equal(refused, 1);
        /* the refused one runs on; only the paused one is on disk */
        for (int i = 0; i < 2; i++) {
                struct session *s = mine(f, ids[i]);

                assert_non_null(s);
                if (s->state == SESSION_PAUSED)
                        continue;
                assert_int_equal(s->state, SESSION_IDLE);
                assert_non_null(s->vm);
                assert_int_equal(paused_names(f, names, 4), 1);
                assert_string_equal(names[0], ids[1 - i]);
        }
        json_decref(ans[0]);
        json_decref(ans[1]);
        conn_close(&c);
        session_destroy(mine(f, a), SESSION_END_CLOSED);
        session_destroy(mine(f, b), SESSION_END_CLOSED);
        assert_int_equal(paused_names(f, names, 4), 0);
        settle(f);
}

static bool no_uid_vms(void *arg)
{
        return uid_vms(arg, geteuid()) == 0;
}

/* A session's VM counts against its uid (max_vms_per_uid) while it is saved and while it is
 * restored, as it does while it runs: once each, until it is gone, also when its session was
 * closed while it was saved. */
static void test_session_vm_counted_saved_and_restored(void **state)
{
        struct fx *f = *state;
        char a[OP_SESSION_ID_LEN + 1], b[OP_SESSION_ID_LEN + 1];
        struct session *s;
        struct vm *saving;
        struct conn c;
        json_t *ans;

        serve_saveable(f, SH, 2);
        wait_ready(f, SH, 2);
        s = open_mine(f, a);
        open_mine(f, b);
        assert_int_equal(uid_vms(f, geteuid()), 2);
        conn_open(f, &c);
        /* a's save never ends: a is SAVING, its VM still its uid's */
        saving = s->vm;
        fake_vm_opts(s->vm)->fault = FAKE_FAULT_SILENT;
        conn_send(&c, "session_pause", a);
        wait_mine(f, a, SESSION_SAVING);
        assert_null(mine(f, a)->vm);
        assert_int_equal(uid_vms(f, geteuid()), 2);
        /* b paused: its VM is gone and no longer counted */
        conn_send(&c, "session_pause", b);
        ans = conn_answer(&c);
        assert_true(json_is_true(json_object_get(ans, "ok")));
        json_decref(ans);
        assert_int_equal(mine(f, b)->state, SESSION_PAUSED);
        assert_int_equal(uid_vms(f, geteuid()), 1);
        /* b resumed: counted from the start of its restore, which does not end here */
        f->fake.opts.restore_ms = LONG_MS;
        conn_send(&c, "session_resume", b);
        wait_mine(f, b, SESSION_BOOTING);
        assert_non_null(mine(f, b)->vm);
        assert_int_equal(uid_vms(f, geteuid()), 2);
        /* each ends once */
        session_destroy(mine(f, b), SESSION_END_CLOSED);
        assert_int_equal(uid_vms(f, geteuid()), 1);
        /* a closed while it is saved: its VM, which the save holds, counts until it is gone
         * (here it fails) */
        session_destroy(mine(f, a), SESSION_END_CLOSED);
        assert_int_equal(uid_vms(f, geteuid()), 1);
        vm_abort(saving, "the test ends the save");
        run_until(f, no_uid_vms, f);
        conn_close(&c);
        settle(f);
        assert_int_equal(uid_vms(f, geteuid()), 0);
}

/* A resume that loads: counted once while it is restored and once it runs, not again; the
 * session's pause and resume leave the count as it was. */
static void test_session_resume_counted_once(void **state)
{
        struct fx *f = *state;
        char a[OP_SESSION_ID_LEN + 1];
        struct conn c;
        json_t *ans;

        serve_saveable(f, SH, 1);
        wait_ready(f, SH, 1);
        open_mine(f, a);
        conn_open(f, &c);
        for (int i = 0; i < 2; i++) {
                conn_send(&c, "session_pause", a);
                ans = conn_answer(&c);
                assert_true(json_is_true(json_object_get(ans, "ok")));
                json_decref(ans);
                assert_int_equal(uid_vms(f, geteuid()), 0);
                conn_send(&c, "session_resume", a);
                ans = conn_answer(&c);
                assert_true(json_is_true(json_object_get(ans, "ok")));
                assert_string_equal(json_string_value(json_object_get(ans, "state")), "idle");
                json_decref(ans);
                assert_int_equal(mine(f, a)->state, SESSION_IDLE);
                assert_int_equal(uid_vms(f, geteuid()), 1);
        }
        conn_close(&c);
        session_destroy(mine(f, a), SESSION_END_CLOSED);
        assert_int_equal(uid_vms(f, geteuid()), 0);
        settle(f);
}

static bool commit_pending(void *arg)
{
        return bgjobs_pending(&((struct fx *)arg)->d) > 0;
}

/* A pause's files are committed (hashed, fsynced, renamed) by a background job, off the loop.
 * opd stops while it runs: the pause is answered shutting_down, the job is killed, and nothing
 * of the pause is left on disk. */
static void test_session_stop_while_pause_commits(void **state)
{
        struct fx *f = *state;
        char a[OP_SESSION_ID_LEN + 1], names[4][64];
        struct conn c;
        json_t *ans;

        serve_saveable(f, SH, 1);
        wait_ready(f, SH, 1);
        open_mine(f, a);
        conn_open(f, &c);
        conn_send(&c, "session_pause", a);
        run_until(f, commit_pending, f);
        assert_int_equal(mine(f, a)->state, SESSION_SAVING);
        /* as opd_stop() does */
        session_jobs_stop(&f->d);
        bgjobs_cancel_all(&f->d);
        ans = conn_answer(&c);
        assert_string_equal(answer_error(ans), "shutting_down");
        json_decref(ans);
        assert_int_equal(bgjobs_pending(&f->d), 0);
        assert_int_equal(paused_names(f, names, 4), 0);
        conn_close(&c);
}

/* A resume whose restore fails says nothing against the saved files: the session stays paused
 * with them, under its name, counting no VM, and a later resume restores it. */
static void test_session_resume_failed_stays_paused(void **state)
{
        struct fx *f = *state;
        char a[OP_SESSION_ID_LEN + 1], names[4][64];
        const char *msg;
        struct conn c;
        json_t *ans;

        serve_saveable(f, SH, 1);
        wait_ready(f, SH, 1);
        open_mine(f, a);
        conn_open(f, &c);
        conn_send(&c, "session_pause", a);
        ans = conn_answer(&c);
        assert_true(json_is_true(json_object_get(ans, "ok")));
        json_decref(ans);
        f->fake.opts.fault = FAKE_FAULT_RESTORE;
        conn_send(&c, "session_resume", a);
        ans = conn_answer(&c);
        assert_string_equal(answer_error(ans), "vm_failed");
        msg = json_string_value(json_object_get(json_object_get(ans, "error"), "message"));
        assert_non_null(strstr(msg, "stays paused"));
        json_decref(ans);
        assert_int_equal(mine(f, a)->state, SESSION_PAUSED);
        assert_null(mine(f, a)->vm);
        assert_int_equal(uid_vms(f, geteuid()), 0);
        run_turns(f, 5); /* the failed VM is freed, and its reference to the taken name */
        assert_int_equal(paused_names(f, names, 4), 1);
        assert_string_equal(names[0], a);
        f->fake.opts.fault = FAKE_FAULT_NONE;
        conn_send(&c, "session_resume", a);
        ans = conn_answer(&c);
        assert_true(json_is_true(json_object_get(ans, "ok")));
        json_decref(ans);
        assert_int_equal(mine(f, a)->state, SESSION_IDLE);
        conn_close(&c);
        session_destroy(mine(f, a), SESSION_END_CLOSED);
        settle(f);
}

/* A fork is as old as its parent: its max_lifetime_ms counts from the parent's open, so forking
 * and closing the parent does not prolong a session's life. */
static void test_session_fork_keeps_age(void **state)
{
        struct fx *f = *state;
        char a[OP_SESSION_ID_LEN + 1];
        const char *child;
        struct session *s;
        uint64_t born;
        struct conn c;
        json_t *ans;

        serve_saveable(f, SH, 2);
        wait_ready(f, SH, 2);
        s = open_mine(f, a);
        s->t_open -= 100 * 1000 * 1000; /* opened 100 s ago */
        born = s->t_open;
        conn_open(f, &c);
        conn_send(&c, "session_fork", a);
        ans = conn_answer(&c);
        assert_true(json_is_true(json_object_get(ans, "ok")));
        child = json_string_value(json_array_get(json_object_get(ans, "forks"), 0));
        assert_non_null(child);
        s = mine(f, child);
        assert_non_null(s);
        assert_int_equal(s->t_open, born);
        session_destroy(s, SESSION_END_CLOSED);
        json_decref(ans);
        conn_close(&c);
        session_destroy(mine(f, a), SESSION_END_CLOSED);
        settle(f);
}

/* opd stops while two sessions are resumed: the one still being restored is paused on disk
 * again, and listed so by the next start; the one its owner closed meanwhile is not, although
 * its VM (destroyed) has not been freed yet. */
static void test_session_stop_while_resumed(void **state)
{
        struct fx *f = *state;
        char a[OP_SESSION_ID_LEN + 1], b[OP_SESSION_ID_LEN + 1], names[4][64];
        uint64_t bytes, resumed_bytes;
        unsigned n;
        struct session *s;
        struct conn c;
        json_t *ans;

        serve_saveable(f, SH, 2);
        wait_ready(f, SH, 2);
        open_mine(f, a);
        open_mine(f, b);
        conn_open(f, &c);
        for (int i = 0; i < 2; i++) {
                conn_send(&c, "session_pause", i ? b : a);
                ans = conn_answer(&c);
                assert_true(json_is_true(json_object_get(ans, "ok")));
                json_decref(ans);
        }
        assert_int_equal(paused_names(f, names, 4), 2);
        session_store_usage(&f->d, geteuid(), &n, &bytes);
        assert_int_equal(n, 2);
        assert_true(bytes > 0);
        f->fake.opts.restore_ms = LONG_MS; /* the restores do not end before opd stops */
        conn_send(&c, "session_resume", a);
        conn_send(&c, "session_resume", b);
        wait_mine(f, a, SESSION_BOOTING);
        wait_mine(f, b, SESSION_BOOTING);
        assert_int_equal(paused_names(f, names, 4), 2);
        for (int i = 0; i < 2; i++)
                assert_int_equal(strncmp(names[i], ".run-", 5), 0);
        /* resumed from disk: no paused sessions any more, but their files are still their uid's
         * disk (session.paused_disk_mb counts them) */
        session_store_usage(&f->d, geteuid(), &n, &resumed_bytes);
        assert_int_equal(n, 0);
        assert_true(resumed_bytes == bytes);
        /* b is closed, and opd stops before the loop frees b's VM */
        session_destroy(mine(f, b), SESSION_END_CLOSED);
        session_jobs_stop(&f->d);
        for (int i = 0; i < 2; i++) {
                ans = conn_answer(&c);
                assert_string_equal(answer_error(ans), "shutting_down");
                json_decref(ans);
        }
        assert_null(mine(f, a));
        assert_null(mine(f, b));
        run_turns(f, 5); /* the VMs are freed, and their references to the files with them */
        assert_int_equal(paused_names(f, names, 4), 1);
        assert_string_equal(names[0], a);
        /* what the next start lists, held to the bounds configured then */
        f->d.cfg.session.bounds.idle_timeout_ms_max = 1000;
        f->d.cfg.session.bounds.lifetime_ms_max = LONG_MS - 1;
        session_store_load(&f->d);
        s = mine(f, a);
        assert_non_null(s);
        assert_int_equal(s->state, SESSION_PAUSED);
        assert_int_equal(s->idle_timeout_ms, 1000);
        assert_int_equal(s->max_lifetime_ms, LONG_MS - 1);
        assert_null(mine(f, b));
        conn_close(&c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_cold_ok, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cold_compile_ok, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cold_queued_then_boots, setup, teardown),
            cmocka_unit_test_setup_teardown(test_idle_clone_gives_slot, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cold_busy, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cold_queue_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_boot_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_boot_deadline_request, setup, teardown),
            cmocka_unit_test_setup_teardown(test_boot_fault, setup, teardown),
            cmocka_unit_test_setup_teardown(test_running_fault, setup, teardown),
            cmocka_unit_test_setup_teardown(test_agent_error_answers, setup, teardown),
            cmocka_unit_test_setup_teardown(test_run_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_run_deadline_compile, setup, teardown),
            cmocka_unit_test_setup_teardown(test_warm_ok, setup, teardown),
            cmocka_unit_test_setup_teardown(test_warm_waiting_served, setup, teardown),
            cmocka_unit_test_setup_teardown(test_warm_busy, setup, teardown),
            cmocka_unit_test_setup_teardown(test_warm_wait_deadline_fallback, setup, teardown),
            cmocka_unit_test_setup_teardown(test_warm_wait_deadline_exhausted, setup, teardown),
            cmocka_unit_test_setup_teardown(test_backoff_goes_cold, setup, teardown),
            cmocka_unit_test_setup_teardown(test_mode_warm_without_pool, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retry_ok, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stdin_flood_before_start, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stdin_flood_running_coalesced, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stdin_kept_for_retry, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retry_from_waiter, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retry_twice_fails, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retry_cold_boot_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retry_cold_boot_deadline_request, setup, teardown),
            cmocka_unit_test_setup_teardown(test_warm_resume_never_acknowledged, setup, teardown),
            cmocka_unit_test_setup_teardown(test_warm_running_fault, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cancel_waiting, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cancel_booting, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cancel_running_cold, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cancel_running_warm, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cancel_waiting_then_ready, setup, teardown),
            cmocka_unit_test_setup_teardown(test_warm_waiters_round_robin_by_uid, setup, teardown),
            cmocka_unit_test_setup_teardown(test_warm_uid_at_its_vm_cap_waits, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cold_queue_round_robin_by_uid, setup, teardown),
            cmocka_unit_test_setup_teardown(test_sink_answer_then_release, setup, teardown),
            cmocka_unit_test_setup_teardown(test_flooding_connection_is_deferred, setup, teardown),
            cmocka_unit_test_setup_teardown(test_uid_share_counts_frame_bytes, setup, teardown),
            cmocka_unit_test_setup_teardown(test_read_deadline_per_frame, setup, teardown),
            cmocka_unit_test_setup_teardown(test_max_clients_refusals_counted, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cancelled_queued_execs_not_logged, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_session_warm_execs, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_phases, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_busy_then_lifetime, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_idle_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_cold, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_wait_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_bad_answer_ends_it, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_vm_dies_idle, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_cancelled_exec, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_pauses_back_to_back, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_vm_counted_saved_and_restored, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_session_resume_counted_once, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_stop_while_resumed, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_resume_failed_stays_paused, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_session_fork_keeps_age, setup, teardown),
            cmocka_unit_test_setup_teardown(test_session_stop_while_pause_commits, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
