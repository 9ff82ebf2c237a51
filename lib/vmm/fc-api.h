/* fc-api.h: a client of Firecracker's HTTP API over its UNIX socket, on a libevent loop (libcurl
 * multi, CURLOPT_UNIX_SOCKET_PATH). Calls run one at a time in the order issued, as Firecracker
 * serves them; an error answer's {"fault_message": ...} is what the caller is told. */
#pragma once

#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>

#define FC_API_ANSWER_MAX (64 * 1024)

struct fc_api;

/* status: the HTTP status, 0 when no answer came. err: NULL on 2xx, else the fault_message, or
 * a description of what failed ("HTTP 400", "API socket: Couldn't connect to server").
 * body: the parsed answer (borrowed), NULL when it had none. */
typedef void (*fc_api_done_fn)(struct fc_api *a, long status, json_t *body, const char *err,
                               void *userdata);

/* connect_wait_ms: how long a call retries while the socket does not accept yet (the process is
 * starting); timeout_ms: the limit of one call. */
int fc_api_new(struct event_base *base, const char *sock_path, uint32_t connect_wait_ms,
               uint32_t timeout_ms, struct fc_api **ret);
/* Pending calls are dropped without their callbacks. Safe inside a callback. */
void fc_api_free(struct fc_api *a);

/* method: "GET", "PUT", "PATCH"; body (taken, may be NULL) is sent as JSON. */
int fc_api_call(struct fc_api *a, const char *method, const char *path, json_t *body,
                fc_api_done_fn cb, void *userdata);
