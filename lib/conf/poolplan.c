/* poolplan.c: per-language pool sizes and their memory, checked against the budget, and scaled
 * to fit max_vms. */
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

int op_pool_plan_fit(const struct op_config *c, const struct op_langs *l, const uint32_t *sizes,
                     uint32_t *ret_targets, char *note, size_t notelen)
{
        uint64_t sum = 0, planned;
        size_t off = 0;

        for (size_t i = 0; i < l->n; i++) {
                ret_targets[i] = sizes[i];
                sum += sizes[i];
        }
        planned = sum;
        if (notelen)
                note[0] = 0;
        if (sum <= c->max_vms)
                return 0;
        while (sum > c->max_vms) {
                size_t big = 0;

                for (size_t i = 1; i < l->n; i++)
                        if (ret_targets[i] >= ret_targets[big])
                                big = i;
                ret_targets[big]--;
                sum--;
        }
        if (!notelen)
                return 1;
        int k = snprintf(note, notelen,
                         "the pools' sizes add up to %llu paused VMs, over max_vms = %u: scaled "
                         "to",
                         (unsigned long long)planned, c->max_vms);
        off = k > 0 && (size_t)k < notelen ? (size_t)k : notelen - 1;
        for (size_t i = 0; i < l->n && off + 1 < notelen; i++) {
                if (!sizes[i])
                        continue;
                k = snprintf(note + off, notelen - off, " %s %u", l->v[i].name, ret_targets[i]);
                off = k > 0 && off + (size_t)k < notelen ? off + (size_t)k : notelen - 1;
        }
        if (off + 1 < notelen)
                snprintf(note + off, notelen - off,
                         "; a language with none idle is restored on demand in the slot of the "
                         "least recently used idle clone");
        return 1;
}

int op_pool_plan_report(const struct op_config *c, FILE *f, char *errbuf, size_t errlen)
{
        _cleanup_free_ uint32_t *targets = NULL, *standing = NULL;
        struct op_langs l = {0};
        uint64_t total = 0;
        char note[1024] = "";
        int r;

        r = op_langs_load(c->languages_file, c->images_dir, &l, errbuf, errlen);
        if (r >= 0)
                r = op_langs_enable(&l, c->languages_enabled, errbuf, errlen);
        if (r >= 0 && (!(targets = calloc(l.n + 1, sizeof(*targets))) ||
                       !(standing = calloc(l.n + 1, sizeof(*standing)))))
                r = -ENOMEM;
        if (r >= 0)
                r = op_pool_plan(c, &l, targets, errbuf, errlen);
        if (standing)
                op_pool_plan_fit(c, &l, targets, standing, note, sizeof(note));
        for (size_t i = 0; targets && standing && i < l.n; i++) {
                const struct op_lang *g = &l.v[i];
                uint32_t mb = op_lang_memory_mb(c, g);
                uint32_t most = targets[i] > c->pool_max_size ? targets[i] : c->pool_max_size;

                if (!targets[i])
                        most = 0;
                fprintf(f, "# pool %s: %u x %u MiB", g->name, targets[i], mb);
                if (standing[i] != targets[i])
                        fprintf(f, ", %u standing (max_vms)", standing[i]);
                if (targets[i])
                        fprintf(f, ", up to %u under demand", most);
                fprintf(f, "%s\n",
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
        if (note[0])
                fprintf(f, "# pools scaled: %s\n", note);
        op_langs_free(&l);
        return r;
}
