"""Operating the daemon: SIGTERM/SIGINT while clients stream, SIGHUP with a
valid and with an invalid config, `cutmixd stats ENDPOINT`, the `<N>`
priority prefix on every log line, `--check` exit codes, and the warning
for an endpoint reachable from other machines.

Every wait is bounded; only ipc:// and 127.0.0.1 (plus one bind on
0.0.0.0, connected to through 127.0.0.1) endpoints.
"""

import copy
import json
import os
import re
import signal
import subprocess
import time

import pytest
import zmq

import cutmixd
import gen_dataset
from cutmixd import _wire
from cutmixd._wire import Status
from helpers import BIN, EX_CONFIG, config_text, require_binary, short_socket_dir, SANITIZER
from helpers import dealer, free_port


# SIGTERM: the daemon's own deadline is 4 s. A sanitizer build may take
# longer to finish the batch it is computing (the pool is joined).
STOP_LIMIT = 5.0 if SANITIZER is None else 15.0
PIPELINES = {
    "train": dict(batch_size=8, size=32, crop="random_resized", flip=0.5, cutout_size=8,
                  cutmix_alpha=1.0),
    "heavy": dict(batch_size=16, size=160, crop="random_resized", cutmix_alpha=1.0,
                  mixup_alpha=1.0, cutout_size=32),
}
STATS_KEYS = ("uptime_s", "requests", "batches", "images", "img_per_s", "decode_errors",
              "replaced", "clients", "pending", "inflight", "rss_bytes")
PRIORITY = re.compile(r"^<[0-7]>\S")


def pipes():
    """A fresh copy: tests change a daemon's pipelines before a reload."""
    return copy.deepcopy(PIPELINES)


def wait_log(d, text, timeout=5.0, after=0):
    """Wait until `text` appears in the log past offset `after`; return the line."""
    deadline = time.monotonic() + timeout
    while True:
        log = d.log()[after:]
        for line in log.splitlines():
            if text in line:
                return line
        assert d.alive(), "cutmixd exited while waiting for %r" % text
        assert time.monotonic() < deadline, "no %r in the log within %gs" % (text, timeout)
        time.sleep(0.02)


def wait_exit(d, t0, limit=STOP_LIMIT):
    """Wait (bounded) for the process to end; return (status, seconds since t0)."""
    try:
        rc = d.proc.wait(limit + 10)
    except subprocess.TimeoutExpired:
        d.kill()
        pytest.fail("cutmixd still running %gs after the signal" % (limit + 10), pytrace=False)
    return rc, time.monotonic() - t0




# -- SIGTERM -------------------------------------------------------------------------

@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_stop_signal_while_a_client_streams(daemon, ds_square444, signame):
    d = daemon(ds_square444.config(), pipes())
    sig = getattr(signal, signame)
    got, ended = [], None
    with d.client("heavy", window=4, timeout=2) as c:
        n = c.batches_per_epoch()
        t0 = None
        deadline = time.monotonic() + 30
        try:
            for e in range(50):
                for b in c.epoch(e):
                    assert len(b) == b.header.batch_size >= 1
                    got.append(b)
                    if len(got) == 3:
                        t0 = time.monotonic()
                        d.proc.send_signal(sig)
                    assert time.monotonic() < deadline, "the stream never ended"
        except cutmixd.DaemonError as exc:
            ended = exc
            assert exc.code == Status.SHUTTING_DOWN, exc
        except cutmixd.TimeoutError as exc:
            ended = exc  # the daemon is gone: no hang, a timeout
    assert t0 is not None and ended is not None, "%d batches, stream did not end" % len(got)
    rc, took = wait_exit(d, t0)
    assert rc == 0, "exit status %d after %s\n%s" % (rc, signame, d.tail())
    assert took < STOP_LIMIT, "%s: exited after %.2fs" % (signame, took)
    assert n >= 2 and len(got) >= 3, (n, len(got))
    log = d.log()
    assert "stopping:" in log and "stopped:" in log


