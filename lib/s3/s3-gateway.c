/* s3-gateway.c: opd-s3d's HTTP server (s3-gateway.h). One request is one upstream transfer;
 * its answer goes on piece by piece as the transfer receives it (s3_req.stream), with the
 * upstream's Content-Length. The transfer pauses while more than GATEWAY_BUFFERED bytes wait
 * to be read by the requester, and resumes as they are written. An upstream failure before the
 * first byte is answered with an S3-style error; after it, the connection is closed, so the
 * requester sees a short body (and retries), never a wrong one. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "s3-gateway.h"

struct s3_gateway {
        struct evhttp *http;
        struct s3_client *client;
        const struct s3_location *locs;
        size_t n_locs;
        const char *prefix;
        struct s3_gateway_stats stats;
};

/* One request in flight: its transfer, its requester. */
struct pending {
        struct s3_gateway *g;
        struct evhttp_request *req;
        struct evhttp_connection *evcon;
        struct s3_xfer *xfer;
        struct evbuffer *piece;
        char *key, *query;
        bool ranged;
        bool started; /* the status line and headers went out */
};

static void pending_free(struct pending *p)
{
        p->g->stats.active--;
        if (p->evcon)
                evhttp_connection_set_closecb(p->evcon, NULL, NULL);
        if (p->piece)
                evbuffer_free(p->piece);
        free(p->key);
        free(p->query);
        free(p);
}

static void reply_error(struct evhttp_request *req, int status, const char *msg)
{
        struct evbuffer *b = evbuffer_new();
        char clean[600];
        size_t i;

        /* an S3-style error body, which opd's client reads like S3's own */
        for (i = 0; msg[i] && i + 1 < sizeof(clean); i++)
                clean[i] = strchr("<>&", msg[i]) ? ' ' : msg[i];
        clean[i] = 0;
        if (b)
                evbuffer_add_printf(
                    b, "<Error><Code>OpdGateway</Code><Message>%s</Message></Error>", clean);
        evhttp_send_reply(req, status, "gateway", b);
        if (b)
                evbuffer_free(b);
}

static size_t buffered(struct pending *p)
{
        struct bufferevent *bev = evhttp_connection_get_bufferevent(p->evcon);

        return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* The requester read what was written: let the transfer go on. */
static void on_flushed(struct evhttp_connection *evcon, void *arg)
{
        struct pending *p = arg;

        if (p->xfer)
                s3_resume(p->xfer);
}

static int on_piece(const struct s3_resp *resp, const char *data, size_t len, void *userdata)
{
        struct pending *p = userdata;

        if (!p->started) {
                struct evkeyvalq *h = evhttp_request_get_output_headers(p->req);
                char cl[32];

                if (resp->content_length) {
                        /* a length, not chunks: a short body is seen as one */
                        snprintf(cl, sizeof(cl), "%" PRIu64, resp->content_length);
                        evhttp_add_header(h, "Content-Length", cl);
                }
                evhttp_add_header(h, "Content-Type", "application/octet-stream");
                evhttp_send_reply_start(p->req, p->ranged ? 206 : 200, "OK");
                p->started = true;
        }
        if (evbuffer_add(p->piece, data, len) < 0)
                return -ENOMEM;
        evhttp_send_reply_chunk_with_cb(p->req, p->piece, on_flushed, p);
        if (buffered(p) <= GATEWAY_BUFFERED)
                return 0;
        p->g->stats.paused++;
        return S3_STREAM_FULL;
}

static void on_s3(const struct s3_resp *resp, void *userdata)
{
        struct pending *p = userdata;
        struct evhttp_connection *evcon = p->evcon;

        p->xfer = NULL; /* freed by the client once this returns */
        /* a reply may close the connection at once: on_close() must not run for p */
        evhttp_connection_set_closecb(evcon, NULL, NULL);
        p->evcon = NULL;
        if (resp->r >= 0 && p->started) {
                evhttp_send_reply_end(p->req);
        } else if (resp->r >= 0) {
                /* an empty body: no piece came */
                evhttp_send_reply(p->req, p->ranged ? 206 : 200, "OK", NULL);
        } else if (!p->started) {
                reply_error(p->req, resp->status >= 400 ? (int)resp->status : 502, resp->error);
        } else {
                /* part of the body went out: only a closed connection says it is short */
                p->g->stats.aborted++;
                evhttp_connection_free(evcon); /* frees the request too */
        }
        pending_free(p);
}

/* The requester's connection is going away: end the transfer. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
        struct pending *p = arg;

        s3_cancel(p->xfer);
        p->xfer = NULL;
        /* a request the connection let go of (the requester left) is ours to free; one still on
         * it (the gateway is stopping) goes with the connection */
        if (!evhttp_request_get_connection(p->req))
                evhttp_send_reply_end(p->req);
        p->evcon = NULL;
        pending_free(p);
}

