"""The HTTP listeners (piston.listen, metrics.listen) against a hostile local user: foreign Host
and Origin headers (DNS rebinding) get 403 in Piston's error shape, idle and trickling
connections are capped per listener and per peer and closed at the request deadline, running
out of file descriptors pauses accepting and the listener serves again afterwards, a client
that never reads its answers costs one answer, a door body of countless JSON values is refused
unparsed, and a body sent with Content-Length arrives whole up to limit.frame_max. No VM is
needed."""
import errno
import http.client
import io
import json
import os
import select
import signal
import socket
import time
import unittest

from opdtest import Opd, free_port, rss_bytes, wait_for


def get(port, path, headers=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    body = json.loads(data) if "json" in (r.getheader("Content-Type") or "") else data
    return r.status, body


def accept_queue(port):
    """Connections the kernel holds for 127.0.0.1:port's listener, not yet accepted (for a
    listening socket, /proc/net/tcp's rx_queue is its accept queue)."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":  # LISTEN
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no listener on 127.0.0.1:{port}")


def serves(port, path):
    try:
        return get(port, path, timeout=5)[0] == 200
    except OSError:
        return False


def readable(s):
    """Whether s has data or EOF now. Never waits: a socket with a timeout would wait for it
    in recv() even with MSG_DONTWAIT."""
    return bool(select.select([s], [], [], 0)[0])


def closed_by_peer(s):
    """True once the peer has closed s (EOF or reset), False while it is open."""
    if not readable(s):
        return False
    try:
        return s.recv(65536, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def answered_503(s):
    if not readable(s):
        return False
    try:
        return s.recv(64, socket.MSG_DONTWAIT | socket.MSG_PEEK).startswith(b"HTTP/1.1 503")
    except (BlockingIOError, ConnectionResetError):
        return False


def peak_rss_bytes(pid):
    """The most resident memory process pid has had."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class Received:
    """Bytes received, as the socket http.client.HTTPResponse reads an answer from."""
    def __init__(self, data):
        self.data = data

    def makefile(self, mode):
        return io.BytesIO(self.data)


def post_raw(port, body, chunked=False, timeout=60):
    """(status, parsed JSON answer) of a POST /api/v2/execute carrying body (bytes), sent with
    Content-Length or in 64 KiB chunks. The timeout only detects a request that hangs."""
    head = (f"POST /api/v2/execute HTTP/1.1\r\nHost: localhost:{port}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n")
    if chunked:
        parts = [f"{len(body[i:i + 65536]):x}\r\n".encode() + body[i:i + 65536] + b"\r\n"
                 for i in range(0, len(body), 65536)]
        data = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + b"".join(parts) + \
            b"0\r\n\r\n"
    else:
        data = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    r = http.client.HTTPResponse(Received(answer))
    r.begin()
    return r.status, json.loads(r.read())


def connect_nb(port):
    s = socket.socket()
    s.setblocking(False)
    err = s.connect_ex(("127.0.0.1", port))
    if err not in (0, errno.EINPROGRESS):
        s.close()
        raise OSError(err, os.strerror(err))
    return s


class Httpd(unittest.TestCase):
    def start(self, extra=None, argv=None):
        self.door, self.metrics = free_port(), free_port()
        conf = {"pool.size": "0", "idle_timeout_ms": "0", "max_vms": "1",
                "piston.listen": f"127.0.0.1:{self.door}",
                "metrics.listen": f"127.0.0.1:{self.metrics}"}
        conf.update(extra or {})
        return Opd(conf, argv=argv)

    def test_foreign_host_and_origin_get_403(self):
        opd = self.start()
        try:
            for port, path in ((self.door, "/api/v2/runtimes"), (self.metrics, "/metrics")):
                for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                             f"[::1]:{port}"):
                    self.assertEqual(get(port, path, {"Host": host})[0], 200, host)
                for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}",
                             "localhost", f"localhost:{port}.attacker.example",
                             f"127.0.0.1.nip.io:{port}"):
                    status, body = get(port, path, {"Host": host})
                    self.assertEqual(status, 403, host)
                    self.assertIn("message", body)  # Piston's error shape
                for origin in ("http://attacker.example", f"http://attacker.example:{port}",
                               "null", f"https://localhost:{port}"):
                    status, body = get(port, path, {"Host": f"localhost:{port}", "Origin": origin})
                    self.assertEqual(status, 403, origin)
                    self.assertIn("message", body)
                self.assertEqual(get(port, path, {"Host": f"localhost:{port}",
                                                  "Origin": f"http://localhost:{port}"})[0], 200)
            # the DNS rebinding case of the report: execute with a foreign Host runs nothing
            conn = http.client.HTTPConnection("127.0.0.1", self.door, timeout=60)
            conn.request("POST", "/api/v2/execute",
                         body=json.dumps({"language": "bash", "version": "*",
                                          "files": [{"content": "echo hi"}]}),
                         headers={"Host": f"attacker.example:{self.door}",
                                  "Content-Type": "application/json"})
            r = conn.getresponse()
            self.assertEqual(r.status, 403)
            self.assertIn("message", json.loads(r.read()))
            conn.close()
            # a web page's form posting text/plain (a type the door takes, as fetch() sends it)
            # carries the page's Origin: it runs nothing either
            conn = http.client.HTTPConnection("127.0.0.1", self.door, timeout=60)
            conn.request("POST", "/api/v2/execute",
                         body=json.dumps({"language": "bash", "version": "*",
                                          "files": [{"content": "echo hi"}]}),
                         headers={"Origin": "http://attacker.example",
                                  "Content-Type": "text/plain"})
            r = conn.getresponse()
            self.assertEqual(r.status, 403)
            self.assertIn("message", json.loads(r.read()))
            conn.close()
            self.assertEqual(opd.call({"op": "status"})["counters"]["requests"], 0)
        finally:
            opd.stop()

    def test_piston_index_and_names(self):
        opd = self.start()
        try:
            status, body = get(self.door, "/")
            self.assertEqual(status, 200)
            self.assertTrue(body["message"].startswith("Piston v3"), body)
            status, runtimes = get(self.door, "/api/v2/runtimes")
            self.assertEqual(status, 200)
            by_name = {r["language"]: r for r in runtimes}
            # Piston's names; opd's as aliases (clients pick a version by Piston's name)
            self.assertIn("javascript", by_name)
            self.assertNotIn("node", by_name)
            self.assertIn("node", by_name["javascript"]["aliases"])
            self.assertNotIn("javascript", by_name["javascript"]["aliases"])
            for alias in ("py", "py3", "python3", "python3.11"):
                self.assertIn(alias, by_name["python"]["aliases"])
        finally:
            opd.stop()

    def test_a_body_of_countless_json_values_is_refused_unparsed(self):
        """A body within limit.frame_max (16 MiB) of "[{},{},...]": parsed it would take opd
        over a GB and hold its loop for seconds; it is refused before any parse."""
        opd = self.start()
        try:
            before = peak_rss_bytes(opd.proc.pid)
            body = b"[" + b"{}," * ((16 << 20) // 3 - 1024) + b"{}]"
            status, res = post_raw(self.door, body, chunked=True)
            self.assertEqual(status, 400, res)
            self.assertIn("JSON values", res["message"])
            grown = peak_rss_bytes(opd.proc.pid) - before
            self.assertLess(grown, 256 << 20, f"peak RSS grew by {grown} bytes")
            self.assertTrue(opd.call({"op": "ping"})["ok"])
        finally:
            opd.stop()

    def test_a_body_sent_with_content_length_is_answered_up_to_frame_max(self):
        """Bodies sent with Content-Length arrive whole up to limit.frame_max (16 MiB): each
        gets its answer (an unknown runtime: no VM is needed), none waits for the deadline."""
        opd = self.start()
        try:
            for size in (60000, 70000, 200000, 1000000, 16 << 20):
                body = {"language": "intercal", "version": "*", "files": [{"content": ""}]}
                pad = size - len(json.dumps(body))
                body["files"][0]["content"] = "#" * pad
                data = json.dumps(body).encode()
                self.assertEqual(len(data), size)
                status, res = post_raw(self.door, data)
                self.assertEqual((status, res), (400, {"message": "intercal-* runtime is unknown"}),
                                 size)
            # The next request on a connection has the same room once the first is answered.
            body = json.dumps({"language": "intercal", "version": "*",
                               "files": [{"content": "#" * 200000}]})
            conn = http.client.HTTPConnection("127.0.0.1", self.door, timeout=60)
            try:
                for _ in range(2):
                    conn.request("POST", "/api/v2/execute", body=body,
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    self.assertEqual((r.status, json.loads(r.read())),
                                     (400, {"message": "intercal-* runtime is unknown"}))
            finally:
                conn.close()
            # One byte over: evhttp's 413.
            with socket.create_connection(("127.0.0.1", self.door), timeout=60) as s:
                s.sendall((f"POST /api/v2/execute HTTP/1.1\r\nHost: localhost:{self.door}\r\n"
                           "Content-Type: application/json\r\n"
                           f"Content-Length: {(16 << 20) + 1}\r\n\r\n").encode())
                self.assertTrue(s.recv(64).startswith(b"HTTP/1.1 413"))
        finally:
            opd.stop()

    def test_thousands_of_idle_connections_are_capped(self):
        opd = self.start({"http.max_connections": "100", "http.max_connections_per_peer": "50"})
        socks = []
        try:
            for port in (self.door, self.metrics):
                for _ in range(2000):
                    socks.append(connect_nb(port))
            # per peer (all of them 127.0.0.1): 50 held per listener, the rest answered 503
            # and closed, or waiting in the backlog
            wait_for(lambda: opd.call({"op": "metrics", "id": 1})["text"].count(
                "opd_connections_refused_total 0") == 0, 60, "refusals")
            # opd's socket is not held up by them
            for i in range(20):
                self.assertTrue(opd.call({"op": "ping", "id": i}, timeout=30)["ok"])
            for s in socks:
                s.close()
            socks = []
            # once they are gone both listeners serve again
            wait_for(lambda: serves(self.door, "/api/v2/runtimes"), 60, "the door")
            wait_for(lambda: serves(self.metrics, "/metrics"), 60, "metrics")
        finally:
            for s in socks:
                s.close()
            opd.stop()
        self.assertIn("http.max_connections_per_peer reached", opd.read_log())

    def test_trickling_connections_are_closed_at_the_request_deadline(self):
        # read_timeout_ms (the idle limit) 10 s; one byte every 0.3 s keeps it from firing
        opd = self.start({"http.request_timeout_ms": "2000", "read_timeout_ms": "10000"})
        socks = []
        try:
            for port in (self.door, self.metrics):
                for _ in range(20):
                    s = socket.create_connection(("127.0.0.1", port), timeout=30)
                    s.sendall(b"GET /metrics HTTP/1.1\r\n")
                    socks.append(s)
            start = time.time()
            alive = list(socks)
            while alive:
                self.assertLess(time.time() - start, 60, "trickling connections still open")
                for s in list(alive):
                    if closed_by_peer(s):
                        alive.remove(s)
                        continue
                    try:
                        s.send(b"X")
                    except OSError:
                        alive.remove(s)
                time.sleep(0.3)
            # the whole request deadline, not the idle one, closed them
            self.assertLess(time.time() - start, 10)
            self.assertTrue(serves(self.door, "/api/v2/runtimes"))
        finally:
            for s in socks:
                s.close()
            opd.stop()

    def test_out_of_file_descriptors_then_serving_again(self):
        # 96 descriptors: a quarter (24) kept for opd's own work, twice that by the HTTP
        # listeners. Idle connections fill opd up to its reserve (the next ones are answered
        # 503), then a burst taken in one turn of the loop (opd stopped while they queue) runs
        # it out: accepting pauses, and each listener serves again afterwards
        # (the idle connections must stay until the burst, however slow the machine: neither
        # the request deadline nor the idle one, read_timeout_ms, closes them)
        opd = self.start({"http.max_connections": "1000",
                          "http.max_connections_per_peer": "1000",
                          "http.request_timeout_ms": "3600000",
                          "read_timeout_ms": "3600000"},
                         argv=["prlimit", "--nofile=96:96"])
        socks = []
        try:
            for port, path in ((self.door, "/api/v2/runtimes"), (self.metrics, "/metrics")):
                before = opd.read_log().count("Too many open files; pausing")
                for _ in range(130):
                    s = socket.socket()
                    s.settimeout(10)
                    s.connect(("127.0.0.1", port))
                    socks.append(s)
                wait_for(lambda: any(answered_503(s) for s in socks), 60,
                         "a refusal at the reserve")
                # Every one of them accepted (adopted below the reserve, or refused and closed
                # by the turn of the loop that answers a ping sent after that): the reserve is
                # kept for opd's own work, so its socket answers while the HTTP ones are held
                wait_for(lambda: accept_queue(port) == 0, 60, "opd to accept every connection")
                wait_for(lambda: opd.call({"op": "ping", "id": 1}, timeout=30)["ok"], 60,
                         "opd's socket to answer")
                # Every descriptor below the HTTP reserve (2 x 24) is now a held connection, so
                # 48 are free: 60 taken in one turn of the loop run out. They queue while opd is
                # stopped (the empty accept queue holds 65: listen backlog 64).
                os.kill(opd.proc.pid, signal.SIGSTOP)
                try:
                    for _ in range(60):
                        s = socket.socket()
                        s.settimeout(10)
                        s.connect(("127.0.0.1", port))
                        socks.append(s)
                    wait_for(lambda: accept_queue(port) == 60, 60, "the burst to queue")
                finally:
                    os.kill(opd.proc.pid, signal.SIGCONT)
                wait_for(lambda: opd.read_log().count("Too many open files; pausing") > before,
                         60, "accept to run out of descriptors")
                for s in socks:
                    s.close()
                socks = []
                wait_for(lambda: serves(port, path), 60, f"{path} to serve again")
                wait_for(lambda: opd.call({"op": "ping", "id": 2}, timeout=30)["ok"], 60,
                         "opd's socket to answer")
        finally:
            for s in socks:
                s.close()
            opd.stop()
        log = opd.read_log()
        self.assertNotIn("(null)", log)
        self.assertNotIn("event has no event_base", log)

    def test_a_client_that_never_reads_costs_one_answer(self):
        opd = self.start()
        s = socket.socket()
        try:
            for _ in range(5):
                get(self.metrics, "/metrics")
            before = rss_bytes(opd.proc.pid)
            s.connect(("127.0.0.1", self.metrics))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setblocking(False)
            req = f"GET /metrics HTTP/1.1\r\nHost: localhost:{self.metrics}\r\n\r\n".encode()
            data = req * 400000
            sent = 0
            stalled = 0
            while sent < len(data) and stalled < 40:
                try:
                    sent += s.send(data[sent:sent + 65536])
                    stalled = 0
                except BlockingIOError:
                    stalled += 1
                    time.sleep(0.05)
            self.assertLess(sent, len(data), "opd read every request")
            grown = rss_bytes(opd.proc.pid) - before
            self.assertLess(grown, 4 << 20, f"RSS grew by {grown} bytes")
            self.assertTrue(serves(self.metrics, "/metrics"))
        finally:
            s.close()
            opd.stop()


if __name__ == "__main__":
    unittest.main()
