"""Protocol v1 additions end to end on warm clones (one VM per request): streamed output and
interactive stdin, each limit and the status it produces, usage, base64 files and output files,
and exec_batch with a failing member."""
import base64
import hashlib
import json
import os
import subprocess
import time
import unittest

import jsonschema

from opdtest import OPCTL, SOURCE, Opd, frame
from test_warm import create_snapshot, wait_serving

SCHEMAS = {}


def conforms(name, obj):
    """obj matches proto/schema/<name>.schema.json (the spec the docs give clients)."""
    if name not in SCHEMAS:
        with open(os.path.join(SOURCE, "proto", "schema", name + ".schema.json")) as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        SCHEMAS[name] = jsonschema.Draft202012Validator(schema)
    SCHEMAS[name].validate(obj)
    return obj


def event_bytes(ev):
    return base64.b64decode(ev["data_b64"]) if "data_b64" in ev else ev["data"].encode()


def collect(client, rid):
    """Frames for rid until its answer: (events, answer), each checked against its schema."""
    events = []
    while True:
        m = client.recv()
        assert m is not None, "connection closed before the answer"
        assert m.get("id") == rid, m
        if "event" in m:
            events.append(conforms("event", m))
            continue
        return events, conforms("answer", m)


def send(client, name, req):
    client.send(conforms(name, req))


FORK_LOOP = """import os, sys, time
n = 0
try:
    for i in range(40):
        if os.fork() == 0:
            time.sleep(600)  # alive until the run ends, however slowly the next forks come
            os._exit(0)
        n += 1
except OSError as e:
    print("forked", n, "then errno", e.errno)
    sys.exit(1)
print("forked", n)
"""

# (what, lang, code, extra request fields, status, check(answer))
LIMITS = [
    ("wall time", "bash", "sleep 30", {"timeout_ms": 1000}, "timeout",
     lambda a: a["timed_out"] and a["signal"] == 9),
    ("cpu time", "python", "while True:\n    pass", {"cpu_time_ms": 500, "timeout_ms": 30000},
     "timeout", lambda a: not a["timed_out"] and a["usage"]["cpu_time_ms"] >= 500),
    ("memory", "python", "b = []\nwhile True:\n    b.append(bytearray(8 << 20))",
     {"memory_bytes": 64 << 20, "timeout_ms": 30000}, "memory_limit",
     lambda a: a["signal"] == 9 and not a["timed_out"]),
    ("processes", "python", FORK_LOOP, {"max_processes": 4, "timeout_ms": 20000},
     "runtime_error", lambda a: a["exit_code"] == 1 and "errno 11" in a["stdout"]
     and int(a["stdout"].split()[1]) < 4),
    ("output", "bash", "yes | head -c 100000", {"output_max_bytes": 1000}, "output_limit",
     lambda a: a["truncated"] and len(a["stdout"]) == 1000),
    ("file size", "bash", "exec head -c 100000 /dev/zero > big", {"file_size_max_bytes": 1000},
     "signal", lambda a: a["signal"] == 25),
]


