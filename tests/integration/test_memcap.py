"""The daemon under resource caps set on the running process (prlimit):

* a memory cap (RLIMIT_AS just above what the daemon has mapped) that
  makes a large batch's allocation fail: the request gets INTERNAL with a
  message saying it is out of memory, a pipeline with a small batch keeps
  being served (same bytes as before the cap), and once the cap is lifted
  the large batch is served; no crash, exit 0 on SIGTERM;
* descriptor exhaustion (RLIMIT_NOFILE at the descriptors already open)
  with several clients: each request fails with INTERNAL "Too many open
  files ... not a bad file; retry", a client that connects during the
  exhaustion is served once the limit is raised again, nothing is marked
  bad and every client then gets the bytes it got before.

test_mutation.py has the one-client descriptor case; this file adds the
memory cap and the several-clients / new-connection case, on tcp:// and
ipc:// (where libzmq aborts on a new connection: a strict xfail until
that is fixed)."""

import os
import resource
import threading
import time

import pytest

import cutmixd
import gen_dataset
from helpers import SANITIZER, Daemon, Dataset, free_port, lowest_free_fd, proc_status_bytes

MiB = 1024 * 1024
SMALL = dict(batch_size=4, size=32, crop="center", resize=32, flip=0.0, shuffle=False)
# 64 x 512 x 512 x 3 = 48 MiB of pixels: far more than the margin below.
BIG = dict(batch_size=64, size=512, crop="center", resize=512, flip=0.0, shuffle=False)
BIG_BYTES = 64 * 512 * 512 * 3
MARGIN = 16 * MiB


def make_ds(tmp_path):
    root = tmp_path / "root"
    s = gen_dataset.make_dataset(root, classes=2, per_class=32, size=(64, 64),
                                 subsampling="420", seed=5)
    return Dataset(root, s)


def frames(b):
    return [bytes(f) for f in b.raw_frames[1:]]


def vm_size(pid):
    return proc_status_bytes(pid, "VmSize")


@pytest.mark.skipif(SANITIZER is not None,
                    reason="ASan/TSan reserve terabytes of address space: RLIMIT_AS cannot cap them")
def test_memory_cap_fails_the_big_batch_with_internal_and_recovers(tmp_path):
    ds = make_ds(tmp_path)
    d = Daemon(tmp_path / "d", ds.config(), {"small": SMALL, "big": BIG},
               server={"workers": 2})
    d.start()
    pid = d.proc.pid
    try:
        with d.client("small", timeout=20.0) as small, d.client("big", timeout=20.0) as big:
            # Warm up: connections, INFO of both pipelines, worker buffers.
            big.info()
            ref = [small.batch(0, i) for i in range(2)]
            ref = [small.batch(0, i) for i in range(2)]
            soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
            cap = vm_size(pid) + MARGIN
            assert cap + BIG_BYTES > cap + MARGIN
            resource.prlimit(pid, resource.RLIMIT_AS, (cap, hard))
            try:
                for attempt in range(3):
                    with pytest.raises(cutmixd.DaemonError) as ei:
                        big.batch(0, 0)
                    e = ei.value
                    assert e.code == cutmixd.Status.INTERNAL, e
                    assert "out of memory for a batch of 64" in e.message, e.message
                    assert d.alive()
                    # the small pipeline keeps being served, byte for byte
                    for i in range(2):
                        assert frames(small.batch(0, i)) == frames(ref[i]), (attempt, i)
                st = small.stats()
            finally:
                resource.prlimit(pid, resource.RLIMIT_AS, (soft, hard))
            assert st["bad_files"] == 0, st
            assert st["replaced"] == 0, st
            # the cap is gone: the big batch is served, complete
            b = big.batch(0, 0)
            assert b.images.shape == (64, 512, 512, 3)
            assert not b.meta["status"].any()
            assert frames(small.batch(0, 0)) == frames(ref[0])
        assert d.alive()
    finally:
        d.stop()


# On ipc:// a connection arriving while the table is full aborts the daemon
# inside libzmq: ipc_listener_t::accept() (src/ipc_listener.cpp:325 in
# 4.3.4, unchanged upstream) asserts that accept4() failed with EAGAIN,
# EINTR, ECONNABORTED, EPROTO or ENFILE, and EMFILE is not among them
# ("Too many open files (src/ipc_listener.cpp:325)", SIGABRT). The TCP
# listener tolerates EMFILE. Strict: this fails as soon as it is fixed.
IPC_ABORT = pytest.mark.xfail(strict=True, reason="libzmq 4.3.4 ipc_listener asserts on EMFILE "
                              "in accept: the daemon aborts (see docs/OPERATIONS.md)")


