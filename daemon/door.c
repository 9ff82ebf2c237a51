/* door.c: the Piston-compatible HTTP door (piston.listen): GET /api/v2/runtimes lists the served
 * languages; POST /api/v2/execute runs a program through exec_submit_cb(), the path a socket
 * client's exec takes, and answers in Piston's shapes (proto/piston.c does the mapping). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "access.h"
#include "cleanup.h"
#include "door.h"
#include "exec-op.h"
#include "httpd.h"
#include "log.h"
#include "msg.h"
#include "opd.h"
#include "piston.h"
#include "request.h"
#include "util.h"

/* JSON values a body may hold beyond what one socket exec may (op_limits_values_max()): Piston's
 * own fields (version, the timeouts and limits, each file's encoding). */
#define DOOR_VALUES_EXTRA 64

struct door {
        struct httpd *httpd; /* NULL when off */
        LIST_HEAD(, door_req) reqs;
        unsigned n_reqs;
        uint64_t next_id;
};

/* One execute request between its arrival and its answer. */
struct door_req {
        LIST_ENTRY(door_req) link;
        struct opd *d;
        struct evhttp_request *http;
        struct request *exec; /* NULL once answered */
        const struct op_lang *lang;
        struct uid_use *use; /* its uid's, counted in door; NULL over TCP (or out of memory) */
};

/* Send body (taken) as the JSON answer. */
static void send_json(struct evhttp_request *req, int status, json_t *body)
{
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        struct evbuffer *out = evbuffer_new();

        json_decref(body);
        if (!text || !out || evbuffer_add(out, text, strlen(text)) < 0) {
                log_error("piston: out of memory building an answer");
                evhttp_send_error(req, HTTP_INTERNAL, NULL);
        } else {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                                  "application/json; charset=utf-8");
                evhttp_send_reply(req, status, NULL, out);
        }
        if (out)
                evbuffer_free(out);
}

/* Piston's error shape: {"message": "..."}. */
static void send_message(struct evhttp_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_message(struct evhttp_request *req, int status, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        size_t len;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* A quote cut at its bound may end inside a UTF-8 sequence: drop the broken tail. */
        len = strlen(msg);
        while (len > 0 && !op_utf8_valid(msg, len))
                msg[--len] = 0;
        send_json(req, status, json_pack("{s:s}", "message", msg));
}

/* Retry-After on a 503 a retry may cure: the pools' estimate, in whole seconds (at least 1). */
static void retry_after(struct evhttp_request *req, uint64_t ms)
{
        char v[24];

        snprintf(v, sizeof(v), "%llu", (unsigned long long)(ms ? (ms + 999) / 1000 : 1));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", v);
}

/* s cut to at most 64 bytes on a UTF-8 boundary, for quoting in a message. */
static const char *quote(const char *s, char buf[static 65])
{
        size_t len = strnlen(s, 64);

        memcpy(buf, s, len);
        while (len > 0 && !op_utf8_valid(buf, len))
                len--;
        buf[len] = 0;
        return buf;
}

static void door_req_free(struct door_req *dr)
{
        LIST_REMOVE(dr, link);
        dr->d->door->n_reqs--;
        if (dr->use)
                dr->use->door--;
        uid_use_put(dr->use);
        free(dr);
}

/* A UNIX socket's peer, from its credentials: may it use opd (access.group)? Its uid, and
 * (ret_exempt not NULL) whether it is exempt from the per-uid caps (root, opd's user,
 * access.admin_group). */
static bool fd_may_use(struct opd *d, int fd, uid_t *ret_uid, bool *ret_exempt)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);

        if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return false;
        *ret_uid = cred.uid;
        if (ret_exempt)
                *ret_exempt =
                    uid_exempt(d, cred.uid) || access_may_admin(d, fd, cred.uid, cred.gid);
        return access_may_use(d, fd, cred.uid, cred.gid);
}

/* A UNIX listener's connections: a peer outside access.group is refused (403) at connect and
 * takes none of the listener's connections. */
