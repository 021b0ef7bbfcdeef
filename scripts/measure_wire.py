#!/usr/bin/python3
"""Bytes per image on the wire, and loopback TCP throughput, for sizing a
cutmixd deployment (docs/DEPLOYMENT.md). Prints one JSON object.

    /usr/bin/python3 scripts/measure_wire.py       # 224x224 uint8, 1000 classes, batch 256
    /usr/bin/python3 scripts/measure_wire.py --config train.ini --pipeline train
    /usr/bin/python3 scripts/measure_wire.py --gpus 8 --img-per-gpu 3000 --out build/wire.json

What it does:

1. A daemon: bin/cutmixd with --config (its endpoint replaced by
   tcp://127.0.0.1:<free port>, --set overrides allowed), or, without
   --config, a generated dataset (--classes folders; --distinct photo-like
   JPEGs of about 500x375 linked into them) and a pipeline of --batch
   images of --size x --size uint8 with the usual augmentations.
2. Bytes per image: one batch is fetched with the Python client over TCP;
   the four frames (header 128 bytes, images, labels, metadata) are summed
   and divided by the batch size. ZMTP adds 9 bytes per large frame;
   TCP/IP/Ethernet add about 5.8 % at MTU 1500 and 0.9 % at MTU 9000
   (reported separately).
3. daemon_to_client: the real daemon streams batches to the Python client
   (window --window) over loopback TCP for --seconds: img/s and GB/s. On a
   small machine this is bounded by JPEG decoding, not by the wire.
4. wire_replay: a ROUTER in another process answers every request with the
   frames of the batch from step 2 (request_id/epoch/batch patched), so
   only ZeroMQ + TCP + the client are measured: the most img/s and GB/s one
   client can take in on this machine; both with the Python client and
   with bin/cutmixd-count (C).
5. sizing: --gpus x --img-per-gpu images per second x bytes per image, in
   GB/s and Gbit/s (with TCP/IP overhead), against common link speeds.

GB = 1e9 bytes. Internal mode: --replay-server ENDPOINT FRAMES_FILE.
"""

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client" / "python"))
sys.path.insert(0, str(REPO / "scripts"))

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
BIN = REPO / os.environ.get("OUT", ".") / "bin"
GB = 1e9
MSS_OVERHEAD = {  # link bytes per payload byte - 1: Ethernet 38 + IP 20 + TCP 32 (timestamps)
    1500: (1500 + 38) / (1500 - 52) - 1,
    9000: (9000 + 38) / (9000 - 52) - 1,
}
LINKS_GBIT = [10, 25, 40, 100, 200]


def log(msg):
    print("measure_wire: " + msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- the replay server (a separate process) ---------------------------------------

def replay_server(endpoint, frames_file):
    """Answer INFO with a huge epoch and every BATCH with the recorded
    frames (header fields echoed), until SIGTERM."""
    import zmq

    with open(frames_file, "rb") as f:
        head, bodies, digest = pickle.load(f)
    bodies = [zmq.Frame(b) for b in bodies]  # sent again and again without a copy
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 100000)
    sock.bind(endpoint)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *a: running.__setitem__(0, False))
    from cutmixd import _wire
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while running[0]:
        if not sock.poll(100):
            continue
        ident, frame = sock.recv_multipart()
        rq = _wire.decode_request(frame)
        if rq.type == _wire.BATCH:
            h = bytearray(head)
            struct.pack_into("<QIIII", h, 16, rq.request_id, rq.epoch, rq.rank, rq.world,
                             rq.batch)
            sock.send_multipart([ident, bytes(h)] + bodies, copy=False)
        else:
            info = {"protocol": 1, "batches_per_epoch": 100000, "max_window": 64,
                    "config_digest": digest.hex()}
            if rq.type == _wire.INFO and os.environ.get("REPLAY_EPOCH"):
                info["batches_per_epoch"] = int(os.environ["REPLAY_EPOCH"])
            hdr = _wire.encode_reply(rq.type, rq.request_id, epoch=rq.epoch, rank=rq.rank,
                                     world=rq.world, digest=digest)
            body = json.dumps(info).encode()
            hdr = bytearray(hdr)
            struct.pack_into("<Q", hdr, 104, len(body))
            sock.send_multipart([ident, bytes(hdr), body])
    sock.close(0)
    ctx.term()
    return 0


# -- daemon ---------------------------------------------------------------------------

def make_dataset(root, classes, distinct, per_class):
    import gen_dataset
    src = Path(root) / "_src"
    samples = gen_dataset.make_dataset(src, classes=1, per_class=distinct, photo=True, seed=3)
    files = [src / s.path for s in samples]
    data = Path(root) / "data"
    n = 0
    for k, name in enumerate(gen_dataset.class_names(classes)):
        d = data / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            os.link(files[n % len(files)], d / ("%04d.jpg" % i))
            n += 1
    return data


