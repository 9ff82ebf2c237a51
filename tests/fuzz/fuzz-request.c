/* fuzz-request.c: libFuzzer target for request validation: JSON text in, op_exec_decode() (and
 * the stdin and exec_batch decoders) under the default and under tight limits, and the answer
 * or error reply sent back out. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const struct op_limits tight = FUZZ_LIMITS_TIGHT, dflt = OP_LIMITS_DEFAULT;
        json_error_t jerr;
        json_t *obj = NULL;
        char err[256] = "";
        int r;

        /* as opd parses a frame */
        r = op_parse_object((const char *)data, size, &obj, err, sizeof(err));
        if (r < 0) {
                CHECK(r == -EBADMSG && err[0] && !obj);
                fuzz_check_reply(op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", err), NULL, 0,
                                 true);
        } else {
                fuzz_handle_request(obj, &dflt, true);
                fuzz_handle_request(obj, &tight, true);
                fuzz_handle_other(obj, &dflt);
                fuzz_handle_other(obj, &tight);
                CHECK(obj->refcount == 1); /* no reference kept or lost */
                json_decref(obj);
        }

        /* a laxer parse lets through what op_parse_object() stops (NUL in strings; invalid
         * UTF-8 is still refused by jansson): the decoder must hold on its own. Its answers may
         * then echo a NUL (in "id"), which the strict parser rightly refuses: not checked. */
        obj = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &jerr);
        if (json_is_object(obj)) {
                fuzz_handle_request(obj, &dflt, false);
                fuzz_handle_request(obj, &tight, false);
        }
        json_decref(obj);
        return 0;
}
