/* door.h: the Piston v2 API over HTTP: /api/v2/runtimes, /api/v2/execute (door.c). */
#pragma once

struct opd;

int door_init(struct opd *d);  /* serves piston.listen unless empty or no_listen */
void door_stop(struct opd *d); /* answers every request in flight "shutting down" */
void door_done(struct opd *d);
/* Requests in flight at the door (0 before door_init()). */
unsigned door_inflight(const struct opd *d);
