/* test-fstype.c: the guest init's root file system probe (guest/fstype.c) on images made by the
 * real mkfs.erofs and mkfs.ext4, as build-images calls them, and on bytes that are neither. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fstype.h"

struct dirs {
        char tmp[64];
        char tree[96];
        char image[96];
};

static int setup(void **state)
{
        struct dirs *d = calloc(1, sizeof(*d));
        assert_non_null(d);
        snprintf(d->tmp, sizeof(d->tmp), "/tmp/test-fstype.XXXXXX");
        assert_non_null(mkdtemp(d->tmp));
        snprintf(d->tree, sizeof(d->tree), "%s/tree", d->tmp);
        snprintf(d->image, sizeof(d->image), "%s/image", d->tmp);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "mkdir -p %s/usr/bin && echo hello > %s/usr/bin/hello", d->tree,
                 d->tree);
        assert_int_equal(system(cmd), 0);
        *state = d;
        return 0;
}

static int teardown(void **state)
{
        struct dirs *d = *state;
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", d->tmp);
        assert_int_equal(system(cmd), 0);
        free(d);
        return 0;
}

/* Make the image with `cmd` and probe its head. */
static const char *probe_made_by(struct dirs *d, const char *cmd)
{
        char sh[512];
        unlink(d->image);
        snprintf(sh, sizeof(sh), "PATH=$PATH:/usr/sbin:/sbin %s >/dev/null 2>&1", cmd);
        assert_int_equal(system(sh), 0);

        unsigned char head[OP_FSTYPE_PROBE_LEN];
        FILE *f = fopen(d->image, "rb");
        assert_non_null(f);
        size_t got = fread(head, 1, sizeof(head), f);
        fclose(f);
        assert_int_equal(got, sizeof(head));
        return op_fstype_probe(head, got);
}

static void test_erofs(void **state)
{
        struct dirs *d = *state;
        char cmd[256];
        /* As build-images makes a root, and with the defaults (no compression). */
        snprintf(cmd, sizeof(cmd), "mkfs.erofs -zlz4hc,9 --preserve-mtime %s %s", d->image,
                 d->tree);
        const char *t = probe_made_by(d, cmd);
        assert_non_null(t);
        assert_string_equal(t, "erofs");
        snprintf(cmd, sizeof(cmd), "mkfs.erofs %s %s", d->image, d->tree);
        t = probe_made_by(d, cmd);
        assert_non_null(t);
        assert_string_equal(t, "erofs");
}

static void test_ext4(void **state)
{
        struct dirs *d = *state;
        char cmd[256];
        /* As build-images made roots before erofs. */
        snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F -b 4096 -O ^has_journal -d %s %s 4M", d->tree,
                 d->image);
        const char *t = probe_made_by(d, cmd);
        assert_non_null(t);
        assert_string_equal(t, "ext4");
}

static void test_neither(void **state)
{
        (void)state;
        unsigned char head[OP_FSTYPE_PROBE_LEN] = {0};
        assert_null(op_fstype_probe(head, sizeof(head)));
        assert_null(op_fstype_probe(NULL, 0));
        /* Too short to hold either magic. */
        head[1024] = 0xE2, head[1025] = 0xE1, head[1026] = 0xF5, head[1027] = 0xE0;
        assert_string_equal(op_fstype_probe(head, sizeof(head)), "erofs");
        assert_null(op_fstype_probe(head, 1024 + 3));
        assert_null(op_fstype_probe(head, 1024));
        /* One byte off is not a magic. */
        head[1027] = 0xE1;
        assert_null(op_fstype_probe(head, sizeof(head)));
        memset(head, 0, sizeof(head));
        head[1024 + 0x38] = 0x53, head[1024 + 0x39] = 0xEF;
        assert_string_equal(op_fstype_probe(head, sizeof(head)), "ext4");
        assert_null(op_fstype_probe(head, 1024 + 0x39));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_erofs, setup, teardown),
            cmocka_unit_test_setup_teardown(test_ext4, setup, teardown),
            cmocka_unit_test(test_neither),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
