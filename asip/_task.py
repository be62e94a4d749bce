"""The dask task that is one operator incarnation: secede, register, setup, wait, step, report back."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import msgpack
from distributed import get_worker, secede

from asip._exceptions import AsipError
from asip._operator import STOP, Context, Operator
from asip._wire import pack_payload
from asip.faults import StepFaults

logger = logging.getLogger(__name__)

__all__ = ["OperatorSpec", "run_operator"]


@dataclass(frozen=True)
class OperatorSpec:
    """Everything an operator task needs besides its partition (shipped with the task)."""

    run_id: str
    n_partitions: int
    operator: Any  # an Operator subclass, or an instance used as a template
    tuple_data: bool
    max_time: float
    max_steps: int | None
    faults: tuple
    settings: Any  # ChannelSettings
    plugin_name: str

    def new_operator(self) -> Operator:
        if isinstance(self.operator, type):
            return self.operator()
        return copy.deepcopy(self.operator)


def run_operator(spec: OperatorSpec, index: int, *blocks: Any) -> bytes:
    """Run one incarnation of operator ``index``; returns a msgpack summary for the driver."""
    secede()  # leave the thread pool: a gang never waits for free threads, restarts always start
    worker = get_worker()
    plugin = worker.plugins.get(spec.plugin_name)
    if plugin is None:
        raise AsipError(f"the asip channel plugin {spec.plugin_name} is not on worker {worker.address}")
    reply = plugin.register(index)
    incarnation = reply["incarnation"]
    ctx = Context(plugin, spec, index, incarnation)
    if reply["elapsed"] is not None:
        ctx._start(reply["elapsed"])
    partition = tuple(blocks) if spec.tuple_data else blocks[0]
    steps, reason = 0, "stopped"
    try:
        operator = spec.new_operator()
        operator.setup(ctx, partition)
        plugin.ready(index, incarnation)
        if not ctx.started:
            plugin.go.wait()
            ctx._start(0.0)
        faults = StepFaults(spec.faults, index, incarnation, plugin.stop)
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
            if outcome is STOP:
                reason = "STOP"
                plugin.loop.add_callback(plugin._fire, "stop", reason=f"STOP from partition {index}")
                break
            if spec.max_steps is not None and steps >= spec.max_steps:
                reason = "max_steps"
                break
        ctx._flush_report()
        plugin.flush_reports()
        result = operator.result(ctx)
        packed = pack_payload(result if result is not None else {}, spec.settings.limits)
    finally:
        stats = plugin.unregister(index, incarnation)
    return msgpack.packb(
        {"index": index, "incarnation": incarnation, "steps": steps, "reason": reason,
         "elapsed": ctx.elapsed, "stats": stats, "result": packed},
        use_bin_type=True,
    )
