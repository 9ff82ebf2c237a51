/* batch.c: opctl batch: exec requests read from a file (one JSON object per line, or one JSON
 * array) sent as one exec_batch; each member's answer printed as it comes, then the summary. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "call.h"
#include "cleanup.h"
#include "msg.h"
#include "opctl.h"
#include "util.h"

int parse_json_list(const char *what, const char *text, size_t len, json_t **ret)
{
        _cleanup_(json_decrefp) json_t *all = NULL;
        json_error_t e;
        size_t pos = 0, lineno = 0;

        while (pos < len &&
               (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' || text[pos] == '\r'))
                pos++;
        if (pos < len && text[pos] == '[') {
                all = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
                if (!all || !json_is_array(all))
                        return fail("%s: not a JSON array: %s (line %d)", what, e.text, e.line);
                *ret = TAKE_PTR(all);
                return 0;
        }
        all = json_array();
        if (!all)
                return fail("out of memory");
        while (pos < len) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t end = nl ? (size_t)(nl - text) : len, i = pos;
                json_t *m;

                lineno++;
                while (i < end && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r'))
                        i++;
                if (i < end) {
                        m = json_loadb(text + pos, end - pos, JSON_REJECT_DUPLICATES, &e);
                        if (!m)
                                return fail("%s: line %zu: %s", what, lineno, e.text);
                        json_array_append_new(all, m);
                }
                pos = end + 1;
        }
        *ret = TAKE_PTR(all);
        return 0;
}

struct batch_print {
        const struct opts *o;
        int worst; /* 0 while every member ran with status ok */
};

/* A member's answer (or one of its events, with --json). */
static int on_member(json_t *frame, const char *raw, size_t len, void *userdata)
{
        struct batch_print *p = userdata;
        json_t *ev = json_object_get(frame, "event");

        if (ev && !p->o->json)
                return 0; /* streamed pieces: the human view prints answers only */
        if (op_write_all(STDOUT_FILENO, raw, len) < 0 || op_write_all(STDOUT_FILENO, "\n", 1) < 0)
                return EXIT_FAIL;
        if (!ev)
                note_run_status(frame, &p->worst);
        return 0;
}

int cmd_batch(const struct opts *o, const char *path)
{
        _cleanup_(json_decrefp) json_t *members = NULL, *req = NULL, *answer = NULL;
        _cleanup_free_ char *text = NULL, *raw = NULL;
        struct batch_print p = {.o = o};
        struct exchange_ext x = {.other = on_member, .input_fd = -1, .userdata = &p};
        size_t len, raw_len, i;
        uint64_t wait_ms = 0;
        json_t *m;
        int r;

        if (read_input(path, &text, &len))
                return EXIT_FAIL;
        if (parse_json_list("batch", text, len, &members))
                return EXIT_FAIL;
        if (json_array_size(members) == 0)
                return fail("batch: %s holds no request", path);
        /* Members get the run flags given (--lang, limits, ...) where they set nothing else, and
         * an id ("1", "2", ...) when they have none. */
        json_array_foreach (members, i, m) {
                _cleanup_(json_decrefp) json_t *defaults = json_object();
                json_t *t;
                char id[32];

                if (!json_is_object(m))
                        return fail("batch: request %zu is not a JSON object", i + 1);
                if (!defaults || run_add_fields(o, defaults))
                        return EXIT_FAIL;
                if (o->lang && json_object_set_new(defaults, "lang", json_string(o->lang)) < 0)
                        return fail("out of memory");
                if (o->stream == 1 && json_object_set_new(defaults, "stream", json_true()) < 0)
                        return fail("out of memory");
                if (json_object_update_missing(m, defaults) < 0)
                        return fail("out of memory");
                if (!json_object_get(m, "id")) {
                        snprintf(id, sizeof(id), "%zu", i + 1);
                        json_object_set_new(m, "id", json_string(id));
                }
                t = json_object_get(m, "timeout_ms");
                if (json_is_integer(t) && (uint64_t)json_integer_value(t) > wait_ms)
                        wait_ms = (uint64_t)json_integer_value(t);
        }
        req = json_pack("{s:s, s:s, s:O}", "id", "batch", "op", "exec_batch", "requests", members);
        if (!req)
                return fail("out of memory");
        /* the members run in parallel as VM slots allow; wait as for the longest several times */
        wait_ms = o->wait_ms ? o->wait_ms
                             : ((wait_ms ? wait_ms : OPCTL_RUN_TIMEOUT_MS) + OPCTL_RUN_MARGIN_MS +
                                OPCTL_COMPILE_MS) *
                                   (1 + json_array_size(members) / 4);
        r = exchange_ext(o->socket, true, req, wait_ms, &x, &answer, &raw, &raw_len);
        if (r)
                return r;
        if (o->json)
                print_raw(raw, raw_len);
        if (!json_is_true(json_object_get(answer, "ok")))
                return answer_error(answer);
        if (!o->json) {
                json_t *b = json_object_get(answer, "batch");
                fprintf(stderr, "opctl: batch: %lld requests, %lld ok, %lld failed\n",
                        (long long)json_integer_value(json_object_get(b, "count")),
                        (long long)json_integer_value(json_object_get(b, "ok")),
                        (long long)json_integer_value(json_object_get(b, "failed")));
        }
        return p.worst;
}
