/* reload.c: SIGHUP and the "reload" op: the configuration is built again from the file and the
 * command line and applied without a restart: limits, timeouts, pool sizes, access groups.
 * Keys naming places or the machine (socket, directories, languages, qemu, accel) wait for a
 * restart; an invalid file changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "access.h"
#include "cleanup.h"
#include "log.h"
#include "opd.h"
#include "pool.h"
#include "poolplan.h"
#include "reload.h"
#include "s3sync.h"

/* A restart-only string key: keep the running value. */
static void keep_str(const char *key, char **cur, char **next)
{
        if (strcmp(*cur, *next) != 0)
                log_warn("reload: %s changed (%s -> %s): takes effect after a restart", key, *cur,
                         *next);
        free(*next);
        *next = strdup(*cur);
}

static int apply_pool_sizes(struct opd *d)
{
        _cleanup_free_ uint32_t *targets = calloc(d->langs.n + 1, sizeof(*targets));
        char err[512];
        int r;

        if (!targets)
                return -ENOMEM;
        /* A disabled language keeps no clones; over the memory budget, nothing changes. */
        r = op_pool_plan(&d->cfg, &d->langs, targets, err, sizeof(err));
        if (r < 0) {
                log_error("reload: %s", err);
                return r;
        }
        if (d->pools)
                pools_set_sizes(d->pools, targets); /* scaled to fit max_vms */
        return 0;
}

int opd_reload(struct opd *d, char *err, size_t errlen)
{
        struct op_config next, old;
        int r;

        sd_notify(0, "RELOADING=1");
        r = d->reload_config ? d->reload_config(d, &next, err, errlen) : -EOPNOTSUPP;
        if (r < 0) {
                log_error("reload refused, the running configuration stays: %s", err);
                sd_notify(0, "READY=1");
                return r;
        }
        keep_str("socket", &d->cfg.socket_path, &next.socket_path);
        keep_str("images_dir", &d->cfg.images_dir, &next.images_dir);
        keep_str("languages", &d->cfg.languages_file, &next.languages_file);
        keep_str("run_dir", &d->cfg.run_dir, &next.run_dir);
        keep_str("cache_dir", &d->cfg.cache_dir, &next.cache_dir);
        keep_str("qemu", &d->cfg.qemu_binary, &next.qemu_binary);
        keep_str("metrics.listen", &d->cfg.metrics_listen, &next.metrics_listen);
        keep_str("vmm", &d->cfg.vmm, &next.vmm);
        keep_str("firecracker.binary", &d->cfg.fc.binary, &next.fc.binary);
        keep_str("firecracker.jailer", &d->cfg.fc.jailer, &next.fc.jailer);
        keep_str("firecracker.jailer.chroot_base", &d->cfg.fc.chroot_base, &next.fc.chroot_base);
        keep_str("piston.listen", &d->cfg.piston_listen, &next.piston_listen);
        if (next.socket_mode != d->cfg.socket_mode || next.accel != d->cfg.accel)
                log_warn("reload: socket_mode and accel take effect after a restart");
        next.socket_mode = d->cfg.socket_mode;
        next.accel = d->cfg.accel;
        if (!next.socket_path || !next.images_dir || !next.languages_file || !next.run_dir ||
            !next.cache_dir || !next.qemu_binary || !next.metrics_listen || !next.vmm ||
            !next.fc.binary || !next.fc.jailer || !next.fc.chroot_base || !next.piston_listen) {
                op_config_free(&next);
                snprintf(err, errlen, "out of memory");
                sd_notify(0, "READY=1");
                return -ENOMEM;
        }
        /* Which languages are served may change; the registry itself needs a restart. */
        r = op_langs_enable(&d->langs, next.languages_enabled, err, errlen);
        if (r < 0) {
                log_error("reload refused, the running configuration stays: %s", err);
                op_config_free(&next);
                sd_notify(0, "READY=1");
                return r;
        }
        old = d->cfg;
        d->cfg = next;
        r = access_init(d);
        if (r >= 0)
                r = apply_pool_sizes(d);
        if (r < 0) {
                /* Checked by op_config_check() already; a group may have vanished meanwhile. */
                snprintf(err, errlen,
                         "applying the new configuration failed; restored the old one");
                op_config_free(&d->cfg);
                d->cfg = old;
                op_langs_enable(&d->langs, d->cfg.languages_enabled, NULL, 0);
                access_init(d);
                apply_pool_sizes(d);
                sd_notify(0, "READY=1");
                return r;
        }
        op_config_free(&old);
        s3sync_reload(d);
        log_info("configuration reloaded");
        sd_notify(0, "READY=1");
        return 0;
}
