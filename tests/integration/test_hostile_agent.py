"""A guest agent gone bad: opd runs tests/integration/hostile-vmm as its `qemu` binary, a fake
VMM that speaks QMP and plays op-agent, honest by default and hostile when a job's code names a
scenario ("hostile:big-stdout", ...). Every lie it tells about a run ends in a vm_failed answer
whose message names what was wrong; no more streamed output reaches the client than the request
allowed; the console's control bytes do not reach opd's log; other clients keep being served;
the Piston door answers an error rather than a made-up number; opd's memory stays bounded.

No guest boots (the fake answers at once), so every request is cold and quick."""
import base64
import http.client
import json
import os
import re
import shutil
import socket
import struct
import tempfile
import unittest

from opdtest import Opd, free_port, wait_for
from test_piston import request

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile-vmm")
TIMEOUT = 60
OUTPUT_MAX = 1024  # output_max_bytes of every hostile request
BASH_VERSION = "5.2.15"  # the version file of the fake images
CONSOLE_MARKER = b"hostile-vmm console"
VMM_OUTPUT_MARKER = b"hostile-vmm output"  # the end of what hostile-vmm prints in "vmm-flood"  # hostile-vmm writes it among control bytes
# opd's peak RSS (VmHWM) while it serves one case. opd idles at about 9 MiB here, and each
# hostile request allows 1 KiB of output, so an agent frame within that request's cap is small:
# 128 MiB is over ten times what opd needs, and under what holding any of these lies costs.
# Measured on an opd that takes them as sent: the 16 MiB frame bomb parsed into 5.6 million
# JSON values, 750 MiB; 64 MiB of stdout read, parsed and framed for the client, 201 MiB.
RSS_BOUND = 128 << 20
INT64_MIN = "-9223372036854775808"

# (scenario, words of which the error message must hold one; none: any message)
REFUSED = [
    # 64 MiB: refused by a frame cap made from output_max, or as stdout over output_max
    ("big-stdout", ("stdout", "oversized")),
    ("long-stdout", ("stdout",)),  # 4 KiB: within any frame cap, over output_max
    ("frame-bomb", ("frame", "oversized")),
    ("bad-exit-code", ("exit_code",)),  # -7
    ("bad-signal", ("signal",)),  # 123456789
    ("bad-run-ms", ("run_ms",)),  # -1e300
    ("bad-cpu-time", ("cpu_time_ms",)),  # usage.cpu_time_ms 1e300
    ("bad-b64", ("stdout_b64",)),  # "!!not base64!!"
    ("bad-order", ("output_order",)),  # a run of 2^63 - 1 bytes of stderr
    ("long-order", ("output_order", "oversized")),  # 100000 runs
    ("unknown-field", ("hostile_extra_field",)),
    ("die-midway", ()),  # half a frame, then the agent channel closes
]

# the answers whose numbers the Piston door would otherwise turn into its own
BAD_NUMBERS = [(s, w) for s, w in REFUSED if s.startswith("bad-") and s != "bad-b64"]


def fake_images():
    """An images directory opd accepts: kernel, initrd and a bash rootfs, all empty (the fake
    VMM opens none of them)."""
    d = tempfile.mkdtemp(prefix="opd-test-hostile-images-")
    os.mkdir(os.path.join(d, "bash"))
    for name in ("vmlinux", "initrd.img", "bash/rootfs.ext4"):
        open(os.path.join(d, name), "wb").close()
    with open(os.path.join(d, "bash", "version"), "w") as f:
        f.write(BASH_VERSION + "\n")
    return d


