/* test-vm.c: the VM state machine (lib/vmm/vm.c, host.c) on the fake driver (lib/vmm/fake.c):
 * boot, restore, resume, jobs, each deadline, each fault, destruction in each state and the
 * kill-all at stop. No process, no image: the test drives the loop until a condition holds. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "config.h"
#include "fake.h"
#include "loop-wait.h"
#include "host.h"
#include "snap-ref.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"

#define LONG_MS   600000 /* a deadline that must not fire */
#define SHORT_MS  2      /* a deadline that must fire */
#define TURNS_MAX 200000 /* loop turns before a wait is a failure: generous */

/* One owner of a VM, as a request or a pool is: what it heard. */
struct owner {
        struct vm *vm;
        unsigned ready, answers, events, failed, saved;
        char why[256];
        char save_err[128];
        json_t *answer;
        enum vm_state failed_in; /* vm->state before the failure was reported: see on_failed */
        bool keep_on_fail;       /* do not destroy the VM from the failed callback */
};

struct fx {
        struct event_base *base;
        struct loop_tick tick;
        struct op_config cfg;
        struct fake_vmm fake;
        struct vm_host *host;
        char dir[64];
        struct op_lang lang;
        struct snap_ref *snap;
        unsigned slots_freed;
        char console_line[512]; /* the last "console tail" log line */
        char remove_line[512];  /* the last "cannot remove" log line */
        unsigned agent_calls;
        bool agent_big; /* the agent's answer exceeds any small frame cap */
};

static void on_slot_freed(struct vm_host *h, void *userdata)
{
        ((struct fx *)userdata)->slots_freed++;
}

/* The scripted agent: echoes the job's id, or answers with a large frame. */
static json_t *agent(struct vm *vm, json_t *frame, void *userdata)
{
        struct fx *f = userdata;

        f->agent_calls++;
        if (f->agent_big) {
                char big[4096];

                memset(big, 'x', sizeof(big) - 1);
                big[sizeof(big) - 1] = 0;
                return json_pack("{s:b, s:s}", "ok", 1, "stdout", big);
        }
        return json_pack("{s:b, s:O}", "ok", 1, "id", json_object_get(frame, "id"));
}

static void on_log(int prio, const char *msg, void *userdata)
{
        struct fx *f = userdata;

        if (strstr(msg, "console tail"))
                snprintf(f->console_line, sizeof(f->console_line), "%s", msg);
        if (strstr(msg, "cannot remove"))
                snprintf(f->remove_line, sizeof(f->remove_line), "%s", msg);
}

static int setup(void **state)
{
        static const struct vm_host_callbacks cb = {.slot_freed = on_slot_freed, .log = on_log};
        struct fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-vm-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        assert_int_equal(op_config_init(&f->cfg), 0);
        free(f->cfg.run_dir);
        f->cfg.run_dir = strdup(f->dir);
        assert_non_null(f->cfg.run_dir);
        f->cfg.boot_timeout_ms = LONG_MS;
        f->cfg.restore_timeout_ms = LONG_MS;
        f->base = event_base_new();
        assert_non_null(f->base);
        loop_tick_start(&f->tick, f->base);
        f->fake.agent = agent;
        f->fake.agent_userdata = f;
        f->lang.name = "fake";
        f->snap = calloc(1, sizeof(*f->snap));
        assert_non_null(f->snap);
        f->snap->refs = 1;
        f->snap->dirfd = -1;
        assert_int_equal(vm_host_new(f->base, &f->cfg, &vm_driver_fake, &f->fake, &cb, f, &f->host),
                         0);
        f->host->accel = OP_ACCEL_TCG;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        f->host = vm_host_free(f->host);
        assert_int_equal(f->fake.n_live, 0);
        assert_int_equal(f->snap->refs, 1); /* every VM gave its reference back */
        snap_ref_put(f->snap);
        loop_tick_stop(&f->tick);
        event_base_free(f->base);
        assert_int_equal(rmdir(f->dir), 0); /* every VM directory is gone */
        op_config_free(&f->cfg);
        free(f);
        return 0;
}

