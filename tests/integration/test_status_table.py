"""The one status table (proto/status.h) and the Python client agree: every
row is a member of cutmixd's Status enum with the same number, and the
Python side has no code the table lacks. (The C side is tied to the table
by _Static_asserts in proto/wire.c and client/c/client.c.)"""

import re

from helpers import REPO


def table():
    text = (REPO / "proto" / "status.h").read_text()
    rows = re.findall(r'X\((OK|E_[A-Z_]+),\s*(\d+),\s*(\w+),\s*"([^"]*)"\)', text)
    assert len(rows) >= 13, rows
    return {name[2:] if name.startswith("E_") else name: int(code)
            for name, code, _, _ in rows}


def test_python_status_enum_matches_status_h():
    from cutmixd import _wire
    want = table()
    got = {m.name: int(m.value) for m in _wire.Status}
    assert got == want, "Python Status %s != proto/status.h %s" % (got, want)
