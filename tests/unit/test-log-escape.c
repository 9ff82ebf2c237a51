/* test-log-escape.c: op_escape_log() and op_escape_log_tail() (lib/base/util.c), which make a
 * guest's console bytes safe for one log line: what is escaped, how, and that output is cut only
 * between whole escapes (the tail keeps the last bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util.h"

static void test_printable_kept(void **state)
{
        char out[64];

        assert_int_equal(op_escape_log("hello, world [1.0]", 18, out, sizeof(out)), 18);
        assert_string_equal(out, "hello, world [1.0]");
}

static void test_controls_escaped(void **state)
{
        static const char in[] = "a\nb\rc\td\\e\x1b[2J\x07\x7f\x00z\xff\xc3\xa9";
        char out[128];

        assert_int_equal(op_escape_log(in, sizeof(in) - 1, out, sizeof(out)), sizeof(in) - 1);
        assert_string_equal(out, "a\\nb\\rc\\td\\\\e\\x1b[2J\\x07\\x7f\\x00z\\xff\\xc3\\xa9");
        for (const char *p = out; *p; p++)
                assert_true(*p >= 0x20 && *p < 0x7f);
}

static void test_cut_between_escapes(void **state)
{
        char out[7];

        /* "ab" + "\x01" needs 2 + 4 bytes and the NUL: 6 fit, the escape does not. */
        assert_int_equal(op_escape_log("ab\x01"
                                       "c",
                                       4, out, 6),
                         2);
        assert_string_equal(out, "ab");
        assert_int_equal(op_escape_log("ab\x01"
                                       "c",
                                       4, out, 7),
                         3);
        assert_string_equal(out, "ab\\x01");
        assert_int_equal(op_escape_log("abc", 3, out, 1), 0);
        assert_string_equal(out, "");
        assert_int_equal(op_escape_log("", 0, out, sizeof(out)), 0);
        assert_string_equal(out, "");
}

static void test_tail_keeps_the_end(void **state)
{
        static const char in[] = "head\x01\x02tail\n";
        char out[16];

        /* Everything fits: as op_escape_log(). */
        assert_int_equal(op_escape_log_tail("ab\x01", 3, out, 7), 3);
        assert_string_equal(out, "ab\\x01");
        /* "tail\n" needs 6, "\x02" 4 more: 10 and the NUL fit in 11, "\x01" does not. */
        assert_int_equal(op_escape_log_tail(in, sizeof(in) - 1, out, 11), 6);
        assert_string_equal(out, "\\x02tail\\n");
        assert_int_equal(op_escape_log_tail(in, sizeof(in) - 1, out, 10), 5);
        assert_string_equal(out, "tail\\n");
        assert_int_equal(op_escape_log_tail(in, sizeof(in) - 1, out, 1), 0);
        assert_string_equal(out, "");
        assert_int_equal(op_escape_log_tail("", 0, out, sizeof(out)), 0);
        assert_string_equal(out, "");
        assert_int_equal(op_escape_log_tail("x", 1, out, 0), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_printable_kept),
            cmocka_unit_test(test_controls_escaped),
            cmocka_unit_test(test_cut_between_escapes),
            cmocka_unit_test(test_tail_keeps_the_end),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
