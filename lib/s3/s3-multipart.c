/* s3-multipart.c: one file to one object: a single PUT, or S3's multipart upload with its parts
 * in parallel (each read from the file at its offset, each signed with its own sha256) and an
 * abort on any failure. */
#include "s3-multipart.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "s3-list.h"
#include "util.h"

int s3_part_plan(uint64_t size, uint64_t part_size, struct s3_part_plan *ret)
{
        uint64_t need = (size + S3_PARTS_MAX - 1) / S3_PARTS_MAX, n;

        if (part_size < S3_PART_MIN || part_size > S3_PART_MAX)
                return -EINVAL;
        need = (need + (1u << 20) - 1) & ~((uint64_t)(1u << 20) - 1);
        if (need > part_size)
                part_size = need;
        if (part_size > S3_PART_MAX)
                return -EFBIG;
        n = size ? (size + part_size - 1) / part_size : 1;
        ret->part_size = part_size;
        ret->n_parts = (uint32_t)n;
        return 0;
}

static bool etag_valid(const char *e)
{
        if (!*e)
                return false;
        for (; *e; e++)
                if (!((*e >= '0' && *e <= '9') || (*e >= 'a' && *e <= 'z') ||
                      (*e >= 'A' && *e <= 'Z') || *e == '-'))
                        return false;
        return true;
}

char *s3_complete_xml(const char (*etags)[S3_ETAG_MAX], uint32_t n)
{
        static const char head[] = "<CompleteMultipartUpload>",
                          tail[] = "</CompleteMultipartUpload>";
        size_t cap = sizeof(head) + sizeof(tail) + (size_t)n * (64 + S3_ETAG_MAX), o;
        char *out;

        if (n == 0 || n > S3_PARTS_MAX)
                return NULL;
        for (uint32_t i = 0; i < n; i++)
                if (!etag_valid(etags[i]))
                        return NULL;
        out = malloc(cap);
        if (!out)
                return NULL;
        o = (size_t)snprintf(out, cap, "%s", head);
        for (uint32_t i = 0; i < n; i++)
                o += (size_t)snprintf(out + o, cap - o,
                                      "<Part><PartNumber>%" PRIu32
                                      "</PartNumber><ETag>\"%s\"</ETag></Part>",
                                      i + 1, etags[i]);
        snprintf(out + o, cap - o, "%s", tail);
        return out;
}

/* A whole small file in one PUT. */
static int put_single(struct s3_client *c, const struct s3_location *l, const char *key, int fd,
                      uint64_t size, struct s3_put_stats *st, char *errbuf, size_t errlen)
{
        _cleanup_free_ char *data = malloc(size ? size : 1);
        struct s3_req req = {.method = "PUT", .key = key};
        struct s3_resp resp;
        int r;

        if (!data)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        if (pread(fd, data, size, 0) != (ssize_t)size)
                return op_errf(errbuf, errlen, -EIO, "reading %s: short read", key);
        req.body = data;
        req.body_len = size;
        r = s3_request_wait(c, l, &req, &resp, NULL);
        if (r < 0)
                return op_errf(errbuf, errlen, r, "PUT %s: %s", key, resp.error);
        st->objects++;
        st->bytes += size;
        return 0;
}

struct mp {
        struct s3_client *c;
        const struct s3_location *l;
        const char *key;
        const char *upload_id;
        int fd;
        uint64_t size;
        struct s3_part_plan plan;
        char (*etags)[S3_ETAG_MAX];
        uint32_t next, inflight, parallel;
        struct s3_put_stats *st;
        int r;
        char *errbuf;
        size_t errlen;
};

struct mp_part {
        struct mp *mp;
        uint32_t index;
        char *data;
        char *query;
};

static void mp_next(struct mp *mp);

static void mp_part_free(struct mp_part *p)
{
        free(p->data);
        free(p->query);
        free(p);
}

static void on_part(const struct s3_resp *resp, void *userdata)
{
        struct mp_part *p = userdata;
        struct mp *mp = p->mp;

        mp->inflight--;
        if (resp->r < 0 && mp->r == 0)
                mp->r = op_errf(mp->errbuf, mp->errlen, resp->r, "UploadPart %" PRIu32 " of %s: %s",
                                p->index + 1, mp->key, resp->error);
        else if (resp->r == 0 && !etag_valid(resp->etag) && mp->r == 0)
                mp->r = op_errf(mp->errbuf, mp->errlen, -EBADMSG,
                                "UploadPart %" PRIu32 " of %s: no usable ETag in the answer",
                                p->index + 1, mp->key);
        else if (resp->r == 0) {
                snprintf(mp->etags[p->index], S3_ETAG_MAX, "%s", resp->etag);
                mp->st->parts++;
        }
        mp_part_free(p);
        mp_next(mp);
}

