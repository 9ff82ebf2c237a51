/* test-s3.c: unit tests of the pure parts of the S3 code: the ListObjectsV2 and error parsers,
 * the signing inputs (canonical query, URI encoding, URLs, payload hash, provider string),
 * credentials files, locations, the chunk manifest, the bucket keys and an attempt's deadline. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cleanup.h"
#include "s3-auth.h"
#include "s3-layout.h"
#include "s3-list.h"
#include "s3.h"
#include "util.h"

static const char page1[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Name>b</Name><Prefix>snap/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>"
    "<IsTruncated>true</IsTruncated>"
    "<Contents><Key>snap/a&amp;b &lt;1&gt;</Key><LastModified>2026-11-27T00:00:00.000Z"
    "</LastModified><ETag>&quot;x&quot;</ETag><Size>4194304</Size>"
    "<StorageClass>STANDARD</StorageClass></Contents>"
    "<!-- a comment <Contents> -->"
    "<Contents><Key>snap/caf&#233;&#x2603;</Key><Size>0</Size></Contents>"
    "<CommonPrefixes><Prefix>snap/python/</Prefix></CommonPrefixes>"
    "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
    "</ListBucketResult>";

static void test_list_page(void **state)
{
        struct s3_list_page pg;

        assert_int_equal(s3_list_parse(page1, strlen(page1), &pg), 0);
        assert_int_equal(pg.n_objects, 2);
        assert_string_equal(pg.objects[0].key, "snap/a&b <1>");
        assert_int_equal(pg.objects[0].size, 4194304);
        assert_string_equal(pg.objects[1].key, "snap/caf\xc3\xa9\xe2\x98\x83");
        assert_int_equal(pg.objects[1].size, 0);
        assert_int_equal(pg.n_prefixes, 1);
        assert_string_equal(pg.prefixes[0], "snap/python/");
        assert_true(pg.truncated);
        assert_string_equal(pg.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
        s3_list_page_free(&pg);
}

static void test_list_bad(void **state)
{
        static const char *const bad[] = {
            "",
            "not xml",
            "<Error><Code>AccessDenied</Code></Error>",
            /* truncated without a token */
            "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
            /* a Contents without its size, or twice a key */
            "<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a</Key><Key>b</Key><Size>1</Size></Contents>"
            "</ListBucketResult>",
            "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a</Key><Size>99999999999999999999</Size>"
            "</Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a&bogus;</Key><Size>1</Size></Contents>"
            "</ListBucketResult>",
            "<ListBucketResult><Contents><Key>a&#0;</Key><Size>1</Size></Contents>"
            "</ListBucketResult>",
            "<ListBucketResult><Contents><Key>a&#xD800;</Key><Size>1</Size></Contents>"
            "</ListBucketResult>",
            "<ListBucketResult><Contents><Key>unterminated",
            "<ListBucketResult><Contents><Key>a</Key><Size>1</Size>",
        };
        struct s3_list_page pg;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (s3_list_parse(bad[i], strlen(bad[i]), &pg) == 0)
                        fail_msg("accepted: %s", bad[i]);
}

static void test_list_bounds(void **state)
{
        /* one entry over the page bound, and a key over S3's 1024 bytes */
        size_t cap = 2048 + (S3_LIST_PAGE_MAX + 1) * 64;
        _cleanup_free_ char *xml = malloc(cap), *key = malloc(S3_KEY_MAX + 2);
        struct s3_list_page pg;
        size_t o;

        o = (size_t)sprintf(xml, "<ListBucketResult>");
        for (int i = 0; i <= S3_LIST_PAGE_MAX; i++)
                o += (size_t)sprintf(xml + o, "<Contents><Key>k%d</Key><Size>1</Size></Contents>",
                                     i);
        o += (size_t)sprintf(xml + o, "</ListBucketResult>");
        assert_int_equal(s3_list_parse(xml, o, &pg), -E2BIG);
        memset(key, 'k', S3_KEY_MAX + 1);
        key[S3_KEY_MAX + 1] = 0;
        o = (size_t)snprintf(xml, cap,
                             "<ListBucketResult><Contents><Key>%s</Key><Size>1</Size>"
                             "</Contents></ListBucketResult>",
                             key);
        assert_int_equal(s3_list_parse(xml, o, &pg), -E2BIG);
}

