/* piston.h: the Piston v2 execute API (engineer-man/piston) in opd's terms: a Piston execute body
 * becomes a protocol exec request, an exec answer becomes Piston's result, and Piston's semver
 * selectors are matched against a runtime's version. Pure code on jansson: no I/O, no globals. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "msg.h"

/* The size of any file a program writes, as Piston bounds it by default (10 MB). */
#define PISTON_FILE_SIZE_MAX 10000000
/* Piston's version, as its GET / names it. */
#define PISTON_API_VERSION "3.1.1"

/* 1 when version (a runtime's, e.g. "3.11.2"; its leading numbers count, the rest is ignored)
 * satisfies selector: "*" or "x"; a version or part of one ("3", "3.11", "3.x", "3.11.2");
 * one of = > >= < <= ^ ~ before one; several separated by spaces (all must hold); alternatives
 * joined by "||". 0 when it does not or the selector is malformed. */
int piston_version_match(const char *selector, const char *version);

/* Check a Piston execute body and build the protocol exec request for it ({"op": "exec", "id",
 * "lang", "code", "stdin", "args", "files", "timeout_ms", "file_size_max_bytes": Piston's 10 MB
 * within lim->written_file_max}). The first file is the program; the
 * others go to files[] (unnamed ones are called "file1", "file2", ... by position). Fields
 * opd does not use are accepted and ignored, as Piston ignores what it does not know.
 * -EINVAL with a Piston-style message in errbuf when the body is refused. */
int piston_exec_request(json_t *body, json_t *id, const struct op_limits *lim, json_t **ret_exec,
                        char *errbuf, size_t errlen);

/* Piston's result {"language", "version", "run": {stdout, stderr, output, code, signal, message,
 * status, cpu_time, wall_time, memory}, "compile"?: {the same}} from an ok exec answer. Uses the
 * answer's "status", "usage" and "compile" when it has them (newer opds); output_max says which
 * stream filled up when the answer is truncated. NULL when out of memory or malformed. */
json_t *piston_result(json_t *answer, const char *language, const char *version, size_t output_max);

/* The HTTP status for an exec error answer's code: 400 for what the caller must fix, 503 for
 * what may pass (busy, no VM, shutting down), 500 otherwise. */
int piston_http_status(const char *code);
