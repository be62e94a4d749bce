"""The stage's directory on the scheduler: who runs where, the start barrier, stop, reports.

Control only: operators register once per incarnation, and workers send reports a
few times a second. Model updates never pass through here (see ``_worker_plugin``).
Handler names carry the run id, so concurrent stages never see each other.
"""

from __future__ import annotations

import asyncio
import logging
from time import time
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

logger = logging.getLogger(__name__)

__all__ = ["DirectoryPlugin", "op_name"]

_MAX_REPORTS = 200_000


def op_name(kind: str, run_id: str) -> str:
    """The handler name for ``kind`` in run ``run_id`` (scheduler and workers alike)."""
    return f"asip_{kind}_{run_id}"


class DirectoryPlugin(SchedulerPlugin):
    """Per-stage scheduler plugin: registrations, incarnations, start barrier, stop, trace."""

    def __init__(self, run_id: str, n_partitions: int):
        self.run_id = run_id
        self.n_partitions = n_partitions
        self.name = f"asip-directory-{run_id}"

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.entries: dict[int, tuple[str, int]] = {}  # index -> (worker address, incarnation)
        self.ready: set[tuple[int, int]] = set()  # (index, incarnation) that finished setup
        self.go_time: float | None = None
        self.stopped: str | None = None
        self.closed = False
        self.restarts: list[list] = []  # [index, incarnation, cause, time since go]
        self.lost: dict[int, str] = {}  # index -> why its last incarnation ended (until re-registered)
        self.reports: list[list] = []  # [stage elapsed, index, incarnation, packed metrics]
        self.last_seen: dict[int, float] = {}
        self._background: set[asyncio.Task] = set()
        for kind in ("register", "ready", "report", "poll", "stop", "close", "failed"):
            scheduler.handlers[op_name(kind, self.run_id)] = getattr(self, f"_h_{kind}")

    async def close(self) -> None:
        self._h_close()

    def _remove_handlers(self) -> None:
        for kind in ("register", "ready", "report", "poll", "stop", "close", "failed"):
            self.scheduler.handlers.pop(op_name(kind, self.run_id), None)

    # ------------------------------------------------------------------ helpers
    def _elapsed(self) -> float | None:
        return None if self.go_time is None else time() - self.go_time

    def _directory(self) -> list[list]:
        return [[i, addr, inc] for i, (addr, inc) in sorted(self.entries.items())]

    def _broadcast(self, kind: str, **fields: Any) -> None:
        """Tell every worker's channel plugin (fire and forget, off the handler).

        Pooled RPCs per worker; a worker that just died is skipped quietly (the
        directory is re-sent whenever an operator registers anyway).
        """
        if self.closed:
            return
        control = op_name("control", self.run_id)

        async def send(addr: str) -> None:
            try:
                await getattr(self.scheduler.rpc(addr), control)(kind=kind, **fields)
            except Exception as exc:
                logger.debug("asip: control %s to %s failed: %s", kind, addr, exc)

        for addr in list(self.scheduler.workers):
            task = asyncio.ensure_future(send(addr))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ handlers
    def _h_register(self, index: int, address: str) -> dict:
        """An operator incarnation starts on ``address``: assign its incarnation number."""
        previous = self.entries.get(index)
        incarnation = 0 if previous is None else previous[1] + 1
        self.entries[index] = (address, incarnation)
        self.last_seen[index] = time()
        if incarnation > 0:
            cause = self.lost.pop(index, None) or f"retried by dask after {previous[0]} failed"
            self.restarts.append([index, incarnation, cause, self._elapsed() or 0.0])
            logger.info("asip %s: partition %d restarted (incarnation %d): %s",
                        self.run_id, index, incarnation, cause)
        self._broadcast("directory", entries=self._directory())
        return {
            "incarnation": incarnation,
            "elapsed": self._elapsed(),
            "stopped": self.stopped,
            "directory": self._directory(),
        }

    def _h_ready(self, index: int, incarnation: int) -> None:
        self.ready.add((index, incarnation))
        if self.go_time is None and len({i for i, _ in self.ready}) == self.n_partitions:
            self.go_time = time()
            self._broadcast("go")

    def _h_report(self, reports: list, alive: list) -> dict:
        """A worker's beat: its operators' reports ([elapsed, index, incarnation, packed]).

        The reply carries the directory, start and stop state, so a worker that missed
        a broadcast catches up within one report interval.
        """
        now = time()
        for index in alive:
            self.last_seen[index] = now
        for entry in reports:
            if len(self.reports) < _MAX_REPORTS:
                self.reports.append(entry)
        return {"directory": self._directory(), "started": self.go_time is not None,
                "stopped": self.stopped}

    def _h_failed(self, index: int, cause: str) -> None:
        """The driver saw an incarnation fail (its error): the next one records this cause."""
        self.lost[index] = cause

    def _h_poll(self, cursor: int = 0) -> dict:
        return {
            "registered": self._directory(),
            "ready": sorted(self.ready),
            "elapsed": self._elapsed(),
            "restarts": self.restarts,
            "reports": self.reports[cursor:],
            "cursor": len(self.reports),
            "silence": [[i, time() - t] for i, t in self.last_seen.items()],
            "lost": sorted(self.lost),
        }

    def dashboard_state(self, cursor: int = 0) -> dict:
        """Read-only view for the ``/asip`` dashboard page (on the scheduler's event loop):
        what the driver's poll gets, plus the stage's size and stop state."""
        return {**self._h_poll(cursor), "n_partitions": self.n_partitions,
                "stopped": self.stopped, "closed": self.closed}

    def _h_stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
            self._broadcast("stop", reason=reason)

    def _h_close(self) -> None:
        """The stage is over: stop broadcasting and remove this run's handlers.

        (``unregister_scheduler_plugin`` does not call ``close``, so the driver calls this.)
        """
        self.closed = True
        self._remove_handlers()

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        for index, (address, incarnation) in self.entries.items():
            if address == worker:
                self.lost.setdefault(index, f"worker {worker} lost")
