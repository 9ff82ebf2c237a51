"""Snapshot distribution through S3 against a real S3-compatible server (s3rver) on loopback:
push, sync into an empty cache, delta versions, corruption, interrupted downloads, 500s,
signatures checked by botocore, wrong credentials, several locations, a location trickling its
chunks (each transfer ends at its deadline, the next location serves), and the plain layout
the AWS CLI uploads. Snapshots here are synthetic (pools off, no VM boots); test_s3_warm.py
serves a real one."""
import filecmp
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from opdtest import IMAGES, Opd
from s3test import (KEY_ID, SECRET, Proxy, S3rver, make_snapshot, opctl_s3, signing_key,
                    write_config)

CHUNK = 4 << 20
AWS_ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}


def mem_image(seed, n_chunks=6, zero_chunks=(4,)):
    """n_chunks of 4 MiB, distinct per chunk, some of zeros, plus a short tail."""
    out = bytearray()
    for i in range(n_chunks):
        if i in zero_chunks:
            out += bytes(CHUNK)
        else:
            block = hashlib.sha256(f"{seed}-{i}".encode()).digest()
            out += block * (CHUNK // len(block))
    out += b"tail" * 1000
    return bytes(out)


def change_chunk(mem, i, tag):
    block = hashlib.sha256(tag.encode()).digest() * (CHUNK // 32)
    return mem[:i * CHUNK] + block + mem[(i + 1) * CHUNK:]


class S3Sync(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3rver()
        cls.proxy = Proxy(cls.s3.port)
        cls.tmp = tempfile.mkdtemp(prefix="opd-s3-test-")
        cls.key, cls.pub = signing_key(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()
        cls.s3.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.proxy.fail_next = 0
        self.proxy.drop_chunks_after = None
        self.proxy.trickle_chunks = None
        self.proxy.check = None
        self.proxy.reset_counts()
        self.prefix = self.id().rsplit(".", 1)[1] + "/"
        self.src = os.path.join(self.tmp, self.prefix, "src-cache")
        os.makedirs(self.src)

    def s3_keys(self, endpoint=None, **more):
        keys = {"s3.bucket": self.s3.bucket, "s3.endpoint": endpoint or self.s3.endpoint,
                "s3.path_style": "yes", "s3.prefix": self.prefix, "s3.sync_minutes": "0",
                "s3.trusted_keys": self.pub}
        keys.update(more)
        return keys

    def push(self, lang="python", env=None, endpoint=None):
        conf = write_config(os.path.join(self.tmp, self.prefix, "push.conf"),
                            cache_dir=self.src, **{k.replace(".", "__"): v for k, v in
                                                   self.s3_keys(endpoint).items()})
        p = opctl_s3(["--json", "snapshot", "push", "--lang", lang, "--sign-key", self.key], conf,
                     env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def opd(self, env=None, **keys):
        return Opd({"pool.size": "0", **self.s3_keys(**keys)}, env={**AWS_ENV, **(env or {})})

    def sync(self, opd):
        a = opd.call({"op": "snapshot", "action": "sync", "id": "sync"}, timeout=600)
        self.assertTrue(a["ok"], a)
        return a["languages"]["python"]

    def assert_same(self, opd, version):
        a = os.path.join(opd.dir, "cache", "python", version)
        b = os.path.join(self.src, "python", version)
        self.assertEqual(os.readlink(os.path.join(opd.dir, "cache", "python", "current")), version)
        for name in ("mem", "vmstate"):
            self.assertTrue(filecmp.cmp(os.path.join(a, name), os.path.join(b, name), False), name)

    def test_push_then_sync_clean_cache_then_delta(self):
        mem1 = mem_image("v1")
        make_snapshot(self.src, "python", "20261127T000001Z-aaaaaa", mem1)
        st = self.push()
        # 5 distinct data chunks + the tail chunk + vmstate; the zero chunk is not stored
        self.assertEqual((st["chunks"], st["uploaded"], st["zero"]), (7, 7, 1))
        self.assertEqual(self.push()["uploaded"], 0)  # already there: nothing travels
        opd = self.opd()
        try:
            r = self.sync(opd)  # opd's start-up sync may have done it already
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["version"], "20261127T000001Z-aaaaaa")
            self.assert_same(opd, "20261127T000001Z-aaaaaa")
            self.assertIn("s3 sync python: installed 20261127T000001Z-aaaaaa", opd.read_log())
            # a second version changes one chunk of 4 MiB: one chunk up, one chunk down
            make_snapshot(self.src, "python", "20261127T000002Z-bbbbbb", change_chunk(mem1, 2, "x"))
            st = self.push()
            self.assertEqual(st["uploaded"], 2)  # the changed chunk and the new vmstate
            self.proxy.reset_counts()
            r = self.sync(opd)
            self.assertTrue(r["installed"], r)
            self.assertEqual(r["version"], "20261127T000002Z-bbbbbb")
            self.assertEqual(r["fetched"], 2, r)
            self.assertEqual(r["copied"], 5, r)  # from the installed version, by hash
            self.assertEqual(r["bytes"], CHUNK + len(b"device state 20261127T000002Z-bbbbbb"))
            self.assert_same(opd, "20261127T000002Z-bbbbbb")
            # the metrics count what moved
            m = opd.call({"op": "metrics", "id": 1})["text"]
            self.assertIn("opd_s3_sync_chunks_total{how=\"fetched\"}", m)
            # verify re-hashes the cache
            v = opd.call({"op": "snapshot", "action": "verify", "id": "v"}, timeout=300)
            self.assertTrue(v["verified"], v)
            with open(os.path.join(opd.dir, "cache", "python", "20261127T000002Z-bbbbbb",
                                   "vmstate"), "r+b") as f:
                f.write(b"X")
            v = opd.call({"op": "snapshot", "action": "verify", "id": "v"}, timeout=300)
            self.assertFalse(v["verified"])
            self.assertIn("checksum mismatch", v["languages"]["python"]["error"])
        finally:
            opd.stop()

    def test_shared_root_linked_not_fetched(self):
        """Languages of one image group have one rootfs.ext4 (and all versions one kernel): a
        synced version whose file has the content of a file another language's installed
        version holds gets a hard link to it, not a copy, and its chunks are not fetched."""
        if not all(os.path.exists(os.path.join(IMAGES, lang, "rootfs.ext4"))
                   for lang in ("bash", "python")):
            self.skipTest(f"bash and python images needed in {IMAGES}")
        root = mem_image("shared-root", n_chunks=3, zero_chunks=(1,))
        make_snapshot(self.src, "bash", "20261127T000001Z-b00001", mem_image("bash"),
                      extra={"rootfs.ext4": root})
        make_snapshot(self.src, "python", "20261127T000001Z-b00002", mem_image("py"),
                      extra={"rootfs.ext4": root})
        self.push("bash")
        self.push("python")
        opd = self.opd()
        try:
            a = opd.call({"op": "snapshot", "action": "sync", "id": "sync"}, timeout=600)
            self.assertTrue(a["ok"], a)
            p = a["languages"]["python"]
            cache = os.path.join(opd.dir, "cache")
            # opd's start-up sync may have installed them already; then this sync moved nothing
            if p["installed"]:
                # bash (first in the catalogue) fetched the root, python linked it: its 4
                # chunks (one of zeros, the tail); python fetched its 5 data chunks, the tail
                # and its vmstate
                self.assertEqual(p["linked"], 4, p)
                self.assertEqual(p["fetched"], 7, p)
            else:
                self.assertIn("4 in files linked to installed ones", opd.read_log())
            fb = os.path.join(cache, "bash", "20261127T000001Z-b00001", "rootfs.ext4")
            fp = os.path.join(cache, "python", "20261127T000001Z-b00002", "rootfs.ext4")
            self.assertEqual(os.stat(fb).st_ino, os.stat(fp).st_ino)
            self.assertEqual(os.stat(fp).st_nlink, 2)
            with open(fp, "rb") as f:
                self.assertEqual(f.read(), root)
            self.assertNotEqual(os.stat(fb.replace("rootfs.ext4", "mem")).st_ino,
                                os.stat(fp.replace("rootfs.ext4", "mem")).st_ino)
            # the shared file is verified for both (the pool need not hash it again), and a
            # verify of the cache passes
            v = opd.call({"op": "snapshot", "action": "verify", "id": "v"}, timeout=300)
            self.assertTrue(v["verified"], v)
        finally:
            opd.stop()

    def test_corrupt_chunk_detected_old_version_stays(self):
        mem1 = mem_image("c1")
        make_snapshot(self.src, "python", "20261127T000001Z-cccccc", mem1)
        self.push()
        opd = self.opd()
        try:
            self.assertTrue(self.sync(opd)["ok"])
            mem2 = change_chunk(mem1, 1, "corrupt-me")
            make_snapshot(self.src, "python", "20261127T000002Z-dddddd", mem2)
            self.push()
            sha = hashlib.sha256(mem2[CHUNK:2 * CHUNK]).hexdigest()
            path = self.s3.object_path(f"{self.prefix}chunks/{sha}")
            with open(path, "r+b") as f:
                f.seek(100)
                f.write(b"flipped")
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            self.assertIn("sha256", r["error"])
            self.assertIn("corrupt", r["error"])
            cache = os.path.join(opd.dir, "cache", "python")
            self.assertEqual(os.readlink(os.path.join(cache, "current")),
                             "20261127T000001Z-cccccc")
            self.assertFalse(os.path.exists(os.path.join(cache, "20261127T000002Z-dddddd")))
        finally:
            opd.stop()

    def test_cache_full_during_sync_keeps_serving_version(self):
        # a 40 MiB cache holds the first version (20 MiB of data) but not a second one whose
        # 24 MiB are all new: the sync fails, the first version keeps serving, opd goes on
        mnt = os.path.join(self.tmp, self.prefix, "small-cache")
        os.makedirs(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", mnt]).returncode:
            self.fail("cannot mount a tmpfs (this test runs as root)")
        try:
            make_snapshot(self.src, "python", "20261127T000001Z-ffffff", mem_image("f1"))
            self.push()
            opd = self.opd(cache_dir=mnt, **{"s3.reserve_mb": "0"})
            try:
                r = self.sync(opd)
                self.assertTrue(r["ok"], r)
                make_snapshot(self.src, "python", "20261127T000002Z-gggggg",
                              mem_image("f2", zero_chunks=()))
                self.push()
                r = self.sync(opd)
                self.assertFalse(r["ok"], r)
                self.assertIn("space", r["error"])
                cache = os.path.join(mnt, "python")
                self.assertEqual(os.readlink(os.path.join(cache, "current")),
                                 "20261127T000001Z-ffffff")
                self.assertFalse(os.path.exists(os.path.join(cache, "20261127T000002Z-gggggg")))
                for name in ("mem", "vmstate"):
                    self.assertTrue(filecmp.cmp(
                        os.path.join(cache, "20261127T000001Z-ffffff", name),
                        os.path.join(self.src, "python", "20261127T000001Z-ffffff", name),
                        False), name)
                v = opd.call({"op": "snapshot", "action": "verify", "id": "v"}, timeout=300)
                self.assertTrue(v["ok"], v)
                self.assertTrue(opd.call({"op": "ping", "id": "p"})["ok"])
            finally:
                opd.stop()
        finally:
            subprocess.run(["umount", "-l", mnt])

    def test_interrupted_download_resumes(self):
        mem = mem_image("r1", n_chunks=8, zero_chunks=())
        make_snapshot(self.src, "python", "20261127T000001Z-eeeeee", mem)
        total = self.push()["chunks"]  # 8 + tail + vmstate
        # the server goes away after 3 chunks; no retries, so this sync fails
        self.proxy.drop_chunks_after = 3
        opd = self.opd(endpoint=self.proxy.endpoint, **{"s3.retries": "0", "s3.parallel": "1"})
        try:
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            cache = os.path.join(opd.dir, "cache", "python")
            self.assertFalse(os.path.exists(os.path.join(cache, "current")))
            # back again: the next sync fetches only what is missing
            self.proxy.drop_chunks_after = None
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["present"], 3, r)
            self.assertEqual(r["fetched"], total - 3, r)
            self.assert_same(opd, "20261127T000001Z-eeeeee")
        finally:
            opd.stop()

    def test_server_restarted_mid_sync_retries_complete(self):
        mem = mem_image("k1", n_chunks=8, zero_chunks=())
        make_snapshot(self.src, "python", "20261127T000001Z-ffffff", mem)
        self.push()
        # the real server stops after 2 chunks and comes back while opd is backing off
        self.proxy.drop_chunks_after = 2
        opd = self.opd(endpoint=self.proxy.endpoint, **{"s3.parallel": "1", "s3.retries": "8"})
        try:
            import threading
            import time

            def restart():
                deadline = time.time() + 60
                while self.proxy.dropped == 0 and time.time() < deadline:
                    time.sleep(0.05)
                self.s3.stop()
                self.proxy.drop_chunks_after = None
                time.sleep(1)
                self.s3.start()
            t = threading.Thread(target=restart)
            t.start()
            r = self.sync(opd)
            t.join()
            self.assertTrue(r["ok"], r)
            self.assertGreater(self.proxy.dropped, 0)
            self.assert_same(opd, "20261127T000001Z-ffffff")
        finally:
            opd.stop()

    def test_500_retried(self):
        make_snapshot(self.src, "python", "20261127T000001Z-111111", mem_image("f1"))
        self.push()
        opd = self.opd(endpoint=self.proxy.endpoint)
        try:
            self.sync(opd)
            shutil.rmtree(os.path.join(opd.dir, "cache", "python"))
            self.proxy.reset_counts()
            self.proxy.fail_next = 4
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(self.proxy.injected, 4)
            self.assert_same(opd, "20261127T000001Z-111111")
            m = opd.call({"op": "metrics", "id": 1})["text"]
            self.assertRegex(m, r"opd_s3_requests_retried_total [1-9]")
        finally:
            opd.stop()

    def test_signatures_match_botocore_and_wrong_credentials_fail_clearly(self):
        make_snapshot(self.src, "python", "20261127T000001Z-222222", mem_image("s1"))
        token = "session/token+with=odd&chars"
        self.proxy.check = (KEY_ID, SECRET, token)
        env = {"AWS_SESSION_TOKEN": token}
        self.push(env=env, endpoint=self.proxy.endpoint)  # HEAD, PUT with bodies
        conf = write_config(os.path.join(self.tmp, self.prefix, "list.conf"),
                            cache_dir=self.src, **{k.replace(".", "__"): v for k, v in
                                                   self.s3_keys(self.proxy.endpoint).items()})
        p = opctl_s3(["snapshot", "list", "--remote"], conf, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("20261127T000001Z-222222 *", p.stdout)
        opd = self.opd(endpoint=self.proxy.endpoint, env=env)
        try:
            self.assertTrue(self.sync(opd)["ok"])  # GET, ranged and listing queries
        finally:
            opd.stop()
        self.assertEqual(self.proxy.sig_bad, [])
        self.assertGreater(self.proxy.sig_checked, 10)
        # a wrong secret: a clear 403, no retry loop
        self.proxy.reset_counts()
        opd = self.opd(endpoint=self.proxy.endpoint,
                       env={**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"})
        try:
            # opd's own start-up sync fails first, for every language with an image; count
            # only the requested one
            import time
            built = [lang for lang in os.listdir(IMAGES)
                     if os.path.exists(os.path.join(IMAGES, lang, "rootfs.ext4"))]
            deadline = time.time() + 60
            while time.time() < deadline and not all(
                    f"s3 sync {lang} from s3://" in opd.read_log() for lang in built):
                time.sleep(0.05)
            self.proxy.reset_counts()
            r = self.sync(opd)
            self.assertFalse(r["ok"])
            self.assertIn("HTTP 403 SignatureDoesNotMatch", r["error"])
            # one request per language, none repeated
            self.assertEqual(len(self.proxy.requests), len(set(self.proxy.requests)),
                             self.proxy.requests)
            self.assertIn(("GET", f"/{self.s3.bucket}/{self.prefix}python/current"),
                          self.proxy.requests)
        finally:
            opd.stop()
        p = opctl_s3(["snapshot", "push", "--lang", "python"], conf,
                     env={**env, "AWS_ACCESS_KEY_ID": "AKIDWRONG"})
        self.assertEqual(p.returncode, 2)
        self.assertIn("HTTP 403 Forbidden: check the credentials", p.stderr)

    def test_locations_in_priority_order(self):
        make_snapshot(self.src, "python", "20261127T000001Z-333333", mem_image("l1"))
        self.push()
        # the first location refuses connections; the second one is the real server
        dead = "http://127.0.0.1:9"
        opd = self.opd(endpoint=dead, **{
            "s3.retries": "1",
            "s3.locations": f"{self.s3.bucket}@eu-west-1@{self.s3.endpoint}"})
        try:
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["location"], f"{self.s3.bucket}@eu-west-1")
            self.assertIn("s3 sync python from s3://opd-test (us-east-1)", opd.read_log())
        finally:
            opd.stop()

    def test_trickled_chunks_end_at_deadline_next_location(self):
        """A location trickling every chunk at 2 KiB/s, above the stall limit of 1 KiB/s: each
        transfer ends at its deadline (s3.min_rate_kib; this test's gives a 4 MiB chunk about
        15 s) and the sync goes on at the next location instead of holding the run for hours."""
        v = "20261127T000001Z-777777"
        make_snapshot(self.src, "python", v, mem_image("d1", n_chunks=2))
        self.push()
        self.proxy.trickle_chunks = 2048
        opd = self.opd(endpoint=self.proxy.endpoint, **{
            "s3.retries": "0", "s3.min_rate_kib": "1048576",
            "s3.locations": f"{self.s3.bucket}@eu-west-1@{self.s3.endpoint}"})
        try:
            r = self.sync(opd)  # the start-up sync, or this one, installs it
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["version"], v)
            self.assert_same(opd, v)
            log = opd.read_log()
            self.assertRegex(log, r"s3 sync python from s3://opd-test \(us-east-1\): .*Timeout "
                             r"was reached: not over within its deadline of 1500\d ms")
            self.assertIn(f"s3 sync python: installed {v} from {self.s3.bucket}@eu-west-1", log)
            self.assertGreater(self.proxy.chunk_gets, 0)
        finally:
            opd.stop()

    def test_plain_layout_from_aws_cli(self):
        v = "20261127T000001Z-444444"
        make_snapshot(self.src, "python", v, mem_image("p1", n_chunks=3))
        aws = shutil.which("aws", path="/usr/bin:" + os.environ.get("PATH", ""))
        p = subprocess.run([aws, "--endpoint-url", self.s3.endpoint, "s3", "sync", self.src,
                            f"s3://{self.s3.bucket}/{self.prefix}"],
                           capture_output=True, text=True,
                           env={**os.environ, **AWS_ENV, "AWS_DEFAULT_REGION": "us-east-1"})
        self.assertEqual(p.returncode, 0, p.stderr)
        # nothing signs the plain layout: refused unless unsigned versions are allowed
        opd = self.opd()
        try:
            r = self.sync(opd)
            self.assertFalse(r["ok"], r)
            self.assertIn("not signed", r["error"])
        finally:
            opd.stop()
        opd = self.opd(**{"s3.allow_unsigned": "yes"})
        try:
            r = self.sync(opd)
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["version"], v)
            self.assert_same(opd, v)
        finally:
            opd.stop()


if __name__ == "__main__":
    unittest.main()
