"""Sessions saved whole, with real VMs: session_fork (the children diverge and are distinct),
session_pause and session_resume (also across an opd restart), who may use them, their quotas,
and a damaged paused session refused and removed."""
import grp
import json
import os
import socket
import struct
import subprocess
import sys
import time
import unittest

from opdtest import OPCTL, SOURCE, Opd, pool, wait_for
from test_stream import conforms

sys.path.insert(0, os.path.join(SOURCE, "clients", "python"))
import opd_client  # noqa: E402

PROBE = ("import os, time, json, socket, random\n"
         "print(json.dumps({'urandom': os.urandom(16).hex(), 'random': random.random(),"
         " 'time': time.time(), 'host': socket.gethostname()}))")


def create_snapshot(opd, lang):
    a = opd.call({"op": "snapshot", "action": "create", "lang": lang, "id": "snap"}, timeout=900)
    assert a["ok"], a
    return a["version"]


def wait_serving(opd, lang, version):
    return wait_for(
        lambda: (lambda p: p if p["snapshot"] == version and p["ready"] >= 1 else None)(
            pool(opd, lang)), 300, lambda: f"the {lang} pool to serve {version}")


# A client of another uid (nobody, in the group allowed to use opd).
CLIENT = r"""
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
    n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
    out.append(json.loads(s.recv(n, socket.MSG_WAITALL)))
print(json.dumps(out))
"""
USERS = grp.getgrnam("users").gr_gid
CONFIG = {"pool.sizes": "python=1,bash=0", "max_vms": "6", "session.max": "6",
          "session.max_per_uid": "6", "session.fork_max": "3", "restore_timeout_ms": "120000",
          "socket_mode": "0666", "access.group": "users"}


