/* snapcreate.h: making a language's snapshot (snapcreate.c): boot, warm, pause, save,
 * install. */
#pragma once

struct op_lang;
struct opd;
struct snap_manifest;

typedef void (*snapcreate_done_fn)(struct opd *d, int r, const char *msg,
                                   const struct snap_manifest *m, void *userdata);
/* 0: started, done() will be called exactly once; <0: not started (done() is not called). */
int snapcreate_start(struct opd *d, const struct op_lang *lang, snapcreate_done_fn done,
                     void *userdata);
