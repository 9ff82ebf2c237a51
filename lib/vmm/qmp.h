/* qmp.h: an asynchronous QMP (QEMU Machine Protocol) client on a libevent loop: the greeting
 * and capabilities handshake, commands answered in order through callbacks, and events. */
#pragma once

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define QMP_LINE_MAX    (1024 * 1024)
#define QMP_PENDING_MAX 64

struct qmp;

/* A command's answer: ret is the "return" value on success (borrowed), or NULL with err set
 * to a human message ("GenericError: ...") when QEMU refused it or the channel broke. */
typedef void (*qmp_reply_fn)(struct qmp *q, json_t *ret, const char *err, void *userdata);
/* An asynchronous event such as {"event": "MIGRATION", "data": {...}} (borrowed). */
typedef void (*qmp_event_fn)(struct qmp *q, const char *name, json_t *data, void *userdata);
/* The channel is unusable (EOF, error, malformed input). */
typedef void (*qmp_broken_fn)(struct qmp *q, const char *why, void *userdata);

/* Take ownership of fd (a connected stream to QEMU's QMP monitor). The capabilities handshake
 * is sent at once; commands issued before it completes wait in order. */
int qmp_new(struct event_base *base, int fd, qmp_event_fn on_event, qmp_broken_fn on_broken,
            void *userdata, struct qmp **ret);
struct qmp *qmp_free(struct qmp *q);

/* Send {"execute": cmd, "arguments": args}. args may be NULL; the reference is taken. */
int qmp_command(struct qmp *q, const char *cmd, json_t *args, qmp_reply_fn cb, void *userdata);

/* The same with fd passed along (SCM_RIGHTS) for QEMU to take, as "getfd" and "add-fd" do;
 * the caller keeps its own fd. Output still queued is written first: -EAGAIN when the socket
 * cannot take it now. */
int qmp_command_fd(struct qmp *q, const char *cmd, json_t *args, int fd, qmp_reply_fn cb,
                   void *userdata);

/* Parse one QMP line; pure, for tests and fuzzing. Returns 0 and a new reference, or -EBADMSG. */
int qmp_parse_line(const char *line, size_t len, json_t **ret);

/* What a parsed QMP message says, read without any client state (pure; fuzzed by
 * tests/fuzz/fuzz-qmp.c). Pointers are borrowed from the message. */
#define QMP_ERROR_MAX 512
struct qmp_msg {
        bool greeting;                  /* has "QMP": the server's greeting */
        const char *event;              /* "event" when it is a string: an asynchronous event */
        json_t *data;                   /* the event's "data", or NULL */
        json_t *ret;                    /* "return": a command's success, or NULL */
        bool error;                     /* "error": a command's failure */
        bool has_id;                    /* "id" is an integer */
        uint64_t id;                    /* then its value (as sent: the command's number) */
        char error_text[QMP_ERROR_MAX]; /* with error: "Class: desc" */
};
void qmp_msg_read(json_t *msg, struct qmp_msg *ret);
