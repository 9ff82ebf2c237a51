/* client.h: one connection on opd's socket (client.c), and the answers owed to it later by
 * something that is not an exec request (reply slots). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

struct client;
struct opd;
struct reply_slot;
struct request;

/* The set of connections (d->clients), made once at start and freed by clients_free_all(). */
int clients_init(struct opd *d);
unsigned clients_count(const struct opd *d); /* connections open or closing */

int client_new(struct opd *d, int fd);
/* Count a refused connection (socket or HTTP); true when it should be logged: the 1st, 2nd,
 * 4th, 8th... time, so that a flood does not flood the log. */
bool opd_count_refusal(struct opd *d);
/* Answer fd busy (why, e.g. "out of file descriptors") and close it. */
void client_refuse(struct opd *d, int fd, const char *why);
/* What the operations ask of a connection. */
struct opd *client_opd(const struct client *c);
uid_t client_uid(const struct client *c);
bool client_may_use(const struct client *c);   /* exec, status, ping (access.group) */
bool client_may_admin(const struct client *c); /* snapshot management (root, access.admin_group) */
bool client_closing(const struct client *c);
unsigned client_inflight(const struct client *c); /* requests answered not yet */
/* The request of c with this "id", NULL when none. */
struct request *client_find_request(struct client *c, json_t *id);
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
/* Exit: every connection freed now, flushed or not, and the set with them. */
void clients_free_all(struct opd *d);

/* An answer owed later by something that is not an exec request (e.g. snapshot create); it
 * survives the client going away, and then its answer is dropped. */
struct reply_slot *reply_slot_new(struct client *c, json_t *id);
/* The request's "id" (borrowed). */
json_t *reply_slot_id(const struct reply_slot *s);
/* Is the slot's client still connected (its answer would reach it)? */
bool reply_slot_live(const struct reply_slot *s);
/* Send (takes obj) and free the slot. */
void reply_slot_send(struct reply_slot *s, json_t *obj);
/* Send an event ahead of the answer (takes obj; dropped when the client is gone). */
void reply_slot_event(struct reply_slot *s, json_t *obj);
/* gone(data) is called once when the slot's client closes (the slot stays the caller's, to be
 * freed with reply_slot_send()); for work that has no reason to go on without its client. */
void reply_slot_on_gone(struct reply_slot *s, void (*gone)(void *data), void *data);
