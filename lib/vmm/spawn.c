/* spawn.c: starting a VMM child process with exactly the fds meant for it, tied to the
 * lifetime of its parent, with exec failures reported back instead of lost. */
#include "vmm.h"

#include <errno.h>
#include <linux/close_range.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

static void __attribute__((noreturn))
child(char *const *argv, const int *fds, size_t n_fds, const char *workdir, int out_fd, int errfd,
      pid_t parent)
{
        sigset_t all;
        int fd, e;

        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int s = 1; s < NSIG; s++)
                signal(s, SIG_DFL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                goto fail;
        if (setsid() < 0)
                goto fail;
        if (chdir(workdir) < 0)
                goto fail;
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || dup2(fd, 0) < 0)
                goto fail;
        fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 64);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(1, 2) < 0)
                goto fail;
        /* Move the fds out of the way first so the dup2s below cannot clobber each other. */
        int moved[16];
        if (n_fds > ELEMENTSOF(moved)) {
                errno = E2BIG;
                goto fail;
        }
        for (size_t i = 0; i < n_fds; i++) {
                moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64);
                if (moved[i] < 0)
                        goto fail;
        }
        for (size_t i = 0; i < n_fds; i++)
                if (dup2(moved[i], 3 + (int)i) < 0)
                        goto fail;
#ifdef SYS_close_range
        /* Anything a library opened without O_CLOEXEC stays behind too (best effort: Linux 5.11+;
         * opd's own fds are all close-on-exec anyway). */
        (void)syscall(SYS_close_range, 3 + (unsigned)n_fds, ~0U, CLOSE_RANGE_CLOEXEC);
#endif
        execvp(argv[0], argv);
fail:
        e = errno;
        (void)!write(errfd, &e, sizeof(e));
        _exit(127);
}

pid_t vmm_spawn(char *const *argv, const int *fds, size_t n_fds, const char *workdir, int out_fd)
{
        _cleanup_close_ int rd = -1, wr = -1;
        int pipefd[2], e;
        pid_t parent = getpid(), pid;
        ssize_t k;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        rd = pipefd[0];
        wr = pipefd[1];
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0)
                child(argv, fds, n_fds, workdir, out_fd, wr, parent);
        wr = safe_close(wr);
        do
                k = read(rd, &e, sizeof(e));
        while (k < 0 && errno == EINTR);
        if (k == sizeof(e)) {
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                return -e;
        }
        return pid;
}

int vmm_version_output(const char *binary, char **ret)
{
        _cleanup_close_ int rd = -1;
        char buf[512];
        int pipefd[2], status;
        ssize_t n = 0, k;
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        rd = pipefd[0];
        pid = fork();
        if (pid < 0) {
                safe_close(pipefd[1]);
                return -errno;
        }
        if (pid == 0) {
                dup2(pipefd[1], 1);
                execlp(binary, binary, "--version", (char *)NULL);
                _exit(127);
        }
        safe_close(pipefd[1]);
        while (n < (ssize_t)sizeof(buf) - 1 &&
               (k = read(rd, buf + n, sizeof(buf) - 1 - (size_t)n)) > 0)
                n += k;
        buf[n] = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -ENOEXEC;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}
