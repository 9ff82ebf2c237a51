"""bench/languages --from-json merges the raw files of separate runs into docs/benchmarks.md's
languages section: every row of every file, each row as its own run wrote it, and the batches
the runs recorded (their languages, times and load average) listed above the table. No opd or
image is needed: the rows are made up."""
import json
import os
import subprocess
import tempfile
import unittest

from opdtest import SOURCE

BENCH = os.path.join(SOURCE, "bench", "languages")


def row(walls, compile_ms=()):
    return {"version": "1.0", "accel": "tcg", "snapshot_s": 12.0, "walls": list(walls),
            "guest": list(walls), "compile": list(compile_ms), "rss": 90.0, "pss": 80.0,
            "mem_apparent": 512.0, "mem_disk": 85.0, "memory_mb": 512, "warm": False,
            "last_prime_ms": 30.0, "rootfs": 503.0}


class BenchLanguagesMerge(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="bench-languages-")
        # a file as runs before batches were recorded wrote it, and one run's with its batch
        self.old = self.write("old.json", {"runs": 5, "when": ["2026-11-27 05:33 UTC"],
                                           "cpu": ["AMD EPYC"],
                                           "results": {"bash": row([60, 130, 250])}})
        self.new = self.write("new.json", {
            "runs": 5, "when": "2026-12-03 16:56 UTC", "cpu": "AMD EPYC",
            "batches": [{"start": "2026-12-03 16:56 UTC", "end": "2026-12-03 17:01 UTC",
                         "langs": ["nim", "fortran"], "runs": 5, "load": [1.08, 2.72, 4.82],
                         "failed": {"fortran": "fortran: snapshot failed"}}],
            "results": {"nim": row([64000, 55000, 89000], [63900, 54900, 88900])}})

    def write(self, name, raw):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(raw, f)
        return path

    def merge(self, out, *files):
        out = os.path.join(self.dir, out)
        subprocess.run([BENCH, "--from-json", *files, "--out", out], check=True,
                       capture_output=True, text=True, timeout=60)
        with open(out) as f:
            md = f.read()
        with open(os.path.splitext(out)[0] + "-languages.json") as f:
            return md, json.load(f)

    def table_rows(self, md):
        return [line for line in md.splitlines() if line.startswith("| ") and
                not line.startswith("| language")]

    def test_rows_kept_and_batches_listed(self):
        alone, _ = self.merge("alone.md", self.old)
        md, raw = self.merge("merged.md", self.old, self.new)
        bash_row = self.table_rows(alone)
        self.assertEqual(len(bash_row), 1)
        rows = self.table_rows(md)
        self.assertEqual(rows[0], bash_row[0])  # catalogue order: bash before nim
        self.assertTrue(rows[1].startswith("| nim | 1.0 | 64000 | 55000 | 89000 | 63900 |"),
                        rows)
        self.assertEqual(len(rows), 2)
        self.assertIn("- 2026-12-03 16:56 UTC to 17:01 UTC: nim, fortran (5 requests each); "
                      "load 1.1, 2.7, 4.8; fortran failed: fortran: snapshot failed", md)
        self.assertNotIn("Runs that recorded", alone)
        self.assertEqual(raw["when"], ["2026-11-27 05:33 UTC", "2026-12-03 16:56 UTC"])
        self.assertEqual(set(raw["results"]), {"bash", "nim"})
        # the merged file alone renders the same section again
        again, _ = self.merge("again.md", os.path.join(self.dir, "merged-languages.json"))
        self.assertEqual(again, md)
        self.assertEqual(md.count("nim, fortran (5 requests each)"), 1)


if __name__ == "__main__":
    unittest.main()
