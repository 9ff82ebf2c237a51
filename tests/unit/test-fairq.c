/* test-fairq.c: the round-robin queue by key (lib/base/fairq.c): each key's items in arrival
 * order, keys taking turns after the key served last, keys that may not wait keeping their
 * place, removal from anywhere, the count of items whose key may be served; and, for many
 * random operations, the same choices and counts as a plain scan of every item would make. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fairq.h"

struct thing {
        struct fairq_item it;
        unsigned id;
};

#define THING(p) ((struct thing *)((char *)(p)-offsetof(struct thing, it)))

/* The id of the item popped next (any key may), or 0 when none is left. */
static unsigned pop_id(struct fairq *q)
{
        struct fairq_item *it = fairq_pop(q, NULL, NULL);

        return it ? THING(it)->id : 0;
}

static void test_empty(void **state)
{
        struct fairq q;
        struct thing t = {.id = 1};

        fairq_init(&q);
        assert_null(fairq_peek(&q, NULL, NULL));
        assert_null(fairq_pop(&q, NULL, NULL));
        assert_null(fairq_first(&q));
        assert_int_equal(fairq_len(&q), 0);
        fairq_remove(&t.it); /* in no queue: nothing */
        assert_false(fairq_queued(&t.it));
        fairq_served(&q, 5); /* a turn taken with nothing queued */
        assert_null(fairq_peek(&q, NULL, NULL));
}

static void test_one_key_is_fifo(void **state)
{
        struct fairq q;
        struct thing t[5];

        fairq_init(&q);
        for (unsigned i = 0; i < 5; i++) {
                t[i].id = i + 1;
                fairq_push(&q, &t[i].it, 1000);
                assert_true(fairq_queued(&t[i].it));
        }
        assert_int_equal(fairq_len(&q), 5);
        for (unsigned i = 1; i <= 5; i++)
                assert_int_equal(pop_id(&q), i);
        assert_int_equal(pop_id(&q), 0);
        assert_int_equal(fairq_len(&q), 0);
        for (unsigned i = 0; i < 5; i++)
                assert_false(fairq_queued(&t[i].it));
}

/* One key with a backlog of 50, another with one item queued after them all: the second is
 * served right after the first key's turn, not after its backlog. */
static void test_backlog_does_not_hold_back_another_key(void **state)
{
        struct fairq q;
        struct thing a[50], b = {.id = 100};

        fairq_init(&q);
        for (unsigned i = 0; i < 50; i++) {
                a[i].id = i + 1;
                fairq_push(&q, &a[i].it, 2000);
        }
        fairq_push(&q, &b.it, 3000);
        assert_int_equal(pop_id(&q), 1);
        assert_int_equal(pop_id(&q), 100);
        for (unsigned i = 2; i <= 50; i++)
                assert_int_equal(pop_id(&q), i);

        /* The same when the backlog's key is above the other's, and when its turn was taken
         * outside the queue (a request served at once, without waiting). */
        for (unsigned i = 0; i < 50; i++)
                fairq_push(&q, &a[i].it, 2000);
        fairq_push(&q, &b.it, 1000);
        fairq_served(&q, 2000);
        assert_int_equal(pop_id(&q), 100);
        for (unsigned i = 1; i <= 50; i++)
                assert_int_equal(pop_id(&q), i);
}

static void test_keys_take_turns_in_order_after_the_last(void **state)
{
        struct fairq q;
        struct thing t[9];
        /* keys 30, 10, 20, three items each, pushed interleaved in this order */
        static const uint64_t keys[9] = {30, 10, 20, 30, 10, 20, 30, 10, 20};

        fairq_init(&q);
        for (unsigned i = 0; i < 9; i++) {
                t[i].id = i + 1;
                fairq_push(&q, &t[i].it, keys[i]);
        }
        /* nothing served yet: the lowest key first, then up and round */
        assert_int_equal(pop_id(&q), 2); /* 10 */
        assert_int_equal(pop_id(&q), 3); /* 20 */
        assert_int_equal(pop_id(&q), 1); /* 30 */
        assert_int_equal(pop_id(&q), 5); /* 10 */
        /* 20 was served elsewhere meanwhile: 30 is next */
        fairq_served(&q, 20);
        assert_int_equal(pop_id(&q), 4); /* 30 */
        assert_int_equal(pop_id(&q), 8); /* 10 */
        assert_int_equal(pop_id(&q), 6); /* 20 */
        assert_int_equal(pop_id(&q), 7); /* 30 */
        assert_int_equal(pop_id(&q), 9); /* 20 */
        assert_int_equal(pop_id(&q), 0);
}

