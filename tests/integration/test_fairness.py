"""One user against another: per-uid caps on connections and queued requests, and VM slots
handed out round-robin by uid, with test clients run as unprivileged uids (subprocesses with
user=). Root and opd's own user are exempt."""
import json
import os
import subprocess
import unittest

from opdtest import Opd, wait_for

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

NOBODY = 65534
OTHER = 1  # daemon


def as_uid(uid, path, reqs):
    # /usr/bin/python3: a Python under /root is not readable by the uid
    return subprocess.Popen(["/usr/bin/python3", "-c", CLIENT, path, json.dumps(reqs)], user=uid,
                            group=uid, extra_groups=[], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


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
        # one VM slot; uid A runs one program and fills its queue (2), its next request is
        # refused; uid B's request, sent after, gets the next slot before A's queued ones
        opd = start({"pool.size": "0", "max_vms": "1", "max_queued_per_uid": "2",
                     "queue_timeout_ms": "600000"})
        a = b = None
        try:
            def run(i, code):
                return {"op": "exec", "id": i, "lang": "bash", "code": code, "timeout_ms": 60000}
            a = as_uid(NOBODY, opd.socket, [run("a1", "sleep 2; echo a1"), run("a2", "echo a2"),
                                            run("a3", "echo a3"), run("a4", "echo a4")])
            refused = json.loads(a.stdout.readline())  # a4: the uid's queue is full
            self.assertEqual((refused["id"], refused["error"]["code"]), ("a4", "busy"), refused)
            self.assertIn("max_queued_per_uid", refused["error"]["message"])
            wait_for(lambda: opd.call({"op": "status"})["counters"]["queued"] == 2, 300,
                     "a2 and a3 to wait")
            b = as_uid(OTHER, opd.socket, [run("b1", "echo b1")])
            ans = json.loads(b.stdout.readline())
            self.assertEqual((ans["id"], ans["ok"], ans["stdout"]), ("b1", True, "b1\n"), ans)
            log = opd.read_log()
            done = [line for line in log.splitlines() if "outcome=ok" in line]
            ids = [line.split("exec id=")[1].split()[0] for line in done]
            # b1 ran right after a1: no queued request of A went first
            self.assertEqual(ids[:2], ["a1", "b1"], ids)
        finally:
            for p in (a, b):
                if p:
                    p.kill()
                    p.wait()
            opd.stop()


if __name__ == "__main__":
    unittest.main()
