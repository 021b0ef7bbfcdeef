#!/usr/bin/python3
"""`make demo`: cutmixd end to end on a generated dataset.

1. generates ~300 JPEGs of 10 classes and mixed sizes into build/demo-data
   (once; kept for the next run);
2. starts bin/cutmixd -c config/demo.ini on a private ipc:// socket and waits
   for its 'ready:' line;
3. streams one epoch of the `train` pipeline with a progress bar, then prints
   the throughput and how many samples were CutMix-ed, MixUp-ed or replaced;
4. writes build/demo/preview.png: one augmented batch as a grid, each tile
   captioned with its class, its partner's class, the operation and lambda,
   and the per-sample ops (RandAugment etc.) with their magnitudes;
5. stops the daemon with SIGTERM.
"""

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client" / "python"))
sys.path.insert(0, str(REPO / "scripts"))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

import cutmixd  # noqa: E402
import gen_dataset  # noqa: E402

BIN = REPO / "bin" / "cutmixd"
CONFIG = REPO / "config" / "demo.ini"
DATA = REPO / "build" / "demo-data"
OUT = REPO / "build" / "demo" / "preview.png"

CLASSES, PER_CLASS, SEED = 10, 30, 0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def say(msg):
    print("demo: " + msg, flush=True)


def die(msg, log=None):
    print("demo: error: " + msg, file=sys.stderr)
    if log:
        print("--- cutmixd log ---", file=sys.stderr)
        print("\n".join(log), file=sys.stderr)
        print("-------------------", file=sys.stderr)
    sys.exit(1)


# -- 1. dataset -----------------------------------------------------------------

def ensure_dataset():
    stamp = DATA / ".complete"
    want = "classes=%d per_class=%d seed=%d sizes=random\n" % (CLASSES, PER_CLASS, SEED)
    if stamp.is_file() and stamp.read_text() == want:
        n = sum(1 for _ in DATA.glob("*/*.jpg"))
        say("dataset: %d images already in %s" % (n, DATA.relative_to(REPO)))
        return
    if DATA.exists():
        shutil.rmtree(DATA)
    t0 = time.monotonic()
    samples = gen_dataset.make_dataset(DATA, classes=CLASSES, per_class=PER_CLASS,
                                       sizes="random", subsampling="mixed",
                                       gray_fraction=0.1, quality=90, seed=SEED)
    stamp.write_text(want)
    say("dataset: generated %d images in %s (%.1fs)"
        % (len(samples), DATA.relative_to(REPO), time.monotonic() - t0))


# -- 2. daemon --------------------------------------------------------------------

class DaemonProcess:
    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.log = []
        self.ready = threading.Event()
        cmd = [str(BIN), "-c", str(CONFIG), "--set", "server.endpoint=" + endpoint]
        say("starting: " + " ".join(os.path.relpath(c, REPO) if c.startswith(str(REPO)) else c
                                   for c in cmd))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=str(REPO))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            if "ready:" in line:
                self.ready.set()

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                self.reader.join(1)
                die("cutmixd exited with status %d before it was ready" % self.proc.returncode,
                    self.log)
            if time.monotonic() > deadline:
                self.kill()
                die("cutmixd did not log 'ready:' within %gs" % timeout, self.log)
        say("daemon ready (pid %d): %s" % (self.proc.pid,
                                            next(ln for ln in self.log if "ready:" in ln)))

    def stop(self):
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            die("cutmixd did not stop within %gs of SIGTERM" % STOP_TIMEOUT, self.log)
        self.reader.join(1)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- 3. one epoch ---------------------------------------------------------------

class Progress:
    def __init__(self, total, width=30):
        self.total, self.width = total, width
        self.tty = sys.stdout.isatty()
        self.last_pct = -1

    def update(self, done, images, elapsed):
        rate = images / elapsed if elapsed > 0 else 0.0
        fill = int(self.width * done / max(self.total, 1))
        line = "  [%s%s] %*d/%d batches  %8.0f img/s" % (
            "#" * fill, "-" * (self.width - fill), len(str(self.total)), done, self.total, rate)
        if self.tty:
            sys.stdout.write("\r" + line)
            if done == self.total:
                sys.stdout.write("\n")
            sys.stdout.flush()
        else:  # a log file: a few lines, not hundreds of \r updates
            pct = 100 * done // max(self.total, 1)
            if done == self.total or pct // 25 > self.last_pct // 25:
                print(line, flush=True)
                self.last_pct = pct


def stream_epoch(client, epoch):
    n = client.batches_per_epoch()
    bar = Progress(n)
    counts = dict(images=0, cutmix=0, mixup=0, replaced=0, padded=0)
    preview = None
    t0 = time.monotonic()
    bar.update(0, 0, 0.0)
    for b in client.epoch(epoch):
        m = b.meta
        counts["images"] += len(b)
        counts["cutmix"] += int((m["op"] == cutmixd.OP_CUTMIX).sum())
        counts["mixup"] += int((m["op"] == cutmixd.OP_MIXUP).sum())
        counts["replaced"] += int((m["status"] == cutmixd.SAMPLE_REPLACED).sum())
        counts["padded"] += int(m["pad"].sum())
        if preview is None:
            preview = b  # the first batch goes into the preview
        bar.update(b.index + 1, counts["images"], time.monotonic() - t0)
    counts["seconds"] = time.monotonic() - t0
    return counts, preview


