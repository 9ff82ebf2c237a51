/* snap-ref.c: counted references to a served snapshot's open directory and manifest, held by a
 * pool and by each VM restored from it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "snap-ref.h"
#include "util.h"

struct snap_ref *snap_ref_get(struct snap_ref *s)
{
        if (s)
                s->refs++;
        return s;
}

struct snap_ref *snap_ref_put(struct snap_ref *s)
{
        if (s && --s->refs == 0) {
                safe_close(s->dirfd);
                if (s->rm_name) {
                        (void)snap_rmtree(s->rm_parent_fd, s->rm_name);
                        safe_close(s->rm_parent_fd);
                        free(s->rm_name);
                }
                free(s->path);
                free(s);
        }
        return NULL;
}

int snap_ref_image(const char *dir, const struct snap_manifest *m, bool remove,
                   struct snap_ref **ret)
{
        struct snap_ref *s = calloc(1, sizeof(*s));
        const char *slash = strrchr(dir, '/');
        _cleanup_free_ char *parent = NULL;

        if (!s)
                return -ENOMEM;
        s->refs = 1;
        s->m = *m;
        s->rm_parent_fd = -1; /* only read with rm_name set */
        s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        s->path = strdup(dir);
        if (s->dirfd < 0 || !s->path) {
                int r = s->dirfd < 0 ? -errno : -ENOMEM;

                snap_ref_put(s);
                return r;
        }
        if (remove) {
                parent = slash && slash != dir ? strndup(dir, (size_t)(slash - dir)) : strdup(".");
                s->rm_name = strdup(slash ? slash + 1 : dir);
                if (parent)
                        s->rm_parent_fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (!s->rm_name || s->rm_parent_fd < 0) {
                        free(s->rm_name);
                        s->rm_name = NULL; /* a failed open must not remove anything */
                        safe_close(s->rm_parent_fd);
                        snap_ref_put(s);
                        return -ENOMEM;
                }
        }
        *ret = s;
        return 0;
}

int snap_ref_link_rootfs(const struct snap_ref *from, const char *dir)
{
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (dfd < 0)
                return -errno;
        if (linkat(from->dirfd, "rootfs.ext4", dfd, "rootfs.ext4", 0) < 0)
                return -errno;
        return 0;
}
