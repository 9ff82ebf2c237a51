/* test-vsock.c: the host side of Firecracker's vsock handshake (lib/vsock-connect.c) against a
 * test peer that behaves as Firecracker's vsock socket does: "CONNECT <port>\n" answered with
 * "OK <n>\n" and the guest's bytes, or the connection closed when nothing listens on the port. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "vsock-connect.h"

#define LISTENING_PORT 1024

static void test_parse_ack(void **state)
{
        uint32_t port = 0;

        assert_int_equal(vsock_parse_ack("OK 1073741824\n", 14, &port), 14);
        assert_int_equal(port, 1073741824u);
        /* the guest's stream may follow in the same read: only the line is claimed */
        assert_int_equal(vsock_parse_ack("OK 5\n\x00\x00\x00\x02{}", 11, &port), 5);
        assert_int_equal(port, 5);
        assert_int_equal(vsock_parse_ack("OK 12", 5, &port), 0);
        assert_int_equal(vsock_parse_ack("O", 1, &port), 0);
        assert_int_equal(vsock_parse_ack("", 0, &port), 0);
        assert_int_equal(vsock_parse_ack("NO\n", 3, &port), -EPROTO);
        assert_int_equal(vsock_parse_ack("OK \n", 4, &port), -EPROTO);
        assert_int_equal(vsock_parse_ack("OK x1\n", 6, &port), -EPROTO);
        assert_int_equal(vsock_parse_ack("OK 99999999999\n", 15, &port), -EPROTO);
        assert_int_equal(vsock_parse_ack("OK 111111111111111111111111111111111", 35, &port),
                         -EPROTO);
}

/* The peer: one connection at a time; OK for LISTENING_PORT followed at once by "hello",
 * a close for any other port. */
static void peer(int lfd)
{
        for (;;) {
                char line[64];
                size_t n = 0;
                unsigned port;
                int fd = accept(lfd, NULL, NULL);

                if (fd < 0)
                        _exit(1);
                while (n < sizeof(line) - 1 && read(fd, line + n, 1) == 1 && line[n++] != '\n')
                        ;
                line[n] = 0;
                if (sscanf(line, "CONNECT %u\n", &port) == 1 && port == LISTENING_PORT) {
                        static const char answer[] = "OK 1073741825\nhello";
                        (void)!write(fd, answer, sizeof(answer) - 1);
                        /* wait for the host to speak over the established stream */
                        n = (size_t)read(fd, line, sizeof(line));
                        (void)!write(fd, line, n);
                }
                close(fd);
        }
}

struct result {
        int fd, err;
        bool done;
};

static void on_done(int fd, int err, void *arg)
{
        struct result *r = arg;

        r->fd = fd;
        r->err = err;
        r->done = true;
}

static struct result run(struct event_base *base, const char *path, uint32_t port)
{
        struct result res = {.fd = -1};
        struct vsock_conn *c = NULL;
        int r = vsock_connect_start(base, path, port, 5000, on_done, &res, &c);

        if (r < 0)
                return (struct result){.fd = -1, .err = r, .done = true};
        assert_false(res.done); /* never from inside the call */
        while (!res.done)
                event_base_loop(base, EVLOOP_ONCE);
        return res;
}

/* The fd is non-blocking. */
static void read_exact(int fd, char *buf, size_t len)
{
        for (size_t n = 0; n < len;) {
                ssize_t k = read(fd, buf + n, len - n);

                if (k < 0 && errno == EAGAIN) {
                        usleep(1000);
                        continue;
                }
                assert_true(k > 0);
                n += (size_t)k;
        }
}

static void test_handshake(void **state)
{
        char dir[] = "/tmp/test-vsock-XXXXXX", path[64], buf[16];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct event_base *base = event_base_new();
        struct result res;
        int lfd;
        pid_t pid;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/v.sock", dir);
        /* no socket yet: the VMM has not created it */
        res = run(base, path, LISTENING_PORT);
        assert_int_equal(res.err, -ENOENT);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        lfd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_true(lfd >= 0);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 4), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                peer(lfd);
        close(lfd);

        /* a port nobody listens on: closed without OK */
        res = run(base, path, 52);
        assert_int_equal(res.fd, -1);
        assert_int_equal(res.err, -ECONNREFUSED);

        /* the agent's port: connected, the guest's first bytes untouched */
        res = run(base, path, LISTENING_PORT);
        assert_int_equal(res.err, 0);
        assert_true(res.fd >= 0);
        read_exact(res.fd, buf, 5);
        assert_memory_equal(buf, "hello", 5);
        assert_int_equal(write(res.fd, "ping", 4), 4);
        read_exact(res.fd, buf, 4);
        assert_memory_equal(buf, "ping", 4);
        close(res.fd);

        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        /* a stale socket path: nobody behind it */
        res = run(base, path, LISTENING_PORT);
        assert_int_equal(res.err, -ECONNREFUSED);
        unlink(path);
        rmdir(dir);
        event_base_free(base);
}

static void test_cancel(void **state)
{
        struct event_base *base = event_base_new();
        char dir[] = "/tmp/test-vsock-XXXXXX", path[64];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct result res = {.fd = -1};
        struct vsock_conn *c = NULL;
        int lfd;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/v.sock", dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        lfd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 4), 0);
        /* a peer that never answers: cancelled, the callback never runs */
        assert_int_equal(vsock_connect_start(base, path, LISTENING_PORT, 60000, on_done, &res, &c),
                         0);
        event_base_loop(base, EVLOOP_NONBLOCK);
        vsock_connect_cancel(c);
        event_base_loop(base, EVLOOP_NONBLOCK);
        assert_false(res.done);
        /* and a deadline that passes */
        assert_int_equal(vsock_connect_start(base, path, LISTENING_PORT, 50, on_done, &res, &c), 0);
        while (!res.done)
                event_base_loop(base, EVLOOP_ONCE);
        assert_int_equal(res.err, -ETIMEDOUT);
        close(lfd);
        unlink(path);
        rmdir(dir);
        event_base_free(base);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse_ack),
            cmocka_unit_test(test_handshake),
            cmocka_unit_test(test_cancel),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
