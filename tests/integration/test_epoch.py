"""Epochs, shards and batch shapes on a dataset of mixed sizes (ImageFolder
layout, no manifest): every sample exactly once, pads, drop_last, shapes,
dtypes, label rows, float32/NCHW output, INFO and STATS."""

import re

import numpy as np
import pytest

import cutmixd
from helpers import check_labels, module_daemon

S = 0.1  # label smoothing of `train`

PIPELINES = {
    "train": dict(batch_size=16, size=48, crop="random_resized", flip=0.5,
                  cutout_holes=2, cutout_size="8-16", cutout_fill=128,
                  cutmix_alpha=1.0, mixup_alpha=0.4, prob=0.8, switch_prob=0.5,
                  mode="elem", partner="permute", label_smoothing=S),
    # no randomness at all: identity order, no flip, no Cutout, no mixing
    "plain": dict(batch_size=16, size=32, crop="center", resize=40, shuffle=False, flip=0.0),
    "f32": dict(batch_size=16, size=32, crop="center", resize=40, shuffle=False, flip=0.0,
                layout="nchw", dtype="float32", mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3)),
    "dl": dict(batch_size=8, size=32, crop="center", resize=32, shuffle=True, flip=0.0,
               drop_last=True),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_mixed):
    dm = module_daemon(tmp_path_factory, "epoch", ds_mixed.config(), PIPELINES)
    yield dm
    dm.stop()


def collect(client, epoch):
    batches = list(client.epoch(epoch))
    meta = np.concatenate([b.meta for b in batches]) if batches else None
    return batches, meta


def test_info(d, ds_mixed):
    with d.client("train") as c:
        info = c.info()
    assert info["dataset_size"] == len(ds_mixed) == 55
    assert info["num_classes"] == ds_mixed.num_classes == 5
    assert info["class_names"] == ds_mixed.class_names
    assert info["batch_size"] == 16
    assert info["batches_per_epoch"] == 4  # ceil(55 / 16)
    assert info["pipeline"] == "train" and info["eval"] is False
    assert info["rank"] == 0 and info["world"] == 1
    assert list(info["image_shape"]) in ([48, 48, 3], [3, 48, 48])
    assert info["layout"] == "nhwc" and info["dtype"] == "uint8"
    # protocol 2 (issue 8): the record grew to 488 bytes (224 for a v1 request)
    assert info["meta_size"] == 488 and info["protocol"] == cutmixd.PROTOCOL_VERSION == 2
    assert re.fullmatch(r"[0-9a-f]{64}", info["config_digest"])
    assert set(info["pipelines"]) == set(PIPELINES)
    for key in ("version", "dataset", "samples_per_rank", "drop_last", "shuffle", "max_window"):
        assert key in info, key
    with d.client("train", rank=1, world=2) as c:
        info2 = c.info()
    assert info2["batches_per_epoch"] == 2 and info2["samples_per_rank"] == 28
    assert (info2["rank"], info2["world"]) == (1, 2)


def test_epoch_covers_every_sample_once(d, ds_mixed):
    K = ds_mixed.num_classes
    with d.client("train", window=3) as c:
        digest = c.info()["config_digest"]
        batches, meta = collect(c, 0)
    assert [b.index for b in batches] == [0, 1, 2, 3]
    assert [len(b) for b in batches] == [16, 16, 16, 7]
    assert [b.last for b in batches] == [False, False, False, True]
    assert sorted(meta["index"].tolist()) == list(range(55))
    assert not meta["pad"].any()
    assert (meta["source"] == meta["index"]).all() and not meta["status"].any()
    for m in meta:
        s = ds_mixed.samples[m["index"]]
        assert m["label"] == s.label, "index %d: label %d, expected %d (%s)" % (
            m["index"], m["label"], s.label, s.path)
        assert (m["src_w"], m["src_h"]) == (s.width, s.height)
        x0, y0, x1, y1 = m["crop"]
        assert 0 <= x0 < x1 <= s.width + 1e-3 and 0 <= y0 < y1 <= s.height + 1e-3
    for b in batches:
        assert b.images.shape == (len(b), 48, 48, 3) and b.images.dtype == np.uint8
        assert b.images.flags.c_contiguous
        assert b.labels.shape == (len(b), K) and b.labels.dtype == np.float32
        assert b.digest == digest
        check_labels(b, K, S)
        mixed = b.meta["op"] != 0
        pp = b.meta["partner_pos"][mixed]
        assert ((pp >= 0) & (pp < len(b))).all()
        assert (b.meta["partner"][mixed] == b.meta["index"][pp]).all()
        assert (b.meta["partner"][~mixed] == -1).all()
        assert (b.meta["lam"][~mixed] == 1.0).all()
    ops = meta["op"]
    assert (ops == cutmixd.OP_CUTMIX).any() and (ops == cutmixd.OP_MIXUP).any()
    assert meta["flip"].any() and not meta["flip"].all()
    assert (meta["n_holes"] == 2).all()


