"""examples/train.py as a user runs it, in fresh processes on CPU: a few
steps of one process, and DDP with two gloo ranks on loopback (each rank
its own shard, the model kept identical by DDP), then an exact resume."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, free_port, module_daemon

pytest.importorskip("torch")
TRAIN = REPO / "examples" / "train.py"
PIPELINES = {"train": dict(batch_size=8, size=32, crop="random_resized", flip=0.5,
                           cutout_size=8, cutmix_alpha=1.0, mixup_alpha=0.2,
                           label_smoothing=0.1)}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_mixed):
    dm = module_daemon(tmp_path_factory, "ddp", ds_mixed.config(), PIPELINES)
    yield dm
    dm.stop()


def env():
    e = dict(os.environ)
    e.pop("PYTHONPATH", None)  # train.py finds the client itself
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(k, None)
    e.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", CUDA_VISIBLE_DEVICES="")
    return e


def records(out):
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_train_example_few_steps(d, tmp_path):
    r = subprocess.run([sys.executable, str(TRAIN), "--endpoint", d.endpoint, "--epochs", "2",
                        "--steps", "3", "--json", "--device", "cpu"],
                       capture_output=True, text=True, timeout=180, env=env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    recs = records(r.stdout)
    assert [x["epoch"] for x in recs] == [0, 1]
    assert all(x["steps"] == 3 and x["images"] == 24 for x in recs)
    assert all(0.0 < x["loss"] < 10.0 for x in recs)


def test_help_shows_defaults():
    r = subprocess.run([sys.executable, str(TRAIN), "--help"], capture_output=True,
                       text=True, timeout=60, env=env())
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "dns+tcp://" in text and "(default: 5)" in text, text


def test_ddp_two_gloo_ranks(d, tmp_path):
    """Two processes started the way torch.distributed.run starts them
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; env:// rendezvous on
    loopback). Debian's torch 1.13 launcher itself fails under Python 3.11
    (elastic's to_map), so the test plays the launcher."""
    port = free_port()
    procs = []
    for rank in range(2):
        e = env()
        e.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                 MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(
            [sys.executable, str(TRAIN), "--endpoint", d.endpoint, "--epochs", "2", "--json",
             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=e, cwd=tmp_path))
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-3000:]
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    recs = [r for out in outs for r in records(out)]
    assert sorted((x["rank"], x["epoch"]) for x in recs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(x["world"] == 2 for x in recs)
    with d.client("train", rank=0, world=2) as c:
        half = c.batches_per_epoch()
    assert all(x["steps"] == half for x in recs)       # each rank a half epoch
    for e in (0, 1):                                    # ... of different samples
        r0, r1 = [set(x["indices"]) for x in sorted(recs, key=lambda x: x["rank"])
                  if x["epoch"] == e]
        assert not r0 & r1 and r0 | r1 == set(range(55))  # ds_mixed: 55 images
    for e in (0, 1):                                    # DDP kept the model identical
        sums = [x["param_sum"] for x in recs if x["epoch"] == e]
        assert sums[0] == pytest.approx(sums[1], rel=1e-6, abs=1e-6)
