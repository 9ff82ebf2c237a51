/* config.c: the table of configuration keys, their types and bounds, the parser of
 * "key = value" files and the dump. Adding a key is one line in keys[]. */
#include "config.h"
#include "msg-session-fork.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "s3-config.h"
#include "util.h"

enum key_type { K_STR, K_U32, K_SIZE, K_MODE, K_ACCEL, K_BOOL, K_TRI };

struct key {
        const char *name;
        enum key_type type;
        size_t offset;
        uint64_t min, max;
};

#define STR(n, f)                                                                                  \
        {                                                                                          \
                n, K_STR, offsetof(struct op_config, f), 1, 4096                                   \
        }
#define STR0(n, f)                                                                                 \
        {                                                                                          \
                n, K_STR, offsetof(struct op_config, f), 0, 4096                                   \
        }
#define BOOL(n, f)                                                                                 \
        {                                                                                          \
                n, K_BOOL, offsetof(struct op_config, f), 0, 1                                     \
        }
#define U32(n, f, lo, hi)                                                                          \
        {                                                                                          \
                n, K_U32, offsetof(struct op_config, f), lo, hi                                    \
        }
#define LIM(n, f, lo, hi)                                                                          \
        {                                                                                          \
                n, K_SIZE, offsetof(struct op_config, limits.f), lo, hi                            \
        }
#define SZ(n, f, lo, hi)                                                                           \
        {                                                                                          \
                n, K_SIZE, offsetof(struct op_config, f), lo, hi                                   \
        }
#define LIMU(n, f, lo, hi)                                                                         \
        {                                                                                          \
                n, K_U32, offsetof(struct op_config, limits.f), lo, hi                             \
        }

