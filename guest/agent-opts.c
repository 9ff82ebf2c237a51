/* agent-opts.c: the optional parts of the agent's exec: streamed output (event frames) and
 * stdin (stdin frames read during the run), resource limits, status and usage in the answer,
 * and output files read back from the run directory. */
#include "agent-opts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent-msg.h"
#include "cleanup.h"
#include "msg.h"
#include "util.h"

const char *const agent_opts_fields[] = {
    "stream",        "stdin_stream",        "cpu_time_ms",  "memory_bytes",
    "max_processes", "file_size_max_bytes", "output_files", "output_file_max",
};
const size_t agent_opts_n_fields = ELEMENTSOF(agent_opts_fields);

static int get_bool(json_t *req, const char *key, bool *ret, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, key);

        if (v && !json_is_boolean(v))
                return op_errf(errbuf, errlen, -EINVAL, "\"%s\" must be true or false", key);
        *ret = json_is_true(v);
        return 0;
}

static int get_u64(json_t *req, const char *key, uint64_t min, uint64_t max, uint64_t *ret,
                   bool *ret_set, char *errbuf, size_t errlen)
{
        json_t *v = json_object_get(req, key);

        if (!v)
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) < min || (uint64_t)json_integer_value(v) > max)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"%s\" must be an integer from %llu to %llu", key,
                               (unsigned long long)min, (unsigned long long)max);
        *ret = (uint64_t)json_integer_value(v);
        if (ret_set)
                *ret_set = true;
        return 0;
}

int agent_opts_decode(json_t *req, struct agent_opts *o, char *errbuf, size_t errlen)
{
        json_t *files = json_object_get(req, "output_files"), *f;
        uint64_t v;
        size_t i;
        int r;

        *o = (struct agent_opts){.output_file_max = AGENT_OUTPUT_FILE_DEFAULT};
        r = get_bool(req, "stream", &o->stream, errbuf, errlen);
        if (r == 0)
                r = get_bool(req, "stdin_stream", &o->stdin_stream, errbuf, errlen);
        v = 0;
        if (r == 0)
                r = get_u64(req, "cpu_time_ms", 1, 24 * 3600 * 1000, &v, NULL, errbuf, errlen);
        o->limits.cpu_time_ms = (uint32_t)v;
        if (r == 0)
                r = get_u64(req, "memory_bytes", 1, UINT64_MAX / 2, &o->limits.memory_bytes, NULL,
                            errbuf, errlen);
        v = 0;
        if (r == 0)
                r = get_u64(req, "max_processes", 1, 1u << 22, &v, NULL, errbuf, errlen);
        o->limits.max_processes = (uint32_t)v;
        if (r == 0)
                r = get_u64(req, "file_size_max_bytes", 0, UINT64_MAX / 2, &o->limits.file_size_max,
                            &o->limits.has_file_size, errbuf, errlen);
        v = o->output_file_max;
        if (r == 0)
                r = get_u64(req, "output_file_max", 0, AGENT_OUTPUT_FILE_MAX, &v, NULL, errbuf,
                            errlen);
        o->output_file_max = (size_t)v;
        if (r < 0 || !files)
                return r;
        if (!json_is_array(files) || json_array_size(files) > AGENT_OUTPUT_FILES_MAX)
                return op_errf(errbuf, errlen, -EINVAL,
                               "\"output_files\" must be an array of at most %d file names",
                               AGENT_OUTPUT_FILES_MAX);
        o->output_files = calloc(json_array_size(files) + 1, sizeof(char *));
        if (!o->output_files)
                return -ENOMEM;
        json_array_foreach (files, i, f) {
                if (!json_is_string(f) ||
                    !op_file_name_valid(json_string_value(f), json_string_length(f)))
                        return op_errf(errbuf, errlen, -EINVAL,
                                       "\"output_files[%zu]\" must be a plain file name", i);
                o->output_files[o->n_output_files++] = json_string_value(f);
        }
        return 0;
}

void agent_opts_done(struct agent_opts *o)
{
        free(o->output_files);
        *o = (struct agent_opts){0};
}

/* ---- streaming ---- */

static int on_output(void *userdata, int stream, const char *data, size_t len)
{
        struct agent_stream *s = userdata;
        _cleanup_(json_decrefp) json_t *ev = op_agent_output_encode(
            s->id, &(struct op_agent_output){.stream = stream == 1 ? 1 : 2,
                                             .data = {.data = (char *)data, .len = len}});

        if (!ev)
                return -ENOMEM;
        return s->chan->send(s->chan->userdata, ev);
}

/* {"op": "stdin", "data" | "data_b64", "eof"}: anything else on the channel during a run is not
 * for it and is dropped. */
