/* init.c: the guest's PID-1 set-up: kernel file systems, modules from /etc/op-modules, the
 * read-only root from op.root= with tmpfs for writes, the switch into it, and orphan reaping. */
#include "init.h"

#include "cleanup.h"
#include "fstype.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define INIT_MODULES_LIST "/etc/op-modules"
#define INIT_NEWROOT      "/newroot"
#define INIT_ROOT_DEFAULT "/dev/vda"
#define INIT_TMP_DEFAULT  "256M"
#define INIT_RUN_SIZE     "16M"
#define INIT_SHM_SIZE     "64M"
#define INIT_ROOT_WAIT_MS 5000
#define INIT_CMDLINE_MAX  4096
#define INIT_LIST_MAX     (64 * 1024)
#define INIT_ARG_MAX      128

struct init_args {
        char root[INIT_ARG_MAX];
        char tmpsize[INIT_ARG_MAX];
};

static void init_msg(const char *what, int r)
{
        /* stderr is /dev/console: the one place a PID 1 can say why the guest is useless. */
        fprintf(stderr, "op-agent init: %s: %s\n", what, strerror(-r));
}

static int mkdir_p(const char *path, mode_t mode)
{
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int mount_at(const char *src, const char *dst, const char *type, unsigned long flags,
                    const char *data)
{
        int r = mkdir_p(dst, 0755);
        if (r < 0)
                return r;
        if (mount(src, dst, type, flags, data) < 0)
                return -errno;
        return 0;
}

/* Size values for tmpfs go into mount options: digits with an optional k/m/g/% suffix only. */
static bool size_valid(const char *s)
{
        size_t n = strspn(s, "0123456789");
        if (n == 0)
                return false;
        return s[n] == '\0' || (strchr("kKmMgG%", s[n]) && s[n + 1] == '\0');
}

/* op.root=/dev/X and op.tmpsize=N from the kernel command line; defaults for what is absent
 * or malformed. */
static void args_parse(const char *cmdline, struct init_args *ret)
{
        snprintf(ret->root, sizeof(ret->root), "%s", INIT_ROOT_DEFAULT);
        snprintf(ret->tmpsize, sizeof(ret->tmpsize), "%s", INIT_TMP_DEFAULT);

        for (const char *p = cmdline; *p;) {
                p += strspn(p, " \t\n");
                size_t n = strcspn(p, " \t\n");
                if (n == 0)
                        break;
                if (n > 8 && strncmp(p, "op.root=", 8) == 0 && n - 8 < sizeof(ret->root) &&
                    strncmp(p + 8, "/dev/", 5) == 0)
                        snprintf(ret->root, sizeof(ret->root), "%.*s", (int)(n - 8), p + 8);
                else if (n > 11 && strncmp(p, "op.tmpsize=", 11) == 0 &&
                         n - 11 < sizeof(ret->tmpsize)) {
                        char v[INIT_ARG_MAX];
                        snprintf(v, sizeof(v), "%.*s", (int)(n - 11), p + 11);
                        if (size_valid(v))
                                snprintf(ret->tmpsize, sizeof(ret->tmpsize), "%s", v);
                }
                p += n;
        }
}

static int load_module(const char *path)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Load every module named in the list, in order. A module that fails is reported and skipped:
 * whether the guest can work without it shows later (no root device, no channel). */
static void load_modules(void)
{
        _cleanup_free_ char *list = NULL;
        size_t len;
        int r = op_read_file(INIT_MODULES_LIST, INIT_LIST_MAX, &list, &len);
        if (r < 0) {
                if (r != -ENOENT)
                        init_msg(INIT_MODULES_LIST, r);
                return;
        }
        for (char *save = NULL, *line = strtok_r(list, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                line += strspn(line, " \t");
                if (*line == '\0' || *line == '#')
                        continue;
                r = load_module(line);
                if (r < 0)
                        init_msg(line, r);
        }
}

static int wait_for_block(const char *path, unsigned timeout_ms)
{
        const struct timespec step = {.tv_nsec = 2 * 1000 * 1000};
        uint64_t deadline = op_now_us() + (uint64_t)timeout_ms * 1000;
        struct stat st;

        for (;;) {
                if (stat(path, &st) == 0)
                        return S_ISBLK(st.st_mode) ? 0 : -ENOTBLK;
                if (errno != ENOENT)
                        return -errno;
                if (op_now_us() >= deadline)
                        return -ENODEV;
                nanosleep(&step, NULL);
        }
}

/* The root device's file system (erofs or ext4), from its superblock: -EMEDIUMTYPE for
 * anything else. */
static int root_fstype(const char *dev, const char **ret)
{
        unsigned char head[OP_FSTYPE_PROBE_LEN];
        _cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = pread(fd, head, sizeof(head), 0);
        if (n < 0)
                return -errno;
        *ret = op_fstype_probe(head, (size_t)n);
        return *ret ? 0 : -EMEDIUMTYPE;
}

/* Remove everything on the initramfs below dirfd without crossing into other file systems, so
 * that its memory is returned. Best effort, like switch_root(8). */
static void remove_tree(int fd, dev_t dev)
{
        _cleanup_close_ int dfd = fd;
        DIR *d = fdopendir(dfd);
        if (!d)
                return;
        TAKE_FD(dfd); /* closedir() owns it now */
        struct dirent *e;
        while ((e = readdir(d))) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        int sub = openat(dirfd(d), e->d_name,
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                remove_tree(sub, dev);
                        (void)unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
                } else
                        (void)unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
}

static void free_initramfs(void)
{
        struct stat st;
        int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return;
        if (fstat(fd, &st) < 0) {
                safe_close(fd);
                return;
        }
        remove_tree(fd, st.st_dev);
}

/* /dev/fd and friends are not part of devtmpfs; shells need them for <(...) and /dev/stdin. */
static void dev_links(const char *dev)
{
        static const char *const links[][2] = {
            {"fd", "/proc/self/fd"},
            {"stdin", "/proc/self/fd/0"},
            {"stdout", "/proc/self/fd/1"},
            {"stderr", "/proc/self/fd/2"},
        };
        _cleanup_close_ int dfd = open(dev, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return;
        for (size_t i = 0; i < ELEMENTSOF(links); i++)
                (void)symlinkat(links[i][1], dfd, links[i][0]);
}

/* Bring up "lo" so that user code can talk to itself over 127.0.0.1. Best effort. */
static void loopback_up(void)
{
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {0};

        if (fd < 0)
                return;
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        (void)ioctl(fd, SIOCSIFFLAGS, &ifr);
}

static void hostname_from_file(void)
{
        _cleanup_free_ char *name = NULL;
        size_t len;

        if (op_read_file("/etc/hostname", 256, &name, &len) < 0)
                return;
        len = strcspn(name, " \t\n");
        if (len > 0)
                (void)sethostname(name, len);
}

/* Make sure fds 0-2 exist, so that nothing later writes a frame or a log line to a stray fd. */
static void std_fds(void)
{
        for (int fd = 0; fd < 3; fd++) {
                if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
                        continue;
                int n = open("/dev/console", O_RDWR);
                if (n < 0)
                        n = open("/dev/null", O_RDWR);
                if (n >= 0 && n != fd) {
                        dup2(n, fd);
                        close(n);
                }
        }
}

/* Mounts every root needs wherever it came from: tmpfs for /tmp, /run (with /run/lock), /dev/shm,
 * and cgroup2. */
static int mount_writable(const char *root, const struct init_args *a)
{
        char path[PATH_MAX], opts[INIT_ARG_MAX + 32];
        const unsigned long nosuid = MS_NOSUID | MS_NODEV;
        int r;

        snprintf(path, sizeof(path), "%s/tmp", root);
        snprintf(opts, sizeof(opts), "mode=1777,size=%s", a->tmpsize);
        if (mount("tmpfs", path, "tmpfs", nosuid, opts) < 0) {
                r = -errno;
                init_msg(path, r);
                return r;
        }
        snprintf(path, sizeof(path), "%s/run", root);
        if (mount("tmpfs", path, "tmpfs", nosuid | MS_NOEXEC, "mode=0755,size=" INIT_RUN_SIZE) <
            0) {
                r = -errno;
                init_msg(path, r);
                return r;
        }
        /* /run/lock, as Debian has it (programs' lock files); not fatal when it cannot be. */
        snprintf(path, sizeof(path), "%s/run/lock", root);
        if ((mkdir(path, 01777) < 0 && errno != EEXIST) || chmod(path, 01777) < 0)
                init_msg(path, -errno);
        return 0;
}

static void late_setup(void)
{
        (void)mount_at("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
                       "mode=1777,size=" INIT_SHM_SIZE);
        dev_links("/dev");
        /* favordynmods (Linux 6.0+): moving a process into a group (each run gets one) does
         * not wait for an RCU grace period. Older kernels refuse it: mount without. */
        if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "nsdelegate,favordynmods") < 0)
                (void)mount("cgroup2", "/sys/fs/cgroup", "cgroup2",
                            MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate");
        loopback_up();
        hostname_from_file();
}

int op_init_setup(void)
{
        struct init_args a;
        struct statfs sfs;
        int r;

        /* Kernel file systems first: everything else needs /dev and /proc. */
        r = mount_at("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
        if (r < 0 && r != -EBUSY) {
                init_msg("mount /dev", r);
                return r;
        }
        std_fds();
        r = mount_at("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        if (r < 0 && r != -EBUSY) {
                init_msg("mount /proc", r);
                return r;
        }
        r = mount_at("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        if (r < 0 && r != -EBUSY) {
                init_msg("mount /sys", r);
                return r;
        }

        _cleanup_free_ char *cmdline = NULL;
        size_t len;
        r = op_read_file("/proc/cmdline", INIT_CMDLINE_MAX, &cmdline, &len);
        args_parse(r < 0 ? "" : cmdline, &a);

        load_modules();

        if (statfs("/", &sfs) < 0)
                return -errno;
        if (sfs.f_type != RAMFS_MAGIC && sfs.f_type != TMPFS_MAGIC) {
                /* Already on a real root (the kernel mounted root= itself): set up in place. */
                r = mount_writable("", &a);
                if (r < 0)
                        return r;
                late_setup();
                return 0;
        }

        r = wait_for_block(a.root, INIT_ROOT_WAIT_MS);
        if (r < 0) {
                init_msg(a.root, r);
                return r;
        }
        r = mkdir_p(INIT_NEWROOT, 0755);
        if (r < 0)
                return r;
        const char *fstype = NULL;
        r = root_fstype(a.root, &fstype);
        if (r < 0) {
                init_msg(a.root, r);
                return r;
        }
        if (mount(a.root, INIT_NEWROOT, fstype, MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) {
                r = -errno;
                init_msg(a.root, r);
                return r;
        }
        r = mount_writable(INIT_NEWROOT, &a);
        if (r < 0)
                return r;

        static const char *const moves[][2] = {
            {"/dev", INIT_NEWROOT "/dev"},
            {"/proc", INIT_NEWROOT "/proc"},
            {"/sys", INIT_NEWROOT "/sys"},
        };
        for (size_t i = 0; i < ELEMENTSOF(moves); i++)
                if (mount(moves[i][0], moves[i][1], NULL, MS_MOVE, NULL) < 0) {
                        r = -errno;
                        init_msg(moves[i][1], r);
                        return r;
                }

        if (chdir(INIT_NEWROOT) < 0)
                return -errno;
        free_initramfs();
        if (mount(".", "/", NULL, MS_MOVE, NULL) < 0) {
                r = -errno;
                init_msg("move root", r);
                return r;
        }
        if (chroot(".") < 0 || chdir("/") < 0)
                return -errno;

        late_setup();
        return 0;
}

void op_init_reap_orphans(void)
{
        /* Children the agent waits for itself must not be reaped here: only call this when no
         * agent_exec() is waiting, or the job's exit status is lost (see docs/images.md). */
        for (;;) {
                pid_t pid = waitpid(-1, NULL, WNOHANG);
                if (pid > 0)
                        continue;
                if (pid < 0 && errno == EINTR)
                        continue;
                break;
        }
}
