/* opctl.c: the thin blocking client of opd: one request frame out on opd's UNIX socket, frames in
 * until the answer with the same id, printed for humans or as raw JSON; exit status from the run.
 * This file holds main(): the help, the options and which command runs (see opctl.h for the rest).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "msg.h"
#include "opctl.h"
#include "s3-publish.h"
#include "snap-chunks.h"
#include "util.h"

static void help(FILE *f)
{
        fprintf(
            f,
            "Usage: opctl [OPTIONS] COMMAND\n"
            "\n"
            "Commands:\n"
            "  run      run a program: --lang L (--code STR | --file PATH | -) [RUN OPTIONS]\n"
            "  batch FILE  run the exec requests of FILE (\"-\": standard input; one JSON\n"
            "           object per line, or a JSON array) as one exec_batch; run options\n"
            "           fill in what a request leaves out; each answer is printed as one\n"
            "           JSON line as it comes; exit 0 when every request ran with status ok\n"
            "  cases [FILE] --lang L (--code STR | --file PATH) [--case STDIN]... [RUN OPTIONS]\n"
            "           compile the program once and run it on each test case, each in a\n"
            "           fresh copy of the compiled VM (exec_cases): the cases of FILE (\"-\":\n"
            "           standard input; one JSON object per line, or a JSON array, of\n"
            "           stdin, args, env, files, output_files and limits) and one per\n"
            "           --case (its standard input); run options are every case's default;\n"
            "           each case's answer is printed as one JSON line, in order; exit 0\n"
            "           when every case ran with status ok, 1 on a compile error (the\n"
            "           compiler's output on stderr) or a case that did not\n"
            "  session open --lang L [--idle-timeout S] [--lifetime S] [--repl] [limits]\n"
            "           open a session: a VM kept across runs for you (files in its\n"
            "           working directory stay); prints its id; run limits given\n"
            "           become the default of each run in it; --repl: one interpreter\n"
            "           kept across its runs, each run's code in the globals the runs\n"
            "           before it left (python)\n"
            "  session exec ID (--code STR | --file PATH | -) [RUN OPTIONS]\n"
            "           run in the session, as run does (no --mode)\n"
            "  session exec ID --phase compile|run ...  a compiled language: compile only\n"
            "           (the program does not run), or run what it built (no program given)\n"
            "  session list    your sessions (administrators: everyone's)\n"
            "  session close ID  end the session; its VM is destroyed\n"
            "  session fork ID   a new session with its memory and files (prints its id)\n"
            "  session pause ID  save it to disk and free its VM; session resume ID: back\n"
            "  status   opd's languages, versions, pools and counters\n"
            "  languages  the languages opd serves: version, kind, aliases\n"
            "  ping     check that opd answers and serves, and how fast\n"
            "  metrics  opd's metrics in Prometheus text format (docs/metrics.md)\n"
            "  reload   administrators: opd reads its configuration again (as on SIGHUP)\n"
            "  snapshot ACTION [--lang L]\n"
            "           administrators: create (--lang L), list, reload, verify or sync\n"
            "           (fetch new versions from S3 now) snapshots through opd;\n"
            "           push --lang L uploads the cache's current version to S3 (with\n"
            "           --plain: whole files, as aws s3 sync would, multipart from\n"
            "           --multipart-threshold MIB, default 64, in parts of --part-size\n"
            "           MIB, default 8) and\n"
            "           list --remote lists the bucket (opctl talks to S3 itself, with\n"
            "           opd's configuration: --config FILE, default /etc/opd/opd.conf,\n"
            "           and --cache-dir, --s3-bucket, --s3-region, --s3-endpoint,\n"
            "           --s3-prefix; credentials from the AWS environment);\n"
            "           push --sign-key FILE signs the version's manifest (Ed25519;\n"
            "           --serial N, default: above the bucket's when a trusted key\n"
            "           signed it, and at least the time; at most 2^53;\n"
            "           --valid-for DURATION, e.g. 7d: the signature expires then, and\n"
            "           hosts refuse the version until it is pushed again);\n"
            "           keygen --out FILE makes a signing key and prints the public key\n"
            "           for s3.trusted_keys (docs/s3.md)\n"
            "\n"
            "Options (anywhere on the line):\n"
            "  --socket PATH      opd's socket (default: $OPD_SOCKET, else " OPCTL_SOCKET_DEFAULT
            ")\n"
            "  --json             print opd's answer as it came, one JSON line on stdout\n"
            "  --timeout-ms N     stop waiting for opd's answer after N ms (default: %u for\n"
            "                     ping and status; for run, the run's timeout + %u)\n"
            "  -h, --help         this help\n"
            "  --version          opctl's version and protocol\n"
            "\n"
            "Run options:\n"
            "  -l, --lang L       language name or alias (opctl status lists them)\n"
            "  -c, --code STR     the program text\n"
            "  -f, --file PATH    read the program from PATH (\"-\": standard input)\n"
            "  -                  read the program from standard input\n"
            "  --stdin STR        the program's standard input; without it, opctl's own\n"
            "                     standard input is passed on when it is not a terminal and\n"
            "                     the program is not read from it (--stdin '' sends none)\n"
            "  --timeout SECONDS  the program's time limit, e.g. 2.5 (default: opd's)\n"
            "  --mode MODE        warm (a paused VM from the pool), cold (a freshly booted\n"
            "                     VM) or auto (warm when a pool serves the language; default)\n"
            "  -a, --arg A        an argument for the program (repeat for more)\n"
            "  -e, --env NAME=V   an environment variable for the program (repeat for more)\n"
            "  --timings          print where the time went, on stderr\n"
            "  --stream           print the output as it comes (the default when stdout is a\n"
            "                     terminal); with --json, each event is one JSON line\n"
            "  --no-stream        print the output once the program has ended\n"
            "  -i, --interactive  pass opctl's standard input on as it is typed (or read),\n"
            "                     while the program runs (stdin_stream); end it with ^D\n"
            "  --file-in NAME=PATH  the local file PATH as the file NAME next to the\n"
            "                     program (binary content goes as base64; repeat for more)\n"
            "  --output-file NAME read the file NAME back after the run and write it here,\n"
            "                     in the current directory (repeat for more)\n"
            "  --compile-timeout SECONDS  a compiled language's compile time limit\n"
            "  --cpu-time-ms N    CPU time of the program's whole process tree\n"
            "  --memory BYTES     memory of the whole process tree (suffix K, M or G: KiB...)\n"
            "  --max-processes N  processes and threads alive at once\n"
            "  --output-max BYTES bytes kept per stream of output\n"
            "  --file-size-max BYTES  the largest file the program may write\n"
            "\n"
            "The program's stdout and stderr are written byte for byte to opctl's, in the\n"
            "order the guest read them (one file for both shows them as a terminal would).\n"
            "\n"
            "Exit status of run:\n"
            "  N        the program's exit code N\n"
            "  124      the program ran past its time limit (as timeout(1) does)\n"
            "  128+S    the program was killed by signal S\n"
            "  1        a compiled language's program did not compile (the compiler's\n"
            "           output is on stderr); --json tells this apart from exit code 1\n"
            "  2        opd refused or failed the request (\"opctl: CODE: MESSAGE\" on\n"
            "           stderr), or opctl could not do its part (usage, connection); a\n"
            "           program may exit 2 itself: --json tells the cases apart\n"
            "ping, status and metrics exit 0 on success and 2 on any failure; ping also\n"
            "exits 2 when opd answers but serves nothing (TCG without allow_tcg).\n",
            OPCTL_WAIT_MS, OPCTL_RUN_MARGIN_MS);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
        unsigned long long v;
        char *end;

        if (!*s || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

struct unit {
        char name;
        uint64_t scale;
};

/* Digits, optionally followed by one of units' names (the number times its scale), at most
 * max in all. */
