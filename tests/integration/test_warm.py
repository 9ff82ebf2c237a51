"""Warm path end to end: snapshots made by the real opd, clones restored paused by QEMU (TCG
here), served from the pool, replaced when they die, drained when the snapshot changes."""
import contextlib
import json
import os
import re
import shutil
import signal
import time
import unittest

from opdtest import IMAGES, Opd, each_live, fd_targets, pool, wait_for

RANDOM_AND_CLOCK = ("import os, time, json, socket\n"
                    "boot_id = open('/proc/sys/kernel/random/boot_id').read().strip()\n"
                    "print(json.dumps([os.urandom(16).hex(), time.time(), socket.gethostname(), boot_id]))")


def create_snapshot(opd, lang):
    a = opd.call({"op": "snapshot", "action": "create", "lang": lang, "id": "snap"}, timeout=600)
    assert a["ok"], a
    return a["version"]


def wait_serving(opd, lang, version, ready=1):
    return wait_for(
        lambda: (lambda p: p if p["snapshot"] == version and p["ready"] >= ready else None)(
            pool(opd, lang)), 120,
        lambda: f"the {lang} pool to serve {version} with {ready} ready: {pool(opd, lang)}")


def snapshot_manifest(opd, lang, version, agent_min):
    """A snapshot's manifest, made by an op-agent of at least agent_min (else opd is stopped and
    the images are to be rebuilt with this tree's agent)."""
    with open(os.path.join(opd.dir, "cache", lang, version, "manifest.json")) as f:
        manifest = json.load(f)
    agent = manifest["agent_version"]
    if tuple(map(int, agent.split("."))) < agent_min:
        opd.stop()
        raise AssertionError(f"the images' op-agent is {agent}: rebuild them with this "
                             "tree's (build-images --agent)")
    return manifest


def warm_pair(test, req, timeout):
    """req sent twice at once, as ids 1 and 2 on connections of their own: both answered warm,
    each by a clone of its own. The two answers."""
    c1, c2 = test.opd.client(timeout), test.opd.client(timeout)
    try:
        c1.send({**req, "id": 1})
        c2.send({**req, "id": 2})
        a1, a2 = c1.recv(), c2.recv()
    finally:
        c1.close()
        c2.close()
    for a in (a1, a2):
        test.assertTrue(a["ok"], a)
        test.assertEqual(a["mode"], "warm")
    test.assertNotEqual(a1["vm"], a2["vm"])
    return a1, a2


@contextlib.contextmanager
def in_session(test, lang):
    """A session of lang open for the block: it gets call(code), which runs code in the session
    and returns its answer (checked ok). Closed after the block."""
    s = test.opd.call({"op": "session_open", "id": "o", "lang": lang})
    test.assertTrue(s["ok"], s)

    def call(code):
        a = test.opd.call({"op": "session_exec", "session": s["session"], "code": code,
                           "timeout_ms": 60000}, timeout=600)
        test.assertTrue(a["ok"], a)
        return a
    try:
        yield call
    finally:
        test.opd.call({"op": "session_close", "session": s["session"]})


