/* agent.c: the agent's protocol operations (ping, warm, exec): validate a request, prepare its run
 * (working directory, files, environment, guest identity), run it through agent_exec() or hand it
 * to the warm runner started by "warm", and answer. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent-msg.h"
#include "agent-opts.h"
#include "cleanup.h"
#include "compile.h"
#include "exec.h"
#include "msg.h"
#include "util.h"

/* Bounds on one exec request. Byte sizes are bounded by the frame size already; these bound
 * counts and what the kernel would refuse anyway. */
#define AGENT_ARGV_MAX        300
#define AGENT_ARG_LEN_MAX     (128 * 1024) /* MAX_ARG_STRLEN */
#define AGENT_ENV_MAX         1024
#define AGENT_FILES_MAX       1024
#define AGENT_OUTPUT_MAX      (64u * 1024u * 1024u)
#define AGENT_ENTROPY_MAX     4096
#define AGENT_HOSTNAME_MAX    64
#define AGENT_KEEPDIR_MAX     64 /* bytes of "workdir": a session's directory name */
#define AGENT_BYTES_MAX       OP_FRAME_MAX_CEILING
#define AGENT_RM_DEPTH_MAX    64
#define AGENT_REAP_ALL_MAX_US (1000 * 1000)
/* How long "warm" waits for its runner to say "ready" unless told, and at most. */
#define AGENT_READY_TIMEOUT_MS_DEFAULT 30000
#define AGENT_READY_TIMEOUT_MS_MAX     300000

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

struct req_file {
        const char *name;
        char *content;
        size_t len;
        mode_t mode;
};

struct exec_req {
        const char **argv; /* NULL-terminated; strings point into the request */
        size_t n_argv;
        const char **args; /* for a warm runner: the program's arguments after its file */
        size_t n_args;
        bool args_owned;       /* args is its own array, not a tail of argv */
        const char *code_file; /* "file", when given */
        bool warm;             /* run it on the waiting warm runner, if any */
        char **env;            /* "NAME=value", owned, NULL-terminated once built */
        size_t n_env;
        struct req_file *files; /* the code file first, when there is one */
        size_t n_files;
        char *stdin_data;
        size_t stdin_len;
        uint32_t timeout_ms;
        size_t output_max;
        uint8_t *entropy;
        size_t entropy_len;
        bool has_time;
        int64_t time_ns;
        const char *hostname;
        /* "workdir": the run's directory is <parent>/session-<name>, made when missing and kept
         * afterwards (a session's calls share it); NULL: a fresh one, removed after the run. */
        const char *keepdir;
        struct agent_compile compile; /* "compile": the phase before the run, or none */
        /* "repl": a call to the session's interpreter, started with this argv (a warm runner)
         * when the agent has none yet; "reseed": its `random` reseeded first (a fork's). */
        const char **repl_argv;
        size_t n_repl_argv;
        bool reseed;
        /* "next_runner": the runner to start once this call is answered (a session's next call
         * takes it), checked; borrowed from the request. */
        json_t *next_runner;
        struct agent_opts opts; /* agent-opts.c */
};

static void exec_req_done(struct exec_req *q)
{
        free(q->argv);
        free(q->repl_argv);
        if (q->args_owned)
                free(q->args);
        for (size_t i = 0; i < q->n_env; i++)
                free(q->env[i]);
        free(q->env);
        for (size_t i = 0; i < q->n_files; i++)
                free(q->files[i].content);
        free(q->files);
        free(q->stdin_data);
        free(q->entropy);
        agent_compile_done(&q->compile);
        agent_opts_done(&q->opts);
        *q = (struct exec_req){0};
}

static bool is_c_string(json_t *v)
{
        return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

/* obj[key] as a string, or obj[key "_b64"] as base64 for bytes that are not UTF-8. Absent is
 * fine (*ret stays NULL). */
static int get_bytes(json_t *obj, const char *key, const char *what, char **ret, size_t *ret_len,
                     char *errbuf, size_t errlen)
{
        char b64key[64];
        json_t *plain, *b64;
        int r;

        snprintf(b64key, sizeof(b64key), "%s_b64", key);
        plain = json_object_get(obj, key);
        b64 = json_object_get(obj, b64key);
        if (!plain && !b64)
                return 0;
        if (plain && b64)
                return op_errf(errbuf, errlen, -EINVAL, "%s: give \"%s\" or \"%s\", not both", what,
                               key, b64key);
        if (!json_is_string(plain ? plain : b64))
                return op_errf(errbuf, errlen, -EINVAL, "%s: \"%s\" must be a string", what,
                               plain ? key : b64key);
        r = op_json_get_bytes(obj, key, AGENT_BYTES_MAX, ret, ret_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return op_errf(errbuf, errlen, -EINVAL, "%s: \"%s\" is not valid base64", what,
                               b64key);
        return 0;
}

/* An array of argument strings: NULL-terminated, the strings pointing into v. */
static int decode_strings(json_t *v, const char *key, const char ***ret, size_t *ret_n,
                          char *errbuf, size_t errlen)
{
        size_t i;
        json_t *a;

        if (!json_is_array(v))
                return op_errf(errbuf, errlen, -EINVAL, "\"%s\" must be an array of strings", key);
        if (json_array_size(v) > AGENT_ARGV_MAX)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"%s\" has %zu entries, over the limit of %d", key,
                               json_array_size(v), AGENT_ARGV_MAX);
        *ret = calloc(json_array_size(v) + 1, sizeof(char *));
        if (!*ret)
                return -ENOMEM;
        json_array_foreach (v, i, a) {
                if (!is_c_string(a))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"%s[%zu]\" must be a string without NUL", key, i);
                if (json_string_length(a) > AGENT_ARG_LEN_MAX)
                        return op_errf(errbuf, errlen, -EINVAL, "\"%s[%zu]\" is over %d bytes", key,
                                       i, AGENT_ARG_LEN_MAX);
                (*ret)[(*ret_n)++] = json_string_value(a);
        }
        return 0;
}

static int decode_argv(json_t *v, struct exec_req *q, char *errbuf, size_t errlen)
{
        int r;

        if (!v)
                return op_errf(errbuf, errlen, -EINVAL, "missing \"argv\"");
        if (json_is_array(v) && json_array_size(v) == 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"argv\" must be a non-empty array of strings");
        r = decode_strings(v, "argv", &q->argv, &q->n_argv, errbuf, errlen);
        if (r < 0)
                return r;
        if (q->argv[0][0] == 0)
                return op_errf(errbuf, errlen, -EINVAL, "\"argv[0]\" must not be empty");
        return 0;
}

/* "warm" and "args". Without "args", the runner's arguments are those after the element of argv
 * (from argv[1] on) that names the code file: what the fork path would have passed. */
static int decode_warm(json_t *req, struct exec_req *q, char *errbuf, size_t errlen)
{
        json_t *warm = json_object_get(req, "warm"), *args = json_object_get(req, "args");

        if (warm && !json_is_boolean(warm))
                return op_errf(errbuf, errlen, -EINVAL, "\"warm\" must be true or false");
        q->warm = json_is_true(warm);
        if (q->warm && !q->code_file)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"warm\": true needs \"file\" and \"code\"");
        if (args) {
                q->args_owned = true;
                return decode_strings(args, "args", &q->args, &q->n_args, errbuf, errlen);
        }
        q->args = q->argv + q->n_argv;
        q->n_args = 0;
        for (size_t i = 1; q->code_file && i < q->n_argv; i++)
                if (strcmp(q->argv[i], q->code_file) == 0) {
                        q->args = q->argv + i + 1;
                        q->n_args = q->n_argv - i - 1;
                        break;
                }
        return 0;
}

static bool env_name_valid(const char *k)
{
        if (!*k || (*k >= '0' && *k <= '9'))
                return false;
        for (; *k; k++)
                if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') ||
                      (*k >= '0' && *k <= '9') || *k == '_'))
                        return false;
        return true;
}

static int env_add(struct exec_req *q, const char *name, const char *value)
{
        char *s;

        if (asprintf(&s, "%s=%s", name, value) < 0)
                return -ENOMEM;
        q->env[q->n_env++] = s;
        return 0;
}

