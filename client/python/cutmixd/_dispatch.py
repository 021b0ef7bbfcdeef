"""The multi-daemon scheduler of the client: one DEALER per daemon, the
window spread over the reachable ones (least outstanding first), resend
after a timeout or a dropped connection, down/probe/rejoin, digest pinning.
Client (``_client``) adds the public API on top of ``_Dispatcher``."""

import json
import os
import struct
import time

import zmq

from . import _shm
from . import _wire
from ._errors import DaemonError, DigestMismatch, Error, ProtocolError, TimeoutError, \
    VersionError
from ._wire import Status

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
        self.source = None      # the dns+tcp:// endpoint that named it, if any
        self.gone = False       # its address vanished from DNS: no new requests
        self.shm = None         # _shm.Session once open
        self.shm_sessions = {}  # id -> Session: the current one and earlier ones
        self.shm_state = 0      # 0 not asked, 1 SHM_OPEN sent, 2 open, -1 not offered
        self.shm_rid = None     # request id of the SHM_OPEN in flight

    def writable(self):
        """True when the socket has a live connection (ZMQ_IMMEDIATE: a
        DEALER without one cannot send)."""
        try:
            return bool(self.sock.getsockopt(zmq.EVENTS) & zmq.POLLOUT)
        except zmq.ZMQError:
            return False


class _Req:
    __slots__ = ("rid", "job", "peer", "sent", "live", "shm", "shm_free")

    def __init__(self, rid, job, peer, sent):
        self.rid, self.job, self.peer, self.sent, self.live = rid, job, peer, sent, True
        self.shm = None  # the session a batch request asked to use
        self.shm_free = False  # ... when it surely had a free slot then


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


