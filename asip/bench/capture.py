"""What an estimator's ``fit`` does not hand back: its `asip.StageResult`, and live progress.

`AsipClassifier.fit` runs an `asip.Stage` and keeps only the fitted model and
the evaluated trace; the benchmark also needs the stage's channel statistics,
restarts and launch/teardown timings, and wants to show the objective while
the stage runs. `capture_stages` swaps ``asip.Stage`` for a subclass for the
duration of one fit: it records every `StageResult` and adds an ``on_trace``
callback that calls ``on_snapshot(solver, problem, latest_snapshots)``. The
callback never raises (an exception in ``on_trace`` would stop the stage).
If the estimator grows a ``stage_result_`` attribute, use that instead.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import asip

__all__ = ["StageCapture", "capture_stages"]

logger = logging.getLogger(__name__)


@dataclass
class StageCapture:
    """Stage results recorded during one ``with capture_stages():`` block."""

    results: list = field(default_factory=list)
    run_started: list = field(default_factory=list)  # time.perf_counter() at each Stage.run()


@contextlib.contextmanager
def capture_stages(on_snapshot: Callable | None = None, min_interval: float = 0.5):
    """Record the `StageResult` of every stage run inside the block (see the module docstring)."""
    capture = StageCapture()
    original = asip.Stage

    class RecordingStage(original):  # type: ignore[misc, valid-type]
        def __init__(self, operator, data, **kwargs):
            if on_snapshot is not None and kwargs.get("on_trace") is None:
                kwargs["on_trace"] = _trace_hook(operator, on_snapshot, min_interval)
            super().__init__(operator, data, **kwargs)

        def run(self):
            capture.run_started.append(time.perf_counter())
            result = super().run()
            capture.results.append(result)
            return result

    asip.Stage = RecordingStage
    try:
        yield capture
    finally:
        asip.Stage = original


def _trace_hook(operator, on_snapshot: Callable, min_interval: float) -> Callable:
    """An ``on_trace`` callback: keep the latest snapshot per partition, call back at most every ``min_interval`` s."""
    solver = getattr(operator, "solver", None)
    problem = getattr(operator, "problem", None)
    latest: dict[int, dict] = {}
    last = [0.0]

    def hook(entries) -> None:
        try:
            for e in entries:
                if e.metrics:
                    latest[e.partition] = e.metrics
            now = time.monotonic()
            if solver is not None and latest and now - last[0] >= min_interval:
                last[0] = now
                on_snapshot(solver, problem, dict(latest))
        except Exception as exc:  # display only: never stop the stage
            logger.debug("live objective failed: %s", exc)

    return hook
