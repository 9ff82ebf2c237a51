"""opd-s3d, the S3 gateway: opd runs in a network namespace of its own (no route out) with no
AWS credentials in its environment, and still syncs a signed version, through opd-s3d's UNIX
socket; opd-s3d answers GETs of snapshot objects under s3.prefix only. Against s3rver on
loopback; snapshots are synthetic (pools off, no VM boots)."""
import grp
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from opdtest import BUILD, Opd
from s3test import KEY_ID, SECRET, S3rver, make_snapshot, opctl_s3, signing_key, write_config
from test_s3 import mem_image

OPD_S3D = os.path.join(BUILD, "s3d", "opd-s3d")
AWS_ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
V1 = "20261127T000001Z-777777"


def http_get(sock, path, method="GET"):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(sock)
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: opd-s3d\r\nConnection: close\r\n\r\n".encode())
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return int(out.split(b" ", 2)[1]), out


class S3Gateway(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3rver()
        cls.tmp = tempfile.mkdtemp(prefix="opd-s3-gateway-")
        os.chmod(cls.tmp, 0o755)  # opd, as jail.user, reaches the gateway's socket in it
        cls.key, cls.pub = signing_key(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.s3.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_opd_without_network_or_credentials_syncs_through_gateway(self):
        src = os.path.join(self.tmp, "src-cache")
        sock = os.path.join(self.tmp, "s3.sock")
        keys = {"s3.bucket": self.s3.bucket, "s3.endpoint": self.s3.endpoint,
                "s3.path_style": "yes", "s3.prefix": "gw/", "s3.sync_minutes": "0",
                "s3.trusted_keys": self.pub, "s3.gateway": sock}
        make_snapshot(src, "python", V1, mem_image("g1", n_chunks=3))
        push = write_config(os.path.join(self.tmp, "push.conf"), cache_dir=src,
                            **{k.replace(".", "__"): v for k, v in keys.items()})
        p = opctl_s3(["snapshot", "push", "--lang", "python", "--sign-key", self.key], push)
        self.assertEqual(p.returncode, 0, p.stderr)
        # the gateway: credentials in its environment only
        gw_log = open(os.path.join(self.tmp, "opd-s3d.log"), "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        gw = subprocess.Popen([OPD_S3D, "--config", push], env={**env, **AWS_ENV},
                              stdout=gw_log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 60
            while not os.path.exists(sock) and time.time() < deadline and gw.poll() is None:
                time.sleep(0.05)
            with open(gw_log.name) as f:
                self.assertTrue(os.path.exists(sock), f.read())
            # as opd-s3d.socket's SocketGroup=opd: opd runs as jail.user (opdtest: opd)
            os.chown(sock, 0, grp.getgrnam("opd").gr_gid)
            # narrow: nothing outside the prefix, no other method
            self.assertEqual(http_get(sock, f"/{self.s3.bucket}/other/key")[0], 403)
            # (libevent answers a method it was not allowed 501 Not Implemented)
            self.assertEqual(http_get(sock, f"/{self.s3.bucket}/gw/python/current", "PUT")[0],
                             501)
            self.assertEqual(http_get(sock, f"/{self.s3.bucket}/?list-type=2&prefix=x")[0], 403)
            self.assertEqual(http_get(sock, f"/{self.s3.bucket}/gw/python/current")[0], 200)
            # opd: its own network namespace (loopback only, and down) and no credentials
            opd = Opd({"pool.size": "0", **keys}, env={"AWS_ACCESS_KEY_ID": "",
                                                      "AWS_SECRET_ACCESS_KEY": ""},
                      argv=["unshare", "--net"])
            try:
                pid = opd.proc.pid
                seen = {}

                def watch():
                    # while the sync runs: what opd's process holds
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        seen["environ"] = f.read()
                    with open(f"/proc/{pid}/net/route") as f:
                        seen["routes"] = f.read().splitlines()[1:]
                    seen["netns"] = os.readlink(f"/proc/{pid}/ns/net")

                t = threading.Thread(target=watch)
                t.start()
                a = opd.call({"op": "snapshot", "action": "sync", "id": "sync"}, timeout=600)
                t.join()
                self.assertTrue(a["ok"], a)
                r = a["languages"]["python"]
                self.assertTrue(r["ok"], (r, opd.read_log()))
                self.assertEqual(r["version"], V1)
                self.assertEqual(os.readlink(os.path.join(opd.dir, "cache", "python",
                                                          "current")), V1)
                for var in seen["environ"].split(b"\0"):
                    name = var.split(b"=", 1)[0]
                    if name in (b"AWS_ACCESS_KEY_ID", b"AWS_SECRET_ACCESS_KEY",
                                b"AWS_SESSION_TOKEN", b"AWS_PROFILE",
                                b"AWS_SHARED_CREDENTIALS_FILE"):
                        self.assertEqual(var, name + b"=")  # set empty by this test
                self.assertEqual(seen["routes"], [])
                self.assertNotEqual(seen["netns"], os.readlink("/proc/self/ns/net"))
            finally:
                opd.stop()
        finally:
            gw.terminate()
            gw.wait(timeout=30)
            gw_log.close()


if __name__ == "__main__":
    unittest.main()
