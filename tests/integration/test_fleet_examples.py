"""packaging/kubernetes and packaging/nomad, the fleet examples (docs/fleet.md): what can be
checked without a cluster.

Each example's opd.conf passes the built `opd --check-config`, as shipped and with its S3 lines
turned on (the lines that start with "#s3 "), and plans the pools the sizing comments are
worked out for; the Kubernetes file parses as YAML both ways; the Nomad file's braces, brackets,
quotes and heredocs balance both ways (no HCL parser here); both examples give opd exactly the
capabilities of opd.service's CapabilityBoundingSet=; packaging/container/opd-seccomp.json is
what make-seccomp-profile makes from opd.service now, and lets opd-jail mount and pivot_root.

Needs python3-yaml and systemd-analyze (scripts/deps); a missing one fails the test.
"""
import json
import os
import re
import subprocess
import tempfile
import textwrap
import unittest

import yaml

from opdtest import OPD, SOURCE

K8S = os.path.join(SOURCE, "packaging", "kubernetes", "opd-daemonset.yaml")
NOMAD = os.path.join(SOURCE, "packaging", "nomad", "opd.nomad")
SECCOMP = os.path.join(SOURCE, "packaging", "container", "opd-seccomp.json")
MAKE_SECCOMP = os.path.join(SOURCE, "packaging", "container", "make-seccomp-profile")
SERVICE = os.path.join(SOURCE, "systemd", "opd.service")
LANGUAGES = os.path.join(SOURCE, "languages", "languages.json")


def with_s3(text):
    return re.sub(r"^(\s*)#s3 ", r"\1", text, flags=re.M)


def k8s_docs(text):
    return {d["kind"]: d for d in yaml.safe_load_all(text)}


def nomad_conf(text):
    """The opd.conf heredoc of the Nomad file's locals block, as Nomad renders it (<<- strips
    the common indentation)."""
    m = re.search(r"^  opd_conf = <<-EOT\n(.*?)^\s*EOT$", text, re.M | re.S)
    if m is None:
        raise AssertionError("no `opd_conf = <<-EOT ... EOT` in the Nomad file")
    return textwrap.dedent(m.group(1))


def hcl_balance(text):
    """Problems with the HCL's nesting: brackets that do not pair, a string not closed on its
    line, a heredoc without its end. Comments (#, //) and heredoc bodies are skipped; ${...}
    inside strings is not (the example has none)."""
    problems, stack = [], []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line, n = lines[i], i + 1
        j = 0
        while j < len(line):
            c = line[j]
            if c == "#" or line.startswith("//", j):
                break
            if c == '"':
                k = j + 1
                while k < len(line) and line[k] != '"':
                    k += 2 if line[k] == "\\" else 1
                if k >= len(line):
                    problems.append(f"line {n}: string not closed")
                j = k + 1
                continue
            m = re.match(r"<<-?([A-Z]+)", line[j:])
            if m:
                end = next((k for k in range(i + 1, len(lines))
                            if lines[k].strip() == m.group(1)), None)
                if end is None:
                    problems.append(f"line {n}: heredoc {m.group(1)} never ends")
                    return problems
                i = end
                break
            if c in "{[(":
                stack.append((c, n))
            elif c in "}])":
                if not stack or "{[(".index(stack[-1][0]) != "}])".index(c):
                    problems.append(f"line {n}: unpaired {c}")
                else:
                    stack.pop()
            j += 1
        i += 1
    problems += [f"line {n}: {c} never closed" for c, n in stack]
    return problems


def unit_capabilities():
    with open(SERVICE) as f:
        m = re.search(r"^CapabilityBoundingSet=(.*)$", f.read(), re.M)
    return sorted(m.group(1).split())


