/* reload.h: the configuration read again on SIGHUP and by the reload op (reload.c). */
#pragma once

#include <stddef.h>

struct opd;

int opd_reload(struct opd *d, char *err, size_t errlen);
