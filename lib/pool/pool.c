/* pool.c: per language, a pool of clones restored from the serving snapshot and left paused,
 * each with a private record of its stage; the requests waiting for one (round-robin by the
 * key they wait for, a uid, among those that may take one); refills in the
 * background with a bound on concurrent restores and a backoff on failures; targets that
 * follow demand; VM slots shared across languages (an idle clone gives its slot to a language
 * with waiters); a new snapshot version is verified off the loop before it serves, then old
 * clones drain. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent-msg.h"
#include "cleanup.h"
#include "compile.h"
#include "evtimer.h"
#include "host.h"
#include "pool-private.h"
#include "poolplan.h"
#include "snap-ref.h"
#include "util.h"
#include "vm.h"

#define BACKOFF_MIN_MS   200
#define BACKOFF_MAX_MS   30000
#define PRIME_TIMEOUT_MS 30000
/* Beyond the prime job's own deadline (and its runner's start), what the host gives the agent
 * to answer, and a settling agent to answer its ping: a clone that does not is thrown away. */
#define PRIME_GRACE_MS  30000
#define REFILL_MS_START 1000 /* a clone's refill time before one is measured */
#define DEMAND_TICK_MS  1000 /* targets above their standing size are looked at this often */

void pools_log(const struct pools *all, int prio, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        if (!all->cb.log)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        all->cb.log(prio, msg, all->userdata);
}

/* One clone of the pool: the VM's event userdata from its restore until it is taken, served
 * to a waiter or destroyed. */
enum clone_stage {
        CLONE_RESTORING, /* loading its state */
        CLONE_PRIMING,   /* resumed, running the language's prime program */
        CLONE_SETTLING,  /* primed: a ping sent, answered once the agent is idle again */
        CLONE_PAUSING,   /* stop sent after priming */
        CLONE_READY,     /* paused, in the ready list */
        _CLONE_STAGE_MAX,
};

struct pool_clone {
        TAILQ_ENTRY(pool_clone) link; /* p->loading, or p->ready once CLONE_READY */
        struct pool *pool;
        struct vm *vm;
        enum clone_stage stage; /* clone_set_stage() only */
        struct event *deadline; /* armed while the agent owes an answer (priming, settling) */
};

static const char *const clone_stage_names[_CLONE_STAGE_MAX] = {
    [CLONE_RESTORING] = "restoring", [CLONE_PRIMING] = "priming", [CLONE_SETTLING] = "settling",
    [CLONE_PAUSING] = "pausing",     [CLONE_READY] = "ready",
};

static void clone_link(struct pool_clone *c)
{
        struct pool *p = c->pool;

        if (c->stage == CLONE_READY) {
                TAILQ_INSERT_TAIL(&p->ready, c, link);
                p->n_ready++;
        } else {
                TAILQ_INSERT_TAIL(&p->loading, c, link);
                p->n_restoring++;
                p->all->n_restoring++;
        }
}

static void clone_unlink(struct pool_clone *c)
{
        struct pool *p = c->pool;

        if (c->stage == CLONE_READY) {
                TAILQ_REMOVE(&p->ready, c, link);
                p->n_ready--;
        } else {
                TAILQ_REMOVE(&p->loading, c, link);
                p->n_restoring--;
                p->all->n_restoring--;
        }
}

static uint32_t stage_deadline_ms(const struct pool_clone *c, enum clone_stage stage);

/* The only writer of c->stage: keeps the lists and their counts right, and arms the deadline the
 * new stage has (restoring has the VM's own; paused, the clone owes nothing). */
static void clone_set_stage(struct pool_clone *c, enum clone_stage stage)
{
        uint32_t ms;

        if (stage == c->stage)
                return;
        pool_log(c->pool, LOG_DEBUG, "%s pool: %s %s -> %s", c->pool->lang->name,
                 c->vm ? c->vm->name : "clone", clone_stage_names[c->stage],
                 clone_stage_names[stage]);
        clone_unlink(c);
        c->stage = stage;
        clone_link(c);
        ms = stage_deadline_ms(c, stage);
        if (ms)
                op_timer_arm_ms(c->deadline, ms);
        else
                evtimer_del(c->deadline);
}

static void on_clone_deadline(evutil_socket_t fd, short what, void *arg)
{
        struct pool_clone *c = arg;
        char why[128];

        snprintf(why, sizeof(why), "no answer from the agent within %u ms of %s",
                 stage_deadline_ms(c, c->stage), clone_stage_names[c->stage]);
        vm_abort(c->vm, why); /* on_pool_vm_failed: the clone is replaced */
}

static struct pool_clone *clone_new(struct pool *p)
{
        struct pool_clone *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->deadline = evtimer_new(p->all->base, on_clone_deadline, c);
        if (!c->deadline) {
                free(c);
                return NULL;
        }
        c->pool = p;
        c->stage = CLONE_RESTORING;
        clone_link(c);
        return c;
}

/* Forget the clone record; its VM goes to the caller (to destroy or to hand on). */
static struct vm *clone_drop(struct pool_clone *c)
{
        struct vm *vm = c->vm;

        clone_unlink(c);
        event_free(c->deadline);
        free(c);
        return vm;
}

static void refill(struct pool *p);
static void follow_demand(struct pool *p, uint64_t now_us);
static void drain_to(struct pool *p, unsigned keep);

static unsigned max_restores(const struct pools *all)
{
        return all->cfg->max_restores ? all->cfg->max_restores : all->n_cpus;
}