/* Run the loop until cond(arg) holds; a generous cap turns a hang into a failure. */
static void run_until(struct fx *f, bool (*cond)(void *), void *arg)
{
        loop_run_until(f->base, TURNS_MAX, cond, arg);
}

/* Some turns of the loop (each at least one tick), for "nothing more happens" checks. */
static void run_turns(struct fx *f, unsigned turns)
{
        loop_run_turns(f->base, &f->tick, turns);
}

static bool heard_ready(void *arg)
{
        return ((struct owner *)arg)->ready > 0;
}

static bool heard_answer(void *arg)
{
        return ((struct owner *)arg)->answers > 0;
}

static bool heard_failed(void *arg)
{
        return ((struct owner *)arg)->failed > 0;
}

static bool heard_saved(void *arg)
{
        return ((struct owner *)arg)->saved > 0;
}

static bool vm_ready(void *arg)
{
        return ((struct owner *)arg)->vm->state == VM_READY;
}

static bool all_freed(void *arg)
{
        struct fx *f = arg;

        vm_host_free_dead(f->host);
        return f->fake.n_live == 0 && LIST_EMPTY(&f->host->dead_vms);
}

static void on_ready(struct vm *vm, void *userdata)
{
        struct owner *o = userdata;

        assert_ptr_equal(vm, o->vm);
        o->ready++;
}

static void on_answer(struct vm *vm, json_t *answer, void *userdata)
{
        struct owner *o = userdata;

        o->answers++;
        json_decref(o->answer);
        o->answer = json_incref(answer);
}

static void on_event(struct vm *vm, json_t *event, void *userdata)
{
        ((struct owner *)userdata)->events++;
}

static void on_failed(struct vm *vm, const char *why, void *userdata)
{
        struct owner *o = userdata;

        assert_int_equal(vm->state, VM_DEAD);
        o->failed++;
        snprintf(o->why, sizeof(o->why), "%s", why);
        if (!o->keep_on_fail) {
                vm_destroy(vm);
                o->vm = NULL;
        }
}

static void on_saved(struct vm *vm, const char *err, void *userdata)
{
        struct owner *o = userdata;

        o->saved++;
        snprintf(o->save_err, sizeof(o->save_err), "%s", err ? err : "");
}

static const struct vm_events events = {
    .ready = on_ready,
    .answer = on_answer,
    .event = on_event,
    .failed = on_failed,
};

static void boot(struct fx *f, struct owner *o)
{
        assert_int_equal(vm_boot(f->host, &f->lang, OP_ACCEL_TCG, -1, &events, o, &o->vm), 0);
        assert_int_equal(o->vm->state, VM_BOOTING);
}

static void boot_ready(struct fx *f, struct owner *o)
{
        boot(f, o);
        run_until(f, heard_ready, o);
        assert_int_equal(o->vm->state, VM_READY);
}

static void restore(struct fx *f, struct owner *o)
{
        assert_int_equal(vm_restore(f->host, &f->lang, f->snap, &events, o, &o->vm), 0);
        assert_int_equal(o->vm->state, VM_RESTORING);
}

static void restore_paused(struct fx *f, struct owner *o)
{
        restore(f, o);
        run_until(f, heard_ready, o);
        assert_int_equal(o->vm->state, VM_PAUSED);
}

static void send_job(struct owner *o, const char *id)
{
        json_t *job = json_pack("{s:s, s:s}", "op", "exec", "id", id);

        assert_int_equal(vm_send(o->vm, job), 0);
        json_decref(job);
        assert_int_equal(o->vm->state, VM_RUNNING);
}

static void destroy(struct fx *f, struct owner *o)
{
        vm_destroy(o->vm);
        o->vm = NULL;
        run_until(f, all_freed, f);
}

static void owner_done(struct owner *o)
{
        json_decref(o->answer);
        o->answer = NULL;
}

