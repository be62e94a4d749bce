"""The whole run's turn lock (tests/ and examples/): under pytest-xdist, a test marked
``exclusive`` runs with no other test beside it (see ``tests/_exclusive.py``); and the test
process's BLAS pools held at one thread (``own_blas_pools`` gives a test their own sizes)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))  # as tests/conftest.py's
from _exclusive import turn  # noqa: E402


_blas = None  # threadpoolctl's controller of the test process's BLAS pools
_blas_limit = None  # its limit to one thread, while held


def pytest_sessionstart(session) -> None:
    """The test process's BLAS pools held at one thread, as the nanny's workers run theirs.
    The driver-side math of the tests (in-process solver runs, reference optima) ran on
    OpenBLAS pools of one thread per core; on 2 loaded cores their threads spin against the
    other processes: a 300 x 300 Cholesky took 0.27-0.52 s, not 1 ms, at a load of 13."""
    global _blas, _blas_limit
    import importlib

    from threadpoolctl import ThreadpoolController

    for module in ("numpy", "scipy.linalg"):  # each loads its own OpenBLAS: limit both
        importlib.import_module(module)

    _blas = ThreadpoolController().select(user_api="blas")
    _blas_limit = _blas.limit(limits=1)


@pytest.fixture
def own_blas_pools():
    """The test process's BLAS pools at the sizes they were loaded with, for this test."""
    global _blas_limit
    _blas_limit.restore_original_limits()
    try:
        yield
    finally:
        _blas_limit = _blas.limit(limits=1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Each test's whole run (its module's fixtures' start and close included: a cluster's
    close beside an exclusive test is load too) holds the lock of its xdist run: shared, or
    exclusive for an ``exclusive`` test. Without xdist every test runs alone anyway."""
    workerinput = getattr(item.config, "workerinput", None)
    if workerinput is None:
        return (yield)
    folder = os.path.join(tempfile.gettempdir(), f"asip-turn-{workerinput['testrunuid']}")
    os.makedirs(folder, exist_ok=True)
    with turn(folder, item.get_closest_marker("exclusive") is not None):
        return (yield)
