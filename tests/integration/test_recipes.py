"""The recipe augmentations (auto_augment, color_jitter, RandomErasing,
train_interpolation) through the real daemon, with torchvision 0.14 as the
oracle of every op.

The fixture images are 64x64 (the output size) and the pipelines use
crop = center with resize = size, so a sample's pre-augmentation pixels are
exactly PIL's decode of its file. From the metadata alone (flip, the ops
with their _apply_op arguments, the erase boxes) the test replays every
pixel with torchvision and compares.
"""

import math
import subprocess
from collections import Counter

import numpy as np
import pytest

import cutmixd
from helpers import BIN, EX_CONFIG, Daemon, Reference, config_text, module_daemon, raw_request

torch = pytest.importorskip("torch", reason="the recipe replay tests need python3-torch")
tv = pytest.importorskip("torchvision", reason="the recipe replay tests need python3-torchvision "
                         "(Debian's python3-torchvision 0.14) as the oracle of every op")
from torchvision.transforms import InterpolationMode  # noqa: E402
from torchvision.transforms import functional as F  # noqa: E402
from torchvision.transforms.autoaugment import _apply_op  # noqa: E402

SIZE = 64
BASE = dict(size=SIZE, crop="center", resize=SIZE, flip=0.5, shuffle=True, batch_size=16)
MEAN = (0.485, 0.456, 0.406)
MEAN_U8 = tuple(int(np.rint(m * 255)) for m in MEAN)

PIPELINES = {
    # timm RandAugment, every op applied (p1), 4 ops per sample
    "ra_inc": dict(BASE, auto_augment="rand-m9-n4-mstd0.5-inc1-p1.0"),
    "ra_plain": dict(BASE, auto_augment="rand-m7-n3-mstd1-p1.0", aa_fill=0),
    "ra_deit": dict(BASE, auto_augment="rand-m9-mstd0.5-inc1"),
    "ta": dict(BASE, auto_augment="ta_wide", aa_fill=128),
    "aa": dict(BASE, auto_augment="original"),
    "v0": dict(BASE, auto_augment="v0"),
    "3a": dict(BASE, auto_augment="3a", color_jitter=0.3),
    "cj": dict(BASE, color_jitter="0.4,0.3,0.2,0.1"),
    "cj_off": dict(BASE, auto_augment="rand-m9-mstd0.5", color_jitter=0.4),
    "re_const": dict(BASE, reprob=1.0, remode="const", recount=3),
    "re_rand": dict(BASE, reprob=1.0, remode="rand", recount=2, remin=0.1, remax=0.2),
    "re_pixel": dict(BASE, reprob=0.5, remode="pixel"),
    "interp": dict(size=32, batch_size=16, train_interpolation="random"),
    "all": dict(BASE, auto_augment="rand-m9-n3-mstd0.5-inc1-p0.8", reprob=0.5, recount=2,
                cutout_size=12, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_square444):
    dm = module_daemon(tmp_path_factory, "recipes", ds_square444.config(), PIPELINES,
                       server={"workers": 2})
    yield dm
    dm.stop()


@pytest.fixture(scope="module")
def ref(ds_square444):
    return Reference(ds_square444.root, ds_square444.samples)


def batches(d, pipeline, n_epochs=1, world=1, rank=0):
    out = []
    with d.client(pipeline, rank=rank, world=world) as c:
        nb = c.info()["batches_per_epoch"]
        for e in range(n_epochs):
            for k in range(nb):
                out.append(c.batch(e, k))
    return out


# -- replay ----------------------------------------------------------------------

def blur_ksize(sigma, side):
    """imgops' kernel rule: 2 * ceil(3 sigma) + 1, half width <= side - 1."""
    return 2 * min(math.ceil(3 * sigma), side - 1) + 1


def apply_tv(a, op):
    """One recorded op on an HWC uint8 array, by torchvision (the oracle)."""
    name = cutmixd.OP_TABLE[int(op["op"])]
    mag = float(op["magnitude"])
    fill = [float(f) for f in op["fill"]]
    mode = InterpolationMode.BILINEAR if op["interp"] == 1 else InterpolationMode.NEAREST
    if name == "SolarizeAdd":
        lut = np.array([min(max(i + mag, 0), 255) if i < 128 else i for i in range(256)])
        return lut.astype(np.uint8)[a]
    if name == "Solarize" and mag > 255:
        return a  # no pixel reaches the threshold (torchvision refuses > 255)
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).contiguous()
    if name == "Hue":
        o = F.adjust_hue(t, mag)
    elif name == "Grayscale":
        o = F.rgb_to_grayscale(t, 3)
    elif name == "GaussianBlur":
        h, w = a.shape[:2]
        o = F.gaussian_blur(t, [blur_ksize(mag, w), blur_ksize(mag, h)], [mag, mag])
    else:
        o = _apply_op(t, name, mag, mode, fill)
    return o.permute(1, 2, 0).numpy()


