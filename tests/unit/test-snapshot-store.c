/* test-snapshot-store.c: unit tests of the snapshot cache on a scratch directory: staging left
 * by a dead process is removed and a held one kept, versions are listed newest first without
 * staging or set-aside entries, a damaged version is set aside, the cheap file check sees files
 * deleted, resized or replaced by a symlink, a FIFO manifest is refused without blocking, and
 * "current" pointing outside is refused. */
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
#include "snapshot.h"

#define V1 "20260101T000000Z-aaaaaa"
#define V2 "20260202T000000Z-bbbbbb"

static char root[64];

static void put(const char *rel, const char *content)
{
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(content, f);
        fclose(f);
}

static void dir(const char *rel)
{
        char path[256];

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        assert_int_equal(mkdir(path, 0755), 0);
}

static bool exists(const char *rel)
{
        char path[256];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        return lstat(path, &st) == 0;
}

/* A version with one 5-byte file "mem" and a manifest naming it. */
static void version(const char *v)
{
        char rel[128], m[1024];

        snprintf(rel, sizeof(rel), "c/py/%s", v);
        dir(rel);
        snprintf(rel, sizeof(rel), "c/py/%s/mem", v);
        put(rel, "12345");
        snprintf(m, sizeof(m),
                 "{\"version\": \"%s\", \"language\": \"py\", \"created\": \"x\", "
                 "\"agent_version\": \"1\", \"vmm\": \"qemu\", \"vmm_version\": \"7\", "
                 "\"accel\": \"tcg\", \"language_version\": \"3\", \"memory_mb\": 64, "
                 "\"vcpus\": 1, \"files\": [{\"name\": \"mem\", \"size\": 5, \"sha256\": "
                 "\"%064d\"}]}",
                 v, 0);
        snprintf(rel, sizeof(rel), "c/py/%s/manifest.json", v);
        put(rel, m);
}

static int setup(void **state)
{
        char cache[128];

        snprintf(root, sizeof(root), "/tmp/test-snapshot-store.XXXXXX");
        assert_non_null(mkdtemp(root));
        dir("c");
        dir("c/py");
        version(V1);
        version(V2);
        snprintf(cache, sizeof(cache), "%s/c", root);
        assert_int_equal(snap_set_current(cache, "py", V2), 0);
        return 0;
}

static int teardown(void **state)
{
        _cleanup_close_ int fd = open("/tmp", O_RDONLY | O_DIRECTORY);

        snap_rmtree(fd, root + 5);
        return 0;
}

static void test_stale_staging_removed_held_kept(void **state)
{
        char cache[128], held[128];
        _cleanup_close_ int lock = -1;

        snprintf(cache, sizeof(cache), "%s/c", root);
        dir("c/py/.tmp-dead");
        put("c/py/.tmp-dead/mem", "x");
        dir("c/py/.tmp-live");
        assert_int_equal(symlink(V1, strcat(strcpy(held, root), "/c/py/.current.new")), 0);
        snprintf(held, sizeof(held), "%s/c/py/.tmp-live", root);
        lock = snap_stage_lock(held);
        assert_true(lock >= 0);
        assert_int_equal(snap_clean_stale(cache, "py"), 2); /* .tmp-dead and .current.new */
        assert_false(exists("c/py/.tmp-dead"));
        assert_false(exists("c/py/.current.new"));
        assert_true(exists("c/py/.tmp-live"));
        assert_true(exists("c/py/" V1));
        assert_int_equal(snap_clean_stale(cache, "none"), 0);
}

static void test_list_newest_first_and_set_aside(void **state)
{
        _cleanup_free_ char(*v)[SNAP_NAME_MAX] = NULL;
        char cache[128];
        size_t n = 0;

        snprintf(cache, sizeof(cache), "%s/c", root);
        dir("c/py/.tmp-x");
        assert_int_equal(snap_list_versions(cache, "py", &v, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0], V2);
        assert_string_equal(v[1], V1);
        free(v);
        v = NULL;

        assert_int_equal(snap_set_aside(cache, "py", V2), 0);
        assert_true(exists("c/py/.damaged-" V2 "/mem"));
        assert_int_equal(snap_list_versions(cache, "py", &v, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0], V1);
        assert_int_equal(snap_set_aside(cache, "py", "../escape"), -EINVAL);
}

static void test_check_files(void **state)
{
        struct snap_manifest m;
        char cache[128], err[256], path[256];
        int dirfd;

        snprintf(cache, sizeof(cache), "%s/c", root);
        assert_int_equal(snap_open(cache, "py", NULL, &dirfd, &m, err, sizeof(err)), 0);
        assert_string_equal(m.version, V2);
        assert_int_equal(snap_check_files(dirfd, &m, err, sizeof(err)), 0);

        put("c/py/" V2 "/mem", "123456"); /* resized */
        assert_int_equal(snap_check_files(dirfd, &m, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "size 6, manifest says 5"));

        snprintf(path, sizeof(path), "%s/c/py/" V2 "/mem", root);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(snap_check_files(dirfd, &m, err, sizeof(err)), -ENOENT);

        assert_int_equal(symlink("/etc/passwd", path), 0); /* never followed */
        assert_int_equal(snap_check_files(dirfd, &m, err, sizeof(err)), -EBADMSG);
        close(dirfd);

        /* a FIFO as the manifest: refused at once, not waited on */
        snprintf(path, sizeof(path), "%s/c/py/" V2 "/manifest.json", root);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkfifo(path, 0644), 0);
        assert_int_equal(snap_open(cache, "py", V2, &dirfd, &m, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "not a regular file"));
}

