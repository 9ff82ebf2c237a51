/* snapshot.h: the local snapshot cache: <cache>/<lang>/<version>/{manifest.json, vmstate, mem,
 * rootfs.ext4, kernel, initrd.img} and <cache>/<lang>/current -> <version>. Manifests are
 * untrusted input: every name, size and count is bounded before use. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "sha256.h"

#define SNAP_FILES_MAX     16
#define SNAP_MANIFEST_MAX  (64 * 1024)
#define SNAP_NAME_MAX      64
#define SNAP_FILE_SIZE_MAX (64ull << 30)
/* Chunks: a version fetched chunk by chunk records each file's chunk root (docs/s3.md). */
#define SNAP_CHUNK_SIZE_MIN (64u << 10)
#define SNAP_CHUNK_SIZE_MAX (64u << 20)
#define SNAP_CHUNKS_MAX     65536u /* all files of one version together */
#define SNAP_ROOT_CONTEXT   "opd chunk root v1\n"
/* Left in a version's directory by an S3 install that checked every byte (each chunk against
 * its signed hash, or a plain version's whole files): the files' identities then (device,
 * inode, size, modification time), so the pool need not hash them again before serving. */
#define SNAP_VERIFIED_NAME ".verified"

struct snap_file {
        char name[SNAP_NAME_MAX];
        uint64_t size;
        char sha256[SHA256_HEX_LEN + 1]; /* the whole file's */
        char root[SHA256_HEX_LEN + 1];   /* the chunk root ("": none, chunk_size 0) */
};

struct snap_manifest {
        char version[SNAP_NAME_MAX];
        char lang[SNAP_NAME_MAX];
        char created[32]; /* RFC 3339, UTC */
        char agent_version[32];
        char vmm[16];          /* "qemu" or "firecracker" */
        char vmm_version[64];  /* the VMM release that made it; restores need the same */
        char accel[8];         /* "kvm" or "tcg" */
        char lang_version[64]; /* the language runtime's version */
        uint32_t memory_mb;
        uint32_t vcpus;
        bool warm; /* the runtime was started and is waiting for code */
        /* Non-zero: every file has a chunk root for chunks of this size, and the root is the
         * file's checksum (snap_verify); 0: the whole-file sha256 is. */
        uint32_t chunk_size;
        struct snap_file files[SNAP_FILES_MAX];
        size_t n_files;
};

/* Parse and validate manifest text. -EINVAL with a message on anything off. */
int snap_manifest_parse(const char *text, size_t len, struct snap_manifest *ret, char *errbuf,
                        size_t errlen);
json_t *snap_manifest_json(const struct snap_manifest *m);
const struct snap_file *snap_manifest_file(const struct snap_manifest *m, const char *name);

/* A snapshot name (version, language, file) is [A-Za-z0-9._-]{1,63}, not starting with '.'. */
bool snap_name_valid(const char *s);

/* A new version name: UTC time plus random hex, e.g. "20261127T031500Z-3fa2c1". */
int snap_version_new(char ret[SNAP_NAME_MAX]);

/* Open <cache>/<lang>/<version> (version NULL: follow "current") as a directory fd and read its
 * manifest. Sizes of the files are checked; contents are not hashed (see snap_verify). */
int snap_open(const char *cache_dir, const char *lang, const char *version, int *ret_dirfd,
              struct snap_manifest *ret, char *errbuf, size_t errlen);

/* Cheap: every file of an opened snapshot is still there, a regular file of its manifest size.
 * -ENOENT, -EBADMSG... with a message. */
int snap_check_files(int dirfd, const struct snap_manifest *m, char *errbuf, size_t errlen);

/* Hash every file of an opened snapshot against its manifest: its chunk root when the manifest
 * has one, else its whole-file sha256. Slow: run it in the background. */
int snap_verify(int dirfd, const struct snap_manifest *m, char *errbuf, size_t errlen);

