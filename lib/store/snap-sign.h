/* snap-sign.h: signed chunk manifests. A version in a bucket is an envelope holding the chunk
 * manifest's exact bytes, the Ed25519 public key that signed them and the signature; a host
 * pins the public keys it trusts (s3.trusted_keys) and checks the signature before it stages a
 * byte. The codec is pure (bytes in, fields out); verification only computes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3-config.h"

#define SNAP_KEY_LEN       S3_KEY_LEN /* an Ed25519 public key (s3-config.h) */
#define SNAP_SIG_LEN       64         /* an Ed25519 signature */
#define SNAP_KEY_TEXT_LEN  S3_KEY_TEXT_LEN
#define SNAP_SIGNED_FORMAT 2
/* What is signed: this line, then the chunk manifest's bytes (no other use of the key can be
 * mistaken for a manifest signature). */
#define SNAP_SIGN_CONTEXT "opd snapshot manifest v1\n"

struct snap_signed {
        bool is_signed;            /* false: a bare chunk manifest (format 1) */
        uint8_t key[SNAP_KEY_LEN]; /* who says it signed */
        uint8_t sig[SNAP_SIG_LEN];
        char *payload; /* the chunk manifest's bytes, malloc'd, NUL-terminated */
        size_t payload_len;
};

void snap_signed_free(struct snap_signed *s);

/* An envelope {"format": 2, "key": "ed25519:HEX", "signature": "HEX", "manifest": "TEXT"} or a
 * bare chunk manifest (any other JSON object: is_signed false, payload the whole text). At most
 * S3_CHUNKMAN_MAX bytes. -EINVAL/-EFBIG with a message. */
int snap_signed_parse(const char *text, size_t len, struct snap_signed *ret, char *errbuf,
                      size_t errlen);
/* The envelope for payload, malloc'd. */
char *snap_signed_text(const char *payload, size_t len, const uint8_t key[SNAP_KEY_LEN],
                       const uint8_t sig[SNAP_SIG_LEN]);

/* The signature of s by its key, which must be one of trusted[0..n). -EPERM: not signed;
 * -ENOKEY: signed by a key not in the list; -EBADMSG: the signature does not match the bytes. */
int snap_signed_verify(const struct snap_signed *s, const uint8_t (*trusted)[SNAP_KEY_LEN],
                       size_t n, char *errbuf, size_t errlen);
