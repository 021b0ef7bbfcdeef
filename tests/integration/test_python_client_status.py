"""The Python Status enum is the C status table: every code on one side is
on the other with the same number (issue 12 item 2). The C side is read
from its sources in whatever form they have: the X-macro table
proto/status.h (X(NAME, code, errno, text)) where it exists, and every
explicit `WIRE_<NAME> = N` / `CUTMIXD_<NAME> = N` enumerator in
proto/wire.h and client/c/cutmixd.h."""

import re
from pathlib import Path

import pytest

from cutmixd import Status, status_name

REPO = Path(__file__).resolve().parents[2]


def strip_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def x_table(text):
    """{NAME: code} of X(NAME, code, ...) rows (NAME without E_)."""
    rows = re.findall(r"\bX\(\s*([A-Z][A-Z0-9_]*)\s*,\s*(\d+)\s*,", strip_comments(text))
    return {re.sub(r"^E_", "", n): int(c) for n, c in rows}


def enum_values(text, enum_tag, prefix):
    """{NAME: code} of the explicit enumerators of `enum enum_tag { ... }`."""
    m = re.search(r"enum\s+%s\s*\{(.*?)\}" % enum_tag, strip_comments(text), re.S)
    if not m:
        return None
    vals = re.findall(r"\b%s(?:E_)?([A-Z][A-Z0-9_]*)\s*=\s*(\d+)" % prefix, m.group(1))
    return {n: int(c) for n, c in vals} or None


def c_tables():
    out = {}
    status_h = REPO / "proto" / "status.h"
    if status_h.exists():
        out["proto/status.h"] = x_table(status_h.read_text())
    wire = enum_values((REPO / "proto" / "wire.h").read_text(), "wire_status", "WIRE_")
    if wire:
        out["proto/wire.h"] = wire
    pub = enum_values((REPO / "client" / "c" / "cutmixd.h").read_text(), "cutmixd_status",
                      "CUTMIXD_")
    if pub:
        out["client/c/cutmixd.h"] = pub
    return out


def test_c_sources_were_found():
    tables = c_tables()
    assert tables, "no status table found in proto/status.h, proto/wire.h, cutmixd.h"
    assert all(len(t) >= 13 for t in tables.values()), tables


@pytest.mark.parametrize("source", sorted(c_tables()))
def test_python_status_matches(source):
    c = c_tables()[source]
    py = {s.name: int(s) for s in Status}
    missing_py = sorted(set(c) - set(py))
    missing_c = sorted(set(py) - set(c))
    assert not missing_py, "%s has codes the Python Status lacks: %s" % (source, missing_py)
    assert not missing_c, "Python Status has codes %s lacks: %s" % (source, missing_c)
    assert c == py
    for name, code in c.items():
        assert status_name(code) == name


def test_parser_catches_a_missing_code():
    """The comparison can fail: a table with one code less, or one more."""
    c = x_table('X(OK, 0, 0, "ok") X(E_BUSY, 7, EBUSY, "busy")')
    assert c == {"OK": 0, "BUSY": 7}
    e = enum_values("enum wire_status { WIRE_OK = 0, /* x */ WIRE_E_BUSY = 7, };",
                    "wire_status", "WIRE_")
    assert e == {"OK": 0, "BUSY": 7}
    assert e != {s.name: int(s) for s in Status}
