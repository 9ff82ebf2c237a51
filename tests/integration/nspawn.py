"""nspawn: a Debian 12 root booted with its own systemd in systemd-nspawn, for tests that need a
real service manager (tests/integration/test_systemd_nspawn.py).

root_for(depends) returns a Debian 12 root (mmdebstrap --variant=minbase with systemd and dbus,
Debian's bookworm-backports suite in its apt sources) with the packages DEPENDS names already
installed, each from bookworm when its version there satisfies the constraint, else from
bookworm-backports. Roots are kept under $OPD_CI_CACHE/nspawn (default /var/cache/opd-ci) keyed
by everything that goes into them, in two layers: base-KEY (mmdebstrap's result) and root-KEY
(a copy of a base with the packages installed), so only the first run pays for mmdebstrap and
a new Depends only for apt; the packages apt downloads for the second layer are kept there too.
Nothing ever changes a finished root: Container boots an overlay of it and throws the overlay
away.

Container needs root, systemd-nspawn (Debian package systemd-container), nsenter (util-linux)
and overlayfs; root_for also needs mmdebstrap and network access to $OPD_CI_MIRROR (default
http://deb.debian.org/debian). The container has no network (--private-network).
"""
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from opdtest import wait_for

CACHE = os.path.join(os.environ.get("OPD_CI_CACHE", "/var/cache/opd-ci"), "nspawn")
MIRROR = os.environ.get("OPD_CI_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
BACKPORTS = "bookworm-backports"
INCLUDE = ("systemd", "dbus")
# Bump when the way a root is made changes: every cached root is then made again.
RECIPE = 2
# Roots not used for this long are deleted when another root is made.
KEEP_UNUSED_S = 30 * 86400

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Error(Exception):
    pass


def run(argv, timeout=1800, **kw):
    """ARGV on the host; an Error with its output unless it exits 0."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if p.returncode != 0:
        raise Error(f"{' '.join(argv)}: exit {p.returncode}\n{p.stdout[-4000:]}{p.stderr[-4000:]}")
    return p


def need_tools():
    """What is missing on the host to make and boot a root, as one message, or None."""
    missing = [f"{tool} ({package})" for tool, package in
               (("systemd-nspawn", "systemd-container"), ("mmdebstrap", "mmdebstrap"),
                ("nsenter", "util-linux"), ("dpkg", "dpkg"))
               if shutil.which(tool) is None]
    if os.geteuid() != 0:
        return "needs root (mmdebstrap, systemd-nspawn, overlayfs)"
    if missing:
        return "not found: " + ", ".join(missing) + " (scripts/deps installs them)"
    return None


def nspawn_base():
    """systemd-nspawn's options for a host whose PID 1 may not be systemd: no registration with
    machined and no transient scope (both need the host's system bus); the container's cgroup is
    the one nspawn runs in (Container gives it one of its own)."""
    return ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit"]


def in_root(root, argv, timeout=1800, binds=()):
    """ARGV in ROOT as a plain container (no init), with the host's network: for making roots."""
    env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
    opts = [f"--bind={b}" for b in binds]
    cgroup = new_cgroup("make")
    try:
        return run(nspawn_base() + opts + ["-D", root, "--pipe", "--", "env", "-i",
                                           f"PATH={PATH}", "LANG=C.UTF-8",
                                           "DEBIAN_FRONTEND=noninteractive", *argv],
                   timeout=timeout, env=env, stdin=subprocess.DEVNULL,
                   preexec_fn=lambda: enter_cgroup(cgroup))
    finally:
        remove_cgroup(cgroup)


DEP = re.compile(r"([a-z0-9][a-z0-9.+-]*)(?::any)?\s*(?:\((<<|<=|=|>=|>>)\s*([^)\s]+)\s*\))?")


def parse_depends(depends):
    """[(name, op, version)] from a Depends field; of alternatives "a | b", the first."""
    out = []
    for item in depends.split(","):
        first = item.split("|")[0].strip()
        if not first:
            continue
        m = DEP.fullmatch(first)
        if m is None:
            raise Error(f"cannot parse the dependency {first!r}")
        out.append(m.groups())
    return out


def version_ok(version, op, want):
    if op is None:
        return True
    return subprocess.run(["dpkg", "--compare-versions", version,
                           {"<<": "lt", "<=": "le", "=": "eq", ">=": "ge", ">>": "gt"}[op], want]
                          ).returncode == 0


def candidates(root, names):
    """{name: candidate version} from apt in ROOT (bookworm's, as backports has priority 100)."""
    p = in_root(root, ["apt-cache", "policy", *names])
    out, name = {}, None
    for line in p.stdout.splitlines():
        if not line.startswith(" ") and line.endswith(":"):
            name = line[:-1]
        elif line.strip().startswith("Candidate:") and name:
            out[name] = line.split(":", 1)[1].strip()
    return out


def make_base(root, log):
    """mmdebstrap ROOT (minbase: apt resolves and downloads in parallel, a few times faster than
    debootstrap), with bookworm-backports in its apt sources."""
    start = time.monotonic()
    os.makedirs(root, exist_ok=True)
    run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(INCLUDE),
         SUITE, root, MIRROR])
    log(f"mmdebstrap: {time.monotonic() - start:.0f} s")
    with open(os.path.join(root, "etc/apt/sources.list.d", BACKPORTS + ".sources"), "w") as f:
        f.write(f"Types: deb\nURIs: {MIRROR}\nSuites: {BACKPORTS}\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    with open(os.path.join(root, "etc/hostname"), "w") as f:
        f.write("opd-ci\n")


def make_root(root, base, depends, log):
    """ROOT: a copy of the root BASE with what DEPENDS names installed."""
    debs = os.path.join(CACHE, "debs", "apt")
    os.makedirs(os.path.join(debs, "partial"), exist_ok=True)
    start = time.monotonic()
    run(["cp", "-a", "--reflink=auto", base, root])
    binds = [debs + ":/var/cache/apt/archives"]
    in_root(root, ["apt-get", "update", "-q"])
    deps = parse_depends(depends)
    cand = candidates(root, [n for n, _, _ in deps])
    main = [n for n, op, v in deps
            if n in cand and cand[n] != "(none)" and version_ok(cand[n], op, v)]
    bpo = [n for n, _, _ in deps if n not in main]
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    if main:
        in_root(root, install + main, binds=binds)
    if bpo:
        in_root(root, install + ["-t", BACKPORTS] + bpo, binds=binds)
    log(f"packages ({' '.join(main)}; from {BACKPORTS}: {' '.join(bpo)}): "
        f"{time.monotonic() - start:.0f} s")
    for n, op, v in deps:  # what was installed satisfies the constraints
        p = run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Version}", n])
        if not version_ok(p.stdout, op, v):
            raise Error(f"{n} {p.stdout} installed in the root does not satisfy ({op} {v})")


