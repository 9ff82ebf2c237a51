/* fstype.c: a root image's file system, told by its superblock's magic number. */
#include "fstype.h"

#include <stdint.h>

/* Both superblocks start 1024 bytes into the device. */
#define SB_OFFSET 1024
/* erofs: a 32-bit little-endian magic at the superblock's start. */
#define EROFS_MAGIC 0xE0F5E1E2u
/* ext2/3/4: a 16-bit little-endian magic at offset 0x38 of the superblock. */
#define EXT4_MAGIC_AT 0x38
#define EXT4_MAGIC    0xEF53u

static uint32_t le32(const unsigned char *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

const char *op_fstype_probe(const unsigned char *head, size_t len)
{
        if (!head || len < SB_OFFSET + EXT4_MAGIC_AT + 2)
                return NULL;
        const unsigned char *sb = head + SB_OFFSET;
        if (le32(sb) == EROFS_MAGIC)
                return "erofs";
        if (((unsigned)sb[EXT4_MAGIC_AT] | (unsigned)sb[EXT4_MAGIC_AT + 1] << 8) == EXT4_MAGIC)
                return "ext4";
        return NULL;
}
