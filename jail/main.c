/* main.c: opd-jail, opd's privileged helper: the only process of opd's that keeps privileges. It
 * reads fixed-size requests from opd on fd 3, starts each VMM in a jail of its own, kills and
 * reaps them, and reports their exits. See docs/security.md. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "jail-proto.h"
#include "jail-run.h"

#define SOCK_FD 3

struct live {
        uint32_t seq; /* its SPAWN's: what opd names it by */
        pid_t pid;
        uid_t uid;
        char name[JAIL_NAME_MAX];
};

static struct jail_conf conf;
static struct jail_cgroup cgroup = {.base_fd = -1};
static struct live *lives;
static size_t n_lives, max_lives;

static void send_msg(const struct jail_msg *m)
{
        (void)send(SOCK_FD, m, sizeof(*m), MSG_NOSIGNAL);
}

/* The lowest uid of the range no live VM has. */
static int free_uid(uid_t *ret)
{
        for (uid_t u = conf.uid_min; u <= conf.uid_max && u >= conf.uid_min; u++) {
                bool used = false;

                for (size_t i = 0; i < n_lives && !used; i++)
                        used = lives[i].uid == u;
                if (!used) {
                        *ret = u;
                        return 0;
                }
        }
        return -EUSERS;
}

static void handle_spawn(const struct jail_req *req, const int *fds, size_t n_fds)
{
        struct jail_msg m = {.magic = JAIL_PROTO_MAGIC, .type = JAIL_MSG_SPAWNED, .seq = req->seq};
        bool cg = false;
        pid_t pid = 0;
        uid_t uid = 0;
        int r, step = 0;

        if (n_fds != req->n_fds)
                r = -EBADMSG;
        else if (n_lives == max_lives)
                r = -EUSERS;
        else
                r = free_uid(&uid);
        if (r >= 0)
                r = jail_spawn(&conf, &cgroup, req, fds, uid, &pid, &cg, &step);
        if (r < 0) {
                m.err = r;
                if (step)
                        snprintf(m.text, sizeof(m.text), "%s: jail set-up step %d: %s", req->name,
                                 step, strerror(-r));
                else
                        snprintf(m.text, sizeof(m.text), "%s: %s", req->name, strerror(-r));
                fprintf(stderr, "opd-jail: %s\n", m.text);
        } else {
                lives[n_lives].seq = req->seq;
                lives[n_lives].pid = pid;
                lives[n_lives].uid = uid;
                memcpy(lives[n_lives].name, req->name, JAIL_NAME_MAX);
                n_lives++;
                m.pid = pid;
                m.uid = uid;
                m.flags = cg ? JAIL_F_CGROUP : 0;
        }
        send_msg(&m);
}

static void handle_kill(const struct jail_req *req)
{
        for (size_t i = 0; i < n_lives; i++)
                if (lives[i].seq == req->seq && lives[i].pid == req->pid)
                        kill(lives[i].pid, SIGKILL);
}

/* One packet from opd; false when opd is gone. */
static bool read_request(void)
{
        struct jail_req buf, req;
        char cbuf[CMSG_SPACE(sizeof(int) * JAIL_FDS_MAX)];
        struct iovec iov = {.iov_base = &buf, .iov_len = sizeof(buf)};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
        int fds[JAIL_FDS_MAX];
        size_t n_fds = 0;
        ssize_t k;

        k = recvmsg(SOCK_FD, &mh, MSG_CMSG_CLOEXEC);
        if (k < 0)
                return errno == EINTR || errno == EAGAIN;
        if (k == 0)
                return false;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int *p = (int *)CMSG_DATA(c);

                        for (size_t i = 0; i < n; i++) {
                                if (n_fds < JAIL_FDS_MAX)
                                        fds[n_fds++] = p[i];
                                else
                                        close(p[i]);
                        }
                }
        /* A truncated packet or a truncated fd list is refused like any malformed one. */
        if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
            jail_req_decode(&buf, (size_t)k, &req) < 0) {
                struct jail_msg m = {.magic = JAIL_PROTO_MAGIC,
                                     .type = JAIL_MSG_SPAWNED,
                                     .err = -EBADMSG,
                                     .seq = k >= 12 ? buf.seq : 0};

                snprintf(m.text, sizeof(m.text), "malformed request");
                send_msg(&m);
        } else if (req.type == JAIL_REQ_SPAWN)
                handle_spawn(&req, fds, n_fds);
        else
                handle_kill(&req);
        for (size_t i = 0; i < n_fds; i++)
                close(fds[i]);
        return true;
}

