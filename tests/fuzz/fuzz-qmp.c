/* fuzz-qmp.c: libFuzzer target for what opd reads from QEMU's QMP monitor (a VMM process is not
 * trusted more than the guest it runs): a byte stream cut into lines as the client does, each
 * line parsed and read as a greeting, event, answer or error. */
#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-check.h"
#include "qmp.h"

static void check_line(const char *line, size_t len)
{
        struct qmp_msg m;
        json_t *msg = NULL;
        int r;

        r = qmp_parse_line(line, len, &msg);
        CHECK(r == 0 || r == -EBADMSG);
        if (r < 0) {
                CHECK(!msg);
                return;
        }
        CHECK(json_is_object(msg));
        qmp_msg_read(msg, &m);
        CHECK(memchr(m.error_text, 0, sizeof(m.error_text)));
        CHECK(m.greeting == (json_object_get(msg, "QMP") != NULL));
        CHECK(!m.event || json_is_string(json_object_get(msg, "event")));
        CHECK(!m.event || strlen(m.event) == json_string_length(json_object_get(msg, "event")) ||
              memchr(m.event, 0, json_string_length(json_object_get(msg, "event"))));
        CHECK(m.error == (json_object_get(msg, "error") != NULL));
        CHECK(!m.error || strstr(m.error_text, ": "));
        CHECK(m.error || !m.error_text[0]);
        CHECK(m.ret == json_object_get(msg, "return"));
        CHECK(m.has_id == json_is_integer(json_object_get(msg, "id")));
        CHECK(m.has_id || m.id == 0);
        CHECK(msg->refcount == 1); /* nothing kept, nothing lost */
        json_decref(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct evbuffer *in = evbuffer_new();
        size_t len;
        char *line;

        CHECK(in);
        CHECK(evbuffer_add(in, data, size) == 0);
        /* the client's framing: lines ended by LF or CRLF, empty ones skipped, a partial last
         * line left for later */
        while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF))) {
                if (len > 0)
                        check_line(line, len);
                free(line);
        }
        /* and the whole input as one line */
        check_line((const char *)data, size);
        evbuffer_free(in);
        return 0;
}
