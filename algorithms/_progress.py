"""``verbose=1``: a rich progress bar for a fit -- elapsed time, gap or iterations, messages/s.

Fed by the stage's ``on_trace`` hook on the driver with the operators' reports,
which always carry scalar metrics (iteration counters, a duality gap where the
solver has one, messages received); it never touches the model. Without rich
installed the same line is logged at INFO level once a second.
"""

from __future__ import annotations

import logging
import time

import numpy as np

__all__ = ["FitProgress"]

logger = logging.getLogger(__name__)


class FitProgress:
    """A context manager showing a fit's progress; `update` takes `asip.TraceEntry` batches."""

    def __init__(self, title: str, max_time: float):
        self.title = title
        self.max_time = float(max_time)
        self._latest: dict[int, dict] = {}
        self._clock = 0.0
        self._bar = None
        self._task = None
        self._logged = 0.0

    def __enter__(self) -> FitProgress:
        try:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:  # pragma: no cover - rich is in the test/bench extras
            return self
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                             TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
        self._task = self._bar.add_task(self.title, total=self.max_time, status="starting")
        self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.update(self._task, status=self.status())
            self._bar.stop()

    def status(self) -> str:
        """``gap 1.2e-07 | iter 341 | 2,310 msg/s`` from the newest report of each operator."""
        parts = []
        gaps = [float(np.max(m["gap"])) for m in self._latest.values() if "gap" in m]
        if gaps:
            parts.append(f"gap {max(gaps):.2e}")
        iters = [int(np.max(m[k])) for m in self._latest.values() for k in ("k", "t", "h")
                 if k in m]
        if iters:
            parts.append(f"iter {max(iters):,}")
        received = sum(int(m.get("msgs_in", 0)) for m in self._latest.values())
        if self._clock > 0:
            parts.append(f"{received / self._clock:,.0f} msg/s")
        return " | ".join(parts)

    def update(self, entries) -> None:
        for e in entries:
            if e.metrics:
                self._latest[e.partition] = e.metrics
            self._clock = max(self._clock, float(e.time))
        if self._bar is not None:
            self._bar.update(self._task, completed=min(self._clock, self.max_time),
                             status=self.status())
        elif time.monotonic() - self._logged >= 1.0:
            self._logged = time.monotonic()
            logger.info("%s %.1f s: %s", self.title, self._clock, self.status())
