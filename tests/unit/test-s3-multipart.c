/* test-s3-multipart.c: unit tests of the pure parts of multipart uploads: the UploadId and
 * CompleteMultipartUpload answer parsers (including S3's 200 with an <Error> body), the part
 * plan, and the part list sent to complete an upload. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s3-list.h"
#include "s3-multipart.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static int upload_id(const char *xml, char *id, size_t idlen, char *code)
{
        char msg[128];

        return s3_upload_id_parse(xml, strlen(xml), id, idlen, code, 64, msg, sizeof(msg));
}

static void test_upload_id(void **state)
{
        /* AWS's documented answer, and s3rver's */
        static const char aws[] =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            "<Bucket>example-bucket</Bucket><Key>example-object</Key>"
            "<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>"
            "</InitiateMultipartUploadResult>";
        static const char s3rver[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                     "<InitiateMultipartUploadResult><Bucket>opd-test</Bucket>"
                                     "<Key>a/b</Key><UploadId>0f3c9a</UploadId>"
                                     "</InitiateMultipartUploadResult>";
        char id[S3_UPLOAD_ID_MAX + 1], code[64];

        assert_int_equal(upload_id(aws, id, sizeof(id), code), 0);
        assert_string_equal(id, "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
        assert_int_equal(upload_id(s3rver, id, sizeof(id), code), 0);
        assert_string_equal(id, "0f3c9a");
        /* entities decoded */
        assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId>a&amp;b</UploadId>"
                                   "</InitiateMultipartUploadResult>",
                                   id, sizeof(id), code),
                         0);
        assert_string_equal(id, "a&b");
}

static void test_upload_id_bad(void **state)
{
        char id[S3_UPLOAD_ID_MAX + 1], small[8], code[64], *big;
        size_t n = 3 * S3_UPLOAD_ID_MAX, o;

        /* an error body: its code, not an id */
        assert_int_equal(upload_id("<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>"
                                   "<Message>no</Message></Error>",
                                   id, sizeof(id), code),
                         -EIO);
        assert_string_equal(code, "AccessDenied");
        assert_string_equal(id, "");
        assert_int_equal(upload_id("", id, sizeof(id), code), -EINVAL);
        assert_int_equal(upload_id("not xml", id, sizeof(id), code), -EINVAL);
        assert_int_equal(upload_id("<Other><UploadId>x</UploadId></Other>", id, sizeof(id), code),
                         -EINVAL);
        assert_int_equal(upload_id("<InitiateMultipartUploadResult><Key>k</Key>"
                                   "</InitiateMultipartUploadResult>",
                                   id, sizeof(id), code),
                         -EINVAL);
        assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId></UploadId>"
                                   "</InitiateMultipartUploadResult>",
                                   id, sizeof(id), code),
                         -EINVAL);
        /* it goes into a query string and logs: no spaces, controls or bytes over 0x7e */
        assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId>a b</UploadId>"
                                   "</InitiateMultipartUploadResult>",
                                   id, sizeof(id), code),
                         -EINVAL);
        assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId>a&#233;</UploadId>"
                                   "</InitiateMultipartUploadResult>",
                                   id, sizeof(id), code),
                         -EINVAL);
        assert_int_equal(
            upload_id("<InitiateMultipartUploadResult><UploadId>abc", id, sizeof(id), code),
            -EINVAL);
        /* bounds: the caller's buffer, S3_UPLOAD_ID_MAX, the body size */
        assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId>12345678</UploadId>"
                                   "</InitiateMultipartUploadResult>",
                                   small, sizeof(small), code),
                         -E2BIG);
        big = malloc(S3_MULTIPART_ANSWER_MAX + 2);
        assert_non_null(big);
        o = (size_t)sprintf(big, "<InitiateMultipartUploadResult><UploadId>");
        memset(big + o, 'x', n);
        strcpy(big + o + n, "</UploadId></InitiateMultipartUploadResult>");
        assert_int_equal(upload_id(big, id, sizeof(id), code), -E2BIG);
        memset(big, ' ', S3_MULTIPART_ANSWER_MAX + 1);
        big[S3_MULTIPART_ANSWER_MAX + 1] = 0;
        assert_int_equal(upload_id(big, id, sizeof(id), code), -E2BIG);
        free(big);
}

static int complete(const char *xml, char *code)
{
        char msg[128];

        return s3_complete_parse(xml, strlen(xml), code, 64, msg, sizeof(msg));
}

