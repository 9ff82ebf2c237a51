/* fake.h: a VMM driver that runs no process, for unit tests of the VM layer and its users. Every
 * operation completes on a libevent timer of the host's loop; faults can be injected; the agent
 * is an in-process peer on a socketpair that answers jobs through a callback the test sets. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

enum fake_fault {
        FAKE_FAULT_NONE,
        FAKE_FAULT_BOOT,    /* the boot fails instead of the agent getting ready */
        FAKE_FAULT_RESTORE, /* the restore fails instead of loading */
        FAKE_FAULT_RESUME,  /* the VMM dies before it acknowledges a resume */
        FAKE_FAULT_RUNNING, /* the VMM dies when a job reaches the agent */
        FAKE_FAULT_SILENT,  /* nothing is ever answered: boot, restore, resume, pause, save, jobs */
        FAKE_FAULT_SAVE,    /* a save fails; the VMM lives on with the VM paused (a file system
                             * full under the save's files) */
        FAKE_FAULT_SAVE_DIE, /* the VMM dies while it saves */
};

/* Delays in ms (0: the next loop turn) and the fault of one VM. */
struct fake_vm_opts {
        uint32_t boot_ms, restore_ms, resume_ms, pause_ms, snapshot_ms;
        enum fake_fault fault;
        /* When the VM fails, its console holds these bytes (read on the next loop turn, as a VMM
         * answers over its control channel); NULL: there is no console to read. */
        const char *console;
        /* A save writes what a real one leaves in its directory: vmstate (a few bytes) and mem
         * (the snapshot's memory size, all holes); false: nothing is written. */
        bool save_files;
};

/* The agent's answer to a frame it read (a job, or a stdin frame after it): a new reference to
 * send back, or NULL to say nothing. It must not destroy the VM. */
typedef json_t *(*fake_agent_fn)(struct vm *vm, json_t *frame, void *userdata);

/* One fake VMM: pass it as the host's drv_data with vm_driver_fake (NULL: no delays, no faults,
 * every job answered {"ok": true}). */
struct fake_vmm {
        struct fake_vm_opts opts; /* what each new VM starts with */
        fake_agent_fn agent;
        void *agent_userdata;
        unsigned n_live;   /* VMs whose driver state is not released yet */
        unsigned n_frames; /* frames the agents read, all VMs */
};

/* The settings of one VM, from its start on: change them for the operations to come. */
struct fake_vm_opts *fake_vm_opts(struct vm *vm);
/* The VMM of vm dies on the next loop turn, whatever it is doing. */
void fake_vm_die(struct vm *vm);
