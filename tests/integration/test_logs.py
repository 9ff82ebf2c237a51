"""Logs: one line per request with id, language, mode, outcome and timings; syslog priority
prefixes when stderr is the journal ($JOURNAL_STREAM), timestamped human text otherwise."""
import unittest

from opdtest import Opd


class Logs(unittest.TestCase):
    def request_line(self, opd):
        a = opd.run("bash", "echo hi", mode="warm", id="log-1\nforged")
        self.assertEqual(a["error"]["code"], "pool_exhausted")
        lines = [l for l in opd.read_log().splitlines() if "exec id=" in l]
        self.assertEqual(len(lines), 1, lines)
        return lines[0]

    def test_journal_format(self):
        opd = Opd({"pool.size": "0"}, journal=True)
        try:
            line = self.request_line(opd)
        finally:
            opd.stop()
        self.assertRegex(line, r"^<6>exec id=log-1\?forged lang=bash mode=cold "
                               r"outcome=pool_exhausted exit=\d+ queue=[\d.]+ms "
                               r"boot_or_resume=[\d.]+ms run=[\d.]+ms total=[\d.]+ms$")
        for l in opd.read_log().splitlines():
            self.assertRegex(l, r"^<[0-7]>", l)

    def test_human_format(self):
        # set, but naming another stream: not the journal
        opd = Opd({"pool.size": "0"}, env={"JOURNAL_STREAM": "8:12345"})
        try:
            line = self.request_line(opd)
        finally:
            opd.stop()
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z opd info: exec id=log-1\?forged ")


if __name__ == "__main__":
    unittest.main()
