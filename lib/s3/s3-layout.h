/* s3-layout.h: how snapshots live in a bucket. Under the prefix P:
 *   P<lang>/current                    the version to serve, as text
 *   P<lang>/versions/<version>.json    the chunk manifest of one version (snap-chunks.h)
 *   Pchunks/<sha256>                   one chunk's bytes, content-addressed, shared by all
 * and, read only, the plain layout `aws s3 sync <cache_dir> s3://bucket/P` makes:
 *   P<lang>/<version>/manifest.json + the files it names.
 * The prefix's rule (s3_prefix_valid()) is part of the configuration's (s3-config.h). */
#pragma once

#include "s3-config.h"
#include "snap-chunks.h"

/* Keys, malloc'd. */
char *s3_key_current(const char *prefix, const char *lang);
char *s3_key_version(const char *prefix, const char *lang, const char *version);
char *s3_key_chunk(const char *prefix, const char *sha256);
char *s3_key_plain(const char *prefix, const char *lang, const char *version, const char *file);
