"""The Python receive path does not copy frames (issue 13): images, labels
and meta are numpy views on the ZeroMQ frames themselves, their memory
lives as long as the Batch (or any view), and survives the client."""

import gc

import numpy as np
import pytest

import cutmixd
from helpers import module_daemon

PIPELINES = {"train": dict(batch_size=4, size=32, crop="random_resized", flip=0.5,
                           cutmix_alpha=1.0)}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_mixed):
    dm = module_daemon(tmp_path_factory, "zc", ds_mixed.config(), PIPELINES)
    yield dm
    dm.stop()


def addr(buf):
    return np.frombuffer(buf, dtype=np.uint8).ctypes.data


def test_views_on_the_frames(d):
    with d.client("train") as c:
        b = c.batch(0, 1)
    assert b.images.ctypes.data == addr(b.raw_frames[1])
    assert b.labels.ctypes.data == addr(b.raw_frames[2])
    assert b.meta.ctypes.data == addr(b.raw_frames[3])
    assert not b.images.flags.owndata and b.images.flags.writeable


def test_memory_lives_with_the_batch(d):
    c = d.client("train")
    b = c.batch(2, 0)
    want = (b.images.tobytes(), b.labels.tobytes(), b.meta.tobytes())
    images = b.images
    c.close()
    del c, b
    for _ in range(3):
        gc.collect()
    with d.client("train") as c2:  # more traffic reusing freed memory, if any was freed
        for _ in c2.epoch(3):
            pass
    assert images.tobytes() == want[0]
    images[0, 0, 0, 0] ^= 0xFF  # the Batch owns its frames: writing in place is allowed
    assert images.tobytes() != want[0]


def test_reuse_receive_buffers(d):
    assert cutmixd.reuse_receive_buffers() is True  # glibc (Debian)
    with d.client("train") as c:
        a = [(b.images.tobytes(), b.labels.tobytes()) for b in c.epoch(4)]
        b2 = [(b.images.tobytes(), b.labels.tobytes()) for b in c.epoch(4)]
    assert a == b2 and len(a) == c.batches_per_epoch()