class WarmPython(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # pool.max_size = 0: two clones whatever the demand, so that once they are restored the
        # VMM processes are those two and no other (Opd.settled_vmms)
        cls.opd = Opd({"pool.sizes": "python=2,bash=0", "pool.max_size": "0",
                       "pool.fallback_cold": "no"})
        cls.version = create_snapshot(cls.opd, "python")
        wait_serving(cls.opd, "python", cls.version, ready=2)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def test_manifest_and_layout(self):
        d = os.path.join(self.opd.dir, "cache", "python")
        self.assertEqual(os.readlink(os.path.join(d, "current")), self.version)
        with open(os.path.join(d, self.version, "manifest.json")) as f:
            m = json.load(f)
        self.assertEqual(m["language"], "python")
        self.assertTrue(m["warm"])
        self.assertEqual(m["vmm"], "qemu")
        names = {f["name"]: f for f in m["files"]}
        self.assertEqual(set(names), {"mem", "vmstate", "kernel", "initrd.img", "rootfs.ext4"})
        for n, f in names.items():
            self.assertEqual(os.path.getsize(os.path.join(d, self.version, n)), f["size"])
            self.assertRegex(f["sha256"], "^[0-9a-f]{64}$")
        # device state only: guest RAM stays in "mem"
        self.assertLess(names["vmstate"]["size"], 4 << 20)
        self.assertFalse([e for e in os.listdir(d) if e.startswith(".tmp")])
        # made in a directory only opd's user can enter, and kept so: nobody else reached
        # "mem" by its path while the boot wrote it
        self.assertEqual(os.stat(os.path.join(d, self.version)).st_mode & 0o7777, 0o700)
        # hashed once, as the manifest was written: the pool served it without a second pass
        self.assertIn(f"python pool: serving snapshot {self.version} (checked at install)",
                      self.opd.read_log())

    def test_two_clones_are_distinct_and_on_time(self):
        c1, c2 = self.opd.client(), self.opd.client()
        try:
            sent = time.time()
            c1.send({"op": "exec", "lang": "python", "code": RANDOM_AND_CLOCK, "id": 1})
            c2.send({"op": "exec", "lang": "python", "code": RANDOM_AND_CLOCK, "id": 2})
            a1 = c1.recv()
            got1 = time.time()
            a2 = c2.recv()
            got2 = time.time()
        finally:
            c1.close()
            c2.close()
        for a in (a1, a2):
            self.assertTrue(a["ok"], a)
            self.assertEqual(a["mode"], "warm")
            self.assertEqual(a["snapshot"], self.version)
        self.assertNotEqual(a1["vm"], a2["vm"])
        (r1, t1, h1, b1), (r2, t2, h2, b2) = json.loads(a1["stdout"]), json.loads(a2["stdout"])
        self.assertNotEqual(r1, r2)
        self.assertNotEqual(h1, h2)
        self.assertNotEqual(b1, b2)
        # the guest clock was set from the host's: each program read a time between the request
        # being sent and its answer arriving (1 s for the clocks' granularity)
        self.assertTrue(sent - 1 <= t1 <= got1 + 1, (sent, t1, got1))
        self.assertTrue(sent - 1 <= t2 <= got2 + 1, (sent, t2, got2))

    def test_warm_runner_behaves_like_python(self):
        a = self.opd.run("python", "import sys\nprint('out', sys.argv[1:], input())\nprint(1/0)",
                         args=["x"], stdin="line\n")
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["mode"], "warm")
        self.assertEqual(a["stdout"], "out ['x'] line\n")
        self.assertEqual(a["exit_code"], 1)
        self.assertIn("ZeroDivisionError", a["stderr"])
        self.assertIn('File "', a["stderr"])
        self.assertNotIn("runpy", a["stderr"])
        # a clone of this tree's agent says how long it took, the program's run part of it
        self.assertLessEqual(a["timings_ms"]["guest_run"], a["timings_ms"]["guest_job"])

    def test_runner_reports_its_end(self):
        """The runner tells the agent its program's status and waits to be killed: the status is
        the program's, fd 3 is free for the program and no child gets the runner's line."""
        a = self.opd.run("python", "import os, subprocess, sys\n"
                         "print(os.open('/dev/null', os.O_RDONLY))\n"
                         "print(subprocess.run(['ls', '/proc/self/fd'], capture_output=True,"
                         " text=True).stdout.split())\n"
                         "sys.exit(3)\n")
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["mode"], "warm")
        self.assertEqual((a["stdout"], a["exit_code"], a["signal"]),
                         ("3\n['0', '1', '2', '3']\n", 3, None))
        # a child forked without exec ends through the runner's way out too: it does not report
        a = self.opd.run("python", "import os, sys\nif os.fork() == 0:\n    sys.exit(0)\n"
                         "os.wait()\nprint('parent')\nsys.exit(4)\n")
        self.assertEqual((a["stdout"], a["exit_code"], a["signal"]), ("parent\n", 4, None))
        # a daemon thread still running: the runner exits as python3 would, without a report
        a = self.opd.run("python", "import threading, time\n"
                         "threading.Thread(target=time.sleep, args=(100,), daemon=True).start()\n"
                         "print('main done')\n", timeout_ms=60000)
        self.assertEqual((a["stdout"], a["exit_code"], a["timed_out"]), ("main done\n", 0, False))
        # a child holding stdout after the report: ended after the linger, the status kept
        a = self.opd.run("python", "import subprocess\nsubprocess.Popen(['sleep', '100'])\n"
                         "raise SystemExit(5)\n", timeout_ms=60000)
        self.assertEqual((a["exit_code"], a["signal"], a["timed_out"]), (5, None, False))

    def test_runner_report_in_a_session(self):
        """A file the program opened where the runner's line was gets nothing of the runner's,
        and the runner is gone before the session's next call."""
        with in_session(self, "python") as call:
            a = call("import os\nos.closerange(3, 64)\n"
                     "fds = [os.open(f'f{i}', os.O_WRONLY | os.O_CREAT) for i in range(8)]\n"
                     "print(os.getpid(), fds)\n")
            self.assertEqual(a["exit_code"], 0)
            pid, fds = a["stdout"].split(" ", 1)
            self.assertEqual(fds, "[3, 4, 5, 6, 7, 8, 9, 10]\n")
            a = call("import os\n"
                     f"print(os.path.exists('/proc/{pid}'), os.getpid() != {pid},"
                     " [os.path.getsize(f'f{i}') for i in range(8)])\n")
            self.assertEqual(a["stdout"], "False True [0, 0, 0, 0, 0, 0, 0, 0]\n")

    def test_main_module_as_python(self):
        """The program is the module __main__ as under python3 main.py, to its end: argv[0],
        __name__, __file__, and what its atexit handlers find in sys.modules."""
        a = self.opd.run("python", "import atexit, os, sys, __main__\nX = 5\n"
                         "print(sys.argv[0], __name__, os.path.basename(__file__),"
                         " __main__.__dict__ is globals())\n"
                         "atexit.register(lambda: print(sys.modules['__main__'].X))\n")
        self.assertTrue(a["ok"], a)
        self.assertEqual((a["stdout"], a["stderr"], a["exit_code"]),
                         ("main.py __main__ main.py True\n5\n", "", 0))

    def test_exit_frees_the_program_globals(self):
        """As python3 exits it frees the program's globals (its modules' too): an object's
        __del__ runs and a file left open is flushed, as under the cold command; in a session
        the next call finds what the last one wrote to a file it never closed."""
        code = ("class Bye:\n    def __del__(self):\n        print('bye', flush=True)\n\n\n"
                "b = Bye()\nout = open('/dev/stdout', 'w')\nout.write('left open\\n')\n"
                "log = open('log', 'w')\nlog.write('written')\nprint('main')\n")
        w = self.opd.run("python", code)
        c = self.opd.run("python", code, mode="cold", timeout_ms=60000)
        self.assertEqual((w["mode"], c["mode"]), ("warm", "cold"))
        self.assertEqual((w["stdout"], w["stderr"], w["exit_code"]),
                         (c["stdout"], c["stderr"], c["exit_code"]))
        self.assertEqual(sorted(w["stdout"].splitlines()), ["bye", "left open", "main"])
        # a module of the program's own files: its globals too
        req = {"files": [{"name": "helper.py", "content": "log = open('log', 'w')\n"
                          "log.write('from a module')\n"}], "output_files": ["log"]}
        wm = self.opd.run("python", "import helper\n", **req)
        cm = self.opd.run("python", "import helper\n", mode="cold", timeout_ms=60000, **req)
        self.assertEqual((wm["mode"], wm["files"]), ("warm", cm["files"]))
        self.assertEqual(wm["files"], [{"name": "log", "content": "from a module"}])
        with in_session(self, "python") as call:
            for src, want in ((code, w["stdout"]), ("print(open('log').read())\n", "written\n")):
                a = call(src)
                self.assertEqual((a["stdout"], a["exit_code"]), (want, 0))

    def test_standard_streams_open_by_name(self):
        """A program may open its standard streams by name, as on any Linux host: they are
        the program user's own, though the agent made them."""
        a = self.opd.run("python", "import sys\n"
                         "print(open('/dev/stdin').read().upper(), end='')\n"
                         "open('/dev/stderr', 'w').write('to stderr\\n')\n",
                         stdin="line\n")
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["mode"], "warm")
        self.assertEqual((a["stdout"], a["stderr"], a["exit_code"]), ("LINE\n", "to stderr\n", 0))

    def test_pooled_vm_killed_is_replaced(self):
        pids = self.opd.settled_vmms("python", 2)  # paused clones, not a used VM's ending VMM
        before = pool(self.opd, "python")["restores"]
        os.kill(pids[0], signal.SIGKILL)
        # replaced in the background; no request fails meanwhile
        a = self.opd.run("python", "print('after kill')")
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], "after kill\n")
        wait_for(lambda: (lambda p: p if p["ready"] >= 2 and p["restores"] > before else None)(
            pool(self.opd, "python")), 120,
            lambda: f"the killed clone to be replaced: {pool(self.opd, 'python')}")


    def test_z_clones_cannot_write_the_memory_file(self):
        """Clones map the snapshot's memory privately and writable, but QEMU holds it only
        read-only (readonly=on,rom=off), and runs under its seccomp sandbox."""
        # a warm run that writes 48 MiB of guest memory (its pages are the clone's own copies)
        a = self.opd.run("python", "x = bytearray(b'\\xa5') * (48 << 20)\n"
                         "x[::4096] = bytes(len(x[::4096]))\nprint(len(x))")
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], str(48 << 20) + "\n")
        mem = os.path.realpath(os.path.join(self.opd.dir, "cache", "python", self.version, "mem"))

        def check(pid):
            with open(f"/proc/{pid}/maps") as f:
                maps = [ln.split() for ln in f if ln.rstrip().endswith(" " + mem)]
            self.assertTrue(maps, f"QEMU {pid} does not map {mem}")
            for m in maps:  # private: writes go to the clone's own pages
                self.assertEqual(m[1][3], "p", m)
            with open(f"/proc/{pid}/status") as f:
                self.assertRegex(f.read(), r"(?m)^Seccomp:\s+2$", pid)
            held = [fd for fd, target in fd_targets(pid).items() if target == mem]
            self.assertTrue(held, f"QEMU {pid} holds no fd of {mem}")
            for fd in held:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    flags = int(next(ln for ln in f if ln.startswith("flags:")).split()[1], 8)
                self.assertEqual(flags & os.O_ACCMODE, os.O_RDONLY, (pid, fd, oct(flags)))

        # the two paused clones, restored in full (mapped), and the used VM's VMM ended
        pids = self.opd.settled_vmms("python", 2)
        self.assertEqual(each_live(pids, check), pids)

    def test_zz_memory_file_unchanged_by_clones(self):
        # runs last in this class: every clone above wrote to its (private) guest memory
        import hashlib
        d = os.path.join(self.opd.dir, "cache", "python", self.version)
        with open(os.path.join(d, "manifest.json")) as f:
            want = {e["name"]: e["sha256"] for e in json.load(f)["files"]}
        h = hashlib.sha256()
        with open(os.path.join(d, "mem"), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self.assertEqual(h.hexdigest(), want["mem"])


NODE_RANDOM = ("const crypto = require('crypto'), fs = require('fs');\n"
               "console.log(JSON.stringify([Math.random(), crypto.randomBytes(16).toString('hex'), "
               "crypto.randomUUID(), fs.readFileSync('/proc/self/cmdline', 'utf8').split('\\0')]));")
NODE_RUNNER = "/usr/lib/op/warm/node.js"


def node_report(stderr):
    """node's report of an uncaught exception without its stack frames (the last one is where
    node called the main module from, which a runner does from its tick queue) and with the
    run's directory taken out."""
    return "\n".join(re.sub("/tmp/op/[^/]+/", "DIR/", l) for l in stderr.split("\n")
                     if not l.startswith("    at "))


class WarmRunnerCase:
    """What the classes of the runners below share: one opd serving lang from a pool of 2
    clones (no cold fallback), a snapshot made as the class starts, and requests sent once a
    clone is ready. Those of languages CI builds no image of (all but node) run by hand with
    OPD_IMAGES naming images of this tree's build-images that hold the language."""

    lang = ""
    agent_min = (0, 4, 0)  # the oldest op-agent whose snapshot has this runner
    wait_s = 900           # how long a snapshot, or a clone's refill, may take
    timeout_ms = 60000     # a request's
    config = {}            # more of opd's configuration

    @classmethod
    def setUpClass(cls):
        sizes = ",".join(f"{k}={v}" for k, v in
                         {"bash": 0, "python": 0, "node": 0, "c": 0, cls.lang: 2}.items())
        cls.opd = Opd({"pool.sizes": sizes, "pool.fallback_cold": "no", "max_vms": "4",
                       **cls.config})
        a = cls.opd.call({"op": "snapshot", "action": "create", "lang": cls.lang, "id": "snap"},
                         timeout=cls.wait_s)
        if not a.get("ok"):
            cls.opd.stop()
        assert a["ok"], a
        cls.version = a["version"]
        cls.manifest = snapshot_manifest(cls.opd, cls.lang, cls.version, cls.agent_min)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def full(self, n=2):
        """Wait until n clones are paused and ready (a runner started in each clone has
        started and been primed)."""
        wait_for(lambda: (lambda p: p if p["snapshot"] == self.version and p["ready"] >= n
                          else None)(pool(self.opd, self.lang)), self.wait_s,
                 lambda: f"{n} {self.lang} clones ready: {pool(self.opd, self.lang)}")

    def run_lang(self, code, mode="warm", **kw):
        if mode == "warm":
            self.full(1)
        a = self.opd.call({"op": "exec", "lang": self.lang, "code": code, "mode": mode,
                           "timeout_ms": self.timeout_ms, **kw}, timeout=self.wait_s)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["mode"], mode)
        return a

    @staticmethod
    def report(text):
        """A program's output as compared with the cold command's (a class's own may drop what
        differs by necessity, e.g. a run directory's name)."""
        return text

    def assert_as_cold(self, code, **kw):
        """The program's stdout, stderr and exit code on the runner are those of the cold
        command (through report()). The warm answer."""
        w = self.run_lang(code, **kw)
        c = self.run_lang(code, mode="cold", **kw)
        self.assertEqual((self.report(w["stdout"]), self.report(w["stderr"]), w["exit_code"]),
                         (self.report(c["stdout"]), self.report(c["stderr"]), c["exit_code"]))
        return w

    def assert_runner_per_clone(self):
        """The snapshot holds no runner, and no clone failed to start and prime its own."""
        self.assertFalse(self.manifest["warm"])
        self.assertNotIn(f"{self.lang} pool: priming", self.opd.read_log())

    def two_clones(self, code, wait_s=900, timeout_ms=60000):
        """code run warm on two clones at once (warm_pair), each exiting 0 with nothing on
        stderr. The two stdouts."""
        self.full(2)
        a1, a2 = warm_pair(self, {"op": "exec", "lang": self.lang, "code": code,
                                   "mode": "warm", "timeout_ms": timeout_ms}, wait_s)
        for a in (a1, a2):
            self.assertEqual((a["exit_code"], a["stderr"]), (0, ""), a)
        return a1["stdout"], a2["stdout"]

    def distinct_lines(self, out1, out2, names, runner):
        """Two clones' outputs of a program printing one value per name, then its own command
        line: both ran on the runner waiting in the clone, and each value differs. The lines."""
        r1, r2 = out1.split("\n")[:-1], out2.split("\n")[:-1]
        self.assertEqual(len(r1), len(names) + 1, out1)
        self.assertIn(runner, r1[-1])
        self.assertIn(runner, r2[-1])
        for name, v1, v2 in zip(names, r1, r2):
            self.assertNotEqual(v1, v2, name)
        return r1, r2


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "node", "rootfs.ext4")),
                     "no node image in OPD_IMAGES")
