/* server.h: opd's listening UNIX socket (server.c): bound, or passed by systemd; accepting
 * pauses on a timer when out of fds. */
#pragma once

struct opd;

int server_listen(struct opd *d);
/* Stop listening; the socket file is removed unless systemd made it. */
void server_close(struct opd *d);
