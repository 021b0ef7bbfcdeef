"""Client: batches from one cutmixd daemon or several with the same config."""

from __future__ import annotations

import itertools
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import zmq

from . import _wire
from . import _discovery
from . import _shm
from ._batch import make_batch
from ._dispatch import (_CONNECT_TIMEOUT_MS, _HEARTBEAT_IVL_MS, _RECONNECT_IVL_MS, _Dispatcher,
                        _Job, _Peer, _now)
from ._batch import Batch
from ._errors import DaemonError, EpochChanged, Error, KeyFileError, VersionError
from ._wire import Status
from ._keys import _z85_key

PROTOCOL_VERSION = _wire.VERSION

DEFAULT_TIMEOUT = 60.0
DEFAULT_RESEND_TIMEOUT = 3.0
WINDOW_PER_ENDPOINT = 4      # default window: this many per endpoint
_MAX_RESTARTS = 8            # digest changes one epoch() call follows before it gives up


class Client(_Dispatcher):
    """Batches from one cutmixd daemon or several with the same config.

    endpoint        "tcp://host:port", "ipc:///path", or a list of them
    pipeline        pipeline name; rank/world: the shard
    window          batch requests in flight over all daemons (default 4 per
                    endpoint), at most the daemon's max_window per daemon
    timeout         longest wait for a needed reply before TimeoutError (s)
    resend_timeout  a request without reply for this long is sent again to
                    another daemon (s); for a daemon whose replies usually
                    take longer, 3 x its usual latency (at most 4 x
                    resend_timeout) so a loaded daemon is not flooded
    eval            ask for evaluation data (daemon refuses augmenting pipelines)
    digest          expected config digest (hex); default: the first reply's
    pin_digest      refuse a daemon whose digest differs from the pinned one
                    (DigestMismatch). Default: yes with several endpoints or
                    digest=; a client of one daemon follows that daemon
                    through a config reload (SIGHUP) unless pin_digest=True
    on_reload       an epoch is served from one config digest; when it changes
                    mid-epoch (daemon reloaded), "error" (default) raises
                    EpochChanged, "restart" starts the epoch over from its
                    first batch under the new config (``epoch_restarts``
                    counts it; Batch.index says where the data restarted)
    discovery_interval  seconds between resolutions of dns+tcp://NAME:PORT
                    endpoints (every A/AAAA record of NAME is a daemon; see
                    cutmixd._discovery); ``resolver(name, port) -> [address]``
                    replaces getaddrinfo (tests, service registries)
    shm             shared memory with local daemons: "auto" (default) for
                    ipc:// and tcp:// to a loopback address, True for any
                    endpoint (one on another host falls back to copies),
                    False never. Batches that come through it have
                    writable arrays on the slot, copy-on-write
                    (Batch.shm); see docs/PYTHON.md
    server_key      the daemons' CURVE public key (Z85): enables CURVE
    public_key, secret_key  this client's CURVE keypair (Z85); default: a
                    new one (fine when the daemons do not check client keys)
    """

    def __init__(self, endpoint: Union[str, bytes, Sequence[Union[str, bytes]]],
                 pipeline: str = "train", rank: int = 0, world: int = 1,
                 window: Optional[int] = None, timeout: float = DEFAULT_TIMEOUT,
                 eval: bool = False, context: Optional[zmq.Context] = None,
                 resend_timeout: float = DEFAULT_RESEND_TIMEOUT,
                 digest: Optional[Union[str, bytes]] = None,
                 pin_digest: Optional[bool] = None, server_key: Optional[str] = None,
                 public_key: Optional[str] = None, secret_key: Optional[str] = None,
                 on_reload: str = "error",
                 discovery_interval: float = _discovery.DEFAULT_INTERVAL,
                 resolver: Optional[_discovery.Resolver] = None,
                 shm: Union[str, bool] = "auto") -> None:
        self.endpoints = self._parse_endpoints(endpoint)
        self.endpoint = ", ".join(self.endpoints)
        static = self._init_discovery(discovery_interval, resolver)
        self.pipeline = pipeline
        self._pipeline_raw = _wire.encode_pipeline(pipeline)
        self.rank = int(rank)
        self.world = int(world)
        self._init_limits(window, static, timeout, resend_timeout)
        self.eval = bool(eval)
        self.on_reload = self._check_on_reload(on_reload)
        self.epoch_restarts = 0
        self._flags = _wire.FLAG_EXPECT_EVAL if self.eval else 0
        self.shm = _shm.check_mode(shm)
        self.shm_error = None    # why the last session could not be opened
        self._shm_with_info = False  # set by epoch(): INFO requests ask for sessions too
        self._ids = itertools.count(1)
        self._reqs = {}          # request_id -> _Req, every request not answered or forgotten
        self._jobs = []          # jobs not done, in the order they should be served
        self._rr = 0             # round-robin start among equally loaded daemons
        self._info = None
        self._init_digest(digest, pin_digest)
        self.dropped = 0         # replies nobody waited for any more (duplicates, late)
        self._replies = 0
        self._pid = os.getpid()
        self._closed = True
        curve = self._curve_options(server_key, public_key, secret_key)
        self._curve = curve is not None
        self._curve_opts = curve
        self.public_key = curve[1][1].decode() if curve else None
        self._ctx = context or zmq.Context.instance()
        self._connect_all(static)
        self._closed = False

    @staticmethod
    def _parse_endpoints(endpoint):
        """The endpoint argument as a list of stripped str, checked."""
        if isinstance(endpoint, (str, bytes)):
            endpoints = [endpoint]
        else:
            endpoints = list(endpoint)
        endpoints = [e.decode() if isinstance(e, bytes) else str(e) for e in endpoints]
        endpoints = [e.strip() for e in endpoints]
        if not endpoints:
            raise ValueError("cutmixd.Client: no endpoint given")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("cutmixd.Client: an endpoint is listed twice: %s" % endpoints)
        return endpoints

    def _init_discovery(self, discovery_interval, resolver):
        """The discovery sources of self.endpoints, resolved once now; the
        static endpoints (the others)."""
        if not float(discovery_interval) > 0:
            raise ValueError("cutmixd.Client: discovery_interval must be > 0, got %r"
                             % (discovery_interval,))
        self.discovery_interval = float(discovery_interval)
        self._sources = [_discovery.Source(e, resolver or _discovery.resolve_tcp,
                                           self.discovery_interval)
                         for e in self.endpoints if _discovery.is_discovery(e)]
        static = [e for e in self.endpoints if not _discovery.is_discovery(e)]
        now = _now()
        for src in self._sources:
            src.refresh(now)
        return static

    def _init_limits(self, window, static, timeout, resend_timeout):
        """window (default: WINDOW_PER_ENDPOINT per daemon known now),
        timeout and resend_timeout, checked."""
        if window is None:
            window = WINDOW_PER_ENDPOINT * (len(static) + sum(max(1, len(s.addrs))
                                                              for s in self._sources))
        if int(window) < 1:
            raise ValueError("cutmixd.Client: window must be >= 1, got %r" % (window,))
        self.window = int(window)
        self.timeout = float(timeout)
        if not self.timeout > 0:
            raise ValueError("cutmixd.Client: timeout must be > 0, got %r" % (timeout,))
        self.resend_timeout = float(resend_timeout)
        if not self.resend_timeout > 0:
            raise ValueError("cutmixd.Client: resend_timeout must be > 0, got %r"
                             % (resend_timeout,))

    def _init_digest(self, digest, pin_digest):
        """The digest= pin, and whether the first info's digest is pinned."""
        self._digest = None
        self._pinned_by = None
        if digest is not None:
            self._digest, self._pinned_by = self._parse_digest(digest), "the digest= argument"
        if pin_digest is None:
            pin_digest = len(self.endpoints) > 1 or digest is not None or bool(self._sources)
        self.pin_digest = bool(pin_digest)

    def _connect_all(self, static):
        """One DEALER per static and per resolved endpoint; on an error the
        sockets made so far are closed."""
        self._peers = []
        self._poller = zmq.Poller()
        self._by_sock = {}
        try:
            for e in static:
                self._add_peer(e)
            for src in self._sources:
                for e in src.endpoints():
                    self._add_peer(e, src)
        except Error:
            for p in self._peers:
                p.sock.close(0)
            raise

    def _add_peer(self, endpoint, source=None):
        """Connect one DEALER to endpoint; the new _Peer."""
        for p in self._peers:
            if p.endpoint == endpoint:
                return p  # listed statically and resolved too: one connection
        sock = self._ctx.socket(zmq.DEALER)
        try:
            self._setup_socket(sock, self._curve_opts)
            if "[" in endpoint:
                sock.setsockopt(zmq.IPV6, 1)
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise Error("cutmixd: cannot connect to %s: %s" % (endpoint, exc)) from None
        p = _Peer(len(self._peers), endpoint, sock)
        p.source = source
        self._peers.append(p)
        self._poller.register(sock, zmq.POLLIN)
        self._by_sock[sock] = p
        return p

    @staticmethod
    def _curve_options(server_key, public_key, secret_key):
        if server_key is None:
            if public_key is not None or secret_key is not None:
                raise ValueError("cutmixd.Client: public_key/secret_key need server_key "
                                 "(the daemons' public key)")
            return None
        if not zmq.has("curve"):
            raise Error("cutmixd: CURVE requested but this libzmq was built without it")
        sk = _z85_key(server_key, "server_key")
        if (public_key is None) != (secret_key is None):
            raise ValueError("cutmixd.Client: give both public_key and secret_key, or neither")
        if public_key is None:
            pk, sec = zmq.curve_keypair()
        else:
            pk = _z85_key(public_key, "public_key")
            sec = _z85_key(secret_key, "secret_key")
            if zmq.curve_public(sec) != pk:
                raise KeyFileError("cutmixd.Client: secret_key does not belong to public_key")
        return [(zmq.CURVE_SERVERKEY, sk), (zmq.CURVE_PUBLICKEY, pk), (zmq.CURVE_SECRETKEY, sec)]

    def _setup_socket(self, sock, curve):
        sock.setsockopt(zmq.LINGER, 0)
        # Requests only go to a live connection; a dropped connection takes
        # its queued requests with it (they are re-sent) instead of
        # delivering them late to a restarted daemon.
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_IVL_MS)
        sock.setsockopt(zmq.SNDHWM, max(1000, 4 * self.window))
        for name, value in (("CONNECT_TIMEOUT", _CONNECT_TIMEOUT_MS),
                            ("HEARTBEAT_IVL", _HEARTBEAT_IVL_MS),
                            ("HEARTBEAT_TIMEOUT",
                             int(1000 * max(3.0, self.resend_timeout)))):
            opt = getattr(zmq, name, None)
            if opt is not None:
                try:
                    sock.setsockopt(opt, value)
                except zmq.ZMQError:
                    pass
        for opt, value in curve or ():
            sock.setsockopt(opt, value)

    # -- public API ---------------------------------------------------------

    def info(self, endpoint: Optional[str] = None) -> Dict[str, Any]:
        """The daemon's description of this pipeline/shard (a dict); from
        any daemon, or from ``endpoint`` (one of this client's)."""
        job = self._request(_wire.INFO, only=self._peer_named(endpoint))
        hdr, frames, peer = self._wait(job, "info")
        info = self._json(hdr, frames, "info", peer)
        proto = info.get("protocol")
        if proto is not None and proto not in _wire.VERSIONS:
            raise VersionError(
                "cutmixd %s speaks protocol version %s, this client speaks %d"
                % (peer.endpoint, proto, PROTOCOL_VERSION))
        self._info = info
        return info

    def stats(self, endpoint: Optional[str] = None) -> Dict[str, Any]:
        """A daemon's counters (a dict); from any daemon, or from ``endpoint``."""
        job = self._request(_wire.STATS, only=self._peer_named(endpoint))
        hdr, frames, peer = self._wait(job, "stats")
        return self._json(hdr, frames, "stats", peer)

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch ``index`` of ``epoch`` for this shard."""
        job = self._request(_wire.BATCH, int(epoch), int(index))
        hdr, frames, peer = self._wait(job, "epoch %d batch %d" % (epoch, index))
        return self._make_batch(hdr, frames, peer, epoch, index)

    def epoch(self, epoch: int, start: int = 0, stop: Optional[int] = None,
              step: int = 1, on_reload: Optional[str] = None) -> Iterator[Batch]:
        """Yield batches start, start+step, ... (< stop) of ``epoch`` in order,
        keeping up to ``window`` requests in flight over the daemons. Every
        batch comes from one config digest (see ``on_reload``)."""
        if int(step) < 1:
            raise ValueError("cutmixd.Client.epoch: step must be >= 1")
        if int(start) < 0:
            raise ValueError("cutmixd.Client.epoch: start must be >= 0")
        mode = self.on_reload if on_reload is None else self._check_on_reload(on_reload)
        now = _now()
        self._shm_with_info = True  # an INFO sent from now on asks first
        for p in self._peers:  # sessions first: answered before the INFO below
            self._shm_ask(p, now)
        self.batches_per_epoch()
        window = self.effective_window()
        return self._epoch(int(epoch), (int(start), stop, int(step)), window, mode)

    @staticmethod
    def _check_on_reload(mode: str) -> str:
        if mode not in ("error", "restart"):
            raise ValueError("cutmixd.Client: on_reload must be 'error' or 'restart', got %r"
                             % (mode,))
        return mode

    def batches_per_epoch(self) -> int:
        if self._info is None:
            self.info()
        return int(self._info["batches_per_epoch"])

    def effective_window(self) -> int:
        """``window``, capped by the daemons' per-client ``max_window`` times
        the number of daemons."""
        if self._info is None:
            self.info()
        return min(self.window, self._cap() * max(1, len(self._usable_peers())))

    def peers(self) -> List[Dict[str, Any]]:
        """What this client knows of each daemon: a list of dicts with
        endpoint, state ('up', 'not connected', 'down', 'refused'),
        outstanding, requests, replies, batches (served to this client),
        resent (requests re-sent elsewhere after no reply), downs,
        disconnects, latency_s (usual reply time), last_reply_s (ago)."""
        now = _now()
        out = []
        for p in self._peers:
            out.append({
                "endpoint": p.endpoint, "state": self._state(p), "outstanding": len(p.live),
                "requests": p.requests, "replies": p.replies, "batches": p.batches,
                "resent": p.resent, "downs": p.downs, "disconnects": p.disconnects,
                "latency_s": p.latency,
                "last_reply_s": None if p.last_rx is None else now - p.last_rx,
            })
        return out

    def reset_digest(self, digest: Optional[Union[str, bytes]] = None) -> None:
        """Forget the pinned config digest (after a deliberate config change
        and reload of every daemon) and the daemons refused for it; the next
        reply pins again, or ``digest`` (hex) does."""
        self._digest, self._pinned_by = None, None
        if digest is not None:
            self._digest, self._pinned_by = self._parse_digest(digest), "the digest= argument"
        for p in self._peers:
            p.refused = None

    @staticmethod
    def _parse_digest(digest):
        try:
            d = bytes.fromhex(digest) if isinstance(digest, str) else bytes(digest)
        except (ValueError, TypeError):
            d = b""
        if len(d) != _wire.DIGEST_SIZE:
            raise ValueError("cutmixd.Client: digest must be %d bytes (64 hex digits), "
                             "got %r" % (_wire.DIGEST_SIZE, digest))
        return d

    @property
    def digest(self) -> Optional[str]:
        """The pinned config digest (hex; without pinning the latest seen),
        or None before the first reply."""
        return None if self._digest is None else self._digest.hex()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for p in self._peers:
                linger = 0
                if p.shm is not None:
                    p.shm.close(p.sock)  # the daemon frees its side at once
                    p.shm = None  # the mapping lives on in the views still held
                    p.shm_sessions.clear()
                    linger = 200  # ms: let that release leave
                p.sock.close(linger)
            self._reqs.clear()
            self._jobs.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
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

    @staticmethod
    def _epoch_digest(job):
        """The config digest (hex) a batch reply, or an error reply that a
        reload can cause (batch/epoch out of range, pipeline gone), came
        with; None for other errors."""
        if job.result is not None:
            return bytes(job.result[0].digest).hex()
        err = job.error
        if isinstance(err, DaemonError) and err.digest and err.code in (
                Status.BATCH_RANGE, Status.EPOCH_RANGE, Status.NO_PIPELINE, Status.BAD_SHARD):
            return err.digest
        return None

    def _make_batch(self, hdr, frames, p, epoch, index):
        b = make_batch(hdr, frames, p.endpoint, epoch, index, self.rank, self.world)
        p.batches += 1
        return b

    def _order(self, span):
        start, stop, step = span
        n = self.batches_per_epoch()
        return range(start, n if stop is None else min(int(stop), n), step)

    def _epoch(self, epoch, span, window, on_reload):
        """The batches of one epoch from ONE config digest: the digest of
        the INFO that said how many batches there are. A reload seen before
        anything was handed out re-reads INFO and starts over quietly;
        after that it is EpochChanged, or a restart with on_reload="restart"."""
        self._check_usable()
        jobs = {}  # position in order -> job, not yet handed out
        nxt_send = nxt_yield = 0
        order = self._order(span)
        n = len(order)
        want = self._info.get("config_digest")
        restarts = 0
        try:
            deadline = _now() + self.timeout
            while nxt_yield < n:
                # Ask for the next batches: at most `window` held by this
                # iteration (in flight or waiting to be handed out).
                while nxt_send < n and nxt_send - nxt_yield < window:
                    job = _Job(_wire.BATCH, epoch, order[nxt_send])
                    self._jobs.append(job)
                    jobs[nxt_send] = job
                    nxt_send += 1
                    if not self._dispatch(job, _now()):
                        break
                job = jobs[nxt_yield]
                if job.done:
                    del jobs[nxt_yield]
                    got = self._epoch_digest(job)
                    if want is not None and got is not None and got != want and not nxt_yield:
                        # Reloaded before this epoch's first batch: if the
                        # new INFO names this digest and the same batches,
                        # the epoch is simply the new generation's.
                        self.info()
                        if self._info.get("config_digest") == got and \
                                self._order(span) == order:
                            want = got
                    if want is not None and got is not None and got != want:
                        # Another generation: restart quietly when nothing
                        # was handed out yet, else error or restart.
                        restarts += 1
                        if (nxt_yield and on_reload == "error") or restarts > _MAX_RESTARTS:
                            raise EpochChanged(job.result[2].endpoint if job.result else
                                               job.error.endpoint, epoch, order[nxt_yield],
                                               nxt_yield, got, want)
                        if nxt_yield:
                            self.epoch_restarts += 1
                            self.info()
                        for j in jobs.values():
                            self._abandon(j)
                        jobs.clear()
                        order = self._order(span)
                        n, want = len(order), self._info.get("config_digest")
                        nxt_send = nxt_yield = 0
                        continue
                    hdr, frames, p = self._take(job)
                    b = self._make_batch(hdr, frames, p, epoch, order[nxt_yield])
                    nxt_yield += 1
                    yield b
                    deadline = _now() + self.timeout
                    continue
                if _now() >= deadline:
                    raise self._timeout_error("epoch %d batch %d" % (epoch, order[nxt_yield]), job)
                self._check_refused_all()
                self._pump(deadline)
        finally:
            for job in jobs.values():
                self._abandon(job)
