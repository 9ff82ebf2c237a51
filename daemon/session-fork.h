/* session-fork.h: session_fork, session_pause and session_resume (session-fork.c): operations
 * that save a session's VM whole and restore sessions from it. */
#pragma once

#include <jansson.h>

struct client;
struct job;

void op_session_fork(struct client *c, json_t *id, json_t *req);
void op_session_pause(struct client *c, json_t *id, json_t *req);
void op_session_resume(struct client *c, json_t *id, json_t *req);

/* Internal: a job's restores are all done (or bounded out): answer and free it. */
void job_finish(struct job *j);
