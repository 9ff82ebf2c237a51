/* cases.c: opctl cases: one program compiled once and run on many test cases (exec_cases); the
 * cases from a file (as batch reads its requests) and from --case; each case's answer printed as
 * one JSON line as it comes, in order, then a summary. */
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

struct cases_print {
        const struct opts *o;
        int worst; /* 0 while every case ran with status ok */
};

/* A case's answer: {"case": i, ...its answer}, one JSON line (--json: the event as it came). */
static int on_case(json_t *ev, const char *raw, size_t len, void *userdata)
{
        struct cases_print *p = userdata;
        json_t *r = json_object_get(ev, "result");
        _cleanup_free_ char *line = NULL;

        if (!json_is_object(r) ||
            strcmp(json_string_value(json_object_get(ev, "event")) ?: "", "case") != 0)
                return 0; /* an event opctl does not know */
        note_run_status(r, &p->worst);
        if (p->o->json)
                return op_write_all(STDOUT_FILENO, raw, len) < 0 ||
                               op_write_all(STDOUT_FILENO, "\n", 1) < 0
                           ? EXIT_FAIL
                           : 0;
        json_object_set(r, "case", json_object_get(ev, "case"));
        line = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!line)
                return fail("out of memory");
        return op_write_all(STDOUT_FILENO, line, strlen(line)) < 0 ||
                       op_write_all(STDOUT_FILENO, "\n", 1) < 0
                   ? EXIT_FAIL
                   : 0;
}

/* The program: --code, or --file (a path, or "-": standard input). */
static int read_program(const struct opts *o, char **ret, size_t *ret_len)
{
        if (!!o->code + !!o->file != 1)
                return fail("cases needs the program: one of --code STR or --file PATH");
        if (o->code) {
                *ret = strdup(o->code);
                *ret_len = strlen(o->code);
                return *ret ? 0 : fail("out of memory");
        }
        return read_input(o->file, ret, ret_len);
}

int cmd_cases(const struct opts *o, const char *path)
{
        _cleanup_(json_decrefp) json_t *cases = NULL, *req = NULL, *answer = NULL;
        _cleanup_free_ char *code = NULL, *text = NULL, *raw = NULL;
        struct cases_print p = {.o = o};
        struct exchange_ext x = {.event = on_case, .input_fd = -1, .userdata = &p};
        size_t code_len, len, raw_len, i;
        uint64_t wait_ms = 0;
        json_t *c, *t;
        int r;

        if (!o->lang)
                return fail("cases needs --lang (opctl status lists the languages)");
        if (path && o->file && strcmp(path, "-") == 0 && strcmp(o->file, "-") == 0)
                return fail("cases: the program and the cases cannot both come from standard "
                            "input");
        if (read_program(o, &code, &code_len))
                return EXIT_FAIL;
        if (path) {
                if (read_input(path, &text, &len))
                        return EXIT_FAIL;
                if (parse_json_list("cases", text, len, &cases))
                        return EXIT_FAIL;
        } else if (!(cases = json_array()))
                return fail("out of memory");
        for (i = 0; i < o->n_cases; i++)
                if (json_array_append_new(cases, json_pack("{s:s}", "stdin", o->cases[i])) < 0)
                        return fail("--case \"%s\" is not valid UTF-8", o->cases[i]);
        if (json_array_size(cases) == 0)
                return fail("cases: no case given (a FILE of cases, or --case STDIN)");
        json_array_foreach (cases, i, c) {
                if (!json_is_object(c))
                        return fail("cases: case %zu is not a JSON object", i + 1);
                t = json_object_get(c, "timeout_ms");
                if (json_is_integer(t) && (uint64_t)json_integer_value(t) > wait_ms)
                        wait_ms = (uint64_t)json_integer_value(t);
        }
        req = json_pack("{s:s, s:s, s:s, s:s%, s:O}", "id", "cases", "op", "exec_cases", "lang",
                        o->lang, "code", code, code_len, "cases", cases);
        if (!req)
                return fail("the program or the language name is not valid UTF-8");
        r = run_add_fields(o, req);
        if (r)
                return r;
        /* up to session.fork_max + 1 cases run at once: wait as for the longest several times */
        wait_ms = o->wait_ms ? o->wait_ms
                             : ((wait_ms ? wait_ms : OPCTL_RUN_TIMEOUT_MS) + OPCTL_RUN_MARGIN_MS) *
                                       (1 + json_array_size(cases) / 4) +
                                   OPCTL_COMPILE_MS;
        r = exchange_ext(o->socket, true, req, wait_ms, &x, &answer, &raw, &raw_len);
        if (r)
                return r;
        if (o->json)
                print_raw(raw, raw_len);
        if (!json_is_true(json_object_get(answer, "ok")))
                return answer_error(answer);
        if (strcmp(json_string_value(json_object_get(answer, "status")) ?: "", "ok") != 0) {
                if (!o->json)
                        write_stream(STDERR_FILENO, json_object_get(answer, "compile"), "stderr");
                return EXIT_COMPILE_ERROR;
        }
        if (!o->json) {
                json_t *n = json_object_get(answer, "cases");
                fprintf(stderr, "opctl: cases: compiled once; %lld cases, %lld ok, %lld failed\n",
                        (long long)json_integer_value(json_object_get(n, "count")),
                        (long long)json_integer_value(json_object_get(n, "ok")),
                        (long long)json_integer_value(json_object_get(n, "failed")));
        }
        return p.worst;
}
