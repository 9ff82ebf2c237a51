/* evframe.h: frames on libevent buffers: take one JSON object off an input evbuffer, put one
 * on an output evbuffer. The framing rules themselves are proto/frame.h's. */
#pragma once

#include <event2/buffer.h>
#include <jansson.h>
#include <stddef.h>

/* 1: one object taken off `in` (*ret_obj new reference); 0: need more bytes (nothing taken);
 * -EMSGSIZE: the next frame is over max (nothing taken; the stream cannot be resynchronised);
 * -EBADMSG: one frame was taken off but is not a JSON object, or could hold more than values_max
 * JSON values (op_parse_object_max(); message in errbuf). */
int evframe_next(struct evbuffer *in, size_t max, size_t values_max, json_t **ret_obj, char *errbuf,
                 size_t errlen);

/* 1 when `in` holds the start of a frame that is not complete yet. */
int evframe_partial(struct evbuffer *in);

/* 1 when `in` holds at least one whole frame (header and payload), which evframe_next() takes. */
int evframe_complete(struct evbuffer *in);

/* Frames up to this many bytes are copied into the output buffer; a larger one is handed to
 * it as it was encoded (evbuffer_add_reference()), its allocation cut to its length. Either
 * way what a queued frame holds is proportional to its length. */
#define EVFRAME_COPY_MAX 4096

/* Append obj as one frame. Does not take the reference. */
int evframe_add(struct evbuffer *out, json_t *obj, size_t max);