static int part_start(struct mp *mp, uint32_t i)
{
        uint64_t off = (uint64_t)i * mp->plan.part_size;
        size_t len =
            (size_t)(mp->size - off < mp->plan.part_size ? mp->size - off : mp->plan.part_size);
        struct mp_part *p = calloc(1, sizeof(*p));
        const char *names[] = {"partNumber", "uploadId"};
        char num[16];
        const char *values[] = {num, mp->upload_id};
        struct s3_req req = {.method = "PUT", .key = mp->key};
        int r;

        if (!p)
                return -ENOMEM;
        p->mp = mp;
        p->index = i;
        snprintf(num, sizeof(num), "%" PRIu32, i + 1);
        p->query = s3_query(names, values, 2);
        p->data = malloc(len ? len : 1);
        if (!p->query || !p->data) {
                mp_part_free(p);
                return -ENOMEM;
        }
        if (pread(mp->fd, p->data, len, (off_t)off) != (ssize_t)len) {
                mp_part_free(p);
                return -EIO;
        }
        req.query = p->query;
        req.body = p->data;
        req.body_len = len;
        r = s3_start(mp->c, mp->l, &req, on_part, p, NULL);
        if (r < 0) {
                mp_part_free(p);
                return r;
        }
        mp->st->bytes += len;
        return 0;
}

static void mp_next(struct mp *mp)
{
        while (mp->r == 0 && mp->next < mp->plan.n_parts && mp->inflight < mp->parallel) {
                uint32_t i = mp->next++;
                int r = part_start(mp, i);

                if (r < 0) {
                        mp->r =
                            op_errf(mp->errbuf, mp->errlen, r, "UploadPart %" PRIu32 " of %s: %s",
                                    i + 1, mp->key, strerror(-r));
                        return;
                }
                mp->inflight++;
        }
}

static char *upload_query(const char *upload_id)
{
        const char *names[] = {"uploadId"}, *values[] = {upload_id};

        return s3_query(names, values, 1);
}

/* POST ?uploadId= with the part list. S3 may answer 200 and send an <Error> after it: a
 * failure, retried (like a 5xx) when S3 says it is its own (InternalError, SlowDown). */
static int mp_complete(struct mp *mp)
{
        _cleanup_free_ char *xml =
            s3_complete_xml((const char(*)[S3_ETAG_MAX])mp->etags, mp->plan.n_parts);
        _cleanup_free_ char *query = upload_query(mp->upload_id);
        struct s3_req req = {.method = "POST",
                             .key = mp->key,
                             .max_body = S3_MULTIPART_ANSWER_MAX,
                             .content_type = "application/xml"};
        int r = -EIO;

        if (!xml || !query)
                return op_errf(mp->errbuf, mp->errlen, -ENOMEM,
                               "CompleteMultipartUpload %s: cannot build the part list", mp->key);
        req.query = query;
        req.body = xml;
        req.body_len = strlen(xml);
        for (unsigned attempt = 0; attempt < 3; attempt++) {
                _cleanup_free_ char *body = NULL;
                struct s3_resp resp;
                char code[64], msg[256];

                r = s3_request_wait(mp->c, mp->l, &req, &resp, &body);
                if (r < 0)
                        return op_errf(mp->errbuf, mp->errlen, r, "CompleteMultipartUpload %s: %s",
                                       mp->key, resp.error);
                r = s3_complete_parse(body ? body : "", resp.body_len, code, sizeof(code), msg,
                                      sizeof(msg));
                if (r == 0)
                        return 0;
                if (r != -EIO)
                        return op_errf(mp->errbuf, mp->errlen, -EBADMSG,
                                       "CompleteMultipartUpload %s: unreadable answer", mp->key);
                op_errf(mp->errbuf, mp->errlen, r,
                        "CompleteMultipartUpload %s: HTTP 200 with an error: %s: %s", mp->key, code,
                        msg);
                if (strcmp(code, "InternalError") != 0 && strcmp(code, "SlowDown") != 0)
                        break;
        }
        return r;
}

