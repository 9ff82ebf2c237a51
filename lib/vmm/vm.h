/* vm.h: one VM whatever its VMM: its state machine, its agent channel (frames) and its deadlines.
 * The VM's owner (a request, a pool, a snapshot in the making) hears of it through struct
 * vm_events; the driver (vmm.h) does the VMM's part. */
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "agent-msg.h"
#include "config.h"
#include "lang.h"
#include "vmm.h"

struct snap_ref;
struct vm_host;
struct vmm_output;

enum vm_state {
        VM_BOOTING,   /* cold boot: waiting for the agent's ready event (boot deadline) */
        VM_RESTORING, /* clone: waiting for its device state to load (restore deadline) */
        VM_PAUSED,    /* loaded and stopped (or stopped again after priming) */
        VM_RESUMING,  /* continue asked, not yet acknowledged by the VMM (resume deadline) */
        VM_READY,     /* running, agent idle */
        VM_RUNNING,   /* job sent, waiting for the answer */
        VM_PAUSING,   /* stop asked: ready fires again once paused */
        VM_SAVING,    /* stopping and saving for a snapshot: saved() fires */
        VM_DEAD,      /* failed or destroyed; no callback fires any more */
};

const char *vm_state_name(enum vm_state s);

/* How much of the guest console's end goes into the log when a VM fails. */
#define VM_CONSOLE_TAIL 1024
/* The most characters of escaped text (a console's or a VMM's output) one log line holds: its
 * end is kept. Below VM_HOST_LOG_MAX with room for the line's own words. */
#define VM_LOG_TAIL_MAX 1536
/* How long the owner of a failed VM waits to hear how its VMM ended (killed at the failure, it
 * is normally reaped within milliseconds). */
#define VM_EXIT_WAIT_MS 3000

/* The agent frame cap when nobody set one with vm_set_frame_max(): ready events, ping, warm
 * and prime answers (agent-msg.h). */
#define VM_FRAME_MAX_DEFAULT OP_AGENT_FRAME_SMALL

struct vm_events {
        /* Booted: the agent is ready. Restored or paused again: stopped with its state loaded. */
        void (*ready)(struct vm *vm, void *userdata);
        void (*answer)(struct vm *vm, json_t *answer, void *userdata);
        /* A streamed output event ({"event": "stdout" | "stderr", ...}) while a job runs. */
        void (*event)(struct vm *vm, json_t *event, void *userdata);
        /* While a job runs: everything queued for the agent has been written to the VMM (may be
         * NULL). The owner may queue more (vm_send_more(), vm_send_queued()). */
        void (*drained)(struct vm *vm, void *userdata);
        /* The VM is gone (exited, failed to boot, broke the channel, missed a deadline); why is
         * human text, with how the VMM ended when it ended on its own ("the VMM was killed by
         * SIGBUS: ..."). Told once the VMM has been reaped (or VM_EXIT_WAIT_MS after it was
         * killed). A VM saved (vm_snapshot()) without this callback tells its saved callback. */
        void (*failed)(struct vm *vm, const char *why, void *userdata);
};

struct vm {
        LIST_ENTRY(vm) link; /* host->vms, then host->dead_vms */
        struct vm_host *host;
        uint64_t id;
        char name[32];
        char agent_version[32]; /* from the agent's ready event */
        char *workdir;
        const struct op_lang *lang;
        enum op_accel accel;
        enum vm_state state; /* written by vm_set_state() only */
        struct vmm_proc proc;
        struct bufferevent *agent;
        size_t frame_max; /* the largest agent frame taken: vm_set_frame_max() */
        void *drv;        /* the driver's own state */
        struct event *deadline;
        struct snap_ref *snap;                           /* restored from this snapshot */
        uint64_t t_spawn, t_loaded, t_resume, t_resumed; /* op_now_us() */
        bool resumed; /* the VMM acknowledged the last vm_resume() */
        void (*saved)(struct vm *vm, const char *err, void *userdata); /* vm_snapshot() */
        void *saved_userdata;
        bool agent_hello; /* a reconnected agent's "ready" is due and is not a boot */
        struct vm_events ev;
        void *userdata;
        bool failing;            /* failed, the owner not told yet (vm_fail() in vm.c) */
        bool console_pending;    /* ... while the driver reads the console */
        bool killed;             /* opd killed the VMM after it failed */
        bool exit_said;          /* how the VMM ended is the failure's why already */
        char fail_why[640];      /* then why it failed */
        struct event *exit_wait; /* the bound on waiting for a failed VMM's exit */
        char *ram_path;          /* booted with a memory file: its path (for messages) */
        struct vmm_output *out;  /* the VMM's stdout and stderr (vm_host_output()) */
        int exit_status;         /* from waitpid, valid once reaped */
        bool reaped;
};

