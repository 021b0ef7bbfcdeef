"""`[server] metrics = HOST:PORT`: the Prometheus endpoint.

- a scrape passes `promtool check metrics` (Debian's prometheus package)
  and agrees with the STATS counters and the work done;
- bad HTTP (wrong path, wrong method, bytes that are not HTTP, a peer that
  sends half a request and leaves) gets a proper answer and the daemon
  keeps serving both HTTP and ZeroMQ;
- a real `prometheus` process on loopback scrapes it every second and its
  HTTP API answers rate(cutmixd_images_total[...]) > 0 while a client
  streams;
- a bad `metrics` value fails the config with the key named; a port in use
  fails the start with the address named, and fails `--check` (exit 70,
  the key named).
"""

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

import gen_dataset
from helpers import BIN, EX_CONFIG, REPO, Daemon, config_text, require_binary

PIPELINES = {
    "train": dict(batch_size=8, size=32, cutmix_alpha=1.0, cutout_size=8),
    "val": dict(batch_size=5, size=32, eval=True),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port, path="/metrics", timeout=10):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.status, dict(r.headers), r.read().decode()


def samples(text):
    """{name{labels}: value} of an exposition text (no comments)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def raw_http(port, data, timeout=5.0):
    """Send raw bytes, return what the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds_metrics")
    gen_dataset.make_dataset(root, classes=3, per_class=12, size=(48, 48), seed=5)
    return {"root": str(root)}


@pytest.fixture
def daemon(tmp_path, dataset):
    port = free_port()
    d = Daemon(tmp_path, dataset, PIPELINES, server={"metrics": "127.0.0.1:%d" % port})
    d.metrics_port = port
    with d:
        yield d


def test_scrape_passes_promtool_and_matches_stats(daemon):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/deps.sh installs prometheus"
    c = daemon.client("train")
    n_train = sum(1 for _ in c.epoch(0))
    v = daemon.client("val")
    n_val = sum(1 for _ in v.epoch(0))
    st = c.stats()
    status, headers, text = scrape(daemon.metrics_port)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")

    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, "promtool check metrics:\n%s%s\n--- scrape ---\n%s" % (
        r.stdout, r.stderr, text)

    m = samples(text)
    assert m['cutmixd_build_info{version="%s"}' % cutmixd_version()] == 1
    assert m["cutmixd_images_total"] == st["images"] == 36 + 36
    assert m["cutmixd_batches_total"] == st["batches"] == n_train + n_val
    for key in ("requests", "bad_requests", "decode_errors", "replaced_samples",
                "dropped_requests", "cache_hits", "cache_misses"):
        assert "cutmixd_%s_total" % key in m
    assert m["cutmixd_sent_bytes_total"] == st["bytes_sent"]
    assert m["cutmixd_workers"] == 2
    assert m["process_resident_memory_bytes"] > 1 << 20
    # One wait and one build observation per batch, per pipeline.
    for pl, n in (("train", n_train), ("val", n_val)):
        for h in ("request_wait", "batch_build"):
            count = m['cutmixd_%s_seconds_count{pipeline="%s"}' % (h, pl)]
            assert count == n, (h, pl)
            assert m['cutmixd_%s_seconds_bucket{pipeline="%s",le="+Inf"}' % (h, pl)] == n
            assert m['cutmixd_%s_seconds_sum{pipeline="%s"}' % (h, pl)] >= 0
    assert m['cutmixd_batch_build_seconds_sum{pipeline="train"}'] > 0
    digest = re.search(r'cutmixd_config_info\{digest="([0-9a-f]{64})"\} 1', text)
    logged = re.search(r"config digest ([0-9a-f]{16})", daemon.log()).group(1)
    assert digest and digest.group(1).startswith(logged)
    # HEAD answers the headers only.
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % daemon.metrics_port,
                                 method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200 and r.read() == b""


def cutmixd_version():
    out = subprocess.run([str(BIN), "--version"], capture_output=True, text=True).stdout
    return out.split()[1]


