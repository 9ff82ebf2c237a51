/* vm.c: one VM whatever its VMM: its working directory, its agent channel (frames), its state
 * machine and the one deadline each state has. The VMM driver (vmm.h) does the rest. */
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "agent-msg.h"
#include "cleanup.h"
#include "evframe.h"
#include "evtimer.h"
#include "fs-space.h"
#include "msg.h"
#include "host.h"
#include "snap-ref.h"
#include "snapshot.h"
#include "util.h"
#include "vmm-output.h"
#include "vm.h"

#define VM_JOB_ENTROPY_BYTES 32

const char *vm_state_name(enum vm_state s)
{
        static const char *const names[] = {
            [VM_BOOTING] = "booting",   [VM_RESTORING] = "restoring", [VM_PAUSED] = "paused",
            [VM_RESUMING] = "resuming", [VM_READY] = "ready",         [VM_RUNNING] = "running",
            [VM_PAUSING] = "pausing",   [VM_SAVING] = "saving",       [VM_DEAD] = "dead",
        };

        return (unsigned)s < ELEMENTSOF(names) && names[s] ? names[s] : "?";
}

/* The one writer of vm->state: it arms the deadline the new state has (boot while BOOTING;
 * restore while RESTORING, resume while RESUMING and a save while SAVING, each the restore's:
 * moving a state in or out of the VMM) and drops any other. */
static void vm_set_state(struct vm *vm, enum vm_state s)
{
        const struct op_config *cfg = vm->host->cfg;
        uint32_t ms = 0;

        vm->state = s;
        if (!vm->deadline)
                return;
        evtimer_del(vm->deadline);
        if (s == VM_BOOTING)
                ms = cfg->boot_timeout_ms;
        else if (s == VM_RESTORING || s == VM_RESUMING || s == VM_SAVING)
                ms = cfg->restore_timeout_ms;
        else
                return;
        op_timer_arm_ms(vm->deadline, ms);
}

/* The last VM_CONSOLE_TAIL bytes of what the guest wrote, escaped, as one log line (its end, as
 * much as fits in VM_LOG_TAIL_MAX characters). */
static void log_console(struct vm *vm, const void *data, size_t len)
{
        char line[VM_LOG_TAIL_MAX + 1];

        if (len > VM_CONSOLE_TAIL) {
                data = (const char *)data + (len - VM_CONSOLE_TAIL);
                len = VM_CONSOLE_TAIL;
        }
        if (len == 0)
                return;
        op_escape_log_tail(data, len, line, sizeof(line));
        vm_host_log(vm->host, LOG_WARNING, "%s console tail: %s", vm->name, line);
}

/* A driver whose console is its VMM's output (Firecracker's stdout). */
static void log_console_output(struct vm *vm)
{
        const char *tail;
        size_t len;

        if (!vm->host->drv->console_is_output || !vm->out)
                return;
        tail = vmm_output_tail(vm->out, &len, NULL);
        log_console(vm, tail, len);
}

/* What a VMM whose output is not the console said (QEMU's errors and warnings), once it ended:
 * its last VMM_OUTPUT_TAIL bytes, escaped, as one log line (its end, as for the console). */
static void log_output(struct vm *vm)
{
        char line[VM_LOG_TAIL_MAX + 1];
        const char *tail;
        uint64_t total;
        size_t len;

        if (vm->host->drv->console_is_output || !vm->out)
                return;
        tail = vmm_output_tail(vm->out, &len, &total);
        if (len == 0)
                return;
        len = op_escape_log_tail(tail, len, line, sizeof(line));
        if (total > len)
                vm_host_log(vm->host, LOG_WARNING, "%s VMM output (its last %zu of %llu bytes): %s",
                            vm->name, len, (unsigned long long)total, line);
        else
                vm_host_log(vm->host, LOG_WARNING, "%s VMM output: %s", vm->name, line);
}

/* The owner hears of it: ev.failed, or when it has none (a VM detached from its owner while it
 * is saved) the save's callback, that the saver waits on. Last thing: either may destroy the
 * VM. */
static void notify_failed(struct vm *vm, const char *why)
{
        void (*saved)(struct vm *, const char *, void *) = vm->saved;
        struct vm_events ev = vm->ev;

        vm->saved = NULL;
        if (ev.failed)
                ev.failed(vm, why, vm->userdata);
        else if (saved)
                saved(vm, why, vm->saved_userdata);
}

