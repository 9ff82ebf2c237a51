/* fuzz-frame.c: libFuzzer target for opd's read path: frame boundaries found in a byte stream
 * whole, split in two, and one byte at a time must agree; each frame is then handled as opd would.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h>

#include "fuzz-check.h"

#define MAX_FRAMES 4096

struct scan {
        size_t off[MAX_FRAMES]; /* where each frame starts in the stream */
        size_t len[MAX_FRAMES]; /* its payload length */
        size_t n;
        int end;         /* 0: stream ended (maybe inside a frame), -EMSGSIZE: connection closed */
        size_t consumed; /* bytes eaten by whole frames */
};

static void seen(struct scan *s, size_t off, const struct op_frame *f)
{
        CHECK(f->payload_offset == OP_FRAME_HEADER_SIZE);
        CHECK(f->frame_len == OP_FRAME_HEADER_SIZE + f->payload_len);
        CHECK(s->n < MAX_FRAMES);
        s->off[s->n] = off;
        s->len[s->n] = f->payload_len;
        s->n++;
}

/* The stream arrives in reads that end at cuts[0] < cuts[1] < ... = size. The bytes not received
 * yet are poisoned, so that AddressSanitizer catches any look past what a read delivered. */
static void scan_reads(const uint8_t *data, size_t size, const size_t *cuts, size_t n_cuts,
                       size_t max, struct scan *s)
{
        uint8_t *buf = malloc(size ? size : 1);
        size_t start = 0;

        CHECK(buf);
        memcpy(buf, data, size);
        ASAN_POISON_MEMORY_REGION(buf, size);
        memset(s, 0, sizeof(*s));
        for (size_t c = 0; c < n_cuts; c++) {
                struct op_frame f;
                int r;

                ASAN_UNPOISON_MEMORY_REGION(buf, cuts[c]);
                while ((r = op_frame_next(buf + start, cuts[c] - start, max, &f)) == 1) {
                        CHECK(f.frame_len <= cuts[c] - start);
                        seen(s, start, &f);
                        start += f.frame_len;
                }
                if (r < 0) {
                        CHECK(r == -EMSGSIZE);
                        s->end = r;
                        break;
                }
                CHECK(r == 0);
        }
        s->consumed = start;
        ASAN_UNPOISON_MEMORY_REGION(buf, size);
        free(buf);
}

static void same(const struct scan *a, const struct scan *b)
{
        CHECK(a->n == b->n);
        CHECK(a->end == b->end);
        CHECK(a->consumed == b->consumed);
        CHECK(memcmp(a->off, b->off, a->n * sizeof(a->off[0])) == 0);
        CHECK(memcmp(a->len, b->len, a->n * sizeof(a->len[0])) == 0);
}

/* Input: [split selector][limits selector] then the byte stream a client would send. */
int LLVMFuzzerTestOneInput(const uint8_t *in, size_t in_size)
{
        static struct scan whole, split, bytewise;
        static size_t *cuts;
        static const size_t maxes[] = {OP_FRAME_MAX_DEFAULT, 0, 1, 16, 255, 4096};
        const struct op_limits tight = FUZZ_LIMITS_TIGHT, dflt = OP_LIMITS_DEFAULT;
        const uint8_t *data;
        size_t size, max, cut[2];
        uint8_t sel;

        if (in_size < 2)
                return 0;
        sel = in[1];
        data = in + 2;
        size = in_size - 2;
        max = maxes[(sel & 0x7f) % (sizeof(maxes) / sizeof(maxes[0]))];

        /* 1. all at once: this is also the reference for the frames found */
        cut[0] = size;
        scan_reads(data, size, cut, 1, max, &whole);

        /* 2. two reads, cut where the first input byte says */
        cut[0] = size * in[0] / 255;
        cut[1] = size;
        scan_reads(data, size, cut, 2, max, &split);
        same(&whole, &split);

        /* 3. one byte per read */
        cuts = realloc(cuts, (size ? size : 1) * sizeof(*cuts));
        CHECK(cuts);
        for (size_t i = 0; i < size; i++)
                cuts[i] = i + 1;
        scan_reads(data, size, cuts, size, max, &bytewise);
        same(&whole, &bytewise);

        /* each frame, as opd handles it */
        for (size_t i = 0; i < whole.n; i++) {
                const char *payload = (const char *)data + whole.off[i] + OP_FRAME_HEADER_SIZE;
                size_t len = whole.len[i];
                json_t *obj = NULL;
                char err[256] = "";
                int r;

                r = op_parse_object(payload, len, &obj, err, sizeof(err));
                if (r < 0) {
                        CHECK(r == -EBADMSG && err[0] && !obj);
                        fuzz_check_reply(op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", err), NULL,
                                         0, true);
                } else {
                        CHECK(json_is_object(obj));
                        fuzz_handle_request(obj, sel & 0x80 ? &tight : &dflt, true);
                        json_decref(obj);
                }

                /* any bytes a program may print must survive the answer's trip exactly */
                json_t *out = json_object();
                CHECK(out);
                CHECK(op_json_set_bytes(out, "stdout", payload, len) == 0);
                fuzz_check_reply(out, payload, len, true);
        }
        return 0;
}
