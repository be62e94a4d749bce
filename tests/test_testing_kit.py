"""asip.testing: the pytest plugin is registered by installing asip, and its helpers fail
when what they check does not hold (the passing side runs in examples/test_fault_injection.py)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from asip.faults import KillOperator
from asip.testing import check_fit, check_stage
from runtime_operators import Gossip

pytest_plugins = ["pytester"]


def test_fixtures_come_from_the_entry_point(pytester):
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    assert "asip_cluster [session scope]" in result.stdout.str()
    assert "asip_client" in result.stdout.str()


@pytest.mark.timeout(120)
def test_check_stage_fails_when_a_kill_causes_no_restart(client):
    X = da.from_array(np.ones((100, 2)), chunks=(50, 2))
    # the kill is due after the stage ends: it completes, but nothing was restarted
    with pytest.raises(AssertionError, match="restarts, expected at least 1"):
        check_stage(Gossip(), X, client=client, max_time=0.5, faults=[KillOperator(1, at=60)])


def test_check_fit_rejects_bad_arguments():
    from asip.algorithms import AsipClassifier

    X, y = np.ones((10, 2)), np.arange(10) % 2
    with pytest.raises(ValueError, match="factor must be"):
        check_fit(AsipClassifier(), X, y, faults=[KillOperator(0, at=1)], factor=0.5)
    with pytest.raises(ValueError, match="needs faults"):
        check_fit(AsipClassifier(), X, y, faults=())
