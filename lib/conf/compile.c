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

void compile_agent_limits(const struct op_lang *lang, struct op_agent_limits *lim)
{
        lim->compile = lang->compile[0] != NULL;
        lim->compile_output_max = lang->compile_output_max;
}

int compile_reply(json_t *reply, const struct op_agent_exec *x)
{
        const struct op_agent_run *c = &x->compile;
        json_t *out;

        if (!x->has_compile)
                return 0;
        out = json_object();
        if (!out || json_object_set_new(reply, "compile", out) < 0)
                return -ENOMEM;
        if (op_json_set_bytes(out, "stdout", c->out.data, c->out.len) < 0 ||
            op_json_set_bytes(out, "stderr", c->err.data, c->err.len) < 0 ||
            op_agent_order_encode(out, &c->order) < 0 ||
            json_object_set_new(out, "exit_code",
                                c->exit_code >= 0 ? json_integer(c->exit_code) : json_null()) < 0 ||
            json_object_set_new(out, "signal", c->signal ? json_integer(c->signal) : json_null()) <
                0 ||
            json_object_set_new(out, "timed_out", json_boolean(c->timed_out)) < 0 ||
            json_object_set_new(out, "truncated", json_boolean(c->truncated)) < 0 ||
            (c->has_run_ms && json_object_set_new(out, "run_ms", json_real(c->run_ms)) < 0))
                return -ENOMEM;
        /* the run's status (exec-opts.c) is set after this */
        return 0;
}