static void test_boot_job_answer(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        boot_ready(f, &o);
        assert_string_equal(o.vm->agent_version, "fake");
        assert_int_equal(f->host->n_vms, 1);
        assert_int_equal(f->host->vms_started, 1);
        send_job(&o, "j1");
        run_until(f, heard_answer, &o);
        assert_int_equal(o.vm->state, VM_READY);
        assert_string_equal(json_string_value(json_object_get(o.answer, "id")), "j1");
        assert_int_equal(o.failed, 0);
        destroy(f, &o);
        assert_int_equal(f->host->n_vms, 0);
        assert_int_equal(f->host->vms_failed, 0);
        assert_true(f->slots_freed > 0);
        owner_done(&o);
}

static void test_restore_resume_job(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        restore_paused(f, &o);
        assert_int_equal(vm_resume(o.vm), 0);
        assert_int_equal(o.vm->state, VM_RESUMING);
        assert_false(vm_resumed(o.vm));
        run_until(f, vm_ready, &o);
        assert_true(vm_resumed(o.vm));
        send_job(&o, "warm");
        run_until(f, heard_answer, &o);
        assert_string_equal(json_string_value(json_object_get(o.answer, "id")), "warm");
        assert_int_equal(o.vm->state, VM_READY);
        /* and paused again, as a pool does after priming */
        assert_int_equal(vm_pause(o.vm), 0);
        assert_int_equal(o.vm->state, VM_PAUSING);
        o.ready = 0;
        run_until(f, heard_ready, &o);
        assert_int_equal(o.vm->state, VM_PAUSED);
        assert_int_equal(vm_resume(o.vm), 0);
        assert_false(vm_resumed(o.vm)); /* each resume is acknowledged anew */
        run_until(f, vm_ready, &o);
        assert_true(vm_resumed(o.vm));
        destroy(f, &o);
        owner_done(&o);
}

/* A job sent while RESUMING waits in the channel: the agent reads it once the guest runs. */
static void test_send_while_resuming(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        f->fake.opts.resume_ms = 5;
        restore_paused(f, &o);
        assert_int_equal(vm_resume(o.vm), 0);
        assert_int_equal(o.vm->state, VM_RESUMING);
        send_job(&o, "early");
        assert_false(vm_resumed(o.vm));
        assert_int_equal(f->fake.n_frames, 0);
        run_until(f, heard_answer, &o);
        assert_true(vm_resumed(o.vm)); /* the guest ran the job: the VMM had continued it */
        assert_int_equal(f->fake.n_frames, 1);
        assert_string_equal(json_string_value(json_object_get(o.answer, "id")), "early");
        assert_int_equal(o.vm->state, VM_READY);
        /* a job is refused where it cannot go */
        assert_int_equal(vm_resume(o.vm), -EBUSY);
        destroy(f, &o);
        owner_done(&o);
}

static void test_boot_deadline(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        f->fake.opts.fault = FAKE_FAULT_SILENT;
        f->cfg.boot_timeout_ms = SHORT_MS;
        boot(f, &o);
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "boot deadline"));
        assert_int_equal(o.ready, 0);
        assert_int_equal(f->host->vms_failed, 1);
        run_until(f, all_freed, f);
}

static void test_restore_deadline(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        f->fake.opts.fault = FAKE_FAULT_SILENT;
        f->cfg.restore_timeout_ms = SHORT_MS;
        restore(f, &o);
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "restore deadline"));
        assert_int_equal(o.ready, 0);
        run_until(f, all_freed, f);
}

static void test_resume_deadline(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        restore_paused(f, &o);
        fake_vm_opts(o.vm)->fault = FAKE_FAULT_SILENT;
        f->cfg.restore_timeout_ms = SHORT_MS;
        assert_int_equal(vm_resume(o.vm), 0);
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "resume deadline"));
        run_until(f, all_freed, f);
}

/* A VMM that never finishes a save (a stuck or hostile one): the VM fails at the restore
 * deadline instead of holding its owner for ever. */
static void test_save_deadline(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        boot_ready(f, &o);
        fake_vm_opts(o.vm)->fault = FAKE_FAULT_SILENT;
        f->cfg.restore_timeout_ms = SHORT_MS;
        assert_int_equal(vm_snapshot(o.vm, f->dir, on_saved, &o), 0);
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "save deadline"));
        run_until(f, all_freed, f);
}

