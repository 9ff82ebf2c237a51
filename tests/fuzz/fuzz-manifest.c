/* fuzz-manifest.c: libFuzzer target for the snapshot manifest parser (manifests come from the
 * cache and from S3: untrusted). A manifest that parses names only plain files, within the
 * bounds (a chunk root for every file or none), and writes back to JSON that parses to the same
 * manifest; the install record written for it matches it and nothing else. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-check.h"
#include "snapshot.h"

static void check_names(const struct snap_manifest *m)
{
        CHECK(snap_name_valid(m->version) && snap_name_valid(m->lang) && snap_name_valid(m->vmm) &&
              snap_name_valid(m->accel));
        CHECK(m->n_files >= 1 && m->n_files <= SNAP_FILES_MAX);
        for (size_t i = 0; i < m->n_files; i++) {
                CHECK(snap_name_valid(m->files[i].name));
                CHECK(!strchr(m->files[i].name, '/') && m->files[i].name[0] != '.');
                CHECK(m->files[i].size <= SNAP_FILE_SIZE_MAX);
                CHECK(strlen(m->files[i].sha256) == SHA256_HEX_LEN);
                CHECK(strlen(m->files[i].root) == (m->chunk_size ? SHA256_HEX_LEN : 0));
                CHECK(snap_manifest_file(m, m->files[i].name) == &m->files[i]);
        }
}

static bool same(const struct snap_manifest *a, const struct snap_manifest *b)
{
        if (strcmp(a->version, b->version) || strcmp(a->lang, b->lang) ||
            strcmp(a->created, b->created) || strcmp(a->agent_version, b->agent_version) ||
            strcmp(a->vmm, b->vmm) || strcmp(a->vmm_version, b->vmm_version) ||
            strcmp(a->accel, b->accel) || strcmp(a->lang_version, b->lang_version) ||
            a->memory_mb != b->memory_mb || a->vcpus != b->vcpus || a->warm != b->warm ||
            a->n_files != b->n_files || a->chunk_size != b->chunk_size)
                return false;
        for (size_t i = 0; i < a->n_files; i++)
                if (strcmp(a->files[i].name, b->files[i].name) ||
                    a->files[i].size != b->files[i].size ||
                    strcmp(a->files[i].sha256, b->files[i].sha256) ||
                    strcmp(a->files[i].root, b->files[i].root))
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct snap_manifest m, back;
        char err[256] = "";
        json_t *o;
        char *text;
        int r;

        r = snap_manifest_parse((const char *)data, size, &m, err, sizeof(err));
        if (r < 0) {
                CHECK((r == -EINVAL || r == -EFBIG) && err[0]);
                return 0;
        }
        CHECK(size <= SNAP_MANIFEST_MAX);
        check_names(&m);
        o = snap_manifest_json(&m);
        CHECK(o);
        text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(o);
        CHECK(text);
        CHECK(snap_manifest_parse(text, strlen(text), &back, err, sizeof(err)) == 0);
        CHECK(same(&m, &back));
        free(text);
        /* the install record: only the text written for these files matches */
        {
                struct snap_file_id ids[SNAP_FILES_MAX] = {{0}};
                char *rec = snap_verified_text(&m, ids);

                CHECK(rec && snap_verified_match(rec, strlen(rec), &m, ids));
                CHECK(!snap_verified_match((const char *)data, size, &m, ids) ||
                      (size == strlen(rec) && memcmp(rec, data, size) == 0));
                free(rec);
        }
        return 0;
}
