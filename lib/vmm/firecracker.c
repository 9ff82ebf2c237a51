/* firecracker.c: the Firecracker driver. One Firecracker process per VM, configured over its
 * HTTP API (fc-api.c, bodies from fc-model.c), the agent reached over the VM's vsock
 * (vsock-connect.c). Every path the VM uses is relative to its root directory (its working
 * directory, or its jail), so a snapshot restores into any VM's root: the rootfs and the vsock
 * socket of a clone are its own. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "cleanup.h"
#include "fc-api.h"
#include "fc-argv.h"
#include "fc-collect.h"
#include "fc-model.h"
#include "fs-space.h"
#include "host.h"
#include "poolplan.h"
#include "snap-ref.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"
#include "vsock-connect.h"
#include "workq.h"

#define FC_AGENT_PORT      1024 /* op-agent's AF_VSOCK port */
#define FC_GUEST_CID       3
#define FC_VSOCK_NAME      "vsock.sock"
#define FC_CONNECT_MS      1000   /* one handshake attempt */
#define FC_RETRY_MS        20     /* between attempts while the guest is not listening yet */
#define FC_CALL_TIMEOUT_MS 600000 /* a snapshot of a large guest takes a while */

/* Firecracker needs no TCG tricks: it runs under KVM only. After "--": op-agent's options. */
#define FC_CMDLINE                                                                                 \
        "console=ttyS0 reboot=k panic=1 pci=off quiet cryptomgr.notests rcupdate.rcu_expedited=1 " \
        "i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 op.root=/dev/vda -- --uid 1000 "      \
        "--gid 1000"

struct fc_vm {
        struct fc_api *api;
        struct vsock_conn *vc;
        struct event *retry;
        char *root;     /* the VM's relative paths resolve here (Firecracker's cwd) */
        char *api_sock; /* host paths */
        char *vsock;
        char *save_dir;
        bool jailed;
        struct fc_collect_job *collecting; /* the snapshot's copy out of the jail, under way */
};

static struct fc_vm *fv(struct vm *vm)
{
        return vm->drv;
}

/* Jailed with jail = yes: each VM as a uid (and gid) of its own from jail.uid_min..uid_max,
 * as QEMU's VMs are; with jail = no, firecracker.jailer.uid and .gid for every VM. */
static int launch_of(struct vm *vm, struct fc_launch *l)
{
        const struct op_fc_config *c = &vm->host->cfg->fc;
        uid_t uid;
        int r;

        *l = (struct fc_launch){
            .binary = c->binary,
            .id = vm->name,
            .jailer = c->jailer[0] ? c->jailer : NULL,
            .uid = c->uid,
            .gid = c->gid,
            .chroot_base = c->chroot_base,
            .memory_max_mb = c->memory_max_mb,
            .cpu_max_pct = c->cpu_max_pct,
            .netns = c->netns,
        };
        if (l->jailer && vm->host->cfg->jail.enabled) {
                r = vm_host_free_uid(vm->host, &uid);
                if (r < 0)
                        return r;
                l->uid = l->gid = uid;
        }
        return 0;
}

/* Put src into the VM's root as name: a hard link (a jail sees nothing else), or a symbolic
 * link when not jailed and src is on another filesystem. */
static int link_in(struct vm *vm, const char *src, const char *name)
{
        struct fc_vm *f = fv(vm);
        _cleanup_free_ char *dst = NULL;
        int r;

        if (asprintf(&dst, "%s/%s", f->root, name) < 0)
                return -ENOMEM;
        if (link(src, dst) == 0)
                return 0;
        r = -errno;
        if ((r == -EXDEV || r == -EPERM) && !f->jailed)
                r = symlink(src, dst) < 0 ? -errno : 0;
        if (r < 0)
                vm_host_log(vm->host, LOG_ERR, "%s: link %s to %s: %s%s", vm->name, src, dst,
                            strerror(-r),
                            r == -EXDEV ? " (a jail's files are hard links: "
                                          "firecracker.jailer.chroot_base must be on the "
                                          "filesystem of images_dir and cache_dir)"
                                        : "");
        return r;
}

