/* notify.h: sd_notify READY/STATUS/WATCHDOG/STOPPING (notify.c). */
#pragma once

struct opd;

int notify_start(struct opd *d);
/* STOPPING=1 and the timers go; a no-op when never started or stopped already. */
void notify_stop(struct opd *d);
