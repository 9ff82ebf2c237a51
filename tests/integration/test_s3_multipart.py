"""Multipart upload and the plain layout against a real S3-compatible server (s3rver) on
loopback: `opctl snapshot push --plain` uploads a snapshot whose memory file needs several parts
(parallel, signed parts checked by botocore, a part answered 500 retried), the object is exactly
the file (read back with the AWS CLI), opd syncs it into a clean cache through its plain-layout
reader; a part failing for good and a CompleteMultipartUpload answered 200 with an <Error> both
fail the push and abort the upload. Snapshots are synthetic (pools off, no VM boots)."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from opdtest import Opd
from s3test import KEY_ID, SECRET, Proxy, S3rver, make_snapshot, opctl_s3, write_config

MiB = 1 << 20
AWS_ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
# 5 MiB parts from 5 MiB up: an 18 MiB memory file is 4 parts (the last one short)
PLAIN_FLAGS = ["--plain", "--multipart-threshold", "5", "--part-size", "5"]


def mem_image(seed, size):
    block = b"".join(hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(MiB // 32))
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{i}".encode()).digest()[:8] + block[8:]
        i += 1
    return bytes(out[:size])


class S3Multipart(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3rver()
        cls.proxy = Proxy(cls.s3.port)
        cls.tmp = tempfile.mkdtemp(prefix="opd-s3mp-test-")
        cls.aws = shutil.which("aws", path="/usr/bin:" + os.environ.get("PATH", ""))

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()
        cls.s3.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.proxy.reset_counts()
        self.proxy.check = None
        self.proxy.fail_match = None
        self.proxy.complete_error = None
        self.prefix = self.id().rsplit(".", 1)[1] + "/"
        self.src = os.path.join(self.tmp, self.prefix, "src-cache")
        os.makedirs(self.src)

    def s3_keys(self, endpoint, **more):
        return {"s3.bucket": self.s3.bucket, "s3.endpoint": endpoint, "s3.path_style": "yes",
                "s3.prefix": self.prefix, "s3.sync_minutes": "0",
                "s3.allow_unsigned": "yes", **more}  # the plain layout is not signed

    def push_plain(self, endpoint, **more):
        conf = write_config(os.path.join(self.tmp, self.prefix, "push.conf"), cache_dir=self.src,
                            **{k.replace(".", "__"): v for k, v in
                               self.s3_keys(endpoint, **more).items()})
        return opctl_s3(["--json", "snapshot", "push", "--lang", "python"] + PLAIN_FLAGS, conf)

    def aws_cli(self, *args):
        return subprocess.run([self.aws, "--endpoint-url", self.s3.endpoint, *args],
                              capture_output=True, text=True, env={**os.environ, **AWS_ENV})

    def key(self, version, name):
        return f"{self.prefix}python/{version}/{name}"

    def test_plain_multipart_push_then_sync(self):
        v = "20261127T000001Z-a1a1a1"
        mem = mem_image("m1", 18 * MiB + 1234)
        make_snapshot(self.src, "python", v, mem)
        self.proxy.check = (KEY_ID, SECRET, None)  # every request signed as botocore would
        self.proxy.fail_match = "partNumber=2&"     # part 2 answered 500 twice, then stored
        self.proxy.fail_match_left = 2
        p = self.push_plain(self.proxy.endpoint)
        self.assertEqual(p.returncode, 0, p.stderr)
        st = json.loads(p.stdout)
        self.assertEqual((st["layout"], st["objects"], st["multipart"], st["parts"]),
                         ("plain", 3, 1, 4), st)  # mem in 4 parts; vmstate, manifest.json whole
        self.assertEqual(self.proxy.injected, 2)
        self.assertEqual(self.proxy.sig_bad, [])
        reqs = self.proxy.requests
        mem_path = f"/{self.s3.bucket}/{self.key(v, 'mem')}"
        self.assertEqual([r for r in reqs if r[0] == "POST" and r[1].endswith("?uploads=")],
                         [("POST", mem_path + "?uploads=")])
        parts = [r[1] for r in reqs if r[0] == "PUT" and "partNumber=" in r[1]]
        self.assertEqual(sorted({re.search(r"partNumber=(\d+)", q).group(1) for q in parts}),
                         ["1", "2", "3", "4"])
        self.assertEqual(len(parts), 4 + 2)  # part 2 sent three times
        self.assertEqual(len([r for r in reqs if r[0] == "POST" and "uploadId=" in r[1]]), 1)
        # the files before the manifest that names them
        puts = [r[1] for r in reqs if r[0] in ("PUT", "POST")]
        self.assertTrue(puts[-1].endswith("/manifest.json"), puts)
        # (a) the object is exactly the file
        h = self.aws_cli("s3api", "head-object", "--bucket", self.s3.bucket,
                         "--key", self.key(v, "mem"))
        self.assertEqual(h.returncode, 0, h.stderr)
        self.assertEqual(json.loads(h.stdout)["ContentLength"], len(mem))
        out = os.path.join(self.tmp, self.prefix, "mem.back")
        c = self.aws_cli("s3", "cp", f"s3://{self.s3.bucket}/{self.key(v, 'mem')}", out)
        self.assertEqual(c.returncode, 0, c.stderr)
        with open(out, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(),
                             hashlib.sha256(mem).hexdigest())
        # (b) opd, with no `current` object in the bucket, reads the plain layout into a clean
        # cache and checks every file against the manifest
        opd = Opd({"pool.size": "0", **self.s3_keys(self.s3.endpoint)}, env=AWS_ENV)
        try:
            a = opd.call({"op": "snapshot", "action": "sync", "id": "sync"}, timeout=600)
            self.assertTrue(a["ok"], a)
            r = a["languages"]["python"]
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["version"], v)
            cache = os.path.join(opd.dir, "cache", "python")
            self.assertEqual(os.readlink(os.path.join(cache, "current")), v)
            for name in ("mem", "vmstate"):  # opd writes its own manifest.json
                with open(os.path.join(cache, v, name), "rb") as f1, \
                        open(os.path.join(self.src, "python", v, name), "rb") as f2:
                    self.assertEqual(f1.read(), f2.read(), name)
        finally:
            opd.stop()

    def assert_aborted(self, p, v):
        """The push failed, sent AbortMultipartUpload for the upload it created, and left no
        manifest (a reader never sees a half-uploaded version)."""
        self.assertEqual(p.returncode, 2, p.stdout)
        reqs = self.proxy.requests
        created = [r for r in reqs if r[0] == "POST" and r[1].endswith("?uploads=")]
        self.assertEqual(len(created), 1, reqs)
        ids = {re.search(r"uploadId=([^&]+)", r[1]).group(1) for r in reqs if "uploadId=" in r[1]}
        self.assertEqual(len(ids), 1, reqs)
        upload_id = ids.pop()
        self.assertIn(("DELETE", f"/{self.s3.bucket}/{self.key(v, 'mem')}?uploadId={upload_id}"),
                      reqs)
        # s3rver 3.7 implements neither AbortMultipartUpload (405) nor ListMultipartUploads
        # (501): opctl says the abort failed and how to clean up; on S3 it says "aborted"
        self.assertIn(f"abort of upload {upload_id} failed (HTTP 405 MethodNotAllowed", p.stderr)
        self.assertIn("aws s3api abort-multipart-upload", p.stderr)
        lst = self.aws_cli("s3api", "list-multipart-uploads", "--bucket", self.s3.bucket)
        self.assertIn("NotImplemented", lst.stderr)
        for name in ("mem", "manifest.json"):
            h = self.aws_cli("s3api", "head-object", "--bucket", self.s3.bucket,
                             "--key", self.key(v, name))
            self.assertNotEqual(h.returncode, 0, name)
            self.assertIn("404", h.stderr)

    def test_failing_part_aborts_upload(self):
        v = "20261127T000002Z-b2b2b2"
        make_snapshot(self.src, "python", v, mem_image("m2", 12 * MiB))
        self.proxy.fail_match = "partNumber=3&"  # always 500: retried, then given up
        self.proxy.fail_match_left = -1
        p = self.push_plain(self.proxy.endpoint, **{"s3.retries": "2"})
        self.assertEqual(self.proxy.injected, 3)  # the first attempt and two retries
        self.assertIn("UploadPart 3 of", p.stderr)
        self.assertIn("HTTP 500 InternalError", p.stderr)
        self.assert_aborted(p, v)

    def test_complete_200_error(self):
        v = "20261127T000003Z-c3c3c3"
        make_snapshot(self.src, "python", v, mem_image("m3", 11 * MiB))
        # S3's own InternalError after a 200: retried, then the upload completes
        self.proxy.complete_error = ["InternalError", 1]
        p = self.push_plain(self.proxy.endpoint)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["parts"], 3)
        self.assertEqual(len([r for r in self.proxy.requests
                              if r[0] == "POST" and "uploadId=" in r[1]]), 2)
        h = self.aws_cli("s3api", "head-object", "--bucket", self.s3.bucket,
                         "--key", self.key(v, "mem"))
        self.assertEqual(json.loads(h.stdout)["ContentLength"], 11 * MiB)
        # any other error after a 200 is a failure, not a success
        shutil.rmtree(self.src)
        v = "20261127T000004Z-d4d4d4"
        make_snapshot(self.src, "python", v, mem_image("m4", 11 * MiB))
        self.proxy.reset_counts()
        self.proxy.complete_error = ["InvalidPart", -1]
        p = self.push_plain(self.proxy.endpoint)
        self.assertIn("HTTP 200 with an error: InvalidPart", p.stderr)
        self.assert_aborted(p, v)


if __name__ == "__main__":
    unittest.main()
