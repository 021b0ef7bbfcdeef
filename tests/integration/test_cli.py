"""One command-line convention for every binary (cutmixd, cutmixd stats,
cutmixd keygen, cutmixd-count): --help prints the usage to stdout and exits
0, --version prints "NAME VERSION" (the one VERSION file), a bad flag is a
usage error: exit 64 (EX_USAGE) with the usage on stderr. Also: the daemon's
INFO, the C library (through cutmixd-count) and the installed pkg-config
file report that same version; `cutmixd stats --key` reads the zcert key
file of the shared fixtures."""

import os
import subprocess

import pytest

from helpers import BIN, COUNT_BIN, REPO, Daemon, require_binary

EX_USAGE = 64
VERSION = (REPO / "VERSION").read_text().strip()
FIX = REPO / "tests" / "fixtures" / "keys"

# (command prefix, name printed by --version)
COMMANDS = [
    ([str(BIN)], "cutmixd"),
    ([str(BIN), "stats"], "cutmixd"),
    ([str(BIN), "keygen"], "cutmixd"),
    ([str(COUNT_BIN)], "cutmixd-count"),
]


def run(args, cwd=None):
    return subprocess.run(args, capture_output=True, text=True, timeout=20, cwd=cwd)


@pytest.mark.parametrize("cmd,name", COMMANDS, ids=lambda x: " ".join(x) if isinstance(x, list)
                         else x)
def test_help_version_bad_flag(cmd, name, tmp_path):
    require_binary(BIN)
    require_binary(COUNT_BIN)
    p = run(cmd + ["--help"], cwd=tmp_path)
    assert p.returncode == 0, (cmd, p.returncode, p.stderr)
    assert p.stdout.startswith("usage:") and p.stderr == "", (cmd, p.stdout, p.stderr)
    p = run(cmd + ["--version"], cwd=tmp_path)
    assert p.returncode == 0 and p.stdout == "%s %s\n" % (name, VERSION), (cmd, p.stdout)
    p = run(cmd + ["--no-such-flag"], cwd=tmp_path)
    assert p.returncode == EX_USAGE, (cmd, p.returncode, p.stderr)
    assert "usage:" in p.stderr and p.stdout == "", (cmd, p.stdout, p.stderr)
    # keygen --help must not have written a key pair named "--help"
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())


def test_version_everywhere(tmp_path, ds_square444):
    assert VERSION and VERSION.count(".") == 2, VERSION
    with Daemon(tmp_path / "d", ds_square444.config(), {"train": dict(batch_size=4, size=32)},
                name="ver") as d:
        c = d.client("train")
        try:
            info = c.info()
        finally:
            c.close()
        assert info["version"] == VERSION, info


def test_pkg_config_version(tmp_path):
    dest = tmp_path / "root"
    r = subprocess.run(["make", "--no-print-directory", "-s", "install", "DESTDIR=%s" % dest,
                        "PREFIX=/opt/cm", "SYSCONFDIR=/etc"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    pc = dest / "opt/cm/lib/pkgconfig/cutmixd.pc"
    env = dict(os.environ, PKG_CONFIG_PATH=str(pc.parent))
    p = subprocess.run(["pkg-config", "--modversion", "cutmixd"], env=env,
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0 and p.stdout.strip() == VERSION, (p.stdout, p.stderr)
    p = subprocess.run(["pkg-config", "--cflags", "--libs", "cutmixd"], env=env,
                       capture_output=True, text=True, timeout=20)
    assert "-I/opt/cm/include" in p.stdout and "-lcutmixd" in p.stdout, p.stdout


def test_stats_key_reads_zcert_file(tmp_path):
    """A ZeroMQ zcert key file (quotes, section words) that the Python client
    always accepted: `cutmixd stats --key` reads it now (it goes on to fail
    only because nothing listens at the endpoint: exit 1, not a key error)."""
    require_binary(BIN)
    key = tmp_path / "zcert.key"
    key.write_bytes((FIX / "zcert.key").read_bytes())
    key.chmod(0o600)
    server = (FIX / "keygen.pub")
    sock = tmp_path / "none.sock"
    p = run([str(BIN), "stats", "--key", str(key), "--server-key", str(server),
             "ipc://%s" % sock])
    assert "zcert.key" not in p.stderr, p.stderr
    assert p.returncode == 1, (p.returncode, p.stderr)
    bad = tmp_path / "unknown-name.key"
    bad.write_bytes((FIX / "unknown-name.key").read_bytes())
    p = run([str(BIN), "stats", "--key", str(bad), "--server-key", str(server),
             "ipc://%s" % sock])
    assert p.returncode == 1 and "unknown-name.key:2: expected" in p.stderr, p.stderr
