"""The one fake daemon of the Python tests: a ROUTER thread that speaks
just enough of the protocol (INFO, STATS, BATCH with known pixels, labels
and metadata written field by field at proto/wire.h's offsets) for client
tests that need no real daemon: reordering, flow control, errors, delays,
bad sizes, protocol versions, CURVE. Used by test_client_fake.py and, as
netns.TinyFake, by test_multi.py."""

import json
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

_PY = str(Path(__file__).resolve().parents[2] / "client" / "python")
if _PY not in sys.path:
    sys.path.insert(0, _PY)

from cutmixd import _wire  # noqa: E402


class FakeDaemon(threading.Thread):
    """A ROUTER that speaks just enough of the protocol.

    Requests are collected until none arrived for `settle` seconds, then
    answered in reverse order (so the client must reorder). Records the
    largest number of outstanding requests per client it ever saw."""

    def __init__(self, endpoint, n_batches=6, B=3, H=4, W=5, K=4, version=1,
                 max_window=None, errors=None, delays=None, bad_sizes=False, settle=0.02,
                 reorder=True, mark=True, digest=bytes(range(32)), curve_secret=None):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.n_batches, self.B, self.H, self.W, self.K = n_batches, B, H, W, K
        self.version = version
        self.max_window = max_window
        self.errors = errors or {}   # (epoch, batch) -> (status, message)
        self.delays = delays or {}   # (epoch, batch) -> seconds (only the first time)
        self.bad_sizes = bad_sizes
        self.settle = settle
        self.requests = []           # decoded requests, in arrival order
        self.max_outstanding = 0
        self._outstanding = {}
        self._halt = threading.Event()
        self._ready = threading.Event()
        self._delayed = []           # (due time, identity, request)
        self.digest = digest
        self.reorder = reorder       # False: answer each request at once
        self.mark = mark             # pixel [i, 0, 0, 0] = i (else all epoch*16+batch)
        self.curve_secret = curve_secret  # Z85: a CURVE server
        self.batches = 0             # batch replies sent

    def __enter__(self):
        self.start()
        assert self._ready.wait(5), "fake daemon did not start"
        return self

    def __exit__(self, *exc):
        self._halt.set()
        self.join(5)

    def run(self):
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve_secret:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve_secret.encode())
        sock.bind(self.endpoint)
        self._ready.set()
        pending = []
        try:
            while not self._halt.is_set():
                if sock.poll(int(self.settle * 1000)):
                    ident, frame = sock.recv_multipart()
                    rq = _wire.decode_request(frame)
                    self.requests.append(rq)
                    self._outstanding[ident] = self._outstanding.get(ident, 0) + 1
                    self.max_outstanding = max(self.max_outstanding, self._outstanding[ident])
                    key = (rq.epoch, rq.batch)
                    if rq.type == _wire.BATCH and key in self.delays:
                        self._delayed.append((time.monotonic() + self.delays.pop(key), ident, rq))
                    elif not self.reorder:
                        self._outstanding[ident] -= 1
                        sock.send_multipart([ident] + self.reply(rq))
                    else:
                        pending.append((ident, rq))
                    continue
                now = time.monotonic()
                for item in [d for d in self._delayed if d[0] <= now]:
                    self._delayed.remove(item)
                    pending.append(item[1:])
                for ident, rq in reversed(pending):
                    self._outstanding[ident] -= 1
                    sock.send_multipart([ident] + self.reply(rq))
                pending = []
        finally:
            sock.close(0)

    def header(self, rq, type, **kw):
        return _wire.encode_reply(type, rq.request_id, epoch=rq.epoch, rank=rq.rank,
                                  world=rq.world, batch=rq.batch, version=self.version,
                                  digest=self.digest, **kw)

    def error(self, rq, status, msg):
        return [self.header(rq, _wire.ERROR, status=status), msg.encode()]

    def reply(self, rq):
        if rq.pipeline != "train":
            return self.error(rq, _wire.Status.NO_PIPELINE, "unknown pipeline '%s'" % rq.pipeline)
        if rq.type == _wire.INFO:
            info = {"protocol": 1, "dataset_size": self.n_batches * self.B,
                    "num_classes": self.K, "class_names": ["a", "b", "c", "d"][: self.K],
                    "batch_size": self.B, "batches_per_epoch": self.n_batches,
                    "image_shape": [self.H, self.W, 3], "config_digest": self.digest.hex(),
                    "rank": rq.rank, "world": rq.world}
            if self.max_window:
                info["max_window"] = self.max_window
            return [self.header(rq, _wire.INFO), json.dumps(info).encode()]
        if rq.type == _wire.STATS:
            return [self.header(rq, _wire.STATS), json.dumps({"requests": len(self.requests)}).encode()]
        if rq.type != _wire.BATCH:
            return self.error(rq, _wire.Status.UNKNOWN_TYPE, "unknown type")
        if (rq.epoch, rq.batch) in self.errors:
            st, msg = self.errors[(rq.epoch, rq.batch)]
            return self.error(rq, st, msg)
        if rq.batch >= self.n_batches:
            return self.error(rq, _wire.Status.BATCH_RANGE, "batch out of range")
        B, H, W, K = self.B, self.H, self.W, self.K
        images = np.full((B, H, W, 3), (rq.epoch * 16 + rq.batch) & 255, np.uint8)
        if self.mark:
            images[:, 0, 0, 0] = np.arange(B)
        self.batches += 1
        labels = np.zeros((B, K), np.float32)
        labels[np.arange(B), np.arange(B) % K] = 1.0
        meta = bytearray(B * _wire.META_SIZE)
        for i in range(B):
            o = i * _wire.META_SIZE
            idx = rq.batch * B + i
            # Written field by field at the offsets of proto/wire.h.
            struct.pack_into("<qqqd", meta, o, idx, idx + 1000, idx + 2000, 0.25 + i)
            struct.pack_into("<iii", meta, o + 32, i % K, (i + 1) % K, (i + 1) % B)
            struct.pack_into("<4i", meta, o + 44, 1, 2, 3, 4)
            struct.pack_into("<4f", meta, o + 60, 0.5, 1.5, 2.5, 3.5)
            struct.pack_into("<ii", meta, o + 76, 640 + i, 480 + i)
            struct.pack_into("<5B", meta, o + 84, 1, 1, 0, 2, 1)
            for h in range(8):
                struct.pack_into("<4i", meta, o + 96 + 16 * h, h, h + 10, h + 20, h + 30)
        body = [images.tobytes(), labels.tobytes(), bytes(meta)]
        sizes = [len(x) for x in body]
        if self.bad_sizes:
            body[0] = body[0][:-1]
        flags = _wire.RFLAG_LAST if rq.batch == self.n_batches - 1 else 0
        hdr = self.header(rq, _wire.BATCH, flags=flags, batch_size=B, height=H, width=W,
                          channels=3, layout=_wire.NHWC, dtype=_wire.UINT8,
                          meta_size=_wire.META_SIZE, num_classes=K,
                          batches_per_epoch=self.n_batches, body_bytes=sizes)
        return [hdr] + body
