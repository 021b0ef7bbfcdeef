"""Python client for cutmixd, the augmenting JPEG batch server.

    import cutmixd
    with cutmixd.Client("ipc:///run/cutmixd.sock", pipeline="train",
                        rank=0, world=1, window=4) as c:
        info = c.info()                    # dict: dataset_size, num_classes, ...
        for b in c.epoch(3):               # batches 0.. of epoch 3, in order
            x, y, meta = b.images, b.labels, b.meta

Flow control is credit based: at most ``window`` requests of this client are
outstanding at any time (capped by the daemon's ``max_window`` from INFO);
replies may arrive in any order and are handed out in batch order from a
reorder buffer. Nothing ever blocks for longer than ``timeout`` seconds
without a reply: a silent daemon raises :class:`cutmixd.TimeoutError`.

Images, labels and metadata are zero-copy numpy views on the received
ZeroMQ frames (the frames belong to the Batch alone, so writing into them in
place is allowed; the memory lives as long as any view of it). A Client is not thread safe and
must not cross a fork(): create one per thread/process.
"""

import builtins
import itertools
import json
import os
import struct
import time

import numpy as np
import zmq

from . import _wire
from ._wire import (  # noqa: F401  (re-exported)
    META_DTYPE,
    META_SIZE,
    OP_CUTMIX,
    OP_MIXUP,
    OP_NAMES,
    OP_NONE,
    SAMPLE_OK,
    SAMPLE_REPLACED,
    Status,
    meta_dtype,
    status_name,
)

__all__ = [
    "Client", "Batch", "Error", "DaemonError", "ProtocolError", "VersionError",
    "TimeoutError", "Status", "META_DTYPE", "PROTOCOL_VERSION",
    "META_SIZE", "OP_NONE", "OP_CUTMIX", "OP_MIXUP", "OP_NAMES", "SAMPLE_OK", "SAMPLE_REPLACED",
    "meta_dtype", "status_name",
]

__version__ = "0.1.0"
PROTOCOL_VERSION = _wire.VERSION


class Error(Exception):
    """Base class of every cutmixd client error."""


class DaemonError(Error):
    """The daemon answered a request with an ERROR reply.

    ``code`` is the wire status (a :class:`Status` when known), ``name`` its
    symbolic name ("BUSY", "NOT_EVAL", ...), ``message`` the daemon's text."""

    def __init__(self, code, message, endpoint=None, request_id=None):
        try:
            self.code = Status(code)
        except ValueError:
            self.code = int(code)
        self.name = status_name(code)
        self.message = message
        self.endpoint = endpoint
        self.request_id = request_id
        where = "cutmixd %s: " % endpoint if endpoint else "cutmixd: "
        super().__init__("%s%s (%d): %s" % (where, self.name, int(code), message))


class ProtocolError(Error):
    """A reply that does not follow the wire format."""


class VersionError(ProtocolError):
    """The daemon speaks another protocol version than this client."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 (shadowing on purpose)
    """No reply within the client's timeout."""


class Batch:
    """One batch as received.

    images      numpy view [B,H,W,C] (nhwc) or [B,C,H,W] (nchw), uint8 or float32
    labels      numpy view float32 [B, K] (soft labels)
    meta        numpy structured array (META_DTYPE), one record per sample
    raw_frames  the frames exactly as received: header, images, labels, meta
    digest      config digest (hex) of the daemon that made it
    """

    __slots__ = ("epoch", "index", "rank", "world", "images", "labels", "meta",
                 "raw_frames", "digest", "header", "flags", "request_id",
                 "batches_per_epoch", "layout", "_frames")

    @property
    def last(self):
        """True for the last batch of the epoch for this shard."""
        return bool(self.flags & _wire.RFLAG_LAST)

    @property
    def size(self):
        return self.header.batch_size

    def __len__(self):
        return self.header.batch_size

    def __repr__(self):
        return "<cutmixd.Batch epoch=%d index=%d/%d size=%d images=%s%s %s>" % (
            self.epoch, self.index, self.batches_per_epoch, self.size,
            self.images.dtype, list(self.images.shape), self.layout)


