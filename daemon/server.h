/* server.h: opd's listening UNIX socket (server.c): bound, or passed by systemd; accepting
 * pauses on a timer when out of fds. */
#pragma once

#include <stdbool.h>

struct opd;

/* At start: the soft RLIMIT_NOFILE raised to the hard one. 1 raised, 0 already there. */
int server_raise_nofile(void);
/* Accepting fd (just accepted) leaves enough descriptors in reserve for VMs (and, for an HTTP
 * listener, for opd's own socket too). */
bool server_fd_spare(const struct opd *d, int fd, bool http);

int server_listen(struct opd *d);
/* Stop listening; the socket file is removed unless systemd made it. */
void server_close(struct opd *d);