def replay(ref, m):
    """(expected image, mask of pixels whose value is known)."""
    img = ref.image(m["source"]).copy()
    if m["flip"]:
        img = img[:, ::-1].copy()
    for op in m["ops"][: m["n_ops"]]:
        img = apply_tv(img, op)
    known = np.ones(img.shape[:2], bool)
    for x0, y0, x1, y1 in m["erase"][: m["n_erase"]]:
        if m["erase_mode"] == cutmixd._wire.ERASE_CONST:
            img[y0:y1, x0:x1] = MEAN_U8
        else:
            known[y0:y1, x0:x1] = False
    return img, known


def check_replay(ref, bs, what, blur=False):
    n_ops = 0
    for b in bs:
        for i, m in enumerate(b.meta):
            exp, known = replay(ref, m)
            got = b.images[i]
            diff = np.abs(got.astype(int) - exp.astype(int))[known]
            n_ops += int(m["n_ops"])
            names = [cutmixd.OP_TABLE[int(o["op"])] for o in m["ops"][: m["n_ops"]]]
            where = "%s: batch %d slot %d ops %s mags %s" % (
                what, b.index, i, names, [round(float(o["magnitude"]), 4)
                                          for o in m["ops"][: m["n_ops"]]])
            # chained ops replayed exactly: at most 0.5% of values off, none by more
            # than the contract's +-2 (hue) unless a blur is in the chain
            off = np.count_nonzero(diff > 1)
            assert off <= 0.005 * diff.size, "%s: %d values differ by > 1 (max %d)" % (
                where, off, diff.max())
            if not blur:
                assert np.count_nonzero(diff > 2) <= 0.005 * diff.size, where
    return n_ops


@pytest.mark.parametrize("pipeline", ["ra_inc", "ra_plain", "ra_deit", "ta", "aa", "v0", "3a",
                                      "cj"])
def test_every_op_replays_with_torchvision(d, ref, pipeline):
    bs = batches(d, pipeline)
    n_ops = check_replay(ref, bs, pipeline, blur=pipeline == "3a")
    assert n_ops > 0, "no op was applied at all"


def test_erasing_replays_and_fills(d, ref):
    for name in ("re_const", "re_rand", "re_pixel"):
        bs = batches(d, name)
        check_replay(ref, bs, name)
        for b in bs:
            for i, m in enumerate(b.meta):
                assert m["erase_mode"] == {"re_const": 0, "re_rand": 1, "re_pixel": 2}[name]
                for x0, y0, x1, y1 in m["erase"][: m["n_erase"]]:
                    patch = b.images[i][y0:y1, x0:x1].reshape(-1, 3)
                    if name == "re_rand":
                        # one colour per box, unless a later box overlaps it
                        assert len(np.unique(patch, axis=0)) <= 1 + 2 * (m["n_erase"] - 1)


