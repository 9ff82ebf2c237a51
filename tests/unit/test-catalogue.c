/* test-catalogue.c: catalogue entries with a compile phase, memory and pool size (lib/conf/lang.c),
 * and the pool plan built from them and the configuration, with its memory budget
 * (lib/conf/poolplan.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "lang.h"
#include "poolplan.h"

static char dir[] = "/tmp/op-catalogue-test-XXXXXX";
static char registry[64];

/* Write the registry and an image for each name in built (comma list). */
static void setup_registry(const char *json, const char *built)
{
        char path[256];
        FILE *f = fopen(registry, "w");

        assert_non_null(f);
        fputs(json, f);
        fclose(f);
        for (const char *p = built; *p;) {
                size_t k = strcspn(p, ",");

                snprintf(path, sizeof(path), "%s/%.*s", dir, (int)k, p);
                mkdir(path, 0755);
                snprintf(path, sizeof(path), "%s/%.*s/rootfs.ext4", dir, (int)k, p);
                f = fopen(path, "w");
                assert_non_null(f);
                fclose(f);
                p += k + (p[k] == ',');
        }
}

#define ENTRIES                                                                                    \
        "{\"languages\":["                                                                         \
        "{\"name\":\"sh\",\"file\":\"main.sh\",\"run\":[\"sh\",\"{file}\"]},"                      \
        "{\"name\":\"c\",\"file\":\"main.c\",\"run\":[\"./main\"],\"pool_size\":1,"                \
        "\"compile\":{\"argv\":[\"gcc\",\"-o\",\"main\",\"{file}\"],\"timeout_ms\":9000,"          \
        "\"output_max\":100}},"                                                                    \
        "{\"name\":\"java\",\"file\":\"Main.java\",\"run\":[\"java\",\"Main\"],"                   \
        "\"memory_mb\":1024,\"pool_size\":1,"                                                      \
        "\"compile\":{\"argv\":[\"javac\",\"{file}\"]}},"                                          \
        "{\"name\":\"rare\",\"file\":\"x\",\"run\":[\"x\"],\"pool_size\":0,\"image\":\"c\"},"      \
        "{\"name\":\"py\",\"file\":\"m\",\"run\":[\"p\"],\"warm\":{\"run\":[\"p\",\"w\"]}},"       \
        "{\"name\":\"js\",\"file\":\"m\",\"run\":[\"n\"],"                                         \
        "\"warm\":{\"run\":[\"n\",\"w\"],\"start\":\"clone\",\"install\":{}}},"                    \
        "{\"name\":\"rb\",\"file\":\"m\",\"run\":[\"r\"],"                                         \
        "\"warm\":{\"run\":[\"r\"],\"start\":\"snapshot\",\"ready_timeout_ms\":300000,"            \
        "\"sessions\":false}}]}"
#define ENTRIES_N 7 /* the languages of ENTRIES */

static void test_entries(void **state)
{
        struct op_langs l;
        char err[256], **argv = NULL;

        setup_registry(ENTRIES, "sh,c,java");
        assert_int_equal(op_langs_load(registry, dir, &l, err, sizeof(err)), 0);
        assert_int_equal(l.n, ENTRIES_N);
        /* warm runners: none; before the snapshot (the default, or said); in each clone */
        assert_false(op_lang_warm_in_snapshot(&l.v[0]) || op_lang_warm_in_clone(&l.v[0]));
        assert_true(op_lang_warm_in_snapshot(&l.v[4]) && !op_lang_warm_in_clone(&l.v[4]));
        assert_string_equal(l.v[4].warm[1], "w");
        assert_true(op_lang_warm_in_clone(&l.v[5]) && !op_lang_warm_in_snapshot(&l.v[5]));
        assert_int_equal(l.v[5].warm_start, OP_WARM_START_CLONE);
        assert_true(op_lang_warm_in_snapshot(&l.v[6]));
        /* how long a runner may take to say ready: said, else the default */
        assert_int_equal(op_lang_warm_ready_ms(&l.v[6]), 300000);
        assert_int_equal(op_lang_warm_ready_ms(&l.v[5]), OP_WARM_READY_MS_DEFAULT);
        /* started again after a session's call unless said */
        assert_false(l.v[5].warm_no_sessions);
        assert_true(l.v[6].warm_no_sessions);
        assert_null(l.v[0].compile[0]);
        assert_int_equal(op_lang_compile_argv(&l.v[0], &argv), -ENOENT);
        assert_int_equal(l.v[0].pool_size, -1);
        assert_int_equal(l.v[0].memory_mb, 0);
        assert_int_equal(op_lang_compile_argv(&l.v[1], &argv), 0);
        assert_string_equal(argv[3], "main.c");
        assert_null(argv[4]);
        op_argv_free(argv);
        assert_int_equal(l.v[1].compile_timeout_ms, 9000);
        assert_int_equal(l.v[1].compile_output_max, 100);
        assert_int_equal(l.v[1].pool_size, 1);
        /* defaults of a compile object without limits */
        assert_int_equal(l.v[2].compile_timeout_ms, 30000);
        assert_int_equal(l.v[2].compile_output_max, 65536);
        assert_int_equal(l.v[2].memory_mb, 1024);
        op_langs_free(&l);
}

