"""Mailboxes and channel statistics: the thread-safe meeting point of event loop and operator.

Policy, stated once: ``poll()`` returns every message that arrived since the last
poll, oldest first. A mailbox holds at most ``asip.channel.mailbox-bytes``; past
that the *oldest* messages are dropped and counted, since asynchronous algorithms
want the newest information. A message pushed with ``latest=`` *conflates*: it
replaces the one still waiting from the same sender under the same slot, so a
"push my latest state" protocol holds at most one message per peer and slot.
Once the stage stops a mailbox accepts nothing more (counted as ``dropped_at_stop``).
The worker's event loop puts, and so does an operator thread of this process handing
its push over directly (`asip._handover`); only the owning operator thread polls. The
counters a put writes are written under the stats' lock (`ChannelStats.lock`, which is
the mailbox's), and so are the loop's writes to the ones it shares with puts
(`ChannelStats.charge`), so nothing is lost between threads.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from asip._wire import Message

__all__ = ["ChannelStats", "Mailbox", "MessageSchema"]

# Message ages are kept as histograms (4 buckets per octave of microseconds, ~19 %
# resolution), so per-operator statistics sum into exact stage-wide percentiles.
_AGE_BUCKETS = 112
_PER_OCTAVE = 4
MESSAGE_OVERHEAD = 256  # bytes charged per queued message on top of its payload


def _bucket(age_us: int) -> int:
    """Histogram bucket of an age in µs: 1 + 4 * log2(age), from the top three bits."""
    if age_us < 1:
        return 0
    n = age_us.bit_length()
    if n < 3:
        return 1 + (n - 1) * _PER_OCTAVE
    return min(_AGE_BUCKETS - 1, 1 + (n - 1) * _PER_OCTAVE + ((age_us >> (n - 3)) & 3))


def _bucket_ms(b: int) -> float:
    """The geometric middle of bucket ``b``, in ms."""
    if b == 0:
        return 0.0
    return 2.0 ** ((b - 0.5) / _PER_OCTAVE) / 1e3


def _hist() -> list[int]:
    return [0] * _AGE_BUCKETS


def percentile_ms(hist: list[int], q: float) -> float:
    """The ``q``-th percentile (0-100) of an age histogram, in ms (NaN when empty)."""
    n = sum(hist)
    if not n:
        return math.nan
    rank = q / 100.0 * n
    seen = 0
    for b, count in enumerate(hist):
        seen += count
        if count and seen >= rank:
            return _bucket_ms(b)
    return _bucket_ms(len(hist) - 1)


@dataclass
class ChannelStats:
    """Counters for one operator's side of the channel (one incarnation).

    ``sent`` copies each end as ``delivered`` (at a receiver) or in one of the
    ``dropped_*`` / ``undeliverable`` counters: nothing leaves the channel uncounted.
    """

    steps: int = 0  # operator steps taken
    pushed: int = 0  # push() calls that passed validation
    pushed_bytes: int = 0
    sent: int = 0  # copies handed to the channel (one per local receiver, one per peer worker)
    delivered: int = 0  # messages that reached this operator's mailbox
    delivered_bytes: int = 0
    dropped_no_route: int = 0  # destination not registered, or its connection failed or broke
    dropped_overflow: int = 0  # a bytes bound (outbox, peer queue, mailbox) was hit: oldest dropped
    dropped_injected: int = 0  # DropMessages fault
    dropped_at_stop: int = 0  # still queued (or arriving) once the stage stopped: never delivered
    conflated: int = 0  # latest= messages replaced by a newer one before anyone polled them
    undeliverable: int = 0  # arrived at a worker where the receiver no longer runs (per worker)
    zombie: int = 0  # sent by an incarnation the directory already replaced: rejected
    malformed: int = 0  # received items that failed validation
    rejected: int = 0  # well-formed messages that broke this operator's ctx.expect() schema
    refused: int = 0  # push() calls rejected with MessageError on the sender
    direct: int = 0  # pushes written to a peer's socket by the pushing thread itself (no loop hop)
    handed: int = 0  # pushes put into mailboxes of this process by the pushing thread (no loop hop)
    yielded: int = 0  # push() calls that waited (<= 50 ms) for a lagging, crowded worker event loop
    polls: int = 0
    consumed: int = 0  # messages handed to the operator by poll()
    # Staleness: how old a message is when poll() hands it over (receiver's clock minus the
    # sender's at push; across hosts this includes their clock skew, clamped at 0).
    age_us_total: int = 0
    age_us_max: int = 0
    age_hist: list = field(default_factory=_hist)  # at poll
    arrival_hist: list = field(default_factory=_hist)  # when it reached the mailbox
    # Sent by this operator: from push until written to a peer worker's connection or put
    # in a local mailbox (outbox and link queue; the age's sender-side share).
    queued_hist: list = field(default_factory=_hist)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()  # the mailbox's: put() writes counters from any thread

    def charge(self, **counts: int) -> None:
        """Add to counters that `Mailbox.put` also writes, under the lock (any thread)."""
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, list) else value
        return _with_percentiles(out)

    @staticmethod
    def total(stats: list[dict[str, Any]]) -> dict[str, Any]:
        """Sum per-operator counters into one dict (maxima take the max, histograms add)."""
        out: dict[str, Any] = ChannelStats().as_dict()
        for s in stats:
            for key, value in s.items():
                if key.endswith("_ms"):
                    continue  # derived: recomputed from the summed histograms
                if key.endswith("_max"):
                    out[key] = max(out.get(key, 0), value)
                elif isinstance(value, (list, tuple)):
                    mine = out.get(key) or [0] * len(value)
                    out[key] = [a + b for a, b in itertools.zip_longest(mine, value, fillvalue=0)]
                else:
                    out[key] = out.get(key, 0) + value
        return _with_percentiles(out)

    @staticmethod
    def mean_age_ms(stats: dict[str, Any]) -> float:
        """Mean age of the messages polled, in ms (NaN if none were)."""
        consumed = stats.get("consumed", 0)
        return stats.get("age_us_total", 0) / consumed / 1e3 if consumed else math.nan


def _with_percentiles(out: dict[str, Any]) -> dict[str, Any]:
    """Add ``age_p50_ms``/``age_p99_ms`` (at poll), ``arrival_p50_ms``/``arrival_p99_ms``
    (in the mailbox) and ``queued_p50_ms``/``queued_p99_ms`` (left the sender's queues)."""
    for name in ("age", "arrival", "queued"):
        hist = out.get(f"{name}_hist")
        for q in (50, 99):
            out[f"{name}_p{q}_ms"] = percentile_ms(hist or [], q)
    return out


class MessageSchema:
    """What an operator accepts: keys, types or (dtype, shape), and finiteness.

    ``fields`` maps each required key to ``int``, ``float``, ``bool``, ``str`` or a
    ``(dtype, shape)`` pair whose shape may hold ``None`` for any length (so a sparse
    update declares ``{"idx": ("int64", (None,)), "val": ("float64", (None,))}``);
    ``optional`` likewise for keys that may be absent. Any other key, a wrong type,
    dtype or shape, or (with ``finite``) a NaN/inf anywhere rejects the whole message,
    so a poisoned update never reaches the model.
    """

    def __init__(self, fields: dict[str, Any], optional: dict[str, Any] | None = None,
                 finite: bool = True):
        self.required = {k: self._spec(k, v) for k, v in fields.items()}
        self.optional = {k: self._spec(k, v) for k, v in (optional or {}).items()}
        self.finite = finite

    @staticmethod
    def _spec(key: str, spec: Any) -> Any:
        if spec in (int, float, bool, str):
            return spec
        if isinstance(spec, tuple) and len(spec) == 2:
            dtype, shape = np.dtype(spec[0]), tuple(spec[1])
            if not all(s is None or (isinstance(s, int) and s >= 0) for s in shape):
                raise ValueError(f"schema for {key!r}: shape entries must be ints or None")
            return (dtype, shape)
        raise ValueError(
            f"schema for {key!r} must be int, float, bool, str or a (dtype, shape) pair, "
            f"got {spec!r}"
        )

    def violation(self, payload: dict) -> str | None:
        """Why ``payload`` breaks the schema, or None if it fits."""
        missing = self.required.keys() - payload.keys()
        if missing:
            return f"missing keys {sorted(missing)}"
        for key, value in payload.items():
            spec = self.required.get(key, self.optional.get(key))
            if spec is None:
                return f"unexpected key {key!r}"
            if isinstance(spec, tuple):
                dtype, shape = spec
                if not isinstance(value, np.ndarray) or value.dtype != dtype:
                    return f"{key!r} is not a {dtype} array"
                if len(value.shape) != len(shape) or any(
                    s is not None and s != v for s, v in zip(shape, value.shape)
                ):
                    return f"{key!r} has shape {value.shape}, expected {shape}"
                if self.finite and value.dtype.kind in "fc" and not np.isfinite(value).all():
                    return f"{key!r} has NaN or inf"
            elif spec is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    return f"{key!r} is not a number"
                if self.finite and not math.isfinite(value):
                    return f"{key!r} is NaN or inf"
            elif spec is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    return f"{key!r} is not an int"
            elif not isinstance(value, spec):
                return f"{key!r} is not a {spec.__name__}"
        return None


class Mailbox:
    """One operator's received messages, bounded in bytes; ``poll`` never blocks by default.

    FIFO messages queue in arrival order; a ``latest`` message takes the slot
    ``(sender, slot)`` and replaces what still waits there (counted as ``conflated``).
    """

    def __init__(self, capacity_bytes: int, stats: ChannelStats):
        self._messages: OrderedDict[Any, tuple[Message, int]] = OrderedDict()
        self._bytes = 0
        self._capacity = capacity_bytes
        self._fifo = itertools.count()
        self._cond = threading.Condition(stats.lock)
        self.stats = stats
        self.closed = False
        self.stopped = False
        self.schema: MessageSchema | None = None

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def nbytes(self) -> int:
        """Bytes now queued (payloads plus a fixed per-message overhead)."""
        return self._bytes

    def set_schema(self, schema: MessageSchema | None) -> None:
        """Validate from now on, and also what already waits here (arrived during setup)."""
        with self._cond:
            self.schema = schema
            if schema is None:
                return
            for key, (message, size) in list(self._messages.items()):
                if schema.violation(message.payload) is not None:
                    del self._messages[key]
                    self._bytes -= size
                    self.stats.rejected += 1

    def put(self, message: Message, nbytes: int, now: float | None = None,
            notify: bool = True) -> bool:
        """Add a message (any thread); False if the mailbox is already closed.
        Once the stage stops nothing more is accepted (counted as ``dropped_at_stop``).
        ``notify=False``: don't wake a waiting `poll` yet; the caller calls `notify` once
        it has put a whole batch (one wake-up per batch, not per message, so the woken
        operator threads don't contend for the GIL with the loop mid-batch)."""
        with self._cond:
            if self.closed:
                return False
            stats = self.stats
            if self.stopped:
                stats.dropped_at_stop += 1
                return True
            schema = self.schema
            if schema is not None and schema.violation(message.payload) is not None:
                stats.rejected += 1
                return True
            slot = message.slot
            if slot is None:
                key: Any = next(self._fifo)
            else:
                key = (message.sender, slot)
                old = self._messages.pop(key, None)
                if old is not None:
                    self._bytes -= old[1]
                    stats.conflated += 1
            size = nbytes + MESSAGE_OVERHEAD
            while self._messages and self._bytes + size > self._capacity:
                _, (_, dropped) = self._messages.popitem(last=False)
                self._bytes -= dropped
                stats.dropped_overflow += 1
            self._messages[key] = (message, size)  # a bound always holds at least one message
            self._bytes += size
            stats.delivered += 1
            stats.delivered_bytes += nbytes
            age = int(((time.time() if now is None else now) - message.sent_at) * 1e6)
            stats.arrival_hist[_bucket(age)] += 1
            if notify:
                self._cond.notify_all()
            return True

    def notify(self) -> None:
        """Wake a waiting `poll` (after puts with ``notify=False``)."""
        with self._cond:
            self._cond.notify_all()

    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Everything that arrived since the last poll; waits up to ``timeout`` s if empty
        (and returns at once, empty or not, once the stage stops)."""
        with self._cond:
            stats = self.stats
            stats.polls += 1
            if not self._messages and timeout > 0:
                deadline = time.monotonic() + timeout
                while not self._messages and not self.stopped and not self.closed:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        break
            out = [m for m, _ in self._messages.values()]
            self._messages.clear()
            self._bytes = 0
            if out:
                now = time.time()
                stats.consumed += len(out)
                for m in out:
                    age = max(0, int((now - m.sent_at) * 1e6))
                    stats.age_us_total += age
                    if age > stats.age_us_max:
                        stats.age_us_max = age
                    stats.age_hist[_bucket(age)] += 1
        return out

    def snapshot(self) -> dict[str, Any]:
        """The stats as a dict, read under the lock."""
        with self._cond:
            return self.stats.as_dict()

    def wake(self) -> None:
        """The stage stops: wake a waiting ``poll``; later polls never wait and nothing
        more is accepted (what already waits here can still be polled)."""
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._messages.clear()
            self._bytes = 0
            self._cond.notify_all()
