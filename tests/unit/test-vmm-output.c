/* test-vmm-output.c: unit tests of lib/vmm/vmm-output.c: a VMM's output through a real pipe and
 * event loop: only its last VMM_OUTPUT_TAIL bytes are kept, whatever it wrote, and what the pipe
 * still holds when the tail is asked for is read first. */
#include <event2/event.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm-output.h"

/* Byte i of a VMM's output in these tests. */
static char byte_at(size_t i)
{
        return (char)('a' + (i * 7 + i / 26) % 26);
}

static void write_bytes(int fd, size_t from, size_t n)
{
        char buf[4096];

        while (n) {
                size_t k = n < sizeof(buf) ? n : sizeof(buf);

                for (size_t i = 0; i < k; i++)
                        buf[i] = byte_at(from + i);
                assert_int_equal(write(fd, buf, k), (ssize_t)k);
                from += k;
                n -= k;
        }
}

static void assert_tail(struct vmm_output *o, size_t total)
{
        size_t len, want = total < VMM_OUTPUT_TAIL ? total : VMM_OUTPUT_TAIL;
        uint64_t seen;
        const char *t = vmm_output_tail(o, &len, &seen);

        assert_int_equal(seen, total);
        assert_int_equal(len, want);
        for (size_t i = 0; i < len; i++)
                assert_int_equal(t[i], byte_at(total - want + i));
}

/* Written in pieces while the loop reads, far more than the tail: the last bytes, in order. */
static void test_flood_keeps_tail(void **state)
{
        struct event_base *base = event_base_new();
        struct vmm_output *o = NULL;
        size_t total = 0;
        int wr = -1;

        assert_non_null(base);
        assert_int_equal(vmm_output_new(base, &wr, &o), 0);
        for (size_t piece = 1; piece < 5000; piece = piece * 3 + 1) {
                write_bytes(wr, total, piece);
                total += piece;
                assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 0);
        }
        close(wr);
        /* The loop reads to the end of the pipe; then the reader is gone from the loop. */
        while (event_base_loop(base, EVLOOP_NONBLOCK) == 0)
                ;
        assert_tail(o, total);
        assert_tail(o, total);
        vmm_output_free(o);
        event_base_free(base);
}

/* Small outputs, and bytes the loop has not read yet: the tail reads them first. */
static void test_unread_bytes_read_for_tail(void **state)
{
        struct event_base *base = event_base_new();
        struct vmm_output *o = NULL;
        int wr = -1;

        assert_non_null(base);
        assert_int_equal(vmm_output_new(base, &wr, &o), 0);
        assert_tail(o, 0);
        write_bytes(wr, 0, 10);
        assert_tail(o, 10);
        write_bytes(wr, 10, VMM_OUTPUT_TAIL - 10);
        assert_tail(o, VMM_OUTPUT_TAIL);
        write_bytes(wr, VMM_OUTPUT_TAIL, 60000); /* within one pipe's worth, unread */
        assert_tail(o, VMM_OUTPUT_TAIL + 60000);
        close(wr);
        assert_tail(o, VMM_OUTPUT_TAIL + 60000);
        assert_null(vmm_output_free(o));
        assert_null(vmm_output_free(NULL));
        event_base_free(base);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_flood_keeps_tail),
            cmocka_unit_test(test_unread_bytes_read_for_tail),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
