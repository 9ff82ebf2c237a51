/* test-snap-stage.c: unit tests of lib/store/snap-stage.c on a scratch cache: planning what to
 * fetch (chunks already staged, chunks copied from the installed version by hash, zero chunks), the
 * install (whole files hashed for the plain layout only), and that a mismatch leaves "current"
 * alone; the chunk roots (a known vector, the chunk manifest's checks, older manifests without
 * them) and the record an install leaves so the pool does not hash the files again; a trusted
 * serial recorded before "current" switches, or the install failing. */
#include <errno.h>
#include <fcntl.h>
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

#include "cleanup.h"
#include "s3-layout.h"
#include "snap-stage.h"
#include "util.h"

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
                if (!op_is_zero(mem + (size_t)i * CS, CS))
                        op_sha256_hex(mem + (size_t)i * CS, CS, m->files[0].chunks[i].sha256);
        s3_chunkman_set_roots(m);
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
        assert_int_equal(s3_stage_install(cache, &m1, false, err, sizeof(err)), 0);
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
                assert_int_equal(s3_stage_install(cache, &plain, false, err, sizeof(err)),
                                 -EBADMSG);
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
        assert_int_equal(s3_stage_install(cache, &m2, false, err, sizeof(err)), 0);
        snprintf(err, sizeof(err), "%s/python/current", cache);
        assert_int_equal(readlink(err, link, sizeof(link)), 2);
        assert_memory_equal(link, "v2", 2);
        s3_stage_plan_free(&p);
        s3_chunkman_free(&m1);
        s3_chunkman_free(&m2);
}

/* The definition in docs/s3.md, computed independently (Python's hashlib):
 * sha256(b"opd chunk root v1\n" + (65536).to_bytes(8, "big") + (131082).to_bytes(8, "big") +
 *        sha256(b"\x01" * 65536) + b"\0" * 32 + sha256(b"\x02" * 10)) */