static void bad_entry(const char *entry, const char *want)
{
        char json[1024], err[256];
        struct op_langs l;

        snprintf(json, sizeof(json),
                 "{\"languages\":[{\"name\":\"x\",\"file\":\"f\",\"run\":[\"r\"],%s}]}", entry);
        setup_registry(json, "");
        assert_int_equal(op_langs_load(registry, dir, &l, err, sizeof(err)), -EINVAL);
        if (!strstr(err, want))
                fail_msg("\"%s\": got \"%s\", want \"%s\"", entry, err, want);
}

static void test_bad_entries(void **state)
{
        bad_entry("\"compile\":[]", "\"compile\" must be");
        bad_entry("\"compile\":{\"argv\":[]}", "\"compile\" must be");
        bad_entry("\"compile\":{\"argv\":[\"cc\"],\"timeout_ms\":0}", "\"compile\" must be");
        bad_entry("\"compile\":{\"argv\":[\"cc\"],\"timeout_ms\":600001}", "\"compile\" must be");
        bad_entry("\"compile\":{\"argv\":[\"cc\"],\"output_max\":-1}", "\"compile\" must be");
        bad_entry("\"memory_mb\":63", "\"memory_mb\" must be 64-65536");
        bad_entry("\"memory_mb\":\"1G\"", "\"memory_mb\"");
        bad_entry("\"pool_size\":-1", "\"pool_size\" must be 0-1024");
        bad_entry("\"pool_size\":1025", "\"pool_size\"");
        bad_entry("\"warm\":{}", "\"warm\" must be {\"run\"");
        bad_entry("\"warm\":{\"run\":[]}", "\"warm\" must be {\"run\"");
        bad_entry("\"warm\":{\"run\":[\"w\"],\"start\":\"boot\"}",
                  "\"start\" must be \"snapshot\" or \"clone\"");
        bad_entry("\"warm\":{\"run\":[\"w\"],\"start\":true}", "\"start\" must be");
        bad_entry("\"warm\":{\"run\":[\"w\"],\"ready_timeout_ms\":300001}",
                  "\"warm.ready_timeout_ms\" must be 1000-300000");
        bad_entry("\"warm\":{\"run\":[\"w\"],\"ready_timeout_ms\":999}", "must be 1000-");
        bad_entry("\"warm\":{\"run\":[\"w\"],\"sessions\":0}",
                  "\"warm.sessions\" must be true or false");
        bad_entry("\"warm\":{\"run\":[\"w\"],\"ready_timeout_ms\":\"1\"}", "must be 1000-");
        /* the image group: a name as a language's */
        bad_entry("\"image\":\"\"", "\"image\" must be a name");
        bad_entry("\"image\":\"Gcc\"", "\"image\" must be a name");
        bad_entry("\"image\":\"a/b\"", "\"image\" must be a name");
        bad_entry("\"image\":[\"gcc\"]", "\"image\" must be a name");
        bad_entry("\"image\":\"123456789012345678901234567890123\"", "\"image\" must be");
        setup_registry("{\"languages\":[{\"name\":\"c++\",\"file\":\"f\",\"run\":[\"r\"]}]}", "");
        {
                struct op_langs l;
                char err[256];

                assert_int_equal(op_langs_load(registry, dir, &l, err, sizeof(err)), -EINVAL);
                assert_non_null(strstr(err, "no valid \"name\""));
        }
}

