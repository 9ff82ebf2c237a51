/* test-firecracker.c: the pure parts of the Firecracker driver: request bodies from typed
 * structs (lib/fc-model.c), command lines with and without the jailer and stale socket paths
 * (lib/fc-argv.c), copying a snapshot out of a jail whose VMM is hostile (lib/fc-collect.c). The
 * bodies are checked against the API again, by tests/firecracker's
 * conformance server, when the real driver sends them. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "fc-argv.h"
#include "fc-collect.h"
#include "fc-model.h"
#include "lang.h"

static void assert_json(json_t *o, const char *want)
{
        _cleanup_free_ char *s = NULL;

        assert_non_null(o);
        s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(o);
        assert_string_equal(s, want);
}

static void test_bodies(void **state)
{
        assert_json(fc_boot_source_json(&(struct fc_boot_source){.kernel_image_path = "vmlinux"}),
                    "{\"kernel_image_path\":\"vmlinux\"}");
        assert_null(fc_boot_source_json(&(struct fc_boot_source){.initrd_path = "i"}));
        assert_json(fc_drive_json(&(struct fc_drive){.drive_id = "rootfs",
                                                     .path_on_host = "rootfs.ext4",
                                                     .is_root_device = true,
                                                     .is_read_only = true}),
                    "{\"drive_id\":\"rootfs\",\"is_read_only\":true,\"is_root_device\":true,"
                    "\"path_on_host\":\"rootfs.ext4\"}");
        assert_json(fc_machine_config_json(
                        &(struct fc_machine_config){.vcpu_count = 2, .mem_size_mib = 512}),
                    "{\"mem_size_mib\":512,\"track_dirty_pages\":false,\"vcpu_count\":2}");
        /* the API allows 1 or an even count up to 32 */
        assert_null(fc_machine_config_json(
            &(struct fc_machine_config){.vcpu_count = 3, .mem_size_mib = 512}));
        assert_null(fc_machine_config_json(
            &(struct fc_machine_config){.vcpu_count = 34, .mem_size_mib = 512}));
        assert_null(fc_vsock_json(&(struct fc_vsock){.guest_cid = 2, .uds_path = "v"}));
        assert_json(fc_vsock_json(&(struct fc_vsock){.guest_cid = 3, .uds_path = "v"}),
                    "{\"guest_cid\":3,\"uds_path\":\"v\"}");
        assert_json(fc_entropy_json(), "{}");
        assert_json(fc_action_json(FC_ACTION_INSTANCE_START),
                    "{\"action_type\":\"InstanceStart\"}");
        assert_json(fc_vm_state_json(FC_VM_PAUSED), "{\"state\":\"Paused\"}");
        assert_json(fc_vm_state_json(FC_VM_RESUMED), "{\"state\":\"Resumed\"}");
        /* no "version": removed from the API */
        assert_json(fc_snapshot_create_json(&(struct fc_snapshot_create){
                        .snapshot_path = "s", .mem_file_path = "m", .type = FC_SNAPSHOT_DIFF}),
                    "{\"mem_file_path\":\"m\",\"snapshot_path\":\"s\",\"snapshot_type\":\"Diff\"}");
        assert_json(fc_snapshot_load_json(&(struct fc_snapshot_load){
                        .snapshot_path = "s", .backend_path = "m", .vsock_uds_path = "/v"}),
                    "{\"mem_backend\":{\"backend_path\":\"m\",\"backend_type\":\"File\"},"
                    "\"resume_vm\":false,\"snapshot_path\":\"s\",\"vsock_override\":{\"uds_path\":"
                    "\"/v\"}}");
        assert_json(fc_snapshot_load_json(&(struct fc_snapshot_load){.snapshot_path = "s",
                                                                     .backend_path = "m",
                                                                     .clock_realtime = true,
                                                                     .track_dirty_pages = true}),
                    "{\"clock_realtime\":true,\"mem_backend\":{\"backend_path\":\"m\","
                    "\"backend_type\":\"File\"},\"resume_vm\":false,\"snapshot_path\":\"s\","
                    "\"track_dirty_pages\":true}");
}

