/* jail-proto.c: the codec of opd's requests to opd-jail and of its answers: fixed-size packets
 * checked field by field. No I/O, no globals. */
#include "jail-proto.h"

#include <errno.h>
#include <string.h>

_Static_assert(sizeof(struct jail_req) == 11 * sizeof(uint32_t) + JAIL_NAME_MAX + JAIL_ARGS_MAX,
               "struct jail_req has padding");
_Static_assert(sizeof(struct jail_msg) == 8 * sizeof(uint32_t) + JAIL_TEXT_MAX,
               "struct jail_msg has padding");

bool jail_name_ok(const char *name)
{
        size_t n = strnlen(name, JAIL_NAME_MAX);

        if (n < 4 || n > 63 || strncmp(name, "vm-", 3) != 0)
                return false;
        for (size_t i = 3; i < n; i++)
                if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                      (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
                        return false;
        return true;
}

int jail_req_spawn(uint32_t seq, uint32_t vmm, const char *name, char *const *argv, uint32_t n_fds,
                   struct jail_req *ret)
{
        struct jail_req r = {
            .magic = JAIL_PROTO_MAGIC,
            .type = JAIL_REQ_SPAWN,
            .seq = seq,
            .vmm = vmm,
            .n_fds = n_fds,
        };
        size_t off = 0;

        if (vmm >= JAIL_VMMS_MAX || n_fds < 1 || n_fds > JAIL_FDS_MAX || !name ||
            strlen(name) >= JAIL_NAME_MAX || !jail_name_ok(name) || !argv || !argv[0])
                return -EINVAL;
        memcpy(r.name, name, strlen(name));
        for (char *const *a = argv + 1; *a; a++) {
                size_t k = strlen(*a) + 1;

                if (r.argc >= JAIL_ARGC_MAX || k > JAIL_ARGS_MAX - off)
                        return -E2BIG;
                memcpy(r.args + off, *a, k);
                off += k;
                r.argc++;
        }
        r.args_len = (uint32_t)off;
        *ret = r;
        return 0;
}

static bool zeros(const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

/* argc strings, each NUL-terminated, filling exactly args_len bytes; zeros after them. */
static bool args_ok(const struct jail_req *r)
{
        size_t off = 0;

        if (r->argc > JAIL_ARGC_MAX || r->args_len > JAIL_ARGS_MAX)
                return false;
        for (uint32_t i = 0; i < r->argc; i++) {
                const char *end = memchr(r->args + off, 0, r->args_len - off);

                if (!end)
                        return false;
                off = (size_t)(end - r->args) + 1;
        }
        return off == r->args_len && zeros(r->args + off, JAIL_ARGS_MAX - off);
}

int jail_req_decode(const void *buf, size_t len, struct jail_req *ret)
{
        struct jail_req r;
        size_t nl;

        if (!buf || len != sizeof(r))
                return -EBADMSG;
        memcpy(&r, buf, sizeof(r));
        if (r.magic != JAIL_PROTO_MAGIC)
                return -EBADMSG;
        switch (r.type) {
        case JAIL_REQ_SPAWN:
                nl = strnlen(r.name, JAIL_NAME_MAX);
                if (nl == JAIL_NAME_MAX || !jail_name_ok(r.name) ||
                    !zeros(r.name + nl, JAIL_NAME_MAX - nl))
                        return -EBADMSG;
                if (r.vmm >= JAIL_VMMS_MAX || r.n_fds < 1 || r.n_fds > JAIL_FDS_MAX || r.pid != 0 ||
                    !args_ok(&r))
                        return -EBADMSG;
                if (r.memory_max_mb > (1u << 20) || r.pids_max > (1u << 22) || r.cpu_weight > 10000)
                        return -EBADMSG;
                break;
        case JAIL_REQ_KILL:
                /* nothing but the VMM's SPAWN seq and its pid */
                if (r.pid <= 1 || r.vmm || r.n_fds || r.memory_max_mb || r.pids_max ||
                    r.cpu_weight || r.argc || r.args_len || !zeros(r.name, JAIL_NAME_MAX) ||
                    !zeros(r.args, JAIL_ARGS_MAX))
                        return -EBADMSG;
                break;
        default:
                return -EBADMSG;
        }
        *ret = r;
        return 0;
}

size_t jail_req_args(const struct jail_req *req, const char **ret, size_t max)
{
        size_t off = 0, n = 0;

        for (uint32_t i = 0; i < req->argc && n < max; i++) {
                ret[n++] = req->args + off;
                off += strnlen(req->args + off, JAIL_ARGS_MAX - off) + 1;
                if (off >= JAIL_ARGS_MAX)
                        break;
        }
        return n;
}

int jail_msg_decode(const void *buf, size_t len, struct jail_msg *ret)
{
        struct jail_msg m;

        if (!buf || len != sizeof(m))
                return -EBADMSG;
        memcpy(&m, buf, sizeof(m));
        if (m.magic != JAIL_PROTO_MAGIC || m.type < JAIL_MSG_HELLO || m.type > JAIL_MSG_EXITED)
                return -EBADMSG;
        if (!memchr(m.text, 0, sizeof(m.text)))
                return -EBADMSG;
        if (m.type == JAIL_MSG_SPAWNED && (m.err > 0 || (m.err == 0 && m.pid <= 1)))
                return -EBADMSG;
        if (m.type == JAIL_MSG_EXITED && m.pid <= 1)
                return -EBADMSG;
        *ret = m;
        return 0;
}
