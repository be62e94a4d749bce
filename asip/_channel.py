"""Mailboxes and channel statistics: the thread-safe meeting point of event loop and operator.

Policy, stated once: ``poll()`` returns every message that arrived since the last
poll, oldest first. A mailbox holds at most ``asip.channel.mailbox-size`` messages;
past that the *oldest* are dropped and counted, since asynchronous algorithms want
the newest information. Nothing here ever blocks the event loop.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from asip._wire import Message

__all__ = ["ChannelStats", "Mailbox", "MessageSchema"]


@dataclass
class ChannelStats:
    """Counters for one operator's side of the channel (one incarnation)."""

    steps: int = 0  # operator steps taken
    pushed: int = 0  # push() calls that passed validation
    pushed_bytes: int = 0
    sent: int = 0  # copies handed to peers (a broadcast counts once per peer worker)
    delivered: int = 0  # messages that reached this operator's mailbox
    delivered_bytes: int = 0
    dropped_no_route: int = 0  # destination not registered yet, or its connection failed
    dropped_overflow: int = 0  # queue or mailbox full: oldest dropped
    dropped_injected: int = 0  # DropMessages fault
    malformed: int = 0  # received items that failed validation
    rejected: int = 0  # well-formed messages that broke this operator's ctx.expect() schema
    refused: int = 0  # push() calls rejected with MessageError on the sender
    polls: int = 0
    consumed: int = 0  # messages handed to the operator by poll()
    # Staleness: how old a message is when poll() hands it over (receiver's clock minus the
    # sender's at push; across hosts this includes their clock skew, clamped at 0).
    age_us_total: int = 0
    age_us_max: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def total(stats: list[dict[str, int]]) -> dict[str, int]:
        """Sum per-operator counters into one dict."""
        out = {f.name: 0 for f in fields(ChannelStats)}
        for s in stats:
            for key, value in s.items():
                if key.endswith("_max"):
                    out[key] = max(out.get(key, 0), value)
                else:
                    out[key] = out.get(key, 0) + value
        return out

    @staticmethod
    def mean_age_ms(stats: dict[str, int]) -> float:
        """Mean age of the messages polled, in ms (NaN if none were)."""
        consumed = stats.get("consumed", 0)
        return stats.get("age_us_total", 0) / consumed / 1e3 if consumed else math.nan


class MessageSchema:
    """What an operator accepts: keys, types or (dtype, shape), and finiteness.

    ``fields`` maps each required key to ``int``, ``float``, ``bool``, ``str`` or a
    ``(dtype, shape)`` pair whose shape may hold ``None`` for any length; ``optional``
    likewise for keys that may be absent. Any other key, a wrong type, dtype or shape,
    or (with ``finite``) a NaN/inf anywhere rejects the whole message, so a poisoned
    update never reaches the model.
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
    """Bounded FIFO of received messages for one operator; ``poll`` never blocks by default."""

    def __init__(self, capacity: int, stats: ChannelStats):
        self._messages: deque[Message] = deque()
        self._capacity = capacity
        self._cond = threading.Condition(threading.Lock())
        self.stats = stats
        self.closed = False
        self.schema: MessageSchema | None = None

    def set_schema(self, schema: MessageSchema | None) -> None:
        """Validate from now on, and also what already waits here (arrived during setup)."""
        with self._cond:
            self.schema = schema
            if schema is None:
                return
            kept = [m for m in self._messages if schema.violation(m.payload) is None]
            self.stats.rejected += len(self._messages) - len(kept)
            self._messages = deque(kept)

    def put(self, message: Message, nbytes: int) -> None:
        """Add a message (from the event loop or a same-worker operator thread)."""
        schema = self.schema
        if schema is not None and schema.violation(message.payload) is not None:
            self.stats.rejected += 1
            return
        with self._cond:
            if self.closed:
                return
            if len(self._messages) >= self._capacity:
                self._messages.popleft()
                self.stats.dropped_overflow += 1
            self._messages.append(message)
            self.stats.delivered += 1
            self.stats.delivered_bytes += nbytes
            self._cond.notify_all()

    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Everything that arrived since the last poll; waits up to ``timeout`` s if empty."""
        with self._cond:
            self.stats.polls += 1
            if not self._messages and timeout > 0 and not self.closed:
                self._cond.wait(timeout)
            out = list(self._messages)
            self._messages.clear()
        if out:
            now = time.time()
            ages = [max(0, int((now - m.sent_at) * 1e6)) for m in out]
            self.stats.consumed += len(out)
            self.stats.age_us_total += sum(ages)
            self.stats.age_us_max = max(self.stats.age_us_max, max(ages))
        return out

    def wake(self) -> None:
        """Wake a waiting ``poll`` (used when the stage stops)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._messages.clear()
            self._cond.notify_all()
