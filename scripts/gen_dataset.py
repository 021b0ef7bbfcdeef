#!/usr/bin/python3
"""Generate a synthetic JPEG dataset in ImageFolder layout (PIL + numpy).

    gen_dataset.py OUT --classes 10 --per-class 30 [--size 160x120 | --sizes random]
                   [--quality 90] [--subsampling 444|422|420|mixed]
                   [--gray-fraction 0.1] [--seed 0] [--manifest FILE] [--photo]
                   [--val-per-class 10]

writes OUT/<class_name>/<nnnn>.jpg; with --val-per-class N a train/val
split instead: OUT/train/<class_name>/ (--per-class images each) and
OUT/val/<class_name>/ (N other images of the same classes), the two roots
of a config's [dataset] and [dataset.val].

Every class is one colour and one shape
(red circles, green squares, blue triangles, yellow stripes, ...) drawn one
to three times at random positions and scales on a textured background, so
the classes are easy to tell apart in a preview. ``--photo`` makes
photo-like images instead (smooth gradients, noise, blurred shapes; sizes
around 500x375 like ImageNet; quality 75-95 and mixed chroma subsampling) for
benchmarks. The output is a pure function of the arguments and the seed.

As a module:

    from gen_dataset import make_dataset
    samples = make_dataset(root, classes=4, per_class=8, size=(64, 64),
                           subsampling="420", manifest=root / "list.txt")

``samples`` lists every file in dataset order (class folders in byte-wise
sorted order, files sorted within a class: torchvision ImageFolder / cutmixd
root scanning), each with its relative path, label and class name.
"""

import argparse
import math
import os
import sys
from collections import namedtuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLOURS = [
    ("red", (220, 30, 30)),
    ("green", (30, 170, 50)),
    ("blue", (35, 70, 225)),
    ("yellow", (240, 215, 30)),
    ("magenta", (210, 40, 200)),
    ("cyan", (30, 205, 215)),
    ("orange", (250, 135, 20)),
    ("white", (250, 250, 250)),
    ("purple", (115, 40, 165)),
    ("black", (15, 15, 15)),
    ("pink", (255, 150, 185)),
    ("brown", (125, 75, 35)),
]
SHAPES = ["circle", "square", "triangle", "stripes", "ring", "cross", "diamond",
          "checker", "dots", "star", "hexagon", "bars"]

SUBSAMPLING = {"444": 0, "422": 1, "420": 2}

Sample = namedtuple("Sample", "path label class_name width height mode subsampling quality")