/* Sent while RESUMING, the job is RUNNING: the resume deadline is dropped (the owner's own
 * deadline for the job bounds it), and an unacknowledged resume shows in vm_resumed(). */
static void test_running_has_no_resume_deadline(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        restore_paused(f, &o);
        fake_vm_opts(o.vm)->fault = FAKE_FAULT_SILENT;
        f->cfg.restore_timeout_ms = SHORT_MS;
        assert_int_equal(vm_resume(o.vm), 0);
        send_job(&o, "j");
        run_turns(f, 20);
        assert_int_equal(o.failed, 0);
        assert_int_equal(o.vm->state, VM_RUNNING);
        assert_false(vm_resumed(o.vm));
        destroy(f, &o);
}

static void test_fault_boot(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        f->fake.opts.fault = FAKE_FAULT_BOOT;
        boot(f, &o);
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "boot failed"));
        assert_int_equal(o.ready, 0);
        run_until(f, all_freed, f);
}

/* A driver that reads the console from its VMM: the owner hears of the failure after the tail
 * is in the log, escaped. Without a console to read, at once. */
static void test_fault_console_tail(void **state)
{
        struct fx *f = *state;
        struct owner o = {0}, o2 = {0};

        f->fake.opts.fault = FAKE_FAULT_BOOT;
        f->fake.opts.console = "Kernel panic\x1b[2J\r\nnot syncing\x07";
        boot(f, &o);
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "boot failed"));
        assert_non_null(strstr(f->console_line, ": Kernel panic\\x1b[2J\\r\\nnot syncing\\x07"));
        for (const char *p = f->console_line; *p; p++)
                assert_true(*p >= 0x20 && *p < 0x7f);
        run_until(f, all_freed, f);

        f->console_line[0] = 0;
        f->fake.opts.console = NULL;
        boot(f, &o2);
        run_until(f, heard_failed, &o2);
        assert_string_equal(f->console_line, "");
        run_until(f, all_freed, f);
}

static void test_fault_restore(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        f->fake.opts.fault = FAKE_FAULT_RESTORE;
        restore(f, &o);
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "snapshot failed"));
        assert_int_equal(o.ready, 0);
        run_until(f, all_freed, f);
}

/* A clone that dies before its resume is acknowledged never ran its job: vm_resumed() says so,
 * and a request may retry elsewhere. */
static void test_fault_before_resume(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        restore_paused(f, &o);
        fake_vm_opts(o.vm)->fault = FAKE_FAULT_RESUME;
        o.keep_on_fail = true;
        assert_int_equal(vm_resume(o.vm), 0);
        send_job(&o, "lost");
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "before resuming"));
        assert_false(vm_resumed(o.vm));
        assert_int_equal(f->fake.n_frames, 0);
        assert_int_equal(o.answers, 0);
        destroy(f, &o);
}

static void test_fault_running(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        boot_ready(f, &o);
        fake_vm_opts(o.vm)->fault = FAKE_FAULT_RUNNING;
        o.keep_on_fail = true;
        send_job(&o, "doomed");
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "died"));
        assert_int_equal(o.answers, 0);
        destroy(f, &o);
}

/* The VMM dies while the VM waits paused, or runs idle. */
static void test_fault_paused_and_ready(void **state)
{
        struct fx *f = *state;
        struct owner p = {0}, r = {0};

        restore_paused(f, &p);
        boot_ready(f, &r);
        fake_vm_die(p.vm);
        fake_vm_die(r.vm);
        run_until(f, heard_failed, &p);
        run_until(f, heard_failed, &r);
        assert_int_equal(f->host->vms_failed, 2);
        run_until(f, all_freed, f);
}

