/* test-migsplit.c: the migration stream splitter (lib/vmm/migsplit.c) on streams laid out as
 * QEMU 10 writes them: the named block's pages come out as pages, every other byte unchanged and
 * in order; fed whole and one byte at a time the result is the same; what it does not take is
 * refused with a reason. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "migsplit.h"

#define BLOCK_SIZE (4 * MIGSPLIT_PAGE)

struct buf {
        uint8_t *p;
        size_t n, cap;
};

/* Grown by doubling: a stream of 64 MiB is built in thousands of pieces. */
static void put(struct buf *b, const void *data, size_t n)
{
        if (b->n + n > b->cap) {
                b->cap = b->n + n > 2 * b->cap ? b->n + n : 2 * b->cap;
                b->p = realloc(b->p, b->cap);
        }
        assert_non_null(b->p);
        memcpy(b->p + b->n, data, n);
        b->n += n;
}

static void u8(struct buf *b, uint8_t v)
{
        put(b, &v, 1);
}

static void be32(struct buf *b, uint32_t v)
{
        uint8_t x[4] = {v >> 24, v >> 16, v >> 8, v};

        put(b, x, 4);
}

static void be64(struct buf *b, uint64_t v)
{
        be32(b, (uint32_t)(v >> 32));
        be32(b, (uint32_t)v);
}

static void str8(struct buf *b, const char *s)
{
        u8(b, (uint8_t)strlen(s));
        put(b, s, strlen(s));
}

/* What came out: the state bytes and the block as a flat image. */
struct out {
        struct buf state;
        uint8_t mem[BLOCK_SIZE];
        uint64_t size;
        unsigned pages, zeros;
};

static int on_state(void *u, const void *d, size_t n)
{
        put(&((struct out *)u)->state, d, n);
        return 0;
}

static int on_page(void *u, uint64_t off, const void *d)
{
        struct out *o = u;

        assert_true(off + MIGSPLIT_PAGE <= o->size);
        if (d) {
                memcpy(o->mem + off, d, MIGSPLIT_PAGE);
                o->pages++;
        } else {
                memset(o->mem + off, 0, MIGSPLIT_PAGE);
                o->zeros++;
        }
        return 0;
}

static int on_size(void *u, uint64_t size)
{
        ((struct out *)u)->size = size;
        return 0;
}

static const struct migsplit_ops ops = {.state = on_state, .page = on_page, .size = on_size};

/* Header and configuration (x-ignore-shared listed), the RAM section's start with two blocks. */
static void head(struct buf *b, struct buf *expect)
{
        struct buf h = {0};

        be32(&h, 0x5145564d);
        be32(&h, 3);
        u8(&h, 0x07);
        be32(&h, 11);
        put(&h, "pc-q35-10.0", 11);
        u8(&h, 0x05);
        str8(&h, "configuration/capabilities");
        be32(&h, 1);
        be32(&h, 1);
        str8(&h, "x-ignore-shared");
        u8(&h, 0x01); /* SECTION_START ram */
        be32(&h, 2);
        str8(&h, "ram");
        be32(&h, 0);
        be32(&h, 4);
        be64(&h, (BLOCK_SIZE + MIGSPLIT_PAGE) | 0x04);
        str8(&h, "mem");
        be64(&h, BLOCK_SIZE);
        be64(&h, 0);
        str8(&h, "pc.rom");
        be64(&h, MIGSPLIT_PAGE);
        be64(&h, 0);
        be64(&h, 0x10);
        u8(&h, 0x7e);
        be32(&h, 2);
        u8(&h, 0x08); /* a command, passed on */
        be32(&h, 0x00010000);
        put(b, h.p, h.n);
        put(expect, h.p, h.n);
        free(h.p);
}

static void page(struct buf *b, uint64_t addr, unsigned flags, const char *block, uint8_t fill)
{
        uint8_t p[MIGSPLIT_PAGE];

        be64(b, addr | flags | (block ? 0 : 0x20));
        if (block)
                str8(b, block);
        if (flags == 0x02) {
                u8(b, fill);
                return;
        }
        memset(p, fill, sizeof(p));
        put(b, p, sizeof(p));
}

