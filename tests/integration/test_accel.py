"""accel = auto: opd proves KVM by booting a guest under it and falls back to TCG when that
fails (as on hosts where /dev/kvm exists but cannot run a guest); either way requests run."""
import os
import subprocess
import time
import unittest

from opdtest import OPCTL, Opd


class AutoAccel(unittest.TestCase):
    def test_auto_picks_a_working_accelerator(self):
        opd = Opd({"accel": "auto", "accel_probe_timeout_ms": "20000"}, wait_accel=False)
        try:
            deadline = time.time() + 120
            st = opd.call({"op": "status"})
            while st["accel"] == "probing" and time.time() < deadline:
                time.sleep(0.2)
                st = opd.call({"op": "status"})
            self.assertIn(st["accel"], ("kvm", "tcg"))
            if not os.path.exists("/dev/kvm"):
                self.assertEqual(st["accel"], "tcg")
            log = opd.read_log()
            self.assertIn("accelerator: " + st["accel"], log)
            a = opd.run("bash", "echo works", mode="cold")
            self.assertTrue(a["ok"], a)
            self.assertEqual(a["stdout"], "works\n")
        finally:
            opd.stop()


class RefusedUnderTcg(unittest.TestCase):
    def test_tcg_without_allow_tcg_refuses_to_serve(self):
        """TCG is not an isolation boundary: with allow_tcg = no opd says so and answers every
        exec "unavailable", boots nothing, and status shows why."""
        opd = Opd({"accel": "tcg", "allow_tcg": "no", "pool.size": "1"})
        try:
            st = opd.call({"op": "status"})
            self.assertEqual(st["accel"], "tcg")
            self.assertIs(st["accel_isolation"], False)
            self.assertIn("allow_tcg", st["refused"])
            # it answers, but a readiness check must not take it for ready
            p = opd.call({"op": "ping"})
            self.assertEqual((p["pong"], p["serving"]), (True, False), p)
            self.assertIn("allow_tcg", p["refused"])
            ping = subprocess.run([OPCTL, "--socket", opd.socket, "ping"], capture_output=True,
                                  text=True, timeout=60)
            self.assertEqual(ping.returncode, 2, ping)
            self.assertIn("pong", ping.stdout)
            self.assertIn("serves nothing", ping.stderr)
            self.assertIn("allow_tcg", ping.stderr)
            a = opd.run("bash", "echo never", mode="cold")
            self.assertIs(a["ok"], False, a)
            self.assertEqual(a["error"]["code"], "unavailable")
            self.assertIn("allow_tcg", a["error"]["message"])
            self.assertEqual(opd.call({"op": "status"})["counters"]["vms_started"], 0)
            log = opd.read_log()
            self.assertIn("not an isolation boundary", log)
            self.assertIn("refusing to serve", log)
        finally:
            opd.stop()

    def test_tcg_allowed_serves_and_warns(self):
        opd = Opd({"accel": "tcg", "pool.size": "0"})  # opdtest sets allow_tcg = yes
        try:
            st = opd.call({"op": "status"})
            self.assertEqual((st["accel"], st["accel_isolation"], st["refused"]),
                             ("tcg", False, None))
            p = opd.call({"op": "ping"})
            self.assertEqual(p["serving"], True, p)
            self.assertIsNone(p["refused"], p)
            ping = subprocess.run([OPCTL, "--socket", opd.socket, "ping"], capture_output=True,
                                  text=True, timeout=60)
            self.assertEqual(ping.returncode, 0, ping)
            self.assertIn("not an isolation boundary", opd.read_log())
        finally:
            opd.stop()


if __name__ == "__main__":
    unittest.main()