/* The agent's input is bad: a frame over the VM's cap, or a caller's vm_abort(). */
static void test_frame_max_and_abort(void **state)
{
        struct fx *f = *state;
        struct owner o = {0}, a = {0};

        boot_ready(f, &o);
        /* a job's cap lasts until its answer */
        vm_set_frame_max(o.vm, 64 * 1024);
        f->agent_big = true;
        send_job(&o, "fits");
        run_until(f, heard_answer, &o);
        assert_int_equal(o.vm->frame_max, VM_FRAME_MAX_DEFAULT);
        vm_set_frame_max(o.vm, 1024);
        send_job(&o, "big");
        run_until(f, heard_failed, &o);
        assert_non_null(strstr(o.why, "oversized"));
        assert_int_equal(o.answers, 1);

        f->agent_big = false;
        boot_ready(f, &a);
        vm_abort(a.vm, "bad output event");
        assert_int_equal(a.failed, 1);
        assert_string_equal(a.why, "bad output event");
        run_until(f, all_freed, f);
        owner_done(&o);
}

static void test_snapshot(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        boot_ready(f, &o);
        assert_int_equal(vm_snapshot(o.vm, f->dir, on_saved, &o), 0);
        assert_int_equal(o.vm->state, VM_SAVING);
        json_t *job = json_object();

        assert_int_equal(vm_send(o.vm, job), -EBUSY);
        json_decref(job);
        run_until(f, heard_saved, &o);
        assert_string_equal(o.save_err, "");
        assert_int_equal(o.vm->state, VM_PAUSED);
        destroy(f, &o);
}

/* A clone saves whole from READY or PAUSED (fork, pause to disk): it is PAUSED after, and runs
 * on when resumed; a VM busy with a job, or saving already, is refused. */
static void test_snapshot_clone(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};

        restore_paused(f, &o);
        assert_int_equal(vm_snapshot(o.vm, f->dir, on_saved, &o), 0);
        assert_int_equal(o.vm->state, VM_SAVING);
        assert_int_equal(vm_snapshot(o.vm, f->dir, on_saved, &o), -EBUSY);
        run_until(f, heard_saved, &o);
        assert_string_equal(o.save_err, "");
        assert_int_equal(o.vm->state, VM_PAUSED);
        assert_int_equal(vm_resume(o.vm), 0);
        run_until(f, vm_ready, &o);
        o.saved = 0;
        assert_int_equal(vm_snapshot(o.vm, f->dir, on_saved, &o), 0); /* and from READY */
        run_until(f, heard_saved, &o);
        assert_int_equal(o.vm->state, VM_PAUSED);
        assert_int_equal(vm_resume(o.vm), 0);
        run_until(f, vm_ready, &o);
        o.saved = 0;
        o.ready = 0;
        assert_int_equal(vm_pause(o.vm), 0);
        run_until(f, heard_ready, &o);
        assert_int_equal(vm_resume(o.vm), 0); /* and while the resume is not acknowledged */
        assert_int_equal(o.vm->state, VM_RESUMING);
        assert_int_equal(vm_snapshot(o.vm, f->dir, on_saved, &o), 0);
        run_until(f, heard_saved, &o);
        assert_int_equal(o.vm->state, VM_PAUSED);
        assert_int_equal(vm_resume(o.vm), 0);
        run_until(f, vm_ready, &o);
        send_job(&o, "busy");
        assert_int_equal(vm_snapshot(o.vm, f->dir, on_saved, &o), -EBUSY);
        run_until(f, heard_answer, &o);
        destroy(f, &o);
        owner_done(&o);
}

/* A save that fails with the VMM alive (a file system full under its files) leaves the VM
 * PAUSED: it resumes and runs jobs as before. One whose VMM dies tells the saver through its
 * saved callback when the VM has no owner listening for failures (a session's VM being saved),
 * and the VM is dead. */
