"""Hostile JPEG files in a dataset, generated at test time (PIL, byte
surgery on PIL's output, a hand-written baseline encoder for restart
markers, jpegtran for arithmetic coding when it is installed).

Every file sits in an ImageFolder dataset next to good files and is served
through a `crop = center, resize = size` pipeline, so a 64x64 source is
decoded whole and copied unchanged (the identity crop). For each file the
daemon must either

  - decode it correctly (status 0, pixels equal to PIL's decode of the same
    bytes, or to PIL's resize over the crop box the metadata reports), or
  - replace it (status 1, source = a readable file, label = the source's
    class, pixels = the source's, batch size kept),

and nothing else: no crash, no partially grey image, no error reply in
`replace` mode. On top of that: STATS counts every bad file once
(bad_files) and every replaced slot (replaced); each bad file is logged
exactly once however many epochs read it; the 65500x65500 decompression
bomb keeps the daemon's RSS small; `on_decode_error = fail` turns every
bad file into a DECODE error naming it while the daemon keeps serving.
"""

import io
import os
import shutil
import signal
import struct
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

import cutmixd
import gen_dataset
from helpers import SANITIZER, Daemon, Dataset, module_daemon, vm_rss

SIZE = 64
N_CLASSES, PER_CLASS = 3, 6
RSS_LIMIT = 200 * 1024 * 1024

PIPELINES = {
    # identity crop for 64x64 sources: bytes equal PIL's decode
    "plain": dict(batch_size=8, size=SIZE, crop="center", resize=SIZE, flip=0.0,
                  shuffle=False),
    "shuf": dict(batch_size=8, size=SIZE, crop="center", resize=SIZE, flip=0.0,
                 shuffle=True),
    # one file per batch: batch k is dataset index k
    "one": dict(batch_size=1, size=SIZE, crop="center", resize=SIZE, flip=0.0,
                shuffle=False),
}

JPEGTRAN = shutil.which("jpegtran")


def assert_rss_below(value, limit, msg):
    """RSS bounds hold for the real build only: a sanitizer's shadow memory
    and quarantine make RSS meaningless (the rest of the test still runs)."""
    if SANITIZER is None:
        assert value < limit, "%s (%.1f MB, limit %.1f MB)" % (msg, value / 2**20,
                                                               limit / 2**20)


# -- JPEG byte surgery ---------------------------------------------------------

