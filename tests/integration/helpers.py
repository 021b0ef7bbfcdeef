"""Shared helpers of the integration tests: start the real daemon (in the
style of redis's start_server), write configs, and compute what a batch must
contain from its metadata with an independent PIL decode."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for p in (REPO / "client" / "python", REPO / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import cutmixd  # noqa: E402
from cutmixd import _wire  # noqa: E402

# CUTMIXD_BIN / CUTMIXD_COUNT_BIN run the suite against another build
# (a sanitizer build, an installed copy).
BIN = Path(os.environ.get("CUTMIXD_BIN", REPO / "bin" / "cutmixd"))
COUNT_BIN = Path(os.environ.get("CUTMIXD_COUNT_BIN", REPO / "bin" / "cutmixd-count"))
EX_CONFIG = 78  # sysexits.h


def sanitizer_of(path):
    """"asan" or "tsan" for a sanitizer build of the daemon (make asan/tsan
    run this suite on one), else None."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    for name in ("asan", "tsan"):
        if ("__%s_init" % name).encode() in data:
            return name
    return None


SANITIZER = sanitizer_of(BIN)


READY_TIMEOUT = float(os.environ.get("CUTMIXD_TEST_READY_TIMEOUT", "20"))
STOP_TIMEOUT = 15.0

# Daemons touched by the running test, and daemons alive right now (module
# fixtures): the report hook in conftest.py appends their logs on failure.
TEST_DAEMONS = []
LIVE_DAEMONS = []


def require_binary(path=BIN):
    """Fail (never skip) when a binary the tests need was not built."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail("%s is missing or not executable: run `make` first" % path, pytrace=False)
    return path


def ini_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(ini_value(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def config_text(server=None, dataset=None, pipelines=None, security=None):
    """INI text. Returns (text, {(section, key): line number})."""
    lines, where = [], {}

    def section(name, items):
        if lines:
            lines.append("")
        lines.append("[%s]" % name)
        for k, v in items.items():
            if v is None:
                continue
            lines.append("%s = %s" % (k, ini_value(v)))
            where[(name, k)] = len(lines)

    section("server", server or {})
    if dataset is not None:
        section("dataset", dataset)
    for name, p in (pipelines or {}).items():
        section("pipeline.%s" % name, p)
    if security:
        section("security", security)
    return "\n".join(lines) + "\n", where


def short_socket_dir(preferred):
    """A folder for the ipc:// socket: the test's own tmp dir when the path
    fits in sun_path (108 bytes), else a short one under /tmp."""
    preferred = Path(preferred)
    if len(str(preferred / "cutmixd.sock")) < 100:
        return preferred, None
    d = tempfile.mkdtemp(prefix="cmx", dir="/tmp")
    return Path(d), d


class Daemon:
    """One bin/cutmixd process with its own config, socket and log.

        with Daemon(tmp_path, dataset={...}, pipelines={...}) as d:
            c = d.client("train")
    """

    def __init__(self, workdir, dataset, pipelines, server=None, name="cutmixd",
                 sets=(), args=(), security=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        sock_dir, self._tmp = short_socket_dir(self.dir)
        self.socket_path = sock_dir / ("%s.sock" % name)
        self.endpoint = "ipc://%s" % self.socket_path
        srv = {"endpoint": self.endpoint, "workers": 2, "seed": 1234}
        srv.update(server or {})
        self.server = srv
        self.dataset = dataset
        self.pipelines = pipelines
        self.security = dict(security or {})  # the [security] section, if any
        self.config_path = self.dir / ("%s.ini" % name)
        self.log_path = self.dir / ("%s.log" % name)
        self.sets = list(sets)
        self.args = list(args)
        self.proc = None
        self.returncode = None

    # -- life cycle ----------------------------------------------------------

    def write_config(self):
        text, self.lines = config_text(self.server, self.dataset, self.pipelines,
                                       self.security)
        self.config_path.write_text(text)
        return self.config_path

    def command(self):
        cmd = [str(BIN), "-c", str(self.config_path)]
        for s in self.sets:
            cmd += ["--set", s]
        return cmd + self.args

    def start(self, wait=True):
        require_binary(BIN)
        self.write_config()
        if self.socket_path.exists():
            self.socket_path.unlink()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=str(self.dir))
        TEST_DAEMONS.append(self)
        LIVE_DAEMONS.append(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            if "ready:" in self.log():
                return
            rc = self.proc.poll()
            if rc is not None:
                self._finish(rc)
                pytest.fail("cutmixd exited with status %d before logging 'ready:'\n"
                            "command: %s\n--- log ---\n%s" % (rc, " ".join(self.command()),
                                                              self.log()), pytrace=False)
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail("cutmixd did not log 'ready:' within %gs\n--- log ---\n%s"
                            % (timeout, self.log()), pytrace=False)
            time.sleep(0.02)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n=200):
        lines = self.log().splitlines()
        if len(lines) > n:
            lines = ["... (%d lines before)" % (len(lines) - n)] + lines[-n:]
        return "\n".join(lines)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _finish(self, rc):
        self.returncode = rc
        if self in LIVE_DAEMONS:
            LIVE_DAEMONS.remove(self)
        try:
            self._log.close()
        except Exception:
            pass
        if self._tmp:
            try:
                if self.socket_path.exists():
                    self.socket_path.unlink()
                os.rmdir(self._tmp)
            except OSError:
                pass

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self._finish(self.proc.returncode)

    def stop(self, check=True):
        """SIGTERM and wait; with check, fail unless it exits 0 in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                if check:
                    pytest.fail("cutmixd did not exit within %gs of SIGTERM\n--- log ---\n%s"
                                % (STOP_TIMEOUT, self.tail()), pytrace=False)
                return self.returncode
        rc = self.proc.returncode
        self._finish(rc)
        if check and rc != 0:
            pytest.fail("cutmixd exited with status %d after SIGTERM (expected 0)\n--- log ---\n%s"
                        % (rc, self.tail()), pytrace=False)
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, typ, exc, tb):
        self.stop(check=typ is None)

    # -- talking to it -------------------------------------------------------

    def client(self, pipeline="train", **kw):
        kw.setdefault("timeout", 30.0)
        return cutmixd.Client(self.endpoint, pipeline=pipeline, **kw)


