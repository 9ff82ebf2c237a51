/* vsock-connect.h: a host-initiated connection to a guest's AF_VSOCK port through Firecracker's
 * vsock UNIX socket: connect, write "CONNECT <port>\n", read "OK <host port>\n"; after that the
 * stream is the guest's. Non-blocking on a libevent loop. */
#pragma once

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#define VSOCK_REPLY_MAX 32

/* Parse Firecracker's answer at the start of buf. Returns the length of the "OK <n>\n" line
 * (the stream's own bytes follow it), 0 when more bytes are needed, -EPROTO when it is not an
 * acknowledgement. Pure, for tests. */
int vsock_parse_ack(const char *buf, size_t len, uint32_t *ret_host_port);

struct vsock_conn;

/* fd >= 0: connected, nothing of the guest's stream consumed, fd is the callee's (non-blocking).
 * fd < 0: err is -ENOENT (no socket yet), -ECONNREFUSED (nobody listens on the port: the
 * connection was closed without an acknowledgement), -EPROTO, -ETIMEDOUT or another errno. */
typedef void (*vsock_conn_fn)(int fd, int err, void *userdata);

/* 0: the callback runs once, from the loop, never from inside this call. < 0: failed at once
 * (-ENOENT: no socket yet, -ECONNREFUSED: nothing listens on it), and no callback. */
int vsock_connect_start(struct event_base *base, const char *uds_path, uint32_t port,
                        uint32_t timeout_ms, vsock_conn_fn cb, void *userdata,
                        struct vsock_conn **ret);
/* Cancel without a callback (not from inside the callback: the object is gone by then). */
void vsock_connect_cancel(struct vsock_conn *c);
