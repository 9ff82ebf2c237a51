/* fake.c: the fake VMM driver for unit tests: no process, every operation a timer on the host's
 * loop, injected faults, and the agent as an in-process socketpair peer scripted by a callback. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "evframe.h"
#include "evtimer.h"
#include "fake.h"
#include "host.h"
#include "snap-ref.h"
#include "vm.h"
#include "vmm.h"

#define FAKE_FRAME_MAX (16 * 1024 * 1024)

enum fake_op {
        FAKE_OP_NONE,
        FAKE_OP_BOOT,
        FAKE_OP_RESTORE,
        FAKE_OP_RESUME,
        FAKE_OP_PAUSE,
        FAKE_OP_SAVE,
        FAKE_OP_DIE
};

struct fake_vm {
        struct vm *vm;
        struct fake_vmm *vmm; /* NULL: defaults */
        struct fake_vm_opts o;
        struct event *timer;         /* the operation in progress */
        struct event *console_timer; /* console_read in progress */
        enum fake_op op;
        struct bufferevent *peer; /* the agent's end of the channel */
};

static struct fake_vm *fk(struct vm *vm)
{
        return vm->drv;
}

struct fake_vm_opts *fake_vm_opts(struct vm *vm)
{
        return &fk(vm)->o;
}

static void agent_send(struct fake_vm *f, json_t *frame)
{
        if (frame)
                (void)evframe_add(bufferevent_get_output(f->peer), frame, SIZE_MAX);
        json_decref(frame);
}

static void on_peer_read(struct bufferevent *bev, void *arg)
{
        struct fake_vm *f = arg;
        struct vm *vm = f->vm;
        char err[128];
        json_t *frame;

        while (evframe_next(bufferevent_get_input(bev), FAKE_FRAME_MAX, SIZE_MAX, &frame, err,
                            sizeof(err)) > 0) {
                json_t *answer;

                if (f->vmm)
                        f->vmm->n_frames++;
                if (f->o.fault == FAKE_FAULT_SILENT) {
                        json_decref(frame);
                        continue;
                }
                if (f->o.fault == FAKE_FAULT_RUNNING) {
                        json_decref(frame);
                        bufferevent_disable(bev, EV_READ);
                        fake_vm_die(vm);
                        return;
                }
                if (f->vmm && f->vmm->agent)
                        answer = f->vmm->agent(vm, frame, f->vmm->agent_userdata);
                else
                        answer = json_pack("{s:b}", "ok", 1);
                json_decref(frame);
                agent_send(f, answer);
        }
}

/* The guest runs (booted or resumed) or stops: only a running agent reads its jobs. */
static void set_running(struct fake_vm *f, bool running)
{
        if (running)
                bufferevent_enable(f->peer, EV_READ);
        else
                bufferevent_disable(f->peer, EV_READ);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        struct fake_vm *f = arg;
        struct vm *vm = f->vm;
        enum fake_op op = f->op;
        bool silent = f->o.fault == FAKE_FAULT_SILENT;

        f->op = FAKE_OP_NONE;
        /* Each completion may end in the VM's destruction: f is not touched after it. */
        switch (op) {
        case FAKE_OP_BOOT:
                if (f->o.fault == FAKE_FAULT_BOOT) {
                        vm_drv_failed(vm, "fake: the boot failed");
                } else if (!silent) {
                        set_running(f, true);
                        agent_send(
                            f, json_pack("{s:s, s:s}", "event", "ready", "agent_version", "fake"));
                }
                break;
        case FAKE_OP_RESTORE:
                if (f->o.fault == FAKE_FAULT_RESTORE)
                        vm_drv_failed(vm, "fake: loading the snapshot failed");
                else if (!silent)
                        vm_drv_loaded(vm);
                break;
        case FAKE_OP_RESUME:
                if (f->o.fault == FAKE_FAULT_RESUME) {
                        vm_drv_failed(vm, "fake: the VMM died before resuming");
                } else if (!silent) {
                        set_running(f, true);
                        vm_drv_resumed(vm);
                }
                break;
        case FAKE_OP_PAUSE:
                if (!silent) {
                        set_running(f, false);
                        vm_drv_paused(vm);
                }
                break;
        case FAKE_OP_SAVE:
                if (f->o.fault == FAKE_FAULT_SAVE) {
                        set_running(f, false);
                        vm_drv_save_failed(vm, "fake: no space left for the save");
                } else if (f->o.fault == FAKE_FAULT_SAVE_DIE) {
                        vm_drv_failed(vm, "fake: the VMM died while it saved");
                } else if (!silent) {
                        set_running(f, false);
                        vm_drv_saved(vm, NULL);
                }
                break;
        case FAKE_OP_DIE:
                vm_drv_failed(vm, "fake: the VMM died");
                break;
        case FAKE_OP_NONE:
                break;
        }
}

