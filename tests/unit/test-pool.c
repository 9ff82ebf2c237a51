/* test-pool.c: the pools (lib/pool) on the fake VM driver (lib/vmm/fake.c): a clone's stages,
 * waiters (and those a cap holds back, left out of the target), snapshot switches, backoff,
 * shrinking, draining, the bound on concurrent restores, freeing with clones in flight, VM slots
 * shared across languages, targets that follow demand, and the demand estimator as a pure function
 * of explicit timestamps. No process, no image: the test drives the loop until a condition holds,
 * and checks the order of what the pools logged rather than how long anything took. */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "config.h"
#include "demand.h"
#include "fake.h"
#include "loop-wait.h"
#include "host.h"
#include "lang.h"
#include "pool-private.h"
#include "pool.h"
#include "poolplan.h"
#include "snap-ref.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"

#define LONG_MS   600000 /* a deadline that must not fire */
#define TURNS_MAX 200000 /* loop turns before a wait is a failure: generous */
#define N_LANGS   3
#define LOG_MAX   512

struct fx {
        struct event_base *base;
        struct loop_tick tick;
        struct op_config cfg;
        struct fake_vmm fake;
        struct vm_host *host;
        char dir[64];
        struct op_langs langs;
        struct pools *pools;
        struct snap_ref *snaps[4]; /* the test's own reference to each snapshot it made */
        size_t n_snaps;
        char *log[LOG_MAX]; /* every line the pools logged, in order */
        size_t n_log;
        unsigned max_restoring; /* the most clones restoring at once, all pools */
        unsigned prime_jobs;
        unsigned pings;
        bool mute_pings;  /* the agent reads pings and answers none */
        json_t *last_job; /* the last job a clone was sent */
};

/* Someone waiting for a clone, as a request does. */
struct waiter {
        struct pool_waiter w;
        struct vm *vm;
        unsigned served;
        bool blocked;      /* may not take a clone (its uid is at its cap) */
        unsigned *counter; /* NULL, or the count of waiters served so far, shared */
        unsigned order;    /* its place among those, from 1 */
};

static unsigned restoring_all(struct fx *f)
{
        unsigned n = 0;

        for (size_t i = 0; f->pools && i < f->langs.n; i++) {
                struct pool *p = pool_for(f->pools, &f->langs.v[i]);
                struct pool_counts c;

                if (!p)
                        continue;
                pool_counts(p, &c);
                n += c.restoring;
        }
        return n;
}

static void on_log(int prio, const char *msg, void *userdata)
{
        struct fx *f = userdata;
        unsigned n;

        assert_true(f->n_log < LOG_MAX);
        f->log[f->n_log] = strdup(msg);
        assert_non_null(f->log[f->n_log]);
        f->n_log++;
        n = restoring_all(f);
        if (n > f->max_restoring)
                f->max_restoring = n;
}

/* Slow work runs on the next loop turn, in this process. */
struct job {
        struct event *ev;
        pool_job_fn fn;
        void *arg;
        pool_job_done_fn done;
        void *userdata;
};

static void on_job(evutil_socket_t fd, short what, void *arg)
{
        struct job *j = arg;
        char msg[512] = "";
        int r = j->fn(j->arg, msg, sizeof(msg));

        event_free(j->ev);
        j->done(r, msg, j->userdata);
        free(j);
}

static int run_off_loop(pool_job_fn fn, void *arg, int *keep_fd, pool_job_done_fn done,
                        void *done_userdata, void *userdata)
{
        struct fx *f = userdata;
        struct job *j = calloc(1, sizeof(*j));
        struct timeval tv = {0, 0};

        if (!j)
                return -ENOMEM;
        *j = (struct job){.fn = fn, .arg = arg, .done = done, .userdata = done_userdata};
        j->ev = evtimer_new(f->base, on_job, j);
        if (!j->ev) {
                free(j);
                return -ENOMEM;
        }
        evtimer_add(j->ev, &tv);
        return 0;
}

/* The agent: primes (a warm snapshot's "prime" op), answers a ping (the one after a prime) with
 * a pong, anything else {"ok": true}. last_job is the last frame but a ping. */
static json_t *agent(struct vm *vm, json_t *frame, void *userdata)
{
        struct fx *f = userdata;
        const char *op = json_string_value(json_object_get(frame, "op"));

        if (op && strcmp(op, "ping") == 0) {
                f->pings++;
                if (f->mute_pings)
                        return NULL;
                return json_pack("{s:O, s:b, s:b, s:s}", "id", json_object_get(frame, "id"), "ok",
                                 1, "pong", 1, "agent_version", "fake");
        }
        json_decref(f->last_job);
        f->last_job = json_incref(frame);
        if (op && strcmp(op, "prime") == 0) {
                f->prime_jobs++;
                return json_pack("{s:s, s:b, s:b, s:f}", "id", "prime", "ok", 1, "primed", 1,
                                 "run_ms", 1.5);
        }
        return json_pack("{s:b}", "ok", 1);
}

static void lang_init(struct op_lang *g, const char *name)
{
        g->name = strdup(name);
        g->file = strdup("main");
        g->run[0] = strdup("run");
        g->run[1] = strdup("{file}");
        assert_true(g->name && g->file && g->run[0] && g->run[1]);
        g->pool_size = -1;
        g->available = 1;
        g->enabled = 1;
}

static int setup(void **state)
{
        static const struct vm_host_callbacks host_cb = {0};
        static const struct pools_callbacks pools_cb = {.run_off_loop = run_off_loop,
                                                        .log = on_log};
        struct fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-pool-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        assert_int_equal(op_config_init(&f->cfg), 0);
        free(f->cfg.run_dir);
        f->cfg.run_dir = strdup(f->dir);
        free(f->cfg.cache_dir);
        assert_true(asprintf(&f->cfg.cache_dir, "%s/cache", f->dir) > 0);
        assert_true(f->cfg.run_dir && f->cfg.cache_dir);
        f->cfg.boot_timeout_ms = LONG_MS;
        f->cfg.restore_timeout_ms = LONG_MS;
        f->cfg.snapshot_check_ms = 0;
        f->cfg.pool_prime = OP_NO;
        f->cfg.max_vms = 64;
        f->cfg.max_restores = 2;
        f->cfg.pool_max_size = 0; /* the size a test sets, unless it tests demand */
        f->base = event_base_new();
        assert_non_null(f->base);
        loop_tick_start(&f->tick, f->base);
        f->fake.agent = agent;
        f->fake.agent_userdata = f;
        f->langs.v = calloc(N_LANGS, sizeof(*f->langs.v));
        assert_non_null(f->langs.v);
        f->langs.n = N_LANGS;
        lang_init(&f->langs.v[0], "a");
        lang_init(&f->langs.v[1], "b");
        lang_init(&f->langs.v[2], "c");
        assert_int_equal(
            vm_host_new(f->base, &f->cfg, &vm_driver_fake, &f->fake, &host_cb, f, &f->host), 0);
        f->host->accel = OP_ACCEL_TCG;
        assert_int_equal(
            pools_new(f->base, &f->cfg, &f->langs, f->host, "1.0", &pools_cb, f, &f->pools), 0);
        *state = f;
        return 0;
}