static void refill_all(struct pools *all)
{
        for (size_t i = 0; i < all->n; i++)
                if (all->v[i].lang)
                        refill(&all->v[i]);
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
        struct pool *p = arg;

        pool_log(p, LOG_DEBUG, "%s pool: backoff over", p->lang->name);
        refill(p);
}

static void on_refill(evutil_socket_t fd, short what, void *arg)
{
        refill(arg);
}

static void on_pool_vm_failed(struct vm *vm, const char *why, void *userdata);

/* Priming pays off where guest code must be translated: software emulation. */
static bool wants_prime(struct pool *p)
{
        enum op_tristate t = p->all->cfg->pool_prime;

        return p->lang->prime &&
               (t == OP_YES || (t == OP_AUTO && p->all->host->accel == OP_ACCEL_TCG));
}

/* The language's runner starts in each clone ("warm": {"start": "clone"}): the snapshot holds
 * none, and its agent can start one as it primes. A snapshot whose agent is older is served as
 * a language without a runner. */
static bool starts_runner(const struct pool *p, const struct vm *vm)
{
        return op_lang_warm_in_clone(p->lang) && !vm->snap->m.warm &&
               op_agent_version_at_least(vm->snap->m.agent_version, OP_AGENT_VERSION_RUNNER);
}

/* A restored clone is resumed before it is pooled: to run the prime program, or to start the
 * runner that only a clone may start (its random state must be the clone's own). */
static bool wants_clone_step(struct pool *p, const struct vm *vm)
{
        return wants_prime(p) || starts_runner(p, vm);
}

/* The clone's step goes through a runner ("prime" op, which keeps the runner waiting): one in
 * the snapshot, or one the step starts. Else it is an ordinary exec of the prime program. */
static bool prime_op(const struct pool *p, const struct vm *vm)
{
        return vm->snap->m.warm || starts_runner(p, vm);
}

/* What the answer to the prime job may hold: a "prime" answer, or an exec's with the agent's
 * default output cap (the job sets none) and the language's compile phase. */
static void prime_limits(struct pool *p, struct vm *vm, struct op_agent_limits *ret)
{
        *ret = (struct op_agent_limits){
            .op = prime_op(p, vm) ? OP_AGENT_OP_PRIME : OP_AGENT_OP_EXEC,
            .output_max = OP_LIMITS_DEFAULT.output_max,
        };
        compile_agent_limits(p->lang, ret);
}

/* "runner": {"argv", "ready_timeout_ms"}: the runner the prime job starts once it has applied the
 * clone's identity, before it primes it. */
static int job_add_runner(const struct op_lang *lang, json_t *job)
{
        json_t *runner = op_lang_runner_json(lang);

        if (!runner || json_object_set_new(job, "runner", runner) < 0)
                return -ENOMEM;
        return 0;
}

/* The prime program's deadline. A runner of a compiled language compiles it in the same step
 * (its compiler is in the runner): the compiler's longest deadline is added, up to the longest
 * the agent takes. */
static uint32_t prime_timeout_ms(const struct pool *p, const struct vm *vm)
{
        uint32_t t = PRIME_TIMEOUT_MS;

        if (prime_op(p, vm) && p->lang->compile[0])
                t += p->all->cfg->limits.compile_timeout_ms_max;
        return t < OP_AGENT_TIMEOUT_MS_MAX ? t : OP_AGENT_TIMEOUT_MS_MAX;
}

/* How long the agent has to answer in a stage, 0 when it owes nothing: the prime job's deadline
 * and its runner's start, then the grace; for the ping after it, the grace. */
static uint32_t stage_deadline_ms(const struct pool_clone *c, enum clone_stage stage)
{
        const struct pool *p = c->pool;
        uint64_t ms;

        switch (stage) {
        case CLONE_PRIMING:
                ms = (uint64_t)prime_timeout_ms(p, c->vm) + p->all->prime_grace_ms;
                if (starts_runner(p, c->vm))
                        ms += op_lang_warm_ready_ms(p->lang);
                return ms < UINT32_MAX ? (uint32_t)ms : UINT32_MAX;
        case CLONE_SETTLING:
                return p->all->prime_grace_ms;
        default:
                return 0;
        }
}

/* Run the language's prime program in the clone: through its warm runner ("prime" op, which
 * keeps the runner waiting) when the snapshot has one or the clone starts one, else as an
 * ordinary exec. A runner started in the clone is started even when the prime program is not
 * wanted (a job without "file" and "code"). */
