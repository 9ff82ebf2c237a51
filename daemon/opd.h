/* opd.h: the daemon's one context struct and the objects hanging off it (clients), with the
 * functions each file of the daemon exports; requests are in request.h, pools in pool.h, VMs in
 * lib/vmm (vm.h, host.h). */
#pragma once

#include <event2/event.h>
#include <event2/bufferevent.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "config.h"
#include "host.h"
#include "lang.h"
#include "agent-msg.h"
#include "msg.h"
#include "snap-ref.h"
#include "snapshot.h"
#include "vm.h"
#include "vmm.h"

struct opd;
struct s3sync;
struct client;
struct request;
struct pool;
struct pools;
struct vm;
struct door_req;
struct batch;

struct counters {
        uint64_t requests;
        uint64_t ok;
        uint64_t errors;
        uint64_t connections;
        uint64_t idle_closed; /* connections closed by idle_timeout_ms */
};

/* metrics.c: per language, exec outcomes and latency histograms (buckets in ms). */
#define METRICS_BUCKETS 14 /* 1 2 5 10 25 50 100 250 500 1000 2500 5000 10000 +Inf */
enum { METRICS_QUEUE, METRICS_BOOT_OR_RESUME, METRICS_RUN, METRICS_TOTAL, _METRICS_PHASES };
struct metrics_hist {
        uint64_t bucket[METRICS_BUCKETS]; /* not cumulative: rendered cumulative */
        uint64_t count;
        double sum;
};
struct metrics_lang {
        uint64_t outcome[1 + _OP_ERR_MAX];            /* [0]: ok, [1 + enum op_err] */
        struct metrics_hist hist[2][_METRICS_PHASES]; /* [0]: warm, [1]: cold */
};
/* httpd.c: one HTTP listener (metrics.listen, piston.listen). */
struct httpd {
        const char *key; /* the config key, for logs */
        struct evhttp *http;
        struct evconnlistener *listener; /* owned by http once bound */
        struct event *retry_ev;          /* accepting again after EMFILE */
        char *unix_path;                 /* unlinked at close */
};

struct metrics {
        struct metrics_lang *langs; /* d->langs.n of them */
        struct httpd httpd;         /* metrics.listen; .http NULL when off */
};

/* door.c: the Piston-compatible HTTP door (piston.listen). */
struct door {
        struct httpd httpd; /* .http NULL when off */
        LIST_HEAD(, door_req) reqs;
        unsigned n_reqs;
        uint64_t next_id;
};

struct opd {
        struct event_base *base;
        struct op_config cfg;
        struct op_langs langs;
        /* The VMs, their driver (->drv) and the accelerator (->accel, OP_ACCEL_AUTO until the
         * probe has decided): lib/vmm/host.h. */
        struct vm_host *vms_host;

        gid_t access_gid; /* (gid_t)-1: anyone who can connect */
        gid_t admin_gid;  /* (gid_t)-1: root only */
        int listen_fd;
        bool socket_activated; /* the socket came from systemd: never unlink it */
        struct event *listen_ev;
        struct event *accept_retry_ev; /* re-enables accepting after EMFILE */
        struct event *sigchld_ev, *sigterm_ev, *sigint_ev;
        struct event *reap_ev; /* frees closed clients and VMs at a safe point of the loop */

        LIST_HEAD(, client) clients;
        TAILQ_HEAD(, request) queue; /* request.c: waiting for a VM slot to boot cold */
        LIST_HEAD(, client) closing_clients;
        unsigned n_clients;
        unsigned n_queued; /* request.c: requests in the cold queue or a pool's waiters */

        struct vm *probe_vm; /* accel probe in progress */
        struct event *probe_timer;

        struct pools *pools; /* lib/pool: one pool per language */
        unsigned n_bgjobs;
        char *vmm_version; /* e.g. "7.2.22": a snapshot loads only on the release that made it */

        /* Builds the configuration again (main.c: file + command line) for a reload. */
        int (*reload_config)(struct opd *d, struct op_config *ret, char *err, size_t errlen);
        struct event *sighup_ev;
        /* Called once the accelerator is known (e.g. by `opd --create-snapshot`). */
        void (*on_accel_decided)(struct opd *d);
        bool no_listen; /* one-shot modes serve no socket */
        bool notified_ready;
        char last_status[1024];
        struct event *notify_ev, *watchdog_ev;
        uint32_t watchdog_ms;
        int exit_code;

        struct s3sync *s3; /* s3sync.c */
        struct counters stats;
        struct metrics metrics;
        struct door door;
        uint64_t started_us;
        bool stopping;
};

