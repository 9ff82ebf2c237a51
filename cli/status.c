/* status.c: the commands that send one op and print its answer for people: ping, status,
 * languages, metrics and reload. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "call.h"
#include "cleanup.h"
#include "msg.h"
#include "opctl.h"
#include "util.h"

int cmd_ping(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        uint64_t t0;
        int r;

        t0 = op_now_us();
        r = call_op(o, "ping", &answer);
        if (r >= 0)
                return r;
        printf("pong (opd ");
        print_scalar(stdout, json_object_get(answer, "version"));
        printf(", protocol ");
        print_scalar(stdout, json_object_get(answer, "proto"));
        printf(") in %.2f ms\n", (double)(op_now_us() - t0) / 1000.0);
        /* Answering is not serving: a readiness check must not pass on a host that refuses
         * every exec. */
        if (json_is_false(json_object_get(answer, "serving"))) {
                json_t *why = json_object_get(answer, "refused");

                fprintf(stderr, "opctl: opd answers but serves nothing: %s\n",
                        json_is_string(why) ? json_string_value(why) : "(no reason given)");
                return EXIT_FAIL;
        }
        return 0;
}

static void print_uptime(json_t *v)
{
        long long s = json_is_integer(v) ? (long long)json_integer_value(v)
                      : json_is_real(v)  ? (long long)json_real_value(v)
                                         : -1;

        if (s < 0)
                printf("-");
        else if (s >= 86400)
                printf("%lldd %02lldh", s / 86400, s % 86400 / 3600);
        else if (s >= 3600)
                printf("%lldh %02lldm", s / 3600, s % 3600 / 60);
        else if (s >= 60)
                printf("%lldm %02llds", s / 60, s % 60);
        else
                printf("%llds", s);
}

static char *aliases_text(json_t *lang)
{
        json_t *a = json_object_get(lang, "aliases"), *v;
        char *s = NULL;
        size_t len = 0, i;
        FILE *f = open_memstream(&s, &len);

        if (!f)
                return NULL;
        json_array_foreach (a, i, v) {
                fprintf(f, "%s%s", i ? ", " : "", json_is_string(v) ? json_string_value(v) : "?");
        }
        if (json_array_size(a) == 0)
                fputs("-", f);
        fclose(f);
        return s;
}

int cmd_metrics(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        json_t *text;
        int r;

        r = call_op(o, "metrics", &answer);
        if (r >= 0)
                return r;
        text = json_object_get(answer, "text");
        if (!json_is_string(text))
                return fail("opd's metrics answer has no text");
        fwrite(json_string_value(text), 1, json_string_length(text), stdout);
        return 0;
}

int cmd_status(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        size_t i;
        json_t *langs, *l;
        int wname = 8, wver = 7, walias = 7;
        int r;

        r = call_op(o, "status", &answer);
        if (r >= 0)
                return r;

        printf("opd ");
        print_scalar(stdout, json_object_get(answer, "version"));
        printf(", protocol ");
        print_scalar(stdout, json_object_get(answer, "proto"));
        printf(", up ");
        print_uptime(json_object_get(answer, "uptime_s"));
        printf(", vmm ");
        print_scalar(stdout, json_object_get(answer, "vmm"));
        printf(" (");
        print_scalar(stdout, json_object_get(answer, "accel"));
        printf(")\n\n");

        langs = json_object_get(answer, "languages");
        json_array_foreach (langs, i, l) {
                const char *n = json_string_value(json_object_get(l, "name"));
                const char *v = json_string_value(json_object_get(l, "version"));
                _cleanup_free_ char *al = aliases_text(l);

                if (n && (int)strlen(n) > wname)
                        wname = (int)strlen(n);
                if (v && (int)strlen(v) > wver)
                        wver = (int)strlen(v);
                if (al && (int)strlen(al) > walias)
                        walias = (int)strlen(al);
        }
        printf("%-*s  %-*s  %-*s  %s\n", wname, "LANGUAGE", wver, "VERSION", walias, "ALIASES",
               "POOL");
        json_array_foreach (langs, i, l) {
                const char *n = json_string_value(json_object_get(l, "name"));
                const char *v = json_string_value(json_object_get(l, "version"));
                _cleanup_free_ char *al = aliases_text(l);

                printf("%-*s  %-*s  %-*s  ", wname, n ? n : "?", wver, v ? v : "-", walias,
                       al ? al : "-");
                print_members(json_object_get(l, "pool"));
                printf("\n");
        }
        if (json_array_size(langs) == 0)
                printf("(no languages)\n");
        printf("\ncounters: ");
        print_members(json_object_get(answer, "counters"));
        printf("\n");
        return 0;
}

/* languages: what status says about each language, as a table of what a user can run. */
int cmd_languages(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        json_t *langs, *l;
        size_t i;
        int r;

        r = call_op(o, "status", &answer);
        if (r >= 0)
                return r;
        langs = json_object_get(answer, "languages");
        printf("%-10s %-12s %-11s %-12s %s\n", "LANGUAGE", "VERSION", "KIND", "STATE", "ALIASES");
        json_array_foreach (langs, i, l) {
                const char *n = json_string_value(json_object_get(l, "name"));
                const char *v = json_string_value(json_object_get(l, "version"));
                _cleanup_free_ char *al = aliases_text(l);
                const char *state = !json_is_true(json_object_get(l, "available")) ? "no image"
                                    : !json_is_true(json_object_get(l, "enabled")) ? "disabled"
                                                                                   : "served";

                printf("%-10s %-12s %-11s %-12s %s\n", n ? n : "?", v ? v : "-",
                       json_is_true(json_object_get(l, "compiled")) ? "compiled" : "interpreted",
                       state, al ? al : "-");
        }
        return 0;
}

/* reload: opd builds its configuration again and applies it (administrators only). */
int cmd_reload(const struct opts *o)
{
        _cleanup_(json_decrefp) json_t *answer = NULL;
        int r;

        r = call_op(o, "reload", &answer);
        if (r >= 0)
                return r;
        printf("reloaded\n");
        return 0;
}