static int start_prime(struct pool_clone *c)
{
        struct op_agent_limits lim;
        struct pool *p = c->pool;
        struct vm *vm = c->vm;
        bool with_code = wants_prime(p);
        json_t *job, *argv = json_array();
        char **run = NULL;
        int r;

        r = op_lang_argv(p->lang, NULL, 0, &run);
        if (r < 0 || !argv) {
                json_decref(argv);
                return -ENOMEM;
        }
        for (char **a = run; *a; a++)
                json_array_append_new(argv, json_string(*a));
        op_argv_free(run);
        job = json_pack("{s:s, s:s, s:o}", "op", prime_op(p, vm) ? "prime" : "exec", "id", "prime",
                        "argv", argv);
        if (job && with_code &&
            (json_object_set_new(job, "file", json_string(p->lang->file)) < 0 ||
             json_object_set_new(job, "code", json_string(p->lang->prime)) < 0 ||
             json_object_set_new(job, "timeout_ms", json_integer(prime_timeout_ms(p, vm))) < 0)) {
                json_decref(job);
                return -ENOMEM;
        }
        /* A compiled language's prime compiles too: the compiler is what needs translating. The
         * clone's identity too (the exec sets it again): the agent's path that sets it is then
         * translated before a request takes it, and a runner started here seeds itself from
         * it. */
        if (!job || vm_job_identity(vm, job) < 0 ||
            (starts_runner(p, vm) && job_add_runner(p->lang, job) < 0) ||
            (with_code &&
             compile_job_add(p->lang,
                             &(struct op_exec){.compile_timeout_ms =
                                                   p->all->cfg->limits.compile_timeout_ms_max},
                             &p->all->cfg->limits, job) < 0)) {
                json_decref(job);
                return -ENOMEM;
        }
        prime_limits(p, vm, &lim);
        vm_set_frame_max(vm, op_agent_frame_max(&lim));
        clone_set_stage(c, CLONE_PRIMING);
        r = vm_resume(vm);
        if (r >= 0)
                r = vm_send(vm, job);
        json_decref(job);
        return r;
}

/* A ping after the prime's answer: the agent reads it once it is idle again. */
static int send_settle_ping(struct vm *vm)
{
        _cleanup_(json_decrefp) json_t *ping =
            json_pack("{s:s, s:s}", "op", "ping", "id", "settle");

        if (!ping)
                return -ENOMEM;
        vm_set_frame_max(vm, op_agent_frame_max(&(struct op_agent_limits){.op = OP_AGENT_OP_PING}));
        return vm_send(vm, ping);
}

static void on_pool_vm_answer(struct vm *vm, json_t *ans, void *userdata)
{
        struct pool_clone *c = userdata;
        struct pool *p = c->pool;
        _cleanup_(op_agent_answer_done) struct op_agent_answer a = {0};
        struct op_agent_limits lim;
        char err[512], why[600];
        int r;

        if (c->stage == CLONE_SETTLING)
                lim = (struct op_agent_limits){.op = OP_AGENT_OP_PING};
        else
                prime_limits(p, vm, &lim);
        r = op_agent_answer_decode(ans, &lim, &a, err, sizeof(err));
        if (r < 0) {
                snprintf(why, sizeof(why), "agent sent %s",
                         r == -ENOMEM ? "an answer opd could not hold in memory" : err);
                vm_abort(vm, why);
                return;
        }
        if (c->stage == CLONE_SETTLING) {
                clone_set_stage(c, CLONE_PAUSING);
                if (vm_pause(vm) < 0)
                        on_pool_vm_failed(vm, "cannot pause after priming", c);
                return;
        }
        if (!a.ok) {
                /* A clone that cannot be primed is still a good clone, only slower. */
                pool_log(p, LOG_WARNING, "%s pool: priming %s failed: %s", p->lang->name, vm->name,
                         a.error.message);
        }
        p->stats.last_prime_ms = !a.ok                        ? 0
                                 : lim.op == OP_AGENT_OP_EXEC ? a.exec.run.run_ms
                                                              : a.run_ms;
        /* The agent answers a ping once it has done what follows an answer (the next run's
         * cgroup, reaping): paused before, that work would wait for the request. */
        clone_set_stage(c, CLONE_SETTLING);
        if (send_settle_ping(vm) < 0)
                on_pool_vm_failed(vm, "cannot ping after priming", c);
}

static struct pool_waiter *waiter_of(const struct fairq_item *it)
{
        return it ? (struct pool_waiter *)((char *)it - offsetof(struct pool_waiter, item)) : NULL;
}

static bool may_take(const struct pool_waiter *w)
{
        return !w->may_take || w->may_take(w);
}

static bool waiter_may_take(const struct fairq_item *it, void *arg)
{
        return may_take(waiter_of(it));
}

/* The waiter whose turn it is among those that may take a clone now, or NULL. */
static struct pool_waiter *next_waiter(const struct pool *p)
{
        return waiter_of(fairq_peek(&p->waiters, waiter_may_take, NULL));
}

/* The waiters that may take a clone now: those of the keys at their cap are not counted in
 * the target, or a capped key's backlog would have clones restored that other keys then take. */
static unsigned waiting_may_take(const struct pool *p)
{
        return (unsigned)fairq_count(&p->waiters, waiter_may_take, NULL);
}

/* A clone out of the pool went to a request, w's when it waits (its key has had its turn). A
 * waiter that arrived at its key's cap is counted in the demand estimate now, as it takes one. */
static void count_served(struct pool *p, struct pool_waiter *w)
{
        p->n_in_use++;
        p->stats.served++;
        if (w && w->arrival_held) {
                pool_demand_arrival(&p->demand, op_now_us());
                w->arrival_held = false;
        }
        if (w)
                fairq_served(&p->waiters, w->key);
}

/* vm, out of the pool's clones, to w. */
static void hand_over(struct pool *p, struct pool_waiter *w, struct vm *vm)
{
        pool_cancel(w);
        count_served(p, w);
        w->served(w, vm);
}

