/* poolcheck.c: the serving snapshot damaged under a running pool (files deleted, truncated or
 * overwritten in the cache). Noticed by a cheap look at its files on every snapshot check, or
 * by restores that keep failing, which has its checksums verified off the loop. Reported in the
 * log, the pool's status and a counter; the damaged version is set aside as .damaged-<version>,
 * the pool is drained, and the newest good version kept in the cache (snapshot_keep) becomes
 * "current" and serves once it verifies. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "pool-private.h"
#include "snap-ref.h"

#define SUSPECT_AFTER 2 /* restores failed in a row before the checksums are verified */

/* No good version is left in the cache: a remote store could bring one back. This is where the
 * S3 sync would fetch `version` again (not done yet); for now the pool stays empty (requests go
 * cold when pool.fallback_cold is on) until a new snapshot is created or installed. */
static void refetch_hook(struct pool *p, const char *version)
{
        pool_log(p, LOG_WARNING, "%s pool: no remote snapshot store to fetch %s from",
                 p->lang->name, version);
}

void pool_check_damage(struct pool *p)
{
        char err[400];

        if (!p->serving || p->all->stopping)
                return;
        if (snap_check_files(p->serving->dirfd, &p->serving->m, err, sizeof(err)) < 0)
                pool_snapshot_damaged(p, err);
}

struct suspect_job {
        struct pool *p;
        int dirfd;
        struct snap_manifest m;
};

static int verify_in_child(void *arg, char *msg, size_t msglen)
{
        struct suspect_job *j = arg;

        return snap_verify(j->dirfd, &j->m, msg, msglen);
}

static void on_suspect_verified(int r, const char *msg, void *userdata)
{
        struct suspect_job *j = userdata;
        struct pool *p = j->p;
        struct pools *all = p->all;

        p->suspecting = false;
        if (all->stopping || r == -ECANCELED) {
        } else if (r < 0 && p->serving && strcmp(p->serving->m.version, j->m.version) == 0)
                pool_snapshot_damaged(p, msg);
        else if (r >= 0)
                pool_log(p, LOG_WARNING,
                         "%s pool: snapshot %s verifies; its restores fail for another reason",
                         p->lang->name, j->m.version);
        safe_close(j->dirfd);
        free(j);
}

void pool_restore_failed(struct pool *p, bool from_serving)
{
        char err[400];
        struct suspect_job *j;
        int r;

        if (!from_serving || !p->serving || p->suspecting || p->all->stopping ||
            p->consecutive_failures < SUSPECT_AFTER)
                return;
        if (snap_check_files(p->serving->dirfd, &p->serving->m, err, sizeof(err)) < 0) {
                pool_snapshot_damaged(p, err);
                return;
        }
        j = calloc(1, sizeof(*j));
        if (!j)
                return;
        j->p = p;
        j->m = p->serving->m;
        j->dirfd = fcntl(p->serving->dirfd, F_DUPFD_CLOEXEC, 3);
        if (j->dirfd < 0) {
                free(j);
                return;
        }
        pool_log(p, LOG_WARNING,
                 "%s pool: %u restores of %s failed in a row; verifying its checksums",
                 p->lang->name, p->consecutive_failures, j->m.version);
        p->suspecting = true;
        r = p->all->cb.run_off_loop(verify_in_child, j, &j->dirfd, on_suspect_verified, j,
                                    p->all->userdata);
        if (r < 0) {
                p->suspecting = false;
                safe_close(j->dirfd);
                free(j);
        }
}

/* The newest version in the cache, other than `bad` and the one refused last, whose files are
 * all there at their sizes and which this opd can restore. */
static int newest_good(struct pool *p, const char *bad, char ret[SNAP_NAME_MAX])
{
        struct pools *all = p->all;
        _cleanup_free_ char(*v)[SNAP_NAME_MAX] = NULL;
        size_t n = 0;
        int r;

        r = snap_list_versions(all->cfg->cache_dir, p->lang->name, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct snap_manifest m;
                char err[400];
                int dirfd;

                if (!strcmp(v[i], bad) || !strcmp(v[i], p->checked))
                        continue;
                if (snap_open(all->cfg->cache_dir, p->lang->name, v[i], &dirfd, &m, err,
                              sizeof(err)) < 0) {
                        pool_log(p, LOG_WARNING, "%s pool: %s", p->lang->name, err);
                        continue;
                }
                safe_close(dirfd);
                if (pool_snapshot_incompatible(all, &m))
                        continue;
                memcpy(ret, v[i], SNAP_NAME_MAX);
                return 0;
        }
        return -ENOENT;
}

/* "current" names a complete version other than `bad` that was not refused already. */
static bool current_moved_on(struct pool *p, const char *bad)
{
        struct snap_manifest m;
        char err[400];
        int dirfd;

        if (snap_open(p->all->cfg->cache_dir, p->lang->name, NULL, &dirfd, &m, err, sizeof(err)) <
            0)
                return false;
        safe_close(dirfd);
        return strcmp(m.version, bad) != 0 && strcmp(m.version, p->checked) != 0;
}

void pool_snapshot_damaged(struct pool *p, const char *why)
{
        struct pools *all = p->all;
        char bad[SNAP_NAME_MAX], good[SNAP_NAME_MAX];
        int r;

        if (!p->serving)
                return;
        snprintf(bad, sizeof(bad), "%s", p->serving->m.version);
        p->stats.damaged++;
        snprintf(p->last_damage, sizeof(p->last_damage), "snapshot %s damaged: %.400s", bad, why);
        pool_log(p, LOG_ERR, "%s pool: %s; set aside as .damaged-%s", p->lang->name, p->last_damage,
                 bad);
        r = snap_set_aside(all->cfg->cache_dir, p->lang->name, bad);
        if (r < 0)
                pool_log(p, LOG_ERR, "%s pool: cannot set %s aside: %s", p->lang->name, bad,
                         strerror(-r));
        pool_serve(p, NULL);
        if (current_moved_on(p, bad)) {
                /* a newer version was installed meanwhile: it is looked at as usual */
                pool_check_snapshot(p);
                return;
        }
        if (newest_good(p, bad, good) < 0) {
                snprintf(p->error, sizeof(p->error), "%.400s; no other good version in the cache",
                         p->last_damage);
                pool_log(p, LOG_ERR, "%s pool: no other good version in the cache", p->lang->name);
                refetch_hook(p, bad);
                return;
        }
        snprintf(p->error, sizeof(p->error), "%.400s; falling back to %s", p->last_damage, good);
        pool_log(p, LOG_WARNING, "%s pool: falling back to %s, kept in the cache", p->lang->name,
                 good);
        r = snap_set_current(all->cfg->cache_dir, p->lang->name, good);
        if (r < 0)
                pool_log(p, LOG_ERR, "%s pool: cannot point current at %s: %s", p->lang->name, good,
                         strerror(-r));
        pool_check_snapshot(p); /* verifies it, then serves it */
}
