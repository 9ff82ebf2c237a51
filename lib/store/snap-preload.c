/* snap-preload.c: reading a snapshot's memory file into the page cache before it serves, so the
 * first restores map pages that are already in memory instead of waiting on the disk. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "cleanup.h"
#include "snapshot.h"

int snap_preload(int dirfd, const char *name, uint64_t *ret_bytes)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ char *buf = malloc(1 << 20);
        uint64_t total = 0;
        ssize_t k;

        if (fd < 0)
                return -errno;
        if (!buf)
                return -ENOMEM;
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
        while ((k = read(fd, buf, 1 << 20)) > 0)
                total += (uint64_t)k;
        if (k < 0)
                return -errno;
        if (ret_bytes)
                *ret_bytes = total;
        return 0;
}
