/* test-evframe.c: frames on libevent buffers (lib/event/evframe.c): what evframe_add() queues
 * comes back whole from evframe_next(), and a queue of many small frames holds memory in
 * proportion to its length, not a chunk per frame. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evframe.h"
#include "frame.h"

/* An answer the length of a bad_request one (about 114 bytes). */
static json_t *small_answer(int id)
{
        return json_pack("{s:i,s:b,s:{s:s,s:s}}", "id", id, "ok", 0, "error", "code", "bad_request",
                         "message", "frame is not JSON: '[' or '{' expected near end of file");
}

static void test_round_trip(void **state)
{
        struct evbuffer *b = evbuffer_new();
        char *big = malloc(3 * EVFRAME_COPY_MAX);
        json_t *o;
        char err[256];

        assert_non_null(b);
        assert_non_null(big);
        memset(big, 'x', 3 * EVFRAME_COPY_MAX - 1);
        big[3 * EVFRAME_COPY_MAX - 1] = '\0';
        for (int i = 0; i < 3; i++) {
                o = i == 1 ? json_pack("{s:i,s:s}", "id", i, "text", big) : small_answer(i);
                assert_non_null(o);
                assert_int_equal(evframe_add(b, o, OP_FRAME_MAX_DEFAULT), 0);
                json_decref(o);
        }
        for (int i = 0; i < 3; i++) {
                o = NULL;
                assert_int_equal(evframe_next(b, OP_FRAME_MAX_DEFAULT, 1000, &o, err, sizeof(err)),
                                 1);
                assert_int_equal(json_integer_value(json_object_get(o, "id")), i);
                if (i == 1)
                        assert_string_equal(json_string_value(json_object_get(o, "text")), big);
                json_decref(o);
        }
        assert_int_equal(evbuffer_get_length(b), 0);
        free(big);
        evbuffer_free(b);
}

/* 10000 short answers queued to a client that reads nothing: the buffer holds them in chunks
 * it fills end to end (libevent's grow to 4 KiB), so a few per 4 KiB of answers, where a chunk
 * per frame would take 10000. A frame over EVFRAME_COPY_MAX takes one chunk of its own. */
static void test_small_frames_packed(void **state)
{
        struct evbuffer *b = evbuffer_new();
        size_t len;
        int chunks;
        json_t *o;

        assert_non_null(b);
        for (int i = 0; i < 10000; i++) {
                o = small_answer(i);
                assert_non_null(o);
                assert_int_equal(evframe_add(b, o, OP_FRAME_MAX_DEFAULT), 0);
                json_decref(o);
        }
        len = evbuffer_get_length(b);
        assert_true(len > 10000 * 100);
        chunks = evbuffer_peek(b, -1, NULL, NULL, 0);
        assert_in_range(chunks, 1, len / 1024 + 4);
        evbuffer_free(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip),
            cmocka_unit_test(test_small_frames_packed),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
