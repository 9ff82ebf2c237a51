/* test-s3-remote-list.c: `opctl snapshot list --remote` (s3_remote_list()) against a bucket that
 * never ends, a real HTTP server on loopback (libevent's evhttp, on the same loop): a listing
 * whose every page says there is another, of languages or of one language's versions, is read up
 * to S3_REMOTE_LIST_PAGES_MAX pages or S3_REMOTE_LIST_ENTRIES_MAX entries in all and refused with
 * -E2BIG naming what was too much; a bucket within the bounds is listed whole. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "cleanup.h"
#include "http-upstream.h"
#include "s3-publish.h"
#include "s3.h"

enum bucket {
        LANGS_ENDLESS,    /* every page of languages says there is another */
        VERSIONS_ENDLESS, /* one language, its versions' pages never end */
        VERSIONS_MANY,    /* one language, 1000 versions on every page, never ending */
        SMALL,            /* two languages, three versions in all */
};

#define ITEMS_MAX (1 << 18) /* a page's entries as text */

struct fixture {
        struct event_base *base;
        struct evhttp *http;
        struct s3_location loc;
        struct s3_client *client;
        enum bucket bucket;
        unsigned lists; /* listing requests answered */
};

static void page(struct evbuffer *out, const char *items, unsigned next)
{
        evbuffer_add_printf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>%s",
                            items);
        if (next)
                evbuffer_add_printf(out,
                                    "<IsTruncated>true</IsTruncated><NextContinuationToken>t%u"
                                    "</NextContinuationToken>",
                                    next);
        else
                evbuffer_add_printf(out, "<IsTruncated>false</IsTruncated>");
        evbuffer_add_printf(out, "</ListBucketResult>");
}

static unsigned token_of(struct evkeyvalq *q)
{
        const char *t = evhttp_find_header(q, "continuation-token");
        unsigned n = 0;

        if (t && sscanf(t, "t%u", &n) != 1)
                n = 0;
        return n;
}

