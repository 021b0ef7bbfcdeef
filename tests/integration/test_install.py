"""`make install` honours PREFIX and DESTDIR and installs the binary, the
library, the header, the Python package, the systemd unit and a sample
config; the unit points at the installed binary and config."""

import os
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
    for rel in ["bin/cutmixd", "bin/cutmixd-count", "lib/libcutmixd.a", "lib/libcutmixd.so.0",
                "include/cutmixd.h", "lib/python3/dist-packages/cutmixd/__init__.py",
                "lib/systemd/system/cutmixd.service", "share/cutmixd/cutmixd.ini.example"]:
        assert (p / rel).exists(), rel
    assert os.access(p / "bin" / "cutmixd", os.X_OK)
    assert os.readlink(p / "lib" / "libcutmixd.so") == "libcutmixd.so.0"
    assert (dest / "etc" / "cutmixd" / "cutmixd.ini").is_file()

    unit = (p / "lib/systemd/system/cutmixd.service").read_text()
    assert "@" not in unit.replace("multi-user.target", ""), "unsubstituted placeholder"
    assert "ExecStart=/opt/cm/bin/cutmixd -c /etc/cutmixd/cutmixd.ini" in unit
    assert "ExecStartPre=/opt/cm/bin/cutmixd --check -c /etc/cutmixd/cutmixd.ini" in unit
    for key in ["Type=notify", "Restart=on-failure", "DynamicUser=yes", "ProtectSystem=strict",
                "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "ReadOnlyPaths=",
                "RestrictAddressFamilies=", "WatchdogSec="]:
        assert key in unit, key

    # The installed binary runs and the installed Python package imports.
    v = subprocess.run([str(p / "bin" / "cutmixd"), "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("cutmixd ")
    env = dict(os.environ, PYTHONPATH=str(p / "lib/python3/dist-packages"))
    imp = subprocess.run([sys.executable, "-c", "import cutmixd; print(cutmixd.__file__)"],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert imp.returncode == 0 and str(dest) in imp.stdout, imp.stderr
