/* init.h: what op-agent does first when the kernel starts it as PID 1 from the initramfs:
 * mount /dev /proc /sys, load the modules listed in /etc/op-modules, mount the read-only root
 * and a tmpfs for writes, and switch into that root. */
#pragma once

/* Returns 0 when the guest is set up and the process runs inside the final root, or a negative
 * errno. Only called when getpid() == 1. */
int op_init_setup(void);

/* Reap every exited child that is not `keep` (PID 1 inherits orphans). Never blocks. */
void op_init_reap_orphans(void);
