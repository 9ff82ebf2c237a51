/* msg-session-fork.c: decoding of session_fork, session_pause and session_resume: known fields
 * only, the session's id checked, the fork count bounded. */
#include <errno.h>
#include <string.h>

#include "msg-session-fork.h"
#include "cleanup.h"
#include "fail.h"

static int only_fields(json_t *req, const char *op, const char *const *fields, size_t n,
                       char *errbuf, size_t errlen)
{
        const char *key;
        json_t *v;

        json_object_foreach (req, key, v) {
                bool known = false;

                for (size_t i = 0; !known && i < n; i++)
                        known = strcmp(key, fields[i]) == 0;
                if (!known)
                        return op_proto_fail(errbuf, errlen, "unknown field \"%.64s\" in %s", key,
                                             op);
        }
        return 0;
}

static const char *const fork_fields[] = {"id", "op", "session", "count"};

int op_session_fork_decode(json_t *req, uint32_t fork_max,
                           char ret_id[static OP_SESSION_ID_LEN + 1], uint32_t *ret_count,
                           char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, "count");
        int r;

        r = only_fields(req, "session_fork", fork_fields, ELEMENTSOF(fork_fields), errbuf, errlen);
        if (r < 0)
                return r;
        if (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
                  json_integer_value(v) > (json_int_t)fork_max))
                return op_proto_fail(errbuf, errlen,
                                     "\"count\" must be an integer from 1 to %u (session.fork_max)",
                                     fork_max);
        r = op_session_id_get(req, ret_id, errbuf, errlen);
        if (r < 0)
                return r;
        *ret_count = v ? (uint32_t)json_integer_value(v) : 1;
        return 0;
}

static const char *const save_fields[] = {"id", "op", "session"};

int op_session_save_decode(json_t *req, const char *op, char ret_id[static OP_SESSION_ID_LEN + 1],
                           char *errbuf, size_t errlen)
{
        int r = only_fields(req, op, save_fields, ELEMENTSOF(save_fields), errbuf, errlen);

        if (r < 0)
                return r;
        return op_session_id_get(req, ret_id, errbuf, errlen);
}
