/* bgjob.h: slow work off the loop, in a forked child (bgjob.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct opd;

/* Runs in a forked child that holds fds 0-2, its result pipe and keep_fd (when not NULL; the
 * child's copy of *keep_fd is set to the number it has there) and nothing else of opd's: return
 * 0 or -errno, with a message in msg. */
typedef int (*bgjob_fn)(void *arg, char *msg, size_t msglen);
typedef void (*bgjob_done_fn)(struct opd *d, int r, const char *msg, void *userdata);
int bgjobs_init(struct opd *d);
/* 0: started, and done() will be called exactly once: with fn's result, or with -ECANCELED
 * when opd stops first. <0: not started (-ESHUTDOWN once opd is stopping). */
int bgjob_start(struct opd *d, bgjob_fn fn, void *arg, int *keep_fd, bgjob_done_fn done,
                void *userdata);
/* Jobs started whose done() has not been called yet. */
unsigned bgjobs_pending(const struct opd *d);
/* The SIGCHLD path: true when pid was a background job's. */
bool bgjob_reaped(struct opd *d, pid_t pid, int status);
/* Kill and reap every job (done() gets -ECANCELED); no job starts after this. */
void bgjobs_cancel_all(struct opd *d);
void bgjobs_done(struct opd *d);
