/* test-workq.c: the worker threads of workq.c: every job runs once on a worker and is reported
 * once on the loop's thread; a job cancelled while queued never runs, one cancelled while it
 * runs is waited for, one cancelled after it ran is never reported; workq_free() from inside a
 * done() or with jobs queued leaves nothing behind. Blocking jobs are held by pipes, never by
 * sleeps. Built with -DOP_TSAN=ON it runs under ThreadSanitizer. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "loop-wait.h"
#include "workq.h"

#define NJOBS 2000
#define DATA  1024

struct ctx;

struct job {
        struct work w;
        struct ctx *c;
        unsigned idx;
        uint32_t data[DATA];
        uint64_t sum;     /* run()'s result */
        pthread_t ran_on; /* run()'s thread */
        unsigned runs, dones;
        int hold_fd;   /* >= 0: run() waits for a byte here first */
        int ran_fd;    /* >= 0: run() writes a byte here when it starts and when it ends */
        bool finished; /* run() returned */
};

struct ctx {
        struct event_base *base;
        struct workq *q;
        pthread_t loop_thread;
        struct job *jobs;
        unsigned dones, chained;
        bool free_in_done;
        bool chain; /* the first 100 jobs queue themselves again from done() */
};

/* On a worker: cmocka's checks belong to the test's thread, so a failure here aborts. */
static void run_job(struct work *w)
{
        struct job *j = (struct job *)w;
        char b = 0;

        if (j->ran_fd >= 0 && write(j->ran_fd, "s", 1) != 1)
                abort();
        if (j->hold_fd >= 0 && read(j->hold_fd, &b, 1) != 1)
                abort();
        j->ran_on = pthread_self();
        j->runs++;
        j->sum = 0;
        for (unsigned i = 0; i < DATA; i++)
                j->sum += (uint64_t)j->data[i] * (i + 1);
        j->finished = true;
        if (j->ran_fd >= 0 && write(j->ran_fd, "e", 1) != 1)
                abort();
}

static void done_job(struct work *w)
{
        struct job *j = (struct job *)w;
        struct ctx *c = j->c;

        assert_true(pthread_equal(pthread_self(), c->loop_thread));
        assert_false(pthread_equal(j->ran_on, c->loop_thread));
        assert_int_equal(j->runs, 1);
        j->dones++;
        c->dones++;
        if (c->free_in_done) {
                workq_free(c->q);
                c->q = NULL;
                return;
        }
        /* the first jobs queue a second round of themselves from done() */
        if (c->chain && j->idx < 100 && j->dones == 1) {
                j->runs = 0;
                c->chained++;
                workq_submit(c->q, &j->w, run_job, done_job);
        }
}

static uint64_t expected_sum(const struct job *j)
{
        uint64_t s = 0;

        for (unsigned i = 0; i < DATA; i++)
                s += (uint64_t)j->data[i] * (i + 1);
        return s;
}

static struct ctx *ctx_new(unsigned threads, unsigned njobs)
{
        struct ctx *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        c->base = event_base_new();
        assert_non_null(c->base);
        c->loop_thread = pthread_self();
        c->jobs = calloc(njobs, sizeof(*c->jobs));
        assert_non_null(c->jobs);
        for (unsigned i = 0; i < njobs; i++) {
                c->jobs[i].c = c;
                c->jobs[i].idx = i;
                c->jobs[i].hold_fd = c->jobs[i].ran_fd = -1;
                for (unsigned k = 0; k < DATA; k++)
                        c->jobs[i].data[k] = i * 2654435761u + k;
        }
        assert_int_equal(workq_new(c->base, threads, &c->q), 0);
        return c;
}

static void ctx_free(struct ctx *c)
{
        workq_free(c->q);
        event_base_free(c->base);
        free(c->jobs);
        free(c);
}

struct want {
        struct ctx *c;
        unsigned dones;
};

static bool dones_reached(void *arg)
{
        struct want *w = arg;

        return w->c->dones >= w->dones;
}

static void test_every_job_once(void **state)
{
        struct ctx *c = ctx_new(4, NJOBS);
        struct want w = {c, NJOBS + 100};

        c->chain = true;
        for (unsigned i = 0; i < NJOBS; i++)
                workq_submit(c->q, &c->jobs[i].w, run_job, done_job);
        loop_run_until(c->base, 10 * NJOBS, dones_reached, &w);
        assert_int_equal(c->dones, NJOBS + 100);
        assert_int_equal(c->chained, 100);
        for (unsigned i = 0; i < NJOBS; i++) {
                assert_int_equal(c->jobs[i].dones, i < 100 ? 2 : 1);
                assert_true(c->jobs[i].sum == expected_sum(&c->jobs[i]));
        }
        ctx_free(c);
}

static void read_byte(int fd, char want)
{
        char b = 0;

        assert_int_equal(read(fd, &b, 1), 1);
        assert_int_equal(b, want);
}

static void *release(void *arg)
{
        int fd = *(int *)arg;

        if (write(fd, "g", 1) != 1)
                abort();
        return NULL;
}