class Stream(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({"pool.sizes": "bash=1,python=1", "max_vms": "4",
                       "pool.fallback_cold": "no"})
        for lang in ("bash", "python"):
            wait_serving(cls.opd, lang, create_snapshot(cls.opd, lang))

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def test_stream_order(self):
        c = self.opd.client()
        code = ("for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; sleep 0.05; done; "
                "printf 'bin\\000\\377\\n'")
        send(c, "exec-request", {"op": "exec", "id": "s1", "lang": "bash", "code": code,
                                 "stream": True})
        events, a = collect(c, "s1")
        c.close()
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["mode"], "warm")
        # every event came before the answer, and each stream kept its order
        out = b"".join(event_bytes(e) for e in events if e["event"] == "stdout")
        err = b"".join(event_bytes(e) for e in events if e["event"] == "stderr")
        self.assertEqual(out, b"".join(b"out%d\n" % i for i in range(1, 6)) + b"bin\x00\xff\n")
        self.assertEqual(err, b"".join(b"err%d\n" % i for i in range(1, 6)))
        self.assertGreater(len(events), 2)
        self.assertTrue(any("data_b64" in e for e in events))
        self.assertEqual((a["stdout"], a["stderr"], a["streamed"]), ("", "", True))
        self.assertNotIn("stdout_b64", a)
        self.assertEqual(a["status"], "ok")
        self.assertEqual(set(a["usage"]), {"cpu_time_ms", "wall_ms", "memory_peak_bytes"})
        self.assertGreater(a["usage"]["memory_peak_bytes"], 0)
        self.assertGreaterEqual(a["usage"]["wall_ms"], 250)

    def test_interactive_stdin(self):
        c = self.opd.client()
        code = ("import sys\n"
                "print('ready', flush=True)\n"
                "for line in sys.stdin:\n"
                "    print('echo:' + line.strip().upper(), flush=True)\n"
                "print('done')\n")
        send(c, "exec-request", {"op": "exec", "id": 7, "lang": "python", "code": code,
                                 "stream": True, "stdin_stream": True, "stdin": "first\n",
                                 "timeout_ms": 30000})
        seen = b""

        def until(text):
            nonlocal seen
            while text not in seen:
                m = conforms("event", c.recv())
                self.assertEqual(m.get("event"), "stdout", m)
                seen += event_bytes(m)

        until(b"echo:FIRST\n")
        # a round trip: the next line is sent after the answer to the previous one came back
        send(c, "stdin-frame", {"op": "stdin", "id": 7, "data": "second\n"})
        until(b"echo:SECOND\n")
        # refused stdin frames are events, and the exec goes on
        c.send({"op": "stdin", "id": 8, "data": "lost\n"})
        m = conforms("event", c.recv())
        self.assertEqual((m["id"], m["event"], m["error"]["code"]), (8, "stdin_error", "bad_request"))
        # the last frame and one after it in one write: opd reads both before the program can
        # end, so the late one meets a closed stdin (not a finished exec)
        last = conforms("stdin-frame", {"op": "stdin", "id": 7, "eof": True,
                                        "data_b64": base64.b64encode(b"third\n").decode()})
        c.send_raw(frame(last) + frame({"op": "stdin", "id": 7, "data": "after eof\n"}))
        events, a = collect(c, 7)
        c.close()
        late = [e for e in events if e["event"] == "stdin_error"]
        self.assertEqual(len(late), 1, events)
        self.assertIn("eof", late[0]["error"]["message"])
        seen += b"".join(event_bytes(e) for e in events if e["event"] == "stdout")
        self.assertEqual(seen, b"ready\necho:FIRST\necho:SECOND\necho:THIRD\ndone\n")
        self.assertTrue(a["ok"], a)
        self.assertEqual((a["exit_code"], a["status"], a["timed_out"]), (0, "ok", False))

    def test_limits(self):
        for what, lang, code, fields, status, check in LIMITS:
            with self.subTest(what):
                t = time.time()
                req = {"op": "exec", "id": what, "lang": lang, "code": code, **fields}
                a = conforms("answer", self.opd.call(conforms("exec-request", req)))
                self.assertTrue(a["ok"], (what, a))
                self.assertEqual(a["status"], status, (what, a))
                self.assertTrue(check(a), (what, {k: a.get(k) for k in (
                    "exit_code", "signal", "timed_out", "truncated", "usage")},
                    a["stdout"][-300:], a["stderr"][-300:]))
                self.assertLess(time.time() - t, 60, what)

    def test_files(self):
        blob = bytes(range(256))
        main = ("import sys\n"
                "data = open('data.bin', 'rb').read()\n"
                "assert data == bytes(range(256)), data\n"
                "open('out.bin', 'wb').write(data[::-1])\n"
                "open('out.txt', 'w').write(open('note.txt').read().upper())\n"
                "print('ok', len(data), sys.argv[0].split('/')[-1])\n")
        req = {"op": "exec", "id": "f", "lang": "python", "files": [
            {"name": "data.bin", "content": base64.b64encode(blob).decode(), "encoding": "base64"},
            {"name": "note.txt", "content": "héllo", "encoding": "utf8"},
            {"name": "main.py", "content": main}],
            "output_files": ["out.bin", "out.txt", "missing.txt"]}
        a = conforms("answer", self.opd.call(conforms("exec-request", req)))
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["status"], "ok", a["stderr"])
        self.assertEqual(a["stdout"], "ok 256 main.py\n")
        files = {f["name"]: f for f in a["files"]}
        self.assertEqual([f["name"] for f in a["files"]], ["out.bin", "out.txt", "missing.txt"])
        self.assertEqual(base64.b64decode(files["out.bin"]["content_b64"]), blob[::-1])
        self.assertEqual(files["out.txt"]["content"], "HÉLLO")
        self.assertNotIn("content_b64", files["out.txt"])
        self.assertEqual(files["missing.txt"]["error"], "not_found")

    def test_batch_with_a_failing_member(self):
        c = self.opd.client()
        send(c, "exec-batch-request", {"op": "exec_batch", "id": "B", "requests": [
            {"id": "one", "lang": "bash", "code": "echo one"},
            {"id": "bad", "op": "exec", "lang": "bash", "code": "echo two; exit 3"},
            {"id": "nolang", "lang": "intercal", "code": ""}]})
        answers = {}
        while "B" not in answers:
            m = conforms("answer", c.recv())
            self.assertIsNotNone(m)
            self.assertNotIn(m["id"], answers)
            answers[m["id"]] = m
        c.close()
        self.assertEqual(set(answers), {"one", "bad", "nolang", "B"})
        self.assertEqual((answers["one"]["stdout"], answers["one"]["status"]), ("one\n", "ok"))
        self.assertEqual((answers["bad"]["stdout"], answers["bad"]["exit_code"],
                          answers["bad"]["status"]), ("two\n", 3, "runtime_error"))
        self.assertEqual(answers["nolang"]["error"]["code"], "unknown_language")
        self.assertEqual(answers["B"], {"id": "B", "ok": True,
                                        "batch": {"count": 3, "ok": 1, "failed": 2}})

    def test_opctl_stream(self):
        # --json shows the frames as they came: events first, the answer last
        p = subprocess.run([OPCTL, "--socket", self.opd.socket, "--json", "--stream", "run",
                            "--lang", "bash", "--code", "echo out; echo err >&2; exit 4"],
                           capture_output=True, timeout=300)
        lines = [json.loads(l) for l in p.stdout.decode().splitlines()]
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertTrue(all("event" in l for l in lines[:-1]), lines)
        self.assertEqual(lines[-1]["status"], "runtime_error")
        self.assertTrue(lines[-1]["streamed"])
        self.assertEqual("".join(l["data"] for l in lines if l.get("event") == "stdout"), "out\n")
        self.assertEqual("".join(l["data"] for l in lines if l.get("event") == "stderr"), "err\n")


