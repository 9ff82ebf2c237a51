/* accel.h: choosing KVM or TCG (accel.c). */
#pragma once

#include <stdbool.h>

#include "config.h"

struct opd;

/* What clients are told when opd runs under TCG without allow_tcg. */
#define ACCEL_TCG_REFUSED                                                                          \
        "opd runs untrusted code only behind an isolation boundary: the accelerator is tcg "       \
        "(software emulation, no boundary) and allow_tcg is not yes"

/* Does the accelerator keep a guest from its host? KVM: hardware virtualization. TCG: no
 * (QEMU's security policy does not treat TCG's bugs as security bugs). */
bool accel_is_boundary(enum op_accel a);

/* Resolve d->vms_host->accel; when "auto" and /dev/kvm looks usable, prove it by booting. Calls
 * requests_kick() once decided. */
int accel_start(struct opd *d);
/* Exit: the probe's timer goes (its VM goes with the VM layer). */
void accel_done(struct opd *d);
