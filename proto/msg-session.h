/* msg-session.h: the session operations' requests (session_open, session_exec, session_list,
 * session_close) as C values: decoding and validation, pure, against explicit bounds. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* A session id: a UUID in its canonical lower-case text form (36 characters). */
#define OP_SESSION_ID_LEN 36

/* What a session_open may ask for; opd takes them from the session.* config keys. */
struct op_session_bounds {
        uint32_t idle_timeout_ms_default;
        uint32_t idle_timeout_ms_max;
        uint32_t lifetime_ms_default;
        uint32_t lifetime_ms_max;
};

#define OP_SESSION_BOUNDS_DEFAULT                                                                  \
        ((struct op_session_bounds){                                                               \
            .idle_timeout_ms_default = 300000,                                                     \
            .idle_timeout_ms_max = 3600000,                                                        \
            .lifetime_ms_default = 3600000,                                                        \
            .lifetime_ms_max = 86400000,                                                           \
        })

/* The exec fields a session_open may set as the default of each of its execs (a call's own
 * value wins): the per-call limits. */
extern const char *const op_session_limit_fields[];
extern const size_t op_session_n_limit_fields;

/* A decoded session_open. lang points into json. */
struct op_session_open {
        json_t *json; /* owned reference to the request */
        const char *lang;
        uint32_t idle_timeout_ms;
        uint32_t max_lifetime_ms;
        bool repl; /* "repl": one interpreter kept across the session's execs */
        /* An object holding the limit fields given (validated as an exec's), maybe empty;
         * owned. */
        json_t *limits;
};

/* Decode and validate a session_open: 0 (*ret filled, free with op_session_open_done()), or
 * -EINVAL with a message in errbuf, -ENOMEM. Unknown fields are refused. */
int op_session_open_decode(json_t *req, const struct op_limits *lim,
                           const struct op_session_bounds *b, struct op_session_open *ret,
                           char *errbuf, size_t errlen);
void op_session_open_done(struct op_session_open *o);

/* Is s (len bytes) a session id: canonical lower-case UUID text? */
bool op_session_id_valid(const char *s, size_t len);

/* The "session" field of a session_exec or session_close: copied into ret (NUL-ended). -EINVAL
 * with a message when it is missing or not a session id. */
int op_session_id_get(json_t *req, char ret[static OP_SESSION_ID_LEN + 1], char *errbuf,
                      size_t errlen);

/* A session_close: {"id", "op", "session"}; the session's id in ret. */
int op_session_close_decode(json_t *req, char ret[static OP_SESSION_ID_LEN + 1], char *errbuf,
                            size_t errlen);
/* A session_list: {"id", "op"}. */
int op_session_list_decode(json_t *req, char *errbuf, size_t errlen);

/* A session_exec as the exec it carries, for the session's language lang with its default
 * limits (NULL: none): "session" and "op" checked and left out, "lang" set to lang when absent
 * (when given, the caller checks that it names the session's language), "mode" refused, the
 * defaults added where the call has none, then decoded with op_exec_decode() (*ret: free with
 * op_exec_done()). -EINVAL with a message, -ENOMEM. */
int op_session_exec_decode(json_t *req, const char *lang, json_t *defaults,
                           const struct op_limits *lim, struct op_exec *ret, char *errbuf,
                           size_t errlen);
