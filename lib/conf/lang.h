/* lang.h: the language registry: languages are data (languages.json plus the built images),
 * never C. A language is a name, aliases, a code file name and a run command template. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OP_LANGS_MAX      256
#define OP_LANG_ARGV_MAX  32
#define OP_LANG_ALIAS_MAX 8
/* Bounds on a catalogue entry's compile phase and memory. */
#define OP_LANG_COMPILE_TIMEOUT_MS_MAX 600000
#define OP_LANG_COMPILE_OUTPUT_MAX     (16 * 1024 * 1024)
#define OP_LANG_MEMORY_MB_MAX          65536
/* How long a warm runner may take to say "ready": the agent's longest wait, and the default. */
#define OP_WARM_READY_MS_MAX     300000
#define OP_WARM_READY_MS_DEFAULT 120000

/* When a language's warm runner starts ("warm": {"start": ...}). */
enum op_warm_start {
        OP_WARM_START_SNAPSHOT, /* "snapshot": before the snapshot, shared by its clones */
        OP_WARM_START_CLONE,    /* "clone": in each restored clone, after its identity is set */
};

struct op_lang {
        char *name;
        char *piston;                         /* its name in Piston's runtimes ("piston"; name) */
        char *aliases[OP_LANG_ALIAS_MAX + 1]; /* NULL-terminated */
        char *file;                           /* the code's file name in the guest */
        char *run[OP_LANG_ARGV_MAX + 1];      /* argv template; "{file}" is replaced */
        char *warm[OP_LANG_ARGV_MAX + 1];     /* the warm runner ("warm": {"run"}), or empty */
        enum op_warm_start warm_start;        /* when it starts ("warm": {"start"}) */
        uint32_t warm_ready_ms;               /* its "ready_timeout_ms", 0: the default */
        int repl;                             /* 1: the warm runner serves repl sessions */
        bool warm_no_sessions;                /* "warm": {"sessions": false} */
        char *prime;                          /* program run in each clone to warm it, or NULL */
        char *compile[OP_LANG_ARGV_MAX + 1];  /* compile argv template ("{file}"), or empty */
        uint32_t compile_timeout_ms;          /* default compile phase deadline */
        uint32_t compile_output_max;          /* bytes kept per stream of the compiler */
        uint32_t memory_mb;                   /* guest RAM for this language, 0: vm.memory_mb */
        int32_t pool_size;                    /* default pool size, -1: pool.size */
        char *version;                        /* read from <images>/<name>/version; "unknown" */
        char *rootfs;                         /* <images>/<name>/rootfs.ext4 */
        int available;                        /* 1 when the rootfs exists */
        int enabled;                          /* served (config languages.enabled) */
};

struct op_langs {
        struct op_lang *v;
        size_t n;
};

/* Load the registry file and look up each language's image under images_dir.
 * -EINVAL with a message naming the entry in errbuf when the file is malformed. */
int op_langs_load(const char *registry, const char *images_dir, struct op_langs *ret, char *errbuf,
                  size_t errlen);
void op_langs_free(struct op_langs *l);

/* Serve only the languages named in list ("python,bash"; "" serves all). A name that is not in
 * the registry is -EINVAL with a message; nothing is changed then. */
int op_langs_enable(struct op_langs *l, const char *list, char *errbuf, size_t errlen);

/* By name or alias, only languages whose image is built and that are enabled. NULL otherwise. */
const struct op_lang *op_langs_find(const struct op_langs *l, const char *name);

/* Comma-separated names of the available languages into buf (for error messages). */
void op_langs_names(const struct op_langs *l, char *buf, size_t len);

/* Has it a warm runner that starts before its snapshot is taken, one that starts in each clone? */
bool op_lang_warm_in_snapshot(const struct op_lang *lang);
bool op_lang_warm_in_clone(const struct op_lang *lang);
/* How long its runner may take to say "ready": "warm": {"ready_timeout_ms"}, else the default
 * (the longest for a compiled language's runner, which warms its compiler up too). */
uint32_t op_lang_warm_ready_ms(const struct op_lang *lang);
/* Its runner as the agent starts one ("prime"'s "runner", an exec's "next_runner"):
 * {"argv", "ready_timeout_ms"}; and its argv alone (a repl call's "repl"). New references; NULL
 * when out of memory or it has none. */
struct json_t *op_lang_runner_json(const struct op_lang *lang);
struct json_t *op_lang_runner_argv_json(const struct op_lang *lang);

/* Expand the run template: "{file}" -> file, then append args. *ret is a malloc'd
 * NULL-terminated array whose strings are malloc'd too; free with op_argv_free(). */
int op_lang_argv(const struct op_lang *lang, const char *const *args, size_t n_args, char ***ret);
/* The compile command with "{file}" expanded, the same way; -ENOENT when the language has none. */
int op_lang_compile_argv(const struct op_lang *lang, char ***ret);
void op_argv_free(char **argv);
