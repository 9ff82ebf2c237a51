/* vm.c: one VM whatever its VMM: its working directory, its agent channel (frames), its state,
 * the boot deadline, and what happens when its process exits. The VMM driver (vmdrv.h) does the
 * rest. */
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "evframe.h"
#include "log.h"
#include "opd.h"
#include "util.h"

/* The agent's answer carries at most 2 streams of output_max bytes and output_files_max files
 * of output_file_max bytes, each maybe twice (text and base64) and JSON-escaped (up to 6x for
 * control bytes). */
static size_t agent_frame_max(const struct opd *d)
{
        const struct op_limits *l = &d->cfg.limits;

        return 16 * l->output_max + 8 * l->output_files_max * l->output_file_max + 1024 * 1024;
}

/* Last lines of the guest console, for the log when a VM fails. */
static void log_console_tail(struct vm *vm)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        char buf[1024];
        off_t size;
        ssize_t k;

        if (asprintf(&path, "%s/%s", vm->workdir, vm->d->vmm->console) < 0)
                return;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return;
        size = lseek(fd, 0, SEEK_END);
        if (size < 0)
                return;
        k = pread(fd, buf, sizeof(buf) - 1,
                  size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0);
        if (k <= 0)
                return;
        buf[k] = 0;
        for (char *p = buf; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = '|';
        log_warn("%s console tail: %s", vm->name, buf);
}

static void vm_fail(struct vm *vm, const char *why)
{
        struct vm_events ev = vm->ev;
        void *userdata = vm->userdata;

        if (vm->state == VM_DEAD)
                return;
        vm->state = VM_DEAD;
        if (!vm->d->stopping) {
                vm->d->stats.vms_failed++;
                log_warn("%s (%s) failed: %s", vm->name, vm->lang->name, why);
                log_console_tail(vm);
        }
        /* Last thing: the callback may destroy the VM. */
        if (ev.failed)
                ev.failed(vm, why, userdata);
}

static void on_agent_read(struct bufferevent *bev, void *arg)
{
        struct vm *vm = arg;
        char err[256];

        while (vm->state != VM_DEAD) {
                json_t *obj = NULL;
                const char *event;
                int r = evframe_next(bufferevent_get_input(bev), agent_frame_max(vm->d), &obj, err,
                                     sizeof(err));

                if (r == 0)
                        return;
                if (r < 0) {
                        char why[300];

                        snprintf(why, sizeof(why), "agent sent %s",
                                 r == -EMSGSIZE ? "an oversized frame" : err);
                        vm_fail(vm, why);
                        return;
                }
                event = json_string_value(json_object_get(obj, "event"));
                if (vm->agent_hello && vm->state != VM_BOOTING && event &&
                    strcmp(event, "ready") == 0) {
                        vm->agent_hello = false; /* a new session's greeting, not a boot */
                        json_decref(obj);
                        continue;
                }
                if (vm->state == VM_BOOTING && event && strcmp(event, "ready") == 0) {
                        const char *av = json_string_value(json_object_get(obj, "agent_version"));

                        snprintf(vm->agent_version, sizeof(vm->agent_version), "%s",
                                 av ? av : "unknown");
                        json_decref(obj);
                        vm->state = VM_READY;
                        vm->agent_hello = false; /* this session's greeting was the boot's */
                        vm->t_loaded = op_now_us();
                        evtimer_del(vm->boot_timer);
                        log_debug("%s ready", vm->name);
                        if (vm->ev.ready)
                                vm->ev.ready(vm, vm->userdata);
                        return; /* the callback may have destroyed the VM */
                }
                if (vm->state == VM_RUNNING && event &&
                    (strcmp(event, "stdout") == 0 || strcmp(event, "stderr") == 0)) {
                        /* Streamed output: the request checks and forwards it. */
                        if (vm->ev.event)
                                vm->ev.event(vm, obj, vm->userdata);
                        json_decref(obj);
                        continue;
                }
                if (vm->state == VM_RUNNING && !event) {
                        vm->state = VM_READY;
                        if (vm->ev.answer)
                                vm->ev.answer(vm, obj, vm->userdata);
                        json_decref(obj);
                        return;
                }
                json_decref(obj);
                vm_fail(vm, "agent sent an unexpected frame");
                return;
        }
}

static void on_agent_event(struct bufferevent *bev, short what, void *arg)
{
        struct vm *vm = arg;

        if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
                vm_fail(vm, "agent channel closed");
}

static void on_boot_timeout(evutil_socket_t fd, short what, void *arg)
{
        struct vm *vm = arg;

        vm_fail(vm, vm->state == VM_RESTORING ? "restore deadline passed"
                                              : "boot deadline passed before the agent was ready");
}