class Examples(unittest.TestCase):
    def check_config(self, conf, what):
        """opd --check-config on conf; returns its output. With the tree's registry and an
        images directory that has every language of it (empty files: --check-config reads
        none), as a container image with every language built would."""
        path = os.path.join(self.tmp, "opd.conf")
        with open(path, "w") as f:
            f.write(conf)
        images = os.path.join(self.tmp, "images")
        with open(LANGUAGES) as f:
            names = [lang["name"] for lang in json.load(f)["languages"]]
        for name in names:
            os.makedirs(os.path.join(images, name), exist_ok=True)
            open(os.path.join(images, name, "rootfs.ext4"), "w").close()
        for name in ("vmlinux", "initrd.img"):
            open(os.path.join(images, name), "w").close()
        r = subprocess.run([OPD, "--config", path, "--languages", LANGUAGES, "--images", images,
                            "--check-config"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, f"{what}: opd --check-config:\n{r.stdout}{r.stderr}")
        return r.stdout

    def assert_plan(self, out, what):
        """The pools the sizing comments count: python 4, bash 2, nothing else."""
        pools = dict(re.findall(r"^# pool ([a-z0-9]+): ([0-9]+) x", out, re.M))
        self.assertTrue(pools, f"{what}: no pool plan in --check-config's output:\n{out}")
        self.assertEqual({k: v for k, v in pools.items() if v != "0"},
                         {"python": "4", "bash": "2"}, f"{what}: pool plan:\n{out}")
        for key, value in (("jail", "yes"), ("jail.user", "opd"), ("allow_tcg", "no"),
                           ("max_vms", "12"), ("max_restores", "2"),
                           ("languages.enabled", "bash,python")):
            self.assertRegex(out, rf"(?m)^{re.escape(key)} = {re.escape(value)}$", what)

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="opd-fleet-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def test_kubernetes(self):
        with open(K8S) as f:
            text = f.read()
        for what, t in (("as shipped", text), ("with S3", with_s3(text))):
            docs = k8s_docs(t)
            self.assertEqual(sorted(docs), ["ConfigMap", "DaemonSet", "Namespace"], what)
            conf = docs["ConfigMap"]["data"]["opd.conf"]
            out = self.check_config(conf, f"kubernetes {what}")
            self.assert_plan(out, f"kubernetes {what}")
            pod = docs["DaemonSet"]["spec"]["template"]["spec"]
            opd = next(c for c in pod["containers"] if c["name"] == "opd")
            sc = opd["securityContext"]
            self.assertEqual(sc["runAsUser"], 0)
            self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
            self.assertEqual(sorted("CAP_" + c for c in sc["capabilities"]["add"]),
                             unit_capabilities(), "the unit's CapabilityBoundingSet=")
            self.assertEqual(sc["seccompProfile"], {"type": "Localhost",
                                                    "localhostProfile": "opd-seccomp.json"})
            self.assertNotIn("AWS_SECRET_ACCESS_KEY", json.dumps(opd), "opd's environment")
            mounts = {m["name"] for m in opd["volumeMounts"]}
            self.assertLessEqual(mounts, {v["name"] for v in pod["volumes"]}, what)
            if what == "with S3":
                self.assertRegex(conf, r"(?m)^s3\.bucket = ")
                gateway = re.search(r"(?m)^s3\.gateway = (.*)$", conf).group(1)
                s3d = next(c for c in pod["initContainers"] if c["name"] == "opd-s3d")
                self.assertEqual(s3d["restartPolicy"], "Always")
                self.assertIn("AWS_SECRET_ACCESS_KEY", [e["name"] for e in s3d["env"]])
                for c in (opd, s3d):
                    dirs = [m["mountPath"] for m in c["volumeMounts"]
                            if m["name"] == "s3-socket"]
                    self.assertEqual(dirs, [os.path.dirname(gateway)], c["name"])
            else:
                self.assertNotIn("initContainers", pod)
                self.assertNotRegex(conf, r"(?m)^s3\.")

    def test_nomad(self):
        with open(NOMAD) as f:
            text = f.read()
        for what, t in (("as shipped", text), ("with S3", with_s3(text))):
            self.assertEqual(hcl_balance(t), [], f"nomad {what}")
            conf = nomad_conf(t)
            out = self.check_config(conf, f"nomad {what}")
            self.assert_plan(out, f"nomad {what}")
            caps = re.search(r"cap_add\s*=\s*\[([^\]]*)\]", t).group(1)
            self.assertEqual(sorted("CAP_" + c.upper() for c in re.findall(r'"([a-z_]+)"', caps)),
                             unit_capabilities(), "the unit's CapabilityBoundingSet=")
            self.assertIn('"seccomp=/etc/opd/opd-seccomp.json"', t)
            self.assertEqual(t.count("data          = local.opd_conf"), 1)
            if what == "with S3":
                gateway = re.search(r"(?m)^s3\.gateway = (.*)$", conf).group(1)
                self.assertTrue(gateway.startswith("/alloc/data/"), gateway)
                self.assertIn('task "opd-s3d"', t)
            else:
                self.assertNotRegex(conf, r"(?m)^s3\.")
                self.assertNotRegex(t, r'(?m)^\s*task "opd-s3d"')

    def test_seccomp_profile_is_the_units_filter(self):
        r = subprocess.run([MAKE_SECCOMP, SERVICE], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(SECCOMP) as f:
            shipped = f.read()
        self.assertEqual(shipped, r.stdout,
                         "packaging/container/opd-seccomp.json is not what make-seccomp-profile "
                         "makes from systemd/opd.service now: run it again")
        profile = json.loads(shipped)
        self.assertEqual(profile["defaultAction"], "SCMP_ACT_ERRNO")
        allowed = set(profile["syscalls"][0]["names"])
        for call in ("mount", "umount2", "pivot_root", "sethostname", "capset", "setgroups",
                     "setresuid", "setresgid", "seccomp", "clone", "close_range", "execve"):
            self.assertIn(call, allowed)
        for call in ("chroot", "ptrace", "process_vm_readv", "init_module", "reboot",
                     "settimeofday", "swapon", "bpf", "kexec_load"):
            self.assertNotIn(call, allowed)


if __name__ == "__main__":
    unittest.main()
