"""packaging/: the Debian package built by CPack (packaging/deb.cmake) holds what the issue asks
for, its files work once extracted, its maintainer scripts set up a scratch root, and the man
pages and bash completion match opd's and opctl's --help.

Needs cpack (cmake), dpkg-deb (dpkg), groff (groff-base), bash and systemd-sysusers,
systemd-tmpfiles and systemctl (systemd); a missing tool fails the test. dpkg-shlibdeps
(dpkg-dev) is used by CPack when the build tree was configured with it. Nothing touches the
host: the package is built in a temporary directory and the maintainer scripts run with
DPKG_ROOT (as for `dpkg --root` without a chroot) on a scratch root.
"""
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

from opdtest import BUILD, OPCTL, OPD, SOURCE

CPACK_CONFIG = os.path.join(BUILD, "CPackConfig.cmake")


def run(argv, **kw):
    kw.setdefault("timeout", 600)
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def need(test, name, package):
    path = shutil.which(name)
    if path is None:
        test.fail(f"{name} not found: install the Debian package '{package}' (scripts/deps)")
    return path


def project_version():
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        return re.search(r"project\(opd VERSION ([0-9.]+)", f.read()).group(1)


def control_fields(text):
    fields, key = {}, None
    for line in text.splitlines():
        if line.startswith(" ") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
    return fields


def help_text(binary):
    p = run([binary, "--help"])
    assert p.returncode == 0, p.stderr
    return p.stdout


def long_options(text):
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", text))


def opctl_commands(text):
    section = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^  ([a-z]+) ", section, re.M))


def short_options(text):
    return set(re.findall(r"^\s+(-[a-zA-Z]),", text, re.M))


def roff_text(path):
    with open(path) as f:
        return f.read().replace("\\-", "-")