class WarmNode(WarmRunnerCase, unittest.TestCase):
    """node's runner starts in each clone, after the clone's entropy is in the guest kernel:
    the snapshot holds no node process, and each clone's V8 and OpenSSL seed themselves."""

    lang = "node"

    def test_snapshot_holds_no_runner(self):
        self.assert_runner_per_clone()

    def test_two_clones_have_their_own_random_state(self):
        out1, out2 = self.two_clones(NODE_RANDOM, 600)
        (m1, b1, u1, cmd1), (m2, b2, u2, cmd2) = json.loads(out1), json.loads(out2)
        # both ran on a runner, the process that was waiting in the clone
        self.assertEqual(cmd1[:2], ["node", NODE_RUNNER])
        self.assertEqual(cmd2[:2], ["node", NODE_RUNNER])
        self.assertNotEqual(m1, m2)
        self.assertNotEqual(b1, b2)
        self.assertNotEqual(u1, u2)

    def test_program_behaves_like_node(self):
        a = self.run_lang("const fs = require('fs');\n"
                          "const lines = fs.readFileSync(0, 'utf8').split('\\n').filter(Boolean);\n"
                          "console.log(process.argv.slice(2).join(','), lines.reverse().join(' '),\n"
                          "  require.main === module, process.cwd() === process.env.HOME,\n"
                          "  require('path').basename(process.argv[1]));\n"
                          "console.error('to stderr');\n"
                          "setTimeout(() => { console.log('later'); process.exitCode = 3; }, 10);\n",
                          args=["a", "b c"], stdin="x\ny\n")
        self.assertEqual(a["stdout"], "a,b c y x true true main.js\nlater\n")
        self.assertEqual(a["stderr"], "to stderr\n")
        self.assertEqual(a["exit_code"], 3)
        a = self.run_lang("console.log('before'); process.exit(7); console.log('after');")
        self.assertEqual((a["stdout"], a["exit_code"]), ("before\n", 7))

    def test_uncaught_exception_and_syntax_error_as_cold_node(self):
        programs = ["function f() { throw new TypeError('nope'); }\nf();\n",
                    "console.log(1);\nlet x = ;\n"]
        for code in programs:
            w = self.run_lang(code)
            c = self.run_lang(code, mode="cold")
            self.assertEqual((w["stdout"], w["exit_code"]), (c["stdout"], c["exit_code"]))
            self.assertEqual(w["exit_code"], 1)
            self.assertNotIn(NODE_RUNNER, w["stderr"])
            self.assertEqual(node_report(w["stderr"]), node_report(c["stderr"]))
        self.assertIn("main.js:2\nlet x = ;\n        ^\n\nSyntaxError: Unexpected token ';'\n",
                      w["stderr"])

    def test_runner_reports_its_end(self):
        """The runner tells the agent the status node would exit with, after the program's
        'exit' listeners, and waits to be killed; where node's own exit still has work to do
        (an uncaught error's report, a Worker to stop) it exits as node does."""
        programs = [
            # an 'exit' listener that writes and sets the status
            "process.on('exit', (c) => { console.log('exit', c); process.exitCode = 6; });\n"
            "console.log('main');\n",
            # a rejection nobody handles: node reports it after the 'exit' listeners
            "process.on('exit', () => console.log('bye'));\n"
            "Promise.reject(new RangeError('late'));\n",
            # process.emit wrapped by the program, which writes once the listeners ran
            "const emit = process.emit;\nprocess.emit = function (name, ...args) {\n"
            "  const ret = emit.call(this, name, ...args);\n"
            "  if (name === 'exit') console.log('after the listeners');\n  return ret;\n};\n"
            "console.log('main');\n",
            # a Worker still running when the program ends: node stops it
            "const { Worker } = require('worker_threads');\n"
            "new Worker('setInterval(() => {}, 1000)', { eval: true }).on('online', () => {\n"
            "  console.log('online'); process.exit(2); });\n",
        ]
        for code in programs:
            w = self.run_lang(code)
            c = self.run_lang(code, mode="cold")
            self.assertEqual((w["stdout"], w["exit_code"], w["signal"]),
                             (c["stdout"], c["exit_code"], c["signal"]), code)
            self.assertEqual(node_report(w["stderr"]), node_report(c["stderr"]), code)
        self.assertEqual((w["stdout"], w["exit_code"]), ("online\n", 2))
        # a child holding stdout after the end: ended after the linger, the status kept
        a = self.run_lang("require('child_process').spawn('sleep', ['100'], "
                          "{ stdio: 'inherit' }).unref();\nprocess.exitCode = 5;\n")
        self.assertEqual((a["exit_code"], a["signal"], a["timed_out"]), (5, None, False))

    def test_runner_report_in_a_session(self):
        """A file the program opened where the runner's line was gets nothing of the runner's,
        and the runner is gone before the session's next call."""
        self.full(1)
        with in_session(self, "node") as call:
            a = call("const fs = require('fs');\nfs.closeSync(3);\n"
                     "console.log(process.pid, fs.openSync('f3', 'w'));\n")
            self.assertEqual(a["exit_code"], 0)
            pid, fd = a["stdout"].split()
            self.assertEqual(fd, "3")
            a = call("const fs = require('fs');\n"
                     f"console.log(fs.existsSync('/proc/{pid}'), process.pid !== {pid},"
                     " fs.statSync('f3').size);\n")
            self.assertEqual(a["stdout"], "false true 0\n")

    def test_node_options_run_by_a_node_of_their_own(self):
        """NODE_OPTIONS is read as node starts: the runner hands such a program to a new node."""
        a = self.run_lang("console.log(new Error('x').stack.split('\\n').length);\n"
                          "process.exitCode = 4;",
                          env={"NODE_OPTIONS": "--stack-trace-limit=1"})
        self.assertEqual((a["stdout"], a["exit_code"]), ("2\n", 4))

    def test_session_first_call_on_the_runner(self):
        self.full(1)
        with in_session(self, "node") as call:
            cmdline = "console.log(require('fs').readFileSync('/proc/self/cmdline', 'utf8')" \
                      ".split('\\0')[1])"
            self.assertEqual(call(cmdline)["stdout"], NODE_RUNNER + "\n")
            # later calls start `node main.js`
            self.assertEqual(call(cmdline)["stdout"], "main.js\n")


COFFEE_RANDOM = ("crypto = require 'crypto'\nfs = require 'fs'\nos = require 'os'\n"
                 "console.log JSON.stringify [Math.random(), crypto.randomBytes(16).toString('hex'), "
                 "crypto.randomUUID(), fs.mkdtempSync(os.tmpdir() + '/t-'), "
                 "fs.readFileSync('/proc/self/cmdline', 'utf8').split('\\x00')]\n")
COFFEE_FRONT = "/usr/lib/op/warm/coffee.js"


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "ruby", "rootfs.ext4")),
                     "no ruby image in OPD_IMAGES")
class WarmRuby(WarmRunnerCase, unittest.TestCase):
    """ruby's runner, in the snapshot, runs the program as `ruby main.rb` runs its script."""

    lang = "ruby"

    def test_names_and_data_as_ruby(self):
        """$0, __FILE__, the main program's frames, DATA after __END__, and none of the
        runner's own names."""
        self.assert_as_cold("p [$0, __FILE__, File.basename(__dir__) == File.basename(Dir.pwd),"
                            " caller(0)[0], defined?(OpWarmRuby), defined?(enter)]\n"
                            "puts __FILE__ == $0 ? 'main' : 'library'\n"
                            "p [DATA.read, DATA.external_encoding]\n__END__\nafter the end\n")
        self.assert_as_cold("# encoding: iso-8859-1\np DATA.read.encoding\n__END__\nx")

    def test_errors_as_ruby(self):
        for code in ["def f\n  raise 'deep'\nend\nf\n",
                     "at_exit { raise 'boom' }\nputs 'main'\n",
                     "def f\n  puts 1\n",
                     "puts 'a'\nexit 3\n",
                     "puts 'before'\nreturn\nputs 'after'\n"]:
            with self.subTest(code=code):
                self.assert_as_cold(code)

    def test_no_data_without_end(self):
        """Without __END__ there is no DATA (ruby's suggestion of a similar name may differ:
        the runner has loaded the libraries its header lists, Date among them)."""
        w = self.run_lang("puts DATA.read\n")
        self.assertEqual(w["exit_code"], 1)
        self.assertTrue(w["stderr"].startswith(
            "main.rb:1:in `<main>': uninitialized constant DATA (NameError)\n"), w["stderr"])

    def test_require_relative_and_stdin(self):
        w = self.assert_as_cold("require_relative 'helper'\nputs helper($stdin.read)\n",
                                files=[{"name": "helper.rb",
                                        "content": "def helper(s) = s.upcase\n"}],
                                stdin="line\n")
        self.assertEqual((w["stdout"], w["exit_code"]), ("LINE\n", 0))


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "php", "rootfs.ext4")),
                     "no php image in OPD_IMAGES")
class WarmPhp(WarmRunnerCase, unittest.TestCase):
    """php's runner, in the snapshot, includes the program at its top level: what php prints
    and the status it exits with are those of `php main.php`, and the runner leaves no name of
    its own to the program."""

    lang = "php"

    @staticmethod
    def report(text):
        return re.sub(r"/tmp/op/run-\w+/", "DIR/", text)

    def test_no_name_of_the_runners(self):
        """A program may define any function: the runner's helpers are closures it unset."""
        w = self.assert_as_cold(
            "<?php\nfunction op_enter() { echo \"mine\\n\"; }\n"
            "function op_read_request() { return 1; }\nop_enter();\n"
            "echo json_encode([get_defined_functions()['user'], isset($op_ctl),\n"
            "  isset($op_req)]), \"\\n\";\n")
        self.assertEqual(w["stdout"], 'mine\n[["op_enter","op_read_request"],false,false]\n')

    def test_uncaught_as_php(self):
        """An uncaught exception's report ends its trace at the program's {main}, with a
        previous one too, from a function or the top level; a parse error, a warning, exit()."""
        programs = [
            "<?php\nfunction f() { throw new Exception('x'); }\nf();\n",
            "<?php\nthrow new Exception('top');\n",
            "<?php\nfunction f() {\n  throw new RuntimeException('x', 0, new LogicException('in'));"
            "\n}\nf();\n",
            "<?php\nfunction g() { undefined_fn(); }\ng();\n",
            "<?php\necho 'a', PHP_EOL;\n$x = ;\n",
            "<?php\necho $undefined;\ntrigger_error('boom', E_USER_WARNING);\necho 'after';\nexit(3);\n",
        ]
        for code in programs:
            with self.subTest(code=code):
                w = self.assert_as_cold(code)
                self.assertNotIn("/usr/lib/op/warm/", w["stdout"] + w["stderr"])
        self.assertIn("Stack trace:\n#0 DIR/main.php(3): f()\n#1 {main}\n",
                      self.report(self.run_lang(programs[0])["stdout"]))

    def test_argv_env_stdin_as_php(self):
        w = self.assert_as_cold(
            "<?php\necho json_encode([$argv, $argc, $_SERVER['argv'], $_SERVER['SCRIPT_NAME'],\n"
            "  getenv('FOO'), $_ENV['FOO'] ?? null, $_SERVER['FOO'], basename(getcwd()) ===\n"
            "  basename(getenv('HOME')), stream_get_contents(STDIN)]), PHP_EOL;\n",
            args=["a", "b c"], env={"FOO": "bar"}, stdin="in")
        self.assertEqual(json.loads(w["stdout"]), [["main.php", "a", "b c"], 3,
                                                   ["main.php", "a", "b c"], "main.php", "bar",
                                                   "bar", "bar", True, "in"])


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "coffeescript", "rootfs.ext4")),
                     "no coffeescript image in OPD_IMAGES")
class WarmCoffee(WarmRunnerCase, unittest.TestCase):
    """coffeescript's runner is node's, started in each clone with the CoffeeScript compiler
    loaded (languages/warm/coffee.js): each clone's V8 and OpenSSL seed themselves, and a
    program behaves as under `coffee main.coffee`."""

    lang = "coffeescript"

    def test_snapshot_holds_no_runner(self):
        self.assert_runner_per_clone()

    def test_two_clones_have_their_own_random_state(self):
        self.full(2)
        a1, a2 = warm_pair(self, {"op": "exec", "lang": "coffeescript", "code": COFFEE_RANDOM,
                                   "mode": "warm", "timeout_ms": 60000}, 600)
        for a in (a1, a2):
            self.assertEqual(a["exit_code"], 0, a)
        (m1, b1, u1, t1, cmd1), (m2, b2, u2, t2, cmd2) = (json.loads(a1["stdout"]),
                                                          json.loads(a2["stdout"]))
        # both ran on a runner, the process that was waiting in the clone
        self.assertEqual(cmd1[:3], ["node", NODE_RUNNER, COFFEE_FRONT])
        self.assertEqual(cmd2[:3], ["node", NODE_RUNNER, COFFEE_FRONT])
        self.assertNotEqual(m1, m2)
        self.assertNotEqual(b1, b2)
        self.assertNotEqual(u1, u2)
        self.assertNotEqual(t1, t2)

    def test_program_behaves_like_coffee(self):
        a = self.run_lang("fs = require 'fs'\npath = require 'path'\n"
                          "lines = fs.readFileSync(0, 'utf8').split('\\n').filter(Boolean)\n"
                          "console.log process.argv[0], process.argv[2..].join(','),\n"
                          "  lines.reverse().join(' '), require.main is module,\n"
                          "  process.cwd() is process.env.HOME, path.basename(process.argv[1]),\n"
                          "  path.basename(__filename)\n"
                          "console.error 'to stderr'\n"
                          "setTimeout (-> console.log 'later'; process.exitCode = 3), 10\n",
                          args=["a", "b c"], stdin="x\ny\n")
        self.assertEqual(a["stdout"], "coffee a,b c y x true true main.coffee main.coffee\n"
                                      "later\n")
        self.assertEqual(a["stderr"], "to stderr\n")
        self.assertEqual(a["exit_code"], 3)
        a = self.run_lang("console.log 'before'\nprocess.exit 7\nconsole.log 'after'\n")
        self.assertEqual((a["stdout"], a["exit_code"]), ("before\n", 7))

    def test_errors_as_cold_coffee(self):
        """An error thrown as the program runs (coffee prints its stack, exit 1) and a compile
        error (coffee's report, exit 1) as with `coffee main.coffee` in a cold VM."""
        programs = {"f = -> throw new TypeError 'nope'\nf()\n": "TypeError: nope\n    at f (",
                    "console.log 1\nx = )\n": "main.coffee:2:5: error: unmatched )\nx = )\n    ^\n"}
        for code, report in programs.items():
            w = self.run_lang(code)
            c = self.opd.call({"op": "exec", "lang": "coffeescript", "code": code,
                               "mode": "cold", "timeout_ms": 60000}, timeout=900)
            self.assertTrue(c["ok"], c)
            self.assertEqual(c["mode"], "cold")
            self.assertEqual((w["stdout"], w["exit_code"]), (c["stdout"], c["exit_code"]))
            self.assertEqual(w["exit_code"], 1)
            self.assertNotIn("/usr/lib/op/warm/", w["stderr"])
            self.assertEqual(node_report(w["stderr"]), node_report(c["stderr"]))
            self.assertIn(report, w["stderr"])

    def test_node_options_run_by_a_coffee_of_their_own(self):
        """NODE_OPTIONS is read as node starts: the runner hands such a program to a new coffee."""
        a = self.run_lang("console.log process.title, process.argv[2..]\nprocess.exitCode = 4\n",
                          args=["x"], env={"NODE_OPTIONS": "--title=fresh"})
        self.assertEqual((a["stdout"], a["exit_code"]), ("fresh [ 'x' ]\n", 4))


