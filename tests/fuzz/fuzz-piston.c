/* fuzz-piston.c: libFuzzer target for the Piston door's mapping: JSON text in as an execute
 * body (under the default and tight limits), the exec request it builds through opd's own
 * validation, the bytes as a version selector, and the object as an exec answer. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz-check.h"
#include "piston.h"

static void check_body(json_t *body, const struct op_limits *lim)
{
        json_t *id = json_string("piston-1"), *exec = NULL;
        char err[512] = "";
        struct op_exec e;
        int r = piston_exec_request(body, id, lim, &exec, err, sizeof(err));

        if (r < 0) {
                CHECK(!exec && err[0] && (r == -EINVAL || r == -ENOMEM));
        } else {
                /* What the door builds is a protocol exec request: opd's decoder decides. */
                CHECK(json_is_object(exec));
                CHECK(json_equal(json_object_get(exec, "id"), id));
                CHECK(json_is_string(json_object_get(exec, "code")));
                if (op_exec_decode(exec, lim, &e, err, sizeof(err)) == 0) {
                        fuzz_check_exec(&e, lim);
                        op_exec_done(&e);
                }
                CHECK(exec->refcount == 1);
                json_decref(exec);
        }
        CHECK(id->refcount == 1);
        json_decref(id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const struct op_limits tight = FUZZ_LIMITS_TIGHT, dflt = OP_LIMITS_DEFAULT;
        static const char *const versions[] = {"3.11.2", "0.2.9", "5.2.15(1)-release", "unknown"};
        json_error_t jerr;
        json_t *obj, *res;
        char *sel;

        obj = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
        if (obj) {
                check_body(obj, &dflt);
                check_body(obj, &tight);
                res = piston_result(obj, "python", "3.11.2", 64);
                CHECK(!res || json_is_object(json_object_get(res, "run")));
                CHECK(!res ||
                      json_is_string(json_object_get(json_object_get(res, "run"), "output")));
                json_decref(res);
                CHECK(obj->refcount == 1);
                json_decref(obj);
        }
        sel = strndup((const char *)data, size);
        for (size_t i = 0; sel && i < sizeof(versions) / sizeof(versions[0]); i++) {
                int m = piston_version_match(sel, versions[i]);
                CHECK(m == 0 || m == 1);
        }
        free(sel);
        return 0;
}
