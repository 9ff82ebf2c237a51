/* httpd.h: loopback or UNIX-socket HTTP listeners (httpd.c: metrics.listen, piston.listen). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct evhttp;
struct httpd;
struct opd;

/* Listen on spec (op_config_local_listen() syntax) with bodies up to body_max bytes; a UNIX
 * socket gets socket_mode. The caller sets its callbacks on httpd_http(*ret). key (the config
 * key, for logs) must outlive it. Logs its failures. */
int httpd_open(struct opd *d, const char *key, const char *spec, size_t body_max,
               struct httpd **ret);
struct evhttp *httpd_http(struct httpd *h);
/* Over a UNIX socket (where peer credentials can be asked), not loopback TCP. */
bool httpd_is_unix(const struct httpd *h);
void httpd_pause(struct httpd *h); /* stop accepting (shutdown); NULL: nothing */
/* Close, unlink a UNIX socket, free; accepts NULL, returns NULL. */
struct httpd *httpd_close(struct httpd *h);