static void test_fault_and_version(void **state)
{
        json_t *o = json_pack("{s:s}", "fault_message", "bad");
        char v[16];

        assert_string_equal(fc_fault_message(o), "bad");
        json_decref(o);
        assert_null(fc_fault_message(NULL));
        assert_int_equal(fc_parse_version("Firecracker v1.16.1\n\nSupported ...", v, sizeof(v)), 0);
        assert_string_equal(v, "1.16.1");
        assert_int_equal(fc_parse_version("firecracker 1.16", v, sizeof(v)), -ENOEXEC);
        assert_int_equal(fc_parse_version("Firecracker v\n", v, sizeof(v)), -ENOEXEC);
        assert_int_equal(fc_parse_version("Firecracker v1.2.3.4.5.6.7.8.9.10", v, 8), -ENOEXEC);
}

static char *joined(char **argv)
{
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);

        for (char **a = argv; *a; a++)
                fprintf(f, "%s%s", a == argv ? "" : " ", *a);
        fclose(f);
        return s;
}

static void test_argv(void **state)
{
        struct fc_launch l = {.binary = "firecracker", .id = "vm-1-2", .api_sock = "/r/api.sock"};
        _cleanup_free_ char *s = NULL, *root = NULL;
        char **argv = NULL;

        assert_int_equal(fc_argv(&l, &argv), 0);
        s = joined(argv);
        op_argv_free(argv);
        assert_string_equal(s, "firecracker --api-sock /r/api.sock --id vm-1-2");

        l.binary = "/usr/bin/firecracker";
        l.jailer = "/usr/bin/jailer";
        l.uid = 995;
        l.gid = 994;
        l.chroot_base = "/srv/jailer";
        l.memory_max_mb = 640;
        l.cpu_max_pct = 150;
        l.netns = "/var/run/netns/op";
        assert_int_equal(fc_argv(&l, &argv), 0);
        free(s);
        s = joined(argv);
        op_argv_free(argv);
        assert_string_equal(s, "/usr/bin/jailer --id vm-1-2 --exec-file /usr/bin/firecracker "
                               "--uid 995 --gid 994 --chroot-base-dir /srv/jailer "
                               "--cgroup-version 2 --cgroup memory.max=671088640 --cgroup "
                               "cpu.max=150000 100000 --netns /var/run/netns/op -- --api-sock "
                               "/run/firecracker.socket");
        assert_int_equal(fc_jail_root(&l, &root), 0);
        assert_string_equal(root, "/srv/jailer/firecracker/vm-1-2/root");

        /* no limits, no netns: no flags for them */
        l.memory_max_mb = l.cpu_max_pct = 0;
        l.netns = "";
        assert_int_equal(fc_argv(&l, &argv), 0);
        free(s);
        s = joined(argv);
        op_argv_free(argv);
        assert_null(strstr(s, "--cgroup "));
        assert_null(strstr(s, "--netns"));

        /* refused: root in a jail, a relative exec file, an id the jailer would refuse */
        l.uid = 0;
        assert_int_equal(fc_argv(&l, &argv), -EINVAL);
        l.uid = 995;
        l.binary = "firecracker";
        assert_int_equal(fc_argv(&l, &argv), -EINVAL);
        l.binary = "/usr/bin/firecracker";
        l.id = "../etc";
        assert_int_equal(fc_argv(&l, &argv), -EINVAL);
        l.id = "";
        assert_int_equal(fc_argv(&l, &argv), -EINVAL);
}

static void test_remove_stale(void **state)
{
        char dir[] = "/tmp/test-fc-XXXXXX", path[64];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/firecracker.sock", dir);
        assert_int_equal(fc_remove_stale(path), 0); /* nothing there */
        /* a socket left by a VMM that died: bound, nobody listening any more */
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        assert_int_equal(access(path, F_OK), 0);
        assert_int_equal(fc_remove_stale(path), 0);
        assert_int_equal(access(path, F_OK), -1);
        /* now the path binds again, as Firecracker needs */
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        unlink(path);
        /* a directory in the way is not ours to remove */
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(fc_remove_stale(path), -EISDIR);
        rmdir(path);
        rmdir(dir);
}

