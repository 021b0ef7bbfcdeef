"""WebDataset tar shards read in place ([dataset] shards = PATTERN): the same
photos as an ImageFolder and as shards give byte-identical batches; the
offset index is cached per shard and rebuilt when a shard changes; hostile
shards (truncated member, header garbage, a member over max_file_bytes,
missing/bad .cls, symlink member, duplicates) are counted and skipped or
replaced, never a crash; compressed shards and bad patterns are refused
with a message. Shards are written with Python's tarfile in all three
formats (ustar, GNU, pax with long names)."""
import gzip
import io
import os
import subprocess
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

import gen_dataset
from helpers import Daemon

PIPES = {
    "train": dict(batch_size=8, size=48, flip=0.5, cutmix_alpha=1.0, mixup_alpha=0.4,
                  cutout_holes=1, cutout_size=8),
    "val": dict(eval=True, batch_size=10, size=48, resize=56),
}


def add_bytes(tar, name, data, **kw):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 1700000000
    for k, v in kw.items():
        setattr(ti, k, v)
    tar.addfile(ti, io.BytesIO(data))


def write_shards(root, samples, dest, n_shards, formats=None, prefix="train"):
    """The folder's samples, in its order, over n_shards tar files."""
    dest.mkdir(parents=True, exist_ok=True)
    per = -(-len(samples) // n_shards)
    paths = []
    for k in range(n_shards):
        fmt = (formats or [tarfile.PAX_FORMAT])[k % len(formats or [0])]
        p = dest / ("%s-%03d.tar" % (prefix, k))
        with tarfile.open(p, "w", format=fmt) as tar:
            for s in samples[k * per:(k + 1) * per]:
                key = s.path.rsplit(".", 1)[0]
                add_bytes(tar, key + ".jpg", (root / s.path).read_bytes())
                add_bytes(tar, key + ".cls", b"%d\n" % s.label)
                add_bytes(tar, key + ".json", b'{"unused": true}')
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    root = base / "folder"
    samples = gen_dataset.make_dataset(root, classes=4, per_class=9, sizes="random",
                                       subsampling="mixed", gray_fraction=0.1, seed=5)
    names = sorted({s.class_name for s in samples}, key=str.encode)
    shards = base / "shards"
    write_shards(root, samples, shards, 3,
                 formats=[tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
    (shards / "classes.txt").write_text("".join(n + "\n" for n in names))
    return root, samples, shards, names


def batches(d, pipeline, n, eval=False):
    out = []
    with d.client(pipeline, eval=eval) as c:
        info = c.info()
        for i in range(n):
            b = c.batch(1, i)
            out.append([bytes(f) for f in b.raw_frames[1:]])
    return info, out


def test_same_batches_as_imagefolder(tmp_path, photos):
    root, samples, shards, names = photos
    with Daemon(tmp_path / "f", dataset={"root": str(root)}, pipelines=PIPES) as d:
        finfo, ftrain = batches(d, "train", 4)
        _, fval = batches(d, "val", 4, eval=True)
    pattern = str(shards / "train-{000..002}.tar")
    with Daemon(tmp_path / "s", dataset={"shards": pattern}, pipelines=PIPES) as d:
        sinfo, strain = batches(d, "train", 4)
        _, sval = batches(d, "val", 4, eval=True)
        assert "36 samples from 3 shards" in d.log()
    assert sinfo["dataset_size"] == finfo["dataset_size"] == len(samples)
    assert sinfo["class_names"] == finfo["class_names"] == names
    assert sinfo["skipped_files"] == 0
    for i, (a, b) in enumerate(zip(ftrain + fval, strain + sval)):
        assert a == b, "batch %d differs between the folder and the shards" % i
    # a glob names the same shards in the same (sorted) order
    with Daemon(tmp_path / "g", dataset={"shards": str(shards / "train-*.tar")},
                pipelines=PIPES) as d:
        _, gtrain = batches(d, "train", 4)
    assert gtrain == ftrain


def test_long_names_and_no_classes_txt(tmp_path, photos):
    """pax and GNU long names (> 100 bytes) keep their keys; without
    classes.txt the classes are '0'..'max'."""
    root, samples, _, _ = photos
    deep = "d" * 120 + "/sub.dir"
    dest = tmp_path / "long"
    for fmt, name in ((tarfile.PAX_FORMAT, "pax"), (tarfile.GNU_FORMAT, "gnu")):
        dest.mkdir(exist_ok=True)
        with tarfile.open(dest / ("%s.tar" % name), "w", format=fmt) as tar:
            for j, s in enumerate(samples[:5]):
                key = "%s/%s-%02d" % (deep, name, j)
                add_bytes(tar, key + ".JPG", (root / s.path).read_bytes())
                add_bytes(tar, key + ".cls", b" %d " % (j % 3))
    with Daemon(tmp_path / "d", dataset={"shards": str(dest / "{pax,gnu}.tar")},
                pipelines={"val": PIPES["val"]}) as d:
        with d.client("val", eval=True) as c:
            info = c.info()
            metas = np.concatenate([b.meta for b in c.epoch(0)])
        assert info["dataset_size"] == 10 and info["class_names"] == ["0", "1", "2"]
        assert list(metas["label"]) == [j % 3 for j in range(5)] * 2
        assert all(metas["status"] == 0)


def test_index_cache_next_to_shards_and_in_a_folder(tmp_path, photos):
    root, samples, _, _ = photos
    dest = tmp_path / "shards"
    paths = write_shards(root, samples, dest, 3)
    pattern = str(dest / "train-{000..002}.tar")
    cfg = {"shards": pattern}
    pipes = {"val": PIPES["val"]}
    with Daemon(tmp_path / "a", dataset=cfg, pipelines=pipes) as d:
        assert "(0 indexes from the cache)" in d.log()
        _, first = batches(d, "val", 2, eval=True)
    assert all(os.path.exists(str(p) + ".cutmixd-idx") for p in paths)
    with Daemon(tmp_path / "b", dataset=cfg, pipelines=pipes) as d:
        assert "(3 indexes from the cache)" in d.log()
        _, again = batches(d, "val", 2, eval=True)
    assert again == first
    # a shard rewritten (new mtime, other size): its index is rebuilt
    with tarfile.open(paths[2], "a") as tar:
        add_bytes(tar, "extra/zz.jpg", (root / samples[0].path).read_bytes())
        add_bytes(tar, "extra/zz.cls", b"1")
    with Daemon(tmp_path / "c", dataset=cfg, pipelines=pipes) as d:
        assert "(2 indexes from the cache)" in d.log()
        with d.client("val", eval=True) as c:
            assert c.info()["dataset_size"] == len(samples) + 1
    # index_cache: the caches go there, none next to the shards
    for p in paths:
        os.unlink(str(p) + ".cutmixd-idx")
    cache = tmp_path / "cache"
    cache.mkdir()
    cfg2 = {"shards": pattern, "index_cache": str(cache)}
    for name, want in (("d", 0), ("e", 3)):
        with Daemon(tmp_path / name, dataset=cfg2, pipelines=pipes) as d:
            assert "(%d indexes from the cache)" % want in d.log()
    assert len(list(cache.glob("*.cutmixd-idx"))) == 3
    assert not any(os.path.exists(str(p) + ".cutmixd-idx") for p in paths)
    # a corrupt cache file is not trusted: rebuilt, same answers
    for f in cache.glob("*.cutmixd-idx"):
        f.write_bytes(f.read_bytes()[:-7] + b"garbage")
    with Daemon(tmp_path / "f", dataset=cfg2, pipelines=pipes) as d:
        assert "(0 indexes from the cache)" in d.log()
        _, third = batches(d, "val", 2, eval=True)
    assert third == first


def jpeg(seed, size=48, noise=False):
    rng = np.random.default_rng(seed)
    if noise:
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    else:
        a = np.full((size, size, 3), rng.integers(0, 256, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=100 if noise else 90)
    return buf.getvalue()


def test_hostile_shards(tmp_path):
    dest = tmp_path / "hostile"
    dest.mkdir()
    good = [jpeg(i) for i in range(6)]
    big = jpeg(99, size=400, noise=True)
    assert len(big) > 200_000
    # shard 0: every kind of bad sample between good ones
    with tarfile.open(dest / "s-0.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        add_bytes(tar, "a/ok0.jpg", good[0])
        add_bytes(tar, "a/ok0.cls", b"0")
        add_bytes(tar, "a/nocls.jpg", good[1])                 # no class
        add_bytes(tar, "a/badcls.jpg", good[1])
        add_bytes(tar, "a/badcls.cls", b"seven")              # not a number
        add_bytes(tar, "a/onlycls.cls", b"1")                 # no image
        add_bytes(tar, "a/link.jpg", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add_bytes(tar, "a/link.cls", b"1")
        add_bytes(tar, "a/dup.jpg", good[2])
        add_bytes(tar, "a/dup.jpg", good[3])                  # duplicate member
        add_bytes(tar, "a/dup.cls", b"1")
        add_bytes(tar, "a/ok0.jpg", good[4])                  # key seen before
        add_bytes(tar, "a/ok0.cls", b"1")
        add_bytes(tar, "a/big.jpg", big)                      # over max_file_bytes
        add_bytes(tar, "a/big.cls", b"1")
        add_bytes(tar, "a/range.jpg", good[5])
        add_bytes(tar, "a/range.cls", b"9")                   # beyond classes.txt
        add_bytes(tar, "a/ok1.jpg", good[5])
        add_bytes(tar, "a/ok1.cls", b"1")
    # shard 1: header garbage after two good samples
    with tarfile.open(dest / "s-1.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for j in range(4):
            add_bytes(tar, "b/g%d.jpg" % j, good[j])
            add_bytes(tar, "b/g%d.cls" % j, b"%d" % (j % 2))
    data = bytearray((dest / "s-1.tar").read_bytes())
    off = 0
    for _ in range(4):   # the 5th header: after g0.jpg, g0.cls, g1.jpg, g1.cls
        size = int(data[off + 124:off + 136].split(b"\0")[0].strip() or b"0", 8)
        off += 512 + -(-size // 512) * 512
    data[off:off + 512] = bytes((i * 37 + 11) % 256 for i in range(512))
    (dest / "s-1.tar").write_bytes(bytes(data))
    # shard 2: truncated in the middle of its last member
    with tarfile.open(dest / "s-2.tar", "w") as tar:
        for j in range(3):
            add_bytes(tar, "c/t%d.jpg" % j, good[j])
            add_bytes(tar, "c/t%d.cls" % j, b"0")
    data = (dest / "s-2.tar").read_bytes()
    cut = data.rfind(b"\xff\xd9") - 100
    (dest / "s-2.tar").write_bytes(data[:cut])
    (dest / "classes.txt").write_text("zero\none\n")

    pipes = {"val": dict(eval=True, batch_size=4, size=48, resize=48)}
    with Daemon(tmp_path / "d", dataset={"shards": str(dest / "s-{0..2}.tar")},
                pipelines=pipes, server={"max_file_bytes": 100_000}) as d:
        log = d.log()
        for text in ("samples without a class (.cls)", "first: 'a/nocls'",
                     "whose .cls is not a class index", "samples without an image",
                     "not regular files", "first: 'a/link.jpg'",
                     "duplicate members within a sample", "key appeared before",
                     "beyond the 2 class names", "checksum mismatch",
                     "runs past the end of the file"):
            assert text in log, "%r not in the log:\n%s" % (text, log)
        with d.client("val", eval=True) as c:
            info = c.info()
            metas = []
            for b in c.epoch(0):
                metas.append(b.meta)
                for i, m in enumerate(b.meta):
                    assert b.images[i].shape == (48, 48, 3)
            stats = c.stats()
        metas = np.concatenate(metas)
        # kept: ok0, dup (first member), big, ok1 | g0, g1 | t0, t1
        assert info["dataset_size"] == 8, info
        # skipped: nocls, badcls, onlycls, link (not regular + its group
        # has no image), dup member, dup key, range, garbage, truncated
        assert info["skipped_files"] >= 7
        big_index = 2
        assert metas["status"][big_index] != 0 and metas["source"][big_index] != big_index
        assert all(metas["status"][np.arange(8) != big_index] == 0)
        assert stats["decode_errors"] >= 1
        assert "limit is 100000" in d.log()
        assert d.alive()


def test_compressed_and_bad_patterns_refused(tmp_path, photos):
    root, samples, _, _ = photos
    dest = tmp_path / "z"
    (p,) = write_shards(root, samples[:3], dest, 1)
    gz = dest / "train-000.tar.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    disguised = dest / "disguised.tar"
    disguised.write_bytes(gzip.compress(p.read_bytes()))
    cases = [
        (str(gz), "is compressed (gz)"),
        (str(disguised), "is compressed (gzip)"),
        (str(dest / "nothing-*.tar"), "matches no file"),
        (str(dest / "train-{5..2}.tar"), "bad range"),
        (str(dest / "train-{x}.tar"), "neither a range"),
        (str(dest / "missing.tar"), "cannot open"),
    ]
    for pattern, frag in cases:
        d = Daemon(tmp_path / "d", dataset={"shards": pattern}, pipelines={"val": PIPES["val"]})
        d.write_config()
        r = subprocess.run(d.command(), capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and frag in r.stdout + r.stderr, (pattern, r.stdout, r.stderr)


@pytest.mark.parametrize("dataset,frag", [
    ({"root": "/tmp", "shards": "/tmp/x.tar"}, "give one of them, not both"),
    ({"shards": "/tmp/x.tar", "manifest": "/tmp/m.tsv"}, "manifest: not with shards"),
    ({"root": "/tmp", "index_cache": "/tmp"}, "index_cache: only with shards"),
])
def test_config_errors(tmp_path, dataset, frag):
    d = Daemon(tmp_path, dataset=dataset, pipelines={"val": PIPES["val"]})
    d.write_config()
    r = subprocess.run(d.command() + ["--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and frag in r.stdout + r.stderr, r.stdout + r.stderr
