/* main.c (opd-s3d): the S3 gateway: the one process of a host that has the network and the S3
 * credentials. It answers GETs of objects under s3.prefix in the configured buckets over a UNIX
 * socket, signing each with its own credentials; opd (and so every VMM) needs neither. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "s3-config.h"
#include "s3.h"
#include "util.h"

#define GATEWAY_BODY_MAX (64u << 20) /* a chunk (S3_CHUNK_SIZE_MAX) or a manifest */

struct gateway {
        struct op_config cfg;
        struct s3_location locs[S3_LOCATIONS_MAX];
        size_t n_locs;
        struct s3_client *client;
        unsigned long served, refused;
};

struct pending {
        struct evhttp_request *req;
        char *key, *query;
        bool ranged;
};

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

static void on_s3(const struct s3_resp *resp, void *userdata)
{
        struct pending *p = userdata;
        struct evbuffer *b;

        if (resp->r < 0) {
                reply_error(p->req, resp->status >= 400 ? (int)resp->status : 502, resp->error);
        } else if ((b = evbuffer_new())) {
                evbuffer_add(b, resp->body, resp->body_len);
                evhttp_send_reply(p->req, p->ranged ? 206 : 200, "OK", b);
                evbuffer_free(b);
        } else {
                reply_error(p->req, 500, "out of memory");
        }
        free(p->key);
        free(p->query);
        free(p);
}

