"""A real snapshot through S3: one opd makes it, opctl pushes it, a second opd with an empty
cache syncs it at start, verifies it and serves an exec warm from it (one boot, one restore).
Every chunk was checked against the signed manifest as it arrived: the pool serves the version
without hashing its files again, and `snapshot verify` checks them by their chunk roots."""
import json
import os
import unittest

from opdtest import Opd, pool, wait_for
from s3test import KEY_ID, SECRET, S3rver, opctl_s3, signing_key, write_config

AWS_ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}


class S3Warm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3rver()

    @classmethod
    def tearDownClass(cls):
        cls.s3.cleanup()

    def test_pushed_snapshot_serves_warm_on_another_host(self):
        s3keys = {"s3.bucket": self.s3.bucket, "s3.endpoint": self.s3.endpoint,
                  "s3.path_style": "yes", "s3.sync_minutes": "0"}
        maker = Opd({"pool.size": "0"})
        key, pub = signing_key(maker.dir)
        s3keys["s3.trusted_keys"] = pub
        try:
            a = maker.call({"op": "snapshot", "action": "create", "lang": "bash", "id": "s"},
                           timeout=600)
            self.assertTrue(a["ok"], a)
            version = a["version"]
            conf = write_config(os.path.join(maker.dir, "push.conf"),
                                cache_dir=os.path.join(maker.dir, "cache"),
                                **{k.replace(".", "__"): v for k, v in s3keys.items()})
            p = opctl_s3(["snapshot", "push", "--lang", "bash", "--sign-key", key], conf)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("pushed to s3://", p.stdout)
        finally:
            maker.stop()
        host = Opd({"pool.sizes": "bash=1,python=0", "snapshot_check_ms": "500", **s3keys},
                   env=AWS_ENV)
        try:
            wait_for(lambda: (lambda p: p["snapshot"] == version and p["ready"] >= 1)(
                pool(host, "bash")), 300,
                lambda: f"a clone of {version}: {pool(host, 'bash')}\n{host.read_log()}",
                step=0.2)
            self.assertIn(f"s3 sync bash: installed {version}", host.read_log())
            # checked chunk by chunk at install: not hashed again before serving
            self.assertIn(f"bash pool: serving snapshot {version} (checked at install)",
                          host.read_log())
            with open(os.path.join(host.dir, "cache", "bash", version, "manifest.json")) as f:
                man = json.load(f)
            self.assertEqual(man["chunk_size"], 4 << 20)
            self.assertTrue(all(len(f["root"]) == 64 for f in man["files"]), man)
            v = host.call({"op": "snapshot", "action": "verify", "id": "v"}, timeout=300)
            self.assertTrue(v["verified"], v)
            r = host.run("bash", "echo warm from s3")
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["stdout"], "warm from s3\n")
            self.assertEqual(r["mode"], "warm")
            self.assertEqual(r["snapshot"], version)
        finally:
            host.stop()


if __name__ == "__main__":
    unittest.main()