/* Keys above the one served last come first, even one that was not there before; the largest
 * key value (an unknown user) is a key like any other. */
static void test_new_key_in_its_place(void **state)
{
        struct fairq q;
        struct thing a1 = {.id = 1}, a2 = {.id = 2}, b = {.id = 3}, c = {.id = 4};

        fairq_init(&q);
        fairq_push(&q, &a1.it, 5);
        fairq_push(&q, &a2.it, 5);
        assert_int_equal(pop_id(&q), 1);
        fairq_push(&q, &b.it, UINT64_MAX);
        fairq_push(&q, &c.it, 1);
        assert_int_equal(pop_id(&q), 3); /* above 5 */
        assert_int_equal(pop_id(&q), 4); /* round to the lowest */
        assert_int_equal(pop_id(&q), 2);
}

static bool not_key(const struct fairq_item *it, void *arg)
{
        return it->key != *(const uint64_t *)arg;
}

/* A key that may not be served is passed over and keeps its place; when it may again, its
 * oldest item is served in its turn. */
static void test_key_that_may_not_keeps_its_place(void **state)
{
        struct fairq q;
        struct thing a1 = {.id = 1}, a2 = {.id = 2}, b1 = {.id = 3}, b2 = {.id = 4};
        uint64_t blocked = 1;
        struct fairq_item *it;

        fairq_init(&q);
        fairq_push(&q, &a1.it, 1);
        fairq_push(&q, &a2.it, 1);
        fairq_push(&q, &b1.it, 2);
        fairq_push(&q, &b2.it, 2);
        assert_int_equal(fairq_count(&q, NULL, NULL), 4);
        assert_int_equal(fairq_count(&q, not_key, &blocked), 2); /* key 2's */
        it = fairq_pop(&q, not_key, &blocked);
        assert_ptr_equal(it, &b1.it);
        assert_int_equal(fairq_count(&q, not_key, &blocked), 1);
        it = fairq_peek(&q, not_key, &blocked);
        assert_ptr_equal(it, &b2.it); /* 1 still may not */
        blocked = 2;
        assert_ptr_equal(fairq_peek(&q, not_key, &blocked), &a1.it);
        blocked = 1;
        assert_ptr_equal(fairq_pop(&q, not_key, &blocked), &b2.it);
        assert_null(fairq_peek(&q, not_key, &blocked)); /* only key 1 is left */
        assert_int_equal(fairq_len(&q), 2);
        assert_int_equal(pop_id(&q), 1);
        assert_int_equal(pop_id(&q), 2);
}

/* Removing an item (a request cancelled or timed out) from anywhere: the oldest of its key
 * (the next one stands for the key), a middle one, the newest, a key's only one. */
static void test_remove_anywhere(void **state)
{
        struct fairq q;
        struct thing t[7];
        static const uint64_t keys[7] = {1, 1, 1, 1, 2, 3, 3};

        fairq_init(&q);
        for (unsigned i = 0; i < 7; i++) {
                t[i].id = i + 1;
                fairq_push(&q, &t[i].it, keys[i]);
        }
        fairq_remove(&t[0].it); /* key 1's oldest */
        fairq_remove(&t[2].it); /* a middle one */
        fairq_remove(&t[3].it); /* the newest of key 1 */
        fairq_remove(&t[4].it); /* key 2's only one */
        fairq_remove(&t[4].it); /* again: nothing */
        assert_int_equal(fairq_len(&q), 3);
        assert_ptr_equal(fairq_first(&q), &t[1].it);
        fairq_push(&q, &t[4].it, 2); /* back, at the end of its key */
        fairq_push(&q, &t[0].it, 1);
        assert_int_equal(pop_id(&q), 2); /* key 1 */
        assert_int_equal(pop_id(&q), 5); /* key 2 */
        assert_int_equal(pop_id(&q), 6); /* key 3 */
        assert_int_equal(pop_id(&q), 1); /* key 1 */
        assert_int_equal(pop_id(&q), 7); /* key 3 */
        assert_int_equal(pop_id(&q), 0);
}

