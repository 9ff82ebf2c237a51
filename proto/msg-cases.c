/* msg-cases.c: decoding an exec_cases request into the session_exec requests opd runs: the
 * compile step and one run per case, each checked as a session_exec is. Pure: no I/O. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fail.h"
#include "msg-cases.h"
#include "msg-session.h"

/* Stands in for the session while a step is checked (opd sets the real one). */
#define PROBE_SESSION "00000000-0000-0000-0000-000000000000"

/* Fields of the request that go to the compile step. */
static const char *const compile_fields[] = {"lang", "code", "files", "compile_timeout_ms"};
/* Fields of the request that are the default of each case, and fields a case may give. */
static const char *const default_fields[] = {"args", "env", "output_files"};
static const char *const case_fields[] = {"stdin", "args", "env", "files", "output_files"};

static bool listed(const char *key, const char *const *names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(key, names[i]) == 0)
                        return true;
        return false;
}

static bool is_limit(const char *key)
{
        return listed(key, op_session_limit_fields, op_session_n_limit_fields);
}

/* req checked as a session_exec of lang (a probe session set for the check, then removed). */
static int check_step(json_t *req, const char *lang, const struct op_limits *lim, const char *what,
                      char *errbuf, size_t errlen)
{
        struct op_exec e;
        char err[512] = "";
        int r;

        if (json_object_set_new(req, "session", json_string(PROBE_SESSION)) < 0)
                return -ENOMEM;
        r = op_session_exec_decode(req, lang, NULL, lim, &e, err, sizeof(err));
        json_object_del(req, "session");
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return op_proto_fail(errbuf, errlen, "%s: %s", what, err);
        op_exec_done(&e);
        return 0;
}

static json_t *step_new(const char *phase, const char *lang)
{
        return json_pack("{s:s, s:s, s:s}", "op", "session_exec", "phase", phase, "lang", lang);
}

static int build_run(json_t *req, json_t *c, size_t i, const char *lang,
                     const struct op_limits *lim, json_t **ret, char *errbuf, size_t errlen)
{
        _cleanup_(json_decrefp) json_t *run = step_new("run", lang);
        char what[64];
        const char *key;
        json_t *v;
        int r;

        if (!run)
                return -ENOMEM;
        if (!json_is_object(c))
                return op_proto_fail(errbuf, errlen, "\"cases[%zu]\" must be an object", i);
        json_object_foreach (c, key, v) {
                if (!listed(key, case_fields, ELEMENTSOF(case_fields)) && !is_limit(key))
                        return op_proto_fail(errbuf, errlen,
                                             "unknown field \"%.64s\" in cases[%zu]", key, i);
                if (json_object_set(run, key, v) < 0)
                        return -ENOMEM;
        }
        /* the request's defaults where the case has none */
        json_object_foreach (req, key, v)
                if ((listed(key, default_fields, ELEMENTSOF(default_fields)) || is_limit(key)) &&
                    !json_object_get(run, key) && json_object_set(run, key, v) < 0)
                        return -ENOMEM;
        snprintf(what, sizeof(what), "cases[%zu]", i);
        r = check_step(run, lang, lim, what, errbuf, errlen);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(run);
        return 0;
}

int op_cases_decode(json_t *req, const struct op_limits *lim, struct op_cases *ret, char *errbuf,
                    size_t errlen)
{
        _cleanup_(op_cases_done) struct op_cases o = {0};
        json_t *cases = json_object_get(req, "cases"), *lang = json_object_get(req, "lang"), *v;
        const char *key;
        size_t i;
        int r;

        json_object_foreach (req, key, v)
                if (strcmp(key, "id") != 0 && strcmp(key, "op") != 0 && strcmp(key, "cases") != 0 &&
                    !listed(key, compile_fields, ELEMENTSOF(compile_fields)) &&
                    !listed(key, default_fields, ELEMENTSOF(default_fields)) && !is_limit(key))
                        return op_proto_fail(errbuf, errlen,
                                             "unknown field \"%.64s\" in exec_cases", key);
        if (!json_is_string(lang))
                return op_proto_fail(errbuf, errlen, "\"lang\" must be a string");
        if (!cases)
                return op_proto_fail(errbuf, errlen, "missing \"cases\"");
        if (!json_is_array(cases))
                return op_proto_fail(errbuf, errlen, "\"cases\" must be an array of objects");
        if (json_array_size(cases) == 0)
                return op_proto_fail(errbuf, errlen, "\"cases\" is empty");
        if (json_array_size(cases) > lim->cases_max)
                return op_proto_fail(errbuf, errlen,
                                     "\"cases\" has %zu entries, over the limit of %zu "
                                     "(limit.cases_max)",
                                     json_array_size(cases), lim->cases_max);
        o.compile = step_new("compile", json_string_value(lang));
        if (!o.compile)
                return -ENOMEM;
        for (i = 0; i < ELEMENTSOF(compile_fields); i++) {
                v = json_object_get(req, compile_fields[i]);
                if (v && json_object_set(o.compile, compile_fields[i], v) < 0)
                        return -ENOMEM;
        }
        r = check_step(o.compile, json_string_value(lang), lim, "the program", errbuf, errlen);
        if (r < 0)
                return r;
        o.runs = calloc(json_array_size(cases), sizeof(*o.runs));
        if (!o.runs)
                return -ENOMEM;
        json_array_foreach (cases, i, v) {
                r = build_run(req, v, i, json_string_value(lang), lim, &o.runs[i], errbuf, errlen);
                if (r < 0)
                        return r;
                o.n++;
        }
        *ret = o;
        o = (struct op_cases){0};
        return 0;
}

void op_cases_done(struct op_cases *c)
{
        json_decref(c->compile);
        for (size_t i = 0; i < c->n; i++)
                json_decref(c->runs[i]);
        free(c->runs);
        *c = (struct op_cases){0};
}
