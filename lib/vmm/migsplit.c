/* migsplit.c: the migration stream splitter (migsplit.h): the stream's framing (header,
 * configuration, sections, footers) and the RAM section's records, read item by item; the named
 * block's pages go to the page callback, every other byte to the state callback unchanged. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "migsplit.h"

/* The stream's framing (QEMU migration/savevm.c) and the RAM section's flags (migration/ram.c). */
#define MIG_MAGIC       0x5145564du /* "QEVM" */
#define MIG_VERSION     3u
#define SEC_START       0x01
#define SEC_PART        0x02
#define SEC_END         0x03
#define SEC_FULL        0x04
#define SEC_SUBSECTION  0x05
#define SEC_CONFIG      0x07
#define SEC_COMMAND     0x08
#define SEC_EOF         0x10
#define SEC_FOOTER      0x7e
#define RAM_ZERO        0x002
#define RAM_MEM_SIZE    0x004
#define RAM_PAGE        0x008
#define RAM_EOS         0x010
#define RAM_CONTINUE    0x020
#define RAM_FLAGS_MASK  0xfffu
#define RAM_SECTION_VER 4u

enum stage {
        ST_HEADER,
        ST_TOP,
        ST_CONFIG_NAME,
        ST_CONFIG_SUB,
        ST_RAM_RECORD,
        ST_MEM_SIZE,
        ST_FOOTER,
        ST_REST,
};

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
        return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static int bad(struct migsplit *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct migsplit *s, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(s->err, sizeof(s->err), fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

void migsplit_init(struct migsplit *s, const char *block)
{
        memset(s, 0, sizeof(*s));
        snprintf(s->block, sizeof(s->block), "%s", block);
        s->stage = ST_HEADER;
}

/* A name preceded by its one-byte length at p[0]: is it `name`? */
static bool name_is(const uint8_t *p, const char *name)
{
        size_t n = strlen(name);

        return p[0] == n && memcmp(p + 1, name, n) == 0;
}

/* The configuration's subsections this splitter knows the layout of; returns the item's size,
 * 0 when more bytes are needed, negative when it cannot be read. */
static long config_sub(struct migsplit *s, const uint8_t *p, size_t avail)
{
        size_t hdr;

        if (avail < 2)
                return 0;
        hdr = 2 + (size_t)p[1] + 4; /* type, name length, name, version */
        if (avail < hdr)
                return 0;
        if (name_is(p + 1, "configuration/capabilities")) {
                size_t n, at = hdr + 4;
                uint32_t count;

                if (avail < at)
                        return 0;
                count = be32(p + hdr);
                if (count > 64)
                        return bad(s, "configuration lists %u capabilities", count);
                for (n = 0; n < count; n++) {
                        if (avail < at + 1 || avail < at + 1 + p[at])
                                return 0;
                        if (name_is(p + at, "x-ignore-shared"))
                                s->ignore_shared = true;
                        else if (!name_is(p + at, "events"))
                                return bad(s, "configuration lists a capability this splitter "
                                              "does not take");
                        at += 1 + p[at];
                }
                return (long)at;
        }
        if (name_is(p + 1, "configuration/target-page-bits"))
                return avail < hdr + 4 ? 0 : (long)(hdr + 4);
        if (name_is(p + 1, "configuration/uuid"))
                return avail < hdr + 16 ? 0 : (long)(hdr + 16);
        return bad(s, "unknown configuration subsection");
}

/* One item at p (at most avail bytes): its size in *ret_n (0: more bytes needed) and whether it
 * is passed on as state (else it is the block's page, already handed on). */
static int step(struct migsplit *s, const uint8_t *p, size_t avail, const struct migsplit_ops *ops,
                void *userdata, size_t *ret_n, bool *ret_state)
{
        size_t n;
        int r;

        *ret_n = 0;
        *ret_state = true;
        switch (s->stage) {
        case ST_HEADER:
                if (avail < 8)
                        return 0;
                if (be32(p) != MIG_MAGIC || be32(p + 4) != MIG_VERSION)
                        return bad(s, "not a version %u migration stream", MIG_VERSION);
                s->stage = ST_TOP;
                *ret_n = 8;
                return 0;
        case ST_CONFIG_NAME:
                if (avail < 5)
                        return 0;
                /* refused before waiting for it: an item is at most MIGSPLIT_ITEM_MAX */
                if (be32(p + 1) > 255)
                        return bad(s, "machine name of %u bytes", be32(p + 1));
                if (avail < 5 + (size_t)be32(p + 1))
                        return 0;
                s->stage = ST_CONFIG_SUB;
                *ret_n = 5 + be32(p + 1);
                return 0;
        case ST_CONFIG_SUB: {
                long k;

                if (p[0] != SEC_SUBSECTION) {
                        s->stage = ST_TOP;
                        return 0; /* nothing used: read as a section next */
                }
                k = config_sub(s, p, avail);
                if (k < 0)
                        return (int)k;
                *ret_n = (size_t)k;
                return 0;
        }
        case ST_TOP:
                switch (p[0]) {
                case SEC_CONFIG:
                        s->stage = ST_CONFIG_NAME;
                        return 0; /* read with its name */
                case SEC_START:
                case SEC_FULL: {
                        size_t idlen;
                        uint32_t id;

                        if (avail < 6)
                                return 0;
                        idlen = p[5];
                        n = 6 + idlen + 8;
                        if (avail < n)
                                return 0;
                        id = be32(p + 1);
                        if (p[0] == SEC_FULL) {
                                /* Device state follows RAM's end: the rest goes on as it is. */
                                if (!s->ram_ended)
                                        return bad(s, "device state before the RAM section ended");
                                s->stage = ST_REST;
                                *ret_n = 0;
                                return 0;
                        }
                        if (!name_is(p + 5, "ram") || s->have_ram)
                                return bad(s, "an iterative section other than RAM");
                        if (be32(p + 6 + idlen + 4) != RAM_SECTION_VER)
                                return bad(s, "RAM section version %u", be32(p + 6 + idlen + 4));
                        if (!s->ignore_shared)
                                return bad(s, "the stream was not saved with x-ignore-shared");
                        s->have_ram = true;
                        s->ram_section = id;
                        s->stage = ST_RAM_RECORD;
                        *ret_n = n;
                        return 0;
                }
                case SEC_PART:
                case SEC_END:
                        if (avail < 5)
                                return 0;
                        if (!s->have_ram || s->ram_ended || be32(p + 1) != s->ram_section)
                                return bad(s, "a section part that is not RAM's");
                        if (p[0] == SEC_END)
                                s->ram_ended = true; /* its last records follow */
                        s->stage = ST_RAM_RECORD;
                        *ret_n = 5;
                        return 0;
                case SEC_COMMAND: /* command, length (16 bits each), data: passed on */
                        if (avail < 5 || avail < 5 + ((size_t)p[3] << 8 | p[4]))
                                return 0;
                        *ret_n = 5 + ((size_t)p[3] << 8 | p[4]);
                        return 0;
                case SEC_EOF:
                        s->stage = ST_REST;
                        return 0;
                default:
                        return bad(s, "section type 0x%02x", p[0]);
                }
        case ST_FOOTER:
                if (p[0] == SEC_FOOTER && avail < 5)
                        return 0;
                *ret_n = p[0] == SEC_FOOTER ? 5 : 0;
                s->stage = ST_TOP;
                return 0;
        case ST_MEM_SIZE: {
                uint64_t len;

                if (avail < 1)
                        return 0;
                n = 1 + (size_t)p[0] + 8 + (s->ignore_shared ? 8 : 0);
                if (avail < n)
                        return 0;
                len = be64(p + 1 + p[0]);
                if (len > s->sizes_left)
                        return bad(s, "RAM block lengths exceed the total");
                s->sizes_left -= len;
                if (name_is(p, s->block)) {
                        if (s->block_size || len == 0 || len % MIGSPLIT_PAGE)
                                return bad(s, "RAM block \"%s\" of %llu bytes", s->block,
                                           (unsigned long long)len);
                        s->block_size = len;
                        if (ops->size && (r = ops->size(userdata, len)) < 0)
                                return r;
                }
                if (s->sizes_left == 0)
                        s->stage = ST_RAM_RECORD;
                *ret_n = n;
                return 0;
        }
        case ST_RAM_RECORD: {
                uint64_t v, addr;
                unsigned flags;
                size_t at = 8;
                bool ours;

                if (avail < 8)
                        return 0;
                v = be64(p);
                flags = (unsigned)(v & RAM_FLAGS_MASK);
                addr = v & ~(uint64_t)RAM_FLAGS_MASK;
                if (flags == RAM_EOS) {
                        s->stage = ST_FOOTER;
                        *ret_n = 8;
                        return 0;
                }
                if (flags == RAM_MEM_SIZE) {
                        if (s->block_size || s->sizes_left || addr == 0)
                                return bad(s, "a second or empty RAM block list");
                        s->sizes_left = addr;
                        s->stage = ST_MEM_SIZE;
                        *ret_n = 8;
                        return 0;
                }
                if ((flags & ~(unsigned)RAM_CONTINUE) != RAM_ZERO &&
                    (flags & ~(unsigned)RAM_CONTINUE) != RAM_PAGE)
                        return bad(s, "RAM record flags 0x%x", flags);
                if (!(flags & RAM_CONTINUE)) {
                        if (avail < 9 || avail < 9 + (size_t)p[8])
                                return 0;
                        ours = name_is(p + 8, s->block);
                        at = 9 + p[8];
                } else if (!s->have_cur) {
                        return bad(s, "a RAM record continues no block");
                } else
                        ours = s->cur_is_block;
                n = at + ((flags & RAM_ZERO) ? 1 : MIGSPLIT_PAGE);
                if (avail < n)
                        return 0;
                s->have_cur = true;
                s->cur_is_block = ours;
                *ret_n = n;
                if (!ours)
                        return 0;
                if (!s->block_size || addr > s->block_size - MIGSPLIT_PAGE)
                        return bad(s, "a page beyond RAM block \"%s\"", s->block);
                if ((flags & RAM_ZERO) && p[at] != 0)
                        return bad(s, "a filled page of 0x%02x", p[at]);
                *ret_state = false;
                return ops->page(userdata, addr, (flags & RAM_ZERO) ? NULL : p + at);
        }
        case ST_REST:
                *ret_n = avail;
                return 0;
        }
        return bad(s, "splitter stage %d", s->stage);
}

int migsplit_feed(struct migsplit *s, const uint8_t *data, size_t len,
                  const struct migsplit_ops *ops, void *userdata, size_t *ret_used)
{
        size_t pos = 0;
        int r = 0;

        while (pos < len) {
                int before = s->stage;
                size_t n;
                bool state;

                r = step(s, data + pos, len - pos, ops, userdata, &n, &state);
                if (r < 0)
                        break;
                if (n == 0 && s->stage == before)
                        break; /* more bytes needed */
                if (s->stage == ST_REST && before == ST_TOP && data[pos] == SEC_EOF)
                        s->done = true;
                if (s->stage == ST_REST && before == ST_TOP && data[pos] == SEC_FULL)
                        s->done = true; /* the end marker follows the device state */
                if (n && state && n > MIGSPLIT_STATE_MAX - s->state_len) {
                        r = bad(s, "more than %u MiB of device state", MIGSPLIT_STATE_MAX >> 20);
                        break;
                }
                if (n && state)
                        s->state_len += n;
                if (n && state && ops->state && (r = ops->state(userdata, data + pos, n)) < 0)
                        break;
                pos += n;
        }
        *ret_used = pos;
        return r;
}

int migsplit_finish(struct migsplit *s)
{
        if (s->stage != ST_REST || !s->done)
                return bad(s, "the stream ended early");
        if (!s->block_size)
                return bad(s, "the stream has no RAM block \"%s\"", s->block);
        return 0;
}
