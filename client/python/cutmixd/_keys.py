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


def _read_key_file(path: Union[str, "os.PathLike[str]"]) -> Dict[str, Tuple[str, int]]:
    """{'public-key': (str, line), 'secret-key': (str, line)} from a key
    file: lines ``name = value`` (value optionally in double quotes), a bare
    key (a public key), '#' comment lines, blank lines; section words
    without '=' (ZeroMQ zcert files: 'curve', 'metadata') are skipped."""
    path = os.fspath(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise KeyFileError("%s: cannot read key file: %s" % (path, exc.strerror or exc)) from None
    except UnicodeDecodeError:
        raise KeyFileError("%s: not a text key file" % path) from None
    keys = {}
    for n, line in enumerate(lines, 1):
        s = line.strip().lstrip("\ufeff")
        if _is_z85_key(s):  # a bare key (may begin with '#': Z85 has it)
            if "public-key" in keys:
                raise KeyFileError("%s:%d: public-key given twice" % (path, n))
            keys["public-key"] = (s, n)
            continue
        if not s or s.startswith("#"):
            continue
        if "=" not in s:
            if s.replace("-", "").replace("_", "").isalnum():
                continue  # a zcert section word
            raise KeyFileError("%s:%d: expected 'public-key = <Z85>' or 'secret-key = <Z85>'"
                               % (path, n))
        name, value = s.split("=", 1)  # Z85 itself may contain '='
        name, value = name.strip().lower().replace("_", "-"), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name in ("public-key", "secret-key"):
            if name in keys:
                raise KeyFileError("%s:%d: %s given twice" % (path, n, name))
            keys[name] = (_z85_key(value, "%s:%d: %s" % (path, n, name)).decode(), n)
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
