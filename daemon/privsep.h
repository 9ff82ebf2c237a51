/* privsep.h: opd's privilege separation (docs/security.md): started as root, opd starts the
 * helper opd-jail, which keeps what jailing a VMM needs, and then runs as jail.user. */
#pragma once

struct opd;

/* Before anything else touches a VM: with jail = yes, check opd runs as root, make run_dir and
 * cache_dir jail.user's and start opd-jail. With jail = no, say the VMMs run unconfined. */
int privsep_start(struct opd *d);
/* Once the listening socket is bound: become jail.user (no groups, no capabilities,
 * no_new_privs). Does nothing with jail = no. */
int privsep_drop(struct opd *d);
