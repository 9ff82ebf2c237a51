/* test-qemu-argv.c: the QEMU command line (lib/vmm/qemu.c): one machine for a boot and a
 * restore, the fds at fixed numbers, the kernel command line, and what is refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lang.h"
#include "vmm.h"

/* The index of the option opt followed by value in argv, or -1. */
static int find_pair(char **argv, const char *opt, const char *value)
{
        for (int i = 0; argv[i] && argv[i + 1]; i++)
                if (strcmp(argv[i], opt) == 0 && strcmp(argv[i + 1], value) == 0)
                        return i;
        return -1;
}

static bool has(char **argv, const char *arg)
{
        for (int i = 0; argv[i]; i++)
                if (strcmp(argv[i], arg) == 0)
                        return true;
        return false;
}

static const char *after(char **argv, const char *opt)
{
        for (int i = 0; argv[i] && argv[i + 1]; i++)
                if (strcmp(argv[i], opt) == 0)
                        return argv[i + 1];
        return NULL;
}

static void test_boot(void **state)
{
        struct qemu_machine m = {
            .accel = OP_ACCEL_TCG,
            .name = "vm-12-3",
            .memory_mb = 512,
            .vcpus = 2,
            .kernel = "/img/vmlinux",
            .initrd = "/img/initrd.img",
            .rootfs = "/img/python/rootfs.ext4",
        };
        char **argv = NULL;
        const char *append;

        assert_int_equal(qemu_argv("qemu-system-x86_64", &m, &argv), 0);
        assert_string_equal(argv[0], "qemu-system-x86_64");
        assert_true(find_pair(argv, "-name", "guest=vm-12-3") >= 0);
        assert_true(find_pair(argv, "-M", "q35,vmport=off,smbus=off,sata=off,i8042=off,hpet=off") >=
                    0);
        assert_true(find_pair(argv, "-sandbox",
                              "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
                              "resourcecontrol=deny") >= 0);
        assert_true(find_pair(argv, "-chardev", "ringbuf,id=console,size=4096") >= 0);
        assert_true(find_pair(argv, "-serial", "chardev:console") >= 0);
        for (int i = 0; argv[i]; i++) /* the console is bounded: never a file */
                assert_null(strstr(argv[i], "file:"));
        assert_true(find_pair(argv, "-accel", "tcg,tb-size=256") >= 0);
        assert_true(find_pair(argv, "-cpu", "max") >= 0);
        assert_true(find_pair(argv, "-m", "512M") >= 0);
        /* the agent's port and the console's reserved 0: no queues beyond them */
        assert_true(find_pair(argv, "-device", "virtio-serial-pci,max_ports=2") >= 0);
        assert_true(find_pair(argv, "-smp", "2") >= 0);
        assert_true(find_pair(argv, "-kernel", "/img/vmlinux") >= 0);
        assert_true(find_pair(argv, "-initrd", "/img/initrd.img") >= 0);
        assert_true(find_pair(argv, "-drive",
                              "file=/img/python/rootfs.ext4,if=none,id=root,format=raw,"
                              "readonly=on") >= 0);
        assert_true(find_pair(argv, "-chardev", "socket,id=agent,fd=3") >= 0);
        assert_true(find_pair(argv, "-chardev", "socket,id=qmp,fd=4") >= 0);
        assert_false(has(argv, "-object"));
        assert_false(has(argv, "-incoming"));
        assert_false(has(argv, "-S"));
        append = after(argv, "-append");
        assert_non_null(append);
        assert_non_null(strstr(append, "console=ttyS0"));
        assert_non_null(strstr(append, " norandmaps")); /* TCG only */
        assert_non_null(strstr(append, "-- --uid 1000 --gid 1000"));
        op_argv_free(argv);

        m.accel = OP_ACCEL_KVM;
        m.mem_file = true;
        assert_int_equal(qemu_argv("qemu", &m, &argv), 0);
        assert_true(find_pair(argv, "-accel", "kvm") >= 0);
        assert_true(find_pair(argv, "-cpu", "host") >= 0);
        assert_true(find_pair(argv, "-M",
                              "q35,vmport=off,smbus=off,sata=off,i8042=off,hpet=off,"
                              "memory-backend=mem") >= 0);
        assert_true(find_pair(argv, "-object",
                              "memory-backend-file,id=mem,size=512M,mem-path=/proc/self/fd/5,"
                              "share=on") >= 0);
        assert_null(strstr(after(argv, "-append"), "norandmaps"));
        op_argv_free(argv);
}

