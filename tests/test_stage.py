"""The runtime on a real multi-process LocalCluster: delivery, gang, stop, restarts, cleanup."""

from __future__ import annotations

import logging
import threading
import time

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import wait

import asip
from asip._respawn import HOLD_NAME
from asip.faults import DelayMessages, DropMessages, KillOperator, KillWorker, Straggler
from runtime_operators import (BadPush, Gossip, PluginsProbe, PollTimer, ReportsThenStops,
                               SlowSetup, StopsEarly)

pytestmark = pytest.mark.timeout(120)


def asip_leftovers(client) -> dict:
    """Everything asip could leave behind on the scheduler and the workers."""

    def on_scheduler(dask_scheduler):
        return {
            "tasks": [str(k) for k in dask_scheduler.tasks if "asip" in str(k)],
            "plugins": [p for p in dask_scheduler.plugins if "asip" in p],
            "handlers": [h for h in dask_scheduler.handlers if h.startswith("asip")],
            "worker_plugins": [p for p in dask_scheduler.worker_plugins if "asip" in p],
            # the respawn hold stays: once per cluster, inert between stages (asip._respawn)
            "nanny_plugins": [p for p in dask_scheduler.nanny_plugins
                              if "asip" in p and p != HOLD_NAME],
        }

    def on_worker(dask_worker):
        return [p for p in dask_worker.plugins if "asip" in p] + [
            h for h in dask_worker.handlers if h.startswith("asip")
        ]

    out = {k: v for k, v in client.run_on_scheduler(on_scheduler).items() if v}
    workers = {w: v for w, v in client.run(on_worker).items() if v}
    if workers:
        out["workers"] = workers
    return out


def assert_clean(client, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := asip_leftovers(client)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"asip left things behind: {left}"


def data(n_rows=400, n_parts=2, seed=0):
    return da.random.RandomState(seed).random_sample((n_rows, 3), chunks=(n_rows // n_parts, 3))


def by_worker(res):
    return [r["worker"] for r in res.results]


def test_broadcast_reaches_every_peer_across_and_within_workers(client):
    res = asip.Stage(Gossip(), data(n_parts=4), client=client, max_time=1.5,
                     oversubscribe=True).run()
    assert res.stopped_by == "max_time"
    workers = by_worker(res)
    assert len(set(workers)) == 2, "placement should spread 4 operators over both workers"
    assert any(workers.count(w) > 1 for w in workers), "some operators must share a worker"
    for i, r in enumerate(res.results):
        assert list(r["senders"]) == [j for j in range(4) if j != i]
        assert r["bad_values"] == 0 and all(r["counts"] > 0)
    total = res.stats["total"]
    assert total["delivered"] > 0 and total["malformed"] == 0
    # Staleness is measured on what poll() handed over: ages are positive, the max is a
    # max over operators (not a sum), and every mean lies below it.
    assert 0 < total["consumed"] <= total["delivered"]
    assert total["age_us_max"] == max(s["age_us_max"] for s in res.stats["operators"])
    assert 0 < asip.ChannelStats.mean_age_ms(total) <= total["age_us_max"] / 1e3
    assert len(res.trace) > 0 and {e.partition for e in res.trace} == {0, 1, 2, 3}
    assert_clean(client)


def test_point_to_point_only_reaches_the_destination(client):
    res = asip.Stage(Gossip(to=0), data(n_rows=300, n_parts=3), client=client, max_time=1.0,
                     oversubscribe=True).run()
    assert list(res.results[0]["senders"]) == [1, 2]
    assert list(res.results[1]["senders"]) == [] and list(res.results[2]["senders"]) == []
    assert_clean(client)


def test_operators_run_where_their_partition_lives(client):
    X = data(n_parts=2).persist()
    wait(X)
    holders = client.who_has(X)
    res = asip.Stage(Gossip(), X, client=client, max_time=0.5).run()
    keys = [k[0] if isinstance(k, list) else k for k in X.__dask_keys__()]
    for i, key in enumerate(keys):
        assert res.results[i]["worker"] in holders[key]
    assert_clean(client)


def test_poll_never_blocks_and_waits_only_when_asked(client):
    res = asip.Stage(PollTimer(), data(), client=client, max_time=1.0).run()
    for r in res.results:
        assert r["worst"] < 0.5  # a blocking poll would wait for the whole second
        assert 0.15 <= r["waited"] < 1.0
    assert_clean(client)


def test_tuple_data_arrives_as_tuple_with_aligned_rows(client):
    X, y = data(n_parts=2), da.arange(400, chunks=200)
    res = asip.Stage(Gossip(), (X, y), client=client, max_time=0.3).run()
    assert [r["rows"] for r in res.results] == [200, 200]
    assert_clean(client)


def test_list_of_delayed_partitions(client):
    parts = [dask.delayed(np.full)((5 + i, 2), float(i)) for i in range(2)]
    res = asip.Stage(Gossip(), parts, client=client, max_time=0.3).run()
    assert [r["rows"] for r in res.results] == [5, 6]
    assert [r["first_value"] for r in res.results] == [0.0, 1.0]


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (lambda: data().rechunk((200, 1)), "chunked along columns"),
        (lambda: (data(), da.arange(400, chunks=100)), "chunked identically"),
        (lambda: np.zeros((10, 2)), "expected a dask array"),
        (lambda: [], "empty list"),
    ],
)
def test_bad_data_is_a_clear_error(client, bad, fragment):
    with pytest.raises(asip.AsipError, match=fragment):
        asip.Stage(Gossip(), bad(), client=client, max_time=0.3).run()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="asip.Operator"):
        asip.Stage(object, data())
    with pytest.raises(ValueError, match="max_time"):
        asip.Stage(Gossip, data(), max_time=0)
    with pytest.raises(ValueError, match="partition"):
        KillWorker(partition=-1, at=1.0)
    with pytest.raises(ValueError, match="probability"):
        DropMessages(p=2.0)


