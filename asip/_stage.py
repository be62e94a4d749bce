"""`Stage`: validate → launch the gang → supervise (restarts, stop) → collect → tear down."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import dask
import msgpack
from distributed import Client, default_client

from asip import _config, _events
from asip._channel import ChannelStats
from asip._batched import flush_client
from asip._checkpoint import write_checkpoint
from asip._data import count_partitions, partitions_of
from asip._directory import DirectoryPlugin, op_name
from asip._exceptions import AsipError, OperatorFailedError, StopStage
from asip._gang import check_slots, plan_placement, wait_for_gang
from asip._operator import Operator
from asip._respawned import operator_modules, wait_for_respawns
from asip._results import unpack_result
from asip._task import OperatorSpec, run_operator
from asip._trace import BoundedTrace
from asip._wire import unpack_payload
from asip._worker_plugin import ChannelPlugin, ChannelSettings, plugin_name
from asip.faults import refuse_process_faults, validate_faults

logger = logging.getLogger(__name__)

__all__ = ["Restart", "Stage", "StageResult", "TimelineEvent", "TraceEntry"]


class TraceEntry(NamedTuple):
    """One ``ctx.report(...)``: stage time (s since the gang started), who, and the metrics."""

    time: float
    partition: int
    incarnation: int
    metrics: dict


class Restart(NamedTuple):
    """An operator restarted: which partition, its new incarnation, why, and when (stage time)."""

    partition: int
    incarnation: int
    cause: str
    time: float


class TimelineEvent(NamedTuple):
    """One step of a loss and its recovery, at stage time ``time`` (s since the gang started).

    ``kind``: ``"lost"`` (the scheduler removed the operator's worker, or judged it hung),
    ``"joined"`` (a worker joined the cluster: a nanny's new process), ``"reload"`` (the
    driver scattered the partition's in-memory data again; ``seconds`` it took),
    ``"resubmit"`` (the driver resubmitted the operator), ``"restart"`` (the new
    incarnation registered on ``worker``), ``"ready"`` (its setup is done: it steps).
    """

    time: float
    kind: str
    partition: int | None
    worker: str | None = None
    seconds: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class StageResult:
    """What a stage returns: per-partition results, the trace, restarts and channel statistics.

    Nothing is lost silently: every partition whose ``results[i]`` is None is in
    ``missing`` with the reason (``"lost: ..."`` with its worker, ``"hung: ..."``,
    ``"failed: ..."``, ``"result() raised ..."``, ``"no result within ... of the stop"``,
    ``"cancelled: ..."``).
    """

    results: list  # per partition: the last incarnation's result(), or None
    trace: list[TraceEntry]
    restarts: list[Restart]
    stats: dict  # {"operators": [per partition, all incarnations], "total": {...}}
    elapsed: float  # seconds from the gang's start until every operator returned
    stopped_by: str  # "max_time", "max_steps", "STOP from partition i", "interrupted", ...
    steps: list[int] = field(default_factory=list)  # steps per partition (all incarnations)
    # seconds: data and install (side by side, from the stage's start); submit, launch (from
    # the launch's start: both done); teardown; launch_first_task, launch_last_task,
    # launch_first_register, launch_all_registered, launch_go (from the launch's start),
    # launch_first_started / launch_all_started (the start reached the first / last worker),
    # launch_go_heard / launch_go_seen (the start event reached the driver's client / thread);
    # respawn_wait (after the teardown: the lost workers' new processes up and warm)
    timings: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)  # partition -> why it has no result
    # one dict per incarnation: partition, incarnation, steps, stats, ended (cause or None)
    incarnations: list = field(default_factory=list)
    # hung_kills, busy (late heartbeats), trace_thinned, data_reloads (in-memory partitions)
    health: dict = field(default_factory=dict)
    # what happened around each loss, in order: `TimelineEvent` (stage time, what, where)
    timeline: list = field(default_factory=list)


def _validate_operator(operator: Any) -> None:
    ok = (isinstance(operator, type) and issubclass(operator, Operator)) or isinstance(
        operator, Operator
    )
    if not ok:
        raise TypeError(
            f"operator must be an asip.Operator subclass or instance, got {operator!r}"
        )


class Stage:
    """Run one long-lived operator per data partition, all at once, each next to its data.

    Parameters
    ----------
    operator : Operator subclass or instance
        An instance is a template: every partition gets its own copy.
    data : dask array, tuple of dask arrays, or list
        One partition per row chunk (per element for a list). A list holds delayed
        objects / futures, or in-memory blocks (numpy arrays, scipy.sparse matrices or
        tuples of them): those go straight to the workers, not through the scheduler
        or a task graph, and are scattered again from this process if lost.
    client : distributed.Client, optional
        Defaults to the current default client.
    max_time : float
        Seconds the operators run after the gang starts.
    max_steps : int, optional
        Steps per operator incarnation.
    max_restarts : int
        Restarts allowed per partition before the stage fails.
    faults : sequence of asip.faults objects
        Faults to inject (really: kills are real kills).
    oversubscribe : bool
        Allow more operators than worker threads (operators then share cores).
    on_trace : callable, optional
        Called on the driver with each batch of new `TraceEntry`. Raising `asip.StopStage`
        in it ends the stage as a normal stop (the result is returned, ``stopped_by`` is its
        reason, and ``on_trace`` is not called again); any other exception stops the stage
        (cleanly) and is re-raised.
    checkpoint : path, optional
        Every ``checkpoint_every`` seconds, and once more when the stage ends (also on
        Ctrl-C or an error), write each partition's latest report to this file
        atomically; `asip.load_checkpoint` reads it back to warm-start a new stage.

    Examples
    --------
    >>> res = asip.Stage(MyOp, X, client=client, max_time=5.0).run()  # doctest: +SKIP
    """

    def __init__(
        self,
        operator: Any,
        data: Any,
        *,
        client: Client | None = None,
        max_time: float = 10.0,
        max_steps: int | None = None,
        max_restarts: int = 3,
        faults: Any = (),
        oversubscribe: bool = False,
        on_trace: Callable[[list[TraceEntry]], None] | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: float = 5.0,
    ):
        _validate_operator(operator)
        if not isinstance(max_time, (int, float)) or not max_time > 0:
            raise ValueError(f"max_time must be a positive number of seconds, got {max_time!r}")
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps must be None or a positive int, got {max_steps!r}")
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be a non-negative int, got {max_restarts!r}")
        self.operator = operator
        self.data = data
        self.client = client
        self.max_time = float(max_time)
        self.max_steps = max_steps
        self.max_restarts = max_restarts
        self.faults = faults
        self.oversubscribe = oversubscribe
        self.on_trace = on_trace
        if not isinstance(checkpoint_every, (int, float)) or checkpoint_every <= 0:
            raise ValueError(f"checkpoint_every must be positive seconds, got {checkpoint_every!r}")
        self.checkpoint = checkpoint
        self.checkpoint_every = float(checkpoint_every)
        self.result: StageResult | None = None

    # ------------------------------------------------------------------ public
    def run(self) -> StageResult:
        """Run the stage to the end and return its `StageResult`.

        On Ctrl-C, or an error once the gang has started (an operator out of restarts,
        an exception in ``on_trace``), every operator is stopped and the cluster left
        clean; the partial result is kept in ``stage.result`` and the exception re-raised.
        """
        run = _Run(self)
        try:
            self.result = run.execute()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) or run.go_at is not None:
                if run.go_at is not None and not run.elapsed:  # `_supervise` did not time it
                    run.elapsed = time.monotonic() - run.go_at
                self.result = run.partial_result(
                    "interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {exc!r}")
            run.futures.clear()  # this frame stays in the traceback: hold no operator task
            _release_frames(exc.__traceback__)
            raise
        return self.result


def _release_frames(tb) -> None:
    """Clear this module's finished frames in a traceback: they hold Dask futures (loop
    variables), which would keep operator tasks on the scheduler for as long as the
    exception is kept -- by pytest, or by IPython's ``sys.last_value``."""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == __file__:
            try:
                tb.tb_frame.clear()
            except RuntimeError:  # still executing: Stage.run itself
                pass
        tb = tb.tb_next


class _Run:
    """The state of one ``Stage.run()``; keeps Stage itself a plain parameter holder.

    The driver polls nothing: the directory pushes events (start, restarts, lost and
    hung operators, reports) to this client, and operator tasks wake the loop when
    they finish.
    """

    def __init__(self, stage: Stage):
        self.stage = stage
        self.client = stage.client or _default_client()
        self.run_id = uuid.uuid4().hex[:12]
        self.futures: dict[int, Any] = {}
        self.submitted: list = []  # every operator task's future, released at the teardown
        self.parts: Any = None  # the data's futures, per partition (asip._data.Partitions)
        self.attempt: dict[int, int] = {}
        self.placed: dict[int, str | None] = {}  # partition -> the worker its latest attempt asked for
        self.outcomes: dict[int, dict] = {}
        self.collected: dict[tuple[int, int], dict] = {}  # (partition, incarnation) -> summary
        self.trace = BoundedTrace(_config.nbytes("trace.max-bytes"))
        self.restarts: list[Restart] = []
        self.timeline: list[TimelineEvent] = []
        self.missing: dict[int, str] = {}
        self.stopped_by: str | None = None
        self.stop_at: float | None = None
        self.go_at: float | None = None
        self.go_heard: float | None = None  # wall clock: the start event reached the client
        self.go_seen: float | None = None  # wall clock: the driver thread took it in
        self.timings: dict[str, float] = {}
        self.elapsed = 0.0
        self.installed = False
        self.finishing = False  # tearing down (a stop still in flight may find nothing)
        self.subscribed = False
        self.lost_since: dict[int, float] = {}
        self.lost_cause: dict[int, str] = {}
        # partition -> (since, worker, quiet s): its worker's heartbeat is late and no verdict
        # (busy or hung) came yet; at a stop, such an operator is not waited for long
        self.silent: dict[int, tuple[float, str, float]] = {}
        self.latest: dict[int, tuple] = {}  # partition -> (time, incarnation, packed report)
        self.summary: dict = {}
        self.events: deque = deque()
        self.quiet = False  # stopping on an error or a StopStage: no more user callbacks
        self.wake = threading.Event()
        self.control_timeout = _config.seconds("stage.control-timeout")
        self.silence_timeout = _config.seconds("stage.peer-silence-timeout")
        self.checkpointed_at = time.monotonic()
        # the teardown's finish, sent from the client's loop as the last operator's result
        # arrives there (`_heard_result`), before the driver thread has taken it in
        self.early_finish: concurrent.futures.Future | None = None
        self.finish_lock = threading.Lock()
        self.stop_in_flight: asyncio.Task | None = None  # on the loop: the stop being sent
        self.heard_results: dict[int, int] = {}  # on the loop: partition -> incarnation
        self.heard_restarts: dict[int, int] = {}  # on the loop: partition -> newest incarnation
        self.finish_limit = _config.seconds("channel.connect-timeout") * 2

    # ------------------------------------------------------------------ control RPCs
    def _rpc(self, kind: str, **kwargs: Any) -> Any:
        return self.client.sync(getattr(self.client.scheduler, op_name(kind, self.run_id)),
                                callback_timeout=self.control_timeout, **kwargs)

    def _on_event(self, event: tuple) -> None:
        """On the client's event loop: hand the event to the driver thread."""
        kind = event[1][0]
        if kind == "go":  # launch timings: when the driver's client heard the start
            self.go_heard = time.time()
        elif kind == "restart":
            _, index, incarnation, *_ = event[1]
            self.heard_restarts[index] = max(incarnation, self.heard_restarts.get(index, 0))
        elif kind == "result":  # (before the driver thread can see it)
            self._heard_result(event[1][1], event[1][2])
        self.events.append(event[1])
        self.wake.set()

    def _heard_result(self, index: int, incarnation: int) -> None:
        """On the client's loop: once every partition's newest incarnation has returned,
        send the teardown's finish at once (every operator returned: the directory answers
        and removes the workers' plugin after); the driver thread, woken by the same
        events, finds the answer waiting instead of making the round trip itself."""
        if incarnation < self.heard_restarts.get(index, 0):
            return
        self.heard_results[index] = incarnation
        if len(self.heard_results) < self.n:
            return
        done: concurrent.futures.Future = concurrent.futures.Future()
        with self.finish_lock:  # the finish goes once: from here, or from the teardown
            if self.early_finish is not None or not self.installed or self.finishing:
                return
            self.finishing = True  # a stop still in flight may find nothing
            self.early_finish = done

        async def send() -> None:
            try:
                done.set_result(await asyncio.wait_for(self._finish(True),
                                                       self.control_timeout))
            except BaseException as exc:  # the driver falls back to the one-by-one removal
                done.set_exception(exc)

        asyncio.ensure_future(send())

    async def _finish(self, background: bool) -> dict:
        """On the client's loop: the directory's finish (its summary), after any stop
        already on its way (which must not arrive when the directory has gone)."""
        stopping = self.stop_in_flight
        if stopping is not None and not stopping.done():
            await asyncio.wait([stopping], timeout=self.control_timeout)
        return await getattr(self.client.scheduler, op_name("finish", self.run_id))(
            worker_timeout=self.finish_limit, background=background)

    def execute(self) -> StageResult:
        t_start, wall_start = time.monotonic(), time.time()
        stage = self.stage
        self.n = count_partitions(stage.data)  # checked before anything touches the cluster
        faults = validate_faults(stage.faults, self.n)
        refuse_process_faults(faults, self.client)
        settings = ChannelSettings.from_config()
        self.interval = _config.seconds("gang.poll-interval")
        installing = None
        t_launch, wall_launch = t_start, wall_start
        try:
            # the plugins go in on the client's loop while this thread places the data:
            # the install's round trips hide behind the scatter's
            installing = self._start_install(faults, settings)
            parts = partitions_of(stage.data, self.client)
            self.parts = parts
            self.timings["data"] = time.monotonic() - t_start
            nthreads = parts.nthreads or self.client.nthreads()  # (a round trip saved)
            check_slots(self.n, nthreads, stage.oversubscribe)
            self.nthreads = nthreads
            self.spec = OperatorSpec(self.run_id, self.n, stage.operator, parts.tuple_data,
                                     stage.max_time, stage.max_steps, faults, settings,
                                     plugin_name(self.run_id), self.control_timeout,
                                     _config.seconds("gang.start-timeout"),
                                     _config.nbytes("trace.max-report-bytes")).ship()
            self._await_install(installing)
            installing = None
            # the launch runs from here: data placed and plugins installed
            t_launch, wall_launch = time.monotonic(), time.time()
            self.timings["install"] = self.installed_at - t_start
            placement = plan_placement(self._holders(), nthreads, stage.oversubscribe)
            self._submit_all(placement)
            self.timings["submit"] = time.monotonic() - t_launch
            wait_for_gang(self._wait_for_go, lambda: self._rpc("poll"), self.futures, self.n,
                          _config.seconds("gang.start-timeout"), self._describe_tasks)
            self.timings["launch"] = self.go_at - t_launch
            self._supervise()
        except BaseException as exc:
            if installing is not None:  # failed while placing the data: let the install land
                self._await_install(installing, quiet=True)
            self._stop(self.stopped_by or ("interrupted" if isinstance(exc, KeyboardInterrupt)
                                           else f"error: {exc!r}"))
            self._drain(_config.seconds("stage.stop-grace"))
            raise
        finally:
            t_down = time.monotonic()
            if self.installed:
                self._handle_events_quietly()  # the very latest reports
            self._teardown()  # fetches the summary on the way
            # launch milestones on the scheduler's clock, from the launch's start
            phases = dict(self.summary.get("phases", {}))
            if self.go_heard is not None:  # on the driver's clock (the same clock locally)
                phases.update(go_heard=self.go_heard, go_seen=self.go_seen)
            for name, at in phases.items():
                self.timings[f"launch_{name}"] = at - wall_launch
            if stage.checkpoint is not None and self.latest:
                self._write_checkpoint()
            self.timings["teardown"] = time.monotonic() - t_down
        if self.summary.get("respawning"):  # off the stage's clock: no next stage beside
            self.timings["respawn_wait"] = wait_for_respawns(  # the new processes' imports
                self.client, self.summary["respawning"], operator_modules(self.stage.operator),
                _config.seconds("stage.respawn-wait"))
        if self.stopped_by is None:  # every operator ended by itself: report why
            reasons = sorted({o["reason"] for o in self.outcomes.values()})
            self.stopped_by = reasons[0] if len(reasons) == 1 else ", ".join(reasons)
        return self.partial_result("finished")

    def partial_result(self, stopped_by: str) -> StageResult:
        n = getattr(self, "n", 0)
        results = [self.outcomes.get(i, {}).get("result") for i in range(n)]
        incarnations = self._incarnations()
        per_op = [ChannelStats.total([r["stats"] for r in incarnations if r["partition"] == i])
                  for i in range(n)]
        missing = dict(self.missing)
        for i in range(n):
            if results[i] is None and i not in missing:
                missing[i] = f"cancelled: the stage ended ({self.stopped_by or stopped_by}) before it returned"
        return StageResult(
            results=results,
            trace=self.trace.entries(),
            restarts=list(self.restarts),
            stats={"operators": per_op, "total": ChannelStats.total(per_op)},
            elapsed=self.elapsed,
            stopped_by=self.stopped_by or stopped_by,
            steps=[sum(r["steps"] for r in incarnations if r["partition"] == i) for i in range(n)],
            timings=dict(self.timings),
            missing=dict(sorted(missing.items())),
            incarnations=incarnations,
            timeline=sorted(self.timeline, key=lambda e: e.time),
            health={"hung_kills": self.summary.get("hung_kills", 0),
                    "busy": self.summary.get("busy", {}),
                    "trace_thinned": self.trace.thinned,
                    # partitions whose in-memory data was scattered again after a loss
                    "data_reloads": list(self.parts.reloads) if self.parts else []},
        )

    def _incarnations(self) -> list[dict]:
        """Every incarnation: what its result said, else its last beat (a dead one's)."""
        ended = {(i, inc): cause for i, inc, cause in self.summary.get("ended", ())}
        rows = {(i, inc): {"partition": i, "incarnation": inc, "steps": steps, "stats": stats or {},
                           "ended": ended.get((i, inc))}
                for i, inc, steps, stats in self.summary.get("progress", ())}
        for (i, inc), summary in self.collected.items():
            rows[(i, inc)] = {"partition": i, "incarnation": inc, "steps": summary["steps"],
                              "stats": summary["stats"], "ended": summary.get("error")}
        return [rows[k] for k in sorted(rows)]

    # ------------------------------------------------------------------ launch
    def _start_install(self, faults: tuple, settings: ChannelSettings) -> Any:
        """Install the stage's scheduler and worker plugins, both at once, on the client's
        event loop; returns the pending install (`_await_install` waits for it)."""
        # before anything is installed: no event of this run can arrive unheard
        _events.listen(self.client, self.run_id, self._on_event)
        self.subscribed = True
        hold = _config.seconds("stage.respawn-hold")
        if getattr(getattr(self.client, "cluster", None), "processes", None) is False:
            hold = 0.0  # workers in this process: no nanny respawns one (and no round trips)
        directory = DirectoryPlugin(
            self.run_id, self.n, client_id=self.client.id, worker_plugin=plugin_name(self.run_id),
            silence_timeout=self.silence_timeout,
            kill_timeout=_config.seconds("stage.hung-worker-kill-timeout"),
            control_timeout=self.control_timeout,
            respawn_hold=hold)
        channel = ChannelPlugin(self.run_id, self.n, settings, faults,
                                pause_profiler=_config.flag("stage.pause-worker-profiler"),
                                malloc_mmap_threshold=_config.nbytes("stage.malloc-mmap-threshold"),
                                single_thread_blas=_config.flag("stage.single-thread-blas"))
        client = self.client
        plugins = [directory, channel]

        async def install() -> None:  # all at once: one round trip, not one each
            # on the client's loop, register_plugin hands back its coroutine (the client's
            # `asynchronous` is true there); the plugins say idempotent = False
            results = await asyncio.gather(
                *(client.register_plugin(p, name=p.name) for p in plugins),
                return_exceptions=True)
            self.installed_at = time.monotonic()
            for result in results:
                if isinstance(result, BaseException):
                    raise result

        self.installed = True  # whatever got installed is torn down
        return asyncio.run_coroutine_threadsafe(install(), client.loop.asyncio_loop)

    def _await_install(self, installing: Any, quiet: bool = False) -> None:
        """Wait for the install (``asip.stage.control-timeout`` at most); ``quiet``: on the
        way out after an error, its own failure adds nothing (the teardown cleans up)."""
        try:
            installing.result(timeout=self.control_timeout)
        except concurrent.futures.TimeoutError:
            installing.cancel()
            if not quiet:
                raise TimeoutError(f"installing the stage's plugins took over "
                                   f"{self.control_timeout:g} s (asip.stage.control-timeout)"
                                   ) from None
        except BaseException:
            if not quiet:
                raise

    def _submit_all(self, placement: list[str]) -> None:
        """Submit the whole gang as one graph (one message, the spec pickled once), each
        task restricted loosely to its planned worker."""
        keys = [f"asip-{self.run_id}-op{i}-a0" for i in range(self.n)]
        blocks = [self.parts.futures[i] for i in range(self.n)]
        with dask.annotate(workers=_Placement(dict(zip(keys, placement))),
                           allow_other_workers=True):
            futures = self.client.map(run_operator, [self.spec] * self.n, range(self.n),
                                      *zip(*blocks), key=keys, pure=False)
        # the graph went to the client's loop to be put on its stream to the scheduler; right
        # behind it there, send the stream now rather than at its 10 ms interval
        self.client.loop.add_callback(flush_client, self.client)
        for index, future in enumerate(futures):
            self.attempt[index] = 0
            self.placed[index] = placement[index]
            future.add_done_callback(lambda _: self.wake.set())
            self.futures[index] = future
        self.submitted.extend(futures)

    def _holders(self) -> list[list[str]]:
        """Each partition's holders: known for blocks this stage scattered (no round trip),
        else asked of the scheduler."""
        parts = self.parts
        if parts.placed is not None:
            return [[w] for w in parts.placed]
        holders = self.client.who_has([p[0] for p in parts.futures])
        return [list(holders.get(p[0].key, ())) for p in parts.futures]

    def _submit(self, index: int, worker: str | None) -> None:
        attempt = self.attempt.get(index, -1) + 1
        self.attempt[index] = attempt
        if self.parts.lost(index, self.client):  # in-memory data gone with its worker
            worker = self._restart_worker(index, [])
            logger.info("asip: partition %d's data was lost; scattering it again to %s",
                        index, worker)
            t0 = time.monotonic()
            self.parts.reload(index, self.client, worker)
            self._note(t0, "reload", index, worker, time.monotonic() - t0)
        blocks = self.parts.futures[index]
        if worker is None:  # a restart: where the failed attempt ran (its thread is free)
            holders = list(self.client.who_has(blocks[:1]).get(blocks[0].key, ()))
            before = self.placed.get(index)
            worker = before if before in holders else self._restart_worker(index, holders)
        self.placed[index] = worker
        if attempt > 0:
            self._note(time.monotonic(), "resubmit", index, worker, detail=f"attempt {attempt}")
        future = self.client.submit(
            run_operator, self.spec, index, *blocks,
            key=f"asip-{self.run_id}-op{index}-a{attempt}",
            workers=[worker] if worker else None,
            allow_other_workers=True,
            pure=False,
        )
        # as the launch's: the restart's graph goes now, not at the client stream's interval
        self.client.loop.add_callback(flush_client, self.client)
        future.add_done_callback(lambda _: self.wake.set())
        self.futures[index] = future
        self.submitted.append(future)

    def _note(self, at: float, kind: str, index: int, worker: str | None = None,
              seconds: float | None = None, detail: str = "") -> None:
        """A driver-side step of a recovery on the timeline (``at``: this process's monotonic clock)."""
        if self.go_at is not None:
            self.timeline.append(TimelineEvent(at - self.go_at, kind, index, worker, seconds, detail))

    def _restart_worker(self, index: int, holders: list[str]) -> str | None:
        """Where a restart goes: `plan_placement` against the gang's running operators (a
        holder of the data with a free thread, else the emptiest worker; a restart put on a
        full worker would queue until the stage ends)."""
        nthreads = self.client.nthreads()
        if not nthreads:
            return None
        running = Counter(worker for other, worker in self.placed.items()
                          if other != index and other in self.futures)
        return plan_placement([holders], nthreads, self.stage.oversubscribe, running)[0]

    def _wait_for_go(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the gang's start; True once it started."""
        self.wake.wait(timeout)
        self.wake.clear()
        self._handle_events()
        return self.go_at is not None

    def _describe_tasks(self, indices: list[int]) -> dict:
        keys = {self.futures[i].key: i for i in indices if i in self.futures}

        def states(dask_scheduler: Any, keys: list) -> dict:
            return {k: (ts.state if (ts := dask_scheduler.tasks.get(k)) else "forgotten")
                    for k in keys}

        try:
            found = self.client.run_on_scheduler(states, keys=list(keys))
        except Exception:  # diagnostics only
            return {}
        return {keys[k]: s for k, s in found.items()}

    # ------------------------------------------------------------------ supervise
    def _supervise(self) -> None:
        stage = self.stage
        grace = _config.seconds("stage.stop-grace")
        while True:
            self._handle_events()
            self._check_futures()
            elapsed = time.monotonic() - self.go_at
            if not self.futures:
                self.elapsed = elapsed
                return
            if self.stopped_by is None and elapsed >= stage.max_time + 0.05:
                self._stop("max_time")
            if self.stop_at is not None:
                self._cancel_lost()
                if time.monotonic() > self.stop_at + grace:
                    self._give_up_waiting(grace)
                    self.elapsed = elapsed
                    return
            else:
                self._check_lost()
            if stage.checkpoint is not None and (
                time.monotonic() - self.checkpointed_at >= stage.checkpoint_every
            ):
                self._write_checkpoint()
            wait = 0.25 if self.stop_at is None else self.interval
            if self.stopped_by is None:
                wait = max(0.0, min(wait, stage.max_time + 0.05 - elapsed))
            self.wake.wait(wait)
            self.wake.clear()

    def _check_futures(self) -> None:
        self._collect_finished()
        for index, future in list(self.futures.items()):
            if future.status in ("error", "cancelled"):
                self._failed(index, future)

    def _collect_finished(self) -> None:
        """Fetch every finished operator's summary in one gather (in parallel from all
        workers: one by one, hundreds of results take a round trip each)."""
        done = [(i, f) for i, f in list(self.futures.items()) if f.status == "finished"]
        if not done:
            return
        try:
            values = self.client.gather([f for _, f in done])
        except Exception:  # one of them went away meanwhile: take them one at a time
            values = [None] * len(done)
        for (index, future), value in zip(done, values):
            try:
                self._collect(index, value if value is not None else future.result())
            except Exception:
                if self.stopped_by is None:
                    raise
                self.futures.pop(index, None)
                self.missing.setdefault(index, "lost: its result could not be fetched")

    def _handle_events(self, notify: bool = True) -> None:
        """Apply what the directory pushed since the last call (on the driver thread);
        ``notify``: hand new trace entries to ``on_trace``."""
        new: list[TraceEntry] = []
        while self.events:
            kind, *fields = self.events.popleft()
            if kind == "go" and self.go_at is None:
                self.go_at = time.monotonic()
                self.go_seen = time.time()
            elif kind == "restart":
                index, incarnation, cause, t, *where = fields
                self.restarts.append(Restart(index, incarnation, cause, t))
                self.timeline.append(TimelineEvent(t, "restart", index, *where[:1],
                                                   detail=f"incarnation {incarnation}"))
                self.lost_since.pop(index, None)
                self.lost_cause.pop(index, None)
                self.silent.pop(index, None)
                if incarnation > self.stage.max_restarts:
                    self._give_up(index, incarnation, cause)
            elif kind == "lost":
                index, cause, *at = fields
                self.lost_since.setdefault(index, time.monotonic())
                self.lost_cause[index] = cause
                if at and at[0] is not None:
                    self.timeline.append(TimelineEvent(at[0], "lost", index, detail=cause))
            elif kind == "ready":
                index, incarnation, t = fields
                self.timeline.append(TimelineEvent(t, "ready", index,
                                                   detail=f"incarnation {incarnation}"))
            elif kind == "joined":
                addr, t = fields
                self.timeline.append(TimelineEvent(t, "joined", None, addr))
            elif kind == "hung":
                logger.warning("asip: %s", fields[1])
            elif kind == "silent":  # a late heartbeat: the directory asks the nanny
                addr, indices, quiet = fields
                logger.info("asip: worker %s (partitions %s) silent for %.1f s; judging it",
                            addr, indices, quiet)
                for i in indices:
                    self.silent.setdefault(i, (time.monotonic(), addr, quiet))
            elif kind == "busy":  # alive after all: waited for like any other
                for i in fields[1]:
                    self.silent.pop(i, None)
            elif kind == "result":  # a small summary, pushed as the task returns
                index, incarnation, summary = fields
                newest = max((r.incarnation for r in self.restarts if r.partition == index),
                             default=0)
                if (index in self.futures and incarnation >= newest
                        and (index, incarnation) not in self.collected):
                    self._collect(index, summary)
            elif kind == "reports":
                for t, i, inc, packed in fields[0]:
                    if (entry := self._add_report(t, i, inc, packed)) is not None:
                        new.append(entry)
        if notify:
            self._notify(new)

    def _notify(self, entries: list[TraceEntry]) -> None:
        """Hand new trace entries to ``on_trace``; its `StopStage` stops the stage as a
        normal stop named by its reason (not an error), after which it is not called again."""
        if not entries or self.stage.on_trace is None or self.quiet:
            return
        try:
            self.stage.on_trace(entries)
        except StopStage as stop:
            self.quiet = True
            self._stop(stop.reason)

    def _add_report(self, t: float, i: int, inc: int, packed: bytes) -> TraceEntry | None:
        """Add one report to the trace; None if it was there already (it can come twice)."""
        entry = TraceEntry(t, i, inc, unpack_payload(packed))
        if not self.trace.add(entry, len(packed)):
            return None
        if i not in self.latest or self.latest[i][0] <= t:
            self.latest[i] = (t, inc, packed)
        return entry

    def _write_checkpoint(self) -> None:
        self.checkpointed_at = time.monotonic()
        if self.latest:
            write_checkpoint(self.stage.checkpoint, self.run_id, self.latest)

    def _cancel_lost(self) -> None:
        """While stopping: operators lost with their worker (dead or hung) have nothing to
        return. Operators on live workers, however slow, are waited for (up to the grace).
        An operator whose worker is silent without a verdict yet (its nanny does not answer:
        a cut link) gets ``peer-silence-timeout`` after the stop, then is given up as lost."""
        gone = [i for i in self.futures if i in self.lost_since]
        if gone:
            for i in gone:
                self.missing[i] = f"lost: {self.lost_cause.get(i, 'its worker died')}; not back at the stop"
            logger.warning("asip: partitions %s were lost and return no result", gone)
            self.client.cancel([self.futures.pop(i) for i in gone], force=True)
        now = time.monotonic()
        cut = [i for i in self.futures if i in self.silent
               and now - max(self.stop_at, self.silent[i][0]) >= self.silence_timeout]
        for i in cut:
            _, addr, quiet = self.silent[i]
            self.missing[i] = (f"lost: worker {addr} silent (heartbeat late {quiet:.1f} s) and its "
                               "nanny gave no answer by the stop; cancelled")
            logger.warning("asip: partition %d %s", i, self.missing[i])
        if cut:
            self.client.cancel([self.futures.pop(i) for i in cut], force=True)

    def _check_lost(self) -> None:
        """An operator lost with its worker must be back within the gang start timeout."""
        limit = _config.seconds("gang.start-timeout")
        for index, since in self.lost_since.items():
            if time.monotonic() - since > limit and index in self.futures:
                state = self._describe_tasks([index]).get(index, "unknown")
                self._stop(f"partition {index} failed")
                raise OperatorFailedError(
                    f"partition {index} was lost with its worker and did not restart within "
                    f"{limit:g} s (asip.gang.start-timeout); its task is {state!r}. If that is "
                    "'no-worker' or 'waiting', its data cannot be recomputed: was it pinned to "
                    "the dead worker (workers=[...] without allow_other_workers) or scattered?"
                )

    def _collect(self, index: int, value: bytes) -> None:
        summary = msgpack.unpackb(value, raw=False)
        del self.futures[index]
        self.collected[(index, summary["incarnation"])] = summary
        report = summary.get("report")
        if report is not None:  # the final report, in case its beat did not arrive
            new = self._add_report(*report)
            if new is not None:
                self._notify([new])
        if summary.get("error"):
            self.missing[index] = summary["error"]
            logger.warning("asip: partition %d returned no result: %s", index, summary["error"])
            summary["result"] = None
        else:
            summary["result"] = unpack_result(summary["result"])
            self.missing.pop(index, None)
        self.outcomes[index] = summary
        reason = summary["reason"]
        if reason == "STOP" and self.stopped_by is None:
            self._stop(f"STOP from partition {index}")

    def _failed(self, index: int, future: Any) -> None:
        error = future.exception() if future.status == "error" else None
        future.release()  # nothing may keep the failed task alive on the scheduler
        del self.futures[index], future
        cause = f"{type(error).__name__}: {error}" if error is not None else "cancelled"
        if self.stopped_by is not None:
            logger.info("asip: partition %d ended with %r while stopping", index, error)
            self.missing.setdefault(index, f"failed while stopping: {cause}")
            return
        restarts_so_far = max([r.incarnation for r in self.restarts if r.partition == index],
                              default=0)
        if restarts_so_far >= self.stage.max_restarts:
            self.missing[index] = f"failed: {cause}"
            self._give_up(index, restarts_so_far + 1, cause, error)
        self._rpc("failed", index=index, cause=cause)
        logger.info("asip: restarting partition %d after %s", index, cause)
        self._submit(index, None)

    def _give_up(self, index: int, incarnation: int, cause: str, error: Any = None) -> None:
        self.missing.setdefault(index, f"failed: {cause}")
        self._stop(f"partition {index} failed")
        raise OperatorFailedError(
            f"partition {index} failed {incarnation} times, more than max_restarts="
            f"{self.stage.max_restarts}; last cause: {cause}"
        ) from error

    def _stop(self, reason: str) -> None:
        if self.stopped_by is None:
            self.stopped_by = reason
        if self.stop_at is None:
            self.stop_at = time.monotonic()
            if self.installed:  # sent without waiting: the driver goes on collecting
                try:
                    self.client.loop.add_callback(self._send_stop, reason)
                except Exception:
                    logger.warning("asip: could not send stop to the scheduler", exc_info=True)

    async def _send_stop(self, reason: str) -> None:
        """On the client's event loop: tell the directory to stop every operator (unless
        every operator returned and the finish went: nothing is left to stop, and the
        directory's handlers may be gone)."""
        if self.early_finish is not None:
            return
        self.stop_in_flight = asyncio.current_task()
        try:
            await asyncio.wait_for(
                getattr(self.client.scheduler, op_name("stop", self.run_id))(reason=reason),
                self.control_timeout)
        except Exception:
            if self.installed and not self.finishing:  # (torn down: nothing left to stop)
                logger.warning("asip: could not send stop to the scheduler", exc_info=True)

    def _drain(self, grace: float) -> None:
        """After a stop on an error: collect what returns within ``grace`` s."""
        self.quiet = True
        deadline = time.monotonic() + grace
        while self.futures and time.monotonic() < deadline:
            self._handle_events_quietly()
            try:
                self._collect_finished()
            except Exception:
                logger.debug("asip: collecting after the stop", exc_info=True)
            for index, future in list(self.futures.items()):
                if future.status in ("error", "cancelled"):
                    self.futures.pop(index, None)
                    self.missing.setdefault(index, "cancelled: the stage stopped on an error")
                elif index in self.lost_since:
                    self.futures.pop(index, None)
            self.wake.wait(self.interval)
            self.wake.clear()
        self._give_up_waiting(grace)

    def _handle_events_quietly(self) -> None:
        """While stopping or tearing down: take in the events, call no user code."""
        try:
            self._handle_events(notify=False)
        except Exception:  # already failing: a restart limit or on_trace error adds nothing
            logger.debug("asip: event after the stop", exc_info=True)

    def _give_up_waiting(self, grace: float) -> None:
        """Operators that did not return within the grace: recorded, never silently."""
        if not self.futures:
            return
        stuck = sorted(self.futures)
        for i in stuck:
            self.missing[i] = (f"no result within {grace:g} s of the stop (asip.stage.stop-grace): "
                               "a step that never returns, or a worker overloaded for that long")
        logger.warning("asip: operators %s did not return within %g s of the stop", stuck, grace)

    # ------------------------------------------------------------------ teardown
    def _teardown(self) -> None:
        """Leave nothing behind: operator tasks, worker and scheduler plugins, mailboxes.

        When every operator returned, the directory answers before its worker plugins are
        removed (a round trip to every worker off the fit's path); the next stage's
        directory waits for that removal before it starts."""
        returned = not self.futures and 0 < getattr(self, "n", 0) == len(self.outcomes)
        if self.futures:
            self.client.cancel(list(self.futures.values()), force=True)
        self.futures.clear()
        self._release_tasks()
        with self.finish_lock:
            self.finishing = True
            early = self.early_finish
        if not self.installed:
            self._unsubscribe()
            return
        # One round trip: the directory hands over its summary, removes the worker plugin
        # from every worker (their beats stop; a hung or unreachable worker must not hold
        # the driver for the 30 s connect timeout), then itself.
        limit = self.finish_limit
        try:  # every operator returned: the workers' plugins go after the reply
            if early is not None:  # sent as the last result arrived
                self.summary = early.result(timeout=self.control_timeout + 1)
            else:
                self.summary = self.client.sync(self._finish, returned,
                                                callback_timeout=self.control_timeout)
            finished = True
        except Exception:
            logger.debug("asip: finish RPC failed; removing the plugins one by one",
                         exc_info=True)
            finished = False
        self._unsubscribe()
        if finished:
            self.installed = False
            return
        try:
            self.summary = self._rpc("summary")
        except Exception:
            logger.debug("asip: summary RPC failed", exc_info=True)
        self._unregister(self.client.scheduler.unregister_worker_plugin,
                         plugin_name(self.run_id), limit)
        try:
            self._rpc("close")
        except Exception:
            logger.debug("asip: close RPC failed", exc_info=True)
        self._unregister(self.client.scheduler.unregister_scheduler_plugin,
                         f"asip-directory-{self.run_id}", limit)
        self.installed = False

    def _release_tasks(self) -> None:
        """Release every operator task this run submitted, and the in-memory blocks it
        scattered (never a caller's futures: those stay the caller's), now and on the
        client's loop, and send the releases to the scheduler at once.

        The operators' results come in the directory's events, so a fit returned before the
        client heard that their tasks had ended: until then each future was held by its done
        callback and its task stayed on the scheduler. A script exiting right after its fit
        closed the cluster under them (distributed warned of lost computed tasks and logged
        lost scattered data as an ERROR) and fired the done callbacks after the interpreter
        had shut its executors down (tornado ERROR tracebacks).
        """
        futures, self.submitted = self.submitted, []
        if self.parts is not None and self.parts.sources is not None:
            futures += [f for blocks in self.parts.futures for f in blocks]
        if not futures:
            return
        client = self.client

        async def release() -> None:
            for f in futures:
                f.release()  # queues the client's release of its key on this loop
            await asyncio.sleep(0)  # those run: each state cancelled, its release queued
            await asyncio.sleep(0)  # the done callbacks waiting on those states run
            flush_client(client)  # not at the stream's 10 ms interval

        try:
            client.sync(release, callback_timeout=self.control_timeout)
        except Exception as exc:  # a closed client: its close released them
            logger.debug("asip: releasing the stage's tasks: %r", exc)

    def _unsubscribe(self) -> None:
        if self.subscribed:
            # the handler is this run's bound method: kept, it held the run, and so the
            # stage's persisted input futures (a fit's dask blocks stayed on the cluster
            # for the client's lifetime). Late events of this run are dropped from here on
            _events.forget(self.run_id)
            self.subscribed = False

    def _unregister(self, handler: Any, name: str, limit: float) -> None:
        try:
            self.client.sync(handler, name=name, callback_timeout=limit)
        except Exception as exc:
            logger.warning("asip: unregistering plugin %s: %r", name, exc)


class _Placement:
    """Task key -> the worker planned for it (a picklable ``workers=`` annotation, which
    the scheduler calls per key)."""

    def __init__(self, workers: dict[str, str]):
        self.workers = workers

    def __call__(self, key: str) -> list[str] | None:
        worker = self.workers.get(key)
        return [worker] if worker else None


def _default_client() -> Client:
    try:
        return default_client()
    except ValueError:
        raise AsipError(
            "no dask client: create one with asip.connect() (an embedded LocalCluster) or "
            "asip.connect('tcp://scheduler:8786'), or pass client= to the Stage"
        ) from None
