/* compile.c: the compile phase of an exec, host side: job field, deadline, answer. */
#include "compile.h"

#include <errno.h>
#include <string.h>

#include "cleanup.h"
#include "util.h"

int compile_check(const struct op_lang *lang, const struct op_exec *e, char *errbuf, size_t errlen)
{
        if (e->compile_timeout_ms && !lang->compile[0])
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"compile_timeout_ms\": %s is not a compiled language", lang->name);
        return 0;
}

uint32_t compile_timeout_ms(const struct op_lang *lang, const struct op_exec *e,
                            const struct op_limits *lim)
{
        uint32_t t;

        if (!lang->compile[0])
                return 0;
        t = e->compile_timeout_ms ? e->compile_timeout_ms : lang->compile_timeout_ms;
        return t < lim->compile_timeout_ms_max ? t : lim->compile_timeout_ms_max;
}

int compile_job_add(const struct op_lang *lang, const struct op_exec *e,
                    const struct op_limits *lim, json_t *job)
{
        json_t *argv, *c;
        char **cargv = NULL;

        if (!lang->compile[0])
                return 0;
        if (op_lang_compile_argv(lang, &cargv) < 0)
                return -ENOMEM;
        argv = json_array();
        for (char **a = cargv; argv && *a; a++)
                if (json_array_append_new(argv, json_string(*a)) < 0) {
                        json_decref(argv);
                        argv = NULL;
                }
        op_argv_free(cargv);
        c = json_pack("{s:o, s:I, s:I}", "argv", argv, "timeout_ms",
                      (json_int_t)compile_timeout_ms(lang, e, lim), "output_max",
                      (json_int_t)lang->compile_output_max);
        return c && json_object_set_new(job, "compile", c) == 0 ? 0 : -ENOMEM;
}

static int copy_typed(json_t *dst, json_t *src, const char *key, int (*is)(const json_t *),
                      bool required, bool nullable)
{
        json_t *v = json_object_get(src, key);

        if (!v)
                return required ? -EBADMSG : 0;
        if (!is(v) && !(nullable && json_is_null(v)))
                return -EBADMSG;
        return json_object_set(dst, key, v) < 0 ? -ENOMEM : 0;
}

static int is_string(const json_t *v)
{
        return json_is_string(v);
}

static int is_integer(const json_t *v)
{
        return json_is_integer(v);
}

static int is_boolean(const json_t *v)
{
        return json_is_boolean(v);
}

static int is_number(const json_t *v)
{
        return json_is_number(v);
}

int compile_reply(json_t *reply, json_t *ans)
{
        json_t *c = json_object_get(ans, "compile"), *status = json_object_get(ans, "status");
        _cleanup_(json_decrefp) json_t *out = NULL;
        int r = 0;

        if (!c) {
                /* no compile phase: a compile_error status would be a lie */
                return status && json_is_string(status) &&
                               strcmp(json_string_value(status), "compile_error") == 0
                           ? -EBADMSG
                           : 0;
        }
        if (!json_is_object(c) || !(out = json_object()))
                return json_is_object(c) ? -ENOMEM : -EBADMSG;
        r = copy_typed(out, c, "stdout", is_string, true, false);
        if (r >= 0)
                r = copy_typed(out, c, "stdout_b64", is_string, false, false);
        if (r >= 0)
                r = copy_typed(out, c, "stderr", is_string, true, false);
        if (r >= 0)
                r = copy_typed(out, c, "stderr_b64", is_string, false, false);
        if (r >= 0)
                r = copy_typed(out, c, "exit_code", is_integer, true, true);
        if (r >= 0)
                r = copy_typed(out, c, "signal", is_integer, true, true);
        if (r >= 0)
                r = copy_typed(out, c, "timed_out", is_boolean, true, false);
        if (r >= 0)
                r = copy_typed(out, c, "truncated", is_boolean, true, false);
        if (r >= 0)
                r = copy_typed(out, c, "run_ms", is_number, false, false);
        if (r < 0)
                return r;
        if (json_object_set(reply, "compile", out) < 0)
                return -ENOMEM;
        /* After a compile that worked the run's status follows (exec-opts.c checks it). */
        if (status) {
                if (!json_is_string(status))
                        return -EBADMSG;
                if (strcmp(json_string_value(status), "compile_error") == 0 &&
                    json_object_set_new(reply, "status", json_string("compile_error")) < 0)
                        return -ENOMEM;
        }
        return 0;
}
