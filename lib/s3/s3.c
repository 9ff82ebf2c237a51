/* s3.c: S3 transfers on libcurl's multi interface, driven by the loop through curl-ev.c. Signing is
 * libcurl's (CURLOPT_AWS_SIGV4); retries with backoff and jitter are ours. Nothing here blocks the
 * loop. */
#include "s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cleanup.h"
#include "curl-ev.h"
#include "evtimer.h"
#include "s3-list.h"
#include "util.h"
#include "workq.h"

#define S3_DEFAULT_MAX_BODY (1u << 20)
#define S3_DEADLINE_MAX_MS  INT32_MAX   /* what CURLOPT_TIMEOUT_MS holds on any long: 24 days */
#define S3_HASH_BLOCK       (64 * 1024) /* a worker reads a sunk body back in these */

/* A sunk body, written, handed to a worker to hash: it reads the range back from the file (from
 * the page cache, where the write just put it) through a buffer on its stack. The worker
 * touches these fields and the digest context, nothing else; the loop leaves them alone until
 * done(). Nothing here takes a lock a forked child (bgjob.c) could need: no allocation, no
 * digest set-up (attempt() initialises the context on the loop). */
struct sink_job {
        struct work w;
        int fd;
        uint64_t off;
        uint64_t len;
        EVP_MD_CTX *sha;
        unsigned char md[32];
        int err; /* errno of a failed read, 0 */
};

struct s3_client {
        struct event_base *base;
        struct curl_ev *ev;
        CURLM *multi;          /* ev's */
        struct s3_creds creds; /* empty with a gateway */
        char *gateway;
        struct s3_client_opts opts;
        struct s3_stats stats;
        uint64_t rng;
        struct s3_xfer *xfers; /* every transfer, in flight or waiting to retry */
        struct workq *wq;      /* started with the first sunk transfer, when opts.workers */
};

struct s3_xfer {
        struct s3_client *c;
        struct s3_xfer *next, **pprev;
        CURL *easy;
        struct curl_slist *headers;
        char *url;
        char provider[64];
        struct s3_req req;
        char *method;
        char *body;
        size_t len, cap;
        EVP_MD_CTX *sha;
        struct event *retry_ev;
        struct s3_resp resp;
        uint64_t deadline_ms; /* of each attempt (s3_attempt_deadline_ms), 0: none */
        bool too_big;
        int sink_errno;   /* a write to req.sink_fd failed: not retried */
        int stream_errno; /* req.stream ended the transfer: not retried */
        bool streamed;    /* a piece went to req.stream: a failure is final */
        bool full;        /* req.stream takes no more until s3_resume() */
        bool paused;      /* curl holds a piece back until s3_resume() */
        bool in_multi;
        bool deferred; /* a hashed sink: a worker hashes the body once it is written */
        bool job_out;  /* job is the workers' */
        struct sink_job job;
        s3_done_fn done;
        void *userdata;
};

static uint64_t rng_next(struct s3_client *c)
{
        /* xorshift64*: jitter only, not secrets */
        c->rng ^= c->rng >> 12;
        c->rng ^= c->rng << 25;
        c->rng ^= c->rng >> 27;
        return c->rng * 2685821657736338717ull;
}

static void on_done(CURL *easy, CURLcode cc, void *userdata);

int s3_client_new(struct event_base *base, const struct s3_creds *creds,
                  const struct s3_client_opts *opts, struct s3_client **ret)
{
        struct s3_client *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->base = base;
        c->opts = *opts;
        if (opts->gateway) {
                c->gateway = strdup(opts->gateway);
                c->opts.gateway = c->gateway;
                if (!c->gateway) {
                        free(c);
                        return -ENOMEM;
                }
                creds = NULL;
        }
        c->creds.key_id = strdup(creds ? creds->key_id : "");
        c->creds.secret = strdup(creds ? creds->secret : "");
        c->creds.token = creds && creds->token ? strdup(creds->token) : NULL;
        if (curl_ev_new(base, on_done, c, &c->ev) < 0) {
                s3_client_free(c);
                return -ENOMEM;
        }
        c->multi = curl_ev_multi(c->ev);
        if (getrandom(&c->rng, sizeof(c->rng), 0) != sizeof(c->rng) || !c->rng)
                c->rng = op_now_us() | 1;
        if (!c->creds.key_id || !c->creds.secret || (creds && creds->token && !c->creds.token)) {
                s3_client_free(c);
                return -ENOMEM;
        }
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)opts->max_conns);
        *ret = c;
        return 0;
}

