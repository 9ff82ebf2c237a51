/* frame.h: the wire frame, a 4-byte big-endian length then that many bytes of UTF-8 JSON.
 * Pure code: bytes in, frame boundaries out; no I/O, no allocation, no globals. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define OP_PROTO_VERSION     1
#define OP_FRAME_HEADER_SIZE 4u
#define OP_FRAME_MAX_DEFAULT (16u * 1024u * 1024u)
#define OP_FRAME_MAX_CEILING (256u * 1024u * 1024u)

struct op_frame {
        size_t payload_offset; /* where the JSON starts in the buffer given to op_frame_next() */
        size_t payload_len;
        size_t frame_len; /* header + payload: what to consume */
};

/* Look for one complete frame at the start of buf[0..n).
 * Returns 1 and fills *ret when a whole frame is there, 0 when more bytes are needed
 * (*ret untouched), -EMSGSIZE when the header announces more than max bytes. */
int op_frame_next(const void *buf, size_t n, size_t max, struct op_frame *ret);

/* Write the 4-byte header for a payload of len bytes. -EMSGSIZE if len > max. */
int op_frame_header(size_t len, size_t max, uint8_t ret_header[OP_FRAME_HEADER_SIZE]);

/* 1 if buf[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF), else 0. */
int op_utf8_valid(const void *buf, size_t n);
