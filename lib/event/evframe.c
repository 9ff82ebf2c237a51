/* evframe.c: the frame codec applied to libevent evbuffers, copying each frame's payload
 * once into contiguous memory only when it is complete. */
#include "evframe.h"

#include <errno.h>
#include <stdlib.h>

#include "frame.h"
#include "msg.h"

int evframe_next(struct evbuffer *in, size_t max, size_t values_max, json_t **ret_obj, char *errbuf,
                 size_t errlen)
{
        uint8_t hdr[OP_FRAME_HEADER_SIZE];
        size_t have = evbuffer_get_length(in), need;
        struct op_frame f;
        unsigned char *p;
        int r;

        if (have < OP_FRAME_HEADER_SIZE)
                return 0;
        evbuffer_copyout(in, hdr, sizeof(hdr));
        need = OP_FRAME_HEADER_SIZE +
               ((size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3]);
        /* Let the codec judge the header first: a frame over max is refused before it arrives. */
        r = op_frame_next(hdr, sizeof(hdr), max, &f);
        if (r < 0)
                return r;
        if (have < need)
                return 0;
        p = evbuffer_pullup(in, (ev_ssize_t)need);
        if (!p)
                return -ENOMEM;
        r = op_frame_next(p, need, max, &f);
        if (r <= 0)
                return r < 0 ? r : -EIO;
        r = op_parse_object_max((const char *)p + f.payload_offset, f.payload_len, values_max,
                                ret_obj, errbuf, errlen);
        evbuffer_drain(in, f.frame_len);
        return r < 0 ? -EBADMSG : 1;
}

int evframe_partial(struct evbuffer *in)
{
        return evbuffer_get_length(in) > 0;
}

int evframe_complete(struct evbuffer *in)
{
        uint8_t hdr[OP_FRAME_HEADER_SIZE];
        size_t have = evbuffer_get_length(in);

        if (have < OP_FRAME_HEADER_SIZE)
                return 0;
        evbuffer_copyout(in, hdr, sizeof(hdr));
        return have - OP_FRAME_HEADER_SIZE >=
               ((size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3]);
}

static void free_frame(const void *data, size_t len, void *extra)
{
        free(extra);
}

int evframe_add(struct evbuffer *out, json_t *obj, size_t max)
{
        char *buf;
        size_t len;
        int r;

        r = op_frame_encode(obj, max, &buf, &len);
        if (r < 0)
                return r;
        /* A small frame is copied into the buffer's own chunks, which it fills end to end: a
         * reference costs a chunk of its own (and its bookkeeping) per frame, several times a
         * short answer's length, none of which the buffer's length counts. */
        if (len <= EVFRAME_COPY_MAX) {
                r = evbuffer_add(out, buf, len);
                free(buf);
                return r < 0 ? -ENOMEM : 0;
        }
        if (evbuffer_add_reference(out, buf, len, free_frame, buf) < 0) {
                free(buf);
                return -ENOMEM;
        }
        return 0;
}
