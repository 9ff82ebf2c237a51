/* compile.c: the compile phase of an exec, run before the program in the same directory: decode
 * the request's "compile" object, run the compiler under its own limits, describe the result. */
#include "compile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "msg.h"
#include "util.h"

static const char *const compile_fields[] = {"argv", "timeout_ms", "output_max"};

static int get_limit(json_t *c, const char *key, json_int_t max, json_int_t *ret, char *errbuf,
                     size_t errlen)
{
        json_t *v = json_object_get(c, key);

        if (!v)
                return op_errf(errbuf, errlen, -EINVAL, "\"compile\" needs \"%s\"", key);
        if (!json_is_integer(v) || json_integer_value(v) < (key[0] == 't') ||
            json_integer_value(v) > max)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"compile.%s\" must be an integer from %d to %lld", key,
                               key[0] == 't', (long long)max);
        *ret = json_integer_value(v);
        return 0;
}

int agent_compile_decode(json_t *req, struct agent_compile *ret, char *errbuf, size_t errlen)
{
        json_t *c = json_object_get(req, "compile"), *argv, *a;
        struct agent_compile k = {0};
        json_int_t n;
        const char *key;
        json_t *v;
        size_t i;
        int r;

        *ret = k;
        if (!c)
                return 0;
        if (!json_is_object(c))
                return op_errf(errbuf, errlen, -EINVAL, "\"compile\" must be an object");
        json_object_foreach (c, key, v) {
                for (i = 0; i < ELEMENTSOF(compile_fields); i++)
                        if (strcmp(key, compile_fields[i]) == 0)
                                break;
                if (i == ELEMENTSOF(compile_fields))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "unknown field \"%.64s\" in \"compile\"", key);
        }
        argv = json_object_get(c, "argv");
        if (!json_is_array(argv) || json_array_size(argv) == 0 ||
            json_array_size(argv) > AGENT_COMPILE_ARGV_MAX)
                return op_errf(errbuf, errlen, -EINVAL, "\"compile.argv\" must be 1 to %d strings",
                               AGENT_COMPILE_ARGV_MAX);
        r = get_limit(c, "timeout_ms", AGENT_COMPILE_TIMEOUT_MS_MAX, &n, errbuf, errlen);
        if (r < 0)
                return r;
        k.timeout_ms = (uint32_t)n;
        r = get_limit(c, "output_max", AGENT_COMPILE_OUTPUT_MAX, &n, errbuf, errlen);
        if (r < 0)
                return r;
        k.output_max = (size_t)n;
        k.argv = calloc(json_array_size(argv) + 1, sizeof(char *));
        if (!k.argv)
                return -ENOMEM;
        json_array_foreach (argv, i, a) {
                if (!json_is_string(a) || json_string_length(a) == 0 ||
                    strlen(json_string_value(a)) != json_string_length(a)) {
                        free(k.argv);
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"compile.argv[%zu]\" must be a non-empty string without "
                                       "NUL",
                                       i);
                }
                k.argv[i] = json_string_value(a);
        }
        *ret = k;
        return 0;
}

void agent_compile_done(struct agent_compile *c)
{
        free(c->argv);
        *c = (struct agent_compile){0};
}

int agent_compile_run(const struct agent_compile *c, const struct agent_job *run,
                      struct agent_result *ret)
{
        struct agent_job job = *run;

        job.argv = c->argv;
        job.stdin_data = NULL;
        job.stdin_len = 0;
        job.timeout_ms = c->timeout_ms;
        job.output_max = c->output_max;
        job.handoff = NULL;
        job.handoff_len = 0;
        return agent_exec(&job, ret);
}

bool agent_compile_failed(const struct agent_result *r)
{
        return r->exit_code != 0 || r->signal != 0 || r->timed_out || r->truncated;
}

void agent_result_fields(struct op_agent_run *ret, const struct agent_result *r)
{
        *ret = (struct op_agent_run){
            .out = {.data = r->out, .len = r->out_len},
            .err = {.data = r->err, .len = r->err_len},
            .order = r->order, /* borrowed too */
            .exit_code = r->signal == 0 && r->exit_code >= 0 ? r->exit_code : -1,
            .signal = r->signal,
            .timed_out = r->timed_out,
            .truncated = r->truncated,
            .has_run_ms = true,
            .run_ms = (double)r->run_us / 1000.0,
        };
}

void agent_compile_answer(struct op_agent_exec *x, const struct agent_result *r)
{
        agent_result_fields(&x->compile, r);
        x->has_compile = true;
}