# (a global `crypto` would clash with lib.dom.d.ts's, which tsc reports)
TS_RANDOM = ("const nodeCrypto = require('crypto'), fs = require('fs'), os = require('os');\n"
             "const values: string[] = [String(Math.random()),\n"
             "  nodeCrypto.randomBytes(16).toString('hex'),\n"
             "  nodeCrypto.randomUUID(), fs.mkdtempSync(os.tmpdir() + '/t-'),\n"
             "  fs.readFileSync('/proc/self/cmdline', 'utf8').split('\\0').join(' ')];\n"
             "console.log(values.join('\\n'));\n")
TS_FRONT = "/usr/lib/op/warm/typescript.js"


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "typescript", "rootfs.ext4")),
                     "no typescript image in OPD_IMAGES")
class WarmTypescript(WarmRunnerCase, unittest.TestCase):
    """typescript's runner is node's, started in each clone with tsc's compiler loaded
    (languages/warm/typescript.js): it compiles as `tsc ...` does (the agent hands it the compile
    command), then runs main.js as `node main.js`; each clone's V8 and OpenSSL seed themselves.
    A cold `tsc` takes minutes under TCG: compiles may take up to 600 s here.

    CI builds no typescript image (it builds `core` for bash, python, node and c, and links only
    those): this runs by hand with OPD_IMAGES naming images built by this tree's build-images,
    and takes about an hour under TCG (the snapshot's cold tsc, each clone's prime, the cold VMs
    it compares with). In CI, test-agent-proto's test_warm_typescript runs the runner on the
    host."""

    lang = "typescript"
    wait_s = 1800
    config = {"limit.compile_timeout_ms_max": "600000"}

    def run_lang(self, code, mode="warm", **kw):
        return super().run_lang(code, mode, compile_timeout_ms=600000, **kw)

    def assert_compiled_as_cold(self, code, **kw):
        """The compile's output, exit code and status, and the program's, as with `tsc` and
        `node main.js` in a cold VM (node's report without its frames and run directory). The
        warm answer."""
        w = self.run_lang(code, **kw)
        c = self.run_lang(code, mode="cold", **kw)
        for a in (w, c):
            self.assertIn("compile", a)
        self.assertEqual((w["status"], w["compile"]["stdout"], w["compile"]["stderr"],
                          w["compile"]["exit_code"]),
                         (c["status"], c["compile"]["stdout"], c["compile"]["stderr"],
                          c["compile"]["exit_code"]))
        self.assertEqual((w["stdout"], node_report(w["stderr"]), w["exit_code"]),
                         (c["stdout"], node_report(c["stderr"]), c["exit_code"]))
        self.assertNotIn("/usr/lib/op/warm/", w["stderr"])
        return w

    def test_snapshot_holds_no_runner(self):
        self.assert_runner_per_clone()

    def test_two_clones_have_their_own_random_state(self):
        out1, out2 = self.two_clones(TS_RANDOM, wait_s=1800)
        self.distinct_lines(out1, out2, ["Math.random", "randomBytes", "randomUUID", "mkdtemp"],
                            f"node {NODE_RUNNER} {TS_FRONT}")

    def test_hello_and_stdin_as_cold(self):
        w = self.assert_compiled_as_cold(
            "const fs = require('fs'), path = require('path');\n"
            "const lines: string[] = fs.readFileSync(0, 'utf8').split('\\n').filter(Boolean);\n"
            "console.log('hello world');\n"
            "console.log(process.argv.slice(2).join(','), lines.reverse().join(' '),\n"
            "  (require as any).main === module, path.basename(process.argv[1]),\n"
            "  path.basename(__filename));\n"
            "console.error('to stderr');\n", args=["a", "b c"], stdin="x\ny\n")
        self.assertEqual((w["status"], w["compile"]["stdout"], w["compile"]["exit_code"]),
                         ("ok", "", 0))
        self.assertEqual(w["stdout"], "hello world\na,b c y x true main.js main.js\n")
        self.assertEqual((w["stderr"], w["exit_code"]), ("to stderr\n", 0))

    def test_runtime_error_as_cold(self):
        w = self.assert_compiled_as_cold(
            "function f(n: number): number { throw new RangeError('nope ' + n); }\n"
            "console.log('before');\nf(1);\n")
        self.assertEqual((w["stdout"], w["exit_code"]), ("before\n", 1))
        self.assertIn("main.js:1\n", w["stderr"])
        self.assertIn("RangeError: nope 1\n    at f (", w["stderr"])

    def test_type_error_as_cold(self):
        """tsc's diagnostics (on stdout) and exit status 1: --noEmitOnError, nothing run."""
        w = self.assert_compiled_as_cold(
            "const a = Math.random() > 0.5 ? 1 : 'x';\nconst b: boolean = a;\n"
            "console.log(b, undefinedName);\n")
        self.assertEqual((w["status"], w["compile"]["exit_code"]), ("compile_error", 1))
        self.assertEqual(w["compile"]["stdout"],
                         "main.ts(2,7): error TS2322: Type 'string | number' is not assignable to "
                         "type 'boolean'.\n  Type 'number' is not assignable to type 'boolean'.\n"
                         "main.ts(3,16): error TS2552: Cannot find name 'undefinedName'. Did "
                         "you mean 'undefined'?\n")


JAVA_RANDOM = """import java.nio.file.*;
import java.security.SecureRandom;
import java.util.*;
import java.util.concurrent.ThreadLocalRandom;
import java.util.random.RandomGenerator;

public class Main {
    public static void main(String[] args) throws Exception {
        List<String> r = new ArrayList<>();
        r.add(Double.toString(Math.random()));
        r.add(Long.toString(new SecureRandom().nextLong()));
        r.add(Long.toString(SecureRandom.getInstance("SHA1PRNG").nextLong()));
        r.add(Long.toString(SecureRandom.getInstance("DRBG").nextLong()));
        r.add(Long.toString(new Random().nextLong()));
        r.add(Long.toString(ThreadLocalRandom.current().nextLong()));
        r.add(UUID.randomUUID().toString());
        r.add(Long.toString(new SplittableRandom().nextLong()));
        r.add(Long.toString(RandomGenerator.getDefault().nextLong()));
        r.add(Files.createTempFile("t", "").getFileName().toString());
        r.add(new String(Files.readAllBytes(Path.of("/proc/self/cmdline"))).replace('\\0', ' '));
        System.out.println(String.join("\\n", r));
    }
}
"""
JAVA_RUNNER = "/usr/lib/op/warm/Runner.java"


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "java", "rootfs.ext4")),
                     "no java image in OPD_IMAGES")
