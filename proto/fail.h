/* fail.h: the codec's one way to refuse input: a message in errbuf (when given), -EINVAL back.
 * Internal to proto/: msg.c, msg-opts.c, msg-snapshot.c, piston.c and agent-msg.c. */
#pragma once

#include <stddef.h>

int op_proto_fail(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
