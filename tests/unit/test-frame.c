/* test-frame.c: unit tests of the frame codec in proto/frame.c: frame boundaries fed one byte at
 * a time, several frames per buffer, the size cap, header encoding, and UTF-8 validation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cleanup.h"
#include "frame.h"
#include "msg.h"

/* A frame sentinel: op_frame_next() must leave *ret untouched unless it returns 1. */
#define FRAME_POISON                                                                               \
        ((struct op_frame){.payload_offset = 777, .payload_len = 888, .frame_len = 999})

static void assert_poisoned(const struct op_frame *f)
{
        assert_int_equal(f->payload_offset, 777);
        assert_int_equal(f->payload_len, 888);
        assert_int_equal(f->frame_len, 999);
}

/* Append header + payload to buf at *n. */
static void put_frame(uint8_t *buf, size_t *n, const char *payload, size_t len)
{
        assert_int_equal(op_frame_header(len, OP_FRAME_MAX_DEFAULT, buf + *n), 0);
        memcpy(buf + *n + OP_FRAME_HEADER_SIZE, payload, len);
        *n += OP_FRAME_HEADER_SIZE + len;
}

static void test_short_header(void **state)
{
        const uint8_t hdr[4] = {0, 0, 0, 0};
        struct op_frame f;

        for (size_t n = 0; n < OP_FRAME_HEADER_SIZE; n++) {
                f = FRAME_POISON;
                assert_int_equal(op_frame_next(hdr, n, OP_FRAME_MAX_DEFAULT, &f), 0);
                assert_poisoned(&f);
        }
}

/* One byte at a time into an accumulating buffer: 0 until the last byte, then 1. */
static void test_one_byte_at_a_time(void **state)
{
        static const char json[] = "{\"id\":1,\"op\":\"ping\"}";
        uint8_t wire[64], acc[64];
        size_t wire_len = 0;
        struct op_frame f;
        int r = 0;

        put_frame(wire, &wire_len, json, strlen(json));
        for (size_t n = 1; n <= wire_len; n++) {
                acc[n - 1] = wire[n - 1];
                f = FRAME_POISON;
                r = op_frame_next(acc, n, OP_FRAME_MAX_DEFAULT, &f);
                if (n < wire_len) {
                        assert_int_equal(r, 0);
                        assert_poisoned(&f);
                }
        }
        assert_int_equal(r, 1);
        assert_int_equal(f.payload_offset, OP_FRAME_HEADER_SIZE);
        assert_int_equal(f.payload_len, strlen(json));
        assert_int_equal(f.frame_len, wire_len);
        assert_memory_equal(acc + f.payload_offset, json, strlen(json));
}

/* A stream of frames fed one byte at a time through a consuming buffer, as a server reads them:
 * every frame comes out once, in order, with its exact payload. */
static void test_stream_one_byte_at_a_time(void **state)
{
        static const char *const payloads[] = {
            "{\"op\":\"ping\"}", "", "{\"id\":\"a\",\"op\":\"status\"}", "{}", "x",
        };
        uint8_t wire[256], acc[256];
        size_t wire_len = 0, acc_len = 0, got = 0;

        for (size_t i = 0; i < ELEMENTSOF(payloads); i++)
                put_frame(wire, &wire_len, payloads[i], strlen(payloads[i]));

        for (size_t i = 0; i < wire_len; i++) {
                struct op_frame f;
                int r;

                acc[acc_len++] = wire[i];
                while ((r = op_frame_next(acc, acc_len, OP_FRAME_MAX_DEFAULT, &f)) == 1) {
                        assert_true(got < ELEMENTSOF(payloads));
                        assert_int_equal(f.payload_len, strlen(payloads[got]));
                        assert_memory_equal(acc + f.payload_offset, payloads[got], f.payload_len);
                        memmove(acc, acc + f.frame_len, acc_len - f.frame_len);
                        acc_len -= f.frame_len;
                        got++;
                }
                assert_int_equal(r, 0);
        }
        assert_int_equal(got, ELEMENTSOF(payloads));
        assert_int_equal(acc_len, 0);
}

