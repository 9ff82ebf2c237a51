"""The cache's file system full while opd writes to it: a session fork, a session pause and a
snapshot create that run out of space mid-way, and a fork and a pause refused up front. Each
answer names the file system that is full; nothing partial is left; a session whose save failed
runs on; the serving snapshot keeps serving. The cache is a small tmpfs filled with fallocate()
while the VMM doing the writing is stopped (SIGSTOP), so the space runs out at the same point
every run."""
import glob
import os
import signal
import subprocess
import tempfile
import threading
import unittest

from opdtest import Opd, pool, wait_for
from test_warm import create_snapshot, wait_serving

MEMORY_MB = 256
# one snapshot (the image files copied from another file system, about 290 MiB, and its memory
# file, MEMORY_MB once a fork has read every page), with room left for a fork's save and for a
# second snapshot's space check (MEMORY_MB + the image files)
TMPFS_MB = 1200


class Background:
    """One request on its own connection, answered in a thread."""

    def __init__(self, opd, req):
        self.answer = None
        self.c = opd.client(timeout=300)
        self.c.send(req)
        self.thread = threading.Thread(target=self._recv)
        self.thread.start()

    def _recv(self):
        self.answer = self.c.recv()
        self.c.close()

    def wait(self, timeout=300):
        self.thread.join(timeout)
        return self.answer


def vmm_with_fd_on(opd, path_glob):
    """The VMM of opd that has a file matching path_glob open (opd holds it too), or None."""
    paths = set(glob.glob(path_glob))
    for p in opd.vmm_pids() if paths else []:
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                if os.readlink(f"/proc/{p}/fd/{fd}") in paths:
                    return p
        except OSError:
            continue
    return None


