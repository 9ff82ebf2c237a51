/* test-jail-proto.c: unit tests of lib/jail/jail-proto.c: spawn requests encoded then decoded
 * back, every field out of range refused, the argument block's framing, kill requests, and the
 * helper's answers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "jail-proto.h"

static char *const qemu_argv[] = {"qemu-system-x86_64", "-M", "", "q35", "-m", "512M", NULL};

static struct jail_req good_spawn(void)
{
        struct jail_req r;

        assert_int_equal(jail_req_spawn(7, 0, "vm-123-4", qemu_argv, 3, &r), 0);
        return r;
}

static void test_roundtrip(void **state)
{
        struct jail_req r = good_spawn(), d;
        const char *args[16];
        size_t n;

        assert_int_equal(jail_req_decode(&r, sizeof(r), &d), 0);
        assert_memory_equal(&r, &d, sizeof(r));
        assert_int_equal(d.type, JAIL_REQ_SPAWN);
        assert_int_equal(d.seq, 7);
        assert_int_equal(d.n_fds, 3);
        assert_string_equal(d.name, "vm-123-4");
        n = jail_req_args(&d, args, 16);
        assert_int_equal(n, 5); /* argv[0] is never sent: the helper runs its own binary */
        assert_string_equal(args[0], "-M");
        assert_string_equal(args[1], ""); /* an empty argument survives */
        assert_string_equal(args[4], "512M");
}

static void test_encode_refuses(void **state)
{
        struct jail_req r;
        static char big[JAIL_ARGS_MAX + 1];
        char *const too_long[] = {"q", big, NULL};
        char *many[JAIL_ARGC_MAX + 3];

        assert_int_equal(jail_req_spawn(1, JAIL_VMMS_MAX, "vm-1", qemu_argv, 1, &r), -EINVAL);
        assert_int_equal(jail_req_spawn(1, 0, "vm-1", qemu_argv, 0, &r), -EINVAL);
        assert_int_equal(jail_req_spawn(1, 0, "vm-1", qemu_argv, JAIL_FDS_MAX + 1, &r), -EINVAL);
        assert_int_equal(jail_req_spawn(1, 0, "../etc", qemu_argv, 1, &r), -EINVAL);
        assert_int_equal(jail_req_spawn(1, 0, "vm-", qemu_argv, 1, &r), -EINVAL);
        assert_int_equal(jail_req_spawn(1, 0, "vm-a/b", qemu_argv, 1, &r), -EINVAL);
        memset(big, 'x', JAIL_ARGS_MAX - 1); /* with its NUL: the whole block, and fits */
        assert_int_equal(jail_req_spawn(1, 0, "vm-1", too_long, 1, &r), 0);
        big[JAIL_ARGS_MAX - 1] = 'x';
        assert_int_equal(jail_req_spawn(1, 0, "vm-1", too_long, 1, &r), -E2BIG);
        for (size_t i = 0; i < JAIL_ARGC_MAX + 2; i++)
                many[i] = "a";
        many[JAIL_ARGC_MAX + 2] = NULL;
        assert_int_equal(jail_req_spawn(1, 0, "vm-1", many, 1, &r), -E2BIG);
        many[JAIL_ARGC_MAX + 1] = NULL; /* argv[0] plus exactly the most arguments */
        assert_int_equal(jail_req_spawn(1, 0, "vm-1", many, 1, &r), 0);
}

static void refused(const struct jail_req *r)
{
        struct jail_req d;

        memset(&d, 0x5a, sizeof(d));
        assert_int_equal(jail_req_decode(r, sizeof(*r), &d), -EBADMSG);
        assert_int_equal(((unsigned char *)&d)[0], 0x5a); /* untouched */
}