/* Why a VMM that was killed by SIGBUS was: a page of guest RAM its file could not give (a file
 * system full under a shared or a tmpfs mapping, or the file cut short). The file: the one it
 * booted with, or its snapshot's. */
static void describe_sigbus(struct vm *vm, char *buf, size_t len)
{
        _cleanup_free_ char *snap_mem = NULL;
        const char *path = vm->ram_path;
        struct op_fs_space fs;
        char space[300];

        if (!path && vm->snap && vm->snap->path &&
            asprintf(&snap_mem, "%s/mem", vm->snap->path) >= 0)
                path = snap_mem;
        if (!path || op_fs_space(path, &fs) < 0) {
                snprintf(buf, len, " (a fault on guest RAM the kernel could not back)");
                return;
        }
        /* at the fault there was none; less than a MiB now is that file system full */
        op_fs_space_text(&fs, fs.avail < (1 << 20) ? -ENOSPC : 0, space, sizeof(space));
        snprintf(buf, len, ": a page of guest RAM could not be %s its file %s: %s",
                 vm->ram_path ? "written to" : "mapped from", path, space);
}

/* How the reaped VMM ended, when it ended on its own ("" when opd killed it). */
static void exit_text(struct vm *vm, char *buf, size_t len)
{
        int st = vm->exit_status;
        char detail[400] = "";
        const char *name;

        buf[0] = 0;
        if (!vm->reaped || vm->proc.pid <= 0)
                return;
        if (WIFEXITED(st)) {
                snprintf(buf, len, "the VMM exited with status %d", WEXITSTATUS(st));
                return;
        }
        if (!WIFSIGNALED(st) || (vm->killed && WTERMSIG(st) == SIGKILL))
                return;
        if (WTERMSIG(st) == SIGBUS)
                describe_sigbus(vm, detail, sizeof(detail));
        name = sigabbrev_np(WTERMSIG(st));
        if (name)
                snprintf(buf, len, "the VMM was killed by SIG%s%s", name, detail);
        else
                snprintf(buf, len, "the VMM was killed by signal %d%s", WTERMSIG(st), detail);
}

/* The failure as the owner hears it: why, and how the VMM ended when it ended on its own. */
static void fail_notify(struct vm *vm)
{
        char why[sizeof(vm->fail_why) + 512], how[480] = "";

        if (vm->exit_wait)
                evtimer_del(vm->exit_wait);
        vm->failing = false;
        if (!vm->exit_said)
                exit_text(vm, how, sizeof(how));
        if (how[0])
                vm_host_log(vm->host, LOG_WARNING, "%s (%s): %s", vm->name, vm->lang->name, how);
        log_output(vm);
        snprintf(why, sizeof(why), "%s%s%s", vm->fail_why, how[0] ? "; " : "", how);
        notify_failed(vm, why);
}

static void on_exit_wait(evutil_socket_t fd, short what, void *arg)
{
        fail_notify(arg);
}

/* The console is read (or there is none to read): the failed VMM is made to end, and the owner
 * is told once it has been reaped, so that a VMM that died on its own says how (a SIGBUS on a
 * full file system looks like a closed channel until then). */
static void fail_settle(struct vm *vm)
{
        struct vm_host *h = vm->host;

        if (vm->reaped || vm->proc.pid <= 0 || h->stopping) {
                fail_notify(vm);
                return;
        }
        if (!vm->exit_wait)
                vm->exit_wait = evtimer_new(h->base, on_exit_wait, vm);
        if (!vm->exit_wait) {
                fail_notify(vm);
                return;
        }
        vm_host_kill_proc(h, vm);
        vm->killed = true;
        op_timer_arm_ms(vm->exit_wait, VM_EXIT_WAIT_MS);
}

static void vm_fail(struct vm *vm, const char *why)
{
        struct vm_host *h = vm->host;

        if (vm->state == VM_DEAD) {
                /* opd stops: an owner still waiting for the console or the exit hears now */
                if (vm->failing && h->stopping)
                        fail_notify(vm);
                return;
        }
        vm_set_state(vm, VM_DEAD);
        if (h->stopping) {
                notify_failed(vm, why);
                return;
        }
        h->vms_failed++;
        vm_host_log(h, LOG_WARNING, "%s (%s) failed: %s", vm->name, vm->lang->name, why);
        snprintf(vm->fail_why, sizeof(vm->fail_why), "%s", why);
        vm->failing = true;
        /* A console the driver reads from the VMM: read first, while it runs, within a time
         * the driver bounds. A VMM that is gone (reaped, or its opd-jail lost) has none left. */
        if (h->drv->console_read && !vm->reaped) {
                vm->console_pending = true;
                if (h->drv->console_read(vm) >= 0)
                        return;
                vm->console_pending = false;
        } else
                log_console_output(vm);
        fail_settle(vm);
}

