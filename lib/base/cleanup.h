/* cleanup.h: scope-bound ownership for heap memory, fds, FILE* and child pids.
 * The one cleanup header of the tree; every destructor accepts "nothing" and is idempotent. */
#pragma once

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline int safe_close(int fd)
{
        if (fd >= 0) {
                int saved = errno;
                close(fd);
                errno = saved;
        }
        return -1;
}

static inline void closep(int *fd)
{
        *fd = safe_close(*fd);
}

static inline void fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
        *f = NULL;
}

/* A child that is killed and reaped unless ownership was taken with TAKE_PID(). */
static inline void killpidp(pid_t *pid)
{
        if (*pid > 0) {
                kill(*pid, SIGKILL);
                while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        *pid = 0;
}

#define _cleanup_free_   _cleanup_(freep)
#define _cleanup_close_  _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_pid_    _cleanup_(killpidp)

#define TAKE_GENERIC(var, null)                                                                    \
        ({                                                                                         \
                __typeof__(var) _t = (var);                                                        \
                (var) = (null);                                                                    \
                _t;                                                                                \
        })
#define TAKE_PTR(p) TAKE_GENERIC(p, NULL)
#define TAKE_FD(fd) TAKE_GENERIC(fd, -1)
#define TAKE_PID(p) TAKE_GENERIC(p, 0)

/* DEFINE_POINTER_CLEANUP(struct foo *, foo_free) defines foo_freep() for _cleanup_(foo_freep).
 * (jansson brings its own json_decrefp and json_auto_t.) */
#define DEFINE_POINTER_CLEANUP(type, func)                                                         \
        static inline void func##p(type *p)                                                        \
        {                                                                                          \
                if (*p)                                                                            \
                        func(*p);                                                                  \
                *p = NULL;                                                                         \
        }

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
