"""`cutmixd pack` and [dataset] pack = DIR/index.cmxpack: JPEGs transcoded
losslessly (baseline, optimized Huffman, restart intervals within MCU rows,
decoded pixels identical to the source's), other formats stored as is,
unreadable files kept as unreadable samples; the index's segment offsets
point at each restart interval; batches from the pack are byte-identical
to batches from the source files; a damaged index or pack file is refused
at start-up with a message."""
import io
import os
import struct
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gen_dataset
from helpers import BIN, Daemon, config_text

HDR = struct.Struct("<8sIIQIIQQQ")
REC = struct.Struct("<IIQIiQQII")

PIPES = {
    "train": dict(batch_size=8, size=40, flip=0.5, cutmix_alpha=1.0, cutout_holes=1,
                  cutout_size=6),
    "val": dict(eval=True, batch_size=10, size=40, resize=48),
}


def read_index(path):
    b = path.read_bytes()
    magic, ver, nsh, n, K, flags, nb, cb, nseg = HDR.unpack_from(b, 0)
    assert magic == b"CMXPACK1" and ver == 1
    at = HDR.size
    sizes = struct.unpack_from("<%dQ" % nsh, b, at)
    at += 8 * nsh
    recs = [REC.unpack_from(b, at + i * REC.size) for i in range(n)]
    at += REC.size * n
    names = b[at:at + nb].split(b"\0")[:-1]
    at += nb
    classes = b[at:at + cb].split(b"\0")[:-1]
    at += cb
    segs = struct.unpack_from("<%dI" % nseg, b, at)
    assert at + 4 * nseg == len(b)
    return sizes, recs, [x.decode() for x in names], [x.decode() for x in classes], segs


