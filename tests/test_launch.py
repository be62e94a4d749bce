"""The launch path: nothing on the workers that can stall a gang's start."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from tornado.ioloop import PeriodicCallback

import asip
from asip import _profiler
from runtime_operators import ProfilerProbe

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
