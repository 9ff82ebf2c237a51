"""opd_client's tests: the codec and error mapping on their own, then the client against the real
opd (started by tests/integration/opdtest.py on a private socket, running real VMs)."""
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("OP_SOURCE_DIR", os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))

import opd_client  # noqa: E402
from opd_client import protocol  # noqa: E402


class Codec(unittest.TestCase):
    def test_frames_byte_by_byte(self):
        objs = [{"id": 1, "ok": True, "stdout": "é\n"}, {"id": "x", "ok": False}, {}]
        data = b"".join(protocol.encode_frame(o) for o in objs)
        self.assertEqual(data[:4], struct.pack(">I", len(json.dumps(
            objs[0], ensure_ascii=False, separators=(",", ":")).encode())))
        r = protocol.FrameReader()
        got = []
        for i in range(len(data)):
            r.feed(data[i:i + 1])
            while (f := r.next()) is not None:
                got.append(f)
        self.assertEqual(got, objs)

    def test_frame_limits(self):
        r = protocol.FrameReader(max_frame=10)
        r.feed(struct.pack(">I", 11))
        with self.assertRaises(ValueError):
            r.next()
        r = protocol.FrameReader()
        r.feed(protocol.HEADER.pack(2) + b"[]")
        with self.assertRaises(ValueError):
            r.next()

    def test_bytes(self):
        res = protocol.Result({"stdout": "a\ufffdb", "stdout_b64": "YQBi", "stderr": "é"})
        self.assertEqual(res.stdout_bytes, b"a\x00b")
        self.assertEqual(res.stderr_bytes, "é".encode())

    def test_output_order(self):
        res = protocol.Result({"stdout": "a\nc\n", "stderr": "b\n",
                               "output_order": [[1, 2], [2, 2], [1, 2]]})
        self.assertEqual(res.output_order, [(1, 2), (2, 2), (1, 2)])
        self.assertEqual((res.output_bytes, res.output), (b"a\nb\nc\n", "a\nb\nc\n"))
        # counted in bytes, not characters
        res = protocol.Result({"stdout": "é", "stderr": "x", "output_order": [[2, 1], [1, 2]]})
        self.assertEqual(res.output, "xé")
        # none, or one that does not add up: stdout then stderr
        for order in (None, [[1, 2]], [[1, 1], [2, 1]], [[3, 1]], [[1, True], [2, 1]], "x"):
            res = protocol.Result({"stdout": "ab", "stderr": "c", "output_order": order})
            self.assertEqual((res.output_order, res.output), (None, "abc"), order)

    def test_errors(self):
        for code, cls, retry in [("bad_request", opd_client.BadRequest, False),
                                 ("unknown_language", opd_client.UnknownLanguage, False),
                                 ("busy", opd_client.Busy, True),
                                 ("pool_exhausted", opd_client.PoolExhausted, True),
                                 ("timeout", opd_client.GuestTimeout, True),
                                 ("vm_failed", opd_client.VMFailed, True),
                                 ("shutting_down", opd_client.ShuttingDown, True),
                                 ("permission_denied", opd_client.PermissionDenied, False),
                                 ("internal_error", opd_client.InternalError, False),
                                 ("unavailable", opd_client.Unavailable, False),
                                 ("frame_too_large", opd_client.FrameTooLarge, False),
                                 ("unknown_op", opd_client.UnknownOp, False),
                                 ("not_found", opd_client.NotFound, False),
                                 ("quota_exceeded", opd_client.QuotaExceeded, False),
                                 ("some_new_code", opd_client.OpdError, False)]:
            e = opd_client.error_from_answer(
                {"id": 4, "ok": False, "error": {"code": code, "message": "m"}})
            self.assertIs(type(e), cls)
            self.assertEqual((e.code, e.message, e.id, e.retryable), (code, "m", 4, retry))
            self.assertIsNone(e.retry_after)
        e = opd_client.error_from_answer(
            {"id": 5, "ok": False,
             "error": {"code": "busy", "message": "m", "retry_after_ms": 250}})
        self.assertEqual(e.retry_after, 0.25)
        e = opd_client.error_from_answer(
            {"id": 5, "ok": False, "error": {"code": "busy", "message": "m",
                                             "retry_after_ms": "soon"}})
        self.assertIsNone(e.retry_after)

    def test_exec_request(self):
        req = opd_client.exec_request("py", "x", stdin=b"in", args=[1, "b"], timeout=0.0015,
                                      files={"a.txt": "A", "b.bin": b"\x00\xff"},
                                      env={"K": "v"}, mode="cold", cpu_time_ms=5)
        self.assertEqual(req, {"op": "exec", "lang": "py", "code": "x", "stdin": "in",
                               "args": ["1", "b"], "timeout_ms": 2, "mode": "cold",
                               "files": [{"name": "a.txt", "content": "A"},
                                         {"name": "b.bin", "content": "AP8=",
                                          "encoding": "base64"}],
                               "env": {"K": "v"}, "cpu_time_ms": 5})


