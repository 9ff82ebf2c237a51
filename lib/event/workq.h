/* workq.h: a fixed pool of worker threads for CPU work the event loop hands off (hashing
 * fetched chunks). A job runs on a worker and touches only itself; its done() runs on
 * the loop, told through an eventfd. The only state shared across threads is the queue,
 * behind one mutex. */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "cleanup.h"

#define WORKQ_THREADS_MAX 64

struct workq;
struct work;

/* On a worker: touch only w and what w owns; nothing of the loop's. */
typedef void (*work_run_fn)(struct work *w);
/* On the loop, once run() has returned. */
typedef void (*work_done_fn)(struct work *w);

/* Embedded in the caller's job, zeroed before its first use. The fields are the queue's from
 * workq_submit() until done() is called or workq_cancel() returns. */
struct work {
        TAILQ_ENTRY(work) link;
        work_run_fn run;
        work_done_fn done;
        int state;
};

/* Start threads workers (1..WORKQ_THREADS_MAX) on base's loop. -errno on failure (nothing
 * left running). */
int workq_new(struct event_base *base, unsigned threads, struct workq **ret);
/* Jobs queued are dropped, jobs running are waited for, the threads joined; no done() is called
 * after. Safe from inside a done(). NULL is a no-op. */
void workq_free(struct workq *q);
/* Queue w: run() on a worker, then done() on the loop. Never fails. */
void workq_submit(struct workq *q, struct work *w, work_run_fn run, work_done_fn done);
/* Take w back: dropped when queued or finished, waited for when running (the loop blocks for
 * the rest of that run()); done() is not called. A no-op when w is not submitted. */
void workq_cancel(struct workq *q, struct work *w);
/* Worker threads for up to want at once, never more than the CPUs online (at least 1). */
unsigned workq_threads_for(unsigned want);

DEFINE_POINTER_CLEANUP(struct workq *, workq_free)
