/* request.h: one exec request's life (request.c): its states and the deadline of each, the
 * cold queue and the pool waiters it sits in, its VM, and the sink its answer goes to. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/time.h>

#include "fairq.h"
#include "msg.h"
#include "pool.h"
#include "snapshot.h"

struct client;
struct op_lang;
struct opd;
struct session;
struct vm;

enum request_state {
        REQ_NEW,     /* decoded, not placed yet (again after a clone died before resuming) */
        REQ_QUEUED,  /* in the cold queue, waiting for a VM slot: queue_timeout_ms */
        REQ_WAITING, /* in its pool's waiters, waiting for a paused clone: queue_timeout_ms */
        REQ_BOOTING, /* a cold VM boots; the job goes when its agent is ready: boot_timeout_ms */
        REQ_RUNNING, /* the job was sent (to a booted VM or a resumed clone): compile deadline +
                      * timeout_ms + agent_grace_ms */
        REQ_DONE,    /* answered or cancelled, being freed: no deadline */
        _REQ_STATE_MAX,
};

/* Where the answer goes: a socket client, a batch, the Piston door. */
struct request_sink {
        /* The answer (ok or error; takes the reference). Called at most once. */
        void (*answer)(json_t *answer, void *userdata);
        /* NULL, or called once when the request is freed, answered or cancelled. */
        void (*release)(void *userdata);
        void *userdata;
};

/* What was answered in one turn of the loop (client.c), by some connections together. */
struct turn_use {
        uint64_t turn; /* the turn counted (client.c's count of turns) */
        unsigned frames;
        size_t output;
        size_t input; /* bytes of the frames read */
};

/* What one uid holds, for the per-uid caps (max_clients_per_uid, max_queued_per_uid,
 * max_vms_per_uid); kept while a connection or request of it exists. */
struct uid_use {
        LIST_ENTRY(uid_use) link;
        uid_t uid;
        unsigned refs;
        unsigned clients, queued, vms;
        unsigned door;        /* door.c: its requests in flight at the Piston door */
        struct turn_use turn; /* client.c: its connections' answers in this turn */
};

/* A request from a loopback TCP client (the Piston door): who it is is not known, all of them
 * count as this one uid. */
#define REQUEST_UID_ANON ((uid_t)-1)

/* The uid's record (made on first use, NULL when out of memory), one reference more. */
struct uid_use *uid_use_get(struct opd *d, uid_t uid);
void uid_use_put(struct uid_use *u); /* NULL: nothing */
/* Root, opd's own user: not bound by the per-uid caps. */
bool uid_exempt(const struct opd *d, uid_t uid);

struct request {
        LIST_ENTRY(request) client_link;
        struct fairq_item queue_item; /* in d->queue (REQ_QUEUED), by uid */
        struct pool_waiter waiter;    /* in a pool's waiters (REQ_WAITING), by uid */
        struct opd *d;
        enum request_state state; /* request_set_state() only */
        struct client *client;    /* the connection it came on, NULL from inside opd */
        struct uid_use *uid;      /* on whose behalf; NULL when out of memory */
        bool uid_exempt;          /* root, opd's user, an admin: no per-uid caps */
        bool vm_counted;          /* counted in uid->vms */
        struct request_sink sink;
        json_t *id;
        struct op_exec exec;
        const struct op_lang *lang;
        struct vm *vm;
        struct event *timer;              /* the current state's deadline */
        struct pool *pool;                /* warm: the VM came from this pool */
        struct session *session;          /* an exec in a session: the VM is the session's */
        bool agent_idle;                  /* the agent answered the job: its VM may serve again */
        bool retried;                     /* moved once off a clone that died before it resumed */
        char snap_version[SNAP_NAME_MAX]; /* the snapshot a warm VM came from */
        uint64_t t_start, t_vm, t_ready, t_sent, t_done; /* op_now_us() */
        /* exec-opts.c */
        /* streamed stdin not yet sent to the VM, and while request_may_retry() what was sent
         * too (from its first byte), as bytes (exec-opts.c) */
        uint8_t *stdin_held;
        size_t stdin_held_len, stdin_held_cap;
        size_t stdin_sent;   /* of stdin_held, queued for the VM already */
        size_t stdin_total;  /* bytes of streamed stdin taken */
        bool stdin_eof;      /* the client sent eof */
        bool stdin_eof_sent; /* ... and the VM was sent it */
        size_t streamed[2];  /* bytes of stdout, stderr events forwarded */
};

/* A request for the decoded exec e (taken, also on failure) in language lang, from client c
 * (NULL from inside opd), answered through sink. It starts in REQ_NEW; request_route() places
 * it. c's request list holds it until it is freed. */
int request_new(struct opd *d, json_t *id, struct op_exec *e, const struct op_lang *lang,
                struct client *c, const struct request_sink *sink, struct request **ret);
/* From inside opd (c NULL): on behalf of uid (REQUEST_UID_ANON when unknown). */
int request_new_for(struct opd *d, json_t *id, struct op_exec *e, const struct op_lang *lang,
                    struct client *c, uid_t uid, const struct request_sink *sink,
                    struct request **ret);
/* Warm when the language's pool serves a snapshot (or should), cold otherwise. */
void request_route(struct request *r);
/* The only writer of r->state: leaves the old state's queue, arms the new state's deadline (and
 * only that one), joins the new state's queue. */
void request_set_state(struct request *r, enum request_state state);
const char *request_state_name(enum request_state state);
/* Whether the program may still start over on another clone: r runs on a pooled clone whose
 * resume the VMM has not acknowledged, and it was not moved once already (on_vm_failed()). */
bool request_may_retry(const struct request *r);
/* Answer (takes reply) and free the request. */
void request_finish(struct request *r, json_t *reply);
void request_fail(struct request *r, enum op_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The caller goes away: drop the request and its VM without answering. */
void request_cancel(struct request *r);
/* The session r runs in ends under it (closed, expired, opd stopping): r no longer has a VM and
 * is answered code with why. */
void request_session_gone(struct request *r, enum op_err code, const char *why);
/* Count an answer in d->stats and hand it to the sink: every answer to an exec, from a request
 * or a refusal before one exists, goes through here. */
void request_sink_answer(struct opd *d, const struct request_sink *sink, json_t *answer);
/* When an exec refused busy or pool_exhausted may try again, in ms (its "retry_after_ms"): the
 * pools' guess of when a clone of lang is likely ready, or any VM when cold or lang is NULL. */
uint32_t request_retry_after_ms(struct opd *d, const struct op_lang *lang, bool cold);
/* A VM slot may have freed up, or a uid's VM ended: serve waiters, boot queued requests. */
void requests_kick(struct opd *d);
/* Requests waiting: the cold queue and every pool's waiters (bounded by max_queued). */
unsigned requests_queued(const struct opd *d);
