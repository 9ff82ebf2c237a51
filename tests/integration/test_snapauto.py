"""snapshot.create_missing: opd makes the snapshot of a served language that has an image and no
snapshot by itself, in the background, and status says why a pool is empty meanwhile (no
snapshot, creating, failed with the error)."""
import os
import shutil
import tempfile
import unittest

from opdtest import IMAGES, Opd, pool, wait_for


class CreateMissing(unittest.TestCase):
    def test_failed_then_made_for_a_new_image(self):
        """A kernel QEMU cannot load: the creation fails and status says why; the same image is
        not tried again. A new kernel (renamed into place) is: the snapshot is made, verified and
        served, and status said why the pool was empty all along."""
        images = tempfile.mkdtemp(prefix="opd-test-images-")
        try:
            # copies: a snapshot hard-links its image files, and a symlink is refused there
            with open(os.path.join(images, "vmlinux"), "wb") as f:
                f.write(b"not a kernel\n" * 64)
            for name in ("initrd.img", "kernel-version"):
                if os.path.exists(os.path.join(IMAGES, name)):
                    shutil.copyfile(os.path.join(IMAGES, name), os.path.join(images, name))
            os.mkdir(os.path.join(images, "bash"))
            for name in ("rootfs.ext4", "version"):
                shutil.copyfile(os.path.join(IMAGES, "bash", name),
                                os.path.join(images, "bash", name))
            opd = Opd({"snapshot.create_missing": "yes", "languages.enabled": "bash",
                       "pool.size": "1", "images_dir": images})
            try:
                why = wait_for(lambda: (lambda r: r if r and r.startswith("snapshot creation failed")
                                        else None)(pool(opd, "bash")["empty_reason"]), 600,
                               lambda: f"the creation to fail: {pool(opd, 'bash')}\n{opd.read_log()}",
                               step=0.5)
                self.assertGreater(len(why), len("snapshot creation failed: "))
                self.assertIn("snapshot creation failed", pool(opd, "bash")["empty_reason"])
                self.assertEqual(opd.read_log().count("making one (snapshot.create_missing)"), 1)
                self.assertFalse(os.path.exists(os.path.join(opd.dir, "cache", "bash", "current")))

                # a new kernel, replaced by rename as build-images does
                shutil.copyfile(os.path.join(IMAGES, "vmlinux"), os.path.join(images, "vmlinux.new"))
                os.rename(os.path.join(images, "vmlinux.new"), os.path.join(images, "vmlinux"))
                reasons = set()

                def serving():
                    p = pool(opd, "bash")
                    if p["ready"] >= 1 and p["snapshot"]:
                        return p
                    reasons.add(p["empty_reason"])
                    return None

                p = wait_for(serving, 600,
                             lambda: f"bash to be served: {pool(opd, 'bash')}\n{opd.read_log()}",
                             step=0.5)
                self.assertIsNone(p["empty_reason"])
                for r in reasons:  # whatever was seen while empty says why
                    self.assertTrue(r.startswith("snapshot creation failed")
                                    or r.startswith("creating a snapshot")
                                    or r in ("restoring clones", "verifying a new snapshot version"),
                                    r)
                self.assertEqual(opd.read_log().count("making one (snapshot.create_missing)"), 2)
                cur = os.path.join(opd.dir, "cache", "bash", "current")
                self.assertEqual(os.readlink(cur), p["snapshot"])
                a = opd.run("bash", "echo warm", mode="warm")
                self.assertTrue(a["ok"], a)
                self.assertEqual(a["stdout"], "warm\n")
            finally:
                opd.stop()
        finally:
            shutil.rmtree(images, ignore_errors=True)

    def test_off(self):
        opd = Opd({"languages.enabled": "bash", "pool.size": "1"})  # opdtest: create_missing no
        try:
            p = pool(opd, "bash")
            self.assertEqual(p["ready"], 0)
            self.assertEqual(p["empty_reason"], "no snapshot: make one with opctl snapshot create")
        finally:
            opd.stop()

    def test_pool_size_zero(self):
        opd = Opd({"snapshot.create_missing": "yes", "languages.enabled": "bash",
                   "pool.size": "0"})
        try:
            self.assertEqual(pool(opd, "bash")["empty_reason"], "pool size 0 (pool.size, pool.sizes)")
            self.assertNotIn("create_missing", opd.read_log())
        finally:
            opd.stop()


if __name__ == "__main__":
    unittest.main()
