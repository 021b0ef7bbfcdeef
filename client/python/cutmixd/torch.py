"""PyTorch glue for cutmixd (imports torch; the rest of the package does not).

    import cutmixd.torch
    loader = cutmixd.torch.loader(["tcp://cpu1:5555", "tcp://cpu2:5555"], "train",
                                  num_workers=2)
    ds = loader.dataset                       # ds.num_classes, ds.class_names, ...
    for epoch in range(90):                   # epoch 0, 1, 2, ... by itself
        for images, labels, meta in loader:   # meta: {field: tensor}
            ...

Each item is one whole batch: a DataLoader around a CutmixdIterable needs
``batch_size=None`` (``loader()`` sets it; an iterable wrapped with a batch
size raises TypeError at the first batch instead of yielding 5-D tensors).

Epochs. Every new iteration over the iterable (or over a DataLoader around
it, with or without ``persistent_workers``) is the next epoch: the first
one is ``epoch`` (default 0), then +1 each time. ``set_epoch(e, start=k)``
overrides it: the next iteration is epoch e from batch k, the one after it
e+1 from batch 0. The count lives in a small shared-memory tensor, so the
DataLoader's worker processes (persistent or not) see what the main
process set. Changing ``num_workers`` between iterations needs a
``set_epoch`` (each worker counts its own iterations).

Workers. With ``num_workers = n > 0`` worker w fetches batches start+w,
start+w+n, ... and the DataLoader's round-robin over workers yields them in
batch order. Each process keeps one cutmixd.Client for all its epochs (a
persistent worker keeps its connections; a non-persistent worker is a new
process, hence a new connection, every epoch).

Resuming: ``state_dict()`` gives ``{"epoch": e, "next_batch": k}``;
``load_state_dict()`` of it makes the next iteration yield batches k.. of
epoch e, byte for byte what a full run would have yielded from k on (a
batch is a pure function of config, epoch, rank, world and index). The
loader from ``loader()`` counts the batches the training loop has taken
(worker prefetch does not count); the iterable counts what it yielded in
the process that iterates it (the main process with ``num_workers=0``, or
each worker, as torchdata's StatefulDataLoader asks it per worker).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.utils.data

from . import Client, Error, TimeoutError

INFO_TIMEOUT = 5.0   # seconds len(), num_classes, ... wait for the daemon's INFO
_SLOTS = 256         # worker slots in the shared epoch counter

_warned = set()


def _warn_once(key: str, text: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(text, RuntimeWarning, stacklevel=3)


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


def _dist_rank_world() -> Optional[Tuple[int, int]]:
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def _rank_world() -> Tuple[int, int]:
    """torch.distributed's rank/world when initialised, else RANK /
    WORLD_SIZE, else 0 / 1; warns (once) where that guess is ambiguous."""
    rw = _dist_rank_world()
    if rw is not None:
        return rw
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    if "RANK" in env or "WORLD_SIZE" in env:
        _warn_once("half-env", "cutmixd.torch: only one of RANK=%s / WORLD_SIZE=%s is set: "
                   "using rank %s of %s; pass rank= and world= to be sure every process "
                   "reads its own shard" % (env.get("RANK"), env.get("WORLD_SIZE"),
                                            env.get("RANK", "0"), env.get("WORLD_SIZE", "1")))
        return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    if "LOCAL_RANK" in env:
        _warn_once("local-rank", "cutmixd.torch: LOCAL_RANK=%s is set but RANK/WORLD_SIZE are "
                   "not and torch.distributed is not initialised: using rank 0 of 1, so "
                   "every process would read the same shard; initialise torch.distributed "
                   "first or pass rank= and world=" % env["LOCAL_RANK"])
    return 0, 1


class CutmixdIterable(torch.utils.data.IterableDataset):
    """An IterableDataset of whole batches from one cutmixd daemon or several
    (``endpoint`` may be a list; see cutmixd.Client for fan-in, re-sending
    and failover).

    rank/world default to torch.distributed's (when initialised), else to
    the RANK / WORLD_SIZE environment variables, else 0 / 1 (with a warning,
    once, when only part of that is set, or when torch.distributed is
    initialised after the iterable was made with another rank/world).
    ``info_timeout`` (default 5 s) bounds how long ``len()``,
    ``num_classes``, ``class_names``, ``batch_size``, ``image_shape`` and
    ``batches_per_epoch`` wait for the daemon (one INFO, cached).
    ``client_args`` go to cutmixd.Client as they are (resend_timeout,
    server_key, public_key, secret_key, digest, ...)."""

    def __init__(self, endpoint: Union[str, Sequence[str]], pipeline: str = "train",
                 rank: Optional[int] = None, world: Optional[int] = None,
                 window: Optional[int] = None, timeout: float = 60.0, eval: bool = False,
                 epoch: int = 0, as_torch: bool = True, start: int = 0,
                 info_timeout: float = INFO_TIMEOUT, **client_args: Any) -> None:
        """Items are (images, labels, meta) with meta as {field: tensor}
        (see to_torch), or the Batch objects themselves with as_torch=False.
        ``epoch``/``start``: the first iteration's epoch and first batch."""
        super().__init__()
        if isinstance(endpoint, (list, tuple)):
            endpoint = list(endpoint)
            if not endpoint:
                raise ValueError("CutmixdIterable: no endpoint given")
        self.endpoint = endpoint
        self.pipeline = pipeline
        self._explicit_shard = rank is not None and world is not None
        r, w = (0, 1) if self._explicit_shard else _rank_world()
        self.rank = r if rank is None else int(rank)
        self.world = w if world is None else int(world)
        self.window = window
        self.timeout = timeout
        self.eval = eval
        self.as_torch = as_torch
        self.info_timeout = float(info_timeout)
        self.client_args = client_args
        self._info: Optional[Dict[str, Any]] = None
        # [epoch, start, iterations started by worker 0, 1, ...]: shared with
        # the DataLoader's workers (fork or spawn) so that set_epoch in the
        # main process reaches persistent workers too.
        self._shared = torch.zeros(2 + _SLOTS, dtype=torch.int64).share_memory_()
        self._client_obj: Optional[Client] = None
        self._pos: Optional[List[int]] = None    # [epoch, next batch] where iterated
        self._resume: Optional[Tuple[int, int]] = None  # a worker's load_state_dict
        self.set_epoch(epoch, start)

    # -- epochs ---------------------------------------------------------------

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The next iteration yields epoch ``epoch`` from batch ``start``;
        the iterations after it epoch+1, epoch+2, ... from batch 0."""
        epoch, start = int(epoch), int(start)
        if start < 0:
            raise ValueError("CutmixdIterable.set_epoch: start must be >= 0, got %r" % (start,))
        if epoch < 0:
            raise ValueError("CutmixdIterable.set_epoch: epoch must be >= 0, got %r" % (epoch,))
        self._shared[0] = epoch
        self._shared[1] = start
        self._shared[2:] = 0
        self._pos = None
        self._resume = None

    def next_position(self) -> Tuple[int, int]:
        """(epoch, first batch) of the next iteration."""
        t = int(self._shared[2])
        if t == 0:
            return int(self._shared[0]), int(self._shared[1])
        return int(self._shared[0]) + t, 0

    @property
    def epoch(self) -> int:
        """The epoch the next iteration yields."""
        return self.next_position()[0]

    @property
    def start(self) -> int:
        """The first batch the next iteration yields."""
        return self.next_position()[1]

    def _begin(self, slot: int) -> Tuple[int, int]:
        if slot >= _SLOTS:
            raise ValueError("CutmixdIterable: at most %d DataLoader workers" % _SLOTS)
        t = int(self._shared[2 + slot])
        self._shared[2 + slot] = t + 1
        if t == 0:
            return int(self._shared[0]), int(self._shared[1])
        return int(self._shared[0]) + t, 0

    # -- the daemon's description (one INFO, cached) ---------------------------

    @property
    def info(self) -> Dict[str, Any]:
        """The daemon's INFO for this pipeline and shard (cached)."""
        if self._info is None:
            c = Client(self.endpoint, pipeline=self.pipeline, rank=self.rank, world=self.world,
                       timeout=self.info_timeout, eval=self.eval, **self.client_args)
            try:
                self._info = c.info()
            except TimeoutError as exc:
                raise Error("CutmixdIterable: no answer from %s within info_timeout=%gs "
                            "(pipeline %r): is the daemon running? (%s)"
                            % (c.endpoint, self.info_timeout, self.pipeline, exc)) from None
            finally:
                c.close()
        return self._info

    @property
    def num_classes(self) -> int:
        return int(self.info["num_classes"])

    @property
    def class_names(self) -> List[str]:
        return list(self.info["class_names"])

    @property
    def batch_size(self) -> int:
        return int(self.info["batch_size"])

    @property
    def image_shape(self) -> Tuple[int, ...]:
        """Shape of one image as the batches carry it (H, W, C or C, H, W)."""
        return tuple(int(v) for v in self.info["image_shape"])

    def batches_per_epoch(self) -> int:
        return int(self.info["batches_per_epoch"])

    def __len__(self) -> int:
        """Batches the next iteration yields (the epoch from its first batch on);
        waits at most ``info_timeout`` for the daemon (cutmixd.Error after)."""
        return max(0, self.batches_per_epoch() - self.start)

    # -- resuming (torchdata StatefulDataLoader protocol) ------------------------

    def state_dict(self) -> Dict[str, int]:
        """{"epoch", "next_batch"}: where the next batch comes from. In the
        process that iterates (num_workers=0, or inside a worker) it counts
        the batches yielded; elsewhere it is the next iteration's start."""
        if self._pos is not None:
            e, k = self._pos
            if k >= self.batches_per_epoch():
                e, k = e + 1, 0
            return {"epoch": e, "next_batch": k}
        e, k = self.next_position()
        return {"epoch": e, "next_batch": k}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Resume from a state_dict(): the next iteration yields epoch
        ``state["epoch"]`` from batch ``state["next_batch"]``."""
        try:
            e, k = int(state["epoch"]), int(state["next_batch"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("CutmixdIterable.load_state_dict: expected {'epoch': int, "
                             "'next_batch': int}, got %r" % (state,)) from None
        if torch.utils.data.get_worker_info() is not None:
            # torchdata restores each worker with its own next batch.
            self._resume = (e, k)
            self._pos = [e, k]
        else:
            self.set_epoch(e, k)

    # -- iterating ----------------------------------------------------------------

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_client_obj"] = None   # a Client never crosses a process boundary
        return d

    def _client(self) -> Client:
        c = self._client_obj
        if c is None or c._closed or c._pid != os.getpid():
            c = Client(self.endpoint, pipeline=self.pipeline, rank=self.rank,
                       world=self.world, window=self.window, timeout=self.timeout,
                       eval=self.eval, **self.client_args)
            self._client_obj = c
        return c

    def close(self) -> None:
        """Close this process's client (it is also closed when collected)."""
        if self._client_obj is not None and self._client_obj._pid == os.getpid():
            self._client_obj.close()
        self._client_obj = None

    def _check_not_batched(self) -> None:
        # DataLoader's fetcher calls iter() on us; with a batch size it
        # collates (auto_collation) several of our whole batches into one.
        f = sys._getframe(2)
        for _ in range(4):
            if f is None:
                break
            obj = f.f_locals.get("self")
            if obj is not None and type(obj).__name__.endswith("DatasetFetcher") \
                    and getattr(obj, "auto_collation", False):
                raise TypeError(
                    "CutmixdIterable yields whole batches (batch_size=%s per item): give "
                    "the DataLoader batch_size=None, or use cutmixd.torch.loader(), instead "
                    "of a DataLoader with a batch size (it would stack several batches "
                    "into 5-D tensors)" % (self._info or {}).get("batch_size", "B"))
            f = f.f_back

    def check_shard(self) -> None:
        """Warn (once) when torch.distributed, initialised after this iterable
        was made, says another rank/world than the one it uses."""
        if self._explicit_shard:
            return
        rw = _dist_rank_world()
        if rw is not None and rw != (self.rank, self.world):
            _warn_once("late-dist", "cutmixd.torch: torch.distributed says rank %d of %d but "
                       "this CutmixdIterable was made before it was initialised and reads "
                       "rank %d of %d: make it after init_process_group, or pass rank= and "
                       "world=" % (rw[0], rw[1], self.rank, self.world))

    def __iter__(self) -> Iterator[Any]:
        self._check_not_batched()
        wi = torch.utils.data.get_worker_info()
        nw, w = (1, 0) if wi is None else (wi.num_workers, wi.id)
        if wi is None:
            self.check_shard()
        return self._iterate(nw, w)

    def _iterate(self, nw: int, w: int) -> Iterator[Any]:
        if self._resume is not None:
            (epoch, first), self._resume = self._resume, None
            self._begin(w)
        else:
            epoch, start = self._begin(w)
            first = start + w
        c = self._client()
        self._pos = [epoch, first]
        for b in c.epoch(epoch, start=first, step=nw):
            self._pos = [epoch, b.index + nw]
            yield to_torch(b, meta="dict") if self.as_torch else b


