"""Unreadable files in the dataset (truncated JPEGs, a GIF, text and an empty
file, all named .jpg) are replaced by a readable sample: status 1,
source != index, label = the source's class, pixels = the source's; batches
keep their size and STATS counts them."""

import io
import os

import numpy as np
import pytest
from PIL import Image

import cutmixd
import gen_dataset
from helpers import Dataset, module_daemon

N_CLASSES, PER_CLASS = 4, 6


@pytest.fixture(scope="module")
def ds_bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds_bad")
    good = gen_dataset.make_dataset(root, classes=N_CLASSES, per_class=PER_CLASS, size=(64, 64),
                                    subsampling="420", seed=21)
    names = sorted({s.class_name for s in good}, key=str.encode)
    src = (root / good[0].path).read_bytes()
    # (a PNG named .jpg decodes since PNG support: formats go by magic bytes)
    gif = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(gif, "GIF")
    # An SOS marker followed by scan data cut in the middle: libjpeg only warns
    # ("premature end of data"), which must still count as a bad file.
    cut = int(len(src) * 0.6)
    assert src.find(b"\xff\xda") + 20 < cut, "the cut must fall inside the scan data"
    bad = {
        names[0] + "/bad_trunc_scan.jpg": src[:cut],
        names[1] + "/bad_trunc_header.jpg": src[:120],
        names[2] + "/bad_gif.jpg": gif.getvalue(),
        names[3] + "/bad_text.jpg": b"this is not a JPEG file\n" * 20,
        names[0] + "/bad_empty.jpg": b"",
        names[1] + "/bad_garbage.jpg": b"\xff\xd8\xff" + bytes(range(256)) * 8,
    }
    for rel, data in bad.items():
        (root / rel).write_bytes(data)
    # dataset order of root scanning: classes sorted, paths sorted within a class
    samples = []
    for label, cls in enumerate(names):
        files = sorted(os.listdir(root / cls), key=str.encode)
        for f in files:
            rel = "%s/%s" % (cls, f)
            samples.append(gen_dataset.Sample(rel, label, cls, 64, 64, "RGB", "420", 90))
    ds = Dataset(root, samples)
    ds.bad = {i for i, s in enumerate(samples) if s.path in bad}
    assert len(ds.bad) == len(bad)
    return ds


PIPELINES = {
    "plain": dict(batch_size=8, size=64, crop="center", resize=64, flip=0.0, shuffle=False),
    "shuffled": dict(batch_size=7, size=64, crop="center", resize=64, flip=0.0, shuffle=True),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_bad):
    dm = module_daemon(tmp_path_factory, "badfiles", ds_bad.config(), PIPELINES)
    yield dm
    dm.stop()


def check_epoch(d, ds, pipeline, epoch):
    N = len(ds)
    with d.client(pipeline) as c:
        info = c.info()
        assert info["dataset_size"] == N, "bad files are part of the dataset"
        B = info["batch_size"]
        batches = list(c.epoch(epoch))
    assert [len(b) for b in batches] == [min(B, N - k * B) for k in range(len(batches))]
    meta = np.concatenate([b.meta for b in batches])
    assert sorted(meta["index"].tolist()) == list(range(N))
    for b in batches:
        for i, m in enumerate(b.meta):
            idx, src = int(m["index"]), int(m["source"])
            what = "index %d (%s)" % (idx, ds.samples[idx].path)
            if idx in ds.bad:
                assert m["status"] == 1, what + ": not flagged as replaced"
                assert src != idx and src not in ds.bad, what + ": source %d" % src
                assert 0 <= src < N
            else:
                assert m["status"] == 0 and src == idx, what
            assert m["label"] == ds.samples[src].label, what + ": label is the source's class"
            assert (m["src_w"], m["src_h"]) == (64, 64)
            assert np.array_equal(b.images[i], ds.ref.image(src)), what + ": pixels of the source"
            assert b.labels[i].argmax() == m["label"] and b.labels[i].max() == 1.0
    return batches


def test_bad_files_replaced(d, ds_bad):
    before = None
    with d.client("plain") as c:
        before = c.stats()
    check_epoch(d, ds_bad, "plain", 0)
    with d.client("plain") as c:
        st = c.stats()
    assert st["decode_errors"] > 0 and st["replaced"] > 0
    assert st["replaced"] - before["replaced"] >= len(ds_bad.bad)


def test_stats_list_each_bad_file(d, ds_bad):
    """STATS names every bad file once, with how often it failed and why;
    good files never appear."""
    check_epoch(d, ds_bad, "plain", 7)
    with d.client("plain") as c:
        st = c.stats()
    listed = {e["path"]: e for e in st["bad_file_list"]}
    want = {ds_bad.samples[i].path for i in ds_bad.bad}
    assert set(listed) == want
    assert st["bad_files"] == len(want)
    for path, e in listed.items():
        assert e["dataset"] == "default"
        assert e["failures"] >= 1, path
        assert e["error"].startswith(("jpeg:", "decode:")), (path, e["error"])
    assert "not a JPEG file" in listed[[p for p in want if p.endswith("bad_text.jpg")][0]]["error"]


def test_replacement_deterministic(d, ds_bad):
    a = check_epoch(d, ds_bad, "shuffled", 3)
    b = check_epoch(d, ds_bad, "shuffled", 3)
    for x, y in zip(a, b):
        assert bytes(x.raw_frames[3]) == bytes(y.raw_frames[3])
        assert bytes(x.raw_frames[1]) == bytes(y.raw_frames[1])
    check_epoch(d, ds_bad, "shuffled", 4)


def test_on_decode_error_fail(tmp_path_factory, ds_bad):
    """on_decode_error = fail: a batch with a bad file gets a DECODE error
    naming the file; batches without one are served."""
    dm = module_daemon(tmp_path_factory, "badfail", ds_bad.config(), PIPELINES,
                       server={"on_decode_error": "fail"})
    try:
        B = PIPELINES["plain"]["batch_size"]
        with dm.client("plain") as c:
            n = c.info()["batches_per_epoch"]
            for k in range(n):
                idx = set(range(k * B, min((k + 1) * B, len(ds_bad))))
                if idx & ds_bad.bad:
                    with pytest.raises(cutmixd.DaemonError) as ei:
                        c.batch(0, k)
                    assert ei.value.code == cutmixd.Status.DECODE
                    names = [os.path.basename(ds_bad.samples[i].path) for i in idx & ds_bad.bad]
                    assert any(nm in ei.value.message for nm in names), ei.value.message
                else:
                    b = c.batch(0, k)
                    assert not b.meta["status"].any()
    finally:
        dm.stop()