static int on_input(void *userdata, char **ret_data, size_t *ret_len, bool *ret_eof)
{
        struct agent_stream *s = userdata;
        char *acc = NULL;
        size_t n = 0;
        int r;

        for (;;) {
                _cleanup_(json_decrefp) json_t *frame = NULL;
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                json_t *op;

                r = s->chan->next(s->chan->userdata, &frame);
                if (r <= 0)
                        break;
                op = json_object_get(frame, "op");
                if (!json_is_string(op) || strcmp(json_string_value(op), "stdin") != 0)
                        continue;
                if (op_json_get_bytes(frame, "data", OP_FRAME_MAX_CEILING, &data, &len) < 0)
                        continue;
                if (len > 0) {
                        char *na = realloc(acc, n + len);
                        if (!na) {
                                r = -ENOMEM;
                                break;
                        }
                        acc = na;
                        memcpy(acc + n, data, len);
                        n += len;
                        s->stdin_total += len;
                }
                if (json_is_true(json_object_get(frame, "eof"))) {
                        *ret_eof = true;
                        r = 0;
                        break;
                }
        }
        *ret_data = acc;
        *ret_len = n;
        return r < 0 ? r : 0;
}

void agent_stream_init(struct agent_stream *s, const struct agent_opts *o,
                       const struct agent_channel *chan, json_t *id)
{
        *s = (struct agent_stream){.chan = chan, .id = id, .io = {.input_fd = -1, .userdata = s}};
        if (!chan)
                return;
        if (o->stream)
                s->io.output = on_output;
        if (o->stdin_stream) {
                s->io.input = on_input;
                s->io.input_fd = chan->in_fd;
        }
}

/* ---- the answer ---- */

void agent_answer_opts(struct op_agent_exec *x, const struct agent_result *res, bool streamed)
{
        x->has_status = true;
        x->status =
            op_status_of(res->signal == 0 ? res->exit_code : -1, res->signal, res->timed_out,
                         res->usage.cpu_exceeded, res->truncated, res->usage.oom_killed);
        x->has_usage = true;
        x->usage = (struct op_agent_usage){
            .cpu_time_ms = (double)res->usage.cpu_us / 1000.0,
            .wall_ms = (double)res->run_us / 1000.0,
            .memory_peak_bytes = res->usage.memory_peak_bytes,
        };
        x->limits_by = res->usage.by_cgroup ? OP_AGENT_LIMITS_BY_CGROUP : OP_AGENT_LIMITS_BY_RLIMIT;
        x->streamed = streamed;
}

/* One output file: its content (malloc'd) or why there is none. */
static void read_output_file(int dfd, const char *name, size_t max, struct op_agent_file *ret)
{
        _cleanup_close_ int fd =
            openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        _cleanup_free_ char *buf = NULL;
        enum op_agent_file_error err = OP_AGENT_FILE_OK;
        struct stat st;
        size_t n = 0;

        if (fd < 0)
                err = errno == ENOENT ? OP_AGENT_FILE_NOT_FOUND : OP_AGENT_FILE_NOT_A_REGULAR_FILE;
        else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                err = OP_AGENT_FILE_NOT_A_REGULAR_FILE;
        else if ((uint64_t)st.st_size > max)
                err = OP_AGENT_FILE_TOO_LARGE;
        else if (!(buf = malloc((size_t)st.st_size + 1)))
                err = OP_AGENT_FILE_OUT_OF_MEMORY;
        else {
                for (;;) {
                        ssize_t k = read(fd, buf + n, (size_t)st.st_size + 1 - n);
                        if (k <= 0)
                                break;
                        n += (size_t)k;
                        if (n > (size_t)st.st_size)
                                break;
                }
                if (n > (size_t)st.st_size)
                        err = OP_AGENT_FILE_TOO_LARGE; /* it grew while read */
        }
        *ret = (struct op_agent_file){.name = (char *)name, .error = err};
        if (err == OP_AGENT_FILE_OK)
                ret->content = (struct op_agent_bytes){.data = TAKE_PTR(buf), .len = n};
}

int agent_answer_files(struct op_agent_exec *x, const char *dir, const struct agent_opts *o)
{
        _cleanup_close_ int dfd = -1;

        if (!o->output_files)
                return 0;
        x->files = calloc(o->n_output_files + 1, sizeof(*x->files));
        if (!x->files)
                return -ENOMEM;
        x->has_files = true;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        for (size_t i = 0; i < o->n_output_files; i++) {
                if (dfd >= 0)
                        read_output_file(dfd, o->output_files[i], o->output_file_max, &x->files[i]);
                else
                        x->files[i] = (struct op_agent_file){.name = (char *)o->output_files[i],
                                                             .error = OP_AGENT_FILE_NOT_FOUND};
                x->n_files++;
        }
        return 0;
}

void agent_answer_files_done(struct op_agent_exec *x)
{
        for (size_t i = 0; i < x->n_files; i++)
                free(x->files[i].content.data);
        free(x->files);
        x->files = NULL;
        x->n_files = 0;
        x->has_files = false;
}
