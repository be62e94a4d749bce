"""A KillWorker is a real SIGKILL at its time, and the stage records each phase of the recovery."""

from __future__ import annotations

import numpy as np
import pytest

import asip
from asip.faults import KillWorker
from kill_operators import LongFirstStep
from runtime_operators import Gossip
from test_stage import assert_clean

pytestmark = pytest.mark.timeout(180)


def test_a_kill_lands_in_the_middle_of_a_long_step(fresh_cluster):
    """A machine fails when it fails: partition 1's first step lasts 60 s, the kill is due at
    0.5 s and the stage ends at 4 s. At a step boundary the kill never came (no restart)."""
    client = fresh_cluster
    parts = [np.random.default_rng(i).random((50, 3)) for i in range(2)]
    res = asip.Stage(LongFirstStep(long=60.0), parts, client=client, max_time=4.0,
                     faults=[KillWorker(partition=1, at=0.5)]).run()
    assert [(r.partition, r.incarnation) for r in res.restarts] == [(1, 1)]
    assert "lost" in res.restarts[0].cause
    assert res.stopped_by == "max_time" and not res.missing
    assert res.results[1]["incarnation"] == 1 and res.results[1]["counts"].sum() > 0
    client.wait_for_workers(2, timeout=120)
    assert_clean(client)


def test_the_timeline_says_when_and_where_each_phase_of_a_kill_happened(fresh_cluster):
    client = fresh_cluster
    parts = [np.random.default_rng(i).random((200, 3)) for i in range(2)]  # in memory
    workers = sorted(client.nthreads())
    res = asip.Stage(Gossip(), parts, client=client, max_time=4.0,
                     faults=[KillWorker(partition=1, at=1.0)]).run()
    assert [(r.partition, r.incarnation) for r in res.restarts] == [(1, 1)]
    mine = [e for e in res.timeline if e.partition == 1]
    # the scheduler's "lost" event and the client's news of the lost data race each other
    assert sorted(e.kind for e in mine) == ["lost", "ready", "reload", "restart", "resubmit"]
    lost = next(e for e in mine if e.kind == "lost")
    reload, resubmit, restart, ready = [e for e in mine if e.kind != "lost"]
    assert [e.kind for e in (reload, resubmit, restart, ready)] == [
        "reload", "resubmit", "restart", "ready"]
    assert lost.detail == res.restarts[0].cause and lost.worker is None
    # the data went where the operator restarted: a worker alive at the time
    assert reload.worker == resubmit.worker == restart.worker
    assert reload.seconds is not None and reload.seconds >= 0
    assert restart.detail == ready.detail == "incarnation 1"
    assert restart.worker in workers or any(
        e.kind == "joined" and e.worker == restart.worker for e in res.timeline)
    times = [e.time for e in (reload, resubmit, restart, ready)]
    assert times == sorted(times) and lost.time <= restart.time
    assert lost.time >= 1.0 and reload.time >= 1.0  # the kill is due at 1.0 s exactly
    assert restart.time == pytest.approx(res.restarts[0].time)
    # the partition's first report after its restart comes after it was ready
    back = [e.time for e in res.trace if e.partition == 1 and e.incarnation == 1]
    assert back and min(back) >= ready.time - 0.05  # (two clocks: the worker's and the scheduler's)
    assert not [e for e in res.timeline if e.partition == 0]
    client.wait_for_workers(2, timeout=120)
    assert_clean(client)
