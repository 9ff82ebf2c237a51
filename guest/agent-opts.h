/* agent-opts.h: the optional parts of the agent's exec (streamed output and stdin, resource
 * limits, status and usage, output files), kept apart from the core request in agent.c. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent-msg.h"
#include "exec.h"

#define AGENT_OUTPUT_FILES_MAX    1024
#define AGENT_OUTPUT_FILE_MAX     (64u * 1024u * 1024u)
#define AGENT_OUTPUT_FILE_DEFAULT (1024u * 1024u)
/* Where the guest mounts cgroup v2 (guest/init.c). */
#define AGENT_CGROUP_ROOT "/sys/fs/cgroup"

/* The channel to the host while a request runs (guest/main.c provides it): streamed output
 * leaves as event frames, stdin frames come in. */
struct agent_channel {
        int in_fd; /* polled for frames during a run */
        int (*send)(void *userdata, json_t *obj);
        /* The next whole frame (1, *ret a new reference), none yet (0: reads at most once, and
         * only when in_fd is readable), or the channel is gone (<0). */
        int (*next)(void *userdata, json_t **ret);
        void *userdata;
};

struct agent_opts {
        bool stream;
        bool stdin_stream;
        struct agent_limits limits;
        const char **output_files; /* point into the request; NULL-terminated */
        size_t n_output_files;
        size_t output_file_max;
};

/* The exec fields this file decodes, for the agent's list of known fields. */
extern const char *const agent_opts_fields[];
extern const size_t agent_opts_n_fields;

int agent_opts_decode(json_t *req, struct agent_opts *o, char *errbuf, size_t errlen);
void agent_opts_done(struct agent_opts *o);

/* The state of one streamed run: what the hooks of struct agent_io need. */
struct agent_stream {
        const struct agent_channel *chan;
        json_t *id;
        size_t stdin_total; /* bytes of stdin frames taken */
        struct agent_io io;
};
/* Set up s->io for o (stream and/or stdin_stream) on chan; with no channel, nothing streams. */
void agent_stream_init(struct agent_stream *s, const struct agent_opts *o,
                       const struct agent_channel *chan, json_t *id);

/* Set the answer's "status", "usage", "limits_by" and, when the output went out as events,
 * "streamed". */
void agent_answer_opts(struct op_agent_exec *x, const struct agent_result *res, bool streamed);
/* Set the answer's "files": the output files read back from the run directory dir (each one's
 * content malloc'd, its name borrowed from o). Free with agent_answer_files_done(). */
int agent_answer_files(struct op_agent_exec *x, const char *dir, const struct agent_opts *o);
void agent_answer_files_done(struct op_agent_exec *x);