/* A clone: the same machine as the boot, RAM and rootfs from fds, paused for its state. */
static void test_restore(void **state)
{
        struct qemu_machine boot = {
            .accel = OP_ACCEL_TCG,
            .memory_mb = 256,
            .vcpus = 1,
            .kernel = "/k",
            .initrd = "/i",
            .rootfs = "/r",
            .mem_file = true,
        };
        struct qemu_machine clone = {.accel = OP_ACCEL_TCG, .memory_mb = 256, .vcpus = 1};
        char **b = NULL, **argv = NULL;
        int i;

        assert_int_equal(qemu_argv("qemu", &boot, &b), 0);
        assert_int_equal(qemu_argv("qemu", &clone, &argv), 0);
        assert_true(find_pair(argv, "-object",
                              "memory-backend-file,id=mem,size=256M,mem-path=/proc/self/fd/5,"
                              "share=off,readonly=on,rom=off") >= 0);
        assert_true(find_pair(argv, "-drive",
                              "file=/proc/self/fd/6,if=none,id=root,format=raw,readonly=on") >= 0);
        assert_true(has(argv, "-S"));
        assert_true(find_pair(argv, "-incoming", "defer") >= 0);
        assert_false(has(argv, "-kernel"));
        assert_false(has(argv, "-append"));
        /* Up to the devices both are the same, but for the sharing of RAM and the root drive. */
        for (i = 0; b[i] && argv[i] && strcmp(b[i], "-kernel") != 0; i++) {
                if (strncmp(b[i], "memory-backend-file", 19) == 0 || strncmp(b[i], "file=", 5) == 0)
                        continue;
                assert_string_equal(b[i], argv[i]);
        }
        assert_string_equal(b[i], "-kernel");
        assert_string_equal(argv[i], "-S");
        op_argv_free(b);
        op_argv_free(argv);
        assert_string_equal(QEMU_INCOMING_URI, "fd:7");
}

static void test_version(void **state)
{
        char err[256];

        assert_int_equal(qemu_version_supported("10.0.2", err, sizeof(err)), 0);
        assert_int_equal(qemu_version_supported("8.2.2", err, sizeof(err)), 0);
        assert_int_equal(qemu_version_supported("9.0", err, sizeof(err)), 0);
        assert_int_equal(qemu_version_supported("10.0.2/q35.2", err, sizeof(err)), 0);
        assert_int_equal(qemu_version_supported("8.1.5", err, sizeof(err)), -EPROTONOSUPPORT);
        assert_non_null(strstr(err, "8.2 or later"));
        assert_int_equal(qemu_version_supported("7.2.22", err, sizeof(err)), -EPROTONOSUPPORT);
        assert_int_equal(qemu_version_supported("", err, sizeof(err)), -ENOEXEC);
        assert_int_equal(qemu_version_supported("x.y", err, sizeof(err)), -ENOEXEC);
}

static void test_refused(void **state)
{
        struct qemu_machine m = {
            .accel = OP_ACCEL_TCG,
            .memory_mb = 256,
            .vcpus = 1,
            .kernel = "/k",
            .initrd = "/i",
            .rootfs = "/a,b", /* QEMU's separator */
        };
        char **argv = NULL;

        assert_int_equal(qemu_argv("qemu", &m, &argv), -EINVAL);
        m.rootfs = "/r";
        m.name = "vm-1,process=x"; /* a name is one value of QEMU's -name */
        assert_int_equal(qemu_argv("qemu", &m, &argv), -EINVAL);
        m.name = "";
        assert_int_equal(qemu_argv("qemu", &m, &argv), -EINVAL);
        m.name = NULL;
        m.accel = OP_ACCEL_AUTO;
        assert_int_equal(qemu_argv("qemu", &m, &argv), -EINVAL);
        assert_null(argv);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_boot),
            cmocka_unit_test(test_restore),
            cmocka_unit_test(test_version),
            cmocka_unit_test(test_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
