"""Daemons on separate "hosts": network namespaces d0, d1, d2 (one daemon
each, TCP on 10.213.0.x:5555) and t (the trainer), joined by veth pairs to
a bridge in a namespace of its own (netns.Topology). Only root may build
that; elsewhere the whole file is skipped with the reason.

The trainer is a subprocess inside t (netns.Trainer: one JSON line per
batch), so the test can act while it streams: SIGKILL a daemon, take a link
down and up, restart a daemon, kill the trainer and resume it. Every check
is exactly-once delivery and the bytes of a single-daemon run (netns.
batch_key: every frame, minus the request_id), with bounded stalls and a
bounded number of requests (from the trainer's per-daemon counters).
Namespaces and processes are torn down by the fixtures, also on failure.
"""

import time

import pytest

import netns
from netns import Trainer, check_epoch, netns_daemon_class

WHY_NOT = netns.netns_supported()
pytestmark = pytest.mark.skipif(WHY_NOT is not None,
                                reason="network namespace tests skipped: %s" % WHY_NOT)

PIPELINES = {
    "train": dict(batch_size=2, size=32, crop="random_resized", flip=0.5, cutout_size=8,
                  cutmix_alpha=1.0, mixup_alpha=0.2, label_smoothing=0.1),
}
PORT = 5555
RESEND = 0.5       # the trainers' resend_timeout
TIMEOUT = 10       # the trainers' timeout
REF_EPOCHS = 12    # epochs of the reference run (the longest test needs fewer)
HOSTS = ["d0", "d1", "d2"]


@pytest.fixture(scope="module")
def net():
    with netns.topology(HOSTS + ["t"], "cmxn") as topo:
        yield topo


@pytest.fixture(scope="module")
def daemons(net, tmp_path_factory, ds_mixed):
    with netns.daemons_on(net, tmp_path_factory.mktemp("netns"), HOSTS, PORT,
                          ds_mixed.config(), PIPELINES, server={"workers": 1}) as ds:
        yield ds


def trainer(net, endpoints, **kw):
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("resend_timeout", RESEND)
    return Trainer(endpoints, prefix=net.exec_prefix("t"), **kw)


@pytest.fixture(scope="module")
def ref(net, daemons):
    """Keys of epochs 0..REF_EPOCHS-1 from d0 alone, fetched from t."""
    t = trainer(net, [daemons[0].endpoint], epochs=list(range(REF_EPOCHS)), window=8)
    try:
        assert t.finish(60) == 0, t.report()
    finally:
        t.close()
    out = {}
    for e in range(REF_EPOCHS):
        lines = [ln for ln in t.lines if ln.get("e") == e]
        assert [ln["k"] for ln in lines] == list(range(len(lines))) and lines
        out[e] = [ln["key"] for ln in lines]
    start = [ln for ln in t.lines if ln.get("start")][0]
    out["digest"] = start["digest"]
    return out


@pytest.fixture(autouse=True)
def healthy(net, daemons):
    """Each test starts and ends with every daemon running and every link up."""
    yield
    for h in HOSTS:
        net.link(h, True)
    for d in daemons:
        if not d.alive():
            d.start()


def endpoints(daemons):
    return [d.endpoint for d in daemons]


def finish(t, timeout):
    try:
        rc = t.finish(timeout)
    finally:
        t.close()
    res = t.result()
    assert rc == 0 and res and res.get("done"), t.report()
    return res


def full_epochs(t):
    return sorted({ln["epoch_done"] for ln in t.lines if "epoch_done" in ln})


def check_all(t, ref, requests_slack):
    """Every finished epoch exactly once with the reference bytes; the
    number of requests bounded."""
    res = t.result()
    done = full_epochs(t)
    assert done, t.report()
    n = 0
    for e in done:
        check_epoch(t.lines, e, ref[e])
        n += len(ref[e])
    sent = sum(p["requests"] for p in res["peers"])
    assert sent <= n + 1 + requests_slack, "%d requests for %d batches: %s" % (
        sent, n, res["peers"])
    return done


def max_gap(t, after_index=0):
    ts = [ln["t"] for ln in t.batches()[after_index:]]
    return max((b - a for a, b in zip(ts, ts[1:])), default=0.0)


def test_fan_in_from_three_hosts(net, daemons, ref):
    t = trainer(net, endpoints(daemons), epochs=[0, 1], window=6)
    res = finish(t, 30)
    check_all(t, ref, requests_slack=3)
    served = {ln["ep"] for ln in t.batches()}
    assert served == set(endpoints(daemons)), "served by %s only" % served
    assert all(p["batches"] > 0 for p in res["peers"]), res["peers"]