def test_op_metadata_is_well_formed(d):
    for b in batches(d, "ra_inc"):
        assert (b.meta["n_ops"] == 4).all(), "p1.0: every drawn op is applied and listed"
        ops = b.meta["ops"]
        assert set(np.unique(ops["op"][:, :4])) <= set(range(17))
        assert (ops["op"][:, 4:] == 0).all() and (ops["magnitude"][:, 4:] == 0).all()
        assert (ops["fill"][:, :4] == MEAN_U8).all(), "aa_fill = mean (timm's img_mean)"
        assert (ops["interp"][:, :4] == 1).all()
    for b in batches(d, "ra_plain"):
        assert (b.meta["ops"]["fill"][:, :3] == 0).all()
    for b in batches(d, "cj_off"):
        # timm: an auto_augment policy other than 3a switches ColorJitter off
        assert (b.meta["n_ops"] <= 2).all()
    for b in batches(d, "3a"):
        # 3a keeps ColorJitter (timm): one 3-Augment op, then the jitter's three
        assert (b.meta["n_ops"] == 4).all()
        first = b.meta["ops"]["op"][:, 0]
        assert set(first) <= {11, 17, 18}


# -- distributions ------------------------------------------------------------

def collect_ops(d, pipeline, epochs):
    rec = []
    for b in batches(d, pipeline, n_epochs=epochs):
        for m in b.meta:
            rec.append([(int(o["op"]), float(o["magnitude"])) for o in m["ops"][: m["n_ops"]]])
    return rec


def test_randaugment_frequencies_and_magnitudes(d):
    rec = collect_ops(d, "ra_inc", epochs=4)  # 192 samples x 4 ops
    codes = Counter(op for ops in rec for op, _ in ops)
    n = sum(codes.values())
    assert n == 192 * 4
    inc_ops = {12, 13, 14, 5, 10, 11, 16, 7, 8, 6, 9, 1, 2, 3, 4}
    assert set(codes) == inc_ops, "timm's 15 increasing ops, no other"
    # uniform choice: each of 15 expected n/15 = 51.2; fixed seed, generous bounds
    assert all(20 <= c <= 90 for c in codes.values()), codes
    # magnitude ~ N(9, 0.5), recovered from the level of the level-proportional ops
    levels = []
    for ops in rec:
        for op, mag in ops:
            if op == 5:
                levels.append(abs(mag) / 3.0)        # Rotate: level/10 * 30 degrees
            elif op in (1, 2):
                levels.append(abs(mag) / 0.03)       # Shear: level/10 * 0.3
            elif op in (6, 7, 8, 9):
                levels.append(abs(mag) / 0.09)       # enhance inc: factor 1 +- level/10*0.9
            elif op == 3 or op == 4:
                levels.append(abs(mag) / (0.045 * SIZE))  # translate: level/10 * 0.45 * size
    levels = np.array(levels)
    assert len(levels) > 300
    assert abs(levels.mean() - 9.0) < 0.12, levels.mean()
    assert 0.4 < levels.std() < 0.6, levels.std()
    # signed ops take both signs
    rot = [mag for ops in rec for op, mag in ops if op == 5]
    assert min(rot) < 0 < max(rot)
    # posterize inc: 4 - int(level * 0.4) bits; solarize inc: 256 - int(level * 25.6)
    post = {mag for ops in rec for op, mag in ops if op == 10}
    assert post <= {0.0, 1.0}, post


def test_randaugment_probability(d):
    rec = collect_ops(d, "ra_deit", epochs=4)  # p = 0.5, n = 2
    counts = Counter(len(ops) for ops in rec)
    assert set(counts) <= {0, 1, 2}
    mean = sum(k * c for k, c in counts.items()) / len(rec)
    assert 0.8 < mean < 1.2, counts  # binomial(2, 0.5) over 192 samples


def test_color_jitter_factor_ranges_and_order(d):
    rec = collect_ops(d, "cj", epochs=3)
    bound = {6: 0.4, 8: 0.3, 7: 0.2, 15: 0.1}
    seen = {k: [] for k in bound}
    firsts = Counter()
    for ops in rec:
        assert sorted(op for op, _ in ops) == [6, 7, 8, 15], "each of the four once"
        firsts[ops[0][0]] += 1
        for op, mag in ops:
            seen[op].append(mag)
    for op, vals in seen.items():
        vals = np.array(vals)
        assert vals.min() >= -bound[op] and vals.max() <= bound[op], op
        # uniform on [-b, b]: spread over most of the range
        assert vals.min() < -0.7 * bound[op] and vals.max() > 0.7 * bound[op], op
    assert len(firsts) == 4 and min(firsts.values()) >= 20, firsts  # random order


