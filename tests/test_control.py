"""The control plane on real processes: nothing lost silently, busy is not hung, the
stage's life is tied to its driver, per-incarnation accounting, a bounded trace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import dask
import dask.array as da
import numpy as np
import pytest

import asip
from asip._trace import BoundedTrace
from asip.faults import KillOperator
from runtime_operators import GilHog, Gossip, OddResults
from test_stage import asip_leftovers, assert_clean

pytestmark = pytest.mark.timeout(120)


def data(n_parts=2):
    return da.random.RandomState(1).random_sample((200, 3), chunks=(200 // n_parts, 3))


def test_results_may_be_any_msgpack_value_and_a_failing_result_is_reported_not_retried(client):
    res = asip.Stage(OddResults(), data(), client=client, max_time=0.8).run()
    assert res.restarts == []  # a bug in result() is not a fault to retry
    r0 = res.results[0]
    assert r0["history"] == [1, 2.5, "x"]
    np.testing.assert_array_equal(r0["nested"]["w"], np.arange(4.0).reshape(2, 2))
    assert res.results[1] is None
    assert list(res.missing) == [1] and "RuntimeError: formatting bug" in res.missing[1]
    # the final report travels with the result: the trace ends at the last step
    last = [e for e in res.trace if e.partition == 0][-1]
    assert last.metrics["steps"] == r0["steps"] == res.steps[0]
    assert_clean(client)


def test_a_worker_busy_holding_the_gil_is_left_alone(client):
    with dask.config.set({"asip.stage.peer-silence-timeout": "1s"}):
        res = asip.Stage(GilHog(seconds=3.0), data(), client=client, max_time=5.0).run()
    assert res.results[1]["hogged"], "the hog never ran"
    assert res.restarts == [] and res.health["hung_kills"] == 0
    assert res.health["busy"], "its heartbeat was never late: the test proved nothing"
    assert res.missing == {} and all(r is not None for r in res.results)
    assert_clean(client)


def test_steps_and_stats_of_a_failed_incarnation_are_kept(client):
    """Partition 0 pushes from 0.3 s and dies at 0.8 s: its statistics are its last ones,
    sent when it ended (the beats carry statistics about once a second, and the first beat
    came before its first push). The restart ends the stage after 20 steps: waited for,
    not raced against a wall-time budget (it took over 3.5 s at a load of 15)."""
    res = asip.Stage(Gossip(quiet_for=0.3, stop_after_restart=20), data(), client=client,
                     max_time=60.0, faults=[KillOperator(partition=0, at=0.8)]).run()
    assert res.stopped_by == "STOP from partition 0"
    mine = [r for r in res.incarnations if r["partition"] == 0]
    assert [r["incarnation"] for r in mine] == [0, 1]
    assert mine[0]["steps"] > 0 and mine[0]["stats"]["pushed"] > 0, mine[0]  # from its end
    assert mine[1]["steps"] == 20
    assert res.steps[0] == mine[0]["steps"] + mine[1]["steps"]
    assert res.stats["operators"][0]["pushed"] == sum(r["stats"]["pushed"] for r in mine)
    assert res.missing == {}
    assert_clean(client)


_DRIVER = textwrap.dedent("""
    import sys, dask.array as da, asip
    from distributed import Client
    sys.path.insert(0, {tests!r})
    from runtime_operators import Gossip
    client = Client({address!r})
    X = da.random.RandomState(0).random_sample((200, 3), chunks=(100, 3))
    asip.Stage(Gossip(), X, client=client, max_time=600.0).run()
""")


@pytest.mark.timeout(90)
def test_a_stage_whose_driver_dies_stops_and_leaves_the_cluster(client, cluster_2x1):
    script = _DRIVER.format(tests=os.path.dirname(__file__), address=cluster_2x1.scheduler_address)
    driver = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not asip_leftovers(client).get("workers"):  # the stage is running
            assert driver.poll() is None and time.monotonic() < deadline, "the stage never ran"
            time.sleep(0.2)
        time.sleep(0.5)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert_clean(client, timeout=20.0)  # operators stopped, plugins and handlers gone

    def operator_threads(dask_worker):
        return len(dask_worker.state.long_running)

    assert sum(client.run(operator_threads).values()) == 0


class _Entry:
    def __init__(self, time, partition):
        self.time, self.partition, self.incarnation = time, partition, 0

    def __lt__(self, other):
        return (self.time, self.partition) < (other.time, other.partition)


def test_the_trace_is_bounded_in_bytes_and_keeps_early_and_recent_points():
    trace = BoundedTrace(max_bytes=200 * 1300)
    for t in range(5000):
        for p in range(2):
            trace.add(_Entry(float(t), p), 1000)
    assert trace.nbytes <= trace.max_bytes and trace.thinned > 0
    times = [e.time for e in trace.entries() if e.partition == 0]
    assert times[:16] == [float(t) for t in range(16)]  # the start, untouched
    assert times[-64:] == [float(t) for t in range(5000 - 64, 5000)]  # the recent end
    gaps = np.diff(times[15:-63])
    assert gaps.max() <= trace.stride[0] and len(times) >= 100  # the middle thinned evenly


def _lose_ready_messages(on: bool) -> None:
    """In a worker process: drop (or stop dropping) every direct ``ready`` message."""
    from asip._worker_plugin import ChannelPlugin

    if on:
        original = ChannelPlugin._fire

        async def fire(self, kind, **kwargs):
            if kind != "ready":
                await original(self, kind, **kwargs)

        ChannelPlugin._original_fire = original
        ChannelPlugin._fire = fire
    elif hasattr(ChannelPlugin, "_original_fire"):
        ChannelPlugin._fire = ChannelPlugin._original_fire
        del ChannelPlugin._original_fire


def test_a_lost_ready_is_sent_again_with_the_next_beat(client):
    client.run(_lose_ready_messages, True)
    try:
        with dask.config.set({"asip.gang.start-timeout": "15s"}):
            res = asip.Stage(Gossip(), data(), client=client, max_time=0.5).run()
    finally:
        client.run(_lose_ready_messages, False)
    assert res.stopped_by == "max_time" and res.missing == {}
    assert res.timings["launch"] < 15.0
    assert_clean(client)
