/* frame.c: frame boundaries and UTF-8 validation for the opd wire protocol.
 * No I/O and no allocation, so it can be fed one byte at a time and fuzzed. */
#include "frame.h"

#include <errno.h>

int op_frame_next(const void *buf, size_t n, size_t max, struct op_frame *ret)
{
        const uint8_t *p = buf;
        uint32_t len;

        if (n < OP_FRAME_HEADER_SIZE)
                return 0;
        len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
        if (len > max)
                return -EMSGSIZE;
        if (n - OP_FRAME_HEADER_SIZE < len)
                return 0;
        ret->payload_offset = OP_FRAME_HEADER_SIZE;
        ret->payload_len = len;
        ret->frame_len = OP_FRAME_HEADER_SIZE + (size_t)len;
        return 1;
}

int op_frame_header(size_t len, size_t max, uint8_t ret_header[OP_FRAME_HEADER_SIZE])
{
        if (len > max || len > UINT32_MAX)
                return -EMSGSIZE;
        ret_header[0] = (uint8_t)(len >> 24);
        ret_header[1] = (uint8_t)(len >> 16);
        ret_header[2] = (uint8_t)(len >> 8);
        ret_header[3] = (uint8_t)len;
        return 0;
}

int op_utf8_valid(const void *buf, size_t n)
{
        const uint8_t *p = buf, *end = p + n;

        while (p < end) {
                uint8_t c = *p;
                uint32_t cp;
                size_t k;

                if (c < 0x80) {
                        p++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf) {
                        k = 1;
                        cp = c & 0x1f;
                } else if (c >= 0xe0 && c <= 0xef) {
                        k = 2;
                        cp = c & 0x0f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        k = 3;
                        cp = c & 0x07;
                } else
                        return 0;
                if ((size_t)(end - p) <= k)
                        return 0;
                for (size_t i = 1; i <= k; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return 0;
                        cp = cp << 6 | (p[i] & 0x3f);
                }
                if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return 0;
                p += k + 1;
        }
        return 1;
}
