"""opctl's run flags, --interactive and batch against the real opd: each flag reaches opd as its
exec field (an out-of-range value comes back as bad_request naming the field; valid ones show
their effect in the guest), files go in and come back byte for byte."""
import json
import os
import select
import subprocess
import tempfile
import time
import unittest

from opdtest import OPCTL, Opd


class OpctlFlags(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({"pool.size": "0"})
        cls.tmp = tempfile.mkdtemp(prefix="opctl-test-")

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def opctl(self, *argv, stdin=None, cwd=None):
        return subprocess.run([OPCTL, "--socket", self.opd.socket, *argv], input=stdin,
                              capture_output=True, cwd=cwd or self.tmp, timeout=600)

    def test_each_flag_reaches_opd(self):
        # Values over opd's limits: refused before any VM, the message names the field.
        for argv, field in [(["--cpu-time-ms", "99999999"], "cpu_time_ms"),
                            (["--memory", "1024G"], "memory_bytes"),
                            (["--max-processes", "99999999"], "max_processes"),
                            (["--output-max", "1G"], "output_max_bytes"),
                            (["--file-size-max", "1024G"], "file_size_max_bytes"),
                            (["--compile-timeout", "1"], "compile_timeout_ms"),  # bash: none
                            (["--output-file", "a", "--output-file", "a"], "output_files")]:
            p = self.opctl("run", "--lang", "bash", "--code", "true", *argv)
            self.assertEqual(p.returncode, 2, (argv, p.stderr))
            self.assertIn(b"bad_request", p.stderr, argv)
            self.assertIn(field.encode(), p.stderr, argv)
        for argv in (["--memory", "12X"], ["--cpu-time-ms", "0"], ["--file-in", "noequals"],
                     ["--output-file", "a/b"], ["--compile-timeout", "-1"]):
            p = self.opctl("run", "--lang", "bash", "--code", "true", *argv)
            self.assertEqual(p.returncode, 2, argv)
            self.assertIn(argv[0].encode(), p.stderr, argv)

    def test_run_with_every_flag(self):
        data = bytes(range(256))
        with open(os.path.join(self.tmp, "in.bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(self.tmp, "t.txt"), "w") as f:
            f.write("text é\n")
        code = ("set -e\n"
                "cat t.txt\n"
                "echo \"args=$* env=$GREETING\"\n"
                "read -r line; echo \"stdin=$line\"\n"
                "echo \"fsize=$(ulimit -f) cpu=$(ulimit -t)\"\n"
                "cg=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)\n"
                "echo \"mem=$(cat $cg/memory.max 2>/dev/null || echo ?) "
                "pids=$(cat $cg/pids.max 2>/dev/null || echo ?)\"\n"
                "tac in.bin > /dev/null; cp in.bin out.bin; echo made > made.txt\n"
                "head -c 5000 /dev/zero | tr '\\0' x >&2\n")
        p = self.opctl("--json", "run", "--lang", "bash", "--code", code, "--arg", "a1",
                       "--arg", "a 2", "--env", "GREETING=hi", "--stdin", "typed\n",
                       "--file-in", "in.bin=in.bin", "--file-in", "t.txt=t.txt",
                       "--output-file", "out.bin", "--output-file", "made.txt",
                       "--output-file", "missing.txt", "--timeout", "60",
                       "--cpu-time-ms", "20000", "--memory", "128M", "--max-processes", "40",
                       "--output-max", "4K", "--file-size-max", "1M", "--mode", "cold")
        a = json.loads(p.stdout.decode().splitlines()[-1])
        self.assertTrue(a["ok"], a)
        out = a["stdout"]
        self.assertIn("text é\n", out)
        self.assertIn("args=a1 a 2 env=hi\n", out)
        self.assertIn("stdin=typed\n", out)
        self.assertIn("fsize=1024 cpu=21\n", out)  # RLIMIT_FSIZE in KiB; RLIMIT_CPU limit + 1 s
        self.assertIn(f"mem={128 << 20} pids=40\n", out)
        self.assertEqual((a["truncated"], a["status"]), (True, "output_limit"))  # 5000 > 4 KiB
        self.assertEqual(len(a["stderr"]), 4096)
        # output files: written here byte for byte; a missing one fails opctl (exit 2)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"missing.txt: not_found", p.stderr)
        with open(os.path.join(self.tmp, "out.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        with open(os.path.join(self.tmp, "made.txt")) as f:
            self.assertEqual(f.read(), "made\n")

    def test_run_writes_stdout_and_stderr_in_the_order_written(self):
        """With both streams on one file, opctl's output reads as the program wrote it. Each write
        waits until the guest's agent has read it (its pipe is empty again), so the order the
        agent records is the order written, whatever the scheduler does."""
        code = ("import fcntl, os, struct, termios, time\n"
                "def drained(fd):\n"
                "    end = time.monotonic() + 60\n"
                "    while struct.unpack('i', fcntl.ioctl(fd, termios.FIONREAD, bytes(4)))[0]:\n"
                "        if time.monotonic() > end:\n"
                "            os._exit(9)\n"
                "for fd, text in ((1, b'a\\n'), (2, b'b\\n'), (1, b'c\\n'), (2, b'd\\n')):\n"
                "    os.write(fd, text)\n"
                "    drained(fd)\n")
        p = subprocess.run([OPCTL, "--socket", self.opd.socket, "run", "--lang", "python",
                            "--code", code, "--timeout", "60"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertEqual(p.stdout, b"a\nb\nc\nd\n")
        # --json shows the order opctl followed
        p = self.opctl("--json", "run", "--lang", "python", "--code", code, "--timeout", "60")
        a = json.loads(p.stdout.decode().splitlines()[-1])
        self.assertEqual(a["output_order"], [[1, 2], [2, 2], [1, 2], [2, 2]], a)

    def test_interactive(self):
        """Input reaches the program as it is written (it answers before opctl's stdin ends);
        the program's exit status is opctl's."""
        code = ("echo ready\n"
                "while read -r line; do echo \"got $line\"; done\n"
                "echo bye; exit 5\n")
        p = subprocess.Popen([OPCTL, "--socket", self.opd.socket, "run", "-i", "--lang", "bash",
                              "--code", code, "--timeout", "60"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen = b""

        def until(text, timeout=300):
            nonlocal seen
            deadline = time.time() + timeout
            while text not in seen:
                self.assertLess(time.time(), deadline, seen)
                if select.select([p.stdout], [], [], 1)[0]:
                    chunk = os.read(p.stdout.fileno(), 4096)
                    if not chunk:
                        self.fail(f"opctl ended early (exit {p.wait()}): {seen!r}, stderr "
                                  f"{p.stderr.read()!r}\n{self.opd.read_log()[-3000:]}")
                    seen += chunk

        try:
            until(b"ready\n")
            p.stdin.write(b"one\n")
            p.stdin.flush()
            until(b"got one\n")  # answered while opctl's stdin is still open
            p.stdin.write(b"two\n")
            p.stdin.close()
            rest, err = p.stdout.read(), p.stderr.read()
            p.wait(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
        self.assertEqual(seen + rest, b"ready\ngot one\ngot two\nbye\n", err)
        self.assertEqual(p.returncode, 5, err)

    def test_batch(self):
        lines = [{"code": "echo one", "timeout_ms": 60000},
                 {"id": "three", "lang": "bash", "code": "exit 3"},
                 {"lang": "intercal", "code": "x"}]
        path = os.path.join(self.tmp, "batch.jsonl")
        with open(path, "w") as f:
            f.write("\n".join(json.dumps(x) for x in lines) + "\n\n")
        # --lang fills in the first request's language
        p = self.opctl("--json", "batch", "--lang", "bash", path)
        frames = [json.loads(x) for x in p.stdout.decode().splitlines()]
        self.assertEqual(p.returncode, 1, p.stderr)
        by_id = {f["id"]: f for f in frames}
        self.assertEqual(by_id["1"]["stdout"], "one\n")
        self.assertEqual(by_id["three"]["exit_code"], 3)
        self.assertEqual(by_id["3"]["error"]["code"], "unknown_language")
        self.assertEqual(frames[-1]["batch"], {"count": 3, "ok": 1, "failed": 2})
        # a JSON array on stdin; every request ok: exit 0, the summary on stderr
        p = self.opctl("batch", "-", stdin=json.dumps([{"lang": "bash", "code": "echo a"}]).encode())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["stdout"], "a\n")
        self.assertIn(b"1 requests, 1 ok, 0 failed", p.stderr)
        p = self.opctl("batch", "-", stdin=b"{not json\n")
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"line 1", p.stderr)


if __name__ == "__main__":
    unittest.main()