static bool starts_with(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Only listings of the snapshot prefix: list-type=2 with prefix, delimiter and a token. */
static bool query_allowed(struct gateway *g, const char *query)
{
        struct evkeyvalq q = {0};
        struct evkeyval *kv;
        bool ok = true, has_prefix = false;

        if (evhttp_parse_query_str(query, &q) < 0)
                return false;
        for (kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
                if (strcmp(kv->key, "prefix") == 0) {
                        has_prefix = true;
                        ok = ok && starts_with(kv->value, g->cfg.s3_prefix);
                } else if (strcmp(kv->key, "list-type") != 0 && strcmp(kv->key, "delimiter") != 0 &&
                           strcmp(kv->key, "continuation-token") != 0) {
                        ok = false;
                }
        }
        evhttp_clear_headers(&q);
        return ok && has_prefix;
}

static void on_request(struct evhttp_request *req, void *arg)
{
        struct gateway *g = arg;
        const char *uri = evhttp_request_get_uri(req), *range, *q, *slash;
        _cleanup_free_ char *path = NULL, *bucket = NULL;
        struct s3_req sreq = {.method = "GET", .max_body = GATEWAY_BODY_MAX};
        const struct s3_location *l = NULL;
        unsigned long long a, b;
        struct pending *p;
        int r;

        if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || uri[0] != '/') {
                g->refused++;
                reply_error(req, 405, "opd-s3d answers GET only");
                return;
        }
        q = strchr(uri, '?');
        path = strndup(uri + 1, q ? (size_t)(q - uri - 1) : strlen(uri + 1));
        slash = path ? strchr(path, '/') : NULL;
        if (!slash) {
                g->refused++;
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
        p->req = req;
        p->key = evhttp_uridecode(slash + 1, 0, NULL);
        p->query = strdup(q ? q + 1 : "");
        /* a key under the snapshot prefix, or a listing of it */
        if (!l || !p->key || !p->query || memchr(p->key, 0, strlen(slash + 1)) ||
            (p->key[0] ? !starts_with(p->key, g->cfg.s3_prefix) || p->query[0]
                       : !query_allowed(g, p->query))) {
                g->refused++;
                reply_error(req, 403, "opd-s3d: not a snapshot object of a configured bucket");
                free(p->key);
                free(p->query);
                free(p);
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
        r = s3_start(g->client, l, &sreq, on_s3, p, NULL);
        if (r < 0) {
                reply_error(req, 500, strerror(-r));
                free(p->key);
                free(p->query);
                free(p);
                return;
        }
        g->served++;
}

/* The listening socket: from systemd (LISTEN_FDS, opd-s3d.socket) or bound here. */
static int listen_socket(const char *path)
{
        const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (pid && n && atol(pid) == (long)getpid() && atoi(n) == 1)
                return op_fd_cloexec(3, true) < 0 ? -errno : 3;
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 ||
            listen(fd, 64) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
        event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                                 {"socket", required_argument, NULL, 's'},
                                                 {"help", no_argument, NULL, 'h'},
                                                 {0}};
        const char *config = "/etc/opd/opd.conf", *sock = NULL;
        struct s3_client_opts o = S3_CLIENT_OPTS_DEFAULT;
        struct gateway g = {0};
        struct s3_creds creds = {0};
        struct event_base *base;
        struct event *sigterm, *sigint;
        struct evhttp *http;
        char err[512];
        int c, fd, r;

        while ((c = getopt_long(argc, argv, "c:s:h", longopts, NULL)) != -1) {
                if (c == 'c')
                        config = optarg;
                else if (c == 's')
                        sock = optarg;
                else {
                        fprintf(c == 'h' ? stdout : stderr,
                                "Usage: opd-s3d [--config FILE] [--socket PATH]\n"
                                "The S3 gateway of opd (docs/s3.md): GETs of snapshot objects\n"
                                "over a UNIX socket (s3.gateway), signed with the AWS\n"
                                "credentials of its own environment.\n");
                        return c == 'h' ? 0 : 2;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        if (op_config_init(&g.cfg) < 0)
                return 1;
        r = op_config_load(&g.cfg, config, err, sizeof(err));
        if (r >= 0)
                r = op_config_check(&g.cfg, err, sizeof(err));
        if (r >= 0)
                r = s3_config_locations(&g.cfg, g.locs, &g.n_locs, err, sizeof(err));
        if (r >= 0 && g.n_locs == 0)
                r = op_errf(err, sizeof(err), -EINVAL, "no S3 bucket configured (s3.bucket)");
        if (r >= 0)
                r = s3_creds_load(getenv, &creds, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "opd-s3d: %s\n", err);
                return 1;
        }
        sock = sock ? sock : g.cfg.s3_gateway;
        if (!sock || !*sock) {
                fprintf(stderr, "opd-s3d: no socket (s3.gateway or --socket)\n");
                return 1;
        }
        base = event_base_new();
        o.retries = g.cfg.s3_retries;
        o.max_conns = g.cfg.s3_parallel;
        if (!base || s3_client_new(base, &creds, &o, &g.client) < 0) {
                fprintf(stderr, "opd-s3d: cannot start the S3 client\n");
                return 1;
        }
        s3_creds_free(&creds);
        fd = listen_socket(sock);
        http = evhttp_new(base);
        if (fd < 0 || !http || evhttp_accept_socket(http, fd) < 0) {
                fprintf(stderr, "opd-s3d: cannot listen on %s: %s\n", sock,
                        strerror(fd < 0 ? -fd : EIO));
                return 1;
        }
        evhttp_set_allowed_methods(http, EVHTTP_REQ_GET);
        evhttp_set_max_body_size(http, 0);
        evhttp_set_gencb(http, on_request, &g);
        sigterm = evsignal_new(base, SIGTERM, on_signal, base);
        sigint = evsignal_new(base, SIGINT, on_signal, base);
        if (!sigterm || !sigint || evsignal_add(sigterm, NULL) < 0 ||
            evsignal_add(sigint, NULL) < 0)
                return 1;
        fprintf(stderr, "opd-s3d: serving s3://%s/%s (%zu location%s) on %s\n", g.locs[0].bucket,
                g.cfg.s3_prefix, g.n_locs, g.n_locs > 1 ? "s" : "", sock);
        event_base_dispatch(base);
        fprintf(stderr, "opd-s3d: stopping (%lu requests served, %lu refused)\n", g.served,
                g.refused);
        evhttp_free(http);
        s3_client_free(g.client);
        event_free(sigterm);
        event_free(sigint);
        s3_locations_free(g.locs, g.n_locs);
        op_config_free(&g.cfg);
        event_base_free(base);
        return 0;
}