class Conn:
    """A client connection that reads large frames in linear time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.buf = bytearray()

    def send(self, obj):
        data = json.dumps(obj).encode()
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def recv(self):
        """One frame as a dict, or None when opd closed the connection."""
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack_from(">I", self.buf)
                if len(self.buf) >= 4 + n:
                    payload = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return json.loads(payload)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk

    def exec(self, code, id, **fields):
        """(streamed events, answer) of one cold bash exec."""
        req = {"op": "exec", "id": id, "lang": "bash", "mode": "cold", "code": code}
        req.update(fields)
        self.send(req)
        events = []
        while True:
            a = self.recv()
            if a is None or "event" not in a:
                return events, a
            events.append(a)

    def close(self):
        self.sock.close()


def event_bytes(ev):
    """Bytes of output one streamed event gives the client (the larger of its two forms)."""
    n = len(ev.get("data", "").encode())
    try:
        n = max(n, len(base64.b64decode(ev.get("data_b64") or "", validate=True)))
    except ValueError:
        pass
    return n


class HostileAgent(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.images = fake_images()
        cls.port = free_port()
        cls.opd = Opd({"qemu": FAKE, "accel": "tcg", "images_dir": cls.images,
                       "pool.size": "0", "piston.listen": f"127.0.0.1:{cls.port}"})
        cls.pid = cls.opd.proc.pid
        # The peak can be reset (Linux 4.0, clear_refs "5") to charge each case with its own;
        # where it cannot, the bound still holds for the whole run so far.
        cls.hwm_resettable = cls.reset_hwm()

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()
        shutil.rmtree(cls.images, ignore_errors=True)

    @classmethod
    def reset_hwm(cls):
        try:
            with open(f"/proc/{cls.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def hwm(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        self.fail("no VmHWM in /proc/<opd>/status")

    def case(self, what):
        """Run the body of one case; afterwards another connection, open all along, is served,
        the case's VMs are gone and opd's peak RSS stayed under the bound."""
        return _Case(self, what)

    def assert_refused(self, what, a, words):
        self.assertIsNotNone(a, f"{what}: opd closed the connection instead of answering")
        self.assertIs(a.get("ok"), False, (what, {k: v for k, v in a.items() if k != "stdout"},
                                           len(a.get("stdout", ""))))
        self.assertEqual(a["id"], what)
        self.assertEqual(a["error"]["code"], "vm_failed", (what, a))
        msg = a["error"]["message"]
        if words:
            self.assertTrue(any(w in msg for w in words),
                            f"{what}: the message names none of {words}: {msg!r}")

    def test_well_behaved(self):
        with self.case("well-behaved"):
            c = Conn(self.opd.socket)
            _, a = c.exec("echo plain", "plain")
            c.close()
            self.assertTrue(a["ok"], a)
            self.assertEqual((a["stdout"], a["exit_code"], a["status"], a["mode"]),
                             ("echo plain", 0, "ok", "cold"))
            c = Conn(self.opd.socket)
            events, a = c.exec("echo streamed", "streamed", stream=True)
            c.close()
            self.assertTrue(a["ok"], a)
            self.assertEqual([e["data"] for e in events], ["echo streamed"])

    def test_lies_are_refused(self):
        for what, words in REFUSED:
            with self.subTest(what), self.case(what):
                c = Conn(self.opd.socket)
                _, a = c.exec(f"hostile:{what}", what, output_max_bytes=OUTPUT_MAX)
                c.close()
                self.assert_refused(what, a, words)

    def test_stream_amplify(self):
        what = "stream-amplify"
        with self.case(what):
            c = Conn(self.opd.socket)
            events, a = c.exec(f"hostile:{what}", what, output_max_bytes=OUTPUT_MAX,
                               stream=True)
            c.close()
            got = sum(event_bytes(e) for e in events if e.get("event") == "stdout")
            self.assertLessEqual(got, OUTPUT_MAX,
                                 f"{len(events)} events gave {got} bytes of stdout")
            self.assert_refused(what, a, ())

    def test_console_flood(self):
        what = "console-flood"
        with self.case(what):
            c = Conn(self.opd.socket)
            _, a = c.exec(f"hostile:{what}", what, output_max_bytes=OUTPUT_MAX)
            c.close()
            self.assertTrue(a and a["ok"], a)
            self.assertEqual((a["stdout"], a["exit_code"]), (f"hostile:{what}", 0))

    def test_console_tail_in_the_log_has_no_control_characters(self):
        what = "die-midway"
        with self.case("console tail"):
            c = Conn(self.opd.socket)
            _, a = c.exec(f"hostile:{what}", "tail", output_max_bytes=OUTPUT_MAX)
            c.close()
            self.assertIs(a and a["ok"], False, a)
        wait_for(lambda: [line for line in self.log_lines()
                          if b"console tail" in line and CONSOLE_MARKER in line], TIMEOUT,
                 "a console tail with the fake's text in opd's log")
        for line in [line for line in self.log_lines() if b"console tail" in line]:
            self.assertIsNone(re.search(rb"[\x00-\x1f\x7f]", line), line)

    def test_vmm_output_flood(self):
        """What the VMM itself prints goes to a pipe opd drains: none of it lands on a file
        system, and a failed VM's log keeps its last KiB, escaped."""
        what = "vmm-flood"
        with self.case(what):
            c = Conn(self.opd.socket)
            _, a = c.exec(f"hostile:{what}", what, output_max_bytes=OUTPUT_MAX)
            c.close()
            self.assert_refused(what, a, ())
        lines = wait_for(lambda: [line for line in self.log_lines()
                                  if b"VMM output (its last " in line
                                  and VMM_OUTPUT_MARKER in line], TIMEOUT,
                         "the VMM's output tail with the fake's text in opd's log")
        self.assertEqual(len(lines), 1, lines)
        kept, total = map(int, re.search(rb"its last (\d+) of (\d+) bytes", lines[0]).groups())
        self.assertLessEqual(kept, 1024, lines[0])
        self.assertGreaterEqual(total, 60 << 20, lines[0])  # all it wrote was read
        self.assertIsNone(re.search(rb"[\x00-\x1f\x7f]", lines[0]), lines[0])
        self.assertIn(rb"\x1b[2J" + VMM_OUTPUT_MARKER + rb" \x07end\n", lines[0])
        # the VM directories never held it: run_dir holds no file at all
        for root, _, files in os.walk(self.opd.run_dir):
            self.assertEqual(files, [], root)

    def test_piston_door_answers_an_error_not_a_number(self):
        def execute(content):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            return request(conn, "POST", "/api/v2/execute", {
                "language": "bash", "version": BASH_VERSION, "files": [{"content": content}]})

        with self.case("piston well-behaved"):
            status, res, _ = execute("echo door")
            self.assertEqual(status, 200, res)
            self.assertEqual((res["run"]["stdout"], res["run"]["code"]), ("echo door", 0))
        for what, words in BAD_NUMBERS:
            with self.subTest(what), self.case(f"piston {what}"):
                status, res, _ = execute(f"hostile:{what}")
                text = json.dumps(res)
                self.assertNotIn(INT64_MIN, text)
                self.assertGreaterEqual(status, 400, (what, res))
                self.assertEqual(set(res), {"message"}, (what, res))
                self.assertTrue(any(w in res["message"] for w in words),
                                f"{what}: the message names none of {words}: {res}")

    def log_lines(self):
        with open(self.opd.log_path, "rb") as f:
            return f.read().split(b"\n")


class _Case:
    def __init__(self, t, what):
        self.t, self.what = t, what

    def __enter__(self):
        self.side = Conn(self.t.opd.socket)  # another client, connected while the case runs
        if self.t.hwm_resettable:
            self.t.reset_hwm()
        return self

    def __exit__(self, etype, err, tb):
        """The checks run after a failed case too; a failure of theirs joins the case's."""
        t, what = self.t, self.what
        if etype is not None and not issubclass(etype, AssertionError):
            self.side.close()
            return False
        try:
            _, a = self.side.exec("echo after", f"after {what}")
            t.assertTrue(a and a["ok"], (f"after {what}: another client was not served", a))
            t.assertEqual(a["stdout"], "echo after")
            wait_for(lambda: not t.opd.vmm_pids(), TIMEOUT,
                     lambda: f"after {what}: the VMM processes to end: {t.opd.vmm_pids()}")
            t.assertLess(t.hwm(), RSS_BOUND,
                         f"{what}: opd's peak RSS reached {t.hwm() >> 20} MiB")
        except (AssertionError, OSError) as after:
            if err is None:
                raise
            raise AssertionError(f"{err}\nand then: {after}") from None
        finally:
            self.side.close()
        return False


if __name__ == "__main__":
    unittest.main()
