#!/usr/bin/python3
"""Soak test of the real daemon (`make soak`; not part of `make test`).

For --seconds (default 600) bin/cutmixd serves a generated dataset on an
ipc:// socket in a temporary folder while

  * client A (the Python package) streams epoch after epoch of "train";
  * client B (bin/cutmixd-count) streams epoch after epoch of "train",
    one process per epoch (so it also reconnects once per epoch);
  * a churn client connects every --churn-every s, takes 3 batches of
    "eval" (or of "train", alternately) and leaves;
  * the daemon gets a SIGHUP (reload) every --reload-every s;
  * the daemon's RSS (VmRSS), open descriptors (/proc/PID/fd) and threads
    are sampled every --sample-every s (10) into soak.csv.

It fails (exit 1) unless, at the end:

  * errors == 0: no exception in a Python client, every cutmixd-count run
    exited 0, the daemon logged nothing at priority err or worse (<0>..<3>)
    and it is still alive, then exits 0 within 15 s of SIGTERM;
  * RSS and descriptors are flat. The samples taken after the warm-up
    (max(30 s, 10 % of the run)) are split into a first and a second half
    (at least 2 samples each). Flat means
        max RSS(second half) <= max RSS(first half) * 1.05 + 4 MiB
        max fds(second half) <= max fds(first half) + 2
    (the margin on fds covers the churn client's connection and
    cutmixd-count's reconnect being caught by a sample);
  * both streaming clients finished at least one epoch and every reload
    was logged (one "reload:" line per SIGHUP, or fewer when the daemon
    coalesces SIGHUPs that arrive during a reload; at least one).

soak.csv (one row per sample) and summary.txt / summary.json go to --out
(default build/soak). Every loop is bounded by the deadline; only the
processes this script started are signalled, by PID.
"""

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import shutil
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client" / "python"))
sys.path.insert(0, str(REPO / "scripts"))

import cutmixd  # noqa: E402
import gen_dataset  # noqa: E402

MiB = 1024 * 1024


def proc_sample(pid):
    rss = threads = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return rss, fds, threads


def config(endpoint, root, workers):
    return "\n".join([
        "[server]",
        "endpoint = %s" % endpoint,
        "workers = %d" % workers,
        "seed = 1234",
        "",
        "[dataset]",
        "root = %s" % root,
        "",
        "[pipeline.train]",
        "batch_size = 16",
        "size = 96",
        "crop = random_resized",
        "flip = 0.5",
        "cutout_holes = 1",
        "cutout_size = 8-24",
        "cutmix_alpha = 1.0",
        "mixup_alpha = 0.2",
        "switch_prob = 0.5",
        "prob = 0.8",
        "label_smoothing = 0.1",
        "",
        "[pipeline.eval]",
        "batch_size = 8",
        "size = 64",
        "eval = true",
        "crop = center",
        "",
    ])


