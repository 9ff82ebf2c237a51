/* fc-collect.h: a snapshot a jailed Firecracker wrote (vmstate, mem), copied out of its jail into
 * opd's own files. The jail's root is the VMM's: a compromised one (a guest escape) makes of
 * those names what it likes (a FIFO, a symbolic link, a hard link, a huge sparse file, a file it
 * keeps growing). Nothing here blocks on what the VMM made, reads more than a bound, or writes a
 * hole out dense. No event loop: it runs on a worker thread (workq.h) or in a test. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migsplit.h"

/* The most device state a Firecracker vmstate may hold: the bound QEMU's saves have (a guest's
 * is some tens of KiB). */
#define FC_VMSTATE_MAX MIGSPLIT_STATE_MAX

/* Copy name in from_dirfd to a new file of the same name in to_dirfd (0444, made with O_EXCL).
 * The source must be a regular file with one link, opened without following a link and without
 * blocking, and hold exactly size bytes (exact) or at most size; no more than that is read even
 * if it grows meanwhile. Holes, and pages of zeros, stay holes. 0, or a negative errno with why
 * naming the file (from_dir, to_dir: the paths of the two directories) and what was wrong:
 * -ELOOP a symbolic link, -EINVAL not a regular file (-ENXIO: a socket) or a size other than
 * exact, -EMLINK more than one link, -EFBIG larger than size, -EIO shorter than its size while
 * read; or the system's error opening, reading or writing. A failed copy leaves no file behind. */
int fc_copy_out(int from_dirfd, const char *from_dir, int to_dirfd, const char *to_dir,
                const char *name, uint64_t size, bool exact, char *why, size_t whylen);

/* The snapshot of a VM with mem_size bytes of RAM, from the jail's root into dir: vmstate (at
 * most FC_VMSTATE_MAX) and mem (exactly mem_size), replacing files of those names in dir
 * (snapcreate's empty mem). As fc_copy_out(); why also names a directory that cannot be opened. */
int fc_collect(const char *jail_root, const char *dir, uint64_t mem_size, char *why, size_t whylen);
