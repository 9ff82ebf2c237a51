/* msg-snapshot.c: decoding of the "snapshot" operation's request (action and language), pure
 * and fuzzed (tests/fuzz/fuzz-snapshot-request.c). */
#include "msg-snapshot.h"

#include <errno.h>
#include <string.h>

#include "fail.h"

static const char *const action_names[_OP_SNAPSHOT_ACTION_MAX] = {
    [OP_SNAPSHOT_CREATE] = "create", [OP_SNAPSHOT_LIST] = "list", [OP_SNAPSHOT_RELOAD] = "reload",
    [OP_SNAPSHOT_VERIFY] = "verify", [OP_SNAPSHOT_SYNC] = "sync",
};

const char *op_snapshot_action_name(enum op_snapshot_action a)
{
        return (unsigned)a < _OP_SNAPSHOT_ACTION_MAX ? action_names[a] : NULL;
}

int op_snapshot_decode(json_t *req, struct op_snapshot_req *ret, char *errbuf, size_t errlen)
{
        json_t *action = json_object_get(req, "action"), *lang = json_object_get(req, "lang");
        struct op_snapshot_req r = {0};
        size_t i;

        if (!json_is_string(action))
                return op_proto_fail(errbuf, errlen,
                                     "\"action\" must be create, list, reload, verify or sync");
        for (i = 0; i < _OP_SNAPSHOT_ACTION_MAX; i++)
                if (strcmp(json_string_value(action), action_names[i]) == 0)
                        break;
        if (i == _OP_SNAPSHOT_ACTION_MAX)
                return op_proto_fail(
                    errbuf, errlen,
                    "unknown action \"%.32s\"; known: create, list, reload, verify, sync",
                    json_string_value(action));
        r.action = (enum op_snapshot_action)i;
        if (lang && !json_is_null(lang) && !json_is_string(lang))
                return op_proto_fail(errbuf, errlen, "\"lang\" must be a string");
        r.lang = json_string_value(lang);
        if (r.action == OP_SNAPSHOT_CREATE && !r.lang)
                return op_proto_fail(errbuf, errlen, "create needs \"lang\"");
        *ret = r;
        return 0;
}
