"""The man pages: cutmixd(8), cutmixd-count(1) and cutmixd.ini(5) format
without a warning (`groff -man -ww -z`), render with `man -l`, and
cutmixd.ini(5), generated from the daemon's options table, documents every
key the parser accepts (and the generator refuses a template that misses
one or documents one that does not exist)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("BUILD", REPO / "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
PAGES = {"cutmixd.8": "CUTMIXD(8)", "cutmixd-count.1": "CUTMIXD-COUNT(1)",
         "cutmixd.ini.5": "CUTMIXD.INI(5)"}
GEN = REPO / "bin" / "gen_ini_man"


def page(name):
    p = BUILD / "man" / name
    if not p.is_file():
        pytest.fail("%s is missing: run `make` first" % p, pytrace=False)
    return p


@pytest.mark.parametrize("name", sorted(PAGES))
def test_groff_has_no_warnings(name):
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(page(name))], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


@pytest.mark.parametrize("name", sorted(PAGES))
def test_man_renders(name):
    r = subprocess.run(["man", "-l", str(page(name))], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, MANWIDTH="80", MANPAGER="cat",
                                            PAGER="cat"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(PAGES[name].replace("-", "\u2010")) or \
        r.stdout.startswith(PAGES[name]), r.stdout[:200]
    assert "NAME" in r.stdout and "SEE ALSO" in r.stdout


def keys_in_config():
    """Every key of the annotated example config (commented or not)."""
    keys, sec = set(), None
    for line in (REPO / "config/default.ini").read_text().splitlines():
        m = re.match(r"^;?\[([^\]]+)\]", line)
        if m:
            sec = "pipeline.NAME" if m.group(1).startswith("pipeline.") else m.group(1)
            continue
        m = re.match(r"^;?([a-z_]+) = ", line)
        if m and sec:
            keys.add((sec, m.group(1)))
    return keys


def test_ini_page_documents_every_key_with_its_default():
    text = subprocess.run(["man", "-l", str(page("cutmixd.ini.5"))], capture_output=True,
                          text=True, env=dict(os.environ, MANWIDTH="200", MANPAGER="cat")).stdout
    text = text.replace("\u2010", "-")
    for sec, key in sorted(keys_in_config()):
        assert re.search(r"^\s+%s\s*\n?\s*Takes " % re.escape(key), text, re.M), (sec, key)
    assert re.search(r"workers\s+Takes 0\.\.1024\.\s+Default: 0\.", text), text[:3000]
    assert re.search(r"batch_cache_mb\s+Takes 0\.\.1048576\.\s+Default: 0\.", text)
    assert "Default: off." in text                               # metrics
    assert "(in an eval pipeline: center)" in text               # crop


def test_generator_refuses_drift(tmp_path):
    template = (REPO / "man/cutmixd.ini.5.in").read_text()
    ok = subprocess.run([str(GEN), "9.9"], input=template, capture_output=True, text=True)
    assert ok.returncode == 0 and "cutmixd 9.9" in ok.stdout

    missing = template.replace("@key max_clients\n", "@key nonexistent_key\n")
    r = subprocess.run([str(GEN), "1"], input=missing, capture_output=True, text=True)
    assert r.returncode == 1
    assert "[server] nonexistent_key: no such key in the options table" in r.stderr

    dropped = re.sub(r"@key seed\n[^@]*", "", template)
    r = subprocess.run([str(GEN), "1"], input=dropped, capture_output=True, text=True)
    assert r.returncode == 1
    assert "[server] seed: in the options table but not documented" in r.stderr

    twice = template.replace("@key seed\n", "@key seed\ntext\n@key seed\n")
    r = subprocess.run([str(GEN), "1"], input=twice, capture_output=True, text=True)
    assert r.returncode == 1 and "seed: documented twice" in r.stderr
