"""Limits that keep one client or one dataset from stalling the others
(issue 14): INFO on a dataset with very many classes, counted against the
client's window.

Bounded in count and time; ipc:// only.
"""

import json
import threading
import time

import pytest
import zmq

from cutmixd import _wire
import gen_dataset
from helpers import SANITIZER, Daemon

N_CLASSES = 200_000


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory):
    """A manifest of N_CLASSES lines, each its own class (names with a quote
    and a backslash, to be escaped), over 8 tiny files."""
    root = tmp_path_factory.mktemp("lim_many")
    samples = gen_dataset.make_dataset(root, classes=2, per_class=4, size=(16, 16), seed=2)
    man = root / "many.tsv"
    with open(man, "w") as f:
        for k in range(N_CLASSES):
            f.write('%s\tc%06d"q\\b\n' % (samples[k % len(samples)].path, k))
    return {"root": str(root), "manifest": str(man)}


def test_many_infos_with_200k_classes_do_not_stall_others(tmp_path, many_classes):
    """Issue 14 item 10: one client sends 50 INFO requests for a pipeline of
    200k classes (keeping 4 in flight, as a window), while another client
    asks for batches: the other client is never held up for long, and every
    INFO carries all class names, correctly escaped."""
    pipes = {"train": dict(batch_size=2, size=16, crop="center", resize=16)}
    with Daemon(tmp_path, many_classes, pipes, server={"max_client_window": 4}) as d:
        stop, worst, served, errors = threading.Event(), [0.0], [0], []

        def other():
            try:
                with d.client("train", timeout=30) as c:
                    while not stop.is_set():
                        t = time.monotonic()
                        c.batch(0, served[0] % 10)
                        worst[0] = max(worst[0], time.monotonic() - t)
                        served[0] += 1
            except Exception as exc:  # reported below
                errors.append(exc)

        th = threading.Thread(target=other)
        th.start()
        time.sleep(0.3)
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(d.endpoint)
        sent = got = 0
        sizes = set()
        t0 = time.monotonic()
        try:
            while got < 50 and time.monotonic() - t0 < 60:
                while sent < 50 and sent - got < 4:
                    sent += 1
                    s.send(_wire.encode_request(_wire.INFO, sent, "train"))
                assert s.poll(30000), "no INFO reply within 30 s"
                frames = s.recv_multipart()
                hdr = _wire.decode_reply(frames[0])
                assert hdr.type == _wire.INFO, (hdr.status, frames[1][:200])
                if got == 0:
                    info = json.loads(frames[1])
                    assert info["num_classes"] == N_CLASSES
                    assert info["class_names"][123] == 'c000123"q\\b'
                    assert len(info["class_names"]) == N_CLASSES
                sizes.add(len(frames[1]))
                got += 1
            took = time.monotonic() - t0
        finally:
            s.close(0)
            stop.set()
            th.join(30)
        assert not errors, errors
        assert got == 50 and len(sizes) == 1, (got, sizes)
        print("50 INFOs of %d bytes in %.2f s; other client: %d batches, slowest %.3f s"
              % (sizes.pop(), took, served[0], worst[0]))
        if SANITIZER is None:
            assert worst[0] < 1.0, "a batch request waited %.2f s behind INFOs" % worst[0]
        assert served[0] > 0
