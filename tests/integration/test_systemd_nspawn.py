"""The Debian package under a real systemd: a Debian 12 root (tests/integration/nspawn.py) booted
with `systemd-nspawn -b` (unified cgroup hierarchy, BPF allowed so that DevicePolicy= is
enforced), the .deb of this build tree installed in it, and from inside: socket activation,
READY/STATUS notification, the watchdog, reload, a cold and a warm exec with opctl, the sandbox
of opd and of every VMM, then stop, apt-get remove and apt-get purge.

The steps share one container and run in the order of their names; a failed step does not stop
the later ones. Needs root, systemd-container, mmdebstrap and, the first time (no root cached
under $OPD_CI_CACHE, default /var/cache/opd-ci), network access to Debian's archive; the
container itself has no network. Guest images come from $OPD_IMAGES (bash only). A missing tool
fails the test; it does not skip it. Where the time goes is printed on stderr.
"""
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest

import nspawn
from opdtest import BUILD, IMAGES, pool_settled, wait_for

CPACK_CONFIG = os.path.join(BUILD, "CPackConfig.cmake")
LANG = "bash"
POOL = 2  # paused clones: at least two VMMs to compare
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def status_fields(text):
    """/proc/PID/status as a dict of strings."""
    return dict((k, v.strip()) for k, sep, v in (l.partition(":") for l in text.splitlines()) if sep)


