"""The live display: which run is on, for how long, and its current objective (rich).

Runners report objective values through `Job.report` from the driver thread
(asip stages via their ``on_trace`` hook, peers per iterate); rich's refresh
thread only reads. With ``enabled=False`` (or no terminal) nothing is drawn
live and finished runs are printed as plain lines.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["Job", "Progress"]


def fmt_rel(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "-"
    return f"{r:.1e}"


class Job:
    """The run on screen: label, budget, clock, latest objective."""

    def __init__(self, section: str, label: str, budget: float | None, f_star: float | None):
        self.section, self.label, self.budget, self.f_star = section, label, budget, f_star
        self.t0 = time.monotonic()
        self.objective: float | None = None
        self.exact = True

    def report(self, objective: float, exact: bool = True) -> None:
        self.objective, self.exact = objective, exact

    @property
    def rel(self) -> float | None:
        """Relative suboptimality of the latest value (None when unknown or from a sample)."""
        if self.objective is None or not self.f_star or not self.exact:
            return None
        return (self.objective - self.f_star) / abs(self.f_star)


class Progress:
    """A rich Live panel of the current job and the last few finished ones."""

    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled and console.is_terminal
        self.job: Job | None = None
        self.done_count = 0
        self.t_start = time.monotonic()
        self.recent: deque = deque(maxlen=6)
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]note[/]: {message}")

    @contextlib.contextmanager
    def run(self, section: str, label: str, budget: float | None = None,
            f_star: float | None = None):
        """Show ``label`` as the current job while the block runs."""
        self.job = Job(section, label, budget, f_star)
        try:
            yield self.job
        finally:
            job, self.job = self.job, None
            self.done_count += 1
            line = (f"{job.section:>9} {job.label:<52} {time.monotonic() - job.t0:6.1f}s  "
                    f"rel {fmt_rel(job.rel)}")
            self.recent.append(line)
            if not self.enabled:
                self.console.print(line, highlight=False)

    def __rich__(self):
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan")
        table.add_column()
        total = time.monotonic() - self.t_start
        table.add_row("asip bench", f"{self.done_count} runs done, {total:,.0f} s elapsed")
        job = self.job
        if job is not None:
            elapsed = time.monotonic() - job.t0
            budget = f" / {job.budget:g} s budget" if job.budget else ""
            obj = "-" if job.objective is None else f"{job.objective:.6g}"
            if job.objective is not None and not job.exact:
                obj += " (on a row sample)"
            table.add_row(job.section, job.label)
            table.add_row("elapsed", f"{elapsed:.1f} s{budget}")
            table.add_row("objective", f"{obj}   rel. subopt {fmt_rel(job.rel)}")
        recent = Text("\n".join(self.recent), style="dim")
        return Group(table, recent)
