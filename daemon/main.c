/* main.c: opd's entry point: command line, configuration, and the event loop.
 * The only file of the daemon outside the opdcore library. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "opd.h"
#include "poolplan.h"
#include "server.h"
#include "snapcreate.h"
#include "snapshot.h"
#include "vmm.h"

static const char *oneshot_lang;

static void on_snapshot_done(struct opd *d, int r, const char *msg, const struct snap_manifest *m,
                             void *userdata)
{
        if (r < 0) {
                fprintf(stderr, "opd: snapshot of %s failed: %s\n", oneshot_lang, msg);
                d->exit_code = 1;
        } else
                printf("%s/%s/%s\n", d->cfg.cache_dir, m->lang, m->version);
        opd_stop(d);
}

static void create_snapshot(struct opd *d)
{
        const struct op_lang *lang = op_langs_find(&d->langs, oneshot_lang);
        int r;

        if (!lang) {
                fprintf(stderr, "opd: no built image for language \"%s\"\n", oneshot_lang);
                d->exit_code = 1;
                opd_stop(d);
                return;
        }
        r = snapcreate_start(d, lang, on_snapshot_done, NULL);
        if (r < 0) {
                fprintf(stderr, "opd: snapshot of %s: %s\n", oneshot_lang, strerror(-r));
                d->exit_code = 1;
                opd_stop(d);
        }
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: opd [OPTIONS]\n"
                   "Run untrusted code in microVMs, served over a UNIX socket.\n\n"
                   "  -c, --config FILE      read configuration from FILE\n"
                   "  -s, --socket PATH      listen on PATH (default /run/opd/opd.sock)\n"
                   "      --images DIR       guest images directory (images_dir)\n"
                   "      --languages FILE   language registry (languages)\n"
                   "      --run-dir DIR      per-VM working directories (run_dir)\n"
                   "      --accel MODE       auto, kvm or tcg\n"
                   "      --cache-dir DIR    snapshot cache (cache_dir)\n"
                   "      --s3-bucket B      sync snapshots from S3 bucket B (s3.bucket)\n"
                   "      --s3-region R      its region (s3.region)\n"
                   "      --s3-endpoint URL  an S3-compatible endpoint (s3.endpoint)\n"
                   "      --set KEY=VALUE    set any configuration key\n"
                   "      --create-snapshot LANG  make a snapshot of LANG into cache_dir and exit\n"
                   "  -n, --check-config     print the effective configuration and exit\n"
                   "  -V, --version          print the version and exit\n"
                   "  -h, --help             this help\n");
}

/* The command line, kept for configuration reloads: the file is read again, then the flags
 * are applied again on top, exactly as at start-up. */
static int saved_argc;
static char **saved_argv;
static const char *config_path;

static const struct option opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"socket", required_argument, NULL, 's'},
    {"images", required_argument, NULL, 'I'},
    {"languages", required_argument, NULL, 'L'},
    {"run-dir", required_argument, NULL, 'R'},
    {"accel", required_argument, NULL, 'A'},
    {"set", required_argument, NULL, 'S'},
    {"cache-dir", required_argument, NULL, 'D'},
    {"s3-bucket", required_argument, NULL, 'B'},
    {"s3-region", required_argument, NULL, 'G'},
    {"s3-endpoint", required_argument, NULL, 'E'},
    {"check-config", no_argument, NULL, 'n'},
    {"create-snapshot", required_argument, NULL, 'C'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {0},
};
static const struct {
        int opt;
        const char *key;
} flag_keys[] = {
    {'s', "socket"},    {'I', "images_dir"}, {'L', "languages"},
    {'R', "run_dir"},   {'A', "accel"},      {'D', "cache_dir"},
    {'B', "s3.bucket"}, {'G', "s3.region"},  {'E', "s3.endpoint"},
};

/* Defaults, then the file, then the flags (wherever they appear), then the checks across keys.
 * On failure *c is freed and err holds the reason. */
