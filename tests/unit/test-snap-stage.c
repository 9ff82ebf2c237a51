/* test-snap-stage.c: unit tests of lib/store/snap-stage.c on a scratch cache: planning what to
 * fetch (chunks already staged, chunks copied from the installed version by hash, zero chunks), the
 * install (whole files hashed for the plain layout only), and that a mismatch leaves "current"
 * alone. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "s3-layout.h"
#include "snap-stage.h"

#define CS S3_CHUNK_SIZE_MIN /* small chunks keep the test fast */
#define N  6

static char cache[64];

/* N chunks: chunk 2 zeros, the others filled with (seed + i). */
static void fill(char *buf, int seed)
{
        for (int i = 0; i < N; i++)
                memset(buf + (size_t)i * CS, i == 2 ? 0 : seed + i, CS);
}

static void manifest_for(const char *version, const char *mem, struct s3_chunkman *m)
{
        *m = (struct s3_chunkman){.chunk_size = CS};
        snprintf(m->snap.version, sizeof(m->snap.version), "%s", version);
        snprintf(m->snap.lang, sizeof(m->snap.lang), "python");
        snprintf(m->snap.vmm, sizeof(m->snap.vmm), "qemu");
        snprintf(m->snap.accel, sizeof(m->snap.accel), "tcg");
        m->snap.memory_mb = 64;
        m->snap.vcpus = 1;
        m->snap.n_files = 1;
        snprintf(m->snap.files[0].name, sizeof(m->snap.files[0].name), "mem");
        m->snap.files[0].size = (uint64_t)N * CS;
        op_sha256_hex(mem, (size_t)N * CS, m->snap.files[0].sha256);
        m->files[0].n_chunks = N;
        m->files[0].chunks = calloc(N, sizeof(struct s3_chunk));
        for (int i = 0; i < N; i++)
                if (!s3_is_zero(mem + (size_t)i * CS, CS))
                        op_sha256_hex(mem + (size_t)i * CS, CS, m->files[0].chunks[i].sha256);
}

/* What a sync does between plan and install: write the needed chunks. */
static void fetch(const struct s3_chunkman *m, const struct s3_stage_plan *p, const char *mem)
{
        int fd = s3_stage_open(cache, m, 0);

        assert_true(fd >= 0);
        for (uint32_t i = 0; i < p->n_need; i++) {
                off_t off = (off_t)p->need[i].chunk * CS;
                assert_int_equal(pwrite(fd, mem + off, CS, off), CS);
        }
        close(fd);
}

static void test_plan_resume_reuse_install(void **state)
{
        _cleanup_free_ char *v1 = malloc((size_t)N * CS), *v2 = malloc((size_t)N * CS);
        struct s3_chunkman m1, m2;
        struct s3_stage_plan p;
        char err[512], link[64];
        int fd;

        fill(v1, 10);
        manifest_for("v1", v1, &m1);
        /* an empty cache: every non-zero chunk is needed */
        assert_int_equal(s3_stage_prepare(cache, &m1, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &m1, &p), 0);
        assert_int_equal(p.n_need, N - 1);
        assert_int_equal(p.zero, 1);
        /* interrupted after two chunks: the next plan keeps them */
        p.n_need = 2;
        fetch(&m1, &p, v1);
        s3_stage_plan_free(&p);
        assert_int_equal(s3_stage_prepare(cache, &m1, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &m1, &p), 0);
        assert_int_equal(p.present, 2);
        assert_int_equal(p.n_need, N - 3);
        fetch(&m1, &p, v1);
        s3_stage_plan_free(&p);
        assert_int_equal(s3_stage_install(cache, &m1, err, sizeof(err)), 0);
        snprintf(err, sizeof(err), "%s/python/current", cache);
        assert_int_equal(readlink(err, link, sizeof(link)), 2);

        /* v2 changes chunk 4: one chunk to fetch, the rest copied from v1 by hash */
        memcpy(v2, v1, (size_t)N * CS);
        memset(v2 + 4 * CS, 99, CS);
        manifest_for("v2", v2, &m2);
        assert_int_equal(s3_stage_prepare(cache, &m2, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &m2, &p), 0);
        assert_int_equal(p.n_need, 1);
        assert_int_equal(p.need[0].chunk, 4);
        assert_int_equal(p.copied, N - 2);
        /* a plain version (whole-file hashes only) with a wrong chunk is caught at install:
         * staging gone, current still v1 */
        {
                _cleanup_free_ char *bad = malloc(CS);
                struct s3_chunkman plain;

                assert_int_equal(s3_chunkman_plain(&m2.snap, CS, &plain), 0);
                assert_int_equal(s3_stage_prepare(cache, &plain, err, sizeof(err)), 0);
                memset(bad, 98, CS);
                fd = s3_stage_open(cache, &plain, 0);
                for (int i = 0; i < N; i++)
                        assert_int_equal(
                            pwrite(fd, i == 4 ? bad : v2 + (size_t)i * CS, CS, (off_t)i * CS), CS);
                close(fd);
                assert_int_equal(s3_stage_install(cache, &plain, err, sizeof(err)), -EBADMSG);
                assert_non_null(strstr(err, "checksum mismatch"));
        }
        snprintf(err, sizeof(err), "%s/python/current", cache);
        assert_int_equal(readlink(err, link, sizeof(link)), 2);
        assert_memory_equal(link, "v1", 2);
        /* chunked: the chunks checked on arrival are the checksum; the install does not read
         * the files again */
        s3_stage_plan_free(&p);
        assert_int_equal(s3_stage_prepare(cache, &m2, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &m2, &p), 0);
        fetch(&m2, &p, v2);
        assert_int_equal(s3_stage_install(cache, &m2, err, sizeof(err)), 0);
        snprintf(err, sizeof(err), "%s/python/current", cache);
        assert_int_equal(readlink(err, link, sizeof(link)), 2);
        assert_memory_equal(link, "v2", 2);
        s3_stage_plan_free(&p);
        s3_chunkman_free(&m1);
        s3_chunkman_free(&m2);
}

static int setup(void **state)
{
        snprintf(cache, sizeof(cache), "/tmp/opd-test-stage-XXXXXX");
        return mkdtemp(cache) ? 0 : -1;
}

static int teardown(void **state)
{
        return snap_rmtree(AT_FDCWD, cache);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_plan_resume_reuse_install, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
