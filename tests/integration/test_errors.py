"""Bad requests get an ERROR reply with the right code and the daemon keeps
serving; a client beyond max_client_window gets BUSY for the excess."""

import json

import numpy as np
import pytest
import zmq

import cutmixd
from cutmixd import _wire
from cutmixd._wire import Status
from helpers import module_daemon

WINDOW = 2
PIPELINES = {
    "train": dict(batch_size=8, size=64, crop="center", resize=64, flip=0.5, cutout_size=8,
                  cutmix_alpha=1.0),
    # enough work per batch that a burst of requests overlaps in the daemon
    "heavy": dict(batch_size=64, size=256, crop="random_resized", flip=0.5,
                  cutmix_alpha=1.0, mixup_alpha=1.0, cutout_size=32),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_square444):
    dm = module_daemon(tmp_path_factory, "errors", ds_square444.config(), PIPELINES,
                       server={"max_client_window": WINDOW, "workers": 2})
    yield dm
    dm.stop()


@pytest.fixture
def sock(d):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.endpoint)
    yield s
    s.close(0)


def recv(sock, timeout=10.0):
    if not sock.poll(int(timeout * 1000)):
        pytest.fail("no reply within %gs" % timeout, pytrace=False)
    return sock.recv_multipart()


def exchange(sock, frames, timeout=10.0):
    sock.send_multipart(frames if isinstance(frames, list) else [frames])
    return recv(sock, timeout)


def error_of(reply):
    if len(reply) == 3 and reply[0] == b"":
        reply = reply[1:]  # REQ-style envelope: the delimiter comes back
    hdr = _wire.decode_reply(reply[0])
    assert hdr.version == _wire.VERSION
    assert hdr.type == _wire.ERROR, "expected an ERROR reply, got type %d" % hdr.type
    assert len(reply) == 2, "an ERROR reply is header + one message frame"
    msg = reply[1].decode("utf-8")  # must be UTF-8
    assert msg.strip(), "empty error message"
    return hdr, msg


def assert_serving(sock, rid=777):
    """A good request still succeeds."""
    reply = exchange(sock, _wire.encode_request(_wire.INFO, rid, "train"))
    hdr = _wire.decode_reply(reply[0])
    assert hdr.type == _wire.INFO and hdr.request_id == rid
    assert json.loads(reply[1])["pipeline"] == "train"
    reply = exchange(sock, _wire.encode_request(_wire.BATCH, rid + 1, "train", batch=1))
    hdr = _wire.decode_reply(reply[0])
    assert hdr.type == _wire.BATCH and hdr.request_id == rid + 1 and hdr.batch_size == 8


def test_client_level_errors(d):
    cases = [
        (dict(pipeline="nope"), Status.NO_PIPELINE),
        (dict(rank=2, world=2), Status.BAD_SHARD),
        (dict(rank=5, world=2), Status.BAD_SHARD),
        (dict(world=0), Status.BAD_SHARD),
    ]
    for kw, code in cases:
        kw.setdefault("pipeline", "train")
        with d.client(**kw) as c:
            with pytest.raises(cutmixd.DaemonError) as ei:
                c.batch(0, 0)
            assert ei.value.code == code, (kw, ei.value)
            with pytest.raises(cutmixd.DaemonError) as ei:
                c.info()
            assert ei.value.code == code, (kw, ei.value)
    with d.client("train") as c:
        n = c.info()["batches_per_epoch"]
        with pytest.raises(cutmixd.DaemonError) as ei:
            c.batch(0, n)
        assert ei.value.code == Status.BATCH_RANGE
        with pytest.raises(cutmixd.DaemonError) as ei:
            c.batch(0, 0xFFFFFFFF)
        assert ei.value.code == Status.BATCH_RANGE
        assert len(c.batch(0, n - 1)) > 0