class Soak:
    def __init__(self, args):
        self.args = args
        self.deadline = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.errors = []          # (time, what)
        self.counts = {"a_batches": 0, "a_epochs": 0, "b_batches": 0, "b_epochs": 0,
                       "churn_clients": 0, "churn_batches": 0, "sighups": 0}

    def error(self, what):
        with self.lock:
            self.errors.append((round(time.monotonic() - self.t0, 1), what))
        print("soak: ERROR: %s" % what, file=sys.stderr, flush=True)

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    # -- clients -----------------------------------------------------------------

    def client_a(self):
        """Python client: whole epochs of "train", one after the other."""
        try:
            with cutmixd.Client(self.endpoint, pipeline="train", timeout=30.0) as c:
                e = 0
                while not self.stop.is_set():
                    for b in c.epoch(e):
                        if b.images.shape[1:] != (96, 96, 3) or not len(b):
                            self.error("client A: batch %d of epoch %d has shape %s"
                                       % (b.index, e, b.images.shape))
                        self.add("a_batches")
                        if self.stop.wait(self.args.pause):
                            return
                    self.add("a_epochs")
                    e += 1
        except Exception as exc:  # noqa: BLE001 (counted and reported)
            self.error("client A: %s: %s" % (type(exc).__name__, exc))

    def client_b(self):
        """cutmixd-count: one process per epoch of "train"."""
        e = 0
        while not self.stop.is_set():
            cmd = [str(self.args.count_bin), "-e", self.endpoint, "-p", "train",
                   "-E", str(e), "-t", "30000", "--sleep-ms", str(int(self.args.pause * 1000))]
            try:
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)
            except OSError as exc:
                self.error("client B: cannot start %s: %s" % (cmd[0], exc))
                return
            left = max(1.0, self.deadline + 60 - time.monotonic())
            try:
                out, _ = p.communicate(timeout=left)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
                self.error("client B: epoch %d did not finish in %.0f s" % (e, left))
                return
            if p.returncode != 0:
                self.error("client B: epoch %d: exit %d: %s" % (e, p.returncode, out.strip()[-500:]))
                return
            m = re.search(r"^batches: (\d+)$", out, re.M)
            if not m:
                self.error("client B: no batch count in its output: %r" % out[-300:])
                return
            self.add("b_batches", int(m.group(1)))
            self.add("b_epochs")
            e += 1

    def churn(self):
        """A client that connects, takes 3 batches and leaves, every
        churn_every seconds."""
        k = 0
        while not self.stop.wait(self.args.churn_every):
            pipe = "eval" if k % 2 else "train"
            try:
                with cutmixd.Client(self.endpoint, pipeline=pipe, timeout=30.0) as c:
                    for i in range(3):
                        c.batch(k, i)
                        self.add("churn_batches")
                self.add("churn_clients")
            except Exception as exc:  # noqa: BLE001
                self.error("churn client %d (%s): %s: %s" % (k, pipe, type(exc).__name__, exc))
            k += 1

    # -- the run -------------------------------------------------------------------

    def run(self):
        a = self.args
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="cmxsoak", dir="/tmp"))
        root = tmp / "data"
        gen_dataset.make_dataset(root, classes=4, per_class=40, sizes="random",
                                 subsampling="mixed", seed=11)
        self.endpoint = "ipc://%s" % (tmp / "soak.sock")
        cfg = tmp / "soak.ini"
        cfg.write_text(config(self.endpoint, root, a.workers))
        log_path = out / "cutmixd.log"
        log = open(log_path, "wb")
        d = subprocess.Popen([str(a.bin), "-c", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=str(tmp))
        self.t0 = time.monotonic()
        while "ready:" not in log_path.read_text(errors="replace"):
            if d.poll() is not None or time.monotonic() - self.t0 > 20:
                print("soak: the daemon did not get ready:\n%s" % log_path.read_text(),
                      file=sys.stderr)
                if d.poll() is None:
                    d.kill()
                return 1
            time.sleep(0.05)
        self.t0 = time.monotonic()
        self.deadline = self.t0 + a.seconds
        threads = [threading.Thread(target=f, daemon=True, name=f.__name__)
                   for f in (self.client_a, self.client_b, self.churn)]
        for t in threads:
            t.start()
        rows = []
        next_sample, next_hup = self.t0, self.t0 + a.reload_every
        csv_f = open(out / "soak.csv", "w", newline="")
        w = csv.writer(csv_f)
        w.writerow(["t_s", "rss_bytes", "fds", "threads", "a_batches", "b_batches",
                    "churn_clients", "sighups", "errors"])
        while True:
            now = time.monotonic()
            if d.poll() is not None:
                self.error("the daemon exited with status %d" % d.returncode)
                break
            if now >= next_hup and now < self.deadline:
                d.send_signal(signal.SIGHUP)
                self.add("sighups")
                next_hup += a.reload_every
            if now >= next_sample:
                rss, fds, nthreads = proc_sample(d.pid)
                with self.lock:
                    c = dict(self.counts)
                    nerr = len(self.errors)
                row = [round(now - self.t0, 1), rss, fds, nthreads, c["a_batches"],
                       c["b_batches"], c["churn_clients"], c["sighups"], nerr]
                rows.append(row)
                w.writerow(row)
                csv_f.flush()
                print("soak: t=%5.0fs rss=%.1f MiB fds=%d threads=%d A=%d B=%d churn=%d hup=%d "
                      "errors=%d" % (now - self.t0, rss / MiB, fds, nthreads, c["a_batches"],
                                     c["b_batches"], c["churn_clients"], c["sighups"], nerr),
                      flush=True)
                if now >= self.deadline:
                    break
                next_sample += a.sample_every
            time.sleep(0.05)
        self.stop.set()
        for t in threads:
            t.join(timeout=90)
            if t.is_alive():
                self.error("%s did not stop within 90 s of the end" % t.name)
        csv_f.close()
        rc_stop = None
        if d.poll() is None:
            d.send_signal(signal.SIGTERM)
            try:
                rc_stop = d.wait(15)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()
                self.error("the daemon did not exit within 15 s of SIGTERM")
            if rc_stop not in (None, 0):
                self.error("the daemon exited with status %d after SIGTERM" % rc_stop)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
        text = log_path.read_text(errors="replace")
        bad_lines = [ln for ln in text.splitlines() if re.match(r"<[0-3]>", ln)]
        for ln in bad_lines[:20]:
            self.error("daemon log: %s" % ln)
        reloads = len(re.findall(r"^<\d>reload: config digest", text, re.M))
        return self.report(rows, reloads, out, text)

    def report(self, rows, reloads, out, log_text):
        a = self.args
        warm = max(30.0, 0.1 * a.seconds)
        post = [r for r in rows if r[0] >= warm]
        h = len(post) // 2
        first, second = post[:h], post[h:]
        verdicts = []
        ok = True
        if len(first) < 2 or len(second) < 2:
            verdicts.append("too few samples after the warm-up (%d; need 4): run longer"
                            % len(post))
            ok = False
            rss_ok = fds_ok = False
        else:
            r1, r2 = max(r[1] for r in first), max(r[1] for r in second)
            f1, f2 = max(r[2] for r in first), max(r[2] for r in second)
            rss_ok = r2 <= r1 * 1.05 + 4 * MiB
            fds_ok = f2 <= f1 + 2
            verdicts.append("RSS %s: max %.1f MiB in the first half, %.1f MiB in the second "
                            "(limit %.1f)" % ("flat" if rss_ok else "GROWS", r1 / MiB, r2 / MiB,
                                              (r1 * 1.05 + 4 * MiB) / MiB))
            verdicts.append("fds %s: max %d in the first half, %d in the second (limit %d)"
                            % ("flat" if fds_ok else "GROW", f1, f2, f1 + 2))
            ok = ok and rss_ok and fds_ok
        c = self.counts
        if c["a_epochs"] < 1 or c["b_epochs"] < 1:
            verdicts.append("a streaming client finished no epoch (A %d, B %d)"
                            % (c["a_epochs"], c["b_epochs"]))
            ok = False
        if c["sighups"] and not (1 <= reloads <= c["sighups"]):
            verdicts.append("%d SIGHUPs but %d reloads logged" % (c["sighups"], reloads))
            ok = False
        if self.errors:
            ok = False
        summary = {
            "seconds": a.seconds, "samples": len(rows), "warmup_s": warm,
            "rss_min_mib": round(min(r[1] for r in rows) / MiB, 1) if rows else None,
            "rss_max_mib": round(max(r[1] for r in rows) / MiB, 1) if rows else None,
            "fds_min": min(r[2] for r in rows) if rows else None,
            "fds_max": max(r[2] for r in rows) if rows else None,
            "threads_max": max(r[3] for r in rows) if rows else None,
            "reloads_logged": reloads, "errors": len(self.errors),
            "error_list": self.errors[:50], "verdicts": verdicts, "ok": ok,
        }
        summary.update(c)
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        lines = [
            "cutmixd soak: %d s, %d samples every %g s (warm-up %.0f s)"
            % (a.seconds, len(rows), a.sample_every, warm),
            "RSS %.1f-%.1f MiB, fds %s-%s, threads max %s"
            % (summary["rss_min_mib"] or 0, summary["rss_max_mib"] or 0, summary["fds_min"],
               summary["fds_max"], summary["threads_max"]),
            "client A (python): %d batches, %d epochs; client B (cutmixd-count): %d batches, "
            "%d epochs; churn: %d clients, %d batches"
            % (c["a_batches"], c["a_epochs"], c["b_batches"], c["b_epochs"],
               c["churn_clients"], c["churn_batches"]),
            "SIGHUPs %d, reloads logged %d, errors %d" % (c["sighups"], reloads, len(self.errors)),
        ] + verdicts + ["%s: %s" % e for e in self.errors[:20]] + [
            "result: %s" % ("PASS" if ok else "FAIL")]
        (out / "summary.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--sample-every", type=float, default=10)
    ap.add_argument("--reload-every", type=float, default=15)
    ap.add_argument("--churn-every", type=float, default=5)
    ap.add_argument("--pause", type=float, default=0.05,
                    help="seconds each streaming client waits after a batch (0.01)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bin", default=os.environ.get("CUTMIXD_BIN", str(REPO / "bin" / "cutmixd")))
    ap.add_argument("--count-bin", default=os.environ.get("CUTMIXD_COUNT_BIN",
                                                          str(REPO / "bin" / "cutmixd-count")))
    ap.add_argument("--out", default=str(REPO / "build" / "soak"))
    args = ap.parse_args(argv)
    for p in (args.bin, args.count_bin):
        if not os.access(p, os.X_OK):
            print("soak: %s is missing: run `make` first" % p, file=sys.stderr)
            return 2
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
