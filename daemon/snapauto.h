/* snapauto.h: snapshots opd makes by itself for languages that have none (snapauto.c), and why
 * a pool is empty. */
#pragma once

#include <jansson.h>

struct op_lang;
struct opd;

/* Look every few seconds for a served language that needs its snapshot made. */
int snapauto_init(struct opd *d);
/* Accepts a daemon without it; a creation still running reports to nobody. */
void snapauto_done(struct opd *d);
/* Why lang's pool has no clone to give (a JSON string), or NULL when it has or is not
 * empty for want of a snapshot; NULL too when lang has no pool. */
json_t *snapauto_empty_reason(struct opd *d, const struct op_lang *lang);
