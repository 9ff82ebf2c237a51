/* jail-proto.h: the fixed-size messages between opd and its privileged helper opd-jail over a
 * SOCK_SEQPACKET socketpair: one request or answer per packet, fds with SCM_RIGHTS. Pure codec
 * and validation, for both sides, the unit tests and the fuzzer (tests/fuzz/fuzz-jail.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JAIL_PROTO_MAGIC 0x6f706a31u /* "opj1": bump the digit on any layout change */
#define JAIL_FDS_MAX     8           /* fds with one spawn request */
#define JAIL_NAME_MAX    64          /* the VM's directory name, NUL included */
#define JAIL_ARGS_MAX    4096        /* argv[1..] of the VMM, NUL-separated */
#define JAIL_ARGC_MAX    96
#define JAIL_TEXT_MAX    160 /* human text in an answer, NUL included */
#define JAIL_VMMS_MAX    2   /* binaries the helper may run (argv[0] by index) */

enum jail_req_type {
        /* Start the VMM vmm with argv[1..argc] in a jail of its own, its cgroup leaf named name:
         * fds[0] becomes its stdout and stderr, fds[1..] its fds 3, 4, ... */
        JAIL_REQ_SPAWN = 1,
        /* SIGKILL to the VMM this helper started for the SPAWN of sequence number seq, when its
         * pid is pid and it has not been reaped yet: a pid the kernel gave again to a later
         * VMM never names that one. */
        JAIL_REQ_KILL = 2,
};

/* Wire layout = this struct: only 32-bit fields and char arrays, no padding, host byte order
 * (both ends are on one host, started by the same package). */
struct jail_req {
        uint32_t magic;
        uint32_t type;
        uint32_t seq; /* SPAWN: echoed by the answer, and names the VMM from then on; KILL: the
                       * SPAWN's of the VMM to kill */
        uint32_t vmm; /* index of the binary, < JAIL_VMMS_MAX */
        uint32_t n_fds;
        uint32_t memory_max_mb; /* cgroup memory.max; 0: none */
        uint32_t pids_max;      /* cgroup pids.max; 0: none */
        uint32_t cpu_weight;    /* cgroup cpu.weight, 1..10000; 0: the default */
        int32_t pid;            /* KILL */
        uint32_t argc;          /* strings in args */
        uint32_t args_len;      /* bytes of args they take, their NULs included */
        char name[JAIL_NAME_MAX];
        char args[JAIL_ARGS_MAX];
};

enum jail_msg_type {
        JAIL_MSG_HELLO = 1,   /* once at start: flags, text says how VMs are limited */
        JAIL_MSG_SPAWNED = 2, /* the answer to SPAWN: err, or pid and uid */
        JAIL_MSG_EXITED = 3,  /* a VMM was reaped: seq (its SPAWN's), pid, status (waitpid's) */
};

#define JAIL_F_CGROUP 0x1u /* per-VM cgroup v2 limits are applied */

struct jail_msg {
        uint32_t magic;
        uint32_t type;
        uint32_t seq;
        int32_t err; /* SPAWNED: 0 or a negative errno */
        int32_t pid;
        int32_t status;
        uint32_t uid;
        uint32_t flags;
        char text[JAIL_TEXT_MAX];
};

#define JAIL_REQ_SIZE sizeof(struct jail_req)
#define JAIL_MSG_SIZE sizeof(struct jail_msg)

/* A spawn request from an argv (argv[0] is not sent: the helper runs its own binary vmm).
 * -E2BIG when the arguments do not fit, -EINVAL on a bad name, vmm or fd count. */
int jail_req_spawn(uint32_t seq, uint32_t vmm, const char *name, char *const *argv, uint32_t n_fds,
                   struct jail_req *ret);

/* Decode and validate one packet: exact size, magic, known type, each field in range, the name a
 * VM directory's ("vm-" then [A-Za-z0-9-]), exactly argc NUL-terminated strings in args and
 * zeros after them (args_len bytes). -EBADMSG on anything else; ret untouched then. */
int jail_req_decode(const void *buf, size_t len, struct jail_req *ret);

/* The argument strings of a decoded SPAWN, at most max (argv[1..]); returns their number. */
size_t jail_req_args(const struct jail_req *req, const char **ret, size_t max);

/* Decode an answer: exact size, magic, known type, text NUL-terminated. -EBADMSG otherwise. */
int jail_msg_decode(const void *buf, size_t len, struct jail_msg *ret);

/* A VM directory's name: "vm-" then 1..60 of [A-Za-z0-9-]. */
bool jail_name_ok(const char *name);
