/* print.c: opctl's output helpers: its own errors ("opctl: ..."), opd's answers raw or as text,
 * and the program's output bytes from an answer or event. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "msg.h"
#include "opctl.h"
#include "util.h"

int fail(const char *fmt, ...)
{
        va_list ap;

        fputs("opctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return EXIT_FAIL;
}

int print_raw(const char *raw, size_t len)
{
        if (op_write_all(STDOUT_FILENO, raw, len) < 0 || op_write_all(STDOUT_FILENO, "\n", 1) < 0)
                return -EIO;
        return 0;
}

/* An answer with "ok": false: "opctl: CODE: MESSAGE", exit 2. */
int answer_error(json_t *answer)
{
        json_t *e = json_object_get(answer, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));

        return fail("%s: %s", code ? code : "internal_error", msg ? msg : "(no message)");
}

void print_scalar(FILE *f, json_t *v)
{
        _cleanup_free_ char *s = NULL;

        if (json_is_string(v))
                fputs(json_string_value(v), f);
        else if (json_is_integer(v))
                fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v))
                fprintf(f, "%g", json_real_value(v));
        else if (!v || json_is_null(v))
                fputs("-", f);
        else if ((s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)))
                fputs(s, f);
}

/* "k=v k=v" for every member of an object, in the order opd sent them. */
void print_members(json_t *obj)
{
        const char *k;
        json_t *v;
        bool first = true;

        if (!json_is_object(obj) || json_object_size(obj) == 0) {
                printf("-");
                return;
        }
        json_object_foreach (obj, k, v) {
                printf("%s%s=", first ? "" : " ", k);
                print_scalar(stdout, v);
                first = false;
        }
}

int write_stream(int fd, json_t *answer, const char *key)
{
        _cleanup_free_ char *bytes = NULL;
        size_t len;
        int r;

        r = op_json_get_bytes(answer, key, OPCTL_FRAME_MAX, &bytes, &len);
        if (r < 0)
                return fail("opd's answer has a malformed \"%s\": %s", key, strerror(-r));
        r = op_write_all(fd, bytes, len);
        if (r < 0 && r != -EPIPE)
                return fail("cannot write the program's %s: %s", key, strerror(-r));
        return 0;
}
