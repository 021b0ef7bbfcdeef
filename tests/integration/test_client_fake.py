"""The Python client against a small fake ROUTER server (no daemon needed):
flow control, reordering, zero-copy views, metadata offsets, errors,
timeouts, version checks and the torch glue."""

import struct
import time

import numpy as np
import pytest

import helpers  # noqa: F401  (puts client/python on sys.path)
import cutmixd
from cutmixd import _wire
from fakes import FakeDaemon


@pytest.fixture
def endpoint(tmp_path):
    sock_dir, tmp = helpers.short_socket_dir(tmp_path)
    yield "ipc://%s/fake.sock" % sock_dir
    if tmp:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def test_wire_sizes_match_header():
    assert _wire.REQUEST_SIZE == 80 and _wire.REPLY_SIZE == 128 and _wire.META_SIZE == 488
    assert _wire.META_SIZE_V1 == 224 and _wire.META_DTYPE_V1.itemsize == 224
    rq = _wire.encode_request(_wire.BATCH, 0x0102030405060708, "train", epoch=3, batch=9,
                              rank=1, world=4, flags=1)
    assert len(rq) == 80
    assert rq[0:4] == b"CMXQ"
    assert struct.unpack_from("<HHIIQIII", rq, 4) == (2, 2, 1, 9, 0x0102030405060708, 3, 1, 4)
    assert rq[36:40] == b"\0" * 4 and rq[40:45] == b"train" and rq[45:80] == b"\0" * 35
    hdr = _wire.encode_reply(_wire.BATCH, 5, body_bytes=(1, 2, 3), meta_size=224)
    assert hdr[0:4] == b"CMXR" and struct.unpack_from("<3Q", hdr, 104) == (1, 2, 3)
    assert struct.unpack_from("<H", hdr, 58) == (224,)
    with pytest.raises(ValueError):
        _wire.encode_pipeline("x" * 32)


def test_epoch_in_order_window_and_reorder(endpoint):
    with FakeDaemon(endpoint, n_batches=7) as fake:
        with cutmixd.Client(endpoint, window=3, timeout=5) as c:
            got = [(b.epoch, b.index) for b in c.epoch(2)]
    assert got == [(2, k) for k in range(7)]
    assert fake.max_outstanding == 3  # the window was used, and never exceeded
    # a fake that does not know SHM_OPEN (answered UNKNOWN_TYPE): copies
    kinds = [r.type for r in fake.requests if r.type != _wire.SHM_OPEN]
    assert kinds[0] == _wire.INFO and kinds.count(_wire.BATCH) == 7


def test_epoch_start_and_step(endpoint):
    with FakeDaemon(endpoint, n_batches=7):
        with cutmixd.Client([endpoint], window=2, timeout=5) as c:
            assert [b.index for b in c.epoch(0, start=4)] == [4, 5, 6]
            assert [b.index for b in c.epoch(0, start=1, step=3)] == [1, 4]


def test_batch_views_and_meta_offsets(endpoint):
    with FakeDaemon(endpoint, B=3, H=4, W=5, K=4) as fake:
        with cutmixd.Client(endpoint, timeout=5) as c:
            b = c.batch(1, 2)
            info = c.info()
            stats = c.stats()
    assert info["batches_per_epoch"] == 6 and "requests" in stats
    assert (b.epoch, b.index, len(b)) == (1, 2, 3)
    assert b.images.shape == (3, 4, 5, 3) and b.images.dtype == np.uint8
    assert b.images[0, 1, 1, 1] == 18 and list(b.images[:, 0, 0, 0]) == [0, 1, 2]
    # zero copy: views on the received frames
    assert not b.images.flags.owndata
    assert np.shares_memory(b.images, np.frombuffer(b.raw_frames[1], np.uint8))
    assert np.shares_memory(b.labels, np.frombuffer(b.raw_frames[2], np.uint8))
    assert b.labels.dtype == np.float32 and b.labels.shape == (3, 4)
    assert b.digest == fake.digest.hex()
    assert len(b.raw_frames) == 4 and len(bytes(b.raw_frames[0])) == 128
    m = b.meta
    assert m.dtype.itemsize == 488  # protocol 2 records
    assert list(m["index"]) == [6, 7, 8] and list(m["source"]) == [1006, 1007, 1008]
    assert list(m["partner"]) == [2006, 2007, 2008] and list(m["lam"]) == [0.25, 1.25, 2.25]
    assert list(m["label"]) == [0, 1, 2] and list(m["partner_label"]) == [1, 2, 3]
    assert list(m["partner_pos"]) == [1, 2, 0]
    assert m["box"][0].tolist() == [1, 2, 3, 4]
    assert m["crop"][1].tolist() == [0.5, 1.5, 2.5, 3.5]
    assert list(m["src_w"]) == [640, 641, 642] and list(m["src_h"]) == [480, 481, 482]
    assert (m["op"][0], m["flip"][0], m["status"][0], m["n_holes"][0], m["pad"][0]) == (1, 1, 0, 2, 1)
    assert m["holes"].shape == (3, 8, 4) and m["holes"][2, 7].tolist() == [7, 17, 27, 37]
    assert not b.last


def test_last_flag(endpoint):
    with FakeDaemon(endpoint, n_batches=2):
        with cutmixd.Client(endpoint, timeout=5) as c:
            assert [b.last for b in c.epoch(0)] == [False, True]


