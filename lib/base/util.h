/* util.h: small helpers shared by every binary: clocks, fd flags, full reads and writes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

uint64_t op_now_us(void);      /* CLOCK_MONOTONIC in microseconds */
uint64_t op_realtime_ns(void); /* CLOCK_REALTIME in nanoseconds */
/* Unix seconds as "2026-12-03T12:00:00Z" (UTC) into buf (at least 21 bytes). */
void op_format_utc(uint64_t unix_s, char *buf, size_t len);
int op_fd_nonblock(int fd, int on);
int op_fd_cloexec(int fd, int on);
/* Write all of buf, retrying on EINTR; blocking fds only. */
int op_write_all(int fd, const void *buf, size_t n);
/* Write all of buf at offset off (pwrite), retrying on EINTR; -EIO when nothing more could be
 * written. */
int op_pwrite_all(int fd, const void *buf, size_t n, uint64_t off);
/* Read exactly n bytes; -EPIPE on EOF before n. Blocking fds only. */
int op_read_all(int fd, void *buf, size_t n);
/* Format a message into errbuf (when there is one) and return r, for
 * `return op_errf(errbuf, errlen, -EINVAL, "\"%s\" is not ...", key);` */
int op_errf(char *errbuf, size_t errlen, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Cut spaces and tabs from both ends (and a CR from the end), in place; returns the new start. */
char *op_strip(char *s);

/* Read a whole small file (at most max bytes) into a NUL-ended malloc'd buffer. */
int op_read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* The same for what an open fd gives until end of file (a pipe, stdin). */
int op_read_fd(int fd, size_t max, char **ret, size_t *ret_len);

/* mkdir -p: the missing parents with mode 0755, path itself with mode; an existing directory
 * is fine. */
int op_mkdir_p(const char *path, mode_t mode);

struct dirent;
/* Whether the len bytes at buf are all zero (true for none). */
bool op_is_zero(const void *buf, size_t len);
/* Whether de, read from the directory dirfd, is a directory (not a link to one): its d_type, or
 * where the file system gives none, an fstatat() that does not follow links. */
bool op_dirent_is_dir(int dirfd, const struct dirent *de);

/* Bytes someone else wrote (a guest's console), made safe for one log line: printable ASCII
 * stays, a backslash is doubled, newline, CR and tab become backslash-n, -r, -t, and every other
 * byte backslash-x and two hex digits. out is always NUL-ended (size > 0) and holds only whole
 * escapes; returns how many input bytes it holds. Pure. */
size_t op_escape_log(const void *in, size_t n, char *out, size_t size);
/* The same for the end of in: as many of its last bytes as fit in out, escaped whole. Returns
 * how many input bytes it holds (the last ones). Pure. */
size_t op_escape_log_tail(const void *in, size_t n, char *out, size_t size);