def test_gang_larger_than_cluster_fails_fast_with_numbers(client):
    t = time.monotonic()
    with pytest.raises(asip.GangSchedulingError, match=r"needs 3 operator slots.*2 threads"):
        asip.Stage(Gossip(), data(n_rows=300, n_parts=3), client=client, max_time=1.0).run()
    assert time.monotonic() - t < 10
    assert_clean(client)


def test_gang_that_never_completes_times_out_naming_the_missing(client):
    with dask.config.set({"asip.gang.start-timeout": "1s"}):
        with pytest.raises(asip.GangSchedulingError, match=r"still in setup: \[1\]"):
            asip.Stage(SlowSetup(4.0), data(), client=client, max_time=1.0).run()
    assert_clean(client)


@pytest.mark.parametrize("kind", ["object", "nested", "oversize", "key"])
def test_malformed_payloads_are_refused_on_the_sender(client, kind):
    with dask.config.set({"asip.channel.max-message-bytes": "1 MiB"}):
        res = asip.Stage(BadPush(kind), data(), client=client, max_time=5.0).run()
    fragment = {"object": "dtype object", "nested": "no nesting", "oversize": "max-message-bytes",
                "key": "keys must be str"}[kind]
    # whoever stepped first refused its payload (its STOP may stop the other before it steps)
    assert any(fragment in r["error"] for r in res.results)
    assert res.stats["total"]["refused"] >= 1
    assert_clean(client)


def test_stop_from_one_operator_stops_all_promptly(client):
    t = time.monotonic()
    res = asip.Stage(StopsEarly(0.3), data(), client=client, max_time=60.0).run()
    assert time.monotonic() - t < 15
    assert res.stopped_by == "STOP from partition 0"
    assert all(r is not None for r in res.results)
    assert_clean(client)


def test_max_steps_bounds_each_operator(client):
    res = asip.Stage(Gossip(), data(), client=client, max_time=60.0, max_steps=25).run()
    assert res.steps == [25, 25] and res.stopped_by == "max_steps"


def test_injected_drops_and_delays_are_real(client):
    res = asip.Stage(Gossip(), data(), client=client, max_time=0.5,
                     faults=[DropMessages(p=1.0)]).run()
    assert res.stats["total"]["delivered"] == 0
    total = res.stats["total"]  # a push racing the stop is dropped there instead
    assert total["dropped_injected"] + total["dropped_at_stop"] == total["pushed"] > 0
    res = asip.Stage(Gossip(), data(), client=client, max_time=1.0,
                     faults=[DelayMessages(ms=300)]).run()
    # every message was held back 300 ms, the cross-worker ones included
    assert all(0.29 <= r["min_latency"] < 1.0 for r in res.results)
    assert_clean(client)


