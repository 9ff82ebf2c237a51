/* workq.c: the worker threads of workq.h: one mutex-protected queue in, one list of finished
 * jobs out, an eventfd that wakes the loop to call their done(). */
#include "workq.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum work_state { WORK_IDLE, WORK_QUEUED, WORK_RUNNING, WORK_FINISHED };

TAILQ_HEAD(work_list, work);

struct workq {
        /* shared with the workers, under lock */
        pthread_mutex_t lock;
        pthread_cond_t more; /* a job was queued, or stop */
        pthread_cond_t ran;  /* a job left WORK_RUNNING */
        struct work_list queued, finished;
        bool stop;
        /* set before the threads start, read-only while they run */
        int efd;
        /* the loop's alone */
        struct event_base *base;
        struct event *ev;
        unsigned dispatching;
        bool free_pending;
        unsigned n_threads;
        pthread_t threads[WORKQ_THREADS_MAX];
};

static void wake_loop(int efd)
{
        uint64_t one = 1;

        /* fails only when the counter is about to overflow: the loop is woken anyway */
        (void)!write(efd, &one, sizeof(one));
}

static void *worker(void *arg)
{
        struct workq *q = arg;

        pthread_mutex_lock(&q->lock);
        for (;;) {
                struct work *w;

                while (!q->stop && TAILQ_EMPTY(&q->queued))
                        pthread_cond_wait(&q->more, &q->lock);
                if (q->stop)
                        break;
                w = TAILQ_FIRST(&q->queued);
                TAILQ_REMOVE(&q->queued, w, link);
                w->state = WORK_RUNNING;
                pthread_mutex_unlock(&q->lock);

                w->run(w);

                pthread_mutex_lock(&q->lock);
                w->state = WORK_FINISHED;
                TAILQ_INSERT_TAIL(&q->finished, w, link);
                pthread_cond_broadcast(&q->ran);
                wake_loop(q->efd);
        }
        pthread_mutex_unlock(&q->lock);
        return NULL;
}

static void destroy(struct workq *q)
{
        if (q->ev)
                event_free(q->ev);
        if (q->efd >= 0)
                close(q->efd);
        pthread_cond_destroy(&q->ran);
        pthread_cond_destroy(&q->more);
        pthread_mutex_destroy(&q->lock);
        free(q);
}

/* Stop and join every thread; afterwards no job runs and none will. */
static void stop_threads(struct workq *q)
{
        pthread_mutex_lock(&q->lock);
        q->stop = true;
        pthread_cond_broadcast(&q->more);
        pthread_mutex_unlock(&q->lock);
        for (unsigned i = 0; i < q->n_threads; i++)
                pthread_join(q->threads[i], NULL);
        q->n_threads = 0;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
        struct workq *q = arg;
        uint64_t n;

        (void)!read(q->efd, &n, sizeof(n));
        q->dispatching++;
        while (!q->free_pending) {
                struct work *w;

                pthread_mutex_lock(&q->lock);
                w = TAILQ_FIRST(&q->finished);
                if (w) {
                        TAILQ_REMOVE(&q->finished, w, link);
                        w->state = WORK_IDLE;
                }
                pthread_mutex_unlock(&q->lock);
                if (!w)
                        break;
                /* may submit, cancel others or free q */
                w->done(w);
        }
        if (--q->dispatching == 0 && q->free_pending)
                destroy(q);
}

unsigned workq_threads_for(unsigned want)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned n = want;

        if (cpus > 0 && n > (unsigned long)cpus)
                n = (unsigned)cpus;
        if (n > WORKQ_THREADS_MAX)
                n = WORKQ_THREADS_MAX;
        return n ? n : 1;
}

int workq_new(struct event_base *base, unsigned threads, struct workq **ret)
{
        struct workq *q;
        sigset_t all, old;
        int r = 0;

        if (threads < 1 || threads > WORKQ_THREADS_MAX)
                return -EINVAL;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->base = base;
        TAILQ_INIT(&q->queued);
        TAILQ_INIT(&q->finished);
        pthread_mutex_init(&q->lock, NULL);
        pthread_cond_init(&q->more, NULL);
        pthread_cond_init(&q->ran, NULL);
        q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (q->efd < 0) {
                r = -errno;
                destroy(q);
                return r;
        }
        q->ev = event_new(base, q->efd, EV_READ | EV_PERSIST, on_wake, q);
        if (!q->ev || event_add(q->ev, NULL) < 0) {
                destroy(q);
                return -ENOMEM;
        }
        /* signals stay the loop's: the workers start with all of them blocked */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        for (unsigned i = 0; i < threads && r == 0; i++) {
                r = -pthread_create(&q->threads[i], NULL, worker, q);
                if (r == 0) {
                        pthread_setname_np(q->threads[i], "opd-work");
                        q->n_threads++;
                }
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                stop_threads(q);
                destroy(q);
                return r;
        }
        *ret = q;
        return 0;
}

void workq_free(struct workq *q)
{
        struct work *w;

        if (!q || q->free_pending)
                return;
        stop_threads(q);
        /* the threads are gone: nothing else touches the lists */
        while ((w = TAILQ_FIRST(&q->queued))) {
                TAILQ_REMOVE(&q->queued, w, link);
                w->state = WORK_IDLE;
        }
        while ((w = TAILQ_FIRST(&q->finished))) {
                TAILQ_REMOVE(&q->finished, w, link);
                w->state = WORK_IDLE;
        }
        if (q->dispatching) {
                q->free_pending = true;
                return;
        }
        destroy(q);
}

void workq_submit(struct workq *q, struct work *w, work_run_fn run, work_done_fn done)
{
        w->run = run;
        w->done = done;
        pthread_mutex_lock(&q->lock);
        w->state = WORK_QUEUED;
        TAILQ_INSERT_TAIL(&q->queued, w, link);
        pthread_cond_signal(&q->more);
        pthread_mutex_unlock(&q->lock);
}

void workq_cancel(struct workq *q, struct work *w)
{
        pthread_mutex_lock(&q->lock);
        while (w->state == WORK_RUNNING)
                pthread_cond_wait(&q->ran, &q->lock);
        if (w->state == WORK_QUEUED)
                TAILQ_REMOVE(&q->queued, w, link);
        else if (w->state == WORK_FINISHED)
                TAILQ_REMOVE(&q->finished, w, link);
        w->state = WORK_IDLE;
        pthread_mutex_unlock(&q->lock);
}