/* A whole stream: pages of mem and of pc.rom, parts and the end, then device state. */
static void stream(struct buf *b, struct buf *expect)
{
        struct buf rom = {0};
        static const uint8_t dev[] = {0x04, 0, 0, 0, 3,    3,    'c',  'p', 'u', 0, 0, 0,   0,
                                      0,    0, 0, 1, 0xaa, 0xbb, 0x7e, 0,   0,   0, 3, 0x10};

        head(b, expect);
        u8(b, 0x02);
        be32(b, 2);
        u8(expect, 0x02);
        be32(expect, 2);
        page(b, 0, 0x08, "mem", 0x11);
        page(b, MIGSPLIT_PAGE, 0x02, NULL, 0);
        page(b, 2 * MIGSPLIT_PAGE, 0x08, NULL, 0x22);
        page(&rom, 0, 0x08, "pc.rom", 0x33); /* another block: passed on whole */
        put(b, rom.p, rom.n);
        put(expect, rom.p, rom.n);
        page(b, 3 * MIGSPLIT_PAGE, 0x08, "mem", 0x44);
        be64(b, 0x10);
        be64(expect, 0x10);
        u8(b, 0x03); /* SECTION_END ram */
        be32(b, 2);
        u8(expect, 0x03);
        be32(expect, 2);
        be64(b, 0x10);
        be64(expect, 0x10);
        u8(b, 0x7e);
        be32(b, 2);
        u8(expect, 0x7e);
        be32(expect, 2);
        put(b, dev, sizeof(dev));
        put(expect, dev, sizeof(dev));
        free(rom.p);
}

/* Feed in pieces of at most step bytes, as a socket delivers them. */
static int split(const struct buf *b, size_t step, struct out *o, struct migsplit *s)
{
        size_t have = 0, pos = 0;
        uint8_t *acc = malloc(b->n + 1);
        int r = 0;

        assert_non_null(acc);
        migsplit_init(s, "mem");
        while (pos < b->n) {
                size_t k = b->n - pos < step ? b->n - pos : step, used;

                memcpy(acc + have, b->p + pos, k);
                have += k;
                pos += k;
                r = migsplit_feed(s, acc, have, &ops, o, &used);
                if (r < 0)
                        break;
                memmove(acc, acc + used, have - used);
                have -= used;
        }
        free(acc);
        if (r >= 0 && have)
                r = -EBADMSG;
        return r < 0 ? r : migsplit_finish(s);
}

static void test_split(void **state)
{
        size_t steps[] = {1, 7, 4096, 1 << 20};

        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                struct buf b = {0}, expect = {0};
                struct out o = {0};
                struct migsplit s;

                stream(&b, &expect);
                assert_int_equal(split(&b, steps[i], &o, &s), 0);
                assert_int_equal(o.size, BLOCK_SIZE);
                assert_int_equal(o.pages, 3);
                assert_int_equal(o.zeros, 1);
                assert_int_equal(o.mem[0], 0x11);
                assert_int_equal(o.mem[MIGSPLIT_PAGE], 0);
                assert_int_equal(o.mem[2 * MIGSPLIT_PAGE + 5], 0x22);
                assert_int_equal(o.mem[3 * MIGSPLIT_PAGE + 4095], 0x44);
                assert_int_equal(o.state.n, expect.n);
                assert_memory_equal(o.state.p, expect.p, expect.n);
                free(b.p);
                free(expect.p);
                free(o.state.p);
        }
}

/* Each cut short: never accepted as whole. */
static void test_truncated(void **state)
{
        struct buf b = {0}, expect = {0};

        stream(&b, &expect);
        for (size_t n = 0; n < b.n - 25; n += 97) {
                struct buf cut = {.p = b.p, .n = n};
                struct out o = {0};
                struct migsplit s;

                assert_int_equal(split(&cut, 1 << 20, &o, &s), -EBADMSG);
                free(o.state.p);
        }
        free(b.p);
        free(expect.p);
}