def synthetic_config(path, data, port, a):
    text = """[server]
endpoint = tcp://127.0.0.1:%d
workers = %d
seed = 1

[dataset]
root = %s

[pipeline.train]
batch_size = %d
size = %d
crop = random_resized
flip = 0.5
cutout_prob = 0.5
cutout_size = 56
cutmix_alpha = 1.0
mixup_alpha = 0.2
switch_prob = 0.5
label_smoothing = 0.1
""" % (port, a.workers, data, a.batch, a.size)
    Path(path).write_text(text)


def start_daemon(cmd, log_path, timeout=120):
    logf = open(log_path, "wb")
    p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        text = Path(log_path).read_text(errors="replace")
        if "ready:" in text:
            return p, text
        if p.poll() is not None:
            raise SystemExit("measure_wire: cutmixd exited with %d:\n%s" % (p.returncode, text))
        if time.monotonic() > deadline:
            p.kill()
            raise SystemExit("measure_wire: cutmixd not ready within %ds:\n%s" % (timeout, text))
        time.sleep(0.05)


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# -- measuring --------------------------------------------------------------------------

def stream(client, seconds, first_epoch=0):
    """Batches for `seconds` (after one warm-up window): img/s, bytes/s."""
    e = first_epoch
    warm = client.effective_window()
    images = nbytes = batches = 0
    t0 = None
    while True:
        for b in client.epoch(e):
            if warm > 0:
                warm -= 1
                if warm == 0:
                    t0 = time.monotonic()
                continue
            batches += 1
            images += len(b)
            nbytes += sum(len(f) for f in b.raw_frames)
            if time.monotonic() - t0 >= seconds:
                dt = time.monotonic() - t0
                return {"seconds": round(dt, 3), "batches": batches, "images": images,
                        "img_per_s": round(images / dt, 1),
                        "GB_per_s": round(nbytes / dt / GB, 3),
                        "Gbit_per_s": round(8 * nbytes / dt / GB, 2)}
        e += 1


