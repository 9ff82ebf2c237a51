/* s3sync.c: fetching snapshot versions from S3 into the cache, in the background: at start,
 * every s3.sync_minutes and on the "sync" action. Per language: read <lang>/current, fetch the
 * chunk manifest, stage (off the loop), fetch the missing chunks in parallel and check each
 * one's sha256, install (off the loop), then let the pool verify and switch. Locations are
 * tried in order; a failure leaves the serving version alone and the staging for a resume. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bgjob.h"
#include "cleanup.h"
#include "client.h"
#include "fs-space.h"
#include "log.h"
#include "opd.h"
#include "pool.h"
#include "s3-config.h"
#include "s3-layout.h"
#include "s3-list.h"
#include "s3.h"
#include "poolplan.h"
#include "s3sync.h"
#include "snap-sign.h"
#include "snap-stage.h"
#include "util.h"
#include "workq.h"

#define S3SYNC_LIST_PAGES_MAX 100

struct sync_waiter {
        struct reply_slot *slot;
        struct sync_waiter *next;
};

struct sync_piece {
        struct s3sync *s;
        uint16_t file;
        uint32_t chunk;
        uint64_t off;
        size_t len;
        char *key;
};

struct s3sync {
        struct opd *d;
        struct event *timer, *kick;
        struct s3_client *client;
        struct event_base *base;
        struct s3_location locs[S3_LOCATIONS_MAX];
        size_t n_locs, loc;
        size_t lang; /* index into d->langs.v */
        bool running, again;
        struct sync_waiter *waiters, *next_waiters;
        json_t *result;  /* per language */
        json_t *expires; /* per language: the expiry of the signed version last accepted */
        /* the language in progress */
        struct s3_chunkman m;
        bool have_m;
        struct s3_stage_plan plan;
        uint32_t next_piece, inflight, fetched;
        uint64_t bytes;
        int fds[SNAP_FILES_MAX];
        int err;
        char errmsg[768];
        char plain_version[SNAP_NAME_MAX];
        char want[SNAP_NAME_MAX]; /* the version <lang>/current names */
        unsigned pages;
        uint64_t t_fetch;
        char prefix[S3_PREFIX_MAX + 1];              /* s3.prefix when the run started */
        uint8_t trusted[S3_TRUSTED_MAX][S3_KEY_LEN]; /* s3.trusted_keys when the run started */
        size_t n_trusted;
        bool verified;   /* s->m came signed by a trusted key (its serial counts) */
        bool keep_stage; /* the failure was a transfer: the staged chunks are a resume point */
        struct s3_sync_stats stats;
};

static void lang_next(struct s3sync *s);
static void loc_start(struct s3sync *s);

static const char *lang_name(struct s3sync *s)
{
        return s->d->langs.v[s->lang].name;
}

static const struct s3_location *loc(struct s3sync *s)
{
        return &s->locs[s->loc];
}

static void lang_reset(struct s3sync *s)
{
        for (size_t i = 0; i < SNAP_FILES_MAX; i++)
                s->fds[i] = safe_close(s->fds[i]);
        if (s->have_m)
                s3_chunkman_free(&s->m);
        s->have_m = false;
        s3_stage_plan_free(&s->plan);
        s->next_piece = s->inflight = s->fetched = 0;
        s->bytes = 0;
        s->err = 0;
        s->errmsg[0] = 0;
        s->plain_version[0] = 0;
        s->want[0] = 0;
        s->verified = false;
        s->keep_stage = false;
}

/* o NULL (no memory, or a string that is not UTF-8): a fixed failure, never no entry for the
 * language (an answer that leaves a language out reads as "nothing to do"). */
static void set_result(struct s3sync *s, json_t *o)
{
        if (!o)
                o = json_pack("{s:b, s:s}", "ok", 0, "error",
                              "the outcome could not be encoded (opd's log has it)");
        json_object_set_new(s->result, lang_name(s), o);
}