/* mem_fd >= 0 backs guest RAM with that file, shared (to take a snapshot of it later). */
int vm_boot(struct vm_host *h, const struct op_lang *lang, enum op_accel accel, int mem_fd,
            const struct vm_events *ev, void *userdata, struct vm **ret);
/* A clone of snap under the host's accelerator, left paused: ev.ready once loaded. */
int vm_restore(struct vm_host *h, const struct op_lang *lang, struct snap_ref *snap,
               const struct vm_events *ev, void *userdata, struct vm **ret);
/* Hand a VM to a new owner (pool -> request). */
void vm_set_events(struct vm *vm, const struct vm_events *ev, void *userdata);
/* Continue a paused VM: RESUMING until the VMM acknowledges, then READY (or RUNNING when a job
 * was sent meanwhile: jobs may be sent at once, they wait in the channel). */
int vm_resume(struct vm *vm);
/* Did the VMM acknowledge the last vm_resume()? A VM that fails before that never ran a job. */
bool vm_resumed(const struct vm *vm);
/* Stop a running, idle VM; ev.ready fires again once it is paused. */
int vm_pause(struct vm *vm);
/* Stop a running (READY or RESUMING) or paused VM and save it into dir: dir/vmstate, and dir/mem
 * unless RAM already is that file (QEMU booted with mem_fd). A clone (restored from vm->snap) is
 * saved whole: dir/mem is all of its RAM, the snapshot's pages and its own, and dir then restores
 * like a snapshot (snap_ref_image()). Saved, the VM is PAUSED: vm_resume() continues it. A save
 * that failed (err set) while the VMM lived on leaves it PAUSED too, whole and resumable (the
 * files in dir are the caller's to remove); otherwise only vm_destroy() is left. */
int vm_snapshot(struct vm *vm, const char *dir,
                void (*done)(struct vm *vm, const char *err, void *userdata), void *userdata);
/* Make a job this clone's own (the agent's "identity" fields): fresh entropy from the host, the
 * host's clock, the VM's name as its host name. 0, or a negative errno. */
int vm_job_identity(const struct vm *vm, json_t *job);
/* Send a job (READY or RESUMING): the VM is RUNNING until the answer. */
int vm_send(struct vm *vm, json_t *job);
/* One more frame for the running job (stdin frames). */
int vm_send_more(struct vm *vm, json_t *frame);
/* Bytes queued for the agent that the VMM has not taken yet. */
size_t vm_send_queued(const struct vm *vm);
/* The largest frame the agent may send until its next answer (the job's own cap, set with the
 * job); after an answer it is VM_FRAME_MAX_DEFAULT again. */
void vm_set_frame_max(struct vm *vm, size_t max);
/* Fail the VM for a caller that found the agent's input bad: ev.failed fires with why. */
void vm_abort(struct vm *vm, const char *why);
/* host.c: the VM's VMM was reaped (reaped and exit_status are set). A live VM fails with how it
 * ended; a failed one whose owner waits for that is told now. */
void vm_reaped(struct vm *vm);
/* Kill the VMM and free the VM at a safe point; no callback fires after this. */
void vm_destroy(struct vm *vm);
