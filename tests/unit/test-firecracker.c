/* test-firecracker.c: the pure parts of the Firecracker driver: request bodies from typed
 * structs (lib/fc-model.c), command lines with and without the jailer and stale socket paths
 * (lib/fc-argv.c). The bodies are checked against the API again, by tests/firecracker's
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
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "fc-argv.h"
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

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_bodies),
            cmocka_unit_test(test_fault_and_version),
            cmocka_unit_test(test_argv),
            cmocka_unit_test(test_remove_stale),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