/* A jail (from) and a snapshot directory (to) of their own, per test. */
struct dirs {
        char from[32], to[32];
        int from_fd, to_fd;
};

static void dirs_make(struct dirs *d)
{
        snprintf(d->from, sizeof(d->from), "/tmp/test-fc-jail-XXXXXX");
        snprintf(d->to, sizeof(d->to), "/tmp/test-fc-snap-XXXXXX");
        assert_non_null(mkdtemp(d->from));
        assert_non_null(mkdtemp(d->to));
        d->from_fd = open(d->from, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        d->to_fd = open(d->to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(d->from_fd >= 0 && d->to_fd >= 0);
}

static void dirs_remove(struct dirs *d)
{
        char cmd[128];

        close(d->from_fd);
        close(d->to_fd);
        snprintf(cmd, sizeof(cmd), "rm -rf %s %s", d->from, d->to);
        assert_int_equal(system(cmd), 0);
}

/* name in dir: size bytes, all hole but for data (len bytes) at each offset in offs */
static void make_file(int dirfd, const char *name, uint64_t size, const uint64_t *offs, size_t n,
                      const void *data, size_t len)
{
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)size), 0);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(pwrite(fd, data, len, (off_t)offs[i]), (ssize_t)len);
        close(fd);
}

static bool exists(int dirfd, const char *name)
{
        struct stat st;

        return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Each refused before anything is read or made in to, with its own error and words; nothing
 * blocks (main()'s alarm ends a test that hangs). */
static void test_copy_refused(void **state)
{
        const uint64_t size = 1 << 20;
        struct dirs d;
        char why[512];

        dirs_make(&d);
#define REFUSED(name, sz, exact, err, words)                                                       \
        do {                                                                                       \
                why[0] = 0;                                                                        \
                assert_int_equal(fc_copy_out(d.from_fd, d.from, d.to_fd, d.to, name, sz, exact,    \
                                             why, sizeof(why)),                                    \
                                 err);                                                             \
                assert_non_null(strstr(why, name));                                                \
                assert_non_null(strstr(why, d.from));                                              \
                assert_non_null(strstr(why, words));                                               \
                assert_false(exists(d.to_fd, name));                                               \
        } while (0)

        /* a FIFO: open() without O_NONBLOCK would wait for a writer for ever */
        assert_int_equal(mkfifoat(d.from_fd, "mem", 0666), 0);
        REFUSED("mem", size, true, -EINVAL, "is a FIFO, not a regular file");
        assert_int_equal(unlinkat(d.from_fd, "mem", 0), 0);

        /* a symbolic link, to a file of the right size */
        make_file(d.from_fd, "host-file", size, NULL, 0, NULL, 0);
        assert_int_equal(symlinkat("host-file", d.from_fd, "mem"), 0);
        REFUSED("mem", size, true, -ELOOP, "symbolic link");
        assert_int_equal(unlinkat(d.from_fd, "mem", 0), 0);

        /* a hard link to another file (a snapshot's, an image the jail holds) */
        assert_int_equal(linkat(d.from_fd, "host-file", d.from_fd, "mem", 0), 0);
        REFUSED("mem", size, true, -EMLINK, "has 2 links");
        assert_int_equal(unlinkat(d.from_fd, "mem", 0), 0);

        /* a directory, a socket */
        assert_int_equal(mkdirat(d.from_fd, "mem", 0755), 0);
        REFUSED("mem", size, true, -EINVAL, "is a directory");
        assert_int_equal(unlinkat(d.from_fd, "mem", AT_REMOVEDIR), 0);
        {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                int fd = socket(AF_UNIX, SOCK_STREAM, 0);

                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/mem", d.from);
                assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
                close(fd);
                REFUSED("mem", size, true, -ENXIO, "a socket or a device, not a regular file");
                assert_int_equal(unlinkat(d.from_fd, "mem", 0), 0);
        }

        /* mem larger or smaller than the VM's memory, sparse or not */
        make_file(d.from_fd, "mem", size + 4096, NULL, 0, NULL, 0);
        REFUSED("mem", size, true, -EFBIG, "1052672 bytes, more than the 1048576 of the VM's");
        make_file(d.from_fd, "mem", (uint64_t)1 << 40, NULL, 0, NULL, 0); /* 1 TiB of hole */
        REFUSED("mem", size, true, -EFBIG, "1099511627776 bytes, more than the 1048576");
        make_file(d.from_fd, "mem", size - 4096, NULL, 0, NULL, 0);
        REFUSED("mem", size, true, -EINVAL, "1044480 bytes, not the 1048576 of the VM's memory");
        make_file(d.from_fd, "mem", 0, NULL, 0, NULL, 0);
        REFUSED("mem", size, true, -EINVAL, "0 bytes, not the 1048576");

        /* a device state past its bound */
        make_file(d.from_fd, "vmstate", FC_VMSTATE_MAX + 1, NULL, 0, NULL, 0);
        REFUSED("vmstate", FC_VMSTATE_MAX, false, -EFBIG, "more than the 67108864 a device state");

        /* nothing there */
        REFUSED("nothing", size, true, -ENOENT, "No such file or directory");
#undef REFUSED
        dirs_remove(&d);
}

static void assert_same(int dirfd_a, int dirfd_b, const char *name, uint64_t len)
{
        int a = openat(dirfd_a, name, O_RDONLY | O_CLOEXEC), b = openat(dirfd_b, name, O_RDONLY);
        static uint8_t ba[1 << 16], bb[1 << 16];

        assert_true(a >= 0 && b >= 0);
        for (uint64_t off = 0; off < len; off += sizeof(ba)) {
                size_t n = len - off < sizeof(ba) ? (size_t)(len - off) : sizeof(ba);

                assert_int_equal(pread(a, ba, n, (off_t)off), (ssize_t)n);
                assert_int_equal(pread(b, bb, n, (off_t)off), (ssize_t)n);
                assert_memory_equal(ba, bb, n);
        }
        assert_int_equal(pread(b, bb, 1, (off_t)len), 0);
        close(a);
        close(b);
}

/* A sparse mem stays sparse, and pages of zeros written out dense become holes too. */
static void test_copy_sparse(void **state)
{
        const uint64_t size = 64 << 20;
        const uint64_t offs[] = {0, 8 << 20, (32 << 20) + 100, size - 4096};
        static uint8_t zeros[1 << 20];
        uint8_t data[4096];
        struct dirs d;
        struct stat st;
        char why[512];
        int fd;

        dirs_make(&d);
        memset(data, 0xa5, sizeof(data));
        make_file(d.from_fd, "mem", size, offs, ELEMENTSOF(offs), data, sizeof(data));
        fd = openat(d.from_fd, "mem", O_WRONLY | O_CLOEXEC);
        assert_int_equal(pwrite(fd, zeros, sizeof(zeros), 16 << 20), (ssize_t)sizeof(zeros));
        data[100] = 0; /* a page not all zeros, one byte of it zero */
        assert_int_equal(pwrite(fd, data, sizeof(data), 20 << 20), (ssize_t)sizeof(data));
        close(fd);

        assert_int_equal(
            fc_copy_out(d.from_fd, d.from, d.to_fd, d.to, "mem", size, true, why, sizeof(why)), 0);
        assert_int_equal(fstatat(d.to_fd, "mem", &st, 0), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0444);
        assert_int_equal((uint64_t)st.st_size, size);
        /* 6 pages of data (one across two pages): far less than the MiB of zeros written */
        assert_true((uint64_t)st.st_blocks * 512 <= 256 << 10);
        assert_same(d.from_fd, d.to_fd, "mem", size);

        /* the output is made with O_EXCL: a second copy does not write over the first */
        assert_int_equal(
            fc_copy_out(d.from_fd, d.from, d.to_fd, d.to, "mem", size, true, why, sizeof(why)),
            -EEXIST);
        assert_non_null(strstr(why, "creating"));
        dirs_remove(&d);
}

/* A file the VMM keeps growing while opd copies it: a device state is copied as long as it was
 * when opened (the copy ends), a mem grown past the VM's memory is refused. */
static void test_copy_growing(void **state)
{
        const uint64_t start = 64 << 10, cap = 32 << 20;
        uint8_t data[4096];
        struct dirs d;
        struct stat st;
        char why[512];
        pid_t pid;
        int fd;

        dirs_make(&d);
        memset(data, 'v', sizeof(data));
        fd = openat(d.from_fd, "vmstate", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        for (uint64_t n = 0; n < start; n += sizeof(data))
                assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* the VMM: appends without end (up to cap, to spare the disk) */
                for (uint64_t n = start; n < cap; n += sizeof(data)) {
                        if (write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
                                _exit(1);
                        usleep(50);
                }
                pause();
                _exit(0);
        }
        close(fd);
        usleep(20000);
        assert_int_equal(fc_copy_out(d.from_fd, d.from, d.to_fd, d.to, "vmstate", FC_VMSTATE_MAX,
                                     false, why, sizeof(why)),
                         0);
        assert_int_equal(fstatat(d.to_fd, "vmstate", &st, 0), 0);
        assert_true((uint64_t)st.st_size >= start && (uint64_t)st.st_size <= cap);
        assert_same(d.from_fd, d.to_fd, "vmstate", (uint64_t)st.st_size);

        /* mem: at the VM's size when the VMM starts, past it by the time opd looks */
        make_file(d.from_fd, "mem", start, NULL, 0, NULL, 0);
        fd = openat(d.from_fd, "mem", O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
        close(fd);
        assert_int_equal(
            fc_copy_out(d.from_fd, d.from, d.to_fd, d.to, "mem", start, true, why, sizeof(why)),
            -EFBIG);
        assert_false(exists(d.to_fd, "mem"));

        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        dirs_remove(&d);
}

/* Both files of a jail's snapshot, over what snapcreate left in the directory; a refusal names
 * the file. */
static void test_collect(void **state)
{
        const uint64_t size = 4 << 20, offs[] = {1 << 20};
        struct dirs d;
        struct stat st;
        char why[512];

        dirs_make(&d);
        make_file(d.from_fd, "vmstate", 5000, offs, 0, NULL, 0);
        make_file(d.from_fd, "mem", size, offs, 1, "page", 4);
        make_file(d.to_fd, "mem", 0, NULL, 0, NULL, 0); /* snapcreate's empty one */
        assert_int_equal(fc_collect(d.from, d.to, size, why, sizeof(why)), 0);
        assert_int_equal(fstatat(d.to_fd, "vmstate", &st, 0), 0);
        assert_int_equal(st.st_size, 5000);
        assert_int_equal(fstatat(d.to_fd, "mem", &st, 0), 0);
        assert_int_equal((uint64_t)st.st_size, size);
        assert_same(d.from_fd, d.to_fd, "mem", size);

        /* the same jail saved again, its mem now a FIFO */
        assert_int_equal(unlinkat(d.from_fd, "mem", 0), 0);
        assert_int_equal(mkfifoat(d.from_fd, "mem", 0666), 0);
        assert_int_equal(fc_collect(d.from, d.to, size, why, sizeof(why)), -EINVAL);
        assert_non_null(strstr(why, "/mem is a FIFO, not a regular file"));
        assert_false(exists(d.to_fd, "mem"));

        /* a jail whose directory is gone */
        assert_int_equal(fc_collect("/nonexistent/root", d.to, size, why, sizeof(why)), -ENOENT);
        assert_string_equal(why, "/nonexistent/root: No such file or directory");
        dirs_remove(&d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_bodies),       cmocka_unit_test(test_fault_and_version),
            cmocka_unit_test(test_argv),         cmocka_unit_test(test_remove_stale),
            cmocka_unit_test(test_copy_refused), cmocka_unit_test(test_copy_sparse),
            cmocka_unit_test(test_copy_growing), cmocka_unit_test(test_collect),
        };

        alarm(60); /* a copy that blocks (a FIFO's open) fails the test instead of hanging it */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
