/* util.c: clocks, fd flags and full reads/writes used across opd, opctl and the agent.
 * No state; every function returns 0 or a negative errno. */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

uint64_t op_now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t op_realtime_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int fd_flag(int fd, int get, int set, int flag, int on)
{
        int f = fcntl(fd, get);

        if (f < 0)
                return -errno;
        f = on ? f | flag : f & ~flag;
        if (fcntl(fd, set, f) < 0)
                return -errno;
        return 0;
}

void op_format_utc(uint64_t unix_s, char *buf, size_t len)
{
        time_t t = unix_s > (uint64_t)INT64_MAX ? (time_t)INT64_MAX : (time_t)unix_s;
        struct tm tm;

        if (!gmtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, len, "@%llu", (unsigned long long)unix_s);
}

int op_fd_nonblock(int fd, int on)
{
        return fd_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, on);
}

int op_fd_cloexec(int fd, int on)
{
        return fd_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, on);
}

int op_pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
        const char *p = buf;

        while (n > 0) {
                ssize_t k = pwrite(fd, p, n, (off_t)off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                p += k;
                n -= (size_t)k;
                off += (uint64_t)k;
        }
        return 0;
}

int op_write_all(int fd, const void *buf, size_t n)
{
        const char *p = buf;

        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

int op_read_all(int fd, void *buf, size_t n)
{
        char *p = buf;

        while (n > 0) {
                ssize_t k = read(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EPIPE;
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

int op_read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        return op_read_fd(fd, max, ret, ret_len);
}

int op_read_fd(int fd, size_t max, char **ret, size_t *ret_len)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 4096;

        buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k;

                if (len + 1 >= cap) {
                        char *nb;
                        if (len > max)
                                return -EFBIG;
                        cap = cap * 2 < max + 2 ? cap * 2 : max + 2;
                        nb = realloc(buf, cap);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                }
                k = read(fd, buf + len, cap - len - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t)k;
                if (len > max)
                        return -EFBIG;
        }
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

int op_errf(char *errbuf, size_t errlen, int r, const char *fmt, ...)
{
        va_list ap;

        if (errbuf && errlen) {
                va_start(ap, fmt);
                vsnprintf(errbuf, errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

char *op_strip(char *s)
{
        char *e;

        while (*s == ' ' || *s == '\t')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                *--e = 0;
        return s;
}

bool op_is_zero(const void *buf, size_t len)
{
        const unsigned char *p = buf;

        return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

bool op_dirent_is_dir(int dirfd, const struct dirent *de)
{
        struct stat st;

        if (de->d_type != DT_UNKNOWN)
                return de->d_type == DT_DIR;
        return fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

int op_mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* How many characters op_escape_log() writes for c. */
static size_t escape_width(unsigned char c)
{
        if (c == '\\' || c == '\n' || c == '\r' || c == '\t')
                return 2;
        return c < 0x20 || c >= 0x7f ? 4 : 1;
}

size_t op_escape_log_tail(const void *in, size_t n, char *out, size_t size)
{
        const unsigned char *p = in;
        size_t from = n, width = 0;

        if (size == 0)
                return 0;
        while (from > 0 && width + escape_width(p[from - 1]) < size)
                width += escape_width(p[--from]);
        return op_escape_log(p + from, n - from, out, size);
}

size_t op_escape_log(const void *in, size_t n, char *out, size_t size)
{
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = in;
        size_t o = 0, i;

        if (size == 0)
                return 0;
        for (i = 0; i < n; i++) {
                unsigned char c = p[i];
                char e[4];
                size_t k = 0;

                if (c == '\\' || c == '\n' || c == '\r' || c == '\t') {
                        e[k++] = '\\';
                        e[k++] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : '\\';
                } else if (c < 0x20 || c >= 0x7f) {
                        e[k++] = '\\';
                        e[k++] = 'x';
                        e[k++] = hex[c >> 4];
                        e[k++] = hex[c & 15];
                } else
                        e[k++] = (char)c;
                if (o + k >= size)
                        break;
                memcpy(out + o, e, k);
                o += k;
        }
        out[o] = 0;
        return i;
}
