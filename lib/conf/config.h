/* config.h: opd's configuration: defaults, the "key = value" file format, validation, and the
 * canonical dump printed by `opd --check-config`. */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "msg-session.h"
#include "msg.h"

enum op_accel {
        OP_ACCEL_AUTO,
        OP_ACCEL_KVM,
        OP_ACCEL_TCG,
};

const char *op_accel_name(enum op_accel a);

enum op_tristate {
        OP_AUTO,
        OP_YES,
        OP_NO,
};

struct op_config {
        char *socket_path;
        uint32_t socket_mode;
        char *access_group; /* members may exec, status, ping; "": whoever can connect */
        char *admin_group;  /* members may also manage snapshots; "": root only */
        char *images_dir;
        char *languages_file;
        char *languages_enabled; /* "python,bash": serve only these; "": all */
        char *run_dir;           /* per-VM working directories */
        char *cache_dir;         /* snapshots: <cache_dir>/<lang>/<version>/ */
        char *qemu_binary;
        char *vmm; /* "qemu" or "firecracker" */
        struct op_fc_config {
                char *binary;
                uint32_t track_dirty_pages; /* Diff snapshots */
                char *jailer;               /* "": run firecracker directly */
                uint32_t uid, gid;          /* the jailed process's */
                char *chroot_base;
                uint32_t memory_max_mb; /* cgroup v2 memory.max per VM; 0: no limit */
                uint32_t cpu_max_pct;   /* cgroup v2 cpu.max per VM, % of one CPU; 0: no limit */
                char *netns;            /* network namespace path when networking is on; "": none */
        } fc;
        /* Every VMM in a jail of its own, started by the privileged helper opd-jail
         * (docs/security.md). */
        struct op_jail_config {
                uint32_t enabled;          /* no: VMMs are opd's children, unconfined */
                char *user;                /* opd drops to this user after starting opd-jail */
                uint32_t uid_min, uid_max; /* one uid (and gid) per live VM from this range */
                char *helper;              /* opd-jail's path; "": next to opd, else libexec */
                uint32_t memory_extra_mb;  /* memory.max = guest RAM + this */
                uint32_t pids_max;         /* pids.max per VM */
                uint32_t cpu_weight;       /* cpu.weight per VM */
        } jail;
        enum op_accel accel;
        uint32_t accel_probe_timeout_ms;
        uint32_t vm_memory_mb;
        uint32_t vm_vcpus;
        uint32_t max_vms;            /* VMM processes alive at once */
        uint32_t pool_size;          /* paused VMs kept per language with a snapshot */
        uint32_t ready_min_warm;     /* READY=1 waits for this many paused VMs per serving pool */
        char *pool_sizes;            /* per-language overrides: "python=4,bash=1" */
        uint32_t pool_fallback_cold; /* empty pool: boot cold instead of waiting */
        uint32_t allow_tcg; /* serve under TCG (software emulation: not an isolation boundary) */
        enum op_tristate pool_prime; /* run a warm-up program in each clone; auto: under TCG */
        uint32_t max_restores;       /* restores running at once, all pools; 0: the CPU count */
        uint32_t pool_max_size;      /* most paused VMs a language's pool grows to under demand */
        /* guest RAM of all pools' paused VMs together; 0: no bound */
        uint32_t pool_memory_budget_mb;
        uint32_t restore_timeout_ms;
        uint32_t snapshot_check_ms; /* how often "current" is looked at; 0: never */
        uint32_t snapshot_keep;     /* versions kept per language besides the serving one */
        uint32_t max_clients;       /* connections at once */
        uint32_t max_queued;        /* requests waiting for a VM, all clients together */
        uint32_t max_inflight;      /* requests in flight on one connection */
        /* Per uid (root and opd's own uid exempt): connections, requests waiting, VMs in use;
         * 0: no per-uid bound. */
        uint32_t max_clients_per_uid;
        uint32_t max_queued_per_uid;
        uint32_t max_vms_per_uid;
        size_t client_output_high;        /* unread answers above this: stop reading that client */
        size_t client_output_max;         /* unread answers above this: drop them, close; 0: none */
        uint32_t http_max_conns;          /* connections per HTTP listener */
        uint32_t http_max_conns_per_peer; /* per uid on a unix: listener, per address on TCP */
        /* Piston door requests in flight of one uid (a unix: listener; root, opd's user and
         * admins exempt); 0: no per-uid bound. */
        uint32_t http_max_inflight_per_peer;
        uint32_t http_request_timeout_ms; /* absolute: a request's headers and body arrive whole */
        uint32_t boot_timeout_ms;
        uint32_t queue_timeout_ms; /* a request waiting for a VM gives up after this */
        uint32_t agent_grace_ms;   /* host deadline = timeout_ms + this */
        uint32_t read_timeout_ms;  /* a started frame must complete within this */
        uint32_t idle_timeout_ms; /* a connection with nothing in flight that sends nothing for this
                                     long is closed; 0: never */
        struct op_limits limits;
        /* Sessions: a VM kept across execs (docs/protocol.md, "Sessions"). */
        struct op_session_config {
                uint32_t max;         /* sessions alive at once, all uids; 0: sessions off */
                uint32_t max_per_uid; /* sessions of one uid (root too); 0: no per-uid bound */
                struct op_session_bounds bounds; /* idle timeout and lifetime: default, most */
                uint32_t fork_max;               /* new sessions one session_fork may make */
                uint32_t paused_max;             /* sessions paused to disk, all uids */
                uint32_t paused_max_per_uid;     /* ... of one uid */
                uint32_t paused_disk_mb;         /* disk they take, all uids (MiB) */
                uint32_t paused_disk_mb_per_uid; /* ... of one uid */
        } session;
        /* S3 snapshot distribution (docs/s3.md); sync is on when s3_bucket is not "". */
        char *s3_bucket;
        char *s3_region;
        char *s3_endpoint;        /* "": AWS's endpoint for the region */
        char *s3_prefix;          /* "" or ending in '/' */
        uint32_t s3_path_style;   /* endpoint/bucket/key instead of bucket.endpoint/key */
        char *s3_locations;       /* more locations, in priority order: BUCKET@REGION[@ENDPOINT] */
        uint32_t s3_sync_minutes; /* sync again every N minutes; 0: at start and on request */
        uint32_t s3_parallel;     /* chunk transfers at once */
        uint32_t s3_retries;      /* retries of one request on 5xx, throttling, network errors */
        uint32_t s3_workers;      /* threads hashing fetched chunks; 0: the loop */
        uint32_t s3_min_rate_kib; /* KiB/s a transfer averages at least: its deadline (s3.h) */
        char *s3_gateway;         /* opd-s3d's UNIX socket: it holds network and credentials */
        char *s3_trusted_keys;    /* "ed25519:HEX ...": who may sign a version (snap-sign.h) */
        uint32_t
            s3_allow_unsigned; /* serve versions nobody signed (the plain layout, old pushes) */
        uint32_t s3_require_expiry; /* refuse signed versions whose signature never expires */
        uint32_t s3_reserve_mb;     /* free space a sync leaves on the cache's filesystem */
        uint32_t s3_cache_max_mb;   /* the cache's total size after a sync; 0: no bound */
        uint32_t snapshot_preload;  /* read a new version's memory into the page cache first */
        /* opd makes the snapshot of a served language that has an image and none (snapauto.c) */
        uint32_t snapshot_create_missing;
        char
            *metrics_listen; /* "": no HTTP endpoint; "unix:PATH", "127.0.0.1:PORT", "[::1]:PORT" */
        char *piston_listen; /* the Piston-compatible door: "" (off) or as metrics_listen */
};