class SystemdNspawn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        problem = nspawn.need_tools()
        if problem:
            raise AssertionError(problem)
        for tool, package in (("cpack", "cmake"), ("dpkg-deb", "dpkg")):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool} not found: install '{package}' (scripts/deps)")
        if not os.path.exists(CPACK_CONFIG):
            raise AssertionError(f"{CPACK_CONFIG} is missing: configure the build tree")
        if not os.path.isdir(os.path.join(IMAGES, LANG)):
            raise AssertionError(f"no {LANG} image in {IMAGES} (OPD_IMAGES)")

        tmp = tempfile.TemporaryDirectory(prefix="opd-nspawn-deb-")
        cls.addClassCleanup(tmp.cleanup)
        nspawn.run(["cpack", "--config", CPACK_CONFIG, "-G", "DEB", "-B", tmp.name])
        debs = [f for f in os.listdir(tmp.name) if f.endswith(".deb")]
        assert len(debs) == 1, debs
        deb = os.path.join(tmp.name, debs[0])
        depends = nspawn.run(["dpkg-deb", "-f", deb, "Depends"]).stdout.strip()
        log(f"built {debs[0]}")

        root = nspawn.root_for(depends, log)
        log(f"root {root}")
        cls.ct = nspawn.Container(root, "opd-ci")
        cls.addClassCleanup(cls.ct.stop)
        cls.ct.start()
        cls.addClassCleanup(cls.dump_journal)
        log("container booted")

        shutil.copy(deb, cls.ct.path("/root/opd.deb"))
        # The container has no network: every dependency is in the root already.
        cls.install = cls.ct.run(["apt-get", "install", "-y", "--no-install-recommends",
                                  "/root/opd.deb"])
        log("package installed")

        # As an operator would: images copied in, the configuration edited before the first
        # connection starts opd.
        images = cls.ct.path("/var/lib/opd/images")
        for name in os.listdir(IMAGES):
            src = os.path.join(IMAGES, name)
            if os.path.isfile(src):
                shutil.copy(src, images)
        shutil.copytree(os.path.join(IMAGES, LANG), os.path.join(images, LANG))
        # the snapshot is made by hand below (test_06), not by opd itself
        # pool.max_size = 0: the pool keeps its size whatever the demand, so that once its clones
        # are restored the VMMs are those and no other (settled_vmms)
        conf = {"languages.enabled": LANG, "accel": "tcg", "pool.size": str(POOL),
                "pool.max_size": "0", "snapshot.create_missing": "no"}
        # TCG serves only when the configuration says so, in an opd that has the key.
        check = cls.ct.run(["opd", "--check-config", "--config", "/etc/opd/opd.conf"])
        if re.search(r"(?m)^allow_tcg = ", check.stdout):
            conf["allow_tcg"] = "yes"
        cls.set_config(conf)

    @classmethod
    def set_config(cls, values):
        """Set KEY = VALUE in the container's /etc/opd/opd.conf: the line that has the key (or
        has it commented out) is replaced, else one is added."""
        path = cls.ct.path("/etc/opd/opd.conf")
        with open(path) as f:
            text = f.read()
        for k, v in values.items():
            pattern = re.compile(rf"^#? ?{re.escape(k)} = .*$", re.M)
            if pattern.search(text):
                text = pattern.sub(f"{k} = {v}", text, count=1)
            else:
                text += f"{k} = {v}\n"
        with open(path, "w") as f:
            f.write(text)

    @classmethod
    def dump_journal(cls):
        p = cls.ct.run(["journalctl", "--no-pager", "-n", "60", "-u", "opd.service",
                        "-u", "opd.socket"], check=False)
        log("the container's journal of opd, last lines:\n" + p.stdout)

    # Helpers.

    def sh(self, script, **kw):
        return self.ct.sh(script, **kw).stdout

    def show(self, unit, *props):
        out = self.ct.run(["systemctl", "show", unit, *[f"--property={p}" for p in props]]).stdout
        return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)

    def journal(self, unit="opd.service"):
        return self.ct.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit]).stdout

    def opctl(self, *args, check=True, timeout=900):
        return self.ct.run(["opctl", *args], check=check, timeout=timeout)

    def pool(self):
        st = json.loads(self.opctl("--json", "status").stdout)
        return [l for l in st["languages"] if l["name"] == LANG][0]["pool"]

    def wait_pool_full(self, timeout=600):
        return wait_for(lambda: (
            lambda p: p if p["snapshot"] and p["ready"] >= p["target"] and not p["restoring"]
            else None)(self.pool()), timeout, f"{LANG} pool to have {POOL} paused clones", step=1)

    def main_pid(self):
        pid = int(self.show("opd.service", "MainPID")["MainPID"])
        self.assertNotEqual(pid, 0, "opd.service has no main process")
        return pid

    def procs(self, pids):
        """{pid: {status fields..., "comm", "cmdline", "ns_mnt", "ns_pid", "ns_net"}} of those
        of pids that live on after theirs are read: a process that ended meanwhile (gone, a
        zombie or exiting, as opdtest.ended tells) is left out, not read half."""
        script = r"""
for p in "$@"; do
  echo "=== $p"
  cat /proc/$p/status
  echo "comm: $(cat /proc/$p/comm)"
  echo "cmdline: $(tr '\0' ' ' </proc/$p/cmdline)"
  for n in mnt pid net; do echo "ns_$n: $(readlink /proc/$p/ns/$n)"; done
  awk '{ sub(/.*\) /, ""); exit !($1 != "Z" && $1 != "X" && int($7 / 4) % 2 == 0) }' \
    /proc/$p/stat && echo "live: yes"
done 2>/dev/null; true"""
        out = self.ct.run(["sh", "-c", script, "sh", *map(str, pids)]).stdout
        blocks = {int(block.split("\n", 1)[0]): status_fields(block.split("\n", 1)[1])
                  for block in out.split("=== ")[1:]}
        return {pid: st for pid, st in blocks.items() if st.get("live") == "yes"}

    def processes(self):
        """[(pid, uid, comm)] of every process in the container."""
        out = self.sh(r"""for p in /proc/[0-9]*; do
  echo "${p#/proc/} $(awk '/^Uid:/ {print $2}' $p/status) $(cat $p/comm)"
done 2>/dev/null; true""")
        return [(int(f[0]), int(f[1]), f[2]) for f in
                (l.split(None, 2) for l in out.splitlines()) if len(f) == 3]

    def vmm_pids(self):
        return [pid for pid, _, comm in self.processes()
                if re.match(r"qemu-system|firecracker", comm)]

    def settled_vmms(self, timeout=600):
        """The VMMs of the pool's POOL paused clones, once they are all there is (as
        opdtest's Opd.settled_vmms): POOL ready, none restoring or in use, no other VM, no VMM
        left of a VM destroyed before. The pool's target cannot move (pool.max_size = 0): the
        set stays until a request takes a clone."""
        def settled():
            st = json.loads(self.opctl("--json", "status").stdout)
            pids = self.vmm_pids()
            return sorted(pids) if pool_settled(st, LANG, POOL, pids) else None
        return wait_for(settled, timeout, lambda: f"{POOL} paused clones and no other VMM: "
                        f"{self.pool()}, VMMs {self.vmm_pids()}", step=1)

    def pid1_complaints(self):
        """What systemd logged about opd's units besides starting, stopping and listening."""
        boot = self.ct.run(["journalctl", "--no-pager", "-o", "cat", "-b", "_PID=1"]).stdout
        fine = re.compile(r"(Starting|Started|Stopping|Stopped|Listening on|Closed|Reloading|"
                          r"Reloaded) opd\.(socket|service)|opd\.service: (Deactivated "
                          r"successfully|Consumed .* CPU time)\.")
        return [l for l in boot.splitlines()
                if re.search(r"opd|/dev/kvm", l) and not fine.match(l)]

    # The steps, in order.

    def test_01_installed(self):
        self.assertRegex(self.install.stdout, r"Setting up opd ")
        self.assertEqual(self.ct.run(["dpkg-query", "-W", "-f=${Status}", "opd"]).stdout,
                         "install ok installed")
        self.ct.run(["getent", "passwd", "opd"])
        sock = self.show("opd.socket", "UnitFileState", "ActiveState", "SubState", "Listen")
        self.assertEqual((sock["UnitFileState"], sock["ActiveState"], sock["SubState"]),
                         ("enabled", "active", "listening"))
        self.assertEqual(sock["Listen"], "/run/opd/opd.sock (Stream)")
        svc = self.show("opd.service", "ActiveState")
        self.assertEqual(svc["ActiveState"], "inactive", "opd started before any connection")

    def test_02_socket_activation(self):
        """The first connection starts opd.service, which takes over the listening socket."""
        self.assertEqual(self.show("opd.service", "ActiveState")["ActiveState"], "inactive")
        out = self.opctl("status").stdout
        self.assertRegex(out, rf"(?m)^{LANG} ")
        svc = self.show("opd.service", "ActiveState", "SubState", "TriggeredBy", "NRestarts")
        self.assertEqual((svc["ActiveState"], svc["SubState"]), ("active", "running"))
        self.assertEqual(svc["TriggeredBy"], "opd.socket")
        self.assertIn("listening on the socket passed by systemd", self.journal())
        # systemd had nothing to say about the units (unknown settings, devices it cannot find).
        self.assertEqual(self.pid1_complaints(), [])

    def test_03_notify(self):
        """Type=notify: READY=1 made the unit active (above); STATUS= is opd's one-line summary."""
        svc = self.show("opd.service", "Type", "NotifyAccess", "StatusText", "MainPID")
        self.assertEqual((svc["Type"], svc["NotifyAccess"]), ("notify", "main"))
        self.assertRegex(svc["StatusText"], rf"^tcg; {LANG} ")
        self.assertEqual(self.sh(f"cat /proc/{svc['MainPID']}/comm").strip(), "opd")
        self.assertIn("ready", self.journal().splitlines())

    def test_04_watchdog(self):
        """WatchdogSec=30s reaches opd (it pings every 15 s) and systemd sees the pings."""
        svc = self.show("opd.service", "WatchdogUSec", "WatchdogTimestampMonotonic")
        self.assertEqual(svc["WatchdogUSec"], "30s")
        self.assertIn("watchdog: every 15000 ms", self.journal())
        first = int(svc["WatchdogTimestampMonotonic"])
        wait_for(lambda: int(self.show(
            "opd.service", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]) > first,
            120, "a WATCHDOG=1 ping", step=1)

    def test_05_cold_exec(self):
        p = self.opctl("--json", "run", "--no-stream", "--lang", LANG, "--mode", "cold",
                       "--code", "echo cold $((6 * 7))")
        self.assertRegex(p.stdout, r'"stdout": ?"cold 42\\n"')
        self.assertRegex(p.stdout, r'"mode": ?"cold"')

    def test_06_warm_exec(self):
        """A snapshot made through the running opd; the pool fills; a warm exec."""
        out = self.opctl("snapshot", "create", "--lang", LANG, "--timeout-ms", "900000").stdout
        self.assertRegex(out, rf"^{LANG}: snapshot \S+ installed")
        log("snapshot made")
        self.wait_pool_full()
        log("pool full")
        p = self.opctl("--json", "run", "--no-stream", "--lang", LANG, "--mode", "warm",
                       "--code", "echo warm $((6 * 7))")
        self.assertRegex(p.stdout, r'"stdout": ?"warm 42\\n"')
        self.assertRegex(p.stdout, r'"mode": ?"warm"')

    def test_07_opd_sandbox(self):
        pid = self.main_pid()
        st = self.procs([pid])[pid]
        uid = self.sh("id -u opd").strip()
        self.assertEqual(st["Uid"].split(), [uid] * 4)
        self.assertEqual(int(st["CapEff"], 16), 0)
        self.assertEqual(st["NoNewPrivs"], "1")
        self.assertEqual(st["Seccomp"], "2")

    def test_08_run_read_only(self):
        """In opd's mount namespace /run and every mount under it are read-only, even to root,
        except opd's run_dir /run/opd/vm."""
        pid = self.main_pid()
        script = r"""
ro="/run /run/lock /run/opd /run/systemd /run/user $(awk '$5 ~ "^/run/" {print $5}' /proc/self/mountinfo)"
for d in $ro; do
  [ -d "$d" ] && [ "$d" != /run/opd/vm ] || continue
  if touch "$d/.opd-ci-probe" 2>/dev/null; then rm -f "$d/.opd-ci-probe"; echo "writable $d"
  else echo "refused $d"; fi
done
touch /run/opd/vm/.opd-ci-probe && rm /run/opd/vm/.opd-ci-probe && echo "writable /run/opd/vm"
"""
        out = self.ct.run(["nsenter", f"--target={pid}", "--mount", "--", "sh", "-c",
                           script]).stdout.splitlines()
        self.assertIn("refused /run", out)
        self.assertIn("refused /run/lock", out)
        self.assertEqual([l for l in out if l.startswith("writable")], ["writable /run/opd/vm"])

    def test_09_device_policy(self):
        """DevicePolicy=closed is enforced: a process in opd.service's cgroup (even root) cannot
        open a device node outside the allow list, which one outside the service can."""
        self.assertEqual(self.show("opd.service", "DevicePolicy")["DevicePolicy"], "closed")
        disk = os.stat(self.ct.lower).st_dev
        script = f"""
d=/root/devices; mkdir -p $d
[ -e $d/tun ] || mknod $d/tun c 10 200
[ -e $d/mem ] || mknod $d/mem c 1 1
[ -e $d/disk ] || mknod $d/disk b {os.major(disk)} {os.minor(disk)}
(exec 3<>$d/tun) && echo "outside tun opened"
echo $$ >/sys/fs/cgroup/system.slice/opd.service/cgroup.procs
for n in tun mem disk; do
  if err=$( (exec 3<$d/$n) 2>&1); then echo "inside $n opened"; else echo "inside $n refused: $err"; fi
done
"""
        # Not in the container's cgroup namespace: the shell moves itself from the host's
        # cgroup into the service's, which only a process outside that namespace can.
        out = self.ct.run(["sh", "-c", script],
                          namespaces="--mount --uts --ipc --net --pid").stdout.splitlines()
        self.assertIn("outside tun opened", out)
        for n in ("tun", "mem", "disk"):
            self.assertTrue(any(re.fullmatch(rf"inside {n} refused: .*Operation not permitted", l)
                                for l in out), out)

    def test_10_vmm_sandbox(self):
        """Every VMM: a uid of its own (not root, not opd's, one per VM), no capabilities,
        no_new_privs, a seccomp filter with QEMU's own sandbox on, its own mount, pid and
        network namespaces."""
        listed = self.settled_vmms()
        opd = self.main_pid()
        procs = self.procs([opd] + listed)
        vmms = {p: s for p, s in procs.items() if p != opd}
        self.assertEqual(sorted(vmms), listed, procs)  # the settled set: none ended meanwhile
        opd_uid = procs[opd]["Uid"].split()[0]
        uids = {}
        for pid, st in vmms.items():
            uid = st["Uid"].split()
            with self.subTest(vmm=pid, check="capabilities"):
                self.assertEqual(int(st["CapEff"], 16), 0)
                self.assertEqual(int(st["CapPrm"], 16), 0)
            with self.subTest(vmm=pid, check="no_new_privs"):
                self.assertEqual(st["NoNewPrivs"], "1")
            with self.subTest(vmm=pid, check="seccomp"):
                self.assertEqual(st["Seccomp"], "2")
            with self.subTest(vmm=pid, check="qemu -sandbox"):
                if st["comm"].startswith("qemu"):
                    self.assertRegex(st["cmdline"], r"-sandbox on,\S*elevateprivileges=deny")
            with self.subTest(vmm=pid, check="uid"):
                self.assertEqual(len(set(uid)), 1, st["Uid"])
                self.assertNotIn(uid[0], ("0", opd_uid), st["Uid"])
                self.assertEqual(st["Groups"], "", "supplementary groups")
            uids[pid] = uid[0]
            for ns in ("mnt", "pid", "net"):
                with self.subTest(vmm=pid, check=f"own {ns} namespace"):
                    self.assertNotEqual(st["ns_" + ns], procs[opd]["ns_" + ns])
        with self.subTest(check="a uid per VM"):
            self.assertEqual(len(set(uids.values())), len(uids), uids)

    def owners(self):
        """Owner, group and mode of opd's run_dir and of each VM directory in it."""
        out = self.sh("stat -c '%n %U:%G %a' /run/opd/vm /run/opd/vm/vm-*; true")
        return dict(l.split(" ", 1) for l in out.splitlines() if l.startswith("/run/opd/vm"))

    def test_11_reload(self):
        """systemctl reload: opd reads its configuration again (a smaller pool), same process,
        still serving; the reload's command leaves opd's run_dir and its VMs' directories as they
        were, so the pool still restores clones after it."""
        pid = self.main_pid()
        self.assertEqual(self.owners()["/run/opd/vm"], "opd:opd 700")
        self.set_config({"pool.size": "1"})
        self.ct.run(["systemctl", "reload", "opd.service"])
        wait_for(lambda: self.pool()["target"] == 1, 120, "the reloaded pool size", step=0.2)
        svc = self.show("opd.service", "ActiveState", "MainPID", "NRestarts")
        self.assertEqual((svc["ActiveState"], svc["MainPID"], svc["NRestarts"]),
                         ("active", str(pid), "0"))
        self.assertIn("configuration reloaded", self.journal())
        self.assertEqual(self.pid1_complaints(), [])
        # systemd gives a RuntimeDirectory= tree back to root before each command of the unit
        after = self.owners()
        self.assertEqual(after["/run/opd/vm"], "opd:opd 700")
        self.assertEqual([d for d, own in after.items() if own.startswith("root:")], [], after)
        restores = self.pool()["restores"]
        p = self.opctl("--json", "run", "--no-stream", "--lang", LANG, "--code", "echo again")
        self.assertRegex(p.stdout, r'"stdout": ?"again\\n"')
        # the clone it took is replaced: a restore after the reload
        wait_for(lambda: (lambda p: p["ready"] == 1 and p["restores"] > restores)(self.pool()),
                 300, lambda: f"a clone restored after the reload: {self.pool()}", step=0.5)
        self.assertNotIn("cannot start a restore", self.journal())

    def test_12_stop_remove_purge(self):
        """Stop: opd and every VMM gone, the socket stays. apt-get remove: units stopped, the
        configuration and the cache kept. apt-get purge: what postrm says goes, goes."""
        self.ct.run(["systemctl", "stop", "opd.service"])
        self.assertEqual(self.show("opd.service", "ActiveState")["ActiveState"], "inactive")
        self.assertEqual(self.show("opd.socket", "ActiveState")["ActiveState"], "active")
        self.assertEqual(self.vmm_pids(), [])
        self.assertEqual([p for p in self.processes() if p[2] == "opd"], [])

        self.ct.run(["apt-get", "remove", "-y", "opd"])
        self.assertEqual(self.ct.run(["dpkg-query", "-W", "-f=${Status}", "opd"]).stdout,
                         "deinstall ok config-files")
        for unit in ("opd.socket", "opd.service"):
            st = self.show(unit, "LoadState", "ActiveState")
            self.assertEqual((st["LoadState"], st["ActiveState"]), ("not-found", "inactive"), unit)
        gone = self.sh("for f in /usr/sbin/opd /usr/bin/opctl /run/opd/opd.sock "
                       "/usr/lib/systemd/system/opd.service; do [ -e $f ] || echo $f; done")
        self.assertEqual(len(gone.split()), 4, gone)
        self.sh("test -f /etc/opd/opd.conf && test -d /var/lib/opd/cache/" + LANG)

        self.ct.run(["apt-get", "purge", "-y", "opd"])
        st = self.ct.run(["dpkg-query", "-W", "-f=${Status}", "opd"], check=False)
        self.assertTrue(st.returncode != 0 or st.stdout == "unknown ok not-installed", st.stdout)
        left = self.sh("for f in /etc/opd /var/lib/opd/cache /run/opd "
                       "/etc/systemd/system/sockets.target.wants/opd.socket; do "
                       "[ -e $f ] || [ -L $f ] && echo $f; done; true")
        self.assertEqual(left.split(), [])
        # Kept, as postrm says: the guest images and the opd user and group.
        self.sh(f"test -d /var/lib/opd/images/{LANG} && getent passwd opd && getent group opd")
        uid = int(self.sh("id -u opd"))
        self.assertEqual([p for p in self.processes() if p[1] == uid or p[2] == "opd"], [])


if __name__ == "__main__":
    unittest.main()
