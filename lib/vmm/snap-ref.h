/* snap-ref.h: a snapshot being served, counted: shared by its pool and every VM restored from
 * it, so its directory stays open (and its files reachable) while any of them lives. */
#pragma once

#include "snapshot.h"

struct snap_ref {
        unsigned refs;
        int dirfd;
        struct snap_manifest m;
        char *path; /* <cache>/<lang>/<version>, for logs */
};

struct snap_ref *snap_ref_get(struct snap_ref *s);
/* Drops one reference; the last closes the directory and frees. Accepts NULL; returns NULL. */
struct snap_ref *snap_ref_put(struct snap_ref *s);
