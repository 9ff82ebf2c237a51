/* compile.h: the host side of a compiled language's exec: the compile phase in the agent's job,
 * its deadline, and its outcome in the client's answer (docs/protocol.md, "Compiled languages"). */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "agent-msg.h"
#include "lang.h"
#include "msg.h"

/* -EINVAL with a message when the request asks for what the language does not have
 * (compile_timeout_ms for an interpreted language). */
int compile_check(const struct op_lang *lang, const struct op_exec *e, char *errbuf, size_t errlen);

/* The compile phase's deadline: the request's compile_timeout_ms, else the catalogue's, bounded
 * by limit.compile_timeout_ms_max. 0 for a language without a compile phase. */
uint32_t compile_timeout_ms(const struct op_lang *lang, const struct op_exec *e,
                            const struct op_limits *lim);

/* Add "compile": {"argv", "timeout_ms", "output_max"} to the agent job when the language has a
 * compile phase. 0 or -ENOMEM. */
int compile_job_add(const struct op_lang *lang, const struct op_exec *e,
                    const struct op_limits *lim, json_t *job);

/* The compile phase's part of what the agent's answer may hold (agent-msg.h). */
void compile_agent_limits(const struct op_lang *lang, struct op_agent_limits *lim);

/* The agent's "compile" (decoded and checked by agent-msg.c) into the client's reply, its bytes
 * re-encoded. 0 or -ENOMEM. */
int compile_reply(json_t *reply, const struct op_agent_exec *x);
