#!/usr/bin/python3
"""Start-up time and index memory for a million samples (part of `make bench`).

    /usr/bin/python3 scripts/bench_index.py [--n 1000000] [--classes 1000]
                                            [--dir DIR] [--keep]

Generates --n tiny entries three ways under DIR (default build/bench/index):
  manifest   a "path<TAB>class" file (the image files do not exist: a
             manifest is indexed without opening them);
  folder     an ImageFolder of empty .jpg files, --classes class folders;
  shards     WebDataset tar shards of 10,000 samples (empty KEY.jpg + KEY.cls),
             written directly (512-byte ustar headers);
then times `cutmixd --check` (config, dataset index, summary, exit) for each,
twice for the shards (index built, then read from the per-shard cache), and
reports wall time, peak RSS of the process and the index memory the daemon
reports (dataset_memory) against the bytes of the sample names. Results go to
build/bench/index.json and are printed. Nothing is asserted: the figures are
for docs/PERFORMANCE.md.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bin" / "cutmixd"
PER_SHARD = 10_000


def names(n, classes):
    per = -(-n // classes)
    for i in range(n):
        k = i // per
        yield "class%04d/img%07d.jpg" % (k, i), k


def ustar(name, size):
    h = bytearray(512)
    nb = name.encode()
    h[0:len(nb)] = nb
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"14000000000\0"
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def write_shards(d, n, classes):
    d.mkdir(parents=True, exist_ok=True)
    it = names(n, classes)
    k = 0
    done = 0
    while done < n:
        with open(d / ("train-%06d.tar" % k), "wb") as f:
            for _ in range(min(PER_SHARD, n - done)):
                path, label = next(it)
                key = path[:-4]
                cls = b"%d" % label
                f.write(ustar(key + ".jpg", 0))
                f.write(ustar(key + ".cls", len(cls)) + cls + b"\0" * (512 - len(cls)))
                done += 1
            f.write(b"\0" * 1024)
        k += 1
    return k


def config(d, dataset):
    lines = ["[server]", "endpoint = ipc://%s/x.sock" % d, "workers = 1", "", "[dataset]"]
    lines += ["%s = %s" % kv for kv in dataset.items()]
    lines += ["", "[pipeline.val]", "eval = true", "batch_size = 256", "size = 224"]
    p = d / ("%s.ini" % "_".join(dataset))
    p.write_text("\n".join(lines) + "\n")
    return p


def measure(cfg):
    """Wall time, peak RSS (KiB) and reported index bytes of cutmixd --check."""
    # a fresh parent per run: RUSAGE_CHILDREN's ru_maxrss is then this run's
    wrapper = ("import resource, subprocess, sys\n"
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "sys.stdout.write(r.stdout + r.stderr)\n"
               "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(r.returncode)\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", wrapper, str(BIN), "-c", str(cfg), "--check"],
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    rss = int(r.stdout.rsplit("MAXRSS", 1)[1]) if "MAXRSS" in r.stdout else 0
    if r.returncode:
        sys.exit("cutmixd --check failed for %s:\n%s%s" % (cfg, r.stdout, r.stderr))
    index = next(int(line.split("index memory")[1].split()[0]) for line in r.stdout.splitlines()
                 if "index memory" in line)
    size = next(int(line.split()[2]) for line in r.stdout.splitlines()
                if line.strip().startswith("dataset") and " files," in line)
    return dict(wall_s=round(wall, 2), peak_rss_mib=round(rss / 1024, 1),
                index_bytes=index, samples=size)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--dir", type=Path, default=ROOT / "build" / "bench" / "index")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    a = ap.parse_args(argv)
    if not BIN.exists():
        sys.exit("%s is missing: run make first" % BIN)
    d = a.dir.resolve()
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    path_bytes = sum(len(p) + 1 for p, _ in names(a.n, a.classes))
    res = {"n": a.n, "classes": a.classes, "path_bytes": path_bytes, "cases": {}}

    t = time.monotonic()
    with open(d / "manifest.tsv", "w") as f:
        for p, k in names(a.n, a.classes):
            f.write("%s\t%d\n" % (p, k))
    (d / "files").mkdir()
    res["gen_manifest_s"] = round(time.monotonic() - t, 1)
    res["cases"]["manifest"] = measure(config(d, {"root": d / "files",
                                                  "manifest": d / "manifest.tsv"}))
    print("manifest:", res["cases"]["manifest"], flush=True)

    t = time.monotonic()
    made = set()
    for p, _ in names(a.n, a.classes):
        parent = p.split("/")[0]
        if parent not in made:
            (d / "folder" / parent).mkdir(parents=True)
            made.add(parent)
        open(d / "folder" / p, "wb").close()
    res["gen_folder_s"] = round(time.monotonic() - t, 1)
    res["cases"]["folder"] = measure(config(d, {"root": d / "folder"}))
    print("folder:", res["cases"]["folder"], flush=True)
    shutil.rmtree(d / "folder")

    t = time.monotonic()
    k = write_shards(d / "shards", a.n, a.classes)
    res["gen_shards_s"] = round(time.monotonic() - t, 1)
    cfg = config(d, {"shards": "%s/train-{000000..%06d}.tar" % (d / "shards", k - 1)})
    res["cases"]["shards_build"] = measure(cfg)
    print("shards (index built):", res["cases"]["shards_build"], flush=True)
    res["cases"]["shards_cached"] = measure(cfg)
    print("shards (from cache):", res["cases"]["shards_cached"], flush=True)

    for c in res["cases"].values():
        c["index_over_path_bytes"] = round(c["index_bytes"] / path_bytes, 2)
    out = ROOT / "build" / "bench" / "index.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    if not a.keep:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
