/* lang.c: loads languages.json and the images' version files into struct op_langs,
 * finds a language by name or alias and expands its run command. */
#include "lang.h"

#include <errno.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

static int name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > 32)
                return 0;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
                      *s == '_' || *s == '.'))
                        return 0;
        return 1;
}

static void lang_free(struct op_lang *g)
{
        free(g->name);
        free(g->piston);
        free(g->file);
        free(g->version);
        free(g->rootfs);
        free(g->prime);
        for (char **a = g->aliases; *a; a++)
                free(*a);
        for (char **a = g->run; *a; a++)
                free(*a);
        for (char **a = g->warm; *a; a++)
                free(*a);
        for (char **a = g->compile; *a; a++)
                free(*a);
}

static int string_array(json_t *arr, char **out, size_t max)
{
        size_t i;
        json_t *v;

        if (!json_is_array(arr) || json_array_size(arr) > max)
                return -EINVAL;
        json_array_foreach (arr, i, v) {
                if (!json_is_string(v) || json_string_length(v) == 0)
                        return -EINVAL;
                out[i] = strdup(json_string_value(v));
                if (!out[i])
                        return -ENOMEM;
        }
        return 0;
}

/* An optional integer field in [min, max]: *ret unchanged when absent. */
static int get_bounded(json_t *o, const char *key, json_int_t min, json_int_t max, uint32_t *ret)
{
        json_t *v = json_object_get(o, key);

        if (!v)
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return -EINVAL;
        *ret = (uint32_t)json_integer_value(v);
        return 0;
}

/* "compile": {"argv": [...], "timeout_ms": N, "output_max": N}; "memory_mb"; "pool_size". */
static int lang_load_phases(json_t *o, struct op_lang *g, char *errbuf, size_t errlen)
{
        json_t *c = json_object_get(o, "compile");
        uint32_t pool = 0;

        g->compile_timeout_ms = 30000;
        g->compile_output_max = 64 * 1024;
        g->pool_size = -1;
        if (c && (!json_is_object(c) ||
                  string_array(json_object_get(c, "argv"), g->compile, OP_LANG_ARGV_MAX) < 0 ||
                  !g->compile[0] ||
                  get_bounded(c, "timeout_ms", 1, OP_LANG_COMPILE_TIMEOUT_MS_MAX,
                              &g->compile_timeout_ms) < 0 ||
                  get_bounded(c, "output_max", 0, OP_LANG_COMPILE_OUTPUT_MAX,
                              &g->compile_output_max) < 0))
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"compile\" must be {\"argv\": [1-%d strings], "
                               "\"timeout_ms\": 1-%d, \"output_max\": 0-%d}",
                               g->name, OP_LANG_ARGV_MAX, OP_LANG_COMPILE_TIMEOUT_MS_MAX,
                               OP_LANG_COMPILE_OUTPUT_MAX);
        if (get_bounded(o, "memory_mb", 64, OP_LANG_MEMORY_MB_MAX, &g->memory_mb) < 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"memory_mb\" must be 64-%d", g->name,
                               OP_LANG_MEMORY_MB_MAX);
        if (json_object_get(o, "pool_size")) {
                if (get_bounded(o, "pool_size", 0, 1024, &pool) < 0)
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "language \"%s\": \"pool_size\" must be 0-1024", g->name);
                g->pool_size = (int32_t)pool;
        }
        return 0;
}

/* "warm": {"run": [...], "repl": bool, "start": "snapshot" | "clone", "ready_timeout_ms": N}
 * ("install" is the image recipe's). */
static int lang_load_warm(json_t *warm, struct op_lang *g, char *errbuf, size_t errlen)
{
        json_t *start, *repl, *ready, *sessions;

        if (!warm)
                return 0;
        if (!json_is_object(warm) ||
            string_array(json_object_get(warm, "run"), g->warm, OP_LANG_ARGV_MAX) < 0 ||
            !g->warm[0])
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"warm\" must be {\"run\": [1-%d strings]}",
                               g->name, OP_LANG_ARGV_MAX);
        repl = json_object_get(warm, "repl");
        if (repl && !json_is_boolean(repl))
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"warm.repl\" must be true or false", g->name);
        g->repl = json_is_true(repl);
        sessions = json_object_get(warm, "sessions");
        if (sessions && !json_is_boolean(sessions))
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"warm.sessions\" must be true or false", g->name);
        g->warm_no_sessions = json_is_false(sessions);
        ready = json_object_get(warm, "ready_timeout_ms");
        if (ready && (!json_is_integer(ready) || json_integer_value(ready) < 1000 ||
                      json_integer_value(ready) > OP_WARM_READY_MS_MAX))
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"warm.ready_timeout_ms\" must be 1000-%u",
                               g->name, OP_WARM_READY_MS_MAX);
        g->warm_ready_ms = ready ? (uint32_t)json_integer_value(ready) : 0;
        start = json_object_get(warm, "start");
        if (!start || (json_is_string(start) && strcmp(json_string_value(start), "snapshot") == 0))
                g->warm_start = OP_WARM_START_SNAPSHOT;
        else if (json_is_string(start) && strcmp(json_string_value(start), "clone") == 0)
                g->warm_start = OP_WARM_START_CLONE;
        else
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"warm\": \"start\" must be \"snapshot\" or "
                               "\"clone\"",
                               g->name);
        return 0;
}

