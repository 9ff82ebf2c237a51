/* accel.c: deciding between KVM and TCG. "auto" never trusts /dev/kvm's mere existence: it boots
 * a real guest under KVM and keeps KVM only if the agent answers within the probe deadline. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "accel.h"
#include "cleanup.h"
#include "host.h"
#include "log.h"
#include "opd.h"
#include "pool.h"
#include "vm.h"
#include "vmm.h"

/* The KVM probe while it runs. */
struct accel {
        struct vm *probe_vm;
        struct event *probe_timer;
};

static bool kvm_device_usable(void)
{
        _cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        _cleanup_close_ int vmfd = -1;

        if (fd < 0)
                return false;
        if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
                return false;
        vmfd = ioctl(fd, KVM_CREATE_VM, 0);
        return vmfd >= 0;
}

bool accel_is_boundary(enum op_accel a)
{
        return a == OP_ACCEL_KVM;
}

static void decide(struct opd *d, enum op_accel a, const char *why)
{
        struct accel *p = d->accel;

        if (p) {
                if (p->probe_vm)
                        vm_destroy(p->probe_vm);
                if (p->probe_timer)
                        event_free(p->probe_timer);
                free(p);
                d->accel = NULL;
        }
        log_info("accelerator: %s (%s)", op_accel_name(a), why);
        if (a == OP_ACCEL_TCG)
                log_warn("accelerator tcg is software emulation: not an isolation boundary (QEMU "
                         "does not treat TCG bugs as security bugs); code run in a guest is kept "
                         "from the host only by the VMM process's own confinement");
        /* A one-shot snapshot runs no untrusted code: only serving is refused. */
        if (a == OP_ACCEL_TCG && !d->cfg.allow_tcg && !d->no_listen) {
                d->tcg_refused = true;
                log_error("refusing to serve: %s; set allow_tcg = yes to accept software "
                          "emulation (trusted code, tests, development)",
                          ACCEL_TCG_REFUSED);
                if (d->on_accel_decided)
                        d->on_accel_decided(d);
                opd_schedule_reap(d); /* answers queued requests */
                return;
        }
        d->vms_host->accel = a;
        pools_check_snapshots(d->pools); /* which snapshots fit depends on the accelerator */
        if (d->on_accel_decided)
                d->on_accel_decided(d);
        opd_schedule_reap(d); /* starts queued requests */
}

static void on_probe_ready(struct vm *vm, void *userdata)
{
        decide(userdata, OP_ACCEL_KVM, "a guest booted under KVM");
}

static void on_probe_failed(struct vm *vm, const char *why, void *userdata)
{
        decide(userdata, OP_ACCEL_TCG, "the KVM probe guest failed; using software emulation");
}

static void on_probe_timeout(evutil_socket_t fd, short what, void *arg)
{
        decide(arg, OP_ACCEL_TCG,
               "the KVM probe guest did not boot in time; using software emulation");
}

static const struct vm_events probe_events = {
    .ready = on_probe_ready,
    .failed = on_probe_failed,
};

int accel_start(struct opd *d)
{
        const struct op_lang *lang = NULL;
        uint32_t t = d->cfg.accel_probe_timeout_ms;
        int r;

        if (d->vms_host->drv->only_accel != OP_ACCEL_AUTO) {
                decide(d, d->vms_host->drv->only_accel, "the only one the VMM has");
                return 0;
        }
        if (d->cfg.accel != OP_ACCEL_AUTO) {
                decide(d, d->cfg.accel, "configured");
                return 0;
        }
        if (!kvm_device_usable()) {
                decide(d, OP_ACCEL_TCG, "/dev/kvm is missing or unusable");
                return 0;
        }
        for (size_t i = 0; i < d->langs.n && !lang; i++)
                if (d->langs.v[i].available)
                        lang = &d->langs.v[i];
        if (!lang) {
                decide(d, OP_ACCEL_TCG, "no guest image to probe KVM with");
                return 0;
        }
        d->accel = calloc(1, sizeof(*d->accel));
        if (!d->accel)
                return -ENOMEM;
        d->accel->probe_timer = evtimer_new(d->base, on_probe_timeout, d);
        if (!d->accel->probe_timer)
                return -ENOMEM;
        r = vm_boot(d->vms_host, lang, OP_ACCEL_KVM, -1, &probe_events, d, &d->accel->probe_vm);
        if (r < 0) {
                d->accel->probe_vm = NULL;
                decide(d, OP_ACCEL_TCG, "cannot start the KVM probe guest");
                return 0;
        }
        op_timer_arm_ms(d->accel->probe_timer, t);
        log_info("probing KVM with a %s guest (deadline %u ms)", lang->name, t);
        return 0;
}

void accel_done(struct opd *d)
{
        /* The probe VM, if any, goes with the VM layer. */
        if (!d->accel)
                return;
        if (d->accel->probe_timer)
                event_free(d->accel->probe_timer);
        free(d->accel);
        d->accel = NULL;
}
