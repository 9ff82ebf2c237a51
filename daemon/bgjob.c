/* bgjob.c: slow work (hashing snapshot files) in a forked child so the loop never blocks; the
 * jobs running, each child's result record read from its pipe, its exit, cancellation at stop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bgjob.h"
#include "cleanup.h"
#include "log.h"
#include "opd.h"

#define BGJOB_RESULT_FD 3 /* the result pipe in the child */
#define BGJOB_KEEP_FD   4 /* the fd the job asked to keep, in the child */

struct bgjob_result {
        int r;
        char msg[512];
};

struct bgjob {
        LIST_ENTRY(bgjob) link;
        struct bgjobs *jobs;
        struct event *ev;
        int fd; /* the result pipe; -1 once read */
        pid_t pid;
        bool reaped;   /* the SIGCHLD path saw it exit */
        bool answered; /* done() was called */
        bgjob_done_fn done;
        void *userdata;
};

struct bgjobs {
        struct opd *d;
        LIST_HEAD(, bgjob) list; /* started and not yet both answered and reaped */
        unsigned n;
        bool closed; /* opd is stopping: no new jobs */
};

int bgjobs_init(struct opd *d)
{
        struct bgjobs *b = calloc(1, sizeof(*b));

        if (!b)
                return -ENOMEM;
        b->d = d;
        LIST_INIT(&b->list);
        d->bgjobs = b;
        return 0;
}

static void job_free(struct bgjob *j)
{
        LIST_REMOVE(j, link);
        j->jobs->n--;
        if (j->ev)
                event_free(j->ev);
        safe_close(j->fd);
        free(j);
}

/* Call done() once; the job stays listed until its process is reaped too. */
static void job_answer(struct bgjob *j, int r, const char *msg)
{
        struct opd *d = j->jobs->d;
        bgjob_done_fn done = j->done;
        void *userdata = j->userdata;

        if (j->ev) {
                event_free(j->ev);
                j->ev = NULL;
        }
        j->fd = safe_close(j->fd);
        j->answered = true;
        if (j->reaped)
                job_free(j);
        done(d, r, msg, userdata);
}

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
        job_answer(j, res.r, res.msg);
}

unsigned bgjobs_pending(const struct opd *d)
{
        const struct bgjob *j;
        unsigned n = 0;

        if (!d->bgjobs)
                return 0;
        LIST_FOREACH(j, &d->bgjobs->list, link)
        n += !j->answered;
        return n;
}

bool bgjob_reaped(struct opd *d, pid_t pid, int status)
{
        struct bgjob *j;

        if (!d->bgjobs)
                return false;
        LIST_FOREACH(j, &d->bgjobs->list, link)
        {
                if (j->pid != pid)
                        continue;
                if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
                        log_warn("background job %d killed by signal %d", (int)pid,
                                 WTERMSIG(status));
                j->reaped = true;
                if (j->answered)
                        job_free(j);
                return true;
        }
        return false;
}

/* Only fds 0-2, the result pipe (as 3) and keep_fd (as 4) stay open: the child must not hold
 * the listening socket, clients, VM channels or anything else of opd's. */
static int child_fds(int result_fd, int *keep_fd)
{
        int res = fcntl(result_fd, F_DUPFD_CLOEXEC, BGJOB_KEEP_FD + 1), keep = -1;

        if (res < 0)
                return -errno;
        if (keep_fd && (keep = fcntl(*keep_fd, F_DUPFD_CLOEXEC, BGJOB_KEEP_FD + 1)) < 0)
                return -errno;
        if (dup3(res, BGJOB_RESULT_FD, O_CLOEXEC) < 0)
                return -errno;
        if (keep_fd) {
                if (dup3(keep, BGJOB_KEEP_FD, O_CLOEXEC) < 0)
                        return -errno;
                *keep_fd = BGJOB_KEEP_FD;
        }
        unsigned first = keep_fd ? BGJOB_KEEP_FD + 1 : BGJOB_RESULT_FD + 1;
#ifdef SYS_close_range
        if (syscall(SYS_close_range, first, ~0U, 0) == 0)
                return 0;
#endif
        /* no close_range() (Linux < 5.9): every fd up to the limit */
        long max = sysconf(_SC_OPEN_MAX);

        for (long fd = first; fd < (max > 0 ? max : 65536); fd++)
                close((int)fd);
        return 0;
}

static void __attribute__((noreturn)) child(int result_fd, int *keep_fd, bgjob_fn fn, void *arg)
{
        struct bgjob_result res = {0};

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* opd's handlers write to the loop's signal pipe, which is closed below: its fd number
         * may be reused by a file the job writes. */
        for (int s = 1; s < NSIG; s++)
                if (s != SIGKILL && s != SIGSTOP)
                        signal(s, SIG_DFL);
        signal(SIGPIPE, SIG_IGN);
        if (child_fds(result_fd, keep_fd) < 0)
                _exit(1); /* the parent reads EOF: "background job died" */
        res.r = fn(arg, res.msg, sizeof(res.msg));
        (void)!write(BGJOB_RESULT_FD, &res, sizeof(res));
        _exit(0);
}

int bgjob_start(struct opd *d, bgjob_fn fn, void *arg, int *keep_fd, bgjob_done_fn done,
                void *userdata)
{
        struct bgjobs *b = d->bgjobs;
        _cleanup_close_ int rd = -1, wr = -1;
        struct bgjob *j;
        int p[2];
        pid_t pid;

        if (!b || b->closed)
                return -ESHUTDOWN;
        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        if (pipe2(p, O_CLOEXEC) < 0) {
                free(j);
                return -errno;
        }
        rd = p[0];
        wr = p[1];
        j->ev = event_new(d->base, rd, EV_READ, on_result, j);
        if (!j->ev) {
                free(j);
                return -ENOMEM;
        }
        pid = fork();
        if (pid < 0) {
                int r = -errno;
                event_free(j->ev);
                free(j);
                return r;
        }
        if (pid == 0)
                child(wr, keep_fd, fn, arg);
        j->jobs = b;
        j->fd = TAKE_FD(rd);
        j->pid = pid;
        j->done = done;
        j->userdata = userdata;
        event_add(j->ev, NULL);
        LIST_INSERT_HEAD(&b->list, j, link);
        b->n++;
        return 0;
}

void bgjobs_cancel_all(struct opd *d)
{
        struct bgjobs *b = d->bgjobs;
        struct bgjob *j;

        if (!b)
                return;
        b->closed = true;
        /* A job is listed until it is both answered and reaped. A done() may end other jobs
         * (their owners go): look again from the start after each one. */
        while ((j = LIST_FIRST(&b->list))) {
                if (!j->reaped) {
                        kill(j->pid, SIGKILL);
                        while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
                                ;
                        j->reaped = true;
                }
                if (j->answered)
                        job_free(j);
                else
                        job_answer(j, -ECANCELED, "opd is stopping");
        }
}

void bgjobs_done(struct opd *d)
{
        if (!d->bgjobs)
                return;
        bgjobs_cancel_all(d);
        free(d->bgjobs);
        d->bgjobs = NULL;
}
