/* metrics.c: Prometheus metrics: per-language exec outcomes and latency histograms, the text
 * exposition of them and of the pools and counters, the `metrics` op and metrics.listen (evhttp).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "cleanup.h"
#include "client.h"
#include "door.h"
#include "host.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "opd.h"
#include "ops.h"
#include "pool.h"
#include "request.h"
#include "session.h"
#include "s3sync.h"
#include "util.h"
#include "vmm.h"

#define METRICS_BUCKETS 14 /* 1 2 5 10 25 50 100 250 500 1000 2500 5000 10000 +Inf */
enum { METRICS_QUEUE, METRICS_BOOT_OR_RESUME, METRICS_RUN, METRICS_TOTAL, _METRICS_PHASES };
struct metrics_hist {
        uint64_t bucket[METRICS_BUCKETS]; /* not cumulative: rendered cumulative */
        uint64_t count;
        double sum;
};
struct metrics_lang {
        uint64_t outcome[1 + _OP_ERR_MAX];            /* [0]: ok, [1 + enum op_err] */
        struct metrics_hist hist[2][_METRICS_PHASES]; /* [0]: warm, [1]: cold */
};

struct metrics {
        struct metrics_lang *langs; /* d->langs.n of them */
        struct httpd *httpd;        /* metrics.listen; NULL when off */
};

static const double bucket_le[METRICS_BUCKETS - 1] = {1,   2,   5,    10,   25,   50,   100,
                                                      250, 500, 1000, 2500, 5000, 10000};
static const char *const phase_names[_METRICS_PHASES] = {"queue", "boot_or_resume", "run", "total"};
static const char *const mode_names[2] = {"warm", "cold"};

static double ms(uint64_t from, uint64_t to)
{
        return (double)(to - from) / 1000.0;
}

static void hist_observe(struct metrics_hist *h, double v)
{
        size_t i = 0;

        while (i < METRICS_BUCKETS - 1 && v > bucket_le[i])
                i++;
        h->bucket[i]++;
        h->count++;
        h->sum += v;
}

void metrics_observe_exec(struct opd *d, const struct request *r, const char *outcome,
                          json_t *reply)
{
        size_t li = (size_t)(r->lang - d->langs.v);
        struct metrics_lang *m;
        struct metrics_hist *h;
        size_t k = 0;
        uint64_t now = op_now_us();

        (void)reply;
        if (!d->metrics || li >= d->langs.n)
                return;
        m = &d->metrics->langs[li];
        if (outcome) {
                k = 1 + OP_ERR_INTERNAL;
                for (int e = 0; e < _OP_ERR_MAX; e++)
                        if (strcmp(outcome, op_err_name(e)) == 0)
                                k = 1 + (size_t)e;
        }
        m->outcome[k]++;
        h = m->hist[r->pool ? 0 : 1];
        /* A phase the request never reached is not observed; total always is. */
        if (r->t_start && r->t_vm >= r->t_start)
                hist_observe(&h[METRICS_QUEUE], ms(r->t_start, r->t_vm));
        if (r->t_vm && r->t_ready >= r->t_vm)
                hist_observe(&h[METRICS_BOOT_OR_RESUME], ms(r->t_vm, r->t_ready));
        if (r->t_ready && r->t_done >= r->t_ready)
                hist_observe(&h[METRICS_RUN], ms(r->t_ready, r->t_done));
        if (r->t_start && now >= r->t_start)
                hist_observe(&h[METRICS_TOTAL], ms(r->t_start, now));
}

