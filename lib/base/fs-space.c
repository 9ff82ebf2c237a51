/* fs-space.c: a full file system said plainly (fs-space.h): the mount holding a path, found by
 * walking up while the device stays the same, and its free space from statvfs(). */
#include <errno.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

#include "fs-space.h"

int op_fs_space(const char *path, struct op_fs_space *ret)
{
        char p[PATH_MAX], *slash;
        struct statvfs sv;
        struct statfs sf;
        struct stat st, up;

        if (!path || !*path || strlen(path) >= sizeof(p))
                return -EINVAL;
        /* a relative path: its mount is named as the path is */
        if (!realpath(path, p))
                snprintf(p, sizeof(p), "%s", path);
        /* a file already removed (a staging directory cleaned up): its nearest parent */
        while (stat(p, &st) < 0) {
                slash = strrchr(p, '/');
                if (!slash || (slash == p && !p[1]))
                        return -errno;
                slash[slash == p] = 0; /* "/x": "/" */
        }
        if (statvfs(p, &sv) < 0 || statfs(p, &sf) < 0)
                return -errno;
        /* up while the parent is on the same device: a stat that fails (no search permission
         * above) stops the walk where it is */
        while ((slash = strrchr(p, '/')) && slash != p) {
                *slash = 0;
                if (stat(p, &up) < 0 || up.st_dev != st.st_dev) {
                        *slash = '/';
                        break;
                }
        }
        if (slash == p && stat("/", &up) == 0 && up.st_dev == st.st_dev)
                p[1] = 0;
        snprintf(ret->mount, sizeof(ret->mount), "%.*s", (int)sizeof(ret->mount) - 1, p);
        ret->avail = (uint64_t)sv.f_bavail * sv.f_frsize;
        ret->total = (uint64_t)sv.f_blocks * sv.f_frsize;
        ret->tmpfs = sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
        return 0;
}

bool op_err_is_nospace(int r)
{
        return r == -ENOSPC || r == -EDQUOT;
}

void op_fs_space_text(const struct op_fs_space *s, int r, char *buf, size_t len)
{
        double free_mib = (double)s->avail / (1 << 20);
        unsigned long long total_mib = (unsigned long long)(s->total >> 20);

        if (!len)
                return;
        if (r == -ENOSPC)
                snprintf(buf, len, "no space left on %s (ENOSPC, %.1f MiB free of %llu MiB)",
                         s->mount, free_mib, total_mib);
        else if (r == -EDQUOT)
                snprintf(buf, len, "disk quota exceeded on %s (EDQUOT, %.1f MiB free of %llu MiB)",
                         s->mount, free_mib, total_mib);
        else
                snprintf(buf, len, "%s: %.1f MiB free of %llu MiB", s->mount, free_mib, total_mib);
}

int op_errf_fs(char *errbuf, size_t errlen, int r, const char *path, const char *fmt, ...)
{
        struct op_fs_space s;
        va_list ap;
        size_t n;

        if (!errbuf || !errlen)
                return r;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
        n = strlen(errbuf);
        if (n + 3 >= errlen)
                return r;
        memcpy(errbuf + n, ": ", 3);
        n += 2;
        if (op_err_is_nospace(r) && op_fs_space(path, &s) == 0)
                op_fs_space_text(&s, r, errbuf + n, errlen - n);
        else
                snprintf(errbuf + n, errlen - n, "%s", strerror(r < 0 ? -r : r));
        return r;
}
