"""Clients that do not take their answers: a connection that sends requests and never reads
stops being read once its unread answers pass client.output_high (opd's memory grows by no
more than that), is served again once it reads, and is closed past client.output_max. No VM
is needed."""
import json
import socket
import threading
import time
import unittest

from opdtest import Opd, frame, rss_bytes

HIGH = 1 << 20
METRICS = frame({"op": "metrics", "id": 1})


def counters(opd):
    return opd.call({"op": "status"})["counters"]


def metric(opd, name):
    text = opd.call({"op": "metrics", "id": "m"})["text"]
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in the metrics")


def send_until_paused(opd, s, data):
    """Send data on the non-blocking s until opd stops reading it; returns the bytes sent."""
    sent = 0
    while sent < len(data):
        try:
            sent += s.send(data[sent:sent + 65536])
        except BlockingIOError:
            if metric(opd, "opd_client_output_paused_total") >= 1:
                return sent
            time.sleep(0.05)
    raise AssertionError("opd read every request without pausing")


class Clients(unittest.TestCase):
    def test_a_client_that_never_reads_is_paused_under_its_watermark(self):
        # limit.frame_max bounds what opd reads ahead of its answers: once it pauses the
        # client's sends block, whatever the size of one answer
        opd = Opd({"pool.size": "0", "idle_timeout_ms": "0", "client.output_high": str(HIGH),
                   "client.output_max": "0", "limit.frame_max": "4096"})
        s = socket.socket(socket.AF_UNIX)
        try:
            # warm the paths this takes once, then measure
            for _ in range(20):
                opd.call({"op": "metrics", "id": 0})
            before = rss_bytes(opd.proc.pid)
            # 20,000 pipelined metrics requests (each answer is over 40 KB), never read
            s.connect(opd.socket)
            s.setblocking(False)
            sent = send_until_paused(opd, s, METRICS * 20000)
            # paused: it reads nothing more, however often we try to send
            for _ in range(20):
                with self.assertRaises(BlockingIOError):
                    s.send(METRICS)
            grown = rss_bytes(opd.proc.pid) - before
            # the unread answers (at most HIGH plus the answer that crossed it) and the input
            # read before the pause; without the mark it grew by gigabytes
            self.assertLess(grown, HIGH + (4 << 20), f"RSS grew by {grown} bytes, sent {sent}")
            # others are served meanwhile
            self.assertTrue(opd.call({"op": "ping", "id": "other"})["ok"])
        finally:
            s.close()
            opd.stop()

    def test_a_paused_client_that_reads_again_gets_every_answer_in_order(self):
        # limit.frame_max bounds what opd reads ahead of its answers: once it pauses the
        # client's sends block, whatever the size of one answer
        opd = Opd({"pool.size": "0", "idle_timeout_ms": "0", "client.output_high": str(HIGH),
                   "client.output_max": "0", "limit.frame_max": "4096"})
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(opd.socket)
            s.setblocking(False)
            data = METRICS * 400 + b"".join(frame({"op": "ping", "id": i}) for i in range(20000))
            sent = send_until_paused(opd, s, data)
            s.setblocking(True)
            s.settimeout(120)
            ids = []

            def reader():
                buf = b""
                while len(ids) < 20400:
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        return
                    buf += chunk
                    while len(buf) >= 4:
                        n = int.from_bytes(buf[:4], "big")
                        if len(buf) < 4 + n:
                            break
                        ids.append(json.loads(buf[4:4 + n])["id"])
                        buf = buf[4 + n:]

            t = threading.Thread(target=reader)
            t.start()
            s.sendall(data[sent:])
            t.join(300)
            self.assertEqual(ids, [1] * 400 + list(range(20000)))
        finally:
            s.close()
            opd.stop()

    def test_a_client_past_output_max_is_closed(self):
        # a metrics answer (over 40 KB) is past output_max (8 KiB): the client is closed, its
        # answer dropped, and others are served
        opd = Opd({"pool.size": "0", "idle_timeout_ms": "0", "client.output_high": "4096",
                   "client.output_max": "8192"})
        try:
            c = opd.client(timeout=60)
            self.assertTrue(c.call({"op": "ping", "id": 1})["ok"])
            self.assertIsNone(c.call({"op": "metrics", "id": 2}))
            c.close()
            self.assertTrue(opd.call({"op": "ping", "id": "other"})["ok"])
        finally:
            opd.stop()
        self.assertIn("past client.output_max: closing", opd.read_log())


if __name__ == "__main__":
    unittest.main()