def rrc_ok(m, scale=(0.08, 1.0), ratio=(0.75, 4.0 / 3.0)):
    """torchvision RandomResizedCrop: an integer box inside the image whose
    area/aspect come from the ranges (up to the rounding of w and h), or
    the fallback: a centred crop spanning the full width or height."""
    W, H = int(m["src_w"]), int(m["src_h"])
    x0, y0, x1, y1 = (float(v) for v in m["crop"])
    if not all(v == int(v) for v in (x0, y0, x1, y1)):
        return False
    w, h = x1 - x0, y1 - y0
    if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
        return False
    if (w == W or h == H) and x0 == (W - w) // 2 and y0 == (H - h) // 2:
        return True
    S = W * H
    area = (w + 0.5) * (h + 0.5) >= scale[0] * S and (w - 0.5) * (h - 0.5) <= scale[1] * S
    aspect = (w + 0.5) / (h - 0.5) >= ratio[0] and (w - 0.5) / (h + 0.5) <= ratio[1]
    return area and aspect


def center_crop_box(W, H, resize, size):
    """torchvision Resize(resize) + CenterCrop(size), as a box in the source."""
    if W <= H:
        nw, nh = resize, int(resize * H / W)
    else:
        nw, nh = int(resize * W / H), resize
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    sx, sy = W / nw, H / nh
    return np.array([left * sx, top * sy, (left + size) * sx, (top + size) * sy])


def test_crop_geometry(d):
    with d.client("train") as c:
        _, meta = collect(c, 1)
    bad = [(int(m["src_w"]), int(m["src_h"]), m["crop"].tolist()) for m in meta if not rrc_ok(m)]
    assert not bad, "random-resized crops outside scale/ratio: %s" % bad[:5]
    with d.client("plain") as c:
        _, meta = collect(c, 0)
    for m in meta:
        want = center_crop_box(int(m["src_w"]), int(m["src_h"]), 40, 32)
        assert np.allclose(m["crop"], want, atol=1e-3), (
            "center crop of %dx%d: %s, expected %s" % (m["src_w"], m["src_h"], m["crop"], want))


def test_shuffle_changes_order_between_epochs(d):
    with d.client("train") as c:
        _, m0 = collect(c, 0)
        _, m1 = collect(c, 1)
    assert sorted(m0["index"]) == sorted(m1["index"]) == list(range(55))
    assert list(m0["index"]) != list(m1["index"])
    assert list(m0["index"]) != list(range(55))


def test_plain_order_is_identity(d):
    with d.client("plain") as c:
        batches, meta = collect(c, 0)
    assert list(meta["index"]) == list(range(55))
    assert (meta["op"] == 0).all() and (meta["flip"] == 0).all() and (meta["n_holes"] == 0).all()
    for b in batches:
        assert (b.labels == np.eye(5, dtype=np.float32)[b.meta["label"]]).all()


