"""opdtest: start the real opd on a private socket and talk to it as a client would.

Paths come from the environment that ctest sets: OP_BUILD_DIR (the CMake build tree),
OP_SOURCE_DIR (the source tree) and OPD_IMAGES (built guest images, default
/var/lib/opd/test-images, where scripts/test builds them).
"""
import atexit
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

BUILD = os.environ.get("OP_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("OP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
IMAGES = os.environ.get("OPD_IMAGES", "/var/lib/opd/test-images")
OPD = os.path.join(BUILD, "daemon", "opd")
OPCTL = os.path.join(BUILD, "cli", "opctl")


def _state_root():
    """Where this test process keeps everything it makes (opd's cache and run directories,
    s3rver's bucket, scratch files): OPD_TEST_TMPDIR if set, else /dev/shm when it is a tmpfs
    with 4 GiB free, else the usual temporary directory. In RAM, the snapshots the tests make
    (hundreds of MiB each) do not depend on how full the host's disk is: opd refuses to make a
    snapshot it may have no room for, and it should. One directory per process, removed when
    the process ends (OPD_TEST_KEEP=1 keeps it)."""
    base = os.environ.get("OPD_TEST_TMPDIR")
    if not base:
        base = tempfile.gettempdir()
        try:
            with open("/proc/self/mounts") as f:
                shm_is_tmpfs = any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in f)
            st = os.statvfs("/dev/shm")
            if shm_is_tmpfs and st.f_bavail * st.f_frsize >= 4 << 30 and \
                    os.access("/dev/shm", os.W_OK | os.X_OK):
                base = "/dev/shm"
        except OSError:
            pass
    root = tempfile.mkdtemp(prefix="opd-tests-", dir=base)
    os.chmod(root, 0o711)  # jail.user reaches the directories the tests hand to opd
    if os.environ.get("OPD_TEST_KEEP") != "1":
        atexit.register(shutil.rmtree, root, True)
    return root


# every tempfile call in the test process, and the programs it starts, use it
tempfile.tempdir = _state_root()
os.environ["TMPDIR"] = tempfile.tempdir


def frame(obj_or_bytes):
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    return struct.pack(">I", len(data)) + data


def ensure_opd_user():
    """The system user opd drops to, made from the shipped sysusers file when missing."""
    try:
        pwd.getpwnam("opd")
    except KeyError:
        subprocess.run(["systemd-sysusers", os.path.abspath(os.path.join(SOURCE, "systemd",
                                                                          "opd.sysusers"))],
                       check=True)


def reachable(path):
    """Let jail.user (opd, once it has dropped root) reach path: every directory above it that
    a test made under the temporary directory gets o+x (tests make theirs 0700)."""
    tmp = os.path.realpath(tempfile.gettempdir())
    p = os.path.dirname(os.path.realpath(path))
    while p.startswith(tmp + "/"):
        try:
            st = os.stat(p)
            os.chmod(p, st.st_mode & 0o7777 | 0o001)
        except FileNotFoundError:
            pass
        p = os.path.dirname(p)


class Client:
    def __init__(self, path, timeout=120):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        # A UNIX socket whose listen backlog is full refuses a connect with a timeout set
        # (EAGAIN) instead of waiting for room: wait for room as a blocking connect would,
        # until the same timeout.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.sock.close()
                    raise
                time.sleep(0.01)
            except OSError:
                self.sock.close()
                raise
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(frame(obj))

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self):
        """One answer as a dict, or None when opd closed the connection."""
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return json.loads(payload)
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk

    def call(self, obj):
        self.send(obj)
        return self.recv()

    def close(self):
        self.sock.close()


