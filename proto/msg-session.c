/* msg-session.c: decoding of the session operations' requests (session_open, session_exec,
 * session_list, session_close) and the session id's text form. No I/O, no globals. */
#include "msg-session.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "fail.h"

const char *const op_session_limit_fields[] = {
    "timeout_ms",    "cpu_time_ms",      "memory_bytes",
    "max_processes", "output_max_bytes", "file_size_max_bytes",
};
const size_t op_session_n_limit_fields = ELEMENTSOF(op_session_limit_fields);

static bool is_limit_field(const char *key)
{
        for (size_t i = 0; i < op_session_n_limit_fields; i++)
                if (strcmp(key, op_session_limit_fields[i]) == 0)
                        return true;
        return false;
}

static int check_fields(json_t *req, const char *op, const char *const *fields, size_t n,
                        bool limits, char *errbuf, size_t errlen)
{
        const char *key;
        json_t *v;

        json_object_foreach (req, key, v) {
                bool known = limits && is_limit_field(key);

                for (size_t i = 0; !known && i < n; i++)
                        known = strcmp(key, fields[i]) == 0;
                if (!known)
                        return op_proto_fail(errbuf, errlen, "unknown field \"%.64s\" in %s", key,
                                             op);
        }
        return 0;
}

/* An optional integer in [lo, hi] (def when absent). */
static int get_ms(json_t *req, const char *key, uint32_t lo, uint32_t hi, uint32_t def,
                  const char *limit, uint32_t *ret, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, key);

        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
                return op_proto_fail(errbuf, errlen, "\"%s\" must be an integer from %u to %u (%s)",
                                     key, lo, hi, limit);
        *ret = (uint32_t)json_integer_value(v);
        return 0;
}

static const char *const open_fields[] = {"id",  "op", "lang", "idle_timeout_ms", "max_lifetime_ms",
                                          "repl"};

int op_session_open_decode(json_t *req, const struct op_limits *lim,
                           const struct op_session_bounds *b, struct op_session_open *ret,
                           char *errbuf, size_t errlen)
{
        _cleanup_(json_decrefp) json_t *limits = json_object(), *probe = NULL;
        json_t *lang = json_object_get(req, "lang"), *repl = json_object_get(req, "repl");
        struct op_session_open o = {0};
        const char *key;
        struct op_exec e;
        json_t *v;
        int r;

        if (!limits)
                return -ENOMEM;
        r = check_fields(req, "session_open", open_fields, ELEMENTSOF(open_fields), true, errbuf,
                         errlen);
        if (r < 0)
                return r;
        if (!json_is_string(lang) || json_string_length(lang) == 0 ||
            json_string_length(lang) > OP_LANG_NAME_MAX)
                return op_proto_fail(errbuf, errlen,
                                     "\"lang\" must be a language name of 1-%d bytes",
                                     OP_LANG_NAME_MAX);
        if (repl && !json_is_boolean(repl))
                return op_proto_fail(errbuf, errlen, "\"repl\" must be true or false");
        o.repl = json_is_true(repl);
        r = get_ms(req, "idle_timeout_ms", 1, b->idle_timeout_ms_max, b->idle_timeout_ms_default,
                   "session.max_idle_timeout_ms", &o.idle_timeout_ms, errbuf, errlen);
        if (r < 0)
                return r;
        r = get_ms(req, "max_lifetime_ms", 1, b->lifetime_ms_max, b->lifetime_ms_default,
                   "session.max_lifetime_ms", &o.max_lifetime_ms, errbuf, errlen);
        if (r < 0)
                return r;
        /* The limits are checked as an exec's would be, with the same messages. */
        probe = json_pack("{s:s, s:O, s:s}", "op", "exec", "lang", lang, "code", "");
        if (!probe)
                return -ENOMEM;
        json_object_foreach (req, key, v)
                if (is_limit_field(key) &&
                    (json_object_set(limits, key, v) < 0 || json_object_set(probe, key, v) < 0))
                        return -ENOMEM;
        r = op_exec_decode(probe, lim, &e, errbuf, errlen);
        if (r < 0)
                return r;
        op_exec_done(&e);
        o.json = json_incref(req);
        o.lang = json_string_value(lang);
        o.limits = TAKE_PTR(limits);
        *ret = o;
        return 0;
}

void op_session_open_done(struct op_session_open *o)
{
        json_decref(o->limits);
        json_decref(o->json);
        *o = (struct op_session_open){0};
}