static const struct key keys[] = {
    STR("socket", socket_path),
    {"socket_mode", K_MODE, offsetof(struct op_config, socket_mode), 0, 0777},
    STR0("access.group", access_group),
    STR0("access.admin_group", admin_group),
    STR("images_dir", images_dir),
    STR("languages", languages_file),
    STR0("languages.enabled", languages_enabled),
    STR("run_dir", run_dir),
    STR("cache_dir", cache_dir),
    STR("qemu", qemu_binary),
    STR("vmm", vmm),
    STR("firecracker.binary", fc.binary),
    BOOL("firecracker.track_dirty_pages", fc.track_dirty_pages),
    STR0("firecracker.jailer", fc.jailer),
    U32("firecracker.jailer.uid", fc.uid, 0, 4294967294u),
    U32("firecracker.jailer.gid", fc.gid, 0, 4294967294u),
    STR("firecracker.jailer.chroot_base", fc.chroot_base),
    U32("firecracker.jailer.memory_max_mb", fc.memory_max_mb, 0, 1048576),
    U32("firecracker.jailer.cpu_max_pct", fc.cpu_max_pct, 0, 6400),
    STR0("firecracker.jailer.netns", fc.netns),
    BOOL("jail", jail.enabled),
    STR("jail.user", jail.user),
    U32("jail.uid_min", jail.uid_min, 1, 4294967294u),
    U32("jail.uid_max", jail.uid_max, 1, 4294967294u),
    STR0("jail.helper", jail.helper),
    U32("jail.memory_extra_mb", jail.memory_extra_mb, 0, 65536),
    U32("jail.pids_max", jail.pids_max, 16, 1 << 22),
    U32("jail.cpu_weight", jail.cpu_weight, 1, 10000),
    {"accel", K_ACCEL, offsetof(struct op_config, accel), 0, 0},
    U32("accel_probe_timeout_ms", accel_probe_timeout_ms, 100, 600000),
    BOOL("allow_tcg", allow_tcg),
    U32("vm.memory_mb", vm_memory_mb, 64, 65536),
    U32("vm.vcpus", vm_vcpus, 1, 64),
    U32("max_vms", max_vms, 1, 4096),
    U32("pool.size", pool_size, 0, 1024),
    U32("ready_min_warm", ready_min_warm, 0, 1024),
    STR0("pool.sizes", pool_sizes),
    BOOL("pool.fallback_cold", pool_fallback_cold),
    {"pool.prime", K_TRI, offsetof(struct op_config, pool_prime), 0, 0},
    U32("max_restores", max_restores, 0, 256),
    U32("pool.max_size", pool_max_size, 0, 1024),
    U32("restore_timeout_ms", restore_timeout_ms, 100, 600000),
    U32("snapshot_check_ms", snapshot_check_ms, 0, 86400000),
    U32("snapshot_keep", snapshot_keep, 1, 1000),
    U32("max_clients", max_clients, 1, 65536),
    U32("max_queued", max_queued, 0, 1000000),
    U32("max_inflight", max_inflight, 1, 65536),
    U32("max_clients_per_uid", max_clients_per_uid, 0, 65536),
    U32("max_queued_per_uid", max_queued_per_uid, 0, 1000000),
    U32("max_vms_per_uid", max_vms_per_uid, 0, 4096),
    SZ("client.output_high", client_output_high, 4096, (size_t)1 << 32),
    SZ("client.output_max", client_output_max, 0, (size_t)1 << 36),
    U32("http.max_connections", http_max_conns, 1, 65536),
    U32("http.max_connections_per_peer", http_max_conns_per_peer, 1, 65536),
    U32("http.max_inflight_per_peer", http_max_inflight_per_peer, 0, 65536),
    U32("http.request_timeout_ms", http_request_timeout_ms, 100, 3600000),
    U32("boot_timeout_ms", boot_timeout_ms, 100, 600000),
    U32("queue_timeout_ms", queue_timeout_ms, 0, 600000),
    U32("agent_grace_ms", agent_grace_ms, 0, 600000),
    U32("read_timeout_ms", read_timeout_ms, 100, 3600000),
    U32("idle_timeout_ms", idle_timeout_ms, 0, 86400000),
    LIM("limit.frame_max", frame_max, 1024, OP_FRAME_MAX_CEILING),
    LIM("limit.code_max", code_max, 1, OP_FRAME_MAX_CEILING),
    LIM("limit.stdin_max", stdin_max, 0, OP_FRAME_MAX_CEILING),
    LIM("limit.args_max", args_max, 0, 4096),
    LIM("limit.arg_len_max", arg_len_max, 1, 1 << 20),
    LIM("limit.env_max", env_max, 0, 4096),
    LIM("limit.env_len_max", env_len_max, 2, 1 << 20),
    LIM("limit.files_max", files_max, 0, 4096),
    LIM("limit.file_size_max", file_size_max, 0, OP_FRAME_MAX_CEILING),
    /* The agent enforces at most 10 minutes; answers must fit its frames. */
    LIMU("limit.timeout_ms_default", timeout_ms_default, 1, 600000),
    LIMU("limit.timeout_ms_max", timeout_ms_max, 1, 600000),
    LIM("limit.output_max", output_max, 0, 16 << 20),
    LIMU("limit.compile_timeout_ms_max", compile_timeout_ms_max, 1, 600000),
    U32("pool.memory_budget_mb", pool_memory_budget_mb, 0, 16777216),
    LIMU("limit.cpu_time_ms_max", cpu_time_ms_max, 1, 600000),
    LIM("limit.memory_max", memory_max, 1 << 20, (size_t)1 << 40),
    LIMU("limit.processes_max", processes_max, 1, 1 << 22),
    LIM("limit.written_file_max", written_file_max, 0, (size_t)1 << 40),
    LIM("limit.output_files_max", output_files_max, 0, 1024),
    LIM("limit.output_file_max", output_file_max, 0, 16 << 20),
    LIM("limit.batch_max", batch_max, 1, 1024),
    LIM("limit.cases_max", cases_max, 1, 1024),
    LIM("limit.stdin_frame_max", stdin_frame_max, 1, 16 << 20),
    STR0("metrics.listen", metrics_listen),
    STR0("s3.bucket", s3_bucket),
    STR("s3.region", s3_region),
    STR0("s3.endpoint", s3_endpoint),
    STR0("s3.prefix", s3_prefix),
    BOOL("s3.path_style", s3_path_style),
    STR0("s3.locations", s3_locations),
    U32("s3.sync_minutes", s3_sync_minutes, 0, 10080),
    U32("s3.parallel", s3_parallel, 1, 64),
    U32("s3.retries", s3_retries, 0, 20),
    U32("s3.workers", s3_workers, 0, 64),
    U32("s3.min_rate_kib", s3_min_rate_kib, 1, 1048576),
    STR0("s3.trusted_keys", s3_trusted_keys),
    STR0("s3.gateway", s3_gateway),
    BOOL("s3.allow_unsigned", s3_allow_unsigned),
    BOOL("s3.require_expiry", s3_require_expiry),
    U32("s3.reserve_mb", s3_reserve_mb, 0, 16777216),
    U32("s3.cache_max_mb", s3_cache_max_mb, 0, 2147483647),
    BOOL("snapshot.preload", snapshot_preload),
    BOOL("snapshot.create_missing", snapshot_create_missing),
    STR0("piston.listen", piston_listen),
    U32("session.max", session.max, 0, 4096),
    U32("session.max_per_uid", session.max_per_uid, 0, 4096),
    U32("session.idle_timeout_ms", session.bounds.idle_timeout_ms_default, 1, 604800000),
    U32("session.max_idle_timeout_ms", session.bounds.idle_timeout_ms_max, 1, 604800000),
    U32("session.lifetime_ms", session.bounds.lifetime_ms_default, 1, 2592000000u),
    U32("session.max_lifetime_ms", session.bounds.lifetime_ms_max, 1, 2592000000u),
    U32("session.fork_max", session.fork_max, 1, OP_SESSION_FORK_MAX_LIMIT),
    U32("session.paused_max", session.paused_max, 0, 4096),
    U32("session.paused_max_per_uid", session.paused_max_per_uid, 0, 4096),
    U32("session.paused_disk_mb", session.paused_disk_mb, 0, 16777216),
    U32("session.paused_disk_mb_per_uid", session.paused_disk_mb_per_uid, 0, 16777216),
};

