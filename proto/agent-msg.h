/* agent-msg.h: what op-agent sends opd, as C values: the ready event, streamed output events and
 * the answers to exec, ping, warm and prime. Pure code on top of jansson: the guest encodes with
 * it; opd decodes with it, bounded by the request's own limits (the guest is hostile once user
 * code ran). Every message is specified in docs/protocol.md ("Agent channel"). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

#define OP_AGENT_VERSION_MAX 31 /* bytes of agent_version: printable ASCII */
/* The first agent_version whose "prime" starts the language's runner itself ("runner"). */
#define OP_AGENT_VERSION_RUNNER "0.4.0"
/* The first agent that takes "timing" in an exec job and answers with "agent_ms". */
#define OP_AGENT_VERSION_TIMING "0.7.0"
/* The first agent that starts a session's next runner after a call ("next_runner"). */
#define OP_AGENT_VERSION_NEXT_RUNNER "0.6.0"
#define OP_AGENT_MESSAGE_MAX         8192
#define OP_AGENT_MS_MAX              (7.0 * 24 * 3600 * 1000) /* any time in ms: 7 days */
#define OP_AGENT_MEMORY_MAX          (1ULL << 40)             /* memory_peak_bytes: 1 TiB */
#define OP_AGENT_PID_MAX             (1 << 22)
#define OP_AGENT_FILES_MAX           1024
/* The longest deadline ("timeout_ms") the agent takes for a job: exec, warm or prime. */
#define OP_AGENT_TIMEOUT_MS_MAX 600000
/* The frame cap for everything but an exec's answer and events: ready, ping, warm, prime, and
 * an error answer to any of them. */
#define OP_AGENT_FRAME_SMALL (64u * 1024u)
/* What an exec answer carries beyond its byte strings (numbers, names, an error message). */
#define OP_AGENT_FRAME_SLACK (64u * 1024u)

/* The operation opd sent: what its answer must look like. */
enum op_agent_op {
        OP_AGENT_OP_EXEC,
        OP_AGENT_OP_PING,
        OP_AGENT_OP_WARM,
        OP_AGENT_OP_PRIME,
};

/* What the request sent to the agent allows its answer and events to hold. */
struct op_agent_limits {
        enum op_agent_op op;
        size_t output_max; /* bytes per stream of the run */
        bool stream;       /* output events allowed (and counted by the caller) */
        /* the names "files" must hold, in this order; NULL: the answer has no "files" */
        const char *const *output_files;
        size_t n_output_files;
        size_t output_file_max; /* bytes per output file */
        bool compile;           /* the job had a compile phase: the answer has "compile" */
        size_t compile_output_max;
        bool timing; /* the job asked for "timing": the answer may have "agent_ms" */
};

/* Bytes: data is malloc'd and NUL-ended when decoded; only read when encoded. */
struct op_agent_bytes {
        char *data;
        size_t len;
};

/* The most segments in an output order (below). */
#define OP_AGENT_ORDER_MAX 1024

/* One run of bytes that the agent read from one stream of the program. */
struct op_agent_segment {
        int stream; /* 1: stdout, 2: stderr */
        size_t len; /* at least 1 */
};

/* How a program's stdout and stderr interleaved ("output_order", "output_order_partial"): the
 * segments in the order the agent read them, adjacent ones of different streams, whose lengths
 * add up to exactly the bytes of each stream. When the program switched streams more often than
 * the cap allows, partial is set: the segments up to OP_AGENT_ORDER_MAX - 2 are in read order,
 * then come (at most) one segment with the rest of stdout and one with the rest of stderr. */
struct op_agent_order {
        bool known; /* false: no order (an agent that predates it, or output that was streamed) */
        bool partial;
        struct op_agent_segment *seg; /* malloc'd */
        size_t n, cap;
        size_t rest[2]; /* while recording, once partial: bytes of stdout, stderr not in seg */
};

/* Recording, in the agent: note len bytes just read from stream (1 or 2). An order starts as
 * {0} with known set; 0, or -ENOMEM (the order is then dropped: known is false). */
int op_agent_order_add(struct op_agent_order *o, int stream, size_t len);
/* End the recording: the rest of each stream goes after the segments kept. */
int op_agent_order_end(struct op_agent_order *o);
void op_agent_order_done(struct op_agent_order *o);