def test_a_straggler_slows_only_itself(client):
    res = asip.Stage(Gossip(), data(), client=client, max_time=3.0,
                     faults=[Straggler(partition=0, sleep=1.0, every=0.5)]).run()
    def longest_silence(partition):
        times = [0.0] + [e.time for e in res.trace if e.partition == partition] + [3.0]
        i = int(np.argmax(np.diff(times)))
        return times[i], times[i + 1]

    start, end = longest_silence(0)
    assert end - start >= 0.9  # it slept a whole second between steps
    # its peer kept stepping (and reporting) meanwhile: it took steps well inside that
    # second (0.1 s from its ends: a peer that napped alike wakes within ms of it), not
    # "no peer silence over 0.5 s" (a loaded machine starves a thread for ~0.4 s)
    start, end = start + 0.1, end - 0.1
    peer = [(e.time, e.metrics["steps"]) for e in res.trace if e.partition == 1]
    before = max([steps for t, steps in peer if t <= start], default=0)
    during = [steps for t, steps in peer if start < t < end]
    assert during and max(during) > before, (start, end, peer)
    assert all(r["counts"].sum() > 0 for r in res.results)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("fault", [KillOperator, KillWorker])
def test_a_killed_operator_restarts_on_reloaded_data_and_the_stage_completes(fresh_cluster, fault):
    client = fresh_cluster
    X = data(n_parts=2, seed=7)
    expected_first = [float(b[0, 0]) for b in (X.blocks[0].compute(), X.blocks[1].compute())]
    pids = set(client.run(lambda: __import__("os").getpid()).values())
    res = asip.Stage(Gossip(), X, client=client, max_time=4.0,
                     faults=[fault(partition=1, at=1.0)]).run()
    assert res.stopped_by == "max_time"
    assert [(r.partition, r.incarnation) for r in res.restarts] == [(1, 1)]
    restart = res.restarts[0]
    assert 0.9 <= restart.time < 4.0
    assert ("lost" in restart.cause) if fault is KillWorker else ("InjectedFault" in restart.cause)
    assert res.results[1]["incarnation"] == 1
    assert [r["first_value"] for r in res.results] == expected_first  # recomputed identically
    # the restarted operator rejoined: it heard from its peer, and its peer heard from it
    assert res.results[1]["counts"].sum() > 0
    late = [e for e in res.trace if e.partition == 1 and e.incarnation == 1]
    assert late and max(e.time for e in late) > 3.0
    client.wait_for_workers(2, timeout=30)
    survivors = set(client.run(lambda: __import__("os").getpid()).values()) & pids
    assert len(survivors) == (1 if fault is KillWorker else 2)  # a killed worker is a dead process
    assert_clean(client)


@pytest.mark.timeout(120)
def test_max_restarts_exhausted_is_a_clear_error(fresh_cluster):
    client = fresh_cluster
    stage = asip.Stage(Gossip(), data(), client=client, max_time=5.0, max_restarts=0,
                       faults=[KillOperator(partition=0, at=0.2)])
    with pytest.raises(asip.OperatorFailedError, match=r"partition 0 failed.*max_restarts=0"):
        stage.run()
    # what the surviving operator did is kept
    assert stage.result is not None and stage.result.stopped_by == "partition 0 failed"
    assert stage.result.results[0] is None and stage.result.results[1] is not None
    assert_clean(client)


@pytest.mark.timeout(120)
def test_ctrl_c_stops_everything_and_keeps_the_partial_result(client):
    calls = []

    def interrupt(entries):
        calls.append(len(entries))
        if len(calls) == 3:
            raise KeyboardInterrupt

    stage = asip.Stage(Gossip(), data(), client=client, max_time=60.0, on_trace=interrupt)
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        stage.run()
    assert time.monotonic() - t < 20
    assert stage.result is not None and stage.result.stopped_by == "interrupted"
    assert all(r is not None for r in stage.result.results)
    # its run time too: from the gang's start to the stop, not the 0.0 of a run never timed
    assert 0 < stage.result.elapsed < time.monotonic() - t, stage.result.elapsed
    assert_clean(client)


@pytest.mark.timeout(120)
def test_stop_stage_raised_in_on_trace_is_a_normal_stop_with_every_result(client):
    """`asip.StopStage` from ``on_trace`` (a stop decided on the driver, e.g. a fit's
    callback) ends the stage like any stop: ``run`` returns every operator's result under
    the given reason, and ``on_trace`` is not called after it asked to stop."""
    calls = []

    def enough(entries):
        calls.append(len(entries))
        if len(calls) == 3:
            raise asip.StopStage("enough accuracy")

    t = time.monotonic()
    res = asip.Stage(Gossip(), data(), client=client, max_time=60.0, on_trace=enough).run()
    assert res.stopped_by == "enough accuracy"
    assert time.monotonic() - t < 20 and 0 < res.elapsed < time.monotonic() - t
    assert all(r is not None for r in res.results) and not res.missing
    assert len(calls) == 3  # not called again once it asked to stop
    assert_clean(client)