def prune(kind, keep):
    """Delete cached KIND- entries other than KEEP not used for KEEP_UNUSED_S."""
    now = time.time()
    for name in os.listdir(CACHE):
        path = os.path.join(CACHE, name)
        if name == keep or not name.startswith(kind + "-"):
            continue
        stamp = os.path.join(path, "used")
        used = os.path.getmtime(stamp) if os.path.exists(stamp) else 0
        if name.endswith(".tmp") or now - used > KEEP_UNUSED_S:
            shutil.rmtree(path, ignore_errors=True)


def cached(kind, recipe, make, log):
    """CACHE/KIND-KEY/root, KEY a hash of RECIPE, made by MAKE(path) when not there yet. The
    caller holds the lock."""
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{kind}-{key}"
    final = os.path.join(CACHE, name)
    if not os.path.exists(os.path.join(final, "recipe.json")):
        log(f"making {final} (not cached)")
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        make(os.path.join(tmp, "root"))
        with open(os.path.join(tmp, "recipe.json"), "w") as f:
            json.dump(recipe, f, indent=1, sort_keys=True)
        os.rename(tmp, final)
        prune(kind, name)
    with open(os.path.join(final, "used"), "w"):
        pass
    return os.path.join(final, "root")


def root_for(depends, log=lambda msg: None):
    """The cached root for DEPENDS (a Depends field), made first if there is none: from the
    cached mmdebstrap base (made first if there is none either), so that a change of DEPENDS
    costs an apt-get install, not an mmdebstrap."""
    base_recipe = {"recipe": RECIPE, "suite": SUITE, "backports": BACKPORTS, "mirror": MIRROR,
                   "include": list(INCLUDE)}
    root_recipe = dict(base_recipe, depends=[list(d) for d in parse_depends(depends)])
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time; users wait for it
        base = cached("base", base_recipe, lambda path: make_base(path, log), log)
        return cached("root", root_recipe, lambda path: make_root(path, base, depends, log), log)


