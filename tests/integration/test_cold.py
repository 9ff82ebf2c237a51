"""Cold boot end to end: the real opd boots a real VM per request (QEMU, TCG here)."""
import os
import unittest

from opdtest import Opd, frame, wait_for


class ColdBoot(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd()

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def cold(self, lang, code, **kw):
        return self.opd.run(lang, code, mode="cold", **kw)

    def test_python_hello(self):
        a = self.cold("python", 'print("hello")')
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], "hello\n")
        self.assertEqual(a["exit_code"], 0)
        self.assertIsNone(a["signal"])
        self.assertFalse(a["timed_out"])
        t = a["timings_ms"]
        self.assertGreater(t["boot_or_resume"], 0)
        self.assertGreaterEqual(t["total"], t["boot_or_resume"] + t["run"])
        # the agent's own time in the guest (its clock): the program's run is part of it
        self.assertLessEqual(t["guest_run"], t["guest_job"])

    def test_bash_hello_args_env_files(self):
        a = self.cold("bash", 'echo hello "$1" "$GREETING"; cat data.txt',
                      args=["world"], env={"GREETING": "hi"},
                      files=[{"name": "data.txt", "content": "from a file\n"}])
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], "hello world hi\nfrom a file\n")

    def test_stdin_round_trip(self):
        a = self.cold("python", "import sys\nprint(sys.stdin.read()[::-1])", stdin="abc\u00e9")
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], "\u00e9cba\n")

    def test_nonzero_exit_and_stderr(self):
        a = self.cold("bash", "echo oops >&2; exit 3")
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["exit_code"], 3)
        self.assertEqual(a["stderr"], "oops\n")

    def test_timeout(self):
        a = self.cold("bash", "echo started; sleep 60", timeout_ms=4000)
        self.assertTrue(a["ok"], a)
        self.assertTrue(a["timed_out"])
        self.assertEqual(a["stdout"], "started\n")

    def test_binary_output_survives(self):
        a = self.cold("bash", r"printf 'a\377b\000c'")
        self.assertTrue(a["ok"], a)
        import base64
        self.assertEqual(base64.b64decode(a["stdout_b64"]), b"a\xffb\x00c")
        # the text form replaces what is not printable UTF-8 (NUL included) with U+FFFD
        self.assertEqual(a["stdout"], "a\ufffdb\ufffdc")

    def test_unknown_language(self):
        a = self.cold("intercal", "PLEASE GIVE UP", id="x1")
        self.assertFalse(a["ok"])
        self.assertEqual(a["id"], "x1")
        self.assertEqual(a["error"]["code"], "unknown_language")
        self.assertIn("python", a["error"]["message"])

    def test_malformed_frames_then_keeps_serving(self):
        c = self.opd.client()
        c.send_raw(frame(b"{not json"))
        a = c.recv()
        self.assertEqual(a["error"]["code"], "bad_request")
        c.send_raw(frame(b"[1,2]"))
        self.assertEqual(c.recv()["error"]["code"], "bad_request")
        c.send_raw(frame(b"\xff\xfe"))
        self.assertEqual(c.recv()["error"]["code"], "bad_request")
        c.send({"op": "exec", "lang": "bash"})
        self.assertEqual(c.recv()["error"]["code"], "bad_request")
        c.send({"op": "ping", "id": 7})
        a = c.recv()
        self.assertEqual(a, {**a, "id": 7, "ok": True, "pong": True})
        # an oversized frame closes this connection only
        c.send_raw(b"\xff\xff\xff\xff")
        self.assertEqual(c.recv()["error"]["code"], "frame_too_large")
        self.assertIsNone(c.recv())
        c.close()
        a = self.cold("bash", "echo still here")
        self.assertEqual(a["stdout"], "still here\n")

    def test_status(self):
        a = self.opd.call({"op": "status", "id": "s"})
        self.assertTrue(a["ok"])
        self.assertEqual(a["accel"], "tcg")
        names = {l["name"]: l for l in a["languages"]}
        self.assertRegex(names["python"]["version"], r"^3\.\d+")
        self.assertIn("requests", a["counters"])


class Shutdown(unittest.TestCase):
    def test_sigterm_leaves_no_vm(self):
        opd = Opd()
        c = opd.client()
        c.send({"op": "exec", "lang": "bash", "code": "sleep 30", "id": 1, "timeout_ms": 40000})
        # wait until the VMM process exists, then stop opd under it
        wait_for(opd.vmm_pids, 30, "the VMM process to start")
        self.assertEqual(opd.stop(), 0)
        a = c.recv()
        self.assertEqual(a["error"]["code"], "shutting_down")
        self.assertEqual(opd.vmm_pids(), [])
        self.assertEqual(os.listdir(opd.run_dir), [])
        c.close()


if __name__ == "__main__":
    unittest.main()
