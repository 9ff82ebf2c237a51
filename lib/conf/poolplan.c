/* poolplan.c: per-language pool sizes and their memory, checked against the budget. */
#include "poolplan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cleanup.h"

#include "util.h"

uint32_t op_lang_memory_mb(const struct op_config *c, const struct op_lang *g)
{
        return g->memory_mb ? g->memory_mb : c->vm_memory_mb;
}

int op_pool_plan(const struct op_config *c, const struct op_langs *l, uint32_t *targets,
                 char *errbuf, size_t errlen)
{
        uint64_t total = 0;
        char detail[384];
        size_t off = 0;

        for (size_t i = 0; i < l->n; i++) {
                const struct op_lang *g = &l->v[i];
                uint32_t n;
                int r = op_config_pool_size_listed(c, g->name, &n);

                if (r < 0)
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "pool.sizes: expected \"lang=N,lang=N\" (N <= 1024)");
                if (r == 0) {
                        n = c->pool_size;
                        if (g->pool_size >= 0 && (uint32_t)g->pool_size < n)
                                n = (uint32_t)g->pool_size;
                }
                if (!g->available || !g->enabled)
                        n = 0;
                targets[i] = n;
                total += (uint64_t)n * op_lang_memory_mb(c, g);
                if (n && off < sizeof(detail)) {
                        int k = snprintf(detail + off, sizeof(detail) - off, "%s%s %u x %u",
                                         off ? ", " : "", g->name, n, op_lang_memory_mb(c, g));
                        off += k > 0 ? (size_t)k : 0;
                }
        }
        if (c->pool_memory_budget_mb && total > c->pool_memory_budget_mb)
                return op_errf(errbuf, errlen, -E2BIG,
                               "pool.memory_budget_mb = %u, but the pools would hold %llu MiB of "
                               "guest memory (%s MiB); lower pool.size or pool.sizes, disable "
                               "languages, or raise the budget",
                               c->pool_memory_budget_mb, (unsigned long long)total, detail);
        return 0;
}

int op_pool_plan_report(const struct op_config *c, FILE *f, char *errbuf, size_t errlen)
{
        _cleanup_free_ uint32_t *targets = NULL;
        struct op_langs l = {0};
        uint64_t total = 0;
        int r;

        r = op_langs_load(c->languages_file, c->images_dir, &l, errbuf, errlen);
        if (r >= 0)
                r = op_langs_enable(&l, c->languages_enabled, errbuf, errlen);
        if (r >= 0 && !(targets = calloc(l.n + 1, sizeof(*targets))))
                r = -ENOMEM;
        if (r >= 0)
                r = op_pool_plan(c, &l, targets, errbuf, errlen);
        for (size_t i = 0; targets && i < l.n; i++) {
                const struct op_lang *g = &l.v[i];
                uint32_t mb = op_lang_memory_mb(c, g);

                fprintf(f, "# pool %s: %u x %u MiB%s\n", g->name, targets[i], mb,
                        !g->available ? " (no image)"
                        : !g->enabled ? " (disabled)"
                                      : "");
                total += (uint64_t)targets[i] * mb;
        }
        if (targets && c->pool_memory_budget_mb)
                fprintf(f, "# pools: %llu MiB of guest memory, budget %u MiB\n",
                        (unsigned long long)total, c->pool_memory_budget_mb);
        else if (targets)
                fprintf(f, "# pools: %llu MiB of guest memory, no budget\n",
                        (unsigned long long)total);
        op_langs_free(&l);
        return r;
}
