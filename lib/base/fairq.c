/* fairq.c: a queue served round-robin by key: one list of items ordered by key then arrival,
 * and the ring of keys (their oldest items) that the turns go round. Pure; no allocation. */
#include "fairq.h"

void fairq_init(struct fairq *q)
{
        TAILQ_INIT(&q->items);
        TAILQ_INIT(&q->keys);
        q->n = 0;
        q->last = 0;
        q->served_any = false;
}

void fairq_push(struct fairq *q, struct fairq_item *it, uint64_t key)
{
        struct fairq_item *k, *next = NULL;

        it->key = key;
        it->q = q;
        it->oldest = false;
        it->n_key = 0;
        q->n++;
        /* The key's oldest item, or the first key above it. */
        TAILQ_FOREACH(k, &q->keys, turn)
        if (k->key >= key)
                break;
        if (k && k->key == key) {
                k->n_key++;
                /* The newest of its key: before the next key's items, or last of all. */
                next = TAILQ_NEXT(k, turn);
                if (next)
                        TAILQ_INSERT_BEFORE(next, it, link);
                else
                        TAILQ_INSERT_TAIL(&q->items, it, link);
                return;
        }
        /* A key with no item yet: it joins the ring in its place by value. */
        it->oldest = true;
        it->n_key = 1;
        if (k) {
                TAILQ_INSERT_BEFORE(k, it, turn);
                TAILQ_INSERT_BEFORE(k, it, link);
        } else {
                TAILQ_INSERT_TAIL(&q->keys, it, turn);
                TAILQ_INSERT_TAIL(&q->items, it, link);
        }
}

void fairq_remove(struct fairq_item *it)
{
        struct fairq *q = it->q;
        struct fairq_item *next;

        if (!q)
                return;
        if (it->oldest) {
                /* The key's next item, if any, stands for the key in the ring from now on. */
                next = TAILQ_NEXT(it, link);
                if (next && next->key == it->key) {
                        next->oldest = true;
                        next->n_key = it->n_key - 1;
                        TAILQ_INSERT_BEFORE(it, next, turn);
                }
                TAILQ_REMOVE(&q->keys, it, turn);
                it->oldest = false;
                it->n_key = 0;
        } else {
                /* Its key's oldest item counts one fewer. */
                struct fairq_item *k;

                TAILQ_FOREACH(k, &q->keys, turn)
                if (k->key == it->key)
                        break;
                if (k)
                        k->n_key--;
        }
        TAILQ_REMOVE(&q->items, it, link);
        it->q = NULL;
        q->n--;
}

struct fairq_item *fairq_peek(const struct fairq *q, fairq_may_fn may, void *arg)
{
        struct fairq_item *start, *k;

        /* The first key after the one served last, else the lowest. */
        TAILQ_FOREACH(start, &q->keys, turn)
        if (!q->served_any || start->key > q->last)
                break;
        if (!start)
                start = TAILQ_FIRST(&q->keys);
        /* Round the ring once from there. */
        for (k = start; k;) {
                if (!may || may(k, arg))
                        return k;
                k = TAILQ_NEXT(k, turn);
                if (!k)
                        k = TAILQ_FIRST(&q->keys);
                if (k == start)
                        break;
        }
        return NULL;
}

size_t fairq_count(const struct fairq *q, fairq_may_fn may, void *arg)
{
        struct fairq_item *k;
        size_t n = 0;

        TAILQ_FOREACH(k, &q->keys, turn)
        if (!may || may(k, arg))
                n += k->n_key;
        return n;
}

void fairq_served(struct fairq *q, uint64_t key)
{
        q->last = key;
        q->served_any = true;
}

struct fairq_item *fairq_pop(struct fairq *q, fairq_may_fn may, void *arg)
{
        struct fairq_item *it = fairq_peek(q, may, arg);

        if (it) {
                fairq_remove(it);
                fairq_served(q, it->key);
        }
        return it;
}
