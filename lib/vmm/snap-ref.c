/* snap-ref.c: counted references to a served snapshot's open directory and manifest, held by a
 * pool and by each VM restored from it. */
#include <stdlib.h>

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
                free(s->path);
                free(s);
        }
        return NULL;
}
