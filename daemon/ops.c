/* ops.c: the table of protocol operations (name, handler, who may call it) and the dispatch
 * of one decoded frame to its entry; ping and status live here. */
#include <stdio.h>
#include <string.h>

#include "accel.h"
#include "cases.h"
#include "cleanup.h"
#include "client.h"
#include "exec-op.h"
#include "host.h"
#include "metrics.h"
#include "opd.h"
#include "ops.h"
#include "pool.h"
#include "reload.h"
#include "request.h"
#include "session-fork.h"
#include "session.h"
#include "snapauto.h"
#include "util.h"

bool op_only_id_op(struct client *c, json_t *id, json_t *req)
{
        const char *key;
        json_t *v;

        json_object_foreach (req, key, v) {
                if (strcmp(key, "id") != 0 && strcmp(key, "op") != 0) {
                        client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST,
                                                      "unknown field \"%.64s\"", key));
                        return false;
                }
        }
        return true;
}

/* "serving": false when every exec would be refused (TCG without allow_tcg): a readiness check
 * reads it, so that a host that answers but serves nothing is not taken for ready. */
static void op_ping(struct client *c, json_t *id, json_t *req)
{
        bool refused = client_opd(c)->tcg_refused;

        if (!op_only_id_op(c, id, req))
                return;
        client_send(c, json_pack("{s:O?, s:b, s:b, s:s, s:i, s:b, s:s?}", "id", id, "ok", 1, "pong",
                                 1, "version", OP_VERSION, "proto", OP_PROTO_VERSION, "serving",
                                 !refused, "refused", refused ? ACCEL_TCG_REFUSED : NULL));
}

static json_t *language_status(struct opd *d, const struct op_lang *g)
{
        json_t *aliases = json_array();

        for (char *const *a = g->aliases; *a; a++)
                json_array_append_new(aliases, json_string(*a));
        struct pool *p = g->available ? pool_for(d->pools, g) : NULL;
        json_t *ps = p ? pool_status(p) : NULL;

        if (ps)
                json_object_set_new(ps, "empty_reason", snapauto_empty_reason(d, g) ?: json_null());
        return json_pack("{s:s, s:o, s:s, s:b, s:b, s:b, s:o?}", "name", g->name, "aliases",
                         aliases, "version", g->version, "available", g->available, "enabled",
                         g->enabled, "compiled", g->compile[0] != NULL, "pool", ps);
}

static void op_status(struct client *c, json_t *id, json_t *req)
{
        struct opd *d = client_opd(c);
        json_t *langs;

        if (!op_only_id_op(c, id, req))
                return;
        langs = json_array();

        for (size_t i = 0; i < d->langs.n; i++)
                json_array_append_new(langs, language_status(d, &d->langs.v[i]));
        enum op_accel a = d->tcg_refused ? OP_ACCEL_TCG : d->vms_host->accel;
        struct vm_jail *j = d->vms_host->jail;
        json_t *st = json_pack(
            "{s:O?, s:b, s:s, s:i, s:I, s:s, s:s, s:b, s:s?, s:o, s:s?,"
            " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:i}}",
            "id", id, "ok", 1, "version", OP_VERSION, "proto", OP_PROTO_VERSION, "uptime_s",
            (json_int_t)((op_now_us() - d->started_us) / 1000000), "vmm", d->vms_host->drv->name,
            "accel", a == OP_ACCEL_AUTO ? "probing" : op_accel_name(a), "accel_isolation",
            accel_is_boundary(a), "refused", d->tcg_refused ? ACCEL_TCG_REFUSED : NULL, "languages",
            langs, "pool_plan", pools_plan_note(d->pools)[0] ? pools_plan_note(d->pools) : NULL,
            "counters", "requests", (json_int_t)d->stats.requests, "ok", (json_int_t)d->stats.ok,
            "errors", (json_int_t)d->stats.errors, "connections", (json_int_t)d->stats.connections,
            "vms_started", (json_int_t)d->vms_host->vms_started, "vms_failed",
            (json_int_t)d->vms_host->vms_failed, "active_vms", (int)d->vms_host->n_vms, "queued",
            (int)requests_queued(d), "clients", (int)clients_count(d));
        /* How the VMMs are confined: "jail" (opd-jail) or "none", and their cgroup limits. */
        if (st)
                json_object_set_new(st, "jail",
                                    json_pack("{s:s, s:s, s:s}", "mode", j ? "jail" : "none",
                                              "cgroup", j && vm_jail_cgroup(j) ? "v2" : "none",
                                              "cgroup_text",
                                              j ? vm_jail_cgroup_text(j) : "VMMs are not jailed"));
        if (st) {
                struct session_counts n;

                sessions_counts(d, &n);
                json_object_set_new(
                    st, "sessions",
                    json_pack("{s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I}", "open",
                              (int)n.open, "busy", (int)n.busy, "paused", (int)n.paused, "max",
                              (int)d->cfg.session.max, "max_per_uid",
                              (int)d->cfg.session.max_per_uid, "opened", (json_int_t)n.opened,
                              "closed", (json_int_t)n.closed, "expired", (json_int_t)n.expired,
                              "failed", (json_int_t)n.failed, "refused", (json_int_t)n.refused));
        }
        client_send(c, st);
}

