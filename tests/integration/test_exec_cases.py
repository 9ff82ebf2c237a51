"""exec_cases with real VMs: a C program compiled once by opd, each case run in a fresh copy of
the compiled VM, the answers as "case" events in order and then the request's own answer; a
compile error answered once with no case run; what one case writes no other sees; over the
limits and quotas refused with nothing held; the connection closing ends it and every VM it
holds; another uid's quotas are its own."""
import grp
import json
import os
import subprocess
import sys
import unittest

from opdtest import OPCTL, SOURCE, Opd, wait_for
from test_session_fork import create_snapshot, wait_serving
from test_stream import conforms

sys.path.insert(0, os.path.join(SOURCE, "clients", "python"))
import opd_client  # noqa: E402

USERS = grp.getgrnam("users").gr_gid
# up to session.fork_max + 1 = 3 sessions and VMs at once; nobody may hold 3 VMs
CONFIG = {"pool.sizes": "c=1,python=0,bash=0,node=0", "max_vms": "9", "session.max": "8",
          "session.max_per_uid": "6", "session.fork_max": "2", "max_vms_per_uid": "3",
          "limit.cases_max": "20", "restore_timeout_ms": "120000", "socket_mode": "0666",
          "access.group": "users"}

# Sums the numbers on stdin and prints its first argument, the sum and whether case.txt is
# there; "write" makes it write case.txt first, "sleep" makes it sleep before it answers.
SUM = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        const char *what = argc > 1 ? argv[1] : "-";
        long x, sum = 0;

        while (scanf("%ld", &x) == 1)
                sum += x;
        if (strcmp(what, "write") == 0) {
                FILE *f = fopen("case.txt", "w");
                fputs("written", f);
                fclose(f);
        }
        if (strcmp(what, "sleep") == 0)
                sleep(55);
        printf("%s %ld %s\n", what, sum, access("case.txt", F_OK) == 0 ? "seen" : "unseen");
        return 0;
}
"""

# A client of uid nobody: sends each request and reads frames until its answer; prints them all.
NOBODY = r"""
import json, os, socket, struct, sys
os.setgroups([int(sys.argv[1])])
os.setgid(int(sys.argv[1]))
os.setuid(65534)
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[2])
out = []
for req in json.loads(sys.argv[3]):
    b = json.dumps(req).encode()
    s.sendall(struct.pack(">I", len(b)) + b)
    while True:
        n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
        f = json.loads(s.recv(n, socket.MSG_WAITALL))
        out.append(f)
        if "ok" in f:
            break
