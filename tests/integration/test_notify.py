"""opd under a service manager: socket activation with the real systemd-socket-activate, and the
notify protocol (READY=1 only once the pool minimum is warm, STATUS=, WATCHDOG=1, STOPPING=1)
received on a NOTIFY_SOCKET of the test's own."""
import os
import socket
import tempfile
import time
import unittest

from opdtest import Client, Opd, pool


class Notify(unittest.TestCase):
    def test_ready_status_watchdog(self):
        tmp = tempfile.mkdtemp(prefix="opd-notify-")
        cache = os.path.join(tmp, "cache")
        # a snapshot made beforehand, so that the pool can fill before READY=1
        mk = Opd({"cache_dir": cache, "pool.size": "0"})
        try:
            a = mk.call({"op": "snapshot", "action": "create", "lang": "bash"}, timeout=600)
            self.assertTrue(a["ok"], a)
        finally:
            mk.stop()

        path = os.path.join(tmp, "notify.sock")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(path)
        ns.settimeout(120)
        opd = Opd({"cache_dir": cache, "pool.sizes": "bash=2,python=0", "ready_min_warm": "2"},
                  env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}, wait_accel=False)
        try:
            msgs = []
            deadline = time.time() + 120
            while not any(m == "READY=1" for m in msgs) and time.time() < deadline:
                msgs += ns.recv(4096).decode().split("\n")
            self.assertIn("READY=1", msgs)
            # READY=1 came only once the pool held its minimum
            self.assertGreaterEqual(pool(opd, "bash")["ready"], 2)
            self.assertTrue(any(m.startswith("STATUS=") and "bash" in m for m in msgs), msgs)
            # pings keep coming (every 200 ms for a 400 ms WatchdogSec): a few, whenever they come
            watchdogs = 0
            deadline = time.time() + 120
            while watchdogs < 3 and time.time() < deadline:
                watchdogs += ns.recv(4096).decode().split("\n").count("WATCHDOG=1")
            self.assertGreaterEqual(watchdogs, 3)
        finally:
            opd.stop()
        left = []
        ns.settimeout(2)
        try:
            while True:
                left += ns.recv(4096).decode().split("\n")
        except socket.timeout:
            pass
        self.assertIn("STOPPING=1", left)
        ns.close()


class SocketActivation(unittest.TestCase):
    def test_takes_the_passed_socket(self):
        tmp = tempfile.mkdtemp(prefix="opd-activate-")
        passed = os.path.join(tmp, "activated.sock")
        opd = Opd({"pool.size": "0"}, argv=["systemd-socket-activate", "-l", passed],
                  wait_socket=False)
        try:
            deadline = time.time() + 30
            while not os.path.exists(passed) and time.time() < deadline:
                time.sleep(0.05)
            a = None
            while time.time() < deadline:
                try:
                    c = Client(passed, timeout=30)
                    a = c.call({"op": "ping", "id": 1})
                    c.close()
                    break
                except (ConnectionRefusedError, FileNotFoundError):
                    time.sleep(0.05)
            self.assertTrue(a and a["ok"], a)
            # opd used the passed socket and bound none of its own
            self.assertFalse(os.path.exists(opd.socket))
            self.assertIn("listening on the socket passed by systemd", opd.read_log())
        finally:
            opd.stop()


if __name__ == "__main__":
    unittest.main()
