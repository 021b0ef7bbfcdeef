"""PyTorch glue for cutmixd (imports torch; the rest of the package does not).

    from cutmixd.torch import CutmixdIterable, to_torch
    ds = CutmixdIterable("ipc:///run/cutmixd.sock", "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    for epoch in range(90):
        ds.set_epoch(epoch)
        for images, labels, meta in loader:   # meta: {field: tensor}
            ...

Each item is one whole batch, so give the DataLoader ``batch_size=None``.
With ``num_workers = n > 0`` worker w fetches batches w, w+n, w+2n, ...
and the DataLoader's round-robin over workers yields them in batch order.
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
        m = {name: torch.from_numpy(np.ascontiguousarray(batch.meta[name]))
             for name in batch.meta.dtype.names}
    else:
        raise ValueError("to_torch: meta must be 'numpy' or 'dict', got %r" % (meta,))
    return images, labels, m


def _rank_world():
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class CutmixdIterable(torch.utils.data.IterableDataset):
    """An IterableDataset of whole batches from a cutmixd daemon.

    rank/world default to torch.distributed's (when initialised), else to
    the RANK / WORLD_SIZE environment variables, else 0 / 1."""

    def __init__(self, endpoint, pipeline="train", rank=None, world=None, window=4,
                 timeout=60.0, eval=False, epoch=0, as_torch=True):
        """Items are (images, labels, meta) with meta as {field: tensor}
        (see to_torch), or the Batch objects themselves with as_torch=False."""
        super().__init__()
        r, w = _rank_world()
        self.endpoint = endpoint
        self.pipeline = pipeline
        self.rank = r if rank is None else int(rank)
        self.world = w if world is None else int(world)
        self.window = window
        self.timeout = timeout
        self.eval = eval
        self.epoch = int(epoch)
        self.as_torch = as_torch
        self._len = None

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def _client(self):
        return Client(self.endpoint, pipeline=self.pipeline, rank=self.rank,
                      world=self.world, window=self.window, timeout=self.timeout,
                      eval=self.eval)

    def __len__(self):
        if self._len is None:
            with self._client() as c:
                self._len = c.batches_per_epoch()
        return self._len

    def __iter__(self):
        wi = torch.utils.data.get_worker_info()
        nw, w = (1, 0) if wi is None else (wi.num_workers, wi.id)
        with self._client() as c:
            for b in c.epoch(self.epoch, start=w, step=nw):
                yield to_torch(b, meta="dict") if self.as_torch else b