def test_hostile_messages_are_counted_and_dropped_never_executed(client, tmp_path):
    from runtime_operators import Saboteur

    marker = str(tmp_path / "pwned")
    res = asip.Stage(Saboteur(marker), data(), client=client, max_time=1.5).run()
    assert res.stopped_by == "max_time"  # nobody crashed
    assert res.results[1]["good"] == 1  # the good message after the hostile ones arrived
    assert not res.results[1]["exploited"]
    assert res.stats["operators"][1]["malformed"] >= 6
    assert res.stats["operators"][1]["delivered"] == 1
    assert_clean(client)


def test_in_memory_blocks_launch_in_causal_phases_and_leave_nothing_behind(client):
    """Blocks scattered to every worker at once run where they landed; the launch's
    milestones come in causal order, from the first task to the start reaching every
    worker and the driver; the one-round-trip teardown leaves nothing behind."""
    blocks = [np.full((5, 3), float(i)) for i in range(4)]
    res = asip.Stage(Gossip(), blocks, client=client, max_time=0.5, oversubscribe=True).run()
    assert res.missing == {} and res.stopped_by == "max_time"
    assert [r["first_value"] for r in res.results] == [0.0, 1.0, 2.0, 3.0]
    assert all(list(r["senders"]) == [j for j in range(4) if j != i]
               for i, r in enumerate(res.results))
    t = res.timings
    order = ["launch_first_task", "launch_first_register", "launch_all_registered",
             "launch_go", "launch_first_started", "launch_all_started"]
    assert [t[k] for k in order] == sorted(t[k] for k in order), t
    assert t["launch_go"] <= t["launch_go_heard"] <= t["launch_go_seen"], t
    assert_clean(client)


def test_a_failing_finish_falls_back_to_removing_the_plugins_one_by_one(client, monkeypatch):
    """The one-round-trip teardown failing (here: its handler raises, on the scheduler in
    this process) still leaves nothing behind and still brings the summary."""
    from asip._directory import DirectoryPlugin

    calls = []

    def broken(self, worker_timeout=4.0, background=False):
        calls.append(worker_timeout)
        raise RuntimeError("finish is broken")

    monkeypatch.setattr(DirectoryPlugin, "_h_finish", broken)
    res = asip.Stage(Gossip(), data(), client=client, max_time=0.3).run()
    assert len(calls) == 1  # it was tried, and failed
    assert res.missing == {} and "launch_go" in res.timings
    assert [r["partition"] for r in res.incarnations] == [0, 1]
    assert_clean(client)


class SizedResult(asip.Operator):
    """Returns at once: partition 0 a result too big to go as an event, the others a small one."""

    def step(self, ctx):
        return asip.STOP

    def result(self, ctx):
        size = 20_000 if ctx.index == 0 else 3  # 160 kB: over asip's event limit of 64 KiB
        return {"v": np.arange(size, dtype=np.float64) + ctx.index}


def test_small_results_come_with_the_events_and_large_ones_from_their_worker(client):
    """Each partition's result arrives whole, whichever way it travelled (a small summary
    is pushed with the run's events, a large one is fetched from its task)."""
    from asip._worker_plugin import RESULT_EVENT_BYTES

    assert 3 * 8 < RESULT_EVENT_BYTES < 20_000 * 8
    blocks = [np.zeros((2, 2)) for _ in range(3)]
    res = asip.Stage(SizedResult, blocks, client=client, max_time=10, oversubscribe=True).run()
    assert res.missing == {} and len(res.incarnations) == 3
    for i, r in enumerate(res.results):
        np.testing.assert_array_equal(r["v"], np.arange(20_000 if i == 0 else 3) + i)
    assert res.stopped_by.startswith("STOP from partition") and res.restarts == []
    assert_clean(client)


def test_bad_data_is_refused_before_the_stage_touches_the_cluster(client, monkeypatch):
    """The data is checked before the plugins are installed (they go in while it is placed)."""
    from asip._stage import _Run

    installs = []
    monkeypatch.setattr(_Run, "_start_install", lambda self, *a: installs.append(a))
    with pytest.raises(asip.AsipError, match=r"data\[1\] is a str"):
        asip.Stage(SizedResult, [np.zeros((2, 2)), "x"], client=client).run()
    with pytest.raises(asip.AsipError, match="chunked along columns"):
        asip.Stage(SizedResult, da.zeros((4, 4), chunks=(2, 2)), client=client).run()
    assert installs == []