static void xfer_free(struct s3_xfer *x)
{
        struct s3_client *c = x->c;

        if (x->job_out)
                workq_cancel(c->wq, &x->job.w); /* waits while a worker holds it */
        if (x->in_multi)
                curl_multi_remove_handle(c->multi, x->easy);
        if (x->easy)
                curl_easy_cleanup(x->easy);
        if (x->retry_ev)
                event_free(x->retry_ev);
        if (x->sha)
                EVP_MD_CTX_free(x->sha);
        curl_slist_free_all(x->headers);
        if (x->pprev) {
                *x->pprev = x->next;
                if (x->next)
                        x->next->pprev = x->pprev;
        }
        free(x->url);
        free(x->method);
        free(x->body);
        free(x);
}

void s3_client_free(struct s3_client *c)
{
        if (!c)
                return;
        while (c->xfers)
                xfer_free(c->xfers);
        workq_free(c->wq);
        curl_ev_free(c->ev);
        s3_creds_free(&c->creds);
        free(c->gateway);
        free(c);
}

struct event_base *s3_client_base(const struct s3_client *c)
{
        return c->base;
}

const struct s3_stats *s3_client_stats(const struct s3_client *c)
{
        return &c->stats;
}

/* Keep n more bytes of an answer in x->body, which holds at most max of them; its first
 * allocation is of first bytes. */
static int keep(struct s3_xfer *x, const char *ptr, size_t n, size_t max, size_t first)
{
        if (x->len + n + 1 > x->cap) {
                size_t cap = x->cap ? x->cap : first;
                char *b;

                while (cap < x->len + n + 1)
                        cap *= 2;
                if (cap > max + 1)
                        cap = max + 1;
                b = realloc(x->body, cap);
                if (!b)
                        return -ENOMEM;
                x->body = b;
                x->cap = cap;
        }
        memcpy(x->body + x->len, ptr, n);
        x->len += n;
        x->body[x->len] = 0;
        return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct s3_xfer *x = userdata;
        size_t n = size * nmemb;

        x->c->stats.bytes_in += n;
        if (x->resp.status / 100 != 2) {
                /* An error answer: only its <Code> and <Message> are read. Its start is kept,
                 * the rest dropped (taken, so the transfer ends with the answer's status). */
                size_t room = x->len < S3_ERROR_BODY_MAX ? S3_ERROR_BODY_MAX - x->len : 0;

                if (room && keep(x, ptr, n < room ? n : room, S3_ERROR_BODY_MAX, 16384) < 0)
                        return 0;
                return n;
        }
        if (x->len + n > x->req.max_body) {
                x->too_big = true;
                return 0;
        }
        if (x->req.stream) {
                int r;

                if (x->full) {
                        /* curl keeps this piece and hands it over again once resumed */
                        x->paused = true;
                        return CURL_WRITEFUNC_PAUSE;
                }
                if (!x->streamed) {
                        curl_off_t cl = -1;

                        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
                        x->resp.content_length = cl >= 0 ? (uint64_t)cl : 0;
                        x->streamed = true;
                }
                r = x->req.stream(&x->resp, ptr, n, x->userdata);
                if (r < 0) {
                        x->stream_errno = -r;
                        return 0;
                }
                x->full = r == S3_STREAM_FULL;
                x->len += n;
                return n;
        }
        if (x->req.sink) {
                /* straight into the file: no copy through a buffer */
                int r = op_pwrite_all(x->req.sink_fd, ptr, n, x->req.sink_off + x->len);

                if (r < 0) {
                        x->sink_errno = -r;
                        return 0;
                }
                x->len += n;
                if (x->sha && !x->deferred)
                        EVP_DigestUpdate(x->sha, ptr, n);
                return n;
        }
        /* a ranged or hashed GET knows its size: one allocation */
        if (keep(x, ptr, n, x->req.max_body,
                 x->req.sha256 || x->req.range_len ? x->req.max_body + 1 : 16384) < 0)
                return 0;
        if (x->sha)
                EVP_DigestUpdate(x->sha, ptr, n);
        return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
        struct s3_xfer *x = userdata;
        size_t n = size * nitems;

        if (n > 5 && strncmp(buf, "HTTP/", 5) == 0) {
                /* a new status line (after a 100 Continue too): the status counts for the body */
                long status = 0;
                const char *sp = memchr(buf, ' ', n);
                if (sp)
                        status = strtol(sp + 1, NULL, 10);
                x->resp.status = status;
        } else if (n > 5 && strncasecmp(buf, "etag:", 5) == 0) {
                size_t k = n - 5;
                const char *v = buf + 5;
                while (k && (*v == ' ' || *v == '"')) {
                        v++;
                        k--;
                }
                while (k && (v[k - 1] == '\r' || v[k - 1] == '\n' || v[k - 1] == '"'))
                        k--;
                snprintf(x->resp.etag, sizeof(x->resp.etag), "%.*s", (int)k, v);
        }
        return n;
}