static bool all_freed(void *arg)
{
        struct fx *f = arg;

        vm_host_free_dead(f->host);
        return f->fake.n_live == 0 && LIST_EMPTY(&f->host->dead_vms);
}

static bool dead_freed(void *arg)
{
        struct fx *f = arg;

        vm_host_free_dead(f->host);
        return LIST_EMPTY(&f->host->dead_vms);
}

static void run_until(struct fx *f, bool (*cond)(void *), void *arg);

static int teardown(void **state)
{
        struct fx *f = *state;

        f->pools = pools_free(f->pools);
        run_until(f, all_freed, f);
        assert_int_equal(f->host->n_vms, 0);
        f->host = vm_host_free(f->host);
        assert_int_equal(f->fake.n_live, 0);
        for (size_t i = 0; i < f->n_snaps; i++) {
                assert_int_equal(f->snaps[i]->refs, 1); /* every VM gave its reference back */
                snap_ref_put(f->snaps[i]);
        }
        loop_tick_stop(&f->tick);
        event_base_free(f->base);
        if (access(f->cfg.cache_dir, F_OK) == 0) {
                _cleanup_close_ int dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                assert_true(dirfd >= 0);
                assert_int_equal(snap_rmtree(dirfd, "cache"), 0);
        }
        assert_int_equal(rmdir(f->dir), 0); /* every VM directory is gone */
        json_decref(f->last_job);
        op_langs_free(&f->langs);
        op_config_free(&f->cfg);
        for (size_t i = 0; i < f->n_log; i++)
                free(f->log[i]);
        free(f);
        return 0;
}

/* Run the loop until cond(arg) holds; a generous cap turns a hang into a failure. */
static void run_until(struct fx *f, bool (*cond)(void *), void *arg)
{
        loop_run_until(f->base, TURNS_MAX, cond, arg);
}

/* Some turns of the loop (each at least one tick), for "nothing more happens" checks. */
static void run_turns(struct fx *f, unsigned turns)
{
        loop_run_turns(f->base, &f->tick, turns);
}

/* A snapshot as a pool serves it; the test keeps a reference and the pool gets one. */
static struct snap_ref *snap_new(struct fx *f, const char *version, bool warm)
{
        struct snap_ref *s = calloc(1, sizeof(*s));

        assert_non_null(s);
        assert_true(f->n_snaps < sizeof(f->snaps) / sizeof(f->snaps[0]));
        s->refs = 1;
        s->dirfd = -1;
        snprintf(s->m.version, sizeof(s->m.version), "%s", version);
        snprintf(s->m.vmm, sizeof(s->m.vmm), "fake");
        s->m.warm = warm;
        f->snaps[f->n_snaps++] = s;
        return snap_ref_get(s);
}

static struct pool *pool_a(struct fx *f)
{
        struct pool *p = pool_for(f->pools, &f->langs.v[0]);

        assert_non_null(p);
        return p;
}

static struct pool_counts counts(struct pool *p)
{
        struct pool_counts c;

        pool_counts(p, &c);
        return c;
}

struct want_ready {
        struct pool *p;
        unsigned n;
};

static bool pool_has_ready(void *arg)
{
        struct want_ready *w = arg;

        return counts(w->p).ready == w->n && counts(w->p).restoring == 0;
}

static void wait_ready(struct fx *f, struct pool *p, unsigned n)
{
        struct want_ready w = {p, n};

        run_until(f, pool_has_ready, &w);
}

/* The index of the first log line from `from` on that holds every one of the strings (up to
 * two), or -1. */
static ssize_t log_find(struct fx *f, size_t from, const char *s1, const char *s2)
{
        for (size_t i = from; i < f->n_log; i++)
                if (strstr(f->log[i], s1) && (!s2 || strstr(f->log[i], s2)))
                        return (ssize_t)i;
        return -1;
}

static size_t log_count(struct fx *f, const char *s)
{
        size_t n = 0;

        for (size_t i = 0; i < f->n_log; i++)
                n += strstr(f->log[i], s) != NULL;
        return n;
}

struct log_wait {
        struct fx *f;
        const char *s;
};

static bool logged(void *arg)
{
        struct log_wait *w = arg;

        return log_find(w->f, 0, w->s, NULL) >= 0;
}

static void wait_logged(struct fx *f, const char *s)
{
        struct log_wait w = {f, s};

        run_until(f, logged, &w);
}

static void on_served(struct pool_waiter *pw, struct vm *vm)
{
        struct waiter *w = (struct waiter *)pw;

        w->vm = vm;
        w->served++;
        if (w->counter)
                w->order = ++*w->counter;
}

static bool may_take(const struct pool_waiter *pw)
{
        return !((const struct waiter *)pw)->blocked;
}

static bool waiter_served(void *arg)
{
        return ((struct waiter *)arg)->served > 0;
}

/* The VM of the only clone alive. */
static struct vm *only_vm(struct fx *f)
{
        struct vm *vm = LIST_FIRST(&f->host->vms);

        assert_non_null(vm);
        assert_null(LIST_NEXT(vm, link));
        return vm;
}

static void test_restore_ready(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct pool_counts c;

        assert_false(pool_serves(p));
        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", false));
        assert_true(pool_serves(p));
        assert_string_equal(pool_serving_version(p), "v1");
        c = counts(p);
        assert_int_equal(c.restoring, 1);
        assert_int_equal(c.ready, 0);
        wait_ready(f, p, 1);
        c = counts(p);
        assert_int_equal(c.stats.restores, 1);
        assert_int_equal(c.stats.failures, 0);
        assert_true(log_find(f, 0, "restoring -> ready", NULL) >= 0);
        assert_int_equal(log_count(f, "priming"), 0);
        assert_int_equal(only_vm(f)->state, VM_PAUSED);
        run_turns(f, 5); /* full: nothing more starts */
        assert_int_equal(counts(p).stats.restores, 1);
}

