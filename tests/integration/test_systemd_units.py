"""systemd/: the units verify cleanly, the service's sandbox stays within the documented
exposure threshold, and the sysusers and tmpfiles files apply to a scratch root.

Needs systemd-analyze, systemd-sysusers and systemd-tmpfiles (Debian package `systemd`); a
missing tool fails the test, it does not skip it. Nothing here touches the host's units, users or
directories: every tool runs on copies or with --root on a temporary directory.
"""
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

from opdtest import OPD, SOURCE

UNITS = os.path.join(SOURCE, "systemd")
SERVICE = os.path.join(UNITS, "opd.service")
SOCKET = os.path.join(UNITS, "opd.socket")
SYSUSERS = os.path.join(UNITS, "opd.sysusers")
TMPFILES = os.path.join(UNITS, "opd.tmpfiles")
OPERATIONS = os.path.join(SOURCE, "docs", "operations.md")


def tool(test, name):
    path = shutil.which(name)
    if path is None:
        test.fail(f"{name} not found: install the Debian package 'systemd' (scripts/deps)")
    return path


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


# systemd-sysusers reports on stderr what it creates or would write; anything else there is a
# warning or an error.
SYSUSERS_INFO = re.compile(r"Creating group '[a-z_][a-z0-9_-]*' with GID [0-9]+\.|"
                           r"Creating user '[a-z_][a-z0-9_-]*' \(.*\) with UID [0-9]+ and GID [0-9]+\.|"
                           r"Would write /etc/(passwd|shadow|group|gshadow)…")


def sysusers_problems(stderr):
    return [l for l in stderr.splitlines() if not SYSUSERS_INFO.fullmatch(l)]


def documented_threshold():
    """The number after "Exposure threshold:" in docs/operations.md's systemd section."""
    with open(OPERATIONS) as f:
        m = re.search(r"^Exposure threshold: \**([0-9]+(?:\.[0-9]+)?)\**", f.read(), re.M)
    if m is None:
        raise AssertionError("docs/operations.md has no 'Exposure threshold: N' line")
    return float(m.group(1))


