/* privsep.c: privilege separation: opd-jail started while opd is root, run_dir and cache_dir
 * handed to jail.user, then opd becomes jail.user for good. */
#include "privsep.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "host.h"
#include "jail-run.h"
#include "log.h"
#include "opd.h"
#include "util.h"

#ifndef OPD_LIBEXECDIR
#define OPD_LIBEXECDIR "/usr/libexec/opd"
#endif

/* `name` as execvp would find it, made absolute. */
static int which(const char *name, char *buf, size_t size)
{
        const char *path = getenv("PATH") ?: "/usr/local/bin:/usr/bin:/bin";

        if (strchr(name, '/')) {
                if (!realpath(name, buf))
                        return -errno;
                return 0;
        }
        while (*path) {
                size_t n = strcspn(path, ":");
                char cand[PATH_MAX];

                snprintf(cand, sizeof(cand), "%.*s/%s", (int)n, path, name);
                if (access(cand, X_OK) == 0 && realpath(cand, buf) && strlen(buf) < size)
                        return 0;
                path += n;
                if (*path == ':')
                        path++;
        }
        return -ENOENT;
}

/* Where opd-jail is: jail.helper; else next to opd (a build tree); else ../libexec/opd/ from
 * opd's own directory (an installed opd, whatever the prefix: /usr/sbin/opd finds
 * /usr/libexec/opd/opd-jail); else the libexec directory opd was configured with. */
static int helper_path(const struct opd *d, char *buf, size_t size)
{
        static const char *const rel[] = {"opd-jail", "../libexec/opd/opd-jail"};
        char self[PATH_MAX];
        ssize_t k;

        if (d->cfg.jail.helper[0])
                return realpath(d->cfg.jail.helper, buf) ? 0 : -errno;
        k = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (k > 0) {
                char *slash;

                self[k] = 0;
                slash = strrchr(self, '/');
                for (size_t i = 0; slash && i < ELEMENTSOF(rel); i++) {
                        char path[PATH_MAX];

                        if (snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - self), self,
                                     rel[i]) >= (int)sizeof(path))
                                continue;
                        if (access(path, X_OK) == 0)
                                return realpath(path, buf) ? 0 : -errno;
                }
        }
        snprintf(buf, size, "%s/opd-jail", OPD_LIBEXECDIR);
        return access(buf, X_OK) < 0 ? -errno : 0;
}

DEFINE_POINTER_CLEANUP(DIR *, closedir)

/* Directories only: opd makes and removes entries in them, and never writes a file it did not
 * make. A file stays as it is (a snapshot's rootfs may be a hard link to an image). Symbolic
 * links are not followed, mount points not crossed, and the walk stops DEPTH levels down.
 * Takes FD (closes it). */
static void chown_dirs(int fd, dev_t dev, uid_t uid, gid_t gid, unsigned depth)
{
        _cleanup_close_ int dfd = fd;
        _cleanup_(closedirp) DIR *dir = NULL;
        struct dirent *e;
        struct stat st;

        if (fstat(dfd, &st) < 0 || st.st_dev != dev)
                return;
        if (st.st_uid != uid || st.st_gid != gid)
                (void)fchown(dfd, uid, gid);
        if (depth == 0)
                return;
        dir = fdopendir(dfd);
        if (!dir)
                return;
        TAKE_FD(dfd); /* the DIR owns it now */
        while ((e = readdir(dir))) {
                int sub;

                if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN)
                        continue;
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                sub =
                    openat(dirfd(dir), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0)
                        chown_dirs(sub, dev, uid, gid, depth - 1);
        }
}

/* The directory (made if missing, mode kept) and every directory in it become uid:gid. */
static int give_tree(const char *dir, mode_t mode, uid_t uid, gid_t gid)
{
        struct stat st;
        int r = op_mkdir_p(dir, mode), fd;

        if (r < 0)
                return r;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        chown_dirs(fd, st.st_dev, uid, gid, 16);
        return 0;
}

/* VM directories that outlived their VMMs' opd-jail (killed with opd: nothing gave them back)
 * and that opd's start could not remove (a tree nested deeper than fds it may hold), perhaps
 * owned by VM uids: removed while opd is still root, whatever their depth. */
static void remove_stale_vm_dirs(const char *run_dir)
{
        _cleanup_(closedirp) DIR *dir = opendir(run_dir);
        struct dirent *e;
        int r;

        if (!dir)
                return;
        while ((e = readdir(dir)))
                if (strncmp(e->d_name, "vm-", 3) == 0) {
                        r = jail_remove_tree(dirfd(dir), e->d_name);
                        if (r < 0)
                                log_warn("jail: remove %s/%s: %s", run_dir, e->d_name,
                                         strerror(-r));
                }
}

