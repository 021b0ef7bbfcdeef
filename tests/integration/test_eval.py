"""Evaluation pipelines: unmodified images (== PIL's decode when the source
already has the output size and resize = size), one-hot labels, no
augmentation metadata; the client's eval flag is refused on a training
pipeline."""

import numpy as np
import pytest

import cutmixd
from helpers import module_daemon

PIPELINES = {
    "val": dict(eval=True, batch_size=10, size=64, resize=64),
    "train": dict(batch_size=8, size=64, crop="center", resize=64, flip=0.5,
                  cutmix_alpha=1.0),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_square):
    dm = module_daemon(tmp_path_factory, "eval", ds_square.config(), PIPELINES)
    yield dm
    dm.stop()


def test_val_images_unmodified_and_one_hot(d, ds_square):
    K = ds_square.num_classes
    with d.client("val", eval=True) as c:
        info = c.info()
        batches = list(c.epoch(0))
    assert info["eval"] is True and info["shuffle"] is False
    assert [len(b) for b in batches] == [10, 10, 10, 10, 8]
    meta = np.concatenate([b.meta for b in batches])
    assert list(meta["index"]) == list(range(len(ds_square)))  # eval: no shuffle
    for b in batches:
        for i, m in enumerate(b.meta):
            assert (m["op"], m["flip"], m["n_holes"], m["partner"], m["lam"]) == (0, 0, 0, -1, 1.0)
            assert m["source"] == m["index"] and m["status"] == 0
            assert m["label"] == ds_square.samples[m["index"]].label
            want = ds_square.ref.image(m["index"])
            if not np.array_equal(b.images[i], want):
                diff = np.argwhere(b.images[i] != want)
                pytest.fail("val image of index %d (%s, %s) differs from PIL's decode in %d "
                            "bytes, first at %s" % (
                                m["index"], ds_square.samples[m["index"]].path,
                                ds_square.samples[m["index"]].subsampling, len(diff),
                                diff[0].tolist()), pytrace=False)
        assert (b.labels == np.eye(K, dtype=np.float32)[b.meta["label"]]).all()


def test_val_same_bytes_across_epochs(d):
    with d.client("val", eval=True) as c:
        a, b = c.batch(0, 1), c.batch(7, 1)
    assert bytes(a.raw_frames[1]) == bytes(b.raw_frames[1])


def test_eval_flag_refused_on_train_pipeline(d):
    with d.client("train", eval=True) as c:
        with pytest.raises(cutmixd.DaemonError) as ei:
            c.batch(0, 0)
        assert ei.value.code == cutmixd.Status.NOT_EVAL and ei.value.name == "NOT_EVAL"
        assert ei.value.message
        with pytest.raises(cutmixd.DaemonError) as ei:
            list(c.epoch(0))
        assert ei.value.name == "NOT_EVAL"
    with d.client("train") as c:  # without the flag it serves
        assert len(c.batch(0, 0)) == 8
