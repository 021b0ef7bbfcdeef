"""Hostile and broken clients against the real daemon: random frames,
forged and mutated requests, oversized frames, absurd indices, epochs,
shards and windows, clients that never read, a thousand clients that
vanish, more clients than max_clients.

The rule everywhere: an ERROR reply where a reply is possible, never a
crash, and the other clients keep being served. Every loop is bounded in
count and time; only ipc:// endpoints.
"""

import json
import struct
import time

import numpy as np
import pytest
import zmq

import cutmixd
from cutmixd import _wire
from cutmixd._wire import Status
import helpers
from helpers import SANITIZER, module_daemon, vm_rss

WINDOW = 4
PIPELINES = {
    "small": dict(batch_size=4, size=32, crop="center", resize=32, flip=0.0, shuffle=False),
    # about 1.5 MB per reply
    "big": dict(batch_size=32, size=128, crop="random_resized", cutmix_alpha=1.0,
                cutout_size=16),
}
SERVER = {"max_client_window": WINDOW, "workers": 2}
U32 = 2**32 - 1
KNOWN_TYPES = {_wire.INFO, _wire.BATCH, _wire.STATS, _wire.SHM_OPEN, _wire.ERROR}


# Time to drain a flood of 20000 requests: TSan makes the daemon ~10x slower.
SLOW = {None: 1, "asan": 3, "tsan": 10}.get(SANITIZER, 10)


def assert_rss_below(value, limit, msg):
    """RSS bounds hold for the real build only: a sanitizer's shadow memory
    and quarantine make RSS meaningless (the rest of the test still runs)."""
    if SANITIZER is None:
        assert value < limit, "%s (%.1f MB, limit %.1f MB)" % (msg, value / 2**20,
                                                               limit / 2**20)


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_square444):
    dm = module_daemon(tmp_path_factory, "hclients", ds_square444.config(), PIPELINES,
                       server=SERVER)
    yield dm
    dm.stop()


# -- helpers -----------------------------------------------------------------------


def dealer(endpoint, rcvhwm=None, rcvbuf=None):
    return helpers.dealer(endpoint, {zmq.RCVHWM: rcvhwm, zmq.RCVBUF: rcvbuf})


def recv(sock, timeout=10.0, what="reply", d=None):
    """One reply; with d, a failure also reports the daemon's 'dropped'
    counter (requests it discarded without a reply)."""
    if not sock.poll(int(timeout * 1000)):
        extra = ""
        if d is not None:
            with d.client("small", timeout=5) as c:
                st = c.stats()
            extra = " (daemon STATS: requests %s, dropped %s, bad_requests %s)" % (
                st.get("requests"), st.get("dropped"), st.get("bad_requests"))
        pytest.fail("no %s within %gs%s: PROTOCOL.md section 10 says every request "
                    "that reaches a running daemon gets exactly one reply"
                    % (what, timeout, extra), pytrace=False)
    return sock.recv_multipart()


def check_reply(frames, sent=None, utf8_problems=None):
    """A well-formed reply of a known type; an ERROR carries a known status
    and a non-empty UTF-8 message (wire.h: "an error has one UTF-8
    message"; with utf8_problems, a message that is not UTF-8 is listed
    there instead of failing at once). Returns the decoded header."""
    if len(frames) >= 2 and frames[0] == b"":
        frames = frames[1:]  # [""][request] is a REQ envelope: the "" comes back
    hdr = _wire.decode_reply(frames[0])
    # the daemon answers in the request's version when it speaks it (1, 2)
    sent_version = struct.unpack_from("<H", sent, 4)[0] if sent and len(sent) >= 6 else None
    if sent_version in _wire.VERSIONS:
        assert hdr.version == sent_version
    else:
        assert hdr.version == _wire.VERSION
    assert hdr.type in KNOWN_TYPES, "reply type %d" % hdr.type
    if hdr.type == _wire.ERROR:
        assert len(frames) == 2, "an ERROR reply is header + message"
        assert hdr.status in set(Status) and hdr.status != Status.OK, hdr.status
        try:
            assert frames[1].decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            if utf8_problems is None:
                raise AssertionError("ERROR message is not UTF-8 (%s): %r" % (exc, frames[1]))
            utf8_problems.append((sent, frames[1]))
    elif hdr.type == _wire.BATCH:
        assert len(frames) == 4
        assert tuple(len(f) for f in frames[1:]) == tuple(hdr.body_bytes)
        assert hdr.batch_size >= 1
    elif hdr.type == _wire.SHM_OPEN:  # a session (tests/integration/test_shm.py)
        assert len(frames) == 2 and len(frames[1]) == _wire.SHM_OPEN_BODY.size
    else:
        assert len(frames) == 2
        json.loads(frames[1])
    if sent is not None and len(sent) == _wire.REQUEST_SIZE and sent[:4] == b"CMXQ":
        req = _wire.decode_request(sent)
        assert hdr.request_id == req.request_id, "request id not echoed"
        if hdr.type == _wire.BATCH:
            assert (hdr.epoch, hdr.batch, hdr.rank, hdr.world) == (
                req.epoch, req.batch, req.rank, req.world)
    return hdr