static int lang_load(json_t *o, const char *images_dir, struct op_lang *g, char *errbuf,
                     size_t errlen)
{
        json_t *name = json_object_get(o, "name"), *file = json_object_get(o, "file");
        json_t *aliases = json_object_get(o, "aliases");
        _cleanup_free_ char *verpath = NULL;
        char *ver = NULL;
        int r;

        if (!json_is_string(name) || !name_valid(json_string_value(name)))
                return op_errf(errbuf, errlen, -EINVAL,
                               "a language has no valid \"name\" ([a-z0-9._-]{1,32})");
        g->name = strdup(json_string_value(name));
        if (!g->name)
                return -ENOMEM;
        if (!json_is_string(file) || strchr(json_string_value(file), '/') ||
            json_string_length(file) == 0 || json_string_length(file) > 64)
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"file\" must be a plain file name", g->name);
        g->file = strdup(json_string_value(file));
        if (string_array(json_object_get(o, "run"), g->run, OP_LANG_ARGV_MAX) < 0 || !g->run[0])
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"run\" must be 1-%d non-empty strings", g->name,
                               OP_LANG_ARGV_MAX);
        r = lang_load_warm(json_object_get(o, "warm"), g, errbuf, errlen);
        if (r < 0)
                return r;
        json_t *prime = json_object_get(o, "prime");
        if (prime && (!json_is_string(prime) || !(g->prime = strdup(json_string_value(prime)))))
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"prime\" must be a program", g->name);
        r = lang_load_phases(o, g, errbuf, errlen);
        if (r < 0)
                return r;
        json_t *piston = json_object_get(o, "piston");
        if (piston && (!json_is_string(piston) || json_string_length(piston) == 0 ||
                       json_string_length(piston) > 32))
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"piston\" must be a name of 1-32 bytes", g->name);
        /* The image group is the image recipe's (packaging/images/build-images): opd reads
         * <images>/<name>/rootfs.ext4 whatever group built it; only its syntax is checked. */
        json_t *image = json_object_get(o, "image");
        if (image && (!json_is_string(image) || !name_valid(json_string_value(image))))
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"image\" must be a name ([a-z0-9._-]{1,32})",
                               g->name);
        g->piston = strdup(piston ? json_string_value(piston) : g->name);
        if (!g->piston)
                return -ENOMEM;
        if (aliases && string_array(aliases, g->aliases, OP_LANG_ALIAS_MAX) < 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "language \"%s\": \"aliases\" must be up to %d strings", g->name,
                               OP_LANG_ALIAS_MAX);
        if (asprintf(&g->rootfs, "%s/%s/rootfs.ext4", images_dir, g->name) < 0 ||
            asprintf(&verpath, "%s/%s/version", images_dir, g->name) < 0)
                return -ENOMEM;
        g->available = access(g->rootfs, R_OK) == 0;
        if (op_read_file(verpath, 256, &ver, NULL) >= 0)
                ver[strcspn(ver, "\r\n")] = 0;
        g->version = ver && *ver ? ver : strdup("unknown");
        if (ver && !*ver)
                free(ver);
        return g->file && g->version ? 0 : -ENOMEM;
}

