"""Faults on the host: a VMM killed or frozen mid-request, the serving snapshot damaged under a
running pool (recovered from the previous version kept in the cache), opd SIGKILLed (no VMM
survives; a restarted opd cleans up and serves), the cache disk full during a snapshot create.
Real opd, real QEMU clones."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import unittest

from opdtest import IMAGES, Opd, each_live, ended, fd_targets, pool, wait_for
from test_warm import create_snapshot, wait_serving


def qemu_argv(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


class Background:
    """A request sent on its own connection; its events and answer are collected by a thread.
    `output` is set once a streamed exec's first output event has arrived."""

    def __init__(self, opd, req):
        self.answer, self.events = None, []
        self.output = threading.Event()
        self.c = opd.client(timeout=300)
        self.c.send(req)
        self.thread = threading.Thread(target=self._recv)
        self.thread.start()

    def _recv(self):
        while True:
            m = self.c.recv()
            if m is None or "event" not in m:
                break
            self.events.append(m)
            if m["event"] in ("stdout", "stderr"):
                self.output.set()
        self.answer = m
        self.c.close()

    def wait(self, timeout=120):
        self.thread.join(timeout)
        return self.answer


def running_vm(opd, before):
    """The VMM that took a request: the pooled one (`before`: the pool's one clone, settled)
    still alive once in use."""
    wait_for(lambda: pool(opd, "bash")["in_use"] >= 1, 60,
             lambda: f"the request to take a clone: {pool(opd, 'bash')}")
    alive = [pid for pid in before if not ended(pid)]
    assert len(alive) == 1, (before, alive)
    return alive[0]


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # pool.max_size = 0: the bash pool stays at one clone whatever the demand, so the VMM a
        # request took is the one clone of `before` that a request holds (running_vm)
        cls.opd = Opd({"pool.sizes": "bash=1,python=0", "pool.max_size": "0",
                       "snapshot_check_ms": "300",
                       "agent_grace_ms": "2000", "snapshot_keep": "2",
                       "limit.timeout_ms_max": "600000"})
        cls.v1 = create_snapshot(cls.opd, "bash")
        cls.v2 = create_snapshot(cls.opd, "bash")
        wait_serving(cls.opd, "bash", cls.v2)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def served(self, what):
        a = self.opd.run("bash", f"echo {what}", id=what)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], f"{what}\n")
        return a

    def test_a_guest_has_no_network(self):
        wait_serving(self.opd, "bash", self.v2)

        def check(pid):
            argv = qemu_argv(pid)
            self.assertIn(b"-nodefaults", argv)  # no default NIC either
            for opt in (b"-net", b"-nic", b"-netdev"):
                self.assertNotIn(opt, argv)
            self.assertFalse([a for a in argv if b"net" in a and a.startswith(b"-")], argv)

        # the pool's clone, started in full (an exec'd QEMU), once the VMMs of the snapshots'
        # boots and of v1's drained clone have ended
        pids = self.opd.settled_vmms("bash", 1)
        self.assertEqual(each_live(pids, check), pids)
        a = self.opd.run("bash", "ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1")
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"].split(), ["lo", "lo"])

    def test_b_vmm_killed_mid_request(self):
        wait_serving(self.opd, "bash", self.v2)
        before = self.opd.settled_vmms("bash", 1)
        bg = Background(self.opd, {"op": "exec", "lang": "bash", "id": "k", "stream": True,
                                   "code": "echo started; sleep 600; echo finished",
                                   "timeout_ms": 60000})
        pid = running_vm(self.opd, before)
        # the program runs in this VM for certain (its output arrived), long before its end
        self.assertTrue(bg.output.wait(120), "the program did not start")
        os.kill(pid, signal.SIGKILL)
        a = bg.wait()
        # answered when the VMM died, not at the program's end nor at a deadline
        self.assertIsNotNone(a, "no answer within 120 s of the kill")
        self.assertFalse(a["ok"], a)
        self.assertEqual(a["id"], "k")
        self.assertEqual(a["error"]["code"], "vm_failed")
        self.served("after-kill")
        self.assertTrue(wait_serving(self.opd, "bash", self.v2))

    def test_c_frozen_vmm_hits_the_host_deadline(self):
        wait_serving(self.opd, "bash", self.v2)
        before = self.opd.settled_vmms("bash", 1)
        bg = Background(self.opd, {"op": "exec", "lang": "bash", "id": "s", "stream": True,
                                   "code": "echo started; sleep 600", "timeout_ms": 15000})
        pid = running_vm(self.opd, before)
        # running the program (its output arrived), which the agent would stop at 15 s
        self.assertTrue(bg.output.wait(120), "the program did not start")
        os.kill(pid, signal.SIGSTOP)  # the guest stops answering entirely
        a = bg.wait()
        # the host deadline (timeout_ms + agent_grace_ms) answers for the frozen guest
        self.assertIsNotNone(a, "no answer within 120 s")
        self.assertFalse(a["ok"], a)
        self.assertEqual(a["error"]["code"], "timeout")
        wait_for(lambda: ended(pid), 10, "the frozen VMM to be destroyed")
        self.served("after-freeze")

    def test_d_a_closed_connection_cancels_its_request(self):
        # the client goes away while its program runs: nobody can read the answer, so opd
        # cancels the request and destroys its VM at once instead of running it to its end
        wait_serving(self.opd, "bash", self.v2)
        before = self.opd.settled_vmms("bash", 1)
        c = self.opd.client(timeout=120)
        c.send({"op": "exec", "lang": "bash", "id": "g", "stream": True,
                "code": "echo started; sleep 600", "timeout_ms": 600000})
        pid = running_vm(self.opd, before)
        self.assertEqual(c.recv().get("event"), "stdout")  # the program runs
        c.close()
        wait_for(lambda: ended(pid), 60, "the request's VMM to be destroyed")
        self.served("after-close")

    def test_e_a_half_closed_connection_still_gets_its_answer(self):
        # shutdown(SHUT_WR) says "no more requests", not "gone": what was sent is answered
        wait_serving(self.opd, "bash", self.v2)
        c = self.opd.client(timeout=120)
        try:
            c.send({"op": "exec", "lang": "bash", "id": "h", "code": "sleep 1; echo answered"})
            c.sock.shutdown(socket.SHUT_WR)
            a = c.recv()
            self.assertTrue(a["ok"], a)
            self.assertEqual((a["id"], a["stdout"]), ("h", "answered\n"))
            self.assertIsNone(c.recv())  # then opd closes
        finally:
            c.close()

    def test_z_damaged_snapshot_recovered_from_the_kept_version(self):
        opd, v1, v2 = self.opd, self.v1, self.v2
        cache = os.path.join(opd.dir, "cache", "bash")
        wait_serving(opd, "bash", v2)
        # overwritten in place, same size: only a failing restore and the checksums tell
        path = os.path.join(cache, v2, "vmstate")
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(os.urandom(min(65536, size // 4)))
        # the paused clone was restored before: it serves; its replacement cannot be restored
        self.served("on-v2")
        p = wait_for(lambda: (lambda p: p if p["snapshot"] == v1 and p["ready"] >= 1 else None)(
            pool(opd, "bash")), 180, lambda: f"a clone of {v1}: {pool(opd, 'bash')}")
        self.assertEqual(p["damaged"], 1)
        self.assertIn(f"snapshot {v2} damaged", p["last_damage"])
        self.assertIn("checksum mismatch", p["last_damage"])
        self.assertEqual(os.readlink(os.path.join(cache, "current")), v1)
        self.assertTrue(os.path.isdir(os.path.join(cache, f".damaged-{v2}")))
        self.assertFalse(os.path.exists(os.path.join(cache, v2)))
        a = self.served("on-v1")
        self.assertEqual(a["snapshot"], v1)
        m = opd.call({"op": "metrics", "id": "m"})["text"]
        self.assertTrue('opd_pool_snapshot_damaged_total{lang="bash"} 1' in m)
        log = opd.read_log()
        self.assertIn(f"snapshot {v2} damaged", log)
        self.assertIn(f"falling back to {v1}", log)

        # v1's memory file deleted: seen at the next snapshot check; nothing good is left, so
        # the pool stays empty and requests boot cold; a new snapshot serves again
        os.unlink(os.path.join(cache, v1, "mem"))
        p = wait_for(lambda: (lambda p: p if p["damaged"] == 2 else None)(pool(opd, "bash")), 30,
                     lambda: f"v1 found damaged: {pool(opd, 'bash')}")
        self.assertIsNone(p["snapshot"])
        self.assertIn(f"snapshot {v1} damaged", p["last_damage"])
        self.assertIn("No such file", p["last_damage"])
        self.assertIn("no other good version", p["error"])
        a = self.served("cold-meanwhile")
        self.assertEqual(a["mode"], "cold")
        v3 = create_snapshot(opd, "bash")
        wait_serving(opd, "bash", v3)
        self.assertEqual(self.served("on-v3")["snapshot"], v3)


class Restart(unittest.TestCase):
    def test_sigkill_leaves_no_vmm_and_a_restart_cleans_up(self):
        opd = Opd({"pool.sizes": "bash=1,python=0"})
        conf = {"socket": opd.socket, "run_dir": opd.run_dir,
                "cache_dir": os.path.join(opd.dir, "cache"), "pool.sizes": "bash=1,python=0"}
        try:
            v1 = create_snapshot(opd, "bash")
            wait_serving(opd, "bash", v1)
            cache = os.path.join(opd.dir, "cache", "bash")
            # killed with a request running and a snapshot being made
            bg = Background(opd, {"op": "exec", "lang": "bash", "id": 1, "code": "sleep 60"})
            c = opd.client()
            c.send({"op": "snapshot", "action": "create", "lang": "bash", "id": "s"})
            staging = os.path.join(os.path.realpath(cache), ".tmp-")

            def snapshot_vmms():
                """opd's VMMs that hold a file of the snapshot's staging directory (its memory):
                the snapshot's VM, once its VMM has started."""
                found = []

                def check(pid):
                    if any(t.startswith(staging) for t in fd_targets(pid).values()):
                        found.append(pid)
                each_live(opd.vmm_pids(), check)
                return found

            wait_for(snapshot_vmms, 60, "the snapshot's VMM to start")
            wait_for(lambda: pool(opd, "bash")["in_use"] >= 1, 60, "the request to take a clone")
            # the request's VMM and the snapshot's, at least (the pool may be refilling too)
            vmms = opd.vmm_pids()
            self.assertGreaterEqual(len(vmms), 2)
            opd.proc.kill()
            opd.proc.wait()
            self.assertIsNone(bg.wait(30))  # the connection just closed
            c.close()
            wait_for(lambda: all(ended(p) for p in vmms), 10,
                     lambda: f"every VMM to go: {[p for p in vmms if not ended(p)]}")
            self.assertTrue(os.path.exists(opd.socket))  # left behind
            self.assertTrue([e for e in os.listdir(opd.run_dir) if e.startswith("vm-")])
        finally:
            opd.stop()

        again = Opd(conf)
        try:
            self.assertEqual([e for e in os.listdir(cache) if e.startswith(".tmp-")], [])
            log = again.read_log()
            self.assertIn("removed 1 staging entries", log)
            self.assertIn("VM directories left in", log)
            wait_serving(again, "bash", v1)
            a = again.run("bash", "echo back")
            self.assertTrue(a["ok"], a)
            self.assertEqual(a["stdout"], "back\n")
            self.assertEqual(a["snapshot"], v1)
        finally:
            again.stop()
            shutil.rmtree(opd.dir, ignore_errors=True)


class DiskFull(unittest.TestCase):
    def test_cache_full_during_snapshot_create(self):
        mnt = tempfile.mkdtemp(prefix="opd-test-abuse-cache-")
        # room for two versions (the second is made after the filler is gone), each at most the
        # image's files (copied: another file system) and the guest's memory, with slack
        files = sum(os.path.getsize(os.path.join(IMAGES, f))
                    for f in ("bash/rootfs.ext4", "vmlinux", "initrd.img"))
        size_mib = 2 * ((files >> 20) + 512) + 256
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", mnt])
        if r.returncode != 0:
            self.fail("cannot mount a tmpfs (this test runs as root)")
        opd = None
        try:
            opd = Opd({"pool.sizes": "bash=1,python=0", "cache_dir": mnt})
            v1 = create_snapshot(opd, "bash")
            wait_serving(opd, "bash", v1)
            st = os.statvfs(mnt)
            free = st.f_bavail * st.f_frsize
            # leave 8 MiB: less than a snapshot's memory
            with open(os.path.join(mnt, "filler"), "wb") as f:
                f.truncate(0)
                left = free - (8 << 20)
                chunk = b"\0" * (1 << 20)
                while left > 0:
                    f.write(chunk[:min(len(chunk), left)])
                    left -= len(chunk)
            a = opd.call({"op": "snapshot", "action": "create", "lang": "bash", "id": "full"},
                         timeout=600)
            self.assertFalse(a["ok"], a)
            self.assertEqual(a["id"], "full")
            self.assertIn("not enough space in " + mnt, a["error"]["message"])
            self.assertIn("MiB free", a["error"]["message"])
            # the serving version is untouched and keeps serving
            cache = os.path.join(mnt, "bash")
            self.assertEqual(os.readlink(os.path.join(cache, "current")), v1)
            self.assertEqual(sorted(os.listdir(cache)), sorted(["current", v1]))
            self.assertEqual(pool(opd, "bash")["snapshot"], v1)
            b = opd.run("bash", "echo still")
            self.assertTrue(b["ok"], b)
            self.assertEqual(b["snapshot"], v1)
            # room again: creating works
            os.unlink(os.path.join(mnt, "filler"))
            v2 = create_snapshot(opd, "bash")
            wait_serving(opd, "bash", v2)
        finally:
            if opd:
                opd.stop()
            subprocess.run(["umount", "-l", mnt])
            os.rmdir(mnt)


if __name__ == "__main__":
    unittest.main()
