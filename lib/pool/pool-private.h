/* pool-private.h: struct pool and the set of pools, shared by pool.c and poolcheck.c only; the
 * daemon goes through pool.h. */
#pragma once

#include <event2/event.h>
#include <sys/queue.h>
#include <syslog.h>

#include "demand.h"
#include "pool.h"

struct pool_clone; /* pool.c: one clone, its stage and its VM */

struct pool {
        struct pools *all;
        const struct op_lang *lang;
        uint32_t target;   /* clones to hold now (paused and restoring): follows demand */
        uint32_t size;     /* the plan's size (0: no pool) */
        uint32_t standing; /* the target when idle: size, scaled to fit max_vms */
        uint32_t most;     /* the most the target grows to; 0: no pool */
        struct pool_demand demand;
        double refill_ms;         /* a clone's restore (and priming), smoothed */
        uint64_t t_used_us;       /* last take or wait: the least recently used gives its slot up */
        struct snap_ref *serving; /* NULL: no usable snapshot, requests go cold */
        char checking[SNAP_NAME_MAX];               /* version being verified, "" when none */
        char checked[SNAP_NAME_MAX];                /* last version looked at (served or refused) */
        char error[512];                            /* why the last version was refused */
        TAILQ_HEAD(, pool_clone) loading;           /* restoring, priming or pausing */
        TAILQ_HEAD(pool_clone_q, pool_clone) ready; /* paused, oldest first */
        unsigned n_ready;
        unsigned n_restoring; /* the loading list's length */
        unsigned n_in_use;
        struct fairq waiters; /* struct pool_waiter, round-robin by key */
        unsigned consecutive_failures;
        struct event *backoff_ev;
        /* A refill at the next turn of the loop: pool_take() lets its request resume the clone
         * and send the job before a replacement's VMM is started. */
        struct event *refill_ev;
        struct pool_stats stats;
        bool suspecting;       /* the serving snapshot's checksums are being verified */
        char last_damage[512]; /* what was found damaged last, "" when never */
};

/* pools_new() */
struct pools {
        struct event_base *base;
        const struct op_config *cfg;
        const struct op_langs *langs;
        struct vm_host *host;
        const char *vmm_version;
        struct pools_callbacks cb;
        void *userdata;
        struct pool *v; /* one per language, same index as langs->v; .lang NULL: none */
        size_t n;
        unsigned n_restoring; /* all pools together, bounded by max_restores */
        unsigned n_cpus;      /* max_restores when it is 0 */
        struct event *snap_check_ev;
        struct event *demand_ev; /* armed while a target is above its standing size */
        char plan_note[1024];    /* how the plan was scaled to fit max_vms, "" when it fits */
        bool stopping;           /* pools_stop() */
        uint32_t prime_grace_ms; /* PRIME_GRACE_MS in pool.c; a test may shorten it */
};

/* A line through cb.log. */
void pools_log(const struct pools *all, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define pool_log(p, prio, ...) pools_log((p)->all, prio, __VA_ARGS__)