class CutmixdLoader(torch.utils.data.DataLoader):
    """A DataLoader over a CutmixdIterable with batch_size=None, which also
    counts the batches the training loop has taken: ``state_dict()`` /
    ``load_state_dict()`` resume exactly there (prefetched batches do not
    count)."""

    def __init__(self, dataset: CutmixdIterable, **kw: Any) -> None:
        if not isinstance(dataset, CutmixdIterable):
            raise TypeError("CutmixdLoader: dataset must be a CutmixdIterable")
        if kw.get("batch_size", None) is not None:
            raise ValueError("CutmixdLoader: each item is already a whole batch: batch_size "
                             "must be None, got %r" % (kw["batch_size"],))
        kw["batch_size"] = None
        super().__init__(dataset, **kw)
        self._cur: Optional[List[int]] = None  # [epoch, first, taken]

    def __iter__(self):
        ds = self.dataset
        ds.check_shard()
        e, k = ds.next_position()
        cur = self._cur = [e, k, 0]
        for item in super().__iter__():
            cur[2] += 1
            yield item

    def state_dict(self) -> Dict[str, int]:
        """{"epoch", "next_batch"}: the batch the training loop gets next."""
        if self._cur is None:
            return self.dataset.state_dict()
        e, k, taken = self._cur
        nxt = k + taken
        if nxt >= self.dataset.batches_per_epoch():
            return {"epoch": e + 1, "next_batch": 0}
        return {"epoch": e, "next_batch": nxt}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.dataset.load_state_dict(state)
        self._cur = None


def loader(endpoint: Union[str, Sequence[str]], pipeline: str = "train",
           num_workers: int = 0, pin_memory: Optional[bool] = None,
           persistent_workers: Optional[bool] = None, prefetch_factor: Optional[int] = None,
           **iterable_args: Any) -> CutmixdLoader:
    """A DataLoader of whole cutmixd batches, configured correctly:
    batch_size=None, ``num_workers`` worker processes (default 0: the
    client already keeps ``window`` requests in flight; workers help when the
    training step itself is short), ``persistent_workers`` (default: yes with
    workers, so each keeps its connections), ``pin_memory`` (default: when
    CUDA is available). ``iterable_args`` go to CutmixdIterable (rank, world,
    epoch, start, window, timeout, eval, server_key, ...)."""
    ds = CutmixdIterable(endpoint, pipeline, **iterable_args)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    kw: Dict[str, Any] = {"num_workers": int(num_workers), "pin_memory": bool(pin_memory)}
    if num_workers > 0:
        kw["persistent_workers"] = True if persistent_workers is None else bool(persistent_workers)
        if prefetch_factor is not None:
            kw["prefetch_factor"] = int(prefetch_factor)
    return CutmixdLoader(ds, **kw)