/* One worker: A holds it (running), B and C wait. B is dropped, A waited for, C runs. */
static void test_cancel_queued_and_running(void **state)
{
        struct ctx *c = ctx_new(1, 3);
        struct job *a = &c->jobs[0], *b = &c->jobs[1], *cc = &c->jobs[2];
        struct want w = {c, 1};
        int hold[2], ran[2];
        pthread_t t;

        assert_int_equal(pipe2(hold, O_CLOEXEC), 0);
        assert_int_equal(pipe2(ran, O_CLOEXEC), 0);
        a->hold_fd = hold[0];
        a->ran_fd = ran[1];
        workq_submit(c->q, &a->w, run_job, done_job);
        workq_submit(c->q, &b->w, run_job, done_job);
        workq_submit(c->q, &cc->w, run_job, done_job);
        read_byte(ran[0], 's'); /* A is running, B and C are queued behind it */
        workq_cancel(c->q, &b->w);
        /* A is released from another thread; cancel returns only once run() has returned */
        assert_int_equal(pthread_create(&t, NULL, release, &hold[1]), 0);
        workq_cancel(c->q, &a->w);
        assert_true(a->finished);
        assert_int_equal(pthread_join(t, NULL), 0);
        loop_run_until(c->base, 1000, dones_reached, &w);
        assert_int_equal(cc->dones, 1);
        assert_int_equal(a->dones, 0);
        assert_int_equal(b->runs, 0);
        assert_int_equal(b->dones, 0);
        /* cancelling a job that is not queued is a no-op */
        workq_cancel(c->q, &b->w);
        workq_cancel(c->q, &cc->w);
        close(hold[0]);
        close(hold[1]);
        close(ran[0]);
        close(ran[1]);
        ctx_free(c);
}

/* A job that ran but whose done() has not been called yet is never reported once cancelled. */
static void test_cancel_after_run(void **state)
{
        struct ctx *c = ctx_new(2, 1);
        struct job *a = &c->jobs[0];
        struct loop_tick tick;
        int ran[2];

        assert_int_equal(pipe2(ran, O_CLOEXEC), 0);
        a->ran_fd = ran[1];
        workq_submit(c->q, &a->w, run_job, done_job);
        read_byte(ran[0], 's');
        read_byte(ran[0], 'e'); /* run() is over or about to return */
        workq_cancel(c->q, &a->w);
        assert_true(a->finished);
        loop_tick_start(&tick, c->base);
        loop_run_turns(c->base, &tick, 20);
        loop_tick_stop(&tick);
        assert_int_equal(a->dones, 0);
        assert_int_equal(c->dones, 0);
        close(ran[0]);
        close(ran[1]);
        ctx_free(c);
}

/* workq_free() from the first done(): no other done() follows, nothing is left on the loop. */
static void test_free_inside_done(void **state)
{
        struct ctx *c = ctx_new(2, 64);
        struct want w = {c, 1};
        struct loop_tick tick;
        int before;

        loop_tick_start(&tick, c->base);
        before = event_base_get_num_events(c->base, EVENT_BASE_COUNT_ADDED);
        c->free_in_done = true;
        for (unsigned i = 0; i < 64; i++)
                workq_submit(c->q, &c->jobs[i].w, run_job, done_job);
        loop_run_until(c->base, 1000, dones_reached, &w);
        assert_null(c->q);
        loop_run_turns(c->base, &tick, 20);
        assert_int_equal(c->dones, 1);
        loop_tick_stop(&tick);
        /* the tick and the queue's eventfd are gone */
        assert_int_equal(event_base_get_num_events(c->base, EVENT_BASE_COUNT_ADDED), before - 2);
        ctx_free(c);
}

/* workq_free() with one job running and more queued: it waits for the running one, drops the
 * rest, and no done() is ever called. */
static void test_free_with_jobs_queued(void **state)
{
        struct ctx *c = ctx_new(1, 10);
        int hold[2], ran[2];
        pthread_t t;

        assert_int_equal(pipe2(hold, O_CLOEXEC), 0);
        assert_int_equal(pipe2(ran, O_CLOEXEC), 0);
        c->jobs[0].hold_fd = hold[0];
        c->jobs[0].ran_fd = ran[1];
        for (unsigned i = 0; i < 10; i++)
                workq_submit(c->q, &c->jobs[i].w, run_job, done_job);
        read_byte(ran[0], 's');
        assert_int_equal(pthread_create(&t, NULL, release, &hold[1]), 0);
        workq_free(c->q);
        c->q = NULL;
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_true(c->jobs[0].finished);
        for (unsigned i = 0; i < 10; i++) {
                assert_true(c->jobs[i].runs <= 1);
                assert_int_equal(c->jobs[i].dones, 0);
        }
        close(hold[0]);
        close(hold[1]);
        close(ran[0]);
        close(ran[1]);
        ctx_free(c);
}

static void test_thread_counts(void **state)
{
        struct event_base *base = event_base_new();
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        struct workq *q = NULL;

        assert_int_equal(workq_threads_for(0), 1);
        assert_int_equal(workq_threads_for(1), 1);
        assert_true(workq_threads_for(1000) >= 1);
        assert_true(workq_threads_for(1000) <= WORKQ_THREADS_MAX);
        assert_true((long)workq_threads_for(1000) <= (cpus > 0 ? cpus : 1000));
        assert_int_equal(workq_new(base, 0, &q), -EINVAL);
        assert_int_equal(workq_new(base, WORKQ_THREADS_MAX + 1, &q), -EINVAL);
        assert_null(q);
        workq_free(NULL);
        event_base_free(base);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_every_job_once),
            cmocka_unit_test(test_cancel_queued_and_running),
            cmocka_unit_test(test_cancel_after_run),
            cmocka_unit_test(test_free_inside_done),
            cmocka_unit_test(test_free_with_jobs_queued),
            cmocka_unit_test(test_thread_counts),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