static void test_prime(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        ssize_t a, b, c, d;

        f->cfg.pool_prime = OP_YES;
        free(f->langs.v[0].prime);
        f->langs.v[0].prime = strdup("warm up");
        assert_non_null(f->langs.v[0].prime);
        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", true));
        wait_ready(f, p, 1);
        a = log_find(f, 0, "restoring -> priming", NULL);
        b = log_find(f, 0, "priming -> settling", NULL);
        c = log_find(f, 0, "settling -> pausing", NULL);
        d = log_find(f, 0, "pausing -> ready", NULL);
        assert_true(a >= 0 && a < b && b < c && c < d);
        assert_int_equal(f->prime_jobs, 1);
        /* paused only once the agent has answered a ping after the prime (it is idle then) */
        assert_int_equal(f->pings, 1);
        assert_true(counts(p).stats.last_prime_ms == 1.5);
        assert_int_equal(only_vm(f)->state, VM_PAUSED);
}

/* An agent that does not answer the ping after the prime within the grace: the clone is thrown
 * away by the deadline its stage armed, and another is restored; pooled once the agent answers
 * again. */
static void test_settling_deadline(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);

        f->cfg.pool_prime = OP_YES;
        free(f->langs.v[0].prime);
        f->langs.v[0].prime = strdup("warm up");
        assert_non_null(f->langs.v[0].prime);
        f->pools->prime_grace_ms = 50;
        f->mute_pings = true;
        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", true));
        wait_logged(f, "no answer from the agent within 50 ms of settling");
        assert_true(log_find(f, 0, "a pool: restore failed (no answer from the agent", NULL) >= 0);
        assert_int_equal(counts(p).ready, 0);
        assert_true(counts(p).stats.failures >= 1);
        f->mute_pings = false;
        wait_ready(f, p, 1);
        assert_true(counts(p).stats.restores >= 2);
        assert_int_equal(only_vm(f)->state, VM_PAUSED);
}

/* Language a gets a runner that starts in each clone ("warm": {"start": "clone"}) and a prime
 * program; its snapshot v1 holds no runner and was made by an agent of agent_version. */
static struct pool *clone_runner_pool(struct fx *f, enum op_tristate prime,
                                      const char *agent_version)
{
        struct pool *p = pool_a(f);
        struct op_lang *g = &f->langs.v[0];
        struct snap_ref *s;

        f->cfg.pool_prime = prime;
        g->prime = strdup("warm up");
        g->warm[0] = strdup("runner");
        g->warm[1] = strdup("--x");
        g->warm_start = OP_WARM_START_CLONE;
        assert_true(g->prime && g->warm[0] && g->warm[1]);
        s = snap_new(f, "v1", false);
        snprintf(s->m.agent_version, sizeof(s->m.agent_version), "%s", agent_version);
        pool_set_target(p, 1);
        pool_serve(p, s);
        wait_ready(f, p, 1);
        return p;
}

/* The runner is started by the clone's prime job, after its identity: "runner" beside the prime
 * program, as a "prime" op. */
static void test_clone_runner_primed(void **state)
{
        struct fx *f = *state;
        json_t *job, *runner;

        clone_runner_pool(f, OP_YES, "0.4.0");
        assert_int_equal(f->prime_jobs, 1);
        job = f->last_job;
        assert_string_equal(json_string_value(json_object_get(job, "op")), "prime");
        runner = json_object_get(job, "runner");
        assert_true(json_is_object(runner));
        assert_int_equal(json_array_size(json_object_get(runner, "argv")), 2);
        assert_string_equal(json_string_value(json_array_get(json_object_get(runner, "argv"), 1)),
                            "--x");
        assert_true(json_is_integer(json_object_get(runner, "ready_timeout_ms")));
        assert_string_equal(json_string_value(json_object_get(job, "code")), "warm up");
        assert_true(json_is_string(json_object_get(job, "entropy")));
        assert_true(json_is_string(json_object_get(job, "hostname")));
        assert_true(json_is_integer(json_object_get(job, "time_ns")));
        assert_true(counts(pool_a(f)).stats.last_prime_ms == 1.5);
        assert_int_equal(only_vm(f)->state, VM_PAUSED);
}

/* A compiled language's runner compiles its prime program in the same job: the job's deadline
 * adds the longest compile, up to the longest deadline the agent takes. */
static void test_clone_runner_prime_deadline(void **state)
{
        struct fx *f = *state;
        struct op_lang *g = &f->langs.v[0];
        json_t *job;

        g->compile[0] = strdup("cc");
        assert_non_null(g->compile[0]);
        f->cfg.limits.compile_timeout_ms_max = 600000;
        clone_runner_pool(f, OP_YES, "0.5.0");
        job = f->last_job;
        assert_string_equal(json_string_value(json_object_get(job, "op")), "prime");
        assert_true(json_is_object(json_object_get(job, "compile")));
        assert_int_equal(json_integer_value(json_object_get(job, "timeout_ms")), 600000);
}

/* Without priming (pool.prime off, or KVM), a clone is still resumed to start its runner: a job
 * with "runner" and no program. */
static void test_clone_runner_unprimed(void **state)
{
        struct fx *f = *state;
        json_t *job;

        clone_runner_pool(f, OP_NO, "0.4.0");
        assert_int_equal(f->prime_jobs, 1);
        job = f->last_job;
        assert_string_equal(json_string_value(json_object_get(job, "op")), "prime");
        assert_true(json_is_object(json_object_get(job, "runner")));
        assert_null(json_object_get(job, "code"));
        assert_null(json_object_get(job, "file"));
        assert_true(json_is_string(json_object_get(job, "entropy")));
        assert_int_equal(only_vm(f)->state, VM_PAUSED);
}

/* A snapshot whose agent predates "runner" is served as a language without a runner: no step
 * when priming is off, as before. */
static void test_clone_runner_old_agent(void **state)
{
        struct fx *f = *state;

        clone_runner_pool(f, OP_NO, "0.3.0");
        assert_int_equal(f->prime_jobs, 0);
        assert_null(f->last_job);
        assert_int_equal(log_count(f, "priming"), 0);
        assert_int_equal(only_vm(f)->state, VM_PAUSED);
}

