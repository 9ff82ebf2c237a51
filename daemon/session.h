/* session.h: a session (session.c): a VM kept across execs for the uid that opened it, its one
 * state and the deadline each state has, the registry of sessions, and the session operations
 * (session_open, session_exec, session_list, session_close). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "msg-session.h"
#include "pool.h"
#include "snapshot.h"

struct client;
struct op_lang;
struct opd;
struct reply_slot;
struct request;
struct uid_use;
struct vm;

enum session_state {
        SESSION_NEW,     /* made, no VM asked for yet: no deadline */
        SESSION_WAITING, /* in its pool's waiters for a paused clone: queue_timeout_ms */
        SESSION_BOOTING, /* a cold VM boots (its language has no pool): boot_timeout_ms */
        SESSION_IDLE,    /* its VM runs, no exec: idle_timeout_ms, capped by the lifetime */
        SESSION_BUSY,    /* one exec runs in its VM (s->exec): the lifetime */
        SESSION_SAVING,  /* its VM is being saved to disk: no deadline of its own */
        SESSION_PAUSED,  /* saved to disk, no VM: the lifetime */
        SESSION_CLOSED,  /* closed or expired, being freed: no deadline */
        _SESSION_STATE_MAX,
};

/* Why a session ends, for its log line and the counters. */
enum session_end {
        SESSION_END_CLOSED,   /* session_close */
        SESSION_END_IDLE,     /* idle_timeout_ms passed without an exec */
        SESSION_END_LIFETIME, /* max_lifetime_ms passed */
        SESSION_END_FAILED,   /* its VM failed, or an exec left it unusable */
        SESSION_END_STOPPING, /* opd stops */
        SESSION_END_REPL,     /* a repl session's interpreter ended in an exec */
        _SESSION_END_MAX,
};

/* A session opd opens for itself (exec_cases, daemon/cases.c) rather than for a client: told
 * when it has a running VM and is IDLE (each time: opened, resumed after a save), and when it
 * ends. No client operation sees it (session_find(), session_list), though it counts against
 * its uid's quotas like any session. */
struct session_owner {
        void (*ready)(struct session *s, void *data);
        /* s is CLOSED and freed when this returns: the owner forgets it. */
        void (*ended)(struct session *s, enum session_end why, void *data);
};

struct session {
        LIST_ENTRY(session) link; /* in the registry */
        struct opd *d;
        char id[OP_SESSION_ID_LEN + 1]; /* libuuid, canonical lower-case text */
        /* The name of its kept directory in the guest (the job's "workdir"): its id, or the
         * session's it was forked from (the guest's files are that one's). */
        char workdir[OP_SESSION_ID_LEN + 1];
        enum session_state state; /* session_set_state() only */
        uid_t uid;                /* who opened it: the only uid that may use it */
        struct uid_use *use;      /* its uid's record (per-uid VM count) */
        bool vm_counted;          /* its VM counted in use->vms */
        const struct op_lang *lang;
        struct vm *vm;                    /* the VM (IDLE, BUSY, SAVING), NULL otherwise */
        struct pool *pool;                /* the VM came from this pool (released with it) */
        char snap_version[SNAP_NAME_MAX]; /* the snapshot a warm VM came from */
        struct pool_waiter waiter;        /* SESSION_WAITING */
        struct event *timer;              /* the current state's deadline */
        struct reply_slot *open_reply;    /* the session_open's answer, until it is sent */
        struct request *exec;             /* the exec running (SESSION_BUSY) */
        json_t *limits;                   /* default limit fields of each exec (an object) */
        uint32_t idle_timeout_ms, max_lifetime_ms;
        uint64_t t_open, t_ready, t_last; /* op_now_us(): opened, VM running, last exec ended */
        uint64_t execs;                   /* execs answered */
        enum session_end end;             /* why it ended (SESSION_CLOSED) */
        bool timer_is_lifetime; /* the deadline armed is the lifetime's end (not the idle one) */
        const struct session_owner *owner; /* NULL: a client's session */
        void *owner_data;
        /* "repl": its execs run in one interpreter kept in the guest (its language's warm
         * runner); reseed: the next exec tells it to reseed (the VM is a fork's copy); ended: an
         * exec's answer said it is gone, and the session ends with that exec. */
        bool repl, repl_reseed, repl_ended;
};

/* The registry (d->sessions), made once at start; freed (every session destroyed) at exit. */
int sessions_init(struct opd *d);
void sessions_free(struct opd *d);
/* opd stops: every session is destroyed (an exec running in one is answered by its request). */
void sessions_stop(struct opd *d);

/* Counts for status and metrics. */
struct session_counts {
        unsigned open;   /* sessions alive (any state but CLOSED) */
        unsigned busy;   /* running an exec */
        unsigned paused; /* saved to disk, no VM */
        uint64_t opened, closed, expired, failed, refused;
};
void sessions_counts(const struct opd *d, struct session_counts *ret);