def test_sigterm_refuses_pending_and_new_requests(daemon, ds_square444):
    """All requests received, some still pending (max_inflight = 1), then
    SIGTERM: pending requests get SHUTTING_DOWN at once, the batch being
    computed is delivered, every request gets one of the two before the
    exit, and the 'stopping:' line counts the refusals."""
    d = daemon(ds_square444.config(), pipes(), server={"max_inflight": 1,
                                                       "max_client_window": 8})
    socks = [dealer(d.endpoint) for _ in range(3)]
    probe = d.client("train", timeout=5)
    try:
        for s in socks:  # connected before the burst
            s.send(_wire.encode_request(_wire.INFO, 1, "heavy"))
            assert s.poll(5000)
            s.recv_multipart()
        base = probe.stats()["requests"]
        for s in socks:
            for k in range(8):
                s.send(_wire.encode_request(_wire.BATCH, 100 + k, "heavy", batch=k % 3))
        deadline, polls = time.monotonic() + 5, 0
        while True:
            polls += 1
            st = probe.stats()
            if st["requests"] - base - polls >= 24 and st["pending"] > 0:
                break
            assert time.monotonic() < deadline, "the burst never showed as pending: %s" % st
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        poller = zmq.Poller()
        for s in socks:
            poller.register(s, zmq.POLLIN)
        kinds = {"BATCH": 0, "SHUTTING_DOWN": 0}
        exited_at = None
        while time.monotonic() < t0 + STOP_LIMIT + 1 and sum(kinds.values()) < 24:
            for s, _ in poller.poll(50):
                frames = s.recv_multipart()
                hdr = _wire.decode_reply(frames[0])
                if hdr.type == _wire.BATCH:
                    kinds["BATCH"] += 1
                else:
                    assert hdr.type == _wire.ERROR and hdr.status == Status.SHUTTING_DOWN, (
                        hdr, frames[1:])
                    kinds["SHUTTING_DOWN"] += 1
            if exited_at is None and d.proc.poll() is not None:
                exited_at = time.monotonic()
        rc, took = wait_exit(d, t0)
        if exited_at is not None:
            took = exited_at - t0
    finally:
        probe.close()
        for s in socks:
            s.close(0)
    assert rc == 0 and took < STOP_LIMIT, (rc, took)
    line = [ln for ln in d.log().splitlines() if "stopping:" in ln]
    assert len(line) == 1, line
    m = re.search(r"(\d+) batches in flight, (\d+) pending requests refused", line[0])
    assert m, line[0]
    assert int(m.group(2)) > 0, line[0]
    assert sum(kinds.values()) == 24, "every request received before SIGTERM is answered " \
        "before the exit: %s (%s)" % (kinds, line[0])
    assert kinds["SHUTTING_DOWN"] == int(m.group(2)), (kinds, line[0])


def test_sigterm_with_a_client_that_never_reads(daemon, ds_square444):
    """Replies that cannot be delivered (the client never reads) must not
    hold the daemon past its stop deadline."""
    d = daemon(ds_square444.config(), pipes())
    lazy = dealer(d.endpoint, {zmq.RCVHWM: 1, zmq.RCVBUF: 4096})
    try:
        for k in range(300):
            lazy.send(_wire.encode_request(_wire.BATCH if k % 2 else _wire.INFO, k + 1,
                                           "heavy"))
        time.sleep(0.5)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc, took = wait_exit(d, t0)
    finally:
        lazy.close(0)
    assert rc == 0, d.tail()
    assert took < STOP_LIMIT, "exited %.2fs after SIGTERM (deadline 4 s)\n%s" % (took, d.tail())


# -- SIGHUP --------------------------------------------------------------------------