static void test_snapshot_fails(void **state)
{
        struct fx *f = *state;
        struct owner o = {0}, d = {0};

        restore_paused(f, &o);
        fake_vm_opts(o.vm)->fault = FAKE_FAULT_SAVE;
        assert_int_equal(vm_snapshot(o.vm, f->dir, on_saved, &o), 0);
        run_until(f, heard_saved, &o);
        assert_non_null(strstr(o.save_err, "no space left"));
        assert_int_equal(o.vm->state, VM_PAUSED);
        fake_vm_opts(o.vm)->fault = FAKE_FAULT_NONE;
        assert_int_equal(vm_resume(o.vm), 0);
        run_until(f, vm_ready, &o);
        send_job(&o, "after");
        run_until(f, heard_answer, &o);
        assert_int_equal(o.failed, 0);
        destroy(f, &o);
        owner_done(&o);

        restore_paused(f, &d);
        fake_vm_opts(d.vm)->fault = FAKE_FAULT_SAVE_DIE;
        vm_set_events(d.vm, &(struct vm_events){0}, NULL);
        assert_int_equal(vm_snapshot(d.vm, f->dir, on_saved, &d), 0);
        run_until(f, heard_saved, &d);
        assert_non_null(strstr(d.save_err, "died while it saved"));
        assert_int_equal(d.vm->state, VM_DEAD);
        assert_int_equal(d.failed, 0);
        destroy(f, &d);
        run_until(f, all_freed, f);
        owner_done(&d);
}

/* An image (a saved clone) served to children: removed with its last reference, the children's
 * included; kept when asked. */
static void test_image_lifetime(void **state)
{
        struct fx *f = *state;
        struct snap_manifest m = {.memory_mb = 64, .vcpus = 1};
        struct owner a = {0}, b = {0};
        struct snap_ref *img, *kept;
        char dir[128], keep[128];
        struct stat st;

        snprintf(dir, sizeof(dir), "%s/img", f->dir);
        snprintf(keep, sizeof(keep), "%s/kept", f->dir);
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_int_equal(mkdir(keep, 0700), 0);
        assert_int_equal(snap_ref_image(dir, &m, true, &img), 0);
        assert_int_equal(img->m.memory_mb, 64);
        assert_int_equal(vm_restore(f->host, &f->lang, img, &events, &a, &a.vm), 0);
        assert_int_equal(vm_restore(f->host, &f->lang, img, &events, &b, &b.vm), 0);
        snap_ref_put(img); /* the children hold it now */
        run_until(f, heard_ready, &a);
        run_until(f, heard_ready, &b);
        vm_destroy(a.vm);
        a.vm = NULL;
        run_turns(f, 4);
        vm_host_free_dead(f->host);
        assert_int_equal(stat(dir, &st), 0);
        destroy(f, &b);
        assert_int_equal(stat(dir, &st), -1); /* gone with the last child */
        assert_int_equal(snap_ref_image(keep, &m, false, &kept), 0);
        snap_ref_put(kept);
        assert_int_equal(rmdir(keep), 0); /* kept: still there to remove */
        assert_int_equal(snap_ref_image("/nonexistent/x", &m, true, &kept), -ENOENT);
        owner_done(&a);
        owner_done(&b);
}

/* Reach a state, destroy the VM there: nothing is heard afterwards. */
enum reach {
        R_BOOTING,
        R_RESTORING,
        R_PAUSED,
        R_RESUMING,
        R_READY,
        R_RUNNING,
        R_PAUSING,
        R_SAVING,
        _R_MAX
};

static void reach(struct fx *f, struct owner *o, enum reach to)
{
        switch (to) {
        case R_BOOTING:
                boot(f, o);
                break;
        case R_RESTORING:
                restore(f, o);
                break;
        case R_PAUSED:
                restore_paused(f, o);
                break;
        case R_RESUMING:
                restore_paused(f, o);
                assert_int_equal(vm_resume(o->vm), 0);
                assert_int_equal(o->vm->state, VM_RESUMING);
                break;
        case R_READY:
                boot_ready(f, o);
                break;
        case R_RUNNING:
                boot_ready(f, o);
                send_job(o, "never answered");
                break;
        case R_PAUSING:
                boot_ready(f, o);
                assert_int_equal(vm_pause(o->vm), 0);
                assert_int_equal(o->vm->state, VM_PAUSING);
                break;
        case R_SAVING:
                boot_ready(f, o);
                assert_int_equal(vm_snapshot(o->vm, f->dir, on_saved, o), 0);
                break;
        default:
                fail();
        }
}

