/* fstype.h: which file system a root image holds, from the first bytes of its block device.
 * build-images makes erofs roots (compressed, read-only by design); ext4 roots from older
 * builds still boot. */
#pragma once

#include <stddef.h>

/* Bytes to read from the device's start: both superblocks lie within them. */
#define OP_FSTYPE_PROBE_LEN 2048

/* "erofs", "ext4", or NULL when `head` (the device's first `len` bytes) holds neither. */
const char *op_fstype_probe(const unsigned char *head, size_t len);