/* Defaults, with every string allocated. */
int op_config_init(struct op_config *c);
void op_config_free(struct op_config *c);

/* Apply "key = value" lines. On error returns -EINVAL and "<origin>:<line>: <why>" in errbuf. */
int op_config_parse(struct op_config *c, const char *text, const char *origin, char *errbuf,
                    size_t errlen);
int op_config_load(struct op_config *c, const char *path, char *errbuf, size_t errlen);

/* Checks across keys, after the file and every flag: -EINVAL with a message. */
int op_config_check(const struct op_config *c, char *errbuf, size_t errlen);

/* Set one key (used by command-line flags too). */
int op_config_set(struct op_config *c, const char *key, const char *value, char *errbuf,
                  size_t errlen);

/* The pool size for lang: its entry in pool_sizes, else pool_size. -EINVAL on a malformed list. */
int op_config_pool_size(const struct op_config *c, const char *lang, uint32_t *ret);
/* 1 with *ret set when pool_sizes names lang, 0 when it does not, -EINVAL when malformed. */
int op_config_pool_size_listed(const struct op_config *c, const char *lang, uint32_t *ret);

/* Split a local listen address (metrics.listen, piston.listen): "unix:PATH" sets *ret_path (into
 * s); "127.0.0.1:PORT" or "[::1]:PORT" sets *ret_host ("127.0.0.1" or "::1") and *ret_port.
 * -EINVAL for anything else. */
int op_config_local_listen(const char *s, const char **ret_path, const char **ret_host,
                           uint16_t *ret_port);

/* Print every key with its effective value, in file syntax. */
void op_config_dump(const struct op_config *c, FILE *f);
