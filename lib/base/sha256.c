/* sha256.c: SHA-256 digests for snapshot manifests and chunk names; reads files in large
 * blocks and never follows a symlink. */
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"

#define READ_BLOCK (1024 * 1024)

static void to_hex(const unsigned char *md, char *hex)
{
        static const char digits[] = "0123456789abcdef";

        for (int i = 0; i < 32; i++) {
                hex[2 * i] = digits[md[i] >> 4];
                hex[2 * i + 1] = digits[md[i] & 15];
        }
        hex[SHA256_HEX_LEN] = 0;
}

void op_sha256_hex(const void *data, size_t len, char ret_hex[SHA256_HEX_LEN + 1])
{
        unsigned char md[32];

        EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL);
        to_hex(md, ret_hex);
}

int op_sha256_file(int dirfd, const char *name, char ret_hex[SHA256_HEX_LEN + 1],
                   uint64_t *ret_size)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ unsigned char *buf = NULL;
        unsigned char md[32];
        uint64_t size = 0;
        EVP_MD_CTX *ctx;
        int r = 0;

        if (fd < 0)
                return -errno;
        buf = malloc(READ_BLOCK);
        ctx = EVP_MD_CTX_new();
        if (!buf || !ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
                EVP_MD_CTX_free(ctx);
                return -ENOMEM;
        }
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        for (;;) {
                ssize_t k = read(fd, buf, READ_BLOCK);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (k == 0)
                        break;
                EVP_DigestUpdate(ctx, buf, (size_t)k);
                size += (uint64_t)k;
        }
        if (r == 0) {
                EVP_DigestFinal_ex(ctx, md, NULL);
                to_hex(md, ret_hex);
                if (ret_size)
                        *ret_size = size;
        }
        EVP_MD_CTX_free(ctx);
        return r;
}

bool op_sha256_hex_valid(const char *s)
{
        if (strlen(s) != SHA256_HEX_LEN)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}
