"""Image groups (languages.json "image"): the languages of a group share one root filesystem.
The recipe's reading of the catalogue (packaging/images/imagetool.py groups / group): which
groups a --lang list builds, the union of the members' packages, and two members' links or
installs at one path that disagree failing the build with both names. With built images
(OPD_IMAGES), the members' rootfs.ext4 are one file: one inode, on disk once, and it is a
compressed erofs image whose files all decode."""
import glob
import json
import os
import subprocess
import tempfile
import unittest

from opdtest import IMAGES, SOURCE

TOOL = os.path.join(SOURCE, "packaging", "images", "imagetool.py")
CATALOGUE = os.path.join(SOURCE, "languages", "languages.json")


def tool(*args):
    return subprocess.run(["python3", TOOL, *args], capture_output=True, text=True, timeout=60)


def entry(name, **kw):
    return {"name": name, "file": "m", "run": ["x"], "packages": [name + "-pkg"],
            "version_cmd": ["true"], **kw}


class Groups(unittest.TestCase):
    def registry(self, *entries):
        d = tempfile.mkdtemp(prefix="opd-groups-")
        for name in ("a.txt", "b.txt"):
            with open(os.path.join(d, name), "w") as f:
                f.write(name)
        path = os.path.join(d, "languages.json")
        with open(path, "w") as f:
            json.dump({"languages": list(entries)}, f)
        return path

    def test_catalogue_groups(self):
        with open(CATALOGUE) as f:
            langs = json.load(f)["languages"]
        p = tool("groups", CATALOGUE, "")
        self.assertEqual(p.returncode, 0, p.stderr)
        groups = dict(line.split("\t") for line in p.stdout.splitlines())
        members = [m for ms in groups.values() for m in ms.split(",")]
        self.assertEqual(sorted(members), sorted(e["name"] for e in langs))
        for e in langs:
            self.assertIn(e["name"], groups[e.get("image", e["name"])].split(","))
        # CI's four build one group, and every member of it
        p = tool("groups", CATALOGUE, "bash,python,node,c")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(p.stdout.splitlines()), 1, p.stdout)
        p = tool("groups", CATALOGUE, "bash,nosuch")
        self.assertEqual(p.returncode, 1)
        self.assertIn("unknown language 'nosuch'", p.stderr)

    def test_default_group_is_own_name(self):
        reg = self.registry(entry("a"), entry("b", image="g"), entry("c", image="g"))
        p = tool("groups", reg, "")
        self.assertEqual(p.stdout, "a\ta\ng\tb,c\n", p.stderr)
        p = tool("groups", reg, "c")
        self.assertEqual(p.stdout, "g\tb,c\n", p.stderr)

    def test_union_and_shared_links(self):
        reg = self.registry(
            entry("a", image="g", packages=["p1", "p2"], links={"/usr/bin/cc": "gcc"},
                  install={"a.txt": "/usr/lib/op/a"}, setup="echo a"),
            entry("b", image="g", packages=["p2", "p3"], links={"/usr/bin/cc": "gcc"},
                  install={"a.txt": "/usr/lib/op/a", "b.txt": "/usr/lib/op/b"}))
        out = reg + ".wants"
        p = tool("group", reg, "g", out)
        self.assertEqual(p.returncode, 0, p.stderr)
        sh = subprocess.run(["bash", "-c", p.stdout + '\nprintf "%s\\n" "${members[*]}" '
                             '"${packages[*]}" "$setup_0" "$setup_1" "${vcmd_1[*]}"'],
                            capture_output=True, text=True, check=True).stdout
        self.assertEqual(sh.splitlines(), ["a b", "p1 p2 p3", "echo a", "", "true"])
        with open(out) as f:
            wants = sorted(line.split("\t")[:2] for line in f.read().splitlines())
        self.assertEqual(wants, [["install", "/usr/lib/op/a"], ["install", "/usr/lib/op/b"],
                                 ["link", "/usr/bin/cc"]])

    def test_conflicts_name_both(self):
        cases = [
            ({"links": {"/usr/bin/cc": "gcc"}}, {"links": {"/usr/bin/cc": "clang"}}),
            ({"install": {"a.txt": "/usr/lib/op/x"}}, {"install": {"b.txt": "/usr/lib/op/x"}}),
            ({"links": {"/usr/lib/op/x": "y"}}, {"warm": {"install": {"a.txt": "/usr/lib/op/x"}}}),
        ]
        for ka, kb in cases:
            with self.subTest(a=ka, b=kb):
                reg = self.registry(entry("one", image="g", **ka), entry("two", image="g", **kb))
                p = tool("group", reg, "g", reg + ".wants")
                self.assertEqual(p.returncode, 1, p.stdout)
                self.assertIn("image group conflict at /usr/lib/op/x" if "cc" not in str(ka)
                              else "image group conflict at /usr/bin/cc", p.stderr)
                self.assertIn("one wants", p.stderr)
                self.assertIn("two wants", p.stderr)

    def test_bad_image_names(self):
        for image in ("", "Gcc", "a/b", "x" * 33, ["g"]):
            with self.subTest(image=image):
                p = tool("groups", self.registry(entry("a", image=image)), "")
                self.assertEqual(p.returncode, 1)
                self.assertIn("'image' must be a name", p.stderr)
        # a group named after a language holds that language
        p = tool("groups", self.registry(entry("a", image="b"), entry("b", image="g")), "")
        self.assertEqual(p.returncode, 1)
        self.assertIn("named after language 'b'", p.stderr)