static int attempt(struct s3_xfer *x)
{
        struct s3_client *c = x->c;
        CURL *e = x->easy;

        x->len = 0;
        x->too_big = false;
        x->sink_errno = 0;
        x->stream_errno = 0;
        x->full = x->paused = false;
        x->resp.status = 0;
        x->resp.etag[0] = 0;
        if (x->sha && !EVP_DigestInit_ex(x->sha, EVP_sha256(), NULL))
                return -ENOMEM;
        x->resp.attempts++;
        c->stats.requests++;
        c->stats.bytes_out += x->req.body_len;
        curl_ev_cloexec(e);
        if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
                return -EIO;
        x->in_multi = true;
        return 0;
}

uint64_t s3_attempt_deadline_ms(const struct s3_client_opts *o, const struct s3_req *req)
{
        uint64_t in = 0, s, ms;

        if (!o->min_rate)
                return 0;
        if (strcmp(req->method, "HEAD") != 0)
                in = req->max_body ? req->max_body : S3_DEFAULT_MAX_BODY;
        /* in seconds first: no product of a size and 1000 can wrap */
        s = req->body_len / o->min_rate + in / o->min_rate;
        if (s >= S3_DEADLINE_MAX_MS / 1000)
                return S3_DEADLINE_MAX_MS;
        ms = (uint64_t)o->connect_timeout_ms + o->deadline_slack_ms + s * 1000 +
             (req->body_len % o->min_rate + in % o->min_rate) * 1000 / o->min_rate;
        return ms < S3_DEADLINE_MAX_MS ? ms : S3_DEADLINE_MAX_MS;
}