def test_erasing_area_and_aspect(d):
    areas, aspects, counts = [], [], Counter()
    for b in batches(d, "re_const", n_epochs=2):
        for m in b.meta:
            counts[int(m["n_erase"])] += 1
            for x0, y0, x1, y1 in m["erase"][: m["n_erase"]]:
                w, h = x1 - x0, y1 - y0
                assert 0 <= x0 and x1 < SIZE + 1 and 0 <= y0 and y1 <= SIZE
                assert w < SIZE and h < SIZE
                areas.append(w * h * m["n_erase"] / SIZE ** 2)
                aspects.append(h / w)
    # count ~ U{1..3} (a box whose 10 tries fail is left out: rare here)
    assert set(counts) <= {1, 2, 3} and min(counts.values()) > 10, counts
    areas, aspects = np.array(areas), np.array(aspects)
    # area*count/(W*H) in [0.02, 1/3] up to the rounding of w and h
    assert areas.min() > 0.01 and areas.max() < 0.45, (areas.min(), areas.max())
    assert aspects.min() > 0.25 and aspects.max() < 4.0
    assert aspects.min() < 0.6 and aspects.max() > 1.7, "log-uniform aspect in [0.3, 3.3]"
    # reprob 0.5: about half the samples
    n_erased = sum(int(m["n_erase"] > 0) for b in batches(d, "re_pixel") for m in b.meta)
    assert 12 <= n_erased <= 36, n_erased


def test_random_train_interpolation(d):
    rec = [int(m["resize_interp"]) for b in batches(d, "interp", n_epochs=2) for m in b.meta]
    c = Counter(rec)
    assert set(c) == {0, 1} and min(c.values()) > 25, c


# -- protocol ----------------------------------------------------------------

def test_version_1_request_gets_version_1_records(d):
    import zmq
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.endpoint)
    try:
        s.send(raw_request(cutmixd._wire.BATCH, 7, "ra_inc", version=1))
        assert s.poll(20000), "no reply"
        frames = s.recv_multipart()
    finally:
        s.close()
    hdr = cutmixd._wire.decode_reply(frames[0])
    assert hdr.version == 1 and hdr.meta_size == 224 and len(frames[3]) == 16 * 224
    v1 = np.frombuffer(frames[3], dtype=cutmixd.META_DTYPE_V1)
    with d.client("ra_inc") as c:
        v2 = c.batch(0, 0)
    assert v2.header.version == 2 and v2.meta.dtype.itemsize == 488
    # the first 224 bytes of every v2 record are the v1 record
    raw2 = np.frombuffer(bytes(v2.raw_frames[3]), np.uint8).reshape(16, 488)
    assert raw2[:, :224].tobytes() == frames[3]
    assert (v1["index"] == v2.meta["index"]).all()
    assert bytes(frames[1]) == bytes(v2.raw_frames[1])


# -- determinism ------------------------------------------------------------

def test_bytes_do_not_depend_on_worker_count(tmp_path, ds_square444, d):
    pl = {"all": PIPELINES["all"], "ta": PIPELINES["ta"], "3a": PIPELINES["3a"]}
    with Daemon(tmp_path / "w3", ds_square444.config(), pl, server={"workers": 3},
                name="w3") as d3:  # __enter__ starts it (once)
        for name in pl:
            a, b = batches(d, name), batches(d3, name)
            for x, y in zip(a, b):
                assert [bytes(f) for f in x.raw_frames[1:]] == [bytes(f) for f in y.raw_frames[1:]]
        # and a repeated request gives the same bytes again
        with d3.client("all") as c:
            assert bytes(c.batch(1, 1).raw_frames[1]) == bytes(c.batch(1, 1).raw_frames[1])


