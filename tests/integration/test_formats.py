"""PNG and WebP: pixels equal Pillow's Image.open(f).convert('RGB') (what
torchvision's ImageFolder loader returns), through build/tools/imgtool (the
daemon's decode.c + imgfmt.c) and through the real daemon; ImageFolder
picks up .png/.webp and counts (and names) every file it skips; corrupt,
truncated and oversized PNG/WebP files are replaced and counted while the
daemon keeps serving.

Fixtures are written at test time: Pillow for ordinary PNG/WebP, a small
PNG writer below for what Pillow cannot write (16-bit RGB/RGBA/LA, 2- and
4-bit gray, a header declaring a huge image)."""
import io
import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import BIN, Daemon

ROOT = Path(__file__).resolve().parents[2]
IMGTOOL = ROOT / os.environ.get("BUILD", "build") / "tools" / "imgtool"


@pytest.fixture(scope="module")
def imgtool():
    if not os.access(IMGTOOL, os.X_OK):
        pytest.fail(f"{IMGTOOL} is missing: run `make build/tools/imgtool` first",
                    pytrace=False)
    return str(IMGTOOL)


def decode(tool, path, out, *region):
    r = subprocess.run([tool, "decode", str(path), str(out), *map(str, region)],
                       capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def read_ppm(path):
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def pil_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def pattern(w, h, seed, channels=3):
    """Gradients plus noise: every value range and neighbour relation."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = [127 + 120 * np.sin(x / 7.0 + y / 19.0), x * 255 / max(w - 1, 1),
            127 + 127 * np.cos((x - y) / 11.0), 255 * (y / max(h - 1, 1))]
    a = np.stack(base[:channels], axis=-1) + rng.normal(0, 20, (h, w, channels))
    return np.clip(a, 0, 255).astype(np.uint8)


# -- a minimal PNG writer (for what Pillow cannot write) ---------------------

def png_bytes(rows, color_type, bit_depth, width, height, extra=b"", plte=None):
    """rows: list of raw (unfiltered) scanline bytes."""
    def chunk(t, data):
        return (struct.pack(">I", len(data)) + t + data +
                struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\0" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if plte is not None:
        out += chunk(b"PLTE", plte)
    return out + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png16(a, color_type):
    """a: uint16 array (h, w[, c]) -> 16-bit PNG bytes."""
    h, w = a.shape[:2]
    rows = [a[y].astype(">u2").tobytes() for y in range(h)]
    return png_bytes(rows, color_type, 16, w, h)


def png_gray_low(a, depth):
    """a: values 0..2^depth-1 (h, w) -> packed low-bit-depth gray PNG."""
    h, w = a.shape
    per = 8 // depth
    rows = []
    for y in range(h):
        bits = 0
        row = bytearray()
        for x in range(w):
            bits = (bits << depth) | int(a[y, x])
            if x % per == per - 1:
                row.append(bits)
                bits = 0
        if w % per:
            row.append(bits << (depth * (per - w % per)))
        rows.append(bytes(row))
    return png_bytes(rows, 0, depth, w, h)


def make_fixtures(d, w=53, h=37):
    """name -> path; odd sizes on purpose."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    rgb, rgba = pattern(w, h, 1), pattern(w, h, 2, 4)
    rgba[..., 3][rgba[..., 3] < 70] = 0        # fully transparent pixels too
    gray = pattern(w, h, 3, 1)[..., 0]
    out = {}

    def save(name, im, fmt, **kw):
        out[name] = d / name
        im.save(out[name], fmt, **kw)

    save("rgb.png", Image.fromarray(rgb), "PNG")
    save("rgba.png", Image.fromarray(rgba, "RGBA"), "PNG")
    save("la.png", Image.fromarray(rgba[..., :2].copy(), "LA"), "PNG")
    save("gray.png", Image.fromarray(gray, "L"), "PNG")
    save("bilevel.png", Image.fromarray(gray > 128), "PNG")
    save("palette.png", Image.fromarray(rgb).quantize(37), "PNG")
    save("palette-trns.png", Image.fromarray(rgb).quantize(37), "PNG", transparency=5)
    save("gray-trns.png", Image.fromarray(gray, "L"), "PNG", transparency=17)
    save("rgb-optimized.png", Image.fromarray(rgb), "PNG", optimize=True)
    for name, data in {
        "rgb16.png": png16(rgb.astype(np.uint16) * 257 + np.arange(w, dtype=np.uint16)[None, :, None], 2),
        "rgba16.png": png16(rgba.astype(np.uint16) * 251, 6),
        "la16.png": png16(rgba[..., :2].astype(np.uint16) * 199, 4),
        "gray16.png": png16((gray.astype(np.uint16) * 2).astype(np.uint16), 0),
        "gray2.png": png_gray_low(gray >> 6, 2),
        "gray4.png": png_gray_low(gray >> 4, 4),
    }.items():
        out[name] = d / name
        out[name].write_bytes(data)
    save("lossy.webp", Image.fromarray(rgb), "WEBP", quality=75)
    save("lossless.webp", Image.fromarray(rgb), "WEBP", lossless=True)
    save("lossy-alpha.webp", Image.fromarray(rgba, "RGBA"), "WEBP", quality=60)
    save("lossless-alpha.webp", Image.fromarray(rgba, "RGBA"), "WEBP", lossless=True)
    save("small.webp", Image.fromarray(pattern(1, 1, 9)), "WEBP", quality=90)
    save("small.png", Image.fromarray(pattern(1, 2, 9)), "PNG")
    return out


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_fixtures(tmp_path_factory.mktemp("formats"))


# -- decoder against Pillow --------------------------------------------------

def test_every_kind_decodes_like_pillow(imgtool, fixtures, tmp_path):
    bad = []
    for name, path in fixtures.items():
        rc, err = decode(imgtool, path, tmp_path / "out.ppm")
        assert rc == 0, "%s: %s" % (name, err)
        got, want = read_ppm(tmp_path / "out.ppm"), pil_rgb(path)
        if got.shape != want.shape or not np.array_equal(got, want):
            bad.append("%s (mode %s): %s" % (name, Image.open(path).mode,
                       "shape %s vs %s" % (got.shape, want.shape) if got.shape != want.shape
                       else "%d bytes differ" % (got != want).sum()))
    assert not bad, "differ from Pillow's convert('RGB'):\n" + "\n".join(bad)


def test_alpha_is_dropped_like_pillow(imgtool, tmp_path):
    """Pillow's RGBA->RGB keeps the colour of transparent pixels (no
    compositing on black): so must we."""
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0], a[..., 1], a[..., 2], a[..., 3] = 200, 100, 50, 0
    p = tmp_path / "clear.png"
    Image.fromarray(a, "RGBA").save(p)
    assert decode(imgtool, p, tmp_path / "o.ppm")[0] == 0
    assert (read_ppm(tmp_path / "o.ppm") == [200, 100, 50]).all()
    assert (pil_rgb(p) == [200, 100, 50]).all()