static int vm_new(struct opd *d, const struct op_lang *lang, enum op_accel accel,
                  const struct vm_events *ev, void *userdata, struct vm **ret)
{
        struct vm *vm = calloc(1, sizeof(*vm));
        int r;

        if (!vm)
                return -ENOMEM;
        vm->d = d;
        vm->id = ++d->next_vm_id;
        snprintf(vm->name, sizeof(vm->name), "vm-%d-%llu", (int)getpid(),
                 (unsigned long long)vm->id);
        vm->lang = lang;
        vm->accel = accel;
        vm->ev = *ev;
        vm->userdata = userdata;
        vm->proc.agent_fd = vm->proc.ctl_fd = -1;
        if (asprintf(&vm->workdir, "%s/%s", d->cfg.run_dir, vm->name) < 0) {
                free(vm);
                return -ENOMEM;
        }
        if (mkdir(vm->workdir, 0700) < 0) {
                r = log_error_errno(-errno, "mkdir %s", vm->workdir);
                free(vm->workdir);
                free(vm);
                return r;
        }
        *ret = vm;
        return 0;
}

static void vm_abandon(struct vm *vm)
{
        snap_rmtree(AT_FDCWD, vm->workdir); /* the VM's directory */
        free(vm->workdir);
        snap_ref_put(vm->snap);
        free(vm);
}

/* Wire the VM into the loop and start its deadline; the driver then starts the process. The
 * agent channel buffers what is sent until the driver connects it. */
static int vm_attach(struct vm *vm)
{
        struct opd *d = vm->d;

        vm->t_spawn = op_now_us();
        vm->agent = bufferevent_socket_new(d->base, -1, BEV_OPT_CLOSE_ON_FREE);
        vm->boot_timer = evtimer_new(d->base, on_boot_timeout, vm);
        LIST_INSERT_HEAD(&d->vms, vm, link);
        d->n_vms++;
        d->stats.vms_started++;
        if (!vm->agent || !vm->boot_timer)
                return -ENOMEM;
        bufferevent_setcb(vm->agent, on_agent_read, NULL, on_agent_event, vm);
        timer_arm_ms(vm->boot_timer, vm->state == VM_RESTORING ? d->cfg.restore_timeout_ms
                                                               : d->cfg.boot_timeout_ms);
        return 0;
}

void vm_drv_agent_connected(struct vm *vm, int fd, bool hello)
{
        if (vm->state == VM_DEAD || !vm->agent) {
                safe_close(fd);
                return;
        }
        op_fd_nonblock(fd, 1);
        vm->agent_hello = hello;
        if (bufferevent_setfd(vm->agent, fd) < 0) {
                safe_close(fd);
                vm_fail(vm, "cannot watch the agent channel");
                return;
        }
        bufferevent_enable(vm->agent, EV_READ | EV_WRITE);
}

void vm_drv_failed(struct vm *vm, const char *why)
{
        vm_fail(vm, why);
}

void vm_drv_loaded(struct vm *vm)
{
        if (vm->state != VM_RESTORING)
                return;
        vm->state = VM_PAUSED;
        vm->t_loaded = op_now_us();
        evtimer_del(vm->boot_timer);
        log_debug("%s restored in %.1f ms", vm->name,
                  (double)(vm->t_loaded - vm->t_spawn) / 1000.0);
        if (vm->ev.ready)
                vm->ev.ready(vm, vm->userdata);
}

void vm_drv_resumed(struct vm *vm)
{
        vm->t_resumed = op_now_us();
}

void vm_drv_paused(struct vm *vm)
{
        if (vm->state == VM_DEAD)
                return;
        vm->state = VM_PAUSED;
        if (vm->ev.ready)
                vm->ev.ready(vm, vm->userdata);
}

void vm_drv_saved(struct vm *vm, const char *err)
{
        void (*done)(struct vm *, const char *, void *) = vm->saved;

        if (!done)
                return;
        vm->saved = NULL;
        done(vm, err, vm->saved_userdata);
}

int vm_boot(struct opd *d, const struct op_lang *lang, enum op_accel accel, int mem_fd,
            const struct vm_events *ev, void *userdata, struct vm **ret)
{
        struct vm *vm;
        int r;

        r = vm_new(d, lang, accel, ev, userdata, &vm);
        if (r < 0)
                return r;
        vm->state = VM_BOOTING;
        r = vm_attach(vm);
        if (r >= 0)
                r = d->vmm->boot(vm, mem_fd);
        if (r < 0) {
                vm_destroy(vm);
                return r;
        }
        log_debug("%s (%s, %s, %s) booting, pid %d", vm->name, lang->name, d->vmm->name,
                  op_accel_name(accel), (int)vm->proc.pid);
        *ret = vm;
        return 0;
}

int vm_restore(struct opd *d, const struct op_lang *lang, struct snap_ref *snap,
               const struct vm_events *ev, void *userdata, struct vm **ret)
{
        struct vm *vm;
        int r;

        if (!d->vmm->restore)
                return -EOPNOTSUPP;
        r = vm_new(d, lang, d->accel, ev, userdata, &vm);
        if (r < 0)
                return r;
        vm->snap = snap_ref_get(snap);
        vm->state = VM_RESTORING;
        r = vm_attach(vm);
        if (r >= 0)
                r = d->vmm->restore(vm);
        if (r < 0) {
                vm_destroy(vm);
                return r;
        }
        *ret = vm;
        return 0;
}