def assert_serving(d, pipeline="small"):
    """A fresh client gets info, a batch and stats in time."""
    with d.client(pipeline, timeout=10) as c:
        info = c.info()
        assert len(c.batch(0, info["batches_per_epoch"] - 1)) >= 1
        return c.stats()


def wait_idle(c, timeout=15.0):
    """Poll STATS until nothing is pending or computing."""
    deadline = time.monotonic() + timeout
    while True:
        st = c.stats()
        if st["pending"] == 0 and st["inflight"] == 0 and st["unsent"] == 0:
            return st
        assert time.monotonic() < deadline, "daemon still busy after %gs: %s" % (timeout, st)
        time.sleep(0.05)


# -- garbage on the wire -------------------------------------------------------------

def test_random_frames_get_errors_and_daemon_keeps_serving(d):
    rng = np.random.default_rng(1)
    s = dealer(d.endpoint)
    try:
        head = _wire.encode_request(_wire.INFO, 0, "small")
        sent = []
        for k in range(300):
            nframes = int(rng.integers(1, 5))
            frames = []
            for _ in range(nframes):
                kind = rng.integers(0, 4)
                if kind == 0:  # valid magic and version, random rest
                    f = head[:6] + rng.bytes(74)
                elif kind == 1:
                    f = rng.bytes(int(rng.integers(0, 81)))
                elif kind == 2:
                    f = rng.bytes(int(rng.integers(81, 4097)))
                else:
                    f = b""
                frames.append(f)
            s.send_multipart(frames)
            sent.append(frames)
        for k in range(len(sent)):
            frames = recv(s, 5, "reply to garbage message %d of %d" % (k, len(sent)), d=d)
            check_reply(frames)
        assert not s.poll(200), "more replies than messages"
    finally:
        s.close(0)
    assert d.alive()
    assert_serving(d)


def forged(rng, n_batches):
    """A request with every field drawn from valid, edge and absurd values."""
    pick = lambda xs: xs[int(rng.integers(0, len(xs)))]
    rank, world = pick([(0, 1), (0, 0), (1, 1), (3, 2), (0, U32), (U32 - 1, U32),
                        (5, 2**31), (0, 2)])
    pipeline = pick(["small", "big", "", "nope", "x" * 31, b"y" * 32, b"small\0junk",
                     b"\xff\xfe\xfd", b"sm\x01all"])
    return _wire.encode_request(
        type=pick([0, 1, 2, 3, 4, 126, 127, 128, 0xFFFF]),
        request_id=int(rng.integers(0, 2**63)),
        pipeline=pipeline,
        epoch=pick([0, 1, 2**31, U32]),
        batch=pick([0, n_batches - 1, n_batches, 2**31, U32]),
        rank=rank, world=world,
        flags=pick([0, 1, 2, U32]),
        version=pick([1, 1, 1, 0, 2, 0xFFFF]),
        magic=pick([_wire.REQUEST_MAGIC] * 5 + [_wire.REPLY_MAGIC, 0, U32]))