def test_sighup_valid_config_applies_to_new_requests(daemon, ds_square444):
    d = daemon(ds_square444.config(), pipes())
    with d.client("train") as c:
        info1 = c.info()
        assert info1["batch_size"] == 8
        old = c.batch(0, 0)
        assert old.digest == info1["config_digest"]
        d.pipelines["train"]["batch_size"] = 5
        d.write_config()
        mark = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        line = wait_log(d, "reload:", after=mark)
        assert "keeping" not in line, line
        assert line.startswith("<5>"), line
        info2 = c.info()  # the same connection sees the new config
        assert info2["config_digest"] != info1["config_digest"]
        assert info2["config_digest"][:16] in line and info1["config_digest"][:16] in line
        assert info2["batch_size"] == 5
        b = c.batch(0, 0)
        assert len(b) == 5 and b.digest == info2["config_digest"]
    with d.client("train") as c2:  # and so does a new one
        assert c2.info()["config_digest"] == info2["config_digest"]
        assert len(list(c2.epoch(1))) == c2.batches_per_epoch() == -(-len(ds_square444) // 5)


@pytest.mark.parametrize("breakage", ["syntax", "bad_value", "missing_root", "gone"])
def test_sighup_invalid_config_keeps_the_running_one(daemon, ds_square444, tmp_path, breakage):
    d = daemon(ds_square444.config(), pipes())
    with d.client("train") as c:
        info1 = c.info()
        text = d.config_path.read_text()
        if breakage == "syntax":
            d.config_path.write_text(text + "\nthis is not ini\n")
        elif breakage == "bad_value":
            d.config_path.write_text(text.replace("batch_size = 8", "batch_size = banana"))
        elif breakage == "missing_root":
            d.config_path.write_text(text.replace(str(ds_square444.root),
                                                  str(tmp_path / "no-such-dir")))
        else:
            d.config_path.unlink()
        mark = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        line = wait_log(d, "reload:", after=mark)
        assert "reload: keeping the running config:" in line, line
        assert line.startswith("<3>"), line
        info2 = c.info()
        assert info2["config_digest"] == info1["config_digest"]
        assert info2["batch_size"] == 8
        b = c.batch(0, 1)
        assert len(b) == 8 and b.digest == info1["config_digest"]
        # a fixed config is picked up by the next SIGHUP
        d.pipelines["train"]["batch_size"] = 6
        d.write_config()
        mark = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        line = wait_log(d, "reload:", after=mark)
        assert "keeping" not in line, line
        assert c.info()["batch_size"] == 6 and len(c.batch(0, 0)) == 6
    assert d.alive()


def test_sighup_while_streaming(daemon, ds_square444):
    """Reloads in the middle of an epoch: every batch is whole and carries
    one of the two digests; the later ones the new one."""
    d = daemon(ds_square444.config(), pipes())
    # One epoch is served from one digest (issue 14 item 11): by default the
    # client raises EpochChanged (test_python_client_reload.py); here it
    # restarts the epoch under the new digest.
    with d.client("train", window=4, on_reload="restart") as c:
        old = c.info()["config_digest"]
        d.server["seed"] = 99
        d.write_config()
        digests = []
        for e in range(3):
            for k, b in enumerate(c.epoch(e)):
                assert len(b) == 8 and b.images.shape == (8, 32, 32, 3)
                digests.append(b.digest)
                if e == 0 and k == 1:
                    d.proc.send_signal(signal.SIGHUP)
                    wait_log(d, "reload: config digest")
        new = c.info()["config_digest"]
    assert new != old
    assert set(digests) <= {old, new} and digests[0] == old and digests[-1] == new
    assert d.alive()


# -- cutmixd stats -------------------------------------------------------------------

def run_bin(*args, timeout=20):
    require_binary(BIN)
    try:
        return subprocess.run([str(BIN), *args], capture_output=True, text=True,
                              timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        pytest.fail("cutmixd %s did not exit within %ds" % (" ".join(args), timeout),
                    pytrace=False)


def test_stats_command(daemon, ds_square444):
    d = daemon(ds_square444.config(), pipes())
    with d.client("train") as c:
        list(c.epoch(0))
        p = run_bin("stats", d.endpoint)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.strip().splitlines()
        assert len(lines) == 1, p.stdout
        st = json.loads(lines[0])
        for k in STATS_KEYS:
            assert k in st, "%s missing from %s" % (k, st)
            assert isinstance(st[k], (int, float)) and st[k] >= 0, (k, st[k])
        assert st["batches"] >= c.batches_per_epoch() and st["images"] >= len(ds_square444)
        assert st["requests"] >= st["batches"] and st["uptime_s"] > 0
        assert 0 < st["rss_bytes"] < 2**31
        later = json.loads(run_bin("stats", d.endpoint).stdout)
        assert later["requests"] > st["requests"] and later["uptime_s"] >= st["uptime_s"]


def test_stats_command_errors(tmp_path):
    p = run_bin("stats")
    assert p.returncode == 64 and "usage" in p.stderr
    p = run_bin("stats", "not an endpoint")
    assert p.returncode == 1 and p.stderr.strip() and not p.stdout.strip()
    sock_dir, tmp = short_socket_dir(tmp_path)
    t0 = time.monotonic()
    p = run_bin("stats", "ipc://%s/nobody.sock" % sock_dir)
    assert p.returncode == 1 and "no reply" in p.stderr, (p.returncode, p.stderr)
    assert time.monotonic() - t0 < 15
    if tmp:
        os.rmdir(tmp)


# -- logs ------------------------------------------------------------------------------

def test_every_log_line_has_a_priority(daemon, tmp_path):
    """Start, a bad file (whose name holds a newline and a fake prefix),
    bad requests, a good and a bad reload, stop: every line is `<N>...`."""
    root = tmp_path / "ds"
    good = gen_dataset.make_dataset(root, classes=2, per_class=4, size=(32, 32), seed=4)
    evil = root / good[0].class_name / "evil\n<0>fake line\r.jpg"
    evil.write_bytes((root / good[0].path).read_bytes()[:150])
    d = daemon({"root": str(root)}, {"train": dict(batch_size=3, size=32)})
    with d.client("train") as c:
        assert c.info()["dataset_size"] == len(good) + 1
        list(c.epoch(0))
        assert c.stats()["bad_files"] == 1
        for bad in ("nope", "x" * 31):
            with cutmixd.Client(d.endpoint, pipeline=bad, timeout=10) as cb:
                with pytest.raises(cutmixd.DaemonError):
                    cb.info()
        s = dealer(d.endpoint)
        s.send(b"garbage")
        assert s.poll(5000)
        s.close(0)
        mark = len(d.log())
        d.write_config()
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "reload:", after=mark)
        d.config_path.write_text("[server\n")
        mark = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "reload: keeping", after=mark)
    d.stop()
    log = d.log()
    assert log.endswith("\n"), "the last line is unterminated"
    lines = log.splitlines()
    assert len(lines) >= 5
    bad = [ln for ln in lines if not PRIORITY.match(ln)]
    assert not bad, "log lines without a <N> prefix:\n%s" % "\n".join(map(repr, bad))
    assert any("fake line" in ln and ln.startswith("<4>") for ln in lines), \
        "the bad file's warning should be one line"
    assert not any(ln.startswith("<0>") for ln in lines)


