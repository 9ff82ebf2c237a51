/* loop-wait.h: how the unit tests of the loop-driven layers (VM, pool, request) wait: run the
 * event loop until a condition holds, under a generous cap, never a measured time. */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define LOOP_WAIT_MAX_US (60ull * 1000 * 1000)

/* A 1 ms persistent timer: the loop never blocks for long with nothing to do, and its count
 * measures loop turns for "nothing more happens" checks. */
struct loop_tick {
        struct event *ev;
        unsigned ticks;
};

static void loop_tick_fire(evutil_socket_t fd, short what, void *arg)
{
        ((struct loop_tick *)arg)->ticks++;
}

static inline void loop_tick_start(struct loop_tick *t, struct event_base *base)
{
        struct timeval tv = {0, 1000};

        t->ev = event_new(base, -1, EV_PERSIST, loop_tick_fire, t);
        assert_non_null(t->ev);
        event_add(t->ev, &tv);
}

static inline void loop_tick_stop(struct loop_tick *t)
{
        event_free(t->ev);
        t->ev = NULL;
}

/* Run the loop until cond(arg) holds; more than turns_max turns or LOOP_WAIT_MAX_US turn a hang
 * into a failure. */
static inline void loop_run_until(struct event_base *base, unsigned turns_max, bool (*cond)(void *),
                                  void *arg)
{
        uint64_t start = op_now_us();

        for (unsigned n = 0; !cond(arg); n++) {
                if (n > turns_max || op_now_us() - start > LOOP_WAIT_MAX_US)
                        fail_msg("condition not reached");
                event_base_loop(base, EVLOOP_ONCE);
        }
}

/* Some turns of the loop (each at least one tick). */
static inline void loop_run_turns(struct event_base *base, struct loop_tick *t, unsigned turns)
{
        unsigned until = t->ticks + turns;

        while (t->ticks < until)
                event_base_loop(base, EVLOOP_ONCE);
}