static void test_error_body(void **state)
{
        static const char body[] = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch"
                                   "</Code><Message>The request signature we calculated does "
                                   "not match\n</Message></Error>";
        char code[32], msg[128];

        s3_error_parse(body, strlen(body), code, sizeof(code), msg, sizeof(msg));
        assert_string_equal(code, "SignatureDoesNotMatch");
        assert_string_equal(msg, "The request signature we calculated does not match ");
        s3_error_parse("", 0, code, sizeof(code), msg, sizeof(msg));
        assert_string_equal(code, "");

        /* bytes outside ASCII become '?': cut anywhere (here inside "é"), the text is still
         * UTF-8, and a JSON answer can carry it */
        {
                static const char utf8[] =
                    "<Error><Code>Acc\xc3\xa8s\xff</Code><Message>caf\xc3\xa9"
                    "\x7f</Message></Error>";
                char small[5];
                json_t *o;

                s3_error_parse(utf8, strlen(utf8), code, sizeof(code), small, sizeof(small));
                assert_string_equal(code, "Acc??s?");
                assert_string_equal(small, "caf?");
                s3_error_parse(utf8, strlen(utf8), code, sizeof(code), msg, sizeof(msg));
                assert_string_equal(msg, "caf???");
                o = json_pack("{s:s, s:s}", "code", code, "error", msg);
                assert_non_null(o);
                json_decref(o);
        }
}