static bool door_admit(struct opd *d, int fd)
{
        uid_t uid;

        return fd_may_use(d, fd, &uid, NULL);
}

/* Over a UNIX socket the peer's credentials decide, as on opd's socket (checked at connect,
 * and again here: access.group may have changed on a reload since); over loopback TCP
 * (refused by the config check when access.group is set) whoever can connect may run code,
 * and who it is is not known (*ret_uid REQUEST_UID_ANON, *ret_exempt false). */
static bool peer_may_use(struct opd *d, struct evhttp_request *req, uid_t *ret_uid,
                         bool *ret_exempt)
{
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

        *ret_uid = REQUEST_UID_ANON;
        *ret_exempt = false;
        if (!httpd_is_unix(d->door->httpd))
                return true;
        return bev && fd_may_use(d, bufferevent_getfd(bev), ret_uid, ret_exempt);
}

static void on_runtimes(struct evhttp_request *req, void *arg)
{
        struct opd *d = arg;
        json_t *list = json_array();
        bool exempt;
        uid_t uid;

        if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
            evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
                json_decref(list);
                send_message(req, 405, "use GET for /api/v2/runtimes");
                return;
        }
        if (!peer_may_use(d, req, &uid, &exempt)) {
                json_decref(list);
                send_message(req, 403, "not allowed (access.group only)");
                return;
        }
        for (size_t i = 0; list && i < d->langs.n; i++) {
                const struct op_lang *g = &d->langs.v[i];
                json_t *aliases;

                if (!g->available || !g->enabled)
                        continue;
                /* Piston's name for it; opd's own name is one more alias. */
                aliases = json_array();
                if (aliases && strcmp(g->piston, g->name) != 0)
                        json_array_append_new(aliases, json_string(g->name));
                for (char *const *a = g->aliases; aliases && *a; a++)
                        if (strcmp(*a, g->piston) != 0)
                                json_array_append_new(aliases, json_string(*a));
                json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "language", g->piston,
                                                      "version", g->version, "aliases", aliases));
        }
        send_json(req, HTTP_OK, list);
}

static void on_exec_done(json_t *answer, void *userdata)
{
        struct door_req *dr = userdata;
        struct opd *d = dr->d;
        json_t *err = json_object_get(answer, "error");
        json_t *retry = json_object_get(err, "retry_after_ms");

        dr->exec = NULL;
        if (json_integer_value(retry) > 0)
                retry_after(dr->http, (uint64_t)json_integer_value(retry));
        if (json_is_true(json_object_get(answer, "ok")))
                send_json(dr->http, HTTP_OK,
                          piston_result(answer, dr->lang->piston, dr->lang->version,
                                        d->cfg.limits.output_max));
        else
                send_message(dr->http,
                             piston_http_status(json_string_value(json_object_get(err, "code"))),
                             "%s", json_string_value(json_object_get(err, "message")) ?: "failed");
        json_decref(answer);
        door_req_free(dr);
}

/* The body as JSON, or a message for a 400. A parsed value costs far more memory than its bytes
 * (a body of "{},{},..." grows about 30-fold, and parsing it holds the loop for seconds): a body
 * that could hold more values than any valid request is refused unparsed, as the socket refuses
 * such a frame. */
static json_t *read_body(struct evhttp_request *req, const struct op_limits *lim, char *errbuf,
                         size_t errlen)
{
        size_t values_max = op_limits_values_max(lim) + DOOR_VALUES_EXTRA;
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        const char *p = len ? (const char *)evbuffer_pullup(in, -1) : NULL;
        json_error_t jerr;
        json_t *body;

        if (!p) {
                snprintf(errbuf, errlen, "the request body is empty: send a JSON object");
                return NULL;
        }
        if (!op_utf8_valid(p, len)) {
                snprintf(errbuf, errlen, "the request body is not valid UTF-8");
                return NULL;
        }
        if (op_json_values_bound(p, len) > values_max) {
                snprintf(errbuf, errlen, "the request body holds more than %zu JSON values",
                         values_max);
                return NULL;
        }
        body = json_loadb(p, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!body)
                snprintf(errbuf, errlen, "invalid JSON at byte %d: %s", jerr.position, jerr.text);
        return body;
}

