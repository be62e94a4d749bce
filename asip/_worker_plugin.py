"""The channel's worker side, one plugin per stage: control (registration, start, stop,
directory, reports) here, the data path in `asip._dataplane` (endpoints, outbox,
delivery) and `asip._links` (one persistent comm per peer worker), all owned by the
worker's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from distributed.utils import offload, sync

from asip import _blas, _malloc, _profiler
from asip._dataplane import ChannelSettings, DataPlane, Endpoint
from asip._directory import op_name

logger = logging.getLogger(__name__)

__all__ = ["ChannelPlugin", "ChannelSettings", "RESULT_EVENT_BYTES", "plugin_name"]

#: summaries up to this size also travel to the driver as an event through the scheduler
#: (like a report); larger ones (a model in ``result()``) are fetched from the worker only
RESULT_EVENT_BYTES = 64 << 10

SETTLE_DELAY = 0.5  # s after a worker's last stage ends: its malloc settings back (`asip._malloc`)
_SETTLING: set = set()  # those running in distributed's offload thread (held: asyncio won't)


def _settle_malloc() -> None:
    task = asyncio.ensure_future(offload(_malloc.settle))
    _SETTLING.add(task)
    task.add_done_callback(_SETTLING.discard)


def plugin_name(run_id: str) -> str:
    return f"asip-channel-{run_id}"


class ChannelPlugin(WorkerPlugin):
    """Per-stage worker plugin: the push/poll channel between this worker's operators and peers."""

    idempotent = False

    def __init__(self, run_id: str, n_partitions: int, settings: ChannelSettings, faults: tuple,
                 pause_profiler: bool = True, malloc_mmap_threshold: int = 0,
                 single_thread_blas: bool = True):
        self.run_id = run_id
        self.pause_profiler = pause_profiler  # asip.stage.pause-worker-profiler (`asip._profiler`)
        self.malloc_mmap_threshold = malloc_mmap_threshold  # asip.stage.malloc-mmap-threshold
        self.single_thread_blas = single_thread_blas  # asip.stage.single-thread-blas (`asip._blas`)
        self.n_partitions = n_partitions
        self.settings = settings
        self.faults = tuple(faults)
        self.name = plugin_name(run_id)

    # ------------------------------------------------------------------ lifecycle (event loop)
    async def setup(self, worker: Any) -> None:
        self.worker = worker
        self.address = worker.address
        self.profiler_paused = self.pause_profiler and _profiler.pause(worker)
        self.malloc_held = _malloc.hold(getattr(self, "malloc_mmap_threshold", 0))
        self.blas_held = _blas.hold(getattr(self, "single_thread_blas", True))
        self.loop = worker.loop
        self.directory: dict[int, tuple[str, int]] = {}
        self.dir_version = 0  # directory deltas applied without a gap
        self.ready_ops: set[tuple[int, int]] = set()  # (index, incarnation) done with setup
        self.steps: dict[tuple[int, int], list[int]] = {}  # (index, incarnation) -> [steps]
        self.data = DataPlane(worker, self.run_id, self.n_partitions, self.settings, self.faults,
                              lambda: self.directory)
        self.reports: deque[list] = deque()
        # [index, incarnation, steps, stats] of ended incarnations, for the next beat: the
        # beats carry statistics about once a second, a failed one has no summary of its own
        self.ended: deque[list] = deque()
        self.go = threading.Event()
        self.stop = threading.Event()
        self.stop_reason: str | None = None
        self.closed = False
        # registrations and readiness of this worker's operators, sent in batches: one RPC
        # carries whatever queued while the previous one was in flight (hundreds of
        # operators launch with a few RPCs per worker, not one connection each)
        self._registering: list[tuple[int, asyncio.Future]] = []
        self._unsent_ready: list[tuple[int, int]] = []
        self._batches: set[str] = set()  # batch kinds with a sender running
        self._handlers = {
            op_name("deliver", self.run_id): self.data.handle_stream,
            op_name("control", self.run_id): self._handle_control,
        }
        worker.handlers.update(self._handlers)
        self._reporter = asyncio.ensure_future(self._report_loop())

    async def teardown(self, worker: Any) -> None:
        if getattr(self, "profiler_paused", False):
            _profiler.resume(worker)
            self.profiler_paused = False
        if getattr(self, "malloc_held", False):
            self.malloc_held = False
            if _malloc.release():  # the last stage here: thresholds back and free memory
                self.loop.call_later(SETTLE_DELAY, _settle_malloc)  # returned, after the finish
        if getattr(self, "blas_held", False):
            self.blas_held = False
            _blas.release()
        self.closed = True
        self.stop_locally("teardown")
        self.go.set()
        for name in self._handlers:
            worker.handlers.pop(name, None)
        self._reporter.cancel()
        self.data.close()

    @property
    def stats(self) -> dict:
        """The live statistics of each partition open on this worker (the dashboard's; event
        loop: what operator threads left for the loop to count is charged first)."""
        self.data.settle_thread_counts()
        return {j: ep.stats for j, ep in list(self.data.current.items())}

    @property
    def mailboxes(self) -> dict:
        """The current mailbox of each partition open on this worker."""
        return {j: ep.mailbox for j, ep in list(self.data.current.items())}

    # ------------------------------------------------------------------ operator-thread API
    def register(self, index: int, timeout: float, began: float | None = None) -> dict:
        """Register with the directory (batched with this worker's other registrations),
        and open this incarnation's endpoint.

        Raises (a fault: dask retries the task) if the scheduler does not answer within
        ``timeout`` s.
        """
        return sync(self.loop, self._register, index, began, callback_timeout=timeout)

    async def _register(self, index: int, began: float | None = None) -> dict:
        future = asyncio.get_running_loop().create_future()
        self._registering.append((index, future, began))
        self._start_batch("register", self._send_registrations)
        reply = await future
        self.data.open(index, reply["incarnation"])
        self.steps[(index, reply["incarnation"])] = [0]
        if reply["stopped"]:
            self._set_stopped(reply["stopped"])
        return reply

    def _start_batch(self, kind: str, sender: Any) -> None:
        """Run ``sender`` unless it runs already (it sends until its queue is empty)."""
        if kind not in self._batches:
            self._batches.add(kind)
            asyncio.ensure_future(self._run_batch(kind, sender))

    async def _run_batch(self, kind: str, sender: Any) -> None:
        try:
            await sender()
        finally:  # in the step that found the queue empty: no request can slip between
            self._batches.discard(kind)

    async def _send_registrations(self) -> None:
        while self._registering:
            batch, self._registering = self._registering, []
            began = [b for _, _, b in batch if b is not None]
            try:
                reply = await self._rpc("register", indices=[i for i, _, _ in batch],
                                        address=self.address, version=self.dir_version,
                                        began=[min(began), max(began)] if began else None)
            except Exception as exc:
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._apply_directory(reply["directory"], version=reply["version"])
            for (_, future, _), one in zip(batch, reply["operators"]):
                if not future.done():
                    future.set_result({**one, "elapsed": reply["elapsed"],
                                       "stopped": reply["stopped"]})

    def endpoint(self, index: int, incarnation: int) -> Endpoint:
        """The endpoint `register` opened for this incarnation (its Context keeps it)."""
        return self.data.endpoints[(index, incarnation)]

    def ready(self, index: int, incarnation: int) -> None:
        """Setup is done: count towards the start barrier (re-sent with every beat until
        the gang starts, so a lost message costs one beat, not the start timeout)."""
        self.loop.add_callback(self._ready, index, incarnation)

    def _ready(self, index: int, incarnation: int) -> None:
        self.ready_ops.add((index, incarnation))
        self._unsent_ready.append((index, incarnation))
        self._start_batch("ready", self._send_ready)

    async def _send_ready(self) -> None:
        while self._unsent_ready:
            batch, self._unsent_ready = self._unsent_ready, []
            await self._fire("ready", items=batch)  # a lost one goes again with the next beat

    def unregister(self, index: int, incarnation: int | None = None) -> dict:
        """Close an operator's endpoint (after sending what it pushed); its final statistics."""
        ep = (self.data.current.get(index) if incarnation is None
              else self.data.endpoints.get((index, incarnation)))
        counter = self.steps.get((index, incarnation), [0])
        if incarnation is not None:
            self.loop.add_callback(self.ready_ops.discard, (index, incarnation))
            self.loop.add_callback(self.steps.pop, (index, incarnation), None)
        if ep is None:
            return {}
        stats = self.data.close_from_thread(ep)
        if incarnation is not None:  # its last count and statistics, even if its task fails
            self.ended.append([index, incarnation, counter[0], stats])
            self.loop.add_callback(self._start_batch, "ended", self._send_ended)
        return stats

    async def _send_ended(self) -> None:
        """Beat while ended incarnations wait (each beat takes all of them): the operators
        that end together on a worker (a whole gang at a stage's end) share a beat or two."""
        while self.ended:
            await self._beat()

    def send_result(self, index: int, incarnation: int, summary: bytes) -> None:
        """An incarnation's summary (what its task returns), if small, also to the directory,
        which pushes it to the driver with the run's events: the driver need not wait for
        the task's completion to reach it and then fetch the result (two more hops)."""
        if len(summary) <= RESULT_EVENT_BYTES and not self.closed:
            self.loop.add_callback(self._fire, "result", index=index, incarnation=incarnation,
                                   summary=summary)

    def report(self, entry: list) -> None:
        """Queue one report ``[elapsed, index, incarnation, packed]`` for the next flush."""
        self.reports.append(entry)

    def _handle_control(self, kind: str, entries: list | None = None,
                        reason: str | None = None, start: int | None = None,
                        version: int | None = None) -> float | None:
        if kind == "directory":
            self._apply_directory(entries or [], start=start)
        elif kind == "go":  # the whole directory comes with the start
            self._apply_directory(entries or [], version=version)
            self.go.set()
            return time.time()  # when this worker heard it (the launch's phases)
        elif kind == "stop":
            self._set_stopped(reason or "stopped")
        return None

    def stop_locally(self, reason: str) -> None:
        """Stop this worker's operators now, from any thread (an event), keeping a reason
        that came first: a local STOP or the teardown, ahead of the scheduler's broadcast."""
        self.stop_reason = self.stop_reason or reason
        self.stop.set()

    def _set_stopped(self, reason: str) -> None:
        self.stop_reason = reason
        self.stop.set()
        self.go.set()
        self.data.stop()

    def _apply_directory(self, entries: list, version: int | None = None,
                         start: int | None = None) -> None:
        """Merge directory changes; the newest incarnation of each partition wins, so
        deltas may arrive in any order or twice. ``version``: the entries bring this
        worker up to that version (a reply); ``start``: they are the deltas from that
        version on (a broadcast), which advance ``dir_version`` only without a gap."""
        directory = dict(self.directory)
        for index, addr, incarnation in entries:
            current = directory.get(index)
            if current is None or current[1] <= incarnation:
                directory[index] = (addr, incarnation)
        self.directory = directory
        if version is not None:
            self.dir_version = max(self.dir_version, version)
        elif start is not None and start <= self.dir_version:
            self.dir_version = max(self.dir_version, start + len(entries))
        self.loop.add_callback(self._prune_links)

    def _prune_links(self) -> None:
        self.data.prune_links()

    async def _rpc(self, kind: str, **kwargs: Any) -> Any:
        return await getattr(self.worker.scheduler, op_name(kind, self.run_id))(**kwargs)

    async def _fire(self, kind: str, **kwargs: Any) -> None:
        try:
            await self._rpc(kind, **kwargs)
        except Exception:  # the scheduler side may already be gone at teardown
            logger.debug("asip: %s to the scheduler failed", kind, exc_info=True)

    async def _report_loop(self) -> None:
        """Beat (see `_beat`) every report interval while there are reports to send, else
        about once a second: liveness is the worker's own heartbeat, so an idle stage
        costs the scheduler almost nothing."""
        quiet = 0.0
        while not self.closed:
            await asyncio.sleep(self.settings.report_interval)
            quiet += self.settings.report_interval
            if self.reports or (self.data.current and quiet >= 1.0):
                quiet = 0.0
                await self._beat()

    async def _beat(self) -> None:
        """Send queued reports and a liveness beat for the local operators, and catch up
        on the directory, start and stop (in case a broadcast was missed)."""
        reports = []
        while self.reports:
            reports.append(self.reports.popleft())
        self._beats = getattr(self, "_beats", 0) + 1
        with_stats = self._beats % 10 == 1  # statistics about once a second, steps every beat
        if with_stats:
            self.data.settle_thread_counts()  # what operator threads left for the loop to count
        progress = [[i, inc, counter[0], ep.stats.as_dict() if with_stats else None]
                    for (i, inc), counter in list(self.steps.items())
                    if (ep := self.data.endpoints.get((i, inc))) is not None]
        while self.ended:
            progress.append(self.ended.popleft())
        try:
            state = await self._rpc("report", reports=reports, alive=self.data.alive(),
                                    ready=[] if self.go.is_set() else sorted(self.ready_ops),
                                    progress=progress, version=self.dir_version)
        except Exception:  # the scheduler side may already be gone at teardown
            logger.debug("asip: report to the scheduler failed", exc_info=True)
            return
        if not isinstance(state, dict) or self.closed:
            return
        self._apply_directory(state["directory"], version=state["version"])
        if state["started"]:
            self.go.set()
        if state["stopped"]:
            self._set_stopped(state["stopped"])

    def flush_reports(self, timeout: float = 5.0) -> None:
        """From an operator thread that is about to return: deliver its last reports now,
        so they reach the driver before its result does (never waits past ``timeout``)."""
        if self.reports and not self.closed:
            try:
                sync(self.loop, self._beat, callback_timeout=timeout)
            except Exception:  # the final report also travels with the result
                logger.debug("asip: flushing reports failed", exc_info=True)
