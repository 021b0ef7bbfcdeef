"""CURVE keys: key files written by ``cutmixd keygen`` and Z85 key checks."""

from __future__ import annotations

import os
import struct
from typing import Dict, Tuple, Union

import zmq

from ._errors import Error, KeyFileError

_Z85_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       ".-:+=^!/*?&<>()[]{}@%$#")


def _z85_key(key: Union[str, bytes, bytearray], what: str) -> bytes:
    """A Z85 CURVE key (40 characters) as bytes, or KeyFileError."""
    if isinstance(key, (bytes, bytearray)):
        try:
            key = bytes(key).decode("ascii")
        except UnicodeDecodeError:
            raise KeyFileError("%s: not a Z85 key (non-ASCII bytes)" % what) from None
    if not isinstance(key, str):
        raise KeyFileError("%s: expected a Z85 string, got %s" % (what, type(key).__name__))
    key = key.strip()
    if not _is_z85_key(key):
        raise KeyFileError("%s: not a Z85-encoded CURVE key (40 characters of the Z85 "
                           "alphabet), got %d characters" % (what, len(key)))
    return key.encode("ascii")


def _is_z85_key(text: str) -> bool:
    """40 Z85 characters that decode to 32 bytes and encode back (a group
    of five characters can exceed 2^32)."""
    if len(text) != 40 or not set(text) <= _Z85_CHARS:
        return False
    from zmq.utils import z85
    try:
        return z85.encode(z85.decode(text.encode("ascii"))).decode("ascii") == text
    except (ValueError, struct.error, OverflowError):
        return False


KEYFILE_MAX_BYTES = 1 << 20    # a key file is small (proto/keyfile.h)
_BLANKS = " \t\r\n\v\f"
_SECTIONS = ("metadata", "curve")


def _read_key_file(path: Union[str, "os.PathLike[str]"]) -> Dict[str, Tuple[str, int]]:
    """{'public-key': (str, line), 'secret-key': (str, line)} from a key
    file, by the one key-file grammar of proto/keyfile.h (the daemon, the C
    client and this reader are tested against tests/fixtures/keys/). Line
    by line, blanks at both ends ignored, a UTF-8 BOM at the file's start
    skipped: a blank line; exactly one Z85 key (a public key; checked
    first, since '#' and '=' are Z85 characters); a '#' comment line;
    ``NAME = VALUE`` (VALUE optionally in double quotes; NAME public-key or
    secret-key, any case, '_' as '-'); the zcert section words
    ``metadata`` and ``curve`` alone, with other NAME = VALUE lines skipped
    after ``metadata`` until ``curve``. Anything else, a NUL byte, a key
    that is not 40 Z85 characters and a key given twice are errors naming
    the file and line."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(KEYFILE_MAX_BYTES + 1)
    except OSError as exc:
        raise KeyFileError("%s: cannot read key file: %s" % (path, exc.strerror or exc)) from None
    if len(data) > KEYFILE_MAX_BYTES:
        raise KeyFileError("%s: larger than %d bytes: not a key file" % (path, KEYFILE_MAX_BYTES))
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    keys: Dict[str, Tuple[str, int]] = {}
    in_metadata = False
    for n, raw in enumerate(data.split(b"\n"), 1):
        if b"\0" in raw:
            raise KeyFileError("%s:%d: NUL byte: not a text key file" % (path, n))
        try:
            s = raw.decode("utf-8").strip(_BLANKS)
        except UnicodeDecodeError:
            raise KeyFileError("%s:%d: not UTF-8 text" % (path, n)) from None
        if _is_z85_key(s):
            name, value = "public-key", s
        elif not s or s.startswith("#"):
            continue
        elif s in _SECTIONS:
            in_metadata = s == "metadata"
            continue
        elif "=" in s:
            name, value = s.split("=", 1)  # Z85 itself may contain '='
            name, value = name.strip(_BLANKS).lower().replace("_", "-"), value.strip(_BLANKS)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if name not in ("public-key", "secret-key"):
                if in_metadata:
                    continue  # zcert metadata
                raise KeyFileError("%s:%d: unknown name %r (expected public-key or secret-key)"
                                   % (path, n, name[:40]))
            value = _z85_key(value, "%s:%d: %s" % (path, n, name)).decode()
        else:
            raise KeyFileError("%s:%d: expected 'public-key = <Z85>' or 'secret-key = <Z85>'"
                               % (path, n))
        if name in keys:
            raise KeyFileError("%s:%d: %s given twice" % (path, n, name))
        keys[name] = (value, n)
    return keys


def load_keypair(path: Union[str, "os.PathLike[str]"]) -> Tuple[str, str]:
    """(public, secret) Z85 strings from a key file written by
    ``cutmixd keygen NAME`` (NAME.key). The secret key must belong to the
    public key."""
    keys = _read_key_file(path)
    for name in ("public-key", "secret-key"):
        if name not in keys:
            raise KeyFileError("%s: no '%s = ...' line (a keypair file, NAME.key, has both "
                               "public-key and secret-key)" % (os.fspath(path), name))
    public, secret = keys["public-key"][0], keys["secret-key"][0]
    if zmq.has("curve") and zmq.curve_public(secret.encode()).decode() != public:
        raise KeyFileError("%s: the secret key does not belong to the public key"
                           % os.fspath(path))
    return public, secret


def load_public_key(path: Union[str, "os.PathLike[str]"]) -> str:
    """The public key (Z85 string) of a key file: NAME.pub, or NAME.key."""
    keys = _read_key_file(path)
    if "public-key" not in keys:
        raise KeyFileError("%s: no 'public-key = ...' line" % os.fspath(path))
    return keys["public-key"][0]


def curve_keypair() -> Tuple[str, str]:
    """A new (public, secret) pair of Z85 strings (zmq_curve_keypair)."""
    if not zmq.has("curve"):
        raise Error("cutmixd: this libzmq was built without CURVE")
    pub, sec = zmq.curve_keypair()
    return pub.decode(), sec.decode()