/* Defaults first (unless the request sets them), then the request's variables. */
static int build_env(json_t *v, const char *dir, struct exec_req *q, char *errbuf, size_t errlen)
{
        const struct {
                const char *name, *value;
        } defaults[] = {
            {"PATH", DEFAULT_PATH},
            {"HOME", dir},
            {"LANG", "C.UTF-8"},
            {"TMPDIR", dir},
        };
        const char *k;
        json_t *val;
        int r;

        q->env = calloc(ELEMENTSOF(defaults) + json_object_size(v) + 1, sizeof(char *));
        if (!q->env)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(defaults); i++) {
                if (v && json_object_get(v, defaults[i].name))
                        continue;
                r = env_add(q, defaults[i].name, defaults[i].value);
                if (r < 0)
                        return r;
        }
        json_object_foreach (v, k, val) {
                r = env_add(q, k, json_string_value(val));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_env(json_t *v, char *errbuf, size_t errlen)
{
        const char *k;
        json_t *val;

        if (!v)
                return 0;
        if (!json_is_object(v))
                return op_errf(errbuf, errlen, -EINVAL, "\"env\" must be an object of strings");
        if (json_object_size(v) > AGENT_ENV_MAX)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"env\" has %zu entries, over the limit of %d", json_object_size(v),
                               AGENT_ENV_MAX);
        json_object_foreach (v, k, val) {
                if (!env_name_valid(k))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"env\" name \"%.64s\" is not [A-Za-z_][A-Za-z0-9_]*", k);
                if (!is_c_string(val))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"env.%.64s\" must be a string without NUL", k);
        }
        return 0;
}

static int add_file(struct exec_req *q, const char *name, char *content, size_t len, mode_t mode,
                    char *errbuf, size_t errlen)
{
        for (size_t i = 0; i < q->n_files; i++)
                if (strcmp(q->files[i].name, name) == 0) {
                        free(content);
                        return op_errf(errbuf, errlen, -EINVAL, "file name \"%s\" given twice",
                                       name);
                }
        q->files[q->n_files++] = (struct req_file){name, content, len, mode};
        return 0;
}

static int decode_files(json_t *req, struct exec_req *q, char *errbuf, size_t errlen)
{
        json_t *file = json_object_get(req, "file"), *files = json_object_get(req, "files");
        char *content = NULL;
        size_t len = 0, i;
        json_t *f;
        int r;

        if (files && !json_is_array(files))
                return op_errf(errbuf, errlen, -EINVAL, "\"files\" must be an array of objects");
        if (files && json_array_size(files) > AGENT_FILES_MAX)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"files\" has %zu entries, over the limit of %d",
                               json_array_size(files), AGENT_FILES_MAX);
        q->files = calloc(1 + (files ? json_array_size(files) : 0), sizeof(struct req_file));
        if (!q->files)
                return -ENOMEM;

        r = get_bytes(req, "code", "exec", &content, &len, errbuf, errlen);
        if (r < 0)
                return r;
        if (!file != !content) {
                free(content);
                return op_errf(errbuf, errlen, -EINVAL, "\"file\" and \"code\" go together");
        }
        if (file) {
                if (!json_is_string(file) ||
                    !op_file_name_valid(json_string_value(file), json_string_length(file))) {
                        free(content);
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"file\" must be a plain file name (1-255 bytes, no '/', "
                                       "no control characters, not '.' or '..')");
                }
                r = add_file(q, json_string_value(file), content, len, 0755, errbuf, errlen);
                if (r < 0)
                        return r;
                q->code_file = json_string_value(file);
        }

        json_array_foreach (files, i, f) {
                json_t *name;
                const char *key;
                json_t *x;
                char what[32];

                snprintf(what, sizeof(what), "\"files[%zu]\"", i);
                if (!json_is_object(f))
                        return op_errf(errbuf, errlen, -EINVAL, "%s must be an object", what);
                json_object_foreach (f, key, x) {
                        if (strcmp(key, "name") != 0 && strcmp(key, "content") != 0 &&
                            strcmp(key, "content_b64") != 0)
                                return op_errf(errbuf, errlen, -EINVAL,
                                               "%s: unknown field \"%.64s\"", what, key);
                }
                name = json_object_get(f, "name");
                if (!json_is_string(name) ||
                    !op_file_name_valid(json_string_value(name), json_string_length(name)))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "%s.name must be a plain file name (1-255 bytes, no '/', no "
                                       "control characters, not '.' or '..')",
                                       what);
                content = NULL;
                len = 0;
                r = get_bytes(f, "content", what, &content, &len, errbuf, errlen);
                if (r < 0)
                        return r;
                if (!content)
                        return op_errf(errbuf, errlen, -EINVAL, "%s: missing \"content\"", what);
                r = add_file(q, json_string_value(name), content, len, 0644, errbuf, errlen);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int get_uint(json_t *req, const char *key, json_int_t min, json_int_t max, json_int_t def,
                    json_int_t *ret, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, key);

        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"%s\" must be an integer from %lld to %lld", key, (long long)min,
                               (long long)max);
        *ret = json_integer_value(v);
        return 0;
}

static int decode_identity(json_t *req, struct exec_req *q, char *errbuf, size_t errlen)
{
        json_t *v;
        int r;

        v = json_object_get(req, "entropy");
        if (v) {
                if (!json_is_string(v) || json_string_length(v) > (AGENT_ENTROPY_MAX + 2) / 3 * 4)
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"entropy\" must be base64 of at most %d bytes",
                                       AGENT_ENTROPY_MAX);
                r = op_base64_decode(json_string_value(v), json_string_length(v), &q->entropy,
                                     &q->entropy_len);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return op_errf(errbuf, errlen, -EINVAL, "\"entropy\" is not valid base64");
        }
        v = json_object_get(req, "time_ns");
        if (v) {
                if (!json_is_integer(v) || json_integer_value(v) < 0)
                        return op_errf(
                            errbuf, errlen, -EINVAL,
                            "\"time_ns\" must be a non-negative integer (ns since 1970)");
                q->has_time = true;
                q->time_ns = json_integer_value(v);
        }
        v = json_object_get(req, "hostname");
        if (v) {
                const char *h;

                if (!json_is_string(v) || json_string_length(v) == 0 ||
                    json_string_length(v) > AGENT_HOSTNAME_MAX)
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"hostname\" must be 1-%d characters", AGENT_HOSTNAME_MAX);
                for (h = json_string_value(v); *h; h++)
                        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
                              (*h >= '0' && *h <= '9') || *h == '-' || *h == '.'))
                                return op_errf(errbuf, errlen, -EINVAL,
                                               "\"hostname\" may hold only [A-Za-z0-9.-]");
                if ((size_t)(h - json_string_value(v)) != json_string_length(v))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"hostname\" may hold only [A-Za-z0-9.-]");
                q->hostname = json_string_value(v);
        }
        return 0;
}

static const char *const exec_fields[] = {
    "id",      "op",        "argv",     "file",        "code",       "code_b64",
    "stdin",   "stdin_b64", "env",      "files",       "timeout_ms", "output_max",
    "entropy", "time_ns",   "hostname", "warm",        "args",       "compile",
    "workdir", "repl",      "reseed",   "next_runner", "timing",
};

static int check_fields_also(json_t *req, const char *const *fields, size_t n,
                             const char *const *more, size_t n_more, char *errbuf, size_t errlen)
{
        const char *key;
        json_t *v;

        json_object_foreach (req, key, v) {
                size_t i, j = n_more;
                for (i = 0; i < n; i++)
                        if (strcmp(key, fields[i]) == 0)
                                break;
                if (i == n)
                        for (j = 0; j < n_more; j++)
                                if (strcmp(key, more[j]) == 0)
                                        break;
                if (i == n && j == n_more)
                        return op_errf(errbuf, errlen, -EINVAL, "unknown field \"%.64s\"", key);
        }
        return 0;
}

static int check_fields(json_t *req, const char *const *fields, size_t n, char *errbuf,
                        size_t errlen)
{
        return check_fields_also(req, fields, n, NULL, 0, errbuf, errlen);
}

/* "workdir": 1-AGENT_KEEPDIR_MAX bytes of [a-z0-9-], so that it names one directory under the
 * parent and nothing else. */
static int decode_keepdir(json_t *req, struct exec_req *q, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, "workdir");
        const char *s;

        if (!v)
                return 0;
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > AGENT_KEEPDIR_MAX)
                return op_errf(errbuf, errlen, -EINVAL, "\"workdir\" must be 1-%d characters",
                               AGENT_KEEPDIR_MAX);
        for (s = json_string_value(v); *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"workdir\" may hold only [a-z0-9-]");
        if ((size_t)(s - json_string_value(v)) != json_string_length(v))
                return op_errf(errbuf, errlen, -EINVAL, "\"workdir\" may hold only [a-z0-9-]");
        q->keepdir = json_string_value(v);
        return 0;
}

/* "repl" (the runner's argv) and "reseed". A call needs the code file and the session's kept
 * directory (the interpreter's working directory across calls), and has no compile phase. */
static int decode_repl(json_t *req, struct exec_req *q, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, "repl"), *reseed = json_object_get(req, "reseed");
        int r;

        if (reseed && !json_is_boolean(reseed))
                return op_errf(errbuf, errlen, -EINVAL, "\"reseed\" must be true or false");
        q->reseed = json_is_true(reseed);
        if (!v)
                return 0;
        if (json_is_array(v) && json_array_size(v) == 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"repl\" must be a non-empty array of strings (its runner)");
        r = decode_strings(v, "repl", &q->repl_argv, &q->n_repl_argv, errbuf, errlen);
        if (r < 0)
                return r;
        if (!q->code_file || !q->keepdir)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"repl\" needs \"file\", \"code\" and \"workdir\"");
        if (q->compile.argv)
                return op_errf(errbuf, errlen, -EINVAL, "\"repl\" calls have no \"compile\"");
        return 0;
}

