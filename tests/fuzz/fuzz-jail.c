/* fuzz-jail.c: libFuzzer target for opd-jail's request decoder (lib/jail/jail-proto.c): any
 * packet is decoded or refused without reading past it; an accepted one keeps every field in
 * range, its arguments split back within the block, and it encodes again to the same bytes. The
 * answer decoder gets the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz-check.h"
#include "jail-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct jail_req r;
        struct jail_msg m;
        uint8_t *copy = malloc(size ? size : 1); /* exact length: ASan sees any overread */

        CHECK(copy);
        memcpy(copy, data, size);
        if (jail_req_decode(copy, size, &r) == 0) {
                const char *args[JAIL_ARGC_MAX + 2];
                char *argv[JAIL_ARGC_MAX + 2];
                struct jail_req again;
                size_t n;

                CHECK(size == sizeof(r));
                CHECK(r.type == JAIL_REQ_SPAWN || r.type == JAIL_REQ_KILL);
                if (r.type == JAIL_REQ_SPAWN) {
                        CHECK(jail_name_ok(r.name));
                        CHECK(r.n_fds >= 1 && r.n_fds <= JAIL_FDS_MAX);
                        CHECK(r.vmm < JAIL_VMMS_MAX);
                        n = jail_req_args(&r, args, JAIL_ARGC_MAX + 1);
                        CHECK(n == r.argc);
                        argv[0] = "vmm";
                        for (size_t i = 0; i < n; i++) {
                                CHECK(args[i] >= r.args && args[i] < r.args + JAIL_ARGS_MAX);
                                argv[1 + i] = (char *)args[i];
                        }
                        argv[1 + n] = NULL;
                        CHECK(jail_req_spawn(r.seq, r.vmm, r.name, argv, r.n_fds, &again) == 0);
                        again.memory_max_mb = r.memory_max_mb;
                        again.pids_max = r.pids_max;
                        again.cpu_weight = r.cpu_weight;
                        CHECK(memcmp(&again, &r, sizeof(r)) == 0);
                } else
                        CHECK(r.pid > 1);
        }
        if (jail_msg_decode(copy, size, &m) == 0)
                CHECK(size == sizeof(m) && memchr(m.text, 0, sizeof(m.text)));
        free(copy);
        return 0;
}
