/* http-upstream.h: the S3 stand-in of the S3 client's unit tests: libevent's evhttp on a free
 * loopback port of the test's loop, with a location ("bucket", path style) that points at it. */
#pragma once

#include <arpa/inet.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

#include "s3-auth.h"

static inline struct evhttp *http_upstream_start(struct event_base *base,
                                                 void (*cb)(struct evhttp_request *, void *),
                                                 void *arg, struct s3_location *loc)
{
        struct evhttp *http = evhttp_new(base);
        struct evhttp_bound_socket *bs;
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        char endpoint[64], err[256];

        assert_non_null(http);
        evhttp_set_gencb(http, cb, arg);
        bs = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
        assert_non_null(bs);
        assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl),
                         0);
        snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", ntohs(sa.sin_port));
        assert_int_equal(
            s3_location_init(loc, "bucket", "us-east-1", endpoint, true, err, sizeof(err)), 0);
        return http;
}