def test_sigkill_of_one_daemon_mid_epoch(net, daemons, ref):
    t = trainer(net, endpoints(daemons), epochs=[0, 1], window=6, sleep=0.01)
    try:
        t.wait_batches(6, 20)
        daemons[1].kill()
        k = len(t.batches())
    finally:
        res = finish(t, 30)
    check_all(t, ref, requests_slack=10)
    assert max_gap(t, k) < RESEND * 4 + 1.0, "a %.2fs stall after the kill" % max_gap(t, k)
    assert not [ln for ln in t.batches()[k + 6:] if ln["ep"] == daemons[1].endpoint]
    assert res["peers"][1]["state"] in ("not connected", "down"), res["peers"]


def test_link_down_and_back(net, daemons, ref, tmp_path):
    stop = tmp_path / "stop"
    eps = endpoints(daemons)
    t = trainer(net, eps, epochs=[0], window=6, sleep=0.02, stop_file=stop,
                max_epochs=REF_EPOCHS)
    try:
        t.wait_batches(5, 20)
        net.link("d2", False)       # d2's packets now vanish at the bridge
        down_at = len(t.batches())
        t0 = time.monotonic()
        while time.monotonic() < t0 + 2.5:
            assert t.next_line(0.5) is not None or t.proc.poll() is None, t.report()
        net.link("d2", True)
        up_at = len(t.batches())
        deadline = time.monotonic() + 15
        while not [ln for ln in t.batches()[up_at:] if ln["ep"] == eps[2]]:
            assert time.monotonic() < deadline, "d2 not used again within 15 s of link up"
            assert t.next_line(1.0) is not None or t.proc.poll() is None, t.report()
        stop.write_text("")
    finally:
        res = finish(t, 30)
    check_all(t, ref, requests_slack=40)
    during = t.batches()[down_at + 6:up_at]
    assert during and not [ln for ln in during if ln["ep"] == eps[2]], \
        "batches from d2 while its link was down"
    assert max_gap(t) < RESEND * 4 + 1.5, "a %.2fs stall" % max_gap(t)
    assert res["peers"][2]["downs"] + res["peers"][2]["disconnects"] >= 1, res["peers"]


def test_daemon_restarted_is_used_again(net, daemons, ref, tmp_path):
    stop = tmp_path / "stop"
    eps = endpoints(daemons)
    t = trainer(net, eps, epochs=[0], window=6, sleep=0.02, stop_file=stop,
                max_epochs=REF_EPOCHS)
    try:
        t.wait_batches(5, 20)
        daemons[0].kill()
        daemons[0].start()          # same host, port, config and data
        back_at = len(t.batches())
        deadline = time.monotonic() + 15
        while not [ln for ln in t.batches()[back_at:] if ln["ep"] == eps[0]]:
            assert time.monotonic() < deadline, "d0 not used again within 15 s of its restart"
            assert t.next_line(1.0) is not None or t.proc.poll() is None, t.report()
        stop.write_text("")
    finally:
        finish(t, 30)
    check_all(t, ref, requests_slack=20)
    assert max_gap(t) < RESEND * 4 + 1.5, "a %.2fs stall" % max_gap(t)


def test_trainer_killed_and_resumed(net, daemons, ref):
    eps = endpoints(daemons)
    k = 11
    t = trainer(net, eps, epochs=[0], window=6, sleep=0.02)
    try:
        first = t.wait_batches(k, 20)
    finally:
        t.close()                   # SIGKILL: it consumed what it printed before
    assert [ln["k"] for ln in first] == list(range(k))
    t = trainer(net, eps, epochs=[0], start=k, window=6)
    res = finish(t, 30)
    rest = check_epoch(t.lines, 0, ref[0], start=k)
    assert [ln["key"] for ln in first + rest] == ref[0]
    assert sum(p["requests"] for p in res["peers"]) <= len(ref[0]) - k + 1 + 3


def test_digest_mismatch_names_the_daemon(net, daemons, ref, tmp_path, ds_mixed):
    NetnsDaemon = netns_daemon_class()
    bad = NetnsDaemon(tmp_path / "bad", net, "d2", PORT + 1, ds_mixed.config(), PIPELINES,
                      server={"workers": 1, "seed": 99}, name="bad").start()
    try:
        t = trainer(net, [daemons[0].endpoint, bad.endpoint], epochs=[0], window=4,
                    digest=ref["digest"])
        try:
            rc = t.finish(30)
        finally:
            t.close()
    finally:
        bad.stop(check=False)
    res = t.result()
    assert rc == 3 and res and res.get("error") == "DigestMismatch", t.report()
    assert res["endpoint"] == bad.endpoint and bad.endpoint in res["msg"], res
    for ln in t.batches():  # whatever came before the refusal is the right data
        assert ln["ep"] == daemons[0].endpoint and ln["key"] == ref[0][ln["k"]]