/* DELETE ?uploadId=: S3 drops the parts stored so far. Says in the message how it went. */
static void mp_abort(struct mp *mp)
{
        _cleanup_free_ char *query = upload_query(mp->upload_id);
        struct s3_req req = {.method = "DELETE", .key = mp->key, .query = query};
        struct s3_resp resp = {.error = "out of memory"};
        size_t n = strlen(mp->errbuf);
        int r = query ? s3_request_wait(mp->c, mp->l, &req, &resp, NULL) : -ENOMEM;

        if (r == 0)
                mp->st->aborted++;
        if (n + 1 >= mp->errlen)
                return;
        if (r == 0)
                snprintf(mp->errbuf + n, mp->errlen - n, "; upload %s aborted", mp->upload_id);
        else
                snprintf(mp->errbuf + n, mp->errlen - n,
                         "; abort of upload %s failed (%s): its parts stay stored until `aws "
                         "s3api abort-multipart-upload` or a lifecycle rule removes them",
                         mp->upload_id, resp.error);
}

static int put_multipart(struct s3_client *c, const struct s3_location *l, const char *key, int fd,
                         uint64_t size, const struct s3_put_opts *o, struct s3_put_stats *st,
                         char *errbuf, size_t errlen)
{
        const char *names[] = {"uploads"}, *values[] = {NULL};
        _cleanup_free_ char *query = s3_query(names, values, 1), *body = NULL;
        struct s3_req req = {.method = "POST", .key = key, .max_body = S3_MULTIPART_ANSWER_MAX};
        struct s3_resp resp;
        char id[S3_UPLOAD_ID_MAX + 1], code[64], msg[256];
        struct mp mp = {.c = c,
                        .l = l,
                        .key = key,
                        .upload_id = id,
                        .fd = fd,
                        .size = size,
                        .parallel = o->parallel ? o->parallel : 1,
                        .st = st,
                        .errbuf = errbuf,
                        .errlen = errlen};
        int r;

        r = s3_part_plan(size, o->part_size, &mp.plan);
        if (r < 0)
                return op_errf(errbuf, errlen, r, "%s: no part size fits %" PRIu64 " bytes", key,
                               size);
        if ((uint64_t)mp.parallel * mp.plan.part_size > S3_PARTS_INFLIGHT_BYTES)
                mp.parallel = (uint32_t)(S3_PARTS_INFLIGHT_BYTES / mp.plan.part_size);
        if (mp.parallel == 0)
                mp.parallel = 1;
        if (!query)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        req.query = query;
        r = s3_request_wait(c, l, &req, &resp, &body);
        if (r < 0)
                return op_errf(errbuf, errlen, r, "CreateMultipartUpload %s: %s", key, resp.error);
        r = s3_upload_id_parse(body ? body : "", resp.body_len, id, sizeof(id), code, sizeof(code),
                               msg, sizeof(msg));
        if (r == -EIO)
                return op_errf(errbuf, errlen, r, "CreateMultipartUpload %s: %s: %s", key, code,
                               msg);
        if (r < 0)
                return op_errf(errbuf, errlen, -EBADMSG,
                               "CreateMultipartUpload %s: no usable UploadId in the answer", key);
        mp.etags = calloc(mp.plan.n_parts, sizeof(*mp.etags));
        if (!mp.etags)
                mp.r = op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        mp_next(&mp);
        while (mp.inflight > 0)
                event_base_loop(s3_client_base(c), EVLOOP_ONCE);
        r = mp.r;
        if (r == 0)
                r = mp_complete(&mp);
        free(mp.etags);
        if (r < 0) {
                mp_abort(&mp);
                return r;
        }
        st->objects++;
        st->multipart++;
        return 0;
}

int s3_put_file(struct s3_client *c, const struct s3_location *l, const char *key, int dirfd,
                const char *name, uint64_t size, const struct s3_put_opts *o,
                struct s3_put_stats *st, char *errbuf, size_t errlen)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

        if (o->threshold < S3_PART_MIN || o->threshold > S3_PART_MAX)
                return op_errf(errbuf, errlen, -EINVAL,
                               "multipart threshold %" PRIu64 " out of %llu..%llu", o->threshold,
                               S3_PART_MIN, S3_PART_MAX);
        if (fd < 0)
                return op_errf(errbuf, errlen, -errno, "%s: %s", name, strerror(errno));
        if (size < o->threshold)
                return put_single(c, l, key, fd, size, st, errbuf, errlen);
        return put_multipart(c, l, key, fd, size, o, st, errbuf, errlen);
}