/* Build the configuration again and apply it (as SIGHUP does). */
static void op_reload(struct client *c, json_t *id, json_t *req)
{
        char err[512];

        if (!op_only_id_op(c, id, req))
                return;
        if (opd_reload(client_opd(c), err, sizeof(err)) < 0) {
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST, "reload refused: %s", err));
                return;
        }
        client_send(c, json_pack("{s:O?, s:b}", "id", id, "ok", 1));
}

static const struct op_entry op_table[] = {
    {"ping", op_ping, false},
    {"status", op_status, false},
    {"exec", exec_handle, false},
    {"metrics", op_metrics, false},
    {"snapshot", op_snapshot, true},
    {"reload", op_reload, true},
    {"stdin", op_stdin, false},
    {"exec_batch", op_exec_batch, false},
    {"exec_cases", op_exec_cases, false},
    {"session_open", op_session_open, false},
    {"session_exec", op_session_exec, false},
    {"session_list", op_session_list, false},
    {"session_close", op_session_close, false},
    {"session_fork", op_session_fork, false},
    {"session_pause", op_session_pause, false},
    {"session_resume", op_session_resume, false},
};

const struct op_entry *op_lookup(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(op_table); i++)
                if (strcmp(op_table[i].name, name) == 0)
                        return &op_table[i];
        return NULL;
}

void op_dispatch(struct client *c, json_t *req)
{
        const struct op_entry *e;
        json_t *id, *op;
        char err[256];

        if (op_request_id(req, &id, err, sizeof(err)) < 0) {
                client_send(c, op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", err));
                return;
        }
        op = json_object_get(req, "op");
        if (!json_is_string(op)) {
                client_send(c, op_error_reply(id, OP_ERR_BAD_REQUEST,
                                              "missing \"op\" (a string such as \"exec\")"));
                return;
        }
        e = op_lookup(json_string_value(op));
        if (!e) {
                char known[256] = "";
                for (size_t i = 0; i < ELEMENTSOF(op_table); i++)
                        snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                                 i ? ", " : "", op_table[i].name);
                client_send(c,
                            op_error_reply(id, OP_ERR_UNKNOWN_OP, "unknown op \"%.64s\"; known: %s",
                                           json_string_value(op), known));
                return;
        }
        if (e->admin ? !client_may_admin(c) : !client_may_use(c)) {
                client_send(c, op_error_reply(id, OP_ERR_PERMISSION_DENIED,
                                              "\"%s\" is not allowed for uid %u%s", e->name,
                                              (unsigned)client_uid(c),
                                              e->admin ? " (root and access.admin_group only)"
                                                       : " (access.group only)"));
                return;
        }
        e->handler(c, id, req);
}