class ScriptedStream(unittest.TestCase):
    """The streaming iterator against frames scripted after the streaming protocol (event
    frames, then the final answer with "streamed": true): frames interleaved with
    another answer and a stdin_error, which a real opd does not produce on demand. Daemon runs
    the iterator against the real opd."""

    def test_events_then_result(self):
        path = os.path.join(tempfile.mkdtemp(prefix="opd-client-"), "s.sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen(1)
        seen = []

        def serve():
            conn, _ = srv.accept()
            r = protocol.FrameReader()
            while len(seen) < 4:
                r.feed(conn.recv(65536))
                while (f := r.next()) is not None:
                    seen.append(f)
            i = seen[0]["id"]
            conn.sendall(b"".join(protocol.encode_frame(f) for f in [
                {"id": i, "event": "stdout", "data": "a"},
                {"id": 99, "ok": True, "pong": True},
                {"id": i, "event": "stdin_error",
                 "error": {"code": "bad_request", "message": "stdin was already closed"}},
                {"id": i, "event": "stderr", "data": "\ufffd", "data_b64": "/w=="},
                {"id": i, "event": "stdout", "data": "b\n"},
                {"id": i, "ok": True, "stdout": "", "stderr": "", "exit_code": 0,
                 "signal": None, "timed_out": False, "truncated": False, "streamed": True}]))
            conn.close()

        t = threading.Thread(target=serve)
        t.start()
        with opd_client.Client(path, timeout=30) as c:
            ex = c.stream("python", "x", stdin_stream=True)
            ex.send_stdin("line\n")
            ex.send_stdin(b"\x00\xff")
            ex.close_stdin()
            events = [(e.stream, e.data) for e in ex]
            self.assertEqual(c.answer(99)["pong"], True)  # another answer kept aside by id
        t.join()
        srv.close()
        self.assertEqual(seen[0]["stream"], True)
        self.assertEqual(seen[0]["stdin_stream"], True)
        self.assertEqual(seen[1], {"op": "stdin", "id": seen[0]["id"], "data": "line\n"})
        self.assertEqual(seen[2], {"op": "stdin", "id": seen[0]["id"], "data_b64": "AP8="})
        self.assertEqual(seen[3], {"op": "stdin", "id": seen[0]["id"], "data": "",
                                   "eof": True})
        self.assertEqual([(type(e), e.message) for e in ex.stdin_errors],
                         [(opd_client.BadRequest, "stdin was already closed")])
        self.assertEqual(events, [("stdout", b"a"), ("stderr", b"\xff"), ("stdout", b"b\n")])
        self.assertTrue(ex.result.streamed)
        self.assertEqual(ex.result.exit_code, 0)


class Daemon(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from opdtest import Opd
        cls.opd = Opd({"pool.size": "0"})

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def test_run(self):
        code = ("import os, sys\n"
                "print(open('data.txt').read(), sys.argv[1:], os.environ['GREETING'], input())\n"
                "sys.stdout.flush()\n"
                "sys.stdout.buffer.write(bytes([0, 255]))\n"
                "sys.exit(3)")
        res = opd_client.run("py", code, socket_path=self.opd.socket, stdin="typed",
                             args=["-v"], env={"GREETING": "hi"}, files={"data.txt": "DATA"},
                             timeout=60)
        self.assertIsInstance(res, opd_client.Result)
        self.assertEqual(res.stdout_bytes, b"DATA ['-v'] hi typed\n\x00\xff")
        self.assertEqual((res.exit_code, res.signal, res.timed_out, res.success),
                         (3, None, False, False))
        self.assertEqual((res.lang, res.mode), ("python", "cold"))
        self.assertGreater(res.timings_ms["total"], 0)
        self.assertEqual(res["exit_code"], 3)

    def test_session(self):
        """A session: files survive between runs in its VM; closed, it is gone."""
        with opd_client.Client(self.opd.socket) as c:
            with c.open_session("python", idle_timeout=600, timeout=60) as s:
                self.assertRegex(s.id, "^[0-9a-f-]{36}$")
                self.assertEqual(s.info["limits"], {"timeout_ms": 60000})
                r = s.run("open('kept.txt', 'w').write('kept')\nprint('one')")
                self.assertEqual((r.stdout, r.mode, r["session"]), ("one\n", "session", s.id))
                r = s.run("print(open('kept.txt').read(), open('f').read())", files={"f": "F"})
                self.assertEqual(r.stdout, "kept F\n")
                self.assertEqual([x["session"] for x in c.sessions()], [s.id])
            self.assertEqual(c.sessions(), [])
            with self.assertRaises(opd_client.NotFound):
                s.run("print(1)")
            s.close()  # already gone: no error

    def test_limits_output_files_and_batch(self):
        """The exec fields passed as keywords (limits, output_files) and exec_batch."""
        with opd_client.Client(self.opd.socket) as c:
            results, summary = c.batch([
                {"lang": "bash", "code": "printf '\\377' > o.bin; head -c 100 /dev/zero | tr '\\0' x",
                 "output_max_bytes": 10, "output_files": ["o.bin", "nope"],
                 "timeout_ms": 60000, "cpu_time_ms": 30000, "memory_bytes": 64 << 20,
                 "max_processes": 16,
                 "file_size_max_bytes": 1024},
                {"id": "three", "lang": "bash", "code": "exit 3"},
                {"lang": "cobol", "code": "x"}])
            self.assertEqual(summary, {"count": 3, "ok": 0, "failed": 3})
            r = results[0]
            self.assertEqual((r.truncated, r.status, len(r.stdout)), (True, "output_limit", 10))
            self.assertEqual((r.files, r.file_errors), ({"o.bin": b"\xff"}, {"nope": "not_found"}))
            self.assertEqual((results[1].id, results[1].exit_code), ("three", 3))
            self.assertIsInstance(results[2], opd_client.UnknownLanguage)
            self.assertTrue(c.ping()["pong"])  # the connection goes on
            if os.getuid() == 0:  # administrators only
                self.assertIn("bash", c.snapshot("list")["languages"])
            else:
                with self.assertRaises(opd_client.PermissionDenied):
                    c.snapshot("list")

    def test_pipelining_on_one_connection(self):
        with opd_client.Client(self.opd.socket) as c:
            slow = c.submit("bash", "sleep 1; echo slow")
            stuck = c.submit("bash", "sleep 30", timeout=1)
            ping = c.send({"op": "ping"})
            self.assertTrue(c.answer(ping)["pong"])  # answered while both execs run
            r_stuck = c.result(stuck)
            r_slow = c.result(slow)
            self.assertEqual((r_slow.stdout, r_slow.exit_code, r_slow.success),
                             ("slow\n", 0, True))
            self.assertEqual((r_stuck.timed_out, r_stuck.exit_code), (True, None))
            self.assertEqual((r_slow.id, r_stuck.id), (slow, stuck))
            self.assertEqual(c.connections, 1)
            c.close()  # closed by hand: the next call opens a new connection
            self.assertEqual(c.ping()["proto"], opd_client.PROTO_VERSION)
            self.assertEqual(c.connections, 2)

    def test_errors(self):
        with opd_client.Client(self.opd.socket) as c:
            with self.assertRaises(opd_client.UnknownLanguage) as e:
                c.run("cobol", "x")
            self.assertEqual(e.exception.code, "unknown_language")
            self.assertIn("python", e.exception.message)
            self.assertFalse(e.exception.retryable)
            with self.assertRaises(opd_client.BadRequest) as e:
                c.run("python", "x", no_such_field=1)
            self.assertIn("no_such_field", e.exception.message)
            with self.assertRaises(opd_client.BadRequest):
                c.run("python", "x", timeout=3600)  # over limit.timeout_ms_max
            with self.assertRaises(opd_client.UnknownOp):
                c.call({"op": "frobnicate"})
            # The connection survived every error.
            self.assertTrue(c.ping()["pong"])
            self.assertEqual(c.connections, 1)
            self.assertIn("opd_exec_requests_total", c.metrics())
            langs = [g["name"] for g in c.status()["languages"]]
            self.assertIn("bash", langs)

    def test_stream(self):
        """Client.stream() against opd: output events, each stream's pieces in the order the
        program wrote them, all of them before the answer."""
        frames = []
        code = ("for i in $(seq 1 40); do echo out$i; echo err$i >&2; done; "
                "printf '\\377' >&2; exit 4")
        with opd_client.Client(self.opd.socket, timeout=300) as c:
            dispatch = c._dispatch
            c._dispatch = lambda f: (frames.append("event" if "event" in f else "answer"),
                                     dispatch(f))
            ex = c.stream("bash", code, timeout=60)
            events = list(ex)
        self.assertEqual(frames[-1], "answer")
        self.assertEqual(frames.count("answer"), 1)  # every event came before it
        self.assertEqual(len(events), len(frames) - 1)
        out = b"".join(e.data for e in events if e.stream == "stdout")
        err = b"".join(e.data for e in events if e.stream == "stderr")
        self.assertEqual(out, b"".join(b"out%d\n" % i for i in range(1, 41)))
        self.assertEqual(err, b"".join(b"err%d\n" % i for i in range(1, 41)) + b"\xff")
        res = ex.result
        self.assertEqual((res.streamed, res.stdout, res.stderr, res.exit_code),
                         (True, "", "", 4))
        self.assertEqual(res.get("status"), "runtime_error")

    def test_interactive_stdin(self):
        """A conversation: the program answers each stdin line as it comes (so its output
        events arrive while it runs), then ends at eof."""
        code = ("import sys\n"
                "print('ready', flush=True)\n"
                "for line in sys.stdin.buffer:\n"
                "    print('got', line.strip().hex(), flush=True)\n"
                "print('bye')\n")
        with opd_client.Client(self.opd.socket, timeout=300) as c:
            ex = c.stream("python", code, stdin_stream=True, timeout=60)
            seen = b""

            def until(text):
                nonlocal seen
                while text not in seen:
                    e = next(ex)
                    self.assertEqual(e.stream, "stdout", e)
                    seen += e.data
                self.assertIsNone(ex.result)  # the program is still running

            until(b"ready\n")
            ex.send_stdin("one\n")
            until(b"got 6f6e65\n")
            ex.send_stdin(b"\x00\xff\n", eof=True)
            events, res = ex.wait()
            seen += b"".join(e.data for e in events)
            self.assertTrue(c.ping()["pong"])  # the connection goes on
        self.assertEqual(seen, b"ready\ngot 6f6e65\ngot 00ff\nbye\n")
        self.assertEqual((res.exit_code, res.streamed, ex.stdin_errors), (0, True, []))

    def test_idle_connection_with_timeout(self):
        """With a socket timeout, checking an idle connection before the next request must not
        wait on it (it used to block for the whole timeout, then open a new connection)."""
        with opd_client.Client(self.opd.socket, timeout=120) as c:
            for _ in range(3):
                self.assertTrue(c.ping()["pong"])
            self.assertEqual(c.connections, 1)

    def test_unavailable(self):
        """opd on TCG without allow_tcg runs no untrusted code: Unavailable, not retryable."""
        from opdtest import Opd
        opd = Opd({"allow_tcg": "no", "pool.size": "0"})
        try:
            with self.assertRaises(opd_client.Unavailable) as e:
                opd_client.run("bash", "echo hi", socket_path=opd.socket)
            self.assertEqual(e.exception.code, "unavailable")
            self.assertFalse(e.exception.retryable)
            self.assertIn("allow_tcg", e.exception.message)
        finally:
            opd.stop()

    def test_no_daemon(self):
        with self.assertRaises(FileNotFoundError):
            opd_client.run("bash", "true", socket_path="/nonexistent/opd.sock")


if __name__ == "__main__":
    unittest.main()