static const char *const runner_fields[] = {"argv", "env", "ready_timeout_ms"};

/* A runner's "argv" and "ready_timeout_ms" (its "env" is only checked here), from the "warm" op,
 * the "runner" object of "prime", or an exec's "next_runner". */
static int runner_decode(json_t *obj, struct exec_req *q, json_int_t *ret_ready_ms, char *errbuf,
                         size_t errlen)
{
        int r = decode_argv(json_object_get(obj, "argv"), q, errbuf, errlen);

        if (r == 0)
                r = check_env(json_object_get(obj, "env"), errbuf, errlen);
        if (r == 0)
                r = get_uint(obj, "ready_timeout_ms", 1, AGENT_READY_TIMEOUT_MS_MAX,
                             AGENT_READY_TIMEOUT_MS_DEFAULT, ret_ready_ms, errbuf, errlen);
        return r;
}

/* "next_runner": {"argv", "env", "ready_timeout_ms"}, a runner as "warm" starts one: the agent
 * starts it once this call is answered, so that the session's next call finds it waiting
 * (agent_answered()). A session's call only ("workdir"), not a repl call's. */
static int decode_next_runner(json_t *req, struct exec_req *q, char *errbuf, size_t errlen)
{
        _cleanup_(exec_req_done) struct exec_req w = {0};
        json_t *v = json_object_get(req, "next_runner");
        json_int_t ready_ms;
        char why[256];
        int r;

        if (!v)
                return 0;
        if (!json_is_object(v))
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"next_runner\" must be {\"argv\", \"env\", \"ready_timeout_ms\"}");
        if (!q->keepdir || q->repl_argv)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"next_runner\" needs \"workdir\" and no \"repl\"");
        r = check_fields(v, runner_fields, ELEMENTSOF(runner_fields), why, sizeof(why));
        if (r == 0)
                r = runner_decode(v, &w, &ready_ms, why, sizeof(why));
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return op_errf(errbuf, errlen, r, "\"next_runner\": %s", why);
        q->next_runner = v;
        return 0;
}

static int exec_decode(json_t *req, struct exec_req *q, char *errbuf, size_t errlen)
{
        json_int_t n = 0;
        int r;

        r = check_fields_also(req, exec_fields, ELEMENTSOF(exec_fields), agent_opts_fields,
                              agent_opts_n_fields, errbuf, errlen);
        if (r < 0)
                return r;
        r = agent_opts_decode(req, &q->opts, errbuf, errlen);
        if (r < 0)
                return r;
        r = decode_argv(json_object_get(req, "argv"), q, errbuf, errlen);
        if (r < 0)
                return r;
        r = decode_files(req, q, errbuf, errlen);
        if (r < 0)
                return r;
        r = decode_warm(req, q, errbuf, errlen);
        if (r < 0)
                return r;
        r = decode_keepdir(req, q, errbuf, errlen);
        if (r < 0)
                return r;
        if (json_object_get(req, "timing") && !json_is_boolean(json_object_get(req, "timing")))
                return op_errf(errbuf, errlen, -EINVAL, "\"timing\" must be true or false");
        r = get_bytes(req, "stdin", "exec", &q->stdin_data, &q->stdin_len, errbuf, errlen);
        if (r < 0)
                return r;
        r = check_env(json_object_get(req, "env"), errbuf, errlen);
        if (r < 0)
                return r;
        r = get_uint(req, "timeout_ms", 1, OP_AGENT_TIMEOUT_MS_MAX,
                     OP_LIMITS_DEFAULT.timeout_ms_default, &n, errbuf, errlen);
        if (r < 0)
                return r;
        q->timeout_ms = (uint32_t)n;
        r = get_uint(req, "output_max", 0, AGENT_OUTPUT_MAX, OP_LIMITS_DEFAULT.output_max, &n,
                     errbuf, errlen);
        if (r < 0)
                return r;
        q->output_max = (size_t)n;
        r = agent_compile_decode(req, &q->compile, errbuf, errlen);
        if (r < 0)
                return r;
        r = decode_repl(req, q, errbuf, errlen);
        if (r < 0)
                return r;
        r = decode_next_runner(req, q, errbuf, errlen);
        if (r < 0)
                return r;
        return decode_identity(req, q, errbuf, errlen);
}

/* Make this clone of a snapshot distinct before user code runs: fresh entropy, the wall clock,
 * its own name. */
static int apply_identity(const struct exec_req *q, char *errbuf, size_t errlen)
{
        if (q->entropy_len > 0) {
                _cleanup_close_ int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC | O_NOCTTY);
                _cleanup_free_ struct rand_pool_info *info = NULL;

                if (fd < 0)
                        return op_errf(errbuf, errlen, -EINVAL, "open /dev/urandom: %s",
                                       strerror(errno));
                info = malloc(sizeof(*info) + q->entropy_len + sizeof(uint32_t));
                if (!info)
                        return -ENOMEM;
                info->entropy_count = (int)(q->entropy_len * 8);
                info->buf_size = (int)q->entropy_len;
                memcpy(info->buf, q->entropy, q->entropy_len);
                if (ioctl(fd, RNDADDENTROPY, info) < 0) {
                        /* Without CAP_SYS_ADMIN: mixed in, just not credited. */
                        if (op_write_all(fd, q->entropy, q->entropy_len) < 0)
                                return op_errf(errbuf, errlen, -EINVAL, "add entropy: %s",
                                               strerror(errno));
                }
                /* Make the new entropy count now, not at the next scheduled reseed. */
                (void)ioctl(fd, RNDRESEEDCRNG);
        }
        if (q->has_time) {
                struct timespec ts = {
                    .tv_sec = (time_t)(q->time_ns / 1000000000),
                    .tv_nsec = (long)(q->time_ns % 1000000000),
                };
                if (clock_settime(CLOCK_REALTIME, &ts) < 0)
                        return op_errf(errbuf, errlen, -EINVAL, "set clock: %s", strerror(errno));
        }
        if (q->hostname && sethostname(q->hostname, strlen(q->hostname)) < 0)
                return op_errf(errbuf, errlen, -EINVAL, "set hostname: %s", strerror(errno));
        return 0;
}

/* Write f into dfd. replace: a kept directory, where an earlier call may have left the name:
 * whatever is there is unlinked first (never written through: it may be a link the program
 * made), a directory in the way is an error. No program runs meanwhile (each run's processes are
 * killed when it ends), so nothing can put the name back before the file is made. */
static int write_file(int dfd, const struct req_file *f, uid_t uid, gid_t gid, bool replace)
{
        _cleanup_close_ int fd = -1;
        int r;

        if (replace && unlinkat(dfd, f->name, 0) < 0 && errno != ENOENT)
                return -errno;
        fd = openat(dfd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, f->mode);
        if (fd < 0)
                return -errno;
        r = op_write_all(fd, f->content, f->len);
        if (r < 0)
                return r;
        if (uid != (uid_t)-1 && fchown(fd, uid, gid) < 0)
                return -errno;
        return 0;
}

/* Best effort: remove everything under dfd without following symlinks. */
static void rm_children(int dfd, unsigned depth)
{
        int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        struct dirent *de;
        DIR *d;

        if (fd < 0)
                return;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        while ((de = readdir(d))) {
                int sub;

                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (unlinkat(dfd, de->d_name, 0) == 0 || errno != EISDIR)
                        continue;
                if (depth >= AGENT_RM_DEPTH_MAX)
                        continue;
                /* The program may have left it unreadable. */
                (void)fchmodat(dfd, de->d_name, 0700, AT_SYMLINK_NOFOLLOW);
                sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                        continue;
                rm_children(sub, depth + 1);
                close(sub);
                (void)unlinkat(dfd, de->d_name, AT_REMOVEDIR);
        }
        closedir(d);
}

static void rm_rundir(const char *dir)
{
        int dfd;

        (void)chmod(dir, 0700);
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd >= 0) {
                rm_children(dfd, 0);
                close(dfd);
        }
        (void)rmdir(dir);
}

/* A session's kept directory, <parent>/session-<name>: made (mode 0700, the program's) when
 * missing, else opened and checked: a directory (not a link), the program's own. */
