/* vmm-output.c: a VMM's stdout and stderr, drained from a pipe into a bounded tail. */
#include "vmm-output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"

/* Reads per wake-up: a VMM that floods its output costs the loop this much at a time. */
#define READS_PER_WAKE 16

struct vmm_output {
        int fd; /* the read end; -1 once the VMM closed its end */
        struct event *ev;
        uint64_t total;
        size_t len;
        char tail[VMM_OUTPUT_TAIL];
};

static void keep(struct vmm_output *o, const char *p, size_t n)
{
        o->total += n;
        if (n >= sizeof(o->tail)) {
                memcpy(o->tail, p + (n - sizeof(o->tail)), sizeof(o->tail));
                o->len = sizeof(o->tail);
                return;
        }
        if (o->len + n > sizeof(o->tail)) {
                size_t drop = o->len + n - sizeof(o->tail);

                memmove(o->tail, o->tail + drop, o->len - drop);
                o->len -= drop;
        }
        memcpy(o->tail + o->len, p, n);
        o->len += n;
}

static void closed(struct vmm_output *o)
{
        if (o->ev) {
                event_free(o->ev);
                o->ev = NULL;
        }
        o->fd = safe_close(o->fd);
}

/* Read what the pipe holds, up to READS_PER_WAKE reads; at its end (or an error) it is closed. */
static void drain(struct vmm_output *o)
{
        char buf[4096];
        ssize_t k;

        for (int i = 0; i < READS_PER_WAKE && o->fd >= 0; i++) {
                k = read(o->fd, buf, sizeof(buf));
                if (k > 0) {
                        keep(o, buf, (size_t)k);
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                if (k == 0 || errno != EAGAIN)
                        closed(o);
                return;
        }
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
        drain(arg);
}

int vmm_output_new(struct event_base *base, int *ret_wr, struct vmm_output **ret)
{
        struct vmm_output *o = calloc(1, sizeof(*o));
        int p[2];

        if (!o)
                return -ENOMEM;
        if (pipe2(p, O_CLOEXEC) < 0) {
                free(o);
                return -errno;
        }
        o->fd = p[0];
        /* Non-blocking for opd only: the VMM's end blocks, as a terminal or a file would. */
        if (fcntl(o->fd, F_SETFL, O_NONBLOCK) < 0 ||
            !(o->ev = event_new(base, o->fd, EV_READ | EV_PERSIST, on_read, o)) ||
            event_add(o->ev, NULL) < 0) {
                safe_close(p[1]);
                vmm_output_free(o);
                return -ENOMEM;
        }
        *ret_wr = p[1];
        *ret = o;
        return 0;
}

const char *vmm_output_tail(struct vmm_output *o, size_t *ret_len, uint64_t *ret_total)
{
        /* What a VMM that ended left in the pipe (64 KiB unless it grew it): a few wake-ups'
         * worth. One that still writes is not waited for. */
        for (int i = 0; i < 8 && o->fd >= 0; i++) {
                uint64_t before = o->total;

                drain(o);
                if (o->total == before)
                        break;
        }
        *ret_len = o->len;
        if (ret_total)
                *ret_total = o->total;
        return o->tail;
}

struct vmm_output *vmm_output_free(struct vmm_output *o)
{
        if (!o)
                return NULL;
        closed(o);
        free(o);
        return NULL;
}