static void test_waiter_served(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct waiter w = {.w.served = on_served};
        struct pool_counts c;

        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", false));
        assert_null(pool_take(p, NULL)); /* still restoring */
        pool_wait(p, &w.w);
        assert_int_equal(counts(p).waiting, 1);
        run_until(f, waiter_served, &w);
        assert_int_equal(w.served, 1);
        assert_non_null(w.vm);
        assert_null(w.w.pool); /* no longer waiting */
        c = counts(p);
        assert_int_equal(c.waiting, 0);
        assert_int_equal(c.in_use, 1);
        assert_int_equal(c.stats.served, 1);
        pool_cancel(&w.w); /* served already: nothing */
        /* the pool fills again behind it */
        wait_ready(f, p, 1);
        assert_int_equal(counts(p).stats.restores, 2);
        vm_destroy(w.vm);
        pool_release(p);
        assert_int_equal(counts(p).in_use, 0);
        run_turns(f, 5);
        assert_int_equal(w.served, 1);
}

static void test_waiter_cancel(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct waiter w = {.w.served = on_served};

        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", false));
        pool_wait(p, &w.w);
        pool_cancel(&w.w);
        assert_int_equal(counts(p).waiting, 0);
        wait_ready(f, p, 1); /* the clone went to the ready list, not to the waiter */
        assert_int_equal(w.served, 0);
        w.vm = pool_take(p, NULL);
        assert_non_null(w.vm);
        assert_int_equal(counts(p).in_use, 1);
        vm_destroy(w.vm);
        pool_release(p);
}

/* The waiter's VM is finished with. */
static void give_back(struct pool *p, struct waiter *w)
{
        vm_destroy(w->vm);
        w->vm = NULL;
        pool_release(p);
}

struct count_wait {
        unsigned *counter;
        unsigned n;
};

static bool counted(void *arg)
{
        struct count_wait *c = arg;

        return *c->counter >= c->n;
}

/* Clones go to the waiters round-robin by key: with one key's three waiters queued before
 * another key's one, that one is served second, right after the first key's turn. */
static void test_waiters_round_robin_by_key(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        unsigned counter = 0;
        struct waiter w[4];
        static const uint64_t keys[4] = {2000, 2000, 2000, 3000};

        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", false));
        for (unsigned i = 0; i < 4; i++) {
                w[i] =
                    (struct waiter){.w.served = on_served, .w.key = keys[i], .counter = &counter};
                assert_null(pool_take(p, &w[i].w)); /* still restoring */
                pool_wait(p, &w[i].w);
        }
        assert_int_equal(counts(p).waiting, 4);
        for (unsigned n = 1; n <= 4; n++) {
                struct count_wait cw = {&counter, n};

                run_until(f, counted, &cw);
                assert_int_equal(counter, n); /* one clone at a time */
                for (unsigned i = 0; i < 4; i++)
                        if (w[i].order == n)
                                give_back(p, &w[i]);
        }
        assert_int_equal(w[0].order, 1);
        assert_int_equal(w[3].order, 2); /* the other key, not after the first key's backlog */
        assert_int_equal(w[1].order, 3);
        assert_int_equal(w[2].order, 4);
        assert_int_equal(counts(p).waiting, 0);
        assert_int_equal(counts(p).stats.served, 4);
}

/* A waiter that may not take a clone (its uid at its cap) is passed over and keeps its place:
 * another key's later waiter is served, a ready clone stays paused, a pool_take() for it gets
 * nothing, and pools_serve_waiters() hands it the clone once it may. */
static void test_waiter_that_may_not_take(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct waiter a = {.w = {.served = on_served, .may_take = may_take, .key = 1},
                           .blocked = true};
        struct waiter b = {.w = {.served = on_served, .may_take = may_take, .key = 2}};

        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", false));
        pool_wait(p, &a.w);
        pool_wait(p, &b.w);
        run_until(f, waiter_served, &b);
        assert_int_equal(a.served, 0);
        wait_ready(f, p, 1); /* the next clone is not a's either */
        assert_int_equal(a.served, 0);
        assert_int_equal(counts(p).waiting, 1);
        assert_null(pool_take(p, &a.w));
        pools_serve_waiters(f->pools); /* a still may not: nothing */
        assert_int_equal(a.served, 0);
        assert_int_equal(counts(p).ready, 1);
        a.blocked = false;
        pools_serve_waiters(f->pools);
        assert_int_equal(a.served, 1);
        assert_non_null(a.vm);
        assert_null(a.w.pool);
        assert_int_equal(counts(p).waiting, 0);
        assert_int_equal(counts(p).in_use, 2);
        give_back(p, &a);
        give_back(p, &b);
}

/* Waiters their key's cap holds back are no demand: they neither raise the target nor count in
 * the demand estimate (so no clone is restored for them that another key would take); once
 * they may take one, they count again, and the first one's arrival with it. */
static void test_held_waiters_not_in_target(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct waiter a[5];
        struct pool_counts c;

        f->cfg.pool_max_size = 8;
        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", false));
        wait_ready(f, p, 1);
        for (size_t i = 0; i < 5; i++) {
                a[i] = (struct waiter){.w = {.served = on_served, .may_take = may_take, .key = 1},
                                       .blocked = true};
                assert_null(pool_take(p, &a[i].w)); /* a clone is ready, but not for it */
                pool_wait(p, &a[i].w);
        }
        c = counts(p);
        assert_int_equal(c.waiting, 5);
        assert_int_equal(c.held, 5);
        assert_int_equal(c.target, 1); /* the standing size: nothing for the held ones */
        assert_true(c.demand == 0.0);
        run_turns(f, 5);
        c = counts(p);
        assert_int_equal(c.stats.restores, 1); /* no restore started for them */
        assert_int_equal(c.ready, 1);
        assert_int_equal(c.restoring, 0);
        /* The key may again: the first takes the ready clone, the other four count. */
        for (size_t i = 0; i < 5; i++)
                a[i].blocked = false;
        pools_serve_waiters(f->pools);
        assert_int_equal(a[0].served, 1);
        c = counts(p);
        assert_int_equal(c.waiting, 4);
        assert_int_equal(c.held, 0);
        assert_true(c.target >= 4);
        assert_true(c.demand > 0.0); /* a[0]'s arrival, counted as it took its clone */
        assert_true(c.restoring > 0);
        for (size_t i = 1; i < 5; i++)
                pool_cancel(&a[i].w);
        give_back(p, &a[0]);
}

