/* fuzz-config.c: libFuzzer target for the configuration file parser: "key = value" text in,
 * op_config_parse() on top of the defaults, then the cross-key checks; whatever parses must dump
 * to text that parses back to the same dump. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz-check.h"

static char *dump(const struct op_config *c)
{
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        CHECK(f);
        op_config_dump(c, f);
        CHECK(fclose(f) == 0);
        return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct op_config c, again;
        char err[256] = "", *text = malloc(size + 1);
        char *first = NULL, *second = NULL;
        const char *path, *host;
        uint16_t port;
        uint32_t n;
        int r;

        CHECK(text);
        memcpy(text, data, size);
        text[size] = 0;
        CHECK(op_config_init(&c) == 0);
        r = op_config_parse(&c, text, "fuzz", err, sizeof(err));
        if (r < 0) {
                CHECK(r == -EINVAL || r == -ENOMEM);
                CHECK(r == -ENOMEM || strncmp(err, "fuzz:", 5) == 0);
        } else {
                /* the checks that opd runs before it starts: any answer, no crash */
                r = op_config_check(&c, err, sizeof(err));
                CHECK(r == 0 || (r == -EINVAL && err[0]));
                if (op_config_pool_size(&c, "python", &n) == 0)
                        CHECK(n <= 1024);
                if (c.metrics_listen[0] &&
                    op_config_local_listen(c.metrics_listen, &path, &host, &port) == 0)
                        CHECK(!!path != !!host);
                if (c.piston_listen[0] &&
                    op_config_local_listen(c.piston_listen, &path, &host, &port) == 0)
                        CHECK(!!path != !!host);
                CHECK(c.limits.frame_max <= OP_FRAME_MAX_CEILING);

                first = dump(&c);
                CHECK(op_config_init(&again) == 0);
                CHECK(op_config_parse(&again, first, "dump", err, sizeof(err)) == 0);
                second = dump(&again);
                CHECK(strcmp(first, second) == 0);
                op_config_free(&again);
        }
        op_config_free(&c);
        free(first);
        free(second);
        free(text);
        return 0;
}