class Opd:
    """One opd process with its own socket, run directory and config."""

    def __init__(self, config=None, languages=None, wait_accel=True, env=None, argv=None,
                 wait_socket=True, journal=False):
        self.dir = tempfile.mkdtemp(prefix="opd-test-")
        # opd started as root starts opd-jail and runs as the user "opd" (jail.user): it must
        # reach its directories, and the user must exist (as the package makes it).
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            ensure_opd_user()
        self.socket = os.path.join(self.dir, "opd.sock")
        self.run_dir = os.path.join(self.dir, "vm")
        conf = {
            "socket": self.socket,
            "run_dir": self.run_dir,
            "cache_dir": os.path.join(self.dir, "cache"),
            "images_dir": IMAGES,
            "languages": languages or os.path.join(SOURCE, "languages", "languages.json"),
            "accel": "tcg",
            "allow_tcg": "yes",  # tests run trusted code, and this machine has no KVM
            "boot_timeout_ms": "120000",
            "max_vms": "4",
            # tests make the snapshots they need; test_snapauto turns this on
            "snapshot.create_missing": "no",
        }
        conf.update(config or {})
        if os.geteuid() == 0:
            for key in ("cache_dir", "run_dir", "images_dir", "languages", "socket"):
                reachable(os.path.join(conf[key], "x") if key.endswith("_dir") else conf[key])
            notify = (env or {}).get("NOTIFY_SOCKET")
            if notify and notify.startswith("/") and os.path.exists(notify):
                reachable(notify)
                os.chmod(notify, 0o777)  # as systemd's own notify socket is
        self.socket, self.run_dir = conf["socket"], conf["run_dir"]  # a restart reuses them
        self.config_path = os.path.join(self.dir, "opd.conf")
        with open(self.config_path, "w") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        self.log_path = os.path.join(self.dir, "opd.log")
        self.log = open(self.log_path, "w")
        if journal:  # as systemd does when stderr is the journal: the stream's dev:ino
            st = os.fstat(self.log.fileno())
            env = {**(env or {}), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        self.proc = subprocess.Popen((argv or []) + [OPD, "--config", self.config_path],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        # a class whose setUpClass fails after this point never reaches its tearDownClass: at
        # the latest the test process's exit stops this opd (and with it its VMMs)
        atexit.register(self.kill_if_running)
        deadline = time.time() + 30
        while wait_socket:
            if self.proc.poll() is not None:
                raise RuntimeError("opd exited at start:\n" + self.read_log())
            try:
                c = Client(self.socket, timeout=5)
                try:
                    st = c.call({"op": "status"})
                finally:
                    c.close()
                if not wait_accel or st.get("accel") != "probing":
                    break
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            if time.time() > deadline:
                raise RuntimeError("opd did not come up:\n" + self.read_log())
            time.sleep(0.05)

    def client(self, timeout=180):
        return Client(self.socket, timeout)

    def call(self, obj, timeout=180):
        c = self.client(timeout)
        try:
            return c.call(obj)
        finally:
            c.close()

    def run(self, lang, code, **kw):
        req = {"op": "exec", "lang": lang, "code": code, "id": kw.pop("id", 1)}
        req.update(kw)
        return self.call(req)

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def vmm_pids(self):
        """VMM processes still running for this opd: opd's children (unjailed) or its
        opd-jail's, whose command line names a VM (QEMU's -name guest=vm-...)."""
        return [pid for pid, name in vmm_names(self.proc.pid).items() if name]

    def vmm_pid(self, vm):
        """The pid of VM vm's VMM (its -name), or None."""
        return next((pid for pid, name in vmm_names(self.proc.pid).items() if name == vm), None)

    def settled_vmms(self, lang, n, timeout=120):
        """The pids of lang's n paused clones, once they are all there is: n ready, none
        restoring or in use, no other live VM (a session, a cold boot, another pool's clone), and
        no VMM process or VM directory left of a VM destroyed before. For a pool whose target
        cannot move (its most, pool.max_size, no more than its size: pool.max_size = 0), the set
        then stays as it is until a request takes a clone or a VMM fails: the pool neither grows
        under demand nor stops a clone as the demand fades."""
        def settled():
            st = self.call({"op": "status"})
            p = next(la["pool"] for la in st["languages"] if la["name"] == lang)
            if p["max"] > n:
                raise AssertionError(f"the {lang} pool may grow to {p['max']}: no stable set of "
                                     f"{n} VMMs (pool.max_size = 0 keeps it at its size)")
            pids = self.vmm_pids()
            dirs = [e for e in os.listdir(self.run_dir) if e.startswith("vm-")]
            return sorted(pids) if pool_settled(st, lang, n, pids) and len(dirs) == n else None
        return wait_for(settled, timeout, lambda: f"{n} paused {lang} clones and no other VM: "
                        f"{pool(self, lang)}, VMMs {self.vmm_pids()}, VM directories "
                        f"{os.listdir(self.run_dir)}")

    def kill_if_running(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        # an ASan/UBSan build (scripts/test-sanitize) writes its reports to opd's stderr
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if mark in self.read_log():
                raise AssertionError(f"opd's log has a sanitizer report:\n{self.read_log()[-6000:]}")
        return self.proc.returncode


# Small helpers the tests share.

NPM_DIR = os.environ.get("OPD_NPM_DIR", "/var/lib/opd/npm")  # where scripts/install-npm installs


def parent_pid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def vmm_names(opd_pid):
    """{pid: VM name} of the VMMs below opd_pid (its children, or its opd-jail's): a QEMU's
    command line names its VM (-name guest=NAME)."""
    found = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            ppid = parent_pid(p)
            if ppid != opd_pid and parent_pid(ppid) != opd_pid:
                continue
        except (OSError, ValueError, IndexError):
            continue
        for i, a in enumerate(argv[:-1]):
            if a == b"-name" and argv[i + 1].startswith(b"guest=vm-"):
                found[int(p)] = argv[i + 1][len(b"guest="):].decode()
    return found


def wait_for(cond, timeout, what, step=0.1):
    """Call cond every step seconds until it returns something true, and return that. Past
    timeout seconds (each caller says how long its wait may take) and one last call, an
    AssertionError naming what was awaited; what may be a function, called then, to tell the
    state at that moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    v = cond()
    if v:
        return v
    raise AssertionError(f"timed out after {timeout} s waiting for "
                         f"{what() if callable(what) else what}")


def pool(opd, lang):
    """The pool of lang in opd's status."""
    st = opd.call({"op": "status"})
    return next(la["pool"] for la in st["languages"] if la["name"] == lang)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    """The resident memory of process pid."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def pool_settled(status, lang, n, pids):
    """Whether a status answer shows lang's pool serving, at n paused clones that are all the VMs
    there are (none restoring or in use), and pids, the VMM processes found, are n."""
    p = next(la["pool"] for la in status["languages"] if la["name"] == lang)
    return bool(p["snapshot"]) and (p["target"], p["ready"], p["restoring"], p["in_use"],
                                    status["counters"]["active_vms"], len(pids)) == \
        (n, n, 0, 0, n, n)


PF_EXITING = 0x4  # the kernel's flag of a process that has begun to exit (/proc/PID/stat)


def ended(pid):
    """Whether process pid has ended or is ending: no /proc entry, a zombie, or exiting (it
    drops its memory, then closes its files, before it becomes a zombie: what /proc shows of
    it meanwhile is not what it had)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        # gone before the open, or reaped between the open and the read (ESRCH)
        return True
    return fields[0] in ("Z", "X", "x") or bool(int(fields[6]) & PF_EXITING)


def fd_targets(pid):
    """{fd: what it points to} of process pid; an fd closed while the list is read is left out.
    FileNotFoundError once the process has gone."""
    targets = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
    return targets


def each_live(pids, check):
    """check(pid) for each of pids, skipping a process that ends meanwhile: one whose /proc
    entries vanish under check (FileNotFoundError, ProcessLookupError), or whose check fails
    while it is found ended or ending just after (an exiting process loses its memory and its
    files before /proc forgets it). A process that lives on has its errors raised. The pids
    checked to the end: a skipped process passed no check."""
    checked = []
    for pid in pids:
        try:
            check(pid)
        except (FileNotFoundError, ProcessLookupError, AssertionError):
            if ended(pid):
                continue
            raise
        checked.append(pid)
    return checked
