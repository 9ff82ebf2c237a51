/* session-store.h: sessions paused to disk (session-store.c): <cache>/.paused/<uid>/<session>/
 * holds the VM saved whole (vmstate, mem, a hard link to its snapshot's rootfs.ext4) and
 * session.json, what opd needs to resume it under the same id, also after a restart. Everything
 * read back is untrusted: a damaged entry is refused with a reason and removed. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "msg-session.h"
#include "sha256.h"
#include "snapshot.h"

struct opd;
struct session;

#define SESSION_STORE_DIR   ".paused"
#define SESSION_META_NAME   "session.json"
#define SESSION_META_MAX    (64 * 1024)
#define SESSION_META_FORMAT 1

/* What session.json says. */
struct session_meta {
        char id[OP_SESSION_ID_LEN + 1];
        uid_t uid;
        char workdir[OP_SESSION_ID_LEN + 1]; /* its guest directory (struct session) */
        char lang[SNAP_NAME_MAX];
        struct snap_manifest m; /* the snapshot the session's VM came from */
        uint32_t idle_timeout_ms, max_lifetime_ms;
        uint64_t age_ms;       /* of the session when it was paused */
        uint64_t paused_at_ns; /* CLOCK_REALTIME */
        uint64_t execs;
        json_t *limits; /* owned */
        bool repl;      /* a repl session ("repl": true; absent: false) */
        uint64_t vmstate_size, mem_size;
        char vmstate_sha256[SHA256_HEX_LEN + 1];
};

/* Parse session.json (pure): -EINVAL with a reason for anything off. Free with
 * session_meta_done(). */
int session_meta_parse(const char *text, size_t len, struct session_meta *ret, char *errbuf,
                       size_t errlen);
json_t *session_meta_json(const struct session_meta *m);
void session_meta_done(struct session_meta *m);

/* <cache>/.paused/<uid>/<id> (staging: .tmp-<id>), its parents made (0700). */
int session_store_dir(struct opd *d, uid_t uid, const char *id, bool staging, char **ret);
/* The staged save is complete: hash vmstate, write session.json, fsync, rename into place (what
 * it takes on disk then: session_store_bytes()). */
int session_store_commit(struct opd *d, struct session_meta *meta, const char *stage, char *errbuf,
                         size_t errlen);
/* Read and check the saved session s (files there, sizes and vmstate's hash as recorded, the
 * same uid and id): its metadata and directory. On -EBADMSG (damaged) the caller removes it. */
int session_store_open(struct opd *d, const struct session *s, struct session_meta *ret,
                       char **ret_dir, char *errbuf, size_t errlen);
/* A saved session being resumed: its directory renamed out of the way (.run-<id>-<t>, not
 * listed, not counted, removed at the next start if left), so a restart does not list it again
 * and a later pause of the same session writes a new one. The new path in *ret. */
int session_store_take(struct opd *d, uid_t uid, const char *id, char **ret);
/* A resume that did not finish (opd stops) of a session still there: the directory taken goes
 * back, so that the session is listed paused again at the next start. */
int session_store_untake(struct opd *d, uid_t uid, const char *id, const char *taken);
/* Remove a saved session (and its staging directory, if any). */
void session_store_remove(struct opd *d, uid_t uid, const char *id);
/* The disk a saved session of uid takes (0 when it is not there). */
uint64_t session_store_bytes(struct opd *d, uid_t uid, const char *id);
/* Saved sessions of uid ((uid_t)-1: all) and the disk they take. */
void session_store_usage(struct opd *d, uid_t uid, unsigned *ret_count, uint64_t *ret_bytes);
/* At start: every saved session becomes a paused session again; damaged or expired ones and
 * staging left by a killed opd are removed. */
void session_store_load(struct opd *d);
