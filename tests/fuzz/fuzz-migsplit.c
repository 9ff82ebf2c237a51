/* fuzz-migsplit.c: libFuzzer target for the migration stream splitter (a VMM process is not
 * trusted more than the guest it runs): the input fed whole and in pieces of 3 bytes gives the
 * same verdict, the same state bytes and the same pages, and no page lies outside the block. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-check.h"
#include "migsplit.h"

struct out {
        uint64_t size, state_len, sum;
        unsigned pages;
};

static int on_state(void *u, const void *d, size_t n)
{
        struct out *o = u;

        for (size_t i = 0; i < n; i++)
                o->sum = o->sum * 31 + ((const uint8_t *)d)[i];
        o->state_len += n;
        return 0;
}

static int on_page(void *u, uint64_t off, const void *d)
{
        struct out *o = u;

        CHECK(o->size && off % MIGSPLIT_PAGE == 0 && off + MIGSPLIT_PAGE <= o->size);
        o->pages++;
        o->sum = o->sum * 131 + off + (d ? ((const uint8_t *)d)[0] : 0);
        return 0;
}

static int on_size(void *u, uint64_t size)
{
        struct out *o = u;

        CHECK(!o->size && size);
        o->size = size;
        return 0;
}

static const struct migsplit_ops ops = {.state = on_state, .page = on_page, .size = on_size};

static int run(const uint8_t *data, size_t size, size_t step, struct out *o)
{
        uint8_t *acc = malloc(size + 1);
        size_t have = 0, pos = 0, used;
        struct migsplit s;
        int r = 0;

        CHECK(acc);
        migsplit_init(&s, "mem");
        while (pos < size) {
                size_t k = size - pos < step ? size - pos : step;

                memcpy(acc + have, data + pos, k);
                have += k;
                pos += k;
                r = migsplit_feed(&s, acc, have, &ops, o, &used);
                CHECK(used <= have);
                if (r < 0) {
                        CHECK(r == -EBADMSG && s.err[0]);
                        break;
                }
                CHECK(have - used <= MIGSPLIT_ITEM_MAX);
                memmove(acc, acc + used, have - used);
                have -= used;
        }
        free(acc);
        if (r >= 0)
                r = have ? -EBADMSG : migsplit_finish(&s);
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct out a = {0}, b = {0};
        int ra = run(data, size, size ? size : 1, &a), rb = run(data, size, 3, &b);

        CHECK(ra == rb);
        if (ra == 0)
                CHECK(a.sum == b.sum && a.state_len == b.state_len && a.pages == b.pages);
        return 0;
}