/* op_pool_plan() over ENTRIES: targets holds ENTRIES_N. */
static void plan(const char *sets, const char *enabled, uint32_t *targets, int want,
                 const char *want_msg)
{
        struct op_config c;
        struct op_langs l;
        char err[512];
        int r;

        assert_int_equal(op_config_init(&c), 0);
        for (const char *p = sets; *p;) {
                char kv[128], *eq;
                size_t k = strcspn(p, ";");

                snprintf(kv, sizeof(kv), "%.*s", (int)k, p);
                eq = strchr(kv, '=');
                *eq = 0;
                assert_int_equal(op_config_set(&c, kv, eq + 1, err, sizeof(err)), 0);
                p += k + (p[k] == ';');
        }
        assert_int_equal(op_langs_load(registry, dir, &l, err, sizeof(err)), 0);
        assert_int_equal(op_langs_enable(&l, enabled, err, sizeof(err)), 0);
        assert_int_equal(l.n, ENTRIES_N);
        r = op_pool_plan(&c, &l, targets, err, sizeof(err));
        assert_int_equal(r, want);
        if (want_msg && !strstr(err, want_msg))
                fail_msg("got \"%s\", want \"%s\"", err, want_msg);
        op_langs_free(&l);
        op_config_free(&c);
}

static void test_plan(void **state)
{
        uint32_t t[ENTRIES_N];

        setup_registry(ENTRIES, "sh,c,java,rare");
        /* pool.size 2; the catalogue caps c and java at 1, rare at 0 */
        plan("", "", t, 0, NULL);
        assert_int_equal(t[0], 2);
        assert_int_equal(t[1], 1);
        assert_int_equal(t[2], 1);
        assert_int_equal(t[3], 0);
        /* pool.sizes wins over the catalogue; pool.size 0 empties the others */
        plan("pool.size=0;pool.sizes=c=3,rare=2", "", t, 0, NULL);
        assert_int_equal(t[0], 0);
        assert_int_equal(t[1], 3);
        assert_int_equal(t[2], 0);
        assert_int_equal(t[3], 2);
        /* a disabled language keeps no clones, even when pool.sizes names it */
        plan("pool.sizes=c=3", "sh,java", t, 0, NULL);
        assert_int_equal(t[1], 0);
        /* 2 x 512 + 1 x 512 + 1 x 1024 = 2560 */
        plan("pool.memory_budget_mb=2560", "", t, 0, NULL);
        plan("pool.memory_budget_mb=2559", "", t, -E2BIG,
             "pool.memory_budget_mb = 2559, but the pools would hold 2560 MiB");
        plan("pool.memory_budget_mb=2559", "", t, -E2BIG, "java 1 x 1024");
        plan("pool.memory_budget_mb=2559;vm.memory_mb=256", "", t, 0, NULL);
        plan("pool.sizes=c=x", "", t, -EINVAL, "pool.sizes");
}

static void test_plan_image_missing(void **state)
{
        uint32_t t[ENTRIES_N];

        setup_registry(ENTRIES, "");
        unlink(strcat(strcpy((char[128]){0}, dir), "/java/rootfs.ext4"));
        plan("pool.memory_budget_mb=2048", "", t, 0, NULL);
        assert_int_equal(t[2], 0); /* no image: no pool, no memory */
}

static int setup(void **state)
{
        if (!mkdtemp(dir))
                return -1;
        snprintf(registry, sizeof(registry), "%s/languages.json", dir);
        return 0;
}

static int teardown(void **state)
{
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        return system(cmd);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_entries),
            cmocka_unit_test(test_bad_entries),
            cmocka_unit_test(test_plan),
            cmocka_unit_test(test_plan_image_missing),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