bool op_session_id_valid(const char *s, size_t len)
{
        if (!s || len != OP_SESSION_ID_LEN)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];

                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (c != '-')
                                return false;
                } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return false;
        }
        return true;
}

int op_session_id_get(json_t *req, char ret[static OP_SESSION_ID_LEN + 1], char *errbuf,
                      size_t errlen)
{
        json_t *v = json_object_get(req, "session");

        if (!v)
                return op_proto_fail(errbuf, errlen,
                                     "missing \"session\" (the id session_open "
                                     "answered)");
        if (!json_is_string(v) || !op_session_id_valid(json_string_value(v), json_string_length(v)))
                return op_proto_fail(errbuf, errlen,
                                     "\"session\" must be a session id (36 characters, a UUID "
                                     "in lower case)");
        memcpy(ret, json_string_value(v), OP_SESSION_ID_LEN + 1);
        return 0;
}

static const char *const close_fields[] = {"id", "op", "session"};

int op_session_close_decode(json_t *req, char ret[static OP_SESSION_ID_LEN + 1], char *errbuf,
                            size_t errlen)
{
        int r = check_fields(req, "session_close", close_fields, ELEMENTSOF(close_fields), false,
                             errbuf, errlen);

        if (r < 0)
                return r;
        return op_session_id_get(req, ret, errbuf, errlen);
}

static const char *const list_fields[] = {"id", "op"};

int op_session_list_decode(json_t *req, char *errbuf, size_t errlen)
{
        return check_fields(req, "session_list", list_fields, ELEMENTSOF(list_fields), false,
                            errbuf, errlen);
}

int op_session_exec_decode(json_t *req, const char *lang, json_t *defaults,
                           const struct op_limits *lim, struct op_exec *ret, char *errbuf,
                           size_t errlen)
{
        _cleanup_(json_decrefp) json_t *x = NULL;
        enum op_phase phase = OP_PHASE_ALL;
        char sid[OP_SESSION_ID_LEN + 1];
        const char *key;
        json_t *v;
        int r;

        r = op_session_id_get(req, sid, errbuf, errlen);
        if (r < 0)
                return r;
        if (json_object_get(req, "mode"))
                return op_proto_fail(errbuf, errlen,
                                     "\"mode\" is not allowed in session_exec: the session's VM "
                                     "runs it");
        x = json_copy(req); /* shallow: the values are shared, the object is ours */
        if (!x)
                return -ENOMEM;
        if (json_object_del(x, "session") < 0 ||
            json_object_set_new(x, "op", json_string("exec")) < 0)
                return -ENOMEM;
        v = json_object_get(req, "phase");
        if (v) {
                if (json_is_string(v) && strcmp(json_string_value(v), "all") == 0)
                        phase = OP_PHASE_ALL;
                else if (json_is_string(v) && strcmp(json_string_value(v), "compile") == 0)
                        phase = OP_PHASE_COMPILE;
                else if (json_is_string(v) && strcmp(json_string_value(v), "run") == 0)
                        phase = OP_PHASE_RUN;
                else
                        return op_proto_fail(errbuf, errlen,
                                             "\"phase\" must be \"all\", \"compile\" or \"run\"");
                if (json_object_del(x, "phase") < 0)
                        return -ENOMEM;
        }
        /* The run phase runs what an earlier compile left: no "code" (the decoder below wants
         * one unless "files" holds the program: an empty one stands in, and the job sent to
         * the guest has none, exec.c). */
        if (phase == OP_PHASE_RUN && json_object_get(x, "code"))
                return op_proto_fail(errbuf, errlen,
                                     "\"code\" is not allowed with \"phase\": \"run\": the "
                                     "program is the one an earlier \"phase\": \"compile\" built");
        if (phase == OP_PHASE_RUN && !json_object_get(x, "files") &&
            json_object_set_new(x, "code", json_string("")) < 0)
                return -ENOMEM;
        if (!json_object_get(x, "lang") && json_object_set_new(x, "lang", json_string(lang)) < 0)
                return -ENOMEM;
        if (json_is_object(defaults))
                json_object_foreach (defaults, key, v)
                        if (is_limit_field(key) && !json_object_get(x, key) &&
                            json_object_set(x, key, v) < 0)
                                return -ENOMEM;
        r = op_exec_decode(x, lim, ret, errbuf, errlen);
        if (r < 0)
                return r;
        ret->phase = phase;
        return 0;
}
