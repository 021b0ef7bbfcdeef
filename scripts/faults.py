#!/usr/bin/python3
"""Minor page faults per batch in the daemon and in the receiving client.

    /usr/bin/python3 scripts/faults.py [--workers N] [--warmup B] [--batches B]
                                       [--pipeline train|val] [--photo]

Starts bin/cutmixd with the bench's four pipelines (train, val, train_nodct, deit) (scripts/bench.py,
the same dataset choice: ../shared/imagenet-sample if present, else generated
photos), consumes --warmup batches (default 12: the buffer pool and every
worker's scratch reach their working size), then reads the daemon's minflt
(/proc/PID/stat field 10) and the client's own (getrusage) around --batches
more (default 24) and prints faults per batch. The hot path should fault in
nothing: a batch buffer that was not recycled costs its size / 4 KiB faults
(128 x 224 x 224 x 3 = 4704 faults).
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def minflt(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=12)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--pipeline", default="train",
                    choices=("train", "val", "train_nodct", "deit"))
    ap.add_argument("--photo", action="store_true")
    ap.add_argument("--bin", help="another cutmixd binary (A/B of builds)")
    a = ap.parse_args()
    if a.bin:
        bench.BIN = os.path.dirname(os.path.abspath(a.bin))
    out_dir = os.path.join(bench.REPO, "build", "bench")
    os.makedirs(out_dir, exist_ok=True)
    root, manifest, rows, desc = bench.prepare_dataset(out_dir, a.photo)
    sock_dir = tempfile.mkdtemp(prefix="cutmixd-faults-")
    # the pipelines of the bench's files daemon (build/bench/cutmixd-w2.ini)
    pipelines = {"train": bench.TRAIN_KEYS, "val": bench.VAL_KEYS,
                 "train_nodct": dict(bench.TRAIN_KEYS, dct_scale="false"),
                 "deit": bench.DEIT_KEYS}
    d = bench.Daemon("cutmixd-faults", a.workers, root, manifest, out_dir, sock_dir,
                     pipelines).start()
    try:
        sys.path.insert(0, os.path.join(bench.REPO, "client", "python"))
        import cutmixd
        c = cutmixd.Client(d.endpoint, pipeline=a.pipeline, window=bench.CLIENT_WINDOW,
                           eval=a.pipeline == "val", timeout=120.0)
        it = (b for e in range(1000) for b in c.epoch(e))
        f0 = minflt(d.pid)
        for _ in range(a.warmup):
            b = next(it)
            bench.touch(b.images, b.labels)
        f1, c1, t1 = minflt(d.pid), resource.getrusage(resource.RUSAGE_SELF).ru_minflt, \
            time.monotonic()
        cpu1, n = bench.proc_cpu_s(d.pid), 0
        for _ in range(a.batches):
            b = next(it)
            bench.touch(b.images, b.labels)
            n += len(b)
        cpu2 = bench.proc_cpu_s(d.pid)
        f2, c2, t2 = minflt(d.pid), resource.getrusage(resource.RUSAGE_SELF).ru_minflt, \
            time.monotonic()
        c.close()
        rss = bench.proc_status_kib(d.pid, "VmHWM")
    finally:
        d.stop()
    print(json.dumps({
        "dataset": desc, "pipeline": a.pipeline, "workers": a.workers,
        "warmup_batches": a.warmup, "batches": a.batches,
        "daemon_faults_warmup_per_batch": (f1 - f0) / a.warmup,
        "daemon_faults_per_batch": (f2 - f1) / a.batches,
        "client_faults_per_batch": (c2 - c1) / a.batches,
        "daemon_peak_rss_mib": rss / 1024.0,
        "daemon_cpu_ms_per_image": 1000.0 * (cpu2 - cpu1) / n, "seconds": t2 - t1}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
