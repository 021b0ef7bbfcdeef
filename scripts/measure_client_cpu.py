#!/usr/bin/python3
"""CPU of the consuming Python process per 1000 img/s received (issue 13's
client receive cost).

    scripts/measure_client_cpu.py [--endpoint E | --root DIR] [--seconds 20]
                                  [--batch-size 128] [--size 224] [--touch]
                                  [--write]

Starts bin/cutmixd on DIR (default: a generated photo-like dataset under a
temp folder; or streams from an already running --endpoint), receives
batches with cutmixd.Client for --seconds, and prints the process's CPU
time (getrusage: user + system) over the wall time, and that divided by
the received rate in thousands of images per second: "% of one core per
1000 img/s". --touch also reads a 1/16 strided sample of every image and
the labels (what scripts/bench.py's client does), so the figure includes
a minimal trainer's reading of the data; without it the figure is the
receive path alone (the frames are never copied: images, labels and meta
are numpy views on the ZeroMQ frames). --write also adds 1 in place to that
same 1/16 sample (a trainer normalising in place; through shared memory
those pages are copied on write and dropped again when the batch is
released). --profile prints the top functions
of the receive loop (cProfile).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "client", "python"))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import numpy as np  # noqa: E402

import cutmixd  # noqa: E402


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def start_daemon(root, tmp, a):
    ep = "ipc://%s/measure.sock" % tmp
    cfg = os.path.join(tmp, "measure.ini")
    with open(cfg, "w") as f:
        f.write("[server]\nendpoint = %s\nworkers = 0\nseed = 1\nbatch_cache_mb = %d\n\n"
                "[dataset]\nroot = %s\n\n"
                "[pipeline.train]\nbatch_size = %d\nsize = %d\ncrop = random_resized\n"
                "flip = 0.5\ncutmix_alpha = 1.0\nmixup_alpha = 0.2\n"
                % (ep, a.cache_mb, root, a.batch_size, a.size))
    log = open(os.path.join(tmp, "measure.log"), "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    p = subprocess.Popen([os.path.join(REPO, "bin", "cutmixd"), "-c", cfg], stdout=log,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(os.path.join(tmp, "measure.log"), "rb") as f:
            if b"ready:" in f.read():
                return p, ep
        if p.poll() is not None:
            raise SystemExit("measure: cutmixd exited %d (log: %s)" % (p.returncode,
                                                                        log.name))
        time.sleep(0.05)
    p.kill()
    raise SystemExit("measure: cutmixd not ready within 60 s")


def daemon_cpu_s(pid):
    """utime + stime of a process (fields 14 and 15 of /proc/PID/stat)."""
    if pid is None:
        return 0.0
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def receive(ep, a, pid=None):
    c = cutmixd.Client(ep, window=a.window, timeout=120, resend_timeout=30,
                       shm={"auto": "auto", "off": False}[a.shm])
    n = c.batches_per_epoch()
    for b in c.epoch(0, stop=n if a.cache_mb else min(n, c.effective_window())):  # warm-up
        pass
    images = batches = 0
    check = 0
    t0, c0, f0, d0 = time.monotonic(), cpu_s(), faults(), daemon_cpu_s(pid)
    epoch = 0 if a.cache_mb else 1
    while time.monotonic() - t0 < a.seconds:
        for b in c.epoch(epoch):
            if a.touch:
                check += int(b.images[:, ::4, ::4, :].sum(dtype=np.uint64))
                check += int(b.labels.sum(dtype=np.float64))
            if a.write:
                b.images[:, ::4, ::4, :] += 1
            images += len(b)
            batches += 1
            if time.monotonic() - t0 >= a.seconds:
                break
        if not a.cache_mb:
            epoch += 1
    t1, c1, f1, d1 = time.monotonic(), cpu_s(), faults(), daemon_cpu_s(pid)
    c.close()
    wall, cpu = t1 - t0, c1 - c0
    rate = images / wall
    return {"images": images, "batches": batches, "seconds": round(wall, 3),
            "img_per_s": round(rate, 1), "client_cpu_percent": round(100 * cpu / wall, 2),
            "percent_of_core_per_1000_img_s": round(100 * cpu / wall / (rate / 1000), 2),
            "minor_faults_per_batch": round((f1 - f0) / max(batches, 1)),
            "daemon_cpu_ms_per_image": round(1000 * (d1 - d0) / max(images, 1), 4),
            "shm": a.shm, "cache_mb": a.cache_mb,
            "touch": a.touch, "write": a.write, "reuse": a.reuse, "batch_size": a.batch_size,
            "size": a.size}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--endpoint", help="a running daemon (its 'train' pipeline)")
    ap.add_argument("--root", help="dataset for the daemon this script starts "
                    "(default: generated photo-like images)")
    ap.add_argument("--images", type=int, default=400, help="generated images")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured streaming time")
    ap.add_argument("--batch-size", type=int, default=128, help="batch size")
    ap.add_argument("--size", type=int, default=224, help="output image size")
    ap.add_argument("--window", type=int, default=8, help="client window")
    ap.add_argument("--touch", action="store_true", help="read 1/16 of every image too")
    ap.add_argument("--write", action="store_true",
                    help="add 1 in place to 1/16 of every image too")
    ap.add_argument("--mallopt", default="", help="comma list of M_NAME=value for glibc's "
                    "mallopt() in this process before streaming (M_MMAP_THRESHOLD=-3, "
                    "M_TRIM_THRESHOLD=-1, M_ARENA_MAX=-8)")
    ap.add_argument("--reuse", action="store_true",
                    help="cutmixd.reuse_receive_buffers() first (malloc keeps batch memory)")
    ap.add_argument("--profile", action="store_true", help="cProfile the receive loop")
    ap.add_argument("--shm", choices=("auto", "off"), default="auto",
                    help="shared memory with a local daemon (Client(shm=...)), or copies")
    ap.add_argument("--cache-mb", type=int, default=0,
                    help="daemon batch cache; the loop then repeats epoch 0 (cache hits)")
    a = ap.parse_args(argv)
    codes = {"M_TRIM_THRESHOLD": -1, "M_MMAP_THRESHOLD": -3, "M_ARENA_MAX": -8}
    if a.mallopt:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        for item in a.mallopt.split(","):
            k, v = item.split("=")
            if libc.mallopt(codes[k], int(v)) != 1:
                raise SystemExit("measure: mallopt(%s, %s) failed" % (k, v))
    if a.reuse and not cutmixd.reuse_receive_buffers():
        raise SystemExit("measure: reuse_receive_buffers() not available here")
    proc = None
    with tempfile.TemporaryDirectory(prefix="cmxmeasure") as tmp:
        ep = a.endpoint
        try:
            if ep is None:
                root = a.root
                if root is None:
                    import gen_dataset
                    root = os.path.join(tmp, "data")
                    gen_dataset.make_dataset(root, classes=10, per_class=max(1, a.images // 10),
                                             photo=True, seed=5)
                proc, ep = start_daemon(root, tmp, a)
            if a.profile:
                import cProfile
                import pstats
                prof = cProfile.Profile()
                res = prof.runcall(receive, ep, a, proc and proc.pid)
                pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
            else:
                res = receive(ep, a, proc and proc.pid)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(15)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
