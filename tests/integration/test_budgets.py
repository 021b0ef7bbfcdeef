"""Budgets checked before they bite: a config whose batches x max_inflight
exceed max_batch_bytes is refused at --check, at start and on SIGHUP with
a message naming the keys; a manifest whose class column makes far more
classes than it uses is warned about; a progressive JPEG of many scans is
over the decode budget (max_scan_blocks) and is a counted bad file, like
one over max_pixels."""

import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

import gen_dataset
from helpers import BIN, EX_CONFIG, Daemon, Dataset, free_port, require_binary

PIPE = {"p": dict(batch_size=8, size=64, crop="center", resize=64, flip=0.0, shuffle=False)}
JPEGTRAN = shutil.which("jpegtran")


def small_ds(tmp_path, manifest=None):
    root = tmp_path / "root"
    s = gen_dataset.make_dataset(root, classes=2, per_class=4, size=(64, 64),
                                 subsampling="420", seed=3, manifest=manifest)
    return Dataset(root, s, manifest)


def check(tmp_path, dataset, pipelines, server=None, name="chk"):
    d = Daemon(tmp_path / name, dataset, pipelines, server=server)
    d.write_config()
    r = subprocess.run([str(require_binary(BIN)), "-c", str(d.config_path), "--check"],
                       capture_output=True, text=True, timeout=60)
    return r


def test_huge_batch_is_refused_by_check(tmp_path):
    """The issue's 12.9 GB batch: batch_size 65536 at 8192 x 8192 (the
    daemon would be OOM-killed at the first request)."""
    ds = small_ds(tmp_path)
    r = check(tmp_path, ds.config(), {"p": dict(batch_size=65536, size=8192)})
    assert r.returncode == EX_CONFIG, r
    msg = r.stderr
    for key in ("[pipeline.p]", "batch_size 65536", "size 8192", "max_inflight",
                "[server] max_batch_bytes", "a quarter of physical memory"):
        assert key in msg, (key, msg)
    assert "config ok" not in r.stdout


def test_max_batch_bytes_is_the_bound(tmp_path):
    ds = small_ds(tmp_path)
    # 8 x 64 x 64 x 3 pixels + 8 x 2 labels x 4 + 8 x meta: about 100 KB a
    # batch; 2 in flight
    one = 8 * 64 * 64 * 3
    server = {"max_inflight": 2, "max_batch_bytes": 2 * one}
    r = check(tmp_path, ds.config(), PIPE, server, name="tight")
    assert r.returncode == EX_CONFIG, r
    assert "max_inflight 2 batches need" in r.stderr, r.stderr
    assert "max_batch_bytes = %d" % (2 * one) in r.stderr, r.stderr
    server["max_batch_bytes"] = 3 * one
    r = check(tmp_path, ds.config(), PIPE, server, name="room")
    assert r.returncode == 0, r
    # float32 output is 5 times the pixels
    pipe = {"p": dict(PIPE["p"], dtype="float32")}
    r = check(tmp_path, ds.config(), pipe, server, name="float")
    assert r.returncode == EX_CONFIG, r


def test_over_budget_reload_keeps_the_running_config(daemon, tmp_path):
    ds = small_ds(tmp_path)
    d = daemon(ds.config(), PIPE, server={"max_inflight": 2, "max_batch_bytes": 10 ** 6})
    d.pipelines["p"]["batch_size"] = 256
    d.write_config()
    at = len(d.log())
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload: keeping the running config" not in d.log()[at:]:
        assert time.monotonic() < deadline, d.tail()
        time.sleep(0.02)
    assert "max_batch_bytes" in d.log()[at:]
    with d.client("p") as c:
        assert len(c.batch(0, 0)) == 8


def test_num_classes_far_above_the_labels_used_warns(tmp_path):
    man = tmp_path / "labels.tsv"
    ds = small_ds(tmp_path, manifest=man)
    lines = man.read_text().splitlines()
    # a typo in an integer class column: 1048575 makes 2^20 classes
    lines = ["%s\t%d" % (l.split("\t")[0], 0 if i < 4 else 1) for i, l in enumerate(lines)]
    lines[-1] = lines[-1].split("\t")[0] + "\t1048575"
    man.write_text("\n".join(lines) + "\n")
    r = check(tmp_path, ds.config(), {"p": dict(batch_size=8, size=32)})
    assert r.returncode == 0, r
    assert "1048576 classes but only 3 have samples" in r.stderr, r.stderr
    # no warning for a dataset that uses its classes
    lines[-1] = lines[-1].split("\t")[0] + "\t1"
    man.write_text("\n".join(lines) + "\n")
    r = check(tmp_path, ds.config(), {"p": dict(batch_size=8, size=32)}, name="ok")
    assert r.returncode == 0 and "have samples" not in r.stderr, r