def c_client(endpoint, window):
    """bin/cutmixd-count (no checksum: it only receives) over one epoch."""
    exe = BIN / "cutmixd-count"
    if not exe.exists():
        return None
    p = subprocess.run([str(exe), "-e", endpoint, "-p", "train", "-W", str(window),
                        "--no-checksum"],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        return {"error": p.stderr.strip()}
    kv = dict(ln.split(":", 1) for ln in p.stdout.splitlines() if ":" in ln)
    return {"batches": int(kv["batches"]), "images": int(kv["images"]),
            "seconds": float(kv["seconds"]), "img_per_s": float(kv["img_per_s"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="a cutmixd config (default: a generated one)")
    ap.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE override")
    ap.add_argument("--pipeline", default="train")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--distinct", type=int, default=64, help="distinct JPEGs generated")
    ap.add_argument("--per-class", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--img-per-gpu", type=float, default=3000.0)
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--replay-server", nargs=2, metavar=("ENDPOINT", "FRAMES"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.replay_server:
        return replay_server(*a.replay_server)

    import cutmixd
    import zmq

    # SIGTERM (e.g. from timeout(1)): clean up like an exception would.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="cutmixd-wire-"))
    procs = []
    try:
        port = free_port()
        endpoint = "tcp://127.0.0.1:%d" % port
        if a.config:
            cmd = [str(BIN / "cutmixd"), "-c", a.config, "--set",
                   "server.endpoint=%s" % endpoint]
            for s in a.set:
                cmd += ["--set", s]
            source = {"config": a.config, "set": a.set}
        else:
            log("generating a dataset: %d classes x %d images (%d distinct JPEGs)"
                % (a.classes, a.per_class, a.distinct))
            data = make_dataset(work, a.classes, a.distinct, a.per_class)
            cfg = work / "wire.ini"
            synthetic_config(cfg, data, port, a)
            cmd = [str(BIN / "cutmixd"), "-c", str(cfg)]
            for s in a.set:
                cmd += ["--set", s]
            source = {"generated": True, "classes": a.classes,
                      "images": a.classes * a.per_class, "batch_size": a.batch,
                      "size": a.size, "dtype": "uint8", "set": a.set}
        daemon, text = start_daemon(cmd, work / "cutmixd.log")
        procs.append(daemon)
        m = re.search(r"(\d+) workers", text)
        workers = int(m.group(1)) if m else None

        with cutmixd.Client(endpoint, pipeline=a.pipeline, window=a.window, timeout=120) as c:
            info = c.info()
            b = c.batch(0, 0)
            frames = [bytes(f) for f in b.raw_frames]
            B = len(b)
            sizes = [len(f) for f in frames]
            per_image = sum(sizes) / B
            zmtp = sum(9 if n > 255 else 2 for n in sizes)
            wire = {
                "batch_size": B, "image_shape": info.get("image_shape"),
                "dtype": info.get("dtype"), "num_classes": info.get("num_classes"),
                "meta_size": info.get("meta_size"),
                "frame_bytes": {"header": sizes[0], "images": sizes[1], "labels": sizes[2],
                                "meta": sizes[3]},
                "batch_bytes": sum(sizes),
                "bytes_per_image": round(per_image, 1),
                "bytes_per_image_parts": {
                    "images": sizes[1] / B, "labels": sizes[2] / B, "meta": sizes[3] / B,
                    "header": round(sizes[0] / B, 3), "zmtp_framing": round(zmtp / B, 3)},
                "link_bytes_per_image": {
                    "mtu_1500": round((per_image + zmtp / B) * (1 + MSS_OVERHEAD[1500]), 1),
                    "mtu_9000": round((per_image + zmtp / B) * (1 + MSS_OVERHEAD[9000]), 1)},
            }
            log("bytes per image: %.0f; streaming from the daemon for %gs"
                % (per_image, a.seconds))
            e2e = stream(c, a.seconds, first_epoch=1)
        e2e["workers"] = workers
        e2e_c = c_client(endpoint, a.window)
        stop(daemon)

        # Wire replay: the same frames from a process that does nothing else.
        frames_file = work / "frames.pickle"
        with open(frames_file, "wb") as f:
            pickle.dump((frames[0], frames[1:], bytes.fromhex(b.digest)), f)
        rport = free_port()
        rep_ep = "tcp://127.0.0.1:%d" % rport
        rp = subprocess.Popen([PYTHON, str(Path(__file__).resolve()), "--replay-server",
                               rep_ep, str(frames_file)], stdout=subprocess.PIPE)
        procs.append(rp)
        assert rp.stdout.readline().strip() == b"ready"
        log("streaming recorded batches from a replay server for %gs" % a.seconds)
        with cutmixd.Client(rep_ep, pipeline=a.pipeline, window=a.window, timeout=60) as c:
            replay = stream(c, a.seconds)
        stop(rp)
        # The C client over a bounded epoch of the replay server.
        n_c = max(8, replay["batches"])
        env = dict(os.environ, REPLAY_EPOCH=str(n_c))
        rp = subprocess.Popen([PYTHON, str(Path(__file__).resolve()), "--replay-server",
                               rep_ep, str(frames_file)], stdout=subprocess.PIPE, env=env)
        procs.append(rp)
        assert rp.stdout.readline().strip() == b"ready"
        replay_c = c_client(rep_ep, a.window)
        if replay_c and "img_per_s" in replay_c:
            replay_c["GB_per_s"] = round(replay_c["img_per_s"] * per_image / GB, 3)
        stop(rp)

        need = a.gpus * a.img_per_gpu
        need_bytes = need * per_image
        link = wire["link_bytes_per_image"]
        sizing = {
            "gpus": a.gpus, "img_per_gpu": a.img_per_gpu, "img_per_s": need,
            "payload_GB_per_s": round(need_bytes / GB, 3),
            "payload_Gbit_per_s": round(8 * need_bytes / GB, 2),
            "link_Gbit_per_s_mtu_1500": round(8 * need * link["mtu_1500"] / GB, 2),
            "link_Gbit_per_s_mtu_9000": round(8 * need * link["mtu_9000"] / GB, 2),
            "img_per_s_per_link_mtu_1500": {
                "%d_Gbit" % g: int(g * GB / 8 / wire["link_bytes_per_image"]["mtu_1500"])
                for g in LINKS_GBIT},
            "daemons_at_measured_rate": (round(need / e2e["img_per_s"], 1)
                                         if e2e["img_per_s"] else None),
        }
        out = {
            "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                     "python": platform.python_version(), "libzmq": zmq.zmq_version(),
                     "pyzmq": zmq.pyzmq_version()},
            "source": source, "pipeline": a.pipeline, "window": a.window,
            "wire": wire,
            "daemon_to_client": {"python": e2e, "c": e2e_c},
            "wire_replay": {"python": replay, "c": replay_c},
            "sizing": sizing,
            "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None
                                                               else sys.argv[1:])),
        }
        text = json.dumps(out, indent=2)
        print(text)
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(text + "\n")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