def test_daemon_error(endpoint):
    with FakeDaemon(endpoint):
        with cutmixd.Client(endpoint, pipeline="nope", timeout=5) as c:
            with pytest.raises(cutmixd.DaemonError) as ei:
                c.info()
    e = ei.value
    assert e.code == cutmixd.Status.NO_PIPELINE and e.code == 4 and e.name == "NO_PIPELINE"
    assert "unknown pipeline 'nope'" in e.message and "NO_PIPELINE" in str(e)


def test_error_mid_epoch_and_recovery(endpoint):
    errs = {(0, 2): (_wire.Status.INTERNAL, "boom")}
    with FakeDaemon(endpoint, n_batches=6, errors=errs):
        with cutmixd.Client(endpoint, window=4, timeout=5) as c:
            seen = []
            with pytest.raises(cutmixd.DaemonError) as ei:
                for b in c.epoch(0):
                    seen.append(b.index)
            assert seen == [0, 1] and ei.value.name == "INTERNAL"
            # the abandoned replies are dropped; the client keeps working
            assert [b.index for b in c.epoch(1)] == list(range(6))


def test_break_out_of_epoch(endpoint):
    with FakeDaemon(endpoint, n_batches=6) as fake:
        with cutmixd.Client(endpoint, window=4, timeout=5) as c:
            for b in c.epoch(0):
                break
            assert [b.index for b in c.epoch(1)] == list(range(6))
            assert c.batch(3, 1).index == 1
    assert fake.max_outstanding <= 4


def test_window_capped_by_max_window(endpoint):
    with FakeDaemon(endpoint, n_batches=8, max_window=2) as fake:
        with cutmixd.Client(endpoint, window=8, timeout=5) as c:
            assert c.effective_window() == 2
            assert len(list(c.epoch(0))) == 8
    assert fake.max_outstanding == 2


def test_version_mismatch(endpoint):
    with FakeDaemon(endpoint, version=3):  # 1 and 2 are read (issue 8)
        with cutmixd.Client(endpoint, timeout=5) as c:
            with pytest.raises(cutmixd.VersionError, match="protocol version 3.*speaks 2"):
                c.info()


def test_bad_frame_sizes(endpoint):
    with FakeDaemon(endpoint, bad_sizes=True):
        with cutmixd.Client(endpoint, timeout=5) as c:
            with pytest.raises(cutmixd.ProtocolError, match="frame sizes"):
                c.batch(0, 0)


def test_timeout_names_endpoint(tmp_path):
    ep = "ipc://%s/nobody.sock" % helpers.short_socket_dir(tmp_path)[0]
    c = cutmixd.Client(ep, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(cutmixd.TimeoutError) as ei:
        c.info()
    assert time.monotonic() - t0 < 3
    assert ep in str(ei.value) and isinstance(ei.value, TimeoutError)
    with pytest.raises(cutmixd.TimeoutError):
        c.batch(0, 0)
    c.close()
    with pytest.raises(cutmixd.Error, match="after close"):
        c.info()


def test_late_reply_after_timeout_is_ignored(endpoint):
    with FakeDaemon(endpoint, delays={(0, 0): 0.6}):
        with cutmixd.Client(endpoint, timeout=0.3) as c:
            with pytest.raises(cutmixd.TimeoutError):
                c.batch(0, 0)
            time.sleep(0.5)  # the late reply arrives now
            b = c.batch(0, 1)
            assert (b.epoch, b.index) == (0, 1)


def test_eval_flag_on_every_request(endpoint):
    with FakeDaemon(endpoint) as fake:
        with cutmixd.Client(endpoint, eval=True, timeout=5, rank=1, world=2) as c:
            c.info()
            c.batch(0, 0)
            c.stats()
        with cutmixd.Client(endpoint, timeout=5) as c:
            c.info()
    asked = [r for r in fake.requests if r.type != _wire.SHM_OPEN]
    assert [r.flags for r in asked] == [1, 1, 1, 0]
    assert all((r.rank, r.world) == (1, 2) for r in asked[:3])


def test_torch_glue(endpoint, monkeypatch):
    torch = pytest.importorskip("torch")
    from cutmixd.torch import CutmixdIterable, to_torch

    with FakeDaemon(endpoint, n_batches=4) as fake:
        with cutmixd.Client(endpoint, timeout=5) as c:
            b = c.batch(0, 1)
        x, y, meta = to_torch(b)
        assert x.data_ptr() == b.images.ctypes.data  # no copy
        assert y.data_ptr() == b.labels.ctypes.data
        assert tuple(x.shape) == b.images.shape and x.dtype == torch.uint8
        assert meta is b.meta
        _, _, md = to_torch(b, meta="dict")
        assert md["index"].tolist() == [3, 4, 5] and md["box"].shape == (3, 4)
        monkeypatch.setenv("RANK", "1")
        monkeypatch.setenv("WORLD_SIZE", "3")
        ds = CutmixdIterable(endpoint, "train", timeout=5)
        assert (ds.rank, ds.world) == (1, 3) and len(ds) == 4
        ds.set_epoch(5)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
        batches = list(loader)
    assert len(batches) == 4
    assert [int(xb[0, 1, 1, 1]) for xb, _, _ in batches] == [80, 81, 82, 83]
    reqs = [r for r in fake.requests if r.type == _wire.BATCH and r.epoch == 5]
    assert all((r.rank, r.world) == (1, 3) for r in reqs)