static void on_request(struct evhttp_request *req, void *arg)
{
        struct fixture *f = arg;
        struct evbuffer *out = evhttp_request_get_output_buffer(req);
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *query = evhttp_uri_get_query(uri), *prefix;
        struct evkeyvalq q = {0};
        _cleanup_free_ char *items = malloc(ITEMS_MAX);
        size_t len = 0;
        unsigned next;

        assert_non_null(items);
        if (!query || evhttp_parse_query_str(query, &q) < 0 ||
            !(prefix = evhttp_find_header(&q, "prefix"))) {
                /* a language's current: none */
                evhttp_clear_headers(&q);
                evbuffer_add_printf(out, "<Error><Code>NoSuchKey</Code></Error>");
                evhttp_send_reply(req, 404, "Not Found", NULL);
                return;
        }
        f->lists++;
        next = token_of(&q) + 1;
        items[0] = 0;
        if (strcmp(prefix, "snap/") == 0) {
                if (f->bucket == LANGS_ENDLESS)
                        len += (size_t)snprintf(items, ITEMS_MAX,
                                                "<CommonPrefixes><Prefix>snap/l%u/</Prefix>"
                                                "</CommonPrefixes>",
                                                next);
                else if (f->bucket == SMALL)
                        snprintf(items, ITEMS_MAX,
                                 "<CommonPrefixes><Prefix>snap/a/</Prefix></CommonPrefixes>"
                                 "<CommonPrefixes><Prefix>snap/b/</Prefix></CommonPrefixes>");
                else
                        snprintf(items, ITEMS_MAX,
                                 "<CommonPrefixes><Prefix>snap/a/</Prefix></CommonPrefixes>");
                page(out, items, f->bucket == LANGS_ENDLESS ? next : 0);
        } else if (f->bucket == VERSIONS_ENDLESS || f->bucket == VERSIONS_MANY) {
                for (unsigned i = 0; f->bucket == VERSIONS_MANY && i < 1000; i++)
                        len += (size_t)snprintf(items + len, ITEMS_MAX - len,
                                                "<Contents><Key>%sv%u-%u.json</Key><Size>1"
                                                "</Size></Contents>",
                                                prefix, next, i);
                page(out, items, next);
        } else if (f->bucket == SMALL) {
                if (strcmp(prefix, "snap/a/versions/") == 0)
                        snprintf(items, ITEMS_MAX,
                                 "<Contents><Key>snap/a/versions/v1.json</Key><Size>1</Size>"
                                 "</Contents><Contents><Key>snap/a/versions/v2.json</Key>"
                                 "<Size>1</Size></Contents>");
                else
                        snprintf(items, ITEMS_MAX,
                                 "<Contents><Key>snap/b/versions/w1.json</Key><Size>1</Size>"
                                 "</Contents>");
                page(out, items, 0);
        } else {
                page(out, "", 0);
        }
        evhttp_clear_headers(&q);
        evhttp_send_reply(req, 200, "OK", NULL);
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct s3_creds creds = {.key_id = "AKIDEXAMPLE", .secret = "secret"};
        struct s3_client_opts o = S3_CLIENT_OPTS_DEFAULT;

        assert_non_null(f);
        f->base = event_base_new();
        assert_non_null(f->base);
        f->http = http_upstream_start(f->base, on_request, f, &f->loc);
        o.retries = 0;
        assert_int_equal(s3_client_new(f->base, &creds, &o, &f->client), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        s3_client_free(f->client);
        s3_location_free(&f->loc);
        evhttp_free(f->http);
        event_base_free(f->base);
        free(f);
        return 0;
}

static int list(struct fixture *f, enum bucket b, json_t **ret, char *err, size_t errlen)
{
        f->bucket = b;
        f->lists = 0;
        *ret = NULL;
        return s3_remote_list(f->client, &f->loc, "snap/", ret, err, errlen);
}

static void test_languages_without_end(void **state)
{
        struct fixture *f = *state;
        char err[512] = "";
        json_t *out;

        assert_int_equal(list(f, LANGS_ENDLESS, &out, err, sizeof(err)), -E2BIG);
        assert_null(out);
        assert_non_null(strstr(err, "more pages than the listing may read in all"));
        assert_int_equal(f->lists, S3_REMOTE_LIST_PAGES_MAX);
}

static void test_versions_without_end(void **state)
{
        struct fixture *f = *state;
        char err[512] = "";
        json_t *out;

        assert_int_equal(list(f, VERSIONS_ENDLESS, &out, err, sizeof(err)), -E2BIG);
        assert_null(out);
        assert_non_null(strstr(err, "snap/a/versions/"));
        assert_int_equal(f->lists, S3_REMOTE_LIST_PAGES_MAX);
}

static void test_too_many_versions(void **state)
{
        struct fixture *f = *state;
        char err[512] = "";
        json_t *out;

        assert_int_equal(list(f, VERSIONS_MANY, &out, err, sizeof(err)), -E2BIG);
        assert_null(out);
        assert_non_null(strstr(err, "languages and versions"));
        /* the language, then 1000 versions a page */
        assert_int_equal(f->lists, 1 + S3_REMOTE_LIST_ENTRIES_MAX / 1000);
}

static void test_small_bucket_whole(void **state)
{
        struct fixture *f = *state;
        char err[512] = "";
        json_t *out, *a, *b;

        assert_int_equal(list(f, SMALL, &out, err, sizeof(err)), 0);
        a = json_object_get(json_object_get(out, "a"), "versions");
        b = json_object_get(json_object_get(out, "b"), "versions");
        assert_int_equal(json_array_size(a), 2);
        assert_string_equal(json_string_value(json_array_get(a, 1)), "v2");
        assert_int_equal(json_array_size(b), 1);
        assert_true(json_is_null(json_object_get(json_object_get(out, "a"), "current")));
        json_decref(out);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_languages_without_end, setup, teardown),
            cmocka_unit_test_setup_teardown(test_versions_without_end, setup, teardown),
            cmocka_unit_test_setup_teardown(test_too_many_versions, setup, teardown),
            cmocka_unit_test_setup_teardown(test_small_bucket_whole, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
