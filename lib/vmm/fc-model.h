/* fc-model.h: the request bodies opd sends to Firecracker's API (v1.16, firecracker-api.yaml),
 * one typed struct per body, serialised only here. Optional fields are left out when unset, so
 * a body never carries a field the API does not define (Firecracker refuses unknown fields). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* PUT /boot-source (BootSource) */
struct fc_boot_source {
        const char *kernel_image_path; /* required */
        const char *initrd_path;       /* NULL: none */
        const char *boot_args;         /* NULL: Firecracker's default */
};

/* PUT /drives/{drive_id} (Drive, virtio-block) */
struct fc_drive {
        const char *drive_id; /* required; also the path parameter */
        const char *path_on_host;
        bool is_root_device;
        bool is_read_only;
};

/* PUT /machine-config (MachineConfiguration) */
struct fc_machine_config {
        uint32_t vcpu_count;   /* 1 or even, <= 32 */
        uint32_t mem_size_mib; /* required */
        bool track_dirty_pages;
};

/* PUT /vsock (Vsock): pre-boot only; a loaded snapshot takes SnapshotLoadParams.vsock_override */
struct fc_vsock {
        uint32_t guest_cid; /* >= 3 */
        const char *uds_path;
};

/* PUT /actions (InstanceActionInfo) */
enum fc_action { FC_ACTION_INSTANCE_START };

/* PATCH /vm (Vm) */
enum fc_vm_state { FC_VM_PAUSED, FC_VM_RESUMED };

/* PUT /snapshot/create (SnapshotCreateParams): there is no "version" field any more. */
enum fc_snapshot_type { FC_SNAPSHOT_FULL, FC_SNAPSHOT_DIFF };
struct fc_snapshot_create {
        const char *snapshot_path;
        const char *mem_file_path;
        enum fc_snapshot_type type;
};

/* PUT /snapshot/load (SnapshotLoadParams) */
enum fc_mem_backend { FC_MEM_FILE, FC_MEM_UFFD };
struct fc_snapshot_load {
        const char *snapshot_path;
        enum fc_mem_backend backend_type;
        const char *backend_path; /* the memory file, or the UFFD handler's socket */
        bool resume_vm;
        bool track_dirty_pages;
        const char *vsock_uds_path; /* NULL: keep the path saved in the snapshot */
        bool clock_realtime;        /* x86_64: advance kvmclock by the time since the snapshot */
};

/* Each returns a new JSON object, NULL on a missing required field or out of memory. */
json_t *fc_boot_source_json(const struct fc_boot_source *b);
json_t *fc_drive_json(const struct fc_drive *d);
json_t *fc_machine_config_json(const struct fc_machine_config *m);
json_t *fc_vsock_json(const struct fc_vsock *v);
json_t *fc_entropy_json(void);
json_t *fc_action_json(enum fc_action a);
json_t *fc_vm_state_json(enum fc_vm_state s);
json_t *fc_snapshot_create_json(const struct fc_snapshot_create *c);
json_t *fc_snapshot_load_json(const struct fc_snapshot_load *l);

/* The message of an error answer ({"fault_message": "..."}), or NULL. Borrowed from body. */
const char *fc_fault_message(json_t *body);

/* The release in `firecracker --version` output ("Firecracker v1.16.1\n..."): "1.16.1". */
int fc_parse_version(const char *text, char *ret, size_t retlen);
