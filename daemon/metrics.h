/* metrics.h: per-language exec outcomes and latency histograms, rendered as Prometheus text
 * for the `metrics` op and metrics.listen (metrics.c). */
#pragma once

#include <jansson.h>

struct client;
struct opd;
struct request;

int metrics_init(struct opd *d); /* after the pools; serves metrics.listen unless no_listen */
void metrics_done(struct opd *d);
/* One finished exec; outcome is an error code name, NULL for ok. */
void metrics_observe_exec(struct opd *d, const struct request *r, const char *outcome,
                          json_t *reply);
char *metrics_render(struct opd *d); /* malloc'd, NULL when out of memory */
void op_metrics(struct client *c, json_t *id, json_t *req);