# -- the decode budget ---------------------------------------------------------------------------

def textured(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([(x // 2) % 256, (y // 2) % 256, ((x + y) // 4) % 256], -1)
    a = np.clip(a + rng.integers(-20, 20, a.shape), 0, 255).astype("uint8")
    return Image.fromarray(a)


def many_scans(src, dst, tmp_path):
    """A progressive copy of src with 66 scans: DC, then each of the 63 AC
    coefficients of Y in its own scan, then Cb and Cr."""
    script = tmp_path / "scans.txt"
    script.write_text("\n".join(["0,1,2: 0-0, 0, 0;"] +
                                ["0: %d-%d, 0, 0;" % (k, k) for k in range(1, 64)] +
                                ["1: 1-63, 0, 0;", "2: 1-63, 0, 0;"]) + "\n")
    subprocess.run([JPEGTRAN, "-scans", str(script), "-outfile", str(dst), str(src)], check=True,
                   timeout=30)


@pytest.mark.skipif(JPEGTRAN is None, reason="jpegtran (libjpeg-turbo-progs) is not installed")
@pytest.mark.parametrize("budget", ["auto", "explicit"])
def test_many_scan_progressive_file_is_over_the_decode_budget(daemon, tmp_path, budget):
    """512 x 512 4:2:0: baseline 6144 blocks, the standard 10-scan
    progressive 32768, the 66-scan copy 266240. With max_pixels 262144 the
    automatic budget is 65536 blocks (a quarter per pixel)."""
    root = tmp_path / "root"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
    textured(512, 512, 1).save(root / "a" / "base.jpg", quality=90)
    textured(512, 512, 2).save(root / "a" / "prog.jpg", quality=90, progressive=True)
    many_scans(root / "a" / "base.jpg", root / "b" / "many.jpg", tmp_path)
    textured(512, 512, 3).save(root / "b" / "z.jpg", quality=90)
    server = {"max_pixels": 512 * 512}
    if budget == "explicit":
        server = {"max_scan_blocks": 100000}
    pipe = {"p": dict(batch_size=4, size=64, crop="center", resize=64, flip=0.0,
                      shuffle=False)}
    d = daemon({"root": str(root)}, pipe, server=server)
    with d.client("p") as c:
        b = c.batch(0, 0)  # a/base, a/prog, b/many, b/z
        assert list(b.meta["status"]) == [0, 0, 1, 0], b.meta
        assert b.meta["source"][2] != 2
        bad = {e["path"]: e["error"] for e in c.stats()["bad_file_list"]}
    assert set(bad) == {"b/many.jpg"}, bad
    limit = 65536 if budget == "auto" else 100000
    assert "more than %d blocks over its scans" % limit in bad["b/many.jpg"], bad
    assert "max_scan_blocks" in bad["b/many.jpg"]
    assert "decode: 'b/many.jpg'" in d.log()


# -- --check tries the endpoints -------------------------------------------------------------

def test_check_refuses_an_unknown_scheme(tmp_path):
    ds = small_ds(tmp_path)
    r = check(tmp_path, ds.config(), PIPE, {"endpoint": "foo://bar"})
    assert r.returncode == EX_CONFIG, r
    assert "endpoint: must be 1..8 distinct ZeroMQ endpoints, comma separated " \
        "(tcp://HOST:PORT, ipc://PATH), got 'foo://bar'" in r.stderr, r.stderr


def test_check_fails_on_an_address_in_use(daemon, tmp_path):
    """A TCP port and an ipc:// path a running daemon serves: --check says
    why and exits 70 (what the daemon's start would); the running daemon
    keeps its socket (an ipc path is probed, never bound over)."""
    ds = small_ds(tmp_path)
    port = free_port()
    tcp = "tcp://127.0.0.1:%d" % port
    d = daemon(ds.config(), PIPE, server={"endpoint": None})
    d.server["endpoint"] = "%s, %s" % (d.endpoint, tcp)
    d.stop()
    d.start()
    for ep in (tcp, d.endpoint):
        r = check(tmp_path, ds.config(), PIPE, {"endpoint": ep}, name="c%d" % len(ep))
        assert r.returncode == 70, r
        assert "check: endpoint '%s': cannot bind: " % ep in r.stderr, r.stderr
        assert "ddress already in use" in r.stderr, r.stderr
    assert d.socket_path.exists()
    with d.client("p") as c:
        assert len(c.batch(0, 0)) == 8
    # free again: ok, and nothing left behind
    free_ipc = tmp_path / "free.sock"
    r = check(tmp_path, ds.config(), PIPE, {"endpoint": "ipc://%s" % free_ipc}, name="free")
    assert r.returncode == 0, r
    assert not free_ipc.exists()
