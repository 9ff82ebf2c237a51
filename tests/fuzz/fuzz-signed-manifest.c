/* fuzz-signed-manifest.c: libFuzzer target for the signed chunk manifest (snap-sign.c: the
 * envelope, the key list) and the chunk manifest inside it (snap-chunks.c): both come from a
 * bucket. An envelope that parses writes back to one that parses the same; no signature made by
 * the fuzzer verifies against a pinned key it does not hold; a chunk manifest that parses has, for
 * every file, the chunk root its chunk list makes, and an expiry that holds until its second. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-check.h"
#include "snap-chunks.h"
#include "snap-sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* the public half of a key whose private half was thrown away when it was made */
        static const uint8_t pinned[1][SNAP_KEY_LEN] = {
            {0x81, 0xce, 0x39, 0x65, 0x88, 0xce, 0x10, 0xce, 0x9e, 0xf2, 0xe0,
             0x46, 0xa6, 0x04, 0xd0, 0x71, 0xeb, 0xc9, 0xf4, 0x9e, 0xd5, 0xe7,
             0x6c, 0x21, 0x53, 0x45, 0x57, 0x4d, 0x83, 0xf1, 0x65, 0xd1}};
        struct snap_signed s, back;
        struct s3_chunkman m;
        char err[512] = "";
        char *text;
        int r;

        r = snap_signed_parse((const char *)data, size, &s, err, sizeof(err));
        if (r < 0) {
                CHECK((r == -EINVAL || r == -EFBIG) && err[0]);
                return 0;
        }
        CHECK(s.payload && strlen(s.payload) == s.payload_len);
        if (s.is_signed) {
                r = snap_signed_verify(&s, pinned, 1, err, sizeof(err));
                CHECK(r == -ENOKEY || r == -EBADMSG);
                text = snap_signed_text(s.payload, s.payload_len, s.key, s.sig);
                CHECK(text);
                CHECK(snap_signed_parse(text, strlen(text), &back, err, sizeof(err)) == 0);
                CHECK(back.is_signed && back.payload_len == s.payload_len &&
                      memcmp(back.payload, s.payload, s.payload_len) == 0 &&
                      memcmp(back.key, s.key, SNAP_KEY_LEN) == 0 &&
                      memcmp(back.sig, s.sig, SNAP_SIG_LEN) == 0);
                snap_signed_free(&back);
                free(text);
        } else {
                CHECK(snap_signed_verify(&s, pinned, 1, err, sizeof(err)) == -EPERM);
        }
        if (s3_chunkman_parse(s.payload, s.payload_len, &m, err, sizeof(err)) == 0) {
                uint64_t total = 0;

                CHECK(m.chunk_size >= S3_CHUNK_SIZE_MIN && m.chunk_size <= S3_CHUNK_SIZE_MAX);
                for (size_t i = 0; i < m.snap.n_files; i++) {
                        CHECK(m.files[i].n_chunks ==
                              s3_chunk_count(m.snap.files[i].size, m.chunk_size));
                        total += m.files[i].n_chunks;
                        /* every file's root is the one its signed chunk list makes */
                        char root[SHA256_HEX_LEN + 1];
                        s3_chunkman_root(&m, i, root);
                        CHECK(strcmp(root, m.snap.files[i].root) == 0);
                }
                CHECK(m.snap.chunk_size == m.chunk_size);
                CHECK(total <= S3_CHUNKS_MAX);
                /* the expiry holds to its second and not after; none is refused only when
                 * required */
                if (m.expires) {
                        CHECK(s3_chunkman_check_expiry(&m, m.expires - 1, true, err, sizeof(err)) ==
                              0);
                        CHECK(s3_chunkman_check_expiry(&m, m.expires, false, err, sizeof(err)) ==
                              -EKEYEXPIRED);
                } else {
                        CHECK(s3_chunkman_check_expiry(&m, UINT64_MAX, false, err, sizeof(err)) ==
                              0);
                        CHECK(s3_chunkman_check_expiry(&m, 0, true, err, sizeof(err)) == -ENODATA);
                }
                s3_chunkman_free(&m);
        }
        snap_signed_free(&s);
        return 0;
}
