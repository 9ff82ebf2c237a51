/* opd.h: the daemon's one context struct (what every part of it shares: the loop, the config,
 * the languages, the VMs, counters, and a pointer to each subsystem) and its lifetime (daemon.c).
 * Each subsystem's interface is in its own header (client.h, exec-op.h, metrics.h, ...). */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "config.h"
#include "evtimer.h"
#include "fairq.h"
#include "lang.h"

struct access;
struct accel;
struct bgjobs;
struct clients;
struct door;
struct metrics;
struct notify;
struct pools;
struct request;
struct s3sync;
struct session_jobs;
struct sessions;
struct server;
struct snapauto;
struct uid_use;
struct vm_driver;
struct vm_host;

struct counters {
        uint64_t requests;
        uint64_t ok;
        uint64_t errors;
        uint64_t connections;
        uint64_t idle_closed;     /* connections closed by idle_timeout_ms */
        uint64_t output_paused;   /* times a client's answers passed client.output_high */
        uint64_t output_overflow; /* clients closed past client.output_max */
        uint64_t refused;         /* connections refused: caps, access, fd reserve, shutdown */
};

/* The loop's priorities: every event runs at OPD_PRI_NORMAL (libevent gives a new event the
 * middle one of OPD_PRIORITIES), but a connection that used up its turn (client.c), whose events
 * run only in turns where nothing else was ready. 0 is not used. */
#define OPD_PRIORITIES   3
#define OPD_PRI_NORMAL   1
#define OPD_PRI_DEFERRED 2

struct opd {
        struct event_base *base;
        uid_t self_uid; /* opd's own uid (read at start and after the privilege drop) */
        struct op_config cfg;
        struct op_langs langs;
        /* The VMs, their driver (->drv) and the accelerator (->accel, OP_ACCEL_AUTO until the
         * probe has decided): lib/vmm/host.h. */
        struct vm_host *vms_host;
        bool privsep;      /* opd_init(): opd-jail and the drop to jail.user (privsep.c) */
        char *vmm_version; /* e.g. "7.2.22": a snapshot loads only on the release that made it */

        /* The subsystems, each owned by its file; NULL until set up (or when off). */
        struct server *server;     /* server.c: the listening socket */
        struct clients *clients;   /* client.c: the connections */
        struct access *access;     /* access.c: who may use and who may administer */
        struct accel *accel;       /* accel.c: the KVM probe while it runs */
        struct pools *pools;       /* lib/pool: one pool per language */
        struct bgjobs *bgjobs;     /* bgjob.c: the background jobs running */
        struct snapauto *snapauto; /* snapauto.c: snapshots opd makes by itself */
        struct s3sync *s3;         /* s3sync.c */
        struct metrics *metrics;   /* metrics.c */
        struct door *door;         /* door.c: the Piston door */
        struct notify *notify;     /* notify.c: sd_notify timers */
        struct sessions *sessions; /* session.c: VMs kept across execs */
        /* session-fork.c: the forks, pauses and resumes under way */
        struct session_jobs *session_jobs;

        /* request.c: requests waiting for a VM slot to boot cold, round-robin by uid */
        struct fairq queue;
        LIST_HEAD(, uid_use) uids; /* request.c: what each uid holds (per-uid caps) */
        unsigned n_queued;         /* request.c: requests in the cold queue or a pool's waiters */

        struct event *sigchld_ev, *sigterm_ev, *sigint_ev, *sighup_ev;
        struct event *reap_ev; /* frees closed clients and VMs at a safe point of the loop */

        /* Builds the configuration again (main.c: file + command line) for a reload. */
        int (*reload_config)(struct opd *d, struct op_config *ret, char *err, size_t errlen);
        /* Called once the accelerator is known (e.g. by `opd --create-snapshot`). */
        void (*on_accel_decided)(struct opd *d);
        bool no_listen; /* one-shot modes serve no socket */
        /* The accelerator resolved to TCG and allow_tcg is not yes: no VM starts, every request
         * is answered "unavailable" (vms_host->accel stays OP_ACCEL_AUTO). */
        bool tcg_refused;
        int exit_code;

        struct counters stats;
        uint64_t started_us;
        bool stopping;
};

/* ---- daemon.c: lifetime ---- */
int opd_init(struct opd *d);
/* opd_init() with the VMM driver given (drv_data: the driver instance's own, e.g. a fake VMM's
 * settings in unit tests) instead of the one cfg.vmm names. */
int opd_init_driver(struct opd *d, const struct vm_driver *drv, void *drv_data);
void opd_done(struct opd *d);
/* Ask the loop to free closed objects soon. */
void opd_schedule_reap(struct opd *d);
void opd_stop(struct opd *d);