/* Piston takes a body whose Content-Type starts with application/json. The door also takes
 * text/plain: what fetch() sends for a string body given no Content-Type, as the npm package
 * piston-client does. A web page's form can send text/plain too: the Host and Origin check
 * (httpd.c) is what keeps it out. */
static bool body_type_ok(const char *ctype)
{
        static const char json[] = "application/json", text[] = "text/plain";
        char after;

        if (!ctype)
                return false;
        if (strncasecmp(ctype, json, strlen(json)) == 0)
                return true;
        if (strncasecmp(ctype, text, strlen(text)) != 0)
                return false;
        after = ctype[strlen(text)];
        return after == '\0' || after == ';' || after == ' ' || after == '\t';
}

static void on_execute(struct evhttp_request *req, void *arg)
{
        struct opd *d = arg;
        const char *ctype =
            evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        json_t *body = NULL, *exec = NULL, *id, *ct;
        const struct op_lang *lang;
        struct door_req *dr;
        char err[512], idbuf[32];
        struct uid_use *use = NULL;
        bool exempt;
        uid_t uid;

        if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
                send_message(req, 405, "use POST for /api/v2/execute");
                return;
        }
        if (!body_type_ok(ctype)) {
                send_message(req, 415, "send the request as Content-Type: application/json");
                return;
        }
        if (!peer_may_use(d, req, &uid, &exempt)) {
                send_message(req, 403, "not allowed (access.group only)");
                return;
        }
        /* A known uid's own share first, so that one uid cannot take every slot of the door. */
        if (uid != REQUEST_UID_ANON) {
                use = uid_use_get(d, uid);
                if (!use) {
                        send_message(req, 500, "out of memory");
                        return;
                }
        }
        if (use && !exempt && d->cfg.http_max_inflight_per_peer &&
            use->door >= d->cfg.http_max_inflight_per_peer) {
                retry_after(req, request_retry_after_ms(d, NULL, true));
                send_message(req, 503,
                             "%u requests of uid %u already in flight at the door "
                             "(http.max_inflight_per_peer)",
                             use->door, (unsigned)uid);
                uid_use_put(use);
                return;
        }
        if (d->door->n_reqs >= d->cfg.max_inflight) {
                retry_after(req, request_retry_after_ms(d, NULL, true));
                send_message(req, 503, "%u requests already in flight at the door (max_inflight)",
                             d->door->n_reqs);
                uid_use_put(use);
                return;
        }
        body = read_body(req, &d->cfg.limits, err, sizeof(err));
        snprintf(idbuf, sizeof(idbuf), "piston-%llu", (unsigned long long)++d->door->next_id);
        id = json_string(idbuf);
        if (!body || piston_exec_request(body, id, &d->cfg.limits, &exec, err, sizeof(err)) < 0) {
                send_message(req, 400, "%s", err);
                goto out;
        }
        /* Piston's rule: the language (or an alias) with a version the selector takes. */
        lang = op_langs_find(&d->langs, json_string_value(json_object_get(body, "language")));
        if (!lang || !piston_version_match(json_string_value(json_object_get(body, "version")),
                                           lang->version)) {
                char l[65], v[65];

                send_message(req, 400, "%s-%s runtime is unknown",
                             quote(json_string_value(json_object_get(body, "language")), l),
                             quote(json_string_value(json_object_get(body, "version")), v));
                goto out;
        }
        /* Piston clients send compile_timeout whatever the language; opd takes it for a
         * language with a compile phase only. */
        ct = json_object_get(body, "compile_timeout");
        if (lang->compile[0] && json_is_number(ct) && json_number_value(ct) > 0 &&
            json_object_set_new(exec, "compile_timeout_ms",
                                json_integer(json_number_value(ct) >= 4294967295.0
                                                 ? (json_int_t)4294967295LL
                                                 : (json_int_t)json_number_value(ct) +
                                                       (json_number_value(ct) >
                                                        (json_int_t)json_number_value(ct)))) < 0) {
                send_message(req, 500, "out of memory");
                goto out;
        }
        dr = calloc(1, sizeof(*dr));
        if (!dr) {
                send_message(req, 500, "out of memory");
                goto out;
        }
        dr->d = d;
        dr->http = req;
        dr->lang = lang;
        dr->use = TAKE_PTR(use);
        if (dr->use)
                dr->use->door++;
        LIST_INSERT_HEAD(&d->door->reqs, dr, link);
        d->door->n_reqs++;
        /* on_exec_done() may run (and free dr) before this returns. */
        exec_submit_cb(d, exec, uid, on_exec_done, dr, &dr->exec);