print(json.dumps(out))
"""


def as_nobody(opd, reqs):
    p = subprocess.run([sys.executable, "-c", NOBODY, str(USERS), opd.socket, json.dumps(reqs)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def cases_req(cases, **kw):
    return conforms("exec-cases-request", dict({"op": "exec_cases", "id": "C", "lang": "c",
                                                "code": SUM, "cases": cases}, **kw))


class ExecCases(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd(CONFIG)
        os.chmod(cls.opd.dir, 0o755)
        cls.version = create_snapshot(cls.opd, "c")
        wait_serving(cls.opd, "c", cls.version)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def frames(self, req, client=None):
        """The events and the answer to req, in the order opd sent them."""
        c = client or self.opd.client(timeout=900)
        try:
            c.send(req)
            out = []
            while True:
                f = c.recv()
                self.assertIsNotNone(f, "opd closed the connection")
                out.append(f)
                if "ok" in f:
                    return out
        finally:
            if client is None:
                c.close()

    def held(self):
        """Sessions open (any uid, opd's own included), from status."""
        st = self.opd.call({"op": "status"})
        return st["sessions"]["open"]

    def test_cases_answered_in_order(self):
        cases = [{"stdin": " ".join(str(k) for k in range(i + 1)), "args": [f"c{i}"]}
                 for i in range(7)]
        out = self.frames(cases_req(cases))
        events, answer = out[:-1], out[-1]
        conforms("answer", answer)
        self.assertTrue(answer["ok"], answer)
        self.assertEqual(answer["status"], "ok")
        self.assertEqual(answer["compile"]["exit_code"], 0)
        # the compile session and session.fork_max (2) more at once
        self.assertEqual(answer["cases"], {"count": 7, "run": 7, "ok": 7, "failed": 0,
                                           "at_once": 3})
        self.assertEqual([e["case"] for e in events], list(range(7)))
        for i, e in enumerate(events):
            conforms("event", e)
            self.assertEqual(e["id"], "C")
            self.assertEqual(e["event"], "case")
            r = e["result"]
            self.assertTrue(r["ok"], r)
            self.assertEqual(r["status"], "ok", r)
            self.assertNotIn("compile", r)  # compiled once, before the cases
            self.assertNotIn("session", r)
            self.assertEqual(r["stdout"], f"c{i} {i * (i + 1) // 2} unseen\n")
        self.assertEqual(self.held(), 0)
        self.assertEqual(self.opd.call({"op": "session_list"})["sessions"], [])

    def test_compile_error_answered_once(self):
        out = self.frames(cases_req([{"stdin": "1"}] * 4, code="int main(void) { return missing; }\n"))
        self.assertEqual(len(out), 1, out)  # no case event: nothing ran
        a = conforms("answer", out[0])
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["status"], "compile_error")
        self.assertIn("missing", a["compile"]["stderr"])
        self.assertEqual(a["cases"], {"count": 4, "run": 0, "ok": 0, "failed": 0})
        self.assertEqual(self.held(), 0)
        with opd_client.Client(self.opd.socket, timeout=900) as cl:
            compiled, results = cl.run_cases("c", "int main(void) { return missing; }\n",
                                             [{"stdin": "1"}] * 3)
            self.assertEqual(compiled.status, "compile_error")
            self.assertEqual(results, [])

    def test_a_case_does_not_see_another_cases_files(self):
        # case 0 runs in the compiled VM itself, after it was saved: the others do not see it
        with opd_client.Client(self.opd.socket, timeout=900) as cl:
            compiled, results = cl.run_cases("c", SUM, [
                {"stdin": "1 2", "args": ["write"]}, {"stdin": "3", "args": ["look"]},
                {"args": ["write"]}, {"args": ["look"], "files": {"in.txt": "x"}},
                {"stdin": "", "args": ["look"]}])
            self.assertEqual(compiled.status, "ok")
            self.assertEqual([r.stdout for r in results],
                             ["write 3 seen\n", "look 3 unseen\n", "write 0 seen\n",
                              "look 0 unseen\n", "look 0 unseen\n"])
            self.assertEqual(cl.sessions(), [])
        self.assertEqual(self.held(), 0)

    def test_refusals(self):
        for req, code, text in [
                (dict(cases_req([{}]), cases=[{}] * 21), "bad_request", "limit.cases_max"),
                (dict(cases_req([{}]), cases=[]), "bad_request", '"cases" is empty'),
                (dict(cases_req([{}]), cases=[{"code": SUM}]), "bad_request",
                 'unknown field "code" in cases[0]'),
                (dict(cases_req([{}]), cases=[{}, {"timeout_ms": 10 ** 9}]), "bad_request",
                 "cases[1]"),
                (dict(cases_req([{}]), stream=True), "bad_request", 'unknown field "stream"'),
                (dict(cases_req([{}]), lang="python", code="print(1)"), "bad_request",
                 "no compile step"),
                (dict(cases_req([{}]), lang="cobol"), "unknown_language", "cobol"),
        ]:
            out = self.frames(req)
            self.assertEqual(len(out), 1, out)
            self.assertFalse(out[0]["ok"], out)
            self.assertEqual(out[0]["error"]["code"], code, out)
            self.assertIn(text, out[0]["error"]["message"])
        self.assertEqual(self.held(), 0)

    def test_quota_refused_cleanly_and_per_uid(self):
        # nobody holds max_vms_per_uid (3) VMs in sessions: not one more fits
        opened = as_nobody(self.opd, [{"op": "session_open", "lang": "c", "id": i}
                                      for i in range(3)])
        self.assertTrue(all(a["ok"] for a in opened), opened)
        sids = [a["session"] for a in opened]
        out = as_nobody(self.opd, [dict(cases_req([{}] * 3), id=2)] +
                        [{"op": "session_close", "session": sid, "id": 3} for sid in sids])
        self.assertEqual(len(out), 4, out)  # no event: nothing ran
        self.assertFalse(out[0]["ok"], out)
        self.assertEqual(out[0]["error"]["code"], "quota_exceeded")
        self.assertIn("max_vms_per_uid", out[0]["error"]["message"])
        self.assertTrue(all(a["ok"] for a in out[1:]), out)
        self.assertEqual(self.held(), 0)
        # with one session of its own kept, fewer run at once (2 of its 3 VMs)
        sid = as_nobody(self.opd, [{"op": "session_open", "lang": "c", "id": 1}])[0]["session"]
        out = as_nobody(self.opd, [dict(cases_req([{"stdin": "2"}, {"stdin": "3"},
                                                   {"stdin": "4"}]), id=4),
                                   {"op": "session_close", "session": sid, "id": 5}])
        self.assertEqual([f["result"]["stdout"] for f in out[:-2]],
                         ["- 2 unseen\n", "- 3 unseen\n", "- 4 unseen\n"])
        self.assertEqual(out[-2]["cases"]["ok"], 3, out)
        self.assertEqual(out[-2]["cases"]["at_once"], 2, out)
        self.assertTrue(out[-1]["ok"], out)

    def test_disconnect_ends_it_and_another_uid_runs_meanwhile(self):
        # case 0 answers at once; the others sleep: they are running when the client goes
        c = self.opd.client(timeout=900)
        c.send(cases_req([{"stdin": "1"}] + [{"args": ["sleep"], "timeout_ms": 60000}] * 19))
        first = c.recv()
        self.assertEqual(first.get("event"), "case", first)
        self.assertEqual(first["result"]["stdout"], "- 1 unseen\n")
        self.assertGreater(self.held(), 0)
        # meanwhile nobody runs its own cases: root's request takes nothing from its quotas
        out = as_nobody(self.opd, [dict(cases_req([{"stdin": "5"}, {"stdin": "6"}]), id=1)])
        self.assertEqual([f["result"]["stdout"] for f in out[:-1]],
                         ["- 5 unseen\n", "- 6 unseen\n"])
        c.close()
        # every session and its VM goes with the connection (the sleeping cases would take 55 s)
        def released():
            st = self.opd.call({"op": "status"})
            # no session, and no VM but the c pool's one clone
            return st["sessions"]["open"] == 0 and st["counters"]["active_vms"] <= 1
        wait_for(released, 30, lambda: f"nothing held: {self.opd.call({'op': 'status'})}")
        self.assertIn("its connection closed", self.opd.read_log())

    def test_opctl(self):
        def opctl(*args, code=0, stdin=None):
            p = subprocess.run([OPCTL, "--socket", self.opd.socket, *args], capture_output=True,
                               text=True, timeout=900, input=stdin)
            self.assertEqual(p.returncode, code, (args, p.stdout, p.stderr))
            return p

        p = opctl("cases", "-", "--lang", "c", "-c", SUM, "--case", "7 8", "-a", "x",
                  stdin='{"stdin": "1 2"}\n{"stdin": "3", "args": ["y"]}\n')
        lines = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual([(a["case"], a["stdout"]) for a in lines],
                         [(0, "x 3 unseen\n"), (1, "y 3 unseen\n"), (2, "x 15 unseen\n")])
        self.assertIn("3 cases, 3 ok, 0 failed", p.stderr)
        p = opctl("cases", "--lang", "c", "-c", "int main(void) { return missing; }",
                  "--case", "1", code=1)
        self.assertIn("missing", p.stderr)
        self.assertEqual(p.stdout, "")
        p = opctl("cases", "--lang", "c", "-c", SUM, "--case", "1", "-a", "sleep",
                  "--timeout", "0.5", code=1)
        self.assertEqual(json.loads(p.stdout)["status"], "timeout")
        self.assertIn("no case given", opctl("cases", "--lang", "c", "-c", SUM, code=2).stderr)
        self.assertIn("--case goes with cases",
                      opctl("run", "--lang", "c", "-c", SUM, "--case", "1", code=2).stderr)


if __name__ == "__main__":
    unittest.main()