def _hold_plugin_teardown(dask_worker=None, hold=True):
    """On a worker: asip's worker plugin teardown waits while ``hold`` is set."""
    import asyncio

    from asip._worker_plugin import ChannelPlugin

    dask_worker._asip_test_hold = hold
    if hold and not hasattr(ChannelPlugin, "_asip_test_teardown"):
        original = ChannelPlugin._asip_test_teardown = ChannelPlugin.teardown

        async def held(self, worker):
            while getattr(worker, "_asip_test_hold", False):
                await asyncio.sleep(0.02)
            await original(self, worker)

        ChannelPlugin.teardown = held
    elif not hold and hasattr(ChannelPlugin, "_asip_test_teardown"):
        ChannelPlugin.teardown = ChannelPlugin._asip_test_teardown
        del ChannelPlugin._asip_test_teardown


def test_a_finished_stage_returns_before_its_worker_plugins_go_and_the_next_waits(client):
    """Every operator returned: run() does not wait for the workers to remove the stage's
    plugin (a round trip to every worker), but the next stage starts only once they have:
    its operators never see the previous stage's plugin."""
    blocks = [np.zeros((4, 2)) for _ in range(2)]
    client.run(_hold_plugin_teardown)
    try:
        first: dict = {}
        runner = threading.Thread(target=lambda: first.setdefault(
            "res", asip.Stage(PluginsProbe(), blocks, client=client, max_time=30.0).run()),
            daemon=True)
        with dask.config.set({"asip.channel.connect-timeout": "60s"}):
            runner.start()
            runner.join(30)
        assert "res" in first, "run() waited for the workers to remove the stage's plugin"
        old = {h for r in first["res"].results for h in r["handlers"]}
        assert len(old) == 2 and all(len(r["plugins"]) == 1 for r in first["res"].results)
        held = {h for hs in client.run(lambda dask_worker: [
            h for h in dask_worker.handlers if h.startswith("asip")]).values() for h in hs}
        assert held == old, held  # still there: the test holds the plugin's teardown

        second: dict = {}
        runner = threading.Thread(target=lambda: second.setdefault(
            "res", asip.Stage(PluginsProbe(), blocks, client=client, max_time=30.0).run()),
            daemon=True)
        runner.start()
        time.sleep(1.0)  # time enough to launch, were it not waiting
        client.run(_hold_plugin_teardown, hold=False)
        runner.join(60)
        assert "res" in second
        for r in second["res"].results:
            assert len(r["plugins"]) == 1 and len(r["handlers"]) == 2, r
            assert not set(r["handlers"]) & old, r
    finally:
        client.run(_hold_plugin_teardown, hold=False)
    assert_clean(client)


def test_the_finish_goes_as_the_last_result_arrives_not_after_the_driver_took_it_in(
        client, monkeypatch):
    """The teardown's finish is sent from the client's loop when the last operator's result
    reaches it: here the driver thread is held in on_trace (the final reports) until the
    directory on the scheduler (in this process) finished; before, the driver sent the
    finish only after.
    The driver's stop, due once it takes in the STOP, is not sent after the finish (the
    scheduler logged a missing handler when it arrived after the directory had gone)."""
    from asip._directory import DirectoryPlugin

    close = DirectoryPlugin._h_close
    finished = threading.Event()

    def noted(self):  # the end of the finish: the directory's handlers go
        close(self)
        finished.set()

    monkeypatch.setattr(DirectoryPlugin, "_h_close", noted)
    waited = []

    def on_trace(entries):
        if any(e.metrics.get("last") for e in entries) and not waited:
            waited.append(finished.wait(20))

    class Records(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    records = Records()
    core = logging.getLogger("distributed.core")  # the scheduler's: in this process
    level = core.level
    core.setLevel(logging.WARNING)  # (the test cluster silences it)
    core.addHandler(records)
    blocks = [np.zeros((4, 2)) for _ in range(2)]
    try:  # the reports reach the driver before the results: it is held with them unseen
        res = asip.Stage(ReportsThenStops(pause=0.5), blocks, client=client, max_time=30.0,
                         on_trace=on_trace).run()
        assert_clean(client)
        time.sleep(0.2)  # (a stop sent last would be logged about now)
    finally:
        core.removeHandler(records)
        core.setLevel(level)
    assert waited == [True], "the finish was not sent while the driver was busy"
    assert res.missing == {} and sorted(r["index"] for r in res.results) == [0, 1]
    assert [r["partition"] for r in res.incarnations] == [0, 1]
    assert "launch_go" in res.timings and res.stopped_by.startswith("STOP")
    assert not [m for m in records.messages if "No handler" in m], records.messages
