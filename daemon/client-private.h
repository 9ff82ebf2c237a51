/* client-private.h: a connection's fields, for client.c and for request.c, which links each
 * request into its client's list and counts it in flight; the rest use client.h. */
#pragma once

#include <stdbool.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "client.h"

struct bufferevent;
struct event;

struct client {
        LIST_ENTRY(client) link;
        struct opd *d;
        struct bufferevent *bev;
        struct event *read_timer; /* a frame started and did not complete */
        struct event *idle_timer; /* idle_timeout_ms since the last byte read */
        struct event *more_timer; /* requests left over from a turn: the next turn */
        uid_t uid;
        struct uid_use *uid_use; /* counted in its clients; NULL when out of memory */
        gid_t gid;
        pid_t pid;
        unsigned inflight;
        LIST_HEAD(, request) requests;
        LIST_HEAD(, reply_slot) slots;
        bool closing;
        bool read_eof;   /* the peer half-closed: answer what was read, then close */
        bool out_paused; /* answers above client.output_high: not reading until they drain */
        bool overflow;   /* answers past client.output_max: dropped, closing at the next turn */
        bool may_use;    /* exec, status, ping (access.group) */
        bool may_admin;  /* snapshot management (root, access.admin_group) */
        bool exempt;     /* root, opd's user, an admin: no per-uid share of a turn */
        bool deferred;   /* past its turn: its events at OPD_PRI_DEFERRED (client.c) */
};