def test_forged_requests_get_a_reply_each(d):
    rng = np.random.default_rng(2)
    with d.client("small") as c:
        n = c.info()["batches_per_epoch"]
    s = dealer(d.endpoint)
    counts, not_utf8 = {}, []
    try:
        deadline = time.monotonic() + 40
        for k in range(250):
            req = forged(rng, n)
            s.send(req)
            hdr = check_reply(recv(s, 10, "reply to forged request %r" % req), sent=req,
                              utf8_problems=not_utf8)
            key = "BATCH" if hdr.type == _wire.BATCH else (
                cutmixd.status_name(hdr.status) if hdr.type == _wire.ERROR else hdr.type)
            counts[key] = counts.get(key, 0) + 1
            assert time.monotonic() < deadline, "forged requests take too long"
    finally:
        s.close(0)
    assert counts.get("MALFORMED") and counts.get("VERSION") and counts.get("NO_PIPELINE")
    assert d.alive()
    assert_serving(d)
    assert not not_utf8, "%d ERROR messages are not UTF-8, e.g. for pipeline %r: %r" % (
        len(not_utf8), _wire.decode_request(not_utf8[0][0]).pipeline, not_utf8[0][1])


def test_oversized_frames_cut_off_the_peer_only(d):
    """ZMQ_MAXMSGSIZE = 4096: a bigger frame drops that connection (no
    reply, nothing allocated for it); everyone else is served."""
    other = d.client("small", timeout=10)
    try:
        n = other.info()["batches_per_epoch"]
        r0 = vm_rss(d.proc.pid)
        for size in (4097, 5000, 1 << 20, 16 << 20):
            s = dealer(d.endpoint)
            try:
                s.send(b"\x43" * size)
                assert not s.poll(300), "a %d-byte frame got a reply" % size
                assert len(other.batch(0, size % n)) >= 1
            finally:
                s.close(0)
        # the request inside a big multipart message is not processed either
        s = dealer(d.endpoint)
        try:
            s.send_multipart([_wire.encode_request(_wire.INFO, 1, "small"), b"\0" * 8192])
            assert not s.poll(300)
            # ZeroMQ reconnects: the same socket, with a good request, is served again
            s.send(_wire.encode_request(_wire.INFO, 2, "small"))
            hdr = check_reply(recv(s, 10, "reply after reconnecting"))
            assert hdr.type == _wire.INFO and hdr.request_id == 2
        finally:
            s.close(0)
        assert_rss_below(vm_rss(d.proc.pid) - r0, 20 * 2**20,
                         "RSS growth after oversized frames (buffered?)")
        assert len(list(other.epoch(0))) == n
    finally:
        other.close()
    assert d.alive()


def test_absurd_epochs_batches_shards_and_windows(d):
    with d.client("small") as c:
        n = c.info()["batches_per_epoch"]
        for epoch in (U32, 2**31, 12345678):
            try:
                b = c.batch(epoch, n - 1)
                assert b.epoch == epoch and len(b) >= 1
            except cutmixd.DaemonError as exc:
                assert exc.code == Status.EPOCH_RANGE, exc
        for batch in (n, 2**31, U32):
            with pytest.raises(cutmixd.DaemonError) as ei:
                c.batch(0, batch)
            assert ei.value.code == Status.BATCH_RANGE
    for rank, world in ((0, U32), (U32 - 1, U32), (2**31 - 1, 2**31)):
        with d.client("small", rank=rank, world=world) as c:
            info = c.info()
            assert info["batches_per_epoch"] >= 1
            assert len(c.batch(0, 0)) >= 1
    # a window far beyond max_client_window: the client caps it
    with d.client("small", window=10**6) as c:
        assert c.effective_window() == WINDOW
        assert len(list(c.epoch(1))) == n
    # a raw client ignoring the cap: the excess gets BUSY, every request a reply
    s = dealer(d.endpoint)
    try:
        for k in range(60):
            s.send(_wire.encode_request(_wire.BATCH, 1000 + k, "small", batch=k % n))
        got = {}
        for k in range(60):
            hdr = check_reply(recv(s, 5, "reply %d of 60 (sent back to back)" % k, d=d))
            got[hdr.request_id] = hdr
        assert sorted(got) == list(range(1000, 1060))
        ok = [h for h in got.values() if h.type == _wire.BATCH]
        busy = [h for h in got.values() if h.type == _wire.ERROR and h.status == Status.BUSY]
        assert len(ok) + len(busy) == 60 and len(ok) >= WINDOW and busy
    finally:
        s.close(0)
    assert_serving(d)


# -- clients that do not read ------------------------------------------------------------

