/* fs-space.h: a full file system said plainly: the mount that holds a path and its free space,
 * and error text that names both when a write failed with ENOSPC or EDQUOT. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct op_fs_space {
        char mount[256]; /* the topmost directory above the path on the same file system */
        uint64_t avail;  /* bytes an unprivileged writer may still use */
        uint64_t total;
        bool tmpfs; /* a tmpfs (or ramfs): a file's pages are memory, a fault on a hole takes one */
};

/* The file system of path (a file or a directory; when it is gone, the nearest parent that is
 * there). 0, or a negative errno. */
int op_fs_space(const char *path, struct op_fs_space *ret);

/* -ENOSPC or -EDQUOT: the write failed because a file system (or a quota on it) is full. */
bool op_err_is_nospace(int r);

/* What a full file system looks like, for a message: "no space left on /c (ENOSPC, 0.0 MiB
 * free of 1200 MiB)"; r -EDQUOT: "disk quota exceeded on /c (EDQUOT, ...)"; any other r: "/c:
 * 12.0 MiB free of 1200 MiB". Always NUL-ended. */
void op_fs_space_text(const struct op_fs_space *s, int r, char *buf, size_t len);

/* errbuf gets the formatted context, ": ", and why r failed: for -ENOSPC and -EDQUOT the
 * file system of path that is full (op_fs_space_text), else strerror(-r). Returns r, for
 * `return op_errf_fs(err, errlen, r, path, "writing %s", path);` */
int op_errf_fs(char *errbuf, size_t errlen, int r, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
