"""Paths under hostile neighbours: containment at every open (a file or a
class folder swapped for a link out of the root after start is a counted
bad file, never the outside image), dangling links in a manifest, FIFOs as
the config, the manifest or an authorized key file (refused, exit 78 at
start, old config kept on SIGHUP, no hang), a tree of symlinks that would
explode, the digest following file contents, and an unreadable class
folder that no longer fails every reload."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cutmixd
import gen_dataset
from helpers import BIN, EX_CONFIG, Daemon, Dataset, require_binary

PIPE = {"p": dict(batch_size=4, size=64, crop="center", resize=64, flip=0.0, shuffle=False)}
RED = (255, 0, 0)


def make_tree(tmp_path, manifest=False):
    """root/ (2 classes x 4 images of 64x64), outside/ (red images with the
    same names), both under tmp_path. Returns (Dataset, outside folder)."""
    root = tmp_path / "root"
    man = tmp_path / "labels.tsv" if manifest else None
    s = gen_dataset.make_dataset(root, classes=2, per_class=4, size=(64, 64),
                                 subsampling="444", seed=5, manifest=man)
    out = tmp_path / "outside"
    out.mkdir()
    for name in ("0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg", "later.jpg"):
        Image.new("RGB", (64, 64), RED).save(out / name, quality=95)
    return Dataset(root, s, man), out


def red_pixels(out):
    with Image.open(out / "0000.jpg") as im:
        return np.asarray(im.convert("RGB"))


def wait_log(d, text, after=0, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        log = d.log()[after:]
        for line in log.splitlines():
            if text in line:
                return line
        assert d.alive(), "cutmixd exited while waiting for %r:\n%s" % (text, d.tail())
        assert time.monotonic() < deadline, "no %r in the log within %gs:\n%s" % (
            text, timeout, d.tail())
        time.sleep(0.02)


def bad_entries(c):
    return {e["path"]: e for e in c.stats()["bad_file_list"]}


def check_not_outside(b, ds, red, bad_positions):
    for i, m in enumerate(b.meta):
        assert not np.array_equal(b.images[i], red), "position %d: the outside image" % i
        if i in bad_positions:
            assert m["status"] == 1 and m["source"] != m["index"], (i, m)
        src = int(m["source"])
        assert np.array_equal(b.images[i], ds.ref.image(src)), "position %d" % i


@pytest.mark.parametrize("manifest", [False, True], ids=["folders", "manifest"])
def test_file_swapped_for_a_link_out_after_start(daemon, tmp_path, manifest):
    ds, out = make_tree(tmp_path, manifest)
    red = red_pixels(out)
    d = daemon(ds.config(), PIPE)
    with d.client("p") as c:
        b = c.batch(0, 0)
        assert not b.meta["status"].any()
        a0 = bytes(b.raw_frames[3])
        victim = ds.root / ds.samples[1].path
        victim.unlink()
        victim.symlink_to(out / "0001.jpg")  # absolute, to outside
        b = c.batch(0, 0)
        check_not_outside(b, ds, red, {1})
        bad = bad_entries(c)
        assert set(bad) == {ds.samples[1].path}
        why = bad[ds.samples[1].path]["error"]
        assert "leaves the dataset root" in why and "follow_symlinks" in why, why
        assert str(tmp_path) not in why, "no absolute daemon paths in client errors: " + why
        # the same bytes on a repeat
        b2 = c.batch(0, 0)
        assert bytes(b2.raw_frames[3]) == bytes(b.raw_frames[3])
        assert bytes(b2.raw_frames[3]) != a0
    assert "leaves the dataset root" in d.log()


@pytest.mark.parametrize("manifest", [False, True], ids=["folders", "manifest"])
def test_class_folder_swapped_for_a_link_out_after_start(daemon, tmp_path, manifest):
    ds, out = make_tree(tmp_path, manifest)
    red = red_pixels(out)
    d = daemon(ds.config(), PIPE)
    cls1 = ds.samples[4].class_name
    with d.client("p") as c:
        assert not c.batch(0, 1).meta["status"].any()
        os.rename(ds.root / cls1, tmp_path / "moved")
        os.symlink("../outside", ds.root / cls1)  # relative, climbing out
        b = c.batch(0, 1)
        check_not_outside(b, ds, red, {0, 1, 2, 3})
        assert all(ds.samples[int(s)].label == 0 for s in b.meta["source"])
        assert set(bad_entries(c)) >= {s.path for s in ds.samples[4:8]} & {
            ds.samples[int(i)].path for i in b.meta["index"]}


def test_follow_symlinks_serves_links_out(daemon, tmp_path):
    ds, out = make_tree(tmp_path)
    red = red_pixels(out)
    cfg = dict(ds.config(), follow_symlinks=True)
    d = daemon(cfg, PIPE)
    victim = ds.root / ds.samples[2].path
    victim.unlink()
    victim.symlink_to(out / "0002.jpg")
    with d.client("p") as c:
        b = c.batch(0, 0)
        assert b.meta["status"][2] == 0
        assert np.array_equal(b.images[2], red)


def test_manifest_dangling_link_out_is_refused_at_start(tmp_path):
    ds, out = make_tree(tmp_path, manifest=True)
    (out / "later.jpg").unlink()  # the target does not exist yet
    os.symlink("../../outside/later.jpg", ds.root / ds.samples[0].class_name / "later.jpg")
    with open(ds.manifest, "a") as f:
        f.write("%s/later.jpg\t%s\n" % (ds.samples[0].class_name, ds.samples[0].class_name))
    d = Daemon(tmp_path / "d", ds.config(), PIPE)
    d.write_config()
    r = subprocess.run([str(require_binary(BIN)), "-c", str(d.config_path), "--check"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == EX_CONFIG, r
    assert ":9: path '%s/later.jpg' escapes the dataset root" % ds.samples[0].class_name \
        in r.stderr, r.stderr


def test_manifest_entry_that_appears_later_as_a_link_out(daemon, tmp_path):
    """Missing at start (fine: the decoder reports it), created later as a
    link to outside: refused at the open, counted."""
    ds, out = make_tree(tmp_path, manifest=True)
    cls = ds.samples[0].class_name
    lines = ds.manifest.read_text().splitlines()
    lines[2] = "%s/later.jpg\t%s" % (cls, cls)
    ds.manifest.write_text("\n".join(lines) + "\n")
    d = daemon(ds.config(), PIPE)
    with d.client("p") as c:
        b = c.batch(0, 0)
        assert b.meta["status"][2] == 1
        assert "No such file" in bad_entries(c)["%s/later.jpg" % cls]["error"]
        os.symlink(out / "later.jpg", ds.root / cls / "later.jpg")
        b = c.batch(0, 0)
        assert b.meta["status"][2] == 1
        assert not np.array_equal(b.images[2], red_pixels(out))


# -- FIFOs ------------------------------------------------------------------------------------

def run_check(config, timeout=15):
    t0 = time.monotonic()
    r = subprocess.run([str(require_binary(BIN)), "-c", str(config)], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r, time.monotonic() - t0


def keygen(folder, name):
    r = subprocess.run([str(BIN), "keygen", name], cwd=str(folder), capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r
    return folder / (name + ".key"), folder / (name + ".pub")


def test_fifo_as_config_is_refused_at_start(tmp_path):
    fifo = tmp_path / "cutmixd.ini"
    os.mkfifo(fifo)
    r, took = run_check(fifo)
    assert r.returncode == EX_CONFIG, r
    assert "%s: cannot open: not a regular file" % fifo in r.stderr, r.stderr
    assert took < 10


@pytest.mark.parametrize("what", ["manifest", "authorized_keys"])
def test_fifo_as_manifest_or_key_file_is_refused_at_start(tmp_path, what):
    ds, _ = make_tree(tmp_path, manifest=True)
    d = Daemon(tmp_path / "d", ds.config(), PIPE)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if what == "manifest":
        d.dataset = dict(d.dataset, manifest=str(fifo))
        want = "cannot read manifest '%s': not a regular file" % fifo
    else:
        key, _ = keygen(tmp_path, "server")
        d.security = {"curve_secret_key_file": str(key), "authorized_keys": str(fifo)}
        want = "%s: not a regular file" % fifo
    d.write_config()
    r, took = run_check(d.config_path)
    assert r.returncode == EX_CONFIG, r
    assert want in r.stderr, r.stderr
    assert took < 10


@pytest.mark.parametrize("what", ["config", "manifest", "authorized_keys"])
def test_fifo_on_sighup_keeps_the_running_config(tmp_path, what):
    ds, _ = make_tree(tmp_path, manifest=True)
    d = Daemon(tmp_path / "d", ds.config(), PIPE)
    if what == "authorized_keys":
        key, pub = keygen(tmp_path, "server")
        auth = tmp_path / "auth"
        shutil.copy(pub, auth)
        d.security = {"curve_secret_key_file": str(key), "authorized_keys": str(auth)}
        target = auth
    else:
        target = d.config_path if what == "config" else ds.manifest
    d.start()
    try:
        saved = target.read_bytes()
        fifo = tmp_path / "new.fifo"
        os.mkfifo(fifo)
        os.replace(fifo, target)
        at = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        line = wait_log(d, "reload: keeping the running config", after=at)
        assert "not a regular file" in line, line
        if what != "authorized_keys":
            with d.client("p") as c:
                assert len(c.batch(0, 0)) == 4
        # the next good file is taken
        target.unlink()
        target.write_bytes(saved)
        at = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "reload: config digest", after=at)
        t0 = time.monotonic()
    finally:
        d.stop()
    assert time.monotonic() - t0 < 10


# -- symlink trees ------------------------------------------------------------------------------

def test_link_dag_does_not_explode(tmp_path):
    """36 levels, each folder two links to the next (2^36 paths to one
    file): --check finishes at once and indexes the file once, plus once
    for a file link to it."""
    root = tmp_path / "root"
    cls = root / "cls"
    for i in range(36):
        (cls / ("d%02d" % i)).mkdir(parents=True)
        if i < 35:
            for n in "ab":
                os.symlink("../d%02d" % (i + 1), cls / ("d%02d" % i) / n)
    Image.new("RGB", (32, 32), (1, 2, 3)).save(cls / "d35" / "f.jpg")
    os.symlink("f.jpg", cls / "d35" / "g.jpg")
    d = Daemon(tmp_path / "d", {"root": str(root)}, PIPE)
    d.write_config()
    t0 = time.monotonic()
    r = subprocess.run([str(require_binary(BIN)), "-c", str(d.config_path), "--check"],
                       capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 0, r
    assert " 2 files, 1 classes" in r.stdout, r.stdout
    assert took < 10, "--check took %.1fs" % took


# -- the digest -------------------------------------------------------------------------------------

def test_digest_follows_file_contents(daemon, tmp_path):
    ds, out = make_tree(tmp_path)
    d = daemon(ds.config(), PIPE)
    with d.client("p") as c:
        d1 = c.info()["config_digest"]
    at = len(d.log())
    d.proc.send_signal(signal.SIGHUP)
    wait_log(d, "reload: config digest", after=at)
    with d.client("p") as c:
        assert c.info()["config_digest"] == d1, "nothing changed: same digest"
    # other bytes, same path (and here the same size: only the mtime tells)
    victim = ds.root / ds.samples[3].path
    data = bytearray(victim.read_bytes())
    st = victim.stat()
    data[-3] ^= 0x01
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    at = len(d.log())
    d.proc.send_signal(signal.SIGHUP)
    wait_log(d, "reload: config digest", after=at)
    with d.client("p") as c:
        d2 = c.info()["config_digest"]
    assert d2 != d1


def test_digest_contents(tmp_path):
    """digest_contents = true: a copy of the same bytes with other mtimes
    (at the same root: the root is in the digest) agrees; without it the
    mtimes tell them apart."""
    ds, _ = make_tree(tmp_path)

    def check_digest(name, contents):
        d = Daemon(tmp_path / name, {"root": str(ds.root), "digest_contents": contents}, PIPE)
        d.write_config()
        r = subprocess.run([str(BIN), "-c", str(d.config_path), "--check"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r
        return [l for l in r.stdout.splitlines() if l.split()[0] == "digest"][0]

    a, c = check_digest("a", True), check_digest("c", False)
    copy = tmp_path / "copy"
    shutil.copytree(ds.root, copy, copy_function=shutil.copyfile)  # new mtimes
    for f in copy.rglob("*.jpg"):
        os.utime(f, ns=(1, 10 ** 18))
    shutil.rmtree(ds.root)
    os.rename(copy, ds.root)
    b, e = check_digest("b", True), check_digest("e", False)
    assert a == b
    assert c != e and a != c


# -- an unreadable class folder -------------------------------------------------------------------

class UnprivilegedDaemon(Daemon):
    """As root, run without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH so that
    permissions bind (as for the service's DynamicUser)."""

    def command(self):
        cmd = super().command()
        if os.geteuid() == 0:
            cmd = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                   "--bounding-set=-dac_override,-dac_read_search", "--"] + cmd
        return cmd


def test_unreadable_class_folder_is_skipped_and_reload_works(tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.fail("setpriv (util-linux) is needed to drop capabilities as root")
    ds, _ = make_tree(tmp_path)
    cls1 = ds.root / ds.samples[4].class_name
    cls1.chmod(0)
    d = UnprivilegedDaemon(tmp_path / "d", ds.config(), PIPE)
    try:
        d.start()
        log = d.log()
        assert "skipping folder '%s': Permission denied" % cls1.name in log, log
        assert "1 folder could not be read and was skipped" in log
        with d.client("p") as c:
            info = c.info()
            assert info["dataset_size"] == 4 and info["num_classes"] == 2
        at = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "reload: config digest", after=at)
        cls1.chmod(0o755)
        at = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "reload: config digest", after=at)
        with d.client("p") as c:
            assert c.info()["dataset_size"] == 8
    finally:
        cls1.chmod(0o755)
        d.stop()