static int start(struct fake_vm *f, enum fake_op op, uint32_t ms)
{
        f->op = op;
        return op_timer_arm_ms(f->timer, ms) < 0 ? -ENOMEM : 0;
}

void fake_vm_die(struct vm *vm)
{
        struct fake_vm *f = fk(vm);

        if (f)
                (void)start(f, FAKE_OP_DIE, 0);
}

/* The VM's state and both ends of its agent channel: the VM's end goes to vm.c at once (a
 * QEMU-like channel, there from the start); the agent's end reads once the guest runs. */
static int spawn(struct vm *vm)
{
        struct fake_vmm *vmm = vm->host->drv_data;
        struct fake_vm *f = calloc(1, sizeof(*f));
        int sp[2];

        if (!f)
                return -ENOMEM;
        vm->drv = f;
        f->vm = vm;
        f->vmm = vmm;
        if (vmm) {
                f->o = vmm->opts;
                vmm->n_live++;
        }
        f->timer = evtimer_new(vm->host->base, on_timer, f);
        if (!f->timer)
                return -ENOMEM;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0)
                return -errno;
        f->peer = bufferevent_socket_new(vm->host->base, sp[1], BEV_OPT_CLOSE_ON_FREE);
        if (!f->peer) {
                safe_close(sp[0]);
                safe_close(sp[1]);
                return -ENOMEM;
        }
        bufferevent_setcb(f->peer, on_peer_read, NULL, NULL, f);
        bufferevent_enable(f->peer, EV_WRITE);
        vm_drv_agent_connected(vm, sp[0], false);
        return 0;
}

static int fake_boot(struct vm *vm, int mem_fd)
{
        int r = spawn(vm);

        return r < 0 ? r : start(fk(vm), FAKE_OP_BOOT, fk(vm)->o.boot_ms);
}

static int fake_restore(struct vm *vm)
{
        int r = spawn(vm);

        return r < 0 ? r : start(fk(vm), FAKE_OP_RESTORE, fk(vm)->o.restore_ms);
}

static int fake_resume(struct vm *vm)
{
        return start(fk(vm), FAKE_OP_RESUME, fk(vm)->o.resume_ms);
}

static int fake_pause(struct vm *vm)
{
        return start(fk(vm), FAKE_OP_PAUSE, fk(vm)->o.pause_ms);
}

/* The files of a save, written at once (the save's end is still the timer's). */
static int save_files(struct vm *vm, const char *dir)
{
        static const char vmstate[] = "fake vmstate\n";
        uint64_t mem = vm->snap ? (uint64_t)vm->snap->m.memory_mb << 20 : 0;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int fd = -1, mfd = -1;

        if (dfd < 0)
                return -errno;
        fd = openat(dfd, "vmstate", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0400);
        if (fd < 0 || write(fd, vmstate, sizeof(vmstate) - 1) != (ssize_t)sizeof(vmstate) - 1)
                return fd < 0 ? -errno : -EIO;
        mfd = openat(dfd, "mem", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0400);
        if (mfd < 0 || ftruncate(mfd, (off_t)mem) < 0)
                return -errno;
        return 0;
}

static int fake_snapshot(struct vm *vm, const char *dir)
{
        int r = fk(vm)->o.save_files ? save_files(vm, dir) : 0;

        return r < 0 ? r : start(fk(vm), FAKE_OP_SAVE, fk(vm)->o.snapshot_ms);
}

static void fake_release(struct vm *vm)
{
        struct fake_vm *f = fk(vm);

        if (!f)
                return;
        if (f->timer)
                event_free(f->timer);
        if (f->console_timer)
                event_free(f->console_timer);
        if (f->peer)
                bufferevent_free(f->peer);
        if (f->vmm)
                f->vmm->n_live--;
        free(f);
        vm->drv = NULL;
}

static void on_console_timer(evutil_socket_t fd, short what, void *arg)
{
        struct fake_vm *f = arg;

        vm_drv_console(f->vm, f->o.console, strlen(f->o.console)); /* may destroy the VM */
}

static int fake_console_read(struct vm *vm)
{
        struct fake_vm *f = fk(vm);

        if (!f || !f->o.console)
                return -ENOENT;
        if (!f->console_timer)
                f->console_timer = evtimer_new(vm->host->base, on_console_timer, f);
        if (!f->console_timer)
                return -ENOMEM;
        return op_timer_arm_ms(f->console_timer, 0);
}

static int fake_version(struct vm_host *h, char **ret)
{
        char *v = strdup("fake-1");

        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

const struct vm_driver vm_driver_fake = {
    .name = "fake",
    .console_is_output = false,
    .version = fake_version,
    .only_accel = OP_ACCEL_TCG,
    .boot = fake_boot,
    .restore = fake_restore,
    .resume = fake_resume,
    .pause = fake_pause,
    .snapshot = fake_snapshot,
    .console_read = fake_console_read,
    .release = fake_release,
};
