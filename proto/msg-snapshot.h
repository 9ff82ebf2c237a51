/* msg-snapshot.h: the "snapshot" operation's request (docs/protocol.md, section snapshot): which
 * action, for which language. Decoding only; what each action does is the daemon's. */
#pragma once

#include <jansson.h>
#include <stddef.h>

enum op_snapshot_action {
        OP_SNAPSHOT_CREATE,
        OP_SNAPSHOT_LIST,
        OP_SNAPSHOT_RELOAD,
        OP_SNAPSHOT_VERIFY,
        OP_SNAPSHOT_SYNC,
        _OP_SNAPSHOT_ACTION_MAX,
};

struct op_snapshot_req {
        enum op_snapshot_action action;
        const char *lang; /* borrowed from the request; NULL when absent (or null) */
};

/* 0 with *ret filled, or -EINVAL with a human message in errbuf: "action" missing, not a string
 * or unknown, "lang" not a string, create without "lang". Whether the language exists is the
 * caller's to check. Other fields are ignored. */
int op_snapshot_decode(json_t *req, struct op_snapshot_req *ret, char *errbuf, size_t errlen);
const char *op_snapshot_action_name(enum op_snapshot_action a);
