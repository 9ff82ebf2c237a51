"""opd --check-config: prints what it understood, or the exact line it rejects."""
import os
import subprocess
import tempfile
import unittest

from opdtest import OPD, SOURCE


def check(*args, text=None):
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(text or "")
    try:
        argv = [OPD, "--check-config"] + (["--config", f.name] if text is not None else []) + list(args)
        p = subprocess.run(argv, capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr.replace(f.name, "FILE")
    finally:
        os.unlink(f.name)


class CheckConfig(unittest.TestCase):
    def test_example_file_is_the_defaults(self):
        rc, defaults, _ = check()
        self.assertEqual(rc, 0)
        rc, out, err = check("--config", os.path.join(SOURCE, "systemd", "opd.conf.example"))
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, defaults)
        self.assertIn("socket = /run/opd/opd.sock\n", out)
        with open(os.path.join(SOURCE, "systemd", "opd.conf.example")) as f:
            example = f.read()
        for line in defaults.splitlines():  # every key is there, set or commented out
            if line.startswith("#"):  # the pools' plan, not a key
                continue
            key = line.split(" = ")[0]
            self.assertRegex(example, rf"(?m)^(# )?{key.replace('.', '[.]')} = ", key)
        self.assertIn("limit.frame_max = 16777216\n", out)

    def test_values_and_flags(self):
        rc, out, _ = check("--socket", "/tmp/x.sock", "--set", "pool.sizes=python=4,bash=1",
                           text="# comment\n\n  max_vms = 3  \naccel=tcg\npool.prime = no\n")
        self.assertEqual(rc, 0)
        for line in ("socket = /tmp/x.sock", "max_vms = 3", "accel = tcg", "pool.prime = no",
                     "pool.sizes = python=4,bash=1"):
            self.assertIn(line + "\n", out)

    def test_rejected_lines_are_named(self):
        cases = [
            ("max_vms = 3\nvm.memory_mb = 12\n",
             "opd: FILE:2: vm.memory_mb: must be an integer from 64 to 65536\n"),
            ("accel = fast\n", 'opd: FILE:1: accel: must be auto, kvm or tcg, not "fast"\n'),
            ("no equals sign\n", 'opd: FILE:1: expected "key = value"\n'),
            ("\n\nsoket = /x\n", 'opd: FILE:3: unknown key "soket"\n'),
            ("max_vms = -1\n", "opd: FILE:1: max_vms: must be an integer from 1 to 4096\n"),
            ("limit.timeout_ms_default = 9000\nlimit.timeout_ms_max = 8000\n",
             "opd: limit.timeout_ms_default is over limit.timeout_ms_max\n"),
            ("pool.sizes = python\n", 'opd: pool.sizes: expected "lang=N,lang=N" (N <= 1024)\n'),
        ]
        for text, want in cases:
            rc, out, err = check(text=text)
            self.assertNotEqual(rc, 0, text)
            self.assertEqual(out, "", text)
            self.assertEqual(err, want, text)


if __name__ == "__main__":
    unittest.main()
