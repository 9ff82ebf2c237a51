/* pool.h: per language, paused clones of the serving snapshot (pool.c) and the serving snapshot
 * found damaged (poolcheck.c). struct pool is theirs alone; the daemon uses these calls. */
#pragma once

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "config.h"
#include "fairq.h"
#include "lang.h"
#include "snapshot.h"

struct pool;
struct pools;
struct snap_ref;
struct vm;
struct vm_host;

/* Someone asking for a paused clone (a request), on behalf of key (a uid). pool_wait() links it;
 * when a clone is ready the pool unlinks it and calls served() with the VM, which the waiter owns
 * from then on. Waiters are served round-robin by key (fairq.h): the oldest waiter of the next
 * key after the one served last, whether that one waited or took a clone at once. */
struct pool_waiter {
        void (*served)(struct pool_waiter *w, struct vm *vm);
        /* NULL, or: may it have a clone now? A waiter that may not is passed over (its key keeps
         * its turn) until pools_serve_waiters(); pool_take() gives it nothing. */
        bool (*may_take)(const struct pool_waiter *w);
        uint64_t key;
        struct pool *pool;      /* pool.c: the pool waited in, NULL when not waiting */
        bool arrival_held;      /* pool.c: arrived at its cap, not yet in the demand estimate */
        struct fairq_item item; /* pool.c: in the pool's waiters */
};

struct pool_stats {
        uint64_t served;
        uint64_t restores;
        uint64_t failures;
        double last_restore_ms;
        double last_prime_ms;
        double last_resume_ms;
        uint64_t damaged;  /* serving snapshots found damaged */
        uint64_t evicted;  /* idle clones destroyed to give their slot to another language */
        uint64_t unprimed; /* clones handed to a waiter without priming */
};

/* A pool's figures for status lines and metrics. */
struct pool_counts {
        uint32_t target;    /* now, following demand */
        uint32_t standing;  /* when idle */
        uint32_t most;      /* under demand */
        double demand;      /* arrivals per second, estimated */
        double refill_ms;   /* a clone's restore and priming, smoothed */
        unsigned ready;     /* paused clones */
        unsigned restoring; /* clones restoring, priming or pausing */
        unsigned in_use;    /* taken and not yet released */
        unsigned waiting;   /* waiters */
        unsigned held;      /* of which: their key may not take a clone now (at its cap) */
        bool serving;       /* a verified snapshot serves */
        bool verifying;     /* a new version is being verified */
        struct pool_stats stats;
};

/* Slow work off the loop: fn runs elsewhere (it may block) and writes at most msglen bytes of
 * message; its result and message come back to done on the loop. */
typedef int (*pool_job_fn)(void *arg, char *msg, size_t msglen);
typedef void (*pool_job_done_fn)(int r, const char *msg, void *userdata);

/* What the owner of the pools does for them; userdata is pools_new()'s. */
struct pools_callbacks {
        /* Start fn(arg) off the loop (verifying a snapshot's checksums), where it may use
         * *keep_fd (when not NULL; *keep_fd is set to the number it has there). 0: done() will
         * be called on the loop exactly once, with fn's result, or with -ECANCELED when the
         * owner stops first. A negative errno: not started, done() is not called. */
        int (*run_off_loop)(pool_job_fn fn, void *arg, int *keep_fd, pool_job_done_fn done,
                            void *done_userdata, void *userdata);
        /* One line for the log (the pools do not log themselves); prio is syslog's. */
        void (*log)(int prio, const char *msg, void *userdata);
};

/* One pool per available language of langs, sized by the configuration (poolplan.h), restoring
 * VMs through host; the snapshot cache is looked at every cfg->snapshot_check_ms (0: only on
 * pools_check_snapshots()). cfg, langs, host and vmm_version (the VMM's release: a snapshot
 * loads only on the one that made it) must outlive the pools. -EINVAL when the pool sizes do not
 * fit (the reason goes to the log). */
int pools_new(struct event_base *base, const struct op_config *cfg, const struct op_langs *langs,
              struct vm_host *host, const char *vmm_version, const struct pools_callbacks *cb,
              void *userdata, struct pools **ret);
/* Destroys every clone (restoring ones too) and forgets the waiters without calling them.
 * Accepts NULL; returns NULL. */
