"""The C client (bin/cutmixd-count) receives the same bytes as the Python
client: --dump-batch K writes header + images + labels + meta frames as
received; only the request id in the header may differ."""

import subprocess

import numpy as np
import pytest

from helpers import COUNT_BIN, module_daemon, require_binary

PIPELINES = {
    "train": dict(batch_size=8, size=48, crop="random_resized", flip=0.5, cutout_size="4-12",
                  cutout_holes=2, cutmix_alpha=1.0, mixup_alpha=0.5, mode="elem",
                  label_smoothing=0.1),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_mixed):
    dm = module_daemon(tmp_path_factory, "cclient", ds_mixed.config(), PIPELINES)
    yield dm
    dm.stop()


def run_count(args, timeout=60):
    require_binary(COUNT_BIN)
    p = subprocess.run([str(COUNT_BIN)] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, "cutmixd-count %s: exit %d\n%s%s" % (
        " ".join(map(str, args)), p.returncode, p.stdout, p.stderr)
    return p.stdout


@pytest.mark.parametrize("epoch, k, rank, world", [(0, 2, 0, 1), (3, 0, 0, 1), (1, 1, 1, 2),
                                                   (0, 6, 0, 1)])
def test_dump_batch_equals_python_client(d, tmp_path, epoch, k, rank, world):
    out = tmp_path / "batch.bin"
    run_count(["-e", d.endpoint, "-p", "train", "-E", epoch, "-r", rank, "-w", world,
               "--dump-batch", k, "--out", out])
    dumped = out.read_bytes()
    with d.client("train", rank=rank, world=world) as c:
        b = c.batch(epoch, k)
    frames = [bytes(f) for f in b.raw_frames]
    assert len(dumped) == sum(len(f) for f in frames), (len(dumped), [len(f) for f in frames])
    head = bytearray(dumped[:128])
    mine = bytearray(frames[0])
    head[16:24] = mine[16:24] = b"\0" * 8  # request ids are each client's own
    assert bytes(head) == bytes(mine), "headers differ"
    off = 128
    for name, f in zip(("images", "labels", "meta"), frames[1:]):
        assert dumped[off:off + len(f)] == f, "%s frame differs" % name
        off += len(f)


def test_count_epoch_summary(d):
    text = run_count(["-e", d.endpoint, "-p", "train", "-E", 2, "-W", 3])
    kv = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    kv = {k.strip(): v.strip() for k, v in kv.items()}
    assert int(kv["batches"]) == 7 and int(kv["images"]) == 55
    with d.client("train") as c:
        batches = list(c.epoch(2))
    meta = np.concatenate([b.meta for b in batches])
    assert int(kv["cutmix"]) == int((meta["op"] == 1).sum())
    assert int(kv["mixup"]) == int((meta["op"] == 2).sum())
    h = 0xCBF29CE484222325
    for b in batches:
        for byte in bytes(b.raw_frames[1]):
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    assert int(kv["checksum"], 16) == h
