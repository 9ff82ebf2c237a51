/* evtimer.h: a libevent timer armed for a number of milliseconds, the one conversion every
 * loop-driven layer (VMs, pools, S3 retries, the daemon's deadlines) uses. */
#pragma once

#include <event2/event.h>
#include <stdint.h>
#include <sys/time.h>

/* (Re)arm ev to fire once in ms milliseconds; evtimer_add()'s result. */
static inline int op_timer_arm_ms(struct event *ev, uint32_t ms)
{
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        return evtimer_add(ev, &tv);
}

/* The same in microseconds. */
static inline int op_timer_arm_us(struct event *ev, uint64_t us)
{
        struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};

        return evtimer_add(ev, &tv);
}