class WarmJava(unittest.TestCase):
    """java's runner is a JVM started before the snapshot, which compiles (javac in its own
    process) and runs each request's program: every clone holds the same JVM, and its random
    state is seeded again from the clone's entropy before the program runs.

    CI builds no java image: this runs under scripts/test-languages or by hand with
    OPD_IMAGES naming images built by this tree's build-images (agent 0.5.0 or later). Under
    TCG the snapshot (the runner compiles itself and warms up) takes minutes, and so does each
    clone's prime."""

    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({"pool.sizes": "java=2,bash=0,python=0,node=0,c=0",
                       "pool.fallback_cold": "no", "max_vms": "4"})
        a = cls.opd.call({"op": "snapshot", "action": "create", "lang": "java", "id": "snap"},
                         timeout=1800)
        if not a.get("ok"):
            cls.opd.stop()
        assert a["ok"], a
        cls.version = a["version"]
        cls.manifest = snapshot_manifest(cls.opd, "java", cls.version, (0, 5, 0))

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def full(self, n=2):
        """Wait until n clones are paused and ready, each primed (a compile and a run on its
        runner: slow under TCG on a loaded machine)."""
        wait_for(lambda: (lambda p: p if p["snapshot"] == self.version and p["ready"] >= n
                          else None)(pool(self.opd, "java")), 1800,
                 lambda: f"{n} java clones ready: {pool(self.opd, 'java')}")

    def run_java(self, code, mode="warm", **kw):
        if mode == "warm":
            self.full(1)
        a = self.opd.call({"op": "exec", "lang": "java", "code": code, "mode": mode,
                           "timeout_ms": 60000, **kw}, timeout=1800)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["mode"], mode)
        return a

    def test_snapshot_holds_the_runner(self):
        self.assertTrue(self.manifest["warm"])

    def test_two_clones_have_their_own_random_state(self):
        self.full(2)
        a1, a2 = warm_pair(self, {"op": "exec", "lang": "java", "code": JAVA_RANDOM,
                                   "mode": "warm", "timeout_ms": 60000}, 1800)
        for a in (a1, a2):
            self.assertEqual((a["exit_code"], a["stderr"]), (0, ""), a)
        r1, r2 = a1["stdout"].split("\n")[:-1], a2["stdout"].split("\n")[:-1]
        self.assertEqual(len(r1), 11, a1["stdout"])
        # both ran on the runner, the JVM that was waiting in the clone
        self.assertIn(JAVA_RUNNER, r1[-1])
        self.assertIn(JAVA_RUNNER, r2[-1])
        names = ["Math.random", "SecureRandom", "SHA1PRNG", "DRBG", "Random", "ThreadLocalRandom",
                 "UUID.randomUUID", "SplittableRandom", "RandomGenerator.getDefault",
                 "Files.createTempFile"]
        for name, v1, v2 in zip(names, r1, r2):
            self.assertNotEqual(v1, v2, name)

    def test_program_behaves_like_java(self):
        a = self.run_java("""import java.io.*;
import java.nio.file.*;
import java.util.*;

public class Main {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        List<String> lines = new ArrayList<>();
        for (String l; (l = in.readLine()) != null;) lines.add(l);
        Collections.reverse(lines);
        System.out.println(String.join(",", args) + " " + String.join(" ", lines) + " "
            + System.getenv("HOME").equals(System.getProperty("user.dir")) + " "
            + new File(".").getCanonicalPath().equals(System.getenv("HOME")) + " "
            + Files.readString(Path.of("data.txt")) + " " + System.getenv("GREETING") + " "
            + Main.class.getClassLoader().equals(ClassLoader.getSystemClassLoader()) + " "
            + Thread.currentThread().getName());
        System.err.println("to stderr");
        Thread t = new Thread(() -> { System.out.println("later"); System.exit(3); });
        t.start();
    }
}
""", args=["a", "b c"], stdin="x\ny\n", env={"GREETING": "hi"},
                          files=[{"name": "data.txt", "content": "data"}])
        self.assertEqual(a["stdout"], "a,b c y x true true data hi true main\nlater\n")
        self.assertEqual(a["stderr"], "to stderr\n")
        self.assertEqual(a["exit_code"], 3)
        self.assertEqual(a["compile"]["exit_code"], 0)

    def test_errors_as_cold_java(self):
        """An uncaught exception and a compile error read as a cold `javac` and `java` report
        them (no frame of the runner), with the same exit codes."""
        programs = ["public class Main {\n    static void f() { throw new IllegalStateException(\"nope\"); }\n"
                    "    public static void main(String[] a) {\n        System.out.println(1);\n"
                    "        try { f(); } catch (RuntimeException e) { throw new RuntimeException(\"w\", e); }\n"
                    "    }\n}\n",
                    "public class Main {\n    public static void main(String[] a) {\n"
                    "        int x = y;\n    }\n}\n"]
        for code in programs:
            w = self.run_java(code)
            c = self.run_java(code, mode="cold")
            self.assertEqual(w.get("status"), c.get("status"))
            self.assertEqual((w["stdout"], w["stderr"], w["exit_code"]),
                             (c["stdout"], c["stderr"], c["exit_code"]))
            self.assertEqual((w["compile"]["stdout"], w["compile"]["stderr"],
                              w["compile"]["exit_code"]),
                             (c["compile"]["stdout"], c["compile"]["stderr"],
                              c["compile"]["exit_code"]))
            self.assertNotIn("Runner", w["stderr"] + w["compile"]["stderr"])
        self.assertEqual(w["status"], "compile_error")
        self.assertIn("Main.java:3: error: cannot find symbol", w["compile"]["stderr"])
        self.assertEqual(w["compile"]["exit_code"], 1)

    def test_session_first_call_in_its_directory(self):
        """A session's directory is not the one the runner started in: its first call is
        compiled and run by fresh javac and java processes the runner waits for."""
        self.full(1)
        s = self.opd.call({"op": "session_open", "id": "o", "lang": "java"})
        self.assertTrue(s["ok"], s)
        try:
            code = ("import java.nio.file.*;\npublic class Main { public static void main(String[] a)"
                    " throws Exception { Files.writeString(Path.of(\"f\"), \"kept\"); "
                    "System.out.println(new String(Files.readAllBytes(Path.of(\"/proc/self/cmdline\")))"
                    ".contains(\"Runner\")); } }\n")
            a = self.opd.call({"op": "session_exec", "session": s["session"], "code": code,
                               "timeout_ms": 60000}, timeout=1800)
            self.assertTrue(a["ok"], a)
            self.assertEqual((a["stdout"], a["exit_code"]), ("false\n", 0), a)
            a = self.opd.call({"op": "session_exec", "session": s["session"], "timeout_ms": 60000,
                               "code": "import java.nio.file.*;\npublic class Main { public static "
                               "void main(String[] a) throws Exception { System.out.println("
                               "Files.readString(Path.of(\"f\"))); } }\n"}, timeout=1800)
            self.assertTrue(a["ok"], a)
            self.assertEqual(a["stdout"], "kept\n")
        finally:
            self.opd.call({"op": "session_close", "session": s["session"]})


BEAM_RUNNER = "op_warm"  # the runner's module, named on the VM's command line

ERLANG_RANDOM = """%% two clones: their own random state
main(_) ->
    {ok, Cmd} = file:read_file("/proc/self/cmdline"),
    io:format("~b~n~s~n~s~n", [rand:uniform(1 bsl 60), binary:encode_hex(crypto:strong_rand_bytes(16)),
                               binary:replace(Cmd, <<0>>, <<" ">>, [global])]).
"""

ERLANG_BEHAVIOUR = """%% the first line is not read
main(Args) ->
    Lines = read_lines([]),
    {ok, Cwd} = file:get_cwd(),
    {ok, Data} = file:read_file("data.txt"),
    io:format("~s ~s ~p ~s ~s ~s~n", [string:join(Args, ","), string:join(Lines, " "),
                                      Cwd =:= os:getenv("HOME"), Data, os:getenv("GREETING"),
                                      escript:script_name()]),
    io:format(standard_error, "to stderr~n", []),
    halt(3).

read_lines(Acc) ->
    case io:get_line("") of
        eof -> Acc;
        L -> read_lines([string:trim(L) | Acc])
    end.
"""

ELIXIR_RANDOM = """IO.puts(:rand.uniform(1_000_000_000_000_000))
IO.puts(Enum.random(1..1_000_000_000_000_000))
IO.puts(Base.encode16(:crypto.strong_rand_bytes(16)))
IO.puts(File.read!("/proc/self/cmdline") |> String.replace(<<0>>, " "))
"""

ELIXIR_BEHAVIOUR = """lines = IO.stream(:stdio, :line) |> Enum.map(&String.trim/1)
IO.puts("#{Enum.join(System.argv(), ",")} #{lines |> Enum.reverse() |> Enum.join(" ")} " <>
        "#{File.cwd!() == System.get_env("HOME")} #{File.read!("data.txt")} " <>
        "#{System.get_env("GREETING")} #{System.user_home() == File.cwd!()}")
IO.puts(:stderr, "to stderr")
System.halt(3)
"""


class WarmBeam(WarmRunnerCase):
    """erlang's and elixir's runner (languages/warm/op_warm.erl) is a VM started in each clone,
    after the clone's entropy is in the guest kernel: the snapshot holds no VM, each clone's
    OpenSSL (crypto) seeds itself, and :rand seeds itself in the program's process. The
    runtimes image is large: these run by hand with OPD_IMAGES naming images built by this
    tree's build-images."""

    lang = ""  # erlang or elixir
    random_code = behaviour_code = flags_code = ""
    behaviour_stdout = ""
    error_programs = []
    error_report = ""

    # a cold elixir (the comparisons, the fresh VM) takes minutes on a loaded machine
    timeout_ms = 600000
    config = {"limit.timeout_ms_max": "600000"}

    def test_snapshot_holds_no_runner(self):
        self.assertFalse(self.manifest["warm"])

    def test_two_clones_have_their_own_random_state(self):
        out1, out2 = self.two_clones(self.random_code, timeout_ms=600000)
        r1, r2 = out1.split("\n")[:-1], out2.split("\n")[:-1]
        # both ran on the VM that was waiting in the clone
        self.assertIn(BEAM_RUNNER, r1[-1])
        self.assertIn(BEAM_RUNNER, r2[-1])
        self.assertEqual(len(r1), len(r2))
        for v1, v2 in zip(r1[:-1], r2[:-1]):
            self.assertNotEqual(v1, v2)

    def test_program_behaves_like_the_cold_command(self):
        kw = {"args": ["a", "b c"], "stdin": "x\ny\n", "env": {"GREETING": "hi"},
              "files": [{"name": "data.txt", "content": "data"}]}
        w = self.run_lang(self.behaviour_code, **kw)
        self.assertEqual((w["stdout"], w["stderr"], w["exit_code"]),
                         (self.behaviour_stdout, "to stderr\n", 3))
        c = self.run_lang(self.behaviour_code, mode="cold", **kw)
        self.assertEqual((w["stdout"], w["stderr"], w["exit_code"]),
                         (c["stdout"], c["stderr"], c["exit_code"]))

    def test_errors_as_the_cold_command(self):
        """An uncaught error and a syntax error are reported as by the cold command (no frame
        of the runner), with its exit status."""
        for code in self.error_programs:
            w = self.run_lang(code)
            c = self.run_lang(code, mode="cold")
            self.assertEqual((w["stdout"], w["stderr"], w["exit_code"]),
                             (c["stdout"], c["stderr"], c["exit_code"]))
            self.assertNotEqual(w["exit_code"], 0)
            self.assertNotIn(BEAM_RUNNER, w["stderr"])
        self.assertIn(self.error_report, w["stderr"])

    def test_vm_flags_run_by_a_vm_of_their_own(self):
        """ERL_AFLAGS is read as the VM starts: the runner hands such a program to the cold
        command, stdin included."""
        a = self.run_lang(self.flags_code, env={"ERL_AFLAGS": "-op_flag yes"}, stdin="in\n")
        self.assertEqual((a["stdout"], a["exit_code"]), ("yes in\n", 0), a)


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "erlang", "rootfs.ext4")),
                     "no erlang image in OPD_IMAGES")
class WarmErlang(WarmBeam, unittest.TestCase):
    lang = "erlang"
    random_code = ERLANG_RANDOM
    behaviour_code = ERLANG_BEHAVIOUR
    behaviour_stdout = "a,b c y x true data hi main.erl\n"
    flags_code = ("%% flags\nmain(_) ->\n    {ok, [[F]]} = init:get_argument(op_flag),\n"
                  "    io:format(\"~s ~s\", [F, io:get_line(\"\")]).\n")
    error_programs = ["%% error\nmain(_) ->\n    io:format(\"1~n\"),\n    f(a).\n\nf(X) -> X + 1.\n",
                      "%% syntax\nmain(_) ->\n    io:format(\"x~n\")\n    ok.\n"]
    error_report = "main.erl:3:5: syntax error before: ok\n"


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "elixir", "rootfs.ext4")),
                     "no elixir image in OPD_IMAGES")
class WarmElixir(WarmBeam, unittest.TestCase):
    lang = "elixir"
    random_code = ELIXIR_RANDOM
    behaviour_code = ELIXIR_BEHAVIOUR
    behaviour_stdout = "a,b c y x true data hi true\n"
    flags_code = "{:ok, [[f]]} = :init.get_argument(:op_flag)\nIO.write(\"#{f} #{IO.gets(\"\")}\")\n"
    error_programs = ["IO.puts(1)\ndefmodule M do\n  def f(x), do: x + 1\nend\nM.f(:a)\n",
                      "IO.puts(\"a\"\nx = \n"]
    error_report = "** (TokenMissingError) main.exs:"


R_RANDOM = """cmd <- readBin("/proc/self/cmdline", "raw", 65536)
cmd[cmd == 0] <- as.raw(32)
cat(runif(2), sample(1e6, 3), tempfile(), tempdir(), rawToChar(cmd), sep = "\\n")
"""
R_RUNNER = "/usr/lib/op/warm/rscript.R"


def r_report(text):
    """What a run of R printed, with the names that are its run's own (the run directory, R's
    session temporary directory) taken out."""
    return re.sub(r"/tmp/op/[^/\s\"]+", "DIR", re.sub(r"Rtmp\w{6}", "RTMP", text))


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "rscript", "rootfs.ext4")),
                     "no rscript image in OPD_IMAGES")
