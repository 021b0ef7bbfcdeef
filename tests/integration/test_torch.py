"""cutmixd.torch against the real daemon: zero-copy tensors, DataLoader with
worker processes (batches still in order), rank/world from torch.distributed."""

import numpy as np
import pytest

from helpers import module_daemon

torch = pytest.importorskip("torch")
from cutmixd.torch import CutmixdIterable, to_torch  # noqa: E402

PIPELINES = {
    "train": dict(batch_size=8, size=32, crop="random_resized", flip=0.5, cutout_size=8,
                  cutmix_alpha=1.0, mixup_alpha=0.2, label_smoothing=0.1),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_mixed):
    dm = module_daemon(tmp_path_factory, "torch", ds_mixed.config(), PIPELINES)
    yield dm
    dm.stop()


def reference(d, epoch, rank=0, world=1):
    with d.client("train", rank=rank, world=world) as c:
        return [(bytes(b.raw_frames[1]), bytes(b.raw_frames[2]), b.meta["index"].copy())
                for b in c.epoch(epoch)]


def test_to_torch_zero_copy(d):
    with d.client("train") as c:
        b = c.batch(0, 0)
    x, y, meta = to_torch(b)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (8, 32, 32, 3)
    assert x.data_ptr() == b.images.ctypes.data and y.data_ptr() == b.labels.ctypes.data
    assert torch.allclose(y.sum(1), torch.ones(8), atol=1e-6)
    assert meta is b.meta


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_in_order(d, workers):
    ds = CutmixdIterable(d.endpoint, "train", rank=0, world=1, timeout=30)
    ds.set_epoch(3)
    assert len(ds) == 7
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    got = [(x.numpy().tobytes(), y.numpy().tobytes(), m["index"].numpy()) for x, y, m in loader]
    want = reference(d, 3)
    assert len(got) == len(want) == 7
    for k, (g, w) in enumerate(zip(got, want)):
        assert g[0] == w[0] and g[1] == w[1], "batch %d differs" % k
        assert np.array_equal(g[2], w[2])


def test_rank_world_from_torch_distributed(d, tmp_path, monkeypatch):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "9")
    dist.init_process_group("gloo", init_method="file://%s" % (tmp_path / "pg"),
                            rank=0, world_size=1)
    try:
        ds = CutmixdIterable(d.endpoint, "train", timeout=30)
    finally:
        dist.destroy_process_group()
    assert (ds.rank, ds.world) == (0, 1)  # torch.distributed wins over the environment
    ds = CutmixdIterable(d.endpoint, "train", timeout=30)
    assert (ds.rank, ds.world) == (5, 9)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    ds = CutmixdIterable(d.endpoint, "train", timeout=30)
    ds.set_epoch(1)
    got = [m["index"].numpy() for _, _, m in ds]
    want = [w[2] for w in reference(d, 1, rank=1, world=2)]
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))


# -- issue 15: an iterable that cannot be misused ---------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import cutmixd  # noqa: E402
import cutmixd.torch as ctorch  # noqa: E402
from helpers import REPO  # noqa: E402


def epoch_bytes(items):
    return [(x.numpy().tobytes(), y.numpy().tobytes()) for x, y, _ in items]


def ref_bytes(d, epoch, start=0):
    return [(w[0], w[1]) for w in reference(d, epoch)][start:]


@pytest.mark.parametrize("workers,persistent", [(0, False), (2, False), (2, True)])
def test_epoch_advances_by_itself(d, workers, persistent):
    """Three iterations without set_epoch are epochs 0, 1, 2 (persistent
    workers too); set_epoch(5, start=4) overrides, the next one is 6."""
    ds = CutmixdIterable(d.endpoint, "train", rank=0, world=1, timeout=30)
    kw = dict(persistent_workers=True) if persistent else {}
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, **kw)
    for e in range(3):
        assert ds.epoch == e
        assert epoch_bytes(dl) == ref_bytes(d, e), "iteration %d is not epoch %d" % (e, e)
    ds.set_epoch(5, start=4)
    assert len(ds) == 3
    assert epoch_bytes(dl) == ref_bytes(d, 5, 4)
    assert epoch_bytes(dl) == ref_bytes(d, 6)


def test_client_reused_across_epochs(d):
    """One connection per worker for all epochs: the daemon sees 2 new
    clients for 3 epochs over 2 persistent workers, and the iterable
    iterated in-process keeps its Client."""
    with d.client("train") as c:
        ds = CutmixdIterable(d.endpoint, "train", rank=0, world=1, timeout=30)
        assert len(ds) == 7  # the INFO (its own short-timeout client) first
        before = c.stats()["clients"]
        dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                         persistent_workers=True)
        for _ in range(3):
            assert len(list(dl)) == 7
        assert c.stats()["clients"] - before == 2
        del dl
    ds = CutmixdIterable(d.endpoint, "train", rank=0, world=1, timeout=30)
    list(ds)
    first = ds._client_obj
    list(ds)
    assert ds._client_obj is first and not first._closed


def test_info_attributes_cached(d):
    ds = CutmixdIterable(d.endpoint, "train", rank=0, world=1, timeout=30)
    assert ds.num_classes == 5 and ds.batch_size == 8
    assert ds.class_names == sorted(ds.class_names) and len(ds.class_names) == 5
    assert ds.image_shape == (32, 32, 3) and ds.batches_per_epoch() == 7
    info = ds.info
    assert ds.info is info  # one INFO