static int open_keepdir(const struct agent_config *cfg, const char *parent, const char *name,
                        char **ret_dir, int *ret_dfd, char *errbuf, size_t errlen)
{
        _cleanup_free_ char *dir = NULL;
        _cleanup_close_ int dfd = -1;
        uid_t owner = cfg->uid != (uid_t)-1 ? cfg->uid : getuid();
        struct stat st;

        if (asprintf(&dir, "%s/session-%s", parent, name) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return op_errf(errbuf, errlen, -EINVAL, "mkdir %s: %s", dir, strerror(errno));
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return op_errf(errbuf, errlen, -EINVAL, "open %s: %s", dir, strerror(errno));
        if (fstat(dfd, &st) < 0)
                return op_errf(errbuf, errlen, -EINVAL, "stat %s: %s", dir, strerror(errno));
        if (st.st_uid != owner && st.st_uid != 0)
                return op_errf(errbuf, errlen, -EINVAL, "%s is owned by uid %u", dir,
                               (unsigned)st.st_uid);
        if (cfg->uid != (uid_t)-1 && fchown(dfd, cfg->uid, cfg->gid) < 0)
                return op_errf(errbuf, errlen, -EINVAL, "chown %s: %s", dir, strerror(errno));
        /* The program may have taken its own rights away; the next call starts usable. */
        if (fchmod(dfd, 0700) < 0)
                return op_errf(errbuf, errlen, -EINVAL, "chmod %s: %s", dir, strerror(errno));
        *ret_dir = TAKE_PTR(dir);
        *ret_dfd = TAKE_FD(dfd);
        return 0;
}

/* A fresh directory under cfg->workdir holding the request's files (or the session's kept one,
 * the files added to it). With own (a warm runner's directory, made empty by the agent and
 * taken over; only without q->keepdir), that directory is the run's. */
static int make_rundir(const struct agent_config *cfg, const struct exec_req *q, char *own,
                       char **ret_dir, char *errbuf, size_t errlen)
{
        const char *parent = cfg->workdir ? cfg->workdir : OP_AGENT_WORKDIR_DEFAULT;
        _cleanup_free_ char *dir = NULL;
        _cleanup_close_ int dfd = -1;
        int r;

        if (!own && mkdir(parent, 0755) < 0 && errno != EEXIST)
                return op_errf(errbuf, errlen, -EINVAL, "mkdir %s: %s", parent, strerror(errno));
        if (q->keepdir) {
                r = open_keepdir(cfg, parent, q->keepdir, &dir, &dfd, errbuf, errlen);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < q->n_files; i++) {
                        r = write_file(dfd, &q->files[i], cfg->uid, cfg->gid, true);
                        if (r < 0)
                                return op_errf(errbuf, errlen, -EINVAL, "write %s: %s",
                                               q->files[i].name, strerror(-r));
                }
                *ret_dir = TAKE_PTR(dir);
                return 0;
        }
        if (own)
                dir = own;
        else if (asprintf(&dir, "%s/run-XXXXXX", parent) < 0)
                return -ENOMEM;
        else if (!mkdtemp(dir))
                return op_errf(errbuf, errlen, -EINVAL, "mkdtemp in %s: %s", parent,
                               strerror(errno));
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) {
                r = -errno;
                goto fail;
        }
        /* A runner's own directory was made the program user's when the runner started. */
        if (!own && cfg->uid != (uid_t)-1 && fchown(dfd, cfg->uid, cfg->gid) < 0) {
                r = -errno;
                goto fail;
        }
        for (size_t i = 0; i < q->n_files; i++) {
                r = write_file(dfd, &q->files[i], cfg->uid, cfg->gid, false);
                if (r < 0) {
                        op_errf(errbuf, errlen, -EINVAL, "write %s: %s", q->files[i].name,
                                strerror(-r));
                        goto fail_described;
                }
        }
        *ret_dir = TAKE_PTR(dir);
        return 0;
fail:
        op_errf(errbuf, errlen, -EINVAL, "set up %s: %s", dir, strerror(-r));
fail_described:
        dfd = safe_close(dfd);
        rm_rundir(dir);
        return -EIO;
}

/* The run is over: its directory goes, unless it is a session's kept one. */
static void end_rundir(const struct exec_req *q, const char *dir)
{
        if (!q->keepdir)
                rm_rundir(dir);
}

/* The run is over and its answer made: its directory goes once the answer is out
 * (agent_answered()), unless it is a session's kept one. */
static void rundir_defer(struct agent *a, const struct exec_req *q, char **dir)
{
        if (q->keepdir)
                return;
        agent_rundir_drop(a); /* one left by a caller that skipped agent_answered() */
        a->ended_dir = TAKE_PTR(*dir);
}

/* The waiting warm runner's own directory, when it is not taken for a run: removed. */
static void warm_dir_drop(struct agent *a)
{
        if (a->warm_dir)
                rm_rundir(a->warm_dir);
        free(a->warm_dir);
        a->warm_dir = NULL;
}

/* As PID 1, end every process but ourselves, so nothing of this request outlives it. */
static void kill_all(void)
{
        uint64_t end;

        if (getpid() != 1)
                return;
        (void)kill(-1, SIGKILL);
        end = op_now_us() + AGENT_REAP_ALL_MAX_US;
        for (;;) {
                pid_t p = waitpid(-1, NULL, WNOHANG);

                if (p > 0)
                        continue;
                if (p < 0 && errno == EINTR)
                        continue;
                if (p < 0 || op_now_us() >= end)
                        break;
                nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
        }
}

/* An exec answer for the run res (its bytes borrowed from res); the compile phase, status,
 * usage and files are added by compile.c and agent-opts.c. */
static void exec_answer(struct op_agent_answer *ret, const struct agent_result *res, bool warm_used)
{
        *ret = (struct op_agent_answer){.op = OP_AGENT_OP_EXEC, .ok = true};
        agent_result_fields(&ret->exec.run, res);
        ret->exec.warm_used = warm_used;
}

/* The one line a warm runner reads on fd 3: {"file", "argv", "cwd", "env"} and a newline;
 * with "prime": true the runner runs it to warm itself up and waits again. With compile (its
 * argv as "compile"), the runner compiles first: in a step of its own that ends with "done N",
 * or as part of its prime. */