def as_nobody(opd, reqs):
    p = subprocess.run([sys.executable, "-c", CLIENT, str(USERS), opd.socket, json.dumps(reqs)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


class SessionFork(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd(CONFIG)
        os.chmod(cls.opd.dir, 0o755)
        cls.version = create_snapshot(cls.opd, "python")
        wait_serving(cls.opd, "python", cls.version)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def open(self, opd=None):
        a = (opd or self.opd).call({"op": "session_open", "lang": "python", "id": "o"},
                                   timeout=600)
        self.assertTrue(a["ok"], a)
        return a["session"]

    def exec(self, sid, code, opd=None):
        a = (opd or self.opd).call({"op": "session_exec", "session": sid, "code": code,
                                    "id": "x"}, timeout=600)
        self.assertTrue(a["ok"], a)
        return a

    def close(self, sid, opd=None):
        (opd or self.opd).call({"op": "session_close", "session": sid, "id": "c"})

    def test_fork_diverges_and_is_distinct(self):
        sid = self.open()
        self.exec(sid, "open('state.txt', 'w').write('parent')")
        a = self.opd.call(conforms("session-fork-request", {
            "op": "session_fork", "session": sid, "count": 2, "id": "f"}), timeout=600)
        self.assertTrue(a["ok"], a)
        conforms("answer", a)
        kids = a["forks"]
        self.assertEqual(len(kids), 2)
        self.assertNotIn(sid, kids)
        self.assertGreater(a["timings_ms"]["total"], 0)
        # every one sees the parent's file, and the parent runs on
        for s in [sid] + kids:
            self.assertEqual(self.exec(s, "print(open('state.txt').read())")["stdout"],
                             "parent\n")
        # a write in one fork is not seen in the other, nor in the parent
        self.exec(kids[0], "open('only0.txt', 'w').write('0')")
        self.assertEqual(self.exec(kids[1], "import os; print(os.path.exists('only0.txt'))")
                         ["stdout"], "False\n")
        self.assertEqual(self.exec(sid, "import os; print(os.path.exists('only0.txt'))")
                         ["stdout"], "False\n")
        # distinct: kernel RNG, the interpreter's RNG, hostname; the clock is the host's
        probes = [json.loads(self.exec(s, PROBE)["stdout"]) for s in [sid] + kids]
        self.assertEqual(len({p["urandom"] for p in probes}), 3, probes)
        self.assertEqual(len({p["random"] for p in probes}), 3, probes)
        self.assertEqual(len({p["host"] for p in probes}), 3, probes)
        for p in probes:
            self.assertLess(abs(p["time"] - time.time()), 120, probes)
        listed = {s["session"]: s for s in
                  self.opd.call({"op": "session_list", "id": "l"})["sessions"]}
        for s in [sid] + kids:
            self.assertEqual(listed[s]["state"], "idle")
        for s in [sid] + kids:
            self.close(s)
        # the fork's image goes with its last child
        forks = os.path.join(self.opd.dir, "cache", "forks")
        wait_for(lambda: not os.listdir(forks), 30, "the fork image to be removed")

    def test_python_client(self):
        """Session.fork(), pause() and resume() of the Python client."""
        with opd_client.Client(self.opd.socket) as c:
            with c.open_session("python") as s:
                s.run("open('c.txt', 'w').write('client')")
                kids = s.fork(2)
                self.assertEqual(len(kids), 2)
                for k in kids:
                    self.assertEqual(k.run("print(open('c.txt').read())").stdout, "client\n")
                    k.close()
                self.assertEqual(s.pause()["state"], "paused")
                with self.assertRaises(opd_client.Busy):
                    s.run("print(1)")
                self.assertEqual(s.resume()["state"], "idle")
                self.assertEqual(s.run("print(open('c.txt').read())").stdout, "client\n")

    def test_opctl(self):
        def opctl(*args, code=0):
            p = subprocess.run([OPCTL, "--socket", self.opd.socket, *args], capture_output=True,
                               text=True, timeout=600)
            self.assertEqual(p.returncode, code, (args, p.stdout, p.stderr))
            return p.stdout

        sid = opctl("session", "open", "--lang", "python").strip()
        opctl("session", "exec", sid, "-c", "open('n', 'w').write('41')")
        kid = opctl("session", "fork", sid).strip()
        self.assertRegex(kid, "^[0-9a-f-]{36}$")
        self.assertNotEqual(kid, sid)
        self.assertEqual(opctl("session", "exec", kid, "-c", "print(open('n').read())"), "41\n")
        self.assertEqual(opctl("session", "pause", kid), f"{kid} paused\n")
        self.assertEqual(opctl("session", "resume", kid), f"{kid} idle\n")
        self.assertEqual(opctl("session", "exec", kid, "-c", "print(open('n').read())"), "41\n")
        for s in (sid, kid):
            opctl("session", "close", s)

    def test_fork_refusals(self):
        sid = self.open()
        a = self.opd.call({"op": "session_fork", "session": sid, "count": 4, "id": "f"})
        self.assertFalse(a["ok"])
        self.assertEqual(a["error"]["code"], "bad_request")
        self.assertIn("session.fork_max", a["error"]["message"])
        # another uid: as if it did not exist
        for a in as_nobody(self.opd, [{"op": op, "session": sid, "id": 1} for op in
                                      ("session_fork", "session_pause", "session_resume")]):
            self.assertFalse(a["ok"], a)
            self.assertEqual(a["error"]["code"], "not_found", a)
        # quota: 1 + 3 sessions fit session.max (6), 3 more do not; refused before any save
        a = self.opd.call({"op": "session_fork", "session": sid, "count": 3, "id": "f"},
                          timeout=600)
        self.assertTrue(a["ok"], a)
        self.assertEqual(len(a["forks"]), 3)
        b = self.opd.call({"op": "session_fork", "session": sid, "count": 3, "id": "f"})
        self.assertFalse(b["ok"], b)
        self.assertEqual(b["error"]["code"], "quota_exceeded", b)
        self.assertIn("session.max", b["error"]["message"])
        self.exec(sid, "print(1)")  # the parent runs on
        for k in a["forks"]:
            self.close(k)
        self.close(sid)


class SessionPause(unittest.TestCase):
    """Each test its own opd (restarts), on one cache with the snapshot made once."""
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({**CONFIG, "session.paused_max_per_uid": "2"})
        os.chmod(cls.opd.dir, 0o755)
        cls.cache = os.path.join(cls.opd.dir, "cache")  # every restart keeps it
        cls.version = create_snapshot(cls.opd, "python")
        wait_serving(cls.opd, "python", cls.version)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def restart(self, extra=None):
        old = self.opd
        old.stop()
        conf = {**CONFIG, "session.paused_max_per_uid": "2",
                "cache_dir": self.cache, **(extra or {})}
        type(self).opd = Opd(conf)
        os.chmod(self.opd.dir, 0o755)
        wait_serving(self.opd, "python", self.version)

    def call(self, req, timeout=600):
        return self.opd.call(req, timeout=timeout)

    def open(self):
        a = self.call({"op": "session_open", "lang": "python", "id": "o"})
        self.assertTrue(a["ok"], a)
        return a["session"]

    def exec(self, sid, code):
        # a minute: the first run in a VM restored from disk translates everything anew
        a = self.call({"op": "session_exec", "session": sid, "code": code, "id": "x",
                       "timeout_ms": 60000})
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["status"], "ok", a)
        return a["stdout"]

    def paused_dir(self, sid):
        return os.path.join(self.cache, ".paused", "0", sid)

    def test_pause_resume_across_restart(self):
        sid = self.open()
        self.exec(sid, "open('kept.txt', 'w').write('kept across a restart')")
        a = self.call(conforms("session-fork-request",
                               {"op": "session_pause", "session": sid, "id": "p"}))
        self.assertTrue(a["ok"], a)
        conforms("answer", a)
        self.assertEqual(a["state"], "paused")
        self.assertGreater(a["disk_bytes"], 0)
        d = self.paused_dir(sid)
        # per-uid data: only opd (root) reads it
        self.assertEqual(os.stat(d).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(os.path.dirname(d)).st_mode & 0o777, 0o700)
        # read-only files (a jailed VMM reopens them under its own uid) in opd's 0700 dirs
        opd_uid = os.stat(d).st_uid
        for name in ("vmstate", "mem", "session.json"):
            st = os.stat(os.path.join(d, name))
            self.assertEqual(st.st_mode & 0o222, 0, name)
            self.assertEqual(st.st_uid, opd_uid, name)
        self.assertEqual(os.stat(os.path.dirname(os.path.dirname(d))).st_mode & 0o777, 0o700)
        # paused: no exec, and another uid sees nothing
        a = self.call({"op": "session_exec", "session": sid, "code": "1", "id": "x"})
        self.assertEqual(a["error"]["code"], "busy", a)
        for a in as_nobody(self.opd, [{"op": "session_resume", "session": sid, "id": 1}]):
            self.assertEqual(a["error"]["code"], "not_found", a)
        self.restart()
        listed = {s["session"]: s for s in self.call({"op": "session_list", "id": 1})["sessions"]}
        self.assertEqual(listed[sid]["state"], "paused")
        a = self.call({"op": "session_resume", "session": sid, "id": "r"})
        self.assertTrue(a["ok"], a)
        conforms("answer", a)
        self.assertEqual(self.exec(sid, "print(open('kept.txt').read())"),
                         "kept across a restart\n")
        self.assertFalse(os.path.exists(d))  # not listed again by a restart
        # paused and resumed again, and forked after a resume
        self.exec(sid, "open('kept.txt', 'a').write(', twice')")
        self.assertTrue(self.call({"op": "session_pause", "session": sid, "id": "p"})["ok"])
        self.assertTrue(os.path.exists(os.path.join(d, "session.json")))
        self.assertTrue(self.call({"op": "session_resume", "session": sid, "id": "r"})["ok"])
        f = self.call({"op": "session_fork", "session": sid, "count": 1, "id": "f"})
        self.assertTrue(f["ok"], f)
        self.assertEqual(self.exec(f["forks"][0], "print(open('kept.txt').read())"),
                         "kept across a restart, twice\n")
        for s in (sid, f["forks"][0]):
            self.call({"op": "session_close", "session": s, "id": "c"})
        uid_dir = os.path.dirname(d)
        wait_for(lambda: not os.listdir(uid_dir), 30, "the resumed session's files to go")

    def test_stop_while_saving(self):
        """opd stopped while a fork, a pause and a resume are under way: each answered before
        the connection closes (shutting_down, or ok had it finished first), nothing of an
        unfinished fork or pause left in the cache, a session whose resume did not finish still
        paused after the restart, and a clean exit (under scripts/test-sanitize, nothing
        leaked)."""
        a, b, c = self.open(), self.open(), self.open()
        self.exec(c, "open('c.txt', 'w').write('c')")
        self.assertTrue(self.call({"op": "session_pause", "session": c, "id": "p"})["ok"])
        conn = socket.socket(socket.AF_UNIX)
        conn.settimeout(120)
        conn.connect(self.opd.socket)
        for req in ({"op": "session_fork", "session": a, "count": 2, "id": "f"},
                    {"op": "session_pause", "session": b, "id": "p"},
                    {"op": "session_resume", "session": c, "id": "r"}):
            body = json.dumps(req).encode()
            conn.sendall(struct.pack(">I", len(body)) + body)

        def under_way():
            states = [x["state"] for x in self.call({"op": "session_list", "id": 1})["sessions"]]
            return any(st in ("saving", "booting") for st in states) or states.count("idle") > 3
        wait_for(under_way, 120, "the fork, pause or resume to start")
        self.assertEqual(self.opd.stop(), 0)
        answers = {}
        for _ in range(3):
            n = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))[0]
            ans = json.loads(conn.recv(n, socket.MSG_WAITALL))
            answers[ans["id"]] = ans
        conn.close()
        for ans in answers.values():
            self.assertTrue(ans["ok"] or ans["error"]["code"] == "shutting_down", ans)
        # the fork's image: gone with an unfinished fork; one whose forks ran is gone by the
        # next start at the latest
        forks = os.path.join(self.cache, "forks")
        if not answers["f"]["ok"]:
            self.assertEqual(os.listdir(forks) if os.path.isdir(forks) else [], [])
        self.restart()
        self.assertFalse(os.path.exists(forks))
        listed = {x["session"]: x["state"] for x in
                  self.call({"op": "session_list", "id": 1})["sessions"]}
        self.assertEqual(listed.get(b), "paused" if answers["p"]["ok"] else None, answers["p"])
        self.assertEqual(listed.get(c), None if answers["r"]["ok"] else "paused", answers["r"])
        if listed.get(c):
            self.assertTrue(self.call({"op": "session_resume", "session": c, "id": "r"})["ok"])
            self.assertEqual(self.exec(c, "print(open('c.txt').read())"), "c\n")
        for sid in listed:
            self.call({"op": "session_close", "session": sid, "id": "c"})

    def test_damaged_is_refused_and_removed(self):
        keep = self.open()
        self.exec(keep, "open('a.txt', 'w').write('a')")
        self.assertTrue(self.call({"op": "session_pause", "session": keep, "id": "p"})["ok"])
        sid = self.open()
        self.assertTrue(self.call({"op": "session_pause", "session": sid, "id": "p"})["ok"])
        # a third one: over session.paused_max_per_uid
        third = self.open()
        a = self.call({"op": "session_pause", "session": third, "id": "p"})
        self.assertEqual(a["error"]["code"], "quota_exceeded", a)
        self.assertIn("session.paused_max_per_uid", a["error"]["message"])
        self.exec(third, "print(1)")  # refused, it runs on
        self.call({"op": "session_close", "session": third, "id": "c"})
        d = self.paused_dir(sid)
        path = os.path.join(d, "vmstate")
        os.chmod(path, 0o600)
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(b"\xff" * 64)
        a = self.call({"op": "session_resume", "session": sid, "id": "r"})
        self.assertFalse(a["ok"], a)
        self.assertEqual(a["error"]["code"], "vm_failed", a)
        self.assertIn("damaged", a["error"]["message"])
        self.assertFalse(os.path.exists(d))
        a = self.call({"op": "session_resume", "session": sid, "id": "r"})
        self.assertEqual(a["error"]["code"], "not_found", a)
        # damaged metadata found at a start: removed; the other paused session is untouched
        with open(os.path.join(self.paused_dir(keep), "session.json"), "rb") as f:
            good = f.read()
        bad = os.path.join(os.path.dirname(d), "0d1a9c32-0000-4000-8000-000000000000")
        os.makedirs(bad)
        with open(os.path.join(bad, "session.json"), "wb") as f:
            f.write(good[:40])
        self.restart()
        self.assertFalse(os.path.exists(bad))
        self.assertIn("damaged and was removed", self.opd.read_log())
        self.assertTrue(self.call({"op": "session_resume", "session": keep, "id": "r"})["ok"])
        self.assertEqual(self.exec(keep, "print(open('a.txt').read())"), "a\n")
        self.call({"op": "session_close", "session": keep, "id": "c"})


if __name__ == "__main__":
    unittest.main()
