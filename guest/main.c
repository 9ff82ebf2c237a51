/* main.c: the op-agent process: options, PID 1 duties (set-up, orphans, never exiting), and the
 * channel to the host: open it, announce "ready", then one answer frame per request frame. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent-opts.h"
#include "agent.h"
#include "cleanup.h"
#include "frame.h"
#include "init.h"
#include "msg.h"
#include "util.h"

DEFINE_POINTER_CLEANUP(DIR *, closedir)

#define VIRTIO_PORTS_DIR "/sys/class/virtio-ports"
#define VIRTIO_PORT_NAME "op.agent"
#define CHANNEL_FIND_US  (10 * 1000 * 1000) /* give up finding the channel at boot after this */
#define CHANNEL_RETRY_NS (100 * 1000 * 1000)
#define VSOCK_PORT       1024 /* Firecracker: the host CONNECTs here through its vsock socket */
#define READ_BUF_INITIAL (64 * 1024)
#define READ_BUF_KEEP    (1024 * 1024) /* shrink back to READ_BUF_INITIAL above this when idle */

/* How one serving session on a channel ended. */
enum serve_end {
        SERVE_EOF,    /* host went away (EOF, EIO): reopen, or exit when that is impossible */
        SERVE_RESYNC, /* the byte stream cannot be trusted any more (oversize frame) */
};

struct agent_main;

/* A kind of channel to the host. Adding one means one open function and one entry in
 * channel_kinds[]. */
struct channel_kind {
        const char *name;
        /* Open a session: fds for reading requests and writing answers (may be the same). */
        int (*open)(struct agent_main *m, int *ret_in, int *ret_out);
        bool owns_fds;   /* close the fds when the session ends */
        bool reopenable; /* a new session can follow when one ends */
};

struct agent_main {
        struct agent_config cfg; /* from the options */
        struct agent agent;      /* the protocol's state, set up from cfg */
        const struct channel_kind *kind;
        const char *channel_path; /* --channel */
        int vsock_fd;             /* listening on VSOCK_PORT, or -1 */
        bool vsock_session;       /* the current session came over vsock */
        bool pid1;
};

static void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_msg(const char *fmt, ...)
{
        static const char prefix[] = "op-agent: ";
        char line[512];
        size_t len = sizeof(prefix) - 1;
        va_list ap;
        int n;

        memcpy(line, prefix, len);
        va_start(ap, fmt);
        n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        len += (size_t)n < sizeof(line) - len - 1 ? (size_t)n : sizeof(line) - len - 2;
        line[len++] = '\n';
        /* One write per line, so that kernel messages on the console do not split it. */
        (void)!write(STDERR_FILENO, line, len);
}

static void nap(long ns)
{
        nanosleep(&(struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000}, NULL);
}

/* Nothing is left to try. PID 1 may not exit (the kernel would panic): power off, so that the
 * host sees the VM end at once, or else sleep forever. */
static _Noreturn void give_up(const struct agent_main *m)
{
        if (!m->pid1)
                exit(EXIT_FAILURE);
        log_msg("giving up, powering off");
        sync();
        (void)reboot(RB_POWER_OFF);
        for (;;)
                pause();
}

/* Make sure fds 0-2 exist, so that no channel or pipe lands there and logs stay logs. */
static void ensure_std_fds(void)
{
        for (int fd = 0; fd < 3; fd++) {
                int nfd;

                if (fcntl(fd, F_GETFD) >= 0)
                        continue;
                nfd = open("/dev/console", O_RDWR | O_NOCTTY);
                if (nfd < 0)
                        nfd = open("/dev/null", O_RDWR | O_NOCTTY);
                if (nfd >= 0 && nfd != fd) {
                        close(nfd);
                        return;
                }
        }
}

static void reap_orphans(struct agent_main *m)
{
        /* As PID 1 or child subreaper, what user code left behind is ours to reap; the agent
         * keeps the status of a warm runner that ended while waiting. */
        agent_reap_orphans(&m->agent);
}

static int channel_stdio_open(struct agent_main *m, int *ret_in, int *ret_out)
{
        *ret_in = STDIN_FILENO;
        *ret_out = STDOUT_FILENO;
        return 0;
}

