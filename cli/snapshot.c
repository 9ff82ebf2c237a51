/* snapshot.c: opctl snapshot: create, list, reload, verify and sync through opd; push and
 * list --remote as opctl's own S3 client, with opd's configuration; keygen for signing. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "call.h"
#include "cleanup.h"
#include "msg.h"
#include "opctl.h"
#include "s3-config.h"
#include "s3-publish.h"
#include "snap-keys.h"
#include "util.h"

/* snapshot create|list|reload [--lang L]: administrators only (opd checks). */
int cmd_snapshot(const struct opts *o, const char *action)
{
        _cleanup_(json_decrefp) json_t *req = NULL, *answer = NULL;
        const char *key;
        size_t i;
        json_t *v, *ver;
        int r;

        if (strcmp(action, "create") == 0 && !o->lang)
                return fail("snapshot create needs --lang");
        req = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)getpid(), "op", "snapshot", "action",
                        action);
        if (!req || (o->lang && json_object_set_new(req, "lang", json_string(o->lang)) < 0))
                return fail("out of memory");
        /* Making a snapshot boots a VM and warms its runtime: minutes under emulation. */
        r = call(o, req, 15 * 60 * 1000, &answer);
        if (r >= 0)
                return r;
        if (strcmp(action, "create") == 0) {
                printf("%s: snapshot %s installed%s (", o->lang,
                       json_string_value(json_object_get(answer, "version")),
                       json_is_true(json_object_get(answer, "warm")) ? ", runtime warm" : "");
                print_members(json_object_get(answer, "sizes"));
                printf(" bytes)\n");
        } else if (strcmp(action, "list") == 0) {
                json_object_foreach (json_object_get(answer, "languages"), key, v) {
                        const char *serving = json_string_value(json_object_get(v, "serving"));
                        printf("%s (serving: %s)\n", key, serving ? serving : "none");
                        json_array_foreach (json_object_get(v, "versions"), i, ver) {
                                printf("  %s%s  ",
                                       json_string_value(json_object_get(ver, "version")),
                                       json_is_true(json_object_get(ver, "current")) ? " *" : "  ");
                                print_members(ver);
                                printf("\n");
                        }
                }
        } else if (strcmp(action, "sync") == 0 || strcmp(action, "verify") == 0) {
                bool all = true;

                json_object_foreach (json_object_get(answer, "languages"), key, v) {
                        const char *err = json_string_value(json_object_get(v, "error"));
                        printf("%s: ", key);
                        if (err) {
                                all = false;
                                printf("FAILED: %s\n", err);
                                continue;
                        }
                        print_members(v);
                        printf("\n");
                }
                return all ? 0 : EXIT_FAIL;
        } else
                printf("ok\n");
        return 0;
}

/* snapshot keygen --out FILE: a new Ed25519 signing key (mode 0600, never over a file); the
 * public key goes to stdout, as s3.trusted_keys wants it. */
int cmd_keygen(const struct opts *o)
{
        char pub[S3_KEY_TEXT_LEN + 1], err[512];

        if (!o->out)
                return fail("snapshot keygen needs --out FILE (the private key, written 0600)");
        if (snap_keygen(o->out, pub, err, sizeof(err)) < 0)
                return fail("keygen: %s", err);
        printf("%s\n", pub);
        return 0;
}

/* snapshot push --plain: the current version as whole files, multipart from the threshold. */
static int push_plain(const struct opts *o, const struct op_config *cfg, struct s3_client *client,
                      const struct s3_location *l)
{
        struct s3_put_opts po = {
            .threshold = o->threshold_mib ? o->threshold_mib << 20 : S3_MULTIPART_THRESHOLD_DEFAULT,
            .part_size = o->part_mib ? o->part_mib << 20 : S3_PART_SIZE_DEFAULT,
            .parallel = cfg->s3_parallel};
        struct s3_put_stats st = {0};
        uint64_t t0 = op_now_us();
        char err[1024];
        int r = s3_push_plain(client, l, cfg->s3_prefix, cfg->cache_dir, o->lang, NULL, &po, &st,
                              err, sizeof(err));

        if (r < 0)
                return fail("push --plain to s3://%s (%s): %s", l->bucket, l->region, err);
        if (o->json)
                printf("{\"bucket\":\"%s\",\"layout\":\"plain\",\"objects\":%u,"
                       "\"multipart\":%u,\"parts\":%u,\"bytes_uploaded\":%" PRIu64 "}\n",
                       l->bucket, st.objects, st.multipart, st.parts, st.bytes);
        else
                printf("%s: pushed to s3://%s/%s (plain layout): %u files, %u of them in %u "
                       "parts, %" PRIu64 " bytes, in %.1f s\n",
                       o->lang, l->bucket, cfg->s3_prefix, st.objects, st.multipart, st.parts,
                       st.bytes, (double)(op_now_us() - t0) / 1e6);
        return 0;
}

