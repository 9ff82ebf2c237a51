/* test-jail-run.c: unit tests of lib/jail/jail-run.c: a stale VM directory of VM uids is
 * removed whatever its depth, so is a tree far deeper than the fds a process may hold, a spawn
 * that fails leaves no cgroup leaf and no child, and a release removes the leaf. The tests that
 * chown or spawn need root (CI runs them as root); without it they are skipped. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "jail-run.h"

#define OWNER  4242 /* opd's uid and gid in these tests */
#define VM_UID 4301 /* a VM's */

struct fixture {
        char top[64];     /* the test's own directory */
        char run_dir[96]; /* run_dir, opd's */
        char outside[96]; /* a file outside run_dir, root's */
        int run_fd;
        struct jail_conf conf;
        struct jail_cgroup cg;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        int fd;

        assert_non_null(f);
        snprintf(f->top, sizeof(f->top), "/tmp/test-jail-run.XXXXXX");
        assert_non_null(mkdtemp(f->top));
        snprintf(f->run_dir, sizeof(f->run_dir), "%s/run", f->top);
        snprintf(f->outside, sizeof(f->outside), "%s/outside", f->top);
        assert_int_equal(mkdir(f->run_dir, 0700), 0);
        fd = open(f->outside, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        f->run_fd = open(f->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->run_fd >= 0);
        f->conf = (struct jail_conf){.run_dir = f->run_dir,
                                     .uid_min = VM_UID,
                                     .uid_max = VM_UID + 9,
                                     .owner_uid = OWNER,
                                     .owner_gid = OWNER};
        f->cg.base_fd = -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        int fd = open(f->top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(jail_remove_tree(fd, "run"), 0);
        assert_int_equal(jail_remove_tree(fd, "cg"), 0);
        assert_int_equal(jail_remove_tree(fd, "vmm"), 0);
        (void)unlink(f->outside);
        close(fd);
        close(f->run_fd);
        assert_int_equal(rmdir(f->top), 0);
        free(f);
        return 0;
}

/* name under dirfd: a directory of uid:uid, mode; returns an fd on it. */
static int mkdir_owned(int dirfd, const char *name, uid_t uid, mode_t mode)
{
        int fd;

        assert_int_equal(mkdirat(dirfd, name, mode), 0);
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fchown(fd, uid, uid), 0);
        assert_int_equal(fchmod(fd, mode), 0);
        return fd;
}

static void write_owned(int dirfd, const char *name, uid_t uid)
{
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, "data", 4), 4);
        assert_int_equal(fchown(fd, uid, uid), 0);
        close(fd);
}

/* What an escaped VMM leaves: a chain of `levels` directories "d" in its VM directory, each with
 * a file and a link out of the tree, the deepest 0700 holding data; the VM directory as during
 * the VM's life (opd's, the VM's group, 0770). */
static void vm_tree(struct fixture *f, const char *name, unsigned levels)
{
        int fd = mkdir_owned(f->run_fd, name, OWNER, 0700), sub;

        assert_int_equal(fchown(fd, OWNER, VM_UID), 0);
        assert_int_equal(fchmod(fd, 0770), 0);
        for (unsigned i = 1; i <= levels; i++) {
                sub = mkdir_owned(fd, "d", VM_UID, i == levels ? 0700 : 0755);
                write_owned(sub, "f", VM_UID);
                assert_int_equal(symlinkat(f->outside, sub, "out"), 0);
                assert_int_equal(fchownat(sub, "out", VM_UID, VM_UID, AT_SYMLINK_NOFOLLOW), 0);
                close(fd);
                fd = sub;
        }
        close(fd);
}

/* What an older opd's VM left, owned by VM uids, 40 levels deep: removed by root (opd's start),
 * the links out of it not followed. */
