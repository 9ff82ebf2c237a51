/* fuzz-snapshot-request.c: libFuzzer target for the "snapshot" operation's request decoder: JSON
 * text in as opd parses a frame, op_snapshot_decode() on it, and the error reply it would get
 * sent back out. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz-check.h"
#include "msg-snapshot.h"

static void check_decode(json_t *req, bool strict)
{
        struct op_snapshot_req s;
        json_t *lang = json_object_get(req, "lang");
        const char *name;
        char err[256] = "";
        int r;

        r = op_snapshot_decode(req, &s, err, sizeof(err));
        CHECK(r == 0 || (r == -EINVAL && err[0]));
        if (r < 0) {
                fuzz_check_reply(
                    op_error_reply(json_object_get(req, "id"), OP_ERR_BAD_REQUEST, "%s", err), NULL,
                    0, strict);
                return;
        }
        name = op_snapshot_action_name(s.action);
        CHECK(name);
        CHECK(strcmp(name, json_string_value(json_object_get(req, "action"))) == 0);
        CHECK(s.lang == (json_is_string(lang) ? json_string_value(lang) : NULL));
        CHECK(s.action != OP_SNAPSHOT_CREATE || s.lang);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_error_t jerr;
        json_t *obj = NULL;
        char err[256] = "";

        /* as opd parses a frame */
        if (op_parse_object((const char *)data, size, &obj, err, sizeof(err)) == 0) {
                check_decode(obj, true);
                CHECK(obj->refcount == 1); /* no reference kept or lost */
                json_decref(obj);
        }
        /* what the strict parser stops (NUL in strings) must not trip the decoder either; its
         * reply may echo a NUL in "id", which the strict parser rightly refuses: not checked */
        obj = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &jerr);
        if (json_is_object(obj))
                check_decode(obj, false);
        json_decref(obj);
        return 0;
}
