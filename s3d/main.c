/* main.c (opd-s3d): the S3 gateway: the one process of a host that has the network and the S3
 * credentials. It answers GETs of objects under s3.prefix in the configured buckets over a UNIX
 * socket, signing each with its own credentials; opd (and so every VMM) needs neither. */
#include <errno.h>
#include <event2/event.h>
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
#include "s3-gateway.h"
#include "s3.h"
#include "util.h"

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
        struct op_config cfg;
        struct s3_location locs[S3_LOCATIONS_MAX];
        size_t n_locs = 0;
        struct s3_client *client = NULL;
        struct s3_gateway *gw = NULL;
        const struct s3_gateway_stats *st;
        struct s3_creds creds = {0};
        struct event_base *base;
        struct event *sigterm, *sigint;
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
        if (op_config_init(&cfg) < 0)
                return 1;
        r = op_config_load(&cfg, config, err, sizeof(err));
        if (r >= 0)
                r = op_config_check(&cfg, err, sizeof(err));
        if (r >= 0)
                r = s3_config_locations(&cfg, locs, &n_locs, err, sizeof(err));
        if (r >= 0 && n_locs == 0)
                r = op_errf(err, sizeof(err), -EINVAL, "no S3 bucket configured (s3.bucket)");
        if (r >= 0)
                r = s3_creds_load(getenv, &creds, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "opd-s3d: %s\n", err);
                return 1;
        }
        sock = sock ? sock : cfg.s3_gateway;
        if (!sock || !*sock) {
                fprintf(stderr, "opd-s3d: no socket (s3.gateway or --socket)\n");
                return 1;
        }
        base = event_base_new();
        o.retries = cfg.s3_retries;
        o.min_rate = cfg.s3_min_rate_kib << 10;
        o.max_conns = cfg.s3_parallel;
        if (!base || s3_client_new(base, &creds, &o, &client) < 0) {
                fprintf(stderr, "opd-s3d: cannot start the S3 client\n");
                return 1;
        }
        s3_creds_free(&creds);
        fd = listen_socket(sock);
        r = fd < 0 ? fd : s3_gateway_new(base, client, locs, n_locs, cfg.s3_prefix, fd, &gw);
        if (r < 0) {
                fprintf(stderr, "opd-s3d: cannot listen on %s: %s\n", sock, strerror(-r));
                return 1;
        }
        sigterm = evsignal_new(base, SIGTERM, on_signal, base);
        sigint = evsignal_new(base, SIGINT, on_signal, base);
        if (!sigterm || !sigint || evsignal_add(sigterm, NULL) < 0 ||
            evsignal_add(sigint, NULL) < 0)
                return 1;
        fprintf(stderr, "opd-s3d: serving s3://%s/%s (%zu location%s) on %s\n", locs[0].bucket,
                cfg.s3_prefix, n_locs, n_locs > 1 ? "s" : "", sock);
        event_base_dispatch(base);
        st = s3_gateway_stats(gw);
        fprintf(stderr,
                "opd-s3d: stopping (%lu requests served, %lu refused, %lu answers cut short)\n",
                st->served, st->refused, st->aborted);
        s3_gateway_free(gw);
        s3_client_free(client);
        event_free(sigterm);
        event_free(sigint);
        s3_locations_free(locs, n_locs);
        op_config_free(&cfg);
        event_base_free(base);
        return 0;
}