class Units(unittest.TestCase):
    def test_verify(self):
        """systemd-analyze verify on copies whose ExecStart= names the built opd: verify checks
        that the command exists and is executable, and /usr/sbin/opd is not installed here."""
        analyze = tool(self, "systemd-analyze")
        self.assertTrue(os.access(OPD, os.X_OK), f"{OPD} is not built")
        with open(SERVICE) as f:
            text = f.read()
        self.assertEqual(text.count("ExecStart=/usr/sbin/opd "), 1)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "opd.service"), "w") as f:
                f.write(text.replace("ExecStart=/usr/sbin/opd ", f"ExecStart={os.path.abspath(OPD)} "))
            shutil.copy(SOCKET, os.path.join(d, "opd.socket"))
            p = run([analyze, "verify", "--man=no",
                     os.path.join(d, "opd.service"), os.path.join(d, "opd.socket")])
        self.assertEqual((p.returncode, p.stderr, p.stdout), (0, "", ""))

    def test_verify_catches_mistakes(self):
        """The check above can fail: a misspelt setting is reported."""
        analyze = tool(self, "systemd-analyze")
        with tempfile.TemporaryDirectory() as d:
            with open(SERVICE) as f:
                text = f.read().replace("ExecStart=/usr/sbin/opd ", f"ExecStart={os.path.abspath(OPD)} ")
            with open(os.path.join(d, "opd.service"), "w") as f:
                f.write(text.replace("ProtectHome=yes", "ProtectHoem=yes"))
            shutil.copy(SOCKET, os.path.join(d, "opd.socket"))
            p = run([analyze, "verify", "--man=no",
                     os.path.join(d, "opd.service"), os.path.join(d, "opd.socket")])
        self.assertIn("ProtectHoem", p.stderr)

    def test_exposure(self):
        analyze = tool(self, "systemd-analyze")
        threshold = documented_threshold()
        p = run([analyze, "security", "--offline=true", SERVICE])
        self.assertEqual(p.returncode, 0, p.stderr)
        last = p.stdout.strip().splitlines()[-1]
        m = re.search(r"Overall exposure level for opd\.service: ([0-9]+\.[0-9]+) ", last)
        self.assertIsNotNone(m, f"unexpected last line: {last!r}")
        score = float(m.group(1))
        self.assertLessEqual(score, threshold, "\n" + p.stdout)

    def test_sysusers_and_tmpfiles_apply_to_a_scratch_root(self):
        """systemd 252's systemd-tmpfiles has no --dry-run, so both files are applied for real
        under --root: sysusers writes the scratch root's /etc/passwd and /etc/group, tmpfiles
        resolves opd from them and creates the directories there."""
        sysusers = tool(self, "systemd-sysusers")
        tmpfiles = tool(self, "systemd-tmpfiles")
        with tempfile.TemporaryDirectory() as root:
            p = run([sysusers, "--dry-run", f"--root={root}", SYSUSERS])
            self.assertEqual((p.returncode, sysusers_problems(p.stderr)), (0, []), p.stdout)
            self.assertIn("Would write /etc/passwd…", p.stderr)
            os.mkdir(os.path.join(root, "etc"))
            p = run([sysusers, f"--root={root}", SYSUSERS])
            self.assertEqual((p.returncode, sysusers_problems(p.stderr)), (0, []), p.stdout)
            with open(os.path.join(root, "etc", "passwd")) as f:
                passwd = {l.split(":")[0]: l.rstrip("\n").split(":") for l in f}
            with open(os.path.join(root, "etc", "group")) as f:
                group = {l.split(":")[0]: l.rstrip("\n").split(":") for l in f}
            self.assertEqual(passwd["opd"][4:6], ["opd microVM runner", "/var/lib/opd"])
            uid, gid = int(passwd["opd"][2]), int(passwd["opd"][3])
            self.assertEqual(int(group["opd"][2]), gid)
            # no supplementary group: VMMs run as uids of their own and open /dev/kvm themselves
            self.assertEqual([g for g, e in group.items() if "opd" in e[3].split(",")], [])

            p = run([tmpfiles, "--create", f"--root={root}", TMPFILES])
            self.assertEqual((p.returncode, p.stderr), (0, ""), p.stdout)
            want = {
                "run/opd": (0o755, 0, 0),
                "run/opd/vm": (0o700, uid, gid),
                "var/lib/opd": (0o750, uid, gid),
                "var/lib/opd/cache": (0o750, uid, gid),
                "var/lib/opd/images": (0o755, uid, gid),
            }
            for rel, expect in want.items():
                st = os.lstat(os.path.join(root, rel))
                self.assertTrue(stat.S_ISDIR(st.st_mode), rel)
                self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid), expect, rel)

    def test_service_lets_opd_jail_work(self):
        """opd starts as root (no User=), its helper's capabilities bound, the VMs' namespaces
        allowed (never a user namespace), their cgroup leaves delegated."""
        with open(SERVICE) as f:
            text = f.read()
        self.assertNotRegex(text, r"(?m)^User=")
        caps = re.search(r"(?m)^CapabilityBoundingSet=(.*)$", text).group(1).split()
        self.assertEqual(set(caps), {"CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP",
                                     "CAP_KILL", "CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"})
        self.assertIn("\nRestrictNamespaces=mnt pid net ipc uts\n", text)
        self.assertIn("\nDelegate=yes\n", text)
        self.assertIn("\nNoNewPrivileges=yes\n", text)

    def test_socket_matches_the_default_config(self):
        """opd.socket listens where opd.conf.example says opd listens, with the same mode."""
        with open(SOCKET) as f:
            sock = f.read()
        with open(os.path.join(UNITS, "opd.conf.example")) as f:
            conf = dict(l.split(" = ", 1) for l in f.read().splitlines()
                        if " = " in l and not l.startswith("#"))
        self.assertIn(f"ListenStream={conf['socket']}\n", sock)
        self.assertIn(f"SocketMode={conf['socket_mode']}\n", sock)
        self.assertTrue(conf["run_dir"].startswith("/run/opd/"))
        # run_dir is writable in opd's namespace and made by tmpfiles as opd's; never a
        # RuntimeDirectory=, which systemd gives back to root before every command of the unit
        with open(SERVICE) as f:
            service = f.read()
        rw = [l for l in service.splitlines() if l.startswith("ReadWritePaths=")]
        self.assertEqual(len(rw), 1, rw)
        self.assertIn(conf["run_dir"], rw[0].split("=", 1)[1].split())
        self.assertEqual([l for l in service.splitlines() if l.startswith("RuntimeDirectory")], [])
        with open(TMPFILES) as f:
            self.assertRegex(f.read(), rf"(?m)^d\s+{conf['run_dir']}\s+0700\s+opd\s+opd\s")


if __name__ == "__main__":
    unittest.main()
