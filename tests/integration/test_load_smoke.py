"""bench/load's short run: 200 requests from 16 concurrent clients, a mix of exec on the bash
pool (more than it can refill, so some get pool_exhausted), ping, status and bad requests.
Nothing is lost or left unanswered, every error is one a client is told to expect, and opd
keeps serving afterwards."""
import json
import os
import subprocess
import sys
import unittest

from opdtest import SOURCE, Opd
from test_warm import create_snapshot, wait_serving

LOAD = os.path.join(SOURCE, "bench", "load")


class LoadSmoke(unittest.TestCase):
    def test_200_requests_16_clients(self):
        opd = Opd({"pool.sizes": "bash=2,python=0", "pool.fallback_cold": "no",
                   "queue_timeout_ms": "2000"})
        try:
            version = create_snapshot(opd, "bash")
            wait_serving(opd, "bash", version, ready=2)
            out = subprocess.run(
                [sys.executable, LOAD, "--socket", opd.socket, "--pid", str(opd.proc.pid),
                 "--clients", "16", "--count", "200", "--mix", "exec=1,ping=6,status=2,bad=1",
                 "--json"], capture_output=True, text=True, timeout=600)
            r = json.loads(out.stdout)
            self.assertEqual(r["requests"], 200, r)
            self.assertEqual(r["lost"], 0, r)
            self.assertEqual(r["unexpected"], [], r)
            self.assertEqual(out.returncode, 0, out.stderr)
            answered = sum(n for kind in r["outcomes"].values() for n in kind.values())
            self.assertEqual(answered, 200)
            # cheap requests never wait for VMs
            self.assertEqual(set(r["outcomes"]["ping"]), {"ok"})
            self.assertEqual(set(r["outcomes"]["bad"]), {"bad_request"})
            self.assertGreater(r["outcomes"]["exec"].get("ok", 0), 0, r)
            self.assertLessEqual(set(r["outcomes"]["exec"]), {"ok", "pool_exhausted"}, r)
            wait_serving(opd, "bash", version, ready=1)  # refilled after the burst
            a = opd.run("bash", "echo after")
            self.assertTrue(a["ok"], a)
        finally:
            opd.stop()


if __name__ == "__main__":
    unittest.main()
