/* bgjob.h: slow work off the loop, in a forked child (bgjob.c). */
#pragma once

#include <stddef.h>

struct opd;

/* Runs in a forked child: return 0 or -errno, with a message in msg. */
typedef int (*bgjob_fn)(void *arg, char *msg, size_t msglen);
typedef void (*bgjob_done_fn)(struct opd *d, int r, const char *msg, void *userdata);
int bgjob_start(struct opd *d, bgjob_fn fn, void *arg, bgjob_done_fn done, void *userdata);