static int parse_scaled(const char *s, const struct unit *units, size_t n_units, uint64_t max,
                        uint64_t *ret)
{
        unsigned long long v;
        uint64_t scale = 1;
        char *end;

        if (!*s || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s)
                return -EINVAL;
        for (size_t i = 0; *end && i < n_units; i++)
                if (*end == units[i].name) {
                        scale = units[i].scale;
                        end++;
                        break;
                }
        if (*end || v > max / scale)
                return -EINVAL;
        *ret = (uint64_t)v * scale;
        return 0;
}

/* A byte count: digits, optionally followed by K, M or G (KiB, MiB, GiB). */
static int parse_bytes(const char *s, uint64_t *ret)
{
        static const struct unit units[] = {{'K', UINT64_C(1) << 10}, {'k', UINT64_C(1) << 10},
                                            {'M', UINT64_C(1) << 20}, {'m', UINT64_C(1) << 20},
                                            {'G', UINT64_C(1) << 30}, {'g', UINT64_C(1) << 30}};

        return parse_scaled(s, units, ELEMENTSOF(units), UINT64_C(1) << 50, ret);
}

/* A duration in whole seconds: digits, optionally followed by s, m, h or d; 1 s to 10 years. */
static int parse_duration(const char *s, uint64_t *ret)
{
        static const struct unit units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
        int r = parse_scaled(s, units, ELEMENTSOF(units), UINT64_C(315576000), ret);

        return r < 0 || *ret == 0 ? -EINVAL : 0;
}

