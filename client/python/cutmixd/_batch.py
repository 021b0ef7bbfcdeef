"""Batch: one received batch, zero-copy numpy views on its ZeroMQ frames."""

from __future__ import annotations

from typing import Any, List

import numpy as np

from . import _wire
from ._errors import ProtocolError
from ._wire import meta_dtype


class Batch:
    """One batch as received.

    images      numpy view [B,H,W,C] (nhwc) or [B,C,H,W] (nchw), uint8 or float32
    labels      numpy view float32 [B, K] (soft labels)
    meta        numpy structured array (META_DTYPE), one record per sample
    raw_frames  the frames exactly as received: header, images, labels, meta
                (the header's request_id, bytes 16..23, differs between runs);
                through shared memory, the header without its SHM flag (so
                it equals a copied reply's) and the three parts
    shm         True when the arrays are views on a shared-memory slot
                (released to the daemon once no view is left); writable as
                on the copy path, the writes stay in this process and are
                discarded with the batch
    digest      config digest (hex) of the daemon that made it
    endpoint    the daemon that served it
    """

    __slots__ = ("epoch", "index", "rank", "world", "images", "labels", "meta",
                 "raw_frames", "digest", "header", "flags", "request_id",
                 "batches_per_epoch", "layout", "endpoint", "_frames", "shm")

    epoch: int
    index: int
    rank: int
    world: int
    images: np.ndarray
    labels: np.ndarray
    meta: np.ndarray
    raw_frames: List[Any]
    digest: str
    header: _wire.Reply
    flags: int
    request_id: int
    batches_per_epoch: int
    layout: str
    endpoint: str

    @property
    def last(self) -> bool:
        """True for the last batch of the epoch for this shard."""
        return bool(self.flags & _wire.RFLAG_LAST)

    @property
    def size(self) -> int:
        return self.header.batch_size

    def __len__(self) -> int:
        return self.header.batch_size

    def __repr__(self) -> str:
        return "<cutmixd.Batch epoch=%d index=%d/%d size=%d images=%s%s %s from %s>" % (
            self.epoch, self.index, self.batches_per_epoch, self.size,
            self.images.dtype, list(self.images.shape), self.layout, self.endpoint)


def make_batch(hdr: _wire.Reply, frames: List[Any], ep: str, epoch: int, index: int,
               rank: int, world: int) -> Batch:
    """A Batch from a BATCH reply (header and its 4 frames, or with
    RFLAG_SHM the header and the _shm.SlotRef taken for its descriptor)
    served by endpoint ``ep``, checked against what was asked for;
    ProtocolError otherwise."""
    if hdr.type != _wire.BATCH:
        raise ProtocolError("cutmixd %s: expected a batch reply, got type %d" % (ep, hdr.type))
    via_shm = bool(hdr.flags & _wire.RFLAG_SHM)
    if via_shm and (len(frames) != 2 or not hasattr(frames[1], "views")):
        raise ProtocolError("cutmixd %s: shared-memory batch reply without a session "
                            "(or with %d frames)" % (ep, len(frames)))
    if not via_shm and len(frames) != 4:
        raise ProtocolError("cutmixd %s: batch reply has %d frames, expected 4"
                            % (ep, len(frames)))
    if (hdr.epoch, hdr.batch, hdr.rank, hdr.world) != (epoch, index, rank, world):
        raise ProtocolError(
            "cutmixd %s: asked for epoch %d batch %d rank %d/%d, got epoch %d batch %d "
            "rank %d/%d" % (ep, epoch, index, rank, world,
                            hdr.epoch, hdr.batch, hdr.rank, hdr.world))
    if hdr.dtype not in _wire.DTYPES or hdr.layout not in _wire.LAYOUT_NAMES:
        raise ProtocolError("cutmixd %s: unknown dtype %d / layout %d"
                            % (ep, hdr.dtype, hdr.layout))
    B, H, W, C, K = hdr.batch_size, hdr.height, hdr.width, hdr.channels, hdr.num_classes
    dt = _wire.DTYPES[hdr.dtype]
    shape = (B, H, W, C) if hdr.layout == _wire.NHWC else (B, C, H, W)
    want = (B * H * W * C * dt.itemsize, B * K * 4, B * hdr.meta_size)
    if via_shm:
        if tuple(hdr.body_bytes) != want:
            raise ProtocolError("cutmixd %s: batch sizes %s, expected %s"
                                % (ep, tuple(hdr.body_bytes), want))
        parts = frames[1].views(want)
        got = want
    else:
        parts = [np.frombuffer(f.buffer, dtype=np.uint8) for f in frames[1:]]
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
    b.endpoint = ep
    b._frames = frames
    b.shm = via_shm
    if via_shm:  # the header as a copied reply has it: raw_frames compare equal
        head = bytearray(frames[0].bytes)
        head[12:16] = (hdr.flags & ~_wire.RFLAG_SHM).to_bytes(4, "little")
        b.raw_frames = [memoryview(bytes(head))] + list(parts)
    else:
        b.raw_frames = [f.buffer for f in frames]
    b.images = parts[0].view(dt).reshape(shape)
    b.labels = parts[1].view("<f4").reshape(B, K)
    b.meta = parts[2].view(meta_dtype(hdr.meta_size))[:B]
    return b
