/* access.c: who may do what, from the peer's credentials (SO_PEERCRED) and its groups as the
 * kernel recorded them at connect (SO_PEERGROUPS): members of access.group use the service, members
 * of access.admin_group (and root) also manage it. */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "access.h"
#include "cleanup.h"
#include "log.h"
#include "opd.h"
#include "util.h"

struct access {
        gid_t access_gid; /* (gid_t)-1: anyone who can connect */
        gid_t admin_gid;  /* (gid_t)-1: root only */
};

static int resolve(const char *name, gid_t *ret)
{
        struct group *g;

        if (!*name) {
                *ret = (gid_t)-1;
                return 0;
        }
        errno = 0;
        g = getgrnam(name);
        if (!g)
                return errno ? -errno : -ENOENT;
        *ret = g->gr_gid;
        return 0;
}

/* Again on reload: the groups are resolved anew. */
int access_init(struct opd *d)
{
        int r;

        if (!d->access) {
                d->access = calloc(1, sizeof(*d->access));
                if (!d->access)
                        return -ENOMEM;
        }
        r = resolve(d->cfg.access_group, &d->access->access_gid);
        if (r < 0)
                return log_error_errno(r, "access.group \"%s\"", d->cfg.access_group);
        r = resolve(d->cfg.admin_group, &d->access->admin_gid);
        if (r < 0)
                return log_error_errno(r, "access.admin_group \"%s\"", d->cfg.admin_group);
        return 0;
}

void access_done(struct opd *d)
{
        free(d->access);
        d->access = NULL;
}

/* Is gid the peer's primary group or one of its supplementary groups, as the kernel recorded
 * them when the peer connected (SO_PEERGROUPS)? Not /proc/<pid>: a pid may be reused. */
static bool in_group(int fd, gid_t primary, gid_t gid)
{
        gid_t small[64];
        _cleanup_free_ gid_t *big = NULL;
        gid_t *groups = small;
        socklen_t len = sizeof(small);

        if (primary == gid)
                return true;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
                if (errno != ERANGE || len == 0)
                        return false;
                big = malloc(len);
                if (!big)
                        return false;
                groups = big;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                        return false;
        }
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (groups[i] == gid)
                        return true;
        return false;
}

bool access_may_use(struct opd *d, int fd, uid_t uid, gid_t gid)
{
        return uid == 0 || uid == getuid() || d->access->access_gid == (gid_t)-1 ||
               in_group(fd, gid, d->access->access_gid);
}

bool access_may_admin(struct opd *d, int fd, uid_t uid, gid_t gid)
{
        bool root = uid == 0 || uid == getuid();

        return root ||
               (d->access->admin_gid != (gid_t)-1 && in_group(fd, gid, d->access->admin_gid));
}
