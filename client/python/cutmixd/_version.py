"""The package version: the VERSION file at the root of the cutmixd source
tree, one version for the daemon, the C library and this package. A built
wheel, an sdist and ``make install`` put a copy of it beside this module."""

from __future__ import annotations

from pathlib import Path


def _read() -> str:
    here = Path(__file__).resolve().parent
    for path in (here / "VERSION", here.parents[2] / "VERSION"):
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    try:
        from importlib.metadata import version
        return version("cutmixd")
    except Exception:
        return "0+unknown"


__version__ = _read()
