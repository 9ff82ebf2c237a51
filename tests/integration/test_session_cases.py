"""Compile once, run many, with real VMs: session_exec "phase": "compile" builds a C program once
in a session, the session is forked, and each test case runs the built program in its own fork
("phase": "run"); a compile error is answered once and nothing runs; a file written by one case is
not seen by another; more cases than session.fork_max are refused. (The exec_cases operation,
which does it all inside opd, and the Python client's run_cases() on it: test_exec_cases.py.)"""
import os
import subprocess
import sys
import time
import unittest

from opdtest import OPCTL, SOURCE, Opd
from test_session_fork import create_snapshot, wait_serving
from test_stream import conforms

sys.path.insert(0, os.path.join(SOURCE, "clients", "python"))
import opd_client  # noqa: E402

CONFIG = {"pool.sizes": "c=1,python=0,bash=0,node=0", "max_vms": "8", "session.max": "7",
          "session.max_per_uid": "7", "session.fork_max": "5", "restore_timeout_ms": "120000"}

# Reads numbers on stdin, prints their sum and its first argument; "write" as its argument makes
# it write a file, "look" reports whether that file exists; it says so if its source (main.c) was
# emptied or removed.
SUM = r"""
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        long x, sum = 0;
        struct stat st;

        while (scanf("%ld", &x) == 1)
                sum += x;
        if (argc > 1 && strcmp(argv[1], "write") == 0) {
                FILE *f = fopen("case.txt", "w");
                fputs("written", f);
                fclose(f);
        }
        if (stat("main.c", &st) < 0 || st.st_size == 0)
                puts("the source is gone");
        printf("%s %ld %s\n", argc > 1 ? argv[1] : "-", sum,
               access("case.txt", F_OK) == 0 ? "seen" : "unseen");
        return 0;
}
"""