class Package(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="opd-package-")
        cls.deb = None
        cls.build_error = None
        if not os.path.exists(CPACK_CONFIG):
            cls.build_error = (f"{CPACK_CONFIG} is missing: configure the build tree again "
                               "(cmake includes packaging/deb.cmake)")
            return
        if shutil.which("cpack") is None or shutil.which("dpkg-deb") is None:
            cls.build_error = "cpack or dpkg-deb not found (Debian packages cmake, dpkg)"
            return
        p = run(["cpack", "--config", CPACK_CONFIG, "-G", "DEB", "-B", cls.tmp.name])
        debs = [f for f in os.listdir(cls.tmp.name) if f.endswith(".deb")]
        if p.returncode != 0 or len(debs) != 1:
            cls.build_error = f"cpack failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
            return
        cls.deb = os.path.join(cls.tmp.name, debs[0])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        if self.build_error:
            self.fail(self.build_error)

    def extract(self):
        """The package's files (dpkg-deb -x) and control files (-e) in a new scratch root."""
        root = tempfile.mkdtemp(prefix="root-", dir=self.tmp.name)
        p = run(["dpkg-deb", "-x", self.deb, root])
        self.assertEqual(p.returncode, 0, p.stderr)
        control = os.path.join(root, "DEBIAN")
        p = run(["dpkg-deb", "-e", self.deb, control])
        self.assertEqual(p.returncode, 0, p.stderr)
        return root, control

    def test_file_name_and_control(self):
        arch = run(["dpkg", "--print-architecture"]).stdout.strip()
        self.assertEqual(os.path.basename(self.deb), f"opd_{project_version()}_{arch}.deb")
        p = run(["dpkg-deb", "-f", self.deb])
        self.assertEqual(p.returncode, 0, p.stderr)
        f = control_fields(p.stdout)
        self.assertEqual(f["Package"], "opd")
        self.assertEqual(f["Version"], project_version())
        self.assertEqual(f["Maintainer"], "opd developers")
        depends = {d.strip().split(" ")[0] for d in f["Depends"].split(",")}
        for d in ("qemu-system-x86", "systemd", "procps", "libc6", "libjansson4",
                  "libevent-core-2.1-7", "libssl3", "libsystemd0"):
            self.assertIn(d, depends, f["Depends"])
        p = run(["dpkg-deb", "-I", self.deb])
        for name in ("conffiles", "postinst", "prerm", "postrm"):
            self.assertRegex(p.stdout, rf"\s{name}\s", p.stdout)

    def test_contents(self):
        p = run(["dpkg-deb", "-c", self.deb])
        self.assertEqual(p.returncode, 0, p.stderr)
        entries = {}
        for line in p.stdout.splitlines():
            fields = line.split()
            entries[fields[5].removeprefix("./").split(" -> ")[0]] = (fields[0], fields[1])
        expect = {
            "usr/sbin/opd": "-rwxr-xr-x",
            "usr/bin/opctl": "-rwxr-xr-x",
            "usr/libexec/opd/op-agent": "-rwxr-xr-x",
            "usr/libexec/opd/opd-jail": "-rwxr-xr-x",
            "usr/lib/systemd/system/opd.service": "-rw-r--r--",
            "usr/lib/systemd/system/opd.socket": "-rw-r--r--",
            "usr/lib/sysusers.d/opd.conf": "-rw-r--r--",
            "usr/lib/tmpfiles.d/opd.conf": "-rw-r--r--",
            "usr/share/opd/languages.json": "-rw-r--r--",
            "usr/share/opd/opd.conf.example": "-rw-r--r--",
            "usr/share/opd/opd-s3.conf": "-rw-r--r--",
            "usr/share/opd/prometheus/opd-rules.yml": "-rw-r--r--",
            "usr/share/bash-completion/completions/opctl": "-rw-r--r--",
            "usr/share/doc/opd/operations.md": "-rw-r--r--",
            "etc/opd/opd.conf": "-rw-r--r--",
        }
        for path, mode in expect.items():
            self.assertIn(path, entries, p.stdout)
            self.assertEqual(entries[path], (mode, "root/root"), path)
        for page in (r"usr/share/man/man8/opd\.8(\.gz)?", r"usr/share/man/man1/opctl\.1(\.gz)?"):
            self.assertTrue(any(re.fullmatch(page, e) for e in entries), page)
        # Nothing from the build or the source tree leaks in, and nothing outside /usr and /etc.
        for e in entries:
            self.assertRegex(e, r"^(usr|etc)(/|$)", e)
            self.assertNotIn("CMakeFiles", e)
        # The conffile is the example config, and the only conffile.
        root, control = self.extract()
        with open(os.path.join(control, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/opd/opd.conf"])
        with open(os.path.join(root, "etc/opd/opd.conf")) as a, \
                open(os.path.join(SOURCE, "systemd/opd.conf.example")) as b:
            self.assertEqual(a.read(), b.read())
        for script in ("postinst", "prerm", "postrm"):
            st = os.stat(os.path.join(control, script))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o755, script)

    def test_extracted_binaries_run(self):
        root, _ = self.extract()
        opd = os.path.join(root, "usr/sbin/opd")
        opctl = os.path.join(root, "usr/bin/opctl")
        p = run([opd, "--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith(f"opd {project_version()} "), p.stdout)
        p = run([opctl, "--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith(f"opctl {project_version()} "), p.stdout)
        # The installed config is valid and names the installed registry.
        p = run([opd, "--check-config", "--config", os.path.join(root, "etc/opd/opd.conf")])
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        self.assertRegex(p.stdout, r"(?m)^languages = /usr/share/opd/languages\.json$")
        # The unit starts the packaged binary with the packaged config.
        with open(os.path.join(root, "usr/lib/systemd/system/opd.service")) as f:
            self.assertIn("ExecStart=/usr/sbin/opd --config /etc/opd/opd.conf\n", f.read())

    def maintscript(self, control, root, name, *args):
        env = dict(os.environ, DPKG_ROOT=root, DPKG_MAINTSCRIPT_NAME=name,
                   DPKG_MAINTSCRIPT_PACKAGE="opd")
        p = run(["sh", "-e", os.path.join(control, name), *args], env=env)
        self.assertEqual(p.returncode, 0, f"{name} {' '.join(args)}:\n{p.stdout}{p.stderr}")
        return p

    def test_maintainer_scripts_on_a_scratch_root(self):
        for name in ("systemd-sysusers", "systemd-tmpfiles", "systemctl"):
            need(self, name, "systemd")
        root, control = self.extract()
        for script in ("postinst", "prerm", "postrm"):
            p = run(["sh", "-n", os.path.join(control, script)])
            self.assertEqual(p.returncode, 0, p.stderr)

        # First installation.
        self.maintscript(control, root, "postinst", "configure", "")
        with open(os.path.join(root, "etc/passwd")) as f:
            passwd = {l.split(":")[0]: l.rstrip("\n").split(":") for l in f}
        with open(os.path.join(root, "etc/group")) as f:
            group = {l.split(":")[0]: l.rstrip("\n").split(":") for l in f}
        self.assertIn("opd", passwd)
        self.assertIn("opd", group)
        self.assertEqual(passwd["opd"][5], "/var/lib/opd")
        # no supplementary group: VMMs run as uids of their own (opd-jail)
        self.assertEqual([g for g, e in group.items() if "opd" in e[3].split(",")], [])
        uid, gid = int(passwd["opd"][2]), int(passwd["opd"][3])
        self.assertEqual(gid, int(group["opd"][2]))
        expect = {"run/opd": (0o755, 0, 0), "var/lib/opd": (0o750, uid, gid),
                  "var/lib/opd/cache": (0o750, uid, gid), "var/lib/opd/images": (0o755, uid, gid)}
        for rel, (mode, u, g) in expect.items():
            st = os.lstat(os.path.join(root, rel))
            self.assertTrue(stat.S_ISDIR(st.st_mode), rel)
            self.assertEqual(stat.S_IMODE(st.st_mode), mode, rel)
            if os.geteuid() == 0:  # only root can give the directories away
                self.assertEqual((st.st_uid, st.st_gid), (u, g), rel)
        link = os.path.join(root, "etc/systemd/system/sockets.target.wants/opd.socket")
        self.assertEqual(os.readlink(link), "/usr/lib/systemd/system/opd.socket")
        # Nothing else was enabled (opd.service starts on the socket's first connection).
        self.assertFalse(os.path.lexists(
            os.path.join(root, "etc/systemd/system/multi-user.target.wants/opd.service")))

        # An upgrade keeps the user and an administrator's "systemctl disable".
        os.unlink(link)
        self.maintscript(control, root, "postinst", "configure", project_version())
        self.assertFalse(os.path.lexists(link))
        with open(os.path.join(root, "etc/passwd")) as f:
            self.assertEqual(sum(l.startswith("opd:") for l in f), 1)
        self.maintscript(control, root, "postinst", "configure", "")
        self.assertTrue(os.path.lexists(link))

        # Removal, then purge: the cache and the enable link go, the images and the user stay.
        with open(os.path.join(root, "var/lib/opd/images/vmlinux"), "w") as f:
            f.write("kernel")
        with open(os.path.join(root, "var/lib/opd/cache/snapshot"), "w") as f:
            f.write("snapshot")
        self.maintscript(control, root, "prerm", "remove")
        self.maintscript(control, root, "postrm", "remove")
        self.assertTrue(os.path.exists(os.path.join(root, "var/lib/opd/cache/snapshot")))
        self.maintscript(control, root, "postrm", "purge")
        self.assertFalse(os.path.lexists(link))
        self.assertFalse(os.path.exists(os.path.join(root, "var/lib/opd/cache")))
        self.assertFalse(os.path.exists(os.path.join(root, "run/opd")))
        self.assertTrue(os.path.exists(os.path.join(root, "var/lib/opd/images/vmlinux")))
        with open(os.path.join(root, "etc/passwd")) as f:
            self.assertIn("opd", {l.split(":")[0] for l in f})

    def test_man_pages_render_without_warnings(self):
        groff = need(self, "groff", "groff-base")
        root, _ = self.extract()
        for page in ("usr/share/man/man8/opd.8", "usr/share/man/man1/opctl.1"):
            path = os.path.join(root, page)
            p = run([groff, "-man", "-Tutf8", "-ww", "-z", path])
            self.assertEqual((p.returncode, p.stderr), (0, ""), page)
            if shutil.which("man"):
                p = run(["man", "--warnings", "-l", path], env=dict(os.environ, MANPAGER="cat"))
                self.assertEqual((p.returncode, p.stderr), (0, ""), page)
                self.assertIn("NAME", p.stdout)

    def test_man_pages_and_completion_match_help(self):
        """Every option of opd --help is in opd(8); every command and option of opctl --help is
        in opctl(1) and in the bash completion."""
        opd_help, opctl_help = help_text(OPD), help_text(OPCTL)
        page = roff_text(os.path.join(SOURCE, "packaging/man/opd.8"))
        for opt in long_options(opd_help) | short_options(opd_help):
            self.assertRegex(page, rf"(?<![\w-]){re.escape(opt)}(?![\w-])", f"opd.8 lacks {opt}")
        page = roff_text(os.path.join(SOURCE, "packaging/man/opctl.1"))
        with open(os.path.join(SOURCE, "packaging/completion/opctl")) as f:
            completion = f.read()
        words = long_options(opctl_help) | short_options(opctl_help) | opctl_commands(opctl_help)
        self.assertTrue({"run", "status", "ping", "snapshot", "--lang", "--json"} <= words, words)
        for w in words:
            self.assertRegex(page, rf"(?<![\w-]){re.escape(w)}(?![\w-])", f"opctl.1 lacks {w}")
            self.assertRegex(completion, rf"(?<![\w-]){re.escape(w)}(?![\w-])",
                             f"the completion lacks {w}")

    def complete(self, line):
        """What the packaged completion offers for LINE (the cursor at its end), with
        bash-completion's helpers stubbed: words split on blanks."""
        script = os.path.join(SOURCE, "packaging/completion/opctl")
        stub = r"""
_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD;
  cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; }
_filedir() { COMPREPLY=(FILES); }
source "$1"
read -ra COMP_WORDS <<<"$2"
[[ $2 == *' ' ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_opctl
printf '%s\n' "${COMPREPLY[@]}"
"""
        p = run(["bash", "-c", stub, "bash", script, line], env=dict(os.environ, PATH="/usr/bin:/bin"))
        self.assertEqual(p.returncode, 0, p.stderr)
        return set(p.stdout.split())

    def test_completion(self):
        bash = need(self, "bash", "bash")
        root, _ = self.extract()
        p = run([bash, "-n", os.path.join(root, "usr/share/bash-completion/completions/opctl")])
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        commands = opctl_commands(help_text(OPCTL))
        self.assertTrue(commands <= self.complete("opctl "), commands)
        self.assertEqual(self.complete("opctl st"), {"status"})
        self.assertEqual(self.complete("opctl --json sn"), {"snapshot"})
        self.assertEqual(self.complete("opctl snapshot "),
                         {"create", "list", "reload", "verify", "sync", "push", "keygen"})
        self.assertEqual(self.complete("opctl run --mo"), {"--mode"})
        self.assertEqual(self.complete("opctl run --mode "), {"auto", "warm", "cold"})
        self.assertEqual(self.complete("opctl run --file "), {"FILES"})
        self.assertIn("--timings", self.complete("opctl run --lang python --"))
        self.assertEqual(self.complete("opctl --socket "), {"FILES"})
        self.assertEqual(self.complete("opctl --timeout-ms "), set())


if __name__ == "__main__":
    unittest.main()
