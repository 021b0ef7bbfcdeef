#!/usr/bin/python3
"""cutmixd benchmark (`make bench`): cutmixd vs the decode ceiling vs a
PyTorch DataLoader, side by side in one run, on the same files and cores.

    /usr/bin/python3 scripts/bench.py [--workers N] [--epochs E] [--rounds R]

Contestants (batch 128, output 224x224x3 uint8, N workers each):

  ceiling      bin/decode_ceiling: every file read into memory, then fully
               decoded with libjpeg-turbo on N threads (nothing else).
  floor        bin/decode_ceiling --crops train|center: the decode floor,
               i.e. only the region decode cutmixd's train (val) pipeline does
               (same crop distribution, DCT scaling, crop_scanline +
               skip_scanlines, stop after the last row), with the daemon's own
               decoder; `--resize` adds the daemon's resize (floor + resize).
  cutmixd      bin/cutmixd with N workers; a Python client (cutmixd.Client,
               window 4, ipc://) in its own process receives every batch and
               touches it (sum of a 1/16 strided sample of the pixels, sum of
               the labels). Pipelines `train` (random-resized crop 0.08-1,
               flip 0.5, Cutout p=0.5 one 56 px hole, CutMix alpha 1 prob 1,
               label smoothing 0.1) and `val` (resize 256, center crop 224,
               eval). Also `train` with dct_scale off (information only) and
               `train` on 1..N workers (scaling).
  sources      cutmixd `train` on the same photos stored three ways: as
               files (the `cutmixd` contestant above), as WebDataset tar
               shards (`[dataset] shards`, KEY.jpg + KEY.cls members, written
               here with Python's tarfile, about 1/4 of the photos per shard)
               and as a pack (`cutmixd pack`, restart-interval JPEGs decoded
               by splicing; `[dataset] pack`), both built in a temporary
               folder at bench start from the same photos in the same order
               (same sample indices, labels and batches). Same pipeline,
               workers and client; the page cache is warmed over the shard /
               pack files before each.
  DataLoader   torch.utils.data.DataLoader(num_workers=N, batch_size=128,
               persistent_workers=True), torchvision's PIL loader and
               transforms, a uint8 HWC pipeline (no ToTensor/Normalize, same
               as cutmixd's uint8 NHWC output); train: RandomResizedCrop(224),
               RandomHorizontalFlip(), Cutout (uoguelph-mlrg reference, p=0.5,
               one 56 px hole) per sample in the workers, CutMix (clovaai
               CutMix-PyTorch rand_bbox, lambda from the box area) plus soft
               labels with smoothing 0.1 per batch in the main process; val:
               Resize(256), CenterCrop(224). The main process touches every
               batch as the cutmixd client does.
  deit         cutmixd with config/deit.ini's train pipeline (bicubic RRC,
               flip, rand-m9-mstd0.5-inc1, RandomErasing 0.25 pixel, MixUp
               0.8 / CutMix 1.0 switch 0.5, smoothing 0.1, aug_repeats 3)
               vs a DataLoader with bicubic RandomResizedCrop, flip,
               torchvision RandAugment(2, 9), ColorJitter(0.4, 0.4, 0.4),
               RandomErasing(0.25, random bytes) per sample and CutMix or
               MixUp (switch 0.5) per batch. (timm, and so cutmixd, switch
               ColorJitter off next to RandAugment; the DataLoader keeps it,
               as the issue specifies its contestant.)

Every contestant: page cache warmed (every file read) right before it, one
unmeasured warm-up window of batches, a short wait for the machine to be quiet,
then E epochs of the dataset timed. Contestants run interleaved, --rounds
times (default 3, within --time-budget); the fastest sample counts, and one
whose fastest sample ran beside other load (CPU used by processes outside the
contestant, from /proc/stat) is run again while the budget lasts, else flagged
"(!)". Results: build/bench/results.json, build/bench/results.md (also
printed). Nothing here is a hard-coded figure: the targets are evaluated on
the ratios measured in the same run.

Internal modes (used by the benchmark itself): --client, --dataloader.
"""

import argparse
import io
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import threading
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.path.join(REPO, os.environ.get("OUT", ".")), "bin")  # the Makefile's $(OUT)
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
BATCH = 128
SIZE = 224
CLIENT_WINDOW = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

TRAIN_KEYS = {
    "batch_size": BATCH, "size": SIZE, "crop": "random_resized", "scale": "0.08,1.0",
    "ratio": "0.75,1.3333333", "flip": 0.5, "cutout_prob": 0.5, "cutout_holes": 1,
    "cutout_size": 56, "cutout_fill": 0, "cutmix_alpha": 1.0, "mixup_alpha": 0,
    "prob": 1.0, "mode": "batch", "label_smoothing": 0.1,
}
# config/deit.ini's train pipeline (the DeiT-S recipe) at the bench's batch size
DEIT_KEYS = {
    "batch_size": BATCH, "size": SIZE, "crop": "random_resized", "scale": "0.08,1.0",
    "ratio": "0.75,1.3333333", "train_interpolation": "bicubic", "flip": 0.5,
    "auto_augment": "rand-m9-mstd0.5-inc1", "color_jitter": 0.4, "aa_fill": "mean",
    "reprob": 0.25, "remode": "pixel", "recount": 1, "mixup_alpha": 0.8, "cutmix_alpha": 1.0,
    "prob": 1.0, "switch_prob": 0.5, "mode": "batch", "label_smoothing": 0.1,
    "aug_repeats": 3,
}
VAL_KEYS = {
    "eval": "true", "batch_size": BATCH, "size": SIZE, "crop": "center", "resize": 256,
}


T0 = time.monotonic()


def log(msg):
    print("bench: [%5.1fs] %s" % (time.monotonic() - T0, msg), file=sys.stderr, flush=True)


# -- /proc helpers -------------------------------------------------------------