int op_langs_load(const char *registry, const char *images_dir, struct op_langs *ret, char *errbuf,
                  size_t errlen)
{
        _cleanup_(json_decrefp) json_t *root = NULL;
        struct op_langs l = {0};
        json_error_t jerr;
        json_t *arr, *o;
        size_t i;
        int r;

        root = json_load_file(registry, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return op_errf(errbuf, errlen, -EINVAL, "%s:%d: %s", registry, jerr.line,
                               jerr.text);
        arr = json_object_get(root, "languages");
        if (!json_is_array(arr) || json_array_size(arr) > OP_LANGS_MAX)
                return op_errf(errbuf, errlen, -EINVAL,
                               "%s: \"languages\" must be an array of up to %d", registry,
                               OP_LANGS_MAX);
        l.v = calloc(json_array_size(arr) + 1, sizeof(*l.v));
        if (!l.v)
                return -ENOMEM;
        json_array_foreach (arr, i, o) {
                l.n++;
                if (!json_is_object(o))
                        r = op_errf(errbuf, errlen, -EINVAL, "%s: languages[%zu] is not an object",
                                    registry, i);
                else
                        r = lang_load(o, images_dir, &l.v[i], errbuf, errlen);
                if (r < 0) {
                        op_langs_free(&l);
                        return r;
                }
                for (size_t j = 0; j < i; j++)
                        if (strcmp(l.v[j].name, l.v[i].name) == 0) {
                                r = op_errf(errbuf, errlen, -EINVAL,
                                            "%s: language \"%s\" appears twice", registry,
                                            l.v[i].name);
                                op_langs_free(&l);
                                return r;
                        }
        }
        *ret = l;
        return 0;
}

void op_langs_free(struct op_langs *l)
{
        for (size_t i = 0; i < l->n; i++)
                lang_free(&l->v[i]);
        free(l->v);
        *l = (struct op_langs){0};
}

const struct op_lang *op_langs_find(const struct op_langs *l, const char *name)
{
        for (size_t i = 0; i < l->n; i++) {
                const struct op_lang *g = &l->v[i];
                int match = strcmp(g->name, name) == 0;

                for (char *const *a = g->aliases; !match && *a; a++)
                        match = strcmp(*a, name) == 0;
                if (match)
                        return g->available && g->enabled ? g : NULL;
        }
        return NULL;
}

void op_langs_names(const struct op_langs *l, char *buf, size_t len)
{
        size_t off = 0;

        if (len == 0)
                return;
        buf[0] = 0;
        for (size_t i = 0; i < l->n && off < len; i++) {
                if (!l->v[i].available || !l->v[i].enabled)
                        continue;
                int k = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", l->v[i].name);
                if (k < 0)
                        break;
                off += (size_t)k;
        }
}

static bool listed(const char *list, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = list; *p;) {
                size_t k = strcspn(p, ",");

                if (k == n && strncmp(p, name, n) == 0)
                        return true;
                p += k;
                if (*p == ',')
                        p++;
        }
        return false;
}

int op_langs_enable(struct op_langs *l, const char *list, char *errbuf, size_t errlen)
{
        for (const char *p = list; *p;) {
                size_t k = strcspn(p, ",");
                bool known = false;

                for (size_t i = 0; i < l->n && !known; i++)
                        known = strlen(l->v[i].name) == k && strncmp(l->v[i].name, p, k) == 0;
                if (!known)
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "languages.enabled: no language \"%.*s\" in the registry",
                                       (int)(k > 64 ? 64 : k), p);
                p += k;
                if (*p == ',')
                        p++;
        }
        for (size_t i = 0; i < l->n; i++)
                l->v[i].enabled = !*list || listed(list, l->v[i].name);
        return 0;
}

void op_argv_free(char **argv)
{
        if (!argv)
                return;
        for (char **a = argv; *a; a++)
                free(*a);
        free(argv);
}

/* Expand a template: "{file}" -> file, then append args. */
static int expand(char *const *tmpl, const char *file, const char *const *args, size_t n_args,
                  char ***ret)
{
        size_t n = 0, k = 0;
        char **argv;

        while (tmpl[n])
                n++;
        argv = calloc(n + n_args + 1, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *t = tmpl[i], *p = strstr(t, "{file}");
                if (p) {
                        if (asprintf(&argv[k], "%.*s%s%s", (int)(p - t), t, file, p + 6) < 0)
                                argv[k] = NULL;
                } else
                        argv[k] = strdup(t);
                if (!argv[k++]) {
                        op_argv_free(argv);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < n_args; i++)
                if (!(argv[k++] = strdup(args[i]))) {
                        op_argv_free(argv);
                        return -ENOMEM;
                }
        *ret = argv;
        return 0;
}

int op_lang_argv(const struct op_lang *lang, const char *const *args, size_t n_args, char ***ret)
{
        return expand(lang->run, lang->file, args, n_args, ret);
}

int op_lang_compile_argv(const struct op_lang *lang, char ***ret)
{
        if (!lang->compile[0])
                return -ENOENT;
        return expand(lang->compile, lang->file, NULL, 0, ret);
}

bool op_lang_warm_in_snapshot(const struct op_lang *lang)
{
        return lang->warm[0] && lang->warm_start == OP_WARM_START_SNAPSHOT;
}

bool op_lang_warm_in_clone(const struct op_lang *lang)
{
        return lang->warm[0] && lang->warm_start == OP_WARM_START_CLONE;
}

uint32_t op_lang_warm_ready_ms(const struct op_lang *lang)
{
        if (lang->warm_ready_ms)
                return lang->warm_ready_ms;
        return lang->compile[0] ? OP_WARM_READY_MS_MAX : OP_WARM_READY_MS_DEFAULT;
}

json_t *op_lang_runner_argv_json(const struct op_lang *lang)
{
        json_t *argv;

        if (!lang->warm[0] || !(argv = json_array()))
                return NULL;
        for (char *const *a = lang->warm; *a; a++)
                if (json_array_append_new(argv, json_string(*a)) < 0) {
                        json_decref(argv);
                        return NULL;
                }
        return argv;
}

json_t *op_lang_runner_json(const struct op_lang *lang)
{
        json_t *argv = op_lang_runner_argv_json(lang);

        if (!argv)
                return NULL;
        return json_pack("{s:o, s:i}", "argv", argv, "ready_timeout_ms",
                         (int)op_lang_warm_ready_ms(lang));
}