static void test_decode_refuses(void **state)
{
        struct jail_req r = good_spawn(), d;

        assert_int_equal(jail_req_decode(&r, sizeof(r) - 1, &d), -EBADMSG);
        assert_int_equal(jail_req_decode(&r, 0, &d), -EBADMSG);
        assert_int_equal(jail_req_decode(NULL, sizeof(r), &d), -EBADMSG);

#define FIELD(stmt)                                                                                \
        do {                                                                                       \
                r = good_spawn();                                                                  \
                stmt;                                                                              \
                refused(&r);                                                                       \
        } while (0)
        FIELD(r.magic ^= 1);
        FIELD(r.type = 0);
        FIELD(r.type = 3);
        FIELD(r.vmm = JAIL_VMMS_MAX);
        FIELD(r.n_fds = 0);
        FIELD(r.n_fds = JAIL_FDS_MAX + 1);
        FIELD(r.pid = 1);
        FIELD(r.memory_max_mb = (1u << 20) + 1);
        FIELD(r.pids_max = (1u << 22) + 1);
        FIELD(r.cpu_weight = 10001);
        FIELD(memset(r.name, 'a', JAIL_NAME_MAX)); /* no NUL */
        FIELD(strcpy(r.name, "../../etc"));        /* not a VM directory */
        FIELD(strcpy(r.name, "vm-1/.."));          /* a path */
        FIELD(r.name[10] = 'x');                   /* bytes after the NUL */
        FIELD(r.argc = JAIL_ARGC_MAX + 1);         /* more than fit */
        FIELD(r.argc = 6);                         /* one string more than there is */
        FIELD(r.argc = 4);                         /* a string beyond argc */
        FIELD(memset(r.args, 'a', JAIL_ARGS_MAX)); /* no NUL at all */
        FIELD(r.args[JAIL_ARGS_MAX - 1] = 'z');    /* garbage after the strings */
#undef FIELD
}

static void test_kill(void **state)
{
        struct jail_req r = {.magic = JAIL_PROTO_MAGIC,
                             .type = JAIL_REQ_KILL,
                             .seq = 17,
                             .pid = 4242},
                        d;

        /* the VMM by its spawn's seq and its pid */
        assert_int_equal(jail_req_decode(&r, sizeof(r), &d), 0);
        assert_int_equal(d.seq, 17);
        assert_int_equal(d.pid, 4242);
        r.pid = 1; /* never init, never a process group */
        refused(&r);
        r.pid = -5;
        refused(&r);
        r.pid = 4242;
        r.n_fds = 1; /* a kill carries nothing else */
        refused(&r);
        r.n_fds = 0;
        strcpy(r.name, "vm-1");
        refused(&r);
}

static void test_msgs(void **state)
{
        struct jail_msg m = {.magic = JAIL_PROTO_MAGIC, .type = JAIL_MSG_SPAWNED, .pid = 99}, d;

        assert_int_equal(jail_msg_decode(&m, sizeof(m), &d), 0);
        assert_int_equal(d.pid, 99);
        m.pid = 0; /* success without a pid */
        assert_int_equal(jail_msg_decode(&m, sizeof(m), &d), -EBADMSG);
        m.err = -EPERM;
        assert_int_equal(jail_msg_decode(&m, sizeof(m), &d), 0);
        m.err = 5;
        assert_int_equal(jail_msg_decode(&m, sizeof(m), &d), -EBADMSG);
        m.err = 0;
        m.pid = 99;
        memset(m.text, 'x', sizeof(m.text));
        assert_int_equal(jail_msg_decode(&m, sizeof(m), &d), -EBADMSG);
        m.text[0] = 0;
        m.type = JAIL_MSG_EXITED + 1;
        assert_int_equal(jail_msg_decode(&m, sizeof(m), &d), -EBADMSG);
        m.type = JAIL_MSG_HELLO;
        assert_int_equal(jail_msg_decode(&m, sizeof(m) + 1, &d), -EBADMSG);
        assert_int_equal(jail_msg_decode(&m, sizeof(m), &d), 0);
}

static void test_names(void **state)
{
        assert_true(jail_name_ok("vm-1"));
        assert_true(jail_name_ok("vm-4242-17"));
        assert_false(jail_name_ok("vm-"));
        assert_false(jail_name_ok("VM-1"));
        assert_false(jail_name_ok("vm-1 "));
        assert_false(jail_name_ok("vm-."));
        assert_false(jail_name_ok("x-vm-1"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_encode_refuses),
            cmocka_unit_test(test_decode_refuses), cmocka_unit_test(test_kill),
            cmocka_unit_test(test_msgs),           cmocka_unit_test(test_names),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
