/* compile.h: the compile phase of an exec: the request's "compile" object, the compiler run in
 * the request's directory with its own deadline and output cap, and its part of the answer.
 * Specified in docs/protocol.md ("Agent channel", exec "compile"). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent-msg.h"
#include "exec.h"

#define AGENT_COMPILE_TIMEOUT_MS_MAX 600000
#define AGENT_COMPILE_OUTPUT_MAX     (64u * 1024u * 1024u)
#define AGENT_COMPILE_ARGV_MAX       300

struct agent_compile {
        const char **argv; /* NULL-terminated, pointing into the request; NULL: no compile phase */
        uint32_t timeout_ms;
        size_t output_max;
};

/* Decode req's optional "compile": {"argv": [...], "timeout_ms": N, "output_max": N}. 0 with *ret
 * filled (argv NULL when absent; free with agent_compile_done()), -EINVAL with a message, or
 * -ENOMEM. */
int agent_compile_decode(json_t *req, struct agent_compile *ret, char *errbuf, size_t errlen);
void agent_compile_done(struct agent_compile *c);

/* Run the compiler as run would be run (environment, directory, identity), without stdin and
 * under the compile phase's own deadline and output cap. As agent_exec(). */
int agent_compile_run(const struct agent_compile *c, const struct agent_job *run,
                      struct agent_result *ret);

/* True when the compiler did not succeed: a non-zero exit, a signal, its deadline or its cap. */
bool agent_compile_failed(const struct agent_result *r);

/* The answer's fields for how r ended (stdout, stderr, exit_code, signal, timed_out, truncated,
 * run_ms); the bytes are borrowed from r. */
void agent_result_fields(struct op_agent_run *ret, const struct agent_result *r);
/* Set the answer's "compile" to r. */
void agent_compile_answer(struct op_agent_exec *x, const struct agent_result *r);