static void expect_refused(struct buf *b, const char *why)
{
        struct out o = {0};
        struct migsplit s;

        assert_int_equal(split(b, 1 << 20, &o, &s), -EBADMSG);
        assert_non_null(strstr(s.err, why));
        free(o.state.p);
        free(b->p);
        *b = (struct buf){0};
}

static void test_refused(void **state)
{
        struct buf b = {0}, expect = {0};

        /* a page beyond the block */
        head(&b, &expect);
        u8(&b, 0x02);
        be32(&b, 2);
        page(&b, BLOCK_SIZE, 0x08, "mem", 1);
        expect_refused(&b, "beyond");
        free(expect.p);
        expect = (struct buf){0};

        /* a zero record that is not zero */
        head(&b, &expect);
        u8(&b, 0x02);
        be32(&b, 2);
        page(&b, 0, 0x02, "mem", 7);
        expect_refused(&b, "filled page");
        free(expect.p);
        expect = (struct buf){0};

        /* flags it does not take (XBZRLE) */
        head(&b, &expect);
        u8(&b, 0x02);
        be32(&b, 2);
        be64(&b, 0x40);
        expect_refused(&b, "flags");
        free(expect.p);
        expect = (struct buf){0};

        /* a part of another section */
        head(&b, &expect);
        u8(&b, 0x02);
        be32(&b, 9);
        expect_refused(&b, "not RAM");
        free(expect.p);

        /* a machine name longer than any: refused at once, not waited for whole */
        b = (struct buf){0};
        be32(&b, 0x5145564d);
        be32(&b, 3);
        u8(&b, 0x07);
        be32(&b, 1u << 20);
        put(&b, "pc", 2);
        expect_refused(&b, "machine name of 1048576 bytes");

        /* not a stream */
        b = (struct buf){0};
        put(&b, "QEVM\0\0\0\x02", 8);
        expect_refused(&b, "version 3");
}

/* Device state past MIGSPLIT_STATE_MAX is refused, what came out of it bounded: bytes after the
 * end marker, or pages of another RAM block than the one cut out. */
static void test_state_bounded(void **state)
{
        struct buf b = {0}, expect = {0}, rom = {0};
        uint8_t *junk = calloc(1, MIGSPLIT_STATE_MAX);
        struct out o = {0};
        struct migsplit s;

        assert_non_null(junk);
        stream(&b, &expect);
        put(&b, junk, MIGSPLIT_STATE_MAX);
        assert_int_equal(split(&b, 1 << 20, &o, &s), -EBADMSG);
        assert_non_null(strstr(s.err, "more than 64 MiB of device state"));
        assert_true(o.state.n <= MIGSPLIT_STATE_MAX);
        free(o.state.p);
        free(b.p);
        free(expect.p);
        free(junk);

        b = (struct buf){0};
        expect = (struct buf){0};
        o = (struct out){0};
        head(&b, &expect);
        u8(&b, 0x02);
        be32(&b, 2);
        page(&rom, 0, 0x08, "pc.rom", 0x33);
        for (uint64_t addr = MIGSPLIT_PAGE; addr <= MIGSPLIT_STATE_MAX; addr += MIGSPLIT_PAGE)
                page(&rom, addr, 0x08, NULL, 0x33); /* the same block (CONTINUE) */
        put(&b, rom.p, rom.n);
        assert_int_equal(split(&b, 1 << 20, &o, &s), -EBADMSG);
        assert_non_null(strstr(s.err, "device state"));
        assert_true(o.state.n <= MIGSPLIT_STATE_MAX);
        free(o.state.p);
        free(b.p);
        free(rom.p);
        free(expect.p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_split),
            cmocka_unit_test(test_truncated),
            cmocka_unit_test(test_refused),
            cmocka_unit_test(test_state_bounded),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
