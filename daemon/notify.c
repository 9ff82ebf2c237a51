/* notify.c: the service manager's view of opd over sd_notify: READY=1 once the socket is bound,
 * the accelerator decided and the pools hold their configured minimum, STATUS= lines with the
 * pools' fill, WATCHDOG=1 at half the watchdog interval, STOPPING=1. No-ops outside systemd. */
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "opd.h"
#include "pool.h"

#define STATUS_EVERY_MS 1000

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
                               d->vms_host->accel == OP_ACCEL_AUTO
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
                         d->n_clients);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
        struct opd *d = arg;
        char status[1024];

        if (d->stopping)
                return;
        if (!d->notified_ready && d->vms_host->accel != OP_ACCEL_AUTO && pools_ready(d)) {
                d->notified_ready = true;
                sd_notify(0, "READY=1");
                log_info("ready");
        }
        status_line(d, status, sizeof(status));
        if (strcmp(status, d->last_status) != 0) {
                snprintf(d->last_status, sizeof(d->last_status), "%s", status);
                sd_notifyf(0, "STATUS=%s", status);
        }
        timer_arm_ms(d->notify_ev, d->notified_ready ? STATUS_EVERY_MS : 100);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
        struct opd *d = arg;

        sd_notify(0, "WATCHDOG=1");
        timer_arm_ms(d->watchdog_ev, d->watchdog_ms);
}

int notify_start(struct opd *d)
{
        uint64_t usec = 0;

        d->notify_ev = evtimer_new(d->base, on_tick, d);
        if (!d->notify_ev)
                return -ENOMEM;
        timer_arm_ms(d->notify_ev, 0);
        if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
                d->watchdog_ms = (uint32_t)(usec / 2000);
                d->watchdog_ev = evtimer_new(d->base, on_watchdog, d);
                if (!d->watchdog_ev)
                        return -ENOMEM;
                sd_notify(0, "WATCHDOG=1");
                timer_arm_ms(d->watchdog_ev, d->watchdog_ms);
                log_info("watchdog: every %u ms", d->watchdog_ms);
        }
        return 0;
}

void notify_stop(struct opd *d)
{
        if (!d->notify_ev)
                return; /* never started (one-shot modes), or stopped already */
        sd_notify(0, "STOPPING=1");
        if (d->notify_ev) {
                event_free(d->notify_ev);
                d->notify_ev = NULL;
        }
        if (d->watchdog_ev) {
                event_free(d->watchdog_ev);
                d->watchdog_ev = NULL;
        }
}
