"""The dask task that is one operator incarnation: secede, register, setup, wait, step, report back."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgpack
from distributed import get_worker, secede
from distributed.protocol import pickle

from asip._exceptions import AsipError
from asip._operator import STOP, Context, Operator
from asip._results import pack_result
from asip.faults import StepFaults

logger = logging.getLogger(__name__)

__all__ = ["OperatorSpec", "run_operator"]


@dataclass(frozen=True)
class OperatorSpec:
    """Everything an operator task needs besides its partition (shipped with the task)."""

    run_id: str
    n_partitions: int
    # an Operator subclass, or an instance used as a template; pickled (see `ship`) so the
    # scheduler, which unpickles task graphs, never imports the operator's modules
    operator: Any
    tuple_data: bool
    max_time: float
    max_steps: int | None
    faults: tuple
    settings: Any  # ChannelSettings
    plugin_name: str
    control_timeout: float = 30.0  # registering with the scheduler (asip.stage.control-timeout)
    start_timeout: float = 30.0  # waiting for the whole gang to start (asip.gang.start-timeout)
    max_report_bytes: int | None = None  # per ctx.report (asip.trace.max-report-bytes)

    def new_operator(self) -> Operator:
        operator = self.operator
        if isinstance(operator, bytes):
            operator = _load_operator(operator)
        if isinstance(operator, type):
            return operator()
        return copy.deepcopy(operator)

    def ship(self) -> OperatorSpec:
        """This spec with its operator pickled: the scheduler holds the bytes without
        importing what the operator needs (an estimator's operator imports numba,
        scikit-learn, scipy: over 80 MB in the scheduler process, once per cluster)."""
        if isinstance(self.operator, bytes):
            return self
        return dataclasses.replace(self, operator=pickle.dumps(self.operator))


_OPERATORS: dict[bytes, Any] = {}  # pickled operator -> the template, on this worker


def _load_operator(blob: bytes) -> Any:
    """Unpickle an operator template once per worker (a gang's tasks share it)."""
    operator = _OPERATORS.get(blob)
    if operator is None:
        if len(_OPERATORS) >= 4:
            _OPERATORS.clear()
        operator = _OPERATORS[blob] = pickle.loads(blob)
    return operator


def run_operator(spec: OperatorSpec, index: int, *blocks: Any) -> bytes:
    """Run one incarnation of operator ``index``; returns a msgpack summary for the driver."""
    began = time.time()  # reported with the registration: the launch's dispatch phase
    secede()  # leave the thread pool: a gang never waits for free threads, restarts always start
    worker = get_worker()
    plugin = worker.plugins.get(spec.plugin_name)
    if plugin is None:
        raise AsipError(f"the asip channel plugin {spec.plugin_name} is not on worker {worker.address}")
    incarnation = None
    steps, reason, error = 0, "stopped", None
    faults = None
    try:
        reply = plugin.register(index, spec.control_timeout, began)
        incarnation = reply["incarnation"]
        ctx = Context(plugin, spec, index, incarnation)
        if reply["elapsed"] is not None:
            ctx._start(reply["elapsed"])
        partition = tuple(blocks) if spec.tuple_data else blocks[0]
        counter = plugin.steps.get((index, incarnation), [0])
        operator = spec.new_operator()
        operator.setup(ctx, partition)
        plugin.ready(index, incarnation)
        if not ctx.started:
            if not plugin.go.wait(spec.start_timeout + spec.control_timeout):
                raise AsipError(f"partition {index}: the gang did not start within "
                                f"{spec.start_timeout:g} s (asip.gang.start-timeout)")
            ctx._start(0.0)
        faults = StepFaults(spec.faults, index, incarnation, plugin.stop)
        faults.start(ctx.elapsed)
        while True:
            if plugin.stop.is_set():
                reason = plugin.stop_reason or "stopped"
                break
            if ctx.elapsed >= spec.max_time:
                reason = "max_time"
                break
            if faults.active:
                faults.before_step(ctx.elapsed)
                if plugin.stop.is_set() or ctx.elapsed >= spec.max_time:
                    continue  # a straggler's nap outlasted the stage: no extra step
            outcome = operator.step(ctx)
            steps += 1
            counter[0] = steps
            ctx._ep.stats.steps += 1  # live, for the dashboard
            if outcome is STOP:
                reason = "STOP"
                why = f"STOP from partition {index}"
                plugin.loop.add_callback(plugin._fire, "stop", reason=why)
                # this worker's other operators stop now, not when the scheduler's broadcast
                # of it comes back: from the data plane's stop (below) their polls return at
                # once, and until then they stepped in a tight loop (a restarted lbfgs
                # operator: 1,200-4,700 steps after the leader's STOP, starving the loop)
                plugin.stop_locally(why)
                break
            if spec.max_steps is not None and steps >= spec.max_steps:
                reason = "max_steps"
                break
        faults.cancel()  # the steps are over: a process fault due later never fires
        if reason in ("max_time", "STOP"):  # the whole stage ends: its queued data never delays that
            plugin.data.stop()
        ctx._flush_report()
        try:  # a bug in result() is not a fault: restarting would not fix it
            result = operator.result(ctx)
            packed = pack_result(result if result is not None else {})
        except Exception as exc:
            logger.exception("asip: partition %d: result() failed", index)
            packed, error = None, f"result() raised {type(exc).__name__}: {exc}"
    finally:
        if faults is not None:
            faults.cancel()
        stats = {} if incarnation is None else plugin.unregister(index, incarnation)
    summary = msgpack.packb(
        {"index": index, "incarnation": incarnation, "steps": steps, "reason": reason,
         "elapsed": ctx.elapsed, "stats": stats, "result": packed, "error": error,
         "report": ctx._last_entry},  # the final report travels with the result
        use_bin_type=True,
    )
    plugin.send_result(index, incarnation, summary)  # a small one also goes straight to the driver
    return summary