void vm_drv_console(struct vm *vm, const void *data, size_t len)
{
        if (!vm->failing || !vm->console_pending)
                return;
        vm->console_pending = false;
        log_console(vm, data, len);
        fail_settle(vm); /* may destroy the VM */
}

void vm_reaped(struct vm *vm)
{
        char why[480];

        if (vm->state != VM_DEAD) {
                /* it ended on its own: that is the failure */
                exit_text(vm, why, sizeof(why));
                vm->exit_said = true;
                vm_fail(vm, why);
                return;
        }
        if (vm->failing && !vm->console_pending)
                fail_notify(vm); /* may destroy the VM */
}

void vm_abort(struct vm *vm, const char *why)
{
        vm_fail(vm, why);
}

static void on_agent_read(struct bufferevent *bev, void *arg)
{
        struct vm *vm = arg;
        char err[256];

        while (vm->state != VM_DEAD) {
                json_t *obj = NULL;
                const char *event;
                int r = evframe_next(bufferevent_get_input(bev), vm->frame_max, OP_AGENT_VALUES_MAX,
                                     &obj, err, sizeof(err));

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
                        struct op_agent_ready rd;
                        char why[300];

                        r = op_agent_ready_decode(obj, &rd, err, sizeof(err));
                        json_decref(obj);
                        if (r < 0) {
                                snprintf(why, sizeof(why), "agent sent %s", err);
                                vm_fail(vm, why);
                                return;
                        }
                        snprintf(vm->agent_version, sizeof(vm->agent_version), "%s",
                                 rd.agent_version);
                        vm_set_state(vm, VM_READY);
                        vm->agent_hello = false; /* this session's greeting was the boot's */
                        vm->t_loaded = op_now_us();
                        vm_host_log(vm->host, LOG_DEBUG, "%s ready", vm->name);
                        if (vm->ev.ready)
                                vm->ev.ready(vm, vm->userdata);
                        return; /* the callback may have destroyed the VM */
                }
                if (vm->state == VM_RUNNING && event &&
                    (strcmp(event, "stdout") == 0 || strcmp(event, "stderr") == 0)) {
                        /* Streamed output: the owner checks and forwards it. */
                        if (vm->ev.event)
                                vm->ev.event(vm, obj, vm->userdata);
                        json_decref(obj);
                        continue;
                }
                if (vm->state == VM_RUNNING && !event) {
                        vm_set_state(vm, VM_READY);
                        vm->frame_max = VM_FRAME_MAX_DEFAULT; /* the job's cap was for its answer */
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

/* The channel's output is empty again (libevent's low write mark is 0). */
static void on_agent_write(struct bufferevent *bev, void *arg)
{
        struct vm *vm = arg;

        if (vm->state == VM_RUNNING && vm->ev.drained)
                vm->ev.drained(vm, vm->userdata);
}

static void on_agent_event(struct bufferevent *bev, short what, void *arg)
{
        struct vm *vm = arg;

        if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
                vm_fail(vm, "agent channel closed");
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
        struct vm *vm = arg;

        switch (vm->state) {
        case VM_BOOTING:
                vm_fail(vm, "boot deadline passed before the agent was ready");
                break;
        case VM_RESTORING:
                vm_fail(vm, "restore deadline passed");
                break;
        case VM_RESUMING:
                vm_fail(vm, "resume deadline passed before the VMM continued the VM");
                break;
        case VM_SAVING:
                vm_fail(vm, "save deadline passed before the VMM had saved the VM");
                break;
        default:
                break;
        }
}

static int vm_new(struct vm_host *h, const struct op_lang *lang, enum op_accel accel,
                  const struct vm_events *ev, void *userdata, struct vm **ret)
{
        struct vm *vm = calloc(1, sizeof(*vm));
        int r;

        if (!vm)
                return -ENOMEM;
        vm->host = h;
        vm->id = ++h->next_vm_id;
        snprintf(vm->name, sizeof(vm->name), "vm-%d-%llu", (int)getpid(),
                 (unsigned long long)vm->id);
        vm->lang = lang;
        vm->accel = accel;
        vm->ev = *ev;
        vm->userdata = userdata;
        vm->frame_max = VM_FRAME_MAX_DEFAULT;
        vm->proc.agent_fd = vm->proc.ctl_fd = -1;
        if (asprintf(&vm->workdir, "%s/%s", h->cfg->run_dir, vm->name) < 0) {
                free(vm);
                return -ENOMEM;
        }
        if (mkdir(vm->workdir, 0700) < 0) {
                r = -errno;
                vm_host_log(h, LOG_ERR, "mkdir %s: %s", vm->workdir, strerror(-r));
                free(vm->workdir);
                free(vm);
                return r;
        }
        *ret = vm;
        return 0;
}

/* Wire the VM into the loop and start its deadline; the driver then starts the process. The
 * agent channel buffers what is sent until the driver connects it. */
static int vm_attach(struct vm *vm, enum vm_state first)
{
        struct vm_host *h = vm->host;

        vm->t_spawn = op_now_us();
        vm->agent = bufferevent_socket_new(h->base, -1, BEV_OPT_CLOSE_ON_FREE);
        vm->deadline = evtimer_new(h->base, on_deadline, vm);
        vm_host_attach(h, vm);
        vm_set_state(vm, first);
        if (!vm->agent || !vm->deadline)
                return -ENOMEM;
        bufferevent_setcb(vm->agent, on_agent_read, on_agent_write, on_agent_event, vm);
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
        vm_set_state(vm, VM_PAUSED);
        vm->t_loaded = op_now_us();
        vm_host_log(vm->host, LOG_DEBUG, "%s restored in %.1f ms", vm->name,
                    (double)(vm->t_loaded - vm->t_spawn) / 1000.0);
        if (vm->ev.ready)
                vm->ev.ready(vm, vm->userdata);
}

void vm_drv_resumed(struct vm *vm)
{
        if (vm->state == VM_DEAD)
                return;
        vm->t_resumed = op_now_us();
        vm->resumed = true;
        if (vm->state == VM_RESUMING)
                vm_set_state(vm, VM_READY);
}

void vm_drv_paused(struct vm *vm)
{
        if (vm->state == VM_DEAD)
                return;
        vm_set_state(vm, VM_PAUSED);
        if (vm->ev.ready)
                vm->ev.ready(vm, vm->userdata);
}

void vm_drv_save_failed(struct vm *vm, const char *err)
{
        void (*done)(struct vm *, const char *, void *) = vm->saved;

        if (!done || vm->state == VM_DEAD)
                return;
        vm->saved = NULL;
        vm_set_state(vm, VM_PAUSED);
        done(vm, err, vm->saved_userdata);
}

void vm_drv_saved(struct vm *vm, const char *err)
{
        void (*done)(struct vm *, const char *, void *) = vm->saved;

        if (!done || vm->state == VM_DEAD)
                return;
        vm->saved = NULL;
        /* Saved, the VM is stopped; after a failed save only vm_destroy() is left. */
        if (!err)
                vm_set_state(vm, VM_PAUSED);
        done(vm, err, vm->saved_userdata);
}

/* The path an fd was opened at, for messages (NULL when it cannot be had). */
static char *fd_path(int fd)
{
        char link[64], buf[PATH_MAX];
        ssize_t k;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        k = readlink(link, buf, sizeof(buf) - 1);
        if (k <= 0)
                return NULL;
        buf[k] = 0;
        return strdup(buf);
}

int vm_boot(struct vm_host *h, const struct op_lang *lang, enum op_accel accel, int mem_fd,
            const struct vm_events *ev, void *userdata, struct vm **ret)
{
        struct vm *vm;
        int r;

        r = vm_new(h, lang, accel, ev, userdata, &vm);
        if (r < 0)
                return r;
        if (mem_fd >= 0)
                vm->ram_path = fd_path(mem_fd);
        r = vm_attach(vm, VM_BOOTING);
        if (r >= 0)
                r = h->drv->boot(vm, mem_fd);
        if (r < 0) {
                vm_destroy(vm);
                return r;
        }
        vm_host_log(h, LOG_DEBUG, "%s (%s, %s, %s) booting, pid %d", vm->name, lang->name,
                    h->drv->name, op_accel_name(accel), (int)vm->proc.pid);
        *ret = vm;
        return 0;
}

int vm_restore(struct vm_host *h, const struct op_lang *lang, struct snap_ref *snap,
               const struct vm_events *ev, void *userdata, struct vm **ret)
{
        struct vm *vm;
        int r;

        if (!h->drv->restore)
                return -EOPNOTSUPP;
        r = vm_new(h, lang, h->accel, ev, userdata, &vm);
        if (r < 0)
                return r;
        vm->snap = snap_ref_get(snap);
        r = vm_attach(vm, VM_RESTORING);
        if (r >= 0)
                r = h->drv->restore(vm);
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
        vm->t_resume = op_now_us();
        vm->t_resumed = 0; /* set when the VMM confirms */
        vm->resumed = false;
        vm_set_state(vm, VM_RESUMING);
        r = vm->host->drv->resume(vm);
        if (r < 0 && vm->state == VM_RESUMING)
                vm_set_state(vm, VM_PAUSED);
        return r;
}

bool vm_resumed(const struct vm *vm)
{
        return vm->resumed;
}

int vm_pause(struct vm *vm)
{
        int r;

        if (vm->state != VM_READY)
                return -EBUSY;
        vm_set_state(vm, VM_PAUSING);
        r = vm->host->drv->pause(vm);
        if (r < 0 && vm->state == VM_PAUSING)
                vm_set_state(vm, VM_READY);
        return r;
}

int vm_snapshot(struct vm *vm, const char *dir,
                void (*done)(struct vm *vm, const char *err, void *userdata), void *userdata)
{
        enum vm_state was = vm->state;
        int r;

        /* RESUMING: the VMM takes the stop after the continue it has not acknowledged yet. */
        if ((vm->state != VM_READY && vm->state != VM_PAUSED && vm->state != VM_RESUMING) ||
            vm->saved)
                return -EBUSY;
        vm->saved = done;
        vm->saved_userdata = userdata;
        vm_set_state(vm, VM_SAVING);
        r = vm->host->drv->snapshot(vm, dir);
        if (r < 0) {
                vm->saved = NULL;
                if (vm->state == VM_SAVING)
                        vm_set_state(vm, was);
        }
        return r;
}

int vm_job_identity(const struct vm *vm, json_t *job)
{
        uint8_t entropy[VM_JOB_ENTROPY_BYTES];
        _cleanup_free_ char *b64 = NULL;

        if (getrandom(entropy, sizeof(entropy), 0) != sizeof(entropy))
                return -EIO;
        b64 = op_base64_encode(entropy, sizeof(entropy));
        if (!b64 || json_object_set_new(job, "entropy", json_string(b64)) < 0 ||
            json_object_set_new(job, "time_ns", json_integer((json_int_t)op_realtime_ns())) < 0 ||
            json_object_set_new(job, "hostname", json_string(vm->name)) < 0)
                return -ENOMEM;
        return 0;
}

int vm_send(struct vm *vm, json_t *job)
{
        int r;

        if (vm->state != VM_READY && vm->state != VM_RESUMING)
                return -EBUSY;
        r = evframe_add(bufferevent_get_output(vm->agent), job, SIZE_MAX);
        if (r < 0)
                return r;
        vm_set_state(vm, VM_RUNNING);
        return 0;
}

int vm_send_more(struct vm *vm, json_t *frame)
{
        if (vm->state != VM_RUNNING)
                return -EBUSY;
        return evframe_add(bufferevent_get_output(vm->agent), frame, SIZE_MAX);
}

size_t vm_send_queued(const struct vm *vm)
{
        return vm->agent ? evbuffer_get_length(bufferevent_get_output(vm->agent)) : 0;
}

void vm_set_frame_max(struct vm *vm, size_t max)
{
        vm->frame_max = max;
}

void vm_destroy(struct vm *vm)
{
        struct vm_host *h = vm->host;

        vm_host_kill_proc(h, vm);
        if (vm->proc.pid <= 0)
                vm->reaped = true; /* no process was started: nothing to wait for */
        vm_set_state(vm, VM_DEAD);
        vm->ev = (struct vm_events){0};
        if (vm->agent) {
                bufferevent_free(vm->agent);
                vm->agent = NULL;
        }
        if (h->drv->release)
                h->drv->release(vm);
        vm->saved = NULL;
        vm->failing = vm->console_pending = false;
        if (vm->exit_wait) {
                event_free(vm->exit_wait);
                vm->exit_wait = NULL;
        }
        if (vm->deadline) {
                event_free(vm->deadline);
                vm->deadline = NULL;
        }
        vm_host_detach(h, vm);
}