def module_daemon(tmp_path_factory, name, dataset, pipelines, server=None, sets=()):
    """Start a daemon for a module-scoped fixture (stop it at the end with
    d.stop(), which fails unless it exits 0)."""
    d = Daemon(tmp_path_factory.mktemp(name), dataset, pipelines, server=server, name=name,
               sets=sets)
    return d.start()


class Dataset:
    def __init__(self, root, samples, manifest=None):
        self.root = Path(root)
        self.samples = samples
        self.manifest = manifest
        self.ref = Reference(root, samples)
        self.class_names = sorted({s.class_name for s in samples}, key=lambda n: n.encode())

    def __len__(self):
        return len(self.samples)

    @property
    def num_classes(self):
        return len(self.class_names)

    def config(self):
        cfg = {"root": str(self.root)}
        if self.manifest:
            cfg["manifest"] = str(self.manifest)
        return cfg



# -- reference computations ----------------------------------------------------

class Reference:
    """Independent view of a dataset: path and class of every index, and
    PIL's decode of it (cached)."""

    def __init__(self, root, samples):
        self.root = Path(root)
        self.samples = list(samples)
        self._cache = {}

    def __len__(self):
        return len(self.samples)

    def label(self, i):
        return self.samples[int(i)].label

    def path(self, i):
        return self.root / self.samples[int(i)].path

    def image(self, i):
        i = int(i)
        if i not in self._cache:
            with Image.open(self.path(i)) as im:
                self._cache[i] = np.asarray(im.convert("RGB"))
        return self._cache[i]


def pre_mix(ref, m, fill):
    """Sample m's pixels before batch mixing: decode (crop = whole image),
    flip, Cutout. Returns (image, known) where known is False inside holes
    whose fill is not a fixed value."""
    img = ref.image(m["source"]).copy()
    if m["flip"]:
        img = img[:, ::-1].copy()
    known = np.ones(img.shape[:2], bool)
    for x0, y0, x1, y1 in m["holes"][: m["n_holes"]]:
        if fill is None:
            known[y0:y1, x0:x1] = False
        else:
            img[y0:y1, x0:x1] = fill
    return img, known


def mixup_u8(a, b, lam):
    """timm fast-collate MixUp on uint8: float32 arithmetic, rint (half even)."""
    lf = np.float32(lam)
    out = a.astype(np.float32) * lf + b.astype(np.float32) * (np.float32(1.0) - lf)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def expected_images(ref, meta, fill):
    """(expected uint8 NHWC batch, mask of pixels whose value is known)."""
    pre = [pre_mix(ref, m, fill) for m in meta]
    out, known = [], []
    for i, m in enumerate(meta):
        img, kn = pre[i][0].copy(), pre[i][1].copy()
        if m["op"] == cutmixd.OP_CUTMIX:
            j = int(m["partner_pos"])
            x0, y0, x1, y1 = (int(v) for v in m["box"])
            img[y0:y1, x0:x1] = pre[j][0][y0:y1, x0:x1]
            kn[y0:y1, x0:x1] = pre[j][1][y0:y1, x0:x1]
        elif m["op"] == cutmixd.OP_MIXUP:
            j = int(m["partner_pos"])
            img = mixup_u8(img, pre[j][0], m["lam"])
            kn = kn & pre[j][1]
        out.append(img)
        known.append(kn)
    return np.stack(out), np.stack(known)


