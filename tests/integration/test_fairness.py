"""One user against another: per-uid caps on connections, queued requests and VMs, VM slots
and paused clones handed out round-robin by uid, with test clients run as unprivileged uids
(subprocesses with user=). Root and opd's own user are exempt."""
import json
import os
import subprocess
import unittest

from opdtest import Opd, pool, wait_for
from test_warm import create_snapshot, wait_serving

# A client as another uid: sends the requests of argv[2] (pipelined) on one connection, prints
# each answer as one JSON line as it arrives, then waits for stdin to close.
CLIENT = r"""
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
reqs = json.loads(sys.argv[2])
try:
    for req in reqs:
        b = json.dumps(req).encode()
        s.sendall(struct.pack(">I", len(b)) + b)
except BrokenPipeError:
    pass  # refused and closed: the refusal is still to read
for _ in reqs:
    head = s.recv(4, socket.MSG_WAITALL)
    if len(head) < 4:
        break
    n = struct.unpack(">I", head)[0]
    print(json.dumps(json.loads(s.recv(n, socket.MSG_WAITALL))), flush=True)
sys.stdin.read()
"""

# A client as another uid that sends what the test tells it: each line of its stdin is one
# request (JSON) sent as it comes, each answer is printed as one JSON line as it arrives.
INTERACTIVE = r"""
import json, socket, struct, sys, threading
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
def answers():
    while True:
        head = s.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return
        n = struct.unpack(">I", head)[0]
        print(json.dumps(json.loads(s.recv(n, socket.MSG_WAITALL))), flush=True)
threading.Thread(target=answers, daemon=True).start()
for line in sys.stdin:
    b = line.strip().encode()
    s.sendall(struct.pack(">I", len(b)) + b)
"""

NOBODY = 65534
OTHER = 1  # daemon


