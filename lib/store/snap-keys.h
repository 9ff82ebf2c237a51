/* snap-keys.h: Ed25519 key files for signing chunk manifests (snap-sign.h), for publishers
 * (opctl snapshot keygen, push --sign-key). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "snap-sign.h"

/* Signing, for publishers (opctl). A private key file is PEM (PKCS #8), as `openssl genpkey
 * -algorithm ed25519` writes it. */
int snap_keygen(const char *path, char ret_pub[SNAP_KEY_TEXT_LEN + 1], char *errbuf, size_t errlen);
/* The public half of the key in path (what its signatures name and hosts pin). */
int snap_key_public(const char *path, uint8_t ret[SNAP_KEY_LEN], char *errbuf, size_t errlen);
/* Sign payload with the key in path: the envelope text, malloc'd, in *ret. */
int snap_sign(const char *path, const char *payload, size_t len, char **ret, char *errbuf,
              size_t errlen);