def proc_cpu_s(pid):
    """utime+stime of a process (all its threads) in seconds, from /proc."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of stat(5)


def proc_status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_busy_s():
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / CLK_TCK


class QuietWaiter:
    """Before each measurement, wait (within a total budget) until the
    machine's other load drops below `cores` busy cores, so that a shared
    machine disturbs the figures less. Waited seconds are reported."""

    def __init__(self, budget_s, cores=0.3, step=0.3):
        self.left, self.cores, self.step, self.waited = budget_s, cores, step, 0.0

    def __call__(self):
        while True:
            b0, t0 = machine_busy_s(), time.monotonic()
            time.sleep(self.step)
            busy = (machine_busy_s() - b0) / (time.monotonic() - t0)
            if busy < self.cores or self.left <= 0:
                return busy
            self.left -= self.step
            self.waited += self.step


def self_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


# -- touching a batch (the same for the cutmixd client and the DataLoader) -----

def touch(images, labels):
    """What a trainer minimally does with a batch: read some of every image
    (a 1/16 strided sample of the pixels) and the labels. Returns a checksum
    and checks the labels are soft labels (rows summing to 1)."""
    import numpy as np
    s = int(np.asarray(images)[:, ::4, ::4, :].sum(dtype=np.uint64))
    lab = np.asarray(labels)
    tot = float(lab.sum(dtype=np.float64))
    if abs(tot - lab.shape[0]) > 1e-3 * lab.shape[0]:
        raise SystemExit("bench: labels do not sum to 1 per row (%g for %d rows)"
                         % (tot, lab.shape[0]))
    return s


def handshake():
    """Tell the parent the warm-up is over; wait for its go."""
    print("warm", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("bench: no 'go' from the parent")


# -- child: the cutmixd client -------------------------------------------------

def run_client(a):
    sys.path.insert(0, os.path.join(REPO, "client", "python"))
    import cutmixd
    kw = dict(pipeline=a.pipeline, window=CLIENT_WINDOW, eval=a.eval, timeout=120.0)
    try:  # no resends of slow batches: a duplicate would be measured as work
        c = cutmixd.Client(a.endpoint, resend_timeout=30.0, **kw)
    except TypeError:  # a client without resends
        c = cutmixd.Client(a.endpoint, **kw)
    info = c.info()
    info = {k: info[k] for k in ("dataset_size", "num_classes", "batches_per_epoch",
                                 "meta_size", "max_window", "image_shape") if k in info}
    window = c.effective_window()
    # Warm-up: one window of batches of epoch 0, all consumed, nothing left in flight.
    for b in c.epoch(0, stop=window):
        touch(b.images, b.labels)
    handshake()
    cpu0, t0 = self_cpu_s(), time.monotonic()
    images = batches = 0
    check = 0
    for e in range(1, a.epochs + 1):
        for b in c.epoch(e):
            if b.images.shape[1:] != (SIZE, SIZE, 3):
                raise SystemExit("bench: unexpected image shape %s" % (b.images.shape,))
            check += touch(b.images, b.labels)
            images += len(b)
            batches += 1
    t1, cpu1 = time.monotonic(), self_cpu_s()
    stats = c.stats()
    resent = sum(p.get("resent", 0) for p in c.peers()) if hasattr(c, "peers") else 0
    c.close()
    print(json.dumps({"images": images, "batches": batches, "seconds": t1 - t0,
                      "client_cpu_s": cpu1 - cpu0, "checksum": check, "info": info,
                      "daemon_stats": stats, "window": window, "resent": resent}), flush=True)


# -- child: the PyTorch DataLoader ---------------------------------------------

def run_dataloader(a):
    import numpy as np
    import torch
    import torchvision.transforms as T
    from PIL import Image

    with open(a.files) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    paths = [r[0] for r in rows]
    classes = sorted(set(r[1] for r in rows))
    cidx = {c: i for i, c in enumerate(classes)}
    targets = [cidx[r[1]] for r in rows]
    K = len(classes)

    def pil_loader(path):  # torchvision.datasets.folder.pil_loader
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")

    class Cutout:
        """uoguelph-mlrg/Cutout util/cutout.py (DeVries & Taylor), applied with
        probability p, on a uint8 HWC array: zeroing the box is what the
        reference's multiplication by its 0/1 mask does."""

        def __init__(self, n_holes, length, p):
            self.n_holes, self.length, self.p = n_holes, length, p

        def __call__(self, img):
            if np.random.rand() >= self.p:
                return img
            h, w = img.shape[0], img.shape[1]
            for _ in range(self.n_holes):
                y = np.random.randint(h)
                x = np.random.randint(w)
                y1 = np.clip(y - self.length // 2, 0, h)
                y2 = np.clip(y + self.length // 2, 0, h)
                x1 = np.clip(x - self.length // 2, 0, w)
                x2 = np.clip(x + self.length // 2, 0, w)
                img[y1:y2, x1:x2, :] = 0
            return img

    def to_uint8_hwc(img):
        return np.array(img, dtype=np.uint8, copy=True)  # PIL RGB -> HxWx3, writable

    class RandomErasingU8:
        """torchvision RandomErasing(p=0.25) box rule on a uint8 HWC array,
        random bytes per pixel (timm's remode=pixel in uint8)."""

        def __init__(self, p):
            self.p = p
            self.tv = T.RandomErasing(p=1.0, scale=(0.02, 1 / 3), ratio=(0.3, 3.3))

        def __call__(self, img):
            if torch.rand(1).item() >= self.p:
                return img
            chw = torch.from_numpy(img).permute(2, 0, 1)
            y, x, h, w, _ = self.tv.get_params(chw, self.tv.scale, self.tv.ratio, value=[0])
            img[y:y + h, x:x + w] = np.random.randint(0, 256, (h, w, 3), dtype=np.uint8)
            return img

    if a.dataloader == "train":
        tf = T.Compose([T.RandomResizedCrop(SIZE), T.RandomHorizontalFlip(),
                        to_uint8_hwc, Cutout(1, 56, 0.5)])
    elif a.dataloader == "deit":
        # issue 8's DataLoader contestant: torchvision RandAugment(2, 9) +
        # ColorJitter(0.4) + RandomErasing(0.25) per sample, CutMix/MixUp
        # (switch 0.5) per batch in the main process
        tf = T.Compose([T.RandomResizedCrop(SIZE, interpolation=T.InterpolationMode.BICUBIC),
                        T.RandomHorizontalFlip(), T.RandAugment(2, 9),
                        T.ColorJitter(0.4, 0.4, 0.4), to_uint8_hwc, RandomErasingU8(0.25)])
    else:
        tf = T.Compose([T.Resize(256), T.CenterCrop(SIZE), to_uint8_hwc])

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return torch.from_numpy(tf(pil_loader(paths[i]))), targets[i]

    class EpochSampler(torch.utils.data.Sampler):
        """Shuffled (train) or sequential (val) order; `limit` cuts the
        warm-up epoch short so no prefetched work is left over."""

        def __init__(self, n, shuffle):
            self.n, self.shuffle, self.limit, self.epoch = n, shuffle, n, 0

        def __len__(self):
            return min(self.limit, self.n)

        def __iter__(self):
            order = (np.random.default_rng(self.epoch).permutation(self.n) if self.shuffle
                     else np.arange(self.n))
            self.epoch += 1
            return iter(order[:self.limit].tolist())

    def rand_bbox(size, lam):  # clovaai/CutMix-PyTorch train.py
        W = size[2]
        H = size[3]
        cut_rat = np.sqrt(1. - lam)
        cut_w = int(W * cut_rat)
        cut_h = int(H * cut_rat)
        cx = np.random.randint(W)
        cy = np.random.randint(H)
        bbx1 = np.clip(cx - cut_w // 2, 0, W)
        bby1 = np.clip(cy - cut_h // 2, 0, H)
        bbx2 = np.clip(cx + cut_w // 2, 0, W)
        bby2 = np.clip(cy + cut_h // 2, 0, H)
        return bbx1, bby1, bbx2, bby2

    def smooth_one_hot(target, s):
        y = torch.full((target.shape[0], K), s / K, dtype=torch.float32)
        y.scatter_(1, target[:, None], 1.0 - s + s / K)
        return y

    def cutmix(images, target, beta=1.0, prob=1.0, smoothing=0.1):
        """clovaai CutMix-PyTorch's per-batch step, on uint8 NHWC (the
        reference indexes NCHW dims 2,3 = H,W; here they are dims 1,2)."""
        y = smooth_one_hot(target, smoothing)
        r = np.random.rand(1)
        if beta > 0 and r < prob:
            lam = np.random.beta(beta, beta)
            rand_index = torch.randperm(images.size()[0])
            bbx1, bby1, bbx2, bby2 = rand_bbox((images.shape[0], 3, SIZE, SIZE), lam)
            images[:, bbx1:bbx2, bby1:bby2, :] = images[rand_index, bbx1:bbx2, bby1:bby2, :]
            lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (SIZE * SIZE))
            y = lam * y + (1 - lam) * y[rand_index]
        return images, y

    def mixup(images, target, alpha=0.8, smoothing=0.1):
        """timm's per-batch MixUp on uint8 (fast-collate rounding)."""
        y = smooth_one_hot(target, smoothing)
        lam = float(np.random.beta(alpha, alpha))
        idx = torch.flip(torch.arange(images.shape[0]), [0])
        mixed = images.float() * lam + images[idx].float() * (1 - lam)
        return torch.round(mixed).to(torch.uint8), lam * y + (1 - lam) * y[idx]

    ds = Files()
    sampler = EpochSampler(len(ds), shuffle=a.dataloader in ("train", "deit"))
    prefetch = 2
    loader = torch.utils.data.DataLoader(
        ds, batch_size=BATCH, sampler=sampler, num_workers=a.workers,
        persistent_workers=a.workers > 0, prefetch_factor=prefetch if a.workers > 0 else 2,
        drop_last=False)

    def consume(batch):
        images, target = batch
        if a.dataloader == "train":
            images, labels = cutmix(images, target)
        elif a.dataloader == "deit":
            if np.random.rand() < 0.5:
                images, labels = cutmix(images, target)
            else:
                images, labels = mixup(images, target)
        else:
            labels = smooth_one_hot(target, 0.0)
        return touch(images.numpy(), labels.numpy()), images.shape[0]

    # Warm-up: one window (workers x prefetch_factor batches), no leftovers.
    window = max(1, a.workers) * prefetch
    sampler.limit = window * BATCH
    for batch in loader:
        consume(batch)
    sampler.limit = len(ds)

    worker_pids = []
    try:
        worker_pids = [w.pid for w in loader._iterator._workers]  # persistent workers
    except AttributeError:
        pass
    handshake()
    images = batches = check = 0
    it = None
    cpu0 = self_cpu_s()
    wcpu0 = sum(proc_cpu_s(p) or 0 for p in worker_pids)
    t0 = time.monotonic()
    for _ in range(a.epochs):
        it = iter(loader)
        for batch in it:
            c, n = consume(batch)
            check += c
            images += n
            batches += 1
    t1 = time.monotonic()
    wcpu1 = sum(proc_cpu_s(p) or 0 for p in worker_pids)
    cpu1 = self_cpu_s()
    print(json.dumps({"images": images, "batches": batches, "seconds": t1 - t0,
                      "client_cpu_s": cpu1 - cpu0, "workers_cpu_s": wcpu1 - wcpu0,
                      "worker_pids": worker_pids, "checksum": check, "window": window,
                      "torch": torch.__version__}), flush=True)
    os._exit(0)  # skip the slow persistent-worker teardown


# -- parent: datasets ----------------------------------------------------------

def prepare_dataset(out_dir, want_photo):
    """Returns (root, manifest, rows[(abs path, class)], description)."""
    shared = os.path.normpath(os.path.join(REPO, "..", "shared", "imagenet-sample"))
    if os.path.isdir(shared) and not want_photo:
        names = sorted(n for n in os.listdir(shared)
                       if n.lower().endswith((".jpeg", ".jpg")) and "_" in n)
        if names:
            manifest = os.path.join(out_dir, "imagenet-sample.tsv")
            rows = [(n, n.split("_", 1)[0]) for n in names]
            with open(manifest, "w") as f:
                for n, c in rows:
                    f.write("%s\t%s\n" % (n, c))
            return (shared, manifest, [(os.path.join(shared, n), c) for n, c in rows],
                    "../shared/imagenet-sample (%d real ImageNet photos, class = wnid)"
                    % len(rows))
    root = os.path.join(out_dir, "photo")
    manifest = os.path.join(out_dir, "photo.tsv")
    classes, per_class = 100, 10
    if not (os.path.exists(manifest) and sum(1 for _ in open(manifest)) == classes * per_class):
        log("generating %d photo-like JPEGs with scripts/gen_dataset.py --photo"
            % (classes * per_class))
        if os.path.exists(root):
            shutil.rmtree(root)
        subprocess.run([PYTHON, os.path.join(REPO, "scripts", "gen_dataset.py"), "--photo",
                        "--classes", str(classes), "--per-class", str(per_class),
                        "--seed", "0", "--manifest", manifest, root], check=True,
                       stdout=sys.stderr)
    rows = []
    with open(manifest) as f:
        for line in f:
            line = line.rstrip("\n")
            if line and not line.startswith("#"):
                p, c = line.split("\t")[:2]
                rows.append((p, c))
    return (root, manifest, [(os.path.join(root, p), c) for p, c in rows],
            "scripts/gen_dataset.py --photo (%d synthetic photo-like JPEGs, ~500x375, "
            "q75-95, mixed subsampling)" % len(rows))


def dataset_summary(rows):
    from PIL import Image
    nbytes = 0
    mp = []
    for p, _ in rows:
        nbytes += os.path.getsize(p)
        with Image.open(p) as im:
            mp.append(im.size[0] * im.size[1] / 1e6)
    mp.sort()
    return {"files": len(rows), "bytes": nbytes, "mean_mpix": sum(mp) / len(mp),
            "median_mpix": mp[len(mp) // 2], "classes": len(set(c for _, c in rows))}


def warm_cache(rows):
    """Read every file so that no contestant measures the disk."""
    for p, _ in rows:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


# -- parent: the same photos as shards and as a pack ----------------------------

SHARDS = 4  # tar shards the photos are split into (in order)


def build_shards(rows, src_dir):
    """WebDataset tar shards of `rows` in their order: KEY.jpg (the file's
    bytes) + KEY.cls (index of its class among the sorted class names, as
    the manifest numbers them) per sample, classes.txt beside the shards.
    Returns (shard pattern, shard paths)."""
    import tarfile
    d = os.path.join(src_dir, "shards")
    os.makedirs(d)
    classes = sorted(set(c for _, c in rows))
    cls_of = {c: i for i, c in enumerate(classes)}
    with open(os.path.join(d, "classes.txt"), "w") as f:
        f.write("".join(c + "\n" for c in classes))
    per = max(1, math.ceil(len(rows) / SHARDS))
    paths = []
    for s in range(0, len(rows), per):
        path = os.path.join(d, "train-%06d.tar" % len(paths))
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
            for i in range(s, min(s + per, len(rows))):
                p, c = rows[i]
                key = "%06d" % i
                with open(p, "rb") as f:  # the bytes, whatever p links to
                    data = f.read()
                for ext, blob in (("jpg", data), ("cls", b"%d" % cls_of[c])):
                    ti = tarfile.TarInfo("%s.%s" % (key, ext))
                    ti.size, ti.mtime, ti.mode = len(blob), int(time.time()), 0o644
                    tar.addfile(ti, io.BytesIO(blob))
        paths.append(path)
    pattern = os.path.join(d, "train-{%06d..%06d}.tar" % (0, len(paths) - 1))
    return pattern, paths


def build_pack(src_ini, src_dir):
    """`cutmixd pack` of the files dataset of `src_ini`. Returns (index
    path, pack files, seconds)."""
    d = os.path.join(src_dir, "pack")
    t = time.monotonic()
    r = subprocess.run([os.path.join(BIN, "cutmixd"), "pack", "-c", src_ini, d],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise SystemExit("bench: cutmixd pack failed (exit %d):\n%s"
                         % (r.returncode, r.stdout[-2000:]))
    files = sorted(os.path.join(d, n) for n in os.listdir(d))
    return os.path.join(d, "index.cmxpack"), files, time.monotonic() - t


# -- parent: the daemon ----------------------------------------------------------

class Daemon:
    def __init__(self, name, workers, root, manifest, out_dir, sock_dir, pipelines,
                 dataset_lines=None):
        self.name = name
        self.workers = workers
        self.ini = os.path.join(out_dir, name + ".ini")
        self.log_path = os.path.join(out_dir, name + ".log")
        self.endpoint = "ipc://" + os.path.join(sock_dir, name + ".sock")
        lines = ["; written by scripts/bench.py", "[server]",
                 "endpoint = " + self.endpoint, "workers = %d" % workers, "seed = 1",
                 "log_level = notice", "", "[dataset]"]
        lines += dataset_lines or ["root = " + root, "manifest = " + manifest]
        lines.append("")
        for pname, keys in pipelines.items():
            lines.append("[pipeline.%s]" % pname)
            lines += ["%s = %s" % kv for kv in keys.items()]
            lines.append("")
        self.config_text = "\n".join(lines)
        self.peak_private_kib = self.peak_shmem_kib = 0  # sample_memory()
        with open(self.ini, "w") as f:
            f.write(self.config_text)
        self.proc = None

    def start(self, timeout=60.0):
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.path.join(BIN, "cutmixd"), "-c", self.ini],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                if "ready:" in f.read():
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        with open(self.log_path) as f:
            tail = f.read()[-2000:]
        raise SystemExit("bench: %s did not become ready (log %s):\n%s"
                         % (self.name, self.log_path, tail))

    @property
    def pid(self):
        return self.proc.pid

    def peak_rss_kib(self):
        return proc_status_kib(self.pid, "VmHWM")

    def sample_memory(self):
        """One reading of the daemon's resident memory by kind; the
        peaks of its private part (RssAnon + RssFile) and of its shared
        memory (RssShmem: the shared-memory sessions whose slots the
        local clients map instead of receiving copies) are kept."""
        anon = proc_status_kib(self.pid, "RssAnon")
        rfile = proc_status_kib(self.pid, "RssFile")
        shmem = proc_status_kib(self.pid, "RssShmem")
        if anon is None or rfile is None or shmem is None:
            return
        self.peak_private_kib = max(self.peak_private_kib, anon + rfile)
        self.peak_shmem_kib = max(self.peak_shmem_kib, shmem)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()


class MemorySampler(threading.Thread):
    """Reads every daemon's memory 10 times a second while the bench runs
    (VmHWM has one peak for all kinds of pages; the RSS target is about
    the daemon's own memory, not the slots it shares with its client)."""

    def __init__(self, daemons):
        super().__init__(daemon=True)
        self.daemons = daemons
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.1):
            for d in list(self.daemons):
                if d.proc and d.proc.poll() is None:
                    d.sample_memory()

    def stop(self):
        self.done.set()
        self.join(2.0)


def run_child(args, timeout, quiet, probe):
    """Start a child of this script, wait for its warm-up and for the machine
    to be quiet, then measure from 'go' to its JSON result. Returns (result,
    probe() at go, probe() at the end)."""
    t = [time.monotonic()]
    p = subprocess.Popen([PYTHON, os.path.abspath(__file__)] + args, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        line = p.stdout.readline()
        t.append(time.monotonic())
        if line.strip() != "warm":
            p.wait(30)
            raise SystemExit("bench: child %s failed during warm-up (exit %s)"
                             % (args[:3], p.returncode))
        quiet()
        t.append(time.monotonic())
        at_go = probe()
        p.stdin.write("go\n")
        p.stdin.flush()
        line = p.stdout.readline()
        at_end = probe()
        t.append(time.monotonic())
        if not line.strip():
            p.wait(30)
            raise SystemExit("bench: child %s failed (exit %s)" % (args[:3], p.returncode))
        p.wait(timeout)
        t.append(time.monotonic())
        res = json.loads(line)
        # start -> warm (start-up and warm-up), quiet wait, go -> result, exit
        res["phases_s"] = [round(b - a, 3) for a, b in zip(t, t[1:])]
        if max(res["phases_s"]) > 60:
            log("warning: a slow phase (start-up/warm-up, quiet wait, run, exit): %s s"
                % res["phases_s"])
        return res, at_go, at_end
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def other_load(s0, s1, ours_cpu_s):
    """CPU used by processes outside the contestant between two probes, in %
    of one core (the contestant's own CPU, measured over nearly the same
    interval, is subtracted)."""
    dt = s1["t"] - s0["t"]
    if dt <= 0:
        return 0.0
    v = 100.0 * ((s1["busy"] - s0["busy"]) - ours_cpu_s) / dt
    return min(max(v, 0.0), 100.0 * (os.cpu_count() or 1))


def pick(samples, max_other_load, within=0.97):
    """The sample that counts: the fastest undisturbed one when it is within
    3% of the fastest of all, else the fastest (disturbed) one."""
    fastest = max(samples, key=lambda r: r["img_per_s"])
    clean = [r for r in samples if r["other_load_percent"] <= max_other_load]
    if clean:
        best_clean = max(clean, key=lambda r: r["img_per_s"])
        if best_clean["img_per_s"] >= within * fastest["img_per_s"]:
            return best_clean
    return fastest


def sample(pids):
    return {"t": time.monotonic(), "busy": machine_busy_s(),
            "cpu": {pid: proc_cpu_s(pid) for pid in pids}}


def measure_cutmixd(daemon, pipeline, epochs, rows, is_eval, quiet):
    warm_cache(rows)
    args = ["--client", "--endpoint", daemon.endpoint, "--pipeline", pipeline,
            "--epochs", str(epochs)] + (["--eval"] if is_eval else [])
    res, s0, s1 = run_child(args, 600, quiet, lambda: sample([daemon.pid]))
    wall = res["seconds"]
    dcpu = s1["cpu"][daemon.pid] - s0["cpu"][daemon.pid]
    ours = dcpu + res["client_cpu_s"]
    st = res["daemon_stats"]
    if st.get("decode_errors") or st.get("replaced"):
        log("warning: %s: %s decode errors, %s replaced samples"
            % (daemon.name, st.get("decode_errors"), st.get("replaced")))
    if res.get("resent"):
        log("warning: %s: the client re-sent %d requests (duplicate work was measured)"
            % (daemon.name, res["resent"]))
    return {
        "img_per_s": res["images"] / wall, "images": res["images"], "batches": res["batches"],
        "seconds": wall, "workers": daemon.workers,
        "daemon_cpu_percent": 100.0 * dcpu / wall,
        "client_cpu_percent": 100.0 * res["client_cpu_s"] / wall,
        "client_cpu_percent_per_kimg_s": 1e5 * res["client_cpu_s"] / max(res["images"], 1),
        "total_cpu_percent": 100.0 * ours / wall,
        "other_load_percent": other_load(s0, s1, ours),
        "daemon_peak_rss_kib": daemon.peak_rss_kib(), "resent": res.get("resent", 0),
        "phases_s": res["phases_s"],
        "window": res["window"], "info": res["info"], "checksum": res["checksum"],
    }


def measure_dataloader(kind, workers, epochs, files_list, rows, quiet):
    warm_cache(rows)
    args = ["--dataloader", kind, "--files", files_list, "--workers", str(workers),
            "--epochs", str(epochs)]
    res, s0, s1 = run_child(args, 900, quiet, lambda: sample([]))
    wall = res["seconds"]
    ours = res["client_cpu_s"] + res["workers_cpu_s"]
    return {
        "img_per_s": res["images"] / wall, "images": res["images"], "batches": res["batches"],
        "seconds": wall, "workers": workers,
        "client_cpu_percent": 100.0 * res["client_cpu_s"] / wall,
        "workers_cpu_percent": 100.0 * res["workers_cpu_s"] / wall,
        "total_cpu_percent": 100.0 * ours / wall,
        "other_load_percent": other_load(s0, s1, ours),
        "window": res["window"], "torch": res.get("torch"), "phases_s": res["phases_s"],
    }


def measure_ceiling(threads, passes, root, manifest, rows, quiet, extra=()):
    warm_cache(rows)
    quiet()
    def children_cpu_s():
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    c0, b0, t0 = children_cpu_s(), machine_busy_s(), time.monotonic()
    out = subprocess.run([os.path.join(BIN, "decode_ceiling"), "-t", str(threads),
                          "-r", str(passes), "-m", manifest, "--root", root, "--json"]
                         + list(extra),
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    c1, b1, t1 = children_cpu_s(), machine_busy_s(), time.monotonic()
    r = json.loads(out)
    # Other load over the whole child (loading included), against all its CPU.
    other = min(100.0 * ((b1 - b0) - (c1 - c0)) / (t1 - t0), 100.0 * (os.cpu_count() or 1))
    return {"img_per_s": r["img_per_s"], "images": r["images"], "seconds": r["seconds"],
            "workers": threads, "mpix_per_s": r["mpix_per_s"],
            "total_cpu_percent": r["cpu_percent"], "other_load_percent": max(0.0, other)}


# -- parent: report ---------------------------------------------------------------

def fmt(v, spec="%.0f", none="–"):
    return none if v is None else spec % v


def shm_part(r):
    """' (own X + shm Y)' after a daemon's VmHWM when its memory was sampled."""
    own, shm = r.get("daemon_peak_private_kib"), r.get("daemon_peak_shmem_kib")
    if not own:
        return ""
    return " (own %.1f + shm %.1f)" % (own / 1024.0, (shm or 0) / 1024.0)


def build_report(R, targets):
    res = R["results"]
    N = R["workers"]
    lines = []
    lines.append("| contestant | workers | img/s | vs DataLoader | vs ceiling | CPU % (all "
                 "processes) | CPU ms/img | client CPU % | peak RSS | other load % |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ceil = res["ceiling"]["img_per_s"]

    def row(label, key, dl_key=None):
        r = res.get(key)
        if not r:
            return
        vs_dl = (r["img_per_s"] / res[dl_key]["img_per_s"]) if dl_key and dl_key in res else None
        rss = r.get("daemon_peak_rss_kib")
        lines.append("| %s | %d | %.0f%s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, r["workers"], r["img_per_s"], " (!)" if r.get("disturbed") else "",
            fmt(vs_dl, "%.2fx"),
            fmt(r["img_per_s"] / ceil, "%.2fx"), fmt(r.get("total_cpu_percent")),
            fmt(r.get("cpu_ms_per_img"), "%.2f"),
            fmt(r.get("client_cpu_percent"), "%.1f"),
            fmt(rss / 1024.0 if rss else None, "%.1f MiB") + shm_part(r),
            fmt(r.get("other_load_percent"))))

    row("decode ceiling (full decode only)", "ceiling")
    row("decode ceiling, 1 thread", "ceiling_1")
    row("decode floor (train crops, region decode only)", "floor_train")
    row("decode floor + resize (train crops)", "floor_train_resize")
    row("decode floor (val crops, region decode only)", "floor_val")
    row("**cutmixd train**", "cutmixd_train", "dataloader_train")
    row("cutmixd train (shards)", "cutmixd_train_shards", "dataloader_train")
    row("cutmixd train (pack)", "cutmixd_train_pack", "dataloader_train")
    row("cutmixd train, dct_scale off", "cutmixd_train_nodct", "dataloader_train")
    row("**cutmixd val**", "cutmixd_val", "dataloader_val")
    row("**cutmixd deit** (config/deit.ini recipe)", "cutmixd_deit", "dataloader_deit")
    row("DataLoader train", "dataloader_train")
    row("DataLoader deit (RandAugment+ColorJitter+RandomErasing+CutMix/MixUp)",
        "dataloader_deit")
    row("DataLoader val", "dataloader_val")
    for w in sorted(R["scaling"]):
        if int(w) != N:
            row("cutmixd train, %s worker(s)" % w, "cutmixd_train_w%s" % w, "dataloader_train")
    lines.append("")
    if any(r.get("disturbed") for r in res.values()):
        lines.append("(!) = its fastest sample ran while other processes used more than "
                     "%.0f%% of a core (column 'other load', from /proc/stat): treat with care."
                     % R["max_other_load"])
        lines.append("")
    sc = R["scaling"]
    if sc:
        base = sc.get("1")
        lines.append("Scaling of cutmixd train: " + ", ".join(
            "%s worker(s) %.0f img/s%s" % (w, v, " (%.2fx)" % (v / base) if base else "")
            for w, v in sorted(sc.items(), key=lambda kv: int(kv[0]))))
        lines.append("")
    lines.extend(sources_report(R))
    lines.extend(floor_report(res))
    lines.append("| target | measured | result |")
    lines.append("|---|---:|---|")
    for t in targets:
        lines.append("| %s | %s | %s |" % (t["target"], t["measured_text"], t["result"]))
    return "\n".join(lines)


def sources_report(R):
    """cutmixd train on the same photos as files, as shards and as a pack,
    side by side."""
    res = R["results"]
    if "cutmixd_train_shards" not in res and "cutmixd_train_pack" not in res:
        return []
    f = res["cutmixd_train"]
    lines = ["cutmixd train on the same photos stored three ways (same pipeline, "
             "workers and client; same batches = the client's checksum equals the "
             "files' one):", "",
             "| source | img/s | x files | CPU ms/img | x files CPU | CPU % | on disk | "
             "built in | same batches |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, key in (("files", "cutmixd_train"), ("shards (%d tar)" % SHARDS,
                                                   "cutmixd_train_shards"),
                      ("pack (`cutmixd pack`)", "cutmixd_train_pack")):
        r = res.get(key)
        if not r:
            continue
        nbytes = r.get("source_bytes", R["dataset"]["bytes"])
        lines.append("| %s | %.0f%s | %.2fx | %.2f | %.2fx | %.0f | %.1f MB | %s | %s |" % (
            name, r["img_per_s"], " (!)" if r.get("disturbed") else "",
            r["img_per_s"] / f["img_per_s"], r["cpu_ms_per_img"],
            r["cpu_ms_per_img"] / f["cpu_ms_per_img"], r["total_cpu_percent"],
            nbytes / 1e6, fmt(r.get("build_s"), "%.1f s"),
            "–" if key == "cutmixd_train" else
            ("yes" if r.get("same_batches_as_files") else "**no**")))
    lines.append("")
    return lines


# Contestants compared with the decode floor of their pipeline (train or val).
FLOOR_OF = {"val": "floor_val"}


def floor_report(res):
    """CPU per image of every contestant beside the region-decode floor of its
    pipeline: what is left above the floor is the non-decode cost."""
    if "floor_train" not in res:
        return []
    lines = ["CPU per image against the decode floor (region decode of the same "
             "kind of crops, the part no loader can skip):", "",
             "| contestant | CPU ms/img | floor ms/img | above the floor ms/img | x floor |",
             "|---|---:|---:|---:|---:|"]
    for key in sorted(res):
        r = res[key]
        if key.startswith(("floor_", "ceiling")) and key != "floor_train_resize":
            continue
        fk = next((f for k, f in FLOOR_OF.items() if k in key), "floor_train")
        f = res.get(fk)
        if not f or r.get("cpu_ms_per_img") is None:
            continue
        lines.append("| %s | %.2f | %.2f | %.2f | %.2fx |" % (
            key, r["cpu_ms_per_img"], f["cpu_ms_per_img"],
            r["cpu_ms_per_img"] - f["cpu_ms_per_img"],
            r["cpu_ms_per_img"] / f["cpu_ms_per_img"]))
    lines.append("")
    return lines


def client_pct_per_kimg(r):
    """Client CPU % of one core per 1000 img/s received (from the two
    figures every cutmixd result has, so older results.json work too)."""
    return r["client_cpu_percent"] / (r["img_per_s"] / 1000.0)


def evaluate_targets(R):
    res = R["results"]
    T = []

    def eff(base, ours):
        """The same ratio from CPU time per image (less sensitive to other load)."""
        return " (CPU time per image: %.2fx)" % (base["cpu_ms_per_img"] / ours["cpu_ms_per_img"])

    def add(name, measured, text, ok, uses=(), **extra):
        # A figure from a disturbed sample (other load) is flagged "(!)".
        disturbed = any(res.get(k, {}).get("disturbed") for k in uses)
        d = {"target": name, "measured": measured, "measured_text": text,
             "result": ("PASS" if ok else "MISS") + (" (!)" if disturbed else ""),
             "pass": bool(ok), "disturbed": disturbed}
        d.update(extra)
        T.append(d)

    tr, va = res["cutmixd_train"], res["cutmixd_val"]
    dtr, dva = res.get("dataloader_train"), res.get("dataloader_val")
    if dtr:
        x = tr["img_per_s"] / dtr["img_per_s"]
        add("train >= 3.0x DataLoader", x, "%.2fx%s" % (x, eff(dtr, tr)), x >= 3.0,
            ("cutmixd_train", "dataloader_train"), goal=3.0)
    if dva:
        x = va["img_per_s"] / dva["img_per_s"]
        add("val >= 2.5x DataLoader", x, "%.2fx%s" % (x, eff(dva, va)), x >= 2.5,
            ("cutmixd_val", "dataloader_val"), goal=2.5)
    x = tr["img_per_s"] / res["ceiling"]["img_per_s"]
    add("train >= 1.2x decode ceiling", x, "%.2fx%s" % (x, eff(res["ceiling"], tr)), x >= 1.2,
        ("cutmixd_train", "ceiling"), goal=1.2)
    sc = R["scaling"]
    if "1" in sc and "2" in sc:
        x = sc["2"] / sc["1"]
        k2 = "cutmixd_train" if R["workers"] == 2 else "cutmixd_train_w2"
        text = "%.2fx" % x
        if "ceiling_1" in res and R["workers"] == 2:
            text += " (decode ceiling: %.2fx)" % (res["ceiling"]["img_per_s"]
                                                 / res["ceiling_1"]["img_per_s"])
        add("2 workers >= 1.85x 1 worker (train)", x, text, x >= 1.85,
            (k2, "cutmixd_train_w1"), goal=1.85)
    dde, de = res.get("dataloader_deit"), res.get("cutmixd_deit")
    if dde and de:
        x = de["img_per_s"] / dde["img_per_s"]
        add("deit >= 3.0x DataLoader", x, "%.2fx%s" % (x, eff(dde, de)), x >= 3.0,
            ("cutmixd_deit", "dataloader_deit"), goal=3.0)
    if de:
        x = de["cpu_ms_per_img"] / tr["cpu_ms_per_img"]
        add("deit recipe costs <= 1.25x the CPU per image of train", x, "%.2fx" % x,
            x <= 1.25, ("cutmixd_deit", "cutmixd_train"), goal=1.25)
    b = R["batch_bytes"]
    # Batches in flight: the client's window. The daemon holds at most one
    # batch buffer per outstanding request (max_inflight of them being
    # computed, the rest finished and on their way to the client).
    inflight = max(R["max_inflight"], CLIENT_WINDOW)
    budget = 64 * MIB + inflight * b
    # With shared memory the daemon's VmHWM also counts the slots its local
    # clients map (RssShmem): memory that replaces the client's receive
    # buffers, not the daemon's own. The target is the daemon's own peak
    # (RssAnon + RssFile, sampled 10 times a second) when it was sampled.
    rss = tr["daemon_peak_rss_kib"] * 1024
    own = tr.get("daemon_peak_private_kib")
    shm = tr.get("daemon_peak_shmem_kib") or 0
    if own:
        own *= 1024
        add("daemon peak RSS (own memory) <= 64 MiB + %d in flight x %.1f MiB = %.1f MiB"
            % (inflight, b / MIB, budget / MIB), own / MIB,
            "%.1f MiB (VmHWM %.1f MiB incl. %.1f MiB of shared-memory slots)"
            % (own / MIB, rss / MIB, shm * 1024 / MIB), own <= budget, goal_mib=budget / MIB)
    else:
        add("daemon peak RSS <= 64 MiB + %d in flight x %.1f MiB = %.1f MiB"
            % (inflight, b / MIB, budget / MIB), rss / MIB,
            "%.1f MiB" % (rss / MIB), rss <= budget, goal_mib=budget / MIB)
    # The client target scales with the rate: the consuming Python
    # process may use 5% of one core per 1000 img/s it receives (= 0.05 ms
    # of client CPU per image); the worse of train and val decides.
    per_k = {k: client_pct_per_kimg(res[k]) for k in ("cutmixd_train", "cutmixd_val")}
    worst = max(per_k.values())
    add("client <= 5% of one core per 1000 img/s received", worst,
        "%.2f%% per 1000 img/s (train %.2f%% at %.0f img/s, val %.2f%% at %.0f img/s)"
        % (worst, per_k["cutmixd_train"], tr["img_per_s"], per_k["cutmixd_val"],
           va["img_per_s"]), worst <= 5.0, ("cutmixd_train", "cutmixd_val"), goal=5.0)
    return T


def main_bench(a):
    t_start = time.monotonic()
    if a.nice:
        set_priority(a.nice)
    out_dir = os.path.join(REPO, "build", "bench")
    os.makedirs(out_dir, exist_ok=True)
    N = a.workers
    for tool in ("cutmixd", "decode_ceiling"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            raise SystemExit("bench: %s/%s is missing: run `make` first" % (BIN, tool))
    root, manifest, rows, ds_desc = prepare_dataset(out_dir, a.photo)
    if a.photos and a.photos < len(rows):
        rows = rows[:a.photos]
        manifest = os.path.join(out_dir, "first-%d.tsv" % a.photos)
        with open(manifest, "w") as f:
            for p, c in rows:
                f.write("%s\t%s\n" % (os.path.relpath(p, root), c))
        ds_desc += ", first %d only" % a.photos
    files_list = os.path.join(out_dir, "files.tsv")
    with open(files_list, "w") as f:
        for p, c in rows:
            f.write("%s\t%s\n" % (p, c))
    n = len(rows)
    epochs = a.epochs or max(1, math.ceil(a.images / n))
    summary = dataset_summary(rows)
    log("dataset: %s, %.1f MB, mean %.3f MP; %d worker(s), %d timed epoch(s) = %d images "
        "per contestant, %d round(s)" % (ds_desc, summary["bytes"] / 1e6,
                                         summary["mean_mpix"], N, epochs, epochs * n, a.rounds))

    sock_dir = tempfile.mkdtemp(prefix="cutmixd-bench-")
    src_dir = tempfile.mkdtemp(prefix="cutmixd-bench-src-")
    sources = {}
    worker_counts = sorted(set([1] + [w for w in (2, 4, 8, 16, 32, 64) if w < N] + [N]))
    nodct = dict(TRAIN_KEYS, dct_scale="false")
    daemons = {}
    samples = {}
    load0 = loadavg()
    quiet = QuietWaiter(a.quiet_wait)

    def keep(key, r):
        samples.setdefault(key, []).append(r)

    try:
        if not a.no_sources:
            t = time.monotonic()
            pattern, shard_files = build_shards(rows, src_dir)
            shard_s = time.monotonic() - t
            log("sources: %d tar shards written in %.1f s" % (len(shard_files), shard_s))
            src = Daemon("pack-source", N, root, manifest, out_dir, sock_dir,
                         {"train": TRAIN_KEYS})
            index, pack_files, pack_s = build_pack(src.ini, src_dir)
            log("sources: cutmixd pack wrote %d files in %.1f s" % (len(pack_files), pack_s))
            sources = {
                "shards": {"lines": ["shards = " + pattern], "files": shard_files,
                           "build_s": shard_s},
                "pack": {"lines": ["pack = " + index], "files": pack_files,
                         "build_s": pack_s}}
            for name, sd in sources.items():
                sd["bytes"] = sum(os.path.getsize(f) for f in sd["files"])
                sd["daemon"] = Daemon("cutmixd-%s-w%d" % (name, N), N, root, manifest,
                                      out_dir, sock_dir, {"train": TRAIN_KEYS},
                                      dataset_lines=sd["lines"])
        main_d = Daemon("cutmixd-w%d" % N, N, root, manifest, out_dir, sock_dir,
                        {"train": TRAIN_KEYS, "val": VAL_KEYS, "train_nodct": nodct,
                         "deit": DEIT_KEYS}).start()
        daemons[N] = main_d
        for w in worker_counts:
            if w != N:
                daemons[w] = Daemon("cutmixd-w%d" % w, w, root, manifest, out_dir, sock_dir,
                                    {"train": TRAIN_KEYS}).start()
        for name, sd in sources.items():
            daemons[name] = sd["daemon"].start()
        sampler = MemorySampler(daemons.values())
        sampler.start()
        contestants = [("ceiling", "decode ceiling, %d threads" % N,
                        lambda: measure_ceiling(N, epochs, root, manifest, rows, quiet))]
        if N != 1:
            contestants.append(("ceiling_1", "decode ceiling, 1 thread",
                                lambda: measure_ceiling(1, epochs, root, manifest, rows, quiet)))
        for key, label, extra in (
                ("floor_train", "decode floor, train crops", ("--crops", "train")),
                ("floor_train_resize", "decode floor + resize, train",
                 ("--crops", "train", "--resize")),
                ("floor_val", "decode floor, val crops", ("--crops", "center"))):
            contestants.append((key, label, lambda extra=extra: measure_ceiling(
                N, epochs, root, manifest, rows, quiet, extra)))
        for pipe, key, ev in (("train", "cutmixd_train", False),
                              ("val", "cutmixd_val", True),
                              ("train_nodct", "cutmixd_train_nodct", False),
                              ("deit", "cutmixd_deit", False)):
            contestants.append((key, "cutmixd %s, %d workers" % (pipe, N),
                                lambda pipe=pipe, ev=ev: measure_cutmixd(
                                    main_d, pipe, epochs, rows, ev, quiet)))
            if key == "cutmixd_train":  # the same photos as shards and as a pack
                for name, sd in sources.items():
                    contestants.append((
                        "cutmixd_train_" + name, "cutmixd train (%s), %d workers" % (name, N),
                        lambda sd=sd: measure_cutmixd(sd["daemon"], "train", epochs,
                                                      [(f, None) for f in sd["files"]],
                                                      False, quiet)))
        if not a.no_dataloader:
            for kind in ("train", "val", "deit"):
                contestants.append(("dataloader_" + kind, "DataLoader %s, %d workers" % (kind, N),
                                    lambda kind=kind: measure_dataloader(
                                        kind, N, epochs, files_list, rows, quiet)))
        for w in worker_counts:
            if w != N:
                contestants.append(("cutmixd_train_w%d" % w, "cutmixd train, %d worker(s)" % w,
                                    lambda w=w: measure_cutmixd(daemons[w], "train", epochs,
                                                                rows, False, quiet)))
        cost = {}

        def run_one(key, label, fn):
            t = time.monotonic()
            r = fn()
            cost[key] = time.monotonic() - t
            keep(key, r)
            log("  %-34s %6.0f img/s  CPU %4.0f%%  other load %3.0f%%"
                % (label, r["img_per_s"], r["total_cpu_percent"], r["other_load_percent"]))

        # Round 1 runs everything; later rounds, and then reruns of whatever
        # has only a disturbed fastest sample (other load above the
        # threshold), only while the time budget lasts.
        deadline = t_start + a.time_budget
        for rnd in range(a.rounds):
            log("round %d/%d" % (rnd + 1, a.rounds))
            for c in contestants:
                if rnd == 0 or time.monotonic() + cost[c[0]] < deadline:
                    run_one(*c)
        while True:
            todo = [c for c in contestants
                    if pick(samples[c[0]], a.max_other_load)["other_load_percent"]
                    > a.max_other_load]
            todo = [c for c in todo if time.monotonic() + cost[c[0]] < deadline]
            if not todo:
                break
            c = min(todo, key=lambda c: len(samples[c[0]]))
            log("again (disturbed by other load):")
            run_one(*c)
        peak = {w: d.peak_rss_kib() for w, d in daemons.items()}
        sampler.stop()
        for d in daemons.values():
            d.sample_memory()
        mem = {w: (d.peak_private_kib or None, d.peak_shmem_kib)
               for w, d in daemons.items()}
    finally:
        for d in daemons.values():
            d.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
        shutil.rmtree(src_dir, ignore_errors=True)

    # The fastest sample of each contestant: load from elsewhere (in this
    # machine or on its host) can only slow a run down, so the fastest one
    # is the least disturbed (an undisturbed one within 3% of it is
    # preferred). Flagged when the one chosen ran beside other load.
    results = {}
    for k, v in samples.items():
        best = dict(pick(v, a.max_other_load))
        best["disturbed"] = best["other_load_percent"] > a.max_other_load
        best["samples"] = [{"img_per_s": r["img_per_s"], "other_load_percent":
                            r["other_load_percent"], "phases_s": r.get("phases_s")}
                           for r in v]
        results[k] = best
    for r in results.values():
        r["cpu_ms_per_img"] = 1000.0 * r["total_cpu_percent"] / 100.0 * r["seconds"] / r["images"]
    def set_peaks(r, w):
        r["daemon_peak_rss_kib"] = peak[w]
        r["daemon_peak_private_kib"], r["daemon_peak_shmem_kib"] = mem[w]

    for key in ("cutmixd_train", "cutmixd_val", "cutmixd_train_nodct", "cutmixd_deit"):
        if key in results:
            set_peaks(results[key], N)
    for w in worker_counts:
        if w != N:
            set_peaks(results["cutmixd_train_w%d" % w], w)
    for name, sd in sources.items():
        r = results["cutmixd_train_" + name]
        set_peaks(r, name)
        r["source_bytes"], r["source_files"] = sd["bytes"], len(sd["files"])
        r["build_s"] = sd["build_s"]
        # same photos, same config: the same batches, so the same checksum
        r["same_batches_as_files"] = r["checksum"] == results["cutmixd_train"]["checksum"]
        if not r["same_batches_as_files"]:
            log("warning: cutmixd train (%s) served other batches than from the files "
                "(checksum %s vs %s)" % (name, r["checksum"],
                                         results["cutmixd_train"]["checksum"]))
    scaling = {str(w): results["cutmixd_train" if w == N else "cutmixd_train_w%d" % w]["img_per_s"]
               for w in worker_counts}
    info = results["cutmixd_train"]["info"]
    K = info.get("num_classes", 0)
    meta = info.get("meta_size", 224)
    batch_bytes = BATCH * SIZE * SIZE * 3 + BATCH * K * 4 + BATCH * meta
    R = {
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {"nproc": os.cpu_count(), "cpu_model": cpu_model(),
                    "kernel": platform.release(), "mem_total_kib": proc_status_mem_total(),
                    "loadavg_before": load0, "loadavg_after": loadavg()},
        "software": software_versions(results),
        "dataset": dict(summary, description=ds_desc, root=root, manifest=manifest),
        "workers": N, "batch_size": BATCH, "size": SIZE, "epochs": epochs,
        "images_per_contestant": epochs * n, "rounds": a.rounds,
        "client_window": CLIENT_WINDOW,
        "max_inflight": 2 + N // 2, "batch_bytes": batch_bytes,
        "daemon_config": main_d.config_text,
        "results": results, "scaling": scaling,
        "quiet_wait_s": quiet.waited, "max_other_load": a.max_other_load,
        "niceness": os.nice(0), "autogroup_nice": autogroup_nice(),
    }
    R["targets"] = evaluate_targets(R)
    R["elapsed_s"] = time.monotonic() - t_start
    table = build_report(R, R["targets"])
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(R, f, indent=2, sort_keys=True)
        f.write("\n")
    head = ("# cutmixd benchmark\n\n%s; %s, nproc %d; dataset %s; batch %d, output "
            "%dx%d uint8; %d worker(s); %d images timed per contestant (after a warm-up "
            "window); fastest sample of up to %d rounds (an undisturbed one if within "
            "3%%); `%s`.\n\n"
            "CPU %% = all processes of the contestant (daemon + client, DataLoader main + "
            "workers), 100 = one core; CPU ms/img = that CPU time per image; client CPU %% = "
            "the consuming Python process alone; peak RSS = daemon VmHWM (own = peak RssAnon+RssFile, shm = peak RssShmem, sampled every 0.1 s); other load = CPU "
            "used meanwhile by processes outside the contestant.\n\n"
            % (R["date"], R["machine"]["cpu_model"], os.cpu_count(), ds_desc, BATCH, SIZE,
               SIZE, N, epochs * n, a.rounds, R["command"]))
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(head + table + "\n")
    print()
    print(table)
    print()
    print("bench: wrote build/bench/results.json and build/bench/results.md (%.0f s)"
          % R["elapsed_s"])
    return 0


def set_priority(nice):
    """Lower our niceness (inherited by every contestant). With autogroup
    scheduling, nice only weighs against processes of the same session, so
    the session's autogroup gets the same value (sched(7))."""
    try:
        os.nice(nice)
    except OSError as exc:
        log("warning: cannot change niceness by %d: %s" % (nice, exc))
        return
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write("%d" % max(-20, min(19, nice)))
    except OSError:
        pass


def autogroup_nice():
    try:
        with open("/proc/self/autogroup") as f:
            return int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def command_line():
    env = os.environ.get("CUTMIXD_BENCH_ARGS", "")
    prefix = "CUTMIXD_BENCH_ARGS=%s " % shlex.quote(env) if env else ""
    extra = " ".join(shlex.quote(x) for x in sys.argv[1:])
    if extra or "MAKELEVEL" not in os.environ:
        return ("%s/usr/bin/python3 scripts/bench.py %s" % (prefix, extra)).rstrip()
    return ("%smake bench  (= scripts/deps.sh bench; make all; /usr/bin/python3 "
            "scripts/bench.py)" % prefix)


def proc_status_mem_total():
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def software_versions(results):
    v = {"python": platform.python_version()}
    try:
        import PIL
        v["pillow"] = PIL.__version__
    except ImportError:
        pass
    try:
        import numpy
        v["numpy"] = numpy.__version__
    except ImportError:
        pass
    dl = results.get("dataloader_train")
    if dl and dl.get("torch"):
        v["torch"] = dl["torch"]
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libjpeg62-turbo"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if out.returncode == 0:
            v["libjpeg62-turbo"] = out.stdout.strip()
    except OSError:
        pass
    return v


def main(argv=None):
    if argv is None:  # `CUTMIXD_BENCH_ARGS="--nice -10" make bench`
        argv = shlex.split(os.environ.get("CUTMIXD_BENCH_ARGS", "")) + sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="workers / threads for every contestant (default: os.cpu_count())")
    ap.add_argument("--images", type=int, default=2000,
                    help="at least this many images timed per contestant (whole epochs)")
    ap.add_argument("--epochs", type=int, default=0, help="timed epochs (overrides --images)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="run every contestant this many times (time budget permitting), "
                         "keep the fastest sample (default 3)")
    ap.add_argument("--time-budget", type=float, default=180.0,
                    help="seconds for all measurements after round 1: later rounds and "
                         "reruns of disturbed contestants only start if they end within "
                         "it (default 180)")
    ap.add_argument("--max-other-load", type=float, default=20.0,
                    help="a sample is disturbed when other processes used more than this "
                         "%% of one core during it (default 20)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="seconds in all that may be spent waiting for other load to "
                         "settle before measurements (default 30)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run every contestant at this niceness, autogroup included "
                         "(e.g. -10 as root on a shared machine: other users' jobs slow "
                         "down meanwhile; default 0 = unchanged)")
    ap.add_argument("--photo", action="store_true",
                    help="use generated photo-like JPEGs even if ../shared/imagenet-sample exists")
    ap.add_argument("--no-dataloader", action="store_true", help="skip the PyTorch contestants")
    ap.add_argument("--no-sources", action="store_true",
                    help="skip the train contestants on shards and on a pack")
    ap.add_argument("--photos", type=int, default=0,
                    help="use only the first N photos of the dataset (quick checks; "
                         "default 0 = all)")
    # internal modes
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--pipeline", help=argparse.SUPPRESS)
    ap.add_argument("--eval", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dataloader", choices=("train", "val", "deit"), help=argparse.SUPPRESS)
    ap.add_argument("--files", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.workers < 1 or a.rounds < 1 or a.images < 1 or a.epochs < 0 or a.photos < 0:
        ap.error("--workers, --rounds, --images must be >= 1 (--epochs, --photos >= 0)")
    if a.client:
        return run_client(a)
    if a.dataloader:
        return run_dataloader(a)
    return main_bench(a)


if __name__ == "__main__":
    sys.exit(main())
