"""What an estimator's ``fit`` does not hand back: its `asip.StageResult`.

`AsipClassifier.fit` runs an `asip.Stage` and keeps only the fitted model and
the evaluated trace; the benchmark also needs the stage's channel statistics,
restarts and data/launch/teardown timings. `capture_stages` swaps
``asip.Stage`` for a subclass for the duration of one fit that records every
`StageResult` and when ``run()`` was entered. If the estimators grow a
``stage_result_`` attribute, `asip.bench.runner` uses that instead.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import asip

__all__ = ["StageCapture", "capture_stages"]


@dataclass
class StageCapture:
    """Stage results recorded during one ``with capture_stages():`` block."""

    results: list = field(default_factory=list)
    run_started: list = field(default_factory=list)  # time.perf_counter() at each Stage.run()


@contextlib.contextmanager
def capture_stages():
    """Record the `StageResult` of every stage run inside the block (see the module docstring)."""
    capture = StageCapture()
    original = asip.Stage

    class RecordingStage(original):  # type: ignore[misc, valid-type]
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