def smooth(label, K, s):
    y = np.full(K, s / K, np.float64)
    y[label] = 1.0 - s + s / K
    return y


def expected_labels(meta, K, s):
    rows = []
    for m in meta:
        y = smooth(m["label"], K, s)
        if m["op"] != cutmixd.OP_NONE:
            lam = float(m["lam"])
            y = lam * y + (1.0 - lam) * smooth(m["partner_label"], K, s)
        rows.append(y)
    return np.array(rows)


def check_labels(batch, K, s):
    """Soft labels: within 1e-6 of the reference, rows sum to 1, and every
    class other than label/partner_label holds exactly s/K (float32)."""
    lab = batch.labels
    assert lab.dtype == np.float32 and lab.shape == (len(batch), K)
    exp = expected_labels(batch.meta, K, s)
    err = np.abs(lab.astype(np.float64) - exp)
    assert err.max(initial=0) <= 1e-6, (
        "labels differ from lam/label_smoothing by %g at %s\nmeta lam=%s\ngot=%s\nexp=%s"
        % (err.max(), np.unravel_index(err.argmax(), err.shape), batch.meta["lam"], lab, exp))
    assert np.all(np.abs(lab.astype(np.float64).sum(1) - 1.0) <= 1e-6)
    off = np.float32(s / K)
    for r, m in enumerate(batch.meta):
        others = np.ones(K, bool)
        others[m["label"]] = False
        if m["op"] != cutmixd.OP_NONE:
            others[m["partner_label"]] = False
        assert np.all(lab[r][others] == off), (
            "row %d: classes other than %d/%d should be exactly %r: %s"
            % (r, m["label"], m["partner_label"], off, lab[r]))


def assert_images_equal(got, exp, known, meta, what=""):
    """Exact byte equality on the known pixels, with a readable report."""
    assert got.shape == exp.shape, (got.shape, exp.shape)
    diff = (got != exp) & known[..., None]
    if diff.any():
        bad = sorted(set(int(i) for i in np.nonzero(diff)[0]))
        lines = []
        for i in bad[:6]:
            m = meta[i]
            ys, xs, cs = np.nonzero(diff[i])
            lines.append(
                "sample %d (index %d source %d op %d flip %d partner_pos %d box %s lam %.6f "
                "holes %s): %d bytes differ, first at y=%d x=%d c=%d got %d expected %d"
                % (i, m["index"], m["source"], m["op"], m["flip"], m["partner_pos"],
                   list(m["box"]), m["lam"], m["holes"][: m["n_holes"]].tolist(),
                   len(ys), ys[0], xs[0], cs[0], got[i, ys[0], xs[0], cs[0]],
                   exp[i, ys[0], xs[0], cs[0]]))
        pytest.fail("%spixels differ from the PIL reference in %d of %d samples:\n%s"
                    % (what, len(bad), len(got), "\n".join(lines)), pytrace=False)


def raw_request(type, request_id, pipeline="train", **kw):
    return _wire.encode_request(type, request_id, pipeline, **kw)


def sighup_and_wait(d, text="reload:", timeout=10.0):
    """SIGHUP the daemon and wait for the next log line containing `text`
    (default: any reload outcome); returns that line."""
    mark = len(d.log())
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while True:
        for line in d.log()[mark:].splitlines():
            if text in line:
                return line
        assert d.alive(), "cutmixd exited while waiting for %r after SIGHUP" % text
        assert time.monotonic() < deadline, "no %r in the log within %gs of SIGHUP" % (
            text, timeout)
        time.sleep(0.02)


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (on loopback)."""
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def dealer(endpoint, opts=None, curve=None):
    """A raw DEALER connected to endpoint (tests that forge requests):
    LINGER 0, socket options `opts` ({zmq option: value}, None values
    skipped), CURVE when `curve` = (server public, client public, client
    secret) Z85 strings."""
    import zmq
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    for k, v in (opts or {}).items():
        if v is not None:
            s.setsockopt(k, v)
    if curve is not None:
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = (k.encode() for k in curve)
    s.connect(endpoint)
    return s


def proc_status_bytes(pid, key):
    """A size field of /proc/PID/status ("VmRSS", "VmSize", ...) in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no %s in /proc/%d/status" % (key, pid))


def vm_rss(pid):
    return proc_status_bytes(pid, "VmRSS")


def lowest_free_fd(pid):
    """The fd number the process's next open() gets."""
    used = {int(n) for n in os.listdir("/proc/%d/fd" % pid)}
    k = 0
    while k in used:
        k += 1
    return k
