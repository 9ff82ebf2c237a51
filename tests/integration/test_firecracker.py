"""The Firecracker driver, end to end through the real opd, against tests/firecracker/
fake-firecracker: a stand-in that serves Firecracker's API as firecracker-api.yaml (v1.16.1)
defines it and checks every request opd sends (method, path, body schema, no unknown fields,
the documented ordering rules). It is not Firecracker: no guest runs; the real op-agent runs on
the host behind its vsock socket. See docs/firecracker.md."""
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

from opdtest import BUILD, IMAGES, OPD, SOURCE, Opd, pool, wait_for

FC_DIR = os.path.join(SOURCE, "tests", "firecracker")
FAKE = os.path.join(FC_DIR, "fake-firecracker")
FAKE_JAILER = os.path.join(FC_DIR, "fake-jailer")
AGENT = os.path.join(BUILD, "guest", "op-agent")
sys.path.insert(0, FC_DIR)
import fcspec  # noqa: E402


def processes_in(prefix):
    """Processes whose working directory is below prefix (VMMs, and the agents behind them)."""
    pids = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and os.readlink(f"/proc/{p}/cwd").startswith(prefix):
                pids.append(int(p))
        except OSError:
            continue
    return pids


def lines(path):
    try:
        with open(path) as f:
            return [json.loads(x) for x in f]
    except FileNotFoundError:
        return []


class Validator(unittest.TestCase):
    """The checker itself: the conformance test is only as strict as this."""

    def test_unknown_field_and_removed_version_are_violations(self):
        spec = fcspec.Spec()
        _, _, op = spec.operation("PUT", "/snapshot/create")
        schema, required = spec.body_schema(op)
        self.assertTrue(required)
        ok = {"snapshot_path": "s", "mem_file_path": "m", "snapshot_type": "Full"}
        self.assertEqual(spec.check(schema, ok), [])
        errs = spec.check(schema, {**ok, "version": "1.0.0"})
        self.assertTrue(any("'version' is not defined" in e for e in errs), errs)
        self.assertTrue(spec.check(schema, {**ok, "snapshot_type": "Incremental"}))
        self.assertTrue(spec.check(schema, {"snapshot_path": "s"}))  # mem_file_path missing
        _, _, op = spec.operation("PUT", "/vsock")
        self.assertTrue(spec.check(spec.body_schema(op)[0], {"guest_cid": 2, "uds_path": "v"}))
        _, params, _ = spec.operation("PUT", "/drives/rootfs")
        self.assertEqual(params, {"drive_id": "rootfs"})
        with self.assertRaises(LookupError):
            spec.operation("POST", "/vm")


class Config(unittest.TestCase):
    def check(self, *sets):
        argv = [OPD, "--check-config"]
        for kv in sets:
            argv += ["--set", kv]
        return subprocess.run(argv, capture_output=True, text=True)

    def test_refused_before_any_vm(self):
        p = self.check("vmm=firecracker", "vm.vcpus=3")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("vm.vcpus: Firecracker takes 1 or an even number up to 32, not 3", p.stderr)
        p = self.check("vmm=firecracker", "firecracker.jailer=/usr/bin/jailer")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("firecracker.jailer.uid: the jailed VMM must not run as root", p.stderr)
        p = self.check("vmm=cloud-hypervisor")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('vmm: expected "qemu" or "firecracker"', p.stderr)
        self.assertEqual(self.check("vmm=firecracker", "vm.vcpus=2").returncode, 0)