static int channel_path_open(struct agent_main *m, int *ret_in, int *ret_out)
{
        int fd = open(m->channel_path, O_RDWR | O_NOCTTY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        *ret_in = *ret_out = fd;
        return 0;
}

/* The virtio-serial port the host named "op.agent": /dev/vportNpM. */
static int find_virtio_port(char **ret_path)
{
        _cleanup_(closedirp) DIR *d = opendir(VIRTIO_PORTS_DIR);
        struct dirent *de;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                _cleanup_free_ char *name_path = NULL, *name = NULL;
                size_t len;

                if (strncmp(de->d_name, "vport", 5) != 0)
                        continue;
                if (asprintf(&name_path, VIRTIO_PORTS_DIR "/%s/name", de->d_name) < 0)
                        return -ENOMEM;
                if (op_read_file(name_path, 256, &name, &len) < 0)
                        continue;
                while (len > 0 && (name[len - 1] == '\n' || name[len - 1] == ' '))
                        name[--len] = 0;
                if (strcmp(name, VIRTIO_PORT_NAME) != 0)
                        continue;
                if (asprintf(ret_path, "/dev/%s", de->d_name) < 0)
                        return -ENOMEM;
                return 0;
        }
        return -ENOENT;
}

static int channel_virtio_open(struct agent_main *m, int *ret_in, int *ret_out)
{
        _cleanup_free_ char *path = NULL;
        int fd, r;

        r = find_virtio_port(&path);
        if (r < 0)
                return r;
        fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret_in = *ret_out = fd;
        return 0;
}

static int vsock_listen(struct agent_main *m)
{
        struct sockaddr_vm sa = {
            .svm_family = AF_VSOCK,
            .svm_cid = VMADDR_CID_ANY,
            .svm_port = VSOCK_PORT,
        };
        int fd;

        if (m->vsock_fd >= 0)
                return m->vsock_fd;
        fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
                int e = -errno;
                safe_close(fd);
                return e;
        }
        m->vsock_fd = fd;
        return fd;
}

/* One image serves both VMMs: the virtio-serial port when there is one (QEMU), else a host
 * connection on AF_VSOCK (Firecracker). Waiting for a connection lasts one retry period, so a
 * virtio port that shows up late is found, and a guest without vsock never stalls here.
 * -EAGAIN: listening on vsock, nobody connected yet. */
static int channel_auto_open(struct agent_main *m, int *ret_in, int *ret_out)
{
        int r = channel_virtio_open(m, ret_in, ret_out);
        struct pollfd p;
        int lfd, fd;

        m->vsock_session = false;
        if (r >= 0)
                return r;
        lfd = vsock_listen(m);
        if (lfd < 0)
                return r;
        p = (struct pollfd){.fd = lfd, .events = POLLIN};
        if (poll(&p, 1, CHANNEL_RETRY_NS / 1000000) <= 0)
                return -EAGAIN;
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return errno == EINTR || errno == ECONNABORTED ? -EAGAIN : -errno;
        m->vsock_session = true;
        *ret_in = *ret_out = fd;
        return 0;
}

static const struct channel_kind channel_kinds[] = {
    {"stdio", channel_stdio_open, .owns_fds = false, .reopenable = false},
    {"path", channel_path_open, .owns_fds = true, .reopenable = true},
    {"virtio or vsock", channel_auto_open, .owns_fds = true, .reopenable = true},
};

enum { CHANNEL_STDIO, CHANNEL_PATH, CHANNEL_AUTO };

static int send_json(int fd, json_t *obj)
{
        _cleanup_free_ char *frame = NULL;
        size_t len;
        int r;

        /* Answers may be larger than requests: two streams of output_max bytes, each possibly
         * twice (text and base64) and escaped; opd accepts what its output_max implies. */
        r = op_frame_encode(obj, OP_FRAME_MAX_CEILING, &frame, &len);
        if (r == -EMSGSIZE) {
                _cleanup_(json_decrefp) json_t *e = op_error_reply(
                    json_object_get(obj, "id"), OP_ERR_FRAME_TOO_LARGE,
                    "the answer is over the frame limit of %u bytes; ask for less output",
                    OP_FRAME_MAX_CEILING);
                if (!e)
                        return -ENOMEM;
                r = op_frame_encode(e, OP_FRAME_MAX_DEFAULT, &frame, &len);
        }
        if (r < 0)
                return r;
        return op_write_all(fd, frame, len);
}

/* One session's read side: bytes read from the host, not yet handled as frames. */
struct session {
        int in_fd, out_fd;
        char *buf;
        size_t n, cap;
};