static void test_replaced_snapshot(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct snap_ref *v1, *v2, *v3;
        struct pool_counts c;

        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", false));
        v1 = f->snaps[0];
        assert_int_equal(counts(p).restoring, 1);
        /* v2 serves while the clone of v1 restores: that clone is destroyed once it is loaded,
         * never served, and a clone of v2 replaces it */
        pool_serve(p, snap_new(f, "v2", false));
        v2 = f->snaps[1];
        assert_int_equal(counts(p).restoring, 1);
        wait_ready(f, p, 1);
        assert_ptr_equal(only_vm(f)->snap, v2);
        c = counts(p);
        assert_int_equal(c.stats.restores, 2);
        assert_int_equal(c.stats.failures, 0);
        run_until(f, dead_freed, f); /* the clone of v1 is gone: v1's reference came back */
        assert_int_equal(v1->refs, 1);
        /* v3 serves: the paused clone of v2 is destroyed at once */
        pool_serve(p, snap_new(f, "v3", false));
        v3 = f->snaps[2];
        assert_int_equal(counts(p).ready, 0);
        wait_ready(f, p, 1);
        assert_ptr_equal(only_vm(f)->snap, v3);
        assert_string_equal(pool_serving_version(p), "v3");
}

static void test_backoff(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        ssize_t failed, over, first, second;

        f->fake.opts.fault = FAKE_FAULT_RESTORE;
        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", false));
        f->fake.opts.fault = FAKE_FAULT_NONE; /* only the first restore fails */
        wait_ready(f, p, 1);
        first = log_find(f, 0, "pool: restoring ", NULL);
        failed = log_find(f, 0, "restore failed", NULL);
        over = log_find(f, 0, "backoff over", NULL);
        second = log_find(f, (size_t)first + 1, "pool: restoring ", NULL);
        assert_true(first >= 0 && first < failed && failed < over && over < second);
        assert_int_equal(counts(p).stats.failures, 1);
        assert_int_equal(counts(p).stats.restores, 2);

        /* A paused clone that dies is replaced at once: no backoff. */
        fake_vm_die(only_vm(f));
        wait_logged(f, "a paused VM died");
        failed = log_find(f, 0, "a paused VM died", NULL);
        assert_true(failed + 1 < (ssize_t)f->n_log);
        assert_non_null(strstr(f->log[failed + 1], "pool: restoring "));
        assert_int_equal(counts(p).restoring, 1);
        wait_ready(f, p, 1);
        assert_int_equal(log_count(f, "backoff over"), 1);
        assert_int_equal(counts(p).stats.failures, 2);
        assert_int_equal(counts(p).stats.restores, 3);
}

static void test_shrink(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        char oldest[32];
        const char *name;
        ssize_t i;
        struct vm *vm;

        f->cfg.max_restores = 1; /* one at a time: they get ready in the order they started */
        pool_set_target(p, 3);
        pool_serve(p, snap_new(f, "v1", false));
        wait_ready(f, p, 3);
        i = log_find(f, 0, "restoring -> ready", NULL);
        assert_true(i >= 0);
        name = strstr(f->log[i], "vm-");
        assert_non_null(name);
        snprintf(oldest, sizeof(oldest), "%.*s", (int)strcspn(name, " "), name);
        pool_set_target(p, 1);
        assert_int_equal(counts(p).ready, 1);
        assert_int_equal(counts(p).target, 1);
        assert_int_equal(f->host->n_vms, 1);
        vm = pool_take(p, NULL); /* the one left is the oldest */
        assert_non_null(vm);
        assert_string_equal(vm->name, oldest);
        vm_destroy(vm);
        pool_release(p);
        wait_ready(f, p, 1);
}

static bool restored_none(void *arg)
{
        return counts(arg).restoring == 0;
}

static bool restoring_some(void *arg)
{
        return counts(arg).restoring > 0;
}

static void test_serve_null(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct vm *vm;

        pool_set_target(p, 2);
        pool_serve(p, snap_new(f, "v1", false));
        wait_ready(f, p, 2);
        vm = pool_take(p, NULL); /* in use: finishes its request untouched */
        assert_non_null(vm);
        /* Its replacement starts at the loop's next turn, once the request resumed the clone. */
        assert_int_equal(counts(p).restoring, 0);
        run_until(f, restoring_some, p);
        assert_int_equal(counts(p).restoring, 1);
        pool_serve(p, NULL);
        assert_false(pool_serves(p));
        assert_null(pool_serving_version(p));
        assert_int_equal(counts(p).ready, 0);
        assert_int_equal(counts(p).in_use, 1);
        assert_null(pool_take(p, NULL));
        run_until(f, restored_none, p); /* the replacement is dropped once loaded */
        run_turns(f, 5);
        assert_int_equal(counts(p).restoring, 0);
        assert_int_equal(counts(p).stats.restores, 3);
        assert_int_equal(f->host->n_vms, 1);
        assert_int_equal(vm->state, VM_PAUSED);
        vm_destroy(vm);
        pool_release(p);
        run_turns(f, 5);
        assert_int_equal(counts(p).stats.restores, 3);
}

static bool both_full(void *arg)
{
        struct fx *f = arg;

        for (size_t i = 0; i < 2; i++) {
                struct pool_counts c = counts(pool_for(f->pools, &f->langs.v[i]));

                if (c.ready != 3)
                        return false;
        }
        return true;
}

static void test_max_restores(void **state)
{
        struct fx *f = *state;
        struct pool *a = pool_a(f), *b = pool_for(f->pools, &f->langs.v[1]);

        assert_non_null(b);
        f->cfg.max_restores = 2;
        pool_set_target(a, 3);
        pool_set_target(b, 3);
        pool_serve(a, snap_new(f, "a1", false));
        pool_serve(b, snap_new(f, "b1", false));
        assert_int_equal(restoring_all(f), 2);
        assert_int_equal(counts(b).restoring, 0);
        run_until(f, both_full, f);
        assert_int_equal(f->max_restoring, 2); /* reached, never passed */
        assert_int_equal(counts(a).stats.restores + counts(b).stats.restores, 6);
        assert_int_equal(f->host->n_vms, 6);
}

