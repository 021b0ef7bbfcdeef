"""pytest fixtures for the cutmixd integration tests.

Every test starts the real bin/cutmixd (helpers.Daemon): a temporary config
and ipc:// socket, a deadline on the 'ready:' log line, the daemon's log in
the report when a test fails, SIGTERM and a check for exit status 0 at the
end. Datasets are generated once per session with scripts/gen_dataset.py.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers  # noqa: E402
from helpers import Daemon, Dataset  # noqa: E402
import gen_dataset  # noqa: E402  (helpers put scripts/ on sys.path)


# -- daemon logs in failure reports ------------------------------------------

@pytest.fixture(autouse=True)
def _track_daemons():
    helpers.TEST_DAEMONS.clear()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        seen = []
        for d in list(helpers.TEST_DAEMONS) + list(helpers.LIVE_DAEMONS):
            if d not in seen:
                seen.append(d)
        for d in seen:
            rep.sections.append(("cutmixd log: %s (%s)" % (d.name, d.log_path), d.tail()))


@pytest.fixture
def daemon(tmp_path):
    """Factory: daemon(dataset=..., pipelines=..., server=...) starts one
    daemon in this test's tmp dir; all are stopped (and must exit 0) at the
    end of the test."""
    started = []

    def make(dataset, pipelines, server=None, name="cutmixd", sets=(), args=(), wait=True):
        d = Daemon(tmp_path / name, dataset, pipelines, server=server, name=name,
                   sets=sets, args=args)
        started.append(d)
        return d.start(wait=wait)

    yield make
    failed = []
    for d in started:
        try:
            d.stop(check=True)
        except BaseException as exc:  # stop them all, then report
            failed.append(exc)
    if failed:
        raise failed[0]


# -- datasets (generated once per session) -------------------------------------

@pytest.fixture(scope="session")
def ds_mixed(tmp_path_factory):
    """55 images of mixed sizes (48..320 px), mixed subsampling, some gray,
    5 classes; ImageFolder layout, no manifest."""
    root = tmp_path_factory.mktemp("ds_mixed")
    s = gen_dataset.make_dataset(root, classes=5, per_class=11, sizes="random",
                                 subsampling="mixed", gray_fraction=0.15, seed=7)
    return Dataset(root, s)


def _square(tmp_path_factory, sub, seed):
    root = tmp_path_factory.mktemp("ds_square%s" % sub)
    man = root / "manifest.tsv"
    s = gen_dataset.make_dataset(root, classes=6, per_class=8, size=(64, 64),
                                 subsampling=sub, gray_fraction=0.15, seed=seed,
                                 manifest=man)
    return Dataset(root, s, man)


@pytest.fixture(scope="session")
def ds_square444(tmp_path_factory):
    """48 images of exactly 64x64 (the output size), 4:4:4, manifest."""
    return _square(tmp_path_factory, "444", 11)


@pytest.fixture(scope="session")
def ds_square420(tmp_path_factory):
    """48 images of exactly 64x64, 4:2:0, manifest."""
    return _square(tmp_path_factory, "420", 12)


@pytest.fixture(scope="session", params=["444", "420"])
def ds_square(request, ds_square444, ds_square420):
    return {"444": ds_square444, "420": ds_square420}[request.param]
