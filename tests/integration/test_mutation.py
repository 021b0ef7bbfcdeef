"""The dataset changing under a serving daemon: files deleted, truncated,
replaced or made unreadable; a class folder swapped for a symlink; a FIFO,
a device node or a 0-byte file where a JPEG was; manifest lines with '..'
or an absolute path. Each is a clear error or a counted replacement, never
a hang or a crash, and a repeated request returns the same bytes. And the
daemon's own trouble (out of file descriptors) is not the file's: the
request fails with INTERNAL, retryable, and no good file is marked bad."""

import os
import resource
import shutil
import stat
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

import cutmixd
import gen_dataset
from helpers import BIN, EX_CONFIG, Daemon, Dataset, lowest_free_fd, require_binary

PIPE = {"p": dict(batch_size=8, size=64, crop="center", resize=64, flip=0.0, shuffle=False)}
VICTIM = 2  # dataset index of the file that is changed


def make_ds(tmp_path, manifest=False):
    root = tmp_path / "root"
    man = tmp_path / "labels.tsv" if manifest else None
    s = gen_dataset.make_dataset(root, classes=2, per_class=4, size=(64, 64),
                                 subsampling="420", seed=9, manifest=man)
    return Dataset(root, s, man)


class UnprivilegedDaemon(Daemon):
    """As root, run without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH so that
    file permissions bind (as they do for the service's DynamicUser)."""

    def command(self):
        cmd = super().command()
        if os.geteuid() == 0:
            cmd = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                   "--bounding-set=-dac_override,-dac_read_search", "--"] + cmd
        return cmd


def frames(b):
    return [bytes(f) for f in b.raw_frames[1:]]


def mutate(kind, ds, tmp_path):
    """Change the victim; return (expected error text or None when it is
    served, the pixels it must then have)."""
    p = ds.root / ds.samples[VICTIM].path
    if kind == "deleted":
        p.unlink()
        return "No such file or directory", None
    if kind == "truncated":
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * 0.6)])
        return "jpeg:", None
    if kind == "zero_bytes":
        p.write_bytes(b"")
        return "empty file", None
    if kind == "unreadable":
        p.chmod(0)
        return "Permission denied", None
    if kind == "fifo":
        p.unlink()
        os.mkfifo(p)
        return "not a regular file", None
    if kind == "device":
        p.unlink()
        os.mknod(p, 0o644 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
        return "not a regular file", None
    if kind == "replaced":
        img = Image.new("RGB", (64, 64), (12, 200, 99))
        tmp = p.with_suffix(".new")
        img.save(tmp, "JPEG", quality=95)
        os.replace(tmp, p)
        with Image.open(p) as im:
            return None, np.asarray(im.convert("RGB"))
    if kind == "dir_to_link_inside":
        # the victim's class folder becomes a link to the other class's
        # folder (inside the root): the same names resolve there
        cls = ds.root / ds.samples[VICTIM].class_name
        other = ds.samples[4].class_name
        os.rename(cls, tmp_path / "old_class")
        os.symlink(other, cls)
        with Image.open(ds.root / other / os.path.basename(ds.samples[VICTIM].path)) as im:
            return None, np.asarray(im.convert("RGB"))
    raise AssertionError(kind)


KINDS = ["deleted", "truncated", "zero_bytes", "unreadable", "fifo", "device", "replaced",
         "dir_to_link_inside"]


@pytest.mark.parametrize("manifest", [False, True], ids=["folders", "manifest"])
@pytest.mark.parametrize("kind", KINDS)
def test_dataset_changes_while_serving(tmp_path, kind, manifest):
    if kind == "device" and os.geteuid() != 0:
        pytest.skip("mknod of a character device needs root")
    if kind == "unreadable" and os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.fail("setpriv (util-linux) is needed to drop capabilities as root")
    ds = make_ds(tmp_path, manifest)
    d = UnprivilegedDaemon(tmp_path / "d", ds.config(), PIPE)
    d.start()
    try:
        with d.client("p") as c:
            before = c.batch(0, 0)
            assert not before.meta["status"].any()
            why, pixels = mutate(kind, ds, tmp_path)
            t0 = time.monotonic()
            b = c.batch(0, 0)
            assert time.monotonic() - t0 < 10, "no hang"
            m = b.meta[VICTIM]
            bad = {e["path"]: e for e in c.stats()["bad_file_list"]}
            if why is None:
                assert m["status"] == 0 and m["source"] == VICTIM
                assert np.array_equal(b.images[VICTIM], pixels)
                assert not bad
            else:
                assert m["status"] == 1 and m["source"] != VICTIM, m
                src = int(m["source"])
                assert np.array_equal(b.images[VICTIM], ds.ref.image(src))
                assert m["label"] == ds.samples[src].label
                assert set(bad) == {ds.samples[VICTIM].path}, bad
                assert why in bad[ds.samples[VICTIM].path]["error"], bad
            # the rest is untouched (a swapped class folder changes its
            # whole class: the other class then)
            for i in range(4, 8) if kind == "dir_to_link_inside" else range(8):
                if i != VICTIM:
                    assert np.array_equal(b.images[i], before.images[i]), (i, b.meta[i], before.meta[i])
            again = c.batch(0, 0)
            assert frames(again) == frames(b), "the same bytes on a repeat"
        assert d.alive()
    finally:
        p = ds.root / ds.samples[VICTIM].path
        if p.exists() and not p.is_symlink() and kind == "unreadable":
            p.chmod(0o644)
        d.stop()


@pytest.mark.parametrize("line", ["../outside.jpg", "a/../../outside.jpg", "/etc/hostname"])
def test_manifest_line_out_of_the_root_is_refused(tmp_path, line):
    ds = make_ds(tmp_path, manifest=True)
    (tmp_path / "outside.jpg").write_bytes((ds.root / ds.samples[0].path).read_bytes())
    with open(ds.manifest, "a") as f:
        f.write("%s\tx\n" % line)
    d = Daemon(tmp_path / "d", ds.config(), PIPE)
    d.write_config()
    r = subprocess.run([str(require_binary(BIN)), "-c", str(d.config_path)],
                       capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == EX_CONFIG, r
    assert "labels.tsv:9: path '%s' escapes the dataset root" % line in r.stderr, r.stderr


# -- the daemon's own trouble ----------------------------------------------------------------

def test_out_of_file_descriptors_is_internal_not_a_bad_file(tmp_path):
    """With RLIMIT_NOFILE at the descriptors already open, every sample's
    open fails with EMFILE: the request fails with INTERNAL ("not a bad
    file; retry"), STATS lists no bad file, and once the limit is back
    the same request is served, with no replaced sample."""
    ds = make_ds(tmp_path)
    d = Daemon(tmp_path / "d", ds.config(), PIPE)
    d.start()
    pid = d.proc.pid
    try:
        with d.client("p") as c:
            good = c.batch(0, 0)
            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), hard))
            try:
                with pytest.raises(cutmixd.DaemonError) as ei:
                    c.batch(0, 0)
                assert ei.value.code == cutmixd.Status.INTERNAL, ei.value
                assert "Too many open files" in ei.value.message, ei.value.message
                assert "not a bad file; retry" in ei.value.message
                st = c.stats()
            finally:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
            assert st["bad_files"] == 0 and st["bad_file_list"] == [], st
            assert st["replaced"] == 0
            again = c.batch(0, 0)
            assert not again.meta["status"].any()
            assert frames(again) == frames(good)
            assert c.stats()["bad_files"] == 0
    finally:
        d.stop()
