/* sha256.h: SHA-256 of files and buffers, as lowercase hex, through OpenSSL's libcrypto
 * (the same library libcurl already links; it uses the CPU's SHA instructions). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

void op_sha256_hex(const void *data, size_t len, char ret_hex[SHA256_HEX_LEN + 1]);
/* Hash a file opened relative to dirfd (O_NOFOLLOW). Also returns its size. */
int op_sha256_file(int dirfd, const char *name, char ret_hex[SHA256_HEX_LEN + 1],
                   uint64_t *ret_size);
/* True when s is exactly SHA256_HEX_LEN lowercase hex digits, as op_sha256_hex writes. */
bool op_sha256_hex_valid(const char *s);
