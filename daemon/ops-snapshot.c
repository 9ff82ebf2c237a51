/* ops-snapshot.c: the "snapshot" operation (administrators only): create a snapshot of a
 * language, list what the cache holds, verify it, or make the pools look at "current" again. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bgjob.h"
#include "cleanup.h"
#include "client.h"
#include "log.h"
#include "msg-snapshot.h"
#include "opd.h"
#include "ops.h"
#include "pool.h"
#include "s3sync.h"
#include "snapcreate.h"
#include "util.h"

static void on_created(struct opd *d, int r, const char *msg, const struct snap_manifest *m,
                       void *userdata)
{
        struct reply_slot *slot = userdata;
        json_t *files, *ans;

        if (r < 0) {
                reply_slot_send(slot, op_error_reply(reply_slot_id(slot), OP_ERR_INTERNAL,
                                                     "snapshot failed: %s", msg));
                return;
        }
        files = json_object();
        for (size_t i = 0; i < m->n_files; i++)
                json_object_set_new(files, m->files[i].name,
                                    json_integer((json_int_t)m->files[i].size));
        ans = json_pack("{s:O?, s:b, s:s, s:s, s:b, s:o}", "id", reply_slot_id(slot), "ok", 1,
                        "lang", m->lang, "version", m->version, "warm", m->warm, "sizes", files);
        reply_slot_send(slot, ans);
}

static json_t *list_versions(struct opd *d, const char *lang)
{
        _cleanup_free_ char *path = NULL;
        json_t *versions = json_array();
        char current[SNAP_NAME_MAX] = "";
        struct dirent *de;
        DIR *dir;
        ssize_t k;

        if (asprintf(&path, "%s/%s", d->cfg.cache_dir, lang) < 0)
                return versions;
        dir = opendir(path);
        if (!dir)
                return versions;
        k = readlinkat(dirfd(dir), "current", current, sizeof(current) - 1);
        current[k > 0 ? k : 0] = 0;
        while ((de = readdir(dir))) {
                struct snap_manifest m;
                char err[256];
                int fd;

                if (!snap_name_valid(de->d_name) || !op_dirent_is_dir(dirfd(dir), de))
                        continue;
                if (snap_open(d->cfg.cache_dir, lang, de->d_name, &fd, &m, err, sizeof(err)) < 0) {
                        json_array_append_new(
                            versions, json_pack("{s:s, s:s}", "version", de->d_name, "error", err));
                        continue;
                }
                close(fd);
                json_array_append_new(versions,
                                      json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "version",
                                                m.version, "created", m.created, "vmm_version",
                                                m.vmm_version, "accel", m.accel, "warm", m.warm,
                                                "current", strcmp(m.version, current) == 0));
        }
        closedir(dir);
        return versions;
}

/* verify: re-hash the current version of each language (or one), one background job at a
 * time, then answer {"languages": {"python": {"version": V, "ok": true}, ...}}. */
struct verify_run {
        struct opd *d;
        struct reply_slot *slot;
        const struct op_lang *only;
        size_t next;
        int dirfd;
        struct snap_manifest m;
        json_t *langs;
        bool all_ok;
};

static void verify_next(struct verify_run *v);

static int verify_in_child(void *arg, char *msg, size_t msglen)
{
        struct verify_run *v = arg;

        return snap_verify(v->dirfd, &v->m, msg, msglen);
}

static void on_lang_verified(struct opd *d, int r, const char *msg, void *userdata)
{
        struct verify_run *v = userdata;

        v->dirfd = safe_close(v->dirfd);
        json_object_set_new(v->langs, v->m.lang,
                            json_pack("{s:s, s:b, s:s?}", "version", v->m.version, "ok", r >= 0,
                                      "error", r < 0 ? msg : NULL));
        if (r < 0) {
                v->all_ok = false;
                log_error("snapshot verify %s/%s: %s", v->m.lang, v->m.version, msg);
        }
        verify_next(v);
}