class WarmR(WarmRunnerCase, unittest.TestCase):
    """R's runner starts in each clone (R seeds C's rand(), behind tempfile()'s names, as it
    starts) and hands the program to R's own read-eval-print loop, which reads it as `Rscript
    main.r` reads its file; R's generator is seeded from the clone's kernel before the program.

    CI builds no rscript image: this runs with OPD_IMAGES naming images built by this tree's
    build-images (agent 0.4.0 or later)."""

    lang = "rscript"

    report = staticmethod(r_report)  # its directories' names aside

    def test_snapshot_holds_no_runner(self):
        self.assert_runner_per_clone()

    def test_two_clones_have_their_own_random_state(self):
        # both run on the runner, the R that was waiting in the clone
        r1, _ = self.distinct_lines(
            *self.two_clones(R_RANDOM),
            ["runif", "runif", "sample", "sample", "sample", "tempfile", "tempdir"], R_RUNNER)
        # R's session directory is made in the run's directory (TMPDIR), as by a cold Rscript
        self.assertRegex(r1[6], r"^/tmp/op/[^/]+/Rtmp\w{6}$")
        self.assertTrue(r1[5].startswith(r1[6] + "/file"), r1)

    def test_program_behaves_like_rscript(self):
        w = self.assert_as_cold(
            'x <- readLines("stdin")\n'
            'cat(commandArgs(trailingOnly = TRUE), sep = ",")\n'
            'cat("", rev(x), Sys.getenv("GREETING"), readLines("data.txt"),\n'
            '    getwd() == Sys.getenv("HOME"), path.expand("~") == getwd(), "\\n")\n'
            'print(commandArgs()[-1])\n'
            'message("to stderr")\n'
            'quit(status = 3)\n'
            'cat("not reached\\n")\n',
            args=["a", "b c"], stdin="x\ny\n", env={"GREETING": "hi"},
            files=[{"name": "data.txt", "content": "data\n"}])
        self.assertEqual(w["stdout"], 'a,b c y x hi data TRUE TRUE \n'
                         '[1] "--no-echo"     "--no-restore"  "--file=main.r" "--args"       \n'
                         '[5] "a"             "b c"          \n')
        self.assertEqual((w["stderr"], w["exit_code"]), ("to stderr\n", 3))
        # R's state as it starts: environment, packages, the console (stdin()) reading on in
        # the program's text. (.Random.seed is there from the start on the runner: seeded.)
        self.assert_as_cold('print(Sys.getenv())\nprint(search())\nprint(loadedNamespaces())\n'
                            'print(setdiff(ls(all.names = TRUE), ".Random.seed"))\n'
                            'print(c(tempdir(), Sys.getenv("R_SESSION_TMPDIR"), .libPaths()))\n'
                            'print(readLines(stdin(), n = 1))\nthis line is read, not run\n'
                            'x <- scan(n = 2)\n4 5\nprint(x)\n')

    def test_errors_warnings_and_syntax_errors_as_rscript(self):
        w = self.assert_as_cold('cat("before\\n")\nwarning("careful")\n'
                                'f <- function() stop("nope")\ng <- function() f()\ng()\n'
                                'cat("after\\n")\n')
        self.assertEqual((w["stdout"], w["exit_code"]), ("before\n", 1))
        self.assertEqual(w["stderr"], "Warning message:\ncareful \nError in f() : nope\n"
                         "Calls: g -> f\nExecution halted\n")
        w = self.assert_as_cold('cat(1, "\\n")\nfor (i in 1:12) warning(i)\nx <- ;\ncat(2)\n')
        self.assertEqual((w["stdout"], w["exit_code"]), ("1 \n", 1))
        self.assertIn('Error: unexpected \';\' in "x <- ;"\nExecution halted\n', w["stderr"])
        self.assertIn("There were 12 warnings (use warnings() to see them)", w["stderr"])

    def test_settings_read_at_start_run_by_a_fresh_rscript(self):
        """R takes its locale and R_* variables as it starts: such a request is run by an
        Rscript the runner starts and waits for."""
        w = self.assert_as_cold('cmd <- readBin("/proc/self/cmdline", "raw", 65536)\n'
                                'cmd[cmd == 0] <- as.raw(32)\n'
                                'cat(Sys.getlocale("LC_COLLATE"), Sys.getenv("R_PAPERSIZE"),\n'
                                '    rawToChar(cmd), "\\n")\nquit(status = 4)\n',
                                env={"LC_ALL": "C", "R_PAPERSIZE": "a4"})
        self.assertEqual(w["exit_code"], 4)
        self.assertTrue(w["stdout"].startswith("C a4 /usr/lib/R/bin/exec/R --no-echo "
                                               "--no-restore --file=main.r"), w["stdout"])

    def test_session_first_call_on_the_runner(self):
        self.full(1)
        s = self.opd.call({"op": "session_open", "id": "o", "lang": "rscript"})
        self.assertTrue(s["ok"], s)
        try:
            code = ('writeLines("kept", "f")\ncmd <- readBin("/proc/self/cmdline", "raw", 65536)\n'
                    'cat(grepl("rscript.R", rawToChar(cmd[cmd != 0])), getwd() == Sys.getenv("HOME"),'
                    ' "\\n")\n')
            a = self.opd.call({"op": "session_exec", "session": s["session"], "code": code,
                               "timeout_ms": 60000}, timeout=900)
            self.assertTrue(a["ok"], a)
            self.assertEqual((a["stdout"], a["exit_code"]), ("TRUE TRUE \n", 0), a)
            a = self.opd.call({"op": "session_exec", "session": s["session"], "code": code +
                               'cat(readLines("f"), "\\n")\n', "timeout_ms": 60000}, timeout=900)
            self.assertTrue(a["ok"], a)
            # later calls start `Rscript main.r`
            self.assertEqual(a["stdout"], "FALSE TRUE \nkept \n")
        finally:
            self.opd.call({"op": "session_close", "session": s["session"]})


RAKU_RANDOM = """my @cmd = '/proc/self/cmdline'.IO.slurp.split("\\0");
say rand;
say (^1_000_000).pick;
say (^1_000_000).roll(3).join(",");
say (1..20).pick(*).join(",");
say ('a'..'z').map({ $_ => 1 }).Hash.keys.join;
say @cmd.join(" ");
"""
RAKU_RUNNER = "use OpWarmRaku; op-warm-run(%e)"  # in the runner's command line


def raku_report(text):
    """What a run of raku printed, with its run's directory taken out."""
    return re.sub(r"/tmp/op/[^/\s\"]+", "DIR", text)


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "raku", "rootfs.ext4")),
                     "no raku image in OPD_IMAGES")
class WarmRaku(WarmRunnerCase, unittest.TestCase):
    """raku's runner starts in each clone (MoarVM draws its hash secrets, behind the order of a
    hash's keys, as it starts, and cannot draw them again) and runs the program through the
    compiler's own command_eval, as `raku main.raku` does; MoarVM's generator is seeded from the
    clone's kernel before the program.

    CI builds no raku image: this runs with OPD_IMAGES naming images built by this tree's
    build-images (agent 0.4.0 or later)."""

    lang = "raku"

    report = staticmethod(raku_report)  # its directory's name aside

    def test_snapshot_holds_no_runner(self):
        self.assert_runner_per_clone()

    def test_two_clones_have_their_own_random_state(self):
        # both run on the runner, the raku that was waiting in the clone
        r1, r2 = self.distinct_lines(*self.two_clones(RAKU_RANDOM),
                                     ["rand", "pick", "roll", "pick(*)", "hash order"],
                                     RAKU_RUNNER)
        self.assertEqual(sorted(r1[4]), sorted(r2[4]))

    def test_program_behaves_like_raku(self):
        w = self.assert_as_cold(
            'say @*ARGS.raku, " ", $*PROGRAM-NAME, " ", $*PROGRAM.absolute eq "$*CWD/main.raku";\n'
            'say $*IN.lines.reverse.join(","), " ", %*ENV<GREETING>, " ",'
            ' "data.txt".IO.slurp.chomp,'
            ' " ", $*CWD eq %*ENV<HOME>, " ", $*CWD eq $*HOME;\n'
            'note "to stderr";\n'
            'END { say "end" }\n'
            'exit 3;\n'
            'say "not reached";\n',
            args=["a", "b c"], stdin="x\ny\n", env={"GREETING": "hi"},
            files=[{"name": "data.txt", "content": "data\n"}])
        self.assertEqual(w["stdout"], '["a", "b c"] main.raku True\ny,x hi data True True\nend\n')
        self.assertEqual((w["stderr"], w["exit_code"]), ("to stderr\n", 3))
        # raku's state as it starts: environment, directory, globals, what `lines()` reads
        self.assert_as_cold('say %*ENV.sort; say $*CWD.raku; say $*TMPDIR; say GLOBAL::.keys;\n'
                            'say $*REPO.repo-chain.map(*.path-spec);\n'
                            'for lines() { say "line $_" }\n', stdin="1\n2\n")

    def test_errors_as_raku(self):
        w = self.assert_as_cold('say "before";\nsub f { die "nope" }\nsub g { f() }\ng();\n'
                                'say "after";\n')
        self.assertEqual((w["stdout"], w["exit_code"]), ("before\n", 1))
        self.assertEqual(w["stderr"], "nope\n  in sub f at main.raku line 2\n"
                         "  in sub g at main.raku line 3\n"
                         "  in block <unit> at main.raku line 4\n\n")
        w = self.assert_as_cold('warn "careful";\nmy @a;\nsay @a[3].foo;\n')
        self.assertEqual(w["exit_code"], 1)
        self.assertIn("No such method 'foo' for invocant of type 'Any'", w["stderr"])
        w = self.assert_as_cold('say 1;\nmy $x = ;\nsay 2;\n')
        self.assertEqual((w["stdout"], w["exit_code"]), ("", 1))
        self.assertIn("SORRY!", w["stderr"])
        self.assertIn("Error while compiling DIR/main.raku\nMalformed initializer\n"
                      "at DIR/main.raku:2\n", raku_report(w["stderr"]))

    def test_main_as_raku(self):
        code = 'sub MAIN(Int $n, Bool :$loud) { say $loud ?? "N=$n" !! "n=$n" }\n'
        w = self.assert_as_cold(code, args=["--loud", "4"])
        self.assertEqual((w["stdout"], w["exit_code"]), ("N=4\n", 0))
        w = self.assert_as_cold(code, args=["four"])
        self.assertEqual((w["stdout"], w["stderr"], w["exit_code"]),
                         ("", "Usage:\n  main.raku [--loud] <n>\n", 2))
        w = self.assert_as_cold('sub MAIN() { exit 7 }\n')
        self.assertEqual(w["exit_code"], 7)

    def test_settings_read_at_start_run_by_a_fresh_raku(self):
        """raku takes RAKULIB (and RAKUDO_*, MVM_*, ...) as it starts: such a request is run by
        a raku the runner becomes (exec)."""
        w = self.assert_as_cold('say $*REPO.repo-chain[0].path-spec;\n'
                                'say "/proc/self/cmdline".IO.slurp.split("\\0")[^2];\n'
                                'say @*ARGS; say $*IN.get; exit 4;\n',
                                args=["x"], stdin="in\n", env={"RAKULIB": "/nonexistent"})
        self.assertEqual((w["stdout"], w["exit_code"]),
                         ("file#/nonexistent\n(raku main.raku)\n[x]\nin\n", 4))

    def test_session_first_call_on_the_runner(self):
        self.full(1)
        s = self.opd.call({"op": "session_open", "id": "o", "lang": "raku"})
        self.assertTrue(s["ok"], s)
        try:
            code = ('spurt "f", "kept";\n'
                    'say "/proc/self/cmdline".IO.slurp.contains("OpWarmRaku"), " ",'
                    ' $*CWD eq %*ENV<HOME>;\n')
            a = self.opd.call({"op": "session_exec", "session": s["session"], "code": code,
                               "timeout_ms": 60000}, timeout=900)
            self.assertTrue(a["ok"], a)
            self.assertEqual((a["stdout"], a["exit_code"]), ("True True\n", 0), a)
            a = self.opd.call({"op": "session_exec", "session": s["session"],
                               "code": code + 'say slurp "f";\n', "timeout_ms": 60000},
                              timeout=900)
            self.assertTrue(a["ok"], a)
            # later calls start `raku main.raku`
            self.assertEqual(a["stdout"], "False True\nkept\n")
        finally:
            self.opd.call({"op": "session_close", "session": s["session"]})