/* Check an order against the bytes of its run (out_len of stdout, err_len of stderr): at most
 * OP_AGENT_ORDER_MAX segments, each of stream 1 or 2 and at least one byte, adjacent ones of
 * different streams, the lengths of each stream adding up to exactly its bytes. 0, or -EINVAL
 * with what is wrong in errbuf ("<what> whose \"<path>output_order\" ..."). Pure. */
int op_agent_order_check(const struct op_agent_order *o, size_t out_len, size_t err_len,
                         const char *what, const char *path, char *errbuf, size_t errlen);
/* obj["output_order"] and obj["output_order_partial"] (both optional: absent, known is false)
 * into *ret, checked as above. 0, -EINVAL with a message naming the field, or -ENOMEM; *ret is
 * untouched on failure. */
int op_agent_order_decode(json_t *obj, size_t out_len, size_t err_len, const char *what,
                          const char *path, struct op_agent_order *ret, char *errbuf,
                          size_t errlen);
/* Set obj["output_order"] (and "output_order_partial" when partial) when o is known. */
int op_agent_order_encode(json_t *obj, const struct op_agent_order *o);
/* The bytes of out and err interleaved as o says (known and checked), else out then err;
 * malloc'd, NUL-ended, out_len + err_len bytes. NULL when out of memory. */
char *op_agent_order_join(const struct op_agent_order *o, const char *out, size_t out_len,
                          const char *err, size_t err_len);

/* How a program ended: the run's fields, and the compile phase's. */
struct op_agent_run {
        struct op_agent_bytes out, err; /* "stdout", "stderr" */
        struct op_agent_order order;    /* "output_order", "output_order_partial" */
        int exit_code;                  /* 0..255, -1: null */
        int signal;                     /* 1..64, 0: null */
        bool timed_out;
        bool truncated;
        bool has_run_ms; /* the compile phase's may lack it; the run's never */
        double run_ms;
};

struct op_agent_usage {
        double cpu_time_ms;
        double wall_ms;
        uint64_t memory_peak_bytes;
};

enum op_agent_limits_by {
        OP_AGENT_LIMITS_BY_NONE, /* absent */
        OP_AGENT_LIMITS_BY_CGROUP,
        OP_AGENT_LIMITS_BY_RLIMIT,
};

enum op_agent_file_error {
        OP_AGENT_FILE_OK, /* content holds the file */
        OP_AGENT_FILE_NOT_FOUND,
        OP_AGENT_FILE_NOT_A_REGULAR_FILE,
        OP_AGENT_FILE_TOO_LARGE,
        OP_AGENT_FILE_OUT_OF_MEMORY,
        _OP_AGENT_FILE_MAX,
};
const char *op_agent_file_error_name(enum op_agent_file_error e);

struct op_agent_file {
        char *name; /* malloc'd when decoded */
        enum op_agent_file_error error;
        struct op_agent_bytes content;
};

/* The answer to an exec that ran (or whose compile phase failed). */
struct op_agent_exec {
        struct op_agent_run run;
        bool warm_used;
        bool has_status;
        enum op_status status;
        bool has_usage;
        struct op_agent_usage usage;
        enum op_agent_limits_by limits_by;
        bool streamed;
        bool repl_ended; /* a repl call: its interpreter is gone (it ended or was killed) */
        bool has_compile;
        struct op_agent_run compile;
        bool has_files; /* with output_files, unless the compile phase failed */
        struct op_agent_file *files;
        size_t n_files;
        /* "agent_ms" (a job with "timing"): from the agent having read the job to its answer
         * made, in the guest; run.run_ms is the program's share of it */
        bool has_agent_ms;
        double agent_ms;
};

/* {"ok": false, "error": {"code", "message"}}: the agent could not do the operation. */
struct op_agent_error {
        enum op_err code;
        char *message; /* malloc'd when decoded; no NUL, at most OP_AGENT_MESSAGE_MAX bytes */
};

struct op_agent_answer {
        enum op_agent_op op;
        bool ok;
        struct op_agent_error error;                  /* !ok */
        struct op_agent_exec exec;                    /* ok, exec */
        char agent_version[OP_AGENT_VERSION_MAX + 1]; /* ok, ping */
        int64_t pid;                                  /* ok, warm: the runner's */
        double run_ms;                                /* ok, prime */
};