class _Dispatcher:
    """The internals of Client: bookkeeping, sending, receiving, the loop.
    Client.__init__ sets the attributes used here (_peers, _reqs, _jobs,
    window, timeout, resend_timeout, ...)."""

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

    def _usable_peers(self):
        return [p for p in self._peers if not p.gone]

    def _discover(self, now):
        """Re-resolve the dns+tcp:// endpoints that are due: connect new
        addresses; an address that vanished gets no new request and its
        outstanding ones are re-sent elsewhere; one that vanished at an
        earlier resolution is closed now (late replies had their chance)."""
        for src in self._sources:
            if not src.refresh(now):
                continue
            want = set(src.endpoints())
            for p in [p for p in self._peers if p.source is src and p.gone
                      and p.endpoint not in want]:
                self._remove_peer(p)
            have = {p.endpoint: p for p in self._peers if p.source is src}
            for e in sorted(want):
                p = have.get(e)
                if p is None:
                    self._add_peer(e, src)
                elif p.gone:
                    p.gone = False
                    p.down = False
            for e, p in have.items():
                if e not in want and not p.gone:
                    for req in list(p.live.values()):
                        self._expire(req, now)
                    p.gone = True

    def _remove_peer(self, p):
        self._poller.unregister(p.sock)
        del self._by_sock[p.sock]
        if p.shm is not None:
            p.shm.close(p.sock)  # its daemon frees the session now
            p.shm = None
            p.shm_sessions.clear()
        p.sock.close(200 if p.shm_state == 2 else 0)
        self._peers.remove(p)
        for rid, req in list(self._reqs.items()):
            if req.peer is p:
                del self._reqs[rid]
                if req.job is not None:
                    req.job.rids.discard(rid)
        for i, q in enumerate(self._peers):
            q.index = i
        self._rr = 0

    def _live_total(self):
        return sum(len(p.live) for p in self._peers)

    def _resend_after(self, peer):
        r = self.resend_timeout
        if peer.latency is not None:
            r = min(max(r, _LATENCY_FACTOR * peer.latency), _RESEND_CAP_FACTOR * r)
        return r

    def _state(self, p):
        if p.gone:
            return "gone from DNS"
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
        for src in self._sources:
            parts.append(src.describe())
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

    def _shm_prepare(self, p, now):
        """Before a batch request on p: send queued releases, ask for a
        session once. The session to use for this request, or None."""
        for sess in p.shm_sessions.values():
            sess.flush(p.sock, 0)
        self._shm_ask(p, now, 1)
        return p.shm if p.shm_state == 2 else None

    def _shm_ask(self, p, now, also=0):
        """Send p an SHM_OPEN (answered in _on_reply) unless it was asked
        already or is not eligible (Client(shm=...)). It counts in p's
        window like any request the daemon answers, so it is sent only
        with room for it and `also` more requests."""
        if p.shm_state == 1:
            req = self._reqs.get(p.shm_rid)
            if req is None or not req.live:
                p.shm_state, p.shm_rid = 0, None  # expired unanswered: ask again
        if p.shm_state != 0 or not _shm.eligible(p.endpoint, self.shm):
            return
        if len(p.live) + 1 + also > self._cap():
            return  # asked with a later request
        rid = next(self._ids)
        frame = _wire.encode_request(_wire.SHM_OPEN, rid, self._pipeline_raw,
                                     batch=min(64, self.window + 2), rank=self.rank,
                                     world=self.world, flags=self._flags)
        try:
            p.sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return  # not connected yet: asked again with its first batch
        req = _Req(rid, None, p, now)
        self._reqs[rid] = req
        p.live[rid] = req  # in the window until answered
        p.shm_state, p.shm_rid = 1, rid

    def _shm_opened(self, p, hdr, frames):
        """The reply to p's SHM_OPEN: the session, or copies from now on."""
        p.shm_rid = None
        if hdr.type != _wire.SHM_OPEN or len(frames) != 2:
            p.shm_state = -1  # off, cap reached, or an older daemon
            return
        try:
            p.shm = _shm.Session(frames[1].bytes, p.endpoint)
            p.shm_state = 2
            p.shm_sessions = {k: v for k, v in p.shm_sessions.items() if v.live}
            p.shm_sessions[p.shm.id] = p.shm
        except (OSError, Error) as exc:
            p.shm, p.shm_state = None, -1
            self.shm_error = "%s: %s" % (p.endpoint, exc)

    def _shm_take(self, p, frames):
        """[header, SlotRef] of a shared-memory BATCH reply from p."""
        if len(frames) != 2 or len(frames[1]) < 8:
            raise ProtocolError("cutmixd %s: shared-memory batch reply with %d frames"
                                % (p.endpoint, len(frames)))
        sid = int.from_bytes(frames[1].bytes[:8], "little")
        sess = p.shm_sessions.get(sid)
        if sess is None:
            raise ProtocolError("cutmixd %s: batch in shared-memory session %x, not one of "
                                "this client's" % (p.endpoint, sid))
        return [frames[0], sess.take(frames[1].bytes)]

    def _shm_flush_all(self):
        for p in self._peers:
            for sess in p.shm_sessions.values():
                sess.flush(p.sock, 0)

    def _send_on(self, p, job, type, epoch=0, batch=0, pipeline=None, now=None):
        """Send one request on p; the request id, or None if p cannot take it."""
        now = _now() if now is None else now
        sess = self._shm_prepare(p, now) if type == _wire.BATCH else None
        if type == _wire.INFO and self._shm_with_info:
            self._shm_ask(p, now)  # epoch(): the session before its batches
        rid = next(self._ids)
        pl = self._pipeline_raw if pipeline is None else pipeline
        flags = self._flags | (_wire.FLAG_SHM if sess is not None else 0)
        frame = _wire.encode_request(type, rid, pl, epoch=epoch, batch=batch,
                                     rank=self.rank, world=self.world, flags=flags,
                                     session=sess.id if sess is not None else 0)
        try:
            p.sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return None
        req = _Req(rid, job, p, now)
        req.shm = sess
        if sess is not None:
            req.shm_free = sess.live == 0 and not sess.releases and len(p.live) < sess.slots
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
        if self._sources:
            self._discover(now)  # never send to a replica that is due to vanish
        if self._live_total() >= self.window:
            return False
        cap = self._cap()
        cands = [p for p in ([job.only] if job.only is not None else self._peers)
                 if p.refused is None and not p.down and not p.gone and len(p.live) < cap]
        if not cands:
            return False
        tried = set()
        for rid in job.rids:
            req = self._reqs.get(rid)
            if req is not None:
                tried.add(req.peer)
        n = max(1, len(self._peers))
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
        if req is not None and req.job is None and rid == p.shm_rid:
            self._shm_opened(p, hdr, frames)
            return
        if hdr.type == _wire.BATCH and hdr.flags & _wire.RFLAG_SHM:
            frames = self._shm_take(p, frames)  # released when dropped, too
        if req is not None and req.shm is not None and req.shm is p.shm \
                and hdr.type == _wire.BATCH and not hdr.flags & _wire.RFLAG_SHM \
                and req.shm_free:
            # Copied although a slot was surely free: the daemon no
            # longer knows the session (expired idle, restarted): ask again.
            p.shm, p.shm_state = None, 0
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
            job.error = DaemonError(hdr.status, msg, p.endpoint, rid, bytes(hdr.digest).hex())
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
            if p.refused is not None or p.gone:
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
            if p.down and p.refused is None and not p.gone:
                if p.probe_rid is None:
                    t = min(t, p.probe_at)
                else:
                    req = self._reqs.get(p.probe_rid)
                    if req is not None:
                        t = min(t, req.sent + self._resend_after(p) + 0.001)
        for src in self._sources:
            t = min(t, src.next_at)
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
        if self._sources:
            self._discover(now)
        seen = self._replies
        self._shm_flush_all()
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
        usable = self._usable_peers()
        if usable and all(p.refused is not None for p in usable):
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
