"""Which versions a host refuses before it stages a byte, against a real S3-compatible server
(s3rver) on loopback: a version signed by a key the host does not pin, a signed manifest changed
in the bucket, an older signed version replayed as `current`, an http:// endpoint that is not
loopback, a version larger than the cache's free space, a manifest asking for 1 TiB of memory, a
signed manifest whose chunk root is not the one its chunks make, a bucket whose `current` is gone. Each is refused with its own error and counter, and the serving version stays current.
A manifest of an older publisher, without chunk roots, is read. A push takes up the bucket's
serial only from a manifest a trusted key signed, and none past 2^53. Snapshots are synthetic (pools
off, no VM boots)."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from opdtest import OPD, Opd
from s3test import KEY_ID, SECRET, S3rver, make_snapshot, opctl_s3, signing_key, write_config
from test_s3 import mem_image

AWS_ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
V1, V2 = "20261127T000001Z-111111", "20261127T000002Z-222222"


class S3Trust(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3rver()
        cls.tmp = tempfile.mkdtemp(prefix="opd-s3-trust-")
        cls.key, cls.pub = signing_key(cls.tmp)
        cls.other_key, cls.other_pub = signing_key(cls.tmp, "other.pem")

    @classmethod
    def tearDownClass(cls):
        cls.s3.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.prefix = self.id().rsplit(".", 1)[1] + "/"
        self.src = os.path.join(self.tmp, self.prefix, "src-cache")
        os.makedirs(self.src)

    def s3_keys(self, **more):
        keys = {"s3.bucket": self.s3.bucket, "s3.endpoint": self.s3.endpoint,
                "s3.path_style": "yes", "s3.prefix": self.prefix, "s3.sync_minutes": "0",
                "s3.trusted_keys": self.pub}
        keys.update(more)
        return keys

    def push(self, key=None, serial=None, valid_for=None):
        conf = write_config(os.path.join(self.tmp, self.prefix, "push.conf"), cache_dir=self.src,
                            **{k.replace(".", "__"): v for k, v in self.s3_keys().items()})
        args = ["--json", "snapshot", "push", "--lang", "python", "--sign-key", key or self.key]
        if serial:
            args += ["--serial", str(serial)]
        if valid_for:
            args += ["--valid-for", valid_for]
        p = opctl_s3(args, conf)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def opd(self, **keys):
        return Opd({"pool.size": "0", **self.s3_keys(**keys)}, env=AWS_ENV)

    def sync(self, opd):
        a = opd.call({"op": "snapshot", "action": "sync", "id": "sync"}, timeout=600)
        self.assertTrue(a["ok"], a)
        return a["languages"]["python"]

    def refused(self, opd, cache, why, text):
        """The sync of V2 fails with text in its error, counted under why; V1 stays current and
        nothing of V2 is left in the cache."""
        r = self.sync(opd)
        self.assertFalse(r["ok"], r)
        self.assertIn(text, r["error"])
        py = os.path.join(cache, "python")
        self.assertEqual(os.readlink(os.path.join(py, "current")), V1)
        self.assertEqual([n for n in os.listdir(py) if V2 in n], [], os.listdir(py))
        m = opd.call({"op": "metrics", "id": 1})["text"]
        n = re.search(r'opd_s3_versions_refused_total\{why="%s"\} (\d+)' % why, m)
        self.assertTrue(n and int(n.group(1)) >= 1, m)
        return r

    def serving_v1(self, **keys):
        make_snapshot(self.src, "python", V1, mem_image("t1", n_chunks=2))
        self.push()
        opd = self.opd(**keys)
        r = self.sync(opd)
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["version"], V1)
        return opd

    def v2_refused(self, why, text, mem=None, key=None, manifest=None, envelope=None, **keys):
        """V1 served by an opd with the config keys keys (cache_dir among them), then V2 pushed
        and refused at the next sync (see refused); returns the sync's answer. mem: V2's memory
        image; key: the signing key of the push; manifest: a change to V2's manifest before the
        push (the manifest's JSON to the one pushed); envelope: a change to the pushed version
        object in the bucket (its JSON to the text stored instead)."""
        opd = self.serving_v1(**keys)
        try:
            d = make_snapshot(self.src, "python", V2, mem or mem_image("t2", n_chunks=2))
            if manifest:
                with open(os.path.join(d, "manifest.json")) as f:
                    m = manifest(json.load(f))
                with open(os.path.join(d, "manifest.json"), "w") as f:
                    json.dump(m, f)
            self.push(key=key)
            if envelope:
                path = self.s3.object_path(f"{self.prefix}python/versions/{V2}.json")
                with open(path) as f:
                    stored = envelope(json.load(f))
                with open(path, "w") as f:
                    f.write(stored)
            return self.refused(opd, keys.get("cache_dir", os.path.join(opd.dir, "cache")), why,
                                text)
        finally:
            opd.stop()

    def test_unknown_key_refused(self):
        r = self.v2_refused("unknown_key", "not in s3.trusted_keys", key=self.other_key)
        self.assertIn(self.other_pub, r["error"])

    def test_rotation_two_pinned_keys(self):
        opd = self.serving_v1(**{"s3.trusted_keys": f"{self.pub} {self.other_pub}"})
        try:
            make_snapshot(self.src, "python", V2, mem_image("t2", n_chunks=2))
            self.push(key=self.other_key)
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["version"], V2)
        finally:
            opd.stop()

    def test_tampered_manifest_refused(self):
        self.v2_refused("bad_signature", "bad signature", envelope=lambda env: json.dumps(
            {**env, "manifest": env["manifest"].replace('"memory_mb":64', '"memory_mb":65')}))

    def test_unsigned_refused(self):
        # the same manifest, its signature stripped
        self.v2_refused("unsigned", "not signed", envelope=lambda env: env["manifest"])

    def test_replayed_older_version_refused(self):
        make_snapshot(self.src, "python", V1, mem_image("t1", n_chunks=2))
        self.push(serial=100)
        make_snapshot(self.src, "python", V2, mem_image("t2", n_chunks=2))
        self.push(serial=101)
        opd = self.opd()
        try:
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["version"], V2)
            cache = os.path.join(opd.dir, "cache", "python")
            # whoever can write the bucket points current back at the older signed version,
            # which this host still holds: not served
            with open(self.s3.object_path(f"{self.prefix}python/current"), "w") as f:
                f.write(V1 + "\n")
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            self.assertIn("serial 100", r["error"])
            self.assertIn("serial 101", r["error"])
            self.assertEqual(os.readlink(os.path.join(cache, "current")), V2)
            m = opd.call({"op": "metrics", "id": 1})["text"]
            self.assertRegex(m, r'opd_s3_versions_refused_total\{why="rollback"\} [1-9]')
            # the highest serial outlives a restart
            opd.stop()
            opd = self.opd(cache_dir=os.path.join(opd.dir, "cache"))
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            self.assertIn("replayed", r["error"])
            self.assertEqual(os.readlink(os.path.join(cache, "current")), V2)
        finally:
            opd.stop()

    def test_missing_current_fails_the_location(self):
        # whoever can write the bucket deletes python/current of a language this host has
        # installed a signed version of: with unsigned versions not allowed, that is a failure
        # (logged, counted, in the answer), not "nothing to do"
        opd = self.serving_v1()
        try:
            path = self.s3.object_path(f"{self.prefix}python/current")
            stored = glob.glob(path[:-len("_S3rver_object")] + "*")
            self.assertIn(path, stored)
            for p in stored:
                os.remove(p)
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            self.assertIn("python/current: not found", r["error"])
            self.assertIn("s3.allow_unsigned is no", r["error"])
            cache = os.path.join(opd.dir, "cache", "python")
            self.assertEqual(os.readlink(os.path.join(cache, "current")), V1)
            m = opd.call({"op": "metrics", "id": 1})["text"]
            self.assertRegex(m, r"opd_s3_sync_failures_total [1-9]")
        finally:
            opd.stop()

    def test_push_serial_from_trusted_manifests_only(self):
        """A push goes on from the serial of the bucket's manifest only when a key hosts trust
        signed it, and never past 2^53."""
        make_snapshot(self.src, "python", V1, mem_image("t1", n_chunks=2))
        self.push(serial=100)
        opd = self.opd()
        try:
            self.assertEqual(self.sync(opd)["version"], V1)
            # whoever can write the bucket puts a serial near the top in the manifest current
            # names, stripped of its signature: the next push does not take it up
            path = self.s3.object_path(f"{self.prefix}python/versions/{V1}.json")
            with open(path) as f:
                man = json.loads(json.load(f)["manifest"])
            man["serial"] = 2**53 - 1
            with open(path, "w") as f:
                json.dump(man, f)
            make_snapshot(self.src, "python", V2, mem_image("t2", n_chunks=2))
            before = int(time.time())
            serial = self.push()["serial"]
            self.assertTrue(before <= serial <= int(time.time()), serial)
            # nor from a manifest signed by a key no host trusts
            self.assertEqual(self.push(key=self.other_key, serial=2**53 - 1)["serial"], 2**53 - 1)
            before = int(time.time())
            serial = self.push()["serial"]
            self.assertTrue(before <= serial <= int(time.time()), serial)
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["version"], V2)
            # a trusted manifest at 2^53 has no successor: the push says so and writes nothing
            self.assertEqual(self.push(serial=2**53)["serial"], 2**53)
            conf = os.path.join(self.tmp, self.prefix, "push.conf")
            p = opctl_s3(["snapshot", "push", "--lang", "python", "--sign-key", self.key], conf)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(f"{self.prefix}python/versions/{V2}.json, signed by a trusted key, has "
                          f"serial {2**53}", p.stderr)
            self.assertIn("no push can follow it", p.stderr)
            with open(path.replace(V1, V2)) as f:
                self.assertEqual(json.loads(json.load(f)["manifest"])["serial"], 2**53)
            p = opctl_s3(["snapshot", "push", "--lang", "python", "--sign-key", self.key,
                          "--serial", str(2**53 + 1)], conf)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("--serial wants a whole number from 1 to 9007199254740992", p.stderr)
        finally:
            opd.stop()

    def test_http_endpoint_not_loopback_refused(self):
        conf = write_config(os.path.join(self.tmp, self.prefix, "opd.conf"),
                            cache_dir=os.path.join(self.tmp, self.prefix, "cache"),
                            s3__bucket=self.s3.bucket, s3__endpoint="http://192.0.2.1:9000")
        p = subprocess.run([OPD, "--config", conf, "--check-config"], capture_output=True,
                           text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("http:// only to a loopback address", p.stdout + p.stderr)
        push = write_config(os.path.join(self.tmp, self.prefix, "push.conf"), cache_dir=self.src,
                            s3__bucket=self.s3.bucket, s3__endpoint="http://192.0.2.1:9000")
        p = opctl_s3(["snapshot", "push", "--lang", "python", "--sign-key", self.key], push,
                     timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("use https://", p.stderr)
        # a running opd keeps its configuration when a reload names such an endpoint
        opd = self.serving_v1()
        try:
            with open(opd.config_path, "a") as f:
                f.write("s3.endpoint = http://192.0.2.1:9000\n")
            a = opd.call({"op": "reload", "id": "r"})
            self.assertFalse(a["ok"], a)
            self.assertIn("loopback", json.dumps(a))
            self.assertEqual(os.readlink(os.path.join(opd.dir, "cache", "python", "current")), V1)
        finally:
            opd.stop()

    def test_larger_than_free_space_refused(self):
        mnt = os.path.join(self.tmp, self.prefix, "small-cache")
        os.makedirs(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt]).returncode:
            self.fail("cannot mount a tmpfs (this test runs as root)")
        try:
            # 3 x 4 MiB used of 24: 16 MiB of new chunks and 4 reserved do not fit
            r = self.v2_refused("bounds", "not enough space",
                                mem=mem_image("t2", n_chunks=4, zero_chunks=()), cache_dir=mnt,
                                **{"s3.reserve_mb": "4"})
            self.assertIn("s3.reserve_mb = 4", r["error"])
        finally:
            subprocess.run(["umount", "-l", mnt])

    def test_cache_max_refused(self):
        self.v2_refused("bounds", "s3.cache_max_mb = 12",
                        mem=mem_image("t2", n_chunks=2, zero_chunks=()),
                        **{"s3.cache_max_mb": "12"})

    def test_terabyte_memory_refused(self):
        # signed by the trusted key: the bound holds all the same
        r = self.v2_refused("bounds", "1048576 MiB",
                            manifest=lambda m: {**m, "memory_mb": 1 << 20})
        self.assertIn("memory_mb", r["error"])

    def resign(self, path, change):
        """The version's manifest in the bucket changed by change(dict) and signed again by the
        trusted key, as a publisher would have signed it (openssl, not opctl)."""
        with open(path) as f:
            env = json.load(f)
        man = json.loads(env["manifest"])
        change(man)
        text = json.dumps(man, separators=(",", ":"), sort_keys=True)
        msg = os.path.join(self.tmp, self.prefix, "to-sign")
        with open(msg, "wb") as f:
            f.write(b"opd snapshot manifest v1\n" + text.encode())
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", self.key, "-rawin", "-in",
                              msg], capture_output=True, check=True).stdout
        self.assertEqual(len(sig), 64)
        env["manifest"], env["signature"] = text, sig.hex()
        with open(path, "w") as f:
            json.dump(env, f)

    def expire(self, version):
        """The version's signed manifest in the bucket as its publisher signed it, but with an
        expiry a minute ago: what a bucket frozen on it serves once that time has passed."""
        self.resign(self.s3.object_path(f"{self.prefix}python/versions/{version}.json"),
                    lambda m: m.update(expires=int(time.time()) - 60))

    def refused_count(self, opd, why):
        m = opd.call({"op": "metrics", "id": 1})["text"]
        n = re.search(r'opd_s3_versions_refused_total\{why="%s"\} (\d+)' % why, m)
        self.assertTrue(n, m)
        return int(n.group(1))

    def expiry_gauge(self, opd):
        m = opd.call({"op": "metrics", "id": 1})["text"]
        n = re.search(r'opd_s3_signature_expires_timestamp_seconds\{lang="python"\} (\d+)', m)
        return int(n.group(1)) if n else None

    def test_expired_signature_refused(self):
        make_snapshot(self.src, "python", V1, mem_image("t1", n_chunks=2))
        pushed = self.push(valid_for="1h")
        now = time.time()
        self.assertTrue(now + 3000 < pushed["expires"] <= now + 3600, pushed)
        opd = self.opd()
        try:
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["expires"], pushed["expires"])
            self.assertEqual(self.expiry_gauge(opd), pushed["expires"])
            cache = os.path.join(opd.dir, "cache", "python")
            # the bucket keeps offering V1 past the time its publisher signed it for: refused,
            # counted, and V1, already here, stays current
            self.expire(V1)
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            self.assertIn(f"version {V1} refused: its signature expired at", r["error"])
            self.assertEqual(os.readlink(os.path.join(cache, "current")), V1)
            self.assertGreaterEqual(self.refused_count(opd, "expired"), 1)
            # the publisher signs it again: accepted, with the new expiry
            pushed = self.push(valid_for="2h")
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual((r["version"], r["expires"]), (V1, pushed["expires"]))
            self.assertEqual(self.expiry_gauge(opd), pushed["expires"])
            # a newer version whose signature has expired: nothing of it is staged
            make_snapshot(self.src, "python", V2, mem_image("t2", n_chunks=2))
            self.push(valid_for="1h")
            self.expire(V2)
            self.refused(opd, os.path.join(opd.dir, "cache"), "expired", "expired at")
        finally:
            opd.stop()

    def test_fresh_host_requires_expiry(self):
        make_snapshot(self.src, "python", V1, mem_image("t1", n_chunks=2))
        self.push()
        opd = self.opd(**{"s3.require_expiry": "yes"})
        try:
            current = os.path.join(opd.dir, "cache", "python", "current")
            # signed, but its signature never expires: a host that requires expiry takes it from
            # no bucket, so an old signed version cannot be replayed to it forever
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            self.assertIn("has no expiry and s3.require_expiry is yes", r["error"])
            self.assertFalse(os.path.lexists(current))
            self.assertGreaterEqual(self.refused_count(opd, "no_expiry"), 1)
            # signed with an expiry that has passed: refused on a fresh host too
            self.push(valid_for="1h")
            self.expire(V1)
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            self.assertIn("expired at", r["error"])
            self.assertFalse(os.path.lexists(current))
            # signed again, valid for an hour: served
            self.push(valid_for="1h")
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(os.readlink(current), V1)
            self.assertEqual(self.expiry_gauge(opd), r["expires"])
        finally:
            opd.stop()

    def test_chunk_roots(self):
        opd = self.serving_v1()
        try:
            make_snapshot(self.src, "python", V2, mem_image("t2", n_chunks=2))
            self.push()
            path = self.s3.object_path(f"{self.prefix}python/versions/{V2}.json")
            with open(path) as f:
                pushed = json.loads(json.load(f)["manifest"])
            self.assertEqual(pushed["snapshot"]["chunk_size"], pushed["chunk_size"])
            roots = {f["name"]: f["root"] for f in pushed["snapshot"]["files"]}

            def bad_root(m):
                m["snapshot"]["files"][0]["root"] = "0" * 64

            # signed by the trusted key, but the root is not what its chunks make
            self.resign(path, bad_root)
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            self.assertIn("the root of", r["error"])
            py = os.path.join(opd.dir, "cache", "python")
            self.assertEqual(os.readlink(os.path.join(py, "current")), V1)

            def older(m):
                del m["snapshot"]["chunk_size"]
                for f in m["snapshot"]["files"]:
                    del f["root"]

            # an older publisher's manifest: no roots; read, the roots made from its chunks
            self.resign(path, older)
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["version"], V2)
            with open(os.path.join(py, V2, "manifest.json")) as f:
                installed = json.load(f)
            self.assertEqual({f["name"]: f["root"] for f in installed["files"]}, roots)
            v = opd.call({"op": "snapshot", "action": "verify", "id": "v"}, timeout=300)
            self.assertTrue(v["verified"], v)
        finally:
            opd.stop()


if __name__ == "__main__":
    unittest.main()
