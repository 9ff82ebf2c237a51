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
    ("unknown lang", exec_req(lang="cobol"), "unknown_language", "bash"),
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
    ("snapshot without action", {"op": "snapshot"}, "bad_request", "action"),
    ("snapshot unknown action", {"op": "snapshot", "action": "explode"}, "bad_request", "explode"),
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
]


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({"read_timeout_ms": "500", "pool.size": "0"})

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

    def test_bad_frames_keep_the_connection(self):
        c = self.opd.client()
        for what, raw, code in BAD_FRAMES:
            with self.subTest(what):
                c.send_raw(raw)
                a = c.recv()
                self.assertIsNotNone(a, what)
                self.assertEqual(a["error"]["code"], code, (what, a))
                self.assertIsNone(a["id"])
        self.assertTrue(c.call({"op": "ping"})["ok"])
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
