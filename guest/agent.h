/* agent.h: the agent's side of the protocol: one request frame in, one answer frame out, and the
 * state kept between requests (a warm runner waiting for its job).
 * Messages are specified in docs/protocol.md ("Agent channel"). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "exec.h"

#define OP_AGENT_VERSION         "0.7.0"
#define OP_AGENT_WORKDIR_DEFAULT "/tmp/op"

struct agent_config {
        const char *workdir; /* parent of each request's working directory */
        uid_t uid;           /* user code runs as this uid/gid when not (uid_t)-1 */
        gid_t gid;
        bool apply_identity;     /* set clock, hostname, entropy from the request (guest only) */
        const char *cgroup_root; /* cgroup v2 mount for per-run limits; NULL: rlimits only */
};

struct agent_channel;

/* One agent: its configuration and what outlives a request. Set up with agent_init(). */
struct agent {
        struct agent_config cfg;
        bool warm_waiting;       /* a "warm" runner was started and waits for its job */
        struct agent_child warm; /* that runner (its fd 3 is warm.ctl_fd) */
        char *warm_dir; /* its working directory, empty, which the exec that takes it runs in */
        /* That runner was started after a session's call and has not said ready yet: the next
         * call takes it if it has by then; it must be by warm_ready_by_us (op_now_us()). */
        bool warm_pending;
        uint64_t warm_ready_by_us;
        json_t *next_runner; /* the last call's "next_runner", started by agent_answered() */
        /* A runner agent_answered() started has this cgroup of its own (the call that takes it
         * runs there): the spare stays clean for a call that does not (memory.peak). */
        struct limits_group warm_group;
        bool repl_alive;                  /* a session's interpreter waits for its next call */
        struct agent_child repl;          /* that interpreter (a runner that took "repl") */
        const struct agent_channel *chan; /* for streamed output and stdin; NULL: none */
        struct limits_group spare;        /* the next run's cgroup, made ahead (cgroup_root) */
        /* A warm runner that reported its program's end and waits to be killed: ended, with
         * every other process, by agent_answered() (its exit is not on the answer's time). */
        struct agent_child ended;
        /* The directory of the run just answered: removed once the answer is out
         * (agent_answered()), not on its time. NULL: none (a session keeps its directory). */
        char *ended_dir;
        /* When the request agent_handle() is given next was read whole (op_now_us()); 0: when
         * agent_handle() starts. A job's "timing" is measured from there. */
        uint64_t job_read_us;
};

void agent_init(struct agent *a, const struct agent_config *cfg);
/* While idle (between requests): make the next run's cgroup, so that a request does not wait
 * for it. Nothing without cfg.cgroup_root. */
void agent_prepare(struct agent *a);
/* Once a request is answered: end what is left of its run (a runner that reported, see
 * agent_exec_attach()), agent_prepare(), and start the runner its "next_runner" names (a
 * session's next call takes it) without waiting for it. */
void agent_answered(struct agent *a);
/* The part of agent_answered() that removes the answered run's directory. */
void agent_rundir_drop(struct agent *a);
/* While idle: the ms left until a runner agent_answered() started must say ready, -1 when none
 * is starting. When they have passed, agent_idle_expired(): the runner waits for the next call
 * if it is ready, else it is ended. */
int agent_idle_timeout_ms(const struct agent *a);
void agent_idle_expired(struct agent *a);
/* The channel a streamed exec sends events on and reads stdin frames from (agent-opts.h). */
void agent_set_channel(struct agent *a, const struct agent_channel *chan);
/* Ends a waiting warm runner and a session's interpreter. The agent can be used again. */
void agent_done(struct agent *a);

/* The "ready" event the agent sends when its channel opens. New reference. */
json_t *agent_ready_event(void);

/* Handle one request object; returns the answer object (new reference, never NULL unless out of
 * memory). Never exits and never lets user code's behaviour end the agent. */
json_t *agent_handle(struct agent *a, json_t *req);

/* Reap every exited child (as PID 1 or child subreaper, orphans are the agent's), keeping the
 * exit status of a waiting warm runner for the exec it will run. Never blocks; call it between
 * requests only. */
void agent_reap_orphans(struct agent *a);