static void on_pool_vm_ready(struct vm *vm, void *userdata)
{
        struct pool_clone *c = userdata;
        struct pool *p = c->pool;
        struct pools *all = p->all;
        struct pool_waiter *w;

        if (c->stage == CLONE_RESTORING) {
                p->stats.last_restore_ms = (double)(vm->t_loaded - vm->t_spawn) / 1000.0;
                /* An unprimed clone answers a waiting request sooner than priming would. */
                if (wants_clone_step(p, vm) && vm->snap == p->serving && !next_waiter(p)) {
                        if (start_prime(c) < 0)
                                on_pool_vm_failed(vm, "cannot start priming", c);
                        return;
                }
        }
        p->consecutive_failures = 0;
        if (vm->t_spawn) {
                double took = (double)(op_now_us() - vm->t_spawn) / 1000.0;

                p->refill_ms = p->refill_ms > 0 ? 0.7 * p->refill_ms + 0.3 * took : took;
        }
        if (vm->snap != p->serving) { /* restored from a version that was replaced meanwhile */
                vm_destroy(clone_drop(c));
        } else if ((w = next_waiter(p))) {
                if (c->stage == CLONE_RESTORING && wants_clone_step(p, vm))
                        p->stats.unprimed++;
                clone_drop(c);
                hand_over(p, w, vm);
        } else {
                clone_set_stage(c, CLONE_READY);
                /* The target fell while it was restoring: no more paused than it asks for. */
                drain_to(p, p->target > p->n_restoring ? p->target - p->n_restoring : 0);
        }
        refill_all(all);
}

static void on_pool_vm_failed(struct vm *vm, const char *why, void *userdata)
{
        struct pool_clone *c = userdata;
        struct pool *p = c->pool;
        struct pools *all = p->all;
        bool restoring = c->stage != CLONE_READY, from_serving = vm->snap == p->serving;

        if (all->stopping) { /* the owner kills every VM: expected, nothing to replace */
                vm_destroy(clone_drop(c));
                return;
        }
        p->stats.failures++;
        if (restoring) {
                /* died while restoring: back off before trying again */
                uint32_t ms = BACKOFF_MIN_MS
                              << (p->consecutive_failures < 8 ? p->consecutive_failures : 8);

                p->consecutive_failures++;
                if (ms > BACKOFF_MAX_MS)
                        ms = BACKOFF_MAX_MS;
                op_timer_arm_ms(p->backoff_ev, ms);
                pool_log(p, LOG_WARNING, "%s pool: restore failed (%s); retrying in %u ms",
                         p->lang->name, why, ms);
        } else {
                pool_log(p, LOG_WARNING, "%s pool: a paused VM died (%s); replacing it",
                         p->lang->name, why);
        }
        vm_destroy(clone_drop(c));
        refill_all(all);
        if (restoring)
                pool_restore_failed(p, from_serving);
}

static const struct vm_events pool_vm_events = {
    .ready = on_pool_vm_ready,
    .answer = on_pool_vm_answer,
    .failed = on_pool_vm_failed,
};

/* Guest memory the pools' clones hold (paused and restoring), in MiB. */
static uint64_t pools_held_mb(const struct pools *all)
{
        uint64_t mb = 0;

        for (size_t i = 0; i < all->n; i++) {
                const struct pool *q = &all->v[i];

                if (q->lang)
                        mb += (uint64_t)(q->n_ready + q->n_restoring) *
                              op_lang_memory_mb(all->cfg, q->lang);
        }
        return mb;
}

/* Is there a VM slot, and room in pool.memory_budget_mb, for one more clone of p? */
static bool room_for(const struct pool *p)
{
        const struct pools *all = p->all;
        uint32_t budget = all->cfg->pool_memory_budget_mb;

        return all->host->n_vms < all->cfg->max_vms &&
               (!budget || pools_held_mb(all) + op_lang_memory_mb(all->cfg, p->lang) <= budget);
}

/* Destroy the paused clone of the pool (other than except) used least recently: its newest
 * clone. false when no other pool holds one. */
static bool evict_idle(struct pools *all, const struct pool *except)
{
        struct pool *victim = NULL;
        struct pool_clone *c;

        for (size_t i = 0; i < all->n; i++) {
                struct pool *q = &all->v[i];

                if (!q->lang || q == except || q->n_ready == 0)
                        continue;
                if (!victim || q->t_used_us < victim->t_used_us)
                        victim = q;
        }
        if (!victim)
                return false;
        c = TAILQ_LAST(&victim->ready, pool_clone_q);
        pool_log(victim, LOG_INFO, "%s pool: %s gives its slot to %s", victim->lang->name,
                 c->vm->name, except ? except->lang->name : "a booting VM");
        victim->stats.evicted++;
        vm_destroy(clone_drop(c));
        return true;
}

/* Start restores up to the target, within max_restores, max_vms and the memory budget; for
 * waiters not covered by a restore, in the slot of an idle clone of another language. */
static void refill(struct pool *p)
{
        struct pools *all = p->all;

        if (!p->serving || all->stopping || all->host->accel == OP_ACCEL_AUTO ||
            evtimer_pending(p->backoff_ev, NULL))
                return;
        while (p->n_ready + p->n_restoring < p->target && all->n_restoring < max_restores(all)) {
                if (!room_for(p)) {
                        if (waiting_may_take(p) <= p->n_restoring || !evict_idle(all, p))
                                return;
                        continue;
                }
                struct pool_clone *c = clone_new(p);
                int r = c ? vm_restore(all->host, p->lang, p->serving, &pool_vm_events, c, &c->vm)
                          : -ENOMEM;

                if (r < 0) {
                        if (c)
                                clone_drop(c);
                        p->stats.failures++;
                        p->consecutive_failures++;
                        pool_log(p, LOG_ERR, "%s pool: cannot start a restore: %s", p->lang->name,
                                 strerror(-r));
                        op_timer_arm_ms(p->backoff_ev, BACKOFF_MAX_MS);
                        return;
                }
                p->stats.restores++;
                pool_log(p, LOG_DEBUG, "%s pool: restoring %s from %s", p->lang->name, c->vm->name,
                         p->serving->m.version);
        }
}

