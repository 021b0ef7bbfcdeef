"""The Python client's key-file reader against the fixtures every reader of
the one key-file grammar (proto/keyfile.h) is tested with:
tests/fixtures/keys/expected.tsv says, per file and mode, ok + the public
key, or error + the line its message must name."""

from pathlib import Path

import pytest

import cutmixd

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "keys"


def rows():
    out = []
    for line in (FIX / "expected.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        f, mode, result, lineno, pub = line.split("\t")
        out.append(pytest.param(f, mode, result, lineno, pub, id="%s-%s" % (f, mode)))
    return out


def test_every_fixture_is_listed():
    listed = {r.values[0] for r in rows()}
    files = {p.name for p in FIX.iterdir() if p.suffix in (".key", ".pub")}
    assert files == listed


@pytest.mark.parametrize("name,mode,result,lineno,pub", rows())
def test_fixture(name, mode, result, lineno, pub):
    path = FIX / name
    read = cutmixd.load_keypair if mode == "pair" else cutmixd.load_public_key
    if result == "ok":
        got = read(path)
        assert (got[0] if mode == "pair" else got) == pub
        if mode == "pair":
            assert len(got[1]) == 40
        return
    with pytest.raises(cutmixd.KeyFileError) as ei:
        read(path)
    msg = str(ei.value)
    if lineno == "*":
        assert msg.startswith(str(path) + ":")
    elif lineno == "-":
        assert msg.startswith(str(path) + ": "), msg
    else:
        assert msg.startswith("%s:%s: " % (path, lineno)), msg
    secret = "u(]9HdC&]cbY=C{qn72$A*!KF&/KK5RBD&de?<[w"
    assert secret not in msg  # a secret key is never quoted
