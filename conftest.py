"""The whole run's turn lock (tests/ and examples/): under pytest-xdist, a test marked
``exclusive`` runs with no other test beside it (see ``tests/_exclusive.py``)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))  # as tests/conftest.py's
from _exclusive import turn  # noqa: E402


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