def _now():
    return time.monotonic()


class Client:
    """A connection to one cutmixd daemon (DEALER socket)."""

    def __init__(self, endpoint, pipeline="train", rank=0, world=1, window=4,
                 timeout=60.0, eval=False, context=None):
        if isinstance(endpoint, (str, bytes)):
            endpoints = [endpoint]
        else:
            endpoints = list(endpoint)
        if not endpoints:
            raise ValueError("cutmixd.Client: no endpoint given")
        self.endpoints = [e.decode() if isinstance(e, bytes) else str(e) for e in endpoints]
        self.endpoint = ", ".join(self.endpoints)
        self.pipeline = pipeline
        self._pipeline_raw = _wire.encode_pipeline(pipeline)
        self.rank = int(rank)
        self.world = int(world)
        if int(window) < 1:
            raise ValueError("cutmixd.Client: window must be >= 1, got %r" % (window,))
        self.window = int(window)
        self.timeout = float(timeout)
        self.eval = bool(eval)
        self._flags = _wire.FLAG_EXPECT_EVAL if self.eval else 0
        self._ids = itertools.count(1)
        self._inflight = {}      # request_id -> send time (reply not received yet)
        self._abandoned = set()  # in flight, but nobody wants the reply any more
        self._ready = {}         # request_id -> (header, frames), not yet consumed
        self._info = None
        self._pid = os.getpid()
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            for e in self.endpoints:
                self._sock.connect(e)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise Error("cutmixd: cannot connect to %s: %s" % (self.endpoint, exc)) from None
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._closed = False

    # -- public API ---------------------------------------------------------

    def info(self):
        """The daemon's description of this pipeline/shard (a dict)."""
        rid = self._send(_wire.INFO)
        hdr, frames = self._wait(rid)
        info = self._json(hdr, frames, "info")
        proto = info.get("protocol")
        if proto is not None and proto != PROTOCOL_VERSION:
            raise VersionError(
                "cutmixd %s speaks protocol version %s, this client speaks %d"
                % (self.endpoint, proto, PROTOCOL_VERSION))
        self._info = info
        return info

    def stats(self):
        """The daemon's counters (a dict)."""
        rid = self._send(_wire.STATS)
        hdr, frames = self._wait(rid)
        return self._json(hdr, frames, "stats")

    def batch(self, epoch, index):
        """Batch ``index`` of ``epoch`` for this shard."""
        rid = self._send(_wire.BATCH, epoch, index)
        hdr, frames = self._wait(rid)
        return self._make_batch(hdr, frames, epoch, index)

    def epoch(self, epoch, start=0, stop=None, step=1):
        """Yield batches start, start+step, ... (< stop) of ``epoch`` in order,
        keeping up to ``window`` requests in flight."""
        n = self.batches_per_epoch()
        stop = n if stop is None else min(int(stop), n)
        if int(step) < 1:
            raise ValueError("cutmixd.Client.epoch: step must be >= 1")
        window = self.effective_window()
        return self._epoch(int(epoch), list(range(int(start), stop, int(step))), window)

    def batches_per_epoch(self):
        if self._info is None:
            self.info()
        return int(self._info["batches_per_epoch"])

    def effective_window(self):
        """``window``, capped by the daemon's per-client ``max_window``."""
        if self._info is None:
            self.info()
        cap = self._info.get("max_window")
        if isinstance(cap, int) and cap > 0:
            return min(self.window, cap)
        return self.window

    def close(self):
        if not self._closed:
            self._closed = True
            self._sock.close(0)
            self._inflight.clear()
            self._ready.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if not self._closed and os.getpid() == self._pid:
                self.close()
        except Exception:
            pass

    def __repr__(self):
        return "<cutmixd.Client %s pipeline=%r rank=%d/%d window=%d>" % (
            self.endpoint, self.pipeline, self.rank, self.world, self.window)

    # -- internals ----------------------------------------------------------

    def _check_usable(self):
        if self._closed:
            raise Error("cutmixd.Client: used after close()")
        if os.getpid() != self._pid:
            raise Error("cutmixd.Client: used after fork(); create one client per process")

    def _timeout_error(self, what):
        return TimeoutError(
            "cutmixd: no reply from %s within %gs (%s; pipeline %r): is the daemon "
            "running and listening there?" % (self.endpoint, self.timeout, what, self.pipeline))

    def _make_room(self):
        """Before a lone request: wait until this client has fewer than its
        window outstanding (replies to abandoned requests still count)."""
        cap = self.window
        if self._info is not None and isinstance(self._info.get("max_window"), int):
            cap = max(1, min(cap, self._info["max_window"]))
        deadline = _now() + self.timeout
        while len(self._inflight) >= cap:
            left = deadline - _now()
            if left <= 0 or not self._recv_one(left):
                self._forget_abandoned()
                break

    def _send(self, type, epoch=0, batch=0, make_room=True):
        self._check_usable()
        if make_room:
            self._make_room()
        rid = next(self._ids)
        frame = _wire.encode_request(type, rid, self._pipeline_raw, epoch=epoch, batch=batch,
                                     rank=self.rank, world=self.world, flags=self._flags)
        deadline = _now() + self.timeout
        while True:
            try:
                self._sock.send(frame, zmq.NOBLOCK)
                break
            except zmq.Again:
                left = deadline - _now()
                if left <= 0:
                    raise self._timeout_error("sending a request") from None
                zmq.select([], [self._sock], [], min(left, 0.1))
        self._inflight[rid] = _now()
        return rid

    def _recv_one(self, wait_s):
        """Receive at most one reply, waiting up to wait_s. False on timeout."""
        ms = max(0, int(wait_s * 1000 + 0.999))
        if not self._poller.poll(ms):
            return False
        frames = self._sock.recv_multipart(copy=False)
        if not frames:
            raise ProtocolError("cutmixd %s: empty message" % self.endpoint)
        head = frames[0].bytes
        if len(head) >= 8:
            magic, version, type_ = struct.unpack_from("<IHH", head)
            if magic == _wire.REPLY_MAGIC and version != _wire.VERSION:
                msg = ""
                if type_ == _wire.ERROR and len(frames) > 1:
                    msg = ": " + frames[1].bytes.decode("utf-8", "replace")
                raise VersionError(
                    "cutmixd %s speaks protocol version %d, this client speaks %d%s"
                    % (self.endpoint, version, _wire.VERSION, msg))
        try:
            hdr = _wire.decode_reply(head)
        except ValueError as exc:
            raise ProtocolError("cutmixd %s: %s" % (self.endpoint, exc)) from None
        rid = hdr.request_id
        if rid not in self._inflight:
            return True  # a reply to a request we already gave up on
        del self._inflight[rid]
        if rid in self._abandoned:
            self._abandoned.discard(rid)
            return True
        self._ready[rid] = (hdr, frames)
        return True

    def _forget_abandoned(self):
        for rid in self._abandoned:
            self._inflight.pop(rid, None)
        self._abandoned.clear()

    def _abandon(self, rid):
        if self._ready.pop(rid, None) is None and rid in self._inflight:
            self._abandoned.add(rid)

    def _wait(self, rid, what="request"):
        deadline = _now() + self.timeout
        while rid not in self._ready:
            left = deadline - _now()
            if left <= 0 or not self._recv_one(left):
                self._abandon(rid)
                self._forget_abandoned()
                raise self._timeout_error(what)
        return self._take(rid)

    def _take(self, rid):
        hdr, frames = self._ready.pop(rid)
        if hdr.type == _wire.ERROR:
            msg = frames[1].bytes.decode("utf-8", "replace") if len(frames) > 1 else ""
            raise DaemonError(hdr.status, msg, self.endpoint, rid)
        return hdr, frames

    def _json(self, hdr, frames, what):
        want = {"info": _wire.INFO, "stats": _wire.STATS}[what]
        if hdr.type != want or len(frames) != 2:
            raise ProtocolError("cutmixd %s: %s reply of type %d with %d frames"
                                % (self.endpoint, what, hdr.type, len(frames)))
        try:
            return json.loads(frames[1].bytes.decode("utf-8"))
        except ValueError as exc:
            raise ProtocolError("cutmixd %s: %s reply is not JSON: %s"
                                % (self.endpoint, what, exc)) from None

    def _make_batch(self, hdr, frames, epoch, index):
        ep = self.endpoint
        if hdr.type != _wire.BATCH:
            raise ProtocolError("cutmixd %s: expected a batch reply, got type %d" % (ep, hdr.type))
        if len(frames) != 4:
            raise ProtocolError("cutmixd %s: batch reply has %d frames, expected 4"
                                % (ep, len(frames)))
        if (hdr.epoch, hdr.batch, hdr.rank, hdr.world) != (epoch, index, self.rank, self.world):
            raise ProtocolError(
                "cutmixd %s: asked for epoch %d batch %d rank %d/%d, got epoch %d batch %d "
                "rank %d/%d" % (ep, epoch, index, self.rank, self.world,
                                hdr.epoch, hdr.batch, hdr.rank, hdr.world))
        if hdr.dtype not in _wire.DTYPES or hdr.layout not in _wire.LAYOUT_NAMES:
            raise ProtocolError("cutmixd %s: unknown dtype %d / layout %d"
                                % (ep, hdr.dtype, hdr.layout))
        B, H, W, C, K = hdr.batch_size, hdr.height, hdr.width, hdr.channels, hdr.num_classes
        dt = _wire.DTYPES[hdr.dtype]
        shape = (B, H, W, C) if hdr.layout == _wire.NHWC else (B, C, H, W)
        want = (B * H * W * C * dt.itemsize, B * K * 4, B * hdr.meta_size)
        got = tuple(len(f) for f in frames[1:])
        if got != want or tuple(hdr.body_bytes) != want:
            raise ProtocolError(
                "cutmixd %s: batch frame sizes %s (header says %s), expected %s for "
                "B=%d %dx%dx%d K=%d meta %d" % (ep, got, tuple(hdr.body_bytes), want,
                                                B, H, W, C, K, hdr.meta_size))
        b = Batch()
        b.epoch, b.index, b.rank, b.world = epoch, index, hdr.rank, hdr.world
        b.header = hdr
        b.flags = hdr.flags
        b.request_id = hdr.request_id
        b.batches_per_epoch = hdr.batches_per_epoch
        b.layout = _wire.LAYOUT_NAMES[hdr.layout]
        b.digest = bytes(hdr.digest).hex()
        b._frames = frames
        b.raw_frames = [f.buffer for f in frames]
        b.images = np.frombuffer(frames[1].buffer, dtype=dt).reshape(shape)
        b.labels = np.frombuffer(frames[2].buffer, dtype="<f4").reshape(B, K)
        b.meta = np.frombuffer(frames[3].buffer, dtype=meta_dtype(hdr.meta_size), count=B)
        return b

    def _epoch(self, epoch, order, window):
        rids = {}  # position in order -> request id, sent and not yet handed out
        nxt_send = nxt_yield = 0
        n = len(order)
        deadline = _now() + self.timeout
        try:
            while nxt_yield < n:
                while nxt_send < n and len(self._inflight) < window:
                    rids[nxt_send] = self._send(_wire.BATCH, epoch, order[nxt_send],
                                                make_room=False)
                    nxt_send += 1
                rid = rids.get(nxt_yield)
                if rid is not None and rid in self._ready:
                    del rids[nxt_yield]
                    hdr, frames = self._take(rid)
                    b = self._make_batch(hdr, frames, epoch, order[nxt_yield])
                    nxt_yield += 1
                    yield b
                    deadline = _now() + self.timeout
                    continue
                left = deadline - _now()
                if left <= 0 or not self._recv_one(left):
                    self._forget_abandoned()
                    if rid is not None:
                        raise self._timeout_error("epoch %d batch %d" % (epoch, order[nxt_yield]))
                    deadline = _now() + self.timeout
        finally:
            for rid in rids.values():
                self._abandon(rid)
