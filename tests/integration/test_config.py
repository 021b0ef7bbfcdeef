"""Start-up: a bad config stops the daemon before it binds, with one clear
line (file:line, section and key) and exit status 78; --check validates a
good one and exits 0 without binding; SIGTERM exits 0."""

import re
import signal
import subprocess

import pytest

from helpers import BIN, EX_CONFIG, Daemon, config_text, require_binary, short_socket_dir

GOOD_PIPELINES = {
    "train": dict(batch_size=8, size=32, crop="random_resized", cutmix_alpha=1.0,
                  cutout_size=8, label_smoothing=0.1),
    "val": dict(eval=True, batch_size=8, size=32, resize=36),
}


class Case:
    def __init__(self, tmp_path, dataset, pipelines=None, server=None, sets=(), args=()):
        self.dir, self._tmp = short_socket_dir(tmp_path)
        self.sock = self.dir / "cfgtest.sock"
        srv = {"endpoint": "ipc://%s" % self.sock, "workers": 1}
        srv.update(server or {})
        text, self.lines = config_text(srv, dataset, pipelines if pipelines is not None
                                       else GOOD_PIPELINES)
        self.path = tmp_path / "case.ini"
        self.path.write_text(text)
        self.sets, self.args = list(sets), list(args)

    def run(self, timeout=30):
        require_binary(BIN)
        cmd = [str(BIN), "-c", str(self.path)]
        for s in self.sets:
            cmd += ["--set", s]
        cmd += self.args
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout, text=True,
                               errors="replace")
        except subprocess.TimeoutExpired:
            pytest.fail("%s did not exit within %ds (a bad config must stop it)"
                        % (" ".join(cmd), timeout), pytrace=False)
        self.rc, self.out, self.err = p.returncode, p.stdout, p.stderr
        return p

    def config_error(self):
        """The run failed with 78 and one 'config:' line; return that line."""
        assert self.rc == EX_CONFIG, "exit status %d, expected %d\nstderr:\n%s" % (
            self.rc, EX_CONFIG, self.err)
        lines = [ln for ln in self.err.splitlines() if "config:" in ln]
        assert len(lines) == 1, "expected one 'config:' line, got:\n%s" % self.err
        assert re.match(r"<[0-7]>", lines[0]), lines[0]
        assert not self.sock.exists(), "the socket was created although the config is bad"
        return lines[0]


def bad_pipeline(**over):
    p = {k: dict(v) for k, v in GOOD_PIPELINES.items()}
    for k, v in over.items():
        p["train"][k] = v
    return p


@pytest.mark.parametrize("key, value, words", [
    ("size", 0, ["size", "'0'", "must be"]),
    ("batch_size", "many", ["batch_size", "'many'"]),
    ("crop", "sideways", ["crop", "'sideways'"]),
    ("cutout_fill", "purple", ["cutout_fill", "'purple'"]),
    ("label_smoothing", 1.5, ["label_smoothing", "'1.5'"]),
    ("flip", -0.1, ["flip"]),
    ("sizee", 3, ["sizee"]),  # unknown key
])
def test_bad_value_names_file_line_and_key(tmp_path, ds_square444, key, value, words):
    c = Case(tmp_path, ds_square444.config(), bad_pipeline(**{key: value}))
    c.run()
    line = c.config_error()
    where = "%s:%d:" % (c.path, c.lines[("pipeline.train", key)])
    assert where in line, "%r does not name %r" % (line, where)
    assert "[pipeline.train]" in line
    for w in words:
        assert w in line, "%r does not contain %r" % (line, w)


def test_eval_pipeline_refuses_augmentation(tmp_path, ds_square444):
    p = {k: dict(v) for k, v in GOOD_PIPELINES.items()}
    p["val"]["cutmix_alpha"] = 1.0
    c = Case(tmp_path, ds_square444.config(), p)
    c.run()
    line = c.config_error()
    assert "%s:%d:" % (c.path, c.lines[("pipeline.val", "cutmix_alpha")]) in line
    assert "[pipeline.val]" in line and "cutmix_alpha" in line


def test_pair_mode_with_roll(tmp_path, ds_square444):
    c = Case(tmp_path, ds_square444.config(), bad_pipeline(mode="pair", partner="roll"))
    c.run()
    line = c.config_error()
    assert "%s:%d:" % (c.path, c.lines[("pipeline.train", "partner")]) in line
    assert "partner" in line and "roll" in line


def test_resize_below_size(tmp_path, ds_square444):
    c = Case(tmp_path, ds_square444.config(),
             bad_pipeline(crop="center", resize=16, size=32))
    c.run()
    line = c.config_error()
    assert "%s:%d:" % (c.path, c.lines[("pipeline.train", "resize")]) in line
    assert "resize" in line


def test_bad_override(tmp_path, ds_square444):
    c = Case(tmp_path, ds_square444.config(), sets=["pipeline.train.batch_size=0"])
    c.run()
    line = c.config_error()
    assert "--set pipeline.train.batch_size=0" in line and "batch_size" in line


def test_bad_server_key(tmp_path, ds_square444):
    c = Case(tmp_path, ds_square444.config(), server={"max_client_window": 0})
    c.run()
    line = c.config_error()
    assert "%s:%d:" % (c.path, c.lines[("server", "max_client_window")]) in line
    assert "max_client_window" in line


def test_missing_dataset_root(tmp_path):
    missing = tmp_path / "no-such-folder"
    c = Case(tmp_path, {"root": str(missing)})
    c.run()
    assert c.rc == EX_CONFIG, c.err
    assert str(missing) in c.err or "no-such-folder" in c.err
    assert not c.sock.exists()


def test_no_pipeline(tmp_path, ds_square444):
    c = Case(tmp_path, ds_square444.config(), pipelines={})
    c.run()
    line = c.config_error()
    assert "pipeline" in line


def test_check_good_config(tmp_path, ds_square444):
    c = Case(tmp_path, ds_square444.config(), args=["--check"])
    c.run()
    assert c.rc == 0, "--check on a good config: exit %d\n%s\n%s" % (c.rc, c.out, c.err)
    assert not c.sock.exists(), "--check must not bind"


def test_version_and_usage():
    require_binary(BIN)
    p = subprocess.run([str(BIN), "--version"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "cutmixd" in p.stdout
    p = subprocess.run([str(BIN)], capture_output=True, text=True, timeout=10)
    assert p.returncode != 0 and "-c" in (p.stderr + p.stdout)


def test_sigterm_exits_zero(tmp_path, ds_square444):
    d = Daemon(tmp_path / "d", ds_square444.config(), GOOD_PIPELINES, name="term")
    d.start()
    with d.client("train") as c:
        assert len(c.batch(0, 0)) == 8
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(15)
    d._finish(rc)
    assert rc == 0, d.tail()


def test_set_overrides_apply(daemon, ds_square444):
    d = daemon(ds_square444.config(), GOOD_PIPELINES,
               sets=["pipeline.train.batch_size=5", "server.max_client_window=3"])
    with d.client("train", window=10) as c:
        info = c.info()
        assert info["batch_size"] == 5 and info["max_window"] == 3
        assert len(c.batch(0, 0)) == 5