@pytest.mark.parametrize("world", [2, 3])
def test_shards_pad_by_wrap_around(d, world):
    """drop_last = false: the identity order padded to ceil(N/w)*w by
    wrapping around; rank r takes positions r, r+w, ..."""
    N = 55
    total = -(-N // world) * world
    per_rank = []
    for r in range(world):
        with d.client("plain", rank=r, world=world) as c:
            info = c.info()
            _, meta = collect(c, 0)
        want_pos = list(range(r, total, world))
        assert info["samples_per_rank"] == len(want_pos)
        assert list(meta["index"]) == [p % N for p in want_pos], "rank %d of %d" % (r, world)
        assert list(meta["pad"]) == [int(p >= N) for p in want_pos]
        per_rank.append(meta)
    assert len({len(m) for m in per_rank}) == 1  # equal lengths
    real = np.concatenate([m["index"][m["pad"] == 0] for m in per_rank])
    assert sorted(real.tolist()) == list(range(N))  # disjoint and complete


def test_two_shards_disjoint_and_complete(d):
    metas = []
    for r in range(2):
        with d.client("train", rank=r, world=2) as c:
            _, meta = collect(c, 3)
        metas.append(meta)
    assert len(metas[0]) == len(metas[1]) == 28
    real = [set(m["index"][m["pad"] == 0].tolist()) for m in metas]
    assert not (real[0] & real[1])
    assert real[0] | real[1] == set(range(55))
    assert sum(int(m["pad"].sum()) for m in metas) == 1
    pad_idx = [int(i) for m in metas for i in m["index"][m["pad"] == 1]]
    assert pad_idx[0] in real[0] | real[1]


def test_drop_last(d):
    """drop_last = true: 55 cut to 54, 27 per rank, 3 batches of 8 each
    (the tail of 3 that does not fill a batch is dropped)."""
    seen = []
    for r in range(2):
        with d.client("dl", rank=r, world=2) as c:
            assert c.info()["batches_per_epoch"] == 3
            batches, meta = collect(c, 0)
        assert [len(b) for b in batches] == [8, 8, 8]
        assert not meta["pad"].any()
        seen += meta["index"].tolist()
    assert len(seen) == len(set(seen)) == 48
    with d.client("dl", world=1) as c:
        assert c.info()["batches_per_epoch"] == 6  # floor(55 / 8)
        with pytest.raises(cutmixd.DaemonError) as ei:
            c.batch(0, 6)
    assert ei.value.name == "BATCH_RANGE"


def test_float32_nchw_matches_uint8(d):
    mean = np.array(PIPELINES["f32"]["mean"], np.float64)
    std = np.array(PIPELINES["f32"]["std"], np.float64)
    with d.client("plain") as c, d.client("f32") as cf:
        for k in (0, 3):
            b8, bf = c.batch(0, k), cf.batch(0, k)
            assert bf.images.dtype == np.float32 and bf.layout == "nchw"
            assert bf.images.shape == (len(b8), 3, 32, 32)
            assert (bf.meta.tobytes() == b8.meta.tobytes())
            want = (b8.images.astype(np.float64) / 255.0 - mean) / std
            want = want.transpose(0, 3, 1, 2)
            np.testing.assert_allclose(bf.images, want, rtol=0, atol=2e-5)
            assert (bf.labels == b8.labels).all()


def test_epoch_start_offset(d):
    with d.client("train", window=2) as c:
        tail = list(c.epoch(5, start=2))
        assert [b.index for b in tail] == [2, 3]
        one = c.batch(5, 2)
    assert bytes(one.raw_frames[1]) == bytes(tail[0].raw_frames[1])
    assert bytes(one.raw_frames[3]) == bytes(tail[0].raw_frames[3])


def test_stats(d):
    with d.client("plain") as c:
        before = c.stats()
        list(c.epoch(0))
        after = c.stats()
    for key in ("uptime_s", "requests", "batches", "images", "img_per_s", "decode_errors",
                "replaced", "clients", "pending", "inflight", "rss_bytes"):
        assert key in after, key
    assert after["batches"] - before["batches"] >= 4
    assert after["images"] - before["images"] >= 55
    assert after["requests"] > before["requests"]
    assert after["rss_bytes"] > 0 and after["uptime_s"] >= 0


def test_stats_img_per_s_under_load(d):
    """img_per_s is the recent throughput: non-zero while serving, also in
    the first seconds after start-up."""
    import time

    with d.client("plain", window=4) as c:
        t0 = time.monotonic()
        e = 0
        while time.monotonic() - t0 < 2.5:
            list(c.epoch(e))
            e += 1
        st = c.stats()
    assert st["img_per_s"] > 0, "img_per_s is %r after serving %d epochs for 2.5s (uptime %.1fs)" % (
        st["img_per_s"], e, st["uptime_s"])


def test_log_lines_carry_priority(d):
    lines = [ln for ln in d.log().splitlines() if ln]
    assert any("ready:" in ln for ln in lines)
    bad = [ln for ln in lines if not re.match(r"<[0-7]>", ln)]
    assert not bad, "log lines without a <N> priority prefix: %r" % bad[:5]