@pytest.mark.parametrize("what, frames, codes", [
    ("pipeline unknown", [_wire.encode_request(_wire.BATCH, 11, "nope")], {Status.NO_PIPELINE}),
    ("world 0", [_wire.encode_request(_wire.BATCH, 12, "train", world=0)], {Status.BAD_SHARD}),
    ("rank >= world", [_wire.encode_request(_wire.INFO, 13, "train", rank=3, world=3)],
     {Status.BAD_SHARD}),
    ("batch out of range", [_wire.encode_request(_wire.BATCH, 14, "train", batch=1000)],
     {Status.BATCH_RANGE}),
    ("unknown type", [_wire.encode_request(9, 15, "train")], {Status.UNKNOWN_TYPE}),
    ("type ERROR as request", [_wire.encode_request(_wire.ERROR, 16, "train")],
     {Status.UNKNOWN_TYPE, Status.MALFORMED}),
    ("wrong version", [_wire.encode_request(_wire.INFO, 17, "train", version=3)],
     {Status.VERSION}),
    ("version 0", [_wire.encode_request(_wire.INFO, 18, "train", version=0)],
     {Status.VERSION, Status.MALFORMED}),
    ("wrong magic", [_wire.encode_request(_wire.INFO, 19, "train", magic=0x12345678)],
     {Status.MALFORMED}),
    ("reply magic", [_wire.encode_request(_wire.INFO, 20, "train", magic=_wire.REPLY_MAGIC)],
     {Status.MALFORMED}),
    ("too short", [_wire.encode_request(_wire.INFO, 21, "train")[:79]], {Status.MALFORMED}),
    ("too long", [_wire.encode_request(_wire.INFO, 22, "train") + b"\0"], {Status.MALFORMED}),
    ("empty frame", [b""], {Status.MALFORMED}),
    ("random 80 bytes", [np.random.default_rng(1).bytes(80)], {Status.MALFORMED}),
    ("random 13 bytes", [np.random.default_rng(2).bytes(13)], {Status.MALFORMED}),
    ("random 4000 bytes", [np.random.default_rng(3).bytes(4000)], {Status.MALFORMED}),
    ("pipeline without NUL",
     [_wire.encode_request(_wire.INFO, 23, b"t" * 32)], {Status.MALFORMED, Status.NO_PIPELINE}),
    ("request + extra frame", [_wire.encode_request(_wire.INFO, 24, "train"), b"extra"],
     {Status.MALFORMED}),
    ("non-empty first of two frames", [b"x", _wire.encode_request(_wire.INFO, 25, "train")],
     {Status.MALFORMED}),
    ("four frames", [b"", _wire.encode_request(_wire.INFO, 26, "train"), b"", b""],
     {Status.MALFORMED}),
])
def test_bad_request_gets_error_and_daemon_keeps_serving(d, sock, what, frames, codes):
    reply = exchange(sock, frames)
    hdr, msg = error_of(reply)
    assert hdr.status in codes, "%s: got %s (%r), expected %s" % (
        what, cutmixd.status_name(hdr.status), msg, [c.name for c in codes])
    if len(frames) == 1 and len(frames[0]) == 80 and frames[0][:4] == b"CMXQ":
        # decodable enough: the request id is echoed
        assert hdr.request_id == _wire.decode_request(frames[0]).request_id, what
    assert_serving(sock)


def test_req_envelope_is_accepted(d):
    """A REQ socket (empty delimiter before the request) also works; the
    reply carries the delimiter back."""
    s = zmq.Context.instance().socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.endpoint)
    try:
        reply = exchange(s, _wire.encode_request(_wire.INFO, 5, "train"))
        hdr = _wire.decode_reply(reply[0])
        assert hdr.type == _wire.INFO and hdr.request_id == 5
        reply = exchange(s, _wire.encode_request(_wire.BATCH, 6, "nope"))
        hdr, msg = error_of(reply)
        assert hdr.status == Status.NO_PIPELINE and "nope" in msg
    finally:
        s.close(0)


def test_error_for_one_request_does_not_disturb_others(d, sock):
    good = [_wire.encode_request(_wire.BATCH, 100 + k, "train", batch=k) for k in range(2)]
    sock.send(good[0])
    sock.send(b"garbage")
    sock.send(good[1])
    replies = [recv(sock) for _ in range(3)]
    by_id = {}
    errors = 0
    for r in replies:
        hdr = _wire.decode_reply(r[0])
        if hdr.type == _wire.ERROR:
            errors += 1
        else:
            by_id[hdr.request_id] = hdr
    assert errors == 1 and sorted(by_id) == [100, 101]


def test_window_beyond_max_client_window_is_busy(d, sock):
    n = 16
    for k in range(n):
        sock.send(_wire.encode_request(_wire.BATCH, 200 + k, "heavy", batch=0))
    results = {}
    for _ in range(n):
        r = recv(sock, 30)
        hdr = _wire.decode_reply(r[0])
        results[hdr.request_id] = (hdr.type, hdr.status)
    assert sorted(results) == list(range(200, 200 + n))
    ok = [rid for rid, (t, _) in results.items() if t == _wire.BATCH]
    busy = [rid for rid, (t, s) in results.items() if t == _wire.ERROR and s == Status.BUSY]
    assert len(ok) + len(busy) == n, results
    assert 200 in ok and 201 in ok, "the first %d requests are within the window" % WINDOW
    assert busy, "no BUSY error for %d requests sent at once with max_client_window=%d" % (
        n, WINDOW)
    assert_serving(sock)


def test_client_caps_window_at_max_window(d):
    with d.client("train", window=16) as c:
        assert c.info()["max_window"] == WINDOW
        assert c.effective_window() == WINDOW
        assert len(list(c.epoch(0))) == c.batches_per_epoch()


def test_clients_are_independent(d):
    """One client's burst does not make another one BUSY."""
    s1 = zmq.Context.instance().socket(zmq.DEALER)
    s1.setsockopt(zmq.LINGER, 0)
    s1.connect(d.endpoint)
    try:
        for k in range(WINDOW):
            s1.send(_wire.encode_request(_wire.BATCH, 300 + k, "heavy", batch=0))
        with d.client("train") as c:
            assert len(c.batch(0, 0)) == 8
        for _ in range(WINDOW):
            recv(s1, 30)
    finally:
        s1.close(0)