class Firecracker(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rec = tempfile.mkdtemp(prefix="opd-fc-rec-")
        cls.opd = Opd({"vmm": "firecracker", "firecracker.binary": FAKE,
                       "pool.sizes": "bash=1,python=0", "pool.fallback_cold": "yes",
                       "restore_timeout_ms": "20000", "boot_timeout_ms": "20000"},
                      env={"FAKE_FC_DIR": cls.rec, "FAKE_FC_AGENT": AGENT})

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()
        violations = lines(os.path.join(cls.rec, "violations.jsonl"))
        if violations:
            raise AssertionError(f"requests the API does not allow: {violations}")
        # opd waits for its VMM processes; what ran behind them (paused agents) goes with them
        wait_for(lambda: not processes_in(cls.opd.run_dir), 10,
                 lambda: f"the processes left behind to go: {processes_in(cls.opd.run_dir)}")

    def requests(self):
        return lines(os.path.join(self.rec, "requests.jsonl"))

    def of_vm(self, vm_id):
        return [(r["method"], r["path"], r.get("body")) for r in self.requests()
                if r["id"] == vm_id]

    def control(self, obj):
        with open(os.path.join(self.rec, "control.json.tmp"), "w") as f:
            json.dump(obj, f)
        os.rename(os.path.join(self.rec, "control.json.tmp"),
                  os.path.join(self.rec, "control.json"))

    def assertNoViolations(self):
        self.assertEqual(lines(os.path.join(self.rec, "violations.jsonl")), [])

    def test_1_cold_boot(self):
        st = self.opd.call({"op": "status"})
        self.assertEqual(st["vmm"], "firecracker")
        self.assertEqual(st["accel"], "kvm")
        a = self.opd.run("bash", "echo hello from $((6*7))")
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], "hello from 42\n")
        self.assertEqual(a["mode"], "cold")
        calls = self.of_vm(a["vm"])
        self.assertEqual([(m, p) for m, p, _ in calls], [
            ("PUT", "/boot-source"), ("PUT", "/drives/rootfs"), ("PUT", "/machine-config"),
            ("PUT", "/vsock"), ("PUT", "/entropy"), ("PUT", "/actions")])
        body = dict((p, b) for _, p, b in calls)
        self.assertEqual(body["/drives/rootfs"]["is_read_only"], True)
        self.assertEqual(body["/drives/rootfs"]["is_root_device"], True)
        self.assertEqual(body["/actions"], {"action_type": "InstanceStart"})
        self.assertEqual(body["/machine-config"]["mem_size_mib"], 512)
        self.assertIn("op.root=/dev/vda", body["/boot-source"]["boot_args"])
        self.assertNoViolations()

    def test_2_snapshot_restore_resume(self):
        a = self.opd.call({"op": "snapshot", "action": "create", "lang": "bash", "id": "s"},
                          timeout=120)
        self.assertTrue(a["ok"], a)
        version = a["version"]
        snapdir = os.path.join(self.opd.dir, "cache", "bash", version)
        with open(os.path.join(snapdir, "manifest.json")) as f:
            m = json.load(f)
        self.assertEqual((m["vmm"], m["vmm_version"], m["accel"]),
                         ("firecracker", "1.16.1", "kvm"))
        self.assertEqual(sorted(f["name"] for f in m["files"]),
                         ["initrd.img", "kernel", "mem", "rootfs.ext4", "vmstate"])
        create = [r for r in self.requests() if r["path"] == "/snapshot/create"]
        self.assertEqual(len(create), 1)
        self.assertEqual(create[0]["body"]["snapshot_type"], "Full")
        self.assertNotIn("version", create[0]["body"])
        maker = self.of_vm(create[0]["id"])
        self.assertEqual([(mm, p) for mm, p, _ in maker][-2:],
                         [("PATCH", "/vm"), ("PUT", "/snapshot/create")])
        self.assertEqual(maker[-2][2], {"state": "Paused"})

        wait_for(lambda: (lambda p: p if p["snapshot"] == version and p["ready"] >= 1
                          else None)(pool(self.opd, "bash")), 120,
                 lambda: f"a clone of {version}: {pool(self.opd, 'bash')}")
        loads = [r for r in self.requests() if r["path"] == "/snapshot/load"]
        self.assertTrue(loads)
        load = loads[0]
        clone = self.of_vm(load["id"])
        self.assertEqual(clone[0][:2], ("PUT", "/snapshot/load"))  # first thing, fresh process
        b = load["body"]
        self.assertEqual(b["mem_backend"]["backend_type"], "File")
        self.assertEqual(b["mem_backend"]["backend_path"], os.path.join(snapdir, "mem"))
        self.assertEqual(b["snapshot_path"], os.path.join(snapdir, "vmstate"))
        self.assertIs(b["resume_vm"], False)
        self.assertIs(b["clock_realtime"], True)
        self.assertEqual(b["vsock_override"]["uds_path"],
                         os.path.join(self.opd.run_dir, load["id"], "vsock.sock"))
        self.assertFalse([c for c in clone if c[1] == "/vsock"], "PUT /vsock after a load")

        a = self.opd.run("bash", "echo warm; echo err >&2", id=2)
        self.assertTrue(a["ok"], a)
        self.assertEqual((a["mode"], a["stdout"], a["stderr"]), ("warm", "warm\n", "err\n"))
        self.assertEqual(a["vm"], load["id"])
        self.assertEqual(self.of_vm(a["vm"])[1], ("PATCH", "/vm", {"state": "Resumed"}))
        self.assertNoViolations()

    def test_3_failed_load_is_a_failed_restore(self):
        wait_for(lambda: pool(self.opd, "bash")["ready"] >= 1, 120, "a clone")
        p = pool(self.opd, "bash")
        before = p["failures"] if "failures" in p else None
        self.control({"fail": {"PUT /snapshot/load": "Load snapshot error: injected by the test"}})
        try:
            a = self.opd.run("bash", "echo taken", id=3)  # takes the ready clone: a refill starts
            self.assertTrue(a["ok"], a)
            exits = wait_for(lambda: lines(os.path.join(self.rec, "exits.jsonl")), 30,
                             "a restore to be attempted")
            self.assertIn("injected", exits[0]["why"])
            wait_for(lambda: "restore failed (Firecracker: Load snapshot error: injected"
                     in self.opd.read_log(), 30,
                     lambda: f"the failed restore in opd's log:\n{self.opd.read_log()[-3000:]}")
            # its console, Firecracker's stdout and stderr, comes from the pipe opd drains: the
            # stand-in's first line (written before it answered anything) is in the tail
            self.assertRegex(self.opd.read_log(),
                             r"vm-\d+-\d+ console tail: fake-firecracker\[\d+\]: API server "
                             r"listening on \S+firecracker\.sock\\n")
            if before is not None:
                self.assertGreater(pool(self.opd, "bash")["failures"], before)
        finally:
            self.control({})
        # the pool recovers once loads succeed again; opd itself never stopped serving
        wait_for(lambda: pool(self.opd, "bash")["ready"] >= 1, 60,
                 lambda: f"the pool to recover: {pool(self.opd, 'bash')}")
        a = self.opd.run("bash", "echo again", id=4)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["mode"], "warm")

    def test_4_fault_message_reaches_the_caller(self):
        self.control({"fail": {"PUT /entropy": "Entropy device error: injected by the test"}})
        try:
            a = self.opd.run("python", "print(1)", id=5)  # python has no pool: a cold boot
        finally:
            self.control({})
        self.assertFalse(a["ok"], a)
        self.assertEqual(a["error"]["code"], "vm_failed")
        self.assertIn("Entropy device error: injected by the test", a["error"]["message"])
        self.assertNoViolations()

    def test_5_api_socket_per_vm(self):
        # the stand-in refuses to start on an existing API socket path, as Firecracker does
        spawns = lines(os.path.join(self.rec, "spawns.jsonl"))
        self.assertGreaterEqual(len(spawns), 4)
        for s in spawns:
            self.assertEqual(s["argv"][1:3], ["--api-sock", os.path.join(s["cwd"],
                                                                        "firecracker.sock")])
        self.assertNoViolations()


    def test_6_snapshot_only_on_its_release(self):
        # the same cache under Firecracker 1.17.0: the 1.16.1 snapshot is refused, never loaded
        other = Opd({"vmm": "firecracker", "firecracker.binary": FAKE,
                     "cache_dir": os.path.join(self.opd.dir, "cache"),
                     "pool.sizes": "bash=1,python=0", "snapshot_keep": "1000"},
                    env={"FAKE_FC_DIR": self.rec, "FAKE_FC_AGENT": AGENT,
                         "FAKE_FC_VERSION": "1.17.0"})
        try:
            p = wait_for(lambda: (lambda p: p if p["error"] else None)(pool(other, "bash")), 120,
                         "the other release's snapshot to be refused")
            self.assertIn("made by another release of the VMM (firecracker 1.16.1", p["error"])
            self.assertIsNone(p["snapshot"])
            loads = [r for r in self.requests() if r["path"] == "/snapshot/load"
                     and r["id"].startswith(f"vm-{other.proc.pid}-")]
            self.assertEqual(loads, [])
        finally:
            other.stop()


