"""What users subclass and what they hold: `Operator`, `STOP`, and the per-operator `Context`."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from asip import _topology
from asip._channel import MessageSchema
from asip._exceptions import MessageError
from asip._wire import Message, encode_message, pack_payload

if TYPE_CHECKING:
    from asip._task import OperatorSpec
    from asip._worker_plugin import ChannelPlugin

__all__ = ["STOP", "Context", "Operator", "report_interval_at"]

#: Early in a run reports go out more often than ``asip.trace.report-interval``: at stage
#: time ``t`` at most one every ``max(REPORT_RAMP * t, REPORT_FLOOR)`` s (never more than
#: the interval). A short fit is decided in its first tens of ms, where a fixed 20 ms period
#: placed a model in the trace up to 20 ms after it was there (reuters log_loss-l2: the
#: trace saw 1e-6 at 61 ms, the operators had it at 43 ms); it costs ~6 reports a doubling
#: of ``t``: ~30 more in the first second at the 100 ms default, ~20 at 20 ms.
REPORT_RAMP = 0.125
REPORT_FLOOR = 0.002


def report_interval_at(interval: float, elapsed: float) -> float:
    """The least seconds between two reports at stage time ``elapsed`` (see `REPORT_RAMP`)."""
    return min(float(interval), max(REPORT_RAMP * elapsed, REPORT_FLOOR))


class _Stop:
    """Sentinel returned from `Operator.step` to finish the stage early."""

    _instance = None

    def __new__(cls) -> _Stop:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "asip.STOP"

    def __reduce__(self) -> str:
        return "STOP"


STOP = _Stop()


class Operator:
    """One long-running worker of a stage, bound to one data partition.

    Subclass it and override the hooks; all three run on the operator's own thread
    on the worker that holds its partition. Put hyperparameters in ``__init__`` and
    pass an instance to `Stage` as a template: each partition gets its own copy.

    Numba kernels called from ``step`` must be compiled with ``nogil=True``, or the
    worker's event loop (which delivers messages) stalls behind them.
    """

    def setup(self, ctx: Context, partition: Any) -> None:
        """Once per incarnation, before the first step: keep the partition, build state.

        ``ctx.incarnation > 0`` means this is a restart: pull the current model from
        peers' messages rather than starting from scratch.
        """

    def step(self, ctx: Context) -> Any:
        """One unit of local work (keep it short: the stop flag is checked between steps).

        Return `asip.STOP` to finish the whole stage early.
        """
        return STOP

    def result(self, ctx: Context) -> dict:
        """A payload-like dict sent back to the driver once the operator stops."""
        return {}


class Context:
    """The operator's view of the stage: who it is, the clock, and the channel."""

    def __init__(self, plugin: ChannelPlugin, spec: OperatorSpec, index: int, incarnation: int):
        self._plugin = plugin
        self._spec = spec
        self.index = index
        self.n_partitions = spec.n_partitions
        self.incarnation = incarnation
        self.run_id = spec.run_id
        self._t0: float | None = None
        self._seq = 0
        self._last_report = -float("inf")
        self._pending_report: dict | None = None
        self._last_entry: list | None = None  # the newest report sent (travels with the result)
        self._ep = plugin.endpoint(index, incarnation)
        self._rng = random.Random()

    def __repr__(self) -> str:
        return (f"<asip.Context run={self.run_id} partition={self.index}/{self.n_partitions} "
                f"incarnation={self.incarnation}>")

    # ------------------------------------------------------------------ clock and stop
    def _start(self, elapsed: float) -> None:
        self._t0 = time.monotonic() - elapsed

    @property
    def started(self) -> bool:
        """True once the whole gang has started (``elapsed`` runs from then)."""
        return self._t0 is not None

    @property
    def elapsed(self) -> float:
        """Seconds since the gang started (0 during setup of the first incarnation)."""
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    @property
    def stopping(self) -> bool:
        """True once the stage is stopping: finish the current step and return."""
        return self._plugin.stop.is_set() or self.elapsed >= self._spec.max_time

    # ------------------------------------------------------------------ channel
    def push(self, payload: dict, to: int | Iterable[int] | None = None,
             latest: bool | str = False) -> None:
        """Send ``payload`` to every peer (``to=None``), to partition ``to``, or to a list
        of partitions (encoded once, one write per peer worker); never blocks.

        ``payload`` is a flat ``dict[str, ndarray | int | float | str | bool]``; arrays
        are copied, so the caller may change them afterwards (a sparse update is two
        arrays, e.g. ``{"idx": int64 indices, "val": float64 values}``). With
        ``latest=True`` (or a slot name) the message *conflates*: queues and mailboxes
        keep only the newest message per sender and slot, which bounds memory and
        staleness for "push my latest state" protocols. Raises `MessageError` for a
        payload that can't travel, and ValueError for a bad ``to`` or ``latest``.
        """
        targets = self._targets(to)
        if latest is True:
            slot: str | None = ""
        elif latest is False or latest is None:
            slot = None
        elif isinstance(latest, str):
            slot = latest
        else:
            raise ValueError(f"latest must be a bool or a slot name (str), got {latest!r}")
        try:
            encoded = encode_message(payload, run_id=self.run_id, sender=self.index,
                                     incarnation=self.incarnation, seq=self._seq,
                                     limits=self._spec.settings.limits, slot=slot)
        except MessageError:
            self._ep.stats.refused += 1
            raise
        self._seq += 1
        self._ep.stats.pushed += 1
        self._ep.stats.pushed_bytes += encoded.nbytes
        if targets == ():
            return
        self._plugin.data.submit(self._ep, encoded, targets)

    def _targets(self, to: Any) -> tuple | None:
        if to is None:
            return None
        if type(to) is int and 0 <= to < self.n_partitions and to != self.index:
            return (to,)  # the common case, without the checks below
        single = not isinstance(to, Iterable)
        out = []
        for j in ((to,) if single else to):
            if isinstance(j, np.integer):
                j = int(j)
            if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < self.n_partitions:
                raise ValueError(
                    f"to must be a partition index in [0, {self.n_partitions}) or a list of them, "
                    f"got {j!r}")
            if j == self.index:
                if single:
                    raise ValueError("an operator cannot push to itself")
                continue  # fan-out lists may name the sender: skip it
            out.append(j)
        return tuple(dict.fromkeys(out))

    # ------------------------------------------------------------------ fan-out
    @property
    def peers(self) -> list[int]:
        """Every other partition (``push(..., to=ctx.peers)`` is a broadcast)."""
        return _topology.peers(self.index, self.n_partitions)

    def ring(self, k: int = 1, both: bool = False) -> list[int]:
        """The ``k`` next partitions on the ring (and the ``k`` previous with ``both``)."""
        return _topology.ring(self.index, self.n_partitions, k, both)

    def gossip(self, k: int = 1) -> list[int]:
        """``k`` distinct random peers, drawn afresh on every call."""
        return _topology.gossip(self.index, self.n_partitions, k, self._rng)

    def tree_parent(self, arity: int = 2) -> int | None:
        """This partition's parent in the ``arity``-ary tree rooted at 0 (None at the root)."""
        return _topology.tree_parent(self.index, arity)

    def tree_children(self, arity: int = 2) -> list[int]:
        """This partition's children in the ``arity``-ary tree rooted at 0."""
        return _topology.tree_children(self.index, self.n_partitions, arity)

    def expect(self, fields: dict[str, Any], optional: dict[str, Any] | None = None,
               finite: bool = True) -> None:
        """Accept only messages that fit this schema; the rest are counted as ``rejected``.

        ``fields`` maps required keys to ``int``/``float``/``bool``/``str`` or a
        ``(dtype, shape)`` pair (``None`` in a shape matches any length); ``optional``
        likewise. With ``finite`` (default), a NaN or inf anywhere rejects the message,
        so a poisoned update never reaches the model. Call it in ``setup``.

        >>> ctx.expect({"w": ("float64", (n_features,)), "t": int})  # doctest: +SKIP
        """
        self._ep.mailbox.set_schema(MessageSchema(fields, optional, finite))

    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Every message that arrived since the last poll, oldest first (maybe none).

        With ``timeout=0`` this never blocks; otherwise it waits up to ``timeout`` s
        for something to arrive (and returns at once when the stage stops).
        """
        return self._ep.mailbox.poll(timeout)

    # ------------------------------------------------------------------ trace
    def report(self, **metrics: Any) -> None:
        """Record numbers (or small arrays) in the driver's trace, rate-limited, latest wins.

        At most one report per ``asip.trace.report-interval``, more often early in the run
        (`report_interval_at`: every ``t / 8`` s at stage time ``t``, at least 2 ms apart).

        Reports are metrics, not models: one larger than ``asip.trace.max-report-bytes``
        raises `MessageError` (models stay with the operators; return them from ``result``).
        """
        self._pending_report = metrics
        if self.report_due:
            self._flush_report()

    @property
    def report_due(self) -> bool:
        """True when a `report` now would go out at once (the rate limit has passed).

        An operator that builds its report on its own period should build it only when this
        holds: one built earlier is held back until the *next* ``report`` call, and an
        operator reporting every ``t / 8`` s delivered it a whole period late (the trace saw
        a model ~5 ms after the operators had it on 20-40 ms fits).
        """
        return time.monotonic() - self._last_report >= report_interval_at(
            self._spec.settings.report_interval, self.elapsed)

    def _flush_report(self) -> None:
        if self._pending_report is None:
            return
        packed = pack_payload(self._pending_report, self._spec.settings.limits)
        self._pending_report = None
        cap = getattr(self._spec, "max_report_bytes", None)
        if cap is not None and len(packed) > cap:
            raise MessageError(
                f"a report of {len(packed):,} bytes is over asip.trace.max-report-bytes "
                f"({cap:,}): report metrics (numbers, small arrays), not models")
        self._last_report = time.monotonic()
        self._last_entry = [self.elapsed, self.index, self.incarnation, packed]
        self._plugin.report(self._last_entry)
