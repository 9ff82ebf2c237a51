/* client.h: one connection on opd's socket (client.c), and the answers owed to it later by
 * something that is not an exec request (reply slots). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/queue.h>
#include <sys/types.h>

struct bufferevent;
struct event;
struct opd;
struct reply_slot;
struct request;

/* Read by the request (request.c: requests, inflight, closing), the operations (ops.c, exec.c:
 * d, inflight, may_use, may_admin) and access.c, which classifies it. */
struct client {
        LIST_ENTRY(client) link;
        struct opd *d;
        struct bufferevent *bev;
        struct event *read_timer; /* a frame started and did not complete */
        struct event *idle_timer; /* idle_timeout_ms since the last byte read */
        uid_t uid;
        gid_t gid;
        pid_t pid;
        unsigned inflight;
        LIST_HEAD(, request) requests;
        LIST_HEAD(, reply_slot) slots;
        bool closing;
        bool read_eof;  /* the peer half-closed: answer what was read, then close */
        bool may_use;   /* exec, status, ping (access.group) */
        bool may_admin; /* snapshot management (root, access.admin_group) */
};

int client_new(struct opd *d, int fd);
/* Queue an answer; takes the reference to obj. */
void client_send(struct client *c, json_t *obj);
/* A request of c finished: a half-closed client with nothing left in flight is closed. */
void client_request_done(struct client *c);
/* Flush what is queued and close; the client is freed at a safe point. */
void client_close(struct client *c, const char *why);
/* Stop: every request still waiting or running is answered "shutting down", then each
 * connection closes once flushed. */
void clients_shutdown(struct opd *d);
void clients_reap(struct opd *d);
void clients_free_all(struct opd *d);

/* An answer owed later by something that is not an exec request (e.g. snapshot create); it
 * survives the client going away, and then its answer is dropped. */
struct reply_slot *reply_slot_new(struct client *c, json_t *id);
/* The request's "id" (borrowed). */
json_t *reply_slot_id(const struct reply_slot *s);
/* Send (takes obj) and free the slot. */
void reply_slot_send(struct reply_slot *s, json_t *obj);
