"""Repl sessions with real VMs: one Python interpreter kept across a session's execs (globals
survive, each call has its own stdin, stdout, stderr and exit status), its children killed after
each call while it stays, exit() and a timeout ending it and the session, a language without a
repl refused, fork (both children see the parent's globals, each its own copy, `random`
reseeded) and pause/resume keeping it, the Python client and opctl."""
import json
import os
import subprocess
import sys
import unittest

from opdtest import OPCTL, SOURCE, Opd
from test_stream import conforms
from test_warm import create_snapshot, wait_serving

sys.path.insert(0, os.path.join(SOURCE, "clients", "python"))
import opd_client  # noqa: E402

CONFIG = {"pool.sizes": "python=1,bash=0,node=0,c=0", "max_vms": "6", "session.max": "6",
          "session.max_per_uid": "6", "session.fork_max": "3", "restore_timeout_ms": "120000",
          "queue_timeout_ms": "300000", "idle_timeout_ms": "0"}


class SessionRepl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd(CONFIG)
        cls.version = create_snapshot(cls.opd, "python")
        wait_serving(cls.opd, "python", cls.version)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def tearDown(self):
        for s in self.opd.call({"op": "session_list"})["sessions"]:
            self.opd.call({"op": "session_close", "session": s["session"]})

    def open(self, **kw):
        a = self.opd.call(conforms("session-open-request", {
            "op": "session_open", "lang": "python", "repl": True, "id": "o", **kw}), timeout=600)
        self.assertTrue(a["ok"], a)
        conforms("answer", a)
        self.assertIs(a["repl"], True)
        return a["session"]

    def exec(self, sid, code, **kw):
        a = self.opd.call(conforms("session-exec-request", {
            "op": "session_exec", "session": sid, "code": code, "id": "x", **kw}), timeout=600)
        self.assertTrue(a["ok"], a)
        return conforms("answer", a)

    def test_globals_streams_and_status(self):
        sid = self.open()
        a = self.exec(sid, "x = 41\nimport sys\nprint('argv', sys.argv[1:])\n", args=["a", "b"])
        self.assertEqual((a["stdout"], a["stderr"], a["exit_code"]), ("argv ['a', 'b']\n", "", 0))
        self.assertNotIn("repl_ended", a)
        # the next call sees the globals, with its own stdin
        a = self.exec(sid, "x += 1\nprint(x, input())\n", stdin="hello\n")
        self.assertEqual(a["stdout"], "42 hello\n")
        a = self.exec(sid, "import sys\nprint(sys.stdin.read() == '', x)\n")
        self.assertEqual(a["stdout"], "True 42\n")
        # functions and classes defined in one call are used in the next
        self.exec(sid, "def double(v):\n    return 2 * v\nclass P:\n    pass\n")
        a = self.exec(sid, "import pickle\nprint(double(x), type(pickle.loads(pickle.dumps(P()))).__name__)")
        self.assertEqual(a["stdout"], "84 P\n")
        # an uncaught exception: a traceback on stderr, exit code 1, the globals survive
        a = self.exec(sid, "print('before')\ny = 1 / 0\n")
        self.assertEqual(a["exit_code"], 1)
        self.assertEqual(a["stdout"], "before\n")
        self.assertIn("Traceback (most recent call last):", a["stderr"])
        self.assertIn("ZeroDivisionError", a["stderr"])
        self.assertNotIn("python.py", a["stderr"])  # none of the runner's frames
        self.assertNotIn("repl_ended", a)
        a = self.exec(sid, "print(x, 'y' in globals())\n")
        self.assertEqual((a["stdout"], a["exit_code"]), ("42 False\n", 0))
        # a syntax error is an exception too
        a = self.exec(sid, "def (:\n")
        self.assertEqual(a["exit_code"], 1)
        self.assertIn("SyntaxError", a["stderr"])
        # the files of the session's directory, as in any session
        self.exec(sid, "open('f.txt', 'w').write(str(x))")
        self.assertEqual(self.exec(sid, "print(open('f.txt').read())")["stdout"], "42\n")
        listed = [s for s in self.opd.call({"op": "session_list"})["sessions"]
                  if s["session"] == sid]
        self.assertIs(listed[0]["repl"], True)

    def test_children_killed_interpreter_kept(self):
        sid = self.open()
        a = self.exec(sid, "import os, subprocess\n"
                           "p = subprocess.Popen(['sleep', '1000'])\n"
                           "me = os.getpid()\nprint(p.pid)\n")
        child = int(a["stdout"])
        a = self.exec(sid, f"import os\nprint(os.getpid() == me, os.path.exists('/proc/{child}'))")
        self.assertEqual(a["stdout"], "True False\n")
        # as the program user, in the session's directory
        a = self.exec(sid, "import os\nprint(os.getuid() != 0, os.getcwd() == os.environ['HOME'])")
        self.assertEqual(a["stdout"], "True True\n")
        # in each call's own cgroup (the run's limits), as a program of an exec is
        groups = [self.exec(sid, "print(open('/proc/self/cgroup').read().strip())")["stdout"]
                  for _ in range(2)]
        for g in groups:
            self.assertIn("/op-run-", g)
        self.assertNotEqual(groups[0], groups[1])

    def test_exit_ends_the_session(self):
        sid = self.open()
        self.exec(sid, "x = 1")
        a = self.exec(sid, "print('bye')\nimport sys\nsys.exit(3)\n")
        self.assertEqual((a["stdout"], a["exit_code"], a["repl_ended"]), ("bye\n", 3, True))
        a = self.opd.call({"op": "session_exec", "session": sid, "code": "print(x)", "id": 1})
        self.assertEqual(a["error"]["code"], "not_found", a)

    def test_timeout_ends_the_session(self):
        sid = self.open()
        self.exec(sid, "x = 1")
        a = self.exec(sid, "while True:\n    pass\n", timeout_ms=1500)
        self.assertTrue(a["timed_out"], a)
        self.assertIs(a["repl_ended"], True)
        a = self.opd.call({"op": "session_exec", "session": sid, "code": "print(x)", "id": 1})
        self.assertEqual(a["error"]["code"], "not_found", a)

    def test_language_without_repl_refused(self):
        a = self.opd.call({"op": "session_open", "lang": "bash", "repl": True, "id": 1})
        self.assertFalse(a["ok"], a)
        self.assertEqual(a["error"]["code"], "bad_request", a)
        self.assertIn("bash has no repl sessions", a["error"]["message"])
        self.assertIn("python", a["error"]["message"])
        a = self.opd.call({"op": "session_open", "lang": "python", "repl": 1, "id": 1})
        self.assertEqual(a["error"]["code"], "bad_request", a)

    def test_fork_copies_the_interpreter(self):
        sid = self.open()
        self.exec(sid, "import random\nx = 'parent'\nrandom.seed(7)\n")
        a = self.opd.call({"op": "session_fork", "session": sid, "count": 2, "id": "f"},
                          timeout=600)
        self.assertTrue(a["ok"], a)
        kids = a["forks"]
        # both children see the parent's globals; a change in one is not seen in the other
        self.exec(kids[0], "x = 'kid0'")
        self.assertEqual(self.exec(kids[1], "print(x)")["stdout"], "parent\n")
        self.assertEqual(self.exec(kids[0], "print(x)")["stdout"], "kid0\n")
        self.assertEqual(self.exec(sid, "print(x)")["stdout"], "parent\n")
        listed = {s["session"]: s for s in self.opd.call({"op": "session_list"})["sessions"]}
        for k in kids:
            self.assertIs(listed[k]["repl"], True)
        # the parent's generator was seeded; each child's copy is reseeded at its first call
        draws = [self.exec(s, "print(random.random())")["stdout"] for s in [sid] + kids]
        self.assertEqual(len(set(draws)), 3, draws)

    def test_pause_resume_keeps_the_interpreter(self):
        sid = self.open()
        self.exec(sid, "import os\nx = 5\nme = os.getpid()")
        a = self.opd.call({"op": "session_pause", "session": sid, "id": "p"}, timeout=600)
        self.assertTrue(a["ok"], a)
        a = self.opd.call({"op": "session_resume", "session": sid, "id": "r"}, timeout=600)
        self.assertTrue(a["ok"], a)
        a = self.exec(sid, "print(x, os.getpid() == me)")
        self.assertEqual(a["stdout"], "5 True\n")

    def test_python_client_and_opctl(self):
        with opd_client.Client(self.opd.socket) as c:
            with c.open_session("python", repl=True) as s:
                s.run("n = 10")
                r = s.run("print(n * 2)")
                self.assertEqual(r.stdout, "20\n")
                self.assertFalse(r.repl_ended)
                self.assertTrue(s.run("raise SystemExit(0)").repl_ended)

        def opctl(*args):
            p = subprocess.run([OPCTL, "--socket", self.opd.socket, *args], capture_output=True,
                               text=True, timeout=600)
            self.assertEqual(p.returncode, 0, (args, p.stdout, p.stderr))
            return p.stdout

        sid = opctl("session", "open", "--lang", "python", "--repl").strip()
        opctl("session", "exec", sid, "-c", "v = 'kept'")
        self.assertEqual(opctl("session", "exec", sid, "-c", "print(v)"), "kept\n")
        listed = json.loads(opctl("session", "list", "--json"))
        self.assertTrue(any(s["session"] == sid and s.get("repl") for s in listed["sessions"]),
                        listed)
        opctl("session", "close", sid)


if __name__ == "__main__":
    unittest.main()