class SessionCases(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd(CONFIG)
        cls.version = create_snapshot(cls.opd, "c")
        wait_serving(cls.opd, "c", cls.version)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def call(self, req, timeout=600):
        return self.opd.call(dict(req, id=req.get("id", "r")), timeout=timeout)

    def open(self):
        a = self.call({"op": "session_open", "lang": "c"})
        self.assertTrue(a["ok"], a)
        self.addCleanup(self.close, a["session"])
        return a["session"]

    def close(self, sid):
        self.call({"op": "session_close", "session": sid})

    def test_compile_once_run_five_cases(self):
        t0 = time.monotonic()
        sid = self.open()
        c = self.call(conforms("session-exec-request", {
            "op": "session_exec", "session": sid, "phase": "compile", "code": SUM}))
        self.assertTrue(c["ok"], c)
        conforms("answer", c)
        self.assertEqual(c["phase"], "compile")
        self.assertEqual(c["status"], "ok", c)
        self.assertEqual(c["compile"]["exit_code"], 0, c)
        self.assertEqual(c["stdout"], "")  # the program did not run
        t_compiled = time.monotonic()
        f = self.call({"op": "session_fork", "session": sid, "count": 5})
        self.assertTrue(f["ok"], f)
        kids = f["forks"]
        for k in kids:
            self.addCleanup(self.close, k)
        self.assertEqual(len(kids), 5)
        t_forked = time.monotonic()
        answers = []
        for i, k in enumerate(kids):
            a = self.call(conforms("session-exec-request", {
                "op": "session_exec", "session": k, "phase": "run",
                "stdin": " ".join(str(n) for n in range(i + 2)), "args": [f"case{i}"]}))
            self.assertTrue(a["ok"], a)
            conforms("answer", a)
            answers.append(a)
        t_done = time.monotonic()
        for i, a in enumerate(answers):
            self.assertEqual(a["phase"], "run")
            self.assertNotIn("compile", a)  # not compiled again
            self.assertEqual(a["status"], "ok", a)
            self.assertEqual(a["stdout"], f"case{i} {sum(range(i + 2))} unseen\n")
        print(f"\n5 C cases: open+compile {t_compiled - t0:.2f}s, fork {t_forked - t_compiled:.2f}s"
              f", 5 runs {t_done - t_forked:.2f}s, total {t_done - t0:.2f}s", file=sys.stderr)

    def test_compile_error_answered_once(self):
        sid = self.open()
        c = self.call({"op": "session_exec", "session": sid, "phase": "compile",
                       "code": "int main(void) { return missing; }\n"})
        self.assertTrue(c["ok"], c)
        self.assertEqual(c["status"], "compile_error", c)
        self.assertIn("missing", c["compile"]["stderr"])
        self.assertNotEqual(c["compile"]["exit_code"], 0)
        # nothing was built: a run finds no program
        r = self.call({"op": "session_exec", "session": sid, "phase": "run"})
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["status"], "runtime_error", r)
        self.assertEqual(r["exit_code"], 127, r)
        self.assertNotIn("compile", r)
        self.close(sid)
        # the client does not fork after a compile error
        with opd_client.Client(self.opd.socket, timeout=600) as cl:
            compiled, results = cl.run_cases("c", "int main(void) { return missing; }\n",
                                             [{"stdin": "1"}] * 3)
            self.assertEqual(compiled.status, "compile_error")
            self.assertEqual(results, [])
            self.assertEqual(cl.sessions(), [])

    def test_a_case_does_not_see_another_cases_files(self):
        with opd_client.Client(self.opd.socket, timeout=600) as cl:
            compiled, results = cl.run_cases("c", SUM, [
                {"stdin": "1 2", "args": ["write"]}, {"stdin": "3", "args": ["look"]},
                {"stdin": "", "args": ["look"]}])
            self.assertEqual(compiled.status, "ok")
            self.assertEqual([r.stdout for r in results],
                             ["write 3 seen\n", "look 3 unseen\n", "look 0 unseen\n"])
            self.assertEqual(cl.sessions(), [])  # the session and its forks are closed
            # in requests of 2 cases (round_size: each compiles again): the same answers
            compiled, results = cl.run_cases("c", SUM, [
                {"stdin": "1 2", "args": ["write"]}, {"stdin": "3", "args": ["look"]},
                {"stdin": "", "args": ["look"]}], round_size=2)
            self.assertEqual([r.stdout for r in results],
                             ["write 3 seen\n", "look 3 unseen\n", "look 0 unseen\n"])
            self.assertEqual(cl.sessions(), [])

    def test_opctl(self):
        def opctl(*args, code=0, stdin=None):
            p = subprocess.run([OPCTL, "--socket", self.opd.socket, *args], capture_output=True,
                               text=True, timeout=600, input=stdin)
            self.assertEqual(p.returncode, code, (args, p.stdout, p.stderr))
            return p.stdout + p.stderr

        sid = opctl("session", "open", "--lang", "c").strip()
        self.addCleanup(self.close, sid)
        opctl("session", "exec", sid, "--phase", "compile", "-c", SUM)
        kid = opctl("session", "fork", sid).strip()
        self.addCleanup(self.close, kid)
        self.assertEqual(opctl("session", "exec", kid, "--phase", "run", "-a", "x", stdin="4 5"),
                         "x 9 unseen\n")
        bad = opctl("session", "exec", kid, "--phase", "compile", "-c", "int main(void) { x }",
                    code=1)
        self.assertIn("error", bad)
        self.assertIn("no --code", opctl("session", "exec", kid, "--phase", "run", "-c", SUM,
                                         code=2))
        self.assertIn("--phase wants", opctl("session", "exec", kid, "--phase", "link", code=2))
        self.assertIn("--phase goes with session exec", opctl("run", "--lang", "c", "--phase",
                                                              "run", "-c", SUM, code=2))

    def test_refusals(self):
        sid = self.open()
        # more cases than session.fork_max
        a = self.call({"op": "session_fork", "session": sid, "count": 6})
        self.assertFalse(a["ok"], a)
        self.assertEqual(a["error"]["code"], "bad_request")
        self.assertIn("session.fork_max", a["error"]["message"])
        bad = {"op": "session_exec", "session": sid, "phase": "run", "code": SUM}
        with self.assertRaises(Exception):  # the schema says so too
            conforms("session-exec-request", bad)
        for req, text in [
                ({"phase": "link"}, '"phase" must be'),
                ({"phase": 1}, '"phase" must be'),
                ({"phase": "run", "code": SUM}, '"code" is not allowed'),
        ]:
            a = self.call(dict({"op": "session_exec", "session": sid}, **req))
            self.assertFalse(a["ok"], a)
            self.assertEqual(a["error"]["code"], "bad_request", a)
            self.assertIn(text, a["error"]["message"])
        self.close(sid)
        with opd_client.Client(self.opd.socket, timeout=600) as cl:
            # run_cases (exec_cases) holds at most limit.cases_max (32) cases in one request
            with self.assertRaises(opd_client.BadRequest) as e:
                cl.run_cases("c", SUM, [{"stdin": "1"}] * 33)
            self.assertIn("limit.cases_max", str(e.exception))
            self.assertEqual(cl.sessions(), [])


if __name__ == "__main__":
    unittest.main()
