"""The Piston-compatible door (piston.listen): Piston v2 requests, built from the shapes in
Piston's API documentation, sent over HTTP to a real opd that runs them in real VMs."""
import base64
import grp
import http.client
import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import unittest

from opdtest import OPD, Opd, ensure_opd_user, free_port, wait_for


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=180):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def request(conn, method, path, body=None, content_type="application/json"):
    """(status, parsed JSON body, headers) of one HTTP exchange."""
    headers = {"Content-Type": content_type} if content_type else {}
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    return r.status, json.loads(data) if data and "json" in (r.getheader("Content-Type") or "") \
        else data, r


def documented_request(language, version, program, **over):
    """Piston's documented execute request (docs/api-v2.md, readme): every field it lists."""
    req = {
        "language": language,
        "version": version,
        "files": [{"name": "my_cool_code", "content": program}],
        "stdin": "",
        "args": ["1", "2", "3"],
        "compile_timeout": 10000,
        "run_timeout": 3000,
        "compile_cpu_time": 10000,
        "run_cpu_time": 3000,
        "compile_memory_limit": -1,
        "run_memory_limit": -1,
    }
    req.update(over)
    return req


def socket_path():
    """A path for a UNIX piston.listen in a directory of its own: opd binds as root and then
    runs as jail.user, and removes its socket at stop from a directory that user may write."""
    tmp = tempfile.mkdtemp(prefix="opd-piston-")
    os.chmod(tmp, 0o755)
    if os.geteuid() == 0:
        ensure_opd_user()
        os.chown(tmp, pwd.getpwnam("opd").pw_uid, pwd.getpwnam("opd").pw_gid)
    return os.path.join(tmp, "piston.sock")