static void reap(void)
{
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                for (size_t i = 0; i < n_lives; i++) {
                        if (lives[i].pid != pid)
                                continue;
                        jail_release(&cgroup, lives[i].name);
                        send_msg(&(struct jail_msg){.magic = JAIL_PROTO_MAGIC,
                                                    .type = JAIL_MSG_EXITED,
                                                    .seq = lives[i].seq,
                                                    .pid = pid,
                                                    .status = status,
                                                    .uid = lives[i].uid});
                        lives[i] = lives[--n_lives];
                        break;
                }
}

static int parse_uid(const char *s, uid_t *ret)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || v >= 0xffffffffUL)
                return -EINVAL;
        *ret = (uid_t)v;
        return *end == 0 || *end == '-' || *end == ':' ? 0 : -EINVAL;
}

static void usage(void)
{
        fprintf(stderr, "Usage: opd-jail --run-dir DIR --uids MIN-MAX --owner UID:GID "
                        "--vmm N=PATH... (started by opd, socket on fd 3)\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
            {"run-dir", required_argument, NULL, 'r'},
            {"uids", required_argument, NULL, 'u'},
            {"owner", required_argument, NULL, 'o'},
            {"vmm", required_argument, NULL, 'v'},
            {0},
        };
        struct jail_msg hello = {.magic = JAIL_PROTO_MAGIC, .type = JAIL_MSG_HELLO};
        struct pollfd pfd[2];
        sigset_t chld;
        int o, sfd;
        uid_t g;

        while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                const char *p;

                switch (o) {
                case 'r':
                        conf.run_dir = optarg;
                        break;
                case 'u':
                        p = strchr(optarg, '-');
                        if (!p || parse_uid(optarg, &conf.uid_min) < 0 ||
                            parse_uid(p + 1, &conf.uid_max) < 0) {
                                usage();
                                return 2;
                        }
                        break;
                case 'o':
                        p = strchr(optarg, ':');
                        if (!p || parse_uid(optarg, &conf.owner_uid) < 0 ||
                            parse_uid(p + 1, &g) < 0) {
                                usage();
                                return 2;
                        }
                        conf.owner_gid = g;
                        break;
                case 'v':
                        if (optarg[0] < '0' || optarg[0] >= '0' + JAIL_VMMS_MAX ||
                            optarg[1] != '=' || optarg[2] != '/') {
                                usage();
                                return 2;
                        }
                        conf.vmm[optarg[0] - '0'] = optarg + 2;
                        break;
                default:
                        usage();
                        return 2;
                }
        }
        if (!conf.run_dir || conf.run_dir[0] != '/' || conf.uid_min == 0 ||
            conf.uid_max < conf.uid_min || conf.uid_max - conf.uid_min >= 65536 ||
            (conf.owner_uid >= conf.uid_min && conf.owner_uid <= conf.uid_max)) {
                usage();
                return 2;
        }
        /* Dies with opd (an opd gone before this point closed the socket: EOF below). opd may be
         * PID 1 of a container: its pid says nothing. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                return 1;
        (void)prctl(PR_SET_DUMPABLE, 0);
        if (jail_drop_caps() < 0) {
                fprintf(stderr, "opd-jail: cannot set capabilities: %m (must start as root)\n");
                return 1;
        }
        max_lives = conf.uid_max - conf.uid_min + 1;
        lives = calloc(max_lives, sizeof(*lives));
        if (!lives)
                return 1;
        jail_cgroup_init(&cgroup, getppid());
        hello.flags = cgroup.base_fd >= 0 ? JAIL_F_CGROUP : 0;
        snprintf(hello.text, sizeof(hello.text), "%s", cgroup.why);
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, NULL);
        sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sfd < 0)
                return 1;
        signal(SIGPIPE, SIG_IGN);
        send_msg(&hello);
        pfd[0] = (struct pollfd){.fd = SOCK_FD, .events = POLLIN};
        pfd[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
        for (;;) {
                if (poll(pfd, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (pfd[1].revents) {
                        struct signalfd_siginfo si;

                        while (read(sfd, &si, sizeof(si)) == sizeof(si))
                                ;
                        reap();
                }
                if (pfd[0].revents & POLLIN) {
                        if (!read_request())
                                break;
                } else if (pfd[0].revents & (POLLHUP | POLLERR))
                        break;
        }
        /* opd is gone: so are its VMs. */
        for (size_t i = 0; i < n_lives; i++)
                kill(lives[i].pid, SIGKILL);
        while (n_lives > 0) {
                int status;
                pid_t pid = waitpid(-1, &status, 0);

                if (pid < 0 && errno != EINTR)
                        break;
                for (size_t i = 0; i < n_lives; i++)
                        if (lives[i].pid == pid) {
                                jail_release(&cgroup, lives[i].name);
                                lives[i] = lives[--n_lives];
                                break;
                        }
        }
        return 0;
}