def as_uid(uid, path, reqs):
    # /usr/bin/python3: a Python under /root is not readable by the uid
    return subprocess.Popen(["/usr/bin/python3", "-c", CLIENT, path, json.dumps(reqs)], user=uid,
                            group=uid, extra_groups=[], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


class User:
    """An interactive client as uid: send() a request, answer() the next answer."""

    def __init__(self, uid, path):
        self.proc = subprocess.Popen(["/usr/bin/python3", "-c", INTERACTIVE, path], user=uid,
                                     group=uid, extra_groups=[], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def send(self, req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()

    def answer(self):
        line = self.proc.stdout.readline()
        assert line, "the client's connection ended without an answer"
        return json.loads(line)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def run(i, code, **kw):
    return {"op": "exec", "id": i, "lang": "bash", "code": code, "timeout_ms": 60000, **kw}


def held(i):
    """A request that keeps its VM until the test sends it a line of stdin (release(i))."""
    return run(i, f"read x; echo {i} $x", stdin_stream=True, timeout_ms=600000)


def release(i):
    return {"op": "stdin", "id": i, "data": "go\n", "eof": True}


def served_order(opd):
    """The exec ids in the order opd logged their answers (ok ones)."""
    done = [line for line in opd.read_log().splitlines() if "outcome=ok" in line]
    return [line.split("exec id=")[1].split()[0] for line in done]


def start(conf):
    opd = Opd({"socket_mode": "0666", "idle_timeout_ms": "0", **conf})
    os.chmod(opd.dir, 0o755)
    return opd


class Fairness(unittest.TestCase):
    def test_connections_per_uid(self):
        opd = start({"pool.size": "0", "max_clients_per_uid": "4"})
        procs = []
        try:
            ping = [{"op": "ping", "id": 1}]
            for _ in range(4):
                p = as_uid(NOBODY, opd.socket, ping)
                procs.append(p)
                self.assertTrue(json.loads(p.stdout.readline())["ok"])
            # the fifth connection of the same uid: busy, closed
            p = as_uid(NOBODY, opd.socket, ping)
            procs.append(p)
            a = json.loads(p.stdout.readline())
            self.assertEqual(a["error"]["code"], "busy", a)
            self.assertIn("max_clients_per_uid 4", a["error"]["message"])
            # another uid, and root, are served meanwhile
            p = as_uid(OTHER, opd.socket, ping)
            procs.append(p)
            self.assertTrue(json.loads(p.stdout.readline())["ok"])
            for i in range(6):
                self.assertTrue(opd.call({"op": "ping", "id": i})["ok"])
            # once one of the four goes, the uid may connect again
            procs[0].stdin.close()
            procs[0].wait(30)
            wait_for(lambda: (lambda q: (q, json.loads(q.stdout.readline())["ok"]))(
                as_uid(NOBODY, opd.socket, ping))[1], 300, "room for the uid")
        finally:
            for p in procs:
                p.kill()
                p.wait()
            opd.stop()

    def test_one_uid_holding_its_queue_does_not_starve_another(self):
        # one VM slot; uid A holds it with a1 and fills its queue (2), its next request is
        # refused; uid B's request, sent after, gets the next slot before A's queued ones
        opd = start({"pool.size": "0", "max_vms": "1", "max_queued_per_uid": "2",
                     "queue_timeout_ms": "600000", "limit.timeout_ms_max": "600000"})
        a = b = None
        try:
            a = User(NOBODY, opd.socket)
            a.send(held("a1"))
            for i in ("a2", "a3", "a4"):
                a.send(run(i, f"echo {i}"))
            refused = a.answer()  # a4: the uid's queue is full
            self.assertEqual((refused["id"], refused["error"]["code"]), ("a4", "busy"), refused)
            self.assertIn("max_queued_per_uid", refused["error"]["message"])
            self.assertGreater(refused["error"]["retry_after_ms"], 0)
            wait_for(lambda: opd.call({"op": "status"})["counters"]["queued"] == 2, 300,
                     "a2 and a3 to wait")
            b = User(OTHER, opd.socket)
            b.send(run("b1", "echo b1"))
            wait_for(lambda: opd.call({"op": "status"})["counters"]["queued"] == 3, 300,
                     "b1 to wait")
            a.send(release("a1"))
            ans = b.answer()
            self.assertEqual((ans["id"], ans["ok"], ans["stdout"]), ("b1", True, "b1\n"), ans)
            # b1 ran right after a1: no queued request of A went first
            self.assertEqual(served_order(opd)[:2], ["a1", "b1"])
        finally:
            for u in (a, b):
                if u:
                    u.stop()
            opd.stop()

class WarmFairness(unittest.TestCase):
    """Requests of several uids waiting for the bash pool's one clone (pool.max_size = 0 unless
    a test says otherwise)."""

    @classmethod
    def setUpClass(cls):
        # one snapshot, made once; every test's opd serves it from the same cache
        opd = Opd({"pool.size": "0", "pool.sizes": "bash=1"})
        try:
            cls.version = create_snapshot(opd, "bash")
        finally:
            opd.stop()
        cls.cache = os.path.join(opd.dir, "cache")

    def start(self, conf):
        opd = start({"cache_dir": self.cache, "pool.size": "0", "pool.sizes": "bash=1",
                     "pool.max_size": "0", "queue_timeout_ms": "600000",
                     "limit.timeout_ms_max": "600000", **conf})
        wait_serving(opd, "bash", self.version)
        return opd

    def test_one_request_of_another_uid_is_served_before_a_backlog(self):
        # one VM slot: the clone a0 holds is the only VM until a0 ends, so every request below
        # waits for the one clone restored after it, then the next, one at a time
        opd = self.start({"max_vms": "1"})
        a = b = None
        try:
            a = User(NOBODY, opd.socket)
            a.send(held("a0"))
            wait_for(lambda: pool(opd, "bash")["in_use"] == 1, 300, "a0 to take the clone")
            for i in ("a1", "a2", "a3"):
                a.send(run(i, f"echo {i}"))
            wait_for(lambda: pool(opd, "bash")["waiting"] == 3, 300, "a1..a3 to wait")
            b = User(OTHER, opd.socket)
            b.send(run("b1", "echo b1"))
            wait_for(lambda: pool(opd, "bash")["waiting"] == 4, 300, "b1 to wait")
            a.send(release("a0"))
            answers = {}
            for _ in range(4):
                ans = a.answer()
                answers[ans["id"]] = ans
            ans = b.answer()
            answers[ans["id"]] = ans
            for i in ("a0", "a1", "a2", "a3", "b1"):
                self.assertTrue(answers[i]["ok"], answers[i])
                self.assertEqual(answers[i]["mode"], "warm", answers[i])
            self.assertEqual(answers["a0"]["stdout"], "a0 go\n")
            self.assertEqual(answers["b1"]["stdout"], "b1\n")
            # B's one request went right after A's turn, not after A's three
            self.assertEqual(served_order(opd), ["a0", "b1", "a1", "a2", "a3"])
        finally:
            for u in (a, b):
                if u:
                    u.stop()
            opd.stop()

    def test_uid_at_its_vm_cap_waits_while_another_is_served(self):
        # two VM slots: a0 holds one, the pool restores its clone into the other; A may use
        # one VM at a time, so a1 waits with that clone ready, and B takes it
        opd = self.start({"max_vms": "2", "max_vms_per_uid": "1"})
        a = b = None
        try:
            a = User(NOBODY, opd.socket)
            a.send(held("a0"))
            wait_for(lambda: pool(opd, "bash")["in_use"] == 1, 300, "a0 to take the clone")
            a.send(run("a1", "echo a1"))
            wait_for(lambda: (lambda p: p["waiting"] == 1 and p["ready"] == 1)(pool(opd, "bash")),
                     300, "a1 to wait with a clone ready")
            b = User(OTHER, opd.socket)
            b.send(run("b1", "echo b1"))
            ans = b.answer()
            self.assertEqual((ans["id"], ans["ok"], ans["mode"], ans["stdout"]),
                             ("b1", True, "warm", "b1\n"), ans)
            # a1 still waits: a0 holds A's one VM
            self.assertEqual(pool(opd, "bash")["waiting"], 1)
            self.assertEqual(served_order(opd), ["b1"])
            a.send(release("a0"))
            got = [a.answer(), a.answer()]
            self.assertEqual([(x["id"], x["ok"], x["mode"]) for x in got],
                             [("a0", True, "warm"), ("a1", True, "warm")], got)
            self.assertEqual(got[1]["stdout"], "a1\n")
            self.assertEqual(served_order(opd), ["b1", "a0", "a1"])
        finally:
            for u in (a, b):
                if u:
                    u.stop()
            opd.stop()

    def test_held_requests_do_not_grow_the_pool(self):
        # a pool that may grow to 4 under demand; A may use one VM at a time: while a0 holds
        # it, a1..a3 wait held by the cap, and the pool neither raises its target nor starts a
        # restore for them (a clone made for them would only go to another uid)
        opd = self.start({"max_vms": "6", "max_vms_per_uid": "1", "pool.max_size": "4"})
        a = None
        try:
            a = User(NOBODY, opd.socket)
            a.send(held("a0"))
            wait_for(lambda: (lambda p: p["in_use"] == 1 and p["restoring"] == 0 and
                              p["ready"] == p["target"])(pool(opd, "bash")),
                     300, "a0 to take the clone and the pool to settle")
            before = pool(opd, "bash")
            for i in ("a1", "a2", "a3"):
                a.send(run(i, f"echo {i}"))
            wait_for(lambda: pool(opd, "bash")["waiting"] == 3, 300, "a1..a3 to wait")
            after = pool(opd, "bash")
            self.assertEqual(after["held"], 3, after)
            self.assertLessEqual(after["target"], before["target"], (before, after))
            self.assertEqual(after["restores"], before["restores"], (before, after))
            self.assertEqual(after["restoring"], 0, after)
            # once a0 ends, they are served one at a time, each in its turn
            a.send(release("a0"))
            got = [a.answer() for _ in range(4)]
            self.assertEqual(sorted((x["id"], x["ok"]) for x in got),
                             [("a0", True), ("a1", True), ("a2", True), ("a3", True)], got)
            self.assertEqual(pool(opd, "bash")["held"], 0)
        finally:
            if a:
                a.stop()
            opd.stop()

    def test_busy_at_max_inflight_says_when_to_retry(self):
        opd = self.start({"max_vms": "2", "max_inflight": "1"})
        c = opd.client()
        try:
            c.send(held("h"))
            c.send(run("over", "echo over"))
            ans = c.recv()  # h holds the connection's one request in flight until released
            self.assertEqual((ans["id"], ans["error"]["code"]), ("over", "busy"), ans)
            self.assertIn("in flight on this connection", ans["error"]["message"])
            self.assertIsInstance(ans["error"]["retry_after_ms"], int)
            self.assertGreater(ans["error"]["retry_after_ms"], 0)
            c.send(release("h"))
            ans = c.recv()
            self.assertEqual((ans["id"], ans["ok"], ans["stdout"]), ("h", True, "h go\n"), ans)
        finally:
            c.close()
            opd.stop()


if __name__ == "__main__":
    unittest.main()