const char *session_state_name(enum session_state state);

/* The session with this id that uid may use (its own; any when admin), or NULL: what another
 * uid gets is the same as for an id that does not exist. A session opd owns is never found. */
struct session *session_find(struct opd *d, const char *id, uid_t uid, bool admin);
/* The session with this id of uid, also one opd owns (for opd's own bookkeeping), or NULL. */
struct session *session_lookup(struct opd *d, const char *id, uid_t uid);
/* The not_found answer to a request naming session sid: another uid's, gone, or never made. */
json_t *session_not_found(json_t *id, const char *sid);
/* Sessions of uid (any state but CLOSED); all uids' with uid == (uid_t)-1. */
unsigned sessions_of(const struct opd *d, uid_t uid);
/* May uid have one session more (session.max, session.max_per_uid)? false: the refusal's text
 * in why. */
bool session_quota_ok(const struct opd *d, uid_t uid, char *why, size_t whylen);

/* A new session of uid in lang, in SESSION_NEW, with a fresh id, its idle timeout and lifetime
 * (ms) and its default exec limits (an object, taken: a reference is kept; NULL: none). The
 * caller has checked the quota. */
int session_new(struct opd *d, const struct op_lang *lang, uid_t uid, uint32_t idle_timeout_ms,
                uint32_t max_lifetime_ms, json_t *limits, struct session **ret);
/* Find s (NEW) a VM: a clone from its language's pool when that serves (SESSION_WAITING until
 * one is ready), else a cold boot (SESSION_BOOTING) when a VM slot is free; IDLE once it has
 * one, and the open's answer (if any) is sent. A failure ends the session (answered). */
void session_start(struct session *s);
/* Give s (NEW, made by session_new()) the id it had before (a session saved to disk and
 * restored): -EINVAL when id is no session id, -EEXIST when a session has it. */
int session_set_id(struct session *s, const char *id);
/* The only writer of s->state: arms the deadline the new state has (the idle timeout, the
 * lifetime's end, a wait's or boot's bound) and drops any other, and counts. */
void session_set_state(struct session *s, enum session_state state);
/* Give the session a running VM (READY or RESUMING: a clone resumed, a VM booted), from pool
 * (NULL when none): it is counted against its uid, its events go to the session, and the session
 * is IDLE. */
void session_attach_vm(struct session *s, struct vm *vm, struct pool *pool);
/* Take the VM away from the session (to save it, to fork it): its events no longer the
 * session's; the caller owns it and sets the session's next state. Its count against the
 * session's uid goes with it: *ret_use is a reference to the uid's record whose vms counts it,
 * the caller's to drop (vms and the reference) once the VM is destroyed or given back with
 * session_attach_vm(), which counts it for the session again; whoever holds the VM counts it, so
 * a session that ends meanwhile leaves it counted. *ret_use is NULL when the session did not
 * count it (out of memory: the session keeps counting it until it ends). Its pool, if any, is
 * still the session's (*ret_pool: the caller takes it, NULL when not wanted: released now). */
struct vm *session_detach_vm(struct session *s, struct pool **ret_pool, struct uid_use **ret_use);
/* s (NEW, or PAUSED and being resumed) gets vm, being restored for it from a saved VM: counted
 * against its uid from now on, as a VM that boots is, and SESSION_BOOTING; session_attach_vm()
 * once it has loaded and runs. */
void session_restoring(struct session *s, struct vm *vm);
/* s (SAVING) was saved to disk and the VM taken with session_detach_vm() destroyed (the caller
 * dropped its count): SESSION_PAUSED. */
void session_saved(struct session *s);
/* End the session: its VM destroyed (the pool refills), the open's answer (if still owed) sent
 * as an error, an exec running cancelled without an answer unless the request ends it itself.
 * Freed at once; s is gone afterwards. */
void session_destroy(struct session *s, enum session_end why);

/* ---- request.c's side: an exec in a session ---- */
/* The request r starts in s (IDLE): s becomes BUSY and lends r its VM. */
void session_exec_start(struct session *s, struct request *r);
/* The exec in s ended (r answered or cancelled). ok: the agent answered it, its VM is idle and
 * s is IDLE again; otherwise the session ends (SESSION_END_FAILED). Either way r no longer holds
 * the VM. */
void session_exec_end(struct session *s, bool ok);

/* ---- the operations (ops.c's table) ---- */
void op_session_open(struct client *c, json_t *id, json_t *req);
void op_session_exec(struct client *c, json_t *id, json_t *req);
void op_session_list(struct client *c, json_t *id, json_t *req);
void op_session_close(struct client *c, json_t *id, json_t *req);
