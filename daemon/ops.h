/* ops.h: the operation table (ops.c) and the operations it holds that are not exec's
 * (ops-snapshot.c); exec's are in exec-op.h, `metrics` in metrics.h. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

struct client;

struct op_entry {
        const char *name;
        /* Handle a request; answer now with client_send() or later. Takes nothing. */
        void (*handler)(struct client *c, json_t *id, json_t *req);
        bool admin; /* root and access.admin_group only; the others need access.group */
};
const struct op_entry *op_lookup(const char *name);
/* Ops that take nothing but "id" and "op" (ping, status, metrics, reload): a typo is refused
 * rather than ignored. false: the refusal was sent. */
bool op_only_id_op(struct client *c, json_t *id, json_t *req);
void op_snapshot(struct client *c, json_t *id, json_t *req); /* ops-snapshot.c */
void op_dispatch(struct client *c, json_t *req);
