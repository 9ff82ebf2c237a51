/* log.h: the daemon's logging: one line per event on stderr, with syslog priority prefixes
 * ("<6>") when stderr is the journal and a timestamped human format otherwise. */
#pragma once

#include <errno.h>
#include <syslog.h>

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)

/* Log at error level with strerror(-r) appended and return r (negative errno). */
#define log_error_errno(r, fmt, ...)                                                               \
        ({                                                                                         \
                int _r = (r);                                                                      \
                errno = -_r;                                                                       \
                log_msg(LOG_ERR, fmt ": %m", ##__VA_ARGS__);                                       \
                _r;                                                                                \
        })
