/* snap-ref.h: a snapshot being served, counted: shared by its pool and every VM restored from
 * it, so its directory stays open (and its files reachable) while any of them lives. */
#pragma once

#include "snapshot.h"

struct snap_ref {
        unsigned refs;
        int dirfd;
        struct snap_manifest m;
        char *path; /* <cache>/<lang>/<version>, for logs; an image's directory */
        /* An image (a clone saved whole, vm_snapshot()) that is removed with its last
         * reference: its name in rm_parent_fd (rm_name NULL: kept). */
        int rm_parent_fd;
        char *rm_name;
};

struct snap_ref *snap_ref_get(struct snap_ref *s);
/* Drops one reference; the last closes the directory and frees. Accepts NULL; returns NULL. */
struct snap_ref *snap_ref_put(struct snap_ref *s);

/* A saved clone's directory (dir/vmstate, dir/mem, dir/rootfs.ext4) as a snapshot to restore
 * clones from, with the manifest of the snapshot the clone came from (memory size, vCPUs, VMM).
 * remove: the directory is removed with the last reference. */
int snap_ref_image(const char *dir, const struct snap_manifest *m, bool remove,
                   struct snap_ref **ret);
/* Before saving a clone into dir: its snapshot's rootfs (hard link: the guest's view of it must
 * stay the same file). -EXDEV when dir is on another file system than the snapshot. */
int snap_ref_link_rootfs(const struct snap_ref *from, const char *dir);