# -- --check ---------------------------------------------------------------------------

def write_config(tmp_path, name, server=None, dataset=None, pipelines=None):
    sock_dir, _ = short_socket_dir(tmp_path)
    srv = {"endpoint": "ipc://%s/check.sock" % sock_dir, "workers": 1}
    srv.update(server or {})
    text, _ = config_text(srv, dataset, pipelines if pipelines is not None else PIPELINES)
    p = tmp_path / name
    p.write_text(text)
    return p, sock_dir / "check.sock"


def test_check_exit_codes(tmp_path, ds_square444):
    ds = ds_square444.config()
    good, sock = write_config(tmp_path, "good.ini", dataset=ds)
    p = run_bin("--check", "-c", str(good))
    assert p.returncode == 0, p.stderr
    assert "config ok" in p.stdout and not sock.exists()
    digest = re.search(r"digest ([0-9a-f]{64})", p.stdout)
    assert digest, p.stdout

    cases = {
        "bad_value": write_config(tmp_path, "bad_value.ini", dataset=ds,
                                  pipelines={"train": dict(batch_size=0)})[0],
        "unknown_key": write_config(tmp_path, "unknown_key.ini", dataset=ds,
                                    server={"no_such_key": 1})[0],
        "missing_root": write_config(tmp_path, "missing_root.ini",
                                     dataset={"root": str(tmp_path / "nowhere")})[0],
        "no_pipeline": write_config(tmp_path, "no_pipeline.ini", dataset=ds, pipelines={})[0],
        "missing_file": tmp_path / "does-not-exist.ini",
    }
    for what, path in cases.items():
        p = run_bin("--check", "-c", str(path))
        assert p.returncode == EX_CONFIG, "%s: exit %d, expected %d\n%s" % (
            what, p.returncode, EX_CONFIG, p.stderr)
        errs = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert errs and all(PRIORITY.match(ln) for ln in errs), (what, p.stderr)
        assert not sock.exists()
    # overrides are checked too
    p = run_bin("--check", "-c", str(good), "--set", "pipeline.train.size=0")
    assert p.returncode == EX_CONFIG, p.stderr
    p = run_bin("--check", "-c", str(good), "--set", "pipeline.train.size=48")
    assert p.returncode == 0, p.stderr
    # usage errors are 64
    for args in (["--check"], ["--check", "-c", str(good), "extra"], ["--no-such-option"]):
        p = run_bin(*args)
        assert p.returncode == 64, (args, p.returncode, p.stderr)


# -- endpoints ---------------------------------------------------------------------------

def test_non_loopback_tcp_endpoint_warns(daemon, ds_square444):
    port = free_port()
    d = daemon(ds_square444.config(), pipes(),
               server={"endpoint": "tcp://0.0.0.0:%d" % port}, name="open")
    lines = d.log().splitlines()
    warn = [ln for ln in lines if "authenticat" in ln]
    assert len(warn) == 1, "expected one warning about the open endpoint:\n%s" % d.log()
    assert warn[0].startswith("<4>") and "0.0.0.0:%d" % port in warn[0], warn[0]
    with cutmixd.Client("tcp://127.0.0.1:%d" % port, pipeline="train", timeout=10) as c:
        assert len(c.batch(0, 0)) == 8


def test_loopback_endpoints_do_not_warn(daemon, ds_square444, tmp_path):
    port = free_port()
    d = daemon(ds_square444.config(), pipes(), name="closed",
               server={"endpoint": ["tcp://127.0.0.1:%d" % port, "ipc://%s" % (
                   short_socket_dir(tmp_path)[0] / "lo.sock")]})
    assert "authenticat" not in d.log(), d.log()
    with cutmixd.Client("tcp://127.0.0.1:%d" % port, pipeline="train", timeout=10) as c:
        assert c.info()["batch_size"] == 8
