/* msg-cases.h: the exec_cases request (one program compiled once, many test cases each run in
 * its own copy of the compiled VM) as C values: decoding and validation, pure, against explicit
 * bounds. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "msg.h"

/* A decoded exec_cases: the steps opd runs, each a session_exec request without its "session"
 * (opd adds the session it runs in), validated as one. */
struct op_cases {
        json_t *compile; /* "phase": "compile": lang, code, files, compile_timeout_ms; owned */
        json_t **runs;   /* per case, in order, "phase": "run": the case's fields over the
                          * request's defaults (args, env, output_files, limits); owned */
        size_t n;        /* 1 to lim->cases_max */
};

/* Decode and validate an exec_cases request: 0 (*ret filled, free with op_cases_done()), -EINVAL
 * with a message in errbuf, -ENOMEM. Unknown fields, of the request or of a case, are refused. */
int op_cases_decode(json_t *req, const struct op_limits *lim, struct op_cases *ret, char *errbuf,
                    size_t errlen);
void op_cases_done(struct op_cases *c);
