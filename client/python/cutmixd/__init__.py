"""Python client for cutmixd, the augmenting JPEG batch server.

    import cutmixd
    with cutmixd.Client(["tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555"],
                        pipeline="train", rank=0, world=1) as c:
        info = c.info()                    # dict: dataset_size, num_classes, ...
        for b in c.epoch(3):               # batches 0.. of epoch 3, in order
            x, y, meta = b.images, b.labels, b.meta

One daemon or several. A batch is a pure function of (config, seed,
pipeline, epoch, rank, world, batch index), so any daemon with the same
config and data can serve any batch. The client keeps one DEALER socket per
endpoint (it knows which daemon each request went to) and spreads the
``window`` of requests over the daemons that are reachable, least
outstanding first; batches are handed out in batch order from a reorder
buffer whatever daemon served them.

Failures. A request that has had no reply for ``resend_timeout`` seconds
(default 3; longer for a daemon whose replies are slow anyway, see
``Client``) is sent again to another daemon; the first reply for a batch
wins, later duplicates are dropped by request_id. Requests on a connection
that drops (daemon killed, restarted) are re-sent at once. A daemon that
stays silent is marked down and probed with a small INFO request after a
back-off (0.1 s doubling to 2 s); it is used again as soon as it answers.
Nothing waits longer than ``timeout`` seconds (default 60) for the batch it
needs: then :class:`cutmixd.TimeoutError` names every endpoint and its state.

Every reply carries the daemon's config digest. With several endpoints the
first reply fixes it (or ``digest=`` does); a daemon whose digest differs is
refused from then on and :class:`cutmixd.DigestMismatch` names it. A client
of a single daemon follows that daemon through a config reload unless
``pin_digest=True``.

Security: ``server_key=``, ``public_key=``, ``secret_key=`` (Z85 strings,
see :func:`load_keypair`) switch every connection to ZeroMQ CURVE.

Images, labels and metadata are zero-copy numpy views on the received
ZeroMQ frames (the frames belong to the Batch alone, so writing into them in
place is allowed; the memory lives as long as any view of it). A Client is
not thread safe and must not cross a fork(): create one per thread/process.
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
    META_DTYPE_V1,
    META_SIZE,
    OP_TABLE,
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
    "TimeoutError", "DigestMismatch", "KeyFileError", "Status", "META_DTYPE",
    "META_DTYPE_V1", "OP_TABLE",
    "PROTOCOL_VERSION", "META_SIZE", "OP_NONE", "OP_CUTMIX", "OP_MIXUP", "OP_NAMES",
    "SAMPLE_OK", "SAMPLE_REPLACED", "meta_dtype", "status_name", "load_keypair",
    "load_public_key", "curve_keypair",
]

__version__ = "0.2.0"
PROTOCOL_VERSION = _wire.VERSION

DEFAULT_TIMEOUT = 60.0
DEFAULT_RESEND_TIMEOUT = 3.0
WINDOW_PER_ENDPOINT = 4      # default window: this many per endpoint

# Tuning of the failure handling (seconds).
_PROBE_BACKOFF_MIN = 0.1     # first probe of a daemon marked down
_PROBE_BACKOFF_MAX = 2.0
_BUSY_BACKOFF_MIN = 0.01     # BUSY replies: retry after this, doubling
_BUSY_BACKOFF_MAX = 1.0
_LATENCY_FACTOR = 3.0        # resend after max(resend_timeout, 3 x usual latency) ...
_RESEND_CAP_FACTOR = 4.0     # ... but never later than 4 x resend_timeout
_CHECK_INTERVAL = 0.1        # look for dropped connections this often while waiting
_RECONNECT_IVL_MS = 100
_CONNECT_TIMEOUT_MS = 2000
_HEARTBEAT_IVL_MS = 1000


class Error(Exception):
    """Base class of every cutmixd client error."""


class DaemonError(Error):
    """The daemon answered a request with an ERROR reply.

    ``code`` is the wire status (a :class:`Status` when known), ``name`` its
    symbolic name ("BUSY", "NOT_EVAL", ...), ``message`` the daemon's text,
    ``endpoint`` the daemon that said it."""

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


class DigestMismatch(Error):
    """A daemon's config digest differs from the one this client pinned (from
    the first reply, or from ``digest=``): it runs another config or other
    data, so its batches would differ. The daemon is refused from then on.

    ``endpoint`` the refused daemon, ``digest`` its digest (hex),
    ``expected`` the pinned digest, ``pinned_by`` where that came from."""

    def __init__(self, endpoint, digest, expected, pinned_by):
        self.endpoint = endpoint
        self.digest = digest
        self.expected = expected
        self.pinned_by = pinned_by
        super().__init__(
            "cutmixd %s: config digest %s differs from %s (pinned by %s): refusing "
            "this daemon; every daemon of a client must run the same config and data"
            % (endpoint, digest[:16], expected[:16], pinned_by))


class KeyFileError(Error, ValueError):
    """A CURVE key file or key that cannot be used."""


# -- CURVE keys ------------------------------------------------------------------

_Z85_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       ".-:+=^!/*?&<>()[]{}@%$#")


def _z85_key(key, what):
    """A Z85 CURVE key (40 characters) as bytes, or KeyFileError."""
    if isinstance(key, (bytes, bytearray)):
        try:
            key = bytes(key).decode("ascii")
        except UnicodeDecodeError:
            raise KeyFileError("%s: not a Z85 key (non-ASCII bytes)" % what) from None
    if not isinstance(key, str):
        raise KeyFileError("%s: expected a Z85 string, got %s" % (what, type(key).__name__))
    key = key.strip()
    if not _is_z85_key(key):
        raise KeyFileError("%s: not a Z85-encoded CURVE key (40 characters of the Z85 "
                           "alphabet), got %d characters" % (what, len(key)))
    return key.encode("ascii")


def _is_z85_key(text):
    """40 Z85 characters that decode to 32 bytes and encode back (a group
    of five characters can exceed 2^32)."""
    if len(text) != 40 or not set(text) <= _Z85_CHARS:
        return False
    from zmq.utils import z85
    try:
        return z85.encode(z85.decode(text.encode("ascii"))).decode("ascii") == text
    except (ValueError, struct.error, OverflowError):
        return False


def _read_key_file(path):
    """{'public-key': (str, line), 'secret-key': (str, line)} from a key
    file: lines ``name = value`` (value optionally in double quotes), a bare
    key (a public key), '#' comment lines, blank lines; section words
    without '=' (ZeroMQ zcert files: 'curve', 'metadata') are skipped."""
    path = os.fspath(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise KeyFileError("%s: cannot read key file: %s" % (path, exc.strerror or exc)) from None
    except UnicodeDecodeError:
        raise KeyFileError("%s: not a text key file" % path) from None
    keys = {}
    for n, line in enumerate(lines, 1):
        s = line.strip().lstrip("\ufeff")
        if _is_z85_key(s):  # a bare key (may begin with '#': Z85 has it)
            if "public-key" in keys:
                raise KeyFileError("%s:%d: public-key given twice" % (path, n))
            keys["public-key"] = (s, n)
            continue
        if not s or s.startswith("#"):
            continue
        if "=" not in s:
            if s.replace("-", "").replace("_", "").isalnum():
                continue  # a zcert section word
            raise KeyFileError("%s:%d: expected 'public-key = <Z85>' or 'secret-key = <Z85>'"
                               % (path, n))
        name, value = s.split("=", 1)  # Z85 itself may contain '='
        name, value = name.strip().lower().replace("_", "-"), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name in ("public-key", "secret-key"):
            if name in keys:
                raise KeyFileError("%s:%d: %s given twice" % (path, n, name))
            keys[name] = (_z85_key(value, "%s:%d: %s" % (path, n, name)).decode(), n)
    return keys


def load_keypair(path):
    """(public, secret) Z85 strings from a key file written by
    ``cutmixd keygen NAME`` (NAME.key). The secret key must belong to the
    public key."""
    keys = _read_key_file(path)
    for name in ("public-key", "secret-key"):
        if name not in keys:
            raise KeyFileError("%s: no '%s = ...' line (a keypair file, NAME.key, has both "
                               "public-key and secret-key)" % (os.fspath(path), name))
    public, secret = keys["public-key"][0], keys["secret-key"][0]
    if zmq.has("curve") and zmq.curve_public(secret.encode()).decode() != public:
        raise KeyFileError("%s: the secret key does not belong to the public key"
                           % os.fspath(path))
    return public, secret


def load_public_key(path):
    """The public key (Z85 string) of a key file: NAME.pub, or NAME.key."""
    keys = _read_key_file(path)
    if "public-key" not in keys:
        raise KeyFileError("%s: no 'public-key = ...' line" % os.fspath(path))
    return keys["public-key"][0]


def curve_keypair():
    """A new (public, secret) pair of Z85 strings (zmq_curve_keypair)."""
    if not zmq.has("curve"):
        raise Error("cutmixd: this libzmq was built without CURVE")
    pub, sec = zmq.curve_keypair()
    return pub.decode(), sec.decode()


# -- batches -----------------------------------------------------------------------

class Batch:
    """One batch as received.

    images      numpy view [B,H,W,C] (nhwc) or [B,C,H,W] (nchw), uint8 or float32
    labels      numpy view float32 [B, K] (soft labels)
    meta        numpy structured array (META_DTYPE), one record per sample
    raw_frames  the frames exactly as received: header, images, labels, meta
                (the header's request_id, bytes 16..23, differs between runs)
    digest      config digest (hex) of the daemon that made it
    endpoint    the daemon that served it
    """

    __slots__ = ("epoch", "index", "rank", "world", "images", "labels", "meta",
                 "raw_frames", "digest", "header", "flags", "request_id",
                 "batches_per_epoch", "layout", "endpoint", "_frames")

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
        return "<cutmixd.Batch epoch=%d index=%d/%d size=%d images=%s%s %s from %s>" % (
            self.epoch, self.index, self.batches_per_epoch, self.size,
            self.images.dtype, list(self.images.shape), self.layout, self.endpoint)


def _now():
    return time.monotonic()


# -- internal state ----------------------------------------------------------------

class _Peer:
    """One daemon: its DEALER socket and what this client knows of it."""

    def __init__(self, index, endpoint, sock):
        self.index = index
        self.endpoint = endpoint
        self.sock = sock
        self.live = {}          # request_id -> _Req: outstanding, counted in the window
        self.down = False       # silent: not used until a probe is answered
        self.refused = None     # DigestMismatch: never used again
        self.last_rx = None     # time of its last reply
        self.probe_at = 0.0
        self.probe_rid = None
        self.backoff = _PROBE_BACKOFF_MIN
        self.latency = None     # EWMA of request -> reply seconds
        self.requests = 0
        self.replies = 0
        self.batches = 0
        self.resent = 0         # requests re-sent elsewhere after no reply here
        self.downs = 0
        self.disconnects = 0

    def writable(self):
        """True when the socket has a live connection (ZMQ_IMMEDIATE: a
        DEALER without one cannot send)."""
        try:
            return bool(self.sock.getsockopt(zmq.EVENTS) & zmq.POLLOUT)
        except zmq.ZMQError:
            return False


class _Req:
    __slots__ = ("rid", "job", "peer", "sent", "live")

    def __init__(self, rid, job, peer, sent):
        self.rid, self.job, self.peer, self.sent, self.live = rid, job, peer, sent, True


class _Job:
    """One thing asked for (an INFO, a STATS, one batch), sent once or more."""

    __slots__ = ("type", "epoch", "batch", "pipeline", "only", "rids", "done", "result",
                 "error", "retry_at", "backoff", "sends")

    def __init__(self, type, epoch=0, batch=0, pipeline=None, only=None):
        self.type, self.epoch, self.batch = type, epoch, batch
        self.pipeline = pipeline   # raw name; None = the client's
        self.only = only           # a _Peer, or None for any
        self.rids = set()          # request ids still in Client._reqs
        self.done = False
        self.result = None         # (header, frames, peer)
        self.error = None
        self.retry_at = 0.0
        self.backoff = 0.0
        self.sends = 0


class Client:
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
    server_key      the daemons' CURVE public key (Z85): enables CURVE
    public_key, secret_key  this client's CURVE keypair (Z85); default: a
                    new one (fine when the daemons do not check client keys)
    """

    def __init__(self, endpoint, pipeline="train", rank=0, world=1, window=None,
                 timeout=DEFAULT_TIMEOUT, eval=False, context=None,
                 resend_timeout=DEFAULT_RESEND_TIMEOUT, digest=None, pin_digest=None,
                 server_key=None, public_key=None, secret_key=None):
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
        self.endpoints = endpoints
        self.endpoint = ", ".join(self.endpoints)
        self.pipeline = pipeline
        self._pipeline_raw = _wire.encode_pipeline(pipeline)
        self.rank = int(rank)
        self.world = int(world)
        if window is None:
            window = WINDOW_PER_ENDPOINT * len(endpoints)
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
        self.eval = bool(eval)
        self._flags = _wire.FLAG_EXPECT_EVAL if self.eval else 0
        self._ids = itertools.count(1)
        self._reqs = {}          # request_id -> _Req, every request not answered or forgotten
        self._jobs = []          # jobs not done, in the order they should be served
        self._rr = 0             # round-robin start among equally loaded daemons
        self._info = None
        self._digest = None
        self._pinned_by = None
        if digest is not None:
            self._digest, self._pinned_by = self._parse_digest(digest), "the digest= argument"
        if pin_digest is None:
            pin_digest = len(self.endpoints) > 1 or digest is not None
        self.pin_digest = bool(pin_digest)
        self.dropped = 0         # replies nobody waited for any more (duplicates, late)
        self._replies = 0
        self._pid = os.getpid()
        self._closed = True
        curve = self._curve_options(server_key, public_key, secret_key)
        self._curve = curve is not None
        self.public_key = curve[1][1].decode() if curve else None
        self._ctx = context or zmq.Context.instance()
        self._peers = []
        try:
            for i, e in enumerate(self.endpoints):
                sock = self._ctx.socket(zmq.DEALER)
                self._peers.append(_Peer(i, e, sock))
                self._setup_socket(sock, curve)
                sock.connect(e)
        except zmq.ZMQError as exc:
            for p in self._peers:
                p.sock.close(0)
            raise Error("cutmixd: cannot connect to %s: %s" % (e, exc)) from None
        self._poller = zmq.Poller()
        for p in self._peers:
            self._poller.register(p.sock, zmq.POLLIN)
        self._by_sock = {p.sock: p for p in self._peers}
        self._closed = False

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

    def info(self, endpoint=None):
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

    def stats(self, endpoint=None):
        """A daemon's counters (a dict); from any daemon, or from ``endpoint``."""
        job = self._request(_wire.STATS, only=self._peer_named(endpoint))
        hdr, frames, peer = self._wait(job, "stats")
        return self._json(hdr, frames, "stats", peer)

    def batch(self, epoch, index):
        """Batch ``index`` of ``epoch`` for this shard."""
        job = self._request(_wire.BATCH, int(epoch), int(index))
        hdr, frames, peer = self._wait(job, "epoch %d batch %d" % (epoch, index))
        return self._make_batch(hdr, frames, peer, epoch, index)

    def epoch(self, epoch, start=0, stop=None, step=1):
        """Yield batches start, start+step, ... (< stop) of ``epoch`` in order,
        keeping up to ``window`` requests in flight over the daemons."""
        n = self.batches_per_epoch()
        stop = n if stop is None else min(int(stop), n)
        if int(step) < 1:
            raise ValueError("cutmixd.Client.epoch: step must be >= 1")
        if int(start) < 0:
            raise ValueError("cutmixd.Client.epoch: start must be >= 0")
        window = self.effective_window()
        return self._epoch(int(epoch), range(int(start), stop, int(step)), window)

    def batches_per_epoch(self):
        if self._info is None:
            self.info()
        return int(self._info["batches_per_epoch"])

    def effective_window(self):
        """``window``, capped by the daemons' per-client ``max_window`` times
        the number of daemons."""
        if self._info is None:
            self.info()
        return min(self.window, self._cap() * len(self._peers))

    def peers(self):
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

    def reset_digest(self, digest=None):
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
    def digest(self):
        """The pinned config digest (hex; without pinning the latest seen),
        or None before the first reply."""
        return None if self._digest is None else self._digest.hex()

    def close(self):
        if not self._closed:
            self._closed = True
            for p in self._peers:
                p.sock.close(0)
            self._reqs.clear()
            self._jobs.clear()

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

    # -- internals: bookkeeping ------------------------------------------------

    def _check_usable(self):
        if self._closed:
            raise Error("cutmixd.Client: used after close()")
        if os.getpid() != self._pid:
            raise Error("cutmixd.Client: used after fork(); create one client per process")

    def _peer_named(self, endpoint):
        if endpoint is None:
            return None
        for p in self._peers:
            if p.endpoint == endpoint:
                return p
        raise ValueError("cutmixd.Client: %r is not one of this client's endpoints %s"
                         % (endpoint, self.endpoints))

    def _cap(self):
        """Most requests outstanding on one daemon (its max_window)."""
        cap = self.window
        if self._info is not None:
            mw = self._info.get("max_window")
            if isinstance(mw, int) and mw > 0:
                cap = min(cap, mw)
        return max(1, cap)

    def _live_total(self):
        return sum(len(p.live) for p in self._peers)

    def _resend_after(self, peer):
        r = self.resend_timeout
        if peer.latency is not None:
            r = min(max(r, _LATENCY_FACTOR * peer.latency), _RESEND_CAP_FACTOR * r)
        return r

    def _state(self, p):
        if p.refused is not None:
            return "refused"
        if p.down:
            return "down"
        return "up" if p.writable() else "not connected"

    def _describe(self):
        now = _now()
        parts = []
        for p in self._peers:
            s = self._state(p)
            if p.last_rx is None:
                s += ", never answered"
            else:
                s += ", last reply %.1fs ago" % (now - p.last_rx)
            parts.append("%s: %s" % (p.endpoint, s))
        return "; ".join(parts)

    def _timeout_error(self, what, job):
        head = "no reply" if job.sends else "no daemon reachable"
        hint = ""
        if self._curve:
            hint = " (CURVE: does server_key match the daemons' key, and do they " \
                   "authorize this client's public key?)"
        return TimeoutError(
            "cutmixd: %s at %s within %gs (%s; pipeline %r): is a daemon running and "
            "listening there?%s [%s]" % (head, self.endpoint, self.timeout, what,
                                         self.pipeline, hint, self._describe()))

    def _request(self, type, epoch=0, batch=0, only=None):
        self._check_usable()
        job = _Job(type, epoch, batch, only=only)
        self._jobs.insert(0, job)   # a lone request goes before an epoch's
        self._dispatch(job, _now())
        return job

    def _expire(self, req, now):
        """A request whose reply will probably never come: stop counting it
        (a late reply is still taken)."""
        if req.live:
            req.live = False
            req.peer.live.pop(req.rid, None)
            if req.job is not None and not req.job.done:
                req.peer.resent += 1

    def _abandon(self, job):
        """Nobody wants this job any more; its outstanding requests still
        count until they are answered or expire."""
        if not job.done:
            job.done = True
            try:
                self._jobs.remove(job)
            except ValueError:
                pass
        job.result = None

    def _finish(self, job):
        job.done = True
        try:
            self._jobs.remove(job)
        except ValueError:
            pass

    def _has_live(self, job):
        for rid in job.rids:
            req = self._reqs.get(rid)
            if req is not None and req.live:
                return True
        return False

    def _mark_down(self, p, now, why):
        for req in list(p.live.values()):
            self._expire(req, now)
        if not p.down:
            p.down = True
            p.downs += 1
            p.probe_at = now + p.backoff
            p.probe_rid = None
            p.backoff = min(p.backoff * 2, _PROBE_BACKOFF_MAX)

    # -- internals: sending -------------------------------------------------------

    def _send_on(self, p, job, type, epoch=0, batch=0, pipeline=None, now=None):
        """Send one request on p; the request id, or None if p cannot take it."""
        rid = next(self._ids)
        pl = self._pipeline_raw if pipeline is None else pipeline
        frame = _wire.encode_request(type, rid, pl, epoch=epoch, batch=batch,
                                     rank=self.rank, world=self.world, flags=self._flags)
        try:
            p.sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return None
        now = _now() if now is None else now
        req = _Req(rid, job, p, now)
        self._reqs[rid] = req
        p.requests += 1
        if job is not None:
            p.live[rid] = req
            job.rids.add(rid)
            job.sends += 1
        else:
            req.live = False  # probes do not count in the window
        return rid

    def _dispatch(self, job, now):
        """Send job to the least loaded usable daemon, preferring one that
        has not had it yet. True if sent."""
        if job.done or job.retry_at > now:
            return False
        if self._live_total() >= self.window:
            return False
        cap = self._cap()
        cands = [p for p in ([job.only] if job.only is not None else self._peers)
                 if p.refused is None and not p.down and len(p.live) < cap]
        if not cands:
            return False
        tried = set()
        for rid in job.rids:
            req = self._reqs.get(rid)
            if req is not None:
                tried.add(req.peer)
        n = len(self._peers)
        cands.sort(key=lambda p: (p in tried, len(p.live), (p.index - self._rr) % n))
        for p in cands:
            if not p.writable():
                continue
            rid = self._send_on(p, job, job.type, job.epoch, job.batch, job.pipeline, now)
            if rid is not None:
                self._rr = (p.index + 1) % n
                return True
        return False

    def _dispatch_pending(self, now):
        for job in list(self._jobs):
            if job.done or job.retry_at > now or self._has_live(job):
                continue
            self._dispatch(job, now)
            if self._live_total() >= self.window:
                break

    # -- internals: receiving -------------------------------------------------------

    def _drain(self, p):
        while True:
            try:
                frames = p.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._on_reply(p, frames)

    def _drain_all(self):
        for p in self._peers:
            self._drain(p)

    def _on_reply(self, p, frames):
        now = _now()
        if frames and len(frames) > 1 and len(frames[0]) == 0:
            frames = frames[1:]  # an empty delimiter (REQ-style envelope)
        if not frames:
            raise ProtocolError("cutmixd %s: empty message" % p.endpoint)
        head = frames[0].bytes
        if len(head) >= 8:
            magic, version, type_ = struct.unpack_from("<IHH", head)
            if magic == _wire.REPLY_MAGIC and version not in _wire.VERSIONS:
                msg = ""
                if type_ == _wire.ERROR and len(frames) > 1:
                    msg = ": " + frames[1].bytes.decode("utf-8", "replace")
                raise VersionError(
                    "cutmixd %s speaks protocol version %d, this client speaks %d%s"
                    % (p.endpoint, version, _wire.VERSION, msg))
        try:
            hdr = _wire.decode_reply(head)
        except ValueError as exc:
            raise ProtocolError("cutmixd %s: %s" % (p.endpoint, exc)) from None
        p.last_rx = now
        p.replies += 1
        self._replies += 1
        rid = hdr.request_id
        req = self._reqs.pop(rid, None)
        if req is not None:
            if req.live:
                req.live = False
                req.peer.live.pop(rid, None)
                lat = now - req.sent
                p.latency = lat if p.latency is None else 0.8 * p.latency + 0.2 * lat
            if req.job is not None:
                req.job.rids.discard(rid)
        if hdr.type != _wire.ERROR and p.refused is None:
            self._check_digest(p, hdr, now)
        stopping = hdr.type == _wire.ERROR and hdr.status == Status.SHUTTING_DOWN
        if p.down and not stopping:
            # Any other reply, a probe's or a late one: it is back. (The
            # probe back-off only starts again from its minimum once it has
            # served something: a daemon that answers probes but not
            # batches is tried less and less often.)
            p.down = False
            p.probe_rid = None
        if req is not None and req.job is not None and not stopping \
                and hdr.type != _wire.ERROR:
            p.backoff = _PROBE_BACKOFF_MIN
        if req is None or req.job is None or req.job.done:
            if req is None or req.job is not None:
                self.dropped += 1
            return
        job = req.job
        if hdr.type == _wire.ERROR:
            if hdr.status == Status.BUSY:
                job.backoff = min(max(job.backoff * 2, _BUSY_BACKOFF_MIN), _BUSY_BACKOFF_MAX)
                job.retry_at = now + job.backoff
                return
            if hdr.status == Status.SHUTTING_DOWN:
                # This daemon is stopping (a restart?): ask another one, and
                # this one again once it answers a probe.
                self._mark_down(p, now, "shutting down")
                return
            msg = frames[1].bytes.decode("utf-8", "replace") if len(frames) > 1 else ""
            job.error = DaemonError(hdr.status, msg, p.endpoint, rid)
        else:
            job.result = (hdr, frames, p)
        self._finish(job)

    def _check_digest(self, p, hdr, now):
        d = bytes(hdr.digest)
        if not self.pin_digest:
            self._digest = d  # one daemon, followed through config reloads
            return
        if self._digest is None:
            self._digest, self._pinned_by = d, "the first reply, from %s" % p.endpoint
            return
        if d != self._digest:
            err = DigestMismatch(p.endpoint, d.hex(), self._digest.hex(), self._pinned_by)
            p.refused = err
            for req in list(p.live.values()):
                self._expire(req, now)
            raise err

    # -- internals: the loop ----------------------------------------------------------

    def _maintain(self, now):
        """Expire requests that will not be answered, mark silent daemons
        down, probe daemons that are down."""
        for p in self._peers:
            if p.refused is not None:
                continue
            if p.live:
                if not p.writable():
                    # The connection dropped (daemon killed or restarted,
                    # heartbeat timeout): what was sent on it is lost.
                    p.disconnects += 1
                    for req in list(p.live.values()):
                        self._expire(req, now)
                else:
                    after = self._resend_after(p)
                    old = [r for r in p.live.values() if now - r.sent > after]
                    if old:
                        if p.last_rx is None or now - p.last_rx > after:
                            self._mark_down(p, now, "silent")
                        else:
                            for req in old:
                                self._expire(req, now)
            if p.down:
                if p.probe_rid is not None:
                    req = self._reqs.get(p.probe_rid)
                    if req is None or now - req.sent > self._resend_after(p):
                        self._reqs.pop(p.probe_rid, None)
                        p.probe_rid = None
                        p.probe_at = now + p.backoff
                        p.backoff = min(p.backoff * 2, _PROBE_BACKOFF_MAX)
                elif now >= p.probe_at:
                    rid = None
                    if p.writable():
                        rid = self._send_on(p, None, _wire.INFO, now=now)
                    if rid is None:
                        p.probe_at = now + p.backoff
                        p.backoff = min(p.backoff * 2, _PROBE_BACKOFF_MAX)
                    else:
                        p.probe_rid = rid
        # Forget requests so old that nobody will take their replies.
        if len(self._reqs) > 4 * self.window + 64:
            limit = 2 * max(self.timeout, _RESEND_CAP_FACTOR * self.resend_timeout)
            for rid, req in list(self._reqs.items()):
                if not req.live and now - req.sent > limit:
                    del self._reqs[rid]
                    if req.job is not None:
                        req.job.rids.discard(rid)

    def _next_wake(self, now, until):
        t = until
        if any(p.live for p in self._peers):
            t = min(t, now + _CHECK_INTERVAL)
        for p in self._peers:
            if p.live:
                oldest = min(r.sent for r in p.live.values())
                t = min(t, oldest + self._resend_after(p) + 0.001)
            if p.down and p.refused is None:
                if p.probe_rid is None:
                    t = min(t, p.probe_at)
                else:
                    req = self._reqs.get(p.probe_rid)
                    if req is not None:
                        t = min(t, req.sent + self._resend_after(p) + 0.001)
        room = self._live_total() < self.window
        for job in self._jobs:
            if job.retry_at > now:
                t = min(t, job.retry_at)
            elif room and not self._has_live(job):
                t = min(t, now + 0.02)  # waiting for a connection
        return max(t, now)

    def _pump(self, until):
        """One round: take what arrived, look after failures, send what can
        be sent, then wait for a reply until `until` at most."""
        now = _now()
        seen = self._replies
        self._drain_all()
        self._maintain(now)
        self._dispatch_pending(now)
        if self._replies != seen:
            return  # the caller looks at what arrived before anything waits
        wake = self._next_wake(now, until)
        ms = max(0, int((wake - _now()) * 1000 + 0.999))
        for sock, _ in self._poller.poll(ms):
            self._drain(self._by_sock[sock])

    def _wait(self, job, what):
        try:
            deadline = _now() + self.timeout
            while not job.done:
                if _now() >= deadline:
                    raise self._timeout_error(what, job)
                self._check_refused_all()
                self._pump(deadline)
        except BaseException:
            self._abandon(job)
            raise
        return self._take(job)

    def _check_refused_all(self):
        if all(p.refused is not None for p in self._peers):
            raise Error("cutmixd: every daemon was refused (config digest differs from %s, "
                        "pinned by %s): %s" % (self._digest.hex()[:16], self._pinned_by,
                                               self.endpoint))

    def _take(self, job):
        if job.error is not None:
            raise job.error
        return job.result

    def _json(self, hdr, frames, what, p):
        want = {"info": _wire.INFO, "stats": _wire.STATS}[what]
        if hdr.type != want or len(frames) != 2:
            raise ProtocolError("cutmixd %s: %s reply of type %d with %d frames"
                                % (p.endpoint, what, hdr.type, len(frames)))
        try:
            return json.loads(frames[1].bytes.decode("utf-8"))
        except ValueError as exc:
            raise ProtocolError("cutmixd %s: %s reply is not JSON: %s"
                                % (p.endpoint, what, exc)) from None

    def _make_batch(self, hdr, frames, p, epoch, index):
        ep = p.endpoint
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
        p.batches += 1
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
        b.raw_frames = [f.buffer for f in frames]
        b.images = np.frombuffer(frames[1].buffer, dtype=dt).reshape(shape)
        b.labels = np.frombuffer(frames[2].buffer, dtype="<f4").reshape(B, K)
        b.meta = np.frombuffer(frames[3].buffer, dtype=meta_dtype(hdr.meta_size), count=B)
        return b

    def _epoch(self, epoch, order, window):
        self._check_usable()
        jobs = {}  # position in order -> job, not yet handed out
        nxt_send = nxt_yield = 0
        n = len(order)
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
