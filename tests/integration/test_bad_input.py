"""Bad input on the socket, table-driven: every malformed thing gets a structured error or a
clean close, never a crash or a hang, and other clients are not affected."""
import socket
import struct
import time
import unittest

from opdtest import Opd, frame

LONG = "x" * 70000


def exec_req(**fields):
    r = {"op": "exec", "lang": "bash", "code": "echo hi", "id": "t"}
    r.update(fields)
    return {k: v for k, v in r.items() if v is not None}


# (what, request object, expected error code, text expected in the message)
BAD_REQUESTS = [
    ("no op", {"id": 1}, "bad_request", '"op"'),
    ("op not a string", {"op": 7}, "bad_request", '"op"'),
    ("unknown op", {"op": "launch"}, "unknown_op", "launch"),
    ("id of a wrong type", {"op": "ping", "id": [1]}, "bad_request", '"id"'),
    ("id too long", {"op": "ping", "id": "i" * 300}, "bad_request", '"id"'),
    ("unknown field in ping", {"op": "ping", "extra": 1}, "bad_request", "extra"),
    ("unknown field in exec", exec_req(langauge="bash"), "bad_request", "langauge"),
    ("lang missing", exec_req(lang=None), "bad_request", '"lang"'),
    ("lang wrong type", exec_req(lang=3), "bad_request", '"lang"'),
    ("lang empty", exec_req(lang=""), "bad_request", '"lang"'),
    ("lang too long", exec_req(lang="l" * 100), "bad_request", '"lang"'),
    ("unknown lang", exec_req(lang="intercal"), "unknown_language", "bash"),
    ("code missing", exec_req(code=None), "bad_request", '"code"'),
    ("code wrong type", exec_req(code={"a": 1}), "bad_request", '"code"'),
    ("stdin wrong type", exec_req(stdin=5), "bad_request", '"stdin"'),
    ("args not a list", exec_req(args="a b"), "bad_request", '"args"'),
    ("args of numbers", exec_req(args=[1]), "bad_request", "args[0]"),
    ("too many args", exec_req(args=["a"] * 300), "bad_request", '"args"'),
    ("arg too long", exec_req(args=[LONG]), "bad_request", "args[0]"),
    ("env not an object", exec_req(env=["A=1"]), "bad_request", '"env"'),
    ("env bad name", exec_req(env={"1A": "x"}), "bad_request", "1A"),
    ("env value wrong type", exec_req(env={"A": 1}), "bad_request", "env.A"),
    ("files not a list", exec_req(files={"a": "b"}), "bad_request", '"files"'),
    ("file entry not an object", exec_req(files=["a"]), "bad_request", "files[0]"),
    ("file name with ..", exec_req(files=[{"name": "..", "content": ""}]), "bad_request", "files[0].name"),
    ("file name with a slash", exec_req(files=[{"name": "../etc/passwd", "content": ""}]), "bad_request", "files[0].name"),
    ("absolute file name", exec_req(files=[{"name": "/etc/passwd", "content": ""}]), "bad_request", "files[0].name"),
    ("file name with a control character", exec_req(files=[{"name": "a\nb", "content": ""}]), "bad_request", "files[0].name"),
    ("empty file name", exec_req(files=[{"name": "", "content": ""}]), "bad_request", "files[0].name"),
    ("file content wrong type", exec_req(files=[{"name": "a", "content": 1}]), "bad_request", "files[0].content"),
    ("file with an unknown field", exec_req(files=[{"name": "a", "content": "", "mode": 7}]), "bad_request", "mode"),
    ("duplicate file names", exec_req(files=[{"name": "a", "content": ""}] * 2), "bad_request", "repeats"),
    ("too many files", exec_req(files=[{"name": f"f{i}", "content": ""} for i in range(65)]), "bad_request", '"files"'),
    ("negative timeout", exec_req(timeout_ms=-1), "bad_request", "timeout_ms"),
    ("zero timeout", exec_req(timeout_ms=0), "bad_request", "timeout_ms"),
    ("huge timeout", exec_req(timeout_ms=10**12), "bad_request", "timeout_ms"),
    ("timeout as a string", exec_req(timeout_ms="5"), "bad_request", "timeout_ms"),
    ("unknown mode", exec_req(mode="hot"), "bad_request", '"mode"'),
    # protocol v1 additions: streaming, limits, files, batch
    ("stream not a boolean", exec_req(stream="yes"), "bad_request", '"stream"'),
    ("stdin_stream not a boolean", exec_req(stdin_stream=1), "bad_request", '"stdin_stream"'),
    ("cpu_time_ms zero", exec_req(cpu_time_ms=0), "bad_request", "cpu_time_ms"),
    ("cpu_time_ms over the maximum", exec_req(cpu_time_ms=10**6), "bad_request", "limit.cpu_time_ms_max"),
    ("cpu_time_ms a string", exec_req(cpu_time_ms="5"), "bad_request", "cpu_time_ms"),
    ("memory_bytes under 1 MiB", exec_req(memory_bytes=4096), "bad_request", "memory_bytes"),
    ("memory_bytes over the maximum", exec_req(memory_bytes=1 << 40), "bad_request", "limit.memory_max"),
    ("memory_bytes negative", exec_req(memory_bytes=-1), "bad_request", "memory_bytes"),
    ("max_processes zero", exec_req(max_processes=0), "bad_request", "max_processes"),
    ("max_processes over the maximum", exec_req(max_processes=100000), "bad_request", "limit.processes_max"),
    ("max_processes a float", exec_req(max_processes=2.5), "bad_request", "max_processes"),
    ("output_max_bytes over limit.output_max", exec_req(output_max_bytes=1 << 30), "bad_request", "limit.output_max"),
    ("output_max_bytes negative", exec_req(output_max_bytes=-5), "bad_request", "output_max_bytes"),
    ("file_size_max_bytes over the maximum", exec_req(file_size_max_bytes=1 << 40), "bad_request", "limit.written_file_max"),
    ("file_size_max_bytes a boolean", exec_req(file_size_max_bytes=True), "bad_request", "file_size_max_bytes"),
    ("file encoding unknown", exec_req(files=[{"name": "a", "content": "", "encoding": "hex"}]), "bad_request", "files[0].encoding"),
    ("file encoding not a string", exec_req(files=[{"name": "a", "content": "", "encoding": 64}]), "bad_request", "files[0].encoding"),
    ("file base64 invalid", exec_req(files=[{"name": "a", "content": "a*b=", "encoding": "base64"}]), "bad_request", "files[0].content"),
    ("file base64 unpadded", exec_req(files=[{"name": "a", "content": "YQ", "encoding": "base64"}]), "bad_request", "files[0].content"),
    ("no code and no files", exec_req(code=None, files=[]), "bad_request", '"code"'),
    ("output_files not a list", exec_req(output_files="out.txt"), "bad_request", '"output_files"'),
    ("output_files with a path", exec_req(output_files=["../x"]), "bad_request", "output_files[0]"),
    ("output_files with a number", exec_req(output_files=[3]), "bad_request", "output_files[0]"),
    ("output_files repeated", exec_req(output_files=["a", "a"]), "bad_request", "repeats"),
    ("too many output_files", exec_req(output_files=[f"f{i}" for i in range(17)]), "bad_request", '"output_files"'),
    ("batch without requests", {"op": "exec_batch", "id": "b"}, "bad_request", '"requests"'),
    ("batch requests not a list", {"op": "exec_batch", "requests": {}}, "bad_request", '"requests"'),
    ("batch empty", {"op": "exec_batch", "requests": []}, "bad_request", "empty"),
    ("batch too large", {"op": "exec_batch", "requests": [exec_req(id=i) for i in range(17)]}, "bad_request", "over the limit"),
    ("batch member not an object", {"op": "exec_batch", "requests": ["x"]}, "bad_request", "requests[0]"),
    ("batch member without id", {"op": "exec_batch", "requests": [exec_req(id=None)]}, "bad_request", '"id"'),
    ("batch member ids repeat", {"op": "exec_batch", "requests": [exec_req(id=1), exec_req(id=1)]}, "bad_request", "repeats"),
    ("batch member with the batch's id", {"op": "exec_batch", "id": 1, "requests": [exec_req(id=1)]}, "bad_request", "batch itself"),
    ("batch member of another op", {"op": "exec_batch", "requests": [{"op": "ping", "id": 1}]}, "bad_request", '"exec"'),
    ("batch with an unknown field", {"op": "exec_batch", "requests": [exec_req()], "wait": True}, "bad_request", "wait"),
    ("snapshot without action", {"op": "snapshot"}, "bad_request", "action"),
    ("snapshot unknown action", {"op": "snapshot", "action": "explode"}, "bad_request", "explode"),
]

