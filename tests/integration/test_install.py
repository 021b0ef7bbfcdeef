"""`make install` honours PREFIX and DESTDIR and installs the binary, the
library, the header, the Python package, the systemd unit and a sample
config; the unit points at the installed binary and config."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_install_layout(tmp_path):
    dest = tmp_path / "root"
    r = subprocess.run(["make", "--no-print-directory", "install", "DESTDIR=%s" % dest,
                        "PREFIX=/opt/cm", "SYSCONFDIR=/etc"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    p = dest / "opt" / "cm"
    # the interpreter's purelib for the prefix (not searched for /opt/cm: PYTHONPATH below)
    pydir = subprocess.run([sys.executable, str(REPO / "scripts" / "python_purelib.py"),
                            "/opt/cm"], capture_output=True, text=True).stdout.strip()
    pyrel = os.path.relpath(pydir, "/opt/cm")
    for rel in ["bin/cutmixd", "bin/cutmixd-count", "lib/libcutmixd.a", "lib/libcutmixd.so.0",
                "include/cutmixd.h", pyrel + "/cutmixd/__init__.py",
                "lib/systemd/system/cutmixd.service", "share/cutmixd/cutmixd.ini.example"]:
        assert (p / rel).exists(), rel
    assert os.access(p / "bin" / "cutmixd", os.X_OK)
    assert os.readlink(p / "lib" / "libcutmixd.so") == "libcutmixd.so.0"
    assert (dest / "etc" / "cutmixd" / "cutmixd.ini").is_file()

    unit = (p / "lib/systemd/system/cutmixd.service").read_text()
    # (SystemCallFilter= names groups with a single '@': @system-service)
    assert not re.search(r"@[A-Z_]+@", unit), "unsubstituted placeholder"
    assert "ExecStart=/opt/cm/bin/cutmixd -c /etc/cutmixd/cutmixd.ini" in unit
    assert "ExecStartPre=/opt/cm/bin/cutmixd --check -c /etc/cutmixd/cutmixd.ini" in unit
    for key in ["Type=notify", "Restart=on-failure", "DynamicUser=yes", "ProtectSystem=strict",
                "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "ReadOnlyPaths=",
                "RestrictAddressFamilies=", "WatchdogSec="]:
        assert key in unit, key

    # The installed binary runs and the installed Python package imports.
    v = subprocess.run([str(p / "bin" / "cutmixd"), "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("cutmixd ")
    env = dict(os.environ, PYTHONPATH=str(p / pyrel))
    imp = subprocess.run([sys.executable, "-c", "import cutmixd; print(cutmixd.__file__)"],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert imp.returncode == 0 and str(dest) in imp.stdout, imp.stderr


# -- packaging: pkg-config, installed config, docs, systemd ---------------------

import re
import shutil
import socket

import pytest

import gen_dataset
from helpers import Daemon

EX_CONFIG = 78


def make_install(dest=None, **paths):
    args = ["make", "--no-print-directory", "install"]
    if dest is not None:
        args.append("DESTDIR=%s" % dest)
    args += ["%s=%s" % kv for kv in paths.items()]
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A DESTDIR install with PREFIX=/usr/local (the default)."""
    dest = tmp_path_factory.mktemp("destdir")
    make_install(dest, PREFIX="/usr/local", SYSCONFDIR="/etc")
    return dest


def readme_c_example():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## C client"):]
    m = re.search(r"```c\n(.*?)```", section, re.S)
    assert m, "README.md has no ```c block under '## C client'"
    return m.group(1)


