"""Limits that keep one client or one dataset from stalling the others
(issue 14): INFO on a dataset with very many classes, counted against the
client's window.

Bounded in count and time; ipc:// only.
"""

import json
import signal
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


# -- file descriptors and the ipc:// path (issue 14 items 1, 3, 7) -----------------

import resource  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402

from helpers import BIN  # noqa: E402

EX_SOFTWARE = 70


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("lim_tiny")
    gen_dataset.make_dataset(root, classes=2, per_class=4, size=(16, 16), seed=1)
    return {"root": str(root)}


TINY_PIPES = {"train": dict(batch_size=2, size=16, crop="center", resize=16)}


def _limit_nofile(soft, hard):
    def set_it():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return set_it


def test_start_under_a_tiny_fd_limit_exits_70(tmp_path, tiny):
    """RLIMIT_NOFILE 12 (soft and hard): a clear message and exit 70, not
    SIGABRT from inside libzmq."""
    d = Daemon(tmp_path, tiny, TINY_PIPES)
    d.write_config()
    p = subprocess.run([str(BIN), "-c", str(d.config_path)], capture_output=True, text=True,
                       timeout=30, preexec_fn=_limit_nofile(12, 12))
    assert p.returncode == EX_SOFTWARE, (p.returncode, p.stderr)
    assert "too few file descriptors: RLIMIT_NOFILE is 12" in p.stderr, p.stderr


def test_soft_fd_limit_raised_so_plain_connects_do_not_kill_it(tmp_path, tiny):
    """Soft limit 64, hard 4096: the daemon raises the soft limit at start,
    so 300 local processes' raw connect()s to the ipc:// socket (nothing
    sent) do not abort it (libzmq 4.3.4 asserts on EMFILE in accept), and a
    client is still served."""
    d = Daemon(tmp_path, tiny, TINY_PIPES)
    d.write_config()
    d._log = open(d.log_path, "wb")
    d.proc = subprocess.Popen(d.command(), stdout=d._log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, cwd=str(d.dir),
                              preexec_fn=_limit_nofile(64, 4096))
    import helpers
    helpers.TEST_DAEMONS.append(d)
    helpers.LIVE_DAEMONS.append(d)
    d.wait_ready()
    conns = []
    try:
        assert "raised from 64 to the hard limit 4096" in d.log(), d.tail()
        for _ in range(300):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(str(d.socket_path))
            conns.append(c)
        time.sleep(1.0)
        assert d.alive(), "died under 300 plain connects:\n" + d.tail()
        with d.client("train", timeout=10) as c:
            assert len(c.batch(0, 0)) == 2
    finally:
        for c in conns:
            c.close()
        d.stop()


def test_second_daemon_on_the_same_ipc_path_refuses_to_start(tmp_path, tiny):
    """Two daemons on one ipc:// path: the second exits 70 naming the path
    (it used to take the endpoint over silently); the first keeps serving."""
    with Daemon(tmp_path / "a", tiny, TINY_PIPES) as a:
        b = Daemon(tmp_path / "b", tiny, TINY_PIPES, server={"endpoint": a.endpoint})
        b.write_config()
        p = subprocess.run(b.command(), capture_output=True, text=True, timeout=30)
        assert p.returncode == EX_SOFTWARE, (p.returncode, p.stderr)
        assert "cannot bind '%s': another process serves it" % a.endpoint in p.stderr, p.stderr
        with a.client("train", timeout=10) as c:
            assert len(c.batch(0, 0)) == 2
    # once the first is gone, a new one starts on the same path (stale socket)
    c2 = Daemon(tmp_path / "c", tiny, TINY_PIPES, server={"endpoint": a.endpoint})
    c2.endpoint = a.endpoint
    with c2:
        with c2.client("train", timeout=10) as c:
            assert len(c.batch(0, 0)) == 2


def test_second_daemon_refused_by_a_connect_probe_without_lock(tmp_path, tiny):
    """Where the lock file cannot decide (a daemon that holds none, here a
    plain listener standing in for it), the connect probe refuses too."""
    path = tmp_path / "l.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    try:
        b = Daemon(tmp_path / "b", tiny, TINY_PIPES, server={"endpoint": "ipc://%s" % path})
        b.write_config()
        p = subprocess.run(b.command(), capture_output=True, text=True, timeout=30)
        assert p.returncode == EX_SOFTWARE, (p.returncode, p.stderr)
        assert "another process serves it (it accepted a connection)" in p.stderr, p.stderr
        assert path.exists()
    finally:
        srv.close()


@pytest.mark.skipif(SANITIZER is not None, reason="sanitizers reserve terabytes of address space")
def test_start_under_tight_address_space_limits_never_aborts(tmp_path, tiny):
    """Issue 14 item 3: with RLIMIT_AS from 30 to 60 MB the daemon either
    starts (and stops with 0 on SIGTERM) or exits 70 with one line saying
    what could not start; never SIGABRT from libzmq."""
    d = Daemon(tmp_path, tiny, TINY_PIPES)
    d.write_config()
    seen = {}
    for mb in range(30, 62, 4):
        def lim(mb=mb):
            resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
        p = subprocess.Popen([str(BIN), "-c", str(d.config_path)], stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True, preexec_fn=lim)
        try:
            p.wait(1.5)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
        try:
            err = p.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            p.kill()
            pytest.fail("no exit within 10 s at RLIMIT_AS %d MB" % mb)
        seen[mb] = p.returncode
        assert p.returncode in (0, EX_SOFTWARE), (mb, p.returncode, err)
        if p.returncode == EX_SOFTWARE:
            assert "cannot start" in err, (mb, err)
    assert EX_SOFTWARE in seen.values(), seen  # the range does reach the limit