static int setup(struct s3_xfer *x, const struct s3_location *l)
{
        struct s3_client *c = x->c;
        char hdr[160];
        CURL *e;

        x->easy = e = curl_easy_init();
        if (!e || s3_sigv4_provider(l, x->provider, sizeof(x->provider)) < 0)
                return -ENOMEM;
        s3_payload_header(x->req.body, x->req.body_len, hdr, sizeof(hdr));
        x->headers = curl_slist_append(x->headers, hdr);
        if (c->creds.token) {
                _cleanup_free_ char *t = NULL;
                if (asprintf(&t, "x-amz-security-token: %s", c->creds.token) < 0)
                        return -ENOMEM;
                x->headers = curl_slist_append(x->headers, t);
        }
        if (x->req.range_len) {
                snprintf(hdr, sizeof(hdr), "Range: bytes=%llu-%llu",
                         (unsigned long long)x->req.range_off,
                         (unsigned long long)(x->req.range_off + x->req.range_len - 1));
                x->headers = curl_slist_append(x->headers, hdr);
        }
        if (x->req.body) {
                snprintf(hdr, sizeof(hdr), "Content-Type: %s",
                         x->req.content_type ? x->req.content_type : "application/octet-stream");
                x->headers = curl_slist_append(x->headers, hdr);
        }
        if (!x->headers)
                return -ENOMEM;
        curl_easy_setopt(e, CURLOPT_URL, x->url);
        /* http only reaches loopback endpoints (s3_location_init()); a redirect is never
         * followed (S3 answers 301/307 with an error body, reported as such) */
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        /* The key as it is: libcurl would otherwise resolve "." and ".." segments in the path,
         * and the request sent would name another object than the one asked for. */
        curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        if (c->gateway) {
                /* opd-s3d signs; nothing secret leaves this process */
                curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, c->gateway);
        } else {
                curl_easy_setopt(e, CURLOPT_AWS_SIGV4, x->provider);
                curl_easy_setopt(e, CURLOPT_USERNAME, c->creds.key_id);
                curl_easy_setopt(e, CURLOPT_PASSWORD, c->creds.secret);
        }
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(e, CURLOPT_PRIVATE, x);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->opts.connect_timeout_ms);
        /* chunks are MiBs: fewer, larger reads */
        if (x->req.max_body >= (1u << 20))
                curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(c->opts.stall_timeout_ms + 999) / 1000);
        /* a server trickling just above the stall rate holds an attempt no longer than this */
        x->deadline_ms = s3_attempt_deadline_ms(&c->opts, &x->req);
        if (x->deadline_ms)
                curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)x->deadline_ms);
        if (strcmp(x->method, "HEAD") == 0) {
                curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        } else if (x->req.body || strcmp(x->method, "PUT") == 0 || strcmp(x->method, "POST") == 0) {
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->req.body_len);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->req.body ? x->req.body : "");
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
        } else if (strcmp(x->method, "GET") != 0) {
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
        }
        return 0;
}

static void on_retry(evutil_socket_t fd, short what, void *arg);

int s3_start(struct s3_client *c, const struct s3_location *l, const struct s3_req *req,
             s3_done_fn done, void *userdata, struct s3_xfer **ret)
{
        struct s3_xfer *x = calloc(1, sizeof(*x));
        int r;

        if (!x)
                return -ENOMEM;
        if (req->sink && req->sha256 && c->opts.workers && !c->wq &&
            (r = workq_new(c->base, c->opts.workers, &c->wq)) < 0) {
                free(x);
                return r;
        }
        x->c = c;
        x->req = *req;
        x->deferred = req->sink && req->sha256 && c->wq;
        if (!x->req.max_body)
                x->req.max_body = S3_DEFAULT_MAX_BODY;
        x->done = done;
        x->userdata = userdata;
        x->next = c->xfers;
        if (x->next)
                x->next->pprev = &x->next;
        x->pprev = &c->xfers;
        c->xfers = x;
        x->method = strdup(req->method);
        x->url = c->gateway ? s3_gateway_url(l, req->key, req->query ? req->query : "")
                            : s3_url(l, req->key, req->query ? req->query : "");
        x->retry_ev = evtimer_new(c->base, on_retry, x);
        if (req->sha256)
                x->sha = EVP_MD_CTX_new();
        r = !x->method || !x->url || !x->retry_ev || (req->sha256 && !x->sha) ? -ENOMEM : 0;
        if (r == 0)
                r = setup(x, l);
        if (r == 0)
                r = attempt(x);
        if (r < 0) {
                xfer_free(x);
                return r;
        }
        if (ret)
                *ret = x;
        return 0;
}

void s3_cancel(struct s3_xfer *x)
{
        if (x)
                xfer_free(x);
}

void s3_resume(struct s3_xfer *x)
{
        x->full = false;
        if (x->paused && x->in_multi) {
                x->paused = false;
                curl_easy_pause(x->easy, CURLPAUSE_CONT);
        }
}