/* Room for the whole frame announced at the start of buf (bounded by the frame limit). */
static int session_make_room(struct session *s)
{
        if (s->n >= OP_FRAME_HEADER_SIZE) {
                size_t need = OP_FRAME_HEADER_SIZE +
                              ((size_t)(uint8_t)s->buf[0] << 24 | (size_t)(uint8_t)s->buf[1] << 16 |
                               (size_t)(uint8_t)s->buf[2] << 8 | (size_t)(uint8_t)s->buf[3]);
                if (need > s->cap) {
                        char *nb = realloc(s->buf, need);
                        if (!nb) {
                                log_msg("out of memory for a %zu byte frame", need);
                                return -ENOMEM;
                        }
                        s->buf = nb;
                        s->cap = need;
                }
        } else if (s->n == 0 && s->cap > READ_BUF_KEEP) {
                char *nb = realloc(s->buf, READ_BUF_INITIAL);
                if (nb) {
                        s->buf = nb;
                        s->cap = READ_BUF_INITIAL;
                }
        }
        return 0;
}

static int channel_send(void *userdata, json_t *obj);

/* struct agent_channel's next(), during a run: the next whole frame, reading at most once and
 * only what is there. */
static int channel_next(void *userdata, json_t **ret)
{
        struct session *s = userdata;
        bool did_read = false;

        for (;;) {
                struct op_frame f;
                struct pollfd p = {.fd = s->in_fd, .events = POLLIN};
                ssize_t k;
                int r = op_frame_next(s->buf, s->n, OP_FRAME_MAX_DEFAULT, &f);

                if (r < 0)
                        return r;
                if (r > 0) {
                        json_t *obj = NULL;
                        int k2 = op_parse_object(s->buf + f.payload_offset, f.payload_len, &obj,
                                                 NULL, 0);
                        memmove(s->buf, s->buf + f.frame_len, s->n - f.frame_len);
                        s->n -= f.frame_len;
                        if (k2 < 0)
                                continue; /* not for the run: dropped */
                        *ret = obj;
                        return 1;
                }
                if (did_read || poll(&p, 1, 0) <= 0 || !(p.revents & (POLLIN | POLLHUP)))
                        return 0;
                if (session_make_room(s) < 0)
                        return -ENOMEM;
                k = read(s->in_fd, s->buf + s->n, s->cap - s->n);
                did_read = true;
                if (k < 0 && (errno == EINTR || errno == EAGAIN))
                        return 0;
                if (k <= 0)
                        return -EPIPE;
                s->n += (size_t)k;
        }
}

static bool is_stdin_frame(json_t *req)
{
        json_t *op = json_object_get(req, "op");

        return json_is_string(op) && strcmp(json_string_value(op), "stdin") == 0;
}

static int handle_frame(struct agent_main *m, int out_fd, const char *payload, size_t len)
{
        _cleanup_(json_decrefp) json_t *req = NULL, *answer = NULL;
        char errbuf[256];
        int r;

        r = op_parse_object(payload, len, &req, errbuf, sizeof(errbuf));
        if (r == 0 && is_stdin_frame(req))
                return 0; /* stdin for a run that has ended: nobody reads it, nobody waits */
        if (r < 0)
                answer = op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", errbuf);
        else
                answer = agent_handle(&m->agent, req);
        if (!answer)
                answer = op_error_reply(NULL, OP_ERR_INTERNAL, "out of memory");
        if (!answer)
                return -ENOMEM;
        return send_json(out_fd, answer);
}

static enum serve_end serve_frames(struct agent_main *m, struct session *s);

/* Serve one session: "ready", then requests until the host goes away or the stream breaks. */
static enum serve_end serve(struct agent_main *m, int in_fd, int out_fd)
{
        _cleanup_(json_decrefp) json_t *ready = agent_ready_event();
        struct session s = {.in_fd = in_fd, .out_fd = out_fd, .cap = READ_BUF_INITIAL};
        const struct agent_channel chan = {
            .in_fd = in_fd, .send = channel_send, .next = channel_next, .userdata = &s};
        enum serve_end end;
        int r;

        s.buf = malloc(s.cap);
        if (!s.buf || !ready) {
                free(s.buf);
                return SERVE_EOF;
        }
        r = send_json(out_fd, ready);
        if (r < 0) {
                free(s.buf);
                return SERVE_EOF;
        }
        agent_set_channel(&m->agent, &chan);
        end = serve_frames(m, &s);
        agent_set_channel(&m->agent, NULL);
        free(s.buf);
        return end;
}

static int channel_send(void *userdata, json_t *obj)
{
        struct session *s = userdata;

        return send_json(s->out_fd, obj);
}