def test_regions_equal_the_full_decode(imgtool, fixtures, tmp_path):
    for name in ("rgba.png", "palette.png", "lossy.webp", "gray16.png"):
        path = fixtures[name]
        full = pil_rgb(path)
        h, w = full.shape[:2]
        for x0, y0, x1, y1 in [(0, 0, w, h), (1, 2, 9, 3), (w - 1, h - 1, w, h),
                               (7, 0, w, 11), (0, 5, 1, h)]:
            rc, err = decode(imgtool, path, tmp_path / "r.ppm", x0, y0, x1, y1)
            assert rc == 0, err
            assert np.array_equal(read_ppm(tmp_path / "r.ppm"), full[y0:y1, x0:x1]), \
                (name, (x0, y0, x1, y1))


def box_reduce(a, k):
    h, w = a.shape[:2]
    oh, ow = -(-h // k), -(-w // k)
    out = np.zeros((oh, ow, 3), np.uint8)
    for oy in range(oh):
        for ox in range(ow):
            blk = a[oy * k:min(oy * k + k, h), ox * k:min(ox * k + k, w)].astype(np.int64)
            n = blk.shape[0] * blk.shape[1]
            out[oy, ox] = (2 * blk.sum(axis=(0, 1)) + n) // (2 * n)
    return out


@pytest.mark.parametrize("denom", [2, 4, 8])
def test_scaled_read_is_a_box_average(imgtool, fixtures, tmp_path, denom):
    """dct_scale on a PNG/WebP: ceil(w/denom) x ceil(h/denom), box averages
    rounded half up, partial boxes at the right/bottom edge (docs/CONFIG.md)."""
    for name in ("rgb.png", "lossless-alpha.webp"):
        full = pil_rgb(fixtures[name])
        want = box_reduce(full, denom)
        hh, ww = want.shape[:2]
        rc, err = decode(imgtool, fixtures[name], tmp_path / "s.ppm", 0, 0, ww, hh, denom)
        assert rc == 0, err
        assert np.array_equal(read_ppm(tmp_path / "s.ppm"), want), (name, denom)


def hostile_files(d):
    """name -> (bytes, message fragment the decoder must give)."""
    good_png = io.BytesIO()
    Image.fromarray(pattern(64, 64, 5)).save(good_png, "PNG")
    good_png = good_png.getvalue()
    good_webp = io.BytesIO()
    Image.fromarray(pattern(64, 64, 6)).save(good_webp, "WEBP", quality=80)
    good_webp = good_webp.getvalue()
    crc = bytearray(good_png)
    crc[len(good_png) // 2] ^= 0x55          # inside IDAT: deflate/CRC error
    webp_bad = bytearray(good_webp)
    webp_bad[40:60] = b"\xff" * 20
    huge = png_bytes([b"\0" * 3], 2, 8, 30000, 30000)   # header only
    return {
        "truncated.png": (good_png[: len(good_png) // 2], "png:"),
        "crc.png": (bytes(crc), "png:"),
        "bomb.png": (huge, "limit is"),
        "truncated.webp": (good_webp[: len(good_webp) // 2], "webp:"),
        "garbage.webp": (bytes(webp_bad), "webp:"),
        "header-only.webp": (good_webp[:20], "webp:"),
    }


def test_hostile_files_fail_with_a_message(imgtool, tmp_path):
    for name, (data, frag) in hostile_files(tmp_path).items():
        p = tmp_path / name
        p.write_bytes(data)
        rc, err = decode(imgtool, p, tmp_path / "o.ppm")
        assert rc == 1 and frag in err, (name, rc, err)


# -- through the daemon ------------------------------------------------------

SIZE = 48


def folder_dataset(root):
    """ImageFolder of SIZE x SIZE images in every format, plus files the
    scan must skip. Returns (samples: [(rel, label)], skipped rels)."""
    kinds = [("a.png", "PNG", {}, "RGB"), ("b.webp", "WEBP", dict(lossless=True), "RGB"),
             ("c.PNG", "PNG", {}, "RGBA"), ("d.webp", "WEBP", dict(quality=70), "RGBA"),
             ("e.jpg", "JPEG", dict(quality=90), "RGB"), ("f.png", "PNG", {}, "P"),
             ("g.WEBP", "WEBP", dict(quality=80), "RGB"), ("h.jpeg", "JPEG", {}, "L")]
    samples, skipped = [], []
    for k, cls in enumerate(["cat", "dog", "emu"]):
        (root / cls).mkdir(parents=True)
        for j, (name, fmt, kw, mode) in enumerate(kinds):
            a = pattern(SIZE, SIZE, 100 * k + j, 4)
            im = Image.fromarray(a, "RGBA")
            im = im.convert("RGB").quantize(64) if mode == "P" else im.convert(mode)
            rel = "%s/%s" % (cls, name)
            im.save(root / rel, fmt, **kw)
            samples.append((rel, k))
        for extra in ("notes.txt", "x.bmp", "y.tif"):
            (root / cls / extra).write_bytes(b"not indexed")
            skipped.append("%s/%s" % (cls, extra))
    samples.sort(key=lambda s: (s[1], s[0].encode()))
    return samples, skipped


PIPES = {"val": dict(eval=True, batch_size=8, size=SIZE, resize=SIZE),
         "train": dict(batch_size=8, size=32, flip=0.0, dct_scale=False)}


def test_folder_of_png_webp_serves_pillow_pixels(tmp_path):
    root = tmp_path / "ds"
    samples, skipped = folder_dataset(root)
    with Daemon(tmp_path / "d", dataset={"root": str(root)}, pipelines=PIPES) as d:
        log = d.log()
        assert "skipped %d files" % len(skipped) in log and "torchvision" in log, log
        with d.client("val", eval=True) as c:
            info = c.info()
            batches = list(c.epoch(0))
        assert info["dataset_size"] == len(samples) and info["skipped_files"] == len(skipped)
        assert info["class_names"] == ["cat", "dog", "emu"]
        n = 0
        for b in batches:
            for i, m in enumerate(b.meta):
                rel, label = samples[m["index"]]
                assert m["status"] == 0 and m["label"] == label
                want = pil_rgb(root / rel)
                assert np.array_equal(b.images[i], want), "%s differs from Pillow" % rel
                n += 1
        assert n == len(samples)
        # random-resized crops resize the decoded image like a JPEG's:
        # crop, then resize (torchvision's resized_crop on a PIL image)
        with d.client("train") as c:
            for bi in range(3):
                b = c.batch(0, bi)
                for i, m in enumerate(b.meta):
                    rel = samples[m["source"]][0]
                    box = tuple(int(v) for v in m["crop"])
                    with Image.open(root / rel) as im:
                        want = np.asarray(im.convert("RGB").crop(box).resize(
                            (32, 32), Image.BILINEAR))
                    assert np.array_equal(b.images[i], want), (rel, box)


def test_check_lists_skipped_files(tmp_path):
    root = tmp_path / "ds"
    samples, skipped = folder_dataset(root)
    d = Daemon(tmp_path / "d", dataset={"root": str(root)}, pipelines=PIPES)
    d.write_config()
    r = subprocess.run(d.command() + ["--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "%d files" % len(samples) in r.stdout
    assert "skipped %d files" % len(skipped) in r.stdout
    for rel in skipped:
        assert "skipped %s" % rel in r.stdout, r.stdout


def test_bad_png_webp_replaced_and_daemon_serves(tmp_path):
    root = tmp_path / "ds"
    (root / "ok").mkdir(parents=True)
    (root / "bad").mkdir(parents=True)
    for j in range(6):
        Image.fromarray(pattern(SIZE, SIZE, j)).save(root / "ok" / ("%d.png" % j))
    hostile = hostile_files(tmp_path)
    for name, (data, _) in hostile.items():
        (root / "bad" / name).write_bytes(data)
    pipes = {"val": dict(eval=True, batch_size=4, size=SIZE, resize=SIZE)}
    with Daemon(tmp_path / "d", dataset={"root": str(root)}, pipelines=pipes,
                server={"max_pixels": 10_000_000}) as d:
        with d.client("val", eval=True) as c:
            batches = list(c.epoch(0))
            stats = c.stats()
        metas = np.concatenate([b.meta for b in batches])
        assert len(metas) == 12
        names = sorted(hostile) + ["%d.png" % j for j in range(6)]
        # ImageFolder order: class 'bad' first, byte-wise sorted names
        for m in metas:
            assert (m["status"] != 0) == (m["index"] < len(hostile)), m
        for b in batches:
            for i, m in enumerate(b.meta):
                src = names[m["source"]]
                assert src.endswith(".png") and src[0].isdigit(), src
                assert np.array_equal(b.images[i], pil_rgb(root / "ok" / src))
        assert stats["decode_errors"] >= len(hostile)
        log = d.log()
        for name, (_, frag) in hostile.items():
            line = [ln for ln in log.splitlines() if name in ln and "decode" in ln]
            assert line and frag in line[0], (name, line)
        assert d.alive()