# -- configuration -----------------------------------------------------------

RECIPE_KEYS = {
    "auto_augment": "rand-m9-mstd0.5-inc1", "aa_fill": "mean", "color_jitter": "0.4",
    "reprob": 0.25, "remode": "pixel", "recount": 2, "remin": 0.05, "remax": 0.3,
    "aug_repeats": 3, "train_interpolation": "bicubic",
}


def run_check(tmp_path, dataset, pipeline):
    text, where = config_text({"endpoint": "ipc://%s/x.sock" % tmp_path}, dataset,
                              {"p": pipeline})
    path = tmp_path / "c.ini"
    path.write_text(text)
    r = subprocess.run([str(BIN), "-c", str(path), "--check"], capture_output=True,
                       text=True, timeout=30)
    return r, where


@pytest.mark.parametrize("key", sorted(RECIPE_KEYS))
def test_eval_pipeline_refuses_each_key(tmp_path, ds_square444, key):
    r, where = run_check(tmp_path, ds_square444.config(),
                         {"eval": True, "size": 32, key: RECIPE_KEYS[key]})
    assert r.returncode == EX_CONFIG, r.stderr
    line = where[("pipeline.p", key)]
    assert "c.ini:%d: [pipeline.p] %s: an eval pipeline takes no augmentation keys" % (
        line, key) in r.stderr, r.stderr


@pytest.mark.parametrize("key,value,msg", [
    ("auto_augment", "rand-n2", "rand- needs a magnitude section m{M}"),
    ("auto_augment", "rand-m9-q3", "unknown section 'q3'"),
    ("auto_augment", "rand-m9-n9", "n must be 1..8"),
    ("auto_augment", "rand-m9-inc2", "inc must be 0 or 1"),
    ("auto_augment", "rand-m9-p1.5", "p must be 0..1"),
    ("auto_augment", "augmix-m5", "must be rand-m{M}"),
    ("color_jitter", "0.4,0.4", "must be F or B,C,S[,H]"),
    ("color_jitter", "0.4,0.4,0.4,0.7", "hue must be 0..0.5"),
    ("color_jitter", "-1", "must be F or B,C,S[,H]"),
    ("aa_fill", "noise", "must be mean or 0..255"),
    ("remode", "blur", "must be const, rand or pixel"),
    ("recount", 9, "must be 1..8"),
    ("remax", 0, "must be a number > 0 and <= 1"),
    ("train_interpolation", "lanczos", "must be bilinear, bicubic or random"),
])
def test_bad_recipe_values_are_refused(tmp_path, ds_square444, key, value, msg):
    r, where = run_check(tmp_path, ds_square444.config(), {"size": 32, key: value})
    assert r.returncode == EX_CONFIG, r.stderr
    line = where[("pipeline.p", key)]
    assert "c.ini:%d: [pipeline.p] %s: " % (line, key) in r.stderr and msg in r.stderr, r.stderr


def test_bad_recipe_set_override_keeps_daemon_serving(d):
    """A reload with a bad recipe key is refused and the daemon keeps serving
    the old configuration."""
    import signal
    import time
    good = batches(d, "cj")[0]
    d.pipelines["cj"] = dict(PIPELINES["cj"], color_jitter="x")
    try:
        d.write_config()
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "color_jitter: must be F or B,C,S[,H]" not in d.log():
            assert time.monotonic() < deadline, d.tail()
            time.sleep(0.05)
        again = batches(d, "cj")[0]
        assert bytes(again.raw_frames[1]) == bytes(good.raw_frames[1])
    finally:
        d.pipelines["cj"] = PIPELINES["cj"]
        d.write_config()


# -- config/deit.ini end to end ----------------------------------------------

class IniDaemon(Daemon):
    """The daemon on a shipped config file, with --set overrides."""

    def __init__(self, workdir, ini, sets):
        super().__init__(workdir, None, None, name="deit", sets=sets)
        self.config_path = ini

    def write_config(self):
        return self.config_path


