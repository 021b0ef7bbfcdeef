"""Shared-memory transport (issue 13): batches written into a sealed memfd
that the local client maps copy-on-write (proto/PROTOCOL.md, "Shared
memory").

Against the real daemon: shm batches equal copied ones byte for byte,
slots are reused once released and a client holding every batch falls
back to copies; the arrays are writable (numpy, torch in place), the
writes stay private and never show in a later batch of the slot (pagemap
through PAGEMAP_SCAN or its entries, and the whole-slot fallback);
hostile releases and side-socket connections are refused while the
daemon keeps serving; the memfd cannot be shrunk or mapped shared
writable; a killed client's session expires; CURVE and shm = off."""

import fcntl
import gc
import mmap
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cutmixd
from cutmixd import _shm, _wire
from cutmixd._errors import ProtocolError
from helpers import Daemon, dealer, free_port, raw_request

PIPELINES = {
    "train": dict(batch_size=4, size=32, crop="random_resized", flip=0.5, cutmix_alpha=1.0),
    "f32": dict(eval=True, batch_size=4, size=24, crop="center", resize=28,
                layout="nchw", dtype="float32", mean=(0.5, 0.4, 0.3),
                std=(0.25, 0.2, 0.3)),
}
SERVER = {"shm_slots": 4}  # window 2 below: 2 in flight + 2 held by the loop


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_mixed):
    port = free_port()
    dm = Daemon(tmp_path_factory.mktemp("shm"), ds_mixed.config(), PIPELINES,
                server=dict(SERVER, metrics="127.0.0.1:%d" % port), name="shm")
    dm.metrics_url = "http://127.0.0.1:%d/metrics" % port
    dm.start()
    yield dm
    dm.stop()


def content(b):
    """The batch's bytes, raw_frames included (the header without request_id)."""
    head = bytes(b.raw_frames[0])
    return (b.images.tobytes(), b.labels.tobytes(), b.meta.tobytes(), head[:16] + head[24:],
            b"".join(bytes(f) for f in b.raw_frames[1:]))


def epoch_of(d, pipeline, epoch, **kw):
    with d.client(pipeline, **kw) as c:
        return [(content(b), b.shm) for b in c.epoch(epoch)]


def open_session(c):
    """epoch() asks for the session before its INFO; a lone batch() asks
    with its request, so that first batch is a copy."""
    c.epoch(0).close()
    assert c._peers[0].shm is not None, c.shm_error


def test_info_alone_opens_no_session(d):
    before = stats(d)["shm_sessions"]
    with d.client("train") as c:
        c.info()
        assert c._peers[0].shm_state == 0
    assert stats(d)["shm_sessions"] == before


def stats(d):
    with d.client("train", shm=False) as c:
        return c.stats()


