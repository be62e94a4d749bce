"""Fault injection that is real: dead processes, raised errors, sleeping operators, lost messages.

Pass fault objects to ``Stage(faults=...)`` (or an estimator's ``faults=``). Times
(``at``) are seconds since the gang started. Kill faults hit one incarnation (the
first by default), so the restarted operator runs on.

>>> faults = (KillWorker(partition=1, at=2.0), Straggler(partition=0, sleep=2.0, every=1.0))
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from asip._exceptions import AsipError

__all__ = [
    "DelayMessages",
    "DropMessages",
    "Fault",
    "HangWorker",
    "InjectedFault",
    "KillOperator",
    "KillWorker",
    "Straggler",
]


_PROCESS_MARK = uuid.uuid4().hex  # a worker that answers with it runs in this very process


class InjectedFault(AsipError):
    """Raised inside an operator by `KillOperator`: a deliberate, injected failure."""


def _check_partition(partition: Any, allow_none: bool = False) -> None:
    if partition is None and allow_none:
        return
    if not isinstance(partition, int) or isinstance(partition, bool) or partition < 0:
        raise ValueError(f"partition must be a non-negative int, got {partition!r}")


def _check_nonnegative(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


class Fault:
    """Base class: a fault applies to the operators of some partitions."""

    partition: int | None

    def applies_to(self, index: int) -> bool:
        return self.partition is None or self.partition == index


@dataclass(frozen=True)
class _TimedFault(Fault):
    """A one-shot fault: fires at ``at`` s in incarnation ``incarnation`` of ``partition``."""

    partition: int
    at: float
    incarnation: int = 0

    def __post_init__(self) -> None:
        _check_partition(self.partition)
        _check_nonnegative("at", self.at)


@dataclass(frozen=True)
class KillOperator(_TimedFault):
    """At ``at`` s the operator of ``partition`` raises `InjectedFault` (its task fails)."""


@dataclass(frozen=True)
class KillWorker(_TimedFault):
    """At ``at`` s the worker process hosting ``partition`` gets SIGKILL; its nanny restarts it.

    Every operator on that worker dies with it, as in a real machine failure.
    """


@dataclass(frozen=True)
class HangWorker(_TimedFault):
    """At ``at`` s the worker process hosting ``partition`` freezes (SIGSTOP): alive but silent.

    Only the stage's peer-silence timeout (``asip.stage.peer-silence-timeout``) notices;
    it has the worker's nanny kill it (``asip.stage.hung-worker-kill-timeout``) and
    start a new one, where the lost operators restart.
    """


@dataclass(frozen=True)
class Straggler(Fault):
    """The operator of ``partition`` sleeps ``sleep`` s, re-armed ``every`` s after waking.

    The ASIP paper's setting is ``sleep=2.0, every=1.0``: stalled 2 s out of every 3 s.
    """

    partition: int
    sleep: float = 2.0
    every: float = 1.0

    def __post_init__(self) -> None:
        _check_partition(self.partition)
        _check_nonnegative("sleep", self.sleep)
        _check_nonnegative("every", self.every)


@dataclass(frozen=True)
class DelayMessages(Fault):
    """Every message pushed (by ``partition``, or by all when None) arrives ``ms`` later."""

    ms: float
    partition: int | None = None

    def __post_init__(self) -> None:
        _check_nonnegative("ms", self.ms)
        _check_partition(self.partition, allow_none=True)


@dataclass(frozen=True)
class DropMessages(Fault):
    """Each copy of a pushed message (by ``partition``, or all) is lost with probability ``p``."""

    p: float
    partition: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.p, (int, float)) or not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {self.p!r}")
        _check_partition(self.partition, allow_none=True)


def validate_faults(faults: Any, n_partitions: int) -> tuple[Fault, ...]:
    """Check a ``faults=`` argument against the stage; raises ValueError naming the problem."""
    if isinstance(faults, Fault):
        faults = (faults,)
    try:
        faults = tuple(faults)
    except TypeError:
        raise ValueError(f"faults must be a sequence of asip.faults objects, got {faults!r}") from None
    for fault in faults:
        if not isinstance(fault, Fault):
            raise ValueError(f"{fault!r} is not an asip.faults object")
        if fault.partition is not None and fault.partition >= n_partitions:
            raise ValueError(
                f"{fault!r} names partition {fault.partition}, but the stage has {n_partitions}"
            )
    return faults


def process_mark() -> str:
    """This process's mark (run on the workers: an in-process worker answers the driver's)."""
    return _PROCESS_MARK


def process_faults(faults) -> list:
    """The faults in ``faults`` that signal a worker process (`KillWorker`, `HangWorker`)."""
    return [f for f in faults or () if isinstance(f, (KillWorker, HangWorker))]


def refuse_process_faults(faults: tuple, client: Any) -> None:
    """Raise ValueError, before anything starts, when ``faults`` signal worker processes
    (`KillWorker`, `HangWorker`) and some worker runs in this process: the SIGKILL or
    SIGSTOP would hit the driver itself. One round trip, only when there are such faults."""
    process = sorted({type(f).__name__ for f in process_faults(faults)})
    if not process:
        return
    # a worker that cannot answer (one dying or restarting) is no worker of this process
    marks = client.run(process_mark, on_error="return")
    here = sorted(addr for addr, mark in marks.items() if mark == _PROCESS_MARK)
    if here:
        raise ValueError(
            f"{' and '.join(process)} {'needs' if len(process) == 1 else 'need'} worker "
            f"processes, but this cluster's workers {', '.join(here)} run in the driver's "
            "process (processes=False): the signal would stop the driver itself. Use "
            "asip.connect() (worker processes, with nannies) for process faults, or "
            "KillOperator to fail an operator in place")


class StepFaults:
    """Carries out the faults of one operator incarnation: `KillOperator` and stragglers
    between steps (they happen in the operator's code), process faults on time."""

    def __init__(self, faults: tuple, index: int, incarnation: int, stop: threading.Event):
        mine = [f for f in faults if f.applies_to(index)]
        timed = [f for f in mine if isinstance(f, _TimedFault) and f.incarnation == incarnation]
        self._kills = [f for f in timed if isinstance(f, KillOperator)]
        self._process = [f for f in timed if isinstance(f, (KillWorker, HangWorker))]
        self._stragglers = [f for f in mine if isinstance(f, Straggler)]
        self._next_nap = [0.0 for _ in self._stragglers]
        self._stop = stop
        self._timers: list[threading.Timer] = []
        self.active = bool(self._kills or self._stragglers)

    def start(self, elapsed: float) -> None:
        """Arm the process faults (`KillWorker`, `HangWorker`) at stage time ``elapsed``: a
        timer signals the process at ``at`` exactly, in the middle of a step if one is
        running -- a machine fails when it fails, not where the operator is ready for it
        (at a step boundary, a kill came up to a whole step late: 0.7-0.9 s on a 250k-row
        Newton round)."""
        for fault in self._process:
            timer = threading.Timer(max(0.0, fault.at - elapsed), _signal_process, (fault,))
            timer.daemon = True
            timer.start()
            self._timers.append(timer)

    def cancel(self) -> None:
        """The incarnation ended first: its process faults never fire."""
        for timer in self._timers:
            timer.cancel()

    def before_step(self, elapsed: float) -> None:
        for fault in self._kills:
            if elapsed >= fault.at:
                raise InjectedFault(f"{fault!r} fired at {elapsed:.2f} s")
        now = time.monotonic()
        for k, fault in enumerate(self._stragglers):
            if now >= self._next_nap[k]:
                self._stop.wait(fault.sleep)  # wakes early if the stage stops
                self._next_nap[k] = time.monotonic() + fault.every


def _signal_process(fault: _TimedFault) -> None:
    """SIGKILL (`KillWorker`) or SIGSTOP (`HangWorker`) this worker process, said on stderr
    first: a killed process leaves no other trace of when it died."""
    sig = signal.SIGKILL if isinstance(fault, KillWorker) else signal.SIGSTOP
    print(f"asip: {fault!r} fires (pid {os.getpid()}, {time.time():.3f})", file=sys.stderr,
          flush=True)
    os.kill(os.getpid(), sig)