/* A label value per the text exposition format: \ " and newline escaped. */
static void label(FILE *f, const char *s)
{
        fputc('"', f);
        for (; s && *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '"')
                        fputs("\\\"", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
        fputc('"', f);
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void lang_gauge(FILE *f, const char *name, const char *lang, double v)
{
        fprintf(f, "%s{lang=", name);
        label(f, lang);
        fprintf(f, "} %.17g\n", v);
}

static void render_pools(FILE *f, struct opd *d)
{
        static const struct {
                const char *name, *type, *help;
        } g[] = {
            {"opd_pool_target", "gauge",
             "Paused and restoring VMs the pool holds now: follows the demand estimate."},
            {"opd_pool_standing", "gauge",
             "The target when idle (pool.size, pool.sizes), scaled to fit max_vms."},
            {"opd_pool_max", "gauge", "The most the target grows to under demand (pool.max_size)."},
            {"opd_pool_demand_per_second", "gauge",
             "Requests arriving per second, estimated (half-life 5 s)."},
            {"opd_pool_refill_ms", "gauge",
             "Time to make one paused VM (restore and priming), smoothed, in ms."},
            {"opd_pool_ready", "gauge", "Paused VMs ready to be taken."},
            {"opd_pool_restoring", "gauge", "VMs being restored from the snapshot."},
            {"opd_pool_in_use", "gauge", "VMs taken from the pool and not yet finished with."},
            {"opd_pool_waiting", "gauge", "Requests waiting for a paused VM."},
            {"opd_pool_served_total", "counter", "Requests served by a VM from the pool."},
            {"opd_pool_restores_total", "counter", "Restores started."},
            {"opd_pool_restore_failures_total", "counter", "Restores that failed."},
            {"opd_pool_last_restore_ms", "gauge", "Duration of the last restore, in ms."},
            {"opd_pool_last_prime_ms", "gauge", "Duration of the last warm-up run, in ms."},
            {"opd_pool_snapshot_damaged_total", "counter",
             "Serving snapshots found damaged (files missing, resized or failing their checksum)."},
            {"opd_pool_evicted_total", "counter",
             "Paused VMs destroyed to give their slot to another language or a booting VM."},
            {"opd_pool_unprimed_total", "counter",
             "VMs handed to a waiting request without priming."},
        };

        for (size_t k = 0; k < ELEMENTSOF(g); k++) {
                head(f, g[k].name, g[k].type, g[k].help);
                for (size_t i = 0; i < d->langs.n; i++) {
                        struct pool *p = pool_for(d->pools, &d->langs.v[i]);
                        struct pool_counts n;

                        if (!p)
                                continue;
                        pool_counts(p, &n);
                        double v[] = {n.target,
                                      n.standing,
                                      n.most,
                                      n.demand,
                                      n.refill_ms,
                                      n.ready,
                                      n.restoring,
                                      n.in_use,
                                      n.waiting,
                                      (double)n.stats.served,
                                      (double)n.stats.restores,
                                      (double)n.stats.failures,
                                      n.stats.last_restore_ms,
                                      n.stats.last_prime_ms,
                                      (double)n.stats.damaged,
                                      (double)n.stats.evicted,
                                      (double)n.stats.unprimed};

                        lang_gauge(f, g[k].name, d->langs.v[i].name, v[k]);
                }
        }
}

/* A language's exec series are listed while opd serves it (its image is there and it is
 * enabled: only then can an exec of it be answered), and from its first answered exec on: 141
 * lines each, and most languages of the catalogue may have no image on a host (the exposition
 * was ~500 KB with them all, rendered and sent for every scrape and `metrics` request). Listed
 * before its first exec, a series counts that exec in rate() and increase(). */
static bool lang_listed(const struct op_lang *l, const struct metrics_lang *m)
{
        uint64_t n = 0;

        if (l->available && l->enabled)
                return true;
        for (size_t k = 0; k <= _OP_ERR_MAX; k++)
                n += m->outcome[k];
        return n + m->hist[0][METRICS_TOTAL].count + m->hist[1][METRICS_TOTAL].count > 0;
}

static void render_exec(FILE *f, struct opd *d)
{
        head(f, "opd_exec_requests_total", "counter",
             "Exec requests answered, by language and outcome (ok or an error code).");
        for (size_t i = 0; i < d->langs.n; i++) {
                if (!lang_listed(&d->langs.v[i], &d->metrics->langs[i]))
                        continue;
                for (size_t k = 0; k <= _OP_ERR_MAX; k++) {
                        fputs("opd_exec_requests_total{lang=", f);
                        label(f, d->langs.v[i].name);
                        fputs(",outcome=", f);
                        label(f, k ? op_err_name((enum op_err)(k - 1)) : "ok");
                        fprintf(f, "} %llu\n", (unsigned long long)d->metrics->langs[i].outcome[k]);
                }
        }
        head(f, "opd_exec_duration_ms", "histogram",
             "Exec request latency in ms, by language, mode (warm, cold) and phase (queue, "
             "boot_or_resume, run, total).");
        for (size_t i = 0; i < d->langs.n; i++) {
                if (!lang_listed(&d->langs.v[i], &d->metrics->langs[i]))
                        continue;
                for (size_t m = 0; m < 2; m++)
                        for (size_t p = 0; p < _METRICS_PHASES; p++) {
                                const struct metrics_hist *h = &d->metrics->langs[i].hist[m][p];
                                uint64_t cum = 0;

                                for (size_t b = 0; b < METRICS_BUCKETS; b++) {
                                        cum += h->bucket[b];
                                        fputs("opd_exec_duration_ms_bucket{lang=", f);
                                        label(f, d->langs.v[i].name);
                                        fprintf(f, ",mode=\"%s\",phase=\"%s\",le=", mode_names[m],
                                                phase_names[p]);
                                        if (b < METRICS_BUCKETS - 1)
                                                fprintf(f, "\"%g\"", bucket_le[b]);
                                        else
                                                fputs("\"+Inf\"", f);
                                        fprintf(f, "} %llu\n", (unsigned long long)cum);
                                }
                                fputs("opd_exec_duration_ms_sum{lang=", f);
                                label(f, d->langs.v[i].name);
                                fprintf(f, ",mode=\"%s\",phase=\"%s\"} %.17g\n", mode_names[m],
                                        phase_names[p], h->sum);
                                fputs("opd_exec_duration_ms_count{lang=", f);
                                label(f, d->langs.v[i].name);
                                fprintf(f, ",mode=\"%s\",phase=\"%s\"} %llu\n", mode_names[m],
                                        phase_names[p], (unsigned long long)h->count);
                        }
        }
}

static void render_s3(FILE *f, struct opd *d)
{
        const struct s3_sync_stats *s = s3sync_stats(d);
        const char *lang;
        json_t *v;

        if (!s)
                return;
        head(f, "opd_s3_syncs_total", "counter", "Sync runs over every language (docs/s3.md).");
        fprintf(f, "opd_s3_syncs_total %llu\n", (unsigned long long)s->syncs);
        head(f, "opd_s3_sync_failures_total", "counter",
             "A language's sync that failed at one S3 location.");
        fprintf(f, "opd_s3_sync_failures_total %llu\n", (unsigned long long)s->failures);
        head(f, "opd_s3_sync_chunks_total", "counter",
             "Chunks of new versions: fetched from S3, or reused (staged or installed already).");
        fprintf(f, "opd_s3_sync_chunks_total{how=\"fetched\"} %llu\n",
                (unsigned long long)s->chunks_fetched);
        fprintf(f, "opd_s3_sync_chunks_total{how=\"reused\"} %llu\n",
                (unsigned long long)s->chunks_reused);
        head(f, "opd_s3_sync_bytes_total", "counter", "Chunk bytes fetched from S3.");
        fprintf(f, "opd_s3_sync_bytes_total %llu\n", (unsigned long long)s->bytes_fetched);
        head(f, "opd_s3_requests_retried_total", "counter",
             "S3 requests retried after a 5xx, throttling or network error.");
        fprintf(f, "opd_s3_requests_retried_total %llu\n", (unsigned long long)s->retries);
        head(f, "opd_s3_versions_refused_total", "counter",
             "Versions refused before staging: unsigned, unknown key, bad signature, rollback, "
             "bounds, expired, no expiry.");
        fprintf(f, "opd_s3_versions_refused_total{why=\"unsigned\"} %llu\n",
                (unsigned long long)s->refused_unsigned);
        fprintf(f, "opd_s3_versions_refused_total{why=\"unknown_key\"} %llu\n",
                (unsigned long long)s->refused_key);
        fprintf(f, "opd_s3_versions_refused_total{why=\"bad_signature\"} %llu\n",
                (unsigned long long)s->refused_signature);
        fprintf(f, "opd_s3_versions_refused_total{why=\"rollback\"} %llu\n",
                (unsigned long long)s->refused_rollback);
        fprintf(f, "opd_s3_versions_refused_total{why=\"bounds\"} %llu\n",
                (unsigned long long)s->refused_bounds);
        fprintf(f, "opd_s3_versions_refused_total{why=\"expired\"} %llu\n",
                (unsigned long long)s->refused_expired);
        fprintf(f, "opd_s3_versions_refused_total{why=\"no_expiry\"} %llu\n",
                (unsigned long long)s->refused_no_expiry);
        head(f, "opd_s3_signature_expires_timestamp_seconds", "gauge",
             "When the signature of the version last accepted for a language expires.");
        json_object_foreach ((json_t *)s3sync_expires(d), lang, v)
                fprintf(f, "opd_s3_signature_expires_timestamp_seconds{lang=\"%s\"} %lld\n", lang,
                        (long long)json_integer_value(v));
}

static void render_sessions(FILE *f, struct opd *d)
{
        struct session_counts n;

        sessions_counts(d, &n);
        head(f, "opd_sessions", "gauge", "Sessions open (any state).");
        fprintf(f, "opd_sessions %u\n", n.open);
        head(f, "opd_sessions_busy", "gauge", "Sessions running an exec.");
        fprintf(f, "opd_sessions_busy %u\n", n.busy);
        head(f, "opd_sessions_opened_total", "counter",
             "Sessions opened (asked for and accepted).");
        fprintf(f, "opd_sessions_opened_total %llu\n", (unsigned long long)n.opened);
        head(f, "opd_sessions_ended_total", "counter",
             "Sessions ended, by reason: closed (session_close, opd stopping), expired (idle "
             "timeout, lifetime), failed (the VM failed or never came).");
        fprintf(f, "opd_sessions_ended_total{reason=\"closed\"} %llu\n",
                (unsigned long long)n.closed);
        fprintf(f, "opd_sessions_ended_total{reason=\"expired\"} %llu\n",
                (unsigned long long)n.expired);
        fprintf(f, "opd_sessions_ended_total{reason=\"failed\"} %llu\n",
                (unsigned long long)n.failed);
        head(f, "opd_sessions_refused_total", "counter",
             "session_open refused by session.max or session.max_per_uid.");
        fprintf(f, "opd_sessions_refused_total %llu\n", (unsigned long long)n.refused);
}

char *metrics_render(struct opd *d)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f;

        if (!d->metrics)
                return NULL;
        f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        render_exec(f, d);
        render_pools(f, d);
        render_s3(f, d);
        head(f, "opd_vms", "gauge", "VMM processes alive (booting, pooled, running).");
        fprintf(f, "opd_vms %u\n", d->vms_host->n_vms);
        head(f, "opd_clients", "gauge", "Connections open on the socket.");
        fprintf(f, "opd_clients %u\n", clients_count(d));
        head(f, "opd_queued", "gauge", "Requests waiting for a VM slot or a paused VM.");
        fprintf(f, "opd_queued %u\n", requests_queued(d));
        render_sessions(f, d);
        head(f, "opd_piston_inflight", "gauge", "Requests in flight at the Piston door.");
        fprintf(f, "opd_piston_inflight %u\n", door_inflight(d));
        head(f, "opd_vms_started_total", "counter", "VMs started (booted or restored).");
        fprintf(f, "opd_vms_started_total %llu\n", (unsigned long long)d->vms_host->vms_started);
        head(f, "opd_vms_failed_total", "counter", "VMs that failed or died unexpectedly.");
        fprintf(f, "opd_vms_failed_total %llu\n", (unsigned long long)d->vms_host->vms_failed);
        head(f, "opd_connections_total", "counter", "Connections accepted on the socket.");
        fprintf(f, "opd_connections_total %llu\n", (unsigned long long)d->stats.connections);
        head(f, "opd_connections_idle_closed_total", "counter",
             "Connections closed after idle_timeout_ms with nothing in flight.");
        fprintf(f, "opd_connections_idle_closed_total %llu\n",
                (unsigned long long)d->stats.idle_closed);
        head(f, "opd_client_output_paused_total", "counter",
             "Times a client's unread answers passed client.output_high (reading paused).");
        fprintf(f, "opd_client_output_paused_total %llu\n",
                (unsigned long long)d->stats.output_paused);
        head(f, "opd_client_output_overflow_total", "counter",
             "Clients closed with more unread answers than client.output_max.");
        fprintf(f, "opd_client_output_overflow_total %llu\n",
                (unsigned long long)d->stats.output_overflow);
        head(f, "opd_connections_refused_total", "counter",
             "Connections refused by max_clients, a per-uid cap, access.group, shutdown or to "
             "keep file descriptors in reserve.");
        fprintf(f, "opd_connections_refused_total %llu\n", (unsigned long long)d->stats.refused);
        head(f, "opd_uptime_seconds", "gauge", "Seconds since opd started.");
        fprintf(f, "opd_uptime_seconds %.3f\n", (double)(op_now_us() - d->started_us) / 1e6);
        head(f, "opd_info", "gauge", "Always 1; the labels say what runs.");
        fputs("opd_info{version=", f);
        label(f, OP_VERSION);
        fputs(",accel=", f);
        label(f,
              d->vms_host->accel == OP_ACCEL_AUTO ? "probing" : op_accel_name(d->vms_host->accel));
        fputs(",vmm=", f);
        label(f, d->vms_host ? d->vms_host->drv->name : "");
        fputs(",vmm_version=", f);
        label(f, d->vmm_version ? d->vmm_version : "");
        fputs("} 1\n", f);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

void op_metrics(struct client *c, json_t *id, json_t *req)
{
        char *text;

        if (!op_only_id_op(c, id, req))
                return;
        text = metrics_render(client_opd(c));
        if (!text) {
                client_send(c, op_error_reply(id, OP_ERR_INTERNAL, "out of memory"));
                return;
        }
        client_send(c, json_pack("{s:O?, s:b, s:s, s:s}", "id", id, "ok", 1, "format",
                                 "prometheus-text-0.0.4", "text", text));
        free(text);
}

static void on_http_metrics(struct evhttp_request *req, void *arg)
{
        struct opd *d = arg;
        struct evbuffer *out;
        char *text;

        if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
                evhttp_send_error(req, 405, "Method Not Allowed");
                return;
        }
        text = metrics_render(d);
        out = evbuffer_new();
        if (!text || !out || evbuffer_add(out, text, strlen(text)) < 0) {
                evhttp_send_error(req, HTTP_INTERNAL, NULL);
        } else {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                                  "text/plain; version=0.0.4; charset=utf-8");
                evhttp_send_reply(req, HTTP_OK, "OK", out);
        }
        if (out)
                evbuffer_free(out);
        free(text);
}

static void on_http_other(struct evhttp_request *req, void *arg)
{
        evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is served here");
}

int metrics_init(struct opd *d)
{
        struct evhttp *http;
        struct metrics *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->langs = calloc(d->langs.n + 1, sizeof(*m->langs));
        if (!m->langs) {
                free(m);
                return -ENOMEM;
        }
        d->metrics = m;
        if (d->no_listen || !d->cfg.metrics_listen || !d->cfg.metrics_listen[0])
                return 0;
        r = httpd_open(d, "metrics.listen", d->cfg.metrics_listen, 0, &m->httpd);
        if (r < 0)
                return r;
        http = httpd_http(m->httpd);
        evhttp_set_allowed_methods(http, EVHTTP_REQ_GET);
        if (httpd_set_cb(m->httpd, "/metrics", on_http_metrics, d) < 0 ||
            httpd_set_gencb(m->httpd, on_http_other, d) < 0)
                return -ENOMEM;
        log_info("metrics: serving GET /metrics on %s", d->cfg.metrics_listen);
        return 0;
}

void metrics_done(struct opd *d)
{
        if (!d->metrics)
                return;
        httpd_close(d->metrics->httpd);
        free(d->metrics->langs);
        free(d->metrics);
        d->metrics = NULL;
}