static void test_current_outside_refused(void **state)
{
        struct snap_manifest m;
        char cache[128], err[256], path[256];
        int dirfd = -1;

        snprintf(cache, sizeof(cache), "%s/c", root);
        snprintf(path, sizeof(path), "%s/c/py/current", root);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(symlink("../../elsewhere", path), 0);
        assert_int_equal(snap_open(cache, "py", NULL, &dirfd, &m, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "points outside"));
        /* a version directory replaced by a symlink is not followed either */
        snprintf(path, sizeof(path), "%s/c/py/" V1, root);
        assert_int_equal(snap_rmtree(AT_FDCWD, path), 0);
        assert_int_equal(symlink("/tmp", path), 0);
        assert_int_equal(snap_open(cache, "py", V1, &dirfd, &m, err, sizeof(err)), -ENOTDIR);
}

/* levels nested directories "d" under root/name, each with a file and a link to root/keep. */
static void nest(const char *name, unsigned levels)
{
        char path[8192];
        size_t n;

        n = (size_t)snprintf(path, sizeof(path), "%s/%s", root, name);
        assert_int_equal(mkdir(path, 0700), 0);
        for (unsigned i = 0; i < levels; i++) {
                char file[8300];
                int fd;

                snprintf(file, sizeof(file), "%s/f", path);
                fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
                assert_true(fd >= 0);
                close(fd);
                snprintf(file, sizeof(file), "%s/l", path);
                assert_int_equal(symlink("../../../keep", file), 0);
                n += (size_t)snprintf(path + n, sizeof(path) - n, "/d");
                assert_int_equal(mkdir(path, 0700), 0);
        }
}

/* What nest() made, removed from its deepest level up. */
static void unnest(const char *name, unsigned levels)
{
        char path[8192];
        size_t n = (size_t)snprintf(path, sizeof(path), "%s/%s", root, name);

        for (unsigned i = 0; i < levels; i++)
                n += (size_t)snprintf(path + n, sizeof(path) - n, "/d");
        for (unsigned i = 0; i <= levels; i++) {
                char file[8300];

                snprintf(file, sizeof(file), "%s/f", path);
                (void)unlink(file);
                snprintf(file, sizeof(file), "%s/l", path);
                (void)unlink(file);
                assert_int_equal(rmdir(path), 0);
                *strrchr(path, '/') = 0;
        }
}

/* A tree opd made goes whole (links not followed); one nested deeper than opd ever nests is
 * left below SNAP_RMTREE_DEPTH_MAX levels with -ELOOP, costing no more fds or frames. */
static void test_rmtree_bounded(void **state)
{
        char path[128];
        struct stat st;
        int fd;

        snprintf(path, sizeof(path), "%s/keep", root);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        nest("shallow", 10);
        fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(snap_rmtree(fd, "shallow"), 0);
        assert_int_equal(fstatat(fd, "shallow", &st, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(fstatat(fd, "keep", &st, 0), 0);

        nest("deep", SNAP_RMTREE_DEPTH_MAX + 36);
        assert_int_equal(snap_rmtree(fd, "deep"), -ELOOP);
        assert_int_equal(fstatat(fd, "deep", &st, AT_SYMLINK_NOFOLLOW), 0);    /* left */
        assert_int_equal(fstatat(fd, "deep/f", &st, AT_SYMLINK_NOFOLLOW), -1); /* its files not */
        assert_int_equal(fstatat(fd, "keep", &st, 0), 0);
        unnest("deep", SNAP_RMTREE_DEPTH_MAX + 36);
        /* a name that is a link or a file is unlinked, not followed */
        assert_int_equal(symlinkat("keep", fd, "link"), 0);
        assert_int_equal(snap_rmtree(fd, "link"), 0);
        assert_int_equal(fstatat(fd, "keep", &st, 0), 0);
        assert_int_equal(snap_rmtree(fd, "keep"), 0);
        assert_int_equal(fstatat(fd, "keep", &st, 0), -1);
        assert_int_equal(snap_rmtree(fd, "gone"), 0);
        close(fd);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_stale_staging_removed_held_kept, setup, teardown),
            cmocka_unit_test_setup_teardown(test_list_newest_first_and_set_aside, setup, teardown),
            cmocka_unit_test_setup_teardown(test_check_files, setup, teardown),
            cmocka_unit_test_setup_teardown(test_current_outside_refused, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rmtree_bounded, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