/* Every failed call fails the VM, with Firecracker's own words. */
static void on_step(struct fc_api *a, long status, json_t *body, const char *err, void *arg)
{
        struct vm *vm = arg;
        char why[600];

        if (!err)
                return;
        snprintf(why, sizeof(why), "Firecracker: %s", err);
        vm_drv_failed(vm, why);
}

static int call(struct vm *vm, const char *method, const char *path, json_t *body,
                fc_api_done_fn cb)
{
        if (!body && strcmp(method, "GET") != 0)
                return -ENOMEM; /* a body builder refused its struct or ran out of memory */
        return fc_api_call(fv(vm)->api, method, path, body, cb ? cb : on_step, vm);
}

/* mkdir -p for a jail's directories. */
static int make_dirs(const char *path)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1;; s++) {
                if (*s != '/' && *s)
                        continue;
                char c = *s;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                if (!c)
                        return 0;
                *s = c;
        }
}

static void on_retry(evutil_socket_t fd, short what, void *arg);

static int spawn(struct vm *vm)
{
        _cleanup_close_ int out = -1;
        struct fc_vm *f = calloc(1, sizeof(*f));
        struct fc_launch l;
        char **argv = NULL;
        pid_t pid;
        int r;

        if (!f)
                return -ENOMEM;
        vm->drv = f;
        r = launch_of(vm, &l);
        if (r < 0)
                return r;
        f->jailed = l.jailer != NULL;
        if (f->jailed) {
                _cleanup_free_ char *run = NULL;

                r = fc_jail_root(&l, &f->root);
                if (r < 0)
                        return r;
                if (asprintf(&run, "%s/run", f->root) < 0 ||
                    asprintf(&f->api_sock, "%s%s", f->root, FC_JAIL_API_SOCK) < 0)
                        return -ENOMEM;
                /* A jail left over by a VM of the same name is stale: start clean. */
                snap_rmtree(AT_FDCWD, f->root);
                r = make_dirs(run);
                if (r < 0)
                        return r;
                /* The jailed process binds its sockets in run/ and writes snapshots in its
                 * root: both are its own. */
                if (chown(f->root, l.uid, l.gid) < 0 || chown(run, l.uid, l.gid) < 0)
                        vm_host_log(vm->host, LOG_WARNING, "%s: cannot give the jail to %u:%u: %m",
                                    vm->name, l.uid, l.gid);
        } else {
                f->root = strdup(vm->workdir);
                if (!f->root || asprintf(&f->api_sock, "%s/firecracker.sock", vm->workdir) < 0)
                        return -ENOMEM;
                l.api_sock = f->api_sock;
        }
        if (asprintf(&f->vsock, "%s/" FC_VSOCK_NAME, f->root) < 0)
                return -ENOMEM;
        if (strlen(f->api_sock) >= sizeof(((struct sockaddr_un *)0)->sun_path) ||
            strlen(f->vsock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
                vm_host_log(vm->host, LOG_ERR, "%s: socket path too long for AF_UNIX: %s", vm->name,
                            f->vsock);
                return -ENAMETOOLONG;
        }
        /* Firecracker binds both and refuses a path that exists. */
        if ((r = fc_remove_stale(f->api_sock)) < 0 || (r = fc_remove_stale(f->vsock)) < 0)
                return r;
        r = fc_argv(&l, &argv);
        if (r >= 0)
                r = vm_host_output(vm->host, vm, &out);
        if (r < 0) {
                op_argv_free(argv);
                return r;
        }
        pid = vmm_spawn(argv, NULL, 0, vm->workdir, out);
        op_argv_free(argv);
        if (pid < 0)
                return pid;
        vm->proc.pid = pid;
        vm->proc.uid = f->jailed ? l.uid : getuid();
        f->retry = evtimer_new(vm->host->base, on_retry, vm);
        if (!f->retry)
                return -ENOMEM;
        return fc_api_new(vm->host->base, f->api_sock, vm->host->cfg->boot_timeout_ms,
                          FC_CALL_TIMEOUT_MS, &f->api);
}

static void connect_agent(struct vm *vm);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
        connect_agent(arg);
}

