"""Every VMM in a jail of its own (docs/security.md): checked from /proc for each live VMM of a
test opd started as root (no writable file system, its output a pipe to opd), then, as one VM's
uid (a child that setresuid()s to it), the things an escaped VMM would try: write the snapshot's
memory file, connect to opd's socket, signal opd, read or write the VMs' directories. Each must
be refused."""
import errno
import os
import socket
import struct
import subprocess
import tempfile
import time
import unittest

from opdtest import BUILD, Opd, each_live, ended, fd_targets, vmm_names, wait_for
from test_warm import create_snapshot, wait_serving

JAIL_UID_MIN, JAIL_UID_MAX = 1879048192, 1879048192 + 1023


def status_fields(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def ns(pid, kind):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def as_uid(uid, fn):
    """Run fn() in a child that has become uid:uid with no groups; its errno (0: allowed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 255
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                fn()
                code = 0
            except OSError as e:
                code = e.errno or 254
        finally:
            os.write(w, bytes([code]))
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    return got[0] if got else 255


@unittest.skipUnless(os.geteuid() == 0, "opd jails its VMMs only when started as root")
class Jail(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # pool.max_size = 0: two clones whatever the demand, so that once they are restored the
        # VMM processes are those two and no other (vmms())
        cls.opd = Opd({"pool.sizes": "bash=2", "pool.max_size": "0", "pool.fallback_cold": "no",
                       "languages.enabled": "bash"})
        cls.version = create_snapshot(cls.opd, "bash")
        wait_serving(cls.opd, "bash", cls.version, ready=2)
        cls.snap = os.path.join(cls.opd.dir, "cache", "bash", cls.version)

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()

    def vmms(self):
        """The two paused clones' VMMs, each started in full (a VMM its jail is still being
        set up for is no VMM yet), and no other: not a used VM's VMM as it ends."""
        return self.opd.settled_vmms("bash", 2)

    def opd_vm_name(self, pid):
        name = next((n for p, n in vmm_names(self.opd.proc.pid).items() if p == pid), None)
        self.assertIsNotNone(name, f"VMM {pid} names no VM")
        return name

    def test_status_says_jail(self):
        st = self.opd.call({"op": "status"})
        self.assertEqual(st["jail"]["mode"], "jail")
        self.assertIn(st["jail"]["cgroup"], ("v2", "none"))
        self.assertTrue(st["jail"]["cgroup_text"])

    def test_opd_dropped_root(self):
        s = status_fields(self.opd.proc.pid)
        opd_uid = int(s["Uid"].split()[0])
        self.assertNotEqual(opd_uid, 0)
        self.assertEqual(set(s["Uid"].split()), {str(opd_uid)})
        self.assertEqual(int(s["CapEff"], 16), 0)
        self.assertEqual(int(s["CapBnd"], 16), 0)
        self.assertEqual(s["NoNewPrivs"], "1")
        self.assertEqual(s["Groups"].strip(), "")

    def test_helper_keeps_five_capabilities(self):
        # what jailing a VMM needs and nothing over files: no VM directory is handed around
        helpers = children(self.opd.proc.pid, "opd-jail")
        self.assertEqual(len(helpers), 1, helpers)
        s = status_fields(helpers[0])
        want = sum(1 << cap for cap in (21, 7, 6, 8, 5))  # SYS_ADMIN SETUID SETGID SETPCAP KILL
        self.assertEqual(int(s["CapEff"], 16), want, s["CapEff"])
        self.assertEqual(int(s["CapBnd"], 16), want, s["CapBnd"])

    def test_each_vmm_is_jailed(self):
        opd_uid = int(status_fields(self.opd.proc.pid)["Uid"].split()[0])
        uids = set()

        def check(pid):
            s = status_fields(pid)
            ids = set(s["Uid"].split())
            self.assertEqual(len(ids), 1, s["Uid"])
            uid = int(ids.pop())
            self.assertNotIn(uid, (0, opd_uid))
            self.assertTrue(JAIL_UID_MIN <= uid <= JAIL_UID_MAX, uid)
            self.assertEqual(set(s["Gid"].split()), {str(uid)})
            self.assertEqual(s["Groups"].strip(), "")
            self.assertEqual(int(s["CapEff"], 16), 0)
            self.assertEqual(int(s["CapPrm"], 16), 0)
            self.assertEqual(int(s["CapBnd"], 16), 0)
            self.assertEqual(s["NoNewPrivs"], "1")
            for kind in ("mnt", "pid", "net", "ipc", "uts"):
                self.assertNotEqual(ns(pid, kind), ns(self.opd.proc.pid, kind), kind)
            with open(f"/proc/{pid}/environ", "rb") as f:
                self.assertEqual(f.read().split(b"\0")[:-1], [b"PATH=/usr/bin:/bin"])
            # its root: /usr, a few devices, its own /proc, nothing of the host
            root = f"/proc/{pid}/root"
            self.assertLessEqual(set(os.listdir(root)) - {"lib", "lib64", "lib32", "libx32",
                                                          "bin", "sbin"},
                                 {"usr", "dev", "proc"})
            self.assertLessEqual(set(os.listdir(f"{root}/dev")),
                                 {"null", "zero", "urandom", "random", "kvm"})
            self.assertEqual(os.readlink(f"/proc/{pid}/cwd"), "/")
            # no file system it could fill: every mount read-only but its /proc and the
            # device nodes bound into /dev
            with open(f"/proc/{pid}/mountinfo") as f:
                for line in f:
                    fields = line.split()
                    point, options = fields[4], fields[5].split(",")
                    if point == "/proc" or point.startswith("/dev/"):
                        continue
                    self.assertIn("ro", options, line)
            # its stdout and stderr: a pipe opd drains, not a file
            self.assertTrue(os.readlink(f"/proc/{pid}/fd/1").startswith("pipe:"))
            self.assertEqual(os.readlink(f"/proc/{pid}/fd/2"), os.readlink(f"/proc/{pid}/fd/1"))
            # only the fds meant for it: stdio, agent, QMP, the snapshot's files (then QEMU's
            # own eventfds and the like): none of opd's sockets or files beyond these
            for target in fd_targets(pid).values():
                if target.startswith("/"):
                    self.assertTrue(target.startswith((self.snap, "/dev/null")), target)
            uids.add(uid)

        pids = self.vmms()
        self.assertEqual(each_live(pids, check), pids)
        self.assertEqual(len(uids), len(pids), "two VMs share a uid")

    def test_each_vmm_has_seccomp(self):
        # QEMU's own seccomp filter (-sandbox on,...: the QEMU command line's part)
        def check(pid):
            self.assertEqual(status_fields(pid)["Seccomp"], "2",
                             f"VMM {pid} runs without its seccomp sandbox")

        pids = self.vmms()
        self.assertEqual(each_live(pids, check), pids)

    def test_vm_uid_is_refused(self):
        # the settled set stays: the VMMs, their uids, fds and directories are there throughout
        pids = self.vmms()
        uid = int(status_fields(pids[0])["Uid"].split()[0])
        other_dirs = [os.path.join(self.opd.run_dir, d) for d in os.listdir(self.opd.run_dir)]
        mem_fds = [fd for fd, target in fd_targets(pids[0]).items() if target.endswith("/mem")]

        def write_mem():
            os.open(os.path.join(self.snap, "mem"), os.O_WRONLY)

        def write_vmstate():
            os.open(os.path.join(self.snap, "vmstate"), os.O_WRONLY)

        names = os.listdir(self.snap)

        def write_any_snapshot_file():
            refused = None
            for n in names:
                try:
                    os.close(os.open(os.path.join(self.snap, n), os.O_WRONLY))
                    return  # allowed
                except OSError as e:
                    refused = e
            raise refused

        def reopen_mem_rw():
            # the file is open in the VMM: reopening it read-write through /proc is refused
            for fd in mem_fds:
                os.open(f"/proc/{pids[0]}/fd/{fd}", os.O_RDWR)
                return
            raise OSError(errno.ENOENT, "no mem fd")

        def connect():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.opd.socket)
            finally:
                s.close()

        def signal_opd():
            os.kill(self.opd.proc.pid, 0)

        def read_dirs():
            for d in other_dirs:
                os.listdir(d)

        def write_own_dir():
            # its VM's directory in run_dir stays opd's alone: nothing to write in on the host
            own = os.path.join(self.opd.run_dir, self.opd_vm_name(pids[0]))
            os.close(os.open(os.path.join(own, "x"), os.O_WRONLY | os.O_CREAT, 0o600))

        def write_run_dir():
            os.close(os.open(os.path.join(self.opd.run_dir, "x"), os.O_WRONLY | os.O_CREAT,
                             0o600))

        def ptrace_opd():
            open(f"/proc/{self.opd.proc.pid}/mem", "rb").close()

        self.assertTrue(other_dirs)
        for name, fn in [("write the snapshot's mem", write_mem),
                         ("write the snapshot's vmstate", write_vmstate),
                         ("write any file of the snapshot", write_any_snapshot_file),
                         ("reopen mem read-write", reopen_mem_rw),
                         ("connect to opd's socket", connect),
                         ("signal opd", signal_opd),
                         ("read the VMs' directories", read_dirs),
                         ("write in its own VM's directory", write_own_dir),
                         ("write in run_dir", write_run_dir),
                         ("read opd's memory", ptrace_opd)]:
            with self.subTest(name):
                self.assertIn(as_uid(uid, fn), (errno.EACCES, errno.EPERM),
                              f"a VM's uid could {name}")

    def test_snapshot_files_not_a_vms(self):
        # even reached some other way (an fd), no snapshot file is a VM uid's or writable by one
        for n in os.listdir(self.snap):
            st = os.lstat(os.path.join(self.snap, n))
            self.assertFalse(JAIL_UID_MIN <= st.st_uid <= JAIL_UID_MAX, n)
            self.assertFalse(JAIL_UID_MIN <= st.st_gid <= JAIL_UID_MAX, n)
            self.assertEqual(st.st_mode & 0o022, 0, n)
        self.assertEqual(os.stat(os.path.join(self.snap, "mem")).st_mode & 0o777, 0o444)

    def test_vm_uid_freed_and_dirs_removed(self):
        a = self.opd.run("bash", "echo ok", id="j1")
        self.assertTrue(a["ok"], a)
        # the used clone's directory goes; nothing in run_dir belongs to a VM uid once its VM
        # is gone
        deadline = time.time() + 120
        while time.time() < deadline:
            live = set(os.listdir(self.opd.run_dir))
            if a["vm"] not in live:
                break
            time.sleep(0.2)
        self.assertNotIn(a["vm"], os.listdir(self.opd.run_dir))