static void test_destroy_in_each_state(void **state)
{
        struct fx *f = *state;

        for (int to = 0; to < _R_MAX; to++) {
                struct owner o = {0};
                struct owner before;

                reach(f, &o, (enum reach)to);
                before = o;
                vm_destroy(o.vm);
                o.vm = NULL;
                run_until(f, all_freed, f);
                run_turns(f, 10);
                assert_int_equal(o.ready, before.ready);
                assert_int_equal(o.answers, before.answers);
                assert_int_equal(o.failed, 0);
                assert_int_equal(o.saved, 0);
                owner_done(&o);
        }
        assert_int_equal(f->host->n_vms, 0);
        assert_int_equal(f->host->vms_failed, 0);
}

/* A VM's directory holds a tree deeper than snap_rmtree() goes (a Firecracker VMM writes there):
 * what can be removed is, the rest is left, and the log says which directory and why. */
static void test_deep_directory_left_and_said(void **state)
{
        struct fx *f = *state;
        struct owner o = {0};
        char path[64 * (SNAP_RMTREE_DEPTH_MAX + 8)], cmd[128];
        size_t len;

        boot_ready(f, &o);
        len = (size_t)snprintf(path, sizeof(path), "%s", o.vm->workdir);
        for (int i = 0; i < SNAP_RMTREE_DEPTH_MAX + 4; i++) {
                len += (size_t)snprintf(path + len, sizeof(path) - len, "/d");
                assert_int_equal(mkdir(path, 0700), 0);
        }
        snprintf(cmd, sizeof(cmd), "%s/f", o.vm->workdir);
        assert_int_equal(close(open(cmd, O_WRONLY | O_CREAT, 0600)), 0);
        snprintf(cmd, sizeof(cmd), "rm -rf %s/vm-*", f->dir);
        destroy(f, &o);
        assert_non_null(strstr(f->remove_line, "cannot remove"));
        assert_non_null(strstr(f->remove_line, f->dir));
        assert_non_null(strstr(f->remove_line, strerror(ELOOP)));
        assert_int_equal(system(cmd), 0);
        owner_done(&o);
}

/* Stop: every live VM's owner hears "stopping" once, whatever the state; nothing is counted as
 * a failure and nothing is left. */
static void test_kill_all(void **state)
{
        struct fx *f = *state;
        struct owner o[_R_MAX] = {0};

        for (int to = 0; to < _R_MAX; to++)
                reach(f, &o[to], (enum reach)to);
        assert_int_equal(f->host->n_vms, _R_MAX);
        vm_host_kill_all(f->host);
        assert_int_equal(f->host->n_vms, 0);
        assert_int_equal(f->host->vms_failed, 0);
        assert_true(LIST_EMPTY(&f->host->dead_vms));
        assert_int_equal(f->fake.n_live, 0);
        for (int to = 0; to < _R_MAX; to++) {
                assert_int_equal(o[to].failed, 1);
                assert_non_null(strstr(o[to].why, "stopping"));
                owner_done(&o[to]);
        }
        run_turns(f, 10);
        for (int to = 0; to < _R_MAX; to++)
                assert_int_equal(o[to].failed, 1);
}

/* The owner's SIGCHLD loop hands every pid over: one that is no VM's is not claimed. */
static void test_reap_unknown_pid(void **state)
{
        struct fx *f = *state;

        assert_false(vm_host_reap(f->host, 999999, 0));
        assert_false(vm_host_reap(f->host, 0, 0));
}

/* A child standing in for a VMM process: it exits with status at once, or waits to be killed. */
static pid_t child(int status)
{
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                if (status < 0)
                        for (;;)
                                pause();
                _exit(status);
        }
        return pid;
}

/* The process of a live VM exits: the owner hears why; a destroyed VM stays until reaped, so
 * its pid is never matched to another. */
