/* access.h: who may use opd and who may administer it, from the peer's credentials
 * (access.c: access.group, access.admin_group). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

struct opd;

int access_init(struct opd *d);
void access_done(struct opd *d);
/* May the peer on fd (a UNIX socket; uid, gid from SO_PEERCRED) use the service (exec, status,
 * ping)? */
bool access_may_use(struct opd *d, int fd, uid_t uid, gid_t gid);
/* May it manage snapshots (root, access.admin_group)? */
bool access_may_admin(struct opd *d, int fd, uid_t uid, gid_t gid);
