"""A STOP stops the operators on its own worker at once, not when the scheduler's broadcast
of it comes back (`asip._task`): from the data plane's stop their polls return at once, and
until the broadcast they stepped in a tight loop."""

from __future__ import annotations

import numpy as np
import pytest
from distributed import Client

import asip
from conftest import _local_cluster
from runtime_operators import WaitsForNews
from test_stage import assert_clean

pytestmark = pytest.mark.timeout(120)


def test_a_stop_ends_the_other_operators_on_its_worker_without_spinning():
    """Two operators on one worker, each step a 50 ms poll for news that never comes:
    partition 1 takes ~6 steps in the 0.3 s before partition 0's STOP, and at most a couple
    after it (before the fix it spun until the broadcast arrived: hundreds of steps)."""
    after, wait = 0.3, 0.05
    parts = [np.zeros((10, 2)) for _ in range(2)]
    with _local_cluster(1, 2) as cluster, Client(cluster) as client:
        res = asip.Stage(WaitsForNews(after, wait), parts, client=client, max_time=30.0).run()
        assert res.stopped_by == "STOP from partition 0"
        steps = res.results[1]["steps"]
        assert steps <= after / wait + 4, f"partition 1 took {steps} steps"
        assert_clean(client)
