/* session-fork.h: session_fork, session_pause and session_resume (session-fork.c): operations
 * that save a session's VM whole and restore sessions from it. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "msg.h"

struct client;
struct job;
struct opd;
struct session;
struct snap_ref;

void op_session_fork(struct client *c, json_t *id, json_t *req);
void op_session_pause(struct client *c, json_t *id, json_t *req);
void op_session_resume(struct client *c, json_t *id, json_t *req);

/* Internal: a job's restores are all done (or bounded out): answer and free it. */
void job_finish(struct job *j);

/* opd stops: every fork, pause, resume or save under way ends now, answered shutting_down
 * while its client is still connected: the VM it was saving destroyed (its session, SAVING,
 * ends in sessions_stop()), the sessions it was restoring ended, what it had written removed; a
 * session being resumed stays paused on disk. Idempotent. */
void session_jobs_stop(struct opd *d);
/* At start: the images of forks an earlier opd made go. They live only as long as the sessions
 * restored from them, and none outlives the opd that ran it; one whose VMs were still being
 * reaped when that opd exited is still on disk. */
void session_forks_clean(struct opd *d);

/* May uid have sessions more sessions and vms more VMs (session.max, session.max_per_uid,
 * max_vms, max_vms_per_uid; idle clones of the pools give way for max_vms)? false: the refusal's
 * text, naming the key, in why. */
bool session_room_for(struct opd *d, uid_t uid, uint32_t sessions, uint32_t vms, char *why,
                      size_t whylen);

/* ---- for opd's own sessions (exec_cases): save once, restore many ---- */
/* The image saved: s (IDLE again, resumed) and a reference to the image, the callee's; or img
 * NULL and why the save failed (a file system full) while s runs on, IDLE. */
typedef void (*session_image_fn)(struct session *s, struct snap_ref *img, const char *err);
/* Save s (IDLE, a VM restored from a snapshot) whole: s is SAVING meanwhile, then resumed and
 * done() called. A save that fails with the VM whole resumes s and calls done() with no image;
 * one whose VM died ends s (SESSION_END_FAILED) and done() is not called; a session ended
 * meanwhile gets no call either. -EBUSY (not idle, or a cold VM), -errno (-ENOSPC: no room for
 * the save) with why: nothing started, s unchanged. */
int session_save_image(struct session *s, session_image_fn done, char *why, size_t whylen);
/* The error code of a save refused before the VM stopped (k: what session_save_image(), or a
 * fork's or a pause's start of its save, returned): internal_error for lack of room, vm_failed
 * otherwise; the session is untouched either way. */
enum op_err session_save_err_code(int k);
/* Restore s (NEW, from session_new()) from img: BOOTING (boot_timeout_ms) until its VM runs,
 * then IDLE as an opened session; a VM that fails ends s. */
int session_restore(struct session *s, struct snap_ref *img);