static inline void timer_arm_ms(struct event *ev, uint32_t ms)
{
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        evtimer_add(ev, &tv);
}

/* ---- server.c: listening socket ---- */
int server_listen(struct opd *d);
void server_close(struct opd *d);

/* ---- client.c: one connection ---- */
struct client {
        LIST_ENTRY(client) link;
        struct opd *d;
        struct bufferevent *bev;
        struct event *read_timer; /* a frame started and did not complete */
        struct event *idle_timer; /* idle_timeout_ms since the last byte read */
        uid_t uid;
        gid_t gid;
        pid_t pid;
        unsigned inflight;
        LIST_HEAD(, request) requests;
        LIST_HEAD(, reply_slot) slots;
        bool closing;
        bool read_eof;  /* the peer half-closed: answer what was read, then close */
        bool may_use;   /* exec, status, ping (access.group) */
        bool may_admin; /* snapshot management (root, access.admin_group) */
};

int client_new(struct opd *d, int fd);
/* Queue an answer; takes the reference to obj. */
void client_send(struct client *c, json_t *obj);
/* A request of c finished: a half-closed client with nothing left in flight is closed. */
void client_request_done(struct client *c);
/* Flush what is queued and close; the client is freed at a safe point. */
void client_close(struct client *c, const char *why);
void clients_reap(struct opd *d);

/* An answer owed later by something that is not an exec request (e.g. snapshot create); it
 * survives the client going away, and then its answer is dropped. */
struct reply_slot {
        LIST_ENTRY(reply_slot) link;
        struct client *client;
        json_t *id;
};
struct reply_slot *reply_slot_new(struct client *c, json_t *id);
/* Send (takes obj) and free the slot. */
void reply_slot_send(struct reply_slot *s, json_t *obj);
void clients_free_all(struct opd *d);

/* ---- access.c: peer credentials ---- */
int access_init(struct opd *d);
void access_classify(struct opd *d, struct client *c);
/* May this peer use the service (exec, status, ping)? */
bool access_may_use(struct opd *d, uid_t uid, gid_t gid, pid_t pid);

/* ---- ops.c: the operation table ---- */
struct op_entry {
        const char *name;
        /* Handle a request; answer now with client_send() or later. Takes nothing. */
        void (*handler)(struct client *c, json_t *id, json_t *req);
        bool admin; /* root and access.admin_group only; the others need access.group */
};
const struct op_entry *op_lookup(const char *name);
/* Ops that take nothing but "id" and "op" (ping, status, metrics, reload): a typo is refused
 * rather than ignored. false: the refusal was sent. */
bool op_only_id_op(struct client *c, json_t *id, json_t *req);
void op_snapshot(struct client *c, json_t *id, json_t *req); /* ops-snapshot.c */
void op_dispatch(struct client *c, json_t *req);

/* ---- exec.c: an exec from decode to the job for the agent and the answer ---- */
/* The answer to an exec submitted from inside opd (the Piston door); takes the reference. */
typedef void (*exec_done_fn)(json_t *answer, void *userdata);

void exec_handle(struct client *c, json_t *id, json_t *req);
/* Validate and start one exec (of a batch when b is set). */
void exec_submit(struct client *c, json_t *id, json_t *req, struct batch *b);
/* The same exec for a caller that is not a socket client: req is a protocol exec request (its
 * "id" names it in logs). done() is called exactly once with the answer, ok or error, unless
 * the caller drops the request with request_cancel() first; it may be called before
 * exec_submit_cb() returns (a refusal, busy), so the caller must not touch what done() frees.
 * *ret_r is set, before anything can finish, to the request while it runs, and left NULL when
 * it never started. */
void exec_submit_cb(struct opd *d, json_t *req, exec_done_fn done, void *userdata,
                    struct request **ret_r);
/* The VM is ready for the job (booted, or resumed with the job sent at once): build it, send
 * it with the stdin frames held so far, and the request runs. */
void exec_send_job(struct request *r);
void exec_on_vm_answer(struct vm *vm, json_t *ans, void *userdata);