static void test_signing_inputs(void **state)
{
        const char *names[] = {"prefix", "list-type", "delimiter", "continuation-token"};
        const char *values[] = {"snap shots/p+y~", "2", "/", "a/b=c"};
        _cleanup_free_ char *q = s3_query(names, values, 4), *e = s3_uri_encode("a b/c~d*", true);
        _cleanup_free_ char *empty = s3_query(names, values, 0);
        struct s3_location l;
        char buf[160], err[256];

        /* sorted by name, values encoded with uppercase %XX, '/' encoded in values */
        assert_string_equal(q, "continuation-token=a%2Fb%3Dc&delimiter=%2F&list-type=2&"
                               "prefix=snap%20shots%2Fp%2By~");
        assert_string_equal(empty, "");
        assert_string_equal(e, "a%20b/c~d%2A");

        assert_int_equal(
            s3_location_init(&l, "my-bucket", "eu-west-1", NULL, false, err, sizeof(err)), 0);
        {
                _cleanup_free_ char *u = s3_url(&l, "snap/py thon/current", "a=1");
                assert_string_equal(u,
                                    "https://my-bucket.s3.eu-west-1.amazonaws.com/snap/py%20thon/"
                                    "current?a=1");
        }
        assert_int_equal(s3_sigv4_provider(&l, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "aws:amz:eu-west-1:s3");
        s3_location_free(&l);
        assert_int_equal(s3_location_init(&l, "my-bucket", "us-east-1", "http://127.0.0.1:9000/",
                                          true, err, sizeof(err)),
                         0);
        {
                _cleanup_free_ char *u = s3_url(&l, "k", "");
                assert_string_equal(u, "http://127.0.0.1:9000/my-bucket/k");
        }
        s3_location_free(&l);
        s3_payload_header(NULL, 0, buf, sizeof(buf));
        assert_string_equal(buf,
                            "x-amz-content-sha256: "
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        s3_payload_header("abc", 3, buf, sizeof(buf));
        assert_string_equal(buf,
                            "x-amz-content-sha256: "
                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_locations(void **state)
{
        struct s3_location v[S3_LOCATIONS_MAX];
        size_t n = 0;
        char err[256];

        assert_int_equal(s3_locations_parse("bk-1@eu-west-1, bk-2@us-west-2@http://127.0.0.2:9000",
                                            true, v, &n, err, sizeof(err)),
                         0);
        assert_int_equal(n, 2);
        assert_string_equal(v[1].endpoint, "http://127.0.0.2:9000");
        assert_string_equal(v[0].endpoint, "https://s3.eu-west-1.amazonaws.com");
        for (size_t i = 0; i < n; i++)
                s3_location_free(&v[i]);
        n = 0;
        assert_int_equal(s3_locations_parse("nobucketregion", true, v, &n, err, sizeof(err)),
                         -EINVAL);
        assert_int_equal(s3_locations_parse("UPPER@eu-west-1", true, v, &n, err, sizeof(err)),
                         -EINVAL);
        assert_int_equal(s3_locations_parse("bkt@eu-west-1@ftp://x", true, v, &n, err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "http://"));
        assert_int_equal(n, 0);

        /* http:// reaches loopback only; everything else must be https:// */
        static const char *const ok[] = {"http://127.0.0.1:9000", "http://localhost",
                                         "http://[::1]:9000/", "http://127.1.2.3",
                                         "https://10.0.0.1:9000"};
        static const char *const refused[] = {"http://10.0.0.1:9000",
                                              "http://s3.example.com",
                                              "http://127.0.0.1.evil.com",
                                              "http://localhost.evil.com",
                                              "http://[::2]:9000",
                                              "http://user@127.0.0.1",
                                              "http://[::1]x",
                                              "http://128.0.0.1",
                                              "http://0x7f000001"};
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                assert_int_equal(
                    s3_location_init(&v[0], "bkt", "eu-west-1", ok[i], true, err, sizeof(err)), 0);
                s3_location_free(&v[0]);
        }
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                assert_int_equal(
                    s3_location_init(&v[0], "bkt", "eu-west-1", refused[i], true, err, sizeof(err)),
                    -EINVAL);
                assert_non_null(strstr(err, "https://"));
        }
}

static void test_credentials_file(void **state)
{
        static const char text[] = "# comment\n[default]\naws_access_key_id = AKID1\n"
                                   "aws_secret_access_key=SECRET1\n\n[ci]\r\n"
                                   "aws_access_key_id = AKID2 \r\naws_secret_access_key = S2\r\n"
                                   "aws_session_token = TOKEN2\r\n[empty]\n";
        struct s3_creds c;

        assert_int_equal(s3_creds_parse_file(text, "default", &c), 0);
        assert_string_equal(c.key_id, "AKID1");
        assert_string_equal(c.secret, "SECRET1");
        assert_null(c.token);
        s3_creds_free(&c);
        assert_int_equal(s3_creds_parse_file(text, "ci", &c), 0);
        assert_string_equal(c.key_id, "AKID2");
        assert_string_equal(c.token, "TOKEN2");
        s3_creds_free(&c);
        assert_int_equal(s3_creds_parse_file(text, "empty", &c), -ENOKEY);
        assert_int_equal(s3_creds_parse_file(text, "missing", &c), -ENOKEY);
}

static const char *fake_env_value;
static char *fake_env(const char *name)
{
        if (strcmp(name, "AWS_SHARED_CREDENTIALS_FILE") == 0)
                return (char *)fake_env_value;
        if (strcmp(name, "AWS_PROFILE") == 0)
                return (char *)"ci";
        return NULL;
}

static void test_credentials_env(void **state)
{
        char path[] = "/tmp/opd-test-s3-creds-XXXXXX", err[512];
        int fd = mkstemp(path);
        struct s3_creds c;

        assert_true(fd >= 0);
        assert_int_equal(write(fd, "[ci]\naws_access_key_id=A\naws_secret_access_key=B\n", 49), 49);
        close(fd);
        fake_env_value = path;
        assert_int_equal(s3_creds_load(fake_env, &c, err, sizeof(err)), 0);
        assert_string_equal(c.key_id, "A");
        s3_creds_free(&c);
        unlink(path);
        assert_int_equal(s3_creds_load(fake_env, &c, err, sizeof(err)), -ENOKEY);
        assert_non_null(strstr(err, "AWS_ACCESS_KEY_ID"));
}

static const char chunkman[] =
    "{\"format\":1,\"chunk_size\":4194304,\"snapshot\":{\"format\":1,\"version\":\"v1\","
    "\"language\":\"python\",\"created\":\"x\",\"agent_version\":\"1\",\"vmm\":\"qemu\","
    "\"vmm_version\":\"7\",\"accel\":\"tcg\",\"language_version\":\"3\",\"memory_mb\":512,"
    "\"vcpus\":1,\"warm\":true,\"files\":[{\"name\":\"mem\",\"size\":8388609,\"sha256\":"
    "\"%s\"}]},\"chunks\":{\"mem\":[%s]}}";
#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int parse_chunkman(const char *sha, const char *chunks, struct s3_chunkman *m)
{
        char text[2048], err[256];

        snprintf(text, sizeof(text), chunkman, sha, chunks);
        return s3_chunkman_parse(text, strlen(text), m, err, sizeof(err));
}

static void test_chunk_manifest(void **state)
{
        struct s3_chunkman m, back;
        _cleanup_free_ char *text = NULL;
        char err[256];

        /* 8 MiB + 1 byte: three chunks, the middle one of zeros */
        assert_int_equal(parse_chunkman(H64, "\"" H64 "\",null,\"" H64 "\"", &m), 0);
        assert_int_equal(m.files[0].n_chunks, 3);
        assert_string_equal(m.files[0].chunks[1].sha256, "");
        text = s3_chunkman_text(&m);
        assert_int_equal(s3_chunkman_parse(text, strlen(text), &back, err, sizeof(err)), 0);
        assert_string_equal(back.files[0].chunks[2].sha256, H64);
        s3_chunkman_free(&back);
        s3_chunkman_free(&m);
        /* the count must match the size, hashes must be hashes */
        assert_int_equal(parse_chunkman(H64, "\"" H64 "\",null", &m), -EINVAL);
        assert_int_equal(parse_chunkman(H64, "\"" H64 "\",null,\"../../etc/passwd\"", &m), -EINVAL);
        assert_int_equal(parse_chunkman(H64, "\"" H64 "\",null,\"" H64 "\",null", &m), -EINVAL);
        assert_int_equal(parse_chunkman("nothex", "null,null,null", &m), -EINVAL);
        assert_int_equal(s3_chunk_count(0, 4), 0);
        assert_int_equal(s3_chunk_count(8388609, 4194304), 3);
}

static void test_chunk_manifest_names(void **state)
{
        /* file names that would leave the snapshot directory are refused before any use */
        static const char *const bad[] = {"../mem", "a/b", ".hidden", ""};
        char text[2048], err[256];
        struct s3_chunkman m;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                snprintf(text, sizeof(text),
                         "{\"format\":1,\"chunk_size\":4194304,\"snapshot\":{\"version\":\"v1\","
                         "\"language\":\"python\",\"created\":\"x\",\"agent_version\":\"1\","
                         "\"vmm\":\"qemu\",\"vmm_version\":\"7\",\"accel\":\"tcg\","
                         "\"language_version\":\"3\",\"memory_mb\":512,\"vcpus\":1,\"files\":"
                         "[{\"name\":\"%s\",\"size\":1,\"sha256\":\"" H64 "\"}]},"
                         "\"chunks\":{\"%s\":[null]}}",
                         bad[i], bad[i]);
                assert_int_equal(s3_chunkman_parse(text, strlen(text), &m, err, sizeof(err)),
                                 -EINVAL);
        }
        /* a chunk size out of bounds, and a version or language that is not a plain name */
        assert_int_equal(
            s3_chunkman_parse("{\"format\":1,\"chunk_size\":1}", 28, &m, err, sizeof(err)),
            -EINVAL);
}

/* The deadline of one attempt: the connect timeout and the slack, and the bytes it may move at
 * the minimum rate; generous for a slow healthy link, bounded for any answer. */
static void test_attempt_deadline(void **state)
{
        struct s3_client_opts o = S3_CLIENT_OPTS_DEFAULT;
        struct s3_req get = {.method = "GET", .max_body = 4u << 20};
        struct s3_req head = {.method = "HEAD"};
        struct s3_req put = {.method = "PUT", .body_len = 4u << 20, .max_body = 1024};
        struct s3_req small = {.method = "GET"};

        /* a 4 MiB chunk: 5 s connect + 10 s + 64 s at 64 KiB/s; at 1 MiB/s it takes 4 s */
        assert_int_equal(s3_attempt_deadline_ms(&o, &get), 79000);
        assert_true(s3_attempt_deadline_ms(&o, &get) > 10 * 4000);
        assert_int_equal(s3_attempt_deadline_ms(&o, &head), 15000);
        assert_int_equal(s3_attempt_deadline_ms(&o, &put), 15000 + 64000 + 15);
        assert_int_equal(s3_attempt_deadline_ms(&o, &small), 15000 + 16000); /* 1 MiB */
        o.min_rate = 1024 << 10;
        assert_int_equal(s3_attempt_deadline_ms(&o, &get), 19000);
        get.max_body = SIZE_MAX;
        o.min_rate = 1;
        assert_int_equal(s3_attempt_deadline_ms(&o, &get), INT32_MAX);
        o.min_rate = 0;
        assert_int_equal(s3_attempt_deadline_ms(&o, &get), 0);
}

static void test_keys(void **state)
{
        _cleanup_free_ char *a = s3_key_current("snapshots/", "python");
        _cleanup_free_ char *b = s3_key_version("", "python", "v1");
        _cleanup_free_ char *c = s3_key_chunk("p/", H64);
        _cleanup_free_ char *d = s3_key_plain("p/", "python", "v1", "mem");

        assert_string_equal(a, "snapshots/python/current");
        assert_string_equal(b, "python/versions/v1.json");
        assert_string_equal(c, "p/chunks/" H64);
        assert_string_equal(d, "p/python/v1/mem");
        assert_true(s3_prefix_valid(""));
        assert_true(s3_prefix_valid("a/b/"));
        assert_false(s3_prefix_valid("a"));
        assert_false(s3_prefix_valid("/a/"));
        assert_false(s3_prefix_valid("a b/"));
        assert_true(op_is_zero("\0\0\0", 3));
        assert_false(op_is_zero("\0\0\1", 3));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_list_page),
            cmocka_unit_test(test_list_bad),
            cmocka_unit_test(test_list_bounds),
            cmocka_unit_test(test_error_body),
            cmocka_unit_test(test_signing_inputs),
            cmocka_unit_test(test_locations),
            cmocka_unit_test(test_credentials_file),
            cmocka_unit_test(test_credentials_env),
            cmocka_unit_test(test_chunk_manifest),
            cmocka_unit_test(test_chunk_manifest_names),
            cmocka_unit_test(test_keys),
            /* s3.c */
            cmocka_unit_test(test_attempt_deadline),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