struct vm *pool_take(struct pool *p, struct pool_waiter *w)
{
        struct pool_clone *c = TAILQ_FIRST(&p->ready);
        uint64_t now = op_now_us();
        bool may = !w || may_take(w);
        struct vm *vm = NULL;

        p->t_used_us = now;
        /* A request its key's cap holds back is no demand on the pool until it may take a
         * clone: its arrival is counted then (count_served()). */
        if (may)
                pool_demand_arrival(&p->demand, now);
        if (w)
                w->arrival_held = !may;
        /* Out of the pool before the target moves: a lower target drains paused clones. */
        if (c && may) {
                vm = clone_drop(c);
                count_served(p, w);
        }
        /* The new target, and the replacement started now, not when the request ends (the next
         * arrival may come before that); with a clone taken, at the loop's next turn, once the
         * request has resumed it: starting a VMM takes milliseconds. */
        follow_demand(p, now);
        if (vm)
                op_timer_arm_ms(p->refill_ev, 0);
        else
                refill(p);
        return vm;
}

void pool_wait(struct pool *p, struct pool_waiter *w)
{
        w->pool = p;
        fairq_push(&p->waiters, &w->item, w->key);
        p->t_used_us = op_now_us();
        follow_demand(p, p->t_used_us);
        refill(p);
}

void pool_cancel(struct pool_waiter *w)
{
        struct pool *p = w->pool;

        if (!p)
                return;
        fairq_remove(&w->item);
        w->pool = NULL;
}

void pool_release(struct pool *p)
{
        p->n_in_use--;
        refill_all(p->all);
}

void pools_serve_waiters(struct pools *all)
{
        for (size_t i = 0; all && !all->stopping && i < all->n; i++) {
                struct pool *p = &all->v[i];
                struct pool_waiter *w;
                struct pool_clone *c;

                if (!p->lang)
                        continue;
                /* Waiters whose key was at its cap may count in the target again. */
                follow_demand(p, op_now_us());
                /* Each served() may end other requests: look again every time. */
                while ((c = TAILQ_FIRST(&p->ready)) && (w = next_waiter(p))) {
                        struct vm *vm = clone_drop(c);

                        hand_over(p, w, vm);
                }
        }
        if (all)
                refill_all(all);
}

void pools_refill(struct pools *all)
{
        if (all)
                refill_all(all);
}

bool pool_backing_off(const struct pool *p)
{
        return p && evtimer_pending(p->backoff_ev, NULL);
}

bool pools_reclaim_slot(struct pools *all)
{
        return all && !all->stopping && evict_idle(all, NULL);
}

static double refill_estimate_ms(const struct pool *p)
{
        return p->refill_ms > 0 ? p->refill_ms : REFILL_MS_START;
}

uint32_t pool_retry_after_ms(const struct pools *all, const struct pool *p)
{
        if (!p) /* the slowest pool's refill, for any VM */
                for (size_t i = 0; all && i < all->n; i++)
                        if (all->v[i].lang &&
                            (!p || refill_estimate_ms(&all->v[i]) > refill_estimate_ms(p)))
                                p = &all->v[i];
        if (!p)
                return REFILL_MS_START;
        return pool_demand_retry_after_ms(refill_estimate_ms(p), fairq_len(&p->waiters),
                                          max_restores(p->all));
}

const char *pools_plan_note(const struct pools *all)
{
        return all ? all->plan_note : "";
}

void pool_note_resume(struct pool *p, double ms)
{
        p->stats.last_resume_ms = ms;
}

/* Destroy the paused clones, newest first, until at most keep are left. */
static void drain_to(struct pool *p, unsigned keep)
{
        struct pool_clone *c;

        while (p->n_ready > keep && (c = TAILQ_LAST(&p->ready, pool_clone_q)))
                vm_destroy(clone_drop(c));
}

static void refit(struct pools *all);

void pool_serve(struct pool *p, struct snap_ref *snap)
{
        bool flips = !p->serving != !snap;

        snap_ref_put(p->serving);
        p->serving = snap;
        if (flips)
                refit(p->all); /* the pools that serve share max_vms */
        p->consecutive_failures = 0;
        evtimer_del(p->backoff_ev);
        /* Clones still restoring from the old version are dropped when they finish. */
        drain_to(p, 0);
        refill(p);
}

/* Set the target; extra paused clones go (newest first), missing ones are restored. Logged
 * at debug level: under load it moves with every arrival. */
static void set_target(struct pool *p, uint32_t n)
{
        if (n == p->target)
                return;
        pool_log(p, LOG_DEBUG, "%s pool: %u -> %u paused VMs (demand %.2f/s, refill %.0f ms)",
                 p->lang->name, p->target, n, pool_demand_rate(&p->demand, op_now_us()),
                 refill_estimate_ms(p));
        p->target = n;
        drain_to(p, n);
        if (n > p->standing && !p->all->stopping && !evtimer_pending(p->all->demand_ev, NULL))
                op_timer_arm_ms(p->all->demand_ev, DEMAND_TICK_MS);
        refill(p);
}

