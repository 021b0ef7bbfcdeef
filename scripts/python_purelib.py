#!/usr/bin/python3
"""Print where `make install PREFIX=P` puts the Python package: the
interpreter's own purelib for that prefix, the folder it searches.

    python_purelib.py PREFIX

sysconfig knows the interpreter's install schemes; on Debian the default
one (posix_local) adds "/local" to its base, so PREFIX=/usr/local is
posix_local with base /usr (/usr/local/lib/python3.X/dist-packages) and
PREFIX=/usr is deb_system (/usr/lib/python3/dist-packages). Among the
schemes' purelib paths under PREFIX the one on sys.path wins; for a prefix
the interpreter does not search (/opt/x) it is posix_prefix's
(PREFIX/lib/python3.X/site-packages) and a note on stderr says to add it to
PYTHONPATH."""

import os
import sys
import sysconfig


def candidates(prefix):
    """(scheme, base, purelib) for each scheme whose purelib is under prefix."""
    names = sysconfig.get_scheme_names()
    out = []
    for scheme, base in (("deb_system", prefix), ("posix_local", os.path.dirname(prefix)),
                         ("posix_prefix", prefix), ("posix_local", prefix)):
        if scheme not in names:
            continue
        path = sysconfig.get_path("purelib", scheme, vars={"base": base, "platbase": base})
        path = os.path.normpath(path)
        if path.startswith(prefix.rstrip("/") + "/"):
            out.append((scheme, base, path))
    return out


def purelib(prefix):
    """(path, searched): the folder for prefix, and whether sys.path has it."""
    prefix = os.path.normpath(os.path.abspath(prefix))
    searched = {os.path.normpath(p) for p in sys.path if p}
    cands = candidates(prefix)
    for _, _, path in cands:
        if path in searched:
            return path, True
    for scheme, _, path in cands:
        if scheme == "posix_prefix":
            return path, False
    return sysconfig.get_path("purelib", "posix_prefix",
                              vars={"base": prefix, "platbase": prefix}), False


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 0 if len(argv) == 2 else 64
    path, searched = purelib(argv[1])
    if not searched:
        sys.stderr.write("note: %s is not on %s's sys.path: add it to PYTHONPATH to import "
                         "cutmixd\n" % (path, sys.executable))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