static void test_remove_stale_vm_tree(void **state)
{
        struct fixture *f = *state;
        struct stat st;

        if (geteuid() != 0)
                skip();
        vm_tree(f, "vm-1", 40);
        assert_int_equal(jail_remove_tree(f->run_fd, "vm-1"), 0);
        assert_int_equal(fstatat(f->run_fd, "vm-1", &st, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(stat(f->outside, &st), 0);
        assert_int_equal(st.st_uid, 0);
}

/* Far deeper than the fds the process may hold: removed, the link out of it not followed. */
static void test_remove_tree_deeper_than_fds(void **state)
{
        struct fixture *f = *state;
        struct rlimit old, low = {.rlim_cur = 64};
        struct stat st;
        int fd, sub;

        fd = openat(f->run_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        for (unsigned i = 0; i < 3000; i++) {
                assert_int_equal(mkdirat(fd, i == 0 ? "vm-2" : "d", 0700), 0);
                sub = openat(fd, i == 0 ? "vm-2" : "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(sub >= 0);
                if (i % 7 == 0)
                        write_owned(sub, "f", geteuid());
                if (i % 11 == 0)
                        assert_int_equal(mkdirat(sub, "empty", 0700), 0);
                if (i == 2999)
                        assert_int_equal(symlinkat(f->top, sub, "up"), 0);
                close(fd);
                fd = sub;
        }
        close(fd);
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
        low.rlim_max = old.rlim_max;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        assert_int_equal(jail_remove_tree(f->run_fd, "vm-2"), 0);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
        assert_int_equal(fstatat(f->run_fd, "vm-2", &st, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(stat(f->outside, &st), 0);
        /* A name that is not a directory, and one that is not there. */
        assert_int_equal(symlinkat(f->top, f->run_fd, "vm-3"), 0);
        assert_int_equal(jail_remove_tree(f->run_fd, "vm-3"), 0);
        assert_int_equal(jail_remove_tree(f->run_fd, "vm-3"), 0);
        assert_int_equal(stat(f->top, &st), 0);
}

/* A spawn of vm-4 that fails (the VMM binary cannot run, or its cgroup cannot take it): no cgroup
 * leaf and no child left. */
static void spawn_fails(struct fixture *f, bool with_cgroup)
{
        static char *const argv[] = {"vmm", "-x", NULL};
        char vmm[128], cg[128];
        struct jail_req req;
        struct stat st;
        int fd, null, step = 0, r;
        bool cgroup = false;
        pid_t pid = 0;

        if (geteuid() != 0)
                skip();
        /* A VMM binary that cannot be run. */
        snprintf(vmm, sizeof(vmm), "%s/vmm", f->top);
        fd = open(vmm, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        f->conf.vmm[0] = vmm;
        /* A cgroup base that is a plain directory: the leaf is made, its cgroup.procs missing. */
        snprintf(cg, sizeof(cg), "%s/cg", f->top);
        if (with_cgroup) {
                assert_int_equal(mkdir(cg, 0755), 0);
                f->cg.base_fd = open(cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(f->cg.base_fd >= 0);
        }
        null = open("/dev/null", O_RDWR | O_CLOEXEC);
        assert_true(null >= 0);
        assert_int_equal(jail_req_spawn(1, 0, "vm-4", argv, 1, &req), 0);

        r = jail_spawn(&f->conf, &f->cg, &req, &null, VM_UID, &pid, &cgroup, &step);
        assert_true(r < 0);
        assert_int_equal(pid, 0);
        if (!with_cgroup)
                assert_true(step > 0); /* the child ran and said where it failed */
        if (with_cgroup) {
                assert_int_equal(fstatat(f->cg.base_fd, "vm-4", &st, AT_SYMLINK_NOFOLLOW), -1);
                assert_int_equal(errno, ENOENT);
                close(f->cg.base_fd);
                f->cg.base_fd = -1;
        }
        /* No child left behind. */
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
        close(null);
}

static void test_spawn_failure_in_cgroup(void **state)
{
        spawn_fails(*state, true);
}

static void test_spawn_failure_in_child(void **state)
{
        spawn_fails(*state, false);
}

/* A reaped VMM's leaf goes; a second release, or one without cgroups, does nothing. */
static void test_release_removes_leaf(void **state)
{
        struct fixture *f = *state;
        char cg[128];
        struct stat st;

        snprintf(cg, sizeof(cg), "%s/cg", f->top);
        assert_int_equal(mkdir(cg, 0755), 0);
        f->cg.base_fd = open(cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->cg.base_fd >= 0);
        assert_int_equal(mkdirat(f->cg.base_fd, "vm-5", 0755), 0);
        jail_release(&f->cg, "vm-5");
        assert_int_equal(fstatat(f->cg.base_fd, "vm-5", &st, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(errno, ENOENT);
        jail_release(&f->cg, "vm-5");
        close(f->cg.base_fd);
        f->cg.base_fd = -1;
        jail_release(&f->cg, "vm-5");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_remove_stale_vm_tree, setup, teardown),
            cmocka_unit_test_setup_teardown(test_remove_tree_deeper_than_fds, setup, teardown),
            cmocka_unit_test_setup_teardown(test_spawn_failure_in_cgroup, setup, teardown),
            cmocka_unit_test_setup_teardown(test_spawn_failure_in_child, setup, teardown),
            cmocka_unit_test_setup_teardown(test_release_removes_leaf, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
