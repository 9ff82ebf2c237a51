/* fc-argv.c: launching one Firecracker VM: command lines and stale socket paths. */
#include "fc-argv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lang.h"

#define FC_ARGV_MAX 40

/* An id names a directory and a cgroup: [A-Za-z0-9-], 1-64 characters (the jailer's rule). */
static int id_ok(const char *id)
{
        size_t n = id ? strlen(id) : 0;

        if (n == 0 || n > 64)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
                      (id[i] >= '0' && id[i] <= '9') || id[i] == '-'))
                        return 0;
        return 1;
}

static int push(char **v, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int push(char **v, size_t *n, const char *fmt, ...)
{
        va_list ap;
        int k;

        if (*n >= FC_ARGV_MAX)
                return -E2BIG;
        va_start(ap, fmt);
        k = vasprintf(&v[*n], fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        (*n)++;
        return 0;
}

int fc_argv(const struct fc_launch *l, char ***ret)
{
        char **v = calloc(FC_ARGV_MAX + 1, sizeof(char *));
        size_t n = 0;
        int r = 0;

        if (!v)
                return -ENOMEM;
        if (!l->binary || !*l->binary || !id_ok(l->id) || (!l->jailer && !l->api_sock)) {
                free(v);
                return -EINVAL;
        }
        if (!l->jailer) {
                r = push(v, &n, "%s", l->binary);
                r = r ?: push(v, &n, "--api-sock");
                r = r ?: push(v, &n, "%s", l->api_sock);
                r = r ?: push(v, &n, "--id");
                r = r ?: push(v, &n, "%s", l->id);
        } else {
                if (l->binary[0] != '/' || !l->chroot_base || l->chroot_base[0] != '/' ||
                    l->uid == 0) {
                        op_argv_free(v);
                        return -EINVAL;
                }
                r = push(v, &n, "%s", l->jailer);
                r = r ?: push(v, &n, "--id");
                r = r ?: push(v, &n, "%s", l->id);
                r = r ?: push(v, &n, "--exec-file");
                r = r ?: push(v, &n, "%s", l->binary);
                r = r ?: push(v, &n, "--uid");
                r = r ?: push(v, &n, "%u", l->uid);
                r = r ?: push(v, &n, "--gid");
                r = r ?: push(v, &n, "%u", l->gid);
                r = r ?: push(v, &n, "--chroot-base-dir");
                r = r ?: push(v, &n, "%s", l->chroot_base);
                r = r ?: push(v, &n, "--cgroup-version");
                r = r ?: push(v, &n, "2");
                if (l->memory_max_mb) {
                        r = r ?: push(v, &n, "--cgroup");
                        r = r
                                ?: push(v, &n, "memory.max=%llu",
                                        (unsigned long long)l->memory_max_mb << 20);
                }
                if (l->cpu_max_pct) {
                        /* quota per 100 ms period: 100% is one CPU */
                        r = r ?: push(v, &n, "--cgroup");
                        r = r ?: push(v, &n, "cpu.max=%u 100000", l->cpu_max_pct * 1000);
                }
                if (l->netns && *l->netns) {
                        r = r ?: push(v, &n, "--netns");
                        r = r ?: push(v, &n, "%s", l->netns);
                }
                /* After "--": Firecracker's own options, paths inside the jail. */
                r = r ?: push(v, &n, "--");
                r = r ?: push(v, &n, "--api-sock");
                r = r ?: push(v, &n, "%s", FC_JAIL_API_SOCK);
        }
        if (r < 0) {
                op_argv_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

int fc_jail_root(const struct fc_launch *l, char **ret)
{
        const char *base = l->binary ? strrchr(l->binary, '/') : NULL;

        if (!id_ok(l->id) || !l->chroot_base || !l->binary)
                return -EINVAL;
        base = base ? base + 1 : l->binary;
        return asprintf(ret, "%s/%s/%s/root", l->chroot_base, base, l->id) < 0 ? -ENOMEM : 0;
}

int fc_remove_stale(const char *path)
{
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}
