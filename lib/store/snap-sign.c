/* snap-sign.c: the signed chunk manifest envelope (parse, write: pure), pinned public keys and
 * the Ed25519 check of a signature against them. */
#include "snap-sign.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "snap-chunks.h"
#include "util.h"

void snap_signed_free(struct snap_signed *s)
{
        free(s->payload);
        *s = (struct snap_signed){0};
}

int snap_signed_parse(const char *text, size_t len, struct snap_signed *ret, char *errbuf,
                      size_t errlen)
{
        struct snap_signed s = {0};
        json_auto_t *o = NULL;
        json_t *fmt, *key, *sig, *man;
        int r;

        r = s3_chunkman_object(text, len, &o, errbuf, errlen);
        if (r < 0)
                return r;
        fmt = json_object_get(o, "format");
        if (!json_is_integer(fmt) || json_integer_value(fmt) != SNAP_SIGNED_FORMAT) {
                /* a bare chunk manifest: its own parser judges it */
                if (memchr(text, 0, len))
                        return op_errf(errbuf, errlen, -EINVAL, "chunk manifest: NUL byte");
                s.payload = malloc(len + 1);
                if (!s.payload)
                        return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
                memcpy(s.payload, text, len);
                s.payload[len] = 0;
                s.payload_len = len;
                *ret = s;
                return 0;
        }
        key = json_object_get(o, "key");
        sig = json_object_get(o, "signature");
        man = json_object_get(o, "manifest");
        if (json_object_size(o) != 4 || !json_is_string(key) || !json_is_string(sig) ||
            !json_is_string(man))
                return op_errf(errbuf, errlen, -EINVAL,
                               "signed manifest: expected exactly \"format\", \"key\", "
                               "\"signature\" and \"manifest\"");
        if (s3_key_parse(json_string_value(key), s.key) < 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "signed manifest: \"key\" is not ed25519: and 64 hex digits");
        if (s3_unhex(json_string_value(sig), s.sig, SNAP_SIG_LEN) < 0)
                return op_errf(errbuf, errlen, -EINVAL,
                               "signed manifest: \"signature\" is not 128 hex digits");
        s.payload_len = json_string_length(man);
        if (memchr(json_string_value(man), 0, s.payload_len))
                return op_errf(errbuf, errlen, -EINVAL, "signed manifest: NUL in \"manifest\"");
        s.payload = malloc(s.payload_len + 1);
        if (!s.payload)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        memcpy(s.payload, json_string_value(man), s.payload_len + 1);
        s.is_signed = true;
        *ret = s;
        return 0;
}

char *snap_signed_text(const char *payload, size_t len, const uint8_t key[SNAP_KEY_LEN],
                       const uint8_t sig[SNAP_SIG_LEN])
{
        char ktext[SNAP_KEY_TEXT_LEN + 1], stext[2 * SNAP_SIG_LEN + 1];
        json_auto_t *o = NULL;

        s3_key_text(key, ktext);
        s3_tohex(sig, SNAP_SIG_LEN, stext);
        o = json_pack("{s:i, s:s, s:s, s:s%}", "format", SNAP_SIGNED_FORMAT, "key", ktext,
                      "signature", stext, "manifest", payload, len);
        return o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
}

int snap_signed_verify(const struct snap_signed *s, const uint8_t (*trusted)[SNAP_KEY_LEN],
                       size_t n, char *errbuf, size_t errlen)
{
        char ktext[SNAP_KEY_TEXT_LEN + 1];
        _cleanup_free_ unsigned char *msg = NULL;
        size_t ctx = strlen(SNAP_SIGN_CONTEXT), i;
        EVP_PKEY *pk = NULL;
        EVP_MD_CTX *md = NULL;
        int ok = 0;

        if (!s->is_signed)
                return op_errf(errbuf, errlen, -EPERM,
                               "the version is not signed (s3.allow_unsigned is no)");
        s3_key_text(s->key, ktext);
        for (i = 0; i < n; i++)
                if (memcmp(trusted[i], s->key, SNAP_KEY_LEN) == 0)
                        break;
        if (i == n)
                return op_errf(errbuf, errlen, -ENOKEY,
                               "signed by %s, which is not in s3.trusted_keys", ktext);
        msg = malloc(ctx + s->payload_len);
        if (!msg)
                return op_errf(errbuf, errlen, -ENOMEM, "out of memory");
        memcpy(msg, SNAP_SIGN_CONTEXT, ctx);
        memcpy(msg + ctx, s->payload, s->payload_len);
        pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, s->key, SNAP_KEY_LEN);
        md = EVP_MD_CTX_new();
        if (pk && md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1)
                ok = EVP_DigestVerify(md, s->sig, SNAP_SIG_LEN, msg, ctx + s->payload_len) == 1;
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pk);
        if (!ok)
                return op_errf(errbuf, errlen, -EBADMSG,
                               "bad signature: the manifest is not what %s signed", ktext);
        return 0;
}