static int build_config(struct op_config *c, char *err, size_t errlen)
{
        int o, r;

        if (op_config_init(c) < 0) {
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        r = config_path ? op_config_load(c, config_path, err, errlen) : 0;
        optind = 1;
        while (r >= 0 && (o = getopt_long(saved_argc, saved_argv, "c:s:nVh", opts, NULL)) != -1) {
                const char *key = NULL;
                char *eq;

                for (size_t i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++)
                        if (flag_keys[i].opt == o)
                                key = flag_keys[i].key;
                if (key)
                        r = op_config_set(c, key, optarg, err, errlen);
                else if (o == 'S') {
                        _cleanup_free_ char *kv = strdup(optarg);

                        if (!kv || !(eq = strchr(kv, '='))) {
                                snprintf(err, errlen, "--set takes KEY=VALUE");
                                r = -EINVAL;
                                break;
                        }
                        *eq = 0;
                        r = op_config_set(c, kv, eq + 1, err, errlen);
                }
        }
        if (r >= 0)
                r = op_config_check(c, err, errlen);
        if (r < 0)
                op_config_free(c);
        return r;
}

/* --check-config: the QEMU release opd would run, when it can be asked; one too old is an error. */
static int check_vmm(const struct op_config *c)
{
        _cleanup_free_ char *v = NULL;
        char err[512];
        int r;

        if (strcmp(c->vmm, "qemu") != 0)
                return 0;
        r = qemu_version(c->qemu_binary, &v);
        if (r < 0) {
                printf("# vmm: not checked: cannot run %s --version\n", c->qemu_binary);
                return 0;
        }
        if (qemu_version_supported(v, err, sizeof(err)) < 0) {
                fprintf(stderr, "opd: %s: %s\n", c->qemu_binary, err);
                return -EPROTONOSUPPORT;
        }
        printf("# vmm: qemu %s (%u.%u or later: supported)\n", v, QEMU_MIN_MAJOR, QEMU_MIN_MINOR);
        return 0;
}

static int reload_config(struct opd *d, struct op_config *ret, char *err, size_t errlen)
{
        return build_config(ret, err, errlen);
}

int main(int argc, char **argv)
{
        struct opd d = {.reload_config = reload_config};
        bool check = false;
        char err[512];
        int c, r;

        saved_argc = argc;
        saved_argv = argv;
        /* First pass: the options that are not configuration keys. */
        while ((c = getopt_long(argc, argv, "c:s:nVh", opts, NULL)) != -1) {
                if (c == 'c')
                        config_path = optarg;
                else if (c == 'C')
                        oneshot_lang = optarg;
                else if (c == 'n')
                        check = true;
                else if (c == 'V') {
                        printf("opd %s (protocol %d)\n", OP_VERSION, OP_PROTO_VERSION);
                        return 0;
                } else if (c == 'h') {
                        usage(stdout);
                        return 0;
                } else if (c == '?') {
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "opd: unexpected argument \"%s\"\n", argv[optind]);
                return 2;
        }
        r = build_config(&d.cfg, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "opd: %s\n", err);
                return r == -ENOMEM ? 1 : 2;
        }
        if (check) {
                op_config_dump(&d.cfg, stdout);
                if (check_vmm(&d.cfg) < 0) {
                        op_config_free(&d.cfg);
                        return 2;
                }
                r = op_pool_plan_report(&d.cfg, stdout, err, sizeof(err));
                op_config_free(&d.cfg);
                if (r == -E2BIG) {
                        fprintf(stderr, "opd: %s\n", err);
                        return 2;
                }
                if (r < 0) /* no catalogue here: the pools are checked at start-up */
                        printf("# pools: not checked: %s\n", err);
                return 0;
        }

        if (oneshot_lang) {
                /* Make one snapshot: no socket, no pools. */
                d.no_listen = true;
                d.cfg.pool_size = 0;
                d.cfg.pool_sizes[0] = 0;
                d.on_accel_decided = create_snapshot;
        }
        log_info("opd %s starting", OP_VERSION);
        r = server_raise_nofile();
        if (r < 0)
                log_warn("RLIMIT_NOFILE: %s", strerror(-r));
        r = opd_init(&d);
        if (r < 0) {
                log_error("start-up failed");
                opd_done(&d);
                return 1;
        }
        event_base_dispatch(d.base);
        r = d.exit_code;
        opd_done(&d);
        log_info("opd stopped");
        return r;
}