def wait_for(pred, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.parametrize("pipeline", ["train", "f32"])
def test_shm_batches_equal_copied_ones(d, pipeline):
    before = stats(d)["shm_batches"]
    ev = pipeline == "f32"  # the eval pipeline, asked for as eval data
    copied = epoch_of(d, pipeline, 3, shm=False, eval=ev)
    shared = epoch_of(d, pipeline, 3, window=2, eval=ev)
    assert not any(s for _, s in copied)
    assert all(s for _, s in shared), "every batch of the epoch should come through shm"
    assert [c for c, _ in shared] == [c for c, _ in copied]
    assert stats(d)["shm_batches"] - before == len(shared)


def test_shm_arrays_are_writable_and_private(d):
    """In-place writes work as on the copy path, and the daemon never sees
    them: the same batch asked again (a copy) is the original."""
    ref = epoch_of(d, "train", 1, shm=False)[0][0]
    with d.client("train", window=2) as c:
        open_session(c)
        b = c.batch(1, 0)
        assert b.shm and b.images.flags.writeable and not b.images.flags.owndata
        assert content(b) == ref
        b.images[...] = 255 - b.images
        b.labels *= 2
        b.meta["index"] = 7
        assert int(b.images[0, 0, 0, 0]) == 255 - ref[0][0]
        assert (b.meta["index"] == 7).all()
        again = c.batch(1, 0)
        assert again.shm and content(again) == ref
    assert epoch_of(d, "train", 1, shm=False)[0][0] == ref


def test_torch_in_place_on_shm_tensors(d):
    torch = pytest.importorskip("torch")
    from cutmixd.torch import to_torch
    with d.client("f32", shm=False, eval=True) as c:
        want = c.batch(2, 0).images.copy()
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([2.0, 4.0, 8.0]).view(1, 3, 1, 1)
    with d.client("f32", window=2, eval=True) as c:
        open_session(c)
        b = c.batch(2, 0)
        assert b.shm
        x, y, _ = to_torch(b)
        assert x.data_ptr() == b.images.ctypes.data  # still zero-copy
        x.sub_(mean).div_(std)
        y.mul_(0.5)
        expect = (torch.from_numpy(want) - mean) / std
        assert torch.allclose(x, expect) and torch.allclose(torch.from_numpy(b.images), expect)
    with d.client("train", window=2) as c:
        open_session(c)
        x, _, _ = to_torch(c.batch(2, 0))
        x.add_(1)  # uint8, wraps
        x.clamp_(max=200)
        assert int(x.max()) <= 200


def scribble(b, how):
    """Write into a batch's arrays: every byte, or a few bytes of images
    and labels (a few pages). The page numbers (from the slot's start)
    written to."""
    base = b._frames[1].base.ctypes.data
    spans = []  # (first byte, last byte) written, as addresses
    if how == "all":
        for part in (b.images, b.labels, b.meta):
            part.view(np.uint8).reshape(-1)[...] = 0xA5
            spans.append((part.ctypes.data, part.ctypes.data + part.nbytes - 1))
    else:
        for part in (b.images, b.labels):
            flat = part.view(np.uint8).reshape(-1)
            for i in sorted({0, len(flat) // 2 + 1, len(flat) - 1}):
                flat[i] ^= 0xFF
                spans.append((flat.ctypes.data + i, flat.ctypes.data + i))
    return sorted({p for lo, hi in spans
                   for p in range((lo - base) // _shm.PAGE, (hi - base) // _shm.PAGE + 1)})


def pagemap_readable():
    page = mmap.mmap(-1, _shm.PAGE)  # an aligned address, as slots have
    try:
        _shm.private_runs(np.frombuffer(page, dtype=np.uint8).ctypes.data, 1)
        return True
    except OSError:
        return False


@pytest.mark.parametrize("path", ["scan", "entries", "whole_slot"])
@pytest.mark.parametrize("how", ["all", "few"])
@pytest.mark.parametrize("pipeline", ["train", "f32"])
def test_written_slots_serve_later_batches_intact(d, monkeypatch, pipeline, how, path):
    """Batches written into and released: the later batches the daemon puts
    in those slots read exactly as copies do (no private page left over)."""
    monkeypatch.setattr(_shm, "USE_SCAN", _shm.USE_SCAN)  # restored after
    if path == "whole_slot":
        monkeypatch.setattr(_shm, "FORCE_WHOLE_SLOT", True)
    elif path == "entries":  # pagemap's entries read, not PAGEMAP_SCAN
        monkeypatch.setattr(_shm, "USE_SCAN", False)
    elif not _shm.USE_SCAN:
        pytest.skip("no PAGEMAP_SCAN on this kernel (Linux >= 6.7)")
    ev = pipeline == "f32"
    copied = [c for e in (4, 5) for c, _ in epoch_of(d, pipeline, e, shm=False, eval=ev)]
    got, slots = [], []
    with d.client(pipeline, window=2, eval=ev) as c:
        for e in (4, 5):
            for b in c.epoch(e):
                assert b.shm, "epoch %d batch %d was copied" % (e, b.index)
                got.append(content(b))
                ref = b._frames[1]
                sess = ref.session
                slots.append((ref.base.ctypes.data - sess._addr) // sess.slot_size)
                pages = scribble(b, how)
                if path != "whole_slot" and pagemap_readable():
                    assert sess.exact
                    runs = _shm.private_runs(ref.base.ctypes.data, sess.slot_size // _shm.PAGE)
                    assert [p for a, n in runs for p in range(a, a + n)] == pages
                del b, ref
    assert len(slots) > 2 * SERVER["shm_slots"] and len(set(slots)) > 1, slots
    assert got == copied
def test_metrics_show_shm(d):
    import urllib.request
    with d.client("train", window=2) as c:
        assert all([b.shm for b in c.epoch(4)])
        with urllib.request.urlopen(d.metrics_url, timeout=10) as r:
            text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("cutmixd_shm_"):
            name, v = line.split()
            values[name] = float(v)
    assert values["cutmixd_shm_batches_total"] > 0
    assert set(values) >= {"cutmixd_shm_fallbacks_total", "cutmixd_shm_bad_releases_total",
                           "cutmixd_shm_sessions", "cutmixd_shm_bytes"}


def test_slots_are_reused_when_batches_are_dropped(d):
    before = stats(d)
    with d.client("train", window=2) as c:
        n = 0
        for e in range(3):
            for b in c.epoch(e):
                assert b.shm, "epoch %d batch %d was copied" % (e, b.index)
                n += 1
    after = stats(d)
    assert n > 3 * SERVER["shm_slots"]
    assert after["shm_batches"] - before["shm_batches"] == n
    assert after["shm_fallbacks"] == before["shm_fallbacks"]


def test_held_batches_fall_back_to_copies_then_shm_resumes(d):
    ref = epoch_of(d, "train", 5, shm=False)
    before = stats(d)["shm_fallbacks"]
    with d.client("train", window=2) as c:
        kept = list(c.epoch(5))  # every batch held: the slots run out
        assert [content(b) for b in kept] == [r for r, _ in ref]
        via = [b.shm for b in kept]
        assert via[:SERVER["shm_slots"]] == [True] * SERVER["shm_slots"]
        assert not all(via)
        del kept
        gc.collect()
        again = [(content(b), b.shm) for b in c.epoch(5)]
    assert [r for r, _ in again] == [r for r, _ in ref]
    assert all(s for _, s in again[1:]), [s for _, s in again]
    assert stats(d)["shm_fallbacks"] > before


def test_bad_releases_are_counted_and_ignored(d):
    s = dealer(d.endpoint)
    try:
        before = stats(d)["shm_bad_releases"]
        bad = [dict(session=0, batch=0), dict(session=12345, batch=1, epoch=7),
               dict(session=(1 << 64) - 1, batch=1 << 31)]
        for k, kw in enumerate(bad):
            s.send(raw_request(_wire.SHM_RELEASE, 100 + k, "", **kw))
        with d.client("train") as c:  # a session of its own, then forged releases
            open_session(c)
            b = c.batch(0, 0)
            sess = c._peers[0].shm
            assert b.shm and sess is not None
            s.send(raw_request(_wire.SHM_RELEASE, 200, "", session=sess.id, batch=0, epoch=1))
            for kw in (dict(batch=70, epoch=1), dict(batch=0, epoch=99)):
                c._peers[0].sock.send(raw_request(_wire.SHM_RELEASE, 300, "",
                                                  session=sess.id, **kw))
            assert c.batch(0, 1).shm
        wait_for(lambda: stats(d)["shm_bad_releases"] - before >= len(bad) + 3,
                 "bad releases not counted")
        assert s.poll(200) == 0, "a release must get no reply"
    finally:
        s.close()
    assert d.alive()


def shm_open(s, rid=1):
    s.send(raw_request(_wire.SHM_OPEN, rid, "train", batch=2))
    assert s.poll(10000), "no reply to SHM_OPEN"
    frames = s.recv_multipart()
    hdr = _wire.decode_reply(frames[0])
    assert hdr.type == _wire.SHM_OPEN and len(frames) == 2, frames
    return _wire.SHM_OPEN_BODY.unpack(frames[1])


def side(name):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5)
    _shm.connect(c, b"\0" + name.split(b"\0", 1)[0][1:], time.monotonic() + 5)
    return c


def take_fd(c):
    """(session id bytes, [fd]) from the daemon; (b"", []) when it closed."""
    try:
        msg, anc, _, _ = c.recvmsg(8, socket.CMSG_SPACE(4))
    except ConnectionResetError:  # closed with our bytes unread
        return b"", []
    fds = [int(x) for lvl, typ, data in anc for x in np.frombuffer(data, dtype="<i4")]
    return msg, fds


def test_side_socket_refuses_bad_tokens_and_memfd_is_sealed(d):
    s = dealer(d.endpoint)
    silent = []
    try:
        sid, slots, slot_size, token, name = shm_open(s)
        assert slots == 2 and slot_size > 0
        half = side(name)
        half.settimeout(10)
        half.sendall(token[:16])  # never finishes
        for bad in (bytes(32), token[:31] + bytes([token[31] ^ 1]), b"x" * 40):
            c = side(name)
            c.sendall(bad)
            assert take_fd(c) == (b"", []), "a wrong token must get nothing"
            c.close()
        silent = [side(name) for _ in range(20)]  # more than the table holds
        # the daemon still serves others while those connections hang ...
        assert epoch_of(d, "train", 0, window=2)[0][1]
        # ... and closes them at their deadline (2 s), freeing the table
        for c in silent + [half]:
            assert take_fd(c) == (b"", [])
        c = side(name)
        c.sendall(token)
        msg, fds = take_fd(c)
        c.close()
        assert int.from_bytes(msg, "little") == sid and len(fds) == 1
        fd = fds[0]
        try:
            assert os.fstat(fd).st_size == slots * slot_size
            with pytest.raises(PermissionError):
                os.ftruncate(fd, 0)
            with pytest.raises(PermissionError):
                os.ftruncate(fd, 4 * slots * slot_size)
            with pytest.raises(PermissionError):
                mmap.mmap(fd, slot_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            with pytest.raises(PermissionError):
                os.pwrite(fd, b"x", 0)
            F_ADD_SEALS, F_GET_SEALS = 1033, 1034
            # F_SEAL_SEAL 1 | SHRINK 2 | GROW 4 | FUTURE_WRITE 0x10
            assert fcntl.fcntl(fd, F_GET_SEALS) == 0x17
            with pytest.raises(PermissionError):
                fcntl.fcntl(fd, F_ADD_SEALS, 0x8)
            mmap.mmap(fd, slot_size, mmap.MAP_SHARED, mmap.PROT_READ).close()
            # a private writable map is allowed (the client's): copy on write
            m = mmap.mmap(fd, slot_size, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
            was = os.pread(fd, 1, 0)
            m[0] = was[0] ^ 0xFF
            assert m[0] != was[0] and os.pread(fd, 1, 0) == was
            m.close()
        finally:
            os.close(fd)
        c = side(name)  # a token is good once
        c.sendall(token)
        assert take_fd(c) == (b"", [])
        c.close()
    finally:
        half.close()
        for c in silent:
            c.close()
        s.close()
    assert d.alive()


def test_client_checks_descriptors(d):
    """A lying daemon's descriptor is refused, never read out of bounds
    (generation 999: the releases these make are stale, so ignored)."""
    with d.client("train") as c:
        open_session(c)
        b = c.batch(0, 0)
        sess = c._peers[0].shm
        assert b.shm
        want = b.header.body_bytes
        n = sess.slot_size
        for desc in ((sess.id + 1, 0, 999, 0, want[0], 0, want[1], 0, want[2]),
                     (sess.id, sess.slots, 999, 0, want[0], 0, want[1], 0, want[2])):
            with pytest.raises(ProtocolError):
                sess.take(_wire.SHM_DESC.pack(*desc))
        with pytest.raises(ProtocolError):
            sess.take(b"short")
        for desc in ((sess.id, 0, 999, n - 8, want[0], 0, want[1], 0, want[2]),
                     (sess.id, 0, 999, 0, want[0], (1 << 64) - 1, want[1], 0, want[2]),
                     (sess.id, 0, 999, 0, want[0] - 1, 0, want[1], 0, want[2])):
            with pytest.raises(ProtocolError):
                sess.take(_wire.SHM_DESC.pack(*desc)).views(want)


def test_dropped_replies_release_their_slots(d):
    """Replies nobody takes any more (an abandoned epoch, late duplicates)
    still give their slots back: afterwards every batch is shm again."""
    with d.client("train", window=2) as c:
        for e in range(6):
            it = c.epoch(e)
            next(it)  # two more in flight, then abandoned
            it.close()
        got = [b.shm for b in c.epoch(7)]
    assert all(got), got


CHILD = r"""
import sys, time
sys.path[:0] = %r
import cutmixd
c = cutmixd.Client(%r, pipeline="train", window=2, timeout=30)
c.epoch(0).close()  # asks for the session (and INFO) without a batch
held = [c.batch(0, i) for i in range(3)]
assert all(b.shm for b in held), [b.shm for b in held]
print("holding", flush=True)
time.sleep(60)
"""


def test_killed_client_session_expires(tmp_path, ds_mixed):
    dm = Daemon(tmp_path / "k", ds_mixed.config(), PIPELINES,
                server=dict(SERVER, idle_timeout=1), name="kill")
    with dm:
        code = CHILD % (sys.path, dm.endpoint)
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        try:
            assert p.stdout.readline().strip() == b"holding"
            assert stats(dm)["shm_sessions"] >= 1 and stats(dm)["shm_bytes"] > 0
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        wait_for(lambda: stats(dm)["shm_sessions"] == 0 and stats(dm)["shm_bytes"] == 0,
                 "the killed client's session did not expire")
        assert all(s for _, s in epoch_of(dm, "train", 1, window=2)[1:])


def test_close_ends_the_session_at_once(d):
    c = d.client("train", window=2)
    open_session(c)
    b = c.batch(0, 0)
    open_now = stats(d)["shm_sessions"]
    assert b.shm and open_now >= 1
    c.close()
    wait_for(lambda: stats(d)["shm_sessions"] == open_now - 1,
             "close() did not end the session")
    assert b.images.sum() >= 0  # the views stay readable after close


def test_cache_hits_through_shm(tmp_path, ds_mixed):
    """Batches answered from the batch cache are copied into the slot too."""
    with Daemon(tmp_path / "cache", ds_mixed.config(), PIPELINES,
                server=dict(SERVER, batch_cache_mb=64), name="cache") as dm:
        first = epoch_of(dm, "train", 1, window=2)
        again = epoch_of(dm, "train", 1, window=2)
        copied = epoch_of(dm, "train", 1, shm=False)
        st = stats(dm)
    assert all(s for _, s in first + again)
    assert [c for c, _ in again] == [c for c, _ in first] == [c for c, _ in copied]
    assert st["cache_hits"] >= 2 * len(first) and st["shm_batches"] == 2 * len(first)


def test_tcp_to_loopback_uses_shm(tmp_path, ds_mixed):
    port = free_port()
    dm = Daemon(tmp_path / "tcp", ds_mixed.config(), PIPELINES, server=SERVER, name="tcp")
    dm.server["endpoint"] = "tcp://127.0.0.1:%d" % port
    dm.endpoint = dm.server["endpoint"]
    with dm:
        got = epoch_of(dm, "train", 0, window=2)
        ref = epoch_of(dm, "train", 0, shm=False)
    assert all(s for _, s in got) and [g for g, _ in got] == [r for r, _ in ref]


def test_shm_off_copies(tmp_path, ds_mixed):
    with Daemon(tmp_path / "off", ds_mixed.config(), PIPELINES,
                server={"shm": "off"}, name="off") as dm:
        got = epoch_of(dm, "train", 0)
        assert not any(s for _, s in got)
        st = stats(dm)
        assert st["shm_batches"] == 0 and st["shm_sessions"] == 0


def test_modes_choose_endpoints():
    assert _shm.eligible("ipc:///tmp/x", "auto")
    assert _shm.eligible("tcp://127.0.0.1:5555", "auto")
    assert _shm.eligible("tcp://[::1]:5555", "auto")
    assert _shm.eligible("tcp://localhost:5555", "auto")
    assert not _shm.eligible("tcp://10.0.0.1:5555", "auto")
    assert _shm.eligible("tcp://10.0.0.1:5555", True)
    assert not _shm.eligible("ipc:///tmp/x", False)
    with pytest.raises(ValueError):
        cutmixd.Client("ipc:///tmp/none", shm="yes")


def test_curve_daemon_with_shm(tmp_path, ds_mixed):
    keys = {}
    for name in ("server", "alice"):
        p = subprocess.run([str(Path(__file__).resolve().parents[2] / "bin" / "cutmixd"),
                            "keygen", name], cwd=str(tmp_path), capture_output=True, text=True,
                           timeout=10)
        assert p.returncode == 0, p.stderr
        keys[name] = (tmp_path / (name + ".pub"), tmp_path / (name + ".key"))
    (tmp_path / "authorized_keys").write_text(keys["alice"][0].read_text())
    dm = Daemon(tmp_path / "c", ds_mixed.config(), PIPELINES, server=SERVER, name="curve",
                security={"curve_secret_key_file": str(keys["server"][1]),
                          "authorized_keys": str(tmp_path / "authorized_keys")})
    with dm:
        kw = dict(server_key=cutmixd.load_public_key(keys["server"][0]))
        kw.update(zip(("public_key", "secret_key"), cutmixd.load_keypair(keys["alice"][1])))
        ref = epoch_of(dm, "train", 2, shm=False, **kw)
        got = epoch_of(dm, "train", 2, window=2, **kw)
        assert all(s for _, s in got) and [g for g, _ in got] == [r for r, _ in ref]


@pytest.mark.parametrize("scan", [True, False])
def test_many_scattered_writes_are_all_dropped(monkeypatch, scan):
    """More private runs than the PAGEMAP_SCAN vector holds or MAX_RUNS
    allows (every other page written): every one is still dropped. On a
    memfd of this test's own, mapped as the client maps the daemon's."""
    monkeypatch.setattr(_shm, "USE_SCAN", scan and _shm.USE_SCAN)
    n = 4 * _shm.MAX_RUNS
    fd = os.memfd_create("cutmixd-test", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, n * _shm.PAGE)
        daemon = mmap.mmap(fd, n * _shm.PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        mine = mmap.mmap(fd, n * _shm.PAGE, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    a = np.frombuffer(mine, dtype=np.uint8)
    sess = _shm.Session.__new__(_shm.Session)  # the mapping part of a session
    sess._map, sess.slot_size, sess._addr = mine, n * _shm.PAGE, a.ctypes.data
    sess.exact = sess._pagemap_works()
    if pagemap_readable():
        assert sess.exact
    daemon[:] = b"\1" * len(daemon)
    assert int(a.sum()) == len(a)  # every page mapped, the daemon's
    a[::2 * _shm.PAGE] = 9  # a private copy of every other page
    if sess.exact:
        runs = _shm.private_runs(sess._addr, n)
        assert runs[:_shm.MAX_RUNS] == [(2 * i, 1) for i in range(_shm.MAX_RUNS)]
        covered = {p for f, c in runs for p in range(f, f + c)}
        assert covered >= set(range(0, n, 2)), runs[-3:]
    assert sess._drop_private(0)
    daemon[:] = b"\2" * len(daemon)  # the daemon's next batch there
    assert bytes(a) == b"\2" * len(a)
    assert not sess.exact or _shm.private_runs(sess._addr, n) == []
    del a
    daemon.close()