static enum serve_end serve_frames(struct agent_main *m, struct session *s)
{
        int out_fd = s->out_fd, in_fd = s->in_fd, idle_ms, r;

        for (;;) {
                struct op_frame f;
                ssize_t k;

                r = op_frame_next(s->buf, s->n, OP_FRAME_MAX_DEFAULT, &f);
                if (r == -EMSGSIZE) {
                        _cleanup_(json_decrefp) json_t *e = op_error_reply(
                            NULL, OP_ERR_FRAME_TOO_LARGE,
                            "frame over the limit of %u bytes; closing", OP_FRAME_MAX_DEFAULT);
                        log_msg("oversize frame from the host, resetting the channel");
                        if (e)
                                (void)send_json(out_fd, e);
                        return SERVE_RESYNC;
                }
                if (r > 0) {
                        /* Take the frame out first: a streamed run reads on from s. */
                        _cleanup_free_ char *payload = malloc(f.payload_len + 1);

                        if (!payload) {
                                log_msg("out of memory for a %zu byte frame", f.payload_len);
                                return SERVE_RESYNC;
                        }
                        m->agent.job_read_us = op_now_us();
                        memcpy(payload, s->buf + f.payload_offset, f.payload_len);
                        memmove(s->buf, s->buf + f.frame_len, s->n - f.frame_len);
                        s->n -= f.frame_len;
                        r = handle_frame(m, out_fd, payload, f.payload_len);
                        m->agent.job_read_us = 0;
                        reap_orphans(m);
                        agent_answered(&m->agent); /* the next run's cgroup, a runner */
                        if (r == -ENOMEM)
                                log_msg("out of memory answering a request");
                        else if (r < 0)
                                return SERVE_EOF; /* cannot write: the host went away */
                        continue;
                }

                /* Need more bytes: make room for the whole announced frame (bounded above). */
                if (session_make_room(s) < 0)
                        return SERVE_RESYNC;
                /* A runner starting while the agent is idle is held to its ready deadline. */
                idle_ms = agent_idle_timeout_ms(&m->agent);
                if (idle_ms >= 0) {
                        struct pollfd p = {.fd = in_fd, .events = POLLIN};
                        int n = poll(&p, 1, idle_ms);

                        if (n == 0) {
                                agent_idle_expired(&m->agent);
                                continue;
                        }
                        if (n < 0 && errno == EINTR)
                                continue;
                }

                k = read(in_fd, s->buf + s->n, s->cap - s->n);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return SERVE_EOF;
                }
                if (k == 0)
                        return SERVE_EOF;
                s->n += (size_t)k;
        }
}

static void run(struct agent_main *m)
{
        uint64_t failing_since = 0;
        bool announced_loss = false;

        for (;;) {
                int in_fd = -1, out_fd = -1, r;
                enum serve_end end;

                r = m->kind->open(m, &in_fd, &out_fd);
                if (r == -EAGAIN) {
                        failing_since = 0; /* listening on vsock: the host comes when it comes */
                        continue;
                }
                if (r < 0) {
                        uint64_t now = op_now_us();

                        if (!failing_since) {
                                failing_since = now;
                                log_msg("opening the %s channel: %s; retrying", m->kind->name,
                                        strerror(-r));
                        } else if (now - failing_since > CHANNEL_FIND_US) {
                                log_msg("no %s channel after %d s", m->kind->name,
                                        CHANNEL_FIND_US / 1000000);
                                give_up(m);
                        }
                        nap(CHANNEL_RETRY_NS);
                        continue;
                }
                failing_since = 0;

                end = serve(m, in_fd, out_fd);
                if (m->kind->owns_fds) {
                        if (out_fd != in_fd)
                                safe_close(out_fd);
                        safe_close(in_fd);
                }
                if (!m->kind->reopenable) {
                        if (m->pid1) {
                                nap(CHANNEL_RETRY_NS);
                                continue;
                        }
                        /* a waiting runner or a repl ends with us, its directory too */
                        agent_done(&m->agent);
                        exit(end == SERVE_EOF ? EXIT_SUCCESS : EXIT_FAILURE);
                }
                if (!announced_loss) {
                        log_msg("host disconnected, waiting for it");
                        announced_loss = true;
                }
                reap_orphans(m);
                /* A vsock session ends when a restored VM's transport is reset; the host
                 * connects again at once and must not wait. */
                if (!m->vsock_session)
                        nap(CHANNEL_RETRY_NS);
        }
}