static void test_root_vector(void **state)
{
        _cleanup_free_ char *c0 = malloc(CS);
        char h0[SHA256_HEX_LEN + 1], h2[SHA256_HEX_LEN + 1], root[SHA256_HEX_LEN + 1];
        const char *leaves[3] = {h0, "", h2};
        _cleanup_close_ int dir = -1, fd = -1;
        char two[10];

        memset(c0, 1, CS);
        memset(two, 2, sizeof(two));
        op_sha256_hex(c0, CS, h0);
        op_sha256_hex(two, sizeof(two), h2);
        snap_chunk_root(CS, 2 * CS + 10, leaves, 3, root);
        assert_string_equal(root,
                            "93c912996692f3367afee9c38c41f94b9c25333b14f46f720ddd9151f8fa2a3a");
        /* an empty file: no leaves */
        snap_chunk_root(CS, 0, leaves, 0, root);
        assert_string_equal(root,
                            "42304f98944a12e9e8caf41ec7fda24cf4c1d223d7a46e51aecaaf6f3455e8fe");
        /* the same from the file's bytes; a file longer or shorter than its size is not it */
        dir = open(cache, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        fd = openat(dir, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_int_equal(pwrite(fd, c0, CS, 0), CS);
        assert_int_equal(pwrite(fd, two, sizeof(two), 2 * CS), sizeof(two));
        assert_int_equal(snap_chunk_root_file(dir, "f", 2 * CS + 10, CS, root), 0);
        assert_string_equal(root,
                            "93c912996692f3367afee9c38c41f94b9c25333b14f46f720ddd9151f8fa2a3a");
        assert_int_equal(snap_chunk_root_file(dir, "f", 2 * CS + 9, CS, root), -EBADMSG);
        assert_int_equal(snap_chunk_root_file(dir, "f", 2 * CS + 11, CS, root), -EBADMSG);
}

static void test_chunkman_roots(void **state)
{
        _cleanup_free_ char *v1 = malloc((size_t)N * CS);
        _cleanup_free_ char *text = NULL, *old = NULL, *bad = NULL;
        struct s3_chunkman m, back;
        char err[512], *p;

        fill(v1, 30);
        manifest_for("v1", v1, &m);
        assert_int_equal(m.snap.chunk_size, CS);
        text = s3_chunkman_text(&m);
        assert_non_null(strstr(text, "\"root\":\""));
        assert_int_equal(s3_chunkman_parse(text, strlen(text), &back, err, sizeof(err)), 0);
        assert_string_equal(back.snap.files[0].root, m.snap.files[0].root);
        s3_chunkman_free(&back);
        /* a root that its chunks do not make: refused, naming the file */
        bad = strdup(text);
        p = strstr(bad, "\"root\":\"") + 8;
        *p = *p == '0' ? '1' : '0';
        assert_int_equal(s3_chunkman_parse(bad, strlen(bad), &back, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "the root of mem is"));
        /* a chunk changed under a kept root: refused too */
        free(bad);
        bad = strdup(text);
        p = strstr(bad, m.files[0].chunks[0].sha256);
        *p = *p == 'a' ? 'b' : 'a';
        assert_int_equal(s3_chunkman_parse(bad, strlen(bad), &back, err, sizeof(err)), -EINVAL);
        /* an older publisher wrote no roots: read, the roots computed from the signed chunks */
        m.snap.chunk_size = 0;
        old = s3_chunkman_text(&m);
        assert_null(strstr(old, "\"root\""));
        assert_int_equal(s3_chunkman_parse(old, strlen(old), &back, err, sizeof(err)), 0);
        assert_int_equal(back.snap.chunk_size, CS);
        assert_string_equal(back.snap.files[0].root, m.snap.files[0].root);
        s3_chunkman_free(&back);
        /* the snapshot's chunk_size must be the manifest's */
        m.snap.chunk_size = 2 * CS;
        free(bad);
        bad = s3_chunkman_text(&m);
        assert_int_equal(s3_chunkman_parse(bad, strlen(bad), &back, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "chunk_size"));
        s3_chunkman_free(&m);
}

static void test_install_record(void **state)
{
        _cleanup_free_ char *v1 = malloc((size_t)N * CS);
        struct s3_chunkman m;
        struct s3_stage_plan p;
        struct snap_manifest sm;
        char err[512], path[256];
        int dir, fd;

        fill(v1, 40);
        manifest_for("v1", v1, &m);
        assert_int_equal(s3_stage_prepare(cache, &m, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &m, &p), 0);
        fetch(&m, &p, v1);
        s3_stage_plan_free(&p);
        assert_int_equal(s3_stage_install(cache, &m, false, err, sizeof(err)), 0);
        /* installed: the manifest keeps the roots, the record describes the files */
        assert_int_equal(snap_open(cache, "python", NULL, &dir, &sm, err, sizeof(err)), 0);
        assert_int_equal(sm.chunk_size, CS);
        assert_string_equal(sm.files[0].root, m.snap.files[0].root);
        assert_true(snap_verified_check(dir, &sm));
        assert_int_equal(snap_verify(dir, &sm, err, sizeof(err)), 0);
        /* a byte changed in place: no longer what was checked; verify finds it by its root */
        fd = openat(dir, "mem", O_WRONLY | O_CLOEXEC);
        assert_int_equal(pwrite(fd, "X", 1, 5), 1);
        close(fd);
        assert_false(snap_verified_check(dir, &sm));
        assert_int_equal(snap_verify(dir, &sm, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "checksum mismatch (chunk root"));
        /* the right bytes again, but in a copy (another inode, as aws s3 sync or cp makes):
         * not what the install checked, so the pool hashes it; verify passes */
        snprintf(path, sizeof(path), "%s/python/v1/mem.new", cache);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_int_equal(write(fd, v1, (size_t)N * CS), (ssize_t)N * CS);
        close(fd);
        assert_int_equal(renameat(dir, "mem.new", dir, "mem"), 0);
        assert_false(snap_verified_check(dir, &sm));
        assert_int_equal(snap_verify(dir, &sm, err, sizeof(err)), 0);
        close(dir);
        s3_chunkman_free(&m);
}

/* With record_serial, the serial is on disk before "current" names the version: an install
 * that cannot record it (here .serial.new is a directory) fails and leaves current as it was,
 * so a crash between the two can never leave the older version's serial recorded under the new
 * current. A lower serial than the one recorded is not written back. */
static void test_install_records_serial_first(void **state)
{
        _cleanup_free_ char *v1 = malloc((size_t)N * CS), *v2 = malloc((size_t)N * CS);
        struct s3_chunkman m1, m2;
        struct s3_stage_plan p;
        char err[512], path[256], link[64] = "", seen[SNAP_NAME_MAX];
        uint64_t serial;

        fill(v1, 50);
        fill(v2, 60);
        manifest_for("v1", v1, &m1);
        manifest_for("v2", v2, &m2);
        m1.serial = 7;
        m2.serial = 8;
        assert_int_equal(s3_stage_prepare(cache, &m1, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &m1, &p), 0);
        fetch(&m1, &p, v1);
        s3_stage_plan_free(&p);
        assert_int_equal(s3_stage_install(cache, &m1, true, err, sizeof(err)), 0);
        assert_int_equal(s3_serial_read(cache, "python", &serial, seen), 0);
        assert_int_equal(serial, 7);
        assert_string_equal(seen, "v1");

        assert_int_equal(s3_stage_prepare(cache, &m2, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &m2, &p), 0);
        fetch(&m2, &p, v2);
        s3_stage_plan_free(&p);
        snprintf(path, sizeof(path), "%s/python/.serial.new", cache);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(s3_stage_install(cache, &m2, true, err, sizeof(err)), -EISDIR);
        assert_non_null(strstr(err, "cannot record serial 8"));
        assert_non_null(strstr(err, "current not switched"));
        snprintf(path, sizeof(path), "%s/python/current", cache);
        assert_int_equal(readlink(path, link, sizeof(link)), 2);
        assert_memory_equal(link, "v1", 2);
        assert_int_equal(s3_serial_read(cache, "python", &serial, seen), 0);
        assert_int_equal(serial, 7);

        /* the record works again: a higher serial is written, a lower one never */
        snprintf(path, sizeof(path), "%s/python/.serial.new", cache);
        assert_int_equal(rmdir(path), 0);
        assert_int_equal(s3_serial_write(cache, "python", 8, "v2"), 0);
        assert_int_equal(s3_serial_write(cache, "python", 7, "v1"), 0);
        assert_int_equal(s3_serial_read(cache, "python", &serial, seen), 0);
        assert_int_equal(serial, 8);
        assert_string_equal(seen, "v2");
        s3_chunkman_free(&m1);
        s3_chunkman_free(&m2);
}

static const char *sb_path(const char *dir, const char *rel)
{
        static char buf[256];

        snprintf(buf, sizeof(buf), "%s/%s", dir, rel);
        return buf;
}

/* Another language's version with a file of the same content (the root of an image group, the
 * kernel): linked to the installed file, nothing fetched, nothing written into it; not when that
 * file was written since its install (its record no longer describes it). */
static void test_link_same_content(void **state)
{
        _cleanup_free_ char *v1 = malloc((size_t)N * CS);
        struct s3_chunkman m, b, r;
        struct s3_stage_plan p;
        char err[512], path[256];
        struct stat sa, sb;
        uint64_t limit;
        int fd;

        fill(v1, 50);
        manifest_for("v1", v1, &m);
        assert_int_equal(s3_stage_prepare(cache, &m, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &m, &p), 0);
        assert_int_equal(p.linked, 0);
        fetch(&m, &p, v1);
        s3_stage_plan_free(&p);
        assert_int_equal(s3_stage_install(cache, &m, false, err, sizeof(err)), 0);

        manifest_for("b1", v1, &b);
        snprintf(b.snap.lang, sizeof(b.snap.lang), "bash");
        /* the space check counts a file as linked only once the link is made (one that cannot
         * be made is fetched whole), and a file of two names once: the cache holds v1's mem
         * (N chunks), room for half as much again */
        limit = (uint64_t)N * CS * 3 / 2;
        assert_int_equal(s3_stage_check_space(cache, &b, 0, limit, err, sizeof(err)), -ENOSPC);
        assert_non_null(strstr(err, "s3.cache_max_mb"));
        assert_int_equal(s3_stage_link(cache, &b, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_check_space(cache, &b, 0, limit, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_prepare(cache, &b, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &b, &p), 0);
        assert_int_equal(p.n_need, 0);
        assert_int_equal(p.linked, N);
        s3_stage_plan_free(&p);
        /* a resumed prepare keeps the link */
        assert_int_equal(s3_stage_prepare(cache, &b, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &b, &p), 0);
        assert_int_equal(p.linked, N);
        s3_stage_plan_free(&p);
        assert_int_equal(s3_stage_install(cache, &b, false, err, sizeof(err)), 0);
        snprintf(path, sizeof(path), "%s/python/v1/mem", cache);
        assert_int_equal(stat(path, &sa), 0);
        snprintf(path, sizeof(path), "%s/bash/b1/mem", cache);
        assert_int_equal(stat(path, &sb), 0);
        assert_true(sa.st_ino == sb.st_ino && sa.st_nlink == 2);

        /* python's file written in place: not trusted, ruby's copy is fetched */
        snprintf(path, sizeof(path), "%s/python/v1/mem", cache);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        assert_int_equal(pwrite(fd, v1 + 5, 1, 5), 1);
        close(fd);
        snprintf(path, sizeof(path), "%s/bash/current", cache);
        assert_int_equal(unlink(path), 0); /* and bash has no current version any more */
        manifest_for("r1", v1, &r);
        snprintf(r.snap.lang, sizeof(r.snap.lang), "ruby");
        /* a link an earlier run staged, to a file no longer trusted: removed, counted whole */
        snprintf(path, sizeof(path), "%s/ruby", cache);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/ruby/.sync-r1", cache);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/ruby/.sync-r1/mem", cache);
        assert_int_equal(link(sb_path(cache, "python/v1/mem"), path), 0);
        assert_int_equal(s3_stage_link(cache, &r, err, sizeof(err)), 0);
        assert_int_equal(stat(path, &sa), -1);
        assert_int_equal(s3_stage_check_space(cache, &r, 0, limit, err, sizeof(err)), -ENOSPC);
        assert_int_equal(s3_stage_prepare(cache, &r, err, sizeof(err)), 0);
        assert_int_equal(s3_stage_plan_read(cache, &r, &p), 0);
        assert_int_equal(p.linked, 0);
        assert_int_equal(p.n_need, N - 1);
        s3_stage_plan_free(&p);
        s3_chunkman_free(&m);
        s3_chunkman_free(&b);
        s3_chunkman_free(&r);
}

/* The record's reader takes only the exact text written for these files. */
static void test_record_text(void **state)
{
        struct snap_manifest sm = {.n_files = 2};
        struct snap_file_id ids[2] = {{1, 2, 3, 4, 5}, {6, 7, 8, -9, 10}};
        _cleanup_free_ char *text = NULL;

        snprintf(sm.version, sizeof(sm.version), "v1");
        snprintf(sm.files[0].name, sizeof(sm.files[0].name), "mem");
        snprintf(sm.files[1].name, sizeof(sm.files[1].name), "vmstate");
        text = snap_verified_text(&sm, ids);
        assert_string_equal(text, "opd verified at install v1 v1\nmem 1 2 3 4 5\n"
                                  "vmstate 6 7 8 -9 10\n");
        assert_true(snap_verified_match(text, strlen(text), &sm, ids));
        assert_false(snap_verified_match(text, strlen(text) - 1, &sm, ids));
        ids[1].ino = 70;
        assert_false(snap_verified_match(text, strlen(text), &sm, ids));
        assert_false(snap_verified_match("", 0, &sm, ids));
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
            cmocka_unit_test_setup_teardown(test_root_vector, setup, teardown),
            cmocka_unit_test_setup_teardown(test_chunkman_roots, setup, teardown),
            cmocka_unit_test_setup_teardown(test_install_record, setup, teardown),
            cmocka_unit_test_setup_teardown(test_install_records_serial_first, setup, teardown),
            cmocka_unit_test_setup_teardown(test_link_same_content, setup, teardown),
            cmocka_unit_test(test_record_text),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