def cgroup2_dir():
    """The directory of this process's cgroup in the cgroup v2 hierarchy (on a hybrid host, the
    one mounted at /sys/fs/cgroup/unified)."""
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                mount = fields[4]
                break
    if mount is None:
        raise Error("no cgroup v2 hierarchy mounted: systemd-nspawn needs one for "
                    "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
    with open("/proc/self/cgroup") as f:
        path = [l.split(":", 2)[2].strip() for l in f if l.startswith("0::")][0]
    return os.path.join(mount, path.lstrip("/"))


def new_cgroup(tag):
    """A new cgroup v2 directory under this process's, for one systemd-nspawn: with --keep-unit
    nspawn makes its payload and supervisor cgroups under its own, which must not be shared."""
    path = os.path.join(cgroup2_dir(), f"opd-nspawn-{os.getpid()}-{tag}")
    os.makedirs(path, exist_ok=True)
    return path


def enter_cgroup(path):
    """Move the calling process into the cgroup PATH (a preexec_fn)."""
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write("0")


def remove_cgroup(path, timeout=60):
    """Remove the cgroup PATH and those made under it, deepest first, once their processes
    are gone."""
    def removed():
        for d, _, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                return False
        return True
    if os.path.isdir(path):
        wait_for(removed, timeout, f"{path} to empty", step=0.2)


class Container:
    """An overlay of ROOT booted with `systemd-nspawn -b` in a cgroup of its own, with the unified
    cgroup hierarchy and BPF allowed, so that systemd can enforce DevicePolicy= (device access
    is a BPF program on cgroup v2). Commands run inside through nsenter(1) into the namespaces of
    the container's PID 1 (run, sh)."""

    def __init__(self, root, name):
        self.lower, self.name = root, name
        # the overlay's upper layer (the package, opd's snapshots): where opdtest keeps the
        # tests' state, in RAM, so a full host disk does not fail the container's opd
        self.scratch = tempfile.mkdtemp(prefix="opd-nspawn-")
        self.root = os.path.join(self.scratch, "root")
        self.console = os.path.join(self.scratch, "console.log")
        self.proc = self.leader = self.cgroup = None
        self.mounted = False

    def start(self, timeout=300):
        upper, work = os.path.join(self.scratch, "upper"), os.path.join(self.scratch, "work")
        for d in (upper, work, self.root):
            os.mkdir(d)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.lower},upperdir={upper},workdir={work}", self.root])
        self.mounted = True
        self.cgroup = new_cgroup(self.name)
        notify_path = os.path.join(self.scratch, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        notify.bind(notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        argv = nspawn_base() + [
            "-D", self.root, f"--machine={self.name}", "--boot", "--notify-ready=yes",
            "--private-network", "--console=read-only",
            "--capability=CAP_BPF,CAP_PERFMON", "--system-call-filter=bpf",
            "--setenv=SYSTEMD_COLORS=0"]
        with open(self.console, "w") as log:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=lambda: enter_cgroup(self.cgroup))
        # nspawn reports the container's PID 1 (X_NSPAWN_LEADER_PID=), then READY=1 once the
        # container's systemd has finished starting up (--notify-ready=yes).
        deadline = time.monotonic() + timeout
        ready = False
        try:
            while not ready:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise Error("the container did not come up "
                                f"(nspawn {'exited ' + str(self.proc.returncode) if self.proc.poll() is not None else 'still running'}):\n"
                                + self.console_tail())
                notify.settimeout(min(left, 1.0))
                try:
                    msg = notify.recv(4096).decode()
                except socket.timeout:
                    continue
                for line in msg.splitlines():
                    if line.startswith("X_NSPAWN_LEADER_PID="):
                        self.leader = int(line.split("=", 1)[1])
                    elif line == "READY=1":
                        ready = True
        finally:
            notify.close()
        if self.leader is None:
            raise Error("systemd-nspawn did not say its leader's pid")
        p = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=300)
        if p.stdout.strip() != "running":
            failed = self.run(["systemctl", "--failed", "--no-legend"], check=False).stdout
            raise Error(f"the container's systemd is {p.stdout.strip()!r}; failed units:\n{failed}")

    def console_tail(self, n=60):
        with open(self.console, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def nsenter(self, namespaces="--all"):
        return ["nsenter", f"--target={self.leader}", *namespaces.split(), "--",
                "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=",
                "DEBIAN_FRONTEND=noninteractive"]

    def run(self, argv, check=True, timeout=600, input=None, namespaces="--all"):
        """ARGV as root inside the container; check: an Error unless it exits 0."""
        p = subprocess.run(self.nsenter(namespaces) + list(argv), capture_output=True, text=True,
                           timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise Error(f"in the container: {' '.join(argv)}: exit {p.returncode}\n"
                        f"{p.stdout[-4000:]}{p.stderr[-4000:]}")
        return p

    def sh(self, script, **kw):
        return self.run(["sh", "-ec", script], **kw)

    def path(self, inside):
        """The host's path of INSIDE, a path in the container's file system."""
        return os.path.join(self.root, inside.lstrip("/"))

    def stop(self, timeout=120):
        """Power the container off (SIGTERM to nspawn makes its systemd shut down), then remove
        the overlay and the cgroup. Every step runs even if one before it failed."""
        errors = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                errors.append(f"the container did not power off within {timeout} s")
                self.proc.kill()
                self.proc.wait()
        if self.cgroup:
            try:
                remove_cgroup(self.cgroup)
            except AssertionError as e:
                errors.append(str(e))
        if self.mounted:
            p = subprocess.run(["umount", self.root], capture_output=True, text=True)
            if p.returncode != 0:
                errors.append(f"umount {self.root}: {p.stderr}")
            else:
                self.mounted = False
        if not self.mounted:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if errors:
            raise Error("; ".join(errors))
