/* jail-run.c: a VMM in a jail of its own (namespaces, pivot_root, uid, no capabilities, fds,
 * environment) and its cgroup v2 leaf. opd-jail's work. */
#include "jail-run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#define JAIL_HOSTNAME "vm"
/* The only environment a VMM gets. */
static char *const vmm_env[] = {"PATH=/usr/bin:/bin", NULL};
/* Character devices a VMM may see (each only when the host has it). */
static const char *const jail_devs[] = {"null", "zero", "urandom", "random", "kvm"};
/* Top-level names that hold the dynamic loader and libraries besides /usr (links to usr/ on a
 * merged-/usr system, directories otherwise). */
static const char *const lib_dirs[] = {"lib", "lib64", "lib32", "libx32", "bin", "sbin"};

/* The capabilities opd-jail keeps, and why: building mount and pid namespaces and pivot_root
 * (SYS_ADMIN), becoming a VM's uid and gid (SETUID, SETGID), emptying the VMM's bounding set
 * (SETPCAP), killing a VMM that runs as another uid (KILL). No file a VMM could reach is owned
 * by it, so none of the file capabilities (CHOWN, FOWNER, DAC_OVERRIDE) is kept. */
static const int kept_caps[] = {CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_KILL};

int jail_drop_caps(void)
{
        struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct data[2] = {0};

        for (int cap = 0; cap < 64; cap++) {
                bool keep = false;

                for (size_t i = 0; i < ELEMENTSOF(kept_caps); i++)
                        keep = keep || kept_caps[i] == cap;
                if (!keep && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                        return -errno;
        }
        for (size_t i = 0; i < ELEMENTSOF(kept_caps); i++) {
                data[kept_caps[i] / 32].effective |= 1u << (kept_caps[i] % 32);
                data[kept_caps[i] / 32].permitted |= 1u << (kept_caps[i] % 32);
        }
        if (syscall(SYS_capset, &hdr, data) < 0)
                return -errno;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return -errno;
        return 0;
}

/* ---- cgroup v2 ---- */

static int write_at(int dirfd, const char *file, const char *s)
{
        _cleanup_close_ int fd = openat(dirfd, file, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);

        if (fd < 0)
                return -errno;
        return op_write_all(fd, s, strlen(s));
}

static bool has_word(const char *list, const char *w)
{
        size_t n = strlen(w);

        for (const char *p = list; (p = strstr(p, w)); p += n)
                if ((p == list || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ' || p[n] == '\n'))
                        return true;
        return false;
}

static bool is_cgroup2(const char *path)
{
        struct statfs sf;

        return statfs(path, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

void jail_cgroup_init(struct jail_cgroup *cg, pid_t opd_pid)
{
        char line[512], path[700], ctl[256] = "", pidbuf[32];
        const char *mnt = NULL, *rel = NULL;
        _cleanup_close_ int base = -1, sup = -1, fd = -1;
        FILE *f;
        ssize_t k;
        int r;

        cg->base_fd = -1;
        f = fopen("/proc/self/cgroup", "re");
        if (f) {
                while (fgets(line, sizeof(line), f))
                        if (strncmp(line, "0::", 3) == 0) {
                                line[strcspn(line, "\n")] = 0;
                                rel = line + 3;
                                break;
                        }
                fclose(f);
        }
        if (is_cgroup2("/sys/fs/cgroup"))
                mnt = "/sys/fs/cgroup";
        else if (is_cgroup2("/sys/fs/cgroup/unified"))
                mnt = "/sys/fs/cgroup/unified";
        if (!mnt || !rel) {
                snprintf(cg->why, sizeof(cg->why), "no cgroup v2 hierarchy");
                return;
        }
        if (strcmp(rel, "/") == 0) {
                snprintf(cg->why, sizeof(cg->why),
                         "opd runs in the root cgroup: no delegated cgroup v2 subtree");
                return;
        }
        snprintf(path, sizeof(path), "%s%s", mnt, rel);
        base = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        fd = base >= 0 ? openat(base, "cgroup.controllers", O_RDONLY | O_CLOEXEC) : -1;
        k = fd >= 0 ? read(fd, ctl, sizeof(ctl) - 1) : -1;
        if (k < 0) {
                snprintf(cg->why, sizeof(cg->why), "cannot read %.100s/cgroup.controllers", path);
                return;
        }
        ctl[k] = 0;
        if (!has_word(ctl, "memory") || !has_word(ctl, "pids") || !has_word(ctl, "cpu")) {
                snprintf(cg->why, sizeof(cg->why),
                         "cgroup v2 at %.80s lacks the memory, pids and cpu controllers "
                         "(hybrid layout?)",
                         path);
                return;
        }
        /* No internal processes: opd and the helper move to a leaf of their own first. */
        if (mkdirat(base, "supervisor", 0755) < 0 && errno != EEXIST)
                r = -errno;
        else {
                snprintf(pidbuf, sizeof(pidbuf), "%d", (int)opd_pid);
                sup = openat(base, "supervisor", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                r = sup < 0 ? -errno : write_at(sup, "cgroup.procs", pidbuf);
                snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
                if (r >= 0)
                        r = write_at(sup, "cgroup.procs", pidbuf);
                if (r >= 0)
                        r = write_at(base, "cgroup.subtree_control", "+memory +pids +cpu");
        }
        if (r < 0) {
                snprintf(cg->why, sizeof(cg->why),
                         "cannot delegate %.80s to per-VM leaves (Delegate=yes?): %s", path,
                         strerror(-r));
                return;
        }
        snprintf(cg->why, sizeof(cg->why), "per-VM cgroup v2 leaves under %.100s", path);
        cg->base_fd = TAKE_FD(base);
}

/* The VM's leaf with its limits; returns an fd on its cgroup.procs. */
static int cgroup_leaf(struct jail_cgroup *cg, const struct jail_req *req)
{
        _cleanup_close_ int leaf = -1;
        char v[32];
        int r, fd;

        if (mkdirat(cg->base_fd, req->name, 0755) < 0 && errno != EEXIST)
                return -errno;
        leaf = openat(cg->base_fd, req->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (leaf < 0)
                return -errno;
        r = 0;
        if (req->memory_max_mb) {
                snprintf(v, sizeof(v), "%llu", (unsigned long long)req->memory_max_mb << 20);
                r = write_at(leaf, "memory.max", v);
                (void)write_at(leaf, "memory.swap.max", "0");
        }
        if (r >= 0 && req->pids_max) {
                snprintf(v, sizeof(v), "%u", req->pids_max);
                r = write_at(leaf, "pids.max", v);
        }
        if (r >= 0 && req->cpu_weight) {
                snprintf(v, sizeof(v), "%u", req->cpu_weight);
                r = write_at(leaf, "cpu.weight", v);
        }
        if (r < 0)
                return r;
        fd = openat(leaf, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* ---- the jail ---- */

struct child_err {
        int step;
        int err;
};

static int bind_ro(const char *src, const char *dst, unsigned long extra)
{
        if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                return -errno;
        if (mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | extra, NULL) < 0)
                return -errno;
        return 0;
}

/* mkdir -p of the directories of path (relative, inside the new root). */
static int mkparents(const char *path)
{
        char buf[PATH_MAX];

        if (strlen(path) >= sizeof(buf))
                return -ENAMETOOLONG;
        strcpy(buf, path);
        for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
                *p = 0;
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return 0;
}

static bool under_bound_dir(const char *binary)
{
        if (strncmp(binary, "/usr/", 5) == 0)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(lib_dirs); i++) {
                size_t n = strlen(lib_dirs[i]);
                if (binary[0] == '/' && strncmp(binary + 1, lib_dirs[i], n) == 0 &&
                    binary[n + 1] == '/')
                        return true;
        }
        return false;
}

/* In the child, in its new mount namespace: a tmpfs over run_dir becomes the new root, read-only
 * once built. Nothing in it is writable and no host directory is bound writable: a VMM writes
 * only to the fds it was given. */
static int build_root(const struct jail_conf *c, const char *binary, int *step)
{
        char src[64], dst[PATH_MAX], target[PATH_MAX];
        struct stat st;
        ssize_t k;
        int r;

#define STEP(n, expr)                                                                              \
        do {                                                                                       \
                *step = (n);                                                                       \
                if ((expr) < 0)                                                                    \
                        return -errno;                                                             \
        } while (0)
#define STEPR(n, expr)                                                                             \
        do {                                                                                       \
                *step = (n);                                                                       \
                if ((r = (expr)) < 0)                                                              \
                        return r;                                                                  \
        } while (0)

        STEP(10, mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
        STEP(11, mount("tmpfs", c->run_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       "mode=0755,size=256k,nr_inodes=512"));
        STEP(12, chdir(c->run_dir));
        STEP(13, mkdir("usr", 0755));
        STEPR(14, bind_ro("/usr", "usr", MS_NODEV));
        for (size_t i = 0; i < ELEMENTSOF(lib_dirs); i++) {
                snprintf(src, sizeof(src), "/%s", lib_dirs[i]);
                if (lstat(src, &st) < 0)
                        continue;
                if (S_ISLNK(st.st_mode)) {
                        k = readlink(src, target, sizeof(target) - 1);
                        if (k < 0)
                                continue;
                        target[k] = 0;
                        STEP(15, symlink(target, lib_dirs[i]));
                } else if (S_ISDIR(st.st_mode)) {
                        STEP(16, mkdir(lib_dirs[i], 0755));
                        STEPR(17, bind_ro(src, lib_dirs[i], MS_NODEV));
                }
        }
        if (!under_bound_dir(binary)) {
                /* A VMM installed elsewhere: that one file, read-only, at the same path. */
                _cleanup_close_ int f = -1;

                snprintf(dst, sizeof(dst), ".%s", binary);
                STEPR(18, mkparents(dst));
                STEP(19, f = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0755));
                STEPR(20, bind_ro(binary, dst, MS_NODEV));
        }
        STEP(21, mkdir("dev", 0755));
        STEP(22, mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=16k"));
        for (size_t i = 0; i < ELEMENTSOF(jail_devs); i++) {
                _cleanup_close_ int f = -1;

                snprintf(src, sizeof(src), "/dev/%s", jail_devs[i]);
                snprintf(dst, sizeof(dst), "dev/%s", jail_devs[i]);
                if (stat(src, &st) < 0 || !S_ISCHR(st.st_mode))
                        continue;
                STEP(23, f = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0666));
                STEP(24, mount(src, dst, NULL, MS_BIND, NULL));
        }
        STEP(25, mount(NULL, "dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL));
        STEP(26, mkdir("proc", 0555));
        STEP(27, mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
        STEP(31, syscall(SYS_pivot_root, ".", "."));
        STEP(32, umount2(".", MNT_DETACH));
        STEP(33, chdir("/"));
        STEP(34, mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       NULL));
        STEP(36, sethostname(JAIL_HOSTNAME, strlen(JAIL_HOSTNAME)));
        return 0;
#undef STEP
#undef STEPR
}

static int become(uid_t uid)
{
        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0)
                return -errno;
        for (int cap = 0; cap < 64; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                        return -errno;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return -errno;
        /* From root to a uid that is not: permitted and effective capabilities are cleared. */
        if (setresuid(uid, uid, uid) < 0)
                return -errno;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return -errno;
        if (setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0}) < 0)
                return -errno;
        return 0;
}

static void __attribute__((noreturn))
child(const struct jail_conf *c, const char *binary, char *const *argv, const int *fds,
      size_t n_fds, uid_t uid, int go, int errfd)
{
        struct child_err ce = {0};
        int moved[JAIL_FDS_MAX], null, r;
        sigset_t all;
        char b;

        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int s = 1; s < NSIG; s++)
                signal(s, SIG_DFL);
        ce.step = 1;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                goto fail;
        /* The parent moves us into our cgroup, then says go; EOF: it is gone. */
        if (read(go, &b, 1) != 1)
                _exit(1);
        ce.step = 2;
        if (setsid() < 0)
                goto fail;
        /* Out of the way of the numbers they end up at. */
        ce.step = 3;
        for (size_t i = 0; i < n_fds; i++)
                if ((moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64)) < 0)
                        goto fail;
        if ((errfd = fcntl(errfd, F_DUPFD_CLOEXEC, 64)) < 0)
                goto fail;
        r = build_root(c, binary, &ce.step);
        if (r < 0) {
                errno = -r;
                goto fail;
        }
        ce.step = 40;
        if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 || dup2(null, 0) < 0 ||
            dup2(moved[0], 1) < 0 || dup2(moved[0], 2) < 0)
                goto fail;
        for (size_t i = 1; i < n_fds; i++)
                if (dup2(moved[i], 2 + (int)i) < 0)
                        goto fail;
        /* The error pipe right after them (close-on-exec); everything above it closed. */
        if (dup3(errfd, 2 + (int)n_fds, O_CLOEXEC) < 0)
                goto fail;
        errfd = 2 + (int)n_fds;
        ce.step = 41;
        if (syscall(SYS_close_range, 3 + (unsigned)n_fds, ~0U, 0) < 0)
                goto fail;
        ce.step = 42;
        r = become(uid);
        if (r < 0) {
                errno = -r;
                goto fail;
        }
        /* A change of uid clears the parent-death signal: armed again, so that the VMM dies
         * with opd-jail however that ends. The parent may have gone in between: then the read
         * end of the error pipe, which only it holds, is closed. */
        ce.step = 44;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                goto fail;
        if (poll(&(struct pollfd){.fd = errfd}, 1, 0) != 0)
                _exit(1);
        umask(022);
        ce.step = 43;
        execve(binary, argv, vmm_env);
fail:
        ce.err = errno;
        (void)!write(errfd, &ce, sizeof(ce));
        _exit(127);
}

/* The cgroup leaf, the child, the wait for its exec. On failure the child, if one ran, is reaped
 * and the leaf removed. */
static int start(const struct jail_conf *c, struct jail_cgroup *cg, const struct jail_req *req,
                 const char *binary, const int *fds, uid_t uid, pid_t *ret_pid, bool *ret_cgroup,
                 int *ret_step)
{
        _cleanup_close_ int procs = -1, go_rd = -1, go_wr = -1, err_rd = -1, err_wr = -1;
        const char *argv[JAIL_ARGC_MAX + 2];
        struct child_err ce;
        int p[2];
        ssize_t k;
        pid_t pid;

        argv[0] = binary;
        argv[1 + jail_req_args(req, argv + 1, JAIL_ARGC_MAX)] = NULL;
        if (cg->base_fd >= 0) {
                procs = cgroup_leaf(cg, req);
                if (procs < 0)
                        return procs;
        }
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        go_rd = p[0];
        go_wr = p[1];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        err_rd = p[0];
        err_wr = p[1];
        pid = (pid_t)syscall(SYS_clone,
                             CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                                 CLONE_NEWUTS | SIGCHLD,
                             NULL, NULL, NULL, NULL);
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                safe_close(go_wr);
                safe_close(err_rd);
                child(c, binary, (char *const *)argv, fds, req->n_fds, uid, go_rd, err_wr);
        }
        go_rd = safe_close(go_rd);
        err_wr = safe_close(err_wr);
        if (procs >= 0) {
                char v[32];
                int r;

                snprintf(v, sizeof(v), "%d", (int)pid);
                r = op_write_all(procs, v, strlen(v));
                if (r < 0) {
                        kill(pid, SIGKILL);
                        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                                ;
                        return r;
                }
        }
        (void)!write(go_wr, "g", 1);
        do
                k = read(err_rd, &ce, sizeof(ce));
        while (k < 0 && errno == EINTR);
        if (k == sizeof(ce)) {
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                *ret_step = ce.step;
                return ce.err > 0 ? -ce.err : -EIO;
        }
        *ret_pid = pid;
        *ret_cgroup = procs >= 0;
        return 0;
}

int jail_spawn(const struct jail_conf *c, struct jail_cgroup *cg, const struct jail_req *req,
               const int *fds, uid_t uid, pid_t *ret_pid, bool *ret_cgroup, int *ret_step)
{
        const char *binary = req->vmm < JAIL_VMMS_MAX ? c->vmm[req->vmm] : NULL;
        int r;

        if (!binary)
                return -ENOENT;
        if (uid < c->uid_min || uid > c->uid_max || uid == 0)
                return -EPERM;
        r = start(c, cg, req, binary, fds, uid, ret_pid, ret_cgroup, ret_step);
        if (r < 0 && cg->base_fd >= 0)
                (void)unlinkat(cg->base_fd, req->name, AT_REMOVEDIR); /* empty: no VMM runs */
        return r;
}

/* One pass over the directory fd: every entry but a directory unlinked, every empty directory
 * removed, up to the first directory that is not empty, opened in *ret_sub (-1: none left, fd is
 * empty). A directory of the inode `left` (the one just emptied) found not empty: -EIO, for a
 * walk that would go round for ever. */
static int clear_dir(int fd, dev_t dev, ino_t left, int *ret_sub)
{
        int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), sub, r = 0;
        struct dirent *de;
        struct stat st;
        DIR *d;

        *ret_sub = -1;
        if (dfd < 0)
                return -errno;
        d = fdopendir(dfd);
        if (!d) {
                r = -errno;
                safe_close(dfd);
                return r;
        }
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (!op_dirent_is_dir(dirfd(d), de)) {
                        if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
                                r = -errno;
                                break;
                        }
                        continue;
                }
                if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) == 0 || errno == ENOENT)
                        continue;
                if (errno != ENOTEMPTY && errno != EEXIST) {
                        r = -errno;
                        break;
                }
                sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                        r = -errno;
                else if (fstat(sub, &st) < 0)
                        r = -errno;
                else if (st.st_dev != dev)
                        r = -EXDEV;
                else if (st.st_ino == left)
                        r = -EIO;
                else
                        *ret_sub = TAKE_FD(sub);
                safe_close(sub);
                break;
        }
        closedir(d);
        return r;
}

