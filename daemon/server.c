/* server.c: the listening UNIX socket: taken from systemd or bound here with its mode set at
 * bind time, accept4() with a pause on EMFILE instead of a busy loop. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "cleanup.h"
#include "client.h"
#include "log.h"
#include "opd.h"
#include "server.h"

#define ACCEPT_RETRY_MS 100
/* File descriptors kept free for VMs (a VMM's sockets, pipes, pidfd and run-dir files while it
 * starts) and for opd's own work: per VM slot, and for the rest. */
#define FDS_PER_VM 16
#define FDS_OWN    32

struct server {
        int listen_fd;
        bool socket_activated; /* the socket came from systemd: never unlink it */
        struct event *listen_ev;
        struct event *accept_retry_ev; /* re-enables accepting after EMFILE */
};

static int make_parent_dir(const char *path)
{
        _cleanup_free_ char *dir = strdup(path);
        char *slash;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = 0;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* A socket file left by a dead opd is removed; one that answers belongs to a live opd. */
static int remove_stale(const struct sockaddr_un *sa)
{
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct stat st;

        if (lstat(sa->sun_path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
                return -EADDRINUSE;
        if (unlink(sa->sun_path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static int bind_socket(struct opd *d)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        mode_t old;
        int r;

        if (strlen(d->cfg.socket_path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "socket path %s", d->cfg.socket_path);
        strcpy(sa.sun_path, d->cfg.socket_path);
        r = make_parent_dir(sa.sun_path);
        if (r < 0)
                return log_error_errno(r, "create directory for %s", sa.sun_path);
        r = remove_stale(&sa);
        if (r == -EADDRINUSE) {
                log_error("%s: another opd is listening there", sa.sun_path);
                return r;
        }
        if (r < 0)
                return log_error_errno(r, "%s: cannot replace existing file", sa.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(-errno, "socket");
        old = umask(~d->cfg.socket_mode & 0777);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0)
                return log_error_errno(-errno, "bind %s", sa.sun_path);
        if (listen(fd, 128) < 0)
                return log_error_errno(-errno, "listen %s", sa.sun_path);
        d->server->listen_fd = TAKE_FD(fd);
        return 0;
}

int server_raise_nofile(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur >= rl.rlim_max)
                return 0;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        return 1;
}

bool server_fd_spare(const struct opd *d, int fd, bool http)
{
        struct rlimit rl;
        uint64_t reserve = (uint64_t)d->cfg.max_vms * FDS_PER_VM + FDS_OWN;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return true;
        /* With a limit too small for the whole reserve, a quarter of it. */
        if (reserve > rl.rlim_cur / 4)
                reserve = rl.rlim_cur / 4;
        /* The HTTP listeners stop a reserve earlier than opd's socket, which stays usable. */
        if (http)
                reserve *= 2;
        /* accept() returns the lowest free number: every fd below fd is taken, so fewer than
         * rlim_cur - fd are free. */
        return (uint64_t)fd + reserve < rl.rlim_cur;
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
        struct opd *d = arg;

        if (!d->stopping)
                event_add(d->server->listen_ev, NULL);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
        struct opd *d = arg;

        for (int i = 0; i < 64; i++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

                if (fd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                            errno == ENOMEM) {
                                log_warn("accept: %m; pausing for %d ms", ACCEPT_RETRY_MS);
                                event_del(d->server->listen_ev);
                                op_timer_arm_ms(d->server->accept_retry_ev, ACCEPT_RETRY_MS);
                                return;
                        }
                        log_error("accept: %m");
                        return;
                }
                if (!server_fd_spare(d, fd, false)) {
                        client_refuse(d, fd, "opd keeps its remaining file descriptors for VMs");
                        continue;
                }
                client_new(d, fd);
        }
}

int server_listen(struct opd *d)
{
        int n = sd_listen_fds(1), r;

        if (n > 1) {
                log_error("systemd passed %d sockets; opd takes exactly one", n);
                return -EINVAL;
        }
        d->server = calloc(1, sizeof(*d->server));
        if (!d->server)
                return -ENOMEM;
        d->server->listen_fd = -1;
        if (n == 1) {
                d->server->listen_fd = SD_LISTEN_FDS_START;
                d->server->socket_activated = true;
                r = sd_is_socket_unix(d->server->listen_fd, SOCK_STREAM, 1, NULL, 0);
                if (r <= 0) {
                        log_error(
                            "the socket passed by systemd is not a listening UNIX stream socket");
                        return r < 0 ? r : -EINVAL;
                }
                fcntl(d->server->listen_fd, F_SETFD, FD_CLOEXEC);
                fcntl(d->server->listen_fd, F_SETFL,
                      fcntl(d->server->listen_fd, F_GETFL) | O_NONBLOCK);
                log_info("listening on the socket passed by systemd");
        } else {
                r = bind_socket(d);
                if (r < 0)
                        return r;
                log_info("listening on %s", d->cfg.socket_path);
        }
        d->server->listen_ev =
            event_new(d->base, d->server->listen_fd, EV_READ | EV_PERSIST, on_accept, d);
        d->server->accept_retry_ev = evtimer_new(d->base, on_accept_retry, d);
        if (!d->server->listen_ev || !d->server->accept_retry_ev)
                return -ENOMEM;
        event_add(d->server->listen_ev, NULL);
        return 0;
}

void server_close(struct opd *d)
{
        struct server *s = d->server;

        if (!s)
                return;
        if (s->listen_ev)
                event_free(s->listen_ev);
        if (s->accept_retry_ev)
                event_free(s->accept_retry_ev);
        if (s->listen_fd >= 0) {
                safe_close(s->listen_fd);
                if (!s->socket_activated)
                        unlink(d->cfg.socket_path);
        }
        free(s);
        d->server = NULL;
}