static void test_complete_answer(void **state)
{
        char code[64];

        assert_int_equal(
            complete(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/"
                "\"><Location>http://b.s3.amazonaws.com/k</Location><Bucket>b</Bucket>"
                "<Key>k</Key><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>"
                "</CompleteMultipartUploadResult>",
                code),
            0);
        /* S3 answers 200 at once, keeps the connection alive with spaces, then may send an
         * error: a failure, with S3's code */
        assert_int_equal(complete("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n      \n   "
                                  "<Error><Code>InternalError</Code><Message>We encountered an "
                                  "internal error. Please try again.</Message><RequestId>656c76"
                                  "</RequestId></Error>",
                                  code),
                         -EIO);
        assert_string_equal(code, "InternalError");
        assert_int_equal(complete("", code), -EINVAL); /* the connection dropped after 200 */
        assert_int_equal(complete("<?xml version=\"1.0\"?>", code), -EINVAL);
        assert_int_equal(complete("<ListBucketResult></ListBucketResult>", code), -EINVAL);
        assert_int_equal(complete("</CompleteMultipartUploadResult>", code), -EINVAL);
}

static void check_plan(uint64_t size, uint64_t asked, uint64_t want_part, uint32_t want_n)
{
        struct s3_part_plan p;

        assert_int_equal(s3_part_plan(size, asked, &p), 0);
        assert_int_equal(p.part_size, want_part);
        assert_int_equal(p.n_parts, want_n);
        /* S3's rules: at most 10000 parts, every one but the last at least 5 MiB, and the
         * parts cover the object exactly */
        assert_true(p.n_parts >= 1 && p.n_parts <= S3_PARTS_MAX);
        assert_true(p.part_size >= S3_PART_MIN && p.part_size <= S3_PART_MAX);
        assert_true((uint64_t)(p.n_parts - 1) * p.part_size < size || size == 0);
        assert_true((uint64_t)p.n_parts * p.part_size >= size);
}

static void test_part_plan(void **state)
{
        struct s3_part_plan p;

        check_plan(512 * MiB, 8 * MiB, 8 * MiB, 64);
        check_plan(17 * MiB + 4, 5 * MiB, 5 * MiB, 4); /* a short last part */
        check_plan(10 * MiB, 5 * MiB, 5 * MiB, 2);     /* an exact multiple */
        check_plan(64 * MiB, 8 * MiB, 8 * MiB, 8);
        check_plan(80000 * MiB, 8 * MiB, 8 * MiB, 10000); /* exactly the most parts */
        check_plan(80000 * MiB + 1, 8 * MiB, 9 * MiB, 8889);
        check_plan(64 * GiB, 5 * MiB, 7 * MiB, 9363); /* raised to fit 10000 parts */
        check_plan(1000 * GiB, 8 * MiB, 103 * MiB, 9942);
        /* out of bounds */
        assert_int_equal(s3_part_plan(64 * MiB, 4 * MiB, &p), -EINVAL);
        assert_int_equal(s3_part_plan(64 * MiB, 2 * GiB, &p), -EINVAL);
        assert_int_equal(s3_part_plan(20000 * GiB, 8 * MiB, &p), -EFBIG);
}

static void test_complete_xml(void **state)
{
        char etags[3][S3_ETAG_MAX] = {"9b2cf535f27731c974343645a3985328",
                                      "6bcf86bed8807b8e78f0fc6e0a53079d-2", "ABC"};
        char *xml = s3_complete_xml((const char(*)[S3_ETAG_MAX])etags, 3);

        assert_non_null(xml);
        assert_string_equal(xml, "<CompleteMultipartUpload>"
                                 "<Part><PartNumber>1</PartNumber>"
                                 "<ETag>\"9b2cf535f27731c974343645a3985328\"</ETag></Part>"
                                 "<Part><PartNumber>2</PartNumber>"
                                 "<ETag>\"6bcf86bed8807b8e78f0fc6e0a53079d-2\"</ETag></Part>"
                                 "<Part><PartNumber>3</PartNumber><ETag>\"ABC\"</ETag></Part>"
                                 "</CompleteMultipartUpload>");
        free(xml);
        /* an ETag from the server goes into XML: only what ETags are made of */
        strcpy(etags[1], "x</ETag><Part>");
        assert_null(s3_complete_xml((const char(*)[S3_ETAG_MAX])etags, 3));
        strcpy(etags[1], "");
        assert_null(s3_complete_xml((const char(*)[S3_ETAG_MAX])etags, 3));
        assert_null(s3_complete_xml((const char(*)[S3_ETAG_MAX])etags, 0));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_upload_id),       cmocka_unit_test(test_upload_id_bad),
            cmocka_unit_test(test_complete_answer), cmocka_unit_test(test_part_plan),
            cmocka_unit_test(test_complete_xml),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
