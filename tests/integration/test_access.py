"""Access control on the socket from peer credentials: members of access.group use the service,
root and members of access.admin_group manage it; a peer in neither is refused at connect;
refusals are structured errors."""
import grp
import json
import os
import subprocess
import sys
import unittest

from opdtest import Opd

CLIENT = r"""
import json, os, socket, struct, sys
gid, uid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.setgroups([int(g) for g in sys.argv[5].split(",") if g] if len(sys.argv) > 5 else [])
os.setgid(gid)
os.setuid(uid)
s = socket.socket(socket.AF_UNIX)
s.connect(path)
out = []
for req in json.loads(sys.argv[4]):
    b = json.dumps(req).encode()
    s.sendall(struct.pack(">I", len(b)) + b)
    n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
    out.append(json.loads(s.recv(n, socket.MSG_WAITALL)))
print(json.dumps(out))
"""

# As CLIENT, for a peer refused at connect: its request may meet a closed socket; what it reads is
# opd's one answer, then the end of the connection.
REFUSED = r"""
import json, os, socket, struct, sys
gid, uid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
s = socket.socket(socket.AF_UNIX)
s.connect(path)
b = json.dumps({"op": "ping", "id": 1}).encode()
try:
    s.sendall(struct.pack(">I", len(b)) + b)
except OSError:
    pass
n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
answer = json.loads(s.recv(n, socket.MSG_WAITALL))
try:
    eof = s.recv(1) == b""
except ConnectionResetError:
    eof = True
print(json.dumps([answer, eof]))
"""

NOBODY = 65534
USERS = grp.getgrnam("users").gr_gid
ADM = grp.getgrnam("adm").gr_gid


class Access(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opd = Opd({"socket_mode": "0666", "access.group": "users", "access.admin_group": "adm",
                       "pool.size": "0"})
        os.chmod(cls.opd.dir, 0o755)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def ask(self, gid, uid, reqs, groups=()):
        p = subprocess.run([sys.executable, "-c", CLIENT, str(gid), str(uid), self.opd.socket,
                            json.dumps(reqs), ",".join(map(str, groups))],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def test_outsider_is_refused_at_connect(self):
        # nothing it could ask is allowed: one permission_denied (no request's id), then the
        # close; it holds no connection, and each refusal is counted
        before = self.refused()
        for _ in range(3):
            p = subprocess.run([sys.executable, "-c", REFUSED, str(NOBODY), str(NOBODY),
                                self.opd.socket], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            a, eof = json.loads(p.stdout)
            self.assertFalse(a["ok"])
            self.assertIsNone(a["id"])
            self.assertEqual(a["error"]["code"], "permission_denied")
            self.assertIn("access.group", a["error"]["message"])
            self.assertTrue(eof)
        self.assertEqual(self.refused() - before, 3)

    def refused(self):
        text = self.opd.call({"op": "metrics"})["text"]
        return int(text.split("\nopd_connections_refused_total ")[1].split("\n")[0])

    def test_member_uses_but_does_not_manage(self):
        ping, status, snap = self.ask(USERS, NOBODY, [
            {"op": "ping", "id": 1}, {"op": "status", "id": 2},
            {"op": "snapshot", "action": "list", "id": 3}])
        self.assertTrue(ping["ok"], ping)
        self.assertTrue(status["ok"], status)
        self.assertFalse(snap["ok"])
        self.assertEqual(snap["error"]["code"], "permission_denied")
        self.assertIn("admin", snap["error"]["message"])

    def test_supplementary_groups_count_as_the_kernel_recorded_them(self):
        # the groups are those the peer had when it connected (SO_PEERGROUPS), not a pid's
        [a] = self.ask(NOBODY, NOBODY, [{"op": "ping", "id": 1}], groups=[USERS])
        self.assertTrue(a["ok"], a)
        [a] = self.ask(NOBODY, NOBODY, [{"op": "snapshot", "id": 2, "action": "list"}],
                       groups=[USERS, ADM])
        self.assertTrue(a["ok"], a)

    def test_admin_group_manages(self):
        snap, = self.ask(ADM, NOBODY, [{"op": "snapshot", "action": "list", "id": 3}])
        self.assertTrue(snap["ok"], snap)

    def test_root_manages(self):
        a = self.opd.call({"op": "snapshot", "action": "list"})
        self.assertTrue(a["ok"], a)


if __name__ == "__main__":
    unittest.main()
