"""PyTorch glue for cutmixd (imports torch; the rest of the package does not).

    from cutmixd.torch import CutmixdIterable, to_torch
    ds = CutmixdIterable(["tcp://cpu1:5555", "tcp://cpu2:5555"], "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    for epoch in range(start_epoch, 90):
        ds.set_epoch(epoch, start=resume_batch if epoch == start_epoch else 0)
        for images, labels, meta in loader:   # meta: {field: tensor}
            ...

Each item is one whole batch, so give the DataLoader ``batch_size=None``.
With ``num_workers = n > 0`` worker w fetches batches start+w, start+w+n,
... and the DataLoader's round-robin over workers yields them in batch
order. Resuming: ``set_epoch(e, start=k)`` yields batches k.. of epoch e,
byte for byte what a full run would have yielded from k on (a batch is a
pure function of config, epoch, rank, world and index).
"""

import os
import warnings

import numpy as np
import torch
import torch.utils.data

from . import Client


def to_torch(batch, meta="numpy"):
    """(images, labels, meta) of a Batch. images and labels are tensors that
    share memory with the received frames (torch.from_numpy: no copy).
    meta="numpy" (default) gives the numpy structured array; meta="dict"
    gives {field: tensor} (a small copy), which DataLoader's collation can
    pass through."""
    with warnings.catch_warnings():
        # Should a view ever be read-only, torch warns; it is zero-copy on purpose.
        warnings.simplefilter("ignore", UserWarning)
        images = torch.from_numpy(batch.images)
        labels = torch.from_numpy(batch.labels)
    if meta == "numpy":
        m = batch.meta
    elif meta == "dict":
        m = _meta_dict(batch.meta)
    else:
        raise ValueError("to_torch: meta must be 'numpy' or 'dict', got %r" % (meta,))
    return images, labels, m


def _meta_dict(arr):
    """{field: tensor}; a structured field (protocol 2's "ops") becomes a
    nested dict of its sub-fields."""
    out = {}
    for name in arr.dtype.names:
        col = arr[name]
        if col.dtype.names:
            out[name] = _meta_dict(col)
        else:
            out[name] = torch.from_numpy(np.ascontiguousarray(col))
    return out


def _rank_world():
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class CutmixdIterable(torch.utils.data.IterableDataset):
    """An IterableDataset of whole batches from one cutmixd daemon or several
    (``endpoint`` may be a list; see cutmixd.Client for fan-in, re-sending
    and failover).

    rank/world default to torch.distributed's (when initialised), else to
    the RANK / WORLD_SIZE environment variables, else 0 / 1. ``client_args``
    go to cutmixd.Client as they are (resend_timeout, server_key,
    public_key, secret_key, digest, ...)."""

    def __init__(self, endpoint, pipeline="train", rank=None, world=None, window=None,
                 timeout=60.0, eval=False, epoch=0, as_torch=True, start=0, **client_args):
        """Items are (images, labels, meta) with meta as {field: tensor}
        (see to_torch), or the Batch objects themselves with as_torch=False.
        ``start`` is the first batch of ``epoch`` (to resume a run)."""
        super().__init__()
        r, w = _rank_world()
        if isinstance(endpoint, (list, tuple)):
            endpoint = list(endpoint)
            if not endpoint:
                raise ValueError("CutmixdIterable: no endpoint given")
        self.endpoint = endpoint
        self.pipeline = pipeline
        self.rank = r if rank is None else int(rank)
        self.world = w if world is None else int(world)
        self.window = window
        self.timeout = timeout
        self.eval = eval
        self.epoch = int(epoch)
        self.start = int(start)
        if self.start < 0:
            raise ValueError("CutmixdIterable: start must be >= 0, got %r" % (start,))
        self.as_torch = as_torch
        self.client_args = client_args
        self._bpe = None

    def set_epoch(self, epoch, start=0):
        """The epoch the next iteration yields, from batch ``start`` on."""
        self.epoch = int(epoch)
        self.start = int(start)
        if self.start < 0:
            raise ValueError("CutmixdIterable.set_epoch: start must be >= 0, got %r" % (start,))

    def _client(self):
        return Client(self.endpoint, pipeline=self.pipeline, rank=self.rank,
                      world=self.world, window=self.window, timeout=self.timeout,
                      eval=self.eval, **self.client_args)

    def batches_per_epoch(self):
        if self._bpe is None:
            with self._client() as c:
                self._bpe = c.batches_per_epoch()
        return self._bpe

    def __len__(self):
        """Batches the next iteration yields (the epoch from ``start`` on)."""
        return max(0, self.batches_per_epoch() - self.start)

    def __iter__(self):
        wi = torch.utils.data.get_worker_info()
        nw, w = (1, 0) if wi is None else (wi.num_workers, wi.id)
        with self._client() as c:
            for b in c.epoch(self.epoch, start=self.start + w, step=nw):
                yield to_torch(b, meta="dict") if self.as_torch else b
