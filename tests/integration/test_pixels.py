"""Pixel exactness of daemon/decode.c and daemon/resize.c against PIL.

Debian's PIL links the same libjpeg-turbo (islow IDCT, fancy upsampling),
and resize.c reimplements Pillow's ImagingResample, so every comparison
here is byte for byte:

  (a) a full decode of PIL-written JPEGs equals Image.open(f).convert('RGB'),
      and a 1/2, 1/4, 1/8 decode equals PIL's draft() decode at that scale;
  (b) a region decode equals the same region of the full decode;
  (c) resize equals Image.resize((W, H), BILINEAR/BICUBIC, box=...).

Everything is driven through build/tools/imgtool (make build/tools/imgtool).
"""
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
IMGTOOL = ROOT / os.environ.get("BUILD", "build") / "tools" / "imgtool"


@pytest.fixture(scope="module")
def imgtool():
    if not os.access(IMGTOOL, os.X_OK):
        pytest.fail(f"{IMGTOOL} is missing: run `make build/tools/imgtool` first",
                    pytrace=False)
    return str(IMGTOOL)


def run(tool, *args):
    r = subprocess.run([tool, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, f"imgtool {' '.join(map(str, args))}: {r.stderr.strip()}"


def read_ppm(path):
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def photo_like(w, h, seed):
    """Smooth colour gradients, hard edges and noise: chroma upsampling,
    block edges and clipping all matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.stack([
        127 + 120 * np.sin(x / 9.0 + y / 23.0),
        x * 255 / max(w - 1, 1),
        127 + 127 * np.cos((x - y) / 13.0),
    ], axis=-1)
    a[(x // 21 + y // 17) % 4 == 0] = 255 - a[(x // 21 + y // 17) % 4 == 0]
    a += rng.normal(0, 12, a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


# name -> (size, PIL mode, save options)
JPEGS = {
    "444": ((203, 157), "RGB", dict(subsampling=0)),
    "422": ((203, 157), "RGB", dict(subsampling=1)),
    "420": ((203, 157), "RGB", dict(subsampling=2)),
    "420-even": ((128, 96), "RGB", dict(subsampling=2)),
    "420-progressive": ((203, 157), "RGB", dict(subsampling=2, progressive=True)),
    "422-progressive": ((97, 131), "RGB", dict(subsampling=1, progressive=True)),
    "gray": ((203, 157), "L", {}),
    "gray-progressive": ((61, 47), "L", dict(progressive=True)),
    "cmyk": ((77, 53), "CMYK", {}),
}


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    d = tmp_path_factory.mktemp("jpegs")
    out = {}
    for i, (name, ((w, h), mode, opts)) in enumerate(JPEGS.items()):
        im = Image.fromarray(photo_like(w, h, i))
        if mode != "RGB":
            im = im.convert(mode)
        path = d / f"{name}.jpg"
        im.save(path, quality=90, **opts)
        out[name] = path
    return out


@pytest.mark.parametrize("name", list(JPEGS))
def test_full_decode_equals_pil(imgtool, jpegs, tmp_path, name):
    path = jpegs[name]
    run(imgtool, "decode", path, tmp_path / "full.ppm")
    with Image.open(path) as im:
        want = np.asarray(im.convert("RGB"))
    got = read_ppm(tmp_path / "full.ppm")
    assert got.shape == want.shape
    assert np.array_equal(got, want), \
        f"{name}: {np.count_nonzero((got != want).any(axis=2))} pixels differ from PIL"


@pytest.mark.parametrize("name", ["444", "422", "420", "420-progressive", "gray"])
@pytest.mark.parametrize("denom", [2, 4, 8])
def test_scaled_decode_equals_pil_draft(imgtool, jpegs, tmp_path, name, denom):
    path = jpegs[name]
    with Image.open(path) as im:
        w, h = im.size
        im.draft(im.mode, (w // denom, h // denom))
        assert im.size == (-(-w // denom), -(-h // denom))
        want = np.asarray(im.convert("RGB"))
    sw, sh = want.shape[1], want.shape[0]
    run(imgtool, "decode", path, tmp_path / "s.ppm", 0, 0, sw, sh, denom)
    got = read_ppm(tmp_path / "s.ppm")
    assert np.array_equal(got, want)


def random_regions(rng, w, h, n):
    """Random regions plus the awkward ones: iMCU-aligned edges, even right
    edges, one pixel wide or high, touching each border."""
    regs = [(0, 0, w, h), (0, 0, 1, 1), (w - 1, h - 1, w, h), (0, 0, w, 1),
            (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h), (16, 16, 32, 32),
            (8, 5, 24, 9), (15, 0, 17, h), (32, 1, 33, 2)]
    regs = [r for r in regs if r[2] <= w and r[3] <= h]
    for _ in range(n):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        if rng.random() < 0.3:
            x0 -= x0 % 8
        regs.append((x0, y0, rng.randrange(x0 + 1, w + 1), rng.randrange(y0 + 1, h + 1)))
    return regs


@pytest.mark.parametrize("name", list(JPEGS))
def test_region_decode_equals_full_decode(imgtool, jpegs, tmp_path, name):
    path = jpegs[name]
    rng = random.Random(name)
    with Image.open(path) as im:
        full = np.asarray(im.convert("RGB"))
    h, w = full.shape[:2]
    bad = []
    for (x0, y0, x1, y1) in random_regions(rng, w, h, 60):
        out = tmp_path / "r.ppm"
        run(imgtool, "decode", path, out, x0, y0, x1, y1)
        got = read_ppm(out)
        if got.shape != (y1 - y0, x1 - x0, 3) or not np.array_equal(got, full[y0:y1, x0:x1]):
            bad.append((x0, y0, x1, y1))
    assert not bad, f"{name}: regions differing from the full decode: {bad}"


@pytest.mark.parametrize("name", ["422", "420", "420-progressive"])
@pytest.mark.parametrize("denom", [2, 4])
def test_scaled_region_equals_scaled_full(imgtool, jpegs, tmp_path, name, denom):
    path = jpegs[name]
    rng = random.Random(f"{name}/{denom}")
    with Image.open(path) as im:
        w, h = im.size
    sw, sh = -(-w // denom), -(-h // denom)
    run(imgtool, "decode", path, tmp_path / "f.ppm", 0, 0, sw, sh, denom)
    full = read_ppm(tmp_path / "f.ppm")
    for (x0, y0, x1, y1) in random_regions(rng, sw, sh, 15):
        run(imgtool, "decode", path, tmp_path / "r.ppm", x0, y0, x1, y1, denom)
        assert np.array_equal(read_ppm(tmp_path / "r.ppm"), full[y0:y1, x0:x1]), \
            (x0, y0, x1, y1)


def test_decode_errors_are_reported(imgtool, tmp_path):
    gif = tmp_path / "x.jpg"   # PNG and WebP decode now (test_formats.py)
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    r = subprocess.run([imgtool, "decode", str(gif), str(tmp_path / "o.ppm")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "jpeg: not a JPEG file: starts with 0x47 0x49" in r.stderr
    r = subprocess.run([imgtool, "decode", str(tmp_path / "missing.jpg"),
                        str(tmp_path / "o.ppm")], capture_output=True, text=True)
    assert r.returncode == 1 and "missing.jpg" in r.stderr
    good = tmp_path / "g.jpg"
    Image.new("RGB", (20, 10)).save(good)
    r = subprocess.run([imgtool, "decode", str(good), str(tmp_path / "o.ppm"),
                        "0", "0", "21", "10"], capture_output=True, text=True)
    assert r.returncode == 1 and "not inside the 20x10 image" in r.stderr


FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def random_resize_case(rng):
    sw, sh = rng.randint(1, 120), rng.randint(1, 120)
    kind = rng.random()
    if kind < 0.15:                      # whole box
        box = (0.0, 0.0, float(sw), float(sh))
    elif kind < 0.3:                     # integral box
        x0, y0 = rng.randrange(sw), rng.randrange(sh)
        box = (float(x0), float(y0), float(rng.randint(x0 + 1, sw)), float(rng.randint(y0 + 1, sh)))
    else:                                # arbitrary float box
        x0, y0 = rng.uniform(0, sw * 0.9), rng.uniform(0, sh * 0.9)
        box = (x0, y0, rng.uniform(x0 + 0.01, sw), rng.uniform(y0 + 0.01, sh))
    bw, bh = box[2] - box[0], box[3] - box[1]
    mode = rng.random()
    if mode < 0.4:                       # downscale, up to 10x
        w, h = max(1, int(bw / rng.uniform(1, 10))), max(1, int(bh / rng.uniform(1, 10)))
    elif mode < 0.8:                     # upscale, up to 4x
        w, h = max(1, int(bw * rng.uniform(1, 4))), max(1, int(bh * rng.uniform(1, 4)))
    else:                                # anything, incl. one pass only
        w, h = rng.choice([sw, rng.randint(1, 160)]), rng.choice([sh, rng.randint(1, 160)])
    return (sw, sh), box, (w, h)


def test_resize_equals_pil(imgtool, tmp_path):
    rng = random.Random(1234)
    src_ppm, out_ppm = tmp_path / "src.ppm", tmp_path / "out.ppm"
    cases = [((4, 4), (0.0, 0.0, 4.0, 4.0), (2, 2)),
             ((50, 40), (0.0, 0.0, 50.0, 40.0), (50, 40)),     # copy
             ((50, 40), (0.0, 0.0, 50.0, 40.0), (31, 40)),     # horizontal only
             ((50, 40), (0.0, 0.0, 50.0, 40.0), (50, 17)),     # vertical only
             ((50, 40), (3.0, 2.0, 33.0, 12.0), (30, 10)),     # crop short cut
             ((50, 40), (3.25, 2.5, 33.25, 12.5), (30, 10)),   # not a crop
             ((300, 200), (0.0, 0.0, 300.0, 200.0), (7, 5))]   # big kernels
    cases += [random_resize_case(rng) for _ in range(300)]
    bad = []
    for i, ((sw, sh), box, (w, h)) in enumerate(cases):
        pixels = photo_like(sw, sh, i) if i % 3 else \
            np.random.default_rng(i).integers(0, 256, (sh, sw, 3), dtype=np.uint8)
        src = Image.fromarray(pixels)
        src.save(src_ppm)
        for fname, filt in FILTERS.items():
            if (i + len(fname)) % 2 and i >= 7:
                continue                 # each random case gets one filter
            want = np.asarray(src.resize((w, h), filt, box=box))
            run(imgtool, "resize", src_ppm, out_ppm, w, h, *map(repr, box), fname)
            got = read_ppm(out_ppm)
            if not np.array_equal(got, want):
                bad.append(f"{sw}x{sh} box={box} -> {w}x{h} {fname}: "
                           f"{np.count_nonzero(got != want)} bytes differ, "
                           f"max {np.abs(got.astype(int) - want).max()}")
    assert not bad, "\n".join(bad[:10])
