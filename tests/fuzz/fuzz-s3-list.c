/* fuzz-s3-list.c: libFuzzer target for the S3 XML reader (lib/s3/s3-list.c): any bytes either
 * parse into a page that keeps every bound, or are refused; the error-body reader never
 * overruns its buffers; the multipart answers (UploadId, CompleteMultipartUpload) give a
 * bounded, printable id or a refusal. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-check.h"
#include "s3-list.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct s3_list_page pg;
        char code[16], msg[32], id[S3_UPLOAD_ID_MAX + 1], small[9];
        int r;

        if (s3_list_parse((const char *)data, size, &pg) == 0) {
                CHECK(pg.n_objects + pg.n_prefixes <= S3_LIST_PAGE_MAX);
                for (size_t i = 0; i < pg.n_objects; i++)
                        CHECK(pg.objects[i].key && strlen(pg.objects[i].key) <= S3_KEY_MAX);
                for (size_t i = 0; i < pg.n_prefixes; i++)
                        CHECK(strlen(pg.prefixes[i]) <= S3_KEY_MAX);
                CHECK(!pg.truncated || pg.next_token);
                s3_list_page_free(&pg);
        }
        s3_error_parse((const char *)data, size, code, sizeof(code), msg, sizeof(msg));
        CHECK(strlen(code) < sizeof(code) && strlen(msg) < sizeof(msg));
        r = s3_upload_id_parse((const char *)data, size, id, sizeof(id), code, sizeof(code), msg,
                               sizeof(msg));
        CHECK(r == 0 || r == -EINVAL || r == -E2BIG || r == -EIO || r == -ENOMEM);
        CHECK(strlen(code) < sizeof(code) && strlen(msg) < sizeof(msg));
        if (r == 0) {
                CHECK(id[0] && strlen(id) <= S3_UPLOAD_ID_MAX);
                for (const char *p = id; *p; p++)
                        CHECK(*p > 0x20 && *p < 0x7f);
        } else {
                CHECK(id[0] == 0);
        }
        r = s3_upload_id_parse((const char *)data, size, small, sizeof(small), code, sizeof(code),
                               msg, sizeof(msg));
        CHECK(r < 0 || strlen(small) < sizeof(small));
        r = s3_complete_parse((const char *)data, size, code, sizeof(code), msg, sizeof(msg));
        CHECK(r == 0 || r == -EINVAL || r == -E2BIG || r == -EIO);
        CHECK(strlen(code) < sizeof(code) && strlen(msg) < sizeof(msg));
        return 0;
}