static const char *const tri_names[] = {
    [OP_AUTO] = "auto",
    [OP_YES] = "yes",
    [OP_NO] = "no",
};

static const char *const accel_names[] = {
    [OP_ACCEL_AUTO] = "auto",
    [OP_ACCEL_KVM] = "kvm",
    [OP_ACCEL_TCG] = "tcg",
};

const char *op_accel_name(enum op_accel a)
{
        return (unsigned)a < ELEMENTSOF(accel_names) ? accel_names[a] : "?";
}

static int set_str(char **p, const char *v)
{
        char *s = strdup(v);

        if (!s)
                return -ENOMEM;
        free(*p);
        *p = s;
        return 0;
}

int op_config_init(struct op_config *c)
{
        *c = (struct op_config){
            .socket_mode = 0660,
            .accel = OP_ACCEL_AUTO,
            .accel_probe_timeout_ms = 15000,
            .vm_memory_mb = 512,
            .vm_vcpus = 1,
            .max_vms = 8,
            .pool_size = 2,
            .pool_fallback_cold = 1,
            .pool_max_size = 8,
            .restore_timeout_ms = 30000,
            .snapshot_check_ms = 5000,
            .snapshot_keep = 2,
            .max_clients = 256,
            .max_queued = 256,
            .max_inflight = 64,
            .max_clients_per_uid = 64,
            .max_queued_per_uid = 64,
            .max_vms_per_uid = 0,
            .client_output_high = 1 << 20,
            .client_output_max = 256 << 20,
            .http_max_conns = 256,
            .http_max_conns_per_peer = 64,
            .http_max_inflight_per_peer = 8,
            .http_request_timeout_ms = 30000,
            .boot_timeout_ms = 60000,
            .queue_timeout_ms = 30000,
            .agent_grace_ms = 5000,
            .read_timeout_ms = 10000,
            .idle_timeout_ms = 300000,
            .limits = OP_LIMITS_DEFAULT,
            .s3_sync_minutes = 15,
            .s3_parallel = 8,
            .s3_retries = 5,
            .s3_workers = 4,
            .s3_min_rate_kib = S3_MIN_RATE_KIB_DEFAULT,
            .s3_reserve_mb = 1024,
            .snapshot_preload = 1,
            /* systemd's UIDS-GIDS.md leaves 1879048192-2147483647 unused */
            .jail = {.enabled = 1,
                     .uid_min = 1879048192,
                     .uid_max = 1879048192 + 1023,
                     .memory_extra_mb = 512,
                     .pids_max = 256,
                     .cpu_weight = 100},
            .snapshot_create_missing = 1,
            .session = {.max = 4,
                        .max_per_uid = 2,
                        .bounds = OP_SESSION_BOUNDS_DEFAULT,
                        .fork_max = OP_SESSION_FORK_MAX_DEFAULT,
                        .paused_max = 16,
                        .paused_max_per_uid = 4,
                        .paused_disk_mb = 16384,
                        .paused_disk_mb_per_uid = 4096},
        };
        if (set_str(&c->socket_path, "/run/opd/opd.sock") < 0 ||
            set_str(&c->images_dir, "/var/lib/opd/images") < 0 ||
            set_str(&c->languages_file, "/usr/share/opd/languages.json") < 0 ||
            set_str(&c->run_dir, "/run/opd/vm") < 0 ||
            set_str(&c->cache_dir, "/var/lib/opd/cache") < 0 || set_str(&c->pool_sizes, "") < 0 ||
            set_str(&c->access_group, "") < 0 || set_str(&c->admin_group, "") < 0 ||
            set_str(&c->languages_enabled, "") < 0 ||
            set_str(&c->qemu_binary, "qemu-system-x86_64") < 0 || set_str(&c->vmm, "qemu") < 0 ||
            set_str(&c->fc.binary, "firecracker") < 0 || set_str(&c->fc.jailer, "") < 0 ||
            set_str(&c->fc.chroot_base, "/srv/jailer") < 0 || set_str(&c->fc.netns, "") < 0 ||
            set_str(&c->metrics_listen, "") < 0 || set_str(&c->s3_bucket, "") < 0 ||
            set_str(&c->s3_region, "us-east-1") < 0 || set_str(&c->s3_endpoint, "") < 0 ||
            set_str(&c->s3_prefix, "snapshots/") < 0 || set_str(&c->s3_locations, "") < 0 ||
            set_str(&c->s3_trusted_keys, "") < 0 || set_str(&c->s3_gateway, "") < 0 ||
            set_str(&c->piston_listen, "") < 0 || set_str(&c->jail.user, "opd") < 0 ||
            set_str(&c->jail.helper, "") < 0) {
                op_config_free(c);
                return -ENOMEM;
        }
        return 0;
}