GROOVY_RANDOM = """import java.nio.file.*
import java.security.SecureRandom
import java.util.concurrent.ThreadLocalRandom

def r = []
r << Math.random()
r << new SecureRandom().nextLong()
r << SecureRandom.getInstance("SHA1PRNG").nextLong()
r << new Random().nextLong()
r << ThreadLocalRandom.current().nextLong()
r << UUID.randomUUID()
r << new SplittableRandom().nextLong()
def l = (1..20).toList()
Collections.shuffle(l)
r << l
r << Files.createTempFile("t", "").fileName
r << File.createTempFile("tmp", "").name
r << new File("/proc/self/cmdline").text.replace((char) 0, (char) 32)
println r.join("\\n")
"""


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "groovy", "rootfs.ext4")),
                     "no groovy image in OPD_IMAGES")
class WarmGroovy(WarmRunnerCase, unittest.TestCase):
    """groovy's runner is java's (languages/warm/Runner.java) in its groovy mode: a JVM started
    before the snapshot with groovy's class loader and entry point warmed up, which runs each
    request's script through groovy.ui.GroovyMain; every clone holds the same JVM, and its
    random state is seeded again from the clone's entropy before the script runs.

    CI builds no groovy image: this runs by hand with OPD_IMAGES naming images built by this
    tree's build-images. Under TCG the snapshot (the runner warms up) takes minutes."""

    lang = "groovy"
    agent_min = (0, 5, 0)
    wait_s = 1800
    # the cold `groovy` a test compares with takes minutes under TCG on a loaded machine
    timeout_ms = 600000
    config = {"limit.timeout_ms_max": "600000"}

    def test_snapshot_holds_the_runner(self):
        self.assertTrue(self.manifest["warm"])

    def test_two_clones_have_their_own_random_state(self):
        # both run on the runner, the JVM that was waiting in the clone
        self.distinct_lines(*self.two_clones(GROOVY_RANDOM, wait_s=1800),
                            ["Math.random", "SecureRandom", "SHA1PRNG", "Random",
                             "ThreadLocalRandom", "UUID.randomUUID", "SplittableRandom",
                             "Collections.shuffle", "Files.createTempFile",
                             "File.createTempFile"], JAVA_RUNNER)

    def test_script_behaves_like_groovy(self):
        """The same script, warm and cold: argv, stdin, env, files, the working directory,
        System.exit() from another thread; an uncaught exception's report (groovy's "Caught:",
        the stack sanitized, nothing of the runner) and a compile error, with their exit
        status."""
        programs = [
            ("def lines = System.in.readLines().reverse()\n"
             "println args.join(',') + ' ' + lines.join(' ') + ' ' + System.getenv('GREETING')"
             " + ' ' + new File('data.txt').text + ' '"
             " + (new File('.').canonicalPath == System.getenv('HOME')) + ' '"
             " + Thread.currentThread().name\n"
             "System.err.println 'to stderr'\n"
             "Thread.start { println 'later'; System.exit(3) }\n"),
            ("class A { def m() { throw new RuntimeException('deep', new IOException('io')) } }\n"
             "def f() { throw new IllegalStateException('nope') }\n"
             "println 1\n"
             "try { f() } catch (IllegalStateException e) { new A().m() }\n"),
            "println 1\ndef x =\n",
            "undefinedThing()\n",
        ]
        kw = {"args": ["a", "b c"], "stdin": "x\ny\n", "env": {"GREETING": "hi"},
              "files": [{"name": "data.txt", "content": "data"}]}
        for code in programs:
            w = self.run_lang(code, **kw)
            c = self.run_lang(code, mode="cold", **kw)
            # the compile error names the script by its path, in the run's own directory
            strip = lambda e: re.sub("/tmp/op/[^/]+/", "DIR/", e)  # noqa: E731
            self.assertEqual((w["stdout"], strip(w["stderr"]), w["exit_code"]),
                             (c["stdout"], strip(c["stderr"]), c["exit_code"]), code)
            self.assertNotIn("Runner", w["stderr"])
        self.assertEqual(w["exit_code"], 1)
        first = self.run_lang(programs[0], **kw)
        self.assertEqual((first["stdout"], first["stderr"], first["exit_code"]),
                         ("a,b c y x hi data true main\nlater\n", "to stderr\n", 3))

    def test_java_home_runs_a_groovy_of_its_own(self):
        """JAVA_HOME is read by bin/groovy as it starts: such a request runs a fresh groovy."""
        a = self.run_lang("print new File('/proc/self/cmdline').text.contains('Runner')\n"
                            "System.exit(4)\n",
                            env={"JAVA_HOME": "/usr/lib/jvm/java-17-openjdk-amd64"})
        self.assertEqual((a["stdout"], a["exit_code"]), ("false", 4))


GUILE_RANDOM = """(use-modules (ice-9 textual-ports))
(write (list (random 1000000000)
             (random 1000000000 (random-state-from-platform))
             (string-contains (call-with-input-file "/proc/self/cmdline" get-string-all)
                              "warm/guile.scm")))
"""


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "scheme", "rootfs.ext4")),
                     "no scheme image in OPD_IMAGES")
class WarmScheme(WarmRunnerCase, unittest.TestCase):
    """guile's runner (languages/warm/guile.scm) is started before the snapshot with the common
    modules loaded; guile itself then loads the program through its own `-s`, as a cold
    `guile-3.0 --no-auto-compile -s main.scm`."""

    lang = "scheme"

    def test_snapshot_holds_the_runner(self):
        self.assertTrue(self.manifest["warm"])

    def test_two_clones_random_as_cold_guile(self):
        """`random`'s default state is guile's fixed one in every process, warm or cold (the
        same numbers a cold guile gives); a state from the platform comes from each clone's
        own entropy."""
        self.full(2)
        a1, a2 = warm_pair(self, {"op": "exec", "lang": "scheme", "code": GUILE_RANDOM,
                                   "mode": "warm", "timeout_ms": 60000}, 900)
        c = self.run_lang(GUILE_RANDOM, mode="cold")
        r1, r2, rc = (a["stdout"].strip("()").split() for a in (a1, a2, c))
        for r in (r1, r2):
            self.assertNotEqual(r[2], "#f")  # ran on the runner
            self.assertEqual(r[0], rc[0])
        self.assertEqual(rc[2], "#f")
        self.assertNotEqual(r1[1], r2[1])
        self.assertNotEqual(r1[1], rc[1])

    def test_program_behaves_like_guile(self):
        code = ("(use-modules (ice-9 format) (ice-9 textual-ports) (srfi srfi-1))\n"
                "(format #t \"~s ~s ~s ~a ~a~%\" (command-line)\n"
                "        (reverse (string-split (get-string-all (current-input-port)) #\\newline))\n"
                "        (getenv \"GREETING\") (call-with-input-file \"data.txt\" get-string-all)\n"
                "        (string=? (getcwd) (getenv \"HOME\")))\n"
                "(write (module-name (current-module)))\n"
                "(display \"to stderr\\n\" (current-error-port))\n(exit 3)\n")
        w = self.assert_as_cold(code, args=["a", "b c"], stdin="x\ny\n", env={"GREETING": "hi"},
                                files=[{"name": "data.txt", "content": "data"}])
        self.assertEqual(w["stdout"], '("main.scm" "a" "b c") ("" "y" "x") "hi" data #t\n'
                         "(guile-user)")
        self.assertEqual((w["stderr"], w["exit_code"]), ("to stderr\n", 3))

    def test_errors_as_cold_guile(self):
        """An error's backtrace and message, an unbound variable, a read error: as a cold guile
        reports them (the run's directory aside), exit status 1."""
        for code in ["(display 1)\n(define (f v) (vector-ref v 5))\n(f (vector 1 2))\n",
                     "(display (read-line))\n",
                     "(display 1)\n(define x\n"]:
            with self.subTest(code=code):
                w = self.assert_as_cold(code)
                self.assertEqual(w["exit_code"], 1)

    @staticmethod
    def report(text):
        return re.sub(r"/tmp/op/[^/]+/", "DIR/", text)

    def test_guile_variable_runs_a_guile_of_its_own(self):
        a = self.run_lang(GUILE_RANDOM, env={"GUILE_WARN_DEPRECATED": "no"})
        self.assertTrue(a["stdout"].endswith(" #f)"), a)


EMACS_RANDOM = """(princ (format "%S %S %S" (random 1000000000) (make-temp-name "x")
  (with-temp-buffer
    (insert-file-contents-literally "/proc/self/cmdline")
    (and (string-match-p "warm/emacs.el" (buffer-string)) t))))
"""


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "emacs", "rootfs.ext4")),
                     "no emacs image in OPD_IMAGES")
class WarmEmacs(WarmRunnerCase, unittest.TestCase):
    """emacs's runner (languages/warm/emacs.el) is an emacs started before the snapshot; the
    program is loaded by emacs's own command-line loop, as `emacs --batch --no-site-file
    --script main.el` loads it."""

    lang = "emacs"

    def test_snapshot_holds_the_runner(self):
        self.assertTrue(self.manifest["warm"])

    def test_two_clones_have_their_own_random_state(self):
        """`random` is seeded again from each clone's entropy; temporary names differ too."""
        self.full(2)
        a1, a2 = warm_pair(self, {"op": "exec", "lang": "emacs", "code": EMACS_RANDOM,
                                   "mode": "warm", "timeout_ms": 60000}, 900)
        r1, r2 = (a["stdout"].split() for a in (a1, a2))
        self.assertEqual((r1[2], r2[2]), ("t", "t"))  # both ran on the runner
        self.assertNotEqual(r1[0], r2[0])
        self.assertNotEqual(r1[1], r2[1])

    def test_program_behaves_like_emacs(self):
        code = ("(princ (format \"%S %S %S %S %S\\n\" command-line-args-left\n"
                "  (read-from-minibuffer \"\") (getenv \"GREETING\") default-directory\n"
                "  (with-temp-buffer (insert-file-contents \"data.txt\") (buffer-string))))\n"
                "(message \"to stderr\")\n(kill-emacs 3)\n")
        w = self.assert_as_cold(code, args=["a", "b c"], stdin="x\ny\n", env={"GREETING": "hi"},
                                files=[{"name": "data.txt", "content": "data"}])
        self.assertEqual(w["stdout"], '("a" "b c") "x" "hi" "~/" "data"\n')
        self.assertEqual((w["stderr"], w["exit_code"]), ("\nto stderr\n", 3))

    def test_errors_as_cold_emacs(self):
        """An error's backtrace and message, a void function, a read error: as a cold emacs
        reports them (the run's directory aside), exit status 255."""
        for code in ["(princ 1)\n(defun f (v) (aref v 5))\n(f (vector 1 2))\n",
                     "(princ (undefined-thing 1))\n",
                     "(princ 1)\n(setq x (list 1\n"]:
            with self.subTest(code=code):
                w = self.assert_as_cold(code)
                self.assertEqual(w["exit_code"], 255)

    @staticmethod
    def report(text):
        return re.sub(r"/tmp/op/[^/]+/", "DIR/", text)

    def test_start_variable_runs_an_emacs_of_its_own(self):
        a = self.run_lang(EMACS_RANDOM, env={"LC_ALL": "C"})
        self.assertTrue(a["stdout"].endswith(" nil"), a)


