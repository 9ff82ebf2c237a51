/* log.c: formats log lines for the journal or a terminal. Stateless: the journal is detected
 * from $JOURNAL_STREAM, debug lines are on when $OPD_DEBUG is set. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const prio_names[] = {"emerg",   "alert",  "crit", "error",
                                         "warning", "notice", "info", "debug"};

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
        if (getenv("JOURNAL_STREAM")) {
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