def test_non_reader_within_window_keeps_rss_flat(d):
    """A client asks for WINDOW big batches and never reads them (tiny
    receive buffers, so the replies stay on the daemon's side): RSS stays
    flat while another client streams epochs."""
    with d.client("big") as c:  # warm up every worker on both pipelines
        list(c.epoch(0))
    with d.client("small") as c:
        list(c.epoch(0))
    lazy = dealer(d.endpoint, rcvhwm=1, rcvbuf=4096)
    try:
        for k in range(WINDOW):
            lazy.send(_wire.encode_request(_wire.BATCH, k + 1, "big", epoch=7, batch=k % 2))
        time.sleep(0.5)
        r1 = vm_rss(d.proc.pid)
        peak = r1
        with d.client("big", timeout=10) as c:
            for e in range(3):
                for b in c.epoch(e):
                    assert len(b) >= 1
                    peak = max(peak, vm_rss(d.proc.pid))
        with d.client("small", timeout=10) as c:
            for e in range(3):
                for b in c.epoch(e):
                    peak = max(peak, vm_rss(d.proc.pid))
            st = c.stats()
        assert_rss_below(peak - r1, 30 * 2**20, "RSS growth while a non-reader held its window")
        assert_rss_below(peak, 200 * 2**20, "RSS peak")
        assert st["unsent"] <= WINDOW, st
    finally:
        lazy.close(0)
    assert d.alive()


@pytest.mark.parametrize("flood", [500, 1500])
def test_non_reader_flooding_requests_does_not_starve_others(daemon, ds_square444, flood):
    """A client that asks for its window of big batches (megabytes that fill
    the socket buffers), then keeps sending INFO requests, never reads and
    stays connected must not stop the daemon from answering everyone else.
    (The daemon's own design note: "a client that never reads holds at most
    2 x window replies in memory".)"""
    d = daemon(ds_square444.config(), PIPELINES, server=SERVER, name="flood")
    lazy = dealer(d.endpoint, rcvhwm=1, rcvbuf=4096)
    try:
        for k in range(WINDOW):
            lazy.send(_wire.encode_request(_wire.BATCH, k + 1, "big", batch=k % 2))
        for k in range(flood):
            lazy.send(_wire.encode_request(_wire.INFO, 100 + k, "small"))
        time.sleep(0.5)
        with d.client("small", timeout=5) as c:
            t0 = time.monotonic()
            try:
                st = c.stats()
                n = len(list(c.epoch(0)))
            except cutmixd.TimeoutError:
                pytest.fail("another client got no reply within 5 s while a non-reading "
                            "client (%d big batches + %d INFO requests) stayed connected: "
                            "its unsendable replies block the daemon's reply queue"
                            % (WINDOW, flood), pytrace=False)
            assert n == c.batches_per_epoch() and time.monotonic() - t0 < 5
        assert st["unsent"] <= 2 * WINDOW, "replies queued for one client: %s" % st
    finally:
        lazy.close(0)


def test_non_reader_flood_memory_is_bounded(daemon, ds_square444):
    """20000 requests from a client that never reads: the daemon's RSS must
    not grow with the number of requests."""
    d = daemon(ds_square444.config(), PIPELINES, server=SERVER, name="floodmem")
    assert_serving(d)
    r0 = vm_rss(d.proc.pid)
    lazy = dealer(d.endpoint, rcvhwm=1, rcvbuf=4096)
    try:
        lazy.setsockopt(zmq.SNDHWM, 0)
        t0 = time.monotonic()
        for k in range(20000):
            lazy.send(_wire.encode_request(_wire.INFO, k + 1, "small"))
        # let the daemon read them all: until its RSS holds still (STATS
        # cannot tell: its reply may queue behind the unsendable ones)
        last, still, deadline = -1, 0, time.monotonic() + 8
        while still < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
            now = vm_rss(d.proc.pid)
            still = still + 1 if now == last else 0
            last = now
        grown = vm_rss(d.proc.pid) - r0
        assert time.monotonic() - t0 < 30
        assert_rss_below(grown, 20 * 2**20, "RSS growth for 20000 unread INFO replies")
    finally:
        lazy.close(0)
    with d.client("small", timeout=10 * SLOW) as c:  # once it is gone, all is well again
        wait_idle(c)
    assert_serving(d)


# -- many clients ----------------------------------------------------------------------

