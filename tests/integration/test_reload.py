"""Reload without dropping work: SIGHUP (and the reload op) apply a new pool size with requests
in flight, none of which fails; an invalid file changes nothing."""
import os
import signal
import unittest

from opdtest import Opd, pool, wait_for
from test_warm import create_snapshot, wait_serving


class Reload(unittest.TestCase):
    def rewrite(self, opd, **changes):
        changes = {k.replace("pool_", "pool.", 1): v for k, v in changes.items()}
        with open(opd.config_path) as f:
            lines = [l for l in f.read().splitlines() if l.split(" = ")[0] not in changes]
        lines += [f"{k} = {v}" for k, v in changes.items()]
        with open(opd.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def test_pool_size_changes_with_requests_in_flight(self):
        # pool.max_size = 0: the target is the configured size, not moved by demand; max_vms
        # above every built language's pool size, so the plan keeps bash's size as it is
        opd = Opd({"pool.sizes": "bash=1,python=0", "max_vms": "16", "pool.max_size": "0"})
        try:
            v = create_snapshot(opd, "bash")
            wait_serving(opd, "bash", v)
            clients = [opd.client() for _ in range(2)]
            for i, c in enumerate(clients):
                # a clone handed to a waiting request is not primed: its first run translates
                # bash under TCG, which on a loaded machine takes seconds of the time limit
                c.send({"op": "exec", "lang": "bash", "code": f"sleep 2; echo req{i}", "id": i,
                        "mode": "auto", "timeout_ms": 60000})
            self.rewrite(opd, pool_sizes="bash=3,python=0")
            os.kill(opd.proc.pid, signal.SIGHUP)
            wait_for(lambda: pool(opd, "bash")["target"] == 3, 30, "the new pool size")
            for i, c in enumerate(clients):
                a = c.recv()
                self.assertTrue(a["ok"], a)
                self.assertEqual(a["stdout"], f"req{i}\n")
                c.close()
            wait_for(lambda: pool(opd, "bash")["ready"] == 3, 120, "3 clones ready")

            # the op does the same; shrinking drops paused clones
            self.rewrite(opd, pool_sizes="bash=1,python=0")
            a = opd.call({"op": "reload", "id": 9})
            self.assertTrue(a["ok"], a)
            p = pool(opd, "bash")
            self.assertEqual((p["target"], p["ready"]), (1, 1))

            # languages are turned off and on again without a restart
            self.rewrite(opd, **{"languages.enabled": "bash"})
            self.assertTrue(opd.call({"op": "reload"})["ok"])
            a = opd.run("python", "print(1)", mode="cold")
            self.assertEqual(a["error"]["code"], "unknown_language", a)
            self.assertIn("available: bash", a["error"]["message"])
            st = opd.call({"op": "status"})
            self.assertEqual({l["name"]: l["enabled"] for l in st["languages"]
                              if l["name"] in ("bash", "python")},
                             {"bash": True, "python": False})
            self.assertFalse([l["name"] for l in st["languages"]
                              if l["enabled"] and l["name"] != "bash"])
            self.rewrite(opd, **{"languages.enabled": "bash,nosuchlang"})
            a = opd.call({"op": "reload"})
            self.assertFalse(a["ok"])
            self.assertIn("nosuchlang", a["error"]["message"])
            self.rewrite(opd, **{"languages.enabled": ""})
            self.assertTrue(opd.call({"op": "reload"})["ok"])
            a = opd.run("python", "print('back')", mode="cold")
            self.assertEqual(a["stdout"], "back\n", a)

            # an invalid file is refused and changes nothing
            self.rewrite(opd, max_vms="-3")
            a = opd.call({"op": "reload", "id": 10})
            self.assertFalse(a["ok"])
            self.assertIn("max_vms", a["error"]["message"])
            self.assertEqual(pool(opd, "bash")["target"], 1)
            b = opd.run("bash", "echo still serving")
            self.assertEqual(b["stdout"], "still serving\n")
            self.assertIn("reload refused", opd.read_log())
        finally:
            opd.stop()


if __name__ == "__main__":
    unittest.main()
