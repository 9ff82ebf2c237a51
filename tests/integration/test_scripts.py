"""The README's two commands keep out of each other's way: scripts/test refuses to build its
images into a directory scripts/quickstart serves, before doing anything else; their default
image directories differ. (quickstart itself, end to end with private paths, is run by hand:
docs/operations.md.)"""
import os
import re
import subprocess
import tempfile
import unittest

from opdtest import SOURCE


class Scripts(unittest.TestCase):
    def test_test_refuses_quickstart_images(self):
        d = tempfile.mkdtemp(prefix="opd-qs-images-")
        with open(os.path.join(d, ".quickstart"), "w") as f:
            f.write("served by scripts/quickstart (/x/quickstart.conf)\n")
        p = subprocess.run([os.path.join(SOURCE, "scripts", "test")], capture_output=True,
                           text=True, env={**os.environ, "OPD_TEST_IMAGES": d}, timeout=60)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("served by scripts/quickstart", p.stderr)
        self.assertEqual(os.listdir(d), [".quickstart"])  # nothing built there

    def test_default_directories_differ(self):
        def default(script, var):
            with open(os.path.join(SOURCE, "scripts", script)) as f:
                m = re.search(rf"\$\{{{var}:-([^}}]+)\}}", f.read())
            self.assertTrue(m, (script, var))
            return m.group(1)
        state = default("quickstart", "OPD_QUICKSTART_STATE")
        served = default("quickstart", "OPD_QUICKSTART_IMAGES").replace("$state", state)
        tested = default("test", "OPD_TEST_IMAGES")
        self.assertNotEqual(os.path.normpath(served), os.path.normpath(tested))
        self.assertEqual(default("test-sanitize", "OPD_TEST_IMAGES"), tested)

    def test_quickstart_stop_with_private_paths(self):
        d = tempfile.mkdtemp(prefix="opd-qs-run-")
        p = subprocess.run([os.path.join(SOURCE, "scripts", "quickstart"), "--stop"],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "OPD_QUICKSTART_RUN": d})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(os.listdir(d), [])


if __name__ == "__main__":
    unittest.main()