static int parse_id(const char *s, unsigned *ret)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || *s == '-' || v >= UINT_MAX)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: op-agent [--stdio | --channel PATH] [--workdir DIR] [--uid N --gid N]\n"
                   "  --stdio         frames on stdin/stdout (tests)\n"
                   "  --channel PATH  a character device or FIFO to read and write frames on\n"
                   "  (default)       the virtio-serial port named \"" VIRTIO_PORT_NAME "\", else\n"
                   "                  connections on AF_VSOCK port 1024 (Firecracker)\n"
                   "  --workdir DIR   parent of each request's working directory "
                   "(default " OP_AGENT_WORKDIR_DEFAULT ")\n"
                   "  --uid N --gid N run user code as this user and group\n");
}

/* Parse options. As PID 1, a bad option (the kernel passes unknown boot parameters on) is
 * logged and ignored: the agent must start anyway. */
static int parse_args(struct agent_main *m, int argc, char **argv)
{
        static const struct option opts[] = {
            {"stdio", no_argument, NULL, 's'},         {"channel", required_argument, NULL, 'c'},
            {"workdir", required_argument, NULL, 'w'}, {"uid", required_argument, NULL, 'u'},
            {"gid", required_argument, NULL, 'g'},     {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},       {},
        };
        bool gid_set = false;
        unsigned v;
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case 's':
                        m->kind = &channel_kinds[CHANNEL_STDIO];
                        break;
                case 'c':
                        m->kind = &channel_kinds[CHANNEL_PATH];
                        m->channel_path = optarg;
                        break;
                case 'w':
                        m->cfg.workdir = optarg;
                        break;
                case 'u':
                case 'g':
                        if (parse_id(optarg, &v) < 0) {
                                log_msg("--%s: not a number: %s", c == 'u' ? "uid" : "gid", optarg);
                                if (!m->pid1)
                                        return -EINVAL;
                                break;
                        }
                        if (c == 'u')
                                m->cfg.uid = (uid_t)v;
                        else {
                                m->cfg.gid = (gid_t)v;
                                gid_set = true;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        exit(EXIT_SUCCESS);
                case 'V':
                        printf("op-agent %s\n", OP_AGENT_VERSION);
                        exit(EXIT_SUCCESS);
                default:
                        log_msg("unknown option: %s", argv[optind - 1]);
                        if (!m->pid1) {
                                usage(stderr);
                                return -EINVAL;
                        }
                }
        }
        if (m->cfg.uid != (uid_t)-1 && !gid_set)
                m->cfg.gid = (gid_t)m->cfg.uid;
        if (m->cfg.uid == (uid_t)-1 && gid_set) {
                log_msg("--gid needs --uid");
                if (!m->pid1)
                        return -EINVAL;
                m->cfg.gid = (gid_t)-1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct agent_main m = {
            .cfg =
                {
                    .workdir = OP_AGENT_WORKDIR_DEFAULT,
                    .uid = (uid_t)-1,
                    .gid = (gid_t)-1,
                },
            .kind = &channel_kinds[CHANNEL_AUTO],
            .vsock_fd = -1,
            .pid1 = getpid() == 1,
        };
        struct sigaction ign = {.sa_handler = SIG_IGN}, dfl = {.sa_handler = SIG_DFL};
        int r;

        ensure_std_fds();
        if (parse_args(&m, argc, argv) < 0)
                return EXIT_FAILURE;

        /* A program closing its stdin early must not end the agent. */
        sigaction(SIGPIPE, &ign, NULL);
        /* Exit statuses are needed: children must stay waitable. */
        sigaction(SIGCHLD, &dfl, NULL);

        if (m.pid1) {
                r = op_init_setup();
                ensure_std_fds();
                if (r < 0)
                        log_msg("guest set-up failed: %s; going on", strerror(-r));
                /* Only the real guest gets its clock, hostname and RNG from requests, and puts
                 * each run in a cgroup of its own. */
                m.cfg.apply_identity = true;
                m.cfg.cgroup_root = AGENT_CGROUP_ROOT;
        } else if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
                log_msg("cannot become child subreaper: %m");

        agent_init(&m.agent, &m.cfg);
        agent_prepare(&m.agent);
        if (m.kind != &channel_kinds[CHANNEL_STDIO])
                log_msg("%s, channel %s%s%s", OP_AGENT_VERSION, m.kind->name,
                        m.channel_path ? " " : "", m.channel_path ? m.channel_path : "");
        run(&m);
        give_up(&m);
}
