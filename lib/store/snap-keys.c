/* snap-keys.c: Ed25519 private key files (PEM, PKCS #8) for publishers: make one, read its
 * public half, and sign a chunk manifest into its envelope (snap-sign.h). */
#include "snap-keys.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

static void pkey_freep(EVP_PKEY **p)
{
        EVP_PKEY_free(*p);
}

int snap_keygen(const char *path, char ret_pub[SNAP_KEY_TEXT_LEN + 1], char *errbuf, size_t errlen)
{
        __attribute__((cleanup(pkey_freep))) EVP_PKEY *pk = NULL;
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
        uint8_t pub[SNAP_KEY_LEN];
        size_t publen = sizeof(pub);
        _cleanup_fclose_ FILE *f = NULL;
        int fd, ok;

        ok = ctx && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &pk) == 1;
        EVP_PKEY_CTX_free(ctx);
        if (!ok || EVP_PKEY_get_raw_public_key(pk, pub, &publen) != 1 || publen != SNAP_KEY_LEN)
                return op_errf(errbuf, errlen, -EIO, "cannot make an Ed25519 key");
        /* never over an existing key; readable by its owner only */
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return op_errf(errbuf, errlen, -errno, "%s: %s", path, strerror(errno));
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        }
        if (PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) != 1 || fflush(f) != 0 ||
            fsync(fileno(f)) < 0) {
                unlink(path);
                return op_errf(errbuf, errlen, -EIO, "%s: cannot write the key", path);
        }
        s3_key_text(pub, ret_pub);
        return 0;
}

/* The private key in path and its public half. */
static int key_load(const char *path, EVP_PKEY **ret, uint8_t ret_pub[SNAP_KEY_LEN], char *errbuf,
                    size_t errlen)
{
        _cleanup_fclose_ FILE *f = NULL;
        EVP_PKEY *pk;
        size_t publen = SNAP_KEY_LEN;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return op_errf(errbuf, errlen, -errno, "%s: %s", path, strerror(errno));
        f = fdopen(fd, "r");
        if (!f) {
                close(fd);
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        }
        pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_ED25519 ||
            EVP_PKEY_get_raw_public_key(pk, ret_pub, &publen) != 1 || publen != SNAP_KEY_LEN) {
                EVP_PKEY_free(pk);
                return op_errf(errbuf, errlen, -EINVAL,
                               "%s: not an Ed25519 private key (PEM; opctl snapshot keygen)", path);
        }
        *ret = pk;
        return 0;
}

int snap_key_public(const char *path, uint8_t ret[SNAP_KEY_LEN], char *errbuf, size_t errlen)
{
        __attribute__((cleanup(pkey_freep))) EVP_PKEY *pk = NULL;
        uint8_t pub[SNAP_KEY_LEN];
        int r;

        r = key_load(path, &pk, pub, errbuf, errlen);
        if (r < 0)
                return r;
        memcpy(ret, pub, SNAP_KEY_LEN);
        return 0;
}

int snap_sign(const char *path, const char *payload, size_t len, char **ret, char *errbuf,
              size_t errlen)
{
        __attribute__((cleanup(pkey_freep))) EVP_PKEY *pk = NULL;
        _cleanup_free_ unsigned char *msg = NULL;
        uint8_t pub[SNAP_KEY_LEN], sig[SNAP_SIG_LEN];
        size_t siglen = sizeof(sig), ctx = strlen(SNAP_SIGN_CONTEXT);
        EVP_MD_CTX *md;
        char *text;
        int r, ok;

        r = key_load(path, &pk, pub, errbuf, errlen);
        if (r < 0)
                return r;
        msg = malloc(ctx + len);
        if (!msg)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        memcpy(msg, SNAP_SIGN_CONTEXT, ctx);
        memcpy(msg + ctx, payload, len);
        md = EVP_MD_CTX_new();
        ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestSign(md, sig, &siglen, msg, ctx + len) == 1 && siglen == SNAP_SIG_LEN;
        EVP_MD_CTX_free(md);
        if (!ok)
                return op_errf(errbuf, errlen, -EIO, "%s: signing failed", path);
        text = snap_signed_text(payload, len, pub, sig);
        if (!text)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        *ret = text;
        return 0;
}
