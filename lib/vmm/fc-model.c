/* fc-model.c: Firecracker API request bodies from typed structs (see fc-model.h). */
#include "fc-model.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static int set_str(json_t *o, const char *key, const char *v)
{
        return v ? json_object_set_new(o, key, json_string(v)) : 0;
}

static json_t *done(json_t *o, int failed)
{
        if (failed) {
                json_decref(o);
                return NULL;
        }
        return o;
}

json_t *fc_boot_source_json(const struct fc_boot_source *b)
{
        json_t *o = json_object();

        if (!o || !b->kernel_image_path)
                return done(o, 1);
        return done(o, set_str(o, "kernel_image_path", b->kernel_image_path) |
                           set_str(o, "initrd_path", b->initrd_path) |
                           set_str(o, "boot_args", b->boot_args));
}

json_t *fc_drive_json(const struct fc_drive *d)
{
        json_t *o = json_object();

        if (!o || !d->drive_id || !d->path_on_host)
                return done(o, 1);
        return done(
            o, set_str(o, "drive_id", d->drive_id) | set_str(o, "path_on_host", d->path_on_host) |
                   json_object_set_new(o, "is_root_device", json_boolean(d->is_root_device)) |
                   json_object_set_new(o, "is_read_only", json_boolean(d->is_read_only)));
}

json_t *fc_machine_config_json(const struct fc_machine_config *m)
{
        json_t *o = json_object();

        if (!o || m->vcpu_count < 1 || m->vcpu_count > 32 ||
            (m->vcpu_count > 1 && m->vcpu_count % 2) || m->mem_size_mib == 0)
                return done(o, 1);
        return done(
            o, json_object_set_new(o, "vcpu_count", json_integer(m->vcpu_count)) |
                   json_object_set_new(o, "mem_size_mib", json_integer(m->mem_size_mib)) |
                   json_object_set_new(o, "track_dirty_pages", json_boolean(m->track_dirty_pages)));
}

json_t *fc_vsock_json(const struct fc_vsock *v)
{
        json_t *o = json_object();

        if (!o || v->guest_cid < 3 || !v->uds_path)
                return done(o, 1);
        return done(o, json_object_set_new(o, "guest_cid", json_integer(v->guest_cid)) |
                           set_str(o, "uds_path", v->uds_path));
}

json_t *fc_entropy_json(void)
{
        return json_object(); /* no rate limiter: the guest may take what it needs */
}

json_t *fc_action_json(enum fc_action a)
{
        return a == FC_ACTION_INSTANCE_START ? json_pack("{s:s}", "action_type", "InstanceStart")
                                             : NULL;
}

json_t *fc_vm_state_json(enum fc_vm_state s)
{
        return json_pack("{s:s}", "state", s == FC_VM_PAUSED ? "Paused" : "Resumed");
}

json_t *fc_snapshot_create_json(const struct fc_snapshot_create *c)
{
        json_t *o = json_object();

        if (!o || !c->snapshot_path || !c->mem_file_path)
                return done(o, 1);
        return done(o,
                    set_str(o, "snapshot_path", c->snapshot_path) |
                        set_str(o, "mem_file_path", c->mem_file_path) |
                        set_str(o, "snapshot_type", c->type == FC_SNAPSHOT_DIFF ? "Diff" : "Full"));
}

json_t *fc_snapshot_load_json(const struct fc_snapshot_load *l)
{
        json_t *o = json_object(), *backend = NULL;
        int failed = 0;

        if (!o || !l->snapshot_path || !l->backend_path)
                return done(o, 1);
        backend = json_pack("{s:s, s:s}", "backend_type",
                            l->backend_type == FC_MEM_UFFD ? "Uffd" : "File", "backend_path",
                            l->backend_path);
        failed |= set_str(o, "snapshot_path", l->snapshot_path);
        failed |= json_object_set_new(o, "mem_backend", backend);
        failed |= json_object_set_new(o, "resume_vm", json_boolean(l->resume_vm));
        if (l->track_dirty_pages)
                failed |= json_object_set_new(o, "track_dirty_pages", json_true());
        if (l->vsock_uds_path)
                failed |= json_object_set_new(o, "vsock_override",
                                              json_pack("{s:s}", "uds_path", l->vsock_uds_path));
        if (l->clock_realtime)
                failed |= json_object_set_new(o, "clock_realtime", json_true());
        return done(o, failed);
}

const char *fc_fault_message(json_t *body)
{
        return json_string_value(json_object_get(body, "fault_message"));
}

int fc_parse_version(const char *text, char *ret, size_t retlen)
{
        const char *p = strstr(text, "Firecracker v");
        size_t n;

        if (!p)
                return -ENOEXEC;
        p += strlen("Firecracker v");
        for (n = 0; p[n] && (isdigit((unsigned char)p[n]) || p[n] == '.'); n++)
                ;
        if (n == 0 || !isdigit((unsigned char)p[0]) || n >= retlen)
                return -ENOEXEC;
        memcpy(ret, p, n);
        ret[n] = 0;
        return 0;
}
