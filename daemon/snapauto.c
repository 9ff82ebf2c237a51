/* snapauto.c: the snapshots opd makes by itself (snapshot.create_missing) for served languages
 * that have an image but no snapshot to serve and no other source, and why each empty pool is
 * empty (status). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "host.h"
#include "log.h"
#include "opd.h"
#include "pool.h"
#include "snapauto.h"
#include "snapcreate.h"
#include "util.h"

#define SNAPAUTO_CHECK_MS 2000

struct file_id {
        dev_t dev;
        ino_t ino;
        struct timespec mtime;
};

/* One language's attempts, by name (a reload may load the languages again). */
struct snapauto_lang {
        char *name;
        /* The image the last attempt was made from (kernel, initrd, rootfs): a new one (images
         * are replaced by rename: a new inode) is tried again, the same one is not. */
        struct file_id image[3];
        bool tried;
        char *error; /* the last attempt's failure, NULL when it succeeded or none failed */
};

struct snapauto {
        struct event *timer;
        struct snapauto_lang *v;
        size_t n;
        char *creating; /* the language whose snapshot is being made, NULL when none */
        uint64_t creating_since_us;
};

static struct snapauto_lang *lang_state(struct snapauto *s, const char *name, bool add)
{
        struct snapauto_lang *v;

        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->v[i].name, name) == 0)
                        return &s->v[i];
        if (!add)
                return NULL;
        v = realloc(s->v, (s->n + 1) * sizeof(*v));
        if (!v)
                return NULL;
        s->v = v;
        v = &s->v[s->n];
        *v = (struct snapauto_lang){.name = strdup(name)};
        if (!v->name)
                return NULL;
        s->n++;
        return v;
}

/* The files a snapshot of lang is made from; -errno when one is missing. */
static int image_id(const struct opd *d, const struct op_lang *lang, struct file_id ret[3])
{
        const char *paths[3] = {d->vms_host->kernel, d->vms_host->initrd, lang->rootfs};
        struct stat st;

        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                if (!paths[i]) {
                        ret[i] = (struct file_id){0};
                        continue;
                }
                if (stat(paths[i], &st) < 0)
                        return -errno;
                ret[i] = (struct file_id){st.st_dev, st.st_ino, st.st_mtim};
        }
        return 0;
}

static bool same_image(const struct snapauto_lang *l, const struct file_id id[3])
{
        for (size_t i = 0; i < ELEMENTSOF(l->image); i++)
                if (l->image[i].dev != id[i].dev || l->image[i].ino != id[i].ino ||
                    l->image[i].mtime.tv_sec != id[i].mtime.tv_sec ||
                    l->image[i].mtime.tv_nsec != id[i].mtime.tv_nsec)
                        return false;
        return l->tried;
}

/* Would opd serve this language from a pool, were there a snapshot? */
static bool pool_wanted(const struct pool *p)
{
        struct pool_counts c;

        if (!p)
                return false;
        pool_counts(p, &c);
        return c.target > 0 || c.standing > 0;
}

static bool has_current(const struct opd *d, const char *lang)
{
        _cleanup_free_ char *path = NULL;
        struct stat st;

        if (asprintf(&path, "%s/%s/current", d->cfg.cache_dir, lang) < 0)
                return true; /* cannot tell: do nothing */
        return lstat(path, &st) == 0;
}

/* Does lang need a snapshot made now? */
static bool needs_snapshot(struct opd *d, const struct op_lang *lang)
{
        struct pool *p = lang->available && lang->enabled ? pool_for(d->pools, lang) : NULL;
        struct pool_counts c;

        if (!pool_wanted(p) || pool_serves(p))
                return false;
        pool_counts(p, &c);
        if (c.verifying)
                return false;
        /* A version in the cache that the pool has not refused is still to be looked at. */
        return !has_current(d, lang->name) || pool_error(p)[0];
}

static void on_created(struct opd *d, int r, const char *msg, const struct snap_manifest *m,
                       void *userdata)
{
        struct snapauto *s = d->snapauto;
        struct snapauto_lang *l;

        if (!s || !s->creating)
                return; /* opd is going away */
        l = lang_state(s, s->creating, false);
        if (l) {
                free(l->error);
                l->error = r < 0 ? strdup(msg && msg[0] ? msg : strerror(-r)) : NULL;
        }
        free(s->creating);
        s->creating = NULL;
        /* the next language, if any, at the next check */
}