class Door(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        # max_inflight bounds the door's requests in flight: 1 makes "busy" easy to reach.
        cls.opd = Opd({"pool.size": "0", "piston.listen": f"127.0.0.1:{cls.port}",
                       "max_inflight": "1", "limit.frame_max": "65536"})
        cls.status = cls.opd.call({"op": "status"})

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=180)

    def execute(self, body, **kw):
        return request(self.conn(), "POST", "/api/v2/execute", body, **kw)

    def check_result_shape(self, res):
        self.assertEqual(set(res), {"language", "version", "run"})
        self.assertEqual(set(res["run"]), {"stdout", "stderr", "output", "code", "signal",
                                           "message", "status", "cpu_time", "wall_time",
                                           "memory"})

    def test_runtimes(self):
        status, body, r = request(self.conn(), "GET", "/api/v2/runtimes", content_type=None)
        self.assertEqual(status, 200)
        self.assertTrue(r.getheader("Content-Type").startswith("application/json"))
        # Piston's names (javascript, c++), opd's own as the first alias
        piston = {"node": "javascript", "cpp": "c++"}
        want = [{"language": piston.get(g["name"], g["name"]), "version": g["version"],
                 "aliases": ([g["name"]] if g["name"] in piston else []) +
                 [a for a in g["aliases"] if a != piston.get(g["name"])]}
                for g in self.status["languages"] if g["available"] and g["enabled"]]
        self.assertEqual(body, want)
        self.assertIn("python", [e["language"] for e in body])
        for e in body:
            self.assertEqual(set(e), {"language", "version", "aliases"})
        # The public instance's path works too.
        status, body2, _ = request(self.conn(), "GET", "/api/v2/piston/runtimes",
                                   content_type=None)
        self.assertEqual((status, body2), (200, body))

    def test_documented_example(self):
        """Piston's documented example (it calls an alias and prints argv), in python."""
        py = next(g for g in self.status["languages"] if g["name"] == "python")
        # The documented 3000 ms run_timeout is tight for a python start under emulation on a
        # busy machine (so is its run_cpu_time, applied as cpu_time_ms): the shape is
        # Piston's, the values generous.
        status, res, _ = self.execute(documented_request(
            "py", py["version"].split(".")[0] + ".x", "import sys\nprint(sys.argv[1:])",
            run_timeout=30000, run_cpu_time=30000))
        self.assertEqual(status, 200, res)
        self.check_result_shape(res)
        self.assertEqual(res["language"], "python")  # the name, not the alias asked for
        self.assertEqual(res["version"], py["version"])
        run = res["run"]
        self.assertEqual(run["stdout"], "['1', '2', '3']\n")
        self.assertEqual(run["stderr"], "")
        self.assertEqual(run["output"], run["stdout"])
        self.assertEqual((run["code"], run["signal"], run["status"], run["message"]),
                         (0, None, None, None))
        self.assertIsInstance(run["wall_time"], int)

    def test_files_stdin_exit_status(self):
        """Several files (one base64), stdin, stderr and a failing exit: status RE."""
        status, res, _ = self.execute({
            "language": "bash", "version": "*",
            "files": [{"name": "main.sh",
                       "content": 'cat data.txt file2; read x; echo "err:$x" >&2; exit 3'},
                      {"name": "data.txt", "content": "aGVsbG8K", "encoding": "base64"},
                      {"content": "unnamed\n"}],
            "stdin": "typed\n"})
        self.assertEqual(status, 200, res)
        run = res["run"]
        self.assertEqual(run["stdout"], "hello\nunnamed\n")
        self.assertEqual(run["stderr"], "err:typed\n")
        self.assertEqual(run["output"], "hello\nunnamed\nerr:typed\n")
        self.assertEqual((run["code"], run["signal"], run["status"]), (3, None, "RE"))
        self.assertIn("3", run["message"])

    # Writes each piece only once the agent has read the one before (FIONREAD on the program's
    # own end of the pipe drops to 0), so the order the agent sees is the order of the writes
    # however the guest schedules the two.
    ORDERED = ("import fcntl, os, struct, termios\n"
               "def put(fd, b):\n"
               "    os.write(fd, b)\n"
               "    while struct.unpack('i', fcntl.ioctl(fd, termios.FIONREAD, b'1234'))[0]:\n"
               "        os.sched_yield()\n"
               "put(1, b'a\\n'); put(2, b'b\\n'); put(1, b'c\\n')\n")

    def test_output_in_written_order(self):
        """run.output holds stdout and stderr in the order the program wrote them, as Piston's
        does; stdout and stderr stay apart."""
        # (a python start under emulation on a busy machine can take seconds: a generous
        # run_timeout)
        status, res, _ = self.execute({"language": "python", "version": "*",
                                       "files": [{"content": self.ORDERED}],
                                       "run_timeout": 30000})
        self.assertEqual(status, 200, res)
        run = res["run"]
        self.assertEqual(run["stdout"], "a\nc\n")
        self.assertEqual(run["stderr"], "b\n")
        self.assertEqual(run["output"], "a\nb\nc\n")
        self.assertEqual((run["code"], run["status"]), (0, None))
        # The socket's answer carries the order the door used.
        ans = self.opd.call({"op": "exec", "lang": "python", "code": self.ORDERED,
                             "timeout_ms": 30000})
        self.assertTrue(ans["ok"], ans)
        self.assertEqual((ans["stdout"], ans["stderr"]), ("a\nc\n", "b\n"))
        self.assertEqual(ans["output_order"], [[1, 2], [2, 2], [1, 2]])
        self.assertNotIn("output_order_partial", ans)

    def test_binary_files(self):
        """base64 and hex files holding bytes that are not text (NUL, 0xff) reach the program
        byte for byte."""
        data = bytes([0, 1, 2, 0xff, 0x80, 10])
        status, res, _ = self.execute({
            "language": "bash", "version": "*",
            "files": [{"content": "od -An -tx1 -v in.bin; od -An -tx1 -v in.hex"},
                      {"name": "in.bin", "content": base64.b64encode(data).decode(),
                       "encoding": "base64"},
                      {"name": "in.hex", "content": data.hex().upper(), "encoding": "hex"}]})
        self.assertEqual(status, 200, res)
        run = res["run"]
        self.assertEqual((run["code"], run["status"], run["stderr"]), (0, None, ""))
        self.assertEqual(run["stdout"].split(), [f"{b:02x}" for b in data] * 2)

    def test_run_memory_limit(self):
        """run_memory_limit reaches the program as opd's memory_bytes: past it the kernel kills
        it, and Piston's answer says so (status SG, the signal, "Memory limit exceeded")."""
        status, res, _ = self.execute({
            "language": "python", "version": "*", "run_timeout": 30000, "run_cpu_time": 30000,
            "run_memory_limit": 64 << 20,
            "files": [{"content": "b = []\nwhile True:\n    b.append(bytearray(8 << 20))"}]})
        self.assertEqual(status, 200, res)
        run = res["run"]
        self.assertEqual((run["code"], run["signal"], run["status"], run["message"]),
                         (None, "SIGKILL", "SG", "Memory limit exceeded"))
        self.assertIsInstance(run["memory"], int)
        self.assertLessEqual(run["memory"], 64 << 20)

    def test_run_timeout(self):
        status, res, _ = self.execute({"language": "bash", "version": "5", "run_timeout": 1000,
                                       "files": [{"content": "sleep 30"}]})
        self.assertEqual(status, 200, res)
        run = res["run"]
        self.assertEqual((run["code"], run["signal"], run["status"]), (None, "SIGKILL", "TO"))

    def test_guest_as_piston_has_it(self):
        """/run/lock exists and is writable; a file the program writes stops at 10 MB."""
        status, res, _ = self.execute({
            "language": "bash", "version": "*", "run_timeout": 30000,
            "files": [{"content": "test -d /run/lock && test -w /run/lock && echo lock\n"
                                  "head -c 20000000 /dev/zero > /tmp/big; echo rc=$?\n"
                                  "stat -c %s /tmp/big"}]})
        self.assertEqual(status, 200, res)
        out = res["run"]["stdout"].split()
        self.assertEqual(len(out), 3, res)
        self.assertEqual((out[0], out[2]), ("lock", "10000000"), res)
        self.assertNotEqual(out[1], "rc=0", res)

    def test_bad_requests(self):
        """Refused before any VM: Piston's error shape {"message": ...} with a 4xx status."""
        cases = [
            ({"language": "intercal", "version": "*", "files": [{"content": "x"}]}, 400,
             "intercal-* runtime is unknown"),
            ({"language": "python", "version": "2.x", "files": [{"content": "x"}]}, 400,
             "python-2.x runtime is unknown"),
            ({"language": "python", "version": "*", "files": []}, 400, "files must hold"),
            ({"language": "python", "version": "*"}, 400, "files is required as an array"),
            ({"version": "*", "files": [{"content": "x"}]}, 400,
             "language is required as a string"),
            ({"language": "python", "version": "*", "files": [{"content": 1}]}, 400,
             "files[0].content is required as a string"),
            ({"language": "python", "version": "*", "run_timeout": 600001,
              "files": [{"content": "x"}]}, 400, "run_timeout cannot be over"),
            # Checked by opd's exec validation, the socket's: the same rules and messages.
            ({"language": "python", "version": "*",
              "files": [{"content": "x"}, {"name": "a/b", "content": "y"}]}, 400, "files"),
            # A quoted name cut inside a UTF-8 sequence still makes a valid message.
            ({"language": "a" + "é" * 40, "version": "*", "files": [{"content": "x"}]}, 400,
             "a" + "é" * 31 + "-* runtime is unknown"),
            (b"{\"language\": ", 400, "invalid JSON"),
            (b"", 400, "empty"),
        ]
        for body, code, message in cases:
            status, res, _ = self.execute(body)
            self.assertEqual(status, code, (body, res))
            self.assertEqual(set(res), {"message"}, res)
            self.assertIn(message, res["message"], body)
        # Piston's rule, application/json; text/plain is taken too (fetch() sends it for a string
        # body: tests/integration/test_piston_client.py); form-urlencoded (curl -d), multipart
        # and no type at all are not
        for ctype in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                      "text/plainx", None):
            status, res, _ = self.execute({"language": "python"}, content_type=ctype)
            self.assertEqual((status, set(res)), (415, {"message"}), ctype)
        status, res, _ = self.execute({"language": "python"},
                                      content_type="text/plain;charset=UTF-8")
        self.assertEqual((status, res), (400, {"message": "version is required as a string"}))
        status, res, _ = request(self.conn(), "GET", "/api/v2/execute", content_type=None)
        self.assertEqual((status, set(res)), (405, {"message"}))
        status, res, _ = request(self.conn(), "GET", "/api/v2/packages", content_type=None)
        self.assertEqual((status, set(res)), (404, {"message"}))
        # Over limit.frame_max (65536 here): refused by the HTTP layer, connection closed.
        status, _, _ = self.execute(documented_request("python", "*", "#" * 70000))
        self.assertEqual(status, 413)
        # The daemon is unharmed.
        self.assertTrue(self.opd.call({"op": "ping"})["ok"])

    def test_busy(self):
        """The door's requests in flight are bounded (max_inflight): the next gets 503."""
        first = {}

        def run_first():
            # in flight for seconds after it reached opd (a cold boot, then 10 s of sleep)
            first["answer"] = self.execute({"language": "bash", "version": "*",
                                            "files": [{"content": "sleep 10; echo done"}],
                                            "run_timeout": 30000})

        before = self.opd.call({"op": "status"})["counters"]["requests"]
        t = threading.Thread(target=run_first)
        t.start()
        wait_for(lambda: self.opd.call({"op": "status"})["counters"]["requests"] != before, 60,
                 "the first request to reach opd")
        self.assertIn("\nopd_piston_inflight 1\n", self.opd.call({"op": "metrics"})["text"])
        status, res, r = self.execute({"language": "bash", "version": "*",
                                       "files": [{"content": "echo second"}]})
        t.join()
        self.assertEqual(status, 503, res)
        self.assertIn("max_inflight", res["message"])
        # when to try again, in whole seconds (the pools' estimate)
        self.assertGreaterEqual(int(r.getheader("Retry-After")), 1)
        status, res, _ = first["answer"]
        self.assertEqual((status, res["run"]["stdout"]), (200, "done\n"))
        metrics = self.opd.call({"op": "metrics"})["text"]
        self.assertIn("\nopd_piston_inflight 0\n", metrics)


