/* httpd.h: loopback or UNIX-socket HTTP listeners (httpd.c: metrics.listen, piston.listen). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evhttp_request;
struct httpd;
struct opd;

typedef void (*httpd_cb)(struct evhttp_request *req, void *arg);

/* Listen on spec (op_config_local_listen() syntax) with bodies up to body_max bytes; a UNIX
 * socket gets socket_mode. The caller adds its handlers with httpd_set_cb(). key (the config
 * key, for logs) must outlive it. Logs its failures. */
int httpd_open(struct opd *d, const char *key, const char *spec, size_t body_max,
               struct httpd **ret);
/* Handlers (evhttp_set_cb() and evhttp_set_gencb() behind a check): a request whose Host or
 * Origin does not name the listener gets 403 and never reaches them. */
int httpd_set_cb(struct httpd *h, const char *path, httpd_cb cb, void *arg);
int httpd_set_gencb(struct httpd *h, httpd_cb cb, void *arg);
struct evhttp *httpd_http(struct httpd *h);
/* Who may connect, asked of each connection (its fd) before it takes a slot of its peer: one
 * refused gets 403 {"message": "not allowed (access.group only)"} and is closed. */
typedef bool (*httpd_admit_fn)(struct opd *d, int fd);
void httpd_set_admit(struct httpd *h, httpd_admit_fn admit);
/* Piston's error shape: {"message": msg}. */
void httpd_send_message(struct evhttp_request *req, int status, const char *msg);
/* Over a UNIX socket (where peer credentials can be asked), not loopback TCP. */
bool httpd_is_unix(const struct httpd *h);
uint16_t httpd_port(const struct httpd *h);        /* TCP: the port bound; 0 otherwise */
unsigned httpd_connections(const struct httpd *h); /* open now */
void httpd_pause(struct httpd *h); /* stop accepting for good (shutdown); NULL: nothing */
/* Close, unlink a UNIX socket, free; accepts NULL, returns NULL. */
struct httpd *httpd_close(struct httpd *h);
