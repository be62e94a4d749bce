"""Mailboxes and channel statistics: the thread-safe meeting point of event loop and operator.

Policy, stated once: ``poll()`` returns every message that arrived since the last
poll, oldest first. A mailbox holds at most ``asip.channel.mailbox-size`` messages;
past that the *oldest* are dropped and counted, since asynchronous algorithms want
the newest information. Nothing here ever blocks the event loop.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, fields

from asip._wire import Message

__all__ = ["ChannelStats", "Mailbox"]


@dataclass
class ChannelStats:
    """Counters for one operator's side of the channel (one incarnation)."""

    pushed: int = 0  # push() calls that passed validation
    pushed_bytes: int = 0
    sent: int = 0  # copies handed to peers (a broadcast counts once per peer worker)
    delivered: int = 0  # messages that reached this operator's mailbox
    delivered_bytes: int = 0
    dropped_no_route: int = 0  # destination not registered yet, or its connection failed
    dropped_overflow: int = 0  # queue or mailbox full: oldest dropped
    dropped_injected: int = 0  # DropMessages fault
    malformed: int = 0  # received items that failed validation
    refused: int = 0  # push() calls rejected with MessageError on the sender
    polls: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def total(stats: list[dict[str, int]]) -> dict[str, int]:
        """Sum per-operator counters into one dict."""
        out = {f.name: 0 for f in fields(ChannelStats)}
        for s in stats:
            for key, value in s.items():
                out[key] = out.get(key, 0) + value
        return out


class Mailbox:
    """Bounded FIFO of received messages for one operator; ``poll`` never blocks by default."""

    def __init__(self, capacity: int, stats: ChannelStats):
        self._messages: deque[Message] = deque()
        self._capacity = capacity
        self._cond = threading.Condition(threading.Lock())
        self.stats = stats
        self.closed = False

    def put(self, message: Message, nbytes: int) -> None:
        """Add a message (from the event loop or a same-worker operator thread)."""
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