out:
        uid_use_put(use);
        json_decref(id);
        json_decref(exec);
        json_decref(body);
}

/* GET /: as Piston's index, its version in a message. */
static void on_index(struct evhttp_request *req, void *arg)
{
        if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
            evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
                send_message(req, 405, "use GET for /");
                return;
        }
        send_message(req, HTTP_OK, "Piston v%s (opd %s)", PISTON_API_VERSION, OP_VERSION);
}

static void on_other(struct evhttp_request *req, void *arg)
{
        send_message(req, 404,
                     "not found: this Piston door serves GET /api/v2/runtimes and POST "
                     "/api/v2/execute");
}

int door_init(struct opd *d)
{
        struct evhttp *http;
        int r;

        d->door = calloc(1, sizeof(*d->door));
        if (!d->door)
                return -ENOMEM;
        LIST_INIT(&d->door->reqs);
        if (d->no_listen || !d->cfg.piston_listen || !d->cfg.piston_listen[0])
                return 0;
        /* A body holds what one exec frame may hold, plus Piston's field names. */
        r = httpd_open(d, "piston.listen", d->cfg.piston_listen, d->cfg.limits.frame_max,
                       &d->door->httpd);
        if (r < 0)
                return r;
        http = httpd_http(d->door->httpd);
        if (httpd_is_unix(d->door->httpd))
                httpd_set_admit(d->door->httpd, door_admit);
        evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
        /* Piston's own paths, and those of its public instance (".../api/v2/piston/..."). */
        if (httpd_set_cb(d->door->httpd, "/", on_index, d) < 0 ||
            httpd_set_cb(d->door->httpd, "/api/v2/runtimes", on_runtimes, d) < 0 ||
            httpd_set_cb(d->door->httpd, "/api/v2/execute", on_execute, d) < 0 ||
            httpd_set_cb(d->door->httpd, "/api/v2/piston/runtimes", on_runtimes, d) < 0 ||
            httpd_set_cb(d->door->httpd, "/api/v2/piston/execute", on_execute, d) < 0 ||
            httpd_set_gencb(d->door->httpd, on_other, d) < 0)
                return -ENOMEM;
        log_info("piston: serving /api/v2/runtimes and /api/v2/execute on %s",
                 d->cfg.piston_listen);
        return 0;
}

void door_stop(struct opd *d)
{
        struct door_req *dr;

        if (!d->door)
                return;
        httpd_pause(d->door->httpd);
        while ((dr = LIST_FIRST(&d->door->reqs))) {
                if (dr->exec)
                        request_cancel(dr->exec);
                send_message(dr->http, 503, "opd is shutting down");
                door_req_free(dr);
        }
}

void door_done(struct opd *d)
{
        struct door_req *dr;

        if (!d->door)
                return;
        /* Unanswered requests go with their connections in evhttp_free(). */
        while ((dr = LIST_FIRST(&d->door->reqs))) {
                if (dr->exec)
                        request_cancel(dr->exec);
                door_req_free(dr);
        }
        httpd_close(d->door->httpd);
        free(d->door);
        d->door = NULL;
}

unsigned door_inflight(const struct opd *d)
{
        return d->door ? d->door->n_reqs : 0;
}
