/* test-bgjob.c: background jobs (daemon/bgjob.c): the child holds nothing of opd's but its result
 * pipe and the fd it asked for, its result and exit both reach the loop, and a stop kills, reaps
 * and answers every job. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "bgjob.h"
#include "opd.h"

struct outcome {
        bool called;
        int calls;
        int r;
        char msg[512];
};

static void on_done(struct opd *d, int r, const char *msg, void *userdata)
{
        struct outcome *o = userdata;

        o->called = true;
        o->calls++;
        o->r = r;
        snprintf(o->msg, sizeof(o->msg), "%s", msg);
        event_base_loopbreak(d->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
        fail_msg("no result from the background job within 60 s");
}

/* Run the loop until the job answers, then reap its child as opd's SIGCHLD path does. */
static void wait_job(struct opd *d, struct outcome *o)
{
        struct event *deadline = evtimer_new(d->base, on_deadline, NULL);
        int status;
        pid_t pid;

        op_timer_arm_ms(deadline, 60000);
        while (!o->called)
                event_base_loop(d->base, EVLOOP_ONCE);
        event_free(deadline);
        pid = waitpid(-1, &status, 0);
        assert_true(pid > 0);
        assert_true(bgjob_reaped(d, pid, status));
        assert_false(bgjob_reaped(d, pid, status)); /* forgotten once reaped and answered */
}

static void setup_opd(struct opd *d)
{
        *d = (struct opd){0};
        d->base = event_base_new();
        assert_non_null(d->base);
        assert_int_equal(bgjobs_init(d), 0);
}

static void teardown_opd(struct opd *d)
{
        bgjobs_done(d);
        event_base_free(d->base);
}

/* In the child: the fds above 2 it holds, and whether fd `keep` is the directory asked for. */
struct fds_arg {
        int keep;
        ino_t keep_ino;
};

static int list_fds(void *arg, char *msg, size_t msglen)
{
        struct fds_arg *a = arg;
        DIR *dir = opendir("/proc/self/fd");
        struct dirent *de;
        struct stat st;
        size_t n = 0;

        if (!dir)
                return -errno;
        msg[0] = 0;
        while ((de = readdir(dir))) {
                int fd = atoi(de->d_name);

                if (de->d_name[0] == '.' || fd < 3 || fd == dirfd(dir))
                        continue;
                n += (size_t)snprintf(msg + n, n < msglen ? msglen - n : 0, "%s%d", n ? " " : "",
                                      fd);
        }
        closedir(dir);
        if (fstat(a->keep, &st) < 0 || st.st_ino != a->keep_ino)
                return -EBADF;
        return a->keep;
}

static void test_child_fds(void **state)
{
        struct fds_arg a;
        struct outcome o = {0};
        struct opd d;
        struct stat st;
        int sv[2], p[2], null;

        setup_opd(&d);
        /* What a leaky opd would hold: none of it may reach the child. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        assert_int_equal(pipe(p), 0);
        null = open("/dev/null", O_RDONLY);
        assert_true(null >= 0);
        a.keep = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(a.keep >= 0);
        assert_int_equal(fstat(a.keep, &st), 0);
        a.keep_ino = st.st_ino;

        assert_int_equal(bgjob_start(&d, list_fds, &a, &a.keep, on_done, &o), 0);
        wait_job(&d, &o);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.r, 4);                /* the kept fd, as the child saw it */
        assert_string_equal(o.msg, "3 4");       /* the result pipe and the kept fd */
        assert_int_equal(fstat(a.keep, &st), 0); /* the parent's copy is untouched */

        /* Without a kept fd: the result pipe alone, and the directory is not there. */
        o = (struct outcome){0};
        assert_int_equal(bgjob_start(&d, list_fds, &a, NULL, on_done, &o), 0);
        wait_job(&d, &o);
        assert_string_equal(o.msg, "3");
        assert_int_equal(o.r, -EBADF);

        close(sv[0]);
        close(sv[1]);
        close(p[0]);
        close(p[1]);
        close(null);
        close(a.keep);
        teardown_opd(&d);
}

static int die(void *arg, char *msg, size_t msglen)
{
        raise(SIGKILL);
        return 0;
}

static int fail_with(void *arg, char *msg, size_t msglen)
{
        snprintf(msg, msglen, "hash mismatch in %s", (const char *)arg);
        return -EIO;
}

static void test_result_and_death(void **state)
{
        struct outcome o = {0};
        struct opd d;

        setup_opd(&d);
        assert_int_equal(bgjob_start(&d, fail_with, "mem", NULL, on_done, &o), 0);
        wait_job(&d, &o);
        assert_int_equal(o.r, -EIO);
        assert_string_equal(o.msg, "hash mismatch in mem");

        o = (struct outcome){0};
        assert_int_equal(bgjob_start(&d, die, NULL, NULL, on_done, &o), 0);
        wait_job(&d, &o);
        assert_int_equal(o.r, -EIO);
        assert_string_equal(o.msg, "background job died");
        teardown_opd(&d);
}

static int hang(void *arg, char *msg, size_t msglen)
{
        for (;;)
                pause();
        return 0;
}

static void test_cancel(void **state)
{
        struct outcome o[3] = {0};
        struct opd d;

        setup_opd(&d);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(bgjob_start(&d, hang, NULL, NULL, on_done, &o[i]), 0);
        bgjobs_cancel_all(&d);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(o[i].calls, 1);
                assert_int_equal(o[i].r, -ECANCELED);
                assert_string_equal(o[i].msg, "opd is stopping");
        }
        /* Killed and reaped: no child is left. */
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
        /* Nothing new starts once stopping. */
        assert_int_equal(bgjob_start(&d, hang, NULL, NULL, on_done, &o[0]), -ESHUTDOWN);
        teardown_opd(&d);
        assert_int_equal(o[0].calls, 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_child_fds),
            cmocka_unit_test(test_result_and_death),
            cmocka_unit_test(test_cancel),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
