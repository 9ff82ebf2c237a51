/* curl-ev.h: a libcurl multi handle driven by a libevent loop. curl says which sockets and
 * timeouts to watch, the loop tells curl when they fire, and every finished easy handle is
 * handed to one callback with its CURLcode. */
#pragma once

#include <curl/curl.h>
#include <event2/event.h>

#include "cleanup.h"

struct curl_ev;

/* One finished transfer. The handle is still in the multi handle; the callback removes it
 * (and may add others, or call curl_ev_free()). */
typedef void (*curl_ev_done_fn)(CURL *easy, CURLcode result, void *userdata);

int curl_ev_new(struct event_base *base, curl_ev_done_fn done, void *userdata,
                struct curl_ev **ret);
/* Safe from inside the done callback: the object goes once the callback returns. */
void curl_ev_free(struct curl_ev *ce);
/* The multi handle, owned by ce: add and remove easy handles, set options. */
CURLM *curl_ev_multi(const struct curl_ev *ce);
/* Make easy's sockets close-on-exec from birth (libcurl does not): a VMM started meanwhile must
 * not inherit a connection. */
void curl_ev_cloexec(CURL *easy);

DEFINE_POINTER_CLEANUP(struct curl_ev *, curl_ev_free)