class Jailed(unittest.TestCase):
    """The same driver through the jailer's command line (fake-jailer: argv checked, jail
    directory made, no chroot): every path relative to the jail, snapshot files copied out
    (opd's, read-only) and hard-linked in, cgroup v2 limits passed, a stale jail of the same id cleaned before the spawn; and
    with dirty-page tracking, Diff snapshots."""

    @classmethod
    def setUpClass(cls):
        cls.rec = tempfile.mkdtemp(prefix="opd-fc-jail-rec-")
        # A jail's files are hard links: its chroot base and the snapshot cache must be on the
        # images' filesystem (opdtest keeps the tests' other state in RAM)
        cls.fs = tempfile.mkdtemp(prefix="opd-fc-jail-",
                                  dir=os.path.dirname(os.path.realpath(IMAGES)))
        atexit.register(shutil.rmtree, cls.fs, True)
        os.chmod(cls.fs, 0o711)
        cls.base = os.path.join(cls.fs, "jails")
        os.mkdir(cls.base, 0o700)
        # jails an opd left when it was killed: the dead one's go at start, a live one's stay
        dead = subprocess.Popen(["true"])
        dead.wait()
        cls.dead_jail = os.path.join(cls.base, "fake-firecracker", f"vm-{dead.pid}-7")
        cls.live_jail = os.path.join(cls.base, "fake-firecracker", f"vm-{os.getpid()}-7")
        for j in (cls.dead_jail, cls.live_jail):
            os.makedirs(os.path.join(j, "root"))
            open(os.path.join(j, "root", "mem"), "w").close()
        cls.opd = Opd({"vmm": "firecracker", "firecracker.binary": FAKE,
                       "firecracker.jailer": FAKE_JAILER, "firecracker.jailer.uid": "1000",
                       "firecracker.jailer.gid": "1001", "firecracker.jailer.chroot_base": cls.base,
                       "cache_dir": os.path.join(cls.fs, "cache"),
                       "firecracker.jailer.memory_max_mb": "640",
                       "firecracker.jailer.cpu_max_pct": "100",
                       "firecracker.track_dirty_pages": "1",
                       "pool.sizes": "bash=1,python=0", "pool.fallback_cold": "yes",
                       "restore_timeout_ms": "20000", "boot_timeout_ms": "20000"},
                      env={"FAKE_FC_DIR": cls.rec, "FAKE_FC_AGENT": AGENT})

    @classmethod
    def tearDownClass(cls):
        cls.opd.stop()
        violations = lines(os.path.join(cls.rec, "violations.jsonl"))
        if violations:
            raise AssertionError(f"requests the API or the jailer does not allow: {violations}")
        wait_for(lambda: not processes_in(cls.base), 10,
                 lambda: f"the processes left behind to go: {processes_in(cls.base)}")

    def jail(self, vm_id):
        return os.path.join(self.base, "fake-firecracker", vm_id)

    def test_0_jails_of_a_dead_opd_removed(self):
        self.assertFalse(os.path.exists(self.dead_jail))
        self.assertTrue(os.path.exists(self.live_jail))
        self.assertIn("removed 1 jails left in", self.opd.read_log())

    def test_1_cold_stale_jail(self):
        a = self.opd.run("bash", "echo jailed", id=1)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], "jailed\n")
        j = lines(os.path.join(self.rec, "jailer.jsonl"))[-1]
        # jail = yes (the default): a uid of its own from jail.uid_min..uid_max, gid the same
        # number, instead of firecracker.jailer.uid and .gid
        self.assertEqual((j["id"], j["gid"], j["cgroup_version"]), (a["vm"], j["uid"], "2"))
        self.assertTrue(1879048192 <= j["uid"] <= 1879048192 + 1023, j["uid"])
        self.assertEqual(j["cgroups"], ["memory.max=671088640", "cpu.max=100000 100000"])
        self.assertEqual(j["rest"], ["--api-sock", "/run/firecracker.socket"])
        wait_for(lambda: not os.path.exists(self.jail(a["vm"])), 120,
                 "the jail to go with its VM")

        # a jail left by a VM of the same id (an opd that died), sockets and all
        prefix, n = a["vm"].rsplit("-", 1)
        nxt = f"{prefix}-{int(n) + 1}"
        root = os.path.join(self.jail(nxt), "root")
        os.makedirs(os.path.join(root, "run"))
        for path in (os.path.join(root, "run", "firecracker.socket"),
                     os.path.join(root, "vsock.sock")):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.close()
        a = self.opd.run("bash", "echo again", id=2)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["vm"], nxt)
        self.assertEqual(lines(os.path.join(self.rec, "violations.jsonl")), [])

    def test_2_snapshot_and_restore_in_jails(self):
        a = self.opd.call({"op": "snapshot", "action": "create", "lang": "bash", "id": "s"},
                          timeout=120)
        self.assertTrue(a["ok"], a)
        version = a["version"]
        create = [r for r in lines(os.path.join(self.rec, "requests.jsonl"))
                  if r["path"] == "/snapshot/create"][-1]
        self.assertEqual(create["body"], {"snapshot_path": "vmstate", "mem_file_path": "mem",
                                          "snapshot_type": "Diff"})
        boot = [r for r in lines(os.path.join(self.rec, "requests.jsonl"))
                if r["id"] == create["id"] and r["path"] == "/machine-config"][0]
        self.assertIs(boot["body"]["track_dirty_pages"], True)
        snapdir = os.path.join(self.fs, "cache", "bash", version)
        self.assertTrue(os.path.getsize(os.path.join(snapdir, "mem")) > 0)
        wait_for(lambda: (lambda p: p["snapshot"] == version and p["ready"] >= 1)(
            pool(self.opd, "bash")), 120, "the pool to fill")
        load = [r for r in lines(os.path.join(self.rec, "requests.jsonl"))
                if r["path"] == "/snapshot/load"][-1]
        self.assertEqual(load["body"]["snapshot_path"], "vmstate")
        self.assertEqual(load["body"]["mem_backend"], {"backend_type": "File",
                                                       "backend_path": "mem"})
        self.assertEqual(load["body"]["vsock_override"], {"uds_path": "vsock.sock"})
        self.assertIs(load["body"]["track_dirty_pages"], True)
        # hard links, not copies: the jail's memory file is the cache's, which is opd's and
        # read-only (copied out of the jail that wrote it, not linked: no jail uid owns it)
        st = os.stat(os.path.join(self.jail(load["id"]), "root", "mem"))
        self.assertEqual(st.st_ino, os.stat(os.path.join(snapdir, "mem")).st_ino)
        for name in ("mem", "vmstate"):
            st = os.stat(os.path.join(snapdir, name))
            self.assertEqual((st.st_uid, st.st_mode & 0o777), (os.getuid(), 0o444), name)
        a = self.opd.run("bash", "echo warm in a jail", id=3)
        self.assertTrue(a["ok"], a)
        self.assertEqual((a["mode"], a["stdout"]), ("warm", "warm in a jail\n"))

    def test_3_hostile_snapshot_files_refused(self):
        # a compromised VMM owns its jail: a FIFO as mem would hang opd in open(), a huge sparse
        # file would be written out into the cache; each fails the save, naming the file
        cases = {"fifo": "/mem is a FIFO, not a regular file",
                 "huge": "/mem is 1099511627776 bytes, more than the 536870912 of the VM's memory"}
        for kind, words in cases.items():
            with self.subTest(kind):
                self.control({"hostile_mem": kind})
                try:
                    a = self.opd.call({"op": "snapshot", "action": "create", "lang": "bash",
                                       "id": f"hostile-{kind}"}, timeout=60)
                finally:
                    self.control({})
                self.assertFalse(a["ok"], a)
                self.assertIn("copying the snapshot out of its jail: ", a["error"]["message"])
                self.assertIn(words, a["error"]["message"])
                self.assertRegex(self.opd.read_log(), r"vm-\d+-\d+: copying the snapshot out of "
                                 r"its jail: \S+" + words.replace(".", r"\."))
        # nothing of them in the cache, and opd serves on
        big = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(self.fs, "cache"))
               for f in fs if os.stat(os.path.join(d, f)).st_size > 1 << 30]
        self.assertEqual(big, [])
        a = self.opd.run("bash", "echo still serving", id=4)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["stdout"], "still serving\n")

    def test_4_session_paused_and_resumed_in_jails(self):
        # a clone's jail holds links of its snapshot's vmstate and mem: a save replaces them
        # with files of its own (never written through into the cache), copied out as opd's
        wait_for(lambda: pool(self.opd, "bash")["ready"] >= 1, 120, "a clone")
        snapdir = os.path.join(self.fs, "cache", "bash", pool(self.opd, "bash")["snapshot"])
        before = {n: os.stat(os.path.join(snapdir, n)) for n in ("vmstate", "mem")}
        s = self.opd.call({"op": "session_open", "lang": "bash", "id": "o"})
        self.assertTrue(s["ok"], s)
        sid = s["session"]
        a = self.opd.call({"op": "session_pause", "session": sid, "id": "p"}, timeout=120)
        self.assertTrue(a["ok"], a)
        self.assertEqual(a["state"], "paused")
        d = os.path.join(self.fs, "cache", ".paused", "0", sid)
        for name in ("vmstate", "mem"):
            st = os.stat(os.path.join(d, name))
            self.assertEqual((st.st_uid, st.st_mode & 0o777, st.st_nlink), (os.getuid(), 0o444, 1),
                             name)
            was = before[name]
            now = os.stat(os.path.join(snapdir, name))
            self.assertEqual((now.st_ino, now.st_mtime_ns), (was.st_ino, was.st_mtime_ns), name)
        a = self.opd.call({"op": "session_resume", "session": sid, "id": "r"}, timeout=120)
        self.assertTrue(a["ok"], a)
        a = self.opd.call({"op": "session_exec", "session": sid, "code": "echo resumed",
                           "id": "x"})
        self.assertEqual(a.get("stdout"), "resumed\n", a)
        self.opd.call({"op": "session_close", "session": sid})

    def control(self, obj):
        with open(os.path.join(self.rec, "control.json.tmp"), "w") as f:
            json.dump(obj, f)
        os.rename(os.path.join(self.rec, "control.json.tmp"),
                  os.path.join(self.rec, "control.json"))


if __name__ == "__main__":
    unittest.main()
