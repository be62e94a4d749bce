"""`Stage`: validate → launch the gang → supervise (restarts, stop) → collect → tear down."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import msgpack
from distributed import Client, default_client

from asip import _config
from asip._channel import ChannelStats
from asip._checkpoint import write_checkpoint
from asip._data import partitions_of
from asip._directory import DirectoryPlugin, op_name
from asip._exceptions import AsipError, OperatorFailedError, StageTimeoutError
from asip._gang import check_slots, plan_placement, wait_for_gang
from asip._operator import Operator
from asip._task import OperatorSpec, run_operator
from asip._wire import unpack_payload
from asip._worker_plugin import ChannelPlugin, ChannelSettings, plugin_name
from asip.faults import validate_faults

logger = logging.getLogger(__name__)

__all__ = ["Restart", "Stage", "StageResult", "TraceEntry"]


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


@dataclass(frozen=True)
class StageResult:
    """What a stage returns: per-partition results, the trace, restarts and channel statistics."""

    results: list  # per partition: the last incarnation's result() dict, or None
    trace: list[TraceEntry]
    restarts: list[Restart]
    stats: dict  # {"operators": [per partition], "total": {...}}
    elapsed: float  # seconds from the gang's start until every operator returned
    stopped_by: str  # "max_time", "max_steps", "STOP from partition i", "interrupted", ...
    steps: list[int] = field(default_factory=list)  # steps per partition (all incarnations)
    timings: dict = field(default_factory=dict)  # launch / run / teardown seconds


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
    data : dask array, tuple of dask arrays, or list of delayed objects / futures
        One partition per row chunk (per element for a list).
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
        Called on the driver with each batch of new `TraceEntry`; an exception in it
        stops the stage (cleanly) and is re-raised.
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
    """The state of one ``Stage.run()``; keeps Stage itself a plain parameter holder."""

    def __init__(self, stage: Stage):
        self.stage = stage
        self.client = stage.client or _default_client()
        self.run_id = uuid.uuid4().hex[:12]
        self.futures: dict[int, Any] = {}
        self.attempt: dict[int, int] = {}
        self.outcomes: dict[int, dict] = {}
        self.stats: dict[int, list[dict]] = {}
        self.steps: dict[int, int] = {}
        self.trace: list[TraceEntry] = []
        self.restarts: list[Restart] = []
        self.cursor = 0
        self.stopped_by: str | None = None
        self.stop_at: float | None = None
        self.go_at: float | None = None
        self.timings: dict[str, float] = {}
        self.elapsed = 0.0
        self.installed = False
        self.lost_since: dict[int, float] = {}
        self.hung: set[str] = set()
        self.silence: dict[int, float] = {}
        self.latest: dict[int, tuple] = {}  # partition -> (time, incarnation, packed report)
        self.checkpointed_at = time.monotonic()

    # ------------------------------------------------------------------ control RPCs
    def _rpc(self, kind: str, **kwargs: Any) -> Any:
        return self.client.sync(getattr(self.client.scheduler, op_name(kind, self.run_id)), **kwargs)

    def execute(self) -> StageResult:
        t_start = time.monotonic()
        stage = self.stage
        parts = partitions_of(stage.data, self.client)
        self.n = parts.n
        self.parts = parts
        faults = validate_faults(stage.faults, self.n)
        nthreads = self.client.nthreads()
        check_slots(self.n, nthreads, stage.oversubscribe)
        self.nthreads = nthreads
        settings = ChannelSettings.from_config()
        limits = settings.limits
        self.spec = OperatorSpec(self.run_id, self.n, stage.operator, parts.tuple_data,
                                 stage.max_time, stage.max_steps, faults, settings,
                                 plugin_name(self.run_id))
        self.limits = limits
        self.interval = _config.seconds("gang.poll-interval")
        t_launch = time.monotonic()
        try:
            self._install(faults, settings)
            holders = self.client.who_has([p[0] for p in parts.futures])
            placement = plan_placement(
                [list(holders.get(p[0].key, ())) for p in parts.futures], nthreads,
                stage.oversubscribe,
            )
            for i in range(self.n):
                self._submit(i, placement[i])
            state = wait_for_gang(lambda: self._rpc("poll", cursor=0), self.futures, self.n,
                                  _config.seconds("gang.start-timeout"), self.interval / 2,
                                  self._describe_tasks)
            self.go_at = time.monotonic() - state["elapsed"]
            self.timings["launch"] = self.go_at - t_launch
            self.timings["data"] = t_launch - t_start
            self._supervise()
        except BaseException as exc:
            self._stop(self.stopped_by or ("interrupted" if isinstance(exc, KeyboardInterrupt)
                                           else f"error: {exc!r}"))
            self._drain(_config.seconds("stage.stop-grace"), raise_on_timeout=False)
            raise
        finally:
            t_down = time.monotonic()
            if stage.checkpoint is not None and self.installed:
                try:
                    self._poll_directory(notify=False)  # the very latest reports
                except Exception:
                    logger.debug("asip: final poll failed", exc_info=True)
                self._write_checkpoint()
            self._teardown()
            self.timings["teardown"] = time.monotonic() - t_down
        if self.stopped_by is None:  # every operator ended by itself: report why
            reasons = sorted({o["reason"] for o in self.outcomes.values()})
            self.stopped_by = reasons[0] if len(reasons) == 1 else ", ".join(reasons)
        return self.partial_result("finished")

    def partial_result(self, stopped_by: str) -> StageResult:
        results = [self.outcomes.get(i, {}).get("result") for i in range(getattr(self, "n", 0))]
        per_op = [ChannelStats.total(self.stats.get(i, [])) for i in range(getattr(self, "n", 0))]
        return StageResult(
            results=results,
            trace=sorted(self.trace),
            restarts=list(self.restarts),
            stats={"operators": per_op, "total": ChannelStats.total(per_op)},
            elapsed=self.elapsed,
            stopped_by=self.stopped_by or stopped_by,
            steps=[self.steps.get(i, 0) for i in range(getattr(self, "n", 0))],
            timings=dict(self.timings),
        )

    # ------------------------------------------------------------------ launch
    def _install(self, faults: tuple, settings: ChannelSettings) -> None:
        self.client.register_plugin(DirectoryPlugin(self.run_id, self.n))
        self.installed = True
        self.client.register_plugin(ChannelPlugin(self.run_id, self.n, settings, faults))

    def _submit(self, index: int, worker: str | None) -> None:
        attempt = self.attempt.get(index, -1) + 1
        self.attempt[index] = attempt
        blocks = self.parts.futures[index]
        if worker is None:
            holders = self.client.who_has(blocks[:1]).get(blocks[0].key, ())
            worker = holders[0] if holders else None
        self.futures[index] = self.client.submit(
            run_operator, self.spec, index, *blocks,
            key=f"asip-{self.run_id}-op{index}-a{attempt}",
            workers=[worker] if worker else None,
            allow_other_workers=True,
            pure=False,
        )

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
            self._poll_directory()
            for index, future in list(self.futures.items()):
                if future.status == "finished":
                    self._collect(index, future)
                elif future.status in ("error", "cancelled"):
                    self._failed(index, future)
            elapsed = time.monotonic() - self.go_at
            if not self.futures:
                self.elapsed = elapsed
                return
            if self.stopped_by is None and elapsed >= stage.max_time + 0.05:
                self._stop("max_time")
            if self.stop_at is not None:
                self._cancel_lost()
                if time.monotonic() > self.stop_at + grace:
                    self._raise_unresponsive(grace)
            else:
                self._check_lost()
            if stage.checkpoint is not None and (
                time.monotonic() - self.checkpointed_at >= stage.checkpoint_every
            ):
                self._write_checkpoint()
            time.sleep(self.interval)

    def _poll_directory(self, notify: bool = True) -> None:
        state = self._rpc("poll", cursor=self.cursor)
        self.cursor = state["cursor"]
        now = time.monotonic()
        for index in state["lost"]:
            self.lost_since.setdefault(index, now)
        for index in [i for i in self.lost_since if i not in state["lost"]]:
            del self.lost_since[index]
        known = len(self.restarts)
        for index, incarnation, cause, t in state["restarts"][known:]:
            self.restarts.append(Restart(index, incarnation, cause, t))
            if incarnation > self.stage.max_restarts:
                self._give_up(index, incarnation, cause)
        self.silence = dict(state["silence"])
        self._check_silence(state)
        for t, i, inc, packed in state["reports"]:
            self.latest[i] = (t, inc, packed)
        new = [TraceEntry(t, i, inc, unpack_payload(packed))
               for t, i, inc, packed in state["reports"]]
        if new:
            self.trace.extend(new)
            if notify and self.stage.on_trace is not None:
                self.stage.on_trace(new)

    def _write_checkpoint(self) -> None:
        self.checkpointed_at = time.monotonic()
        if self.latest:
            write_checkpoint(self.stage.checkpoint, self.run_id, self.latest)

    def _check_silence(self, state: dict) -> None:
        """A worker whose channel plugin stopped beating is hung: have its nanny restart it.

        Distributed itself would wait ``worker-ttl`` (minutes); the stage restarts the
        worker after ``asip.stage.peer-silence-timeout`` and its operators rejoin.
        """
        limit = _config.seconds("stage.peer-silence-timeout")
        if limit <= 0 or self.stop_at is not None:
            return
        where = {i: addr for i, addr, _ in state["registered"]}
        for index, quiet in state["silence"]:
            addr = where.get(index)
            if quiet < limit or index not in self.futures or addr in self.hung:
                continue
            self.hung.add(addr)
            cause = f"worker {addr} silent for {quiet:.1f} s (hung); asked its nanny to replace it"
            for other, other_addr in where.items():
                if other_addr == addr:
                    self._rpc("failed", index=other, cause=cause)
            logger.warning("asip: %s", cause)
            threading.Thread(target=self._restart_worker, args=(addr,), daemon=True).start()

    def _restart_worker(self, addr: str) -> None:
        """Have the hung worker's nanny SIGKILL it at once; the nanny then starts a new one."""
        try:
            outcome = self.client.sync(self._kill_hung_worker, addr)
            logger.info("asip: hung worker %s: %s", addr, outcome)
        except Exception as exc:
            logger.warning("asip: could not restart hung worker %s: %r", addr, exc)

    async def _kill_hung_worker(self, addr: str) -> str:
        """The scheduler's ``restart_workers``, with a short grace for a known-silent process.

        That call asks the nanny to ``kill`` its worker with a 4 s grace to close by itself
        (a frozen process never does); here the grace is
        ``asip.stage.hung-worker-kill-timeout``. As there, a worker whose nanny can't be
        reached within 10 s (a cut link), or that has none, is removed from the scheduler,
        so Dask recomputes its partitions and its operators restart elsewhere.
        """
        stimulus_id = f"asip-hung-worker-{time.time()}"
        grace = _config.seconds("stage.hung-worker-kill-timeout")
        try:
            replies = await asyncio.wait_for(self.client.scheduler.broadcast(
                workers=[addr], nanny=True, on_error="return",
                msg={"op": "kill", "timeout": grace, "reason": stimulus_id},
            ), 10.0)
        except asyncio.TimeoutError:
            replies = {addr: "timed out"}
        if replies and all(r is None for r in replies.values()):  # Nanny.kill returns None
            return "killed by its nanny, which starts a new one"
        await self.client.scheduler.unregister(address=addr, stimulus_id=stimulus_id)
        return f"removed from the scheduler ({replies or 'no nanny'})"

    def _cancel_lost(self) -> None:
        """While stopping: operators lost with their worker, or silent, have nothing to return.

        A lost one is not back yet; a silent one sits on a hung or unreachable worker
        (a cut network link): neither can answer the stop, so waiting for them would
        only hold up the others' results.
        """
        limit = _config.seconds("stage.peer-silence-timeout")
        silent = {i for i, quiet in self.silence.items() if limit > 0 and quiet >= limit}
        gone = [i for i in self.futures if i in self.lost_since or i in silent]
        if gone:
            logger.warning("asip: partitions %s are lost or silent and return no result", gone)
            self.client.cancel([self.futures.pop(i) for i in gone], force=True)

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

    def _collect(self, index: int, future: Any) -> None:
        summary = msgpack.unpackb(future.result(), raw=False)
        del self.futures[index]
        summary["result"] = unpack_payload(summary["result"])
        self.outcomes[index] = summary
        self.stats.setdefault(index, []).append(summary["stats"])
        self.steps[index] = self.steps.get(index, 0) + summary["steps"]
        reason = summary["reason"]
        if reason == "STOP" and self.stopped_by is None:
            self._stop(f"STOP from partition {index}")

    def _failed(self, index: int, future: Any) -> None:
        error = future.exception() if future.status == "error" else None
        future.release()  # nothing may keep the failed task alive on the scheduler
        del self.futures[index], future
        if self.stopped_by is not None:
            logger.info("asip: partition %d ended with %r while stopping", index, error)
            return
        cause = f"{type(error).__name__}: {error}" if error is not None else "cancelled"
        restarts_so_far = max([r.incarnation for r in self.restarts if r.partition == index],
                              default=0)
        if restarts_so_far >= self.stage.max_restarts:
            self._give_up(index, restarts_so_far + 1, cause, error)
        self._rpc("failed", index=index, cause=cause)
        logger.info("asip: restarting partition %d after %s", index, cause)
        self._submit(index, None)

    def _give_up(self, index: int, incarnation: int, cause: str, error: Any = None) -> None:
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
            if self.installed:
                try:
                    self._rpc("stop", reason=reason)
                except Exception:
                    logger.warning("asip: could not send stop to the scheduler", exc_info=True)

    def _drain(self, grace: float, raise_on_timeout: bool) -> None:
        """After a stop: collect what returns within ``grace`` s, then cancel the rest."""
        deadline = time.monotonic() + grace
        while self.futures and time.monotonic() < deadline:
            for index, future in list(self.futures.items()):
                if future.status == "finished":
                    try:
                        self._collect(index, future)
                    except Exception:
                        self.futures.pop(index, None)
                elif future.status in ("error", "cancelled"):
                    self.futures.pop(index, None)
            time.sleep(self.interval)
        if self.futures and raise_on_timeout:
            self._raise_unresponsive(grace)

    def _raise_unresponsive(self, grace: float) -> None:
        stuck = sorted(self.futures)
        raise StageTimeoutError(
            f"operators {stuck} did not return within {grace:g} s of the stop "
            "(asip.stage.stop-grace): a step that never returns? Steps must be short."
        )

    # ------------------------------------------------------------------ teardown
    def _teardown(self) -> None:
        """Leave nothing behind: operator tasks, worker and scheduler plugins, mailboxes."""
        if self.futures:
            self.client.cancel(list(self.futures.values()), force=True)
        self.futures.clear()
        if not self.installed:
            return
        # Workers first (their beats stop), then the scheduler side. The scheduler forgets
        # a worker plugin at once, then tells every worker; a hung or unreachable one
        # must not hold the driver for the 30 s connect timeout.
        limit = _config.seconds("channel.connect-timeout") * 2
        self._unregister(self.client.scheduler.unregister_worker_plugin,
                         plugin_name(self.run_id), limit)
        try:
            self._rpc("close")
        except Exception:
            logger.debug("asip: close RPC failed", exc_info=True)
        self._unregister(self.client.scheduler.unregister_scheduler_plugin,
                         f"asip-directory-{self.run_id}", limit)
        self.installed = False

    def _unregister(self, handler: Any, name: str, limit: float) -> None:
        try:
            self.client.sync(handler, name=name, callback_timeout=limit)
        except Exception as exc:
            logger.warning("asip: unregistering plugin %s: %r", name, exc)


def _default_client() -> Client:
    try:
        return default_client()
    except ValueError:
        raise AsipError(
            "no dask client: create one with asip.connect() (an embedded LocalCluster) or "
            "asip.connect('tcp://scheduler:8786'), or pass client= to the Stage"
        ) from None
