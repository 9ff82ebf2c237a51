/* test-fs-space.c: a full file system said plainly (lib/base/fs-space.c): the mount found above
 * a path (a file, a directory, one already removed), and the error text for ENOSPC, EDQUOT and
 * any other errno, whole or cut to the buffer. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs-space.h"

/* /proc is a file system of its own, mounted at /proc, whatever the host */
static void test_mount_of_proc(void **state)
{
        struct op_fs_space s;

        assert_int_equal(op_fs_space("/proc/self/status", &s), 0);
        assert_string_equal(s.mount, "/proc");
        assert_false(s.tmpfs);
        assert_int_equal(op_fs_space("/", &s), 0);
        assert_string_equal(s.mount, "/");
}

/* A directory, a file in it and a file no longer there share one mount, a parent of them all. */
static void test_mount_of_a_path(void **state)
{
        char dir[] = "/tmp/test-fs-space.XXXXXX", real[PATH_MAX], file[PATH_MAX + 16];
        struct op_fs_space a, b, c;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        assert_non_null(realpath(dir, real));
        snprintf(file, sizeof(file), "%s/f", dir);
        f = fopen(file, "w");
        assert_non_null(f);
        fclose(f);
        assert_int_equal(op_fs_space(dir, &a), 0);
        assert_int_equal(op_fs_space(file, &b), 0);
        assert_int_equal(unlink(file), 0);
        assert_int_equal(op_fs_space(file, &c), 0);
        assert_int_equal(rmdir(dir), 0);
        assert_string_equal(a.mount, b.mount);
        assert_string_equal(a.mount, c.mount);
        assert_true(strncmp(real, a.mount, strlen(a.mount)) == 0);
        assert_true(a.avail <= a.total);
        assert_int_equal(op_fs_space("", &a), -EINVAL);
        assert_int_equal(op_fs_space("/no-such-dir-here/x", &a), 0); /* its parent: / */
        assert_string_equal(a.mount, "/");
}

static void test_error_text(void **state)
{
        char buf[512], small[24];

        assert_int_equal(op_errf_fs(buf, sizeof(buf), -ENOSPC, "/proc/self", "writing %s", "x"),
                         -ENOSPC);
        assert_non_null(strstr(buf, "writing x: no space left on /proc (ENOSPC, 0.0 MiB free of "));
        op_errf_fs(buf, sizeof(buf), -EDQUOT, "/proc", "writing %s", "x");
        assert_non_null(strstr(buf, "writing x: disk quota exceeded on /proc (EDQUOT, "));
        op_errf_fs(buf, sizeof(buf), -EACCES, "/proc", "writing %s", "x");
        assert_string_equal(buf, "writing x: Permission denied");
        /* the file system of a path that cannot be looked at: the errno's own text */
        op_errf_fs(buf, sizeof(buf), -ENOSPC, "relative-and-missing", "writing %s", "x");
        assert_string_equal(buf, "writing x: No space left on device");
        /* cut to the buffer, NUL-ended */
        assert_int_equal(op_errf_fs(small, sizeof(small), -ENOSPC, "/proc", "writing %s",
                                    "a long name that does not fit"),
                         -ENOSPC);
        assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_mount_of_proc),
            cmocka_unit_test(test_mount_of_a_path),
            cmocka_unit_test(test_error_text),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