# -- 4. preview -----------------------------------------------------------------

def to_hwc_uint8(batch):
    x = batch.images
    if batch.layout == "nchw":
        x = x.transpose(0, 2, 3, 1)
    if x.dtype != np.uint8:  # normalised float: stretch each tile back to 0..255
        lo = x.min(axis=(1, 2, 3), keepdims=True)
        hi = x.max(axis=(1, 2, 3), keepdims=True)
        x = np.clip((x - lo) / np.maximum(hi - lo, 1e-6) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return x


def fit(draw, font, text, width):
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def ops_caption(m):
    """The per-sample ops (auto_augment, ColorJitter) and erase boxes of a
    protocol 2 record, short: "Rotate-12 Color+.3 er1"."""
    parts = []
    for o in m["ops"][: m["n_ops"]]:
        name = cutmixd.OP_TABLE.get(int(o["op"]), "op%d" % o["op"])
        mag = float(o["magnitude"])
        parts.append(name if mag == 0 else "%s%+.2g" % (name, mag))
    if m["n_erase"]:
        parts.append("erase%d" % m["n_erase"])
    return " ".join(parts) or "no ops"


def write_preview(batch, class_names, path, max_tiles=32, cols=8):
    imgs = to_hwc_uint8(batch)[:max_tiles]
    meta = batch.meta[:max_tiles]
    n = len(imgs)
    th, tw = imgs.shape[1], imgs.shape[2]
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    box = probe.textbbox((0, 0), "Ag|", font=font)
    lh = box[3] - box[1] + 3
    has_ops = "n_ops" in (meta.dtype.names or ())  # protocol 2 records
    cap = (4 if has_ops else 3) * lh + 4
    pad = 4
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    grid = Image.new("RGB", (cols * (tw + pad) + pad, rows * (th + cap + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        r, c = divmod(i, cols)
        x, y = pad + c * (tw + pad), pad + r * (th + cap + pad)
        grid.paste(Image.fromarray(np.ascontiguousarray(imgs[i]), "RGB"), (x, y))
        m = meta[i]
        own = class_names[m["label"]] if 0 <= m["label"] < len(class_names) else str(m["label"])
        if m["partner"] >= 0 and 0 <= m["partner_label"] < len(class_names):
            partner = class_names[m["partner_label"]]
        else:
            partner = "-"
        op = cutmixd.OP_NAMES.get(int(m["op"]), "op%d" % m["op"])
        flags = (" flip" if m["flip"] else "") + (" repl" if m["status"] else "")
        lines = [own, "+ " + partner, "%s lam=%.2f%s" % (op, m["lam"], flags)]
        colours = [(235, 235, 235), (170, 200, 255), (255, 210, 120)]
        if has_ops:
            lines.append(ops_caption(m))
            colours.append((160, 235, 160))
        for k, (text, col) in enumerate(zip(lines, colours)):
            draw.text((x + 1, y + th + 2 + k * lh), fit(draw, font, text, tw - 2), fill=col,
                      font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return n


# -- main -------------------------------------------------------------------------

def main():
    if not BIN.is_file():
        die("%s not found: run `make` first" % BIN.relative_to(REPO))
    if not CONFIG.is_file():
        die("%s not found" % CONFIG.relative_to(REPO))
    ensure_dataset()
    tmp = tempfile.mkdtemp(prefix="cutmixd-demo-")
    daemon = DaemonProcess("ipc://%s/cutmixd.sock" % tmp)
    try:
        daemon.wait_ready(READY_TIMEOUT)
        with cutmixd.Client(daemon.endpoint, pipeline="train", window=8, timeout=60) as c:
            info = c.info()
            say("pipeline train: %d images, %d classes, batch %d, %s %s %s, %d batches/epoch"
                % (info["dataset_size"], info["num_classes"], info["batch_size"],
                   "x".join(map(str, info["image_shape"])), info["dtype"], info["layout"],
                   info["batches_per_epoch"]))
            counts, preview = stream_epoch(c, 0)
            stats = c.stats()
        secs = counts["seconds"]
        n = counts["images"]
        say("epoch 0: %d images in %.2fs = %.0f img/s" % (n, secs, n / secs if secs else 0.0))
        say("  cutmix %d, mixup %d, unmixed %d, replaced (bad files) %d, padded %d"
            % (counts["cutmix"], counts["mixup"], n - counts["cutmix"] - counts["mixup"],
               counts["replaced"], counts["padded"]))
        say("  daemon: %d requests, %d decode errors, rss %.1f MiB"
            % (stats.get("requests", 0), stats.get("decode_errors", 0),
               stats.get("rss_bytes", 0) / 2**20))
        if preview is None:
            die("the epoch had no batches", daemon.log)
        tiles = write_preview(preview, info["class_names"], OUT)
    except cutmixd.Error as exc:
        daemon.kill()
        die(str(exc), daemon.log)
    except KeyboardInterrupt:
        daemon.kill()
        die("interrupted")
    finally:
        rc = daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if rc != 0:
        die("cutmixd exited with status %d after SIGTERM" % rc, daemon.log)
    say("daemon stopped (exit 0)")
    say("preview of batch %d (%d tiles): %s" % (preview.index, tiles, OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