static bool starts_with(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A key or a listing's prefix under the snapshot prefix, with no segment a URL's path would
 * resolve ("." or "..") or fold (an empty one: "//"): the object named is the one S3 is asked
 * for, whatever a client library or a server makes of the path. */
static bool under_prefix(const struct s3_gateway *g, const char *key)
{
        if (!starts_with(key, g->prefix))
                return false;
        for (const char *seg = key;; seg++) {
                size_t n = strcspn(seg, "/");

                if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                        return false;
                if (n == 0 && seg[0] == '/')
                        return false;
                seg += n;
                if (!*seg)
                        return true;
        }
}

/* Only listings of the snapshot prefix: list-type=2 with prefix, delimiter and a token, each at
 * most once. The query sent upstream is rebuilt from the pairs checked here (s3_query()), never
 * the bytes received: a byte a URL library reads otherwise ('#' ends a URL for libcurl, which
 * would then send a listing of the whole bucket) cannot change what is asked. NULL: refused (or
 * out of memory). */
static char *checked_query(struct s3_gateway *g, const char *query)
{
        static const char *const allowed[] = {"list-type", "prefix", "delimiter",
                                              "continuation-token"};
        const char *names[4], *values[4];
        struct evkeyvalq q = {0};
        struct evkeyval *kv;
        unsigned seen = 0;
        bool ok = true;
        size_t n = 0;
        char *out = NULL;

        if (evhttp_parse_query_str(query, &q) < 0)
                return NULL;
        for (kv = q.tqh_first; ok && kv; kv = kv->next.tqe_next) {
                size_t i = 0;

                while (i < 4 && strcmp(kv->key, allowed[i]) != 0)
                        i++;
                if (i == 4 || (seen & (1u << i))) {
                        ok = false;
                        break;
                }
                if (i == 0)
                        ok = strcmp(kv->value, "2") == 0;
                else if (i == 1)
                        ok = under_prefix(g, kv->value);
                seen |= 1u << i;
                names[n] = allowed[i];
                values[n++] = kv->value;
        }
        if (ok && (seen & 2u)) /* a prefix is required */
                out = s3_query(names, values, n);
        evhttp_clear_headers(&q);
        return out;
}

static void on_request(struct evhttp_request *req, void *arg)
{
        struct s3_gateway *g = arg;
        const char *uri = evhttp_request_get_uri(req), *range, *q, *slash;
        _cleanup_free_ char *path = NULL, *bucket = NULL;
        struct s3_req sreq = {.method = "GET", .max_body = GATEWAY_BODY_MAX, .stream = on_piece};
        const struct s3_location *l = NULL;
        unsigned long long a, b;
        struct pending *p;
        size_t key_len = 0;
        int r;

        if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || uri[0] != '/') {
                g->stats.refused++;
                reply_error(req, 405, "opd-s3d answers GET only");
                return;
        }
        q = strchr(uri, '?');
        path = strndup(uri + 1, q ? (size_t)(q - uri - 1) : strlen(uri + 1));
        slash = path ? strchr(path, '/') : NULL;
        if (!slash) {
                g->stats.refused++;
                reply_error(req, 400, "expected /BUCKET/KEY");
                return;
        }
        bucket = strndup(path, (size_t)(slash - path));
        for (size_t i = 0; bucket && i < g->n_locs && !l; i++)
                if (strcmp(g->locs[i].bucket, bucket) == 0)
                        l = &g->locs[i];
        p = calloc(1, sizeof(*p));
        if (!p) {
                reply_error(req, 500, "out of memory");
                return;
        }
        p->g = g;
        g->stats.active++; /* until pending_free() */
        p->req = req;
        p->key = evhttp_uridecode(slash + 1, 0, &key_len);
        /* a key under the snapshot prefix (no %00 in it: the decoded key is as long as its C
         * string), or a listing of it */
        if (p->key && p->key[0])
                p->query = q && q[1] ? NULL : strdup("");
        else if (p->key)
                p->query = checked_query(g, q ? q + 1 : "");
        p->piece = evbuffer_new();
        if (!l || !p->key || !p->query || !p->piece || strlen(p->key) != key_len ||
            (p->key[0] && !under_prefix(g, p->key))) {
                g->stats.refused++;
                reply_error(req, 403, "opd-s3d: not a snapshot object of a configured bucket");
                pending_free(p);
                return;
        }
        range = evhttp_find_header(evhttp_request_get_input_headers(req), "Range");
        if (range && sscanf(range, "bytes=%llu-%llu", &a, &b) == 2 && b >= a &&
            b - a < GATEWAY_BODY_MAX) {
                sreq.range_off = a;
                sreq.range_len = b - a + 1;
                p->ranged = true;
        }
        sreq.key = p->key;
        sreq.query = p->query;
        r = s3_start(g->client, l, &sreq, on_s3, p, &p->xfer);
        if (r < 0) {
                reply_error(req, 500, strerror(-r));
                pending_free(p);
                return;
        }
        p->evcon = evhttp_request_get_connection(req);
        evhttp_connection_set_closecb(p->evcon, on_close, p);
        g->stats.served++;
}

int s3_gateway_new(struct event_base *base, struct s3_client *client,
                   const struct s3_location *locs, size_t n_locs, const char *prefix, int listen_fd,
                   struct s3_gateway **ret)
{
        struct s3_gateway *g = calloc(1, sizeof(*g));

        if (!g)
                return -ENOMEM;
        *g =
            (struct s3_gateway){.client = client, .locs = locs, .n_locs = n_locs, .prefix = prefix};
        g->http = evhttp_new(base);
        if (!g->http || evhttp_accept_socket(g->http, listen_fd) < 0) {
                s3_gateway_free(g);
                return -EIO;
        }
        evhttp_set_allowed_methods(g->http, EVHTTP_REQ_GET);
        evhttp_set_max_body_size(g->http, 0);
        evhttp_set_gencb(g->http, on_request, g);
        *ret = g;
        return 0;
}

void s3_gateway_free(struct s3_gateway *g)
{
        if (!g)
                return;
        if (g->http)
                evhttp_free(g->http); /* on_close() for every connection with a request */
        free(g);
}

const struct s3_gateway_stats *s3_gateway_stats(const struct s3_gateway *g)
{
        return &g->stats;
}
