/* poolplan.h: how many paused VMs each language's pool keeps and how much guest memory that
 * takes, from the configuration and the catalogue; the check against pool.memory_budget_mb. */
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "lang.h"

/* Guest RAM of one VM of this language: its catalogue "memory_mb", else vm.memory_mb. */
uint32_t op_lang_memory_mb(const struct op_config *c, const struct op_lang *g);

/* Pool size of each language (targets[i] for l->v[i]): pool.sizes when it names the language,
 * else the smaller of pool.size and the catalogue's "pool_size"; 0 for a language not built or
 * not enabled. -EINVAL on a malformed pool.sizes; -E2BIG when the pools together would hold
 * more guest memory than pool.memory_budget_mb (0: no bound), with a message naming every pool
 * and the total. targets is filled in both cases. */
int op_pool_plan(const struct op_config *c, const struct op_langs *l, uint32_t *targets,
                 char *errbuf, size_t errlen);

/* The standing pool sizes (what each pool keeps when idle) from the sizes of op_pool_plan(),
 * scaled so that together they fit max_vms: the largest is lowered first (the later language on
 * a tie) until the sum fits. A language scaled to 0 is still served warm: its clones are
 * restored on demand, in a slot given up by the least recently used idle clone of another
 * language. Returns 1 when it scaled, with a line saying so in note; 0 when sizes fit as they
 * are (note ""). */
int op_pool_plan_fit(const struct op_config *c, const struct op_langs *l, const uint32_t *sizes,
                     uint32_t *ret_targets, char *note, size_t notelen);

/* For --check-config: load the catalogue and images named by c, write the pools' plan as
 * comment lines ("# pool python: 2 x 512 MiB", with the standing size when it was scaled to fit
 * max_vms and the most it grows to under demand), the scaling and the total to f. 0, or the error
 * of op_langs_load() / op_pool_plan() with its message. */
int op_pool_plan_report(const struct op_config *c, FILE *f, char *errbuf, size_t errlen);