# (what, stdin frame, text expected in the message)
BAD_STDIN = [
    ("no id", {"op": "stdin", "data": "x"}, '"id"'),
    ("no running exec with that id", {"op": "stdin", "id": "nope", "data": "x"}, "no exec"),
    ("neither data nor eof", {"op": "stdin", "id": 1}, "needs"),
    ("data not a string", {"op": "stdin", "id": 1, "data": 5}, '"data"'),
    ("data and data_b64", {"op": "stdin", "id": 1, "data": "x", "data_b64": "eA=="}, "not both"),
    ("data_b64 invalid", {"op": "stdin", "id": 1, "data_b64": "e"}, '"data_b64"'),
    ("eof not a boolean", {"op": "stdin", "id": 1, "data": "x", "eof": "yes"}, '"eof"'),
    ("data over limit.stdin_frame_max", {"op": "stdin", "id": 1, "data": "x" * 70000}, "over the limit"),
    ("unknown field", {"op": "stdin", "id": 1, "data": "x", "fd": 0}, "fd"),
]

# (what, raw bytes after which the connection stays usable, expected error code)
BAD_FRAMES = [
    ("length 0", struct.pack(">I", 0), "bad_request"),
    ("not JSON", frame(b"{op: ping}"), "bad_request"),
    ("JSON but not an object", frame(b'"ping"'), "bad_request"),
    ("an array", frame(b"[]"), "bad_request"),
    ("invalid UTF-8", frame(b'{"op": "\xc3\x28"}'), "bad_request"),
    ("overlong UTF-8", frame(b'{"op": "\xc0\xaf"}'), "bad_request"),
    ("a NUL escape", frame(b'{"op": "pi\\u0000ng"}'), "bad_request"),
    ("duplicate keys", frame(b'{"op": "ping", "op": "status"}'), "bad_request"),
    ("deeply nested", frame(b'{"op": "ping", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"), "bad_request"),
    ("two objects", frame(b'{"op": "ping"}{"op": "ping"}'), "bad_request"),
    # 12 MiB of "[]," would be ~4 million JSON values (hundreds of MB once parsed): refused
    # by its count of values before it is parsed
    ("millions of values", frame(b'{"op": "ping", "x": [' + b"[]," * (4 << 20) + b"[]]}"), "bad_request"),
]


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The read deadline is short so that the half-frame case ends soon, and long enough
        # that a loaded machine still sends the 12 MiB frame below within it.
        cls.opd = Opd({"read_timeout_ms": "5000", "pool.size": "0"})

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def assert_serving(self):
        a = self.opd.call({"op": "ping", "id": "alive"})
        self.assertTrue(a["ok"])
        self.assertEqual(a["id"], "alive")

    def test_bad_requests(self):
        c = self.opd.client()
        for what, req, code, text in BAD_REQUESTS:
            with self.subTest(what):
                a = c.call(req)
                self.assertIsNotNone(a, what)
                self.assertFalse(a["ok"], what)
                self.assertEqual(a["error"]["code"], code, (what, a))
                self.assertIn(text, a["error"]["message"], what)
                if "id" in req and isinstance(req["id"], (str, int)) and code != "bad_request":
                    self.assertEqual(a["id"], req["id"])
        c.close()
        self.assert_serving()

    def test_bad_stdin_frames(self):
        # a refused stdin frame is an event under its id, never an answer
        c = self.opd.client()
        for what, req, text in BAD_STDIN:
            with self.subTest(what):
                a = c.call(req)
                self.assertIsNotNone(a, what)
                self.assertEqual(a.get("event"), "stdin_error", (what, a))
                self.assertNotIn("ok", a)
                self.assertEqual(a["error"]["code"], "bad_request", (what, a))
                self.assertIn(text, a["error"]["message"], what)
                self.assertEqual(a["id"], req.get("id"), what)
        c.close()
        self.assert_serving()

    def test_bad_batch_members(self):
        # a member that fails validation is answered under its id; the others are not affected
        c = self.opd.client()
        c.send({"op": "exec_batch", "id": "B", "requests": [
            exec_req(id="m1", cpu_time_ms=-1), exec_req(id="m2", lang="intercal"),
            exec_req(id="m3", stdin_stream=True)]})
        got = {}
        while "B" not in got:
            a = c.recv()
            self.assertIsNotNone(a)
            got[a["id"]] = a
        c.close()
        self.assertEqual(got["m1"]["error"]["code"], "bad_request")
        self.assertIn("cpu_time_ms", got["m1"]["error"]["message"])
        self.assertEqual(got["m2"]["error"]["code"], "unknown_language")
        self.assertIn("stdin_stream", got["m3"]["error"]["message"])
        self.assertEqual(got["B"]["batch"], {"count": 3, "ok": 0, "failed": 3})
        self.assert_serving()

    def test_bad_frames_keep_the_connection(self):
        c = self.opd.client()
        for what, raw, code in BAD_FRAMES:
            with self.subTest(what):
                c.send_raw(raw)
                a = c.recv()
                self.assertIsNotNone(a, what)
                self.assertEqual(a["error"]["code"], code, (what, a))
                self.assertIsNone(a["id"])
                if what == "millions of values":
                    self.assertIn("JSON values", a["error"]["message"])
        self.assertTrue(c.call({"op": "ping"})["ok"])
        # opd's peak memory stayed far below what parsing that frame would have cost
        with open(f"/proc/{self.opd.proc.pid}/status") as f:
            hwm_kib = int(next(l for l in f if l.startswith("VmHWM:")).split()[1])
        self.assertLess(hwm_kib, 128 * 1024)
        c.close()

    def test_length_over_the_cap_closes(self):
        for header in (struct.pack(">I", 0xFFFFFFFF), struct.pack(">I", 16 * 1024 * 1024 + 1)):
            c = self.opd.client()
            c.send_raw(header)
            a = c.recv()
            self.assertEqual(a["error"]["code"], "frame_too_large")
            self.assertIsNone(c.recv())
            c.close()
        self.assert_serving()

    def test_half_frame_then_silence_hits_the_read_deadline(self):
        c = self.opd.client(timeout=30)
        c.send_raw(struct.pack(">I", 100) + b'{"op":')
        t = time.time()
        a = c.recv()
        self.assertEqual(a["error"]["code"], "bad_request")
        self.assertIn("incomplete frame", a["error"]["message"])
        self.assertIsNone(c.recv())
        self.assertLess(time.time() - t, 25)
        c.close()
        self.assert_serving()

    def test_truncated_frame_then_close(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.opd.socket)
        s.sendall(struct.pack(">I", 1000) + b"{")
        s.close()
        self.assert_serving()

    def test_many_pipelined_requests_on_one_connection(self):
        c = self.opd.client()
        n = 2000
        c.send_raw(b"".join(frame({"op": "ping", "id": i}) for i in range(n)))
        ids = set()
        for _ in range(n):
            a = c.recv()
            self.assertTrue(a["ok"])
            ids.add(a["id"])
        self.assertEqual(ids, set(range(n)))
        c.close()

    def test_many_idle_connections(self):
        conns = []
        for _ in range(200):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.opd.socket)
            conns.append(s)
        self.assert_serving()
        for s in conns:
            s.close()
        self.assert_serving()


if __name__ == "__main__":
    unittest.main()
