/* session.c: `opctl session ACTION`: open a session (a VM kept across runs), run in it (the run
 * command's options, sent as session_exec), list and close sessions, fork, pause to disk and
 * resume one. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "call.h"
#include "cleanup.h"
#include "msg.h"
#include "opctl.h"
#include "util.h"

static uint32_t seconds_ms(double s)
{
        double ms = s * 1000.0 + 0.5;

        return ms >= 4294967295.0 ? UINT32_MAX : ms < 1 ? 1 : (uint32_t)ms;
}

static int session_open(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *req = NULL, *answer = NULL;
        int r;

        if (!o->lang)
                return fail("session open needs --lang (opctl status lists the languages)");
        req = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)getpid(), "op", "session_open", "lang",
                        o->lang);
        if (!req)
                return fail("the language name is not valid UTF-8");
        if ((o->idle_timeout_s > 0 &&
             json_object_set_new(req, "idle_timeout_ms",
                                 json_integer(seconds_ms(o->idle_timeout_s))) < 0) ||
            (o->lifetime_s > 0 &&
             json_object_set_new(req, "max_lifetime_ms", json_integer(seconds_ms(o->lifetime_s))) <
                 0) ||
            (o->repl && json_object_set_new(req, "repl", json_true()) < 0))
                return fail("out of memory");
        /* The run limits given become the default of each run in the session. */
        if ((o->timeout_s > 0 &&
             json_object_set_new(req, "timeout_ms", json_integer(seconds_ms(o->timeout_s))) < 0) ||
            (o->cpu_time_ms && json_object_set_new(req, "cpu_time_ms",
                                                   json_integer((json_int_t)o->cpu_time_ms)) < 0) ||
            (o->memory_bytes &&
             json_object_set_new(req, "memory_bytes", json_integer((json_int_t)o->memory_bytes)) <
                 0) ||
            (o->max_processes &&
             json_object_set_new(req, "max_processes", json_integer((json_int_t)o->max_processes)) <
                 0) ||
            (o->has_output_max &&
             json_object_set_new(req, "output_max_bytes", json_integer((json_int_t)o->output_max)) <
                 0) ||
            (o->has_file_size_max &&
             json_object_set_new(req, "file_size_max_bytes",
                                 json_integer((json_int_t)o->file_size_max)) < 0))
                return fail("out of memory");
        r = call(o, req, (uint64_t)OPCTL_RUN_TIMEOUT_MS + OPCTL_RUN_MARGIN_MS, &answer);
        if (r >= 0)
                return r;
        /* The id alone on stdout, for scripts: id=$(opctl session open --lang python). */
        print_scalar(stdout, json_object_get(answer, "session"));
        printf("\n");
        return 0;
}

static void print_session(json_t *s)
{
        print_scalar(stdout, json_object_get(s, "session"));
        printf("  ");
        print_scalar(stdout, json_object_get(s, "lang"));
        printf("  uid ");
        print_scalar(stdout, json_object_get(s, "uid"));
        printf("  ");
        print_scalar(stdout, json_object_get(s, "state"));
        if (json_is_true(json_object_get(s, "repl")))
                printf("  repl");
        printf("  execs ");
        print_scalar(stdout, json_object_get(s, "execs"));
        printf("  age %.1f s  idle %.1f s (timeout %.1f s, lifetime %.1f s)\n",
               (double)json_integer_value(json_object_get(s, "age_ms")) / 1000.0,
               (double)json_integer_value(json_object_get(s, "idle_ms")) / 1000.0,
               (double)json_integer_value(json_object_get(s, "idle_timeout_ms")) / 1000.0,
               (double)json_integer_value(json_object_get(s, "max_lifetime_ms")) / 1000.0);
}

static int session_list(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        json_t *s;
        size_t i;
        int r;

        r = call_op(o, "session_list", &answer);
        if (r >= 0)
                return r;
        json_array_foreach (json_object_get(answer, "sessions"), i, s)
                print_session(s);
        if (json_array_size(json_object_get(answer, "sessions")) == 0)
                printf("no sessions\n");
        return 0;
}

static int session_close(const struct opts *o, const char *id)
{
        _cleanup_(json_decrefp) json_t *req = NULL, *answer = NULL;
        int r;

        req = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)getpid(), "op", "session_close",
                        "session", id);
        if (!req)
                return fail("the session id is not valid UTF-8");
        r = call(o, req, OPCTL_WAIT_MS, &answer);
        if (r >= 0)
                return r;
        printf("closed %s\n", id);
        return 0;
}

/* fork, pause, resume: the session's id in, the answer's gist out (a fork's new id alone on a
 * line, for scripts). */
static int session_save_op(const struct opts *o, const char *op, const char *id)
{
        _cleanup_(json_decrefp) json_t *req = NULL, *answer = NULL;
        json_t *forks, *v;
        size_t i;
        int r;

        req = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)getpid(), "op", op, "session", id);
        if (!req)
                return fail("the session id is not valid UTF-8");
        r = call(o, req, (uint64_t)OPCTL_RUN_TIMEOUT_MS + OPCTL_RUN_MARGIN_MS, &answer);
        if (r >= 0)
                return r;
        forks = json_object_get(answer, "forks");
        json_array_foreach (forks, i, v) {
                print_scalar(stdout, v);
                printf("\n");
        }
        if (!forks) {
                printf("%s ", id);
                print_scalar(stdout, json_object_get(answer, "state"));
                printf("\n");
        }
        return 0;
}

int cmd_session(const struct opts *o, const char *action, const char *id)
{
        if (strcmp(action, "open") == 0)
                return id ? fail("session open takes no id") : session_open(o);
        if (strcmp(action, "list") == 0)
                return id ? fail("session list takes no id") : session_list(o);
        if (!id)
                return fail("session %s needs the session's id", action);
        if (strcmp(action, "close") == 0)
                return session_close(o, id);
        if (strcmp(action, "fork") == 0)
                return session_save_op(o, "session_fork", id);
        if (strcmp(action, "pause") == 0)
                return session_save_op(o, "session_pause", id);
        if (strcmp(action, "resume") == 0)
                return session_save_op(o, "session_resume", id);
        if (strcmp(action, "exec") == 0 || strcmp(action, "run") == 0) {
                struct opts x = *o;

                x.session = id;
                return cmd_run(&x);
        }
        return fail("unknown session action \"%s\" (open, exec, list, close, fork, pause, "
                    "resume)",
                    action);
}
