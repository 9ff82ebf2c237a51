"""Metrics: the `metrics` op, the metrics.listen HTTP endpoint, and the loopback-only check."""
import os
import pwd
import re
import socket
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request

from opdtest import ensure_opd_user, free_port, OPD, Opd


def samples(text):
    """{(name, frozenset(labels)): value} from a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def get(s, name, **labels):
    return s.get((name, frozenset(labels.items())))


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.opd = Opd({"pool.size": "0", "metrics.listen": f"127.0.0.1:{cls.port}",
                       "languages.enabled": "bash,python"})
        a = cls.opd.run("bash", "echo hi", mode="cold")
        assert a["ok"], a
        a = cls.opd.run("no-such-language", "x", mode="cold")
        assert a["error"]["code"] == "unknown_language", a

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def via_op(self):
        a = self.opd.call({"op": "metrics", "id": 7})
        self.assertEqual((a["ok"], a["id"], a["format"]), (True, 7, "prometheus-text-0.0.4"))
        return a["text"]

    def via_http(self, path="/metrics"):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertIn("text/plain", r.headers["Content-Type"])
            return r.read().decode()

    def check(self, text):
        s = samples(text)
        self.assertIn("# TYPE opd_exec_duration_ms histogram", text)
        self.assertIn("# HELP opd_exec_requests_total ", text)
        self.assertEqual(get(s, "opd_exec_requests_total", lang="bash", outcome="ok"), 1)
        self.assertEqual(get(s, "opd_exec_requests_total", lang="bash", outcome="timeout"), 0)
        # A request for an unknown language is refused before it has a language: not counted.
        self.assertFalse([k for k in s if k[0] == "opd_exec_requests_total"
                          and ("lang", "no-such-language") in k[1]])
        self.assertFalse([k for k in s if k[0] == "opd_exec_requests_total"
                          and ("outcome", "unknown_language") in k[1] and s[k] != 0])
        lab = {"lang": "bash", "mode": "cold", "phase": "total"}
        self.assertEqual(get(s, "opd_exec_duration_ms_count", **lab), 1)
        self.assertGreater(get(s, "opd_exec_duration_ms_sum", **lab), 0)
        les = ["1", "2", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
               "10000", "+Inf"]
        counts = [get(s, "opd_exec_duration_ms_bucket", le=le, **lab) for le in les]
        self.assertEqual(counts, sorted(counts), "buckets are cumulative")
        self.assertEqual(counts[-1], 1)
        self.assertEqual(get(s, "opd_exec_duration_ms_count", lang="bash", mode="warm",
                             phase="total"), 0)
        # The exec series of the languages opd serves (image there, enabled), 0 before their
        # first exec (rate() counts it then), and of none other: a language of the catalogue
        # that is not served (node: not enabled here) is not listed.
        st = self.opd.call({"op": "status"})
        served = {la["name"] for la in st["languages"] if la["available"] and la["enabled"]}
        self.assertIn("bash", served)
        self.assertNotIn("node", served)
        buckets = [k for k in s if k[0] == "opd_exec_duration_ms_bucket"]
        self.assertEqual(len(buckets), 14 * 2 * 4 * len(served))
        self.assertEqual({dict(k[1])["lang"] for k in buckets}, served)
        self.assertEqual({dict(k[1])["lang"] for k in s if k[0] == "opd_exec_requests_total"},
                         served)
        for lang in served - {"bash"}:
            self.assertEqual(get(s, "opd_exec_requests_total", lang=lang, outcome="ok"), 0)
            self.assertEqual(get(s, "opd_exec_duration_ms_count", lang=lang, mode="warm",
                                 phase="total"), 0)
        self.assertEqual(get(s, "opd_pool_target", lang="bash"), 0)
        self.assertGreaterEqual(get(s, "opd_vms_started_total", ), 1)
        self.assertGreaterEqual(get(s, "opd_connections_total"), 2)
        self.assertEqual(get(s, "opd_queued"), 0)
        self.assertIn("opd_info{", text)

    def test_op(self):
        self.check(self.via_op())

    def test_http(self):
        self.check(self.via_http())

    def test_http_404(self):
        with self.assertRaises(urllib.error.HTTPError) as e:
            self.via_http("/other")
        self.assertEqual(e.exception.code, 404)

    def test_op_refuses_fields(self):
        a = self.opd.call({"op": "metrics", "id": 1, "x": 1})
        self.assertEqual(a["error"]["code"], "bad_request")

    def test_opctl(self):
        opctl = os.path.join(os.path.dirname(OPD), "..", "cli", "opctl")
        p = subprocess.run([opctl, "--socket", self.opd.socket, "metrics"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('opd_exec_requests_total{lang="bash",outcome="ok"} 1\n', p.stdout)


class Listen(unittest.TestCase):
    def check_config(self, value):
        return subprocess.run([OPD, "--check-config", "--set", f"metrics.listen={value}"],
                              capture_output=True, text=True, timeout=30)

    def test_non_loopback_refused(self):
        for bad in ("10.0.0.1:80", "0.0.0.0:9464", "localhost:9464", "[::]:80",
                    "127.0.0.1:99999", "unix:relative"):
            p = self.check_config(bad)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn("metrics.listen", p.stderr)
            self.assertIn("loopback", p.stderr)

    def test_loopback_accepted(self):
        for good in ("127.0.0.1:9464", "[::1]:9464", "unix:/run/opd/metrics.sock"):
            p = self.check_config(good)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(f"metrics.listen = {good}\n", p.stdout)

    def test_unix_socket(self):
        d = tempfile.mkdtemp(prefix="opd-metrics-")
        if os.geteuid() == 0:
            # opd binds as root and then runs as jail.user: it removes its socket at stop from a
            # directory that user may write
            ensure_opd_user()
            os.chown(d, pwd.getpwnam("opd").pw_uid, pwd.getpwnam("opd").pw_gid)
        path = os.path.join(d, "m.sock")
        opd = Opd({"pool.size": "0", "metrics.listen": f"unix:{path}"}, wait_accel=False)
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.0 200"), data[:200])
            self.assertIn(b"opd_uptime_seconds", data)
        finally:
            opd.stop()
        self.assertFalse(os.path.exists(path))


if __name__ == "__main__":
    unittest.main()