/* ---- against a plain scan ---- */

#define N_THINGS 64
#define N_KEYS   6

struct model {
        bool queued[N_THINGS];
        uint64_t key[N_THINGS];
        uint64_t seq[N_THINGS]; /* arrival */
        uint64_t next_seq;
        bool served_any;
        uint64_t last;
};

/* The choice a scan of every item makes: among the keys that may, the first key above the
 * last served (else the lowest key), its oldest item. -1 when none. */
static int model_peek(const struct model *m, const bool *blocked)
{
        int best = -1, wrap = -1;

        for (int i = 0; i < N_THINGS; i++) {
                if (!m->queued[i] || blocked[m->key[i]])
                        continue;
                if (!m->served_any || m->key[i] > m->last) {
                        if (best < 0 || m->key[i] < m->key[best] ||
                            (m->key[i] == m->key[best] && m->seq[i] < m->seq[best]))
                                best = i;
                } else if (wrap < 0 || m->key[i] < m->key[wrap] ||
                           (m->key[i] == m->key[wrap] && m->seq[i] < m->seq[wrap]))
                        wrap = i;
        }
        return best >= 0 ? best : wrap;
}

static bool not_blocked(const struct fairq_item *it, void *arg)
{
        return !((const bool *)arg)[it->key];
}

static void test_same_choices_as_a_scan(void **state)
{
        struct fairq q;
        struct thing t[N_THINGS];
        struct model m = {0};
        bool blocked[N_KEYS] = {false};
        uint32_t rnd = 12345;

        fairq_init(&q);
        for (unsigned i = 0; i < N_THINGS; i++)
                t[i] = (struct thing){.id = i};
        for (unsigned step = 0; step < 200000; step++) {
                unsigned op, i;
                size_t n = 0, n_may = 0;
                int want;
                struct fairq_item *got;

                rnd = rnd * 1103515245u + 12345u;
                op = (rnd >> 16) % 10;
                rnd = rnd * 1103515245u + 12345u;
                i = (rnd >> 16) % N_THINGS;
                if (op < 4) { /* push one not queued */
                        if (!m.queued[i]) {
                                m.key[i] = (rnd >> 8) % N_KEYS;
                                m.queued[i] = true;
                                m.seq[i] = m.next_seq++;
                                fairq_push(&q, &t[i].it, m.key[i]);
                        }
                } else if (op < 5) { /* remove one, queued or not */
                        m.queued[i] = false;
                        fairq_remove(&t[i].it);
                } else if (op < 6) { /* a key may, or may not */
                        blocked[i % N_KEYS] = !blocked[i % N_KEYS];
                } else if (op < 7) { /* a key served outside the queue */
                        m.last = i % N_KEYS;
                        m.served_any = true;
                        fairq_served(&q, i % N_KEYS);
                } else { /* peek, and pop */
                        want = model_peek(&m, blocked);
                        got = fairq_peek(&q, not_blocked, blocked);
                        if (want < 0) {
                                assert_null(got);
                                continue;
                        }
                        assert_non_null(got);
                        assert_int_equal(THING(got)->id, want);
                        got = fairq_pop(&q, not_blocked, blocked);
                        assert_int_equal(THING(got)->id, want);
                        m.queued[want] = false;
                        m.last = m.key[want];
                        m.served_any = true;
                }
                for (unsigned k = 0; k < N_THINGS; k++) {
                        assert_int_equal(fairq_queued(&t[k].it), m.queued[k]);
                        n += m.queued[k];
                        n_may += m.queued[k] && !blocked[m.key[k]];
                }
                assert_int_equal(fairq_len(&q), n);
                assert_int_equal(fairq_count(&q, NULL, NULL), n);
                assert_int_equal(fairq_count(&q, not_blocked, blocked), n_may);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_empty),
            cmocka_unit_test(test_one_key_is_fifo),
            cmocka_unit_test(test_backlog_does_not_hold_back_another_key),
            cmocka_unit_test(test_keys_take_turns_in_order_after_the_last),
            cmocka_unit_test(test_new_key_in_its_place),
            cmocka_unit_test(test_key_that_may_not_keeps_its_place),
            cmocka_unit_test(test_remove_anywhere),
            cmocka_unit_test(test_same_choices_as_a_scan),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
