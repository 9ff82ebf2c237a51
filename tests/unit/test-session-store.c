/* test-session-store.c: the requests of session_fork, session_pause and session_resume
 * (proto/msg-session-fork.c), and session.json (daemon/session-store.c) written and read back,
 * every damaged form refused with a reason. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msg-session-fork.h"
#include "session-store.h"

#define SID "3f84e6c1-0595-4e2a-9778-53c262b9fc53"

static json_t *req(const char *text)
{
        json_t *j = json_loads(text, 0, NULL);

        assert_non_null(j);
        return j;
}

static void test_fork_decode(void **state)
{
        char id[OP_SESSION_ID_LEN + 1], err[256];
        uint32_t count = 0;
        json_t *j;

        j = req("{\"id\": 1, \"op\": \"session_fork\", \"session\": \"" SID "\", \"count\": 3}");
        assert_int_equal(op_session_fork_decode(j, 8, id, &count, err, sizeof(err)), 0);
        assert_string_equal(id, SID);
        assert_int_equal(count, 3);
        json_decref(j);
        j = req("{\"op\": \"session_fork\", \"session\": \"" SID "\"}");
        assert_int_equal(op_session_fork_decode(j, 8, id, &count, err, sizeof(err)), 0);
        assert_int_equal(count, 1);
        json_decref(j);
        static const char *const bad[] = {
            "{\"op\": \"session_fork\", \"session\": \"" SID "\", \"count\": 9}",
            "{\"op\": \"session_fork\", \"session\": \"" SID "\", \"count\": 0}",
            "{\"op\": \"session_fork\", \"session\": \"" SID "\", \"count\": \"2\"}",
            "{\"op\": \"session_fork\", \"session\": \"" SID "\", \"extra\": 1}",
            "{\"op\": \"session_fork\", \"session\": \"not-an-id\"}",
            "{\"op\": \"session_fork\"}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                j = req(bad[i]);
                err[0] = 0;
                assert_int_equal(op_session_fork_decode(j, 8, id, &count, err, sizeof(err)),
                                 -EINVAL);
                assert_true(err[0]);
                json_decref(j);
        }
        j = req("{\"op\": \"session_pause\", \"session\": \"" SID "\", \"count\": 1}");
        assert_int_equal(op_session_save_decode(j, "session_pause", id, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "session_pause"));
        json_decref(j);
        j = req("{\"id\": 2, \"op\": \"session_resume\", \"session\": \"" SID "\"}");
        assert_int_equal(op_session_save_decode(j, "session_resume", id, err, sizeof(err)), 0);
        json_decref(j);
}

static void meta(struct session_meta *m)
{
        memset(m, 0, sizeof(*m));
        memcpy(m->id, SID, sizeof(m->id));
        memcpy(m->workdir, SID, sizeof(m->workdir));
        m->uid = 1000;
        strcpy(m->lang, "python");
        strcpy(m->m.version, "20261202T233847Z-8c8f3d");
        strcpy(m->m.lang, "python");
        strcpy(m->m.vmm, "qemu");
        strcpy(m->m.vmm_version, "10.0.2/q35.2");
        strcpy(m->m.accel, "tcg");
        strcpy(m->m.created, "2026-12-02T23:38:47Z");
        strcpy(m->m.agent_version, "1");
        m->m.memory_mb = 64;
        m->m.vcpus = 1;
        m->m.n_files = 1;
        strcpy(m->m.files[0].name, "rootfs.ext4");
        m->m.files[0].size = 4096;
        memset(m->m.files[0].sha256, 'a', 64);
        m->idle_timeout_ms = 1000;
        m->max_lifetime_ms = 2000;
        m->age_ms = 5;
        m->paused_at_ns = 1;
        m->execs = 2;
        m->limits = json_pack("{s:i}", "timeout_ms", 100);
        m->vmstate_size = 10;
        m->mem_size = 64u << 20;
        memset(m->vmstate_sha256, 'b', 64);
}

static char *text_of(const struct session_meta *m)
{
        json_t *o = session_meta_json(m);
        char *t;

        assert_non_null(o);
        t = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        assert_non_null(t);
        return t;
}

static void test_meta_roundtrip(void **state)
{
        struct session_meta m, back;
        char err[256], *t;

        meta(&m);
        t = text_of(&m);
        assert_int_equal(session_meta_parse(t, strlen(t), &back, err, sizeof(err)), 0);
        assert_string_equal(back.id, SID);
        assert_string_equal(back.workdir, SID);
        assert_int_equal(back.uid, 1000);
        assert_int_equal(back.m.memory_mb, 64);
        assert_int_equal(back.execs, 2);
        assert_int_equal(json_integer_value(json_object_get(back.limits, "timeout_ms")), 100);
        free(t);
        session_meta_done(&back);
        session_meta_done(&m);
}

/* Each field spoiled in turn: refused, with a reason. */
static void test_meta_damaged(void **state)
{
        static const char *const keys[] = {"format", "session",  "workdir",      "uid",
                                           "lang",   "age_ms",   "mem_size",     "vmstate_sha256",
                                           "limits", "snapshot", "vmstate_size", "max_lifetime_ms"};
        struct session_meta m, back;
        char err[256], *t;

        meta(&m);
        t = text_of(&m);
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                json_t *o = json_loads(t, 0, NULL);
                char *bad;

                json_object_set_new(o, keys[i], json_string("../x"));
                bad = json_dumps(o, JSON_COMPACT);
                err[0] = 0;
                assert_int_equal(session_meta_parse(bad, strlen(bad), &back, err, sizeof(err)),
                                 -EINVAL);
                assert_true(err[0]);
                free(bad);
                json_decref(o);
        }
        /* cut short, and too large */
        for (size_t n = 0; n < strlen(t); n += 7)
                assert_int_equal(session_meta_parse(t, n, &back, err, sizeof(err)), -EINVAL);
        assert_int_equal(session_meta_parse(t, SESSION_META_MAX + 1, &back, err, sizeof(err)),
                         -EINVAL);
        free(t);
        session_meta_done(&m);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_fork_decode),
            cmocka_unit_test(test_meta_roundtrip),
            cmocka_unit_test(test_meta_damaged),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