def test_bad_http_gets_answers_and_daemon_keeps_serving(daemon):
    port = daemon.metrics_port
    ans = raw_http(port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ans.startswith("HTTP/1.1 404"), ans
    assert "/metrics" in ans  # the body says where the metrics are

    ans = raw_http(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                         b"Connection: close\r\n\r\nhello")
    assert ans.startswith("HTTP/1.1 405"), ans
    assert re.search(r"(?im)^Allow: GET, HEAD\r?$", ans), ans

    ans = raw_http(port, b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ans.startswith("HTTP/1.1 405"), ans

    ans = raw_http(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
    assert ans == "" or ans.startswith("HTTP/1.1 400"), ans
    ans = raw_http(port, b"GET /metrics HTTP/1.1\r\n" + b"X-Long: " + b"a" * 100000 + b"\r\n\r\n")
    assert ans == "" or re.match(r"HTTP/1.1 4\d\d", ans), ans[:200]

    # Half a request, then the peer goes away; and one that stays silent.
    s1 = socket.create_connection(("127.0.0.1", port))
    s1.sendall(b"GET /metr")
    s1.close()
    s2 = socket.create_connection(("127.0.0.1", port))
    try:
        status, _, text = scrape(port)  # a stalled peer does not block others
        assert status == 200 and "cutmixd_images_total" in text
    finally:
        s2.close()

    c = daemon.client("train")
    assert sum(b.size for b in c.epoch(1)) == 36
    assert daemon.alive()
    assert samples(scrape(port)[2])["cutmixd_images_total"] >= 36
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(port, "/")
    assert e.value.code == 404


PROM_CONFIG = """global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: cutmixd
    static_configs:
      - targets: ['127.0.0.1:%d']
"""


def prom_query(port, query):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": query}))
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def doc_queries():
    """The PromQL of the Grafana table in docs/OPERATIONS.md."""
    ops = (REPO / "docs" / "OPERATIONS.md").read_text()
    table = ops[ops.index("| panel | PromQL |"):]
    table = table[:table.index("\n\n")]
    return [q for row in table.splitlines()[2:] for q in re.findall(r"`([^`]+)`", row)]


def test_real_prometheus_sees_the_rate(daemon, tmp_path):
    prom = shutil.which("prometheus")
    assert prom, "prometheus is missing: scripts/deps.sh installs it"
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(PROM_CONFIG % daemon.metrics_port)
    web = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    p = subprocess.Popen([prom, "--config.file=%s" % cfg,
                          "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
                          "--web.listen-address=127.0.0.1:%d" % web],
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    stop = threading.Event()
    streamed = [0]

    def stream():
        c = daemon.client("train")
        e = 0
        while not stop.is_set():
            for b in c.epoch(e):
                streamed[0] += b.size
                if stop.is_set():
                    break
                time.sleep(0.02)  # a trainer's step
            e += 1

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 90
        rate = None
        while time.monotonic() < deadline:
            assert p.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                res = prom_query(web, "rate(cutmixd_images_total[5s])")
            except OSError:
                res = []  # not listening yet
            if res and float(res[0]["value"][1]) > 0:
                rate = float(res[0]["value"][1])
                break
            time.sleep(0.5)
        assert rate is not None, "no rate(cutmixd_images_total[5s]) > 0 within 90 s\n%s" % (
            (tmp_path / "prometheus.log").read_text()[-3000:])
        assert res[0]["metric"]["job"] == "cutmixd"
        # The per-pipeline histogram is queryable as the docs show it.
        q = ('histogram_quantile(0.9, sum by (le, pipeline) '
             '(rate(cutmixd_batch_build_seconds_bucket[5s])))')
        res = prom_query(web, q)
        assert any(r["metric"].get("pipeline") == "train" for r in res), res
        up = prom_query(web, 'up{job="cutmixd"}')
        assert up and up[0]["value"][1] == "1"
        # Every query OPERATIONS.md offers for Grafana is valid PromQL and
        # finds the series it names.
        queries = doc_queries()
        assert len(queries) >= 10
        for q in queries:
            res = prom_query(web, q.replace("$__rate_interval", "5s"))
            assert res, "no result for the documented query %s" % q
    finally:
        stop.set()
        t.join(timeout=30)
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
        log.close()
    assert streamed[0] > 0
    assert daemon.alive()


def test_bad_metrics_value_names_the_key(tmp_path, dataset):
    require_binary()
    for bad in ("9464", "localhost", "127.0.0.1:0", "127.0.0.1:99999", "example.com:9464",
                "[::1", "1.2.3:80"):
        text, where = config_text(server={"metrics": bad}, dataset=dataset,
                                  pipelines={"train": {"size": 32}})
        path = tmp_path / "bad.ini"
        path.write_text(text)
        r = subprocess.run([str(BIN), "--check", "-c", str(path)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == EX_CONFIG, (bad, r.stderr)
        line = where[("server", "metrics")]
        assert ("bad.ini:%d: [server] metrics: must be off or HOST:PORT" % line) in r.stderr, \
            (bad, r.stderr)
        assert repr(bad)[1:-1] in r.stderr


def test_port_in_use_fails_the_start(tmp_path, dataset):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        d = Daemon(tmp_path, dataset, PIPELINES, server={"metrics": "127.0.0.1:%d" % port})
        d.start(wait=False)
        rc = d.proc.wait(timeout=30)
        d._finish(rc)
        assert rc != 0
        assert "metrics: cannot listen on '127.0.0.1:%d'" % port in d.log(), d.log()
        assert "ready:" not in d.log()


def test_check_fails_when_the_metrics_port_is_in_use(tmp_path, dataset):
    """--check binds the metrics HOST:PORT too (then releases it): a port
    held by someone else fails the check with exit 70 and the key named,
    and a free one passes and is free again afterwards."""
    require_binary()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        text, _ = config_text(server={"metrics": "127.0.0.1:%d" % port}, dataset=dataset,
                              pipelines=PIPELINES)
        path = tmp_path / "busy.ini"
        path.write_text(text)
        r = subprocess.run([str(BIN), "--check", "-c", str(path)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 70, r.stderr
        assert ("check: [server] metrics '127.0.0.1:%d': cannot bind: Address already in use"
                % port) in r.stderr, r.stderr
    port = free_port()
    text, _ = config_text(server={"metrics": "127.0.0.1:%d" % port}, dataset=dataset,
                          pipelines=PIPELINES)
    path.write_text(text)
    r = subprocess.run([str(BIN), "--check", "-c", str(path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    with socket.socket() as again:  # released: the daemon could bind it now
        again.bind(("127.0.0.1", port))
        again.listen(1)


def test_off_by_default(tmp_path, dataset):
    d = Daemon(tmp_path, dataset, PIPELINES)
    with d:
        assert sum(b.size for b in d.client("val").epoch(0)) == 36
        assert "metrics:" not in d.log()