void op_config_free(struct op_config *c)
{
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (keys[i].type == K_STR) {
                        char **p = (char **)((char *)c + keys[i].offset);
                        free(*p);
                        *p = NULL;
                }
}

static int parse_uint(const char *v, int base, uint64_t *ret)
{
        char *end;
        unsigned long long x;

        if (*v == '-' || *v == '+' || *v == 0)
                return -EINVAL;
        errno = 0;
        x = strtoull(v, &end, base);
        if (errno || *end)
                return -EINVAL;
        *ret = x;
        return 0;
}

int op_config_set(struct op_config *c, const char *key, const char *value, char *errbuf,
                  size_t errlen)
{
        const struct key *k = NULL;
        void *p;
        uint64_t x;

        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (strcmp(keys[i].name, key) == 0)
                        k = &keys[i];
        if (!k)
                return op_errf(errbuf, errlen, -EINVAL, "unknown key \"%s\"", key);
        p = (char *)c + k->offset;
        switch (k->type) {
        case K_STR:
                if (strlen(value) < k->min || strlen(value) > k->max)
                        return op_errf(errbuf, errlen, -EINVAL, "%s: must be %llu-%llu bytes", key,
                                       (unsigned long long)k->min, (unsigned long long)k->max);
                return set_str(p, value);
        case K_TRI:
                for (size_t i = 0; i < ELEMENTSOF(tri_names); i++)
                        if (strcmp(value, tri_names[i]) == 0) {
                                *(enum op_tristate *)p = (enum op_tristate)i;
                                return 0;
                        }
                return op_errf(errbuf, errlen, -EINVAL, "%s: must be auto, yes or no", key);
        case K_BOOL:
                if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1"))
                        *(uint32_t *)p = 1;
                else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0"))
                        *(uint32_t *)p = 0;
                else
                        return op_errf(errbuf, errlen, -EINVAL, "%s: must be yes or no", key);
                return 0;
        case K_ACCEL:
                for (size_t i = 0; i < ELEMENTSOF(accel_names); i++)
                        if (strcmp(value, accel_names[i]) == 0) {
                                *(enum op_accel *)p = (enum op_accel)i;
                                return 0;
                        }
                return op_errf(errbuf, errlen, -EINVAL, "%s: must be auto, kvm or tcg, not \"%s\"",
                               key, value);
        case K_MODE:
                if (parse_uint(value, 8, &x) < 0 || x > k->max)
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "%s: must be an octal mode such as 0660", key);
                *(uint32_t *)p = (uint32_t)x;
                return 0;
        case K_U32:
        case K_SIZE:
                if (parse_uint(value, 10, &x) < 0 || x < k->min || x > k->max)
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "%s: must be an integer from %llu to %llu", key,
                                       (unsigned long long)k->min, (unsigned long long)k->max);
                if (k->type == K_U32)
                        *(uint32_t *)p = (uint32_t)x;
                else
                        *(size_t *)p = (size_t)x;
                return 0;
        }
        return -EINVAL;
}