static void on_vsock(int fd, int err, void *arg)
{
        struct vm *vm = arg;
        struct fc_vm *f = fv(vm);

        f->vc = NULL;
        if (fd >= 0) {
                vm_drv_agent_connected(vm, fd, true);
                return;
        }
        if (err == -ECONNREFUSED || err == -ENOENT || err == -ETIMEDOUT) {
                /* The guest is not listening yet: vm.c's deadlines bound the waiting. */
                struct timeval tv = {0, FC_RETRY_MS * 1000};

                evtimer_add(f->retry, &tv);
                return;
        }
        vm_drv_failed(vm, "cannot connect to the agent over vsock");
}

/* Host-initiated: CONNECT to op-agent's port through the VM's vsock socket; each session
 * starts with the agent's "ready". */
static void connect_agent(struct vm *vm)
{
        struct fc_vm *f = fv(vm);
        int r;

        if (vm->state == VM_DEAD || f->vc)
                return;
        r = vsock_connect_start(vm->host->base, f->vsock, FC_AGENT_PORT, FC_CONNECT_MS, on_vsock,
                                vm, &f->vc);
        if (r < 0) {
                f->vc = NULL;
                on_vsock(-1, r, vm);
        }
}

static void on_started(struct fc_api *a, long status, json_t *body, const char *err, void *arg)
{
        if (err)
                on_step(a, status, body, err, arg);
        else
                connect_agent(arg);
}

static int fc_boot(struct vm *vm, int mem_fd)
{
        const struct vm_host *h = vm->host;
        int r;

        (void)mem_fd; /* Firecracker writes guest RAM out itself at /snapshot/create */
        r = spawn(vm);
        if (r < 0)
                return r;
        if ((r = link_in(vm, h->kernel, "vmlinux")) < 0 ||
            (r = link_in(vm, h->initrd, "initrd.img")) < 0 ||
            (r = link_in(vm, vm->lang->rootfs, "rootfs.ext4")) < 0)
                return r;
        r = call(vm, "PUT", "/boot-source",
                 fc_boot_source_json(&(struct fc_boot_source){
                     .kernel_image_path = "vmlinux",
                     .initrd_path = "initrd.img",
                     .boot_args = FC_CMDLINE,
                 }),
                 NULL);
        r = r
                ?: call(vm, "PUT", "/drives/rootfs",
                        fc_drive_json(&(struct fc_drive){
                            .drive_id = "rootfs",
                            .path_on_host = "rootfs.ext4",
                            .is_root_device = true,
                            .is_read_only = true,
                        }),
                        NULL);
        r = r
                ?: call(vm, "PUT", "/machine-config",
                        fc_machine_config_json(&(struct fc_machine_config){
                            .vcpu_count = h->cfg->vm_vcpus,
                            .mem_size_mib = op_lang_memory_mb(h->cfg, vm->lang),
                            .track_dirty_pages = h->cfg->fc.track_dirty_pages,
                        }),
                        NULL);
        r = r
                ?: call(vm, "PUT", "/vsock",
                        fc_vsock_json(&(struct fc_vsock){
                            .guest_cid = FC_GUEST_CID,
                            .uds_path = FC_VSOCK_NAME,
                        }),
                        NULL);
        r = r ?: call(vm, "PUT", "/entropy", fc_entropy_json(), NULL);
        r = r ?: call(vm, "PUT", "/actions", fc_action_json(FC_ACTION_INSTANCE_START), on_started);
        return r;
}

static void on_loaded(struct fc_api *a, long status, json_t *body, const char *err, void *arg)
{
        if (err)
                on_step(a, status, body, err, arg); /* and the process exits on its own */
        else
                vm_drv_loaded(arg);
}

/* A file of the snapshot into the VM's root, under its own name. */
static int link_snap(struct vm *vm, const char *snapdir, const char *name)
{
        _cleanup_free_ char *src = NULL;

        if (asprintf(&src, "%s/%s", snapdir, name) < 0)
                return -ENOMEM;
        return link_in(vm, src, name);
}

