"""More languages than VM slots: bash, python, node and c (those built in OPD_IMAGES) with
max_vms = 2 and pool.size = 1. The plan scales the standing pools to fit max_vms and says so;
every language answers warm, none is refused, because an idle clone of the language used least
recently gives its slot to a language with a waiting request; a cold request takes an idle
clone's slot too. No cold fallback: a request that found no clone would be refused."""
import os
import subprocess
import unittest

from opdtest import IMAGES, OPD, Opd, pool, wait_for
from test_warm import create_snapshot

WANTED = ["bash", "python", "node", "c"]
CODE = {"bash": "echo hi", "python": 'print("hi")', "node": 'console.log("hi");',
        "c": '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n'}


def built(name):
    return os.path.exists(os.path.join(IMAGES, name, "rootfs.ext4"))


LANGS = [l for l in WANTED if built(l)]
CONFIG = {"max_vms": "2", "pool.size": "1", "pool.fallback_cold": "no",
          "languages.enabled": ",".join(LANGS), "queue_timeout_ms": "600000"}


@unittest.skipUnless(len(LANGS) >= 3, f"needs 3 of {WANTED} built in {IMAGES}")
class SharedSlots(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd(CONFIG)
        cls.versions = {l: create_snapshot(cls.opd, l) for l in LANGS}
        # every pool serves its snapshot (a language scaled to 0 keeps no clone while idle)
        wait_for(lambda: all(pool(cls.opd, l)["snapshot"] == v for l, v in cls.versions.items()),
                 600, lambda: f"every pool on its snapshot: {[pool(cls.opd, l) for l in LANGS]}")

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def run_code(self, lang, mode):
        req = {"op": "exec", "lang": lang, "code": CODE[lang], "id": lang, "mode": mode,
               "timeout_ms": 60000}
        if lang == "c":
            req["compile_timeout_ms"] = 120000
        return self.opd.call(req, timeout=900)

    def test_check_config_and_status_say_the_plan_was_scaled(self):
        out = subprocess.run([OPD, "--config", self.opd.config_path, "--check-config"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(f"add up to {len(LANGS)} paused VMs, over max_vms = 2", out.stdout)
        st = self.opd.call({"op": "status"})
        self.assertIn("over max_vms = 2", st["pool_plan"])
        pools = [l["pool"] for l in st["languages"] if l["name"] in LANGS]
        self.assertEqual(sum(p["standing"] for p in pools), 2)
        self.assertTrue(all(p["max"] >= 1 for p in pools))

    def test_every_language_answers_warm(self):
        # Twice round: each request finds its language's clone gone (its slot was given to
        # the language before it) and is served in the slot of an idle clone.
        for _ in range(2):
            for lang in LANGS:
                with self.subTest(lang=lang):
                    a = self.run_code(lang, "auto")
                    self.assertTrue(a["ok"], (lang, a, self.opd.read_log()[-3000:]))
                    self.assertEqual(a["mode"], "warm")
                    self.assertEqual(a["stdout"], "hi\n")
        st = self.opd.call({"op": "status"})
        pools = [l["pool"] for l in st["languages"] if l["name"] in LANGS]
        self.assertGreater(sum(p["evicted"] for p in pools), 0)
        self.assertLessEqual(st["counters"]["active_vms"], 2)
        self.assertEqual(st["counters"]["errors"], 0)

    def test_cold_request_takes_an_idle_slot(self):
        # wait until idle clones hold both slots, then boot cold
        wait_for(lambda: sum(pool(self.opd, l)["ready"] for l in LANGS) == 2, 600,
                 lambda: f"idle clones in both slots: {[pool(self.opd, l) for l in LANGS]}",
                 step=0.2)
        a = self.run_code(LANGS[0], "cold")
        self.assertTrue(a["ok"], (a, self.opd.read_log()[-3000:]))
        self.assertEqual(a["mode"], "cold")


if __name__ == "__main__":
    unittest.main()