static void verify_next(struct verify_run *v)
{
        struct opd *d = v->d;

        while (v->next < d->langs.n) {
                const struct op_lang *l = &d->langs.v[v->next++];
                char err[256];
                int r;

                if (!l->available || (v->only && v->only != l))
                        continue;
                r = snap_open(d->cfg.cache_dir, l->name, NULL, &v->dirfd, &v->m, err, sizeof(err));
                if (r == -ENOENT && !v->only)
                        continue;
                if (r < 0) {
                        v->all_ok = false;
                        json_object_set_new(v->langs, l->name,
                                            json_pack("{s:b, s:s}", "ok", 0, "error", err));
                        continue;
                }
                r = bgjob_start(d, verify_in_child, v, &v->dirfd, on_lang_verified, v);
                if (r == 0)
                        return;
                v->dirfd = safe_close(v->dirfd);
                v->all_ok = false;
                json_object_set_new(v->langs, l->name,
                                    json_pack("{s:b, s:s}", "ok", 0, "error", strerror(-r)));
        }
        reply_slot_send(v->slot, json_pack("{s:O?, s:b, s:b, s:o}", "id", reply_slot_id(v->slot),
                                           "ok", 1, "verified", v->all_ok, "languages", v->langs));
        free(v);
}

static void on_synced_error(struct reply_slot *slot, int r)
{
        reply_slot_send(
            slot, op_error_reply(
                      reply_slot_id(slot), r == -ENOENT ? OP_ERR_BAD_REQUEST : OP_ERR_INTERNAL,
                      "%s", r == -ENOENT ? "no S3 bucket configured (s3.bucket)" : strerror(-r)));
}

/* The actions that answer later: sync, verify. */
static void op_snapshot_later(struct client *c, json_t *id, enum op_snapshot_action action,
                              const struct op_lang *lang)
{
        struct reply_slot *slot;
        int r;

        slot = reply_slot_new(c, id);
        if (!slot) {
                client_send(c, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                return;
        }
        if (action == OP_SNAPSHOT_SYNC) {
                r = s3sync_request(client_opd(c), slot);
                if (r < 0)
                        on_synced_error(slot, r);
        } else {
                struct verify_run *v = calloc(1, sizeof(*v));

                if (!v || !(v->langs = json_object())) {
                        free(v);
                        reply_slot_send(slot, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                        return;
                }
                v->d = client_opd(c);
                v->slot = slot;
                v->only = lang;
                v->dirfd = -1;
                v->all_ok = true;
                verify_next(v);
        }
}

static void snapshot_create(struct client *c, json_t *id, const struct op_lang *lang)
{
        struct reply_slot *slot = reply_slot_new(c, id);
        int r;

        if (!slot) {
                client_send(c, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                return;
        }
        r = snapcreate_start(client_opd(c), lang, on_created, slot);
        if (r < 0)
                reply_slot_send(
                    slot, op_error_reply(id, r == -EAGAIN ? OP_ERR_BUSY : OP_ERR_INTERNAL,
                                         "cannot start: %s",
                                         r == -EAGAIN ? "the accelerator is still being probed"
                                                      : strerror(-r)));
}

static void snapshot_list(struct client *c, json_t *id, const struct op_lang *lang)
{
        struct opd *d = client_opd(c);
        json_t *langs = json_object();

        for (size_t i = 0; i < d->langs.n; i++) {
                struct pool *p = pool_for(d->pools, &d->langs.v[i]);
                if (lang && lang != &d->langs.v[i])
                        continue;
                json_object_set_new(langs, d->langs.v[i].name,
                                    json_pack("{s:o, s:s?}", "versions",
                                              list_versions(d, d->langs.v[i].name), "serving",
                                              pool_serving_version(p)));
        }
        client_send(c, json_pack("{s:O?, s:b, s:o}", "id", id, "ok", 1, "languages", langs));
}

void op_snapshot(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        const struct op_lang *lang = NULL;
        struct op_snapshot_req s;
        char err[256];

        if (op_snapshot_decode(req, &s, err, sizeof(err)) < 0) {
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", err));
                return;
        }
        if (s.lang && !(lang = op_langs_find(&d->langs, s.lang))) {
                char names[1024];
                op_langs_names(&d->langs, names, sizeof(names));
                client_send(c, op_error_reply(id, OP_ERR_UNKNOWN_LANGUAGE,
                                              "unknown language \"%.64s\"; available: %s", s.lang,
                                              names));
                return;
        }
        switch (s.action) {
        case OP_SNAPSHOT_CREATE:
                snapshot_create(c, id, lang);
                return;
        case OP_SNAPSHOT_LIST:
                snapshot_list(c, id, lang);
                return;
        case OP_SNAPSHOT_RELOAD:
                pools_check_snapshots(d->pools);
                client_send(c, json_pack("{s:O?, s:b}", "id", id, "ok", 1));
                return;
        case OP_SNAPSHOT_VERIFY:
        case OP_SNAPSHOT_SYNC:
        case _OP_SNAPSHOT_ACTION_MAX:
                break;
        }
        op_snapshot_later(c, id, s.action, lang);
}