static void test_several_frames_in_one_buffer(void **state)
{
        static const char *const payloads[] = {"{\"a\":1}", "{\"b\":[2,3]}", "", "{\"c\":\"d\"}"};
        uint8_t wire[128];
        size_t wire_len = 0, off = 0, got = 0;
        struct op_frame f;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(payloads); i++)
                put_frame(wire, &wire_len, payloads[i], strlen(payloads[i]));
        /* and half a header of a fifth frame */
        wire[wire_len++] = 0;
        wire[wire_len++] = 0;

        while ((r = op_frame_next(wire + off, wire_len - off, OP_FRAME_MAX_DEFAULT, &f)) == 1) {
                assert_int_equal(f.payload_len, strlen(payloads[got]));
                assert_memory_equal(wire + off + f.payload_offset, payloads[got], f.payload_len);
                off += f.frame_len;
                got++;
        }
        assert_int_equal(r, 0);
        assert_int_equal(got, ELEMENTSOF(payloads));
        assert_int_equal(wire_len - off, 2);
}

/* A zero-length frame is a frame; its empty payload is then refused as a message. */
static void test_zero_length_frame(void **state)
{
        const uint8_t wire[] = {0, 0, 0, 0, 0xaa};
        _cleanup_(json_decrefp) json_t *obj = NULL;
        struct op_frame f = FRAME_POISON;
        char err[128] = "";

        assert_int_equal(op_frame_next(wire, sizeof(wire), OP_FRAME_MAX_DEFAULT, &f), 1);
        assert_int_equal(f.payload_offset, 4);
        assert_int_equal(f.payload_len, 0);
        assert_int_equal(f.frame_len, 4);
        /* even with a cap of 0 */
        assert_int_equal(op_frame_next(wire, 4, 0, &f), 1);

        assert_int_equal(op_parse_object((const char *)wire + f.payload_offset, f.payload_len, &obj,
                                         err, sizeof(err)),
                         -EBADMSG);
        assert_null(obj);
        assert_true(strlen(err) > 0);
}

/* The cap is checked on the header alone: no need to wait for (or buffer) the oversized body. */
static void test_over_cap(void **state)
{
        const uint8_t all_ones[4] = {0xff, 0xff, 0xff, 0xff};
        const uint8_t cap_plus_one[4] = {0x01, 0x00, 0x00, 0x01}; /* 16 MiB + 1 */
        const uint8_t small[4] = {0, 0, 0, 17};
        struct op_frame f = FRAME_POISON;

        assert_int_equal(op_frame_next(all_ones, 4, OP_FRAME_MAX_DEFAULT, &f), -EMSGSIZE);
        assert_int_equal(op_frame_next(all_ones, 4, OP_FRAME_MAX_CEILING, &f), -EMSGSIZE);
        assert_int_equal(op_frame_next(all_ones, 4, 0xfffffffe, &f), -EMSGSIZE);
        assert_int_equal(op_frame_next(cap_plus_one, 4, OP_FRAME_MAX_DEFAULT, &f), -EMSGSIZE);
        assert_int_equal(op_frame_next(small, 4, 16, &f), -EMSGSIZE);
        assert_int_equal(op_frame_next(small, 4, 0, &f), -EMSGSIZE);
        assert_poisoned(&f);

        /* a cap at or above 2^32-1 lets any header through: it then waits for the body */
        assert_int_equal(op_frame_next(all_ones, 4, 0xffffffffu, &f), 0);
        assert_int_equal(op_frame_next(all_ones, 4, SIZE_MAX, &f), 0);
        assert_poisoned(&f);
}

static void test_exactly_at_cap(void **state)
{
        uint8_t wire[4 + 16] = {0, 0, 0, 16};
        const uint8_t at_default[4] = {0x01, 0x00, 0x00, 0x00}; /* exactly 16 MiB */
        _cleanup_free_ uint8_t *big = NULL;
        struct op_frame f = FRAME_POISON;

        memset(wire + 4, ' ', 16);
        assert_int_equal(op_frame_next(wire, 4, 16, &f), 0); /* allowed, body still missing */
        assert_int_equal(op_frame_next(wire, 19, 16, &f), 0);
        assert_poisoned(&f);
        assert_int_equal(op_frame_next(wire, 20, 16, &f), 1);
        assert_int_equal(f.payload_len, 16);
        assert_int_equal(f.frame_len, 20);

        f = FRAME_POISON;
        assert_int_equal(op_frame_next(at_default, 4, OP_FRAME_MAX_DEFAULT, &f), 0);
        big = calloc(1, OP_FRAME_HEADER_SIZE + OP_FRAME_MAX_DEFAULT);
        assert_non_null(big);
        memcpy(big, at_default, 4);
        assert_int_equal(op_frame_next(big, OP_FRAME_HEADER_SIZE + OP_FRAME_MAX_DEFAULT - 1,
                                       OP_FRAME_MAX_DEFAULT, &f),
                         0);
        assert_poisoned(&f);
        assert_int_equal(op_frame_next(big, OP_FRAME_HEADER_SIZE + OP_FRAME_MAX_DEFAULT,
                                       OP_FRAME_MAX_DEFAULT, &f),
                         1);
        assert_int_equal(f.payload_len, OP_FRAME_MAX_DEFAULT);
        assert_int_equal(f.frame_len, OP_FRAME_HEADER_SIZE + OP_FRAME_MAX_DEFAULT);
}