def class_names(n):
    """Names of n classes, in generation order (class k = colour k, shape k)."""
    names = []
    for k in range(n):
        colour = COLOURS[k % len(COLOURS)][0]
        shape = SHAPES[(k + k // len(SHAPES)) % len(SHAPES)]
        name = "%s_%s" % (colour, shape)
        if k >= len(COLOURS):
            name += "_%d" % k
        names.append(name)
    return names


def _class_style(k):
    return COLOURS[k % len(COLOURS)][1], SHAPES[(k + k // len(SHAPES)) % len(SHAPES)]


def _smooth_noise(rng, w, h, cells, amp):
    """Low-frequency noise: a small random grid upsampled bilinearly."""
    gw, gh = max(2, cells), max(2, int(round(cells * h / max(w, 1))) or 2)
    grid = rng.uniform(-amp, amp, size=(gh, gw, 3)).astype(np.float32)
    out = np.empty((h, w, 3), np.float32)
    for c in range(3):
        im = Image.fromarray(grid[:, :, c], mode="F").resize((w, h), Image.BILINEAR)
        out[:, :, c] = np.asarray(im)
    return out


def _background(rng, w, h, photo):
    if photo:
        # Smooth gradient between four random corner colours, plus structure.
        corners = rng.uniform(20, 235, size=(2, 2, 3)).astype(np.float32)
        ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        xs = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
        top = corners[0, 0] * (1 - xs) + corners[0, 1] * xs
        bot = corners[1, 0] * (1 - xs) + corners[1, 1] * xs
        img = top * (1 - ys) + bot * ys
        img = img + _smooth_noise(rng, w, h, int(rng.integers(3, 9)), 45.0)
        img = img + _smooth_noise(rng, w, h, int(rng.integers(16, 40)), 12.0)
    else:
        # Muted, textured background that never looks like a class colour.
        base = rng.uniform(90, 170) + rng.uniform(-15, 15, size=3)
        img = np.broadcast_to(base.astype(np.float32), (h, w, 3)).copy()
        img = img + _smooth_noise(rng, w, h, int(rng.integers(3, 7)), 30.0)
        yy, xx = np.mgrid[0:h, 0:w]
        period = rng.uniform(6, 14)
        ang = rng.uniform(0, math.pi)
        wave = np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * 2 * math.pi / period)
        img = img + (6.0 * wave)[:, :, None]
    return img


def _polygon(cx, cy, r, n, rot, inner=None):
    pts = []
    for i in range(n * (2 if inner else 1)):
        rr = r if (inner is None or i % 2 == 0) else r * inner
        a = rot + i * math.pi / (n if inner else n / 2)
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _draw_shape(draw, shape, cx, cy, r, colour, rng):
    x0, y0, x1, y1 = cx - r, cy - r, cx + r, cy + r
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=colour)
    elif shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r, 3, rng.uniform(0, 2 * math.pi)), fill=colour)
    elif shape == "stripes":
        step = max(3, int(r / 3))
        for i in range(-2 * int(r), 2 * int(r) + 1, step):
            draw.line([(x0 + i, y0), (x0 + i + 2 * r, y1)], fill=colour, width=max(1, step // 2))
    elif shape == "ring":
        draw.ellipse([x0, y0, x1, y1], outline=colour, width=max(2, int(r / 3.5)))
    elif shape == "cross":
        t = max(2, r / 3.0)
        draw.rectangle([cx - t, y0, cx + t, y1], fill=colour)
        draw.rectangle([x0, cy - t, x1, cy + t], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "checker":
        n = 4
        s = 2 * r / n
        for i in range(n):
            for j in range(n):
                if (i + j) % 2 == 0:
                    draw.rectangle([x0 + i * s, y0 + j * s, x0 + (i + 1) * s, y0 + (j + 1) * s],
                                   fill=colour)
    elif shape == "dots":
        n = 3
        s = 2 * r / n
        for i in range(n):
            for j in range(n):
                ccx, ccy = x0 + (i + 0.5) * s, y0 + (j + 0.5) * s
                draw.ellipse([ccx - s * 0.3, ccy - s * 0.3, ccx + s * 0.3, ccy + s * 0.3],
                             fill=colour)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, r, 5, -math.pi / 2, inner=0.45), fill=colour)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, rng.uniform(0, math.pi)), fill=colour)
    elif shape == "bars":
        step = max(3, int(r / 2))
        for i in range(int(y0), int(y1), 2 * step):
            draw.rectangle([x0, i, x1, i + step - 1], fill=colour)
    else:  # pragma: no cover
        raise ValueError(shape)


def render(k, i, size, seed=0, photo=False, rng=None):
    """The RGB image (PIL) of sample i of class k."""
    rng = rng if rng is not None else np.random.default_rng([seed, k, i, 1])
    w, h = size
    img = _background(rng, w, h, photo)
    colour, shape = _class_style(k)
    pil = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(0.12, 0.3) * min(w, h)
        cx, cy = rng.uniform(r * 0.5, w - r * 0.5), rng.uniform(r * 0.5, h - r * 0.5)
        jit = rng.integers(-20, 21, size=3)
        col = tuple(int(v) for v in np.clip(np.array(colour) + jit, 0, 255))
        _draw_shape(draw, shape, cx, cy, r, col, rng)
    if photo:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.2))))
        arr = np.asarray(pil).astype(np.float32)
        arr += rng.normal(0.0, rng.uniform(2.0, 8.0), size=arr.shape).astype(np.float32)
        pil = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    return pil


def parse_size(text):
    try:
        w, h = text.lower().split("x")
        w, h = int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError("size must be WIDTHxHEIGHT, got %r" % text)
    if w < 1 or h < 1 or w > 65500 or h > 65500:
        raise argparse.ArgumentTypeError("size out of range: %r" % text)
    return w, h


def _pick_size(rng, size, sizes, photo):
    if photo:
        w = int(round(500 * rng.uniform(0.7, 1.3)))
        h = int(round(375 * rng.uniform(0.7, 1.3)))
        if rng.uniform() < 0.25:
            w, h = h, w
        return w, h
    if sizes == "random":
        return int(rng.integers(48, 321)), int(rng.integers(48, 321))
    return size