def jpeg_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def segments(data):
    """[(marker, offset, length)] of the header segments up to and including
    SOS, and the offset where the entropy-coded data starts."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    out, i = [], 2
    while i + 4 <= len(data):
        assert data[i] == 0xFF, "marker expected at %d" % i
        m = data[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        out.append((m, i, length))
        i += 2 + length
        if m == 0xDA:
            return out, i
    raise AssertionError("no SOS marker")


def sof_offset(data):
    for m, off, _ in segments(data)[0]:
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            return off
    raise AssertionError("no SOF marker")


def patch_sof(data, precision=None, height=None, width=None):
    """SOF body: length u16 | precision u8 | height u16 | width u16 | ..."""
    b = bytearray(data)
    o = sof_offset(data) + 4
    if precision is not None:
        b[o] = precision
    if height is not None:
        b[o + 1:o + 3] = struct.pack(">H", height)
    if width is not None:
        b[o + 3:o + 5] = struct.pack(">H", width)
    return bytes(b)


def flip_scan_bits(data, rng):
    """Scramble the middle of the entropy-coded data without creating or
    destroying a marker (no byte becomes 0xFF, stuffed FF 00 pairs are left
    alone)."""
    _, start = segments(data)
    end = data.rindex(b"\xff\xd9")
    b = bytearray(data)
    lo, hi = start + (end - start) // 4, start + 3 * (end - start) // 4
    for i in range(lo, hi):
        if b[i] == 0xFF or b[i - 1] == 0xFF:
            continue
        v = b[i] ^ int(rng.integers(1, 256))
        b[i] = 0xFE if v == 0xFF else v
    return bytes(b)


class BitWriter:
    def __init__(self):
        self.out = bytearray()
        self.acc = self.n = 0

    def put(self, value, nbits):
        for k in range(nbits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> k) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)  # byte stuffing
                self.acc = self.n = 0

    def flush(self):
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1 bits


def bad_huffman_code(data):
    """Overwrite a few bytes in the middle of the scan with stuffed 0xFF
    bytes (FF 00 FF 00 ...): 32 one-bits in a row are no Huffman code of any
    table, so libjpeg warns "bad Huffman code" mid-scan."""
    _, start = segments(data)
    end = data.rindex(b"\xff\xd9")
    i = start + (end - start) // 3
    while data[i - 1] == 0xFF or data[i + 7] == 0xFF:
        i += 1
    return data[:i] + b"\xff\x00" * 4 + data[i + 8:]


def restart_jpeg(levels, interval):
    """A baseline grayscale JPEG with a DRI marker and RSTn markers every
    `interval` MCUs, written by hand: every 8x8 block is flat (DC only) with
    the gray level levels[r][c], quantisation 1, so any libjpeg decodes it
    to exactly that blocky image."""
    rows, cols = levels.shape
    h, w = rows * 8, cols * 8
    # standard luminance DC table (JPEG Annex K.3)
    dc_bits = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    dc_codes = {0: (0b00, 2), 1: (0b010, 3), 2: (0b011, 3), 3: (0b100, 3), 4: (0b101, 3),
                5: (0b110, 3), 6: (0b1110, 4), 7: (0b11110, 5), 8: (0b111110, 6),
                9: (0b1111110, 7), 10: (0b11111110, 8), 11: (0b111111110, 9)}
    seg = lambda m, body: b"\xff" + bytes([m]) + struct.pack(">H", len(body) + 2) + body
    out = bytearray(b"\xff\xd8")
    out += seg(0xDB, b"\x00" + b"\x01" * 64)                                 # DQT, all 1
    out += seg(0xC0, struct.pack(">BHHB", 8, h, w, 1) + b"\x01\x11\x00")     # SOF0, gray
    out += seg(0xC4, b"\x00" + bytes(dc_bits) + bytes(range(12)))            # DHT DC 0
    out += seg(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")              # DHT AC 0: EOB='0'
    out += seg(0xDD, struct.pack(">H", interval))                            # DRI
    out += seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")                            # SOS
    bw, pred, rst = BitWriter(), 0, 0
    for k, v in enumerate(levels.reshape(-1)):
        if k and k % interval == 0:
            bw.flush()
            out += bw.out + bytes([0xFF, 0xD0 + rst % 8])
            bw.out = bytearray()
            rst += 1
            pred = 0
        dc = 8 * (int(v) - 128)
        diff, pred = dc - pred, dc
        cat = abs(diff).bit_length()
        code, n = dc_codes[cat]
        bw.put(code, n)
        if cat:
            bw.put(diff if diff > 0 else diff + (1 << cat) - 1, cat)
        bw.put(0, 1)  # EOB
    bw.flush()
    out += bw.out + b"\xff\xd9"
    return bytes(out)


def big_icc_profile(n):
    """An ICC-looking blob of n bytes (header size field, 'acsp' magic)."""
    rng = np.random.default_rng(99)
    body = bytearray(rng.bytes(n))
    body[0:4] = struct.pack(">I", n)
    body[36:40] = b"acsp"
    return bytes(body)


# -- the corpus ----------------------------------------------------------------

BAD, GOOD, EITHER = "bad", "good", "either"


class Case:
    """One hostile file. kind: BAD (must be replaced), GOOD (must decode,
    status 0) or EITHER (a valid decode of the region the crop needs, or a
    replacement). check, for decodable files: "pil" (identity crop: equal to
    PIL's decode), "pil_box" (equal to PIL's resize over the metadata's crop
    box) or ("flat", rgb). ref: bytes PIL decodes as the reference (default:
    the file itself)."""

    def __init__(self, name, data, kind, check=None, log_word=None, ref=None):
        self.name, self.data, self.kind = name, data, kind
        self.check, self.log_word = check, log_word
        self.ref = data if ref is None else ref
        self.rel = self.ref_path = None

    @property
    def bad(self):
        return self.kind == BAD


JPEGTRAN_CASES = ("arithmetic", "restart_jpegtran")
CASE_NAMES = (
    "empty", "trunc_header", "trunc_body", "garbage", "soi_garbage", "random", "png", "gif", "text",
    "bitflip", "bad_huffman", "bomb", "zero_height", "zero_width", "eoi_only",
    "prefix_garbage", "precision12", "trunc_below_crop", "suffix_garbage", "one_by_one",
    "tall_1x4000", "big_6000x4000", "cmyk", "progressive", "restart_dri3", "exif_rotated",
    "icc_200k") + JPEGTRAN_CASES


def build_cases(tmp):
    rng = np.random.default_rng(2024)
    pic = gen_dataset.render(1, 99, (SIZE, SIZE), seed=5)
    base = jpeg_bytes(pic, quality=90, subsampling=2)
    segs, scan = segments(base)
    dht = next(off for m, off, _ in segs if m == 0xC4)
    assert dht + 10 < scan
    png = io.BytesIO()
    pic.save(png, "PNG")
    gif = io.BytesIO()
    pic.save(gif, "GIF")
    prefix = b"\x00" + rng.bytes(99)  # never starts like a JPEG
    tall = jpeg_bytes(gen_dataset.render(2, 98, (SIZE, 8 * SIZE), seed=5), quality=90,
                      subsampling=2)
    _, tall_scan = segments(tall)

    cases = [
        Case("empty", b"", BAD),
        Case("trunc_header", base[:dht + 10], BAD),
        Case("trunc_body", base[:scan + (len(base) - scan) // 2], BAD),
        Case("garbage", bytes(range(256)) * 8, BAD),
        Case("soi_garbage", b"\xff\xd8\xff" + rng.bytes(3000), BAD),
        Case("random", rng.bytes(4096), BAD),
        # a PNG named .jpg: decoded by its magic bytes since PNG support
        Case("png", png.getvalue(), GOOD, "pil"),
        Case("gif", gif.getvalue(), BAD),
        Case("text", b"<html>this is not a JPEG</html>\n" * 40, BAD),
        # scrambled entropy data: libjpeg notices when it reaches the end of
        # the scan ("N extraneous bytes before marker 0xd9"; djpeg prints it)
        Case("bitflip", flip_scan_bits(base, rng), BAD),
        # corruption libjpeg reports in the middle of the scan
        Case("bad_huffman", bad_huffman_code(base), BAD),
        Case("bomb", patch_sof(base, height=65500, width=65500), BAD, log_word="65500"),
        Case("zero_height", patch_sof(base, height=0), BAD),
        Case("zero_width", patch_sof(base, width=0), BAD),
        Case("eoi_only", b"\xff\xd8\xff\xd9", BAD),
        Case("prefix_garbage", prefix + base, BAD),
        Case("precision12", patch_sof(base, precision=12), BAD, log_word="precision"),
        # 64x512 cut at 90% of its scan: the center crop (rows 224..288)
        # never reaches the cut, so decoding just that region is fine too
        Case("trunc_below_crop", tall[:tall_scan + 9 * (len(tall) - tall_scan) // 10], EITHER,
             "pil_box", ref=tall),
        # valid files
        Case("suffix_garbage", base + rng.bytes(1000), GOOD, "pil"),
        Case("one_by_one", jpeg_bytes(Image.new("RGB", (1, 1), (200, 30, 90)), quality=95),
             GOOD, "pil_box"),
    ]
    ramp = np.zeros((4000, 1, 3), np.uint8)
    ramp[:, 0, 0] = np.arange(4000) % 256
    ramp[:, 0, 1] = 255 - np.arange(4000) // 16
    ramp[:, 0, 2] = 90
    cases.append(Case("tall_1x4000", jpeg_bytes(Image.fromarray(ramp), quality=95),
                      GOOD, "pil_box"))
    flat = (30, 140, 220)
    cases.append(Case("big_6000x4000", jpeg_bytes(Image.new("RGB", (6000, 4000), flat),
                                                  quality=90), GOOD, ("flat", flat)))
    cases.append(Case("cmyk", jpeg_bytes(pic.convert("CMYK"), quality=92), GOOD, "pil"))
    cases.append(Case("progressive", jpeg_bytes(pic, quality=90, progressive=True),
                      GOOD, "pil"))
    levels = np.random.default_rng(7).integers(2, 30, size=(SIZE // 8, SIZE // 8)) * 8
    cases.append(Case("restart_dri3", restart_jpeg(levels, 3), GOOD, "pil"))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: a viewer would rotate it 90 degrees
    cases.append(Case("exif_rotated", jpeg_bytes(pic, quality=90, exif=exif.tobytes()),
                      GOOD, "pil"))
    cases.append(Case("icc_200k", jpeg_bytes(pic, quality=90,
                                             icc_profile=big_icc_profile(200 * 1024)),
                      GOOD, "pil"))
    if JPEGTRAN:
        src = tmp / "base.jpg"
        src.write_bytes(base)
        for name, args in zip(JPEGTRAN_CASES, (["-arithmetic"], ["-restart", "1"])):
            dst = tmp / (name + ".jpg")
            subprocess.run([JPEGTRAN, *args, "-outfile", str(dst), str(src)], check=True,
                           timeout=30)
            cases.append(Case(name, dst.read_bytes(), GOOD, "pil"))
    want = [n for n in CASE_NAMES if JPEGTRAN or n not in JPEGTRAN_CASES]
    assert [c.name for c in cases] == want
    return cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds_hostile")
    work = tmp_path_factory.mktemp("hostile_work")
    gen_dataset.make_dataset(root, classes=N_CLASSES, per_class=PER_CLASS, size=(SIZE, SIZE),
                             subsampling="420", seed=5)
    names = sorted(os.listdir(root), key=str.encode)
    cases = build_cases(work)
    for k, c in enumerate(cases):
        c.rel = "%s/h_%s.jpg" % (names[k % len(names)], c.name)
        (root / c.rel).write_bytes(c.data)
        c.ref_path = root / c.rel
        if c.ref is not c.data:
            c.ref_path = work / ("ref_%s.jpg" % c.name)
            c.ref_path.write_bytes(c.ref)
    samples = []  # root-scan order: classes, then files, byte-wise sorted
    for label, cls in enumerate(names):
        for f in sorted(os.listdir(root / cls), key=str.encode):
            samples.append(gen_dataset.Sample("%s/%s" % (cls, f), label, cls, 0, 0, "", "", 0))
    ds = Dataset(root, samples)
    ds.cases = {c.name: c for c in cases}
    ds.index = {s.path: i for i, s in enumerate(samples)}
    ds.case_of = {ds.index[c.rel]: c for c in cases}
    ds.bad = {ds.index[c.rel] for c in cases if c.kind == BAD}
    ds.either = {ds.index[c.rel] for c in cases if c.kind == EITHER}
    assert len(ds.bad) >= 16 and len(samples) == N_CLASSES * PER_CLASS + len(cases)
    return ds


@pytest.fixture(scope="module")
def d(tmp_path_factory, corpus):
    dm = module_daemon(tmp_path_factory, "hostile", corpus.config(), PIPELINES)
    yield dm
    dm.stop()


# -- checks ----------------------------------------------------------------------


def check_slot(ds, img, m, where):
    """The pixels in one slot are what the source file holds."""
    src = int(m["source"])
    case = ds.case_of.get(src)
    path = case.ref_path if case else ds.root / ds.samples[src].path
    assert img.shape == (SIZE, SIZE, 3), where
    if case is None or case.check in (None, "pil"):
        assert (m["src_w"], m["src_h"]) == (SIZE, SIZE), where
        with Image.open(path) as im:
            want = np.asarray(im.convert("RGB"))
        diff = np.nonzero(img != want)
        assert not len(diff[0]), "%s: %d bytes differ from PIL's decode of %s, first at %s" % (
            where, len(diff[0]), path.name, [int(v[0]) for v in diff])
    elif case.check == "pil_box":
        with Image.open(path) as im:
            assert (m["src_w"], m["src_h"]) == im.size, where
            box = tuple(float(v) for v in m["crop"])
            want = np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR, box=box))
        assert np.array_equal(img, want), "%s: pixels differ from PIL resize box=%s (max %d)" % (
            where, box, np.abs(img.astype(int) - want).max())
    else:
        _, rgb = case.check
        with Image.open(path) as im:
            assert (m["src_w"], m["src_h"]) == im.size, where
            im.draft("RGB", (im.size[0] // 8, im.size[1] // 8))
            ref = np.asarray(im.convert("RGB"))[0, 0].astype(int)
        assert np.abs(ref - np.array(rgb)).max() <= 3, "reference colour %s" % ref
        err = np.abs(img.astype(int) - ref).max()
        assert err <= 2, "%s: flat image served with pixels up to %d off %s" % (where, err, ref)


def check_sample(ds, img, label_row, m, where, strict_source=True):
    """One slot: a valid decode of its own file, or a replacement (by a file
    that is not bad: strict_source; else any file whose pixels match)."""
    N = len(ds)
    idx, src = int(m["index"]), int(m["source"])
    where = "%s: index %d (%s)" % (where, idx, ds.samples[idx].path)
    if idx in ds.bad or (idx in ds.either and m["status"] == cutmixd.SAMPLE_REPLACED):
        assert m["status"] == cutmixd.SAMPLE_REPLACED, where + ": bad file not replaced"
        assert 0 <= src < N and src != idx, where + ": replaced by %d" % src
        assert not strict_source or src not in ds.bad, \
            where + ": replaced by %d (%s), a bad file itself" % (src, ds.samples[src].path)
    else:
        assert m["status"] == cutmixd.SAMPLE_OK, where + ": valid file was replaced"
        assert src == idx, where
    assert m["label"] == ds.samples[src].label, where + ": label must be the source's"
    assert label_row.argmax() == m["label"] and label_row.max() == 1.0, where
    check_slot(ds, img, m, where)
    return idx, int(m["status"])


def check_batches(ds, batches, B):
    """A whole epoch: sizes kept, every index once, every slot checked.
    Returns {index: status} of the EITHER files."""
    N = len(ds)
    assert [len(b) for b in batches] == [min(B, N - k * B) for k in range(len(batches))], \
        "every batch keeps its size"
    seen, either = [], {}
    for b in batches:
        assert b.images.shape[1:] == (SIZE, SIZE, 3)
        for i, m in enumerate(b.meta):
            idx, status = check_sample(ds, b.images[i], b.labels[i], m,
                                       "epoch %d batch %d slot %d" % (b.epoch, b.index, i))
            seen.append(idx)
            if idx in ds.either:
                either[idx] = status
    assert sorted(seen) == list(range(N))
    return either


def expected_bad_files(ds, either_status):
    return len(ds.bad) + sum(1 for s in either_status.values() if s)


# -- tests -------------------------------------------------------------------------

def test_corpus_is_hostile_as_described(corpus):
    """The generator did what it says (guards the test, not the daemon)."""
    cs, root = corpus.cases, corpus.root
    for c in cs.values():
        if c.kind != BAD:
            with Image.open(c.ref_path) as im:
                im.load()
    with pytest.raises(Image.DecompressionBombError, match="4290250000 pixels"):
        Image.open(root / cs["bomb"].rel)  # PIL calls it a bomb too
    with Image.open(root / cs["big_6000x4000"].rel) as im:
        assert im.size == (6000, 4000)
    assert (root / cs["big_6000x4000"].rel).stat().st_size < 2_000_000
    with Image.open(root / cs["cmyk"].rel) as im:
        assert im.mode == "CMYK"
    with Image.open(root / cs["progressive"].rel) as im:
        assert im.info.get("progressive") or im.info.get("progression")
    data = cs["restart_dri3"].data
    assert b"\xff\xdd" in data and all(bytes([0xFF, 0xD0 + k]) in data for k in range(8))
    with Image.open(root / cs["restart_dri3"].rel) as im:
        levels = np.asarray(im)[::8, ::8]
        assert np.array_equal(np.asarray(im), np.kron(levels, np.ones((8, 8), np.uint8)))
    with Image.open(root / cs["exif_rotated"].rel) as im:
        assert im.getexif().get(0x0112) == 6
    with Image.open(root / cs["icc_200k"].rel) as im:
        assert len(im.info["icc_profile"]) == 200 * 1024
    if JPEGTRAN:
        assert b"\xff\xc9" in cs["arithmetic"].data, "SOF9 (arithmetic) expected"
        assert b"\xff\xdd" in cs["restart_jpegtran"].data


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_file_decoded_or_replaced(d, corpus, name):
    """One file per batch ('one' pipeline: batch k = index k), twice: the
    same outcome both times, the batch keeps its size. (Whether the
    replacement itself is a good file is left to the epoch tests, so that
    one undetected bad file fails its own case here and not others.)"""
    if name not in corpus.cases:
        pytest.skip("jpegtran is not installed (Debian: apt-get install libjpeg-turbo-progs) "
                    "and PIL cannot write arithmetic-coded JPEGs: case %r left out" % name)
    case = corpus.cases[name]
    idx = corpus.index[case.rel]
    with d.client("one") as c:
        outcomes = []
        for epoch in (0, 1):
            b = c.batch(epoch, idx)
            assert len(b) == 1 and int(b.meta["index"][0]) == idx
            outcomes.append(check_sample(corpus, b.images[0], b.labels[0], b.meta[0],
                                         "%s epoch %d" % (name, epoch),
                                         strict_source=False)[1])
    assert outcomes[0] == outcomes[1], "%s: status %s in two epochs" % (name, outcomes)
    assert d.alive()


def test_epoch_decodes_or_replaces_every_file(d, corpus):
    with d.client("plain") as c:
        info = c.info()
        assert info["dataset_size"] == len(corpus)
        before = c.stats()
        batches = list(c.epoch(0))
        after = c.stats()
    either = check_batches(corpus, batches, PIPELINES["plain"]["batch_size"])
    n_bad = len(corpus.bad) + sum(either.values())
    assert after["bad_files"] == n_bad, "bad_files counts distinct bad files"
    assert after["replaced"] - before["replaced"] == n_bad, "one replacement per bad slot"
    assert after["decode_errors"] - before["decode_errors"] >= n_bad
    assert d.alive()


def test_bad_files_logged_once_over_three_epochs(d, corpus):
    with d.client("shuf") as c:
        before = c.stats()
        either = {}
        for e in range(3):
            got = check_batches(corpus, list(c.epoch(e)), PIPELINES["shuf"]["batch_size"])
            for k, v in got.items():
                assert either.setdefault(k, v) == v, "the same crop, another outcome"
        after = c.stats()
    n_bad = len(corpus.bad) + sum(either.values())
    assert after["replaced"] - before["replaced"] == 3 * n_bad
    assert after["decode_errors"] - before["decode_errors"] >= 3 * n_bad
    assert after["bad_files"] == n_bad
    log = d.log().splitlines()
    for c in corpus.cases.values():
        lines = [ln for ln in log if ("'%s'" % c.rel) in ln]
        idx = corpus.index[c.rel]
        if c.bad or either.get(idx):
            assert len(lines) == 1, "%s: logged %d times, expected once:\n%s" % (
                c.rel, len(lines), "\n".join(lines))
            assert lines[0].startswith("<4>"), "a bad file is a warning: " + lines[0]
            if c.log_word:
                assert c.log_word in lines[0].lower(), lines[0]
        else:
            assert not lines, "%s decodes, yet it was logged:\n%s" % (c.rel, "\n".join(lines))
    for s in corpus.samples:
        if corpus.index[s.path] not in corpus.case_of:
            assert not any(("'%s'" % s.path) in ln for ln in log), s.path


def test_bomb_keeps_rss_small(d, corpus):
    """The 65500x65500 SOF is refused (max_pixels) before anything is
    allocated: serving its batch over and over keeps the RSS small; so does
    the big valid 6000x4000 file."""
    bomb = corpus.index[corpus.cases["bomb"].rel]
    big = corpus.index[corpus.cases["big_6000x4000"].rel]
    B = PIPELINES["plain"]["batch_size"]
    peak = 0
    deadline = time.monotonic() + 20
    with d.client("plain") as c:
        for _ in range(12):
            for idx in (bomb, big):
                b = c.batch(1, idx // B)
                slot = int(np.nonzero(b.meta["index"] == idx)[0][0])
                assert b.meta["status"][slot] == (1 if idx == bomb else 0)
                peak = max(peak, vm_rss(d.proc.pid))
            assert time.monotonic() < deadline
        st = c.stats()
    assert_rss_below(peak, RSS_LIMIT, "VmRSS peak serving the bomb")
    assert_rss_below(st["rss_bytes"], RSS_LIMIT, "STATS rss_bytes after serving the bomb")
    assert d.alive()


def test_bomb_with_max_pixels_lifted(tmp_path_factory, corpus):
    """With max_pixels at its maximum the bomb reaches libjpeg: the missing
    scan data still makes it a bad file, and the RSS stays small."""
    dm = module_daemon(tmp_path_factory, "hostile_nolimit", corpus.config(), PIPELINES,
                       server={"max_pixels": 10**12})
    try:
        names = {n: corpus.index[c.rel] for n, c in corpus.cases.items()}
        peak = 0
        with dm.client("one", timeout=20) as c:
            for epoch in range(3):
                for name in ("bomb", "big_6000x4000", "zero_height"):
                    b = c.batch(epoch, names[name])
                    assert int(b.meta["index"][0]) == names[name]
                    assert b.meta["status"][0] == (0 if name == "big_6000x4000" else 1), name
                    peak = max(peak, vm_rss(dm.proc.pid))
            # replacement attempts may land on other bad files: >= 2
            assert c.stats()["bad_files"] >= 2
        assert_rss_below(peak, RSS_LIMIT, "VmRSS peak decoding a 65500x65500 header")
        lines = [ln for ln in dm.log().splitlines() if "'%s'" % corpus.cases["bomb"].rel in ln]
        assert len(lines) == 1, lines
        assert "limit is" not in lines[0], "max_pixels 1e12 must let the header through: " + \
            lines[0]
    finally:
        dm.stop()


def test_on_decode_error_fail_names_each_file(tmp_path_factory, corpus):
    dm = module_daemon(tmp_path_factory, "hostile_fail", corpus.config(), PIPELINES,
                       server={"on_decode_error": "fail"})
    try:
        failed = set()
        with dm.client("one", timeout=20) as c:
            assert c.info()["batches_per_epoch"] == len(corpus)
            for k in range(len(corpus)):
                path = corpus.samples[k].path
                try:
                    b = c.batch(0, k)
                except cutmixd.DaemonError as exc:
                    assert exc.code == cutmixd.Status.DECODE, (path, exc)
                    assert path in exc.message, exc.message
                    failed.add(k)
                    continue
                assert k not in corpus.bad, "%s: served (status %d) instead of a DECODE " \
                    "error" % (path, b.meta["status"][0])
                assert b.meta["status"][0] == cutmixd.SAMPLE_OK, path
                check_slot(corpus, b.images[0], b.meta[0], path)
            assert corpus.bad <= failed <= corpus.bad | corpus.either
            st = c.stats()
            assert st["bad_files"] == len(failed) and st["replaced"] == 0
            # still serving after all those errors, and the errors repeat
            with pytest.raises(cutmixd.DaemonError) as ei:
                c.batch(3, min(corpus.bad))
            assert ei.value.code == cutmixd.Status.DECODE
            assert len(c.batch(3, max(set(range(len(corpus))) - failed))) == 1
        assert dm.alive()
        log = dm.log()
        for k in failed:
            assert log.count("'%s'" % corpus.samples[k].path) == 1, corpus.samples[k].path
    finally:
        dm.stop()


def test_fifo_in_manifest_does_not_hang(tmp_path, corpus):
    """A named pipe listed in a manifest (a scan skips non-regular files, a
    manifest is taken as written) is not a JPEG: it must be replaced like
    any unreadable file, not block a worker in open() forever, and SIGTERM
    must still stop the daemon within its 4 s deadline."""
    root = tmp_path / "ds_fifo"
    good = gen_dataset.make_dataset(root, classes=2, per_class=3, size=(SIZE, SIZE), seed=8)
    fifo = root / good[0].class_name / "pipe.jpg"
    os.mkfifo(fifo)
    man = root / "manifest.tsv"
    rows = [(s.path, s.class_name) for s in good] + [(fifo.relative_to(root).as_posix(),
                                                      good[0].class_name)]
    man.write_text("".join("%s\t%s\n" % r for r in rows))
    dm = Daemon(tmp_path / "d", {"root": str(root), "manifest": str(man)}, PIPELINES,
                name="fifo")
    dm.start()
    try:
        fifo_idx = len(good)
        with dm.client("one", timeout=5) as c:
            b = c.batch(0, fifo_idx - 1)
            assert b.meta["status"][0] == cutmixd.SAMPLE_OK
            try:
                b = c.batch(0, fifo_idx)
            except cutmixd.TimeoutError:
                pytest.fail("no reply within 5 s for a batch holding a FIFO: a worker is "
                            "blocked in open() on the named pipe", pytrace=False)
            assert b.meta["status"][0] == cutmixd.SAMPLE_REPLACED
        t0 = time.monotonic()
        dm.proc.send_signal(signal.SIGTERM)
        try:
            rc = dm.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            pytest.fail("cutmixd did not exit within 5 s of SIGTERM after a FIFO batch",
                        pytrace=False)
        assert rc == 0 and time.monotonic() - t0 < 5.0
    finally:
        # Release a worker that may be stuck in open(): a writer that opens
        # and closes lets open() return (and read() see end of file).
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # no reader waiting
        if dm.alive():
            dm.proc.send_signal(signal.SIGTERM)
            try:
                dm.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                pass
        dm.kill()  # only if it is still running; records the exit status