/* {"event": "ready", "agent_version"} */
struct op_agent_ready {
        char agent_version[OP_AGENT_VERSION_MAX + 1];
};

/* {"id", "event": "stdout" | "stderr", "data"[, "data_b64"]}: at least one byte. */
struct op_agent_output {
        int stream; /* 1: stdout, 2: stderr */
        struct op_agent_bytes data;
};

enum op_agent_msg_kind {
        OP_AGENT_MSG_READY,
        OP_AGENT_MSG_OUTPUT,
        OP_AGENT_MSG_ANSWER,
};

struct op_agent_msg {
        enum op_agent_msg_kind kind;
        struct op_agent_ready ready;
        struct op_agent_output output;
        struct op_agent_answer answer;
};

/* Decoders: 0 with *ret filled (free with the matching _done()), -EINVAL with a message naming
 * the field in errbuf, or -ENOMEM. Unknown fields are refused; "_b64" fields are decoded and
 * win over their text; every byte string, number and count is checked against lim. *ret is
 * untouched on failure. */
int op_agent_ready_decode(json_t *obj, struct op_agent_ready *ret, char *errbuf, size_t errlen);
int op_agent_output_decode(json_t *obj, const struct op_agent_limits *lim,
                           struct op_agent_output *ret, char *errbuf, size_t errlen);
int op_agent_answer_decode(json_t *obj, const struct op_agent_limits *lim,
                           struct op_agent_answer *ret, char *errbuf, size_t errlen);
/* Any one of them, told apart by "event". */
int op_agent_msg_decode(json_t *obj, const struct op_agent_limits *lim, struct op_agent_msg *ret,
                        char *errbuf, size_t errlen);
/* The most JSON values in one frame of the agent: a valid answer holds a few dozen, plus a few
 * per output file (limit.output_files_max is at most 1024) and three per segment of an output
 * order (at most OP_AGENT_ORDER_MAX each for the run and the compile phase); a frame that could
 * hold more is refused before it is parsed (op_parse_object_max()). */
#define OP_AGENT_VALUES_MAX 16384

/* One frame's payload (bytes in): op_parse_object_max() then op_agent_msg_decode(). */
int op_agent_msg_parse(const void *payload, size_t len, const struct op_agent_limits *lim,
                       struct op_agent_msg *ret, char *errbuf, size_t errlen);

void op_agent_output_done(struct op_agent_output *o);
void op_agent_answer_done(struct op_agent_answer *a);
void op_agent_msg_done(struct op_agent_msg *m);

/* Encoders: a new object, NULL when out of memory. id is echoed (null when NULL). Byte strings
 * go out with op_json_set_bytes() (text, plus "_b64" when they are not UTF-8 or hold NUL). */
json_t *op_agent_ready_encode(const struct op_agent_ready *r);
json_t *op_agent_output_encode(json_t *id, const struct op_agent_output *o);
json_t *op_agent_answer_encode(json_t *id, const struct op_agent_answer *a);
/* The agent's side of "timing": "agent_ms" added to an encoded exec answer that is ok (an error
 * answer is left as it is). 0, or -ENOMEM. */
int op_agent_answer_stamp(json_t *answer, double agent_ms);

bool op_agent_answer_equal(const struct op_agent_answer *a, const struct op_agent_answer *b);
bool op_agent_output_equal(const struct op_agent_output *a, const struct op_agent_output *b);

/* The largest frame a correct agent can send for a request with these limits (its answer, or
 * one output event): both streams at output_max, output files, compile output, each as text
 * JSON-escaped and as base64, the output orders, plus OP_AGENT_FRAME_SLACK; OP_AGENT_FRAME_SMALL
 * for the other operations. At most OP_FRAME_MAX_CEILING. */
size_t op_agent_frame_max(const struct op_agent_limits *lim);

/* Is the agent_version version ("0.4.0") at least min? Both are compared as dot-separated
 * decimal numbers, one by one, a missing one counting 0; a version of any other form (empty,
 * "fake", "1.x") is older than every min. */
bool op_agent_version_at_least(const char *version, const char *min);
