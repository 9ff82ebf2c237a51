/* bgjob.c: slow work (hashing snapshot files) in a forked child so the loop never blocks;
 * the child sends back one result record through a pipe and exits. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "bgjob.h"
#include "cleanup.h"
#include "log.h"
#include "opd.h"

struct bgjob_result {
        int r;
        char msg[512];
};

struct bgjob {
        struct opd *d;
        struct event *ev;
        int fd;
        pid_t pid;
        bgjob_done_fn done;
        void *userdata;
};

static void on_result(evutil_socket_t fd, short what, void *arg)
{
        struct bgjob *j = arg;
        struct bgjob_result res = {.r = -EIO};
        ssize_t k;

        do
                k = read(j->fd, &res, sizeof(res));
        while (k < 0 && errno == EINTR);
        if (k != sizeof(res)) {
                res.r = -EIO;
                strcpy(res.msg, "background job died");
        }
        res.msg[sizeof(res.msg) - 1] = 0;
        event_free(j->ev);
        safe_close(j->fd);
        j->d->n_bgjobs--;
        j->done(j->d, res.r, res.msg, j->userdata);
        free(j);
}

int bgjob_start(struct opd *d, bgjob_fn fn, void *arg, bgjob_done_fn done, void *userdata)
{
        struct bgjob *j;
        int p[2];
        pid_t pid;

        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        if (pipe2(p, O_CLOEXEC) < 0) {
                free(j);
                return -errno;
        }
        pid = fork();
        if (pid < 0) {
                int r = -errno;
                safe_close(p[0]);
                safe_close(p[1]);
                free(j);
                return r;
        }
        if (pid == 0) {
                struct bgjob_result res = {0};

                prctl(PR_SET_PDEATHSIG, SIGKILL);
                signal(SIGTERM, SIG_DFL);
                res.r = fn(arg, res.msg, sizeof(res.msg));
                (void)!write(p[1], &res, sizeof(res));
                _exit(0);
        }
        safe_close(p[1]);
        j->d = d;
        j->fd = p[0];
        j->pid = pid;
        j->done = done;
        j->userdata = userdata;
        j->ev = event_new(d->base, j->fd, EV_READ, on_result, j);
        if (!j->ev) {
                kill(pid, SIGKILL);
                safe_close(j->fd);
                free(j);
                return -ENOMEM;
        }
        event_add(j->ev, NULL);
        d->n_bgjobs++;
        return 0;
}
