/* fuzz-fstype.c: libFuzzer target for the guest's root probe (guest/fstype.c): any device head is
 * told erofs, ext4 or neither without reading past it, and the answer is the one its magic
 * numbers give. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fstype.h"
#include "fuzz-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t *copy = malloc(size ? size : 1); /* exact length: ASan sees any overread */
        const char *t;

        CHECK(copy);
        memcpy(copy, data, size);
        t = op_fstype_probe(copy, size);
        if (size < 1024 + 0x38 + 2)
                CHECK(!t);
        else if (copy[1024] == 0xE2 && copy[1025] == 0xE1 && copy[1026] == 0xF5 &&
                 copy[1027] == 0xE0)
                CHECK(t && strcmp(t, "erofs") == 0);
        else if (copy[1024 + 0x38] == 0x53 && copy[1024 + 0x39] == 0xEF)
                CHECK(t && strcmp(t, "ext4") == 0);
        else
                CHECK(!t);
        free(copy);
        return 0;
}