int op_config_parse(struct op_config *c, const char *text, const char *origin, char *errbuf,
                    size_t errlen)
{
        _cleanup_free_ char *copy = strdup(text);
        unsigned lineno = 0;
        char why[256];
        char *next;

        if (!copy)
                return -ENOMEM;
        for (char *line = copy; line; line = next) {
                char *eq, *key, *val;
                int r;

                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                lineno++;
                line = op_strip(line);
                if (*line == 0 || *line == '#')
                        continue;
                eq = strchr(line, '=');
                if (!eq)
                        return op_errf(errbuf, errlen, -EINVAL, "%s:%u: expected \"key = value\"",
                                       origin, lineno);
                *eq = 0;
                key = op_strip(line);
                val = op_strip(eq + 1);
                r = op_config_set(c, key, val, why, sizeof(why));
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return op_errf(errbuf, errlen, -EINVAL, "%s:%u: %s", origin, lineno, why);
        }
        return 0;
}

int op_config_check(const struct op_config *c, char *errbuf, size_t errlen)
{
        uint32_t n;
        const char *path, *host;
        uint16_t port;

        if (c->limits.timeout_ms_default > c->limits.timeout_ms_max)
                return op_errf(errbuf, errlen, -EINVAL,
                               "limit.timeout_ms_default is over limit.timeout_ms_max");
        if (c->session.bounds.idle_timeout_ms_default > c->session.bounds.idle_timeout_ms_max)
                return op_errf(errbuf, errlen, -EINVAL,
                               "session.idle_timeout_ms is over session.max_idle_timeout_ms");
        if (c->session.bounds.lifetime_ms_default > c->session.bounds.lifetime_ms_max)
                return op_errf(errbuf, errlen, -EINVAL,
                               "session.lifetime_ms is over session.max_lifetime_ms");
        if (c->client_output_max && c->client_output_max < 2 * c->client_output_high)
                return op_errf(errbuf, errlen, -EINVAL,
                               "client.output_max: 0 or at least twice client.output_high");
        if (strcmp(c->vmm, "qemu") != 0 && strcmp(c->vmm, "firecracker") != 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "vmm: expected \"qemu\" or \"firecracker\", not \"%.100s\"", c->vmm);
        if (strcmp(c->vmm, "firecracker") == 0 &&
            (c->vm_vcpus > 32 || (c->vm_vcpus > 1 && c->vm_vcpus % 2)))
                return op_errf(errbuf, errlen, -EINVAL,
                               "vm.vcpus: Firecracker takes 1 or an even number up to 32, not %u",
                               c->vm_vcpus);
        if (c->fc.jailer[0] && c->fc.uid == 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "firecracker.jailer.uid: the jailed VMM must not run as root");
        if (c->jail.uid_max < c->jail.uid_min || c->jail.uid_max - c->jail.uid_min >= 65536)
                return op_errf(errbuf, errlen, -EINVAL,
                               "jail.uid_min, jail.uid_max: a range of 1 to 65536 uids");
        if (c->jail.enabled && c->jail.uid_max - c->jail.uid_min + 1 < c->max_vms)
                return op_errf(errbuf, errlen, -EINVAL,
                               "jail.uid_min, jail.uid_max: fewer uids than max_vms (%u)",
                               c->max_vms);
        if (op_config_pool_size(c, "", &n) < 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "pool.sizes: expected \"lang=N,lang=N\" (N <= 1024)");
        if (c->metrics_listen[0] &&
            op_config_local_listen(c->metrics_listen, &path, &host, &port) < 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "metrics.listen: expected \"unix:/PATH\", \"127.0.0.1:PORT\" or "
                               "\"[::1]:PORT\" (loopback only), not \"%.200s\"",
                               c->metrics_listen);
        if (c->piston_listen[0] &&
            op_config_local_listen(c->piston_listen, &path, &host, &port) < 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "piston.listen: expected \"unix:/PATH\", \"127.0.0.1:PORT\" or "
                               "\"[::1]:PORT\" (loopback only), not \"%.200s\"",
                               c->piston_listen);
        if (c->piston_listen[0] && !path && c->access_group[0])
                return op_errf(errbuf, errlen, -EINVAL,
                               "piston.listen: a TCP port cannot check access.group; use "
                               "\"unix:/PATH\" when access.group is set");
        return s3_config_check(c, errbuf, errlen);
}