/* This location failed for this language: the next one, or give up on the language. */
static void loc_failed(struct s3sync *s, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void loc_failed(struct s3sync *s, int r, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        s->stats.failures++;
        log_warn("s3 sync %s from s3://%s (%s): %s", lang_name(s), loc(s)->bucket, loc(s)->region,
                 msg);
        /* what a bucket or a parser wrote may be any bytes, cut anywhere: ASCII for the answer */
        for (char *c = msg; *c; c++)
                if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                        *c = '?';
        /* Staged chunks are kept only after a transfer failed (the next sync, or the next
         * location, resumes from them); after anything else (no space, a corrupt chunk, a
         * failed install) the staging directory goes at once. */
        if (s->have_m && !s->keep_stage)
                s3_stage_remove(s->d->cfg.cache_dir, &s->m);
        if (s->loc + 1 < s->n_locs) {
                s->loc++;
                lang_reset(s);
                loc_start(s);
                return;
        }
        set_result(s,
                   json_pack("{s:b, s:s, s:s}", "ok", 0, "error", msg, "location", loc(s)->bucket));
        (void)r;
        lang_reset(s);
        s->lang++;
        lang_next(s);
}

static void lang_done(struct s3sync *s, const char *version, bool installed)
{
        char where[160];

        snprintf(where, sizeof(where), "%s@%s", loc(s)->bucket, loc(s)->region);
        set_result(s, json_pack("{s:b, s:s, s:b, s:s, s:i, s:i, s:i, s:i, s:i, s:I}", "ok", 1,
                                "version", version, "installed", installed, "location", where,
                                "fetched", (int)s->fetched, "present", (int)s->plan.present,
                                "copied", (int)s->plan.copied, "zero", (int)s->plan.zero, "linked",
                                (int)s->plan.linked, "bytes", (json_int_t)s->bytes));
        if (s->verified && s->m.expires) {
                json_object_set_new(json_object_get(s->result, lang_name(s)), "expires",
                                    json_integer((json_int_t)s->m.expires));
                json_object_set_new(s->expires, lang_name(s),
                                    json_integer((json_int_t)s->m.expires));
        } else
                json_object_del(s->expires, lang_name(s));
        if (installed)
                log_info("s3 sync %s: installed %s from %s (%u chunks fetched, %llu bytes; %u "
                         "staged, %u copied, %u of zeros, %u linked)",
                         lang_name(s), version, where, s->fetched, (unsigned long long)s->bytes,
                         s->plan.present, s->plan.copied, s->plan.zero, s->plan.linked);
        lang_reset(s);
        s->lang++;
        lang_next(s);
}

/* ---- install ---- */

static int install_in_child(void *arg, char *msg, size_t msglen)
{
        struct s3sync *s = arg;

        /* a trusted serial is recorded before current switches (s3_stage_install()) */
        return s3_stage_install(s->d->cfg.cache_dir, &s->m, s->verified, msg, msglen);
}

static void on_installed(struct opd *d, int r, const char *msg, void *userdata)
{
        struct s3sync *s = userdata;
        char version[SNAP_NAME_MAX];

        if (r == -ECANCELED)
                return; /* opd is stopping: s3sync_done() ends the run */
        if (r < 0) {
                loc_failed(s, r, "install: %s", msg);
                return;
        }
        snprintf(version, sizeof(version), "%s", s->m.snap.version);
        pools_check_snapshots(d->pools); /* verify, switch, drain the old clones */
        lang_done(s, version, true);
}

/* ---- fetch the chunks the plan lists ---- */

static void fetch_more(struct s3sync *s);

static void piece_free(struct sync_piece *p)
{
        free(p->key);
        free(p);
}

static void on_piece(const struct s3_resp *resp, void *userdata)
{
        struct sync_piece *p = userdata;
        struct s3sync *s = p->s;
        const char *want = s->m.plain ? NULL : s->m.files[p->file].chunks[p->chunk].sha256;

        s->inflight--;
        if (s->err == 0) {
                if (resp->r < 0) {
                        s->err = resp->r;
                        /* a transfer that failed is resumed; a write that failed (ENOSPC)
                         * is not */
                        s->keep_stage = strncmp(resp->error, "write:", 6) != 0;
                        if (!s->keep_stage && op_err_is_nospace(resp->r))
                                /* the cache's file system is full: which, and how full */
                                op_errf_fs(s->errmsg, sizeof(s->errmsg), resp->r,
                                           s->d->cfg.cache_dir,
                                           "writing chunk %u of %s/%s/%s (GET %.200s)", p->chunk,
                                           s->m.snap.lang, s->m.snap.version,
                                           s->m.snap.files[p->file].name, p->key);
                        else
                                snprintf(s->errmsg, sizeof(s->errmsg), "GET %.200s: %.300s", p->key,
                                         resp->error);
                } else if (resp->body_len != p->len || (want && strcmp(resp->sha256, want) != 0)) {
                        s->err = -EBADMSG;
                        snprintf(s->errmsg, sizeof(s->errmsg),
                                 "chunk %u of %s: %zu bytes with sha256 %s, the manifest says "
                                 "%zu bytes with sha256 %s (corrupt object in the bucket?)",
                                 p->chunk, s->m.snap.files[p->file].name, resp->body_len,
                                 resp->sha256, p->len, want ? want : "-");
                } else {
                        /* the disk writes it now, while the other chunks arrive: the fsync at
                         * install has little left to wait for (no second pass) */
                        (void)sync_file_range(s->fds[p->file], (off_t)p->off, (off_t)p->len,
                                              SYNC_FILE_RANGE_WRITE);
                        s->fetched++;
                        s->bytes += p->len;
                        s->stats.chunks_fetched++;
                        s->stats.bytes_fetched += p->len;
                }
        }
        piece_free(p);
        fetch_more(s);
}

static void fetch_more(struct s3sync *s)
{
        struct opd *d = s->d;
        int r;

        while (s->err == 0 && s->next_piece < s->plan.n_need && s->inflight < d->cfg.s3_parallel) {
                const struct s3_stage_need *n = &s->plan.need[s->next_piece++];
                const struct snap_file *sf = &s->m.snap.files[n->file];
                struct sync_piece *p = calloc(1, sizeof(*p));
                /* the plain layout has no chunk hashes to check: its pieces are not hashed
                 * here, the whole files are at install */
                struct s3_req req = {.method = "GET", .sha256 = !s->m.plain};

                if (!p) {
                        s->err = -ENOMEM;
                        break;
                }
                p->s = s;
                p->file = n->file;
                p->chunk = n->chunk;
                p->off = (uint64_t)n->chunk * s->m.chunk_size;
                p->len = sf->size - p->off < s->m.chunk_size ? (size_t)(sf->size - p->off)
                                                             : s->m.chunk_size;
                if (s->m.plain) {
                        p->key =
                            s3_key_plain(s->prefix, s->m.snap.lang, s->m.snap.version, sf->name);
                        req.range_off = p->off;
                        req.range_len = p->len;
                } else {
                        p->key =
                            s3_key_chunk(s->prefix, s->m.files[n->file].chunks[n->chunk].sha256);
                }
                req.key = p->key;
                req.max_body = p->len;
                /* written at its place as it arrives (no buffer in between); a bad hash fails
                 * the sync and removes the staging */
                req.sink = true;
                req.sink_fd = s->fds[n->file];
                req.sink_off = p->off;
                r = p->key ? s3_start(s->client, loc(s), &req, on_piece, p, NULL) : -ENOMEM;
                if (r < 0) {
                        piece_free(p);
                        s->err = r;
                        snprintf(s->errmsg, sizeof(s->errmsg), "cannot start a transfer: %s",
                                 strerror(-r));
                        break;
                }
                s->inflight++;
        }
        if (s->inflight > 0)
                return;
        if (s->err < 0) {
                loc_failed(s, s->err, "%s", s->errmsg);
                return;
        }
        if (s->next_piece < s->plan.n_need)
                return;
        for (size_t i = 0; i < SNAP_FILES_MAX; i++)
                s->fds[i] = safe_close(s->fds[i]);
        log_info("s3 sync %s: fetched %u chunks (%llu bytes) in %.2f s; installing", lang_name(s),
                 s->fetched, (unsigned long long)s->bytes,
                 (double)(op_now_us() - s->t_fetch) / 1e6);
        r = bgjob_start(d, install_in_child, s, NULL, on_installed, s);
        if (r < 0)
                loc_failed(s, r, "cannot start the install job: %s", strerror(-r));
}

/* ---- stage: what is already here ---- */

static int prepare_in_child(void *arg, char *msg, size_t msglen)
{
        struct s3sync *s = arg;
        const struct op_config *c = &s->d->cfg;
        int r;

        /* links first: the space check counts what they could not spare */
        r = s3_stage_link(c->cache_dir, &s->m, msg, msglen);
        if (r >= 0)
                r = s3_stage_check_space(c->cache_dir, &s->m, (uint64_t)c->s3_reserve_mb << 20,
                                         (uint64_t)c->s3_cache_max_mb << 20, msg, msglen);
        return r < 0 ? r : s3_stage_prepare(c->cache_dir, &s->m, msg, msglen);
}

static void on_prepared(struct opd *d, int r, const char *msg, void *userdata)
{
        struct s3sync *s = userdata;

        if (r == -ECANCELED)
                return; /* opd is stopping: s3sync_done() ends the run */
        if (r == -ENOSPC)
                s->stats.refused_bounds++;
        if (r < 0) {
                loc_failed(s, r, "staging: %s", msg);
                return;
        }
        r = s3_stage_plan_read(d->cfg.cache_dir, &s->m, &s->plan);
        /* only the files chunks are fetched into: a file linked to an installed one is not
         * opened for writing (it may be an image's, which the daemon cannot write) */
        for (uint32_t k = 0; r >= 0 && k < s->plan.n_need; k++) {
                size_t i = s->plan.need[k].file;

                if (s->fds[i] >= 0)
                        continue;
                s->fds[i] = s3_stage_open(d->cfg.cache_dir, &s->m, i);
                if (s->fds[i] < 0)
                        r = s->fds[i];
        }
        if (r < 0) {
                loc_failed(s, r, "staging: %s", strerror(-r));
                return;
        }
        s->stats.chunks_reused += s->plan.present + s->plan.copied + s->plan.linked;
        s->t_fetch = op_now_us();
        log_info("s3 sync %s: %s: %u chunks to fetch (%u staged, %u copied, %u of zeros, %u in "
                 "files linked to installed ones)",
                 lang_name(s), s->m.snap.version, s->plan.n_need, s->plan.present, s->plan.copied,
                 s->plan.zero, s->plan.linked);
        fetch_more(s);
}

/* Installed already: make it current if it is not (a rollback published in the bucket, signed
 * again with a higher serial when signatures are required). A trusted serial is recorded first,
 * before current may switch: 1, or 0 when the version is not installed, or -errno once
 * loc_failed() was called (the serial cannot be recorded: current not switched). */
static int installed(struct s3sync *s, const char *version)
{
        struct snap_manifest m;
        char err[256], cur[SNAP_NAME_MAX] = "";
        int fd, r;

        if (snap_open(s->d->cfg.cache_dir, lang_name(s), version, &fd, &m, err, sizeof(err)) < 0)
                return 0;
        close(fd);
        fd = -1;
        if (s->verified &&
            (r = s3_serial_write(s->d->cfg.cache_dir, lang_name(s), s->m.serial, version)) < 0) {
                loc_failed(s, r, "cannot record serial %llu of %s: %s (current not switched)",
                           (unsigned long long)s->m.serial, version, strerror(-r));
                return r;
        }
        if (snap_open(s->d->cfg.cache_dir, lang_name(s), NULL, &fd, &m, err, sizeof(err)) == 0) {
                snprintf(cur, sizeof(cur), "%s", m.version);
                close(fd);
        }
        if (strcmp(cur, version) != 0 &&
            snap_set_current(s->d->cfg.cache_dir, lang_name(s), version) == 0)
                pools_check_snapshots(s->d->pools);
        return 1;
}

/* What the host allows a version to ask for: the language's memory (the amount the pool
 * budget counts) and vm.vcpus. */
static int check_fits(struct s3sync *s)
{
        const struct op_lang *g = &s->d->langs.v[s->lang];
        uint32_t mem = op_lang_memory_mb(&s->d->cfg, g);

        if (s->m.snap.memory_mb > mem || s->m.snap.vcpus > s->d->cfg.vm_vcpus) {
                s->stats.refused_bounds++;
                loc_failed(s, -E2BIG,
                           "version %s refused: it asks for %u MiB and %u vCPUs; %s is given "
                           "%u MiB (memory_mb) and %u vCPUs (vm.vcpus)",
                           s->m.snap.version, s->m.snap.memory_mb, s->m.snap.vcpus, lang_name(s),
                           mem, s->d->cfg.vm_vcpus);
                return -E2BIG;
        }
        return 0;
}

/* The manifest is trusted (or unsigned ones are allowed) and names what was asked for. */
static void stage(struct s3sync *s)
{
        char version[SNAP_NAME_MAX];
        int r;

        if (strcmp(s->m.snap.lang, lang_name(s)) != 0) {
                loc_failed(s, -EINVAL, "the manifest of %s is for language %s", s->m.snap.version,
                           s->m.snap.lang);
                return;
        }
        if (strcmp(s->m.snap.version, s->want) != 0) {
                loc_failed(s, -EINVAL, "%s/current names %s but its manifest is version %s",
                           lang_name(s), s->want, s->m.snap.version);
                return;
        }
        if (check_fits(s) < 0)
                return;
        snprintf(version, sizeof(version), "%s", s->m.snap.version);
        r = installed(s, version);
        if (r < 0)
                return;
        if (r > 0) {
                lang_done(s, version, false);
                return;
        }
        r = bgjob_start(s->d, prepare_in_child, s, NULL, on_prepared, s);
        if (r < 0)
                loc_failed(s, r, "cannot start the staging job: %s", strerror(-r));
}

/* ---- which version ---- */

/* The signature against the pinned keys. Nothing is staged before this passes. */
static int check_signed(struct s3sync *s, const struct snap_signed *env)
{
        char err[512];
        int r;

        if (!env->is_signed && s->d->cfg.s3_allow_unsigned)
                return 0;
        r = snap_signed_verify(env, (const uint8_t(*)[SNAP_KEY_LEN])s->trusted, s->n_trusted, err,
                               sizeof(err));
        if (r < 0) {
                if (r == -EPERM)
                        s->stats.refused_unsigned++;
                else if (r == -ENOKEY)
                        s->stats.refused_key++;
                else
                        s->stats.refused_signature++;
                loc_failed(s, r, "version %s refused: %s", s->want, err);
                return r;
        }
        s->verified = true;
        return 0;
}

/* The signed serial against the highest this host has accepted for the language. */
static int check_serial(struct s3sync *s)
{
        char seen[SNAP_NAME_MAX];
        uint64_t high;
        int r;

        if (!s->verified)
                return 0;
        r = s3_serial_read(s->d->cfg.cache_dir, lang_name(s), &high, seen);
        if (r < 0) {
                loc_failed(s, r, "cannot read the highest serial seen for %s: %s", lang_name(s),
                           strerror(-r));
                return r;
        }
        if (s->m.serial < high || (s->m.serial == high && seen[0] && strcmp(seen, s->want) != 0)) {
                s->stats.refused_rollback++;
                loc_failed(s, -ESTALE,
                           "version %s refused: serial %llu, but this host already accepted "
                           "serial %llu (%s): a replayed older version?",
                           s->want, (unsigned long long)s->m.serial, (unsigned long long)high,
                           seen);
                return -ESTALE;
        }
        return 0;
}

/* The signature still vouches for the version: its "expires" not passed, and present when
 * s3.require_expiry says so. A version already serving that fails here keeps serving; the
 * refusal is what tells the operator (docs/s3.md, "Trust"). */
static int check_expiry(struct s3sync *s)
{
        char err[512];
        int r;

        if (!s->verified)
                return 0;
        r = s3_chunkman_check_expiry(&s->m, (uint64_t)(op_realtime_ns() / 1000000000),
                                     s->d->cfg.s3_require_expiry, err, sizeof(err));
        if (r < 0) {
                if (r == -EKEYEXPIRED)
                        s->stats.refused_expired++;
                else
                        s->stats.refused_no_expiry++;
                loc_failed(s, r, "%s", err);
        }
        return r;
}

static void on_chunkman(const struct s3_resp *resp, void *userdata)
{
        struct s3sync *s = userdata;
        struct snap_signed env = {0};
        char err[256];
        int r;

        if (resp->r < 0) {
                loc_failed(s, resp->r, "chunk manifest: %s", resp->error);
                return;
        }
        r = snap_signed_parse(resp->body, resp->body_len, &env, err, sizeof(err));
        if (r < 0) {
                loc_failed(s, r, "%s", err);
                return;
        }
        if (check_signed(s, &env) < 0) {
                snap_signed_free(&env);
                return;
        }
        r = s3_chunkman_parse(env.payload, env.payload_len, &s->m, err, sizeof(err));
        snap_signed_free(&env);
        if (r < 0) {
                loc_failed(s, r, "%s", err);
                return;
        }
        s->have_m = true;
        if (check_serial(s) < 0 || check_expiry(s) < 0)
                return;
        stage(s);
}

static void on_plain_manifest(const struct s3_resp *resp, void *userdata)
{
        struct s3sync *s = userdata;
        struct snap_manifest sm;
        char err[256];
        int r;

        if (resp->r < 0) {
                loc_failed(s, resp->r, "manifest.json: %s", resp->error);
                return;
        }
        r = snap_manifest_parse(resp->body, resp->body_len, &sm, err, sizeof(err));
        if (r == 0 && strcmp(sm.version, s->plain_version) != 0)
                r = op_errf(err, sizeof(err), -EINVAL, "manifest.json names version %s",
                            sm.version);
        if (r < 0) {
                loc_failed(s, r, "%s", err);
                return;
        }
        s3_chunkman_plain(&sm, S3_CHUNK_SIZE_DEFAULT, &s->m);
        s->have_m = true;
        stage(s);
}

static int fetch_text(struct s3sync *s, const char *key, size_t max, s3_done_fn done)
{
        struct s3_req req = {.method = "GET", .key = key, .max_body = max};

        return s3_start(s->client, loc(s), &req, done, s, NULL);
}

static void want_version(struct s3sync *s, const char *version, bool plain)
{
        _cleanup_free_ char *key = NULL;
        int r;

        snprintf(s->want, sizeof(s->want), "%s", version);
        if (plain) {
                /* the plain layout has no signatures */
                if (!s->d->cfg.s3_allow_unsigned) {
                        s->stats.refused_unsigned++;
                        loc_failed(s, -EPERM,
                                   "version %s refused: the plain layout is not signed "
                                   "(s3.allow_unsigned is no)",
                                   version);
                        return;
                }
                r = installed(s, version);
                if (r != 0) {
                        if (r > 0)
                                lang_done(s, version, false);
                        return;
                }
                snprintf(s->plain_version, sizeof(s->plain_version), "%s", version);
                key = s3_key_plain(s->prefix, lang_name(s), version, "manifest.json");
        } else {
                /* even a version installed already: its signed manifest says whether it may be
                 * current again */
                key = s3_key_version(s->prefix, lang_name(s), version);
        }
        r = key ? fetch_text(s, key, plain ? SNAP_MANIFEST_MAX : S3_CHUNKMAN_MAX,
                             plain ? on_plain_manifest : on_chunkman)
                : -ENOMEM;
        if (r < 0)
                loc_failed(s, r, "cannot start a transfer: %s", strerror(-r));
}

/* The plain layout (aws s3 sync of a cache directory): the newest version directory. */
static void on_plain_entry(const char *key, uint64_t size, bool is_prefix, void *ud)
{
        struct s3sync *s = ud;
        size_t plen = strlen(s->prefix) + strlen(lang_name(s)) + 1, n = strlen(key);
        char name[SNAP_NAME_MAX];

        if (!is_prefix || n <= plen + 1 || n - plen - 1 >= sizeof(name))
                return;
        memcpy(name, key + plen, n - plen - 1);
        name[n - plen - 1] = 0;
        if (snap_name_valid(name) && strcmp(name, "versions") != 0 &&
            strcmp(name, "current") != 0 && strcmp(name, s->plain_version) > 0)
                snprintf(s->plain_version, sizeof(s->plain_version), "%s", name);
}

static int list_page(struct s3sync *s, const char *token);

static void on_plain_page(const struct s3_resp *resp, void *userdata)
{
        struct s3sync *s = userdata;
        struct s3_list_page pg;
        char version[SNAP_NAME_MAX];
        int r;

        if (resp->r < 0) {
                loc_failed(s, resp->r, "list %s/: %s", lang_name(s), resp->error);
                return;
        }
        r = s3_list_parse(resp->body, resp->body_len, &pg);
        if (r < 0) {
                loc_failed(s, r, "list %s/: unreadable answer", lang_name(s));
                return;
        }
        for (size_t i = 0; i < pg.n_prefixes; i++)
                on_plain_entry(pg.prefixes[i], 0, true, s);
        if (pg.truncated && ++s->pages < S3SYNC_LIST_PAGES_MAX) {
                r = list_page(s, pg.next_token);
                s3_list_page_free(&pg);
                if (r < 0)
                        loc_failed(s, r, "cannot start a transfer: %s", strerror(-r));
                return;
        }
        s3_list_page_free(&pg);
        if (!s->plain_version[0]) {
                set_result(s, json_pack("{s:b, s:n}", "ok", 1, "version"));
                s->lang++;
                lang_next(s);
                return;
        }
        snprintf(version, sizeof(version), "%s", s->plain_version);
        want_version(s, version, true);
}

/* One page of <prefix><lang>/ listed with delimiter "/": the version directories. */
static int list_page(struct s3sync *s, const char *token)
{
        _cleanup_free_ char *prefix = NULL, *query = NULL;
        const char *names[] = {"list-type", "prefix", "delimiter", "continuation-token"};
        const char *values[] = {"2", NULL, "/", token};
        struct s3_req req = {.method = "GET", .key = "", .max_body = S3_LIST_BODY_MAX};

        if (asprintf(&prefix, "%s%s/", s->prefix, lang_name(s)) < 0)
                return -ENOMEM;
        values[1] = prefix;
        query = s3_query(names, values, token ? 4 : 3);
        if (!query)
                return -ENOMEM;
        req.query = query;
        return s3_start(s->client, loc(s), &req, on_plain_page, s, NULL);
}

static void on_current(const struct s3_resp *resp, void *userdata)
{
        struct s3sync *s = userdata;
        char version[SNAP_NAME_MAX];
        int r;

        if (resp->r == 0) {
                size_t n = strcspn(resp->body, "\r\n");

                if (n >= sizeof(version)) {
                        loc_failed(s, -EINVAL, "%s/current is not a version name", lang_name(s));
                        return;
                }
                memcpy(version, resp->body, n);
                version[n] = 0;
                if (!snap_name_valid(version)) {
                        loc_failed(s, -EINVAL, "%s/current is not a version name", lang_name(s));
                        return;
                }
                want_version(s, version, false);
                return;
        }
        if (resp->r != -ENOENT) {
                loc_failed(s, resp->r, "%s/current: %s", lang_name(s), resp->error);
                return;
        }
        /* No chunked layout for this language. A language this host has installed a signed
         * version of was published: with unsigned versions not allowed, its current gone is
         * this location failing (the next one is tried, and the failure counted), so a bucket
         * cannot hold a host on its version by deleting one object. Otherwise the plain layout
         * is looked for (a version found there is refused as unsigned unless allowed). */
        if (!s->d->cfg.s3_allow_unsigned) {
                char had[SNAP_NAME_MAX];
                uint64_t serial = 0;

                r = s3_serial_read(s->d->cfg.cache_dir, lang_name(s), &serial, had);
                if ((r < 0 && r != -ENOENT) || serial > 0) {
                        loc_failed(s, -ENOENT,
                                   "%s/current: not found, although this host has installed a "
                                   "signed version of it (the plain layout is not signed: "
                                   "s3.allow_unsigned is no)",
                                   lang_name(s));
                        return;
                }
        }
        s->plain_version[0] = 0;
        s->pages = 0;
        r = list_page(s, NULL);
        if (r < 0)
                loc_failed(s, r, "cannot start a transfer: %s", strerror(-r));
}

static void loc_start(struct s3sync *s)
{
        _cleanup_free_ char *key = s3_key_current(s->prefix, lang_name(s));
        int r = key ? fetch_text(s, key, 256, on_current) : -ENOMEM;

        if (r < 0)
                loc_failed(s, r, "cannot start a transfer: %s", strerror(-r));
}

/* ---- one run over every language ---- */

static void run_finish(struct s3sync *s)
{
        struct sync_waiter *w = s->waiters;

        s->waiters = NULL;
        while (w) {
                struct sync_waiter *next = w->next;
                reply_slot_send(w->slot, json_pack("{s:O?, s:b, s:O}", "id", reply_slot_id(w->slot),
                                                   "ok", 1, "languages", s->result));
                free(w);
                w = next;
        }
        json_decref(s->result);
        s->result = NULL;
        s->running = false;
        s->stats.retries += s3_client_stats(s->client)->retries;
        /* the client is freed at a safe point: we may be inside its callback */
        event_active(s->kick, 0, 0);
}

static void lang_next(struct s3sync *s)
{
        struct opd *d = s->d;

        while (s->lang < d->langs.n && !d->langs.v[s->lang].available)
                s->lang++;
        if (s->lang >= d->langs.n || d->stopping) {
                run_finish(s);
                return;
        }
        s->loc = 0;
        loc_start(s);
}

static void run_fail_all(struct s3sync *s, const char *msg)
{
        struct sync_waiter *w = s->waiters;

        s->waiters = NULL;
        s->stats.failures++;
        while (w) {
                struct sync_waiter *next = w->next;
                reply_slot_send(w->slot, op_error_reply(reply_slot_id(w->slot), OP_ERR_INTERNAL,
                                                        "s3 sync: %s", msg));
                free(w);
                w = next;
        }
        s->running = false;
}

static void run_start(struct s3sync *s)
{
        struct opd *d = s->d;
        struct s3_creds creds = {0};
        struct s3_client_opts o = S3_CLIENT_OPTS_DEFAULT;
        char err[512];
        int r;

        s3_locations_free(s->locs, s->n_locs);
        s->n_locs = 0;
        s->running = true;
        s->waiters = s->next_waiters;
        s->next_waiters = NULL;
        s->again = false;
        r = s3_config_locations(&d->cfg, s->locs, &s->n_locs, err, sizeof(err));
        if (r == 0 && s->n_locs == 0)
                r = op_errf(err, sizeof(err), -ENOENT, "no S3 bucket configured (s3.bucket)");
        if (r == 0)
                r = s3_keys_parse(d->cfg.s3_trusted_keys, s->trusted, &s->n_trusted, err,
                                  sizeof(err));
        /* with a gateway, opd-s3d holds the credentials and the network; opd reads neither */
        if (r == 0 && d->cfg.s3_gateway[0]) {
                const char *secret = getenv("AWS_SECRET_ACCESS_KEY");

                o.gateway = d->cfg.s3_gateway;
                if (secret && *secret)
                        log_warn("s3 sync: s3.gateway is set, yet opd's environment holds "
                                 "AWS_SECRET_ACCESS_KEY (unused; every VMM inherits the "
                                 "environment): start opd without it (docs/s3.md)");
        } else if (r == 0)
                r = s3_creds_load(getenv, &creds, err, sizeof(err));
        o.retries = d->cfg.s3_retries;
        o.min_rate = d->cfg.s3_min_rate_kib << 10;
        o.max_conns = d->cfg.s3_parallel;
        o.workers = d->cfg.s3_workers ? workq_threads_for(d->cfg.s3_workers) : 0;
        if (r == 0 && (r = s3_client_new(d->base, o.gateway ? NULL : &creds, &o, &s->client)) < 0)
                snprintf(err, sizeof(err), "cannot start the S3 client: %s", strerror(-r));
        s3_creds_free(&creds);
        s->result = json_object();
        if (r < 0 || !s->result) {
                log_error("s3 sync: %s", err);
                json_decref(s->result);
                s->result = NULL;
                run_fail_all(s, err);
                return;
        }
        s->stats.syncs++;
        s->lang = 0;
        snprintf(s->prefix, sizeof(s->prefix), "%s", d->cfg.s3_prefix);
        log_info("s3 sync: looking at s3://%s/%s (%zu location%s)", s->locs[0].bucket, s->prefix,
                 s->n_locs, s->n_locs > 1 ? "s" : "");
        lang_next(s);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
        struct s3sync *s = arg;

        if (s->running)
                return;
        if (s->client) {
                s3_client_free(s->client);
                s->client = NULL;
        }
        if (s->next_waiters || s->again)
                run_start(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        struct s3sync *s = arg;

        s->again = true;
        event_active(s->kick, 0, 0);
        if (s->d->cfg.s3_sync_minutes)
                op_timer_arm_ms(s->timer, s->d->cfg.s3_sync_minutes * 60000u);
}

int s3sync_init(struct opd *d)
{
        struct s3sync *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        s->d = d;
        for (size_t i = 0; i < SNAP_FILES_MAX; i++)
                s->fds[i] = -1;
        s->timer = evtimer_new(d->base, on_timer, s);
        s->kick = event_new(d->base, -1, 0, on_kick, s);
        s->expires = json_object();
        d->s3 = s;
        if (!s->timer || !s->kick || !s->expires)
                return -ENOMEM;
        if (d->cfg.s3_bucket[0])
                op_timer_arm_ms(s->timer, 0); /* at start */
        return 0;
}

void s3sync_done(struct opd *d)
{
        struct s3sync *s = d->s3;

        if (!s)
                return;
        lang_reset(s);
        s3_client_free(s->client);
        s3_locations_free(s->locs, s->n_locs);
        json_decref(s->result);
        json_decref(s->expires);
        for (struct sync_waiter *w = s->waiters, *n; w; w = n) {
                n = w->next;
                free(w);
        }
        for (struct sync_waiter *w = s->next_waiters, *n; w; w = n) {
                n = w->next;
                free(w);
        }
        if (s->timer)
                event_free(s->timer);
        if (s->kick)
                event_free(s->kick);
        free(s);
        d->s3 = NULL;
}

void s3sync_reload(struct opd *d)
{
        struct s3sync *s = d->s3;

        if (!s)
                return;
        evtimer_del(s->timer);
        if (d->cfg.s3_bucket[0] && d->cfg.s3_sync_minutes)
                op_timer_arm_ms(s->timer, d->cfg.s3_sync_minutes * 60000u);
}

int s3sync_request(struct opd *d, struct reply_slot *slot)
{
        struct s3sync *s = d->s3;
        struct sync_waiter *w;

        if (!d->cfg.s3_bucket[0])
                return -ENOENT;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        /* a run in progress may have missed what was just published: answer after a new one */
        w->slot = slot;
        w->next = s->next_waiters;
        s->next_waiters = w;
        event_active(s->kick, 0, 0);
        return 0;
}

const struct s3_sync_stats *s3sync_stats(struct opd *d)
{
        return d->s3 ? &d->s3->stats : NULL;
}

const json_t *s3sync_expires(struct opd *d)
{
        return d->s3 ? d->s3->expires : NULL;
}