def test_len_when_daemon_down(tmp_path):
    """len() of an iterable whose daemon is not there fails within about
    info_timeout with an error naming the endpoint."""
    ep = "ipc://%s/nobody.sock" % tmp_path
    ds = CutmixdIterable(ep, "train", rank=0, world=1, info_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(cutmixd.Error, match="no answer from .*nobody.sock within "
                                             "info_timeout=0.5s.*is the daemon running"):
        len(ds)
    assert time.monotonic() - t0 < 3.0


def test_wrapped_with_batch_size_fails_clearly(d):
    ds = CutmixdIterable(d.endpoint, "train", rank=0, world=1, timeout=30)
    for workers in (0, 2):
        dl = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers)
        with pytest.raises(Exception, match="batch_size=None"):
            next(iter(dl))
    with pytest.raises(ValueError, match="batch_size must be None"):
        ctorch.CutmixdLoader(ds, batch_size=4)


def test_loader_helper(d):
    dl = ctorch.loader(d.endpoint, "train", num_workers=2, rank=0, world=1, timeout=30)
    assert dl.batch_size is None and dl.num_workers == 2 and dl.persistent_workers
    assert dl.pin_memory == torch.cuda.is_available()
    assert epoch_bytes(dl) == ref_bytes(d, 0)
    assert epoch_bytes(dl) == ref_bytes(d, 1)
    x, y, m = next(iter(dl))
    assert tuple(x.shape) == (8, 32, 32, 3) and tuple(y.shape) == (8, 5)


def test_rank_world_ambiguous_warns(d, monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(ctorch, "_warned", set())
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.warns(RuntimeWarning, match="LOCAL_RANK=1 is set but RANK"):
        ds = CutmixdIterable(d.endpoint, "train")
    assert (ds.rank, ds.world) == (0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CutmixdIterable(d.endpoint, "train")  # once only
        CutmixdIterable(d.endpoint, "train", rank=0, world=1)  # explicit: quiet
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.warns(RuntimeWarning, match="only one of RANK"):
        CutmixdIterable(d.endpoint, "train")


def test_dist_initialised_later_warns(d, tmp_path, monkeypatch):
    import torch.distributed as dist

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(ctorch, "_warned", set())
    ds = CutmixdIterable(d.endpoint, "train", timeout=30)
    assert (ds.rank, ds.world) == (0, 1)
    dist.init_process_group("gloo", init_method="file://%s" % (tmp_path / "pg"),
                            rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            next(iter(ds))  # same rank/world: quiet
        ds.rank, ds.world = 1, 2  # as if made before a 2-process init
        with pytest.warns(RuntimeWarning, match="torch.distributed says rank 0 of 1"):
            next(iter(ds))
    finally:
        dist.destroy_process_group()


RESUME = r"""
import json, sys, hashlib
sys.path.insert(0, sys.argv[1])
import cutmixd.torch as ct
ep, mode, path = sys.argv[2], sys.argv[3], sys.argv[4]
workers = int(sys.argv[5])
dl = ct.loader(ep, "train", num_workers=workers, rank=0, world=1, timeout=30)
out = []
if mode == "save":
    dl.dataset.set_epoch(2)
    it = iter(dl)
    for _ in range(3):
        x, y, m = next(it)
        out.append(hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest())
    json.dump({"loader": dl.state_dict(), "got": out}, open(path, "w"))
else:
    st = json.load(open(path))
    dl.load_state_dict(st["loader"])
    for x, y, m in dl:
        out.append(hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest())
    nxt = [hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
           for x, y, m in dl][:1]
    print(json.dumps({"rest": out, "next": nxt, "state": dl.state_dict()}))
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_state_dict_resume_in_new_process(d, tmp_path, workers):
    """Stop after 3 batches of epoch 2, save state_dict(), restore it in a
    NEW process: it yields exactly batches 3..6 of epoch 2, then epoch 3."""
    import hashlib
    script = tmp_path / "resume.py"
    script.write_text(RESUME)
    st = tmp_path / "state.json"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    py = str(REPO / "client" / "python")
    for mode in ("save", "load"):
        r = subprocess.run([sys.executable, str(script), py, d.endpoint, mode, str(st),
                            str(workers)], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
    import json
    saved = json.loads(st.read_text())
    assert saved["loader"] == {"epoch": 2, "next_batch": 3}
    got = json.loads(r.stdout)
    want = [hashlib.sha256(a + b).hexdigest() for a, b in ref_bytes(d, 2)]
    assert saved["got"] == want[:3]
    assert got["rest"] == want[3:]
    assert got["next"] == [hashlib.sha256(a + b).hexdigest() for a, b in ref_bytes(d, 3)][:1]


def test_iterable_state_dict_in_process(d):
    ds = CutmixdIterable(d.endpoint, "train", rank=0, world=1, timeout=30)
    ds.set_epoch(4)
    it = iter(ds)
    got = [next(it) for _ in range(2)]
    assert ds.state_dict() == {"epoch": 4, "next_batch": 2}
    del it, got
    ds2 = CutmixdIterable(d.endpoint, "train", rank=0, world=1, timeout=30)
    ds2.load_state_dict(ds.state_dict())
    assert epoch_bytes(ds2) == ref_bytes(d, 4, 2)
    assert ds2.state_dict() == {"epoch": 5, "next_batch": 0}
    with pytest.raises(ValueError, match="expected"):
        ds2.load_state_dict({"epoch": 1})
