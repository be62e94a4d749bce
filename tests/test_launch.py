"""The launch path: nothing on the workers that can stall a gang's start."""

from __future__ import annotations

import os
import time
import signal

import dask
import dask.array as da
import numpy as np
import pytest
from tornado.ioloop import PeriodicCallback

import asip
from asip import _profiler
from asip._stage import _Run
from runtime_operators import Gossip, ProfilerProbe

pytestmark = pytest.mark.timeout(120)


def _profile_callbacks(client) -> set:
    def name(dask_worker):
        pc = dask_worker.periodic_callbacks.get("profile")
        return getattr(pc.callback, "__name__", repr(pc.callback)) if pc else None

    return set(client.run(name).values())


def test_the_task_profiler_is_paused_while_a_stage_runs_and_restored_after(client):
    """Dask's task profiler (sys._current_frames() 100x a second; it can deadlock a
    Python 3.11 worker starting its operator threads) is off while the operators run,
    back after the stage, and left alone when asip.stage.pause-worker-profiler is off."""
    blocks = [np.zeros((2, 2)) for _ in range(2)]
    assert _profile_callbacks(client) == {"trigger_profile"}
    res = asip.Stage(ProfilerProbe(), blocks, client=client, max_time=0.3).run()
    assert [r["callback"] for r in res.results] == ["_skip", "_skip"], res.missing
    # the workers' plugins go right after run() returns (the next stage waits for that)
    deadline = time.monotonic() + 10
    while _profile_callbacks(client) != {"trigger_profile"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _profile_callbacks(client) == {"trigger_profile"}
    with dask.config.set({"asip.stage.pause-worker-profiler": False}):
        res = asip.Stage(ProfilerProbe(), blocks, client=client, max_time=0.3).run()
    assert [r["callback"] for r in res.results] == ["trigger_profile"] * 2, res.missing
    assert _profile_callbacks(client) == {"trigger_profile"}


def test_profiler_pauses_nest_and_the_last_resume_restores_it():
    """Two stages on one worker: the profiler comes back only when both have ended."""

    class Worker:  # the attribute the worker's profiler lives in
        def __init__(self):
            self.periodic_callbacks = {"profile": PeriodicCallback(self.trigger_profile, 10)}

        def trigger_profile(self):
            pass

    w = Worker()
    original = w.periodic_callbacks["profile"].callback
    assert _profiler.pause(w) and _profiler.pause(w)
    _profiler.resume(w)
    assert w.periodic_callbacks["profile"].callback is _profiler._skip
    _profiler.resume(w)
    assert w.periodic_callbacks["profile"].callback == original
    _profiler.resume(w)  # one too many: nothing to undo
    assert w.periodic_callbacks["profile"].callback == original
    assert not _profiler.pause(object())  # no profiler (disabled in the worker's config)


def test_a_worker_frozen_before_its_operators_register_is_replaced_and_the_gang_starts(
        fresh_cluster, monkeypatch):
    """A worker that freezes after the plugins are installed and before its share of the
    gang registers (here: SIGSTOP; at 512 operators on Python 3.11: the profiler deadlock)
    is judged by its late heartbeat like one running operators: its nanny kills it, its
    task goes elsewhere, and the gang starts instead of waiting out the start timeout."""
    client = fresh_cluster
    frozen = {}
    submit_all = _Run._submit_all

    def freeze_then_submit(run, placement):
        worker = placement[1]
        frozen[worker] = client.run(os.getpid, workers=[worker])[worker]
        os.kill(frozen[worker], signal.SIGSTOP)
        submit_all(run, placement)

    monkeypatch.setattr(_Run, "_submit_all", freeze_then_submit)
    X = da.random.RandomState(5).random_sample((400, 3), chunks=(200, 3))
    try:
        with dask.config.set({"asip.stage.peer-silence-timeout": "2s",
                              "asip.gang.start-timeout": "60s"}):
            res = asip.Stage(Gossip(), X, client=client, max_time=1.0).run()
    finally:
        for pid in frozen.values():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:  # killed, as it should be
                pass
    assert res.missing == {} and res.stopped_by == "max_time"
    assert res.health["hung_kills"] >= 1  # (a loaded machine may stall the other one too)
    (worker,) = frozen
    assert all(r["worker"] != worker for r in res.results)
    assert res.timings["launch"] < 60.0  # started, not timed out
    client.wait_for_workers(2, timeout=60)


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), ("false", False),
                                             ("0", False), ("off", False), ("true", True)])
def test_the_pause_switch_reads_booleans_from_config_and_environment(value, expected):
    """DASK_ASIP__STAGE__PAUSE_WORKER_PROFILER=false turns it off, as does False in code."""
    from asip import _config

    with dask.config.set({"asip.stage.pause-worker-profiler": value}):
        assert _config.flag("stage.pause-worker-profiler") is expected


def test_silence_limit_never_falls_under_distributed_heartbeat_interval():
    """Past 800 workers distributed asks a heartbeat only every n/200 + 1 >= 5 s: a 5 s
    silence timeout would judge on-time workers, so the limit grows with the cluster."""
    from distributed.scheduler import heartbeat_interval

    from asip._directory import DirectoryPlugin

    directory = DirectoryPlugin("r", 4, silence_timeout=5.0)
    assert directory.silence_limit(16) == 5.0
    for n in (1000, 4000):
        assert directory.silence_limit(n) >= 3 * heartbeat_interval(n) > 5.0
