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