static bool retryable_curl(CURLcode cc)
{
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return true;
        default:
                return false;
        }
}

static int status_errno(long status)
{
        switch (status) {
        case 404:
                return -ENOENT;
        case 403:
                return -EACCES;
        case 416:
                return -ERANGE;
        case 412:
        case 409:
                return -EEXIST;
        default:
                return status >= 500 ? -EAGAIN : -EINVAL;
        }
}

static void set_sha256(struct s3_resp *rs, const unsigned char md[32])
{
        static const char hex[] = "0123456789abcdef";

        for (unsigned i = 0; i < 32; i++) {
                rs->sha256[2 * i] = hex[md[i] >> 4];
                rs->sha256[2 * i + 1] = hex[md[i] & 15];
        }
        rs->sha256[64] = 0;
}

/* The transfer is over, for good: tell its owner, then free it. */
static void complete(struct s3_xfer *x)
{
        struct s3_resp *rs = &x->resp;

        if (rs->r < 0)
                x->c->stats.failures++;
        rs->body = x->body && x->len ? x->body : "";
        rs->body_len = x->len;
        x->done(rs, x->userdata);
        xfer_free(x);
}

/* On a worker: hash what the sink wrote, read back in blocks that stay in the CPU's cache. */
static void sink_run(struct work *w)
{
        struct sink_job *j = (struct sink_job *)w;
        char buf[S3_HASH_BLOCK];

        for (uint64_t done = 0; done < j->len;) {
                size_t want = j->len - done < sizeof(buf) ? (size_t)(j->len - done) : sizeof(buf);
                ssize_t k = pread(j->fd, buf, want, (off_t)(j->off + done));

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        j->err = k < 0 ? errno : EIO; /* EIO: the file is shorter */
                        return;
                }
                EVP_DigestUpdate(j->sha, buf, (size_t)k);
                done += (uint64_t)k;
        }
        EVP_DigestFinal_ex(j->sha, j->md, NULL);
}

/* On the loop: the worker is done. */
static void sink_done(struct work *w)
{
        struct s3_xfer *x = (struct s3_xfer *)((char *)w - offsetof(struct s3_xfer, job.w));
        struct s3_resp *rs = &x->resp;

        x->job_out = false;
        if (x->job.err) {
                rs->r = -x->job.err;
                snprintf(rs->error, sizeof(rs->error), "read back: %s", strerror(x->job.err));
        } else {
                set_sha256(rs, x->job.md);
        }
        complete(x);
}

/* The whole answer is in the file: a worker hashes it. */
static void sink_submit(struct s3_xfer *x)
{
        x->job = (struct sink_job){
            .fd = x->req.sink_fd, .off = x->req.sink_off, .len = x->len, .sha = x->sha};
        x->job_out = true;
        workq_submit(x->c->wq, &x->job.w, sink_run, sink_done);
}