def test_deit_ini_served_end_to_end(tmp_path, ds_mixed):
    from helpers import REPO
    d = IniDaemon(tmp_path, REPO / "config" / "deit.ini", [])
    d.sets = ["server.endpoint=%s" % d.endpoint, "server.workers=2",
              "dataset.root=%s" % ds_mixed.root, "pipeline.train.batch_size=16",
              "pipeline.val.batch_size=16"]
    inc_ops = {12, 13, 14, 5, 10, 11, 16, 7, 8, 6, 9, 1, 2, 3, 4}
    with d:  # __enter__ starts it (once)
        N, K = len(ds_mixed), len(set(s.label for s in ds_mixed.samples))
        with d.client("train") as c:
            info = c.info()
            assert info["batches_per_epoch"] == N // 16  # drop_last, as without repeats
            seen = Counter()
            ops = Counter()
            for k in range(info["batches_per_epoch"]):
                b = c.batch(0, k)
                assert b.images.shape == (16, 224, 224, 3)
                m = b.meta
                assert (m["resize_interp"] == 1).all(), "bicubic resize"
                assert (m["n_ops"] <= 2).all()
                for row in m:
                    for o in row["ops"][: row["n_ops"]]:
                        assert int(o["op"]) in inc_ops, "RandAugment inc1 ops only: no jitter"
                        assert o["interp"] == 1 and tuple(o["fill"]) == MEAN_U8
                        ops[int(o["op"])] += 1
                assert (m["n_erase"] <= 1).all() and (m["erase_mode"] == 2).all()
                # one op per batch (mode batch); a fixed point of the partner
                # permutation is not mixed (op 0)
                mixed = set(m["op"]) - {0}
                assert len(mixed) == 1 and mixed <= {1, 2} and (m["op"] != 0).sum() >= 12
                lab = b.labels
                assert np.allclose(lab.sum(axis=1), 1, atol=1e-5)
                assert np.isclose(lab.min(), 0.1 / K, atol=1e-6), "smoothing 0.1"
                seen.update(int(i) for i in m["index"])
            assert set(seen.values()) == {3}, "aug_repeats 3, world 1: each index 3 times"
            assert len(ops) >= 8
        with d.client("val", eval=True) as c:
            b = c.batch(0, 0)
            assert (b.meta["n_ops"] == 0).all() and (b.meta["n_erase"] == 0).all()


# only one recipe key, no flip: still an augmenting pipeline
ONLY = {
    "only_cj": dict(BASE, flip=0, color_jitter=0.4),
    "only_aa": dict(BASE, flip=0, auto_augment="ta_wide"),
    "only_re": dict(BASE, flip=0, reprob=0.1),
    "only_rep": dict(BASE, flip=0, aug_repeats=2),
    "only_ti": dict(size=32, flip=0, train_interpolation="random"),
    "plain": dict(BASE, flip=0, train_interpolation="bicubic", color_jitter=0,
                  auto_augment="none", reprob=0, aug_repeats=1),
}


def test_expect_eval_refuses_recipe_pipelines(tmp_path, ds_square444):
    """A pipeline that only has recipe keys still augments: a client asking
    for evaluation data gets NOT_EVAL, and the daemon keeps serving."""
    d = Daemon(tmp_path, ds_square444.config(), ONLY, name="only").start()
    for name in ("only_cj", "only_aa", "only_re", "only_rep", "only_ti"):
        with d.client(name, eval=True) as c:
            with pytest.raises(cutmixd.DaemonError) as ei:
                c.batch(0, 0)
            assert ei.value.code == cutmixd.Status.NOT_EVAL, name
    # recipe keys at their neutral values augment nothing: eval clients may read it
    with d.client("plain", eval=True) as c:
        b = c.batch(0, 0)
        assert (b.meta["n_ops"] == 0).all() and (b.meta["resize_interp"] == 1).all()
    assert len(batches(d, "only_cj")) == 3
    d.stop()
