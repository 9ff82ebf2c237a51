"""accel = auto: opd proves KVM by booting a guest under it and falls back to TCG when that
fails (as on hosts where /dev/kvm exists but cannot run a guest); either way requests run."""
import os
import time
import unittest

from opdtest import Opd


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


if __name__ == "__main__":
    unittest.main()