/* The attempt finished: success, final failure, or a retry after a jittered wait. */
static void finish_attempt(struct s3_xfer *x, CURLcode cc)
{
        struct s3_client *c = x->c;
        struct s3_resp *rs = &x->resp;
        bool retry = false;
        char code[64] = "", msg[256] = "";

        curl_multi_remove_handle(c->multi, x->easy);
        x->in_multi = false;
        rs->r = 0;
        rs->error[0] = 0;
        if (cc != CURLE_OK) {
                if (x->sink_errno) {
                        rs->r = -x->sink_errno;
                        snprintf(rs->error, sizeof(rs->error), "write: %s",
                                 strerror(x->sink_errno));
                } else if (x->stream_errno) {
                        rs->r = -x->stream_errno;
                        snprintf(rs->error, sizeof(rs->error), "stream: %s",
                                 strerror(x->stream_errno));
                } else if (x->too_big) {
                        rs->r = -EFBIG;
                        snprintf(rs->error, sizeof(rs->error), "answer over %zu bytes",
                                 x->req.max_body);
                } else {
                        curl_off_t us = 0;

                        rs->r = -EIO;
                        /* what was handed on cannot be taken back */
                        retry = retryable_curl(cc) && !x->streamed;
                        snprintf(rs->error, sizeof(rs->error), "%s", curl_easy_strerror(cc));
                        curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us);
                        if (cc == CURLE_OPERATION_TIMEDOUT && x->deadline_ms &&
                            (uint64_t)us / 1000 >= x->deadline_ms)
                                snprintf(rs->error, sizeof(rs->error),
                                         "%s: not over within its deadline of %llu ms (%zu bytes "
                                         "received)",
                                         curl_easy_strerror(cc), (unsigned long long)x->deadline_ms,
                                         x->len);
                }
        } else if (rs->status / 100 != 2) {
                s3_error_parse(x->body ? x->body : "", x->len, code, sizeof(code), msg,
                               sizeof(msg));
                rs->r = status_errno(rs->status);
                retry = rs->status >= 500 || rs->status == 429 || !strcmp(code, "SlowDown") ||
                        !strcmp(code, "RequestTimeout") || !strcmp(code, "Throttling");
                if (!code[0] && rs->status == 403) /* HEAD answers carry no body */
                        snprintf(code, sizeof(code), "Forbidden");
                if (!msg[0] && rs->status == 403)
                        snprintf(msg, sizeof(msg),
                                 "check the credentials, the region and the "
                                 "clock, and the bucket's permissions");
                snprintf(rs->error, sizeof(rs->error), "HTTP %ld%s%s%s%s", rs->status,
                         code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
        } else if (strcmp(x->method, "HEAD") == 0) {
                curl_off_t cl = -1;
                curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
                rs->content_length = cl >= 0 ? (uint64_t)cl : 0;
        }
        if (rs->r < 0 && retry && rs->attempts <= c->opts.retries) {
                uint64_t cap = (uint64_t)c->opts.backoff_ms
                               << (rs->attempts < 16 ? rs->attempts - 1 : 15);
                uint32_t ms;

                if (cap > c->opts.backoff_max_ms)
                        cap = c->opts.backoff_max_ms;
                ms = (uint32_t)(rng_next(c) % (cap + 1)); /* full jitter */
                c->stats.retries++;
                op_timer_arm_ms(x->retry_ev, ms);
                return;
        }
        if (rs->r == 0 && x->deferred) {
                sink_submit(x);
                return;
        }
        if (rs->r == 0 && x->sha) {
                unsigned char md[32];

                EVP_DigestFinal_ex(x->sha, md, NULL);
                set_sha256(rs, md);
        }
        complete(x);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
        struct s3_xfer *x = arg;

        if (attempt(x) < 0) {
                x->resp.r = -ENOMEM;
                snprintf(x->resp.error, sizeof(x->resp.error), "cannot start a retry");
                x->len = 0;
                complete(x);
        }
}

static void on_done(CURL *easy, CURLcode cc, void *userdata)
{
        struct s3_xfer *x = NULL;

        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        if (x)
                finish_attempt(x, cc);
}

struct waiter {
        bool done;
        struct s3_resp *resp;
        char **body;
};

static void on_wait_done(const struct s3_resp *resp, void *userdata)
{
        struct waiter *w = userdata;

        *w->resp = *resp;
        w->resp->body = NULL;
        if (w->body) {
                *w->body = malloc(resp->body_len + 1);
                if (*w->body) {
                        memcpy(*w->body, resp->body, resp->body_len);
                        (*w->body)[resp->body_len] = 0;
                }
        }
        w->done = true;
}

int s3_request_wait(struct s3_client *c, const struct s3_location *l, const struct s3_req *req,
                    struct s3_resp *ret, char **ret_body)
{
        struct waiter w = {.resp = ret, .body = ret_body};
        int r;

        if (ret_body)
                *ret_body = NULL;
        r = s3_start(c, l, req, on_wait_done, &w, NULL);
        if (r < 0)
                return r;
        while (!w.done)
                event_base_loop(c->base, EVLOOP_ONCE);
        return ret->r;
}