class Listen(unittest.TestCase):
    def check_config(self, *sets):
        argv = [OPD, "--check-config"]
        for s in sets:
            argv += ["--set", s]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    def test_non_loopback_refused(self):
        for bad in ("0.0.0.0:2000", "10.1.2.3:2000", "localhost:2000", "[::]:2000",
                    "127.0.0.1:70000", "unix:relative.sock"):
            p = self.check_config(f"piston.listen={bad}")
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn("piston.listen", p.stderr)
            self.assertIn("loopback", p.stderr)

    def test_loopback_accepted(self):
        for good in ("127.0.0.1:2000", "[::1]:2000", "unix:/run/opd/piston.sock"):
            p = self.check_config(f"piston.listen={good}")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(f"piston.listen = {good}\n", p.stdout)
        p = self.check_config()
        self.assertIn("piston.listen = \n", p.stdout)  # off by default

    def test_tcp_with_access_group_refused(self):
        p = self.check_config("piston.listen=127.0.0.1:2000", "access.group=root")
        self.assertEqual(p.returncode, 2)
        self.assertIn("access.group", p.stderr)
        p = self.check_config("piston.listen=unix:/run/opd/piston.sock", "access.group=root")
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_unix_socket(self):
        """Over a UNIX socket: the socket's mode, access.group from the peer's credentials (a
        peer outside it refused 403 at connect, counted), and a request in flight answered 503
        when opd stops."""
        path = socket_path()
        opd = Opd({"pool.size": "0", "piston.listen": f"unix:{path}", "socket_mode": "0666",
                   "access.group": "users"}, wait_accel=False)
        try:
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o666)
            status, body, _ = request(UnixHTTPConnection(path), "GET", "/api/v2/runtimes",
                                      content_type=None)
            self.assertEqual(status, 200)
            self.assertIn("bash", [e["language"] for e in body])
            self.assertIn("\nopd_connections_refused_total 0\n",
                          opd.call({"op": "metrics"})["text"])
            self.assertEqual(self.as_user(path, NOBODY, NOBODY), [403, ["message"]])
            # counted before it was answered
            self.assertIn("\nopd_connections_refused_total 1\n",
                          opd.call({"op": "metrics"})["text"])
            self.assertEqual(self.as_user(path, USERS, NOBODY)[0], 200)

            answer = {}

            def execute():
                answer["r"] = request(UnixHTTPConnection(path), "POST", "/api/v2/execute", {
                    "language": "bash", "version": "*", "files": [{"content": "sleep 30"}]})

            before = opd.call({"op": "status"})["counters"]["requests"]
            t = threading.Thread(target=execute)
            t.start()
            wait_for(lambda: opd.call({"op": "status"})["counters"]["requests"] != before, 60,
                     "the request to reach opd")
        finally:
            opd.stop()
        t.join()
        status, res, _ = answer["r"]
        self.assertEqual((status, res), (503, {"message": "opd is shutting down"}))
        self.assertFalse(os.path.exists(path))
        self.assertEqual(opd.vmm_pids(), [])

    def test_unix_socket_share_per_uid(self):
        """Over a UNIX socket one uid holds at most http.max_inflight_per_peer requests in
        flight at the door: its next one gets 503 at once, another uid is served."""
        path = socket_path()
        opd = Opd({"pool.size": "0", "piston.listen": f"unix:{path}", "socket_mode": "0666",
                   "access.group": "users", "http.max_inflight_per_peer": "1",
                   "limit.timeout_ms_max": "300000"}, wait_accel=False)
        answer = {}
        t = threading.Thread(target=lambda: answer.update(
            r=self.execute_as(path, USERS, OTHER, "sleep 300")))
        try:
            before = opd.call({"op": "status"})["counters"]["requests"]
            t.start()
            wait_for(lambda: opd.call({"op": "status"})["counters"]["requests"] != before, 60,
                     "the first request to reach opd")
            status, body, retry = self.execute_as(path, USERS, OTHER, "echo again")
            self.assertEqual(status, 503, body)
            self.assertIn("http.max_inflight_per_peer", body["message"])
            self.assertGreaterEqual(int(retry), 1)
            status, body, _ = self.execute_as(path, USERS, OTHER + 1, "echo other")
            self.assertEqual(status, 200, body)
            self.assertEqual(body["run"]["stdout"], "other\n")
        finally:
            opd.stop()
            if t.ident:
                t.join()
        self.assertEqual(answer["r"][:2], (503, {"message": "opd is shutting down"}))

    def execute_as(self, path, gid, uid, code):
        """(status, body, Retry-After) of POST /api/v2/execute of bash code made as uid:gid."""
        p = subprocess.run([sys.executable, "-c", EXECUTE_AS, str(gid), str(uid), path, code],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        return tuple(json.loads(p.stdout))

    def as_user(self, path, gid, uid):
        """[status, keys of the JSON body] of GET /api/v2/runtimes made as uid:gid."""
        p = subprocess.run([sys.executable, "-c", AS_USER, str(gid), str(uid), path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)


AS_USER = r"""
import http.client, json, os, socket, sys
gid, uid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
s = socket.socket(socket.AF_UNIX)
s.connect(path)
try:  # a peer refused at connect may find the socket closed already; the answer is there
    s.sendall(b"GET /api/v2/runtimes HTTP/1.1\r\nHost: localhost\r\n\r\n")
except OSError:
    pass
r = http.client.HTTPResponse(s)
r.begin()
body = json.loads(r.read())
print(json.dumps([r.status, sorted(body) if isinstance(body, dict) else ["list"]]))
"""
EXECUTE_AS = r"""
import http.client, json, os, socket, sys
gid, uid, path, code = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
c = http.client.HTTPConnection("localhost", timeout=240)
c.sock = socket.socket(socket.AF_UNIX)
c.sock.settimeout(240)
c.sock.connect(path)
c.request("POST", "/api/v2/execute", headers={"Content-Type": "application/json"},
          body=json.dumps({"language": "bash", "version": "*", "files": [{"content": code}],
                           "run_timeout": 300000}))
r = c.getresponse()
print(json.dumps([r.status, json.loads(r.read()), r.getheader("Retry-After")]))
"""
NOBODY = 65534
OTHER = 54321  # a uid of no user: in access.group by its primary gid
USERS = grp.getgrnam("users").gr_gid

if __name__ == "__main__":
    unittest.main()