class DiskFull(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mnt = tempfile.mkdtemp(prefix="opd-test-full-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", cls.mnt])
        if r.returncode != 0:
            raise AssertionError("cannot mount a tmpfs (this test runs as root)")
        cls.filler = os.path.join(cls.mnt, "filler")
        cls.opd = Opd({"pool.sizes": "bash=1,python=0", "pool.max_size": "1",
                       "cache_dir": cls.mnt, "vm.memory_mb": str(MEMORY_MB),
                       "session.max": "4", "max_vms": "4", "restore_timeout_ms": "120000"})
        cls.v1 = create_snapshot(cls.opd, "bash")
        wait_serving(cls.opd, "bash", cls.v1)
        a = cls.opd.call({"op": "session_open", "lang": "bash", "id": "o"}, timeout=600)
        assert a["ok"], a
        cls.sid, cls.vm = a["session"], a["vm"]
        a = cls.opd.call({"op": "session_exec", "session": cls.sid, "id": "x",
                          "code": "echo kept > f"}, timeout=600)
        assert a["ok"], a
        # A fork with room: it reads the pages of the session's RAM, and on a tmpfs that fills
        # the holes of the snapshot's memory file. A run has found a few pages still holes
        # after it (which ones a save leaves unread is not known): what is left is allocated
        # here, a hole and the page that takes its place both reading as zeros. From here on
        # only the saves' own files take space: what runs out below is what opd writes.
        a = cls.opd.call({"op": "session_fork", "session": cls.sid, "id": "f"}, timeout=600)
        assert a["ok"], a
        for kid in a["forks"]:
            cls.opd.call({"op": "session_close", "session": kid, "id": "c"})
        mem_path = os.path.join(cls.mnt, "bash", cls.v1, "mem")
        fd = os.open(mem_path, os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        mem = os.stat(mem_path)
        assert mem.st_blocks * 512 >= mem.st_size, (mem.st_blocks, mem.st_size)
        wait_for(lambda: not os.listdir(os.path.join(cls.mnt, "forks")), 60,
                 "the fork's image to go with its child")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.opd.stop()
        finally:
            subprocess.run(["umount", "-l", cls.mnt])
            os.rmdir(cls.mnt)

    def fill(self, leave):
        """Take all but `leave` bytes of the tmpfs. Space freed between the look and the
        allocation (a file removed earlier lets go of its pages only once the last VMM that has
        it open exits) is taken again, until a look after an allocation sees `leave` or less."""
        with open(self.filler, "ab") as f:
            for _ in range(100):
                st = os.statvfs(self.mnt)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                os.posix_fallocate(f.fileno(), os.fstat(f.fileno()).st_size, free - leave)
        st = os.statvfs(self.mnt)
        self.assertLessEqual(st.f_bavail * st.f_frsize, leave)

    def tearDown(self):
        if os.path.exists(self.filler):
            os.unlink(self.filler)

    def session(self):
        listed = self.opd.call({"op": "session_list", "id": "l"})["sessions"]
        return next((s for s in listed if s["session"] == self.sid), None)

    def assert_runs_on(self):
        """The session is idle, has its files and runs code (with room again)."""
        self.assertEqual(self.session()["state"], "idle")
        os.unlink(self.filler)
        a = self.opd.call({"op": "session_exec", "session": self.sid, "id": "x",
                           "code": "cat f"}, timeout=600)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], "kept\n")

    def nothing_left(self):
        self.assertEqual(os.listdir(os.path.join(self.mnt, "forks")), [])
        paused = os.path.join(self.mnt, ".paused", "0")
        self.assertEqual(os.listdir(paused) if os.path.isdir(paused) else [], [])

    def stopped_vmm(self):
        """The session's VMM (named for its VM on its command line), stopped."""
        pid = self.opd.vmm_pid(self.vm)
        self.assertIsNotNone(pid, self.vm)
        os.kill(pid, signal.SIGSTOP)
        return pid

    def test_a_fork_and_pause_refused_without_room(self):
        self.fill(8 << 20)
        for op, what in (("session_fork", "not forked"), ("session_pause", "not paused")):
            a = self.opd.call({"op": op, "session": self.sid, "id": op}, timeout=600)
            self.assertFalse(a["ok"], a)
            self.assertEqual(a["error"]["code"], "internal_error", a)
            msg = a["error"]["message"]
            self.assertIn(f"session {self.sid} {what}: not enough space in {self.mnt}: ", msg)
            self.assertIn(f"saving the VM may need {MEMORY_MB} MiB", msg)
            self.assertTrue(msg.endswith("; it runs on"), msg)
        self.nothing_left()
        self.assert_runs_on()

    def run_out_while_saving(self, op, files):
        """op on the session, with the space gone once its save has made its files (files, a
        glob) and before its VMM (stopped until then) streamed anything."""
        pid = self.stopped_vmm()
        try:
            bg = Background(self.opd, {"op": op, "session": self.sid, "id": op})
            wait_for(lambda: glob.glob(files), 60, f"the save's files {files}")
            self.fill(0)
        finally:
            os.kill(pid, signal.SIGCONT)
        a = bg.wait()
        self.assertIsNotNone(a, "no answer")
        self.assertFalse(a["ok"], a)
        self.assertEqual(a["error"]["code"], "internal_error", a)
        msg = a["error"]["message"]
        self.assertIn(f"no space left on {self.mnt} (ENOSPC, 0.0 MiB free of {TMPFS_MB} MiB)",
                      msg)
        self.assertIn("writing " + os.path.dirname(files.replace("*", "")), msg)
        self.assertTrue(msg.endswith("; it runs on"), msg)
        return msg

    def test_b_fork_runs_out_while_saving(self):
        msg = self.run_out_while_saving("session_fork",
                                        os.path.join(self.mnt, "forks", "*", "vmstate"))
        self.assertIn(f"session {self.sid} not forked: ", msg)
        self.nothing_left()
        self.assert_runs_on()

    def test_c_pause_runs_out_while_saving(self):
        msg = self.run_out_while_saving(
            "session_pause", os.path.join(self.mnt, ".paused", "0", f".tmp-{self.sid}",
                                          "vmstate"))
        self.assertIn(f"session {self.sid} not paused: ", msg)
        self.nothing_left()
        self.assert_runs_on()

    def test_d_snapshot_create_runs_out(self):
        # the VMM that boots for the snapshot maps its memory file shared: the guest's RAM is
        # written into the cache as the guest touches it
        bg = Background(self.opd, {"op": "snapshot", "action": "create", "lang": "bash",
                                   "id": "full"})
        pid = wait_for(
            lambda: vmm_with_fd_on(self.opd, os.path.join(self.mnt, "bash", ".tmp-*", "mem")),
            60, "the snapshot's VMM", step=0.01)
        os.kill(pid, signal.SIGSTOP)
        try:
            self.fill(0)
        finally:
            os.kill(pid, signal.SIGCONT)
        a = bg.wait(600)
        self.assertIsNotNone(a, "no answer")
        self.assertFalse(a["ok"], a)
        self.assertEqual(a["error"]["code"], "internal_error", a)
        msg = a["error"]["message"]
        self.assertIn("the VMM was killed by SIGBUS: a page of guest RAM could not be written "
                      f"to its file {self.mnt}/bash/.tmp-", msg)
        self.assertIn(f"no space left on {self.mnt} (ENOSPC", msg)
        # nothing staged is left, "current" and the pool still serve the version it had
        cache = os.path.join(self.mnt, "bash")
        self.assertEqual(sorted(os.listdir(cache)), sorted(["current", self.v1]))
        self.assertEqual(os.readlink(os.path.join(cache, "current")), self.v1)
        os.unlink(self.filler)
        self.assertEqual(pool(self.opd, "bash")["snapshot"], self.v1)
        b = self.opd.run("bash", "echo still")
        self.assertTrue(b["ok"], b)
        self.assertEqual(b["snapshot"], self.v1)


if __name__ == "__main__":
    unittest.main()
