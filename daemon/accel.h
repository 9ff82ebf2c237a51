/* accel.h: choosing KVM or TCG (accel.c). */
#pragma once

struct opd;

/* Resolve d->vms_host->accel; when "auto" and /dev/kvm looks usable, prove it by booting. Calls
 * requests_kick() once decided. */
int accel_start(struct opd *d);
/* Exit: the probe's timer goes (its VM goes with the VM layer). */
void accel_done(struct opd *d);
