/* test-snap-sign.c: unit tests of lib/store/snap-sign.c and snap-keys.c: a key made by keygen
 * signs a manifest that verifies against the pinned key only; a changed byte, an unknown key or
 * no signature are refused each with its own error; a key file's public half is the one keygen
 * printed; the serial and the expiry survive the chunk manifest, a serial above 2^53 is refused,
 * and an expired or (when required) missing expiry is refused; a text that could hold more JSON
 * values than a valid manifest is refused before it is parsed, while one at the chunk limit is
 * read. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "snap-chunks.h"
#include "snap-keys.h"
#include "snap-sign.h"

static const char manifest[] =
    "{\"format\":1,\"chunk_size\":65536,\"serial\":42,\"snapshot\":{\"version\":\"v1\","
    "\"language\":\"bash\",\"created\":\"2026-11-27T03:15:00Z\",\"agent_version\":\"1\","
    "\"vmm\":\"qemu\",\"vmm_version\":\"10.0.2\",\"accel\":\"tcg\",\"memory_mb\":256,"
    "\"vcpus\":1,\"language_version\":\"5.2\",\"warm\":true,\"files\":[{\"name\":\"mem\",\"size\":"
    "65536,\"sha256\":"
    "\"0000000000000000000000000000000000000000000000000000000000000000\"}]},"
    "\"chunks\":{\"mem\":[null]}}";

static void keypath(char *buf, size_t len, const char *tag)
{
        snprintf(buf, len, "/tmp/test-snap-sign-%d-%s.pem", (int)getpid(), tag);
        unlink(buf);
}

static void test_sign_verify(void **state)
{
        char path[128], path2[128], pub[S3_KEY_TEXT_LEN + 1], pub2[S3_KEY_TEXT_LEN + 1], err[512];
        uint8_t keys[S3_TRUSTED_MAX][S3_KEY_LEN];
        struct snap_signed s = {0};
        struct s3_chunkman m = {0};
        size_t n;
        char *text = NULL, *p, spec[2 * S3_KEY_TEXT_LEN + 4];

        (void)state;
        keypath(path, sizeof(path), "a");
        keypath(path2, sizeof(path2), "b");
        assert_int_equal(snap_keygen(path, pub, err, sizeof(err)), 0);
        assert_int_equal(snap_keygen(path2, pub2, err, sizeof(err)), 0);
        assert_int_equal(snap_keygen(path, pub, err, sizeof(err)), -EEXIST); /* never overwrites */
        assert_int_equal(strncmp(pub, "ed25519:", 8), 0);
        assert_int_equal(strlen(pub), S3_KEY_TEXT_LEN);

        /* the key file's public half is the one keygen printed, and the one it signs with */
        assert_int_equal(snap_key_public(path, keys[0], err, sizeof(err)), 0);
        s3_key_text(keys[0], spec);
        assert_string_equal(spec, pub);
        assert_int_equal(snap_key_public("/dev/null", keys[0], err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "not an Ed25519 private key"));

        assert_int_equal(snap_sign(path, manifest, strlen(manifest), &text, err, sizeof(err)), 0);
        assert_int_equal(snap_signed_parse(text, strlen(text), &s, err, sizeof(err)), 0);
        assert_true(s.is_signed);
        assert_int_equal(s.payload_len, strlen(manifest));
        assert_memory_equal(s.payload, manifest, s.payload_len);

        /* the old key and the new one pinned (rotation): verifies */
        snprintf(spec, sizeof(spec), "%s, %s", pub2, pub);
        assert_int_equal(s3_keys_parse(spec, keys, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 2);
        assert_int_equal(
            snap_signed_verify(&s, (const uint8_t(*)[S3_KEY_LEN])keys, n, err, sizeof(err)), 0);
        if (s3_chunkman_parse(s.payload, s.payload_len, &m, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        assert_int_equal(m.serial, 42);
        s3_chunkman_free(&m);

        /* only the other key pinned: unknown */
        assert_int_equal(
            snap_signed_verify(&s, (const uint8_t(*)[S3_KEY_LEN])keys, 1, err, sizeof(err)),
            -ENOKEY);
        assert_non_null(strstr(err, "s3.trusted_keys"));
        snap_signed_free(&s);

        /* one byte of the signed manifest changed: memory_mb 256 -> 956 */
        p = strstr(text, "memory_mb");
        assert_non_null(p);
        p = strchr(p, '2');
        *p = '9';
        assert_int_equal(snap_signed_parse(text, strlen(text), &s, err, sizeof(err)), 0);
        assert_int_equal(
            snap_signed_verify(&s, (const uint8_t(*)[S3_KEY_LEN])keys, n, err, sizeof(err)),
            -EBADMSG);
        assert_non_null(strstr(err, "bad signature"));
        snap_signed_free(&s);

        /* a bare manifest: parsed, never verified */
        assert_int_equal(snap_signed_parse(manifest, strlen(manifest), &s, err, sizeof(err)), 0);
        assert_false(s.is_signed);
        assert_int_equal(
            snap_signed_verify(&s, (const uint8_t(*)[S3_KEY_LEN])keys, n, err, sizeof(err)),
            -EPERM);
        snap_signed_free(&s);
        free(text);
        unlink(path);
        unlink(path2);
}

/* "expires" survives the chunk manifest; the check refuses from that second on, names the
 * version and the time, and with require refuses a manifest without one. */
static void test_expiry(void **state)
{
        struct s3_chunkman m = {0}, m2 = {0};
        char err[512], *text;

        (void)state;
        if (s3_chunkman_parse(manifest, strlen(manifest), &m, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        assert_int_equal(m.expires, 0);
        assert_int_equal(s3_chunkman_check_expiry(&m, 4000000000u, false, err, sizeof(err)), 0);
        assert_int_equal(s3_chunkman_check_expiry(&m, 1, true, err, sizeof(err)), -ENODATA);
        assert_non_null(strstr(err, "s3.require_expiry"));
        assert_non_null(strstr(err, "v1"));

        m.expires = 1796299200; /* 2026-12-03T12:00:00Z */
        text = s3_chunkman_text(&m);
        assert_non_null(text);
        assert_non_null(strstr(text, "\"expires\":1796299200"));
        if (s3_chunkman_parse(text, strlen(text), &m2, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        assert_int_equal(m2.expires, 1796299200);
        assert_int_equal(m2.serial, 42);
        assert_int_equal(s3_chunkman_check_expiry(&m2, 1796299199, true, err, sizeof(err)), 0);
        assert_int_equal(s3_chunkman_check_expiry(&m2, 1796299200, true, err, sizeof(err)),
                         -EKEYEXPIRED);
        assert_int_equal(s3_chunkman_check_expiry(&m2, 1796299260, false, err, sizeof(err)),
                         -EKEYEXPIRED);
        assert_non_null(strstr(err, "2026-12-03T12:00:00Z"));
        assert_non_null(strstr(err, "60 s ago"));
        s3_chunkman_free(&m2);

        /* zero, negative, a fraction or not a number: refused by the parser */
        for (size_t i = 0; i < 4; i++) {
                static const char *const bad[] = {"0", "-1", "1.5", "\"1796299200\""};
                char buf[sizeof(manifest) + 32];

                snprintf(buf, sizeof(buf), "{\"expires\":%s,%s", bad[i], manifest + 1);
                assert_int_equal(s3_chunkman_parse(buf, strlen(buf), &m2, err, sizeof(err)),
                                 -EINVAL);
                assert_non_null(strstr(err, "\"expires\""));
        }
        free(text);
        s3_chunkman_free(&m);
}

/* A serial is at most S3_SERIAL_MAX (2^53) when read; a higher one, which a run of pushes
 * could carry past what json_int_t holds, is refused, and so is a negative one. */
static void test_serial_bounds(void **state)
{
        static const struct {
                const char *serial;
                int r;
        } cases[] = {
            {"0", 0},
            {"9007199254740991", 0},
            {"9007199254740992", 0},
            {"9007199254740993", -EINVAL},
            {"9223372036854775807", -EINVAL},
            {"-1", -EINVAL},
            {"-9223372036854775808", -EINVAL},
            {"1.5", -EINVAL},
        };
        struct s3_chunkman m = {0};
        char buf[sizeof(manifest) + 32], err[512];

        (void)state;
        assert_true(S3_SERIAL_MAX == 9007199254740992ull);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                /* the manifest from "snapshot" on, after this case's serial */
                const char *rest = strstr(manifest, "\"snapshot\"");

                snprintf(buf, sizeof(buf), "{\"format\":1,\"chunk_size\":65536,\"serial\":%s,%s",
                         cases[i].serial, rest);
                err[0] = 0;
                assert_int_equal(s3_chunkman_parse(buf, strlen(buf), &m, err, sizeof(err)),
                                 cases[i].r);
                if (cases[i].r == 0) {
                        assert_int_equal(m.serial, strtoull(cases[i].serial, NULL, 10));
                        s3_chunkman_free(&m);
                } else {
                        assert_non_null(strstr(err, "\"serial\""));
                }
        }
}

static void test_envelope_bad(void **state)
{
        static const char *const bad[] = {
            "[]",
            "{\"format\":2}",
            "{\"format\":2,\"key\":\"ed25519:00\",\"signature\":\"00\",\"manifest\":\"{}\"}",
            "{\"format\":2,\"key\":\"ed25519:"
            "000000000000000000000000000000000000000000000000000000000000000g\","
            "\"signature\":\"00\",\"manifest\":\"{}\"}",
            "{\"format\":2,\"key\":1,\"signature\":\"00\",\"manifest\":\"{}\",\"x\":1}",
        };
        struct snap_signed s;
        uint8_t keys[S3_TRUSTED_MAX][S3_KEY_LEN];
        char err[256];
        size_t n;

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = 0;
                assert_int_equal(snap_signed_parse(bad[i], strlen(bad[i]), &s, err, sizeof(err)),
                                 -EINVAL);
                assert_true(err[0]);
        }
        assert_int_equal(s3_keys_parse("ed25519:AB", keys, &n, err, sizeof(err)), -EINVAL);
        assert_int_equal(s3_keys_parse("", keys, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 0);
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An 8 MiB body of "{},{},..." (about 2.8 million values; parsed it is ~600 MiB of tree) is
 * refused, signed or bare, before any parse: at once and with an error that says why. A valid
 * manifest of S3_CHUNKS_MAX chunks, pretty-printed, is still read. */
static void test_values_bound(void **state)
{
        static const char head[] = "{\"format\":1,\"x\":[";
        struct snap_signed s = {0};
        struct s3_chunkman m = {0};
        size_t len = S3_CHUNKMAN_MAX, n;
        char err[512], *text, *p;
        double t0;

        (void)state;
        text = malloc(len + 1);
        assert_non_null(text);
        memcpy(text, head, strlen(head));
        for (n = strlen(head); n + 3 + 4 <= len; n += 3)
                memcpy(text + n, "{},", 3);
        memcpy(text + n, "{}]}", 4);
        n += 4;
        assert_true(n <= len);
        t0 = now_s();
        assert_int_equal(snap_signed_parse(text, n, &s, err, sizeof(err)), -EFBIG);
        assert_non_null(strstr(err, "JSON values"));
        assert_int_equal(s3_chunkman_parse(text, n, &m, err, sizeof(err)), -EFBIG);
        assert_non_null(strstr(err, "JSON values"));
        assert_true(now_s() - t0 < 0.5);
        free(text);

        /* one file of S3_CHUNKS_MAX chunks of 64 KiB, every one named, with whitespace */
        len = sizeof(manifest) + (size_t)S3_CHUNKS_MAX * (SHA256_HEX_LEN + 8);
        text = malloc(len);
        assert_non_null(text);
        p = text + snprintf(text, len,
                            "{\"format\": 1, \"chunk_size\": 65536, \"snapshot\": "
                            "{\"version\": \"v1\", \"language\": \"bash\", \"created\": "
                            "\"2026-11-27T03:15:00Z\", \"agent_version\": \"1\", \"vmm\": "
                            "\"qemu\", \"vmm_version\": \"10.0.2\", \"accel\": \"tcg\", "
                            "\"language_version\": \"5.2\", \"memory_mb\": 256, \"vcpus\": 1, "
                            "\"files\": [{\"name\": \"mem\", \"size\": %llu, \"sha256\": "
                            "\"%064d\"}]},\n \"chunks\": {\"mem\": [",
                            (unsigned long long)S3_CHUNKS_MAX * 65536, 0);
        for (size_t i = 0; i < S3_CHUNKS_MAX; i++)
                p += sprintf(p, "%s\n  \"%064zx\"", i ? "," : "", i + 1);
        strcpy(p, "]}}");
        if (s3_chunkman_parse(text, strlen(text), &m, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        assert_int_equal(m.files[0].n_chunks, S3_CHUNKS_MAX);
        s3_chunkman_free(&m);
        free(text);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_sign_verify),  cmocka_unit_test(test_envelope_bad),
            cmocka_unit_test(test_expiry),       cmocka_unit_test(test_serial_bounds),
            cmocka_unit_test(test_values_bound),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
