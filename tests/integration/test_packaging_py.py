"""Packaging of the Python client, tried as a new user would, each step in
a fresh process: `pip install ./client/python` offline (setuptools from
Debian, --no-build-isolation) into a venv, the sdist built alone, and
`make install` putting the package where the interpreter looks for that
PREFIX (no PYTHONPATH anywhere)."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = "/usr/bin/python3"
VERSION = (REPO / "VERSION").read_text().strip()


@pytest.fixture(autouse=True, scope="module")
def clean_tree():
    """pip builds in the tree (client/python/build, *.egg-info): remove
    what this module's builds left there."""
    pkg = REPO / "client" / "python"
    before = {p.name for p in pkg.iterdir()}
    yield
    for p in pkg.iterdir():
        if p.name not in before and (p.name == "build" or p.name.endswith(".egg-info")):
            shutil.rmtree(p, ignore_errors=True)


def run(cmd, **kw):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PIP_NO_INDEX"] = "1"          # offline: nothing may be downloaded
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    kw.setdefault("timeout", 300)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    assert r.returncode == 0, "%s\n%s%s" % (" ".join(map(str, cmd)), r.stdout, r.stderr)
    return r


def venv(tmp_path):
    v = tmp_path / "venv"
    run([PY, "-m", "venv", "--system-site-packages", "--without-pip", str(v)])
    return v / "bin" / "python"


def imported(python, cwd):
    """(file, version) of `import cutmixd` in a fresh interpreter, run
    outside the source tree."""
    r = run([str(python), "-c", "import cutmixd, cutmixd.torch, cutmixd._wire; "
             "print(cutmixd.__file__); print(cutmixd.__version__); "
             "print(cutmixd.Client.__module__)"], cwd=str(cwd))
    f, v, mod = r.stdout.split()
    return Path(f), v, mod


def test_version_is_one_file():
    assert VERSION.count(".") == 2 and all(p.isdigit() for p in VERSION.split("."))
    r = run([PY, "-c", "import sys; sys.path.insert(0, %r); import cutmixd; "
             "print(cutmixd.__version__)" % str(REPO / "client" / "python")], cwd="/")
    assert r.stdout.strip() == VERSION


def test_pip_install_offline_into_venv(tmp_path):
    py = venv(tmp_path)
    run([str(py), "-m", "pip", "install", "--no-build-isolation", "--no-index",
         str(REPO / "client" / "python")], cwd=str(tmp_path))
    f, v, mod = imported(py, tmp_path)
    assert str(f).startswith(str(tmp_path / "venv")), f
    assert v == VERSION and mod == "cutmixd"
    assert (f.parent / "py.typed").is_file()


def test_wheel_then_install(tmp_path):
    """pip wheel --no-build-isolation, then the wheel into a venv."""
    wheels = tmp_path / "wheels"
    run([PY, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(wheels),
         str(REPO / "client" / "python")], cwd=str(tmp_path))
    whl = sorted(wheels.glob("cutmixd-*.whl"))
    assert [w.name for w in whl] == ["cutmixd-%s-py3-none-any.whl" % VERSION]
    py = venv(tmp_path)
    run([str(py), "-m", "pip", "install", "--no-index", str(whl[0])])
    f, v, _ = imported(py, tmp_path)
    assert str(f).startswith(str(tmp_path / "venv")) and v == VERSION


def test_sdist_builds_alone(tmp_path):
    """An sdist carries the VERSION: extracted far from the source tree it
    builds and installs with the same version."""
    src = tmp_path / "copy"
    shutil.copytree(REPO / "client" / "python", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # the copy is not in the tree: it must fail clearly without VERSION ...
    r = subprocess.run([PY, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
                        "--no-index", "-w", str(tmp_path / "w0"), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "no VERSION file" in r.stdout + r.stderr
    # ... while the sdist built in the tree has it.
    sd = tmp_path / "sdist"
    run([PY, "-c", "from setuptools import build_meta as b; b.build_sdist(%r)" % str(sd)],
        cwd=str(REPO / "client" / "python"))
    tgz = sorted(sd.glob("cutmixd-*.tar.gz"))
    assert [t.name for t in tgz] == ["cutmixd-%s.tar.gz" % VERSION]
    alone = tmp_path / "alone"
    with tarfile.open(tgz[0]) as t:
        t.extractall(alone)
    pkg = alone / ("cutmixd-%s" % VERSION)
    assert (pkg / "cutmixd" / "VERSION").read_text().strip() == VERSION
    py = venv(tmp_path)
    run([str(py), "-m", "pip", "install", "--no-build-isolation", "--no-index", str(pkg)])
    f, v, _ = imported(py, tmp_path)
    assert v == VERSION and str(f).startswith(str(tmp_path / "venv"))


def sys_path():
    r = run([PY, "-c", "import sys; print('\\n'.join(sys.path))"], cwd="/")
    return [p for p in r.stdout.splitlines() if p]


def test_make_install_puts_package_on_sys_path(tmp_path):
    """`make install PREFIX=/usr/local` into a DESTDIR: the package lands in
    the folder /usr/bin/python3 searches (sysconfig's purelib for that
    prefix: posix_local on Debian), and it imports from there with no
    PYTHONPATH (the DESTDIR bind-mounted over /usr/local in a private
    mount namespace)."""
    dest = tmp_path / "root"
    r = subprocess.run(["make", "--no-print-directory", "install", "DESTDIR=%s" % dest,
                        "PREFIX=/usr/local", "SYSCONFDIR=/etc"], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    found = sorted(dest.rglob("cutmixd/__init__.py"))
    assert len(found) == 1, found
    installed = "/" + str(found[0].parent.parent.relative_to(dest))
    import sysconfig
    if "posix_local" in sysconfig.get_scheme_names():  # Debian's python3
        want = sysconfig.get_path("purelib", "posix_local", vars={"base": "/usr",
                                                                 "platbase": "/usr"})
        assert installed == want
    assert installed in sys_path(), "%s is not on %s's sys.path" % (installed, PY)
    assert (found[0].parent / "VERSION").read_text().strip() == VERSION
    assert (found[0].parent / "py.typed").is_file()
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("importing from the DESTDIR needs root and unshare (mount namespace)")
    code = ("mount --bind %s /usr/local && cd / && exec env -u PYTHONPATH %s -c "
            "'import cutmixd; print(cutmixd.__file__); print(cutmixd.__version__)'"
            % (dest / "usr" / "local", PY))
    r = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", code])
    f, v = r.stdout.split()
    assert f == installed + "/cutmixd/__init__.py" and v == VERSION


@pytest.mark.parametrize("prefix,rel", [("/usr", "lib/python3/dist-packages"),
                                        ("/opt/cm", "lib/python%d.%d/site-packages"
                                         % sys.version_info[:2])])
def test_purelib_for_other_prefixes(prefix, rel):
    r = subprocess.run([PY, str(REPO / "scripts" / "python_purelib.py"), prefix],
                       capture_output=True, text=True)
    assert r.returncode == 0
    import sysconfig
    if prefix == "/usr" and "deb_system" not in sysconfig.get_scheme_names():
        pytest.skip("not Debian's python3")
    assert r.stdout.strip() == "%s/%s" % (prefix, rel)
    on_path = r.stdout.strip() in sys_path()
    assert on_path == (prefix == "/usr")
    assert ("not on" in r.stderr) == (not on_path)
