/* fc-collect.c: copying a jailed Firecracker's snapshot out of its jail (fc-collect.h). */
#include "fc-collect.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-space.h"
#include "util.h"

#define COPY_BUF  (1u << 20)
#define COPY_PAGE 4096u /* the unit a run of zeros is left a hole in */

static const char *type_name(mode_t m)
{
        if (S_ISDIR(m))
                return "a directory";
        if (S_ISFIFO(m))
                return "a FIFO";
        if (S_ISSOCK(m))
                return "a socket";
        if (S_ISCHR(m))
                return "a character device";
        if (S_ISBLK(m))
                return "a block device";
        if (S_ISLNK(m))
                return "a symbolic link";
        return "of an unknown type";
}

/* buf (len bytes of the file at off) into out at the same offset, runs of zero pages skipped:
 * out was sized first, so what is skipped is a hole. */
static int write_data(int out, const uint8_t *buf, size_t len, off_t off)
{
        size_t i = 0;

        while (i < len) {
                size_t start, n;

                while (i < len && op_is_zero(buf + i, len - i < COPY_PAGE ? len - i : COPY_PAGE))
                        i += COPY_PAGE;
                if (i >= len)
                        break;
                start = i;
                while (i < len && !op_is_zero(buf + i, len - i < COPY_PAGE ? len - i : COPY_PAGE))
                        i += COPY_PAGE;
                n = (i < len ? i : len) - start;
                int r = op_pwrite_all(out, buf + start, n, (uint64_t)off + start);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The first size bytes of in into out (already size bytes long, all hole): only the extents
 * the file system says hold data are read. 1: in ended before size (it shrank). */
static int copy_data(int in, int out, uint64_t size, int *ret_read_err)
{
        _cleanup_free_ uint8_t *buf = malloc(COPY_BUF);
        uint64_t off = 0;

        *ret_read_err = 0;
        if (!buf)
                return -ENOMEM;
        while (off < size) {
                off_t data = lseek(in, (off_t)off, SEEK_DATA), hole;

                if (data < 0 && errno == ENXIO)
                        break; /* a hole to the end */
                if (data < 0 || (hole = lseek(in, data, SEEK_HOLE)) < 0) {
                        *ret_read_err = 1;
                        return -errno;
                }
                if ((uint64_t)data >= size)
                        break;
                if ((uint64_t)hole > size)
                        hole = (off_t)size;
                while (data < hole) {
                        size_t want =
                            (uint64_t)(hole - data) < COPY_BUF ? (size_t)(hole - data) : COPY_BUF;
                        ssize_t k = pread(in, buf, want, data);
                        int r;

                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0) {
                                *ret_read_err = 1;
                                return -errno;
                        }
                        if (k == 0)
                                return 1;
                        r = write_data(out, buf, (size_t)k, data);
                        if (r < 0)
                                return r;
                        data += k;
                }
                off = (uint64_t)hole;
        }
        return 0;
}

static int check_source(int in, const char *from_dir, const char *name, uint64_t size, bool exact,
                        uint64_t *ret_len, char *why, size_t whylen)
{
        struct stat st;

        if (fstat(in, &st) < 0) {
                int r = -errno;

                return op_errf(why, whylen, r, "%s/%s: %s", from_dir, name, strerror(-r));
        }
        if (!S_ISREG(st.st_mode))
                return op_errf(why, whylen, -EINVAL, "%s/%s is %s, not a regular file", from_dir,
                               name, type_name(st.st_mode));
        /* Firecracker makes each file anew: another link is a file it did not write (a jail's
         * link to a snapshot's file, an image, a file of another VM's). */
        if (st.st_nlink != 1)
                return op_errf(why, whylen, -EMLINK,
                               "%s/%s has %ju links: not a file the VMM wrote, a link to another",
                               from_dir, name, (uintmax_t)st.st_nlink);
        if ((uint64_t)st.st_size > size)
                return op_errf(why, whylen, -EFBIG,
                               "%s/%s is %jd bytes, more than the %" PRIu64 " %s", from_dir, name,
                               (intmax_t)st.st_size, size,
                               exact ? "of the VM's memory" : "a device state may have");
        if (exact && (uint64_t)st.st_size != size)
                return op_errf(why, whylen, -EINVAL,
                               "%s/%s is %jd bytes, not the %" PRIu64 " of the VM's memory",
                               from_dir, name, (intmax_t)st.st_size, size);
        *ret_len = (uint64_t)st.st_size;
        return 0;
}

int fc_copy_out(int from_dirfd, const char *from_dir, int to_dirfd, const char *to_dir,
                const char *name, uint64_t size, bool exact, char *why, size_t whylen)
{
        _cleanup_close_ int in = -1, out = -1;
        uint64_t len = 0;
        int r, read_err;

        /* O_NONBLOCK: a FIFO opens at once (without it, open() waits for a writer that never
         * comes) and is refused below; a regular file reads as ever. */
        in = openat(from_dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (in < 0) {
                r = -errno;
                return op_errf(why, whylen, r, "%s/%s: %s", from_dir, name,
                               r == -ELOOP   ? "a symbolic link, not a regular file"
                               : r == -ENXIO ? "a socket or a device, not a regular file"
                                             : strerror(-r));
        }
        r = check_source(in, from_dir, name, size, exact, &len, why, whylen);
        if (r < 0)
                return r;
        out = openat(to_dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
        if (out < 0) {
                r = -errno;
                return op_errf_fs(why, whylen, r, to_dir, "creating %s/%s", to_dir, name);
        }
        if (ftruncate(out, (off_t)len) < 0) {
                r = -errno;
                op_errf_fs(why, whylen, r, to_dir, "sizing %s/%s", to_dir, name);
                goto fail;
        }
        r = copy_data(in, out, len, &read_err);
        if (r == 1) {
                r = op_errf(why, whylen, -EIO,
                            "%s/%s: shorter than its %" PRIu64
                            " bytes while read (changed meanwhile)",
                            from_dir, name, len);
                goto fail;
        }
        if (r < 0) {
                if (read_err)
                        op_errf(why, whylen, r, "%s/%s: reading it: %s", from_dir, name,
                                strerror(-r));
                else
                        op_errf_fs(why, whylen, r, to_dir, "writing %s/%s", to_dir, name);
                goto fail;
        }
        if (fchmod(out, 0444) < 0) {
                r = -errno;
                op_errf(why, whylen, r, "%s/%s: %s", to_dir, name, strerror(-r));
                goto fail;
        }
        return 0;
fail:
        (void)unlinkat(to_dirfd, name, 0);
        return r;
}

int fc_collect(const char *jail_root, const char *dir, uint64_t mem_size, char *why, size_t whylen)
{
        static const char *const names[] = {"vmstate", "mem"};
        _cleanup_close_ int from = -1, to = -1;
        int r;

        from = open(jail_root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (from < 0) {
                r = -errno;
                return op_errf(why, whylen, r, "%s: %s", jail_root, strerror(-r));
        }
        to = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (to < 0) {
                r = -errno;
                return op_errf(why, whylen, r, "%s: %s", dir, strerror(-r));
        }
        /* snapcreate made an empty "mem" for VMMs that map it: Firecracker wrote its own */
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (unlinkat(to, names[i], 0) < 0 && errno != ENOENT) {
                        r = -errno;
                        return op_errf(why, whylen, r, "%s/%s: %s", dir, names[i], strerror(-r));
                }
        r = fc_copy_out(from, jail_root, to, dir, "vmstate", FC_VMSTATE_MAX, false, why, whylen);
        if (r >= 0)
                r = fc_copy_out(from, jail_root, to, dir, "mem", mem_size, true, why, whylen);
        return r;
}