static void test_done_restoring(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct waiter w = {.w.served = on_served};

        f->fake.opts.restore_ms = LONG_MS; /* they never finish by themselves */
        pool_set_target(p, 2);
        pool_serve(p, snap_new(f, "v1", false));
        pool_wait(p, &w.w);
        run_turns(f, 3);
        assert_int_equal(counts(p).restoring, 2);
        assert_int_equal(f->host->n_vms, 2);
        f->pools = pools_free(f->pools);
        assert_int_equal(f->host->n_vms, 0);
        assert_null(w.w.pool);
        assert_int_equal(w.served, 0);
        run_until(f, all_freed, f);
}

static void test_stop(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);

        pool_set_target(p, 2);
        pool_serve(p, snap_new(f, "v1", false));
        wait_ready(f, p, 2);
        /* the owner stops and kills every VM: the clones go, none is replaced */
        pools_stop(f->pools);
        vm_host_kill_all(f->host);
        assert_int_equal(counts(p).ready, 0);
        assert_int_equal(counts(p).restoring, 0);
        assert_int_equal(counts(p).stats.failures, 0);
        assert_int_equal(f->host->n_vms, 0);
        pool_serve(p, snap_new(f, "v2", false));
        pools_check_snapshots(f->pools);
        run_turns(f, 5);
        assert_int_equal(counts(p).stats.restores, 2);
        assert_int_equal(f->host->n_vms, 0);
        assert_int_equal(log_count(f, "died"), 0);
}

