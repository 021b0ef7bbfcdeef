"""A batch is a pure function of (config, seed, pipeline, epoch, rank, world,
batch index): neither the worker count nor the request order nor repetition
changes a byte; another seed does."""

import numpy as np
import pytest

from helpers import module_daemon

PIPELINES = {
    "train": dict(batch_size=12, size=40, crop="random_resized", flip=0.5,
                  cutout_holes=2, cutout_size="6-14", cutout_fill="noise",
                  cutmix_alpha=1.0, mixup_alpha=0.4, prob=0.9, switch_prob=0.5,
                  mode="elem", partner="permute", label_smoothing=0.1),
    "batchmode": dict(batch_size=12, size=40, crop="random_resized", flip=0.5,
                      cutout_size=8, cutmix_alpha=1.0, mode="batch", partner="flip"),
}


# The same pipelines with float32 NCHW output: the random decisions are keyed
# on (seed, pipeline name, ...) so they match; Cutout and mixing happen on
# uint8 pixels before normalisation.
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
F32_PIPELINES = {k: dict(v, layout="nchw", dtype="float32", mean=MEAN, std=STD)
                 for k, v in PIPELINES.items()}


@pytest.fixture(scope="module")
def daemons(tmp_path_factory, ds_mixed):
    ds = ds_mixed.config()
    started = []
    try:
        for name, srv, pipes in (("w1", {"workers": 1, "seed": 1234}, PIPELINES),
                                 ("w2", {"workers": 2, "seed": 1234}, PIPELINES),
                                 ("seed", {"workers": 2, "seed": 99}, PIPELINES),
                                 ("f32", {"workers": 2, "seed": 1234}, F32_PIPELINES)):
            started.append(module_daemon(tmp_path_factory, name, ds, pipes, server=srv))
        yield dict(zip(("w1", "w2", "seed", "f32"), started))
    finally:
        for dm in started:
            dm.stop()


def payload(b):
    """Frames as bytes, with the header's request_id (bytes 16..24) zeroed."""
    head = bytearray(bytes(b.raw_frames[0]))
    head[16:24] = b"\0" * 8
    return [bytes(head)] + [bytes(f) for f in b.raw_frames[1:]]


def all_batches(d, pipeline, epoch, **kw):
    with d.client(pipeline, **kw) as c:
        return [payload(b) for b in c.epoch(epoch)]


@pytest.mark.parametrize("pipeline", ["train", "batchmode"])
def test_worker_count_does_not_change_bytes(daemons, pipeline):
    for epoch in (0, 3):
        a = all_batches(daemons["w1"], pipeline, epoch, window=1)
        b = all_batches(daemons["w2"], pipeline, epoch, window=4)
        assert len(a) == len(b) == 5
        for k, (x, y) in enumerate(zip(a, b)):
            for name, fx, fy in zip(("header", "images", "labels", "meta"), x, y):
                assert fx == fy, "epoch %d batch %d: %s differ between workers=1 and workers=2" % (
                    epoch, k, name)


def test_shards_are_deterministic_too(daemons):
    for r in range(2):
        a = all_batches(daemons["w1"], "train", 1, rank=r, world=2)
        b = all_batches(daemons["w2"], "train", 1, rank=r, world=2)
        assert a == b


def test_repeated_requests_identical(daemons):
    with daemons["w2"].client("train") as c:
        first = payload(c.batch(2, 1))
        for _ in range(3):
            assert payload(c.batch(2, 1)) == first


def test_request_order_does_not_matter(daemons):
    d = daemons["w2"]
    in_order = all_batches(d, "train", 4, window=4)
    with d.client("train", window=1) as c:
        shuffled = {k: payload(c.batch(4, k)) for k in (3, 0, 4, 2, 1)}
    for k in range(5):
        assert shuffled[k] == in_order[k], "batch %d differs when requested out of order" % k
    # many requests for different epochs in flight at once, from two clients
    with d.client("train", window=8) as c1, d.client("train", window=8) as c2:
        g1, g2 = c1.epoch(4), c2.epoch(5)
        got4, got5 = [], []
        for b1, b2 in zip(g1, g2):
            got4.append(payload(b1))
            got5.append(payload(b2))
    assert got4 == in_order
    assert got5 == all_batches(daemons["w1"], "train", 5)


def test_seed_changes_bytes(daemons):
    with daemons["w1"].client("train") as c1, daemons["seed"].client("train") as c2:
        i1, i2 = c1.info(), c2.info()
        a, b = c1.batch(0, 0), c2.batch(0, 0)
    assert i1["config_digest"] != i2["config_digest"]
    assert bytes(a.raw_frames[1]) != bytes(b.raw_frames[1])
    assert list(a.meta["index"]) != list(b.meta["index"])  # another permutation
    assert a.digest == i1["config_digest"] and b.digest == i2["config_digest"]


def test_workers_do_not_change_digest(daemons):
    with daemons["w1"].client("train") as c1, daemons["w2"].client("train") as c2:
        assert c1.info()["config_digest"] == c2.info()["config_digest"]


def test_epochs_differ(daemons):
    with daemons["w2"].client("train") as c:
        a, b = c.batch(0, 0), c.batch(1, 0)
    assert not np.array_equal(a.images, b.images)


@pytest.mark.parametrize("pipeline", ["train", "batchmode"])
def test_float32_nchw_is_normalised_uint8(daemons, pipeline):
    mean, std = np.array(MEAN), np.array(STD)
    with daemons["w1"].client(pipeline) as c8, daemons["f32"].client(pipeline) as cf:
        for k in (0, 4):
            a, b = c8.batch(2, k), cf.batch(2, k)
            assert bytes(a.raw_frames[3]) == bytes(b.raw_frames[3]), "metadata differs"
            assert bytes(a.raw_frames[2]) == bytes(b.raw_frames[2]), "labels differ"
            assert b.images.dtype == np.float32 and b.images.shape == (len(a), 3, 40, 40)
            want = ((a.images / 255.0 - mean) / std).transpose(0, 3, 1, 2)
            np.testing.assert_allclose(b.images, want, rtol=0, atol=2e-5)