struct pools *pools_free(struct pools *all);
/* The owner is stopping: no restore and no snapshot check from now on; a clone that fails (the
 * owner kills every VM) is dropped quietly, not counted or replaced. Accepts NULL. */
void pools_stop(struct pools *all);
/* The language's pool, or NULL (all NULL, or the language has no image). */
struct pool *pool_for(struct pools *all, const struct op_lang *lang);
/* Look at <cache>/<lang>/current and start serving it if it is new and verifies. */
void pool_check_snapshot(struct pool *p);
/* Every pool: its serving snapshot still whole, and a new version in the cache. Accepts NULL. */
void pools_check_snapshots(struct pools *all);

/* Does p (may be NULL) serve: a target above 0 and a verified snapshot? */
bool pool_serves(const struct pool *p);
/* Why the last snapshot version was refused, "" when none (p may be NULL). */
const char *pool_error(const struct pool *p);
/* The version served, NULL when none (p may be NULL). */
const char *pool_serving_version(const struct pool *p);
void pool_counts(const struct pool *p, struct pool_counts *ret);
json_t *pool_status(struct pool *p);

/* A request w (NULL: anyone) arrives: counted in the demand estimate (when w may not take a
 * clone, its key at its cap: once it is handed one). The oldest paused VM when w may take one
 * (its key has taken its turn), else NULL. The caller owns it and calls
 * pool_release() when done. A replacement starts at once. */
struct vm *pool_take(struct pool *p, struct pool_waiter *w);
/* Wait for a clone: w gets one in its key's turn, when one becomes ready (handed over unprimed)
 * or, if it may not take one then, from pools_serve_waiters() once it may. Restores start if
 * there is room, in the slot of the least recently used idle clone of another language when
 * there is none. */
void pool_wait(struct pool *p, struct pool_waiter *w);
/* Waiters that may take a clone now (their key's VMs ended) get the paused ones, in turn. The
 * served() calls may free other waiters. Accepts NULL. */
void pools_serve_waiters(struct pools *all);
/* Stop waiting; nothing when w is not waiting (it was served). */
void pool_cancel(struct pool_waiter *w);
/* A VM taken from this pool (or served to a waiter) is finished with. */
void pool_release(struct pool *p);
/* A clone taken from this pool took this long to resume. */
void pool_note_resume(struct pool *p, double ms);
/* Serve snap (takes the reference; NULL: serve nothing): paused clones of the previous version
 * are destroyed, clones still restoring from it are dropped when they finish. */
void pool_serve(struct pool *p, struct snap_ref *snap);
/* Keep n paused clones when idle (and up to pool.max_size, at least n, under demand): extra
 * paused ones are destroyed (newest first), clones in use finish their request untouched. */
void pool_set_target(struct pool *p, uint32_t n);
/* Sizes from the plan (op_pool_plan(): 0 is no pool), scaled to fit max_vms. */
void pools_set_sizes(struct pools *all, const uint32_t *sizes);
/* Start the restores that fit (a VM slot was freed). Accepts NULL. */
void pools_refill(struct pools *all);
/* Destroy the least recently used paused clone of any pool to free its VM slot (for a request
 * that boots). false when no pool holds an idle clone. Accepts NULL. */
bool pools_reclaim_slot(struct pools *all);
/* Are p's restores failing (it waits out a backoff before the next one)? A request that may
 * boot cold does not wait for it. */
bool pool_backing_off(const struct pool *p);
/* When a request refused for lack of a clone of p (NULL: any VM) may try again, in ms. */
uint32_t pool_retry_after_ms(const struct pools *all, const struct pool *p);
/* How the plan was scaled to fit max_vms, "" when it was not (all may be NULL). */
const char *pools_plan_note(const struct pools *all);
/* Why a snapshot cannot be restored by this opd, or NULL when it can. */
const char *pool_snapshot_incompatible(const struct pools *all, const struct snap_manifest *m);

/* ---- poolcheck.c: the serving snapshot damaged under a running pool ---- */
/* On every snapshot check: are the serving snapshot's files still there at their sizes? */
void pool_check_damage(struct pool *p);
/* A restore from snap failed: after a few in a row, verify the serving snapshot's checksums. */
void pool_restore_failed(struct pool *p, bool from_serving);
/* The serving snapshot is damaged: report it, set it aside, serve the newest good version. */
void pool_snapshot_damaged(struct pool *p, const char *why);