/* The target from the demand estimate at now_us, within the standing size and the most. */
static void follow_demand(struct pool *p, uint64_t now_us)
{
        if (!p->most)
                return;
        set_target(p,
                   pool_demand_target(pool_demand_rate(&p->demand, now_us), refill_estimate_ms(p),
                                      waiting_may_take(p), p->standing, p->most));
}

static void on_demand_tick(evutil_socket_t fd, short what, void *arg)
{
        struct pools *all = arg;
        uint64_t now = op_now_us();
        bool above = false;

        for (size_t i = 0; i < all->n; i++) {
                struct pool *p = &all->v[i];

                if (!p->lang)
                        continue;
                follow_demand(p, now);
                above = above || p->target > p->standing;
        }
        if (above && !all->stopping)
                op_timer_arm_ms(all->demand_ev, DEMAND_TICK_MS);
}

static void set_sizes(struct pool *p, uint32_t standing, uint32_t most)
{
        if (standing != p->standing || most != p->most)
                pool_log(p, LOG_INFO, "%s pool: %u paused VMs when idle, up to %u under demand",
                         p->lang->name, standing, most);
        p->standing = standing;
        p->most = most;
        set_target(p, standing);
}

/* Standing sizes from the pools' sizes, scaled to fit max_vms among the pools that serve (a
 * pool without a snapshot holds no VM): again whenever a size or the set of serving pools
 * changes. */
static void refit(struct pools *all)
{
        _cleanup_free_ uint32_t *serving = calloc(all->n + 1, sizeof(*serving));
        _cleanup_free_ uint32_t *standing = calloc(all->n + 1, sizeof(*standing));
        uint32_t max = all->cfg->pool_max_size;
        char note[sizeof(all->plan_note)];

        if (!serving || !standing)
                return;
        for (size_t i = 0; i < all->n; i++)
                serving[i] = all->v[i].lang && all->v[i].serving ? all->v[i].size : 0;
        op_pool_plan_fit(all->cfg, all->langs, serving, standing, note, sizeof(note));
        if (note[0] && strcmp(note, all->plan_note) != 0)
                pools_log(all, LOG_WARNING, "%s", note);
        snprintf(all->plan_note, sizeof(all->plan_note), "%s", note);
        for (size_t i = 0; i < all->n; i++) {
                struct pool *p = &all->v[i];

                if (p->lang)
                        set_sizes(p, p->serving ? standing[i] : p->size,
                                  p->size && max > p->size ? max : p->size);
        }
}

void pool_set_target(struct pool *p, uint32_t n)
{
        p->size = n;
        refit(p->all);
}

void pools_set_sizes(struct pools *all, const uint32_t *sizes)
{
        for (size_t i = 0; i < all->n; i++)
                all->v[i].size = sizes[i];
        refit(all);
}

struct verify_job {
        struct pool *p;
        int dirfd;
        struct snap_manifest m;
        char *path;
};

static int verify_in_child(void *arg, char *msg, size_t msglen)
{
        struct verify_job *j = arg;
        int r = 0;

        /* the install hashed every byte (an S3 sync each chunk against its signed hash,
         * snapshot create each file as it wrote the manifest) and left a record of the files it
         * hashed: while they are those files, unchanged, they are not hashed again (snapshot
         * verify and the damage check still hash them) */
        if (snap_verified_check(j->dirfd, &j->m))
                snprintf(msg, msglen, "checked at install");
        else
                r = snap_verify(j->dirfd, &j->m, msg, msglen);

        /* snapshot.preload: the memory file in the page cache right before the version serves
         * (hashing read it too, but a long verification may have seen it evicted). */
        if (r == 0 && j->p->all->cfg->snapshot_preload && snap_manifest_file(&j->m, "mem"))
                snap_preload(j->dirfd, "mem", NULL);
        return r;
}

static void verify_job_free(struct verify_job *j)
{
        safe_close(j->dirfd);
        free(j->path);
        free(j);
}

static void on_verified(int r, const char *msg, void *userdata)
{
        struct verify_job *j = userdata;
        struct pool *p = j->p;
        struct pools *all = p->all;
        struct snap_ref *s;

        if (r == -ECANCELED) { /* the owner is stopping */
                p->checking[0] = 0;
                verify_job_free(j);
                return;
        }
        snprintf(p->checked, sizeof(p->checked), "%s", j->m.version);
        p->checking[0] = 0;
        if (r < 0) {
                snprintf(p->error, sizeof(p->error), "snapshot %s refused: %s", j->m.version, msg);
                pool_log(p, LOG_ERR, "%s pool: %s%s", p->lang->name, p->error,
                         p->serving ? "; the previous version keeps serving" : "");
                verify_job_free(j);
                return;
        }
        s = calloc(1, sizeof(*s));
        if (!s) {
                verify_job_free(j);
                return;
        }
        s->refs = 1;
        s->dirfd = j->dirfd;
        s->m = j->m;
        s->path = j->path;
        free(j);
        pool_log(p, LOG_INFO, "%s pool: serving snapshot %s%s%s%s%s", p->lang->name, s->m.version,
                 msg && msg[0] ? " (" : "", msg && msg[0] ? msg : "", msg && msg[0] ? ")" : "",
                 p->serving ? " (draining the previous version)" : "");
        p->error[0] = 0;
        pool_serve(p, s);
        snap_gc(all->cfg->cache_dir, p->lang->name, all->cfg->snapshot_keep, s->m.version);
}