if __name__ == "__main__":
    unittest.main()


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) << 10
    raise AssertionError(f"no VmHWM for {pid}")


@unittest.skipUnless(os.geteuid() == 0, "resetting opd's peak RSS needs its uid or root")
class StdinFlood(unittest.TestCase):
    """A client that streams stdin in the smallest frames there are, faster than the guest
    reads: opd holds the bytes, not a frame per byte, so its memory stays within the stdin
    limit whatever the frames' number, and the program still gets every byte in order."""
    FRAMES = 1 << 20
    STDIN_MAX = 1 << 20

    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({"pool.sizes": "bash=1", "languages.enabled": "bash",
                       "pool.fallback_cold": "no", "limit.frame_max": "65536",
                       "limit.stdin_max": str(cls.STDIN_MAX)})
        wait_serving(cls.opd, "bash", create_snapshot(cls.opd, "bash"))

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def test_one_byte_frames(self):
        pid = self.opd.proc.pid
        data = bytes(b"abcdefghij"[i % 10] for i in range(self.FRAMES))
        c = self.opd.client(timeout=600)
        try:
            # the program reads nothing for its first seconds: the frames pile up meanwhile
            c.send({"op": "exec", "id": "f", "lang": "bash", "code": "sleep 3; md5sum",
                    "stdin_stream": True, "timeout_ms": 60000})
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")  # the peak RSS from here
            before = peak_rss(pid)
            # every frame as the protocol allows its smallest, all at once
            frames = [frame({"op": "stdin", "id": "f", "data": chr(b)}) for b in data[:-1]]
            frames.append(frame({"op": "stdin", "id": "f", "data": chr(data[-1]), "eof": True}))
            c.send_raw(b"".join(frames))
            a = c.recv()
            self.assertNotIn("event", a, "a stdin frame was refused")
        finally:
            c.close()
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"].split()[0], hashlib.md5(data).hexdigest())
        grown = peak_rss(pid) - before
        # a frame per byte cost opd some 37 bytes each (37 MiB here); the bytes 1 MiB, the
        # client's unread frames at most limit.frame_max
        self.assertLess(grown, 12 << 20, f"opd grew by {grown >> 20} MiB")