static int parse_seconds(const char *s, double *ret)
{
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        /* also refuses NaN and infinities; the top is what timeout_ms (a uint32) can carry */
        if (!*s || errno || *end || !(v > 0) || v > 4294967.295)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* ---- main ---- */

enum {
        ARG_SOCKET = 0x100,
        ARG_JSON,
        ARG_TIMEOUT_MS,
        ARG_TIMINGS,
        ARG_STDIN,
        ARG_TIMEOUT,
        ARG_MODE,
        ARG_VERSION,
        ARG_REMOTE,
        ARG_CONFIG,
        ARG_CACHE_DIR,
        ARG_S3_BUCKET,
        ARG_S3_REGION,
        ARG_S3_ENDPOINT,
        ARG_S3_PREFIX,
        ARG_STREAM,
        ARG_NO_STREAM,
        ARG_PLAIN,
        ARG_PART_SIZE,
        ARG_MULTIPART_THRESHOLD,
        ARG_FILE_IN,
        ARG_OUTPUT_FILE,
        ARG_COMPILE_TIMEOUT,
        ARG_CPU_TIME_MS,
        ARG_MEMORY,
        ARG_MAX_PROCESSES,
        ARG_OUTPUT_MAX,
        ARG_FILE_SIZE_MAX,
        ARG_SIGN_KEY,
        ARG_SERIAL,
        ARG_VALID_FOR,
        ARG_OUT,
        ARG_IDLE_TIMEOUT,
        ARG_LIFETIME,
        ARG_REPL,
        ARG_PHASE,
        ARG_CASE,
};

/* The long name of a run option that takes a number, for messages. */
static const char *number_flag(int c)
{
        switch (c) {
        case ARG_CPU_TIME_MS:
                return "--cpu-time-ms";
        case ARG_MAX_PROCESSES:
                return "--max-processes";
        case ARG_MEMORY:
                return "--memory";
        case ARG_OUTPUT_MAX:
                return "--output-max";
        default:
                return "--file-size-max";
        }
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"socket", required_argument, NULL, ARG_SOCKET},
            {"json", no_argument, NULL, ARG_JSON},
            {"timeout-ms", required_argument, NULL, ARG_TIMEOUT_MS},
            {"timings", no_argument, NULL, ARG_TIMINGS},
            {"lang", required_argument, NULL, 'l'},
            {"code", required_argument, NULL, 'c'},
            {"file", required_argument, NULL, 'f'},
            {"stdin", required_argument, NULL, ARG_STDIN},
            {"timeout", required_argument, NULL, ARG_TIMEOUT},
            {"mode", required_argument, NULL, ARG_MODE},
            {"stream", no_argument, NULL, ARG_STREAM},
            {"no-stream", no_argument, NULL, ARG_NO_STREAM},
            {"arg", required_argument, NULL, 'a'},
            {"env", required_argument, NULL, 'e'},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, ARG_VERSION},
            {"remote", no_argument, NULL, ARG_REMOTE},
            {"config", required_argument, NULL, ARG_CONFIG},
            {"cache-dir", required_argument, NULL, ARG_CACHE_DIR},
            {"s3-bucket", required_argument, NULL, ARG_S3_BUCKET},
            {"s3-region", required_argument, NULL, ARG_S3_REGION},
            {"s3-endpoint", required_argument, NULL, ARG_S3_ENDPOINT},
            {"s3-prefix", required_argument, NULL, ARG_S3_PREFIX},
            {"plain", no_argument, NULL, ARG_PLAIN},
            {"part-size", required_argument, NULL, ARG_PART_SIZE},
            {"multipart-threshold", required_argument, NULL, ARG_MULTIPART_THRESHOLD},
            {"interactive", no_argument, NULL, 'i'},
            {"file-in", required_argument, NULL, ARG_FILE_IN},
            {"output-file", required_argument, NULL, ARG_OUTPUT_FILE},
            {"compile-timeout", required_argument, NULL, ARG_COMPILE_TIMEOUT},
            {"cpu-time-ms", required_argument, NULL, ARG_CPU_TIME_MS},
            {"memory", required_argument, NULL, ARG_MEMORY},
            {"max-processes", required_argument, NULL, ARG_MAX_PROCESSES},
            {"output-max", required_argument, NULL, ARG_OUTPUT_MAX},
            {"file-size-max", required_argument, NULL, ARG_FILE_SIZE_MAX},
            {"sign-key", required_argument, NULL, ARG_SIGN_KEY},
            {"serial", required_argument, NULL, ARG_SERIAL},
            {"valid-for", required_argument, NULL, ARG_VALID_FOR},
            {"out", required_argument, NULL, ARG_OUT},
            {"idle-timeout", required_argument, NULL, ARG_IDLE_TIMEOUT},
            {"lifetime", required_argument, NULL, ARG_LIFETIME},
            {"repl", no_argument, NULL, ARG_REPL},
            {"phase", required_argument, NULL, ARG_PHASE},
            {"case", required_argument, NULL, ARG_CASE},
            {0},
        };
        _cleanup_free_ const char **args = calloc((size_t)argc + 1, sizeof(char *));
        _cleanup_free_ const char **env = calloc((size_t)argc + 1, sizeof(char *));
        _cleanup_free_ const char **files_in = calloc((size_t)argc + 1, sizeof(char *));
        _cleanup_free_ const char **files_out = calloc((size_t)argc + 1, sizeof(char *));
        _cleanup_free_ const char **cases = calloc((size_t)argc + 1, sizeof(char *));
        struct opts o = {.args = args,
                         .env = env,
                         .files_in = files_in,
                         .files_out = files_out,
                         .cases = cases,
                         .stream = -1};
        const char *cmd, *stdin_dash = NULL;
        int c;

        if (!args || !env || !files_in || !files_out || !cases)
                return fail("out of memory");
        o.socket = getenv("OPD_SOCKET");
        if (!o.socket || !*o.socket)
                o.socket = OPCTL_SOCKET_DEFAULT;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hil:c:f:a:e:", longopts, NULL)) != -1) {
                switch (c) {
                case ARG_SOCKET:
                        o.socket = optarg;
                        break;
                case ARG_JSON:
                        o.json = true;
                        break;
                case ARG_TIMEOUT_MS:
                        if (parse_u64(optarg, 1, UINT64_C(1) << 40, &o.wait_ms) < 0)
                                return fail("--timeout-ms wants a whole number of ms > 0, not "
                                            "\"%s\"",
                                            optarg);
                        break;
                case ARG_TIMINGS:
                        o.timings = true;
                        o.run_only = o.run_only ? o.run_only : "--timings";
                        break;
                case 'l':
                        o.lang = optarg;
                        o.run_only = o.run_only ? o.run_only : "--lang";
                        break;
                case 'c':
                case 'f':
                        if (o.code || o.file)
                                return fail("give the program once: --code, --file or -");
                        if (c == 'c')
                                o.code = optarg;
                        else
                                o.file = optarg;
                        o.run_only = o.run_only ? o.run_only : c == 'c' ? "--code" : "--file";
                        break;
                case ARG_STDIN:
                        o.stdin_str = optarg;
                        o.run_only = o.run_only ? o.run_only : "--stdin";
                        break;
                case ARG_TIMEOUT:
                        if (parse_seconds(optarg, &o.timeout_s) < 0)
                                return fail("--timeout wants seconds > 0 (e.g. 2.5), not \"%s\"",
                                            optarg);
                        o.run_only = o.run_only ? o.run_only : "--timeout";
                        break;
                case ARG_STREAM:
                case ARG_NO_STREAM:
                        o.stream = c == ARG_STREAM;
                        o.run_only = o.run_only        ? o.run_only
                                     : c == ARG_STREAM ? "--stream"
                                                       : "--no-stream";
                        break;
                case ARG_MODE:
                        o.mode = optarg;
                        o.run_only = o.run_only ? o.run_only : "--mode";
                        break;
                case 'a':
                        o.args[o.n_args++] = optarg;
                        o.run_only = o.run_only ? o.run_only : "--arg";
                        break;
                case 'e':
                        if (!strchr(optarg, '='))
                                return fail("--env wants NAME=VALUE, not \"%s\"", optarg);
                        o.env[o.n_env++] = optarg;
                        o.run_only = o.run_only ? o.run_only : "--env";
                        break;
                case 'i':
                        o.interactive = true;
                        o.run_only = o.run_only ? o.run_only : "--interactive";
                        break;
                case ARG_FILE_IN: {
                        const char *eq = strchr(optarg, '=');
                        if (!eq || eq == optarg || !eq[1])
                                return fail("--file-in wants NAME=PATH, not \"%s\"", optarg);
                        o.files_in[o.n_files_in++] = optarg;
                        o.run_only = o.run_only ? o.run_only : "--file-in";
                        break;
                }
                case ARG_OUTPUT_FILE:
                        if (!*optarg || strchr(optarg, '/'))
                                return fail("--output-file wants a plain file name, not \"%s\"",
                                            optarg);
                        o.files_out[o.n_files_out++] = optarg;
                        o.run_only = o.run_only ? o.run_only : "--output-file";
                        break;
                case ARG_COMPILE_TIMEOUT:
                        if (parse_seconds(optarg, &o.compile_timeout_s) < 0)
                                return fail("--compile-timeout wants seconds > 0, not \"%s\"",
                                            optarg);
                        o.run_only = o.run_only ? o.run_only : "--compile-timeout";
                        break;
                case ARG_CPU_TIME_MS:
                case ARG_MAX_PROCESSES:
                        if (parse_u64(optarg, 1, UINT32_MAX,
                                      c == ARG_CPU_TIME_MS ? &o.cpu_time_ms : &o.max_processes) < 0)
                                return fail("%s wants a whole number > 0, not \"%s\"",
                                            number_flag(c), optarg);
                        o.run_only = o.run_only ? o.run_only : number_flag(c);
                        break;
                case ARG_MEMORY:
                case ARG_OUTPUT_MAX:
                case ARG_FILE_SIZE_MAX: {
                        uint64_t *v = c == ARG_MEMORY       ? &o.memory_bytes
                                      : c == ARG_OUTPUT_MAX ? &o.output_max
                                                            : &o.file_size_max;
                        if (parse_bytes(optarg, v) < 0 || (c == ARG_MEMORY && *v == 0))
                                return fail("%s wants a byte count (e.g. 65536 or 64M), not "
                                            "\"%s\"",
                                            number_flag(c), optarg);
                        o.has_output_max |= c == ARG_OUTPUT_MAX;
                        o.has_file_size_max |= c == ARG_FILE_SIZE_MAX;
                        o.run_only = o.run_only ? o.run_only : number_flag(c);
                        break;
                }
                case 'h':
                        help(stdout);
                        return 0;
                case ARG_REMOTE:
                        o.remote = true;
                        break;
                case ARG_CONFIG:
                        o.config = optarg;
                        break;
                case ARG_CACHE_DIR:
                case ARG_S3_BUCKET:
                case ARG_S3_REGION:
                case ARG_S3_ENDPOINT:
                case ARG_S3_PREFIX: {
                        static const char *const keys[] = {"cache_dir", "s3.bucket", "s3.region",
                                                           "s3.endpoint", "s3.prefix"};
                        if (o.n_s3_keys == ELEMENTSOF(o.s3_keys))
                                return fail("too many S3 options");
                        o.s3_keys[o.n_s3_keys][0] = keys[c - ARG_CACHE_DIR];
                        o.s3_keys[o.n_s3_keys++][1] = optarg;
                        break;
                }
                case ARG_PLAIN:
                        o.plain = true;
                        break;
                case ARG_PART_SIZE:
                case ARG_MULTIPART_THRESHOLD:
                        if (parse_u64(optarg, S3_PART_MIN >> 20, S3_PART_MAX >> 20,
                                      c == ARG_PART_SIZE ? &o.part_mib : &o.threshold_mib) < 0)
                                return fail("%s wants MiB, %llu to %llu, not \"%s\"",
                                            c == ARG_PART_SIZE ? "--part-size"
                                                               : "--multipart-threshold",
                                            S3_PART_MIN >> 20, S3_PART_MAX >> 20, optarg);
                        break;
                case ARG_SIGN_KEY:
                        o.sign_key = optarg;
                        break;
                case ARG_SERIAL:
                        if (parse_u64(optarg, 1, S3_SERIAL_MAX, &o.serial) < 0)
                                return fail("--serial wants a whole number from 1 to %llu, "
                                            "not \"%s\"",
                                            (unsigned long long)S3_SERIAL_MAX, optarg);
                        break;
                case ARG_VALID_FOR:
                        if (parse_duration(optarg, &o.valid_for) < 0)
                                return fail("--valid-for wants a duration from 1s to 10 years, "
                                            "e.g. 7d, 12h or 3600, not \"%s\"",
                                            optarg);
                        break;
                case ARG_OUT:
                        o.out = optarg;
                        break;
                case ARG_IDLE_TIMEOUT:
                case ARG_LIFETIME:
                        if (parse_seconds(optarg, c == ARG_IDLE_TIMEOUT ? &o.idle_timeout_s
                                                                        : &o.lifetime_s) < 0)
                                return fail("%s wants seconds > 0, e.g. 300, not \"%s\"",
                                            c == ARG_IDLE_TIMEOUT ? "--idle-timeout" : "--lifetime",
                                            optarg);
                        break;
                case ARG_CASE:
                        o.cases[o.n_cases++] = optarg;
                        break;
                case ARG_REPL:
                        o.repl = true;
                        break;
                case ARG_PHASE:
                        if (strcmp(optarg, "all") != 0 && strcmp(optarg, "compile") != 0 &&
                            strcmp(optarg, "run") != 0)
                                return fail("--phase wants all, compile or run, not \"%s\"",
                                            optarg);
                        o.phase = optarg;
                        break;
                case ARG_VERSION:
                        printf("opctl %s (protocol %d)\n", OP_VERSION, OP_PROTO_VERSION);
                        return 0;
                case ':':
                        return fail("%s needs a value (see opctl --help)", argv[optind - 1]);
                default:
                        if (optopt)
                                return fail("unknown option -%c (see opctl --help)", optopt);
                        return fail("unknown option %s (see opctl --help)", argv[optind - 1]);
                }
        }

        if (optind >= argc) {
                help(stderr);
                return EXIT_FAIL;
        }
        cmd = argv[optind++];
        if (strcmp(cmd, "snapshot") == 0) {
                if (optind + 1 != argc)
                        return fail("snapshot takes one action: create, list, reload, verify, "
                                    "sync, push or keygen");
                if (o.run_only && strcmp(o.run_only, "--lang") != 0)
                        return fail("%s only goes with run", o.run_only);
                if (strcmp(argv[optind], "push") == 0 && !o.lang)
                        return fail("snapshot push needs --lang");
                if ((o.part_mib || o.threshold_mib) && !o.plain)
                        return fail("--part-size and --multipart-threshold go with push --plain");
                if (o.plain && strcmp(argv[optind], "push") != 0)
                        return fail("--plain only goes with snapshot push");
                if ((o.sign_key || o.serial || o.valid_for) &&
                    (strcmp(argv[optind], "push") != 0 || o.plain))
                        return fail("--sign-key, --serial and --valid-for go with snapshot push "
                                    "(chunked)");
                if ((o.serial || o.valid_for) && !o.sign_key)
                        return fail("--serial and --valid-for go with --sign-key");
                if (strcmp(argv[optind], "keygen") == 0)
                        return cmd_keygen(&o);
                if (o.out)
                        return fail("--out goes with snapshot keygen");
                if (strcmp(argv[optind], "push") == 0 ||
                    (o.remote && strcmp(argv[optind], "list") == 0))
                        return cmd_s3(&o, argv[optind]);
                return cmd_snapshot(&o, argv[optind]);
        }
        if (strcmp(cmd, "session") == 0) {
                const char *action = optind < argc ? argv[optind++] : NULL, *id = NULL;

                if (!action)
                        return fail("session takes an action: open, exec ID, list or close ID");
                if (optind < argc && strcmp(argv[optind], "-") != 0)
                        id = argv[optind++];
                if (optind < argc && strcmp(action, "exec") == 0 &&
                    strcmp(argv[optind], "-") == 0 && !o.code && !o.file)
                        o.file = argv[optind++];
                if (optind < argc)
                        return fail("unexpected argument \"%s\" (see opctl --help)", argv[optind]);
                if ((o.idle_timeout_s > 0 || o.lifetime_s > 0) && strcmp(action, "open") != 0)
                        return fail("--idle-timeout and --lifetime go with session open");
                if (o.repl && strcmp(action, "open") != 0)
                        return fail("--repl goes with session open");
                if (o.phase && strcmp(action, "exec") != 0)
                        return fail("--phase goes with session exec");
                return cmd_session(&o, action, id);
        }
        if (o.phase)
                return fail("--phase goes with session exec");
        if (o.idle_timeout_s > 0 || o.lifetime_s > 0)
                return fail("--idle-timeout and --lifetime go with session open");
        if (o.n_cases && strcmp(cmd, "cases") != 0)
                return fail("--case goes with cases");
        if (strcmp(cmd, "cases") == 0) {
                if (optind + 1 < argc)
                        return fail("cases takes at most one file of cases (\"-\": standard "
                                    "input)");
                if (o.stdin_str || o.interactive || o.mode || o.stream == 1)
                        return fail("cases: each case has its own input (--case, or the file); "
                                    "no --stdin, --interactive, --mode or --stream");
                return cmd_cases(&o, optind < argc ? argv[optind] : NULL);
        }
        if (o.repl)
                return fail("--repl goes with session open");
        if (strcmp(cmd, "batch") == 0) {
                if (optind + 1 != argc)
                        return fail("batch takes one file (\"-\": standard input)");
                if (o.code || o.file || o.stdin_str || o.interactive)
                        return fail("batch takes its programs from the file: no --code, --file, "
                                    "--stdin or --interactive");
                return cmd_batch(&o, argv[optind]);
        }
        for (; optind < argc; optind++) {
                if (strcmp(cmd, "run") == 0 && strcmp(argv[optind], "-") == 0 && !stdin_dash)
                        stdin_dash = argv[optind];
                else
                        return fail("unexpected argument \"%s\" (see opctl --help)", argv[optind]);
        }

        if (strcmp(cmd, "run") == 0) {
                if (stdin_dash) {
                        if (o.code || o.file)
                                return fail("give the program once: --code, --file or -");
                        o.file = stdin_dash;
                }
                return cmd_run(&o);
        }
        if (o.run_only)
                return fail("%s only goes with run", o.run_only);
        if (strcmp(cmd, "ping") == 0)
                return cmd_ping(&o);
        if (strcmp(cmd, "status") == 0)
                return cmd_status(&o);
        if (strcmp(cmd, "languages") == 0)
                return cmd_languages(&o);
        if (strcmp(cmd, "metrics") == 0)
                return cmd_metrics(&o);
        if (strcmp(cmd, "reload") == 0)
                return cmd_reload(&o);
        return fail(
            "unknown command \"%s\" (run, batch, cases, status, languages, ping, metrics, reload, "
            "snapshot, session; see "
            "opctl --help)",
            cmd);
}