RACKET_RANDOM = """#lang racket/base
(require racket/file racket/random json)
(define tmp (make-temporary-file))
(write-json (list (random) (random 4294967087)
                  (vector->list (pseudo-random-generator->vector
                                 (current-pseudo-random-generator)))
                  (bytes->list (crypto-random-bytes 16))
                  (let-values ([(dir name must-be-dir?) (split-path tmp)]) (path->string name))
                  (call-with-input-file "/proc/self/cmdline"
                    (lambda (in) (map bytes->string/utf-8
                                      (regexp-split #rx#"\\0" (read-bytes 4096 in)))))))
"""
RACKET_RUNNER = "/usr/lib/op/warm/racket.rkt"


def racket_report(stderr):
    """racket's error report with the run's directory (absolute in its context lines) taken
    out."""
    return re.sub(r"/tmp/op/[^/]+/", "DIR/", stderr)


@unittest.skipUnless(os.path.exists(os.path.join(IMAGES, "racket", "rootfs.ext4")),
                     "no racket image in OPD_IMAGES")
class WarmRacket(WarmRunnerCase, unittest.TestCase):
    """racket's runner is started before the snapshot with racket/base, racket and json loaded;
    each request's module runs in a namespace of its own, and the generator behind `random` is
    seeded again from the clone's entropy before it runs."""

    lang = "racket"
    # a cold `racket main.rkt` of a `#lang racket` program took over a minute at load 9
    timeout_ms = 600000
    config = {"limit.timeout_ms_max": "600000"}

    def test_snapshot_holds_the_runner(self):
        self.assertTrue(self.manifest["warm"])

    def test_two_clones_have_their_own_random_state(self):
        self.full(2)
        sent = time.time()
        a1, a2 = warm_pair(self, {"op": "exec", "lang": "racket", "code": RACKET_RANDOM,
                                   "mode": "warm", "timeout_ms": 60000}, 900)
        got = time.time()
        for a in (a1, a2):
            self.assertEqual((a["exit_code"], a["stderr"]), (0, ""), a)
        r1, r2 = json.loads(a1["stdout"]), json.loads(a2["stdout"])
        # both ran on the runner, the racket that was waiting in the clone
        self.assertIn(RACKET_RUNNER, r1[5])
        self.assertIn(RACKET_RUNNER, r2[5])
        for name, v1, v2 in zip(["random", "random k", "generator state", "crypto-random-bytes"],
                                r1, r2):
            self.assertNotEqual(v1, v2, name)
        # temporary file names end in the clock's seconds and milliseconds, the clone's own
        # clock: set from the host's as the request came
        for r in (r1, r2):
            m = re.fullmatch(r".*_(\d{10})\d+", r[4])
            self.assertTrue(m, r[4])
            self.assertTrue(sent - 2 <= int(m.group(1)) <= got + 2, (sent, r[4], got))

    def test_program_behaves_like_racket(self):
        code = ("#lang racket\n"
                "(define lines (port->lines (current-input-port)))\n"
                "(displayln (list (current-command-line-arguments) (reverse lines)\n"
                "  (getenv \"GREETING\") (file->string \"data.txt\")\n"
                "  (equal? (path->string (current-directory))\n"
                "          (path->string (path->directory-path (getenv \"HOME\"))))\n"
                "  (find-system-path 'run-file) (length (namespace-mapped-symbols))))\n"
                "'(a \"b\" #\\c)\n"
                "(struct pt (x y) #:transparent)\n"
                "(pt 1 2)\n"
                "(eprintf \"to stderr\\n\")\n"
                "(module+ main (displayln \"main\") (exit 3))\n")
        kw = dict(args=["a", "b c"], stdin="x\ny\n", env={"GREETING": "hi"},
                  files=[{"name": "data.txt", "content": "data"}])
        w = self.run_lang(code, **kw)
        self.assertEqual(w["stdout"], "(#(a b c) (y x) hi data #t main.rkt 0)\n"
                         "'(a \"b\" #\\c)\n(pt 1 2)\nmain\n")
        self.assertEqual(w["stderr"], "to stderr\n")
        self.assertEqual(w["exit_code"], 3)
        c = self.run_lang(code, mode="cold", **kw)
        self.assertEqual((w["stdout"], w["stderr"], w["exit_code"]),
                         (c["stdout"], c["stderr"], c["exit_code"]))

    def test_errors_as_cold_racket(self):
        """An uncaught exception, a read error and an unbound identifier read as a cold
        `racket main.rkt` reports them (no frame of the runner), with the same exit status."""
        programs = ["#lang racket/base\n(displayln 1)\n(define (f v) (vector-ref v 5))\n"
                    "(define (g v) (+ 1 (f v)))\n(g (vector 1 2))\n(displayln 2)\n",
                    "#lang racket/base\n(displayln 1)\n(define x\n",
                    "#lang racket/base\n(displayln (undefined-thing 1))\n",
                    "#lang racket/base\n(module+ main (error 'boom \"bad ~a\" 42))\n"
                    "(displayln \"body\")\n",
                    "#lang racket/base\n(raise 'foo)\n"]
        for code in programs:
            w = self.run_lang(code)
            c = self.run_lang(code, mode="cold")
            self.assertEqual((w["stdout"], w["exit_code"]), (c["stdout"], c["exit_code"]), code)
            self.assertEqual(w["exit_code"], 1, w)
            self.assertEqual(racket_report(w["stderr"]), racket_report(c["stderr"]))
            self.assertNotIn(RACKET_RUNNER, w["stderr"])
        self.assertEqual(w["stderr"], "uncaught exception: 'foo\n")


class PoolLimits(unittest.TestCase):
    """One VM at most: a second request waits for the first VM's replacement."""

    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({"pool.sizes": "bash=1,python=0", "max_vms": "1",
                       "pool.fallback_cold": "no", "queue_timeout_ms": "60000"})
        cls.version = create_snapshot(cls.opd, "bash")
        wait_serving(cls.opd, "bash", cls.version)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def test_empty_pool_waits_then_served(self):
        c1, c2 = self.opd.client(), self.opd.client()
        # the first holds the only VM until its stdin says go
        c1.send({"op": "exec", "lang": "bash", "code": "read -r x; echo first", "id": 1,
                 "stdin_stream": True})
        wait_for(lambda: pool(self.opd, "bash")["in_use"] == 1, 120, "the first to hold the VM")
        c2.send({"op": "exec", "lang": "bash", "code": "echo second", "id": 2})
        wait_for(lambda: pool(self.opd, "bash")["waiting"] == 1, 120, "the second to wait")
        time.sleep(0.6)  # the second has been waiting at least this long
        c1.send({"op": "stdin", "id": 1, "data": "go\n", "eof": True})
        a1, a2 = c1.recv(), c2.recv()
        self.assertEqual(a1["stdout"], "first\n", a1)
        self.assertEqual(a2["stdout"], "second\n", a2)
        self.assertEqual(a2["mode"], "warm")
        self.assertGreater(a2["timings_ms"]["queue"], 500)


class PoolExhausted(unittest.TestCase):
    def test_deadline(self):
        opd = Opd({"pool.sizes": "bash=1,python=0", "max_vms": "1", "pool.fallback_cold": "no",
                   "queue_timeout_ms": "1000"})
        try:
            v = create_snapshot(opd, "bash")
            wait_serving(opd, "bash", v)
            c1, c2 = opd.client(), opd.client()
            c1.send({"op": "exec", "lang": "bash", "code": "sleep 4; echo busy", "id": 1})
            wait_for(lambda: pool(opd, "bash")["in_use"] == 1, 120, "the first to hold the VM")
            c2.send({"op": "exec", "lang": "bash", "code": "echo never", "id": 2})
            a2 = c2.recv()
            self.assertFalse(a2["ok"])
            self.assertEqual(a2["error"]["code"], "pool_exhausted")
            self.assertEqual(c1.recv()["stdout"], "busy\n")
        finally:
            opd.stop()


class SnapshotVersions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({"pool.sizes": "bash=2,python=0", "snapshot_check_ms": "500"})

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def test_corrupt_version_refused_then_update_drains(self):
        opd = self.opd
        v1 = create_snapshot(opd, "bash")
        wait_serving(opd, "bash", v1, ready=2)
        # A copy of v1 under a new name whose memory no longer matches its manifest.
        d = os.path.join(opd.dir, "cache", "bash")
        bad = "29990101T000000Z-badbad"
        shutil.copytree(os.path.join(d, v1), os.path.join(d, bad))
        # copied by root, the copy is root's and 0700 like the original: opd cannot read it,
        # and says so while v1 serves on
        os.symlink(bad, os.path.join(d, "current.new"))
        os.rename(os.path.join(d, "current.new"), os.path.join(d, "current"))
        p = wait_for(lambda: (lambda p: p if p["error"] else None)(pool(opd, "bash")), 120,
                     "the unreadable version to be reported")
        self.assertIn("Permission denied", p["error"])
        self.assertEqual(p["snapshot"], v1)
        # given to opd's user, as a copy into the cache must be
        st = os.stat(os.path.join(d, v1))
        for root, dirs, files in os.walk(os.path.join(d, bad)):
            for n in [root] + [os.path.join(root, f) for f in files]:
                os.chown(n, st.st_uid, st.st_gid)
        with open(os.path.join(d, bad, "manifest.json")) as f:
            m = json.load(f)
        m["version"] = bad
        with open(os.path.join(d, bad, "manifest.json"), "w") as f:
            json.dump(m, f)
        with open(os.path.join(d, bad, "mem"), "r+b") as f:
            f.seek(4096 * 100)
            f.write(b"corrupt!")
        p = wait_for(lambda: (lambda p: p if "checksum" in (p["error"] or "") else None)(
            pool(opd, "bash")), 120, "the corrupt version to be refused")
        self.assertIn("checksum mismatch", p["error"])
        self.assertEqual(p["snapshot"], v1)
        a = opd.run("bash", "echo still v1")
        self.assertEqual(a["stdout"], "still v1\n")
        self.assertEqual(a["snapshot"], v1)

        # A good new version replaces v1: old paused VMs drain, new requests run on v2.
        v2 = create_snapshot(opd, "bash")
        wait_serving(opd, "bash", v2, ready=2)
        for i in range(3):
            a = opd.run("bash", "echo on v2", id=i)
            self.assertEqual(a["snapshot"], v2, a)
        p = pool(opd, "bash")
        self.assertIsNone(p["error"])

        # drained: no VMM process maps v1's memory any more (one that ended maps nothing)
        def maps_v1():
            found = []

            def check(pid):
                with open(f"/proc/{pid}/maps") as f:
                    if f"/{v1}/mem" in f.read():
                        found.append(pid)
            each_live(opd.vmm_pids(), check)
            return found
        wait_for(lambda: not maps_v1(), 30, lambda: f"v1's clones to drain: {maps_v1()}")


if __name__ == "__main__":
    unittest.main()