int jail_remove_tree(int dirfd, const char *name)
{
        _cleanup_close_ int cur = -1;
        struct stat st;
        size_t level = 0;
        ino_t left = 0;
        dev_t dev;
        int r, sub;

        cur = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cur < 0) {
                if (errno == ENOENT)
                        return 0;
                if (errno != ENOTDIR && errno != ELOOP)
                        return -errno;
                return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
        }
        if (fstat(cur, &st) < 0)
                return -errno;
        dev = st.st_dev;
        /* Down into the first directory not yet empty, up through ".." once it is: each pass
         * removes what it reads but that one directory, so the walk reads each entry about
         * once, with two fds whatever the depth. ".." is the directory the walk came from as
         * long as nothing renames in the tree: see jail_remove_tree in jail-run.h. */
        for (;;) {
                r = clear_dir(cur, dev, left, &sub);
                if (r < 0)
                        return r;
                if (sub >= 0) {
                        safe_close(cur);
                        cur = sub;
                        left = 0;
                        level++;
                        continue;
                }
                if (level == 0)
                        break;
                if (fstat(cur, &st) < 0)
                        return -errno;
                left = st.st_ino;
                sub = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                        return -errno;
                safe_close(cur);
                cur = sub;
                level--;
        }
        return unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
}

void jail_release(struct jail_cgroup *cg, const char *name)
{
        if (cg->base_fd >= 0)
                (void)unlinkat(cg->base_fd, name, AT_REMOVEDIR);
}
