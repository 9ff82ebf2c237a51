/* vmm-jail.c: opd's end of opd-jail: the helper's start, spawn and kill requests over the
 * SOCK_SEQPACKET socketpair, and the exits it reports. No logging. */
#include "vmm-jail.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#define EXITS_MAX 4096

struct vm_jail {
        int fd;
        pid_t pid;
        uint32_t seq;
        bool cgroup;
        char cgroup_text[JAIL_TEXT_MAX];
        struct {
                uint32_t seq;
                pid_t pid;
                int status;
        } * exits;
        size_t n_exits;
};

static int recv_msg(struct vm_jail *j, int timeout_ms, struct jail_msg *ret)
{
        struct jail_msg buf;
        ssize_t k;

        if (timeout_ms >= 0) {
                struct pollfd p = {.fd = j->fd, .events = POLLIN};
                int r;

                do
                        r = poll(&p, 1, timeout_ms);
                while (r < 0 && errno == EINTR);
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return -ETIMEDOUT;
        }
        do
                k = recv(j->fd, &buf, sizeof(buf), MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return errno == EAGAIN ? -EAGAIN : -EPIPE;
        if (k == 0)
                return -EPIPE;
        return jail_msg_decode(&buf, (size_t)k, ret) < 0 ? -EPROTO : 0;
}

static void keep_exit(struct vm_jail *j, const struct jail_msg *m)
{
        if (j->n_exits < EXITS_MAX) {
                j->exits[j->n_exits].seq = m->seq;
                j->exits[j->n_exits].pid = m->pid;
                j->exits[j->n_exits].status = m->status;
                j->n_exits++;
        }
}

int vm_jail_start(const struct vm_jail_opts *o, struct vm_jail **ret)
{
        char uids[64], owner[64], vmm[JAIL_VMMS_MAX][4200];
        char *argv[16];
        size_t n = 0;
        struct vm_jail *j;
        struct jail_msg m;
        int sp[2], r;
        pid_t parent = getpid();

        if (!o->helper || !o->run_dir || o->run_dir[0] != '/')
                return -EINVAL;
        argv[n++] = (char *)o->helper;
        argv[n++] = "--run-dir";
        argv[n++] = (char *)o->run_dir;
        snprintf(uids, sizeof(uids), "%u-%u", (unsigned)o->uid_min, (unsigned)o->uid_max);
        argv[n++] = "--uids";
        argv[n++] = uids;
        snprintf(owner, sizeof(owner), "%u:%u", (unsigned)o->owner_uid, (unsigned)o->owner_gid);
        argv[n++] = "--owner";
        argv[n++] = owner;
        for (int i = 0; i < JAIL_VMMS_MAX; i++)
                if (o->vmm[i]) {
                        if (o->vmm[i][0] != '/' || strlen(o->vmm[i]) > 4096)
                                return -EINVAL;
                        snprintf(vmm[i], sizeof(vmm[i]), "%d=%s", i, o->vmm[i]);
                        argv[n++] = "--vmm";
                        argv[n++] = vmm[i];
                }
        argv[n] = NULL;
        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->exits = calloc(EXITS_MAX, sizeof(*j->exits));
        if (!j->exits) {
                free(j);
                return -ENOMEM;
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
                r = -errno;
                free(j->exits);
                free(j);
                return r;
        }
        j->pid = fork();
        if (j->pid == 0) {
                static char *const env[] = {NULL};

                sigset_t all;
                sigemptyset(&all);
                sigprocmask(SIG_SETMASK, &all, NULL);
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(127);
                if (dup2(sp[1], 3) < 0)
                        _exit(127);
                (void)syscall(SYS_close_range, 4U, ~0U, 0);
                execve(o->helper, argv, env);
                _exit(127);
        }
        r = j->pid < 0 ? -errno : 0;
        close(sp[1]);
        j->fd = sp[0];
        if (r >= 0) {
                /* The hello comes at once; a helper that failed to start closes the socket. */
                r = recv_msg(j, 30000, &m);
                if (r >= 0 && m.type != JAIL_MSG_HELLO)
                        r = -EPROTO;
        }
        if (r < 0) {
                vm_jail_free(j);
                return r == -EPIPE ? -ECHILD : r;
        }
        j->cgroup = m.flags & JAIL_F_CGROUP;
        snprintf(j->cgroup_text, sizeof(j->cgroup_text), "%s", m.text);
        *ret = j;
        return 0;
}

struct vm_jail *vm_jail_free(struct vm_jail *j)
{
        if (!j)
                return NULL;
        safe_close(j->fd);
        if (j->pid > 0)
                while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        free(j->exits);
        free(j);
        return NULL;
}

int vm_jail_fd(const struct vm_jail *j)
{
        return j->fd;
}

pid_t vm_jail_pid(const struct vm_jail *j)
{
        return j->pid;
}

bool vm_jail_cgroup(const struct vm_jail *j)
{
        return j->cgroup;
}

const char *vm_jail_cgroup_text(const struct vm_jail *j)
{
        return j->cgroup_text;
}

static int send_req(struct vm_jail *j, const struct jail_req *req, const int *fds, size_t n_fds)
{
        char cbuf[CMSG_SPACE(sizeof(int) * JAIL_FDS_MAX)] = {0};
        struct iovec iov = {.iov_base = (void *)req, .iov_len = sizeof(*req)};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t k;

        if (n_fds > JAIL_FDS_MAX)
                return -E2BIG;
        if (n_fds) {
                struct cmsghdr *c;

                mh.msg_control = cbuf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        do
                k = sendmsg(j->fd, &mh, MSG_NOSIGNAL);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return errno == EAGAIN ? -EAGAIN : -EPIPE;
        return k == (ssize_t)sizeof(*req) ? 0 : -EPIPE;
}

int vm_jail_spawn(struct vm_jail *j, uint32_t vmm, const char *name, char *const *argv,
                  const int *fds, size_t n_fds, const struct vm_jail_limits *lim, uint32_t *ret_seq,
                  pid_t *ret_pid, uid_t *ret_uid)
{
        struct jail_req req;
        struct jail_msg m;
        uint32_t seq = ++j->seq;
        int r;

        r = jail_req_spawn(seq, vmm, name, argv, (uint32_t)n_fds, &req);
        if (r < 0)
                return r;
        if (lim) {
                req.memory_max_mb = lim->memory_max_mb;
                req.pids_max = lim->pids_max;
                req.cpu_weight = lim->cpu_weight;
        }
        r = send_req(j, &req, fds, n_fds);
        if (r < 0)
                return r;
        for (;;) {
                r = recv_msg(j, 60000, &m);
                if (r < 0)
                        return r == -ETIMEDOUT ? r : -EPIPE;
                if (m.type == JAIL_MSG_EXITED)
                        keep_exit(j, &m);
                else if (m.type == JAIL_MSG_SPAWNED && m.seq == seq)
                        break;
        }
        if (m.err < 0)
                return m.err;
        *ret_seq = seq;
        *ret_pid = m.pid;
        *ret_uid = m.uid;
        return 0;
}

int vm_jail_kill(struct vm_jail *j, uint32_t seq, pid_t pid)
{
        struct jail_req req = {
            .magic = JAIL_PROTO_MAGIC,
            .type = JAIL_REQ_KILL,
            .seq = seq,
            .pid = pid,
        };

        if (pid <= 1)
                return -EINVAL;
        return send_req(j, &req, NULL, 0);
}

bool vm_jail_pending(const struct vm_jail *j)
{
        return j->n_exits > 0;
}

int vm_jail_read(struct vm_jail *j, bool block, int timeout_ms, vm_jail_exited_fn exited,
                 void *userdata)
{
        struct jail_msg m;
        bool got = false;
        int r;

        for (;;) {
                while (j->n_exits > 0) {
                        uint32_t seq = j->exits[0].seq;
                        pid_t pid = j->exits[0].pid;
                        int status = j->exits[0].status;

                        memmove(j->exits, j->exits + 1, (j->n_exits - 1) * sizeof(*j->exits));
                        j->n_exits--;
                        got = true;
                        exited(seq, pid, status, userdata);
                }
                r = recv_msg(j, block && !got ? timeout_ms : -1, &m);
                if (r == -EAGAIN || r == -ETIMEDOUT)
                        return r == -ETIMEDOUT ? r : 0;
                if (r < 0)
                        return r;
                if (m.type == JAIL_MSG_EXITED)
                        keep_exit(j, &m);
        }
}