void vm_set_events(struct vm *vm, const struct vm_events *ev, void *userdata)
{
        vm->ev = *ev;
        vm->userdata = userdata;
}

int vm_resume(struct vm *vm)
{
        int r;

        if (vm->state != VM_PAUSED)
                return -EBUSY;
        r = vm->d->vmm->resume(vm);
        if (r < 0)
                return r;
        vm->t_resume = op_now_us();
        vm->t_resumed = 0; /* set when the VMM confirms */
        vm->state = VM_READY;
        return 0;
}

int vm_pause(struct vm *vm)
{
        if (vm->state != VM_READY)
                return -EBUSY;
        return vm->d->vmm->pause(vm);
}

int vm_snapshot(struct vm *vm, const char *dir,
                void (*done)(struct vm *vm, const char *err, void *userdata), void *userdata)
{
        int r;

        if (vm->state != VM_READY || vm->saved)
                return -EBUSY;
        vm->saved = done;
        vm->saved_userdata = userdata;
        r = vm->d->vmm->snapshot(vm, dir);
        if (r < 0)
                vm->saved = NULL;
        return r;
}

int vm_send(struct vm *vm, json_t *job)
{
        int r;

        if (vm->state != VM_READY)
                return -EBUSY;
        r = evframe_add(bufferevent_get_output(vm->agent), job, SIZE_MAX);
        if (r < 0)
                return r;
        vm->state = VM_RUNNING;
        return 0;
}

int vm_send_more(struct vm *vm, json_t *frame)
{
        if (vm->state != VM_RUNNING)
                return -EBUSY;
        return evframe_add(bufferevent_get_output(vm->agent), frame, SIZE_MAX);
}

void vm_destroy(struct vm *vm)
{
        struct opd *d = vm->d;

        if (vm->proc.pid > 0 && !vm->reaped)
                kill(vm->proc.pid, SIGKILL);
        if (vm->proc.pid <= 0)
                vm->reaped = true; /* no process was started: nothing to wait for */
        vm->state = VM_DEAD;
        vm->ev = (struct vm_events){0};
        if (vm->agent) {
                bufferevent_free(vm->agent);
                vm->agent = NULL;
        }
        if (vm->d->vmm->release)
                vm->d->vmm->release(vm);
        vm->saved = NULL;
        if (vm->boot_timer) {
                event_free(vm->boot_timer);
                vm->boot_timer = NULL;
        }
        LIST_REMOVE(vm, link);
        d->n_vms--;
        LIST_INSERT_HEAD(&d->dead_vms, vm, link);
        opd_schedule_reap(d);
}

static struct vm *find_pid(struct vm *first, pid_t pid)
{
        for (struct vm *vm = first; vm; vm = LIST_NEXT(vm, link))
                if (vm->proc.pid == pid)
                        return vm;
        return NULL;
}

bool vm_reaped(struct opd *d, pid_t pid, int status)
{
        struct vm *vm = find_pid(LIST_FIRST(&d->vms), pid);
        char why[128];

        if (!vm)
                vm = find_pid(LIST_FIRST(&d->dead_vms), pid);
        if (!vm)
                return false;
        vm->reaped = true;
        vm->exit_status = status;
        if (vm->state == VM_DEAD)
                return true;
        if (WIFSIGNALED(status))
                snprintf(why, sizeof(why), "VMM process killed by signal %d", WTERMSIG(status));
        else
                snprintf(why, sizeof(why), "VMM process exited with status %d",
                         WEXITSTATUS(status));
        vm_fail(vm, why);
        return true;
}

/* Free destroyed VMs whose process has been reaped. */
void vms_free_dead(struct opd *d)
{
        struct vm *vm, *next;

        for (vm = LIST_FIRST(&d->dead_vms); vm; vm = next) {
                next = LIST_NEXT(vm, link);
                if (!vm->reaped)
                        continue;
                LIST_REMOVE(vm, link);
                vm_abandon(vm);
        }
}

/* Shutdown: every VMM process is killed and waited for before opd exits. */
void vms_kill_all(struct opd *d)
{
        struct vm *vm;

        /* Owners hear of it (and drop their pointers) before the VM goes. */
        while ((vm = LIST_FIRST(&d->vms))) {
                vm_fail(vm, "opd is stopping");
                if (LIST_FIRST(&d->vms) == vm)
                        vm_destroy(vm);
        }
        LIST_FOREACH(vm, &d->dead_vms, link)
        {
                if (vm->reaped)
                        continue;
                kill(vm->proc.pid, SIGKILL);
                while (waitpid(vm->proc.pid, &vm->exit_status, 0) < 0 && errno == EINTR)
                        ;
                vm->reaped = true;
        }
        vms_free_dead(d);
}
