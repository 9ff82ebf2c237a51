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

/* What exchange_ext() does besides waiting for the answer. */
struct exchange_ext {
        /* Each frame whose id is not the request's (a batch member's answer or event), raw;
         * a non-zero return ends the exchange with that exit status. */
        int (*other)(json_t *frame, const char *raw, size_t len, void *userdata);
        /* NULL, or each event of the request itself, raw, instead of printing it (an
         * exec_cases's "case" events); a non-zero return ends the exchange. */
        int (*event)(json_t *frame, const char *raw, size_t len, void *userdata);
        /* input_fd (-1: none) is polled while waiting; input() reads it and may send frames on
         * sock: 0 to go on, 1 when the input has ended (no more polling), or a negative errno. */
        int input_fd;
        int (*input)(int sock, int input_fd, void *userdata);
        void *userdata;
};
int exchange_ext(const char *socket_path, bool events_as_json, json_t *req, uint64_t wait_ms,
                 struct exchange_ext *x, json_t **ret_answer, char **ret_raw, size_t *ret_raw_len);
/* Write all of buf to fd before deadline (CLOCK_MONOTONIC us). */
int send_all(int fd, const char *buf, size_t n, uint64_t deadline);