const char *pool_snapshot_incompatible(const struct pools *all, const struct snap_manifest *m)
{
        if (strcmp(m->vmm, all->host->drv->name) != 0)
                return "made by another VMM";
        if (strcmp(m->vmm_version, all->vmm_version) != 0)
                return "made by another release of the VMM";
        if (strcmp(m->accel, op_accel_name(all->host->accel)) != 0)
                return "made under another accelerator";
        if (strcmp(m->agent_version, "") == 0)
                return "no agent version";
        return NULL;
}

void pool_check_snapshot(struct pool *p)
{
        struct pools *all = p->all;
        struct verify_job *j;
        const char *why;
        char err[512];
        int dirfd, r;
        struct snap_manifest m;

        if (p->checking[0] || p->most == 0 || all->host->accel == OP_ACCEL_AUTO || all->stopping)
                return;
        r = snap_open(all->cfg->cache_dir, p->lang->name, NULL, &dirfd, &m, err, sizeof(err));
        if (r < 0) {
                /* Also while an older version serves: a current that cannot be read (a version
                 * copied in by another user, its files not opd's) is said, not waited on. */
                if (r != -ENOENT && strcmp(p->error, err) != 0) {
                        snprintf(p->error, sizeof(p->error), "%s", err);
                        pool_log(p, LOG_WARNING, "%s pool: %s", p->lang->name, err);
                }
                return;
        }
        if (strcmp(m.version, p->checked) == 0 ||
            (p->serving && strcmp(m.version, p->serving->m.version) == 0)) {
                safe_close(dirfd);
                return;
        }
        why = pool_snapshot_incompatible(all, &m);
        /* a snapshot is never bigger than the budget counts its language (op_pool_plan) */
        if (!why &&
            (m.memory_mb > op_lang_memory_mb(all->cfg, p->lang) || m.vcpus > all->cfg->vm_vcpus))
                why = "more memory or vCPUs than the language is given (memory_mb, vm.vcpus)";
        if (why) {
                snprintf(p->checked, sizeof(p->checked), "%s", m.version);
                snprintf(p->error, sizeof(p->error), "snapshot %s refused: %s (%s %s %s)",
                         m.version, why, m.vmm, m.vmm_version, m.accel);
                pool_log(p, LOG_ERR, "%s pool: %s", p->lang->name, p->error);
                safe_close(dirfd);
                return;
        }
        j = calloc(1, sizeof(*j));
        if (!j ||
            asprintf(&j->path, "%s/%s/%s", all->cfg->cache_dir, p->lang->name, m.version) < 0) {
                free(j);
                safe_close(dirfd);
                return;
        }
        j->p = p;
        j->dirfd = dirfd;
        j->m = m;
        snprintf(p->checking, sizeof(p->checking), "%s", m.version);
        pool_log(p, LOG_INFO, "%s pool: verifying snapshot %s", p->lang->name, m.version);
        r = all->cb.run_off_loop(verify_in_child, j, &j->dirfd, on_verified, j, all->userdata);
        if (r < 0) {
                p->checking[0] = 0;
                verify_job_free(j);
                pool_log(p, LOG_ERR, "%s pool: cannot start verification: %s", p->lang->name,
                         strerror(-r));
        }
}

void pools_check_snapshots(struct pools *all)
{
        if (!all)
                return;
        for (size_t i = 0; i < all->n; i++)
                if (all->v[i].lang) {
                        pool_check_damage(&all->v[i]);
                        pool_check_snapshot(&all->v[i]);
                }
}

struct pool *pool_for(struct pools *all, const struct op_lang *lang)
{
        size_t i;

        if (!all || !lang)
                return NULL;
        i = (size_t)(lang - all->langs->v);
        return i < all->n && all->v[i].lang ? &all->v[i] : NULL;
}

static void on_snap_check(evutil_socket_t fd, short what, void *arg)
{
        struct pools *all = arg;

        pools_check_snapshots(all);
        op_timer_arm_ms(all->snap_check_ev, all->cfg->snapshot_check_ms);
}

int pools_new(struct event_base *base, const struct op_config *cfg, const struct op_langs *langs,
              struct vm_host *host, const char *vmm_version, const struct pools_callbacks *cb,
              void *userdata, struct pools **ret)
{
        _cleanup_free_ uint32_t *targets = NULL;
        struct pools *all;
        char err[512];
        int r;

        if (!base || !cfg || !langs || !host || !vmm_version || !cb || !cb->run_off_loop)
                return -EINVAL;
        targets = calloc(langs->n + 1, sizeof(*targets));
        all = calloc(1, sizeof(*all));
        if (!all || !targets) {
                free(all);
                return -ENOMEM;
        }
        all->base = base;
        all->prime_grace_ms = PRIME_GRACE_MS;
        all->cfg = cfg;
        all->langs = langs;
        all->host = host;
        all->vmm_version = vmm_version;
        all->cb = *cb;
        all->userdata = userdata;
        all->v = calloc(langs->n + 1, sizeof(*all->v));
        if (!all->v) {
                pools_free(all);
                return -ENOMEM;
        }
        all->n = langs->n;
        r = op_pool_plan(cfg, langs, targets, err, sizeof(err));
        if (r < 0) {
                pools_log(all, LOG_ERR, "%s", err);
                pools_free(all);
                return r;
        }
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        all->n_cpus = cpus > 0 ? (unsigned)cpus : 1;
        all->demand_ev = evtimer_new(base, on_demand_tick, all);
        if (!all->demand_ev) {
                pools_free(all);
                return -ENOMEM;
        }
        for (size_t i = 0; i < langs->n; i++) {
                struct pool *p = &all->v[i];

                if (!langs->v[i].available)
                        continue;
                p->all = all;
                p->lang = &langs->v[i];
                TAILQ_INIT(&p->loading);
                TAILQ_INIT(&p->ready);
                fairq_init(&p->waiters);
                p->backoff_ev = evtimer_new(base, on_backoff, p);
                p->refill_ev = evtimer_new(base, on_refill, p);
                if (!p->backoff_ev || !p->refill_ev) {
                        pools_free(all);
                        return -ENOMEM;
                }
        }
        all->snap_check_ev = evtimer_new(base, on_snap_check, all);
        if (!all->snap_check_ev) {
                pools_free(all);
                return -ENOMEM;
        }
        if (cfg->snapshot_check_ms)
                op_timer_arm_ms(all->snap_check_ev, cfg->snapshot_check_ms);
        pools_set_sizes(all, targets); /* nothing serves yet: no restore starts */
        *ret = all;
        return 0;
}