def test_pkg_config_builds_the_readme_example(staged, tmp_path):
    """The README's C example, compiled with nothing but
    `pkg-config --cflags --libs cutmixd` against the DESTDIR install, runs
    against a real daemon."""
    cc = shutil.which("cc")
    pc = staged / "usr/local/lib/pkgconfig/cutmixd.pc"
    assert pc.is_file()
    env = dict(os.environ, PKG_CONFIG_PATH=str(pc.parent), PKG_CONFIG_SYSROOT_DIR=str(staged))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "cutmixd"], env=env,
                           capture_output=True, text=True)
    assert flags.returncode == 0, flags.stderr
    assert "-I%s/usr/local/include" % staged in flags.stdout
    assert "-L%s/usr/local/lib" % staged in flags.stdout and "-lcutmixd" in flags.stdout
    version = subprocess.run(["pkg-config", "--modversion", "cutmixd"], env=env,
                             capture_output=True, text=True).stdout.strip()
    daemon_version = subprocess.run([str(staged / "usr/local/bin/cutmixd"), "--version"],
                                    capture_output=True, text=True).stdout.split()[1]
    assert version == daemon_version

    root = tmp_path / "ds"
    gen_dataset.make_dataset(root, classes=3, per_class=7, size=(40, 40), seed=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = "tcp://127.0.0.1:%d" % port

    body = readme_c_example()
    assert 'tcp://127.0.0.1:5555' in body and "/* ... */" in body
    includes = [l for l in body.splitlines() if l.startswith("#include")]
    code = "\n".join(l for l in body.splitlines() if not l.startswith("#include"))
    code = code.replace("tcp://127.0.0.1:5555", endpoint).replace(
        "/* ... */", "n_batches++; n_bytes += n; (void)px; (void)y;")
    src = tmp_path / "example.c"
    src.write_text("#include <stdio.h>\n#include <stdint.h>\n%s\n"
                   "int main(void)\n{\n\tunsigned long n_batches = 0, n_bytes = 0;\n%s\n"
                   "\tprintf(\"batches %%lu bytes %%lu\\n\", n_batches, n_bytes);\n"
                   "\treturn rc < 0;\n}\n" % ("\n".join(includes), code))
    exe = tmp_path / "example"
    r = subprocess.run([cc, "-o", str(exe), str(src)] + flags.stdout.split(), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + "\n" + src.read_text()

    d = Daemon(tmp_path / "d", {"root": str(root)},
               {"train": dict(batch_size=4, size=16)}, server={"endpoint": endpoint})
    with d:
        run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, LD_LIBRARY_PATH=str(staged / "usr/local/lib")))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split() == ["batches", "6", "bytes", str(21 * 16 * 16 * 3)]
    ldd = subprocess.run(["ldd", str(exe)], capture_output=True, text=True,
                         env=dict(os.environ, LD_LIBRARY_PATH=str(staged / "usr/local/lib")))
    assert "%s/usr/local/lib/libcutmixd.so.0" % staged in ldd.stdout, ldd.stdout


def test_installed_config_names_root_until_edited(staged, tmp_path):
    cutmixd = staged / "usr/local/bin/cutmixd"
    cfg = staged / "etc/cutmixd/cutmixd.ini"
    r = subprocess.run([str(cutmixd), "--check", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    assert "%s: [dataset] root: cannot open '/srv/datasets/CHANGE-ME'" % cfg in r.stderr, r.stderr
    assert "edit root" in r.stderr

    root = tmp_path / "data"
    gen_dataset.make_dataset(root, classes=2, per_class=5, size=(40, 40), seed=1)
    text = cfg.read_text()
    assert text.count("root = /srv/datasets/CHANGE-ME") == 1
    cfg.write_text(text.replace("root = /srv/datasets/CHANGE-ME", "root = %s" % root))
    try:
        r = subprocess.run([str(cutmixd), "--check", "-c", str(cfg)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("config ok: %s" % cfg)
    finally:
        cfg.write_text(text)
    # The example next to it is the same text.
    assert (staged / "usr/local/share/cutmixd/cutmixd.ini.example").read_text() == text


def test_installed_docs_have_every_link(staged):
    docdir = staged / "usr/local/share/doc/cutmixd"
    pages = sorted(docdir.rglob("*.md"))
    assert docdir / "README.md" in pages
    checked = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#")[0]
            assert (page.parent / path).exists(), "%s links %s, not installed" % (
                page.relative_to(docdir), target)
            checked += 1
    assert checked >= 10


def test_systemd_unit_verifies_and_is_hardened(tmp_path):
    """Installed without DESTDIR (so the unit's paths exist): `systemd-analyze
    verify` is clean, which includes finding the man pages of
    Documentation=, and `systemd-analyze security` rates it <= 2.0."""
    root = tmp_path / "r"
    make_install(PREFIX=root / "usr", SYSCONFDIR=root / "etc")
    unit = root / "usr/lib/systemd/system/cutmixd.service"
    text = unit.read_text()
    assert "Documentation=man:cutmixd(8) man:cutmixd.ini(5) file:%s/usr/share/doc/cutmixd/docs/OPERATIONS.md" % root in text
    assert (root / "usr/share/doc/cutmixd/docs/OPERATIONS.md").is_file()
    env = dict(os.environ, MANPATH="%s:" % (root / "usr/share/man"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
        r.stdout + r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for cutmixd.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout
    # The score written in OPERATIONS.md is the one measured.
    ops = (REPO / "docs/OPERATIONS.md").read_text()
    assert "exposure level %s" % m.group(1) in ops, "write the score %s in OPERATIONS.md" % m.group(1)
