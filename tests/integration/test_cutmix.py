"""Every pixel and every label of mixed batches, checked against an
independent PIL decode driven by the metadata.

The images are already 64x64 (the output size) and the pipelines use
crop = center with resize = size, so each sample's pixels before
augmentation are exactly PIL's decode. From the metadata alone we then
redo: flip, Cutout holes (before mixing, on every image), the CutMix paste
of the partner's box (from the partner AFTER its own flip and Cutout) or the
MixUp blend rint(f32(a)*f32(lam) + f32(b)*(1-f32(lam))), and the soft labels
lam*smooth(y_i) + (1-lam)*smooth(y_j).

Partner rules and odd batches (documented behaviour): `flip` pairs i with
B-1-i, `roll` pairs i with i-1 mod B, `permute` uses a random permutation;
a sample whose partner would be itself (the middle of an odd batch with
flip/pair, a fixed point of the permutation, every sample when B = 1) is not
mixed: op 0, partner -1, lam 1.
"""

import numpy as np
import pytest

import cutmixd
from helpers import assert_images_equal, check_labels, expected_images, module_daemon

H = W = 64
BASE = dict(size=64, crop="center", resize=64, flip=0.5, shuffle=True, label_smoothing=0.1)

PIPELINES = {
    "cm_batch": dict(BASE, batch_size=8, cutout_holes=2, cutout_size=16, cutout_fill=77,
                     cutmix_alpha=1.0, mode="batch", partner="permute"),
    "cm_pair": dict(BASE, batch_size=7, cutout_size="8-20", cutout_fill=0,
                    cutmix_alpha=1.0, mode="pair", partner="flip"),
    "mu_elem": dict(BASE, batch_size=8, cutout_size=12, cutout_fill=200,
                    mixup_alpha=0.8, mode="elem", partner="roll"),
    "mu_batch": dict(BASE, batch_size=8, cutout_size=10, cutout_holes=3, cutout_fill=255,
                     mixup_alpha=1.0, mode="batch", partner="permute"),
    "switch": dict(BASE, batch_size=8, cutout_holes=3, cutout_size="6-18", cutout_fill="noise",
                   mixup_alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, prob=0.7,
                   mode="elem", partner="permute"),
    "minmax": dict(BASE, batch_size=8, flip=0.0, label_smoothing=0.0,
                   cutmix_alpha=1.0, cutmix_minmax=(0.2, 0.6), mode="elem", partner="flip"),
    "single": dict(BASE, batch_size=1, cutout_size=10, cutout_fill=5,
                   cutmix_alpha=1.0, mode="batch", partner="roll"),
    "off": dict(BASE, batch_size=8, cutmix_alpha=1.0, off_epoch=1),
    "mu_pair": dict(BASE, batch_size=9, cutout_size=14, cutout_fill="mean",
                    mixup_alpha=1.0, mode="pair", partner="permute"),
    "rawlam": dict(BASE, batch_size=8, cutout_size=12, cutout_fill="mean", mean=(0.2, 0.4, 0.6),
                   cutmix_alpha=0.7, correct_lam=False, mode="elem", partner="roll"),
}
DEFAULT_MEAN = (0.485, 0.456, 0.406)


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_square):
    dm = module_daemon(tmp_path_factory, "mix", ds_square.config(), PIPELINES)
    yield dm
    dm.stop()


def fill_of(p):
    if p.get("cutout_size", 0) in (0, "0"):
        return 0  # no holes anyway
    f = p.get("cutout_fill", 0)
    if f == "noise":
        return None
    if f == "mean":  # the normalisation mean in pixel units
        return np.rint(np.array(p.get("mean", DEFAULT_MEAN)) * 255.0).astype(np.uint8)
    return int(f)


def sizes_of(p):
    s = str(p.get("cutout_size", 0))
    lo, _, hi = s.partition("-")
    return int(lo), int(hi or lo)