def jpeg_bytes(im, **kw):
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    base = tmp_path_factory.mktemp("pack")
    root = base / "folder"
    gen_dataset.make_dataset(root, classes=3, per_class=8, sizes="random",
                             subsampling="mixed", gray_fraction=0.2, seed=3)
    extra = root / "zz_extra"
    extra.mkdir()
    pic = gen_dataset.render(1, 5, (83, 61), seed=2)
    (extra / "progressive.jpg").write_bytes(jpeg_bytes(pic, quality=85, progressive=True))
    (extra / "p422.jpg").write_bytes(jpeg_bytes(pic, quality=85, subsampling=1,
                                                progressive=True))
    arr = np.asarray(pic)
    (extra / "s440.jpg").write_bytes(subprocess.run(
        ["cjpeg", "-sample", "1x2", "-quality", "90"],
        input=b"P6 %d %d 255\n" % (83, 61) + arr.tobytes(), capture_output=True,
        check=True).stdout)
    (extra / "odd1x1.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (1, 1), (9, 99, 199))))
    (extra / "cmyk.jpg").write_bytes(jpeg_bytes(pic.convert("CMYK"), quality=90))
    pic.save(extra / "image.png")
    (extra / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    (extra / "empty.jpg").write_bytes(b"")
    return root


def run_pack(cfg_dir, dataset, out, *extra):
    cfg_dir.mkdir(parents=True, exist_ok=True)
    text, _ = config_text({"endpoint": "ipc://%s/x.sock" % cfg_dir}, dataset,
                          {"val": PIPES["val"]})
    (cfg_dir / "src.ini").write_text(text)
    return subprocess.run([str(BIN), "pack", "-c", str(cfg_dir / "src.ini"), *extra, str(out)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, source):
    base = tmp_path_factory.mktemp("packed")
    out = base / "out"
    r = run_pack(base / "cfg", {"root": str(source)}, out, "--shard-bytes", "40000")
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r


def test_pack_summary_and_files(packed, source):
    out, r = packed
    sizes, recs, names, classes, segs = read_index(out / "index.cmxpack")
    n = len(names)
    assert "packed %d samples" % n in r.stdout
    # stored as is: png, cmyk, broken (it fails when served, as before)
    assert "3 stored as is, 1 unreadable" in r.stdout, r.stdout
    assert "empty.jpg" in r.stderr
    assert len(sizes) >= 3, "shard-bytes 40000 should give several pack files"
    for k, size in enumerate(sizes):
        assert (out / ("pack-%05d.bin" % k)).stat().st_size == size
    kinds = {nm: rec[1] for nm, rec in zip(names, recs)}
    assert kinds["zz_extra/image.png"] == 2 and kinds["zz_extra/cmyk.jpg"] == 2
    assert kinds["zz_extra/broken.jpg"] == 2 and kinds["zz_extra/empty.jpg"] == 3
    assert sum(1 for k in kinds.values() if k == 1) == n - 4


def test_transcoded_jpegs_are_lossless_baseline_with_restarts(packed, source):
    out, _ = packed
    sizes, recs, names, classes, segs = read_index(out / "index.cmxpack")
    blobs = [(out / ("pack-%05d.bin" % k)).read_bytes() for k in range(len(sizes))]
    for nm, (shard, kind, off, size, label, name_off, first, nseg, src_size) in zip(names, recs):
        data = blobs[shard][off:off + size]
        orig = (source / nm).read_bytes()
        assert src_size == len(orig)
        if kind == 3:
            assert size == 0
            continue
        if kind == 2:
            assert data == orig, nm
            continue
        assert data[:2] == b"\xff\xd8" and b"\xff\xc2" not in data[:data.find(b"\xff\xda")]
        assert b"\xff\xdd" in data[:data.find(b"\xff\xda")], "%s: no DRI marker" % nm
        with Image.open(io.BytesIO(data)) as a, Image.open(source / nm) as b:
            assert a.size == b.size
            assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))), \
                "%s: transcoded pixels differ" % nm
            # restart intervals never straddle MCU rows: a whole number per row,
            # DRI x intervals per row = MCUs per row
            multi = len(a.layer) > 1
            vmax = max(layer[2] for layer in a.layer) if multi else 1
            hmax = max(layer[1] for layer in a.layer) if multi else 1
            rows = -(-a.size[1] // (8 * vmax))
            per_row = -(-a.size[0] // (8 * hmax))
            dri = data.find(b"\xff\xdd")
            interval = int.from_bytes(data[dri + 4:dri + 6], "big")
            assert nseg % rows == 0 and interval * (nseg // rows) == per_row, \
                (nm, nseg, rows, interval, per_row)
        seg = segs[first:first + nseg]
        sos = data.find(b"\xff\xda")
        assert seg[0] == sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
        for s in seg[1:]:
            assert data[s - 2] == 0xFF and 0xD0 <= data[s - 1] <= 0xD7, nm
        assert nseg >= 1 and data[-2:] == b"\xff\xd9"


def batches(d, pipeline, count, eval=False):
    with d.client(pipeline, eval=eval) as c:
        info = c.info()
        return info, [[bytes(f) for f in c.batch(2, i).raw_frames[1:]] for i in range(count)]


def test_pack_serves_the_same_batches(tmp_path, packed, source):
    out, _ = packed
    with Daemon(tmp_path / "f", dataset={"root": str(source)}, pipelines=PIPES) as d:
        finfo, ft = batches(d, "train", 4)
        _, fv = batches(d, "val", 3, eval=True)
    with Daemon(tmp_path / "p", dataset={"pack": str(out / "index.cmxpack")},
                pipelines=PIPES) as d:
        pinfo, pt = batches(d, "train", 4)
        _, pv = batches(d, "val", 3, eval=True)
    assert pinfo["dataset_size"] == finfo["dataset_size"]
    assert pinfo["class_names"] == finfo["class_names"]
    for i, (a, b) in enumerate(zip(ft + fv, pt + pv)):
        assert a == b, "batch %d differs between the files and the pack" % i


def test_pack_from_shards(tmp_path, source):
    samples = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.jpg")
                     if p.parent.name != "zz_extra")
    dest = tmp_path / "shards"
    dest.mkdir()
    classes = sorted({s.split("/")[0] for s in samples})
    with tarfile.open(dest / "a.tar", "w") as tar:
        for s in samples:
            for name, data in ((s, (source / s).read_bytes()),
                               (s[:-4] + ".cls", b"%d" % classes.index(s.split("/")[0]))):
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    r = run_pack(tmp_path / "cfg", {"shards": str(dest / "a.tar")}, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "%d JPEGs transcoded, 0 stored as is, 0 unreadable" % len(samples) in r.stdout


def test_damaged_pack_refused(tmp_path, packed):
    out, _ = packed
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    idx = bad / "index.cmxpack"
    good = idx.read_bytes()
    cases = [
        (good[:-5], "size does not match"),
        (b"NOTAPACK" + good[8:], "not a cutmixd pack index"),
    ]
    # a record pointing past its pack file
    b = bytearray(good)
    nsh = HDR.unpack_from(good, 0)[2]
    at = HDR.size + 8 * nsh
    rec = list(REC.unpack_from(good, at))
    rec[2] = 1 << 40
    REC.pack_into(b, at, *rec)
    cases.append((bytes(b), "sample record is out of range"))
    for data, frag in cases:
        idx.write_bytes(data)
        d = Daemon(tmp_path / "d", dataset={"pack": str(idx)}, pipelines={"val": PIPES["val"]})
        d.write_config()
        r = subprocess.run(d.command(), capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and frag in r.stdout + r.stderr, (frag, r.stdout, r.stderr)
    idx.write_bytes(good)
    with open(bad / "pack-00001.bin", "r+b") as f:
        f.truncate(100)
    d = Daemon(tmp_path / "e", dataset={"pack": str(idx)}, pipelines={"val": PIPES["val"]})
    d.write_config()
    r = subprocess.run(d.command(), capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "the index says" in r.stdout + r.stderr


def test_pack_usage_errors(tmp_path):
    r = subprocess.run([str(BIN), "pack"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64 and "usage: cutmixd pack" in r.stderr
    r = subprocess.run([str(BIN), "pack", "-c", str(tmp_path / "none.ini"), str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78 and "none.ini" in r.stderr


# -- spliced region decode: pixel-identical to the plain decode -------------

ROOT = Path(__file__).resolve().parents[2]
SPLICETOOL = ROOT / os.environ.get("BUILD", "build") / "tools" / "splicetool"


def cjpeg(arr, *args):
    h, w = arr.shape[:2]
    return subprocess.run(["cjpeg", *args], input=b"P6 %d %d 255\n" % (w, h) + arr.tobytes(),
                          capture_output=True, check=True).stdout


@pytest.mark.parametrize("name,size,how", [
    ("444", (203, 157), dict(subsampling=0)),
    ("422", (203, 157), dict(subsampling=1)),
    ("420", (203, 157), dict(subsampling=2)),
    ("420-even", (128, 96), dict(subsampling=2)),
    ("440", (131, 97), "1x2"),
    ("411", (133, 45), "4x1"),
    ("420-progressive", (97, 131), dict(subsampling=2, progressive=True)),
    ("422-restarts", (90, 70), "2x1,restart"),
    ("gray", (61, 47), "L"),
    ("gray-progressive", (33, 70), "Lp"),
    ("1x1", (1, 1), dict(subsampling=2)),
    ("tall", (7, 300), dict(subsampling=2)),
    ("wide", (300, 7), dict(subsampling=2)),
    ("420-intervals", (256, 100), dict(subsampling=2)),   # 4 intervals per row
    ("422-intervals", (320, 70), dict(subsampling=1)),
    ("444-intervals", (240, 90), dict(subsampling=0)),
    ("440-intervals", (192, 64), "1x2"),
    ("gray-intervals", (200, 50), "L"),
])
def test_spliced_regions_equal_plain_decode(tmp_path, name, size, how):
    """Every region whose top/bottom is on, next to or between MCU-row
    boundaries, at scale 1/1..1/8, several column ranges: the splice of
    only the needed MCU rows (plus the chroma margin rule) decodes the same
    bytes as the whole file."""
    w, h = size
    pic = np.asarray(gen_dataset.render(2, 7, (w, h), seed=4))
    if isinstance(how, dict):
        data = jpeg_bytes(Image.fromarray(pic), quality=88, **how)
    elif how in ("L", "Lp"):
        data = jpeg_bytes(Image.fromarray(pic).convert("L"), quality=88,
                          progressive=how == "Lp")
    elif how.endswith("restart"):
        data = cjpeg(pic, "-sample", how.split(",")[0], "-restart", "3B", "-quality", "85")
    else:
        data = cjpeg(pic, "-sample", how, "-quality", "85")
    src = tmp_path / ("%s.jpg" % name)
    src.write_bytes(data)
    r = subprocess.run([str(SPLICETOOL), "check", str(src)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, "%s: %s %s" % (name, r.stdout, r.stderr)
    regions, spliced = int(r.stdout.split()[1]), int(r.stdout.split()[3])
    assert "differ 0" in r.stdout and regions > 0
    if h > 16:
        assert spliced > 0, r.stdout