def test_thousand_clients_that_vanish(daemon, ds_square444):
    d = daemon(ds_square444.config(), PIPELINES, server=dict(SERVER, idle_timeout=1),
               name="vanish")
    ctx = zmq.Context.instance()

    def storm(c, n, group=50):
        """n clients, `group` at a time: connect, send one request, and
        vanish (linger 0) once the daemon has counted the group's requests
        (at most 1 s later)."""
        for g in range(0, n, group):
            socks = []
            start = c.stats()["requests"]
            for i in range(g, min(n, g + group)):
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.connect(d.endpoint)
                kind = (_wire.INFO, _wire.BATCH, _wire.STATS)[i % 3]
                s.send(_wire.encode_request(kind, i + 1, "small", batch=i % 12))
                socks.append(s)
            deadline, polls = time.monotonic() + 1.0, 0
            while time.monotonic() < deadline:
                polls += 1  # each STATS counts itself as a request
                if c.stats()["requests"] - start - polls >= len(socks):
                    break
                time.sleep(0.005)
            for s in socks:
                s.close(0)

    with d.client("small", timeout=10) as c:
        storm(c, 200)  # warm-up: worker buffers, ZeroMQ's own pools
        wait_idle(c)
        r0, before = vm_rss(d.proc.pid), c.stats()
        t0 = time.monotonic()
        storm(c, 1000)
        assert time.monotonic() - t0 < 30, "1000 clients took too long"
        st = wait_idle(c)
        grown = vm_rss(d.proc.pid) - r0
        assert st["requests"] - before["requests"] >= 900, "most requests should arrive"
        assert_rss_below(grown, 20 * 2**20, "RSS growth over 1000 vanished clients")
        # idle_timeout = 1: the vanished clients are forgotten
        deadline = time.monotonic() + 5
        while c.stats()["clients"] > 2:
            assert time.monotonic() < deadline, "vanished clients never forgotten"
            time.sleep(0.2)
        assert len(list(c.epoch(0))) == c.batches_per_epoch()
    assert d.alive()


def test_max_clients_exceeded(daemon, ds_square444):
    """max_clients = 2 and both tracked clients have requests outstanding: a
    third client's request is dropped. Observed behaviour (documented
    here): no reply at all (the third client times out; no BUSY error),
    one warning per dropped request in the log ("server: ignoring a
    request: too many clients (max_clients)"); once a tracked client has
    nothing outstanding it is evicted and the third client is served."""
    pipes = dict(PIPELINES, heavy=dict(batch_size=64, size=224, crop="random_resized",
                                       cutmix_alpha=1.0, mixup_alpha=1.0, cutout_size=32))
    # max_inflight = 1: the 8 heavy batches run one after the other, so both
    # tracked clients stay busy for a long while after the third one asks
    d = daemon(ds_square444.config(), pipes, server=dict(SERVER, max_clients=2, max_inflight=1),
               name="maxcl")
    a, b, x = (dealer(d.endpoint) for _ in range(3))
    try:
        for k, s in enumerate((a, b, x)):  # connected and known, one at a time
            s.send(_wire.encode_request(_wire.INFO, 1, "small"))
            check_reply(recv(s, 10))
        for k in range(WINDOW):
            a.send(_wire.encode_request(_wire.BATCH, 10 + k, "heavy", batch=0))
            b.send(_wire.encode_request(_wire.BATCH, 10 + k, "heavy", batch=0))
        time.sleep(0.01)
        x.send(_wire.encode_request(_wire.INFO, 99, "small"))
        if x.poll(500):
            hdr = check_reply(x.recv_multipart())
            assert hdr.type == _wire.ERROR, "served beyond max_clients while both " \
                "tracked clients were busy"
        else:
            assert "too many clients" in d.log()
        for s in (a, b):
            for _ in range(WINDOW):
                check_reply(recv(s, 30, "heavy batch"))
        x.send(_wire.encode_request(_wire.INFO, 100, "small"))
        while True:  # the dropped request 99 never gets a reply
            hdr = check_reply(recv(x, 10, "reply once the others are idle"))
            if hdr.request_id == 100:
                break
        assert hdr.type == _wire.INFO
    finally:
        for s in (a, b, x):
            s.close(0)
    assert d.alive()
    assert_serving(d)
