/* msg-session-fork.h: the requests that save a session's VM (session_fork, session_pause,
 * session_resume) as C values: decoding and validation, pure, against explicit bounds. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "msg-session.h"

/* What a session_fork may ask for by default (session.fork_max bounds it). */
#define OP_SESSION_FORK_MAX_DEFAULT 8
#define OP_SESSION_FORK_MAX_LIMIT   64

/* A session_fork: {"id", "op", "session", "count"}: count new sessions, 1..fork_max (1 when
 * absent). */
int op_session_fork_decode(json_t *req, uint32_t fork_max,
                           char ret_id[static OP_SESSION_ID_LEN + 1], uint32_t *ret_count,
                           char *errbuf, size_t errlen);
/* A session_pause or session_resume: {"id", "op", "session"}. op names the operation. */
int op_session_save_decode(json_t *req, const char *op, char ret_id[static OP_SESSION_ID_LEN + 1],
                           char *errbuf, size_t errlen);
