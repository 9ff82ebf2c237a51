/* log.c: formats log lines for the journal or a terminal. Stateless: the journal is detected
 * from $JOURNAL_STREAM matching stderr, debug lines are on when $OPD_DEBUG is set. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const prio_names[] = {"emerg",   "alert",  "crit", "error",
                                         "warning", "notice", "info", "debug"};

/* systemd connects stderr to the journal and says so in $JOURNAL_STREAM ("dev:ino" of that
 * stream); it counts only while fd 2 is still that stream. */
static bool stderr_is_journal(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_msg(int prio, const char *fmt, ...)
{
        char line[2048];
        int saved = errno;
        va_list ap;

        if (prio == LOG_DEBUG && !getenv("OPD_DEBUG"))
                return;
        va_start(ap, fmt);
        errno = saved;
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (stderr_is_journal()) {
                fprintf(stderr, "<%d>%s\n", prio, line);
        } else {
                struct timespec ts;
                struct tm tm;
                char when[32];

                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
                fprintf(stderr, "%s.%03ldZ opd %s: %s\n", when, ts.tv_nsec / 1000000,
                        prio_names[prio & 7], line);
        }
        errno = saved;
}
