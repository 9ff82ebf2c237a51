/* fairq.h: a queue served round-robin by key (fairq.c), e.g. requests by uid: each key's items
 * in arrival order, the keys taking turns in order of value after the key served last. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct fairq;

/* One queued thing, embedded in the caller's object (the queue allocates nothing). */
struct fairq_item {
        uint64_t key;
        struct fairq *q;              /* the queue it is in, NULL when in none */
        TAILQ_ENTRY(fairq_item) link; /* in q->items */
        TAILQ_ENTRY(fairq_item) turn; /* in q->keys: only the oldest item of its key */
        bool oldest;                  /* the oldest of its key: linked in q->keys */
        size_t n_key;                 /* when oldest: the items of its key, itself included */
};

/* Every item in one list ordered by key and, within a key, by arrival; the oldest item of each
 * key is also in the ring of keys (ordered by key), which is where the turns are taken. */
struct fairq {
        TAILQ_HEAD(fairq_items, fairq_item) items;
        TAILQ_HEAD(fairq_keys, fairq_item) keys;
        size_t n;
        uint64_t last; /* the key served last (when served_any) */
        bool served_any;
};

/* May this item (the oldest of its key) be served now? The answer is taken as its key's. */
typedef bool (*fairq_may_fn)(const struct fairq_item *it, void *arg);

void fairq_init(struct fairq *q);
/* Queue it (not in a queue) as the newest item of key. O(number of keys). */
void fairq_push(struct fairq *q, struct fairq_item *it, uint64_t key);
/* Out of its queue; nothing when it is in none. O(1) for its key's oldest item, else O(number
 * of keys). */
void fairq_remove(struct fairq_item *it);
static inline bool fairq_queued(const struct fairq_item *it)
{
        return it->q != NULL;
}
static inline size_t fairq_len(const struct fairq *q)
{
        return q->n;
}
/* The item whose turn it is, left in place: the oldest item of the first key after the key
 * served last (in order of value, wrapping round to the lowest) for which may (NULL: any) holds;
 * NULL when there is none. A key that may not keeps its place. O(number of keys). */
struct fairq_item *fairq_peek(const struct fairq *q, fairq_may_fn may, void *arg);
/* The items of the keys for which may (NULL: any) holds, asked once per key. O(number of
 * keys). */
size_t fairq_count(const struct fairq *q, fairq_may_fn may, void *arg);
/* key was served, from this queue or not: the next turn goes to the key after it. */
void fairq_served(struct fairq *q, uint64_t key);
/* fairq_peek(), taken out of the queue, its key's turn taken (fairq_served()). */
struct fairq_item *fairq_pop(struct fairq *q, fairq_may_fn may, void *arg);
/* Any item (the lowest key's oldest), for emptying the queue; NULL when empty. */
static inline struct fairq_item *fairq_first(const struct fairq *q)
{
        return TAILQ_FIRST(&q->items);
}