static int warm_handoff(const struct exec_req *q, const char *dir, bool prime,
                        const struct agent_compile *compile, char **ret, size_t *ret_len)
{
        _cleanup_(json_decrefp) json_t *line = NULL, *argv = json_array(), *env = json_object();
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t len;

        if (!argv || !env || asprintf(&path, "%s/%s", dir, q->code_file) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < q->n_args; i++)
                if (json_array_append_new(argv, json_string(q->args[i])) < 0)
                        return -ENOMEM;
        for (size_t i = 0; i < q->n_env; i++) {
                const char *eq = strchr(q->env[i], '=');
                _cleanup_free_ char *name = strndup(q->env[i], (size_t)(eq - q->env[i]));

                if (!name || json_object_set_new(env, name, json_string(eq + 1)) < 0)
                        return -ENOMEM;
        }
        line =
            json_pack("{s:s, s:O, s:s, s:O}", "file", path, "argv", argv, "cwd", dir, "env", env);
        if (!line)
                return -EINVAL; /* a path that is not UTF-8 */
        if (prime && json_object_set_new(line, "prime", json_true()) < 0)
                return -ENOMEM;
        if (compile && compile->argv) {
                json_t *c = json_array();

                if (!c || json_object_set_new(line, "compile", c) < 0)
                        return -ENOMEM;
                for (const char **a = compile->argv; *a; a++)
                        if (json_array_append_new(c, json_string(*a)) < 0)
                                return -EINVAL; /* not UTF-8 */
        }
        if (q->repl_argv && json_object_set_new(line, "repl", json_true()) < 0)
                return -ENOMEM;
        if (q->repl_argv && q->reseed && json_object_set_new(line, "reseed", json_true()) < 0)
                return -ENOMEM;
        text = json_dumps(line, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        /* JSON text without JSON_INDENT holds no raw newline: the one at the end ends the line. */
        text[len] = '\n';
        *ret = TAKE_PTR(text);
        *ret_len = len + 1;
        return 0;
}

/* NULL when the compiler succeeded (the program runs next); otherwise the answer: ok, the run's
 * fields empty, "compile" and "status": "compile_error". */
static json_t *compile_outcome(json_t *id, const struct agent_result *cres)
{
        /* The program did not run: no output, in no order. */
        struct agent_result none = {
            .out = (char *)"", .err = (char *)"", .exit_code = -1, .order = {.known = true}};
        struct op_agent_answer ans;
        json_t *answer;

        if (!agent_compile_failed(cres))
                return NULL;
        exec_answer(&ans, &none, false);
        agent_compile_answer(&ans.exec, cres);
        ans.exec.has_status = true;
        ans.exec.status = OP_STATUS_COMPILE_ERROR;
        answer = op_agent_answer_encode(id, &ans);
        if (!answer)
                return op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        return answer;
}

/* Run the compile phase: the compiler as a program of its own. As compile_outcome(). */
static json_t *compile_phase(json_t *id, const struct agent_compile *c, const struct agent_job *job,
                             struct agent_result *cres)
{
        int r = agent_compile_run(c, job, cres);

        if (r < 0)
                return op_error_reply(id, OP_ERR_INTERNAL, "could not start %s: %s", c->argv[0],
                                      strerror(-r));
        return compile_outcome(id, cres);
}

/* Run the compile phase on the warm runner, which compiles in its own process (a JVM's javac):
 * the hand-off line with "compile", under the compiler's deadline and output cap, without
 * stdin; what the runner writes until "done N" is the compiler's output, N its exit code. On
 * success the runner waits for the run's line. As compile_outcome(); a failed compile leaves
 * the runner to be killed with the run. */
static json_t *runner_compile_phase(json_t *id, const struct exec_req *q, const char *dir,
                                    const struct agent_job *run, struct agent_child *runner,
                                    struct agent_result *cres)
{
        _cleanup_free_ char *line = NULL;
        struct agent_job job = *run;
        size_t len = 0;
        bool alive;
        int r;

        r = warm_handoff(q, dir, false, &q->compile, &line, &len);
        if (r < 0)
                return op_error_reply(id, OP_ERR_INTERNAL, "%s",
                                      r == -ENOMEM ? "out of memory"
                                                   : "the compile command is not UTF-8");
        job.handoff = line;
        job.handoff_len = len;
        job.stdin_data = NULL;
        job.stdin_len = 0;
        job.timeout_ms = q->compile.timeout_ms;
        job.output_max = q->compile.output_max;
        r = agent_exec_step(&job, runner, cres, &alive);
        if (r < 0)
                return op_error_reply(id, OP_ERR_INTERNAL,
                                      "could not compile on the warm runner: %s", strerror(-r));
        return compile_outcome(id, cres);
}

static json_t *repl_exec(struct agent *a, struct exec_req *q, json_t *req, json_t *id);
static void warm_settle(struct agent *a);

static json_t *agent_op_exec(struct agent *a, json_t *req, json_t *id)
{
        const struct agent_config *cfg = &a->cfg;
        _cleanup_(exec_req_done) struct exec_req q = {0};
        _cleanup_(agent_child_kill) struct agent_child runner = AGENT_CHILD_INIT;
        struct agent_child left = AGENT_CHILD_INIT;
        _cleanup_free_ char *dir = NULL, *handoff = NULL, *own_dir = NULL;
        _cleanup_(agent_result_done) struct agent_result cres = {0};
        struct agent_result res = {0};
        struct op_agent_answer ans;
        struct agent_stream stream;
        struct agent_job job;
        _cleanup_(limits_group_drop) struct limits_group runner_group = LIMITS_GROUP_INIT;
        size_t handoff_len = 0;
        bool use_warm;
        char errbuf[512];
        json_t *answer;
        int r;

        r = exec_decode(req, &q, errbuf, sizeof(errbuf));
        if (r == -ENOMEM)
                return op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        if (r < 0)
                return op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", errbuf);
        /* Started once this call is answered, whatever its outcome (agent_answered()). */
        json_decref(a->next_runner);
        a->next_runner = json_incref(q.next_runner);
        /* A runner the session's last call left starting serves this call if it is ready now;
         * waiting for one that is not would take longer than the cold way. */
        warm_settle(a);
        if (q.repl_argv)
                return repl_exec(a, &q, req, id);
        /* Not a call of a repl session: an interpreter of one (there is none) goes first. */
        if (a->repl_alive) {
                agent_child_kill(&a->repl);
                a->repl_alive = false;
        }

        /* A waiting runner serves one exec: this one. Not asked for, it goes before user code
         * runs, so that nothing of this request can tamper with it. */
        use_warm = q.warm && a->warm_waiting;
        if (a->warm_waiting) {
                runner = a->warm;
                a->warm = AGENT_CHILD_INIT;
                a->warm_waiting = false;
                own_dir = TAKE_PTR(a->warm_dir);
                /* One that ended while it waited cannot compile: the request runs the cold way. */
                if (use_warm && runner.reaped && q.compile.argv)
                        use_warm = false;
                if (!use_warm)
                        agent_child_kill(&runner);
                /* Its directory is the run's, unless the run has another (a session's). */
                if (own_dir && (!use_warm || q.keepdir)) {
                        rm_rundir(own_dir);
                        free(TAKE_PTR(own_dir));
                }
        }

        if (cfg->apply_identity) {
                r = apply_identity(&q, errbuf, sizeof(errbuf));
                if (r < 0)
                        return op_error_reply(id, OP_ERR_INTERNAL, "%s",
                                              r == -ENOMEM ? "out of memory" : errbuf);
        }

        r = make_rundir(cfg, &q, TAKE_PTR(own_dir), &dir, errbuf, sizeof(errbuf));
        if (r < 0)
                return op_error_reply(id, OP_ERR_INTERNAL, "%s",
                                      r == -ENOMEM ? "out of memory" : errbuf);
        r = build_env(json_object_get(req, "env"), dir, &q, errbuf, sizeof(errbuf));
        if (r == 0 && use_warm)
                r = warm_handoff(&q, dir, false, NULL, &handoff, &handoff_len);
        if (r < 0) {
                end_rundir(&q, dir);
                return op_error_reply(id, OP_ERR_INTERNAL, "%s",
                                      r == -ENOMEM ? "out of memory"
                                                   : "the run directory's path is not UTF-8");
        }

        job = (struct agent_job){
            .argv = q.argv,
            .env = (const char *const *)q.env,
            .workdir = dir,
            .stdin_data = q.stdin_data,
            .stdin_len = q.stdin_len,
            .timeout_ms = q.timeout_ms,
            .output_max = q.output_max,
            .uid = cfg->uid,
            .gid = cfg->gid,
            .handoff = handoff,
            .handoff_len = handoff_len,
        };
        if (q.compile.argv) {
                /* A warm runner of a compiled language compiles too: its compiler is warm. */
                answer = use_warm ? runner_compile_phase(id, &q, dir, &job, &runner, &cres)
                                  : compile_phase(id, &q.compile, &job, &cres);
                if (answer) { /* it failed: the answer is its outcome, the program does not run */
                        kill_all();
                        rundir_defer(a, &q, &dir);
                        return answer;
                }
        }
        /* The run's own: the compile phase above has none of them. */
        job.limits = &q.opts.limits;
        /* The run takes it; agent_prepare() makes the next. A runner started after the last call
         * has a group of its own: the run takes that one. */
        if (use_warm && a->warm_group.fd >= 0) {
                runner_group = a->warm_group;
                a->warm_group = LIMITS_GROUP_INIT;
                job.group = &runner_group;
        } else
                job.group = &a->spare;
        agent_stream_init(&stream, &q.opts, a->chan, id);
        job.io = &stream.io;
        job.stdin_open = q.opts.stdin_stream && a->chan;
        q.opts.limits.cgroup_root = cfg->cgroup_root;
        if (use_warm)
                r = agent_exec_attach(&job, &runner, &res, &left);
        else
                r = agent_exec(&job, &res);
        if (left.pid > 0)
                a->ended = left; /* it and the rest go once the answer is out */
        else
                kill_all();
        answer = NULL;
        if (r >= 0) {
                exec_answer(&ans, &res, use_warm);
                if (q.compile.argv)
                        agent_compile_answer(&ans.exec, &cres);
                agent_answer_opts(&ans.exec, &res, stream.io.output != NULL);
                if (agent_answer_files(&ans.exec, dir, &q.opts) == 0)
                        answer = op_agent_answer_encode(id, &ans);
                agent_answer_files_done(&ans.exec);
        }
        agent_result_done(&res);
        rundir_defer(a, &q, &dir);
        if (r < 0 && use_warm)
                return op_error_reply(id, OP_ERR_INTERNAL, "could not run on the warm runner: %s",
                                      strerror(-r));
        if (r < 0)
                return op_error_reply(id, OP_ERR_INTERNAL, "could not start %s: %s", q.argv[0],
                                      strerror(-r));
        return answer;
}

/* An internal_error answer whose message holds bytes of a program's output: made valid UTF-8. */
static json_t *error_reply_bytes(json_t *id, const char *msg, size_t len)
{
        _cleanup_(json_decrefp) json_t *err =
            json_pack("{s:s}", "code", op_err_name(OP_ERR_INTERNAL));

        if (!err || op_json_set_bytes(err, "message", msg, len) < 0)
                return NULL;
        (void)json_object_del(err, "message_b64");
        return json_pack("{s:O?, s:b, s:O}", "id", id, "ok", 0, "error", err);
}

static json_t *warm_failure(json_t *id, const char *prog, json_int_t ready_ms, int r,
                            const struct agent_diag *d)
{
        _cleanup_free_ char *msg = NULL;
        const char *tail;
        char why[128];
        size_t len, n;
        int k;

        if (r == -ETIMEDOUT)
                snprintf(why, sizeof(why), "not ready after %lld ms", (long long)ready_ms);
        else if (r == -ECHILD && d->status >= 0 && WIFEXITED(d->status))
                snprintf(why, sizeof(why), "exited with code %d before it was ready",
                         WEXITSTATUS(d->status));
        else if (r == -ECHILD && d->status >= 0 && WIFSIGNALED(d->status))
                snprintf(why, sizeof(why), "was killed by signal %d before it was ready",
                         WTERMSIG(d->status));
        else if (r == -ECHILD)
                snprintf(why, sizeof(why), "ended before it was ready");
        else if (r == -EPIPE)
                snprintf(why, sizeof(why), "closed fd 3 without writing \"ready\"");
        else if (r == -EPROTO)
                snprintf(why, sizeof(why), "wrote something other than \"ready\\n\" on fd 3");
        else
                snprintf(why, sizeof(why), "failed while warming up: %s", strerror(-r));

        len = d->len;
        while (len > 0 && (d->text[len - 1] == '\n' || d->text[len - 1] == ' '))
                len--;
        tail = d->truncated ? "..." : len == 0 ? "(nothing on stderr)" : "";
        k = asprintf(&msg, "warm runner %.64s %s: ", prog, why);
        if (k < 0)
                return op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        /* Its stderr as bytes: it may hold NULs. */
        n = (size_t)k;
        {
                char *m = realloc(msg, n + len + strlen(tail) + 1);

                if (!m)
                        return op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
                msg = m;
        }
        memcpy(msg + n, d->text, len);
        n += len;
        memcpy(msg + n, tail, strlen(tail) + 1);
        n += strlen(tail);
        return error_reply_bytes(id, msg, n);
}

/* As PID 1, end every process but the session's interpreter (what a thread of it started
 * between calls), reaping the agent's own. */
static void kill_all_but_repl(struct agent *a)
{
        uint64_t end = op_now_us() + AGENT_REAP_ALL_MAX_US;

        if (getpid() != 1)
                return;
        while (agent_kill_others(a->repl.pid, a->repl.pgid) > 0 && op_now_us() < end) {
                agent_reap_orphans(a);
                nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
        }
        agent_reap_orphans(a);
}

/* Start a runner (argv, env) as the program user in the next run's group (the exec that takes
 * it need not move it there). Its working directory is the agent's, or with ret_dir an empty run
 * directory of its own (*ret_dir), which the exec that takes it runs in: a runtime that cannot
 * change its directory (a JVM) starts where its program will run. what names it in errors
 * ("warm runner", "repl runner"). 0 with *ret (and *ret_dir) set, or a negative errno with
 * errbuf saying what failed. */
static int runner_spawn(struct agent *a, const char **argv, const char *const *env,
                        const char *what, struct agent_child *ret, char **ret_dir, char *errbuf,
                        size_t errlen)
{
        const struct agent_config *cfg = &a->cfg;
        const char *root = cfg->workdir ? cfg->workdir : OP_AGENT_WORKDIR_DEFAULT;
        _cleanup_free_ char *dir = NULL;
        struct agent_job job = {
            .argv = argv,
            .env = env,
            .workdir = root,
            .uid = cfg->uid,
            .gid = cfg->gid,
        };
        int r;

        if (mkdir(root, 0755) < 0 && errno != EEXIST)
                return op_errf(errbuf, errlen, -errno, "mkdir %s: %s", root, strerror(errno));
        if (ret_dir) {
                if (asprintf(&dir, "%s/run-XXXXXX", root) < 0)
                        return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
                if (!mkdtemp(dir)) {
                        r = -errno;
                        free(TAKE_PTR(dir));
                        return op_errf(errbuf, errlen, r, "mkdtemp in %s: %s", root, strerror(-r));
                }
                if (cfg->uid != (uid_t)-1 && chown(dir, cfg->uid, cfg->gid) < 0) {
                        r = -errno;
                        rm_rundir(dir);
                        return op_errf(errbuf, errlen, r, "chown %s: %s", dir, strerror(-r));
                }
                job.workdir = dir;
        }
        agent_prepare(a);
        r = agent_spawn_in(&job, true, &a->spare, ret);
        if (r < 0) {
                if (dir)
                        rm_rundir(dir);
                return op_errf(errbuf, errlen, r, "could not start %s %s: %s", what, argv[0],
                               strerror(-r));
        }
        if (ret_dir)
                *ret_dir = TAKE_PTR(dir);
        return 0;
}

/* runner_spawn(), then wait until the runner says it is ready: *ret (and *ret_dir) then. NULL,
 * or the error answer. */
static json_t *spawn_runner(struct agent *a, const char **argv, const char *const *env,
                            json_int_t ready_ms, const char *what, json_t *id,
                            struct agent_child *ret, char **ret_dir)
{
        _cleanup_(agent_child_kill) struct agent_child child = AGENT_CHILD_INIT;
        _cleanup_free_ char *dir = NULL;
        struct agent_diag diag;
        char errbuf[512];
        int r;

        r = runner_spawn(a, argv, env, what, &child, ret_dir ? &dir : NULL, errbuf, sizeof(errbuf));
        if (r < 0)
                return op_error_reply(id, OP_ERR_INTERNAL, "%s", errbuf);
        r = agent_child_wait_ready(&child, (uint32_t)ready_ms, &diag);
        if (r < 0) {
                if (dir)
                        rm_rundir(dir);
                return warm_failure(id, argv[0], ready_ms, r, &diag);
        }
        *ret = child;
        child = AGENT_CHILD_INIT;
        if (ret_dir)
                *ret_dir = TAKE_PTR(dir);
        return NULL;
}

/* After a session's call was answered: start the runner it asked for ("next_runner"), without
 * waiting for it (warm_pending), so that it warms up while the session is idle. Only where the
 * call left no runner and no interpreter. Best effort: a runner that cannot start leaves the next
 * call to run the cold way. */
static void next_runner_start(struct agent *a, json_t *spec)
{
        const char *root = a->cfg.workdir ? a->cfg.workdir : OP_AGENT_WORKDIR_DEFAULT;
        _cleanup_(exec_req_done) struct exec_req q = {0};
        json_int_t ready_ms;
        char errbuf[256];

        if (a->warm_waiting || a->warm_pending || a->repl_alive)
                return;
        if (runner_decode(spec, &q, &ready_ms, errbuf, sizeof(errbuf)) < 0 ||
            build_env(json_object_get(spec, "env"), root, &q, errbuf, sizeof(errbuf)) < 0 ||
            runner_spawn(a, q.argv, (const char *const *)q.env, "warm runner", &a->warm,
                         &a->warm_dir, errbuf, sizeof(errbuf)) < 0)
                return;
        /* It started in the spare group: that is its own now, and a new spare is made for a call
         * that does not take it (a group's memory.peak would count the runner's). */
        a->warm_group = a->spare;
        a->spare = LIMITS_GROUP_INIT;
        agent_prepare(a);
        a->warm_pending = true;
        a->warm_ready_by_us = op_now_us() + (uint64_t)ready_ms * 1000;
}

/* A runner next_runner_start() started is the waiting runner once it has said ready: looked at
 * once, without waiting; one that has not is ended (the next call runs the cold way). */
static void warm_settle(struct agent *a)
{
        struct agent_diag diag;

        if (!a->warm_pending)
                return;
        a->warm_pending = false;
        if (agent_child_wait_ready(&a->warm, 0, &diag) == 0)
                a->warm_waiting = true;
        else
                warm_dir_drop(a); /* the runner is ended and a->warm cleared */
}

/* The session's interpreter: the one kept from its last call, else the waiting warm runner
 * (a clone's), else one started now with q->repl_argv. NULL, or the error answer. */
static json_t *repl_start(struct agent *a, const struct exec_req *q, json_t *id)
{
        static const char *const env[] = {"PATH=" DEFAULT_PATH, "LANG=C.UTF-8", NULL};
        json_t *answer;

        if (a->repl_alive)
                return NULL;
        if (a->warm_waiting) {
                a->repl = a->warm;
                a->warm = AGENT_CHILD_INIT;
                a->warm_waiting = false;
                warm_dir_drop(a); /* the session's directory is the calls' */
                a->repl_alive = true;
                return NULL;
        }
        answer = spawn_runner(a, q->repl_argv, env, AGENT_READY_TIMEOUT_MS_DEFAULT, "repl runner",
                              id, &a->repl, NULL);
        if (!answer)
                a->repl_alive = true;
        return answer;
}

/* A call of a repl session: q's file runs in the session's interpreter (repl_start()), in the
 * globals of the calls before it. The answer says "repl_ended" when the interpreter is gone
 * after it (it exited, or the call was cut short and it was killed). */
static json_t *repl_exec(struct agent *a, struct exec_req *q, json_t *req, json_t *id)
{
        const struct agent_config *cfg = &a->cfg;
        _cleanup_free_ char *dir = NULL, *handoff = NULL;
        struct agent_result res = {0};
        struct op_agent_answer ans;
        struct agent_stream stream;
        struct agent_job job;
        size_t handoff_len = 0;
        bool alive = false;
        char errbuf[512];
        json_t *answer;
        int r;

        answer = repl_start(a, q, id);
        if (answer)
                return answer;
        if (a->repl.reaped) {
                /* It ended between calls (a thread of it, the OOM killer): the call cannot run. */
                int st = a->repl.status;
                static const char msg[] =
                    "op-agent: the session's interpreter ended between calls\n";

                agent_child_kill(&a->repl);
                a->repl_alive = false;
                kill_all();
                res = (struct agent_result){
                    .out = (char *)"",
                    .err = (char *)msg,
                    .err_len = sizeof(msg) - 1,
                    .exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                    .signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0,
                    .order = {.known = false},
                };
                exec_answer(&ans, &res, true);
                ans.exec.repl_ended = true;
                answer = op_agent_answer_encode(id, &ans);
                return answer ? answer : op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        }
        kill_all_but_repl(a);
        if (cfg->apply_identity) {
                r = apply_identity(q, errbuf, sizeof(errbuf));
                if (r < 0)
                        return op_error_reply(id, OP_ERR_INTERNAL, "%s",
                                              r == -ENOMEM ? "out of memory" : errbuf);
        }
        r = make_rundir(cfg, q, NULL, &dir, errbuf, sizeof(errbuf));
        if (r < 0)
                return op_error_reply(id, OP_ERR_INTERNAL, "%s",
                                      r == -ENOMEM ? "out of memory" : errbuf);
        r = build_env(json_object_get(req, "env"), dir, q, errbuf, sizeof(errbuf));
        if (r == 0)
                r = warm_handoff(q, dir, false, NULL, &handoff, &handoff_len);
        if (r < 0)
                return op_error_reply(id, OP_ERR_INTERNAL, "%s",
                                      r == -ENOMEM ? "out of memory"
                                                   : "the run directory's path is not UTF-8");
        q->opts.limits.cgroup_root = cfg->cgroup_root;
        agent_stream_init(&stream, &q->opts, a->chan, id);
        job = (struct agent_job){
            .argv = q->repl_argv,
            .env = (const char *const *)q->env,
            .workdir = dir,
            .stdin_data = q->stdin_data,
            .stdin_len = q->stdin_len,
            .timeout_ms = q->timeout_ms,
            .output_max = q->output_max,
            .uid = cfg->uid,
            .gid = cfg->gid,
            .handoff = handoff,
            .handoff_len = handoff_len,
            .io = &stream.io,
            .stdin_open = q->opts.stdin_stream && a->chan,
            .limits = &q->opts.limits,
            .group = &a->spare, /* the call takes it; agent_prepare() makes the next */
        };
        r = agent_exec_repl(&job, &a->repl, &res, &alive);
        a->repl_alive = alive;
        if (!alive)
                kill_all();
        if (r < 0)
                return op_error_reply(id, OP_ERR_INTERNAL,
                                      "could not run the call in the session's interpreter: %s",
                                      strerror(-r));
        answer = NULL;
        exec_answer(&ans, &res, true);
        ans.exec.repl_ended = !alive;
        agent_answer_opts(&ans.exec, &res, stream.io.output != NULL);
        if (agent_answer_files(&ans.exec, dir, &q->opts) == 0)
                answer = op_agent_answer_encode(id, &ans);
        agent_answer_files_done(&ans.exec);
        agent_result_done(&res);
        return answer;
}

static const char *const warm_fields[] = {"id", "op", "argv", "env", "ready_timeout_ms"};

/* Start the runner q names (its environment from env) in the agent's working directory, and wait
 * until it says it is ready: it is a->warm then. NULL, or the error answer. */
static json_t *runner_start(struct agent *a, json_t *env, struct exec_req *q, json_int_t ready_ms,
                            json_t *id)
{
        const struct agent_config *cfg = &a->cfg;
        const char *root = cfg->workdir ? cfg->workdir : OP_AGENT_WORKDIR_DEFAULT;
        char errbuf[512];
        json_t *answer;

        warm_settle(a);
        if (a->warm_waiting)
                return op_error_reply(id, OP_ERR_BAD_REQUEST,
                                      "a warm runner (pid %d) is already waiting",
                                      (int)a->warm.pid);
        if (build_env(env, root, q, errbuf, sizeof(errbuf)) < 0)
                return op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        answer = spawn_runner(a, q->argv, (const char *const *)q->env, ready_ms, "warm runner", id,
                              &a->warm, &a->warm_dir);
        if (!answer)
                a->warm_waiting = true;
        return answer;
}

/* Start a runner that warms up (imports, JIT, ...) and then waits on fd 3 for one exec. */
static json_t *agent_op_warm(struct agent *a, json_t *req, json_t *id)
{
        _cleanup_(exec_req_done) struct exec_req q = {0};
        json_int_t ready_ms;
        char errbuf[512];
        json_t *answer;
        int r;

        r = check_fields(req, warm_fields, ELEMENTSOF(warm_fields), errbuf, sizeof(errbuf));
        if (r == 0)
                r = runner_decode(req, &q, &ready_ms, errbuf, sizeof(errbuf));
        if (r == -ENOMEM)
                return op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        if (r < 0)
                return op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", errbuf);
        answer = runner_start(a, json_object_get(req, "env"), &q, ready_ms, id);
        if (answer)
                return answer;
        return op_agent_answer_encode(
            id, &(struct op_agent_answer){.op = OP_AGENT_OP_WARM, .ok = true, .pid = a->warm.pid});
}

/* "prime" with "runner": {"argv", "env", "ready_timeout_ms"}: the clone's identity is applied
 * first, then the runner is started, so that it seeds its random state from the clone's own
 * entropy; then it is primed as usual (or, without "file" and "code", left waiting). NULL, or
 * the error answer. */
static json_t *prime_start_runner(struct agent *a, json_t *runner, const struct exec_req *q,
                                  json_t *id)
{
        _cleanup_(exec_req_done) struct exec_req w = {0};
        json_int_t ready_ms;
        char errbuf[512];
        int r;

        if (!json_is_object(runner))
                return op_error_reply(
                    id, OP_ERR_BAD_REQUEST,
                    "\"runner\" must be {\"argv\", \"env\", \"ready_timeout_ms\"}");
        r = check_fields(runner, runner_fields, ELEMENTSOF(runner_fields), errbuf, sizeof(errbuf));
        if (r == 0)
                r = runner_decode(runner, &w, &ready_ms, errbuf, sizeof(errbuf));
        if (r == -ENOMEM)
                return op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        if (r < 0)
                return op_error_reply(id, OP_ERR_BAD_REQUEST, "\"runner\": %s", errbuf);
        if (a->warm_waiting) /* refused before anything is changed */
                return op_error_reply(id, OP_ERR_BAD_REQUEST,
                                      "a warm runner (pid %d) is already waiting",
                                      (int)a->warm.pid);
        if (a->cfg.apply_identity) {
                r = apply_identity(q, errbuf, sizeof(errbuf));
                if (r < 0)
                        return op_error_reply(id, OP_ERR_INTERNAL, "%s",
                                              r == -ENOMEM ? "out of memory" : errbuf);
        }
        return runner_start(a, json_object_get(runner, "env"), &w, ready_ms, id);
}

/* A run's answer, rehearsed as its steps are (agent_rehearse()): an exec answer with output of
 * both streams, its status, usage and timing, encoded to a frame and thrown away. A warm runner's
 * prime answers no exec, and under TCG the first pass over code in a clone translates it: the
 * first request would otherwise pay for it. */
static void rehearse_answer(json_t *id)
{
        struct op_agent_segment seg[] = {{1, 3}, {2, 1}};
        const struct agent_result res = {
            .out = (char *)"hi\n",
            .out_len = 3,
            .out_total = 3,
            .err = (char *)"!",
            .err_len = 1,
            .err_total = 1,
            .run_us = 1000,
            .usage = {.cpu_us = 500, .memory_peak_bytes = 1 << 20, .by_cgroup = true},
            .order = {.known = true, .seg = seg, .n = ELEMENTSOF(seg), .cap = ELEMENTSOF(seg)},
        };
        _cleanup_(json_decrefp) json_t *answer = NULL;
        _cleanup_free_ char *frame = NULL;
        struct op_agent_answer ans;
        size_t len;

        exec_answer(&ans, &res, true);
        agent_answer_opts(&ans.exec, &res, false);
        answer = op_agent_answer_encode(id, &ans);
        if (answer && op_agent_answer_stamp(answer, 1.0) == 0)
                (void)op_frame_encode(answer, OP_FRAME_MAX_CEILING, &frame, &len);
}

/* "prime": the waiting runner runs a program of ours the way it will run the user's (same
 * files, same code paths) and waits again. Under software emulation this fills the VMM's
 * translation cache of a restored clone before it is pooled. The output is discarded. With
 * "runner", the runner is started first (prime_start_runner). */
static json_t *agent_op_prime(struct agent *a, json_t *req, json_t *id)
{
        _cleanup_(exec_req_done) struct exec_req q = {0};
        _cleanup_(json_decrefp) json_t *rest = NULL;
        _cleanup_free_ char *dir = NULL, *line = NULL;
        json_t *runner = json_object_get(req, "runner"), *answer;
        struct agent_diag diag;
        size_t len = 0;
        char errbuf[512];
        uint64_t t0 = op_now_us();
        int r;

        warm_settle(a);
        if (!runner && !a->warm_waiting)
                return op_error_reply(id, OP_ERR_BAD_REQUEST, "no warm runner is waiting");
        if (runner) { /* the exec's fields are the rest */
                rest = json_copy(req);
                if (!rest || json_object_del(rest, "runner") < 0)
                        return op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        }
        r = exec_decode(rest ? rest : req, &q, errbuf, sizeof(errbuf));
        if (r == 0 && !q.code_file && !runner)
                r = op_errf(errbuf, sizeof(errbuf), -EINVAL,
                            "\"prime\" needs \"file\" and \"code\"");
        if (r == 0 && q.next_runner)
                r = op_errf(errbuf, sizeof(errbuf), -EINVAL, "\"prime\" takes no \"next_runner\"");
        if (r == -ENOMEM)
                return op_error_reply(id, OP_ERR_INTERNAL, "out of memory");
        if (r < 0)
                return op_error_reply(id, OP_ERR_BAD_REQUEST, "%s", errbuf);
        if (runner) {
                answer = prime_start_runner(a, runner, &q, id);
                if (answer)
                        return answer;
        }
        if (q.code_file) {
                r = make_rundir(&a->cfg, &q, NULL, &dir, errbuf, sizeof(errbuf));
                if (r < 0)
                        return op_error_reply(id, OP_ERR_INTERNAL, "%s", errbuf);
                r = build_env(json_object_get(req, "env"), dir, &q, errbuf, sizeof(errbuf));
                if (r == 0)
                        r = warm_handoff(&q, dir, true, &q.compile, &line, &len);
                if (r == 0) {
                        (void)op_fd_nonblock(a->warm.ctl_fd, 0);
                        r = op_write_all(a->warm.ctl_fd, line, len);
                }
                if (r == 0)
                        r = agent_child_wait_ready(&a->warm, q.timeout_ms, &diag);
                end_rundir(&q, dir);
        }
        /* The rest of a run's path, which the runner's prime does not take: the identity (which
         * the exec sets again; applied already when the runner was started here) and a run's own
         * steps, rehearsed with another program. */
        if (r == 0 && a->cfg.apply_identity && !runner)
                (void)apply_identity(&q, errbuf, sizeof(errbuf));
        if (r == 0 && q.code_file) {
                agent_rehearse(a->cfg.uid, a->cfg.gid, a->cfg.cgroup_root);
                rehearse_answer(id);
        }
        if (r < 0) {
                /* wait_ready killed the runner: the next exec runs the cold way. */
                a->warm_waiting = false;
                a->warm = AGENT_CHILD_INIT;
                warm_dir_drop(a);
                return op_error_reply(id, OP_ERR_INTERNAL, "priming the warm runner failed: %s",
                                      strerror(-r));
        }
        return op_agent_answer_encode(id, &(struct op_agent_answer){
                                              .op = OP_AGENT_OP_PRIME,
                                              .ok = true,
                                              .run_ms = (double)(op_now_us() - t0) / 1000.0,
                                          });
}

static json_t *agent_op_ping(struct agent *a, json_t *req, json_t *id)
{
        const char *key;
        json_t *v;

        json_object_foreach (req, key, v) {
                if (strcmp(key, "id") != 0 && strcmp(key, "op") != 0)
                        return op_error_reply(id, OP_ERR_BAD_REQUEST, "unknown field \"%.64s\"",
                                              key);
        }
        return op_agent_answer_encode(id, &(struct op_agent_answer){
                                              .op = OP_AGENT_OP_PING,
                                              .ok = true,
                                              .agent_version = OP_AGENT_VERSION,
                                          });
}

static const struct agent_op {
        const char *name;
        json_t *(*handler)(struct agent *a, json_t *req, json_t *id);
        bool timed; /* with "timing": true, its answer says how long the agent took */
} agent_ops[] = {
    {"ping", agent_op_ping, false},
    {"warm", agent_op_warm, false},
    {"prime", agent_op_prime, false},
    {"exec", agent_op_exec, true},
};

json_t *agent_ready_event(void)
{
        return op_agent_ready_encode(&(struct op_agent_ready){.agent_version = OP_AGENT_VERSION});
}

void agent_init(struct agent *a, const struct agent_config *cfg)
{
        *a = (struct agent){.cfg = *cfg,
                            .warm = AGENT_CHILD_INIT,
                            .repl = AGENT_CHILD_INIT,
                            .ended = AGENT_CHILD_INIT,
                            .spare = LIMITS_GROUP_INIT,
                            .warm_group = LIMITS_GROUP_INIT};
}

void agent_prepare(struct agent *a)
{
        if (a->cfg.cgroup_root && a->spare.fd < 0)
                (void)limits_group_make(a->cfg.cgroup_root, &a->spare);
}

void agent_rundir_drop(struct agent *a)
{
        if (a->ended_dir) {
                rm_rundir(a->ended_dir);
                free(TAKE_PTR(a->ended_dir));
        }
}

void agent_answered(struct agent *a)
{
        _cleanup_(json_decrefp) json_t *spec = TAKE_PTR(a->next_runner);

        if (a->ended.pid > 0) {
                agent_child_kill(&a->ended);
                kill_all();
        }
        /* After every process of the run is gone: nothing writes there any more. */
        agent_rundir_drop(a);
        /* The group of a runner that was ended, or moved out of (a repl interpreter). */
        if (!a->warm_pending && !a->warm_waiting)
                limits_group_drop(&a->warm_group);
        agent_prepare(a);
        if (spec)
                next_runner_start(a, spec);
}

int agent_idle_timeout_ms(const struct agent *a)
{
        uint64_t end = a->warm_ready_by_us, now = op_now_us();

        if (!a->warm_pending)
                return -1;
        return end > now ? (int)((end - now + 999) / 1000) : 0;
}

void agent_idle_expired(struct agent *a)
{
        warm_settle(a);
}

void agent_set_channel(struct agent *a, const struct agent_channel *chan)
{
        a->chan = chan;
}

void agent_done(struct agent *a)
{
        if (!a)
                return;
        agent_child_kill(&a->warm);
        a->warm_waiting = a->warm_pending = false;
        warm_dir_drop(a);
        json_decref(a->next_runner);
        a->next_runner = NULL;
        limits_group_drop(&a->warm_group);
        agent_child_kill(&a->repl);
        a->repl_alive = false;
        agent_child_kill(&a->ended);
        agent_rundir_drop(a);
        limits_group_drop(&a->spare);
}

json_t *agent_handle(struct agent *a, json_t *req)
{
        uint64_t t0 = a->job_read_us ? a->job_read_us : op_now_us();
        char errbuf[512];
        json_t *id, *op, *answer;

        a->job_read_us = 0;
        if (!json_is_object(req))
                return op_error_reply(NULL, OP_ERR_BAD_REQUEST, "a request is a JSON object");
        if (op_request_id(req, &id, errbuf, sizeof(errbuf)) < 0)
                return op_error_reply(NULL, OP_ERR_BAD_REQUEST, "%s", errbuf);
        op = json_object_get(req, "op");
        if (!op)
                return op_error_reply(id, OP_ERR_BAD_REQUEST, "missing \"op\"");
        if (!json_is_string(op))
                return op_error_reply(id, OP_ERR_BAD_REQUEST, "\"op\" must be a string");
        for (size_t i = 0; i < ELEMENTSOF(agent_ops); i++) {
                if (strcmp(json_string_value(op), agent_ops[i].name) != 0)
                        continue;
                answer = agent_ops[i].handler(a, req, id);
                /* Last, so that it covers all of the handler's work and the answer's encoding.
                 * Without it (out of memory) the answer is still the answer. */
                if (answer && agent_ops[i].timed && json_is_true(json_object_get(req, "timing")))
                        (void)op_agent_answer_stamp(answer, (double)(op_now_us() - t0) / 1000.0);
                return answer;
        }
        return op_error_reply(id, OP_ERR_UNKNOWN_OP, "unknown op \"%.64s\"", json_string_value(op));
}

void agent_reap_orphans(struct agent *a)
{
        for (;;) {
                int st;
                pid_t p = waitpid(-1, &st, WNOHANG);

                if (p < 0 && errno == EINTR)
                        continue;
                if (p <= 0)
                        break;
                /* Its status is the exec's to report. (Pids are handed out cyclically: its
                 * group id is not reused by the time that exec sweeps the group.) */
                if ((a->warm_waiting || a->warm_pending) && p == a->warm.pid && !a->warm.reaped) {
                        a->warm.reaped = true;
                        a->warm.status = st;
                }
                if (a->repl_alive && p == a->repl.pid && !a->repl.reaped) {
                        a->repl.reaped = true;
                        a->repl.status = st;
                }
        }
}
