/* call.h: one request to opd over its UNIX socket: the frame out, frames in until the answer
 * (streamed events of the request printed on the way), and the shapes the commands use. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "opctl.h"

int exchange(const char *socket_path, bool events_as_json, json_t *req, uint64_t wait_ms,
             json_t **ret_answer, char **ret_raw, size_t *ret_raw_len);
int call(const struct opts *o, json_t *req, uint64_t default_wait_ms, json_t **ret_answer);
int call_op(const struct opts *o, const char *op, json_t **ret_answer);
