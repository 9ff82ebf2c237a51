/* migsplit.h: split a QEMU migration stream (format version 3, precopy, no multifd, no
 * compression) into the guest RAM of one named RAM block and everything else. A restored clone
 * maps its RAM privately, so QEMU sends that RAM in the stream when it saves the clone; cut out,
 * the pages become a memory file a clone can map again, and the rest a device state that loads
 * with x-ignore-shared and no pages of that block. Pure: bytes in, callbacks out, no I/O; the
 * stream is untrusted input (fuzzed by tests/fuzz/fuzz-migsplit.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIGSPLIT_PAGE 4096u
/* The largest item the splitter needs whole: a command section (16-bit length) is larger than a
 * page record with its block name or the configuration's capability list (64 names at most). */
#define MIGSPLIT_ITEM_MAX (5 + 65535)
/* The most device state a stream may carry (everything but the block's pages: the devices, the
 * other RAM blocks such as firmware, anything after the end marker). A clone's is a few hundred
 * KiB; the stream comes from a VMM that may be hostile, and the state goes to the disk. */
#define MIGSPLIT_STATE_MAX (64u << 20)

struct migsplit_ops {
        /* Bytes of the device state, in order (the stream minus the block's pages). */
        int (*state)(void *userdata, const void *data, size_t len);
        /* One page of the block at byte offset off: its MIGSPLIT_PAGE bytes, or NULL for a page
         * of zeros. off + MIGSPLIT_PAGE <= the block's size, told first by size(). */
        int (*page)(void *userdata, uint64_t off, const void *data);
        /* The block's size, once, before any page. */
        int (*size)(void *userdata, uint64_t size);
};

struct migsplit {
        char block[256]; /* the RAM block to cut out ("mem") */
        int stage;
        uint32_t ram_section; /* the "ram" section's id */
        bool have_ram;
        bool ram_ended;     /* its SECTION_END was read */
        bool ignore_shared; /* the configuration lists x-ignore-shared */
        bool cur_is_block;  /* the last page record's block is ours */
        bool have_cur;
        uint64_t block_size;
        uint64_t sizes_left; /* MEM_SIZE: bytes of block lengths still to read */
        bool done;           /* QEMU_VM_EOF seen */
        uint64_t state_len;  /* bytes given to ops->state so far */
        char err[160];
};

/* Start a split that cuts out the pages of the RAM block named block. */
void migsplit_init(struct migsplit *s, const char *block);

/* Feed the next bytes of the stream. Consumes whole items only: *ret_used (<= len) bytes were
 * used; feed the rest again with more bytes after it (an item is at most MIGSPLIT_ITEM_MAX).
 * 0, or a negative errno: -EBADMSG with s->err for a stream this splitter does not take (also
 * one whose device state would go past MIGSPLIT_STATE_MAX), or what a callback returned. */
int migsplit_feed(struct migsplit *s, const uint8_t *data, size_t len,
                  const struct migsplit_ops *ops, void *userdata, size_t *ret_used);

/* The stream ended: 0 when it was whole (the end marker seen and the block found), else
 * -EBADMSG with s->err. */
int migsplit_finish(struct migsplit *s);