struct pools *pools_free(struct pools *all)
{
        struct pool_clone *c;

        if (!all)
                return NULL;
        for (size_t i = 0; all->v && i < all->n; i++) {
                struct pool *p = &all->v[i];
                struct fairq_item *it;

                if (!p->lang)
                        continue;
                while ((c = TAILQ_FIRST(&p->ready)))
                        vm_destroy(clone_drop(c));
                while ((c = TAILQ_FIRST(&p->loading)))
                        vm_destroy(clone_drop(c));
                while ((it = fairq_first(&p->waiters)))
                        pool_cancel(waiter_of(it));
                if (p->backoff_ev)
                        event_free(p->backoff_ev);
                if (p->refill_ev)
                        event_free(p->refill_ev);
                p->serving = snap_ref_put(p->serving);
        }
        if (all->snap_check_ev)
                event_free(all->snap_check_ev);
        if (all->demand_ev)
                event_free(all->demand_ev);
        free(all->v);
        free(all);
        return NULL;
}

void pools_stop(struct pools *all)
{
        if (!all)
                return;
        all->stopping = true;
        evtimer_del(all->snap_check_ev);
        evtimer_del(all->demand_ev);
        for (size_t i = 0; i < all->n; i++)
                if (all->v[i].lang)
                        evtimer_del(all->v[i].backoff_ev);
}

bool pool_serves(const struct pool *p)
{
        return p && p->most > 0 && p->serving;
}

const char *pool_error(const struct pool *p)
{
        return p ? p->error : "";
}

const char *pool_serving_version(const struct pool *p)
{
        return p && p->serving ? p->serving->m.version : NULL;
}

void pool_counts(const struct pool *p, struct pool_counts *ret)
{
        *ret = (struct pool_counts){
            .target = p->target,
            .standing = p->standing,
            .most = p->most,
            .demand = pool_demand_rate(&p->demand, op_now_us()),
            .refill_ms = refill_estimate_ms(p),
            .ready = p->n_ready,
            .restoring = p->n_restoring,
            .in_use = p->n_in_use,
            .waiting = fairq_len(&p->waiters),
            .held = fairq_len(&p->waiters) - waiting_may_take(p),
            .serving = p->serving != NULL,
            .verifying = p->checking[0] != 0,
            .stats = p->stats,
        };
}

json_t *pool_status(struct pool *p)
{
        json_t *o = json_object();

        if (!o)
                return NULL;
        json_object_set_new(o, "target", json_integer(p->target));
        json_object_set_new(o, "standing", json_integer(p->standing));
        json_object_set_new(o, "max", json_integer(p->most));
        json_object_set_new(o, "demand_per_s",
                            json_real(pool_demand_rate(&p->demand, op_now_us())));
        json_object_set_new(o, "refill_ms", json_real(refill_estimate_ms(p)));
        json_object_set_new(o, "ready", json_integer(p->n_ready));
        json_object_set_new(o, "restoring", json_integer(p->n_restoring));
        json_object_set_new(o, "in_use", json_integer(p->n_in_use));
        json_object_set_new(o, "waiting", json_integer(fairq_len(&p->waiters)));
        json_object_set_new(o, "held", json_integer(fairq_len(&p->waiters) - waiting_may_take(p)));
        json_object_set_new(o, "served", json_integer((json_int_t)p->stats.served));
        json_object_set_new(o, "restores", json_integer((json_int_t)p->stats.restores));
        json_object_set_new(o, "failures", json_integer((json_int_t)p->stats.failures));
        json_object_set_new(o, "last_restore_ms", json_real(p->stats.last_restore_ms));
        json_object_set_new(o, "last_prime_ms", json_real(p->stats.last_prime_ms));
        json_object_set_new(o, "last_resume_ms", json_real(p->stats.last_resume_ms));
        json_object_set_new(o, "snapshot",
                            p->serving ? json_string(p->serving->m.version) : json_null());
        json_object_set_new(o, "verifying",
                            p->checking[0] ? json_string(p->checking) : json_null());
        json_object_set_new(o, "error", p->error[0] ? json_string(p->error) : json_null());
        json_object_set_new(o, "damaged", json_integer((json_int_t)p->stats.damaged));
        json_object_set_new(o, "evicted", json_integer((json_int_t)p->stats.evicted));
        json_object_set_new(o, "unprimed", json_integer((json_int_t)p->stats.unprimed));
        json_object_set_new(o, "last_damage",
                            p->last_damage[0] ? json_string(p->last_damage) : json_null());
        return o;
}
