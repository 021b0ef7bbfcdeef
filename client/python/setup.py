"""Build hook for pyproject.toml: the version comes from the VERSION file
at the root of the cutmixd source tree (one version for daemon, C library
and Python package). Building from the tree copies it into the package
(build_py) and into an sdist (sdist), so an sdist, or a copy of this folder
that carries cutmixd/VERSION, builds without the rest of the tree."""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
CANDIDATES = [HERE.parent.parent / "VERSION", HERE / "cutmixd" / "VERSION"]


def version_file():
    for p in CANDIDATES:
        if p.is_file():
            return p
    raise SystemExit("cutmixd: no VERSION file (looked at %s): build from the cutmixd "
                     "source tree or from its sdist" % ", ".join(map(str, CANDIDATES)))


def read_version():
    text = version_file().read_text(encoding="ascii").strip()
    if not text:
        raise SystemExit("cutmixd: %s is empty" % version_file())
    return text


class BuildPy(build_py):
    def run(self):
        super().run()
        dst = Path(self.build_lib) / "cutmixd" / "VERSION"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(version_file(), dst)


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        dst = os.path.join(base_dir, "cutmixd", "VERSION")
        if os.path.exists(dst):
            os.unlink(dst)
        shutil.copyfile(version_file(), dst)


setup(version=read_version(), cmdclass={"build_py": BuildPy, "sdist": Sdist})