/* The chunk root of a file of size bytes cut into chunks of chunk_size (docs/s3.md): SHA-256 over
 * SNAP_ROOT_CONTEXT, chunk_size and size (8 bytes each, big-endian), then one 32-byte leaf per
 * chunk in order: 32 zero bytes for a chunk of zeros, else the SHA-256 of its bytes. leaves[k]
 * is the leaf's hex, "" for a chunk of zeros; n must be the file's chunk count. Pure. */
void snap_chunk_root(uint32_t chunk_size, uint64_t size, const char *const *leaves, size_t n,
                     char ret_hex[SHA256_HEX_LEN + 1]);
/* The same from the file's bytes (one read). */
int snap_chunk_root_file(int dirfd, const char *name, uint64_t size, uint32_t chunk_size,
                         char ret_hex[SHA256_HEX_LEN + 1]);

/* The record an install leaves after checking every chunk (SNAP_VERIFIED_NAME): write it for
 * the files of m as they are now (fsynced), or tell whether it still describes them. A file
 * copied, replaced or written since has another inode or modification time: not verified. */
int snap_verified_write(int dirfd, const struct snap_manifest *m);
bool snap_verified_check(int dirfd, const struct snap_manifest *m);
/* The record's text for the files' stat data, and its reading (pure; fuzzed). */
struct snap_file_id {
        uint64_t dev, ino, size;
        int64_t mtime_s;
        long mtime_ns;
};
char *snap_verified_text(const struct snap_manifest *m, const struct snap_file_id *ids);
bool snap_verified_match(const char *text, size_t len, const struct snap_manifest *m,
                         const struct snap_file_id *ids);

/* Staging: <cache>/<lang>/.tmp-<version>, created empty (removed first if left over). */
int snap_stage_path(const char *cache_dir, const char *lang, const char *version, char **ret);
int snap_stage_begin(const char *cache_dir, const char *lang, const char *version, char **ret);

/* Hash the staged files named in m->files[].name (filling size and sha256), write
 * manifest.json, fsync everything, rename into <cache>/<lang>/<version> and point "current"
 * at it, atomically. On failure the staging directory is removed and "current" is untouched. */
int snap_commit(const char *cache_dir, struct snap_manifest *m, char *errbuf, size_t errlen);

/* Whoever fills a staging directory holds this lock (an flock on the directory) until it is
 * installed or removed: a staging directory nobody holds is debris of a killed process. Returns
 * the fd that holds the lock. */
int snap_stage_lock(const char *stage_path);
/* Remove what a killed process left in <cache>/<lang>: staging directories nobody holds and a
 * half-made ".current.new" link. Returns how many entries were removed. */
int snap_clean_stale(const char *cache_dir, const char *lang);

/* The installed versions of lang (plain names, no staging or set-aside ones), newest first,
 * malloc'd into *ret. */
int snap_list_versions(const char *cache_dir, const char *lang, char (**ret)[SNAP_NAME_MAX],
                       size_t *ret_n);
/* Move a version out of the way as <cache>/<lang>/.damaged-<version> (kept for a look; never
 * served, listed or collected). */
int snap_set_aside(const char *cache_dir, const char *lang, const char *version);

/* Point "current" at an installed version (atomic rename of a new symlink). */
int snap_set_current(const char *cache_dir, const char *lang, const char *version);

/* Remove versions of lang except "current", `except` (may be NULL) and the newest `keep`. */
int snap_gc(const char *cache_dir, const char *lang, unsigned keep, const char *except);

/* Remove a directory tree opd made (no symlinks followed; a name that is no directory is
 * unlinked). A directory SNAP_RMTREE_DEPTH_MAX levels down or deeper is no tree of opd's (a
 * VM directory a compromised Firecracker nested): it is left, with the levels above it, and
 * -ELOOP returned, so that no tree costs more than that many fds and stack frames (with
 * opd-jail, opd's start as root removes stale VM directories whatever their depth:
 * daemon/privsep.c). Otherwise the first error, after the rest was removed. */
#define SNAP_RMTREE_DEPTH_MAX 64
int snap_rmtree(int parent_fd, const char *name);

/* Read a file of an opened snapshot through the page cache (snap-preload.c). Slow: off the loop. */
int snap_preload(int dirfd, const char *name, uint64_t *ret_bytes);
