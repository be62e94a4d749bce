"""Outgoing peer links: one persistent distributed comm per peer worker, owned by the event loop.

A push reaches the socket in the same event-loop callback that took it from the
operators' outbox: when the link is connected and its socket has taken everything
written before, the batch is written at once (distributed's ``comm.write`` enqueues
into tornado's buffer without suspending when serialization is not offloaded).
Otherwise it waits in a queue bounded by ``asip.channel.peer-queue-bytes`` until the
socket has drained: at most one batch is ever in flight, so under overload the
waiting happens here, where ``latest=`` messages conflate and, past the bound, the
oldest are dropped and counted. A slow or dead peer costs bounded memory and
staleness, and never blocks an operator.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

from distributed.comm import connect

from asip._channel import MESSAGE_OVERHEAD

if TYPE_CHECKING:
    from asip._channel import ChannelStats
    from asip._dataplane import DataPlane

logger = logging.getLogger(__name__)

__all__ = ["PeerLink"]


def _pending_bytes(comm: Any) -> int:
    """Bytes written to the comm that its socket has not taken yet (0 if unknown)."""
    stream = getattr(comm, "stream", None)
    try:
        return int(stream._total_write_index - stream._total_write_done_index)
    except (AttributeError, TypeError):
        return 0


def drive(coro: Any, on_error: Callable[[BaseException], None]) -> bool:
    """Run a coroutine now, as far as it goes without waiting, like an eager task.

    Returns True when it finished in this call; if it suspends, the rest runs from
    the futures' callbacks (as ``asyncio.Task`` would) and errors go to ``on_error``.
    """
    loop = asyncio.get_running_loop()

    def step(_: Any = None) -> bool:
        try:
            fut = coro.send(None)
        except StopIteration:
            return True
        except BaseException as exc:  # noqa: BLE001 - reported, never swallowed
            on_error(exc)
            return True
        if fut is None:
            loop.call_soon(step)
        else:
            fut._asyncio_future_blocking = False
            fut.add_done_callback(step)
        return False

    return step()


class PeerLink:
    """One outgoing link to a peer worker; every method runs on the event loop."""

    def __init__(self, plane: DataPlane, address: str):
        self.plane = plane
        self.address = address
        # key -> (sender stats, item, bytes, copies); FIFO keys are ints, latest= keys tuples
        self.queue: OrderedDict[Any, tuple[ChannelStats, list, int, int]] = OrderedDict()
        self.bytes = 0
        self.comm: Any = None
        self.connecting: asyncio.Task | None = None
        self.retry_at = 0.0
        self.draining = False
        self.closed = False
        self.writes = 0
        self._fifo = itertools.count()

    # ------------------------------------------------------------------ queue
    def enqueue(self, stats: ChannelStats, item: list, nbytes: int, copies: int,
                slot: Any = None) -> None:
        """Queue one wire item for this peer (``copies`` receivers), dropping at the edge."""
        if self.closed or (self.comm is None and self.retry_at
                           and asyncio.get_running_loop().time() < self.retry_at):
            stats.dropped_no_route += copies  # peer unreachable a moment ago: don't queue
            return
        key = slot if slot is not None else next(self._fifo)
        old = self.queue.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
            old[0].conflated += old[3]
        size = nbytes + MESSAGE_OVERHEAD
        bound = self.plane.settings.peer_queue_bytes
        while self.queue and self.bytes + size > bound:
            _, (s, _, dropped, n) = self.queue.popitem(last=False)
            self.bytes -= dropped
            s.dropped_overflow += n
        self.queue[key] = (stats, item, size, copies)
        self.bytes += size

    def _drop_all(self, field: str) -> None:
        for stats, _, _, copies in self.queue.values():
            setattr(stats, field, getattr(stats, field) + copies)
        self.queue.clear()
        self.bytes = 0

    # ------------------------------------------------------------------ writing
    def flush(self) -> None:
        """Write everything queued now if the link is up and its socket keeps up."""
        if self.closed or not self.queue:
            return
        if self.comm is None:
            if self.connecting is None and asyncio.get_running_loop().time() >= self.retry_at:
                self.connecting = asyncio.ensure_future(self._connect())
            return
        if self.draining:
            return
        if _pending_bytes(self.comm) > 0:  # the previous batch is still on its way out
            self._wait_for_socket(self.comm)
            return
        entries = list(self.queue.values())
        self.queue.clear()
        self.bytes = 0
        msg = {"op": self.plane.deliver_op, "reply": False, "batch": [e[1] for e in entries]}
        comm = self.comm

        def failed(exc: BaseException) -> None:
            logger.debug("asip: link to %s broke: %r", self.address, exc)
            for stats, _, _, copies in entries:
                stats.dropped_no_route += copies
            self._broken(comm)

        try:
            drive(comm.write(msg), failed)
        except Exception as exc:  # noqa: BLE001 - counted and logged, the link starts over
            failed(exc)
            return
        self.writes += 1
        if self.comm is comm and _pending_bytes(comm) > 0:
            self._wait_for_socket(comm)

    def _wait_for_socket(self, comm: Any) -> None:
        """The socket has not taken the last batch yet: queue (and conflate) until it has."""
        try:
            fut = comm.stream.write(b"")
        except Exception:  # noqa: BLE001 - closed under us
            self._broken(comm)
            return
        self.draining = True

        def drained(f: Any) -> None:
            self.draining = False
            if f.cancelled() or f.exception() is not None:
                self._drop_all("dropped_no_route")
                self._broken(comm)
            else:
                self.flush()

        fut.add_done_callback(drained)

    def _broken(self, comm: Any) -> None:
        if self.comm is comm:
            self.comm = None
        try:
            comm.abort()
        except Exception:  # noqa: BLE001
            pass

    async def _connect(self) -> None:
        plane = self.plane
        try:
            comm = await connect(self.address, timeout=plane.settings.connect_timeout,
                                 name="asip-channel", **plane.worker.connection_args)
        except Exception as exc:  # noqa: BLE001 - unreachable or dead peer: drop, wait, retry
            logger.debug("asip: connect to %s failed: %s", self.address, exc)
            self.connecting = None
            self.retry_at = asyncio.get_running_loop().time() + plane.settings.reconnect_delay
            self._drop_all("dropped_no_route")
            return
        self.connecting = None
        if self.closed:
            comm.abort()
            return
        comm.allow_offload = False  # writes then never suspend: see flush()
        self.comm = comm
        self.flush()

    def close(self) -> None:
        """Stop for good: what is still queued counts as no route."""
        self.closed = True
        self._drop_all("dropped_no_route")
        if self.connecting is not None:
            self.connecting.cancel()
        if self.comm is not None:
            self._broken(self.comm)
