/* notify.c: the service manager's view of opd over sd_notify: READY=1 once the socket is bound,
 * the accelerator decided and the pools hold their configured minimum, STATUS= lines with the
 * pools' fill, WATCHDOG=1 at half the watchdog interval, STOPPING=1. No-ops outside systemd. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "client.h"
#include "host.h"
#include "log.h"
#include "notify.h"
#include "opd.h"
#include "pool.h"
#include "vmm.h"

#define STATUS_EVERY_MS 1000

struct notify {
        bool ready; /* READY=1 sent */
        char last_status[1024];
        struct event *tick_ev, *watchdog_ev;
        uint32_t watchdog_ms;
};

/* Every pool that can serve (it has a verified snapshot) holds min(ready_min_warm, target)
 * paused clones, and no snapshot is still being verified. */
static bool pools_ready(struct opd *d)
{
        for (size_t i = 0; i < d->langs.n; i++) {
                struct pool *p = pool_for(d->pools, &d->langs.v[i]);
                struct pool_counts n;

                if (!p)
                        continue;
                pool_counts(p, &n);
                if (n.verifying)
                        return false;
                if (n.serving &&
                    n.ready < (d->cfg.ready_min_warm < n.target ? d->cfg.ready_min_warm : n.target))
                        return false;
        }
        return true;
}

static void status_line(struct opd *d, char *buf, size_t len)
{
        size_t off;

        off = (size_t)snprintf(buf, len, "%s; ",
                               d->tcg_refused ? "tcg, refusing to serve (allow_tcg = no)"
                               : d->vms_host->accel == OP_ACCEL_AUTO
                                   ? "probing KVM"
                                   : op_accel_name(d->vms_host->accel));
        for (size_t i = 0; i < d->langs.n && off < len; i++) {
                struct pool *p = pool_for(d->pools, &d->langs.v[i]);
                struct pool_counts n;

                if (!p)
                        continue;
                pool_counts(p, &n);
                off += (size_t)snprintf(buf + off, len - off, "%s %u/%u warm%s, ",
                                        d->langs.v[i].name, n.ready, n.serving ? n.target : 0,
                                        n.serving ? "" : " (no snapshot)");
        }
        if (off < len)
                snprintf(buf + off, len - off, "%u VMs, %u clients", d->vms_host->n_vms,
                         clients_count(d));
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
        struct opd *d = arg;
        struct notify *n = d->notify;
        char status[1024];

        if (d->stopping)
                return;
        /* Refusing under TCG is a decided, steady state too: up, answering "unavailable". */
        if (!n->ready &&
            (d->tcg_refused || (d->vms_host->accel != OP_ACCEL_AUTO && pools_ready(d)))) {
                n->ready = true;
                sd_notify(0, "READY=1");
                log_info("ready");
        }
        status_line(d, status, sizeof(status));
        if (strcmp(status, n->last_status) != 0) {
                snprintf(n->last_status, sizeof(n->last_status), "%s", status);
                sd_notifyf(0, "STATUS=%s", status);
        }
        op_timer_arm_ms(n->tick_ev, n->ready ? STATUS_EVERY_MS : 100);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
        struct opd *d = arg;

        sd_notify(0, "WATCHDOG=1");
        op_timer_arm_ms(d->notify->watchdog_ev, d->notify->watchdog_ms);
}

int notify_start(struct opd *d)
{
        struct notify *n;
        uint64_t usec = 0;

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->tick_ev = evtimer_new(d->base, on_tick, d);
        if (!n->tick_ev) {
                free(n);
                return -ENOMEM;
        }
        d->notify = n;
        op_timer_arm_ms(n->tick_ev, 0);
        if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
                n->watchdog_ms = (uint32_t)(usec / 2000);
                n->watchdog_ev = evtimer_new(d->base, on_watchdog, d);
                if (!n->watchdog_ev)
                        return -ENOMEM;
                sd_notify(0, "WATCHDOG=1");
                op_timer_arm_ms(n->watchdog_ev, n->watchdog_ms);
                log_info("watchdog: every %u ms", n->watchdog_ms);
        }
        return 0;
}

void notify_stop(struct opd *d)
{
        struct notify *n = d->notify;

        if (!n)
                return; /* never started (one-shot modes), or stopped already */
        sd_notify(0, "STOPPING=1");
        event_free(n->tick_ev);
        if (n->watchdog_ev)
                event_free(n->watchdog_ev);
        free(n);
        d->notify = NULL;
}