@pytest.mark.parametrize("transport", ["tcp", pytest.param("ipc", marks=IPC_ABORT)])
def test_fd_exhaustion_with_several_clients_is_internal_then_recovers(tmp_path, transport):
    ds = make_ds(tmp_path)
    server = {"workers": 2}
    if transport == "tcp":
        server["endpoint"] = "tcp://127.0.0.1:%d" % free_port()
    d = Daemon(tmp_path / "d", ds.config(), {"small": SMALL}, server=server)
    if transport == "tcp":
        d.endpoint = server["endpoint"]
    d.start()
    pid = d.proc.pid
    # Copies, not shared memory: a shared-memory handshake holds a side
    # connection's fd for a moment, which would move the one free fd this
    # test counts (fd exhaustion on the side socket itself is
    # tests/unit/test_shm.c's test_accept_without_fds_pauses).
    clients = [d.client("small", timeout=20.0, shm=False) for _ in range(3)]
    late = t = None
    try:
        ref = [c.batch(0, k % 2) for k, c in enumerate(clients)]
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), hard))
        late_result = {}
        try:
            for rnd in range(2):
                for k, c in enumerate(clients):
                    with pytest.raises(cutmixd.DaemonError) as ei:
                        c.batch(0, k % 2)
                    e = ei.value
                    assert e.code == cutmixd.Status.INTERNAL, (rnd, k, e)
                    assert "Too many open files" in e.message, e.message
                    assert "not a bad file; retry" in e.message, e.message
            # A client connecting now cannot be accepted (no descriptor):
            # its request waits, it is not lost.
            late = d.client("small", timeout=10.0, shm=False)

            def take():
                try:
                    late_result["batch"] = late.batch(0, 1)
                except Exception as exc:  # noqa: BLE001 (asserted below)
                    late_result["error"] = exc

            t = threading.Thread(target=take, daemon=True)
            t.start()
            time.sleep(1.0)
            assert d.alive(), "the daemon died with its descriptors exhausted"
        finally:
            if d.alive():
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        t.join(15)
        assert not t.is_alive(), "the client that connected during the exhaustion got no reply"
        assert "error" not in late_result, late_result.get("error")
        assert frames(late_result["batch"]) == frames(ref[1])
        for k, c in enumerate(clients):
            again = c.batch(0, k % 2)
            assert not again.meta["status"].any()
            assert frames(again) == frames(ref[k]), k
        st = clients[0].stats()
        assert st["bad_files"] == 0 and st["bad_file_list"] == [], st
        assert st["replaced"] == 0, st
        assert d.alive()
    finally:
        if late is not None and t.is_alive():
            t.join(15)  # its own timeout ends it; never close a socket in use
        for c in clients + ([late] if late is not None and not t.is_alive() else []):
            c.close()
        d.stop()


class LimitedDaemon(Daemon):
    """The daemon started under `prlimit --nofile=SOFT:HARD` (which execs
    it: same PID)."""

    def __init__(self, *a, nofile, **kw):
        super().__init__(*a, **kw)
        self.nofile = nofile

    def command(self):
        return ["prlimit", "--nofile=%d:%d" % self.nofile, "--"] + super().command()


def soft_nofile(pid):
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]


def test_a_low_soft_descriptor_limit_is_raised_at_start(tmp_path):
    """Started with 64 descriptors (hard 4096), the daemon raises its soft
    limit to the hard one, so 80 clients connected over ipc:// at once are
    all served (at 64 the daemon would abort inside libzmq's accept)."""
    ds = make_ds(tmp_path)
    d = LimitedDaemon(tmp_path / "d", ds.config(), {"small": SMALL}, server={"workers": 2},
                      nofile=(64, 4096))
    d.start()
    clients = []
    try:
        assert soft_nofile(d.proc.pid) == 4096
        assert "file descriptor limit raised from 64 to the hard limit 4096" in d.log()
        ref = None
        for k in range(80):
            c = d.client("small", timeout=20.0)
            clients.append(c)
            b = c.batch(0, 0)
            ref = ref or frames(b)
            assert frames(b) == ref, k
        assert d.alive()
        assert len(os.listdir("/proc/%d/fd" % d.proc.pid)) > 80
    finally:
        for c in clients:
            c.close()
        d.stop()