/* ---- exec-opts.c: streaming, stdin frames, limits and files in the job, exec_batch ---- */
struct batch {
        struct client *client; /* NULL once the client is gone */
        json_t *id;
        unsigned pending; /* members still running */
        unsigned count, ok, failed;
};
/* The job's fields beyond protocol v1's core (limits, stream, files, entry point). */
int exec_job_add_opts(struct request *r, json_t *job);
/* What the agent's answer and events to r may hold (agent-msg.h). */
void exec_agent_limits(const struct request *r, struct op_agent_limits *ret);
/* The client's answer's fields beyond the core, from the decoded agent answer. */
int exec_reply_add_opts(struct request *r, const struct op_agent_exec *x, json_t *reply);
void exec_on_vm_event(struct vm *vm, json_t *ev, void *userdata);
/* The job was sent: stdin frames held so far follow it. */
void exec_flush_stdin(struct request *r);
/* A member of a batch was answered: count its outcome. */
void batch_count(struct batch *b, json_t *reply);
/* A member of a batch is gone: the last one sends the batch's answer and frees it. */
void batch_release(struct batch *b);
void op_stdin(struct client *c, json_t *id, json_t *req);
void op_exec_batch(struct client *c, json_t *id, json_t *req);

/* ---- snapcreate.c: boot, warm, pause, save, install ---- */
typedef void (*snapcreate_done_fn)(struct opd *d, int r, const char *msg,
                                   const struct snap_manifest *m, void *userdata);
/* 0: started, done() will be called exactly once; <0: not started (done() is not called). */
int snapcreate_start(struct opd *d, const struct op_lang *lang, snapcreate_done_fn done,
                     void *userdata);

/* ---- bgjob.c: slow work off the loop ---- */
/* Runs in a forked child: return 0 or -errno, with a message in msg. */
typedef int (*bgjob_fn)(void *arg, char *msg, size_t msglen);
typedef void (*bgjob_done_fn)(struct opd *d, int r, const char *msg, void *userdata);
int bgjob_start(struct opd *d, bgjob_fn fn, void *arg, bgjob_done_fn done, void *userdata);

/* ---- s3sync.c: snapshot versions from S3 into the cache (docs/s3.md) ---- */
struct s3_sync_stats {
        uint64_t syncs;
        uint64_t failures; /* a language that failed at a location */
        uint64_t chunks_fetched;
        uint64_t chunks_reused; /* already staged or copied from an installed version */
        uint64_t bytes_fetched;
        uint64_t retries; /* requests retried, all runs */
};
int s3sync_init(struct opd *d); /* syncs at once when s3.bucket is set */
void s3sync_done(struct opd *d);
void s3sync_reload(struct opd *d);
/* Sync now; the slot is answered with every language's outcome. -ENOENT: no bucket set. */
int s3sync_request(struct opd *d, struct reply_slot *slot);
const struct s3_sync_stats *s3sync_stats(struct opd *d);

/* ---- accel.c: choose KVM or TCG ---- */
/* Resolve d->vms_host->accel; when "auto" and /dev/kvm looks usable, prove it by booting. Calls
 * requests_kick() once decided. */
int accel_start(struct opd *d);

/* ---- reload.c: SIGHUP and the reload op ---- */
int opd_reload(struct opd *d, char *err, size_t errlen);

/* ---- notify.c: sd_notify READY/STATUS/WATCHDOG/STOPPING ---- */
int notify_start(struct opd *d);
void notify_stop(struct opd *d);

/* ---- metrics.c: Prometheus text exposition, `metrics` op, metrics.listen ---- */
int metrics_init(struct opd *d); /* after the pools; serves metrics.listen unless no_listen */
void metrics_done(struct opd *d);
/* One finished exec; outcome is an error code name, NULL for ok. */
void metrics_observe_exec(struct opd *d, const struct request *r, const char *outcome,
                          json_t *reply);
char *metrics_render(struct opd *d); /* malloc'd, NULL when out of memory */
void op_metrics(struct client *c, json_t *id, json_t *req);

/* ---- httpd.c: loopback or UNIX-socket HTTP listeners ---- */
/* Listen on spec (op_config_local_listen() syntax) with bodies up to body_max bytes; a UNIX
 * socket gets socket_mode. The caller sets its callbacks on ret->http. Logs its failures. */
int httpd_open(struct opd *d, const char *key, const char *spec, size_t body_max,
               struct httpd *ret);
void httpd_pause(struct httpd *h); /* stop accepting (shutdown) */
void httpd_close(struct httpd *h);

/* ---- door.c: Piston v2 API over HTTP: /api/v2/runtimes, /api/v2/execute ---- */
int door_init(struct opd *d);  /* serves piston.listen unless empty or no_listen */
void door_stop(struct opd *d); /* answers every request in flight "shutting down" */
void door_done(struct opd *d);

/* ---- daemon.c: lifetime ---- */
int opd_init(struct opd *d);
void opd_done(struct opd *d);
/* Ask the loop to free closed objects soon. */
void opd_schedule_reap(struct opd *d);
void opd_stop(struct opd *d);