static void test_reap(void **state)
{
        struct fx *f = *state;
        struct owner o = {0}, d = {0};
        pid_t pid;
        int status;

        boot_ready(f, &o);
        o.vm->proc.pid = pid = child(3);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(vm_host_reap(f->host, pid, status));
        assert_int_equal(o.failed, 1);
        assert_non_null(strstr(o.why, "exited with status 3"));

        boot_ready(f, &d);
        d.vm->proc.pid = pid = child(-1);
        vm_destroy(d.vm); /* SIGKILL */
        vm_host_free_dead(f->host);
        assert_false(LIST_EMPTY(&f->host->dead_vms));
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_true(vm_host_reap(f->host, pid, status));
        assert_int_equal(d.failed, 0);
        run_until(f, all_freed, f);
}

/* The child is dead (a zombie, not reaped): its status is its own, not a later kill's. */
static void wait_dead(pid_t pid)
{
        siginfo_t si;

        assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
}

/* A failed VM's owner is told once its VMM is reaped, with how the VMM ended when it ended on
 * its own: a channel that closed because the VMM died of SIGBUS says so. A VMM that lived on is
 * killed by opd, and its SIGKILL is not news. */
static void test_failure_told_after_exit(void **state)
{
        struct fx *f = *state;
        struct owner o = {0}, d = {0};
        pid_t pid;
        int status;

        boot_ready(f, &o);
        o.vm->proc.pid = pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                signal(SIGBUS, SIG_DFL);
                raise(SIGBUS);
                _exit(0);
        }
        wait_dead(pid);
        vm_abort(o.vm, "agent channel closed");
        run_turns(f, 10);
        assert_int_equal(o.failed, 0); /* not before the exit is known */
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(vm_host_reap(f->host, pid, status));
        assert_int_equal(o.failed, 1);
        assert_non_null(strstr(o.why, "agent channel closed; the VMM was killed by SIGBUS"));

        boot_ready(f, &d);
        d.vm->proc.pid = pid = child(-1);
        vm_abort(d.vm, "agent sent an unexpected frame");
        assert_int_equal(d.failed, 0);
        assert_int_equal(waitpid(pid, &status, 0), pid); /* opd killed it */
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        assert_true(vm_host_reap(f->host, pid, status));
        assert_int_equal(d.failed, 1);
        assert_string_equal(d.why, "agent sent an unexpected frame");
        run_until(f, all_freed, f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_fault_console_tail, setup, teardown),
            cmocka_unit_test_setup_teardown(test_boot_job_answer, setup, teardown),
            cmocka_unit_test_setup_teardown(test_restore_resume_job, setup, teardown),
            cmocka_unit_test_setup_teardown(test_send_while_resuming, setup, teardown),
            cmocka_unit_test_setup_teardown(test_boot_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_restore_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_resume_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_save_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_running_has_no_resume_deadline, setup, teardown),
            cmocka_unit_test_setup_teardown(test_fault_boot, setup, teardown),
            cmocka_unit_test_setup_teardown(test_fault_restore, setup, teardown),
            cmocka_unit_test_setup_teardown(test_fault_before_resume, setup, teardown),
            cmocka_unit_test_setup_teardown(test_fault_running, setup, teardown),
            cmocka_unit_test_setup_teardown(test_fault_paused_and_ready, setup, teardown),
            cmocka_unit_test_setup_teardown(test_frame_max_and_abort, setup, teardown),
            cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
            cmocka_unit_test_setup_teardown(test_snapshot_clone, setup, teardown),
            cmocka_unit_test_setup_teardown(test_image_lifetime, setup, teardown),
            cmocka_unit_test_setup_teardown(test_destroy_in_each_state, setup, teardown),
            cmocka_unit_test_setup_teardown(test_kill_all, setup, teardown),
            cmocka_unit_test_setup_teardown(test_deep_directory_left_and_said, setup, teardown),
            cmocka_unit_test_setup_teardown(test_snapshot_fails, setup, teardown),
            cmocka_unit_test_setup_teardown(test_failure_told_after_exit, setup, teardown),
            cmocka_unit_test_setup_teardown(test_reap_unknown_pid, setup, teardown),
            cmocka_unit_test_setup_teardown(test_reap, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