def children(pid, name):
    """Pids of pid's children whose command name is name."""
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid and comm == name:
            found.append(int(p))
    return found


# lib/jail/jail-proto.h: a request is 11 32-bit fields, the name and the arguments; an answer 8
# fields and a text
JAIL_MAGIC, JAIL_REQ_SPAWN, JAIL_REQ_KILL, JAIL_MSG_SPAWNED, JAIL_MSG_EXITED = \
    0x6f706a31, 1, 2, 2, 3
REQ = struct.Struct("=8Ii2I64s4096s")
MSG = struct.Struct("=4I2iII160s")


@unittest.skipUnless(os.geteuid() == 0, "opd-jail needs root")
class HelperNamesVmmsBySpawn(unittest.TestCase):
    """opd-jail speaking its protocol with this test (as it would with opd): a KILL names a VMM
    by its SPAWN's seq and its pid, and an EXITED carries that seq. A pid alone could be a later
    VMM's once the kernel gives it again; a KILL with the right pid and another seq kills
    nothing."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="opd-jail-test-")
        os.chmod(self.dir, 0o755)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        self.sock.settimeout(60)
        # through a shell, so that opd-jail takes the shell for opd (its parent, which it moves
        # to a cgroup leaf when cgroups are delegated), not this test
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec 3<&0 0</dev/null; "$@" & wait', "sh",
             os.path.join(BUILD, "daemon", "opd-jail"), "--run-dir", self.dir,
             "--uids", "1879050000-1879050009", "--owner", "0:0", "--vmm", "0=/usr/bin/sleep"],
            stdin=theirs)
        theirs.close()
        self.assertEqual(self.recv()[1], 1)  # HELLO

    def tearDown(self):
        self.sock.close()
        self.proc.wait(timeout=60)
        os.rmdir(self.dir)

    def recv(self):
        data = self.sock.recv(MSG.size)
        self.assertEqual(len(data), MSG.size)
        return MSG.unpack(data)

    def spawn(self, seq):
        args = b"600\0"
        req = REQ.pack(JAIL_MAGIC, JAIL_REQ_SPAWN, seq, 0, 1, 0, 0, 0, 0, 1, len(args),
                       b"vm-jailtest-%d" % seq, args)
        fd = os.open(os.devnull, os.O_WRONLY)  # its stdout and stderr
        try:
            socket.send_fds(self.sock, [req], [fd])
        finally:
            os.close(fd)
        return self.answer(JAIL_MSG_SPAWNED, seq)

    def answer(self, kind, seq):
        while True:
            magic, t, got_seq, err, pid, status, uid, flags, text = self.recv()
            if t == kind and got_seq == seq:
                self.assertEqual(err, 0, text.rstrip(b"\0"))
                return pid, status

    def kill(self, seq, pid):
        self.sock.send(REQ.pack(JAIL_MAGIC, JAIL_REQ_KILL, seq, 0, 0, 0, 0, 0, pid, 0, 0, b"",
                                b""))

    def test_kill_and_exit_name_the_spawn(self):
        first, _ = self.spawn(1)
        self.kill(7, first)  # its pid, another spawn's seq: nothing is killed
        second, _ = self.spawn(2)  # answered after the KILL above was handled
        with open(f"/proc/{first}/status") as f:
            fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        self.assertNotIn(fields["State"][0], "ZX", fields["State"])
        pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
        self.assertFalse(pending & (1 << (9 - 1)), "a SIGKILL is pending: the KILL named it")
        self.kill(1, first)
        _, status = self.answer(JAIL_MSG_EXITED, 1)
        self.assertTrue(os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9, status)
        self.kill(2, second)
        self.answer(JAIL_MSG_EXITED, 2)


@unittest.skipUnless(os.geteuid() == 0, "opd jails its VMMs only when started as root")
class HelperKilled(unittest.TestCase):
    def test_vmms_die_with_opd_jail(self):
        """However opd-jail ends (here SIGKILL, so it cannot clean up), its VMMs end with it:
        a change of uid clears the parent-death signal, so it is armed after the last one."""
        opd = Opd({"pool.sizes": "bash=1", "pool.max_size": "0", "pool.fallback_cold": "no",
                   "languages.enabled": "bash"})
        try:
            version = create_snapshot(opd, "bash")
            wait_serving(opd, "bash", version, ready=1)
            # the paused clone, started in full (not the snapshot's VMM as it ends)
            vmms = opd.settled_vmms("bash", 1)
            helpers = children(opd.proc.pid, "opd-jail")
            self.assertEqual(len(helpers), 1, helpers)
            os.kill(helpers[0], 9)
            wait_for(lambda: all(ended(p) for p in vmms), 60,
                     f"the VMMs {vmms} to end with opd-jail")
        finally:
            opd.stop()


if __name__ == "__main__":
    unittest.main()