static void test_header_round_trip(void **state)
{
        static const size_t lens[] = {0,       1,          127,      128,
                                      255,     256,        65535,    65536,
                                      1 << 20, 0x01020304, 0xffffff, OP_FRAME_MAX_DEFAULT};
        static const uint8_t be[4] = {0x01, 0x02, 0x03, 0x04};
        uint8_t hdr[4];

        assert_int_equal(op_frame_header(0x01020304, SIZE_MAX, hdr), 0);
        assert_memory_equal(hdr, be, 4); /* big-endian */

        for (size_t i = 0; i < ELEMENTSOF(lens); i++) {
                struct op_frame f = FRAME_POISON;
                int r;

                assert_int_equal(op_frame_header(lens[i], OP_FRAME_MAX_CEILING, hdr), 0);
                r = op_frame_next(hdr, 4, OP_FRAME_MAX_CEILING, &f);
                if (lens[i] == 0) {
                        assert_int_equal(r, 1);
                        assert_int_equal(f.payload_len, 0);
                } else {
                        assert_int_equal(r, 0); /* the header says how much more to wait for */
                        assert_int_equal((size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 |
                                             (size_t)hdr[2] << 8 | hdr[3],
                                         lens[i]);
                }
        }

        /* small payloads: header + body parse back to the same length */
        for (size_t len = 0; len < 300; len++) {
                uint8_t wire[4 + 300];
                struct op_frame f;

                assert_int_equal(op_frame_header(len, 300, wire), 0);
                memset(wire + 4, 'x', len);
                assert_int_equal(op_frame_next(wire, 4 + len, 300, &f), 1);
                assert_int_equal(f.payload_len, len);
                assert_int_equal(f.frame_len, 4 + len);
        }
}

static void test_header_over_cap(void **state)
{
        uint8_t hdr[4] = {0xaa, 0xbb, 0xcc, 0xdd};
        static const uint8_t untouched[4] = {0xaa, 0xbb, 0xcc, 0xdd};

        assert_int_equal(op_frame_header(17, 16, hdr), -EMSGSIZE);
        assert_int_equal(op_frame_header(OP_FRAME_MAX_DEFAULT + 1, OP_FRAME_MAX_DEFAULT, hdr),
                         -EMSGSIZE);
        assert_int_equal(op_frame_header(1, 0, hdr), -EMSGSIZE);
#if SIZE_MAX > UINT32_MAX
        /* a length the 4-byte header cannot carry, whatever the cap */
        assert_int_equal(op_frame_header((size_t)UINT32_MAX + 1, SIZE_MAX, hdr), -EMSGSIZE);
#endif
        assert_memory_equal(hdr, untouched, 4);
        assert_int_equal(op_frame_header(UINT32_MAX, SIZE_MAX, hdr), 0);
        assert_int_equal(hdr[0] & hdr[1] & hdr[2] & hdr[3], 0xff);
}

#define U8(s) s, sizeof(s) - 1

struct utf8_case {
        const char *s;
        size_t len;
        int valid;
};

static void test_utf8_cases(void **state)
{
        static const struct utf8_case cases[] = {
            /* valid */
            {U8(""), 1},
            {U8("plain ASCII {\"json\": 1}"), 1},
            {"a\0b", 3, 1}, /* NUL is a valid code point */
            {U8("\x7f"), 1},
            {U8("\xc2\x80"), 1},               /* U+0080, first 2-byte */
            {U8("\xc3\xa9t\xc3\xa9"), 1},      /* "été" */
            {U8("\xdf\xbf"), 1},               /* U+07FF */
            {U8("\xe0\xa0\x80"), 1},           /* U+0800, first 3-byte */
            {U8("\xe2\x82\xac"), 1},           /* U+20AC euro */
            {U8("\xed\x9f\xbf"), 1},           /* U+D7FF, last before surrogates */
            {U8("\xee\x80\x80"), 1},           /* U+E000, first after surrogates */
            {U8("\xef\xbf\xbd"), 1},           /* U+FFFD */
            {U8("\xef\xbf\xbf"), 1},           /* U+FFFF (a noncharacter, still valid) */
            {U8("\xf0\x90\x80\x80"), 1},       /* U+10000, first 4-byte */
            {U8("\xf0\x9d\x84\x9e"), 1},       /* U+1D11E musical G clef */
            {U8("\xf0\x9f\x98\x80 smile"), 1}, /* U+1F600 */
            {U8("\xf4\x8f\xbf\xbf"), 1},       /* U+10FFFF, the last code point */
            {U8("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"), 1}, /* "日本語" */
            /* overlong forms */
            {U8("\xc0\x80"), 0},                 /* NUL as 2 bytes (modified UTF-8) */
            {U8("\xc0\xaf"), 0},                 /* '/' as 2 bytes */
            {U8("\xc1\xbf"), 0},                 /* U+007F as 2 bytes */
            {U8("\xe0\x80\x80"), 0},             /* NUL as 3 bytes */
            {U8("\xe0\x80\xaf"), 0},             /* '/' as 3 bytes */
            {U8("\xe0\x9f\xbf"), 0},             /* U+07FF as 3 bytes */
            {U8("\xf0\x80\x80\x80"), 0},         /* NUL as 4 bytes */
            {U8("\xf0\x80\x80\xaf"), 0},         /* '/' as 4 bytes */
            {U8("\xf0\x8f\xbf\xbf"), 0},         /* U+FFFF as 4 bytes */
            {U8("\xf8\x88\x80\x80\x80"), 0},     /* 5-byte form */
            {U8("\xfc\x84\x80\x80\x80\x80"), 0}, /* 6-byte form */
            /* UTF-16 surrogates encoded as UTF-8 (CESU-8) */
            {U8("\xed\xa0\x80"), 0},             /* U+D800 */
            {U8("\xed\xad\xbf"), 0},             /* U+DB7F */
            {U8("\xed\xb0\x80"), 0},             /* U+DC00 */
            {U8("\xed\xbf\xbf"), 0},             /* U+DFFF */
            {U8("\xed\xa0\xbd\xed\xb8\x80"), 0}, /* surrogate pair of U+1F600 */
            /* beyond U+10FFFF */
            {U8("\xf4\x90\x80\x80"), 0}, /* U+110000 */
            {U8("\xf4\xbf\xbf\xbf"), 0},
            {U8("\xf5\x80\x80\x80"), 0},
            {U8("\xf7\xbf\xbf\xbf"), 0}, /* U+1FFFFF */
            /* bytes that never occur */
            {U8("\xfe"), 0},
            {U8("\xff"), 0},
            {U8("a\xff\x62"), 0},
            {U8("\xfe\xff"), 0}, /* UTF-16 BOM bytes */
            /* lone or extra continuation bytes */
            {U8("\x80"), 0},
            {U8("\xbf"), 0},
            {U8("a\x80"), 0},
            {U8("\xc3\xa9\xa9"), 0},
            {U8("\xe2\x82\xac\x80"), 0},
            /* truncated sequences: at the end and in the middle */
            {U8("\xc3"), 0},
            {U8("\xe2\x82"), 0},
            {U8("\xe2"), 0},
            {U8("\xf0\x9d\x84"), 0},
            {U8("\xf0\x9d"), 0},
            {U8("\xf0"), 0},
            {U8("abc\xc3"), 0},
            {U8("\xc3\x61"), 0},
            {U8("\xe2\x82\x61"), 0},
            {U8("\xf0\x9d\x84\x61"), 0},
            {U8("\xe2\x82\xc3\xa9"), 0}, /* a new lead byte where a continuation belongs */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int got = op_utf8_valid(cases[i].s, cases[i].len);
                if (got != cases[i].valid)
                        fail_msg("case %zu (%zu bytes): op_utf8_valid() = %d, want %d", i,
                                 cases[i].len, got, cases[i].valid);
                /* the same bytes after a valid prefix and before a valid suffix */
                char buf[64];
                memcpy(buf, "\xc3\xa9x", 3);
                memcpy(buf + 3, cases[i].s, cases[i].len);
                memcpy(buf + 3 + cases[i].len, "y\xe2\x82\xac", 4);
                got = op_utf8_valid(buf, cases[i].len + 7);
                if (got != cases[i].valid)
                        fail_msg("case %zu embedded: op_utf8_valid() = %d, want %d", i, got,
                                 cases[i].valid);
        }
}

/* Oracle: Table 3-7 "Well-Formed UTF-8 Byte Sequences" of the Unicode standard, written as
 * byte ranges, independent of frame.c's code-point arithmetic. Returns the length of the
 * well-formed sequence at p, or 0. */
static size_t table37(const uint8_t *p, size_t n)
{
        static const struct {
                uint8_t lo[4], hi[4];
                size_t len;
        } rows[] = {
            {{0x00}, {0x7f}, 1},
            {{0xc2, 0x80}, {0xdf, 0xbf}, 2},
            {{0xe0, 0xa0, 0x80}, {0xe0, 0xbf, 0xbf}, 3},
            {{0xe1, 0x80, 0x80}, {0xec, 0xbf, 0xbf}, 3},
            {{0xed, 0x80, 0x80}, {0xed, 0x9f, 0xbf}, 3},
            {{0xee, 0x80, 0x80}, {0xef, 0xbf, 0xbf}, 3},
            {{0xf0, 0x90, 0x80, 0x80}, {0xf0, 0xbf, 0xbf, 0xbf}, 4},
            {{0xf1, 0x80, 0x80, 0x80}, {0xf3, 0xbf, 0xbf, 0xbf}, 4},
            {{0xf4, 0x80, 0x80, 0x80}, {0xf4, 0x8f, 0xbf, 0xbf}, 4},
        };

        for (size_t r = 0; r < ELEMENTSOF(rows); r++) {
                size_t i;

                if (rows[r].len > n)
                        continue;
                for (i = 0; i < rows[r].len; i++)
                        if (p[i] < rows[r].lo[i] || p[i] > rows[r].hi[i])
                                break;
                if (i == rows[r].len)
                        return rows[r].len;
        }
        return 0;
}

static int oracle_valid(const uint8_t *p, size_t n)
{
        while (n > 0) {
                size_t k = table37(p, n);
                if (k == 0)
                        return 0;
                p += k;
                n -= k;
        }
        return 1;
}

/* Every string of 1, 2 and 3 bytes, and every 4-byte string whose first byte is a 4-byte lead
 * or an invalid lead, agree with the oracle. */
static void test_utf8_exhaustive(void **state)
{
        uint8_t b[4];
        size_t valid3 = 0;

        for (unsigned a = 0; a < 256; a++) {
                b[0] = (uint8_t)a;
                assert_int_equal(op_utf8_valid(b, 1), oracle_valid(b, 1));
                for (unsigned c = 0; c < 256; c++) {
                        b[1] = (uint8_t)c;
                        assert_int_equal(op_utf8_valid(b, 2), oracle_valid(b, 2));
                        for (unsigned d = 0; d < 256; d++) {
                                b[2] = (uint8_t)d;
                                int v = op_utf8_valid(b, 3);
                                if (v != oracle_valid(b, 3))
                                        fail_msg("%02x %02x %02x: got %d", a, c, d, v);
                                valid3 += (size_t)v;
                        }
                }
        }
        /* sanity of the oracle itself: ASCII^3 + ASCII*2-byte*2 + 3-byte code points */
        assert_int_equal(valid3, 128u * 128 * 128 + 2 * 128 * 1920 + (65536 - 2048 - 2048));

        for (unsigned a = 0xf0; a < 256; a++) {
                b[0] = (uint8_t)a;
                for (unsigned c = 0; c < 256; c++) {
                        b[1] = (uint8_t)c;
                        for (unsigned d = 0x70; d < 0xd0; d += 0x0f) {
                                b[2] = (uint8_t)d;
                                for (unsigned e = 0; e < 256; e++) {
                                        b[3] = (uint8_t)e;
                                        if (op_utf8_valid(b, 4) != oracle_valid(b, 4))
                                                fail_msg("%02x %02x %02x %02x", a, c, d, e);
                                }
                        }
                }
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_short_header),
            cmocka_unit_test(test_one_byte_at_a_time),
            cmocka_unit_test(test_stream_one_byte_at_a_time),
            cmocka_unit_test(test_several_frames_in_one_buffer),
            cmocka_unit_test(test_zero_length_frame),
            cmocka_unit_test(test_over_cap),
            cmocka_unit_test(test_exactly_at_cap),
            cmocka_unit_test(test_header_round_trip),
            cmocka_unit_test(test_header_over_cap),
            cmocka_unit_test(test_utf8_cases),
            cmocka_unit_test(test_utf8_exhaustive),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
