"""Hostile code in the guest: each case ends with a prompt answer, the VM is thrown away, and
the next request is served normally. Runs on warm clones (the product's path)."""
import time
import unittest

from opdtest import Opd
from test_warm import create_snapshot, wait_serving

# (what, lang, code, timeout_ms, check(answer))
CASES = [
    # the script itself returns at once; its background bomb is killed with the process tree
    ("fork bomb", "bash", ":(){ :|:& };:; sleep 1; echo bombed", 3000,
     lambda a: a["timed_out"] or "bombed" in a["stdout"] or a["signal"] is not None),
    ("busy loop", "python", "while True:\n    pass", 1500, lambda a: a["timed_out"]),
    ("a GiB of output", "bash", "yes | head -c 1073741824", 20000, lambda a: a["truncated"]),
    ("fill the tmpfs", "bash", "dd if=/dev/zero of=$TMPDIR/fill bs=1M count=4096 2>&1; echo rc=$?",
     20000, lambda a: "rc=1" in a["stdout"] and "No space left" in a["stdout"]),
    ("all the memory", "python",
     "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))", 20000,
     lambda a: a["exit_code"] == 1 and "MemoryError" in a["stderr"] or a["signal"] == 9),
    ("closed stdout", "bash", "exec >&-; echo lost; echo kept >&2", 5000,
     lambda a: a["stderr"].startswith("kept") or "kept" in a["stderr"]),
    # as uid 1000 it reaches only its own processes (kill(-1) spares the caller); the agent
    # and the runner's supervisor are root and keep going
    ("kill everything it can", "bash", "sleep 30 & kill -9 -1; wait; echo survived", 5000,
     lambda a: a["stdout"] == "survived\n"),
    ("reboot", "bash", "reboot -f 2>&1; echo rc=$?", 5000, lambda a: "rc=" in a["stdout"]),
]


class Hostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({"pool.sizes": "bash=1,python=1", "max_vms": "4"})
        for lang in ("bash", "python"):
            wait_serving(cls.opd, lang, create_snapshot(cls.opd, lang))

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def test_cases(self):
        for what, lang, code, timeout, check in CASES:
            with self.subTest(what):
                t = time.time()
                a = self.opd.run(lang, code, timeout_ms=timeout)
                took = time.time() - t
                self.assertTrue(a["ok"], (what, a))
                self.assertTrue(check(a), (what, {k: a.get(k) for k in (
                    "exit_code", "signal", "timed_out", "truncated")}, a["stdout"][-200:],
                    a["stderr"][-200:]))
                # the answer comes by the request's own deadline (plus a VM to get)
                self.assertLess(took, timeout / 1000 + 30, what)
                b = self.opd.run(lang, "echo next" if lang == "bash" else "print('next')")
                self.assertTrue(b["ok"], (what, b))
                self.assertEqual(b["stdout"], "next\n", what)
                self.assertNotEqual(a["vm"], b["vm"], what)


if __name__ == "__main__":
    unittest.main()