static void check(struct snapauto *s, struct opd *d)
{
        if (s->creating || d->stopping || !d->cfg.snapshot_create_missing ||
            (d->cfg.s3_bucket && d->cfg.s3_bucket[0]) || d->vms_host->accel == OP_ACCEL_AUTO ||
            d->tcg_refused) /* serving nothing (allow_tcg = no): nothing to make */
                return;
        for (size_t i = 0; i < d->langs.n; i++) {
                const struct op_lang *lang = &d->langs.v[i];
                struct snapauto_lang *l;
                struct file_id id[3];
                int r;

                if (!needs_snapshot(d, lang) || image_id(d, lang, id) < 0)
                        continue;
                l = lang_state(s, lang->name, true);
                if (!l || same_image(l, id))
                        continue;
                l->tried = true;
                memcpy(l->image, id, sizeof(l->image));
                free(l->error);
                l->error = NULL;
                s->creating = strdup(lang->name);
                if (!s->creating)
                        return;
                s->creating_since_us = op_now_us();
                log_info("snapshot %s: none to serve; making one (snapshot.create_missing)",
                         lang->name);
                r = snapcreate_start(d, lang, on_created, NULL);
                if (r < 0) {
                        l->error = strdup(strerror(-r));
                        free(s->creating);
                        s->creating = NULL;
                        if (r == -EAGAIN)
                                l->tried = false; /* the accelerator: try again later */
                        continue;
                }
                return; /* one at a time */
        }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        struct opd *d = arg;

        if (d->snapauto)
                check(d->snapauto, d);
}

int snapauto_init(struct opd *d)
{
        struct snapauto *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        s->timer = event_new(d->base, -1, EV_PERSIST, on_timer, d);
        if (!s->timer) {
                free(s);
                return -ENOMEM;
        }
        op_timer_arm_ms(s->timer, SNAPAUTO_CHECK_MS);
        d->snapauto = s;
        return 0;
}

void snapauto_done(struct opd *d)
{
        struct snapauto *s = d->snapauto;

        if (!s)
                return;
        d->snapauto = NULL;
        event_free(s->timer);
        for (size_t i = 0; i < s->n; i++) {
                free(s->v[i].name);
                free(s->v[i].error);
        }
        free(s->v);
        free(s->creating);
        free(s);
}

json_t *snapauto_empty_reason(struct opd *d, const struct op_lang *lang)
{
        struct snapauto *s = d->snapauto;
        struct pool *p = pool_for(d->pools, lang);
        const struct snapauto_lang *l = s ? lang_state(s, lang->name, false) : NULL;
        struct pool_counts c;
        char buf[768];

        if (!p)
                return NULL;
        pool_counts(p, &c);
        if (c.target == 0 && c.standing == 0)
                return json_string("pool size 0 (pool.size, pool.sizes)");
        if (pool_serves(p)) {
                if (c.ready || c.in_use)
                        return NULL;
                if (c.restoring)
                        return json_string("restoring clones");
                snprintf(buf, sizeof(buf),
                         "no clone ready or restoring (%llu restores failed since start; see "
                         "the log)",
                         (unsigned long long)c.stats.failures);
                return json_string(buf);
        }
        if (s && s->creating && strcmp(s->creating, lang->name) == 0) {
                snprintf(buf, sizeof(buf), "creating a snapshot (for %.0f s)",
                         (double)(op_now_us() - s->creating_since_us) / 1e6);
                return json_string(buf);
        }
        if (c.verifying)
                return json_string("verifying a new snapshot version");
        if (l && l->error) {
                snprintf(buf, sizeof(buf), "snapshot creation failed: %.600s", l->error);
                return json_string(buf);
        }
        if (pool_error(p)[0]) {
                snprintf(buf, sizeof(buf), "snapshot refused: %.600s", pool_error(p));
                return json_string(buf);
        }
        if (d->cfg.s3_bucket && d->cfg.s3_bucket[0])
                return json_string("no snapshot yet: waiting for one from S3");
        if (!d->cfg.snapshot_create_missing || !s)
                return json_string("no snapshot: make one with opctl snapshot create");
        return json_string("no snapshot yet");
}