class BuiltGroups(unittest.TestCase):
    """The images in OPD_IMAGES: members of one group share their root's inode (a hard link
    to DIR/.groups/<group>/rootfs.ext4), and each has its own version."""

    def test_members_share_one_file(self):
        with open(CATALOGUE) as f:
            langs = json.load(f)["languages"]
        groups = {}
        for e in langs:
            if os.path.exists(os.path.join(IMAGES, e["name"], "rootfs.ext4")):
                groups.setdefault(e.get("image", e["name"]), []).append(e["name"])
        if not groups:
            self.skipTest(f"no images in {IMAGES}")
        for g, members in groups.items():
            with self.subTest(group=g):
                shared = os.stat(os.path.join(IMAGES, ".groups", g, "rootfs.ext4"))
                for m in members:
                    st = os.stat(os.path.join(IMAGES, m, "rootfs.ext4"))
                    self.assertEqual((st.st_dev, st.st_ino), (shared.st_dev, shared.st_ino), m)
                    with open(os.path.join(IMAGES, m, "version")) as f:
                        self.assertTrue(f.read().strip(), m)

    def test_roots_are_whole_erofs(self):
        """Each built group's root is an erofs image (the guest's init tells it by this
        superblock magic) whose every file decodes, with the files' own times kept."""
        roots = sorted(glob.glob(os.path.join(IMAGES, ".groups", "*", "rootfs.ext4")))
        if not roots:
            self.skipTest(f"no image groups in {IMAGES}")
        env = dict(os.environ, PATH=os.environ["PATH"] + ":/usr/sbin:/sbin")
        for root in roots:
            with self.subTest(root=root):
                with open(root, "rb") as f:
                    head = f.read(2048)
                self.assertEqual(head[1024:1028], bytes.fromhex("e2e1f5e0"))
                p = subprocess.run(["fsck.erofs", "--extract", root], capture_output=True,
                                   text=True, timeout=600, env=env)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                # Every group holds busybox's static binary: its time is the package's, not the
                # 1970 that one fixed time for all files (mkfs.erofs -T0) would give.
                p = subprocess.run(["dump.erofs", "--path=/bin/busybox", root],
                                   capture_output=True, text=True, timeout=60, env=env)
                self.assertEqual(p.returncode, 0, p.stderr)
                stamp = next(l for l in p.stdout.splitlines() if l.startswith("Timestamp:"))
                year = int(stamp.split()[1][:4])
                self.assertGreater(year, 2000, stamp)


if __name__ == "__main__":
    unittest.main()
