"""packaging/prometheus/opd-rules.yml with a real Prometheus (Debian's prometheus package): the
rules pass promtool's check and unit tests, and a Prometheus scraping a real opd's
metrics.listen evaluates them: every rule healthy, the recording rules fed by opd's series, and
the empty-pool alert pending for a pool that has no snapshot."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse
import urllib.request

from opdtest import SOURCE, Opd, free_port, wait_for

RULES_DIR = os.path.join(SOURCE, "packaging", "prometheus")
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


@unittest.skipUnless(PROMTOOL, "promtool not installed (Debian package prometheus; scripts/deps)")
class Rules(unittest.TestCase):
    def test_check_rules(self):
        p = subprocess.run([PROMTOOL, "check", "rules", "opd-rules.yml"], cwd=RULES_DIR,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_rule_unit_tests(self):
        p = subprocess.run([PROMTOOL, "test", "rules", "opd-rules.test.yml"], cwd=RULES_DIR,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


@unittest.skipUnless(PROMETHEUS, "prometheus not installed (Debian package prometheus; scripts/deps)")
class Scrape(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.metrics_port, cls.prom_port = free_port(), free_port()
        # bash's pool wants a clone and has no snapshot (and none is made): it stays empty
        cls.opd = Opd({"pool.size": "1", "languages.enabled": "bash",
                       "metrics.listen": f"127.0.0.1:{cls.metrics_port}"})
        cls.dir = tempfile.mkdtemp(prefix="opd-prometheus-")
        conf = os.path.join(cls.dir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    f"rule_files:\n  - {os.path.join(RULES_DIR, 'opd-rules.yml')}\n"
                    "scrape_configs:\n  - job_name: opd\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{cls.metrics_port}']\n")
        cls.log = open(os.path.join(cls.dir, "prometheus.log"), "w")
        cls.prom = subprocess.Popen(
            [PROMETHEUS, f"--config.file={conf}",
             f"--storage.tsdb.path={os.path.join(cls.dir, 'data')}",
             f"--web.listen-address=127.0.0.1:{cls.prom_port}"],
            stdout=cls.log, stderr=subprocess.STDOUT)

    @classmethod
    def tearDownClass(cls):
        cls.prom.terminate()
        try:
            cls.prom.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cls.prom.kill()
            cls.prom.wait()
        cls.log.close()
        cls.opd.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)["data"]
        except OSError:
            return None

    def query(self, q):
        d = self.api("query", query=q)
        return d["result"] if d else []

    def prom_log(self):
        with open(os.path.join(self.dir, "prometheus.log")) as f:
            return f.read()[-3000:]

    def test_scrape_and_rules(self):
        # the target is scraped and up
        wait_for(lambda: [t for t in (self.api("targets") or {}).get("activeTargets", [])
                          if t["health"] == "up"], 300,
                 lambda: f"opd's target to be up:\n{self.prom_log()}", step=0.5)
        info = wait_for(lambda: self.query("opd_info"), 300, "opd_info", step=0.5)
        self.assertEqual(info[0]["metric"]["accel"], "tcg")
        # one exec, so that the request and latency series move
        a = self.opd.run("bash", "echo hi")
        self.assertTrue(a["ok"], a)
        wait_for(lambda: self.query('opd:exec_requests:rate5m{lang="bash", outcome="ok"} > 0'),
                 300, lambda: f"the exec in opd:exec_requests:rate5m:\n{self.prom_log()}",
                 step=0.5)
        wait_for(lambda: self.query(
            'opd:exec_duration_ms:p99_5m{lang="bash", mode="cold", phase="total"} > 0'),
            300, "the exec in opd:exec_duration_ms:p99_5m", step=0.5)

        # every rule was evaluated against opd's series without error
        def all_evaluated():
            groups = (self.api("rules") or {}).get("groups", [])
            rules = [r for g in groups for r in g["rules"]]
            if not rules or any(r.get("lastEvaluation", "").startswith("0001") for r in rules):
                return None
            return rules
        rules = wait_for(all_evaluated, 300,
                         lambda: f"every rule to be evaluated:\n{self.prom_log()}", step=0.5)
        self.assertEqual(len(rules), 14)
        for r in rules:
            self.assertEqual(r["health"], "ok", r)
        # the empty bash pool: OpdPoolEmpty pending (it fires after 10 minutes)
        alert = wait_for(lambda: [x for x in (self.api("alerts") or {}).get("alerts", [])
                                  if x["labels"]["alertname"] == "OpdPoolEmpty"], 300,
                         lambda: f"OpdPoolEmpty: {self.api('alerts')}", step=0.5)
        self.assertEqual(alert[0]["labels"]["lang"], "bash")
        self.assertIn(alert[0]["state"], ("pending", "firing"))


if __name__ == "__main__":
    unittest.main()