/* The snapshot's state and memory files as Firecracker must name them: inside a jail, relative
 * to its root (where they are linked); otherwise absolute, in dir. */
static int snap_paths(struct fc_vm *f, const char *dir, char **state, char **mem)
{
        *state = *mem = NULL; /* what is set is the caller's to free */
        if (f->jailed) {
                *state = strdup("vmstate");
                *mem = strdup("mem");
                return *state && *mem ? 0 : -ENOMEM;
        }
        if (asprintf(state, "%s/vmstate", dir) < 0) {
                *state = NULL;
                return -ENOMEM;
        }
        if (asprintf(mem, "%s/mem", dir) < 0) {
                *mem = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int fc_restore(struct vm *vm)
{
        _cleanup_free_ char *dir = NULL, *state = NULL, *mem = NULL;
        struct fc_vm *f;
        int r;

        /* Firecracker runs elsewhere (its own cwd, maybe a jail): absolute paths only. */
        dir = realpath(vm->snap->path, NULL);
        if (!dir)
                return -errno;
        r = spawn(vm);
        if (r < 0)
                return r;
        f = fv(vm);
        /* The drive path saved in the snapshot is relative: this clone's root gets the rootfs
         * of the snapshot (read-only, shared by every clone). Inside a jail only what is
         * linked in exists: the state and memory files too. */
        r = link_snap(vm, dir, "rootfs.ext4");
        if (r >= 0 && f->jailed)
                r = link_snap(vm, dir, "vmstate");
        if (r >= 0 && f->jailed)
                r = link_snap(vm, dir, "mem");
        if (r < 0)
                return r;
        r = snap_paths(f, dir, &state, &mem);
        if (r < 0)
                return r;
        return call(vm, "PUT", "/snapshot/load",
                    fc_snapshot_load_json(&(struct fc_snapshot_load){
                        .snapshot_path = state,
                        .backend_type = FC_MEM_FILE,
                        .backend_path = mem,
                        .resume_vm = false,
                        .track_dirty_pages = vm->host->cfg->fc.track_dirty_pages,
                        /* No PUT /vsock after a load: the clone's own socket comes from here. */
                        .vsock_uds_path = f->jailed ? FC_VSOCK_NAME : f->vsock,
#ifdef __x86_64__
                        .clock_realtime = true,
#endif
                    }),
                    on_loaded);
}

static void on_resumed(struct fc_api *a, long status, json_t *body, const char *err, void *arg)
{
        struct vm *vm = arg;

        if (err) {
                on_step(a, status, body, err, arg);
                return;
        }
        vm_drv_resumed(vm);
        /* A restored clone's vsock connections were reset by the load: connect anew. A VM
         * paused after priming keeps its connection. */
        if (bufferevent_getfd(vm->agent) < 0)
                connect_agent(vm);
}

static int fc_resume(struct vm *vm)
{
        return call(vm, "PATCH", "/vm", fc_vm_state_json(FC_VM_RESUMED), on_resumed);
}

static void on_paused(struct fc_api *a, long status, json_t *body, const char *err, void *arg)
{
        if (err)
                on_step(a, status, body, err, arg);
        else
                vm_drv_paused(arg);
}

static int fc_pause(struct vm *vm)
{
        return call(vm, "PATCH", "/vm", fc_vm_state_json(FC_VM_PAUSED), on_paused);
}

/* Jailed, the files were written inside the jail: they are copied into the snapshot directory
 * as opd's own, read-only to everyone (a link would put a file that uid, and the next VM given
 * it, can write into every later jail). The jail is the VMM's: fc_collect() takes from it only
 * a regular file of the right size (mem: the VM's memory exactly). The copy reads and writes up
 * to the guest's memory size, so it runs on a worker thread of the host while the loop serves on;
 * the VM stays SAVING, under its save deadline, until it is done. */
struct fc_collect_job {
        struct work w;
        struct vm *vm; /* touched on the loop only (collect_done()) */
        char *root, *dir;
        uint64_t mem_size;
        int r;
        char why[512];
};

static void collect_job_free(struct fc_collect_job *j)
{
        if (!j)
                return;
        free(j->root);
        free(j->dir);
        free(j);
}

static void collect_run(struct work *w)
{
        struct fc_collect_job *j = (struct fc_collect_job *)w;

        j->r = fc_collect(j->root, j->dir, j->mem_size, j->why, sizeof(j->why));
}

/* On failure why says which file was refused or which copy failed (a full file system by
 * name); also logged, naming the VM (a refusal is a VMM that broke its side). */
static void collect_done(struct work *w)
{
        struct fc_collect_job *j = (struct fc_collect_job *)w;
        struct vm *vm = j->vm;
        char why[600];
        int r = j->r;

        fv(vm)->collecting = NULL;
        if (r < 0)
                snprintf(why, sizeof(why), "copying the snapshot out of its jail: %s", j->why);
        collect_job_free(j);
        if (r < 0)
                vm_host_log(vm->host, LOG_WARNING, "%s: %s", vm->name, why);
        vm_drv_saved(vm, r < 0 ? why : NULL);
}

static int collect_start(struct vm *vm)
{
        struct fc_vm *f = fv(vm);
        uint32_t mb = vm->snap ? vm->snap->m.memory_mb : op_lang_memory_mb(vm->host->cfg, vm->lang);
        struct fc_collect_job *j;
        struct workq *q;
        int r;

        r = vm_host_workq(vm->host, &q);
        if (r < 0)
                return r;
        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->vm = vm;
        j->root = strdup(f->root);
        j->dir = strdup(f->save_dir);
        j->mem_size = (uint64_t)mb << 20;
        if (!j->root || !j->dir) {
                collect_job_free(j);
                return -ENOMEM;
        }
        f->collecting = j;
        workq_submit(q, &j->w, collect_run, collect_done);
        return 0;
}

static void on_created(struct fc_api *a, long status, json_t *body, const char *err, void *arg)
{
        struct vm *vm = arg;
        char why[600];
        int r;

        if (err) {
                snprintf(why, sizeof(why), "Firecracker: %s", err);
                vm_drv_saved(vm, why);
                return;
        }
        if (!fv(vm)->jailed) {
                vm_drv_saved(vm, NULL);
                return;
        }
        r = collect_start(vm);
        if (r < 0) {
                snprintf(why, sizeof(why), "copying the snapshot out of its jail: %s",
                         strerror(-r));
                vm_drv_saved(vm, why);
        }
}

static void on_save_paused(struct fc_api *a, long status, json_t *body, const char *err, void *arg)
{
        struct vm *vm = arg;
        char why[600];

        if (err) {
                snprintf(why, sizeof(why), "Firecracker: pausing for the snapshot: %s", err);
                vm_drv_saved(vm, why);
        }
}

/* fc_remove_stale() of a name in the VM's root. */
static int remove_in_root(struct fc_vm *f, const char *name)
{
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/%s", f->root, name) < 0)
                return -ENOMEM;
        return fc_remove_stale(path);
}

static int fc_snapshot(struct vm *vm, const char *dir)
{
        struct fc_vm *f = fv(vm);
        _cleanup_free_ char *state = NULL, *mem = NULL;
        int r;

        free(f->save_dir);
        f->save_dir = realpath(dir, NULL); /* Firecracker's cwd is not ours */
        if (!f->save_dir)
                return -errno;
        dir = f->save_dir;
        r = snap_paths(f, dir, &state, &mem);
        if (r < 0)
                return r;
        /* Firecracker writes both files itself: none may be in the way. In a jail a clone's are
         * the links of its snapshot's files (fc_restore()): written through, they would be the
         * cache's, and the jail's uid may not write them. The clone mapped its memory at the
         * load and needs neither name any more. */
        if (f->jailed)
                r = remove_in_root(f, state) ?: remove_in_root(f, mem);
        else
                r = fc_remove_stale(state) ?: fc_remove_stale(mem);
        if (r < 0)
                return r;
        r = call(vm, "PATCH", "/vm", fc_vm_state_json(FC_VM_PAUSED), on_save_paused);
        return r
                   ?: call(vm, "PUT", "/snapshot/create",
                           fc_snapshot_create_json(&(struct fc_snapshot_create){
                               .snapshot_path = state,
                               .mem_file_path = mem,
                               /* a clone is saved whole: a diff would lack its
                                * snapshot's pages */
                               .type = vm->host->cfg->fc.track_dirty_pages && !vm->snap
                                           ? FC_SNAPSHOT_DIFF
                                           : FC_SNAPSHOT_FULL,
                           }),
                           on_created);
}

static void fc_release(struct vm *vm)
{
        struct fc_vm *f = fv(vm);

        if (!f)
                return;
        if (f->collecting) {
                /* waits while a worker copies: bounded by the VM's memory size */
                workq_cancel(vm->host->wq, &f->collecting->w);
                collect_job_free(f->collecting);
                f->collecting = NULL;
        }
        fc_api_free(f->api);
        vsock_connect_cancel(f->vc);
        if (f->retry)
                event_free(f->retry);
        if (f->jailed && f->root) {
                /* the jail: <chroot_base>/firecracker/<id>; its root is inside */
                char *slash = strrchr(f->root, '/');
                if (slash) {
                        int r;

                        *slash = 0;
                        r = snap_rmtree(AT_FDCWD, f->root);
                        if (r < 0)
                                vm_host_log(vm->host, LOG_WARNING,
                                            "%s: cannot remove its jail %s: %s (left for removal "
                                            "by hand)",
                                            vm->name, f->root, strerror(-r));
                }
        }
        free(f->root);
        free(f->api_sock);
        free(f->vsock);
        free(f->save_dir);
        free(f);
        vm->drv = NULL;
}

/* Jails of VMs whose opd is gone (killed before it could remove them): their hard links would
 * keep deleted snapshots on disk. A jail is <chroot_base>/<binary name>/vm-<opd pid>-<n>. */
static void fc_init(struct vm_host *h)
{
        struct fc_launch l = {
            .binary = h->cfg->fc.binary, .id = "x", .chroot_base = h->cfg->fc.chroot_base};
        _cleanup_free_ char *root = NULL;
        struct dirent *de;
        char *slash;
        DIR *dir;
        unsigned n = 0;

        if (!h->cfg->fc.jailer[0] || fc_jail_root(&l, &root) < 0)
                return;
        slash = strrchr(root, '/'); /* .../<binary name>/x/root -> .../<binary name> */
        *slash = 0;
        slash = strrchr(root, '/');
        *slash = 0;
        dir = opendir(root);
        if (!dir)
                return;
        while ((de = readdir(dir))) {
                int pid;

                if (sscanf(de->d_name, "vm-%d-", &pid) != 1 || pid <= 0 ||
                    (kill(pid, 0) == 0 || errno != ESRCH))
                        continue;
                if (snap_rmtree(dirfd(dir), de->d_name) == 0)
                        n++;
        }
        closedir(dir);
        if (n)
                vm_host_log(h, LOG_INFO, "removed %u jails left in %s", n, root);
}

static int fc_version(struct vm_host *h, char **ret)
{
        _cleanup_free_ char *out = NULL;
        char v[64];
        int r;

        r = vmm_version_output(h->cfg->fc.binary, &out);
        if (r < 0)
                return r;
        r = fc_parse_version(out, v, sizeof(v));
        if (r < 0)
                return r;
        *ret = strdup(v);
        return *ret ? 0 : -ENOMEM;
}

const struct vm_driver vm_driver_firecracker = {
    .name = "firecracker",
    .console_is_output = true, /* the guest's serial console is Firecracker's stdout */
    .init = fc_init,
    .version = fc_version,
    .only_accel = OP_ACCEL_KVM,
    .boot = fc_boot,
    .restore = fc_restore,
    .resume = fc_resume,
    .pause = fc_pause,
    .snapshot = fc_snapshot,
    .release = fc_release,
};
