/* print.c: opctl's output helpers: its own errors ("opctl: ..."), opd's answers raw or as text,
 * and the program's output bytes from an answer or event. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent-msg.h"
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

int write_output(json_t *answer)
{
        _cleanup_free_ char *out = NULL, *err = NULL;
        struct op_agent_order order = {0};
        /* Without an order (streamed output, an older agent) or with one that does not fit the
         * bytes: the whole of stdout, then the whole of stderr. */
        struct op_agent_segment whole[2] = {{.stream = 1}, {.stream = 2}};
        const struct op_agent_segment *seg = whole;
        size_t n = 2, at[2] = {0, 0};
        char why[256];
        int r, rc = 0;

        r = op_json_get_bytes(answer, "stdout", OPCTL_FRAME_MAX, &out, &whole[0].len);
        if (r < 0)
                return fail("opd's answer has a malformed \"stdout\": %s", strerror(-r));
        r = op_json_get_bytes(answer, "stderr", OPCTL_FRAME_MAX, &err, &whole[1].len);
        if (r < 0)
                return fail("opd's answer has a malformed \"stderr\": %s", strerror(-r));
        if (op_agent_order_decode(answer, whole[0].len, whole[1].len, "an answer", "", &order, why,
                                  sizeof(why)) == 0 &&
            order.known) {
                seg = order.seg;
                n = order.n;
        }
        for (size_t i = 0; i < n; i++) {
                int s = seg[i].stream - 1;

                r = op_write_all(s ? STDERR_FILENO : STDOUT_FILENO, (s ? err : out) + at[s],
                                 seg[i].len);
                at[s] += seg[i].len;
                if (r < 0 && r != -EPIPE) {
                        rc = fail("cannot write the program's %s: %s", s ? "stderr" : "stdout",
                                  strerror(-r));
                        break;
                }
        }
        op_agent_order_done(&order);
        return rc;
}

int read_input(const char *path, char **ret, size_t *ret_len)
{
        int r = strcmp(path, "-") == 0 ? op_read_fd(STDIN_FILENO, OPCTL_INPUT_MAX, ret, ret_len)
                                       : op_read_file(path, OPCTL_INPUT_MAX, ret, ret_len);

        if (r < 0)
                return fail("cannot read %s: %s", path, r == -EFBIG ? "over 64 MiB" : strerror(-r));
        return 0;
}

void note_run_status(json_t *answer, int *worst)
{
        const char *status = json_string_value(json_object_get(answer, "status"));

        if (!json_is_true(json_object_get(answer, "ok")) || !status || strcmp(status, "ok") != 0)
                *worst = 1;
        else if (run_write_files(answer))
                *worst = EXIT_FAIL;
}
