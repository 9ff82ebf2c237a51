/* snap-stage.h: a snapshot version arriving from S3, staged in <cache>/<lang>/.sync-<version>
 * on the cache's filesystem. Staging survives a failed or interrupted sync so the next one
 * resumes: chunks already there (or in the serving version, by hash) are not fetched again.
 * Nothing here touches "current" until s3_stage_install() has verified every file. */
#pragma once

#include <stdint.h>

#include "snap-chunks.h"

struct s3_stage_need {
        uint16_t file; /* index into m->snap.files */
        uint32_t chunk;
};

struct s3_stage_plan {
        uint32_t present; /* already staged and verified */
        uint32_t copied;  /* copied from an installed version */
        uint32_t zero;    /* chunks of zeros, never fetched */
        uint32_t linked;  /* chunks of files linked to an installed file of the same content */
        struct s3_stage_need *need;
        uint32_t n_need;
};

/* The staging directory's name for a version: ".sync-<version>". */
int s3_stage_name(const char *version, char *buf, size_t len);

/* Slow (reads and hashes): run it off the loop. Creates or reuses the staging directory; a file
 * whose content a current version of any language in the cache holds (same chunk root, or
 * sha256 for the plain layout; that version's .verified record intact) is hard-linked to it;
 * every other file is sized, its verified chunks kept, what an installed version of the language
 * has copied; records what is left to fetch in the staging directory. */
int s3_stage_prepare(const char *cache_dir, const struct s3_chunkman *m, char *errbuf,
                     size_t errlen);
/* Read what s3_stage_prepare() left (fast). */
int s3_stage_plan_read(const char *cache_dir, const struct s3_chunkman *m,
                       struct s3_stage_plan *ret);
void s3_stage_plan_free(struct s3_stage_plan *p);
/* Open a staged file for writing fetched chunks (pwrite at chunk offsets) and reading them back
 * to hash them. */
int s3_stage_open(const char *cache_dir, const struct s3_chunkman *m, size_t file);

/* Write manifest.json (and chunks.json), fsync every file once, rename into
 * <cache>/<lang>/<version>, switch "current". A chunked version's chunks were each checked
 * against the manifest before they were written (fetch, prepare), so its files are not hashed
 * again; a plain one's files are hashed whole: on a mismatch the staging directory is removed
 * and -EBADMSG returned. With record_serial (m was signed by a trusted key), m->serial and the
 * version are recorded (s3_serial_write()) after the rename and before "current" switches: an
 * install that cannot record them fails. "current" is untouched on any failure. */
int s3_stage_install(const char *cache_dir, const struct s3_chunkman *m, bool record_serial,
                     char *errbuf, size_t errlen);

/* Creates or reuses the staging directory and hard-links each file an installed version holds
 * (as s3_stage_prepare() does; a staged link whose source is no longer trusted is removed): what
 * is linked costs no space, and s3_stage_check_space() counts only links that were made. */
int s3_stage_link(const char *cache_dir, const struct s3_chunkman *m, char *errbuf, size_t errlen);
/* Room for m on the cache's filesystem, before its bytes are staged: the bytes its non-zero
 * chunks will store (less what a staging directory of it already holds) plus reserve must be
 * free, and the cache's total with them at most cache_max (0: no bound). A file counts nothing
 * only when it is staged as a link already (s3_stage_link()). -ENOSPC with a message naming the
 * numbers. */
int s3_stage_check_space(const char *cache_dir, const struct s3_chunkman *m, uint64_t reserve,
                         uint64_t cache_max, char *errbuf, size_t errlen);
/* Remove the staging directory of m (a failed sync that is not worth resuming). */
int s3_stage_remove(const char *cache_dir, const struct s3_chunkman *m);

/* The highest chunk manifest serial a host has accepted for lang, and the version it named
 * (<cache>/<lang>/.serial): *ret_serial 0 and ret_version "" when none. */
int s3_serial_read(const char *cache_dir, const char *lang, uint64_t *ret_serial,
                   char ret_version[SNAP_NAME_MAX]);
/* Record serial and version (atomically, fsynced), unless a higher serial is recorded. */
int s3_serial_write(const char *cache_dir, const char *lang, uint64_t serial, const char *version);
