"""Connections a client can pile up: thousands of idle ones are bounded by max_clients, those
that would eat into the file descriptors kept for VMs are refused without spinning, and a connection that stays silent
is closed after idle_timeout_ms; one half-closed after thousands of pipelined requests gets every
answer before opd closes it. No VM is needed."""
import os
import socket
import time
import unittest

from opdtest import Opd, frame, wait_for

PING = frame({"op": "ping", "id": "p"})


def connect(path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)  # blocking: waits while the listen backlog is full
    s.settimeout(30)
    return s


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served_again(opd, id):
    """Whether a ping is answered within 30 s. Closes are processed in the order they came, so
    until opd has seen those of the connections just closed a new one may still be refused: a
    `busy` answer, or the close itself before the ping is even sent."""
    def answered():
        try:
            a = opd.call({"op": "ping", "id": id})
        except (BrokenPipeError, ConnectionResetError):
            return False
        return bool(a and a["ok"])
    try:
        wait_for(answered, 30, "a ping to be answered")
    except AssertionError:
        return False
    return True


class Connections(unittest.TestCase):
    def test_thousands_of_idle_connections_bounded_by_max_clients(self):
        opd = Opd({"pool.size": "0", "max_clients": "1000", "idle_timeout_ms": "0"})
        conns = []
        try:
            for _ in range(1000):
                conns.append(connect(opd.socket))
            conns[0].sendall(PING)
            over = [connect(opd.socket) for _ in range(500)]
            for s in over[:20] + over[-20:]:
                buf = b""
                while True:  # one answer, then opd closes
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                self.assertIn(b'"busy"', buf)
                self.assertIn(b"max_clients 1000", buf)
            for s in over:
                s.close()
            for s in conns[1:]:
                s.close()
            # the one that sent a ping got its answer; opd then serves new clients
            buf = conns[0].recv(4096)
            self.assertIn(b'"ok": true', buf.replace(b'"ok":true', b'"ok": true'))
            self.assertTrue(served_again(opd, "after"))
            st = opd.call({"op": "status"})
            self.assertGreaterEqual(st["counters"]["connections"], 1000)
        finally:
            for s in conns:
                s.close()
            opd.stop()
        self.assertIn("max_clients reached", opd.read_log())

    def test_out_of_file_descriptors_refused_at_the_reserve(self):
        # opd with 64 descriptors keeps a quarter of them for VMs and its own work: connections
        # that would eat into that get one busy answer and a close, without spinning
        opd = Opd({"pool.size": "0", "idle_timeout_ms": "0"}, argv=["prlimit", "--nofile=64:64"])
        conns = []
        try:
            for _ in range(120):
                conns.append(connect(opd.socket))
            held, refused = [], 0
            for s in conns:
                try:
                    s.sendall(PING)
                except BrokenPipeError:
                    pass  # refused and closed already; its answer is still to read
                buf = s.recv(4096).replace(b" ", b"")
                if b'"id":"p"' in buf:
                    held.append(s)
                else:
                    self.assertIn(b'"busy"', buf)
                    self.assertIn(b"filedescriptors", buf)
                    refused += 1
            self.assertGreater(len(held), 20)
            self.assertGreater(refused, 20)
            # not spinning: under 0.5 s of CPU in 2 s
            before = cpu_seconds(opd.proc.pid)
            time.sleep(2)
            self.assertLess(cpu_seconds(opd.proc.pid) - before, 0.5)
            # the connections held still work; once they go, new ones are served
            held[-1].sendall(PING)
            self.assertIn(b'"id":"p"', held[-1].recv(4096).replace(b" ", b""))
            for s in conns:
                s.close()
            conns = []
            self.assertTrue(served_again(opd, 1))
        finally:
            for s in conns:
                s.close()
            opd.stop()
        self.assertIn("file descriptors", opd.read_log())

    def test_idle_connection_is_closed(self):
        opd = Opd({"pool.size": "0", "idle_timeout_ms": "1000", "read_timeout_ms": "30000"})
        try:
            idle = connect(opd.socket)
            busy = opd.client()
            t = time.time()
            # one that keeps talking stays open past the idle timeout
            for i in range(6):
                self.assertTrue(busy.call({"op": "ping", "id": i})["ok"])
                time.sleep(0.4)
            self.assertEqual(idle.recv(4096), b"")  # closed, no answer owed so none sent
            took = time.time() - t
            self.assertGreaterEqual(took, 0.9)
            self.assertLess(took, 10)
            self.assertTrue(busy.call({"op": "ping", "id": "still"})["ok"])
            busy.close()
            m = opd.call({"op": "metrics", "id": "m"})
            self.assertIn("opd_connections_idle_closed_total 1", m["text"])
        finally:
            opd.stop()

    def test_half_close_answers_every_pipelined_request(self):
        # more than one turn's worth (16 frames) before shutdown(SHUT_WR): those left for later
        # turns are answered too, in order, and only then is the connection closed
        opd = Opd({"pool.size": "0"})
        try:
            for n in (17, 1000):
                c = opd.client(timeout=60)
                try:
                    c.send_raw(b"".join(frame({"op": "ping", "id": i}) for i in range(n)))
                    c.sock.shutdown(socket.SHUT_WR)
                    ids = []
                    while (a := c.recv()) is not None:
                        self.assertTrue(a["ok"], a)
                        ids.append(a["id"])
                    self.assertEqual(ids, list(range(n)))
                finally:
                    c.close()
            self.assertTrue(opd.call({"op": "ping", "id": "after"})["ok"])
        finally:
            opd.stop()


if __name__ == "__main__":
    unittest.main()