def make_dataset(root, classes=10, per_class=30, size=(160, 120), sizes="fixed",
                 quality=90, subsampling="444", gray_fraction=0.0, seed=0,
                 manifest=None, photo=False, manifest_labels="name", first=0):
    """Write the dataset under root and return its samples in dataset order.

    size: (w, h) of every image (sizes="fixed"); sizes="random": each image
    gets its own size (48..320 per side). subsampling: "444", "422", "420" or
    "mixed" (per image). photo=True: photo-like images around 500x375 with
    quality 75..95 and mixed subsampling. manifest: also write
    "path<TAB>class" lines (class name, or index with manifest_labels="index")
    to this file, in dataset order. first: number of the first image of each
    class (a validation split uses first=per_class of the training split:
    other images of the same classes)."""
    root = os.fspath(root)
    if subsampling not in ("444", "422", "420", "mixed"):
        raise ValueError("subsampling must be 444, 422, 420 or mixed, got %r" % (subsampling,))
    names = class_names(classes)
    order = sorted(range(classes), key=lambda k: names[k].encode())
    label_of = {k: pos for pos, k in enumerate(order)}
    samples = []
    for k in order:
        d = os.path.join(root, names[k])
        os.makedirs(d, exist_ok=True)
        for i in range(first, first + per_class):
            rng = np.random.default_rng([seed, k, i])
            w, h = _pick_size(rng, size, sizes, photo)
            img = render(k, i, (w, h), seed=seed, photo=photo,
                         rng=np.random.default_rng([seed, k, i, 1]))
            gray = rng.uniform() < gray_fraction
            if gray:
                img = img.convert("L")
            if photo or subsampling == "mixed":
                sub = ("444", "422", "420")[int(rng.integers(0, 3))]
            else:
                sub = subsampling
            q = int(rng.integers(75, 96)) if photo else int(quality)
            rel = "%s/%04d.jpg" % (names[k], i)
            img.save(os.path.join(root, rel), "JPEG", quality=q,
                     subsampling=SUBSAMPLING[sub])
            samples.append(Sample(rel, label_of[k], names[k], w, h,
                                  "L" if gray else "RGB", "gray" if gray else sub, q))
    if manifest is not None:
        with open(manifest, "w") as f:
            for s in samples:
                cls = str(s.label) if manifest_labels == "index" else s.class_name
                f.write("%s\t%s\n" % (s.path, cls))
    return samples


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as it is, and every option's default."""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\nAs a module")[0],
                                 formatter_class=_Help)
    ap.add_argument("out", help="output folder (created)")
    ap.add_argument("--classes", type=int, default=10, help="number of classes")
    ap.add_argument("--per-class", type=int, default=30,
                    help="images per class (of the train split with --val-per-class)")
    ap.add_argument("--val-per-class", type=int, default=0,
                    help="also a validation split of this many images per class: "
                         "OUT/train and OUT/val (0: one folder, no split)")
    ap.add_argument("--size", type=parse_size, default="160x120", metavar="WxH",
                    help="size of every image with --sizes fixed")
    ap.add_argument("--sizes", choices=["fixed", "random"], default="fixed",
                    help="random: every image gets its own size (48..320 per side)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100")
    ap.add_argument("--subsampling", choices=["444", "422", "420", "mixed"], default="444",
                    help="chroma subsampling (mixed: per image)")
    ap.add_argument("--gray-fraction", type=float, default=0.0,
                    help="fraction of grayscale images")
    ap.add_argument("--seed", type=int, default=0, help="the output is a function of it")
    ap.add_argument("--manifest", help="also write path<TAB>class lines to this file "
                    "(of the train split with --val-per-class)")
    ap.add_argument("--manifest-labels", choices=["name", "index"], default="name",
                    help="class column of the manifest")
    ap.add_argument("--photo", action="store_true",
                    help="photo-like images, ImageNet-like sizes, for benchmarks")
    a = ap.parse_args(argv)
    if a.classes < 1 or a.per_class < 1:
        ap.error("--classes and --per-class must be >= 1")
    if a.val_per_class < 0:
        ap.error("--val-per-class must be >= 0")
    if not 1 <= a.quality <= 100:
        ap.error("--quality must be 1..100")
    if not 0.0 <= a.gray_fraction <= 1.0:
        ap.error("--gray-fraction must be 0..1")
    kw = dict(size=a.size, sizes=a.sizes, quality=a.quality, subsampling=a.subsampling,
              gray_fraction=a.gray_fraction, seed=a.seed, photo=a.photo,
              manifest_labels=a.manifest_labels)
    if not a.val_per_class:
        samples = make_dataset(a.out, a.classes, a.per_class, manifest=a.manifest, **kw)
        print("gen_dataset: wrote %d images in %d classes to %s" % (len(samples), a.classes,
                                                                   a.out))
        return 0
    train, val = os.path.join(a.out, "train"), os.path.join(a.out, "val")
    ts = make_dataset(train, a.classes, a.per_class, manifest=a.manifest, **kw)
    vs = make_dataset(val, a.classes, a.val_per_class, first=a.per_class, **kw)
    print("gen_dataset: wrote %d train images to %s and %d val images to %s (%d classes)\n"
          "  config: [dataset] root = %s\n          [dataset.val] root = %s"
          % (len(ts), train, len(vs), val, a.classes, os.path.abspath(train),
             os.path.abspath(val)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