static int user_ids(const struct opd *d, uid_t *ret_uid, gid_t *ret_gid)
{
        struct passwd *pw = getpwnam(d->cfg.jail.user);

        if (!pw)
                return -ESRCH;
        if (pw->pw_uid == 0 ||
            (pw->pw_uid >= d->cfg.jail.uid_min && pw->pw_uid <= d->cfg.jail.uid_max))
                return -EPERM;
        *ret_uid = pw->pw_uid;
        *ret_gid = pw->pw_gid;
        return 0;
}

int privsep_start(struct opd *d)
{
        char helper[PATH_MAX], qemu[PATH_MAX];
        struct vm_jail_opts o = {0};
        uid_t uid;
        gid_t gid;
        int r;

        if (!d->cfg.jail.enabled) {
                log_warn("jail = no: every VMM runs unconfined, as opd's own user (%u); a VMM "
                         "escape is an escape to opd",
                         (unsigned)getuid());
                return 0;
        }
        if (strcmp(d->vms_host->drv->name, "qemu") != 0) {
                log_warn("jail: %s VMMs are not started through opd-jail; opd keeps running as "
                         "uid %u",
                         d->vms_host->drv->name, (unsigned)getuid());
                return 0;
        }
        if (geteuid() != 0)
                return log_error_errno(-EPERM,
                                       "jail = yes: opd must start as root (it starts opd-jail, "
                                       "then runs as jail.user \"%s\"); jail = no runs VMMs "
                                       "unconfined",
                                       d->cfg.jail.user);
        r = user_ids(d, &uid, &gid);
        if (r == -ESRCH)
                return log_error_errno(r,
                                       "jail.user \"%s\": no such user (create it with "
                                       "systemd-sysusers opd.sysusers)",
                                       d->cfg.jail.user);
        if (r < 0)
                return log_error_errno(r, "jail.user \"%s\": root or in the VMs' uid range",
                                       d->cfg.jail.user);
        if (d->cfg.run_dir[0] != '/')
                return log_error_errno(-EINVAL, "jail: run_dir must be an absolute path");
        r = helper_path(d, helper, sizeof(helper));
        if (r < 0)
                return log_error_errno(r, "jail: opd-jail not found (jail.helper)");
        r = which(d->cfg.qemu_binary, qemu, sizeof(qemu));
        if (r < 0)
                return log_error_errno(r, "jail: %s not found", d->cfg.qemu_binary);
        /* The run and cache directories become the user's (the cache not readable by others:
         * the VMs get its files as fds, never by path). */
        remove_stale_vm_dirs(d->cfg.run_dir);
        r = give_tree(d->cfg.run_dir, 0700, uid, gid);
        if (r >= 0)
                r = give_tree(d->cfg.cache_dir, 0750, uid, gid);
        if (r >= 0 && chmod(d->cfg.cache_dir, 0750) < 0)
                r = -errno;
        if (r < 0)
                return log_error_errno(r, "jail: give %s and %s to %s", d->cfg.run_dir,
                                       d->cfg.cache_dir, d->cfg.jail.user);
        o.helper = helper;
        o.run_dir = d->cfg.run_dir;
        o.uid_min = d->cfg.jail.uid_min;
        o.uid_max = d->cfg.jail.uid_max;
        o.owner_uid = uid;
        o.owner_gid = gid;
        o.vmm[0] = qemu;
        r = vm_host_jail(d->vms_host, &o);
        if (r < 0)
                return log_error_errno(r, "start %s", helper);
        log_info("jail: every VMM runs as a uid of its own from %u-%u, in its own namespaces "
                 "and root (opd-jail pid %d)",
                 (unsigned)d->cfg.jail.uid_min, (unsigned)d->cfg.jail.uid_max,
                 (int)vm_jail_pid(d->vms_host->jail));
        if (vm_jail_cgroup(d->vms_host->jail))
                log_info("jail: %s", vm_jail_cgroup_text(d->vms_host->jail));
        else
                log_warn("jail: no per-VM memory, pids and cpu limits: %s",
                         vm_jail_cgroup_text(d->vms_host->jail));
        return 0;
}

int privsep_drop(struct opd *d)
{
        uid_t uid;
        gid_t gid;
        int r;

        if (!d->vms_host->jail)
                return 0;
        r = user_ids(d, &uid, &gid);
        if (r < 0)
                return log_error_errno(r, "jail.user \"%s\"", d->cfg.jail.user);
        for (int cap = 0; cap < 64; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                        return log_error_errno(-errno, "drop capability %d", cap);
        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                return log_error_errno(-errno, "become %s", d->cfg.jail.user);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return log_error_errno(-errno, "no_new_privs");
        if (setuid(0) == 0)
                return log_error_errno(-EPERM, "root could be regained after dropping it");
        log_info("running as %s (%u:%u), no capabilities", d->cfg.jail.user, (unsigned)uid,
                 (unsigned)gid);
        return 0;
}