int op_config_local_listen(const char *s, const char **ret_path, const char **ret_host,
                           uint16_t *ret_port)
{
        static const char *const hosts[][2] = {{"127.0.0.1:", "127.0.0.1"}, {"[::1]:", "::1"}};
        uint64_t x;

        *ret_path = *ret_host = NULL;
        *ret_port = 0;
        if (strncmp(s, "unix:", 5) == 0) {
                /* sun_path holds 108 bytes with the NUL */
                if (s[5] != '/' || strlen(s + 5) > 107)
                        return -EINVAL;
                *ret_path = s + 5;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(hosts); i++) {
                size_t n = strlen(hosts[i][0]);

                if (strncmp(s, hosts[i][0], n) != 0)
                        continue;
                if (parse_uint(s + n, 10, &x) < 0 || x > 65535)
                        return -EINVAL;
                *ret_host = hosts[i][1];
                *ret_port = (uint16_t)x;
                return 0;
        }
        return -EINVAL;
}

int op_config_load(struct op_config *c, const char *path, char *errbuf, size_t errlen)
{
        _cleanup_free_ char *text = NULL;
        int r;

        r = op_read_file(path, 1024 * 1024, &text, NULL);
        if (r < 0) {
                op_errf(errbuf, errlen, -EINVAL, "%s: %s", path, strerror(-r));
                return r;
        }
        return op_config_parse(c, text, path, errbuf, errlen);
}

void op_config_dump(const struct op_config *c, FILE *f)
{
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const struct key *k = &keys[i];
                const void *p = (const char *)c + k->offset;

                switch (k->type) {
                case K_STR:
                        fprintf(f, "%s = %s\n", k->name, *(char *const *)p);
                        break;
                case K_ACCEL:
                        fprintf(f, "%s = %s\n", k->name, op_accel_name(*(const enum op_accel *)p));
                        break;
                case K_MODE:
                        fprintf(f, "%s = %04o\n", k->name, *(const uint32_t *)p);
                        break;
                case K_U32:
                        fprintf(f, "%s = %u\n", k->name, *(const uint32_t *)p);
                        break;
                case K_BOOL:
                        fprintf(f, "%s = %s\n", k->name, *(const uint32_t *)p ? "yes" : "no");
                        break;
                case K_TRI:
                        fprintf(f, "%s = %s\n", k->name, tri_names[*(const enum op_tristate *)p]);
                        break;
                case K_SIZE:
                        fprintf(f, "%s = %zu\n", k->name, *(const size_t *)p);
                        break;
                }
        }
}

int op_config_pool_size(const struct op_config *c, const char *lang, uint32_t *ret)
{
        int r = op_config_pool_size_listed(c, lang, ret);

        if (r == 0)
                *ret = c->pool_size;
        return r < 0 ? r : 0;
}

int op_config_pool_size_listed(const struct op_config *c, const char *lang, uint32_t *ret)
{
        size_t n = strlen(lang);
        const char *p = c->pool_sizes;
        int listed = 0;

        *ret = 0;
        while (p && *p) {
                const char *comma = strchr(p, ','), *eq = strchr(p, '=');
                const char *end = comma ? comma : p + strlen(p);
                char num[16];
                uint64_t x;

                if (!eq || eq > end || (size_t)(end - eq - 1) >= sizeof(num))
                        return -EINVAL;
                memcpy(num, eq + 1, (size_t)(end - eq - 1));
                num[end - eq - 1] = 0;
                if (parse_uint(num, 10, &x) < 0 || x > 1024)
                        return -EINVAL;
                if ((size_t)(eq - p) == n && strncmp(p, lang, n) == 0) {
                        *ret = (uint32_t)x;
                        listed = 1;
                }
                p = comma ? comma + 1 : NULL;
        }
        return listed;
}
