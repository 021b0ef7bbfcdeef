"""`[server] tcp_sndbuf_kb`: the send buffer of the daemon's TCP
connections (docs/PERFORMANCE.md, "TCP: socket buffers and batching").

- set, it reaches the kernel: the daemon's end of a client's connection
  has the size the kernel makes of SO_SNDBUF (twice the value, capped at
  net.core.wmem_max), as `ss -tm` shows it, and the batches are the same
  bytes as without it;
- a size above net.core.wmem_max is logged as a warning (the kernel caps
  it silently otherwise);
- --check accepts 0..1048576 and refuses anything else with the file line.
"""

import re
import shutil
import subprocess
import time

import pytest

import gen_dataset
from helpers import BIN, EX_CONFIG, Daemon, config_text, free_port, require_binary

TRAIN = dict(batch_size=8, size=32, flip=0.5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds_tcpbuf")
    gen_dataset.make_dataset(root, classes=2, per_class=8, size=(48, 40), seed=4)
    return {"root": str(root)}


def wmem_max():
    with open("/proc/sys/net/core/wmem_max") as f:
        return int(f.read())


def tcp_daemon(tmp_path, dataset, **server):
    port = free_port()
    d = Daemon(tmp_path, dataset, {"train": TRAIN},
               server=dict(server, endpoint="tcp://127.0.0.1:%d" % port))
    d.endpoint = "tcp://127.0.0.1:%d" % port
    return d, port


def daemon_sndbuf(port, timeout=10.0):
    """skmem tb (bytes) of the established socket with local port `port`."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-tmn", "state", "established", "src",
                              "127.0.0.1:%d" % port], capture_output=True, text=True,
                             timeout=10).stdout
        m = re.search(r"skmem:\([^)]*\btb(\d+)", out)
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError("no established socket on port %d in ss:\n%s" % (port, out))


def epoch_frames(client):
    return [tuple(bytes(f) for f in b.raw_frames[1:]) for b in client.epoch(0)]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_sndbuf_reaches_the_kernel_and_changes_no_byte(tmp_path, dataset):
    kb = 192  # below any usual net.core.wmem_max (212992 on a stock kernel)
    want = 2 * min(kb * 1024, wmem_max())
    plain, _ = tcp_daemon(tmp_path / "plain", dataset)
    with plain, plain.client("train") as c:
        ref = epoch_frames(c)
    d, port = tcp_daemon(tmp_path / "set", dataset, tcp_sndbuf_kb=kb)
    with d, d.client("train") as c:
        got = epoch_frames(c)
        tb = daemon_sndbuf(port)
    assert tb == want, "daemon's send buffer %d bytes, expected %d (2 x %d KiB)\n%s" % (
        tb, want, kb, d.tail())
    assert got == ref, "tcp_sndbuf_kb changed the batches"
    assert "tcp send buffer %d bytes" % (kb * 1024) in d.log(), d.tail()


def test_sndbuf_above_wmem_max_is_a_warning(tmp_path, dataset):
    kb = 1 << 20  # 1 GiB: above any net.core.wmem_max
    if kb * 1024 <= wmem_max():
        pytest.skip("net.core.wmem_max is at least 1 GiB here")
    d, _ = tcp_daemon(tmp_path, dataset, tcp_sndbuf_kb=kb)
    with d, d.client("train") as c:
        assert len(next(iter(c.epoch(0)))) == TRAIN["batch_size"]  # still serves
    assert re.search(r"<4>server: tcp_sndbuf_kb %d is above net.core.wmem_max" % kb,
                     d.log()), d.tail()


def check(tmp_path, dataset, value):
    require_binary(BIN)
    text, lines = config_text({"endpoint": "tcp://127.0.0.1:%d" % free_port(),
                               "tcp_sndbuf_kb": value}, dataset, {"train": TRAIN})
    path = tmp_path / "c.ini"
    path.write_text(text)
    p = subprocess.run([str(BIN), "-c", str(path), "--check"], capture_output=True,
                       text=True, timeout=30)
    return p, "%s:%d:" % (path, lines[("server", "tcp_sndbuf_kb")])


@pytest.mark.parametrize("value", ["0", "4096", "1048576"])
def test_check_accepts(tmp_path, dataset, value):
    p, _ = check(tmp_path, dataset, value)
    assert p.returncode == 0, "tcp_sndbuf_kb = %s refused:\n%s" % (value, p.stderr)


@pytest.mark.parametrize("value", ["1048577", "-1", "4M", "big"])
def test_check_refuses(tmp_path, dataset, value):
    p, where = check(tmp_path, dataset, value)
    assert p.returncode == EX_CONFIG, "tcp_sndbuf_kb = %s: exit %d\n%s" % (
        value, p.returncode, p.stderr)
    assert where in p.stderr and "tcp_sndbuf_kb" in p.stderr, p.stderr