/* Install a version of language "a" in the cache as snapshot creation does; current -> it. */
static void install(struct fx *f, const char *version, const char *vmm_version)
{
        struct snap_manifest m = {.memory_mb = 64, .vcpus = 1, .n_files = 1};
        _cleanup_free_ char *stage = NULL, *file = NULL;
        struct stat st;
        char err[512];
        FILE *fp;

        snprintf(m.version, sizeof(m.version), "%s", version);
        snprintf(m.lang, sizeof(m.lang), "a");
        snprintf(m.created, sizeof(m.created), "2026-01-01T00:00:00Z");
        snprintf(m.agent_version, sizeof(m.agent_version), "1");
        snprintf(m.vmm, sizeof(m.vmm), "fake");
        snprintf(m.vmm_version, sizeof(m.vmm_version), "%s", vmm_version);
        snprintf(m.accel, sizeof(m.accel), "tcg");
        snprintf(m.lang_version, sizeof(m.lang_version), "1");
        snprintf(m.files[0].name, sizeof(m.files[0].name), "vmstate");
        assert_int_equal(snap_stage_begin(f->cfg.cache_dir, "a", version, &stage), 0);
        /* opd's user alone reaches a version being made by its path */
        assert_int_equal(stat(stage, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_true(asprintf(&file, "%s/vmstate", stage) > 0);
        fp = fopen(file, "we");
        assert_non_null(fp);
        fputs("state", fp);
        assert_int_equal(fclose(fp), 0);
        if (snap_commit(f->cfg.cache_dir, &m, err, sizeof(err)) < 0)
                fail_msg("commit %s: %s", version, err);
}

static bool serves(void *arg)
{
        return pool_serves(arg);
}

static bool verified(void *arg)
{
        return !counts(arg).verifying;
}

static void test_snapshot_check(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        _cleanup_free_ char *path = NULL;
        json_t *st;

        pool_set_target(p, 1);
        pools_check_snapshots(f->pools); /* nothing in the cache yet */
        assert_false(counts(p).verifying);
        install(f, "v1", "1.0");
        pools_check_snapshots(f->pools);
        assert_true(counts(p).verifying); /* off the loop first */
        assert_false(pool_serves(p));
        run_until(f, serves, p);
        assert_string_equal(pool_serving_version(p), "v1");
        assert_string_equal(pool_error(p), "");
        wait_ready(f, p, 1);
        st = pool_status(p);
        assert_non_null(st);
        assert_string_equal(json_string_value(json_object_get(st, "snapshot")), "v1");
        json_decref(st);

        /* made by another release of the VMM: refused, v1 keeps serving */
        install(f, "v2", "2.0");
        pools_check_snapshots(f->pools);
        assert_non_null(strstr(pool_error(p), "another release"));
        assert_string_equal(pool_serving_version(p), "v1");

        /* v1's file goes: found at the next check, set aside, nothing else to serve */
        assert_true(asprintf(&path, "%s/a/v1/vmstate", f->cfg.cache_dir) > 0);
        assert_int_equal(unlink(path), 0);
        pools_check_snapshots(f->pools);
        run_until(f, verified, p);
        assert_false(pool_serves(p));
        assert_int_equal(counts(p).stats.damaged, 1);
        assert_int_equal(counts(p).ready, 0);
        assert_non_null(strstr(pool_error(p), "damaged"));
}

static struct pool *pool_n(struct fx *f, size_t i)
{
        struct pool *p = pool_for(f->pools, &f->langs.v[i]);

        assert_non_null(p);
        return p;
}

/* Take a clone of p and finish with it at once, as a short request does. */
static void use_once(struct fx *f, struct pool *p)
{
        struct vm *vm = pool_take(p, NULL);

        assert_non_null(vm);
        vm_destroy(vm);
        pool_release(p);
}

static bool ab_ready(void *arg)
{
        struct fx *f = arg;

        return counts(pool_n(f, 0)).ready == 1 && counts(pool_n(f, 1)).ready == 1 &&
               restoring_all(f) == 0;
}

/* More languages than VM slots: the idle clone of the language used least recently gives its
 * slot to a language with a waiter; the other keeps its clone. */
static void test_slot_shared(void **state)
{
        struct fx *f = *state;
        struct pool *a = pool_n(f, 0), *b = pool_n(f, 1), *c = pool_n(f, 2);
        struct waiter w = {.w.served = on_served};

        f->cfg.max_vms = 2;
        pool_set_target(a, 1);
        pool_set_target(b, 1);
        pool_set_target(c, 1);
        pool_serve(a, snap_new(f, "a1", false));
        pool_serve(b, snap_new(f, "b1", false));
        run_until(f, ab_ready, f);
        pool_serve(c, snap_new(f, "c1", false));
        run_turns(f, 5);
        assert_int_equal(counts(c).restoring + counts(c).ready, 0); /* no slot, no waiter */
        use_once(f, a); /* a is used first, b after it: a is the least recently used */
        run_until(f, ab_ready, f);
        use_once(f, b);
        run_until(f, ab_ready, f);
        assert_null(pool_take(c, NULL));
        pool_wait(c, &w.w);
        run_until(f, waiter_served, &w);
        assert_ptr_equal(w.vm->lang, &f->langs.v[2]);
        assert_int_equal(counts(a).stats.evicted, 1);
        assert_int_equal(counts(b).stats.evicted, 0);
        assert_int_equal(counts(b).ready, 1);
        assert_true(log_find(f, 0, "gives its slot to c", NULL) >= 0);
        assert_true(f->host->n_vms <= 2);
        vm_destroy(w.vm);
        pool_release(c);
        run_until(f, ab_ready, f); /* the freed slot goes back to a's standing clone */
}

/* A booting request takes the slot of an idle clone; none left: false. */
static void test_reclaim_slot(void **state)
{
        struct fx *f = *state;
        struct pool *a = pool_a(f);

        assert_false(pools_reclaim_slot(f->pools));
        pool_set_target(a, 1);
        pool_serve(a, snap_new(f, "v1", false));
        wait_ready(f, a, 1);
        f->cfg.max_vms = 1; /* the clone holds the only slot: it is not restored again */
        assert_true(pools_reclaim_slot(f->pools));
        assert_int_equal(f->host->n_vms, 0);
        assert_int_equal(counts(a).stats.evicted, 1);
        assert_false(pools_reclaim_slot(f->pools));
        assert_true(log_find(f, 0, "gives its slot to a booting VM", NULL) >= 0);
}

/* A clone restored while a request waits goes to it unprimed; with nobody waiting the next one
 * is primed. */
static void test_no_prime_while_waiting(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct waiter w = {.w.served = on_served};

        f->cfg.pool_prime = OP_YES;
        free(f->langs.v[0].prime);
        f->langs.v[0].prime = strdup("warm up");
        assert_non_null(f->langs.v[0].prime);
        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", true));
        pool_wait(p, &w.w);
        run_until(f, waiter_served, &w);
        assert_int_equal(f->prime_jobs, 0);
        assert_int_equal(counts(p).stats.unprimed, 1);
        wait_ready(f, p, 1);
        assert_int_equal(f->prime_jobs, 1);
        vm_destroy(w.vm);
        pool_release(p);
}

static bool at_standing(void *arg)
{
        struct pool_counts c = counts(arg);

        return c.target == c.standing;
}

/* Waiters raise the target above the standing size (up to pool.max_size); once they are gone
 * and the demand fades, it comes back down. */
static void test_target_follows_demand(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct waiter w[6];

        f->cfg.pool_max_size = 4;
        f->fake.opts.restore_ms = LONG_MS; /* restores never finish by themselves */
        pool_set_target(p, 1);
        assert_int_equal(counts(p).most, 4);
        pool_serve(p, snap_new(f, "v1", false));
        for (size_t i = 0; i < 6; i++) {
                w[i] = (struct waiter){.w.served = on_served};
                assert_null(pool_take(p, NULL));
                pool_wait(p, &w[i].w);
        }
        assert_int_equal(counts(p).target, 4);    /* the most */
        assert_int_equal(counts(p).restoring, 2); /* max_restores */
        assert_true(counts(p).demand > 0);
        for (size_t i = 0; i < 6; i++)
                pool_cancel(&w[i].w);
        run_until(f, at_standing, p); /* the demand tick lowers it as the estimate fades */
        assert_int_equal(counts(p).target, 1);
}

/* The target falls while clones restore (their waiters left): once restored, no more of them
 * stay paused than the target asks for. */
static void test_target_falls_while_restoring(void **state)
{
        struct fx *f = *state;
        struct pool *p = pool_a(f);
        struct waiter w[3];
        struct want_ready wr = {p, 1};

        f->cfg.pool_max_size = 4;
        pool_set_target(p, 1);
        pool_serve(p, snap_new(f, "v1", false));
        for (size_t i = 0; i < 3; i++) {
                w[i] = (struct waiter){.w.served = on_served};
                pool_wait(p, &w[i].w);
        }
        assert_int_equal(counts(p).target, 3);
        assert_int_equal(counts(p).restoring, 2); /* max_restores */
        for (size_t i = 0; i < 3; i++)
                pool_cancel(&w[i].w);
        pools_serve_waiters(f->pools); /* the target follows: the standing size */
        assert_int_equal(counts(p).target, 1);
        run_until(f, pool_has_ready, &wr);
        run_turns(f, 5);
        assert_int_equal(counts(p).ready, 1);
        assert_int_equal(counts(p).restoring, 0);
}

/* A pool scaled to no standing clone holds one restored for a waiter that left; the next
 * request's arrival asks for none (a refill this quick needs no stock): the request still gets
 * that clone, and nothing is left to drain. */
static void test_take_as_target_falls(void **state)
{
        struct fx *f = *state;
        struct pool *b = pool_n(f, 1);
        struct waiter w = {.w.served = on_served};
        struct vm *vm;

        f->cfg.max_vms = 1;
        f->cfg.pool_max_size = 4;
        f->fake.opts.restore_ms = 1;
        pools_set_sizes(f->pools, (uint32_t[N_LANGS]){1, 1, 0});
        pool_serve(pool_a(f), snap_new(f, "a1", false));
        wait_ready(f, pool_a(f), 1);
        pool_serve(b, snap_new(f, "b1", false)); /* two serve: scaled to a 1, b 0 */
        assert_int_equal(counts(b).standing, 0);
        pool_wait(b, &w.w); /* in the slot of a's idle clone */
        assert_int_equal(counts(b).restoring, 1);
        pool_cancel(&w.w);
        wait_ready(f, b, 1);
        vm = pool_take(b, NULL);
        if (!vm) { /* the 1 s demand tick came first (the test stalled): it drained the clone */
                assert_int_equal(counts(b).ready, 0);
                skip();
        }
        assert_int_equal(vm->state, VM_PAUSED);
        assert_int_equal(counts(b).target, 0);
        assert_int_equal(counts(b).in_use, 1);
        vm_destroy(vm);
        pool_release(b);
}

/* The plan's standing sizes fit max_vms: the largest is lowered first. */
static void test_plan_fit(void **state)
{
        struct fx *f = *state;
        uint32_t sizes[N_LANGS] = {2, 3, 1}, got[N_LANGS];
        char note[512];

        f->cfg.max_vms = 6;
        assert_int_equal(op_pool_plan_fit(&f->cfg, &f->langs, sizes, got, note, sizeof(note)), 0);
        assert_string_equal(note, "");
        assert_memory_equal(got, sizes, sizeof(sizes));
        f->cfg.max_vms = 4;
        assert_int_equal(op_pool_plan_fit(&f->cfg, &f->langs, sizes, got, note, sizeof(note)), 1);
        assert_int_equal(got[0], 2);
        assert_int_equal(got[1], 1);
        assert_int_equal(got[2], 1);
        assert_non_null(strstr(note, "6 paused VMs, over max_vms = 4: scaled to a 2 b 1 c 1"));
        f->cfg.max_vms = 1;
        assert_int_equal(op_pool_plan_fit(&f->cfg, &f->langs, sizes, got, note, sizeof(note)), 1);
        assert_int_equal(got[0] + got[1] + got[2], 1);
        assert_int_equal(got[0], 1);
        /* the pools that serve are given the scaled sizes (a pool without a snapshot holds
         * nothing and is left out), and serve a language scaled to 0 on demand */
        pools_set_sizes(f->pools, sizes);
        assert_string_equal(pools_plan_note(f->pools), "");
        pool_serve(pool_n(f, 1), snap_new(f, "b1", false));
        pool_serve(pool_n(f, 0), snap_new(f, "a1", false));
        assert_int_equal(counts(pool_n(f, 1)).standing, 0);
        assert_int_equal(counts(pool_n(f, 1)).most, 3);
        assert_non_null(strstr(pools_plan_note(f->pools), "over max_vms = 1"));
}

#define S_US 1000000ull

/* The estimator with explicit timestamps: no clock. */
static void test_demand_estimator(void **state)
{
        struct pool_demand d = {0};
        double r;

        (void)state;
        assert_true(pool_demand_rate(&d, 5 * S_US) == 0.0);
        /* 2 arrivals a second for a minute: the rate settles near 2/s */
        for (uint64_t t = 0; t < 120; t++)
                pool_demand_arrival(&d, S_US + t * S_US / 2);
        r = pool_demand_rate(&d, S_US + 120 * S_US / 2);
        assert_true(r > 1.8 && r < 2.2);
        /* one half-life later with no arrival: half of that */
        assert_true(fabs(pool_demand_rate(&d, S_US + 120 * S_US / 2 + POOL_DEMAND_HALF_LIFE_US) -
                         r / 2) < 1e-9);
        /* a clock that goes back counts as the last arrival's time */
        assert_true(pool_demand_rate(&d, 0) >= r);
        /* a burst of 32 at one instant */
        d = (struct pool_demand){0};
        for (int i = 0; i < 32; i++)
                pool_demand_arrival(&d, 10 * S_US);
        r = pool_demand_rate(&d, 10 * S_US);
        assert_true(r > 4.0 && r < 5.0); /* 32 over the weights' mean age, 7.2 s */

        /* target: arrivals during one refill, plus the waiters, within [min, max] */
        assert_int_equal(pool_demand_target(0.0, 500, 0, 1, 8), 1);
        assert_int_equal(pool_demand_target(0.0, 500, 0, 0, 8), 0);
        assert_int_equal(pool_demand_target(0.05, 1000, 0, 0, 8), 0); /* under a tenth: none */
        assert_int_equal(pool_demand_target(2.0, 1000, 0, 1, 8), 2);
        assert_int_equal(pool_demand_target(2.0, 1600, 3, 1, 8), 7);
        assert_int_equal(pool_demand_target(20.0, 1000, 0, 1, 8), 8);
        assert_int_equal(pool_demand_target(0.0, 1000, 0, 3, 8), 3);

        /* retry hint: the clones ahead made max_restores at a time */
        assert_int_equal(pool_demand_retry_after_ms(400, 0, 2), 400);
        assert_int_equal(pool_demand_retry_after_ms(400, 3, 2), 800);
        assert_int_equal(pool_demand_retry_after_ms(400, 4, 2), 1200);
        assert_int_equal(pool_demand_retry_after_ms(0, 0, 0), 1);
        assert_int_equal(pool_demand_retry_after_ms(1e9, 0, 1), 600000);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_restore_ready, setup, teardown),
            cmocka_unit_test_setup_teardown(test_prime, setup, teardown),
            cmocka_unit_test_setup_teardown(test_settling_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_clone_runner_primed, setup, teardown),
            cmocka_unit_test_setup_teardown(test_clone_runner_unprimed, setup, teardown),
            cmocka_unit_test_setup_teardown(test_clone_runner_prime_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_clone_runner_old_agent, setup, teardown),
            cmocka_unit_test_setup_teardown(test_waiter_served, setup, teardown),
            cmocka_unit_test_setup_teardown(test_waiter_cancel, setup, teardown),
            cmocka_unit_test_setup_teardown(test_waiters_round_robin_by_key, setup, teardown),
            cmocka_unit_test_setup_teardown(test_waiter_that_may_not_take, setup, teardown),
            cmocka_unit_test_setup_teardown(test_held_waiters_not_in_target, setup, teardown),
            cmocka_unit_test_setup_teardown(test_replaced_snapshot, setup, teardown),
            cmocka_unit_test_setup_teardown(test_backoff, setup, teardown),
            cmocka_unit_test_setup_teardown(test_shrink, setup, teardown),
            cmocka_unit_test_setup_teardown(test_serve_null, setup, teardown),
            cmocka_unit_test_setup_teardown(test_max_restores, setup, teardown),
            cmocka_unit_test_setup_teardown(test_done_restoring, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
            cmocka_unit_test_setup_teardown(test_snapshot_check, setup, teardown),
            cmocka_unit_test_setup_teardown(test_slot_shared, setup, teardown),
            cmocka_unit_test_setup_teardown(test_reclaim_slot, setup, teardown),
            cmocka_unit_test_setup_teardown(test_no_prime_while_waiting, setup, teardown),
            cmocka_unit_test_setup_teardown(test_target_follows_demand, setup, teardown),
            cmocka_unit_test_setup_teardown(test_target_falls_while_restoring, setup, teardown),
            cmocka_unit_test_setup_teardown(test_take_as_target_falls, setup, teardown),
            cmocka_unit_test_setup_teardown(test_plan_fit, setup, teardown),
            cmocka_unit_test(test_demand_estimator),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