def check_batch(b, ds, name):
    """Pixels, labels and metadata of one batch of pipeline `name`."""
    p = PIPELINES[name]
    B = len(b)
    meta = b.meta
    s = p.get("label_smoothing", 0.0)
    where = "pipeline %s epoch %d batch %d: " % (name, b.epoch, b.index)

    # metadata that does not depend on randomness
    assert (meta["source"] == meta["index"]).all() and not meta["status"].any()
    assert not meta["pad"].any()
    assert (meta["src_w"] == W).all() and (meta["src_h"] == H).all()
    assert np.array_equal(meta["crop"], np.tile(np.float32([0, 0, W, H]), (B, 1))), meta["crop"]
    for m in meta:
        assert m["label"] == ds.samples[m["index"]].label

    # Cutout
    lo, hi = sizes_of(p)
    for m in meta:
        if hi == 0:
            assert m["n_holes"] == 0
            continue
        assert m["n_holes"] == p.get("cutout_holes", 1), where + "cutout_prob 1 applies every hole"
        for x0, y0, x1, y1 in m["holes"][: m["n_holes"]]:
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H, (x0, y0, x1, y1)
            for a, c, lim in ((x0, x1, W), (y0, y1, H)):
                assert c - a <= 2 * (hi // 2)
                if a > 0 and c < lim:  # not clipped: the full side 2*(L//2)
                    assert c - a >= 2 * (lo // 2)

    # mixing metadata
    ops = set(int(o) for o in meta["op"])
    if p.get("mixup_alpha", 0) == 0:
        assert ops <= {0, 1}
    if p.get("cutmix_alpha", 0) == 0:
        assert ops <= {0, 2}
    for i, m in enumerate(meta):
        if m["op"] == 0:
            assert (m["partner"], m["partner_label"], m["partner_pos"], m["lam"]) == (-1, -1, -1, 1.0)
            assert not m["box"].any()
            continue
        j = int(m["partner_pos"])
        assert 0 <= j < B and j != i, where + "sample %d: partner_pos %d" % (i, j)
        assert m["partner"] == meta[j]["index"] and m["partner_label"] == meta[j]["label"]
        if m["op"] == cutmixd.OP_CUTMIX:
            x0, y0, x1, y1 = (int(v) for v in m["box"])
            assert 0 <= x0 <= x1 <= W and 0 <= y0 <= y1 <= H
            if p.get("correct_lam", True):
                assert m["lam"] == 1.0 - (y1 - y0) * (x1 - x0) / float(H * W), (
                    where + "lam %r from box %s" % (m["lam"], (x0, y0, x1, y1)))
            else:  # lam is lambda_raw: check the centre-clip box rule against it
                assert 0.0 <= m["lam"] <= 1.0
                for a, c, lim in ((x0, x1, W), (y0, y1, H)):
                    half = int(np.floor(lim * np.sqrt(1.0 - m["lam"]))) // 2
                    if a > 0 and c < lim:
                        assert c - a == 2 * half, where + "box %s for lam %r" % (
                            list(m["box"]), m["lam"])
                    else:
                        assert half <= c - a <= 2 * half or half == 0
            if "cutmix_minmax" in p:
                a, c = p["cutmix_minmax"]
                for side, lim in ((x1 - x0, W), (y1 - y0, H)):
                    assert int(np.floor(lim * a)) <= side <= int(np.floor(lim * c))
        else:
            assert 0.0 <= m["lam"] <= 1.0 and not m["box"].any()

    # partner rules
    pos = np.arange(B)
    mixed = meta["op"] != 0
    pp = meta["partner_pos"]
    if p.get("partner") == "flip":
        assert (pp[mixed] == (B - 1 - pos)[mixed]).all(), where + str(pp)
    elif p.get("partner") == "roll":
        assert (pp[mixed] == ((pos - 1) % B)[mixed]).all(), where + str(pp)
    else:
        assert len(set(pp[mixed].tolist())) == int(mixed.sum()), where + "not a permutation"
    if p.get("mode") == "batch" and mixed.any():
        first = meta[mixed][0]
        for m in meta[mixed]:
            assert m["op"] == first["op"] and m["lam"] == first["lam"]
            assert (m["box"] == first["box"]).all()
    if p.get("mode") == "pair":
        if p.get("prob", 1.0) == 1.0:  # every pair is mixed, the odd one out is not
            assert int(mixed.sum()) == B - B % 2, where + "ops %s" % meta["op"].tolist()
        for i in np.nonzero(mixed)[0]:
            j = pp[i]
            if meta[j]["op"] != 0:
                assert meta[j]["partner_pos"] == i
                assert meta[j]["lam"] == meta[i]["lam"] and meta[j]["op"] == meta[i]["op"]
                assert (meta[j]["box"] == meta[i]["box"]).all()
    if p.get("partner") == "flip" and B % 2 == 1:
        m = meta[B // 2]
        assert (m["op"], m["partner"], m["lam"]) == (0, -1, 1.0), where + "middle of odd batch"

    # every pixel, every label
    exp, known = expected_images(ds.ref, meta, fill_of(p))
    assert_images_equal(b.images, exp, known, meta, where)
    check_labels(b, ds.num_classes, s)
    return meta


def run_pipeline(d, ds, name, epochs=(0, 1)):
    metas = []
    with d.client(name, window=4) as c:
        n = c.info()["batches_per_epoch"]
        for e in epochs:
            got = 0
            for b in c.epoch(e):
                assert b.images.shape == (len(b), H, W, 3) and b.images.dtype == np.uint8
                metas.append(check_batch(b, ds, name))
                got += 1
            assert got == n
    return np.concatenate(metas)


def test_cutmix_batch_permute(d, ds_square):
    meta = run_pipeline(d, ds_square, "cm_batch")
    assert (meta["op"] == cutmixd.OP_CUTMIX).mean() > 0.6
    assert meta["flip"].any() and not meta["flip"].all()
    assert len(set(meta["lam"][meta["op"] == 1].tolist())) > 3  # one lambda per batch


def test_cutmix_pair_flip_odd_batch(d, ds_square):
    meta = run_pipeline(d, ds_square, "cm_pair")
    assert (meta["op"] == cutmixd.OP_CUTMIX).mean() > 0.7
    assert (meta["op"] == 0).any()  # the middle of each batch of 7


def test_mixup_elem_roll(d, ds_square):
    meta = run_pipeline(d, ds_square, "mu_elem")
    assert (meta["op"] == cutmixd.OP_MIXUP).all()  # roll never pairs with itself for B > 1
    assert len(set(meta["lam"].tolist())) > 20  # one lambda per element


def test_mixup_batch_permute(d, ds_square):
    meta = run_pipeline(d, ds_square, "mu_batch")
    assert (meta["op"] == cutmixd.OP_MIXUP).mean() > 0.6


def test_switch_cutmix_mixup_noise_fill(d, ds_square):
    meta = run_pipeline(d, ds_square, "switch")
    ops = meta["op"].tolist()
    assert ops.count(1) > 5 and ops.count(2) > 5 and ops.count(0) > 3


def test_cutmix_minmax(d, ds_square):
    meta = run_pipeline(d, ds_square, "minmax")
    assert (meta["op"] == cutmixd.OP_CUTMIX).all()
    assert not meta["flip"].any()


def test_batch_of_one_is_never_mixed(d, ds_square):
    meta = run_pipeline(d, ds_square, "single", epochs=(0,))
    assert len(meta) == 48
    assert (meta["op"] == 0).all() and (meta["partner"] == -1).all() and (meta["lam"] == 1).all()


def test_off_epoch(d, ds_square):
    m0 = run_pipeline(d, ds_square, "off", epochs=(0,))
    m1 = run_pipeline(d, ds_square, "off", epochs=(1, 2))
    assert (m0["op"] != 0).any()
    assert (m1["op"] == 0).all() and m1["flip"].any()


def test_mixup_pair_permute_mean_fill(d, ds_square):
    meta = run_pipeline(d, ds_square, "mu_pair")
    assert (meta["op"] == cutmixd.OP_MIXUP).mean() > 0.8


def test_cutmix_raw_lambda(d, ds_square):
    meta = run_pipeline(d, ds_square, "rawlam")
    cm = meta[meta["op"] == cutmixd.OP_CUTMIX]
    assert len(cm) > 40
    area_lam = 1.0 - (cm["box"][:, 2] - cm["box"][:, 0]) * (cm["box"][:, 3] - cm["box"][:, 1]) / 4096.0
    assert (cm["lam"] != area_lam).any(), "correct_lam = false must report lambda_raw"