/* snapshot push / list --remote: opctl is the S3 client here, with opd's configuration. */
int cmd_s3(const struct opts *o, const char *action)
{
        struct op_config cfg;
        struct s3_location locs[S3_LOCATIONS_MAX];
        struct s3_creds creds = {0};
        struct s3_client_opts copts = S3_CLIENT_OPTS_DEFAULT;
        struct s3_client *client = NULL;
        struct event_base *base = NULL;
        const char *config = o->config;
        uint8_t trusted[S3_TRUSTED_MAX][S3_KEY_LEN];
        size_t n = 0, n_trusted = 0;
        char err[768];
        int r, status = EXIT_FAIL;

        if (op_config_init(&cfg) < 0)
                return fail("out of memory");
        if (!config && access("/etc/opd/opd.conf", R_OK) == 0)
                config = "/etc/opd/opd.conf";
        r = config ? op_config_load(&cfg, config, err, sizeof(err)) : 0;
        for (size_t i = 0; r >= 0 && i < o->n_s3_keys; i++)
                r = op_config_set(&cfg, o->s3_keys[i][0], o->s3_keys[i][1], err, sizeof(err));
        if (r >= 0)
                r = op_config_check(&cfg, err, sizeof(err));
        if (r >= 0)
                r = s3_config_locations(&cfg, locs, &n, err, sizeof(err));
        if (r >= 0 && n == 0)
                r = op_errf(err, sizeof(err), -EINVAL, "no S3 bucket (s3.bucket, --s3-bucket)");
        if (r >= 0)
                r = s3_keys_parse(cfg.s3_trusted_keys, trusted, &n_trusted, err, sizeof(err));
        if (r >= 0)
                r = s3_creds_load(getenv, &creds, err, sizeof(err));
        copts.retries = cfg.s3_retries;
        copts.min_rate = cfg.s3_min_rate_kib << 10;
        if (r >= 0 && !(base = event_base_new()))
                r = op_errf(err, sizeof(err), -ENOMEM, "out of memory");
        if (r >= 0 && (r = s3_client_new(base, &creds, &copts, &client)) < 0)
                op_errf(err, sizeof(err), r, "cannot start the S3 client");
        if (r < 0) {
                fail("%s", err);
                goto out;
        }
        status = 0;
        for (size_t i = 0; i < n; i++) {
                const struct s3_location *l = &locs[i];

                if (strcmp(action, "push") == 0 && o->plain) {
                        if (push_plain(o, &cfg, client, l) != 0)
                                status = EXIT_FAIL;
                } else if (strcmp(action, "push") == 0) {
                        struct s3_push_stats st;
                        uint64_t t0 = op_now_us();

                        struct s3_push_sign sign = {.key = o->sign_key,
                                                    .serial = o->serial,
                                                    .valid_for = o->valid_for,
                                                    .trusted =
                                                        (const uint8_t(*)[S3_KEY_LEN])trusted,
                                                    .n_trusted = n_trusted};

                        r = s3_push(client, l, cfg.s3_prefix, cfg.cache_dir, o->lang, NULL,
                                    cfg.s3_parallel, &sign, &st, err, sizeof(err));
                        if (r < 0) {
                                status =
                                    fail("push to s3://%s (%s): %s", l->bucket, l->region, err);
                                continue;
                        }
                        if (o->json)
                                printf("{\"bucket\":\"%s\",\"chunks\":%u,\"uploaded\":%u,"
                                       "\"zero\":%u,\"bytes_uploaded\":%" PRIu64
                                       ",\"serial\":%" PRIu64 ",\"expires\":%" PRIu64 "}\n",
                                       l->bucket, st.chunks, st.uploaded, st.zero,
                                       st.bytes_uploaded, st.serial, st.expires);
                        else
                                printf("%s: pushed to s3://%s/%s: %u chunks, %u uploaded (%" PRIu64
                                       " bytes), %u of zeros, in %.1f s\n",
                                       o->lang, l->bucket, cfg.s3_prefix, st.chunks, st.uploaded,
                                       st.bytes_uploaded, st.zero,
                                       (double)(op_now_us() - t0) / 1e6);
                        if (!o->json && st.expires) {
                                char when[32];

                                op_format_utc(st.expires, when, sizeof(when));
                                printf("%s: signed, serial %" PRIu64 ", valid until %s\n", o->lang,
                                       st.serial, when);
                        } else if (!o->json && st.serial) {
                                printf("%s: signed, serial %" PRIu64 ", no expiry\n", o->lang,
                                       st.serial);
                        }
                } else {
                        _cleanup_(json_decrefp) json_t *list = NULL;
                        _cleanup_free_ char *text = NULL;

                        r = s3_remote_list(client, l, cfg.s3_prefix, &list, err, sizeof(err));
                        if (r < 0) {
                                status = fail("list s3://%s (%s): %s", l->bucket, l->region, err);
                                continue;
                        }
                        text = json_dumps(list, JSON_SORT_KEYS | JSON_COMPACT);
                        if (o->json) {
                                printf("%s\n", text ? text : "{}");
                        } else {
                                const char *key;
                                json_t *v, *ver;
                                size_t k;

                                printf("s3://%s/%s (%s)\n", l->bucket, cfg.s3_prefix, l->region);
                                json_object_foreach (list, key, v) {
                                        const char *cur =
                                            json_string_value(json_object_get(v, "current"));
                                        printf("%s (current: %s)\n", key, cur ? cur : "none");
                                        json_array_foreach (json_object_get(v, "versions"), k, ver)
                                                printf("  %s%s\n", json_string_value(ver),
                                                       cur && !strcmp(cur, json_string_value(ver))
                                                           ? " *"
                                                           : "");
                                }
                        }
                        break; /* the first location that answers */
                }
        }
out:
        s3_client_free(client);
        if (base)
                event_base_free(base);
        s3_creds_free(&creds);
        s3_locations_free(locs, n);
        op_config_free(&cfg);
        return status;
}
