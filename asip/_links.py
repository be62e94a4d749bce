"""Outgoing peer links: one persistent distributed comm per peer worker, owned by the event loop.

A push reaches the socket in the same event-loop callback that took it from the
operators' outbox: when the link is connected and the peer has acknowledged the
previous batch, the batch is written at once (distributed's ``comm.write`` enqueues
into tornado's buffer without suspending when serialization is not offloaded).
Otherwise it waits in a queue bounded by ``asip.channel.peer-queue-bytes``: at most
one batch per link (plus one small direct write, below) is ever unhandled by its
receiver (the handler's reply is the acknowledgement), so under overload the
waiting happens on the sender, where ``latest=`` messages conflate and, past the
bound, the oldest are dropped and counted, instead of in socket buffers where
messages only grow stale. A slow or dead peer costs bounded memory and staleness,
and never blocks an operator.

Small pushes skip the hop to the event loop: when the link is idle (connected, plain
TCP, nothing queued, no batch unacknowledged) the pushing operator thread frames the
batch and writes it to the socket itself (`PeerLink.write_direct`; whatever the
socket does not take at once, the loop writes). Such a write has its own slot
(``direct``, at most ``asip.channel.direct-bytes``): while it waits for its
acknowledgement the loop may write one batch after it as usual (so a burst's first
push going direct never holds back the rest for a round trip), and no thread writes
again until both are acknowledged. The slots change only under the link's small
lock, the counters are written only by the loop (a direct write's ``sent`` is
counted with its acknowledgement, or when its sender closes), and a connection is
closed only under that lock, so a thread never writes to a socket being replaced.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

from distributed import protocol
from distributed.comm import connect

try:  # the framing of distributed's TCP comm, for writes from operator threads
    from distributed.comm.tcp import TCP, _add_frames_header
    from tornado.iostream import SSLIOStream
except ImportError:  # pragma: no cover - another distributed: every write goes via the loop
    TCP = _add_frames_header = SSLIOStream = None

from asip._channel import MESSAGE_OVERHEAD, _bucket
from asip._exceptions import MessageError
from asip._stream import read_message

if TYPE_CHECKING:
    from asip._channel import ChannelStats
    from asip._dataplane import DataPlane

logger = logging.getLogger(__name__)

__all__ = ["BATCH_BYTES", "DIRECT_BYTES", "PeerLink"]

# One write carries at most about this much, so the peer's event loop handles a bounded
# batch per callback and its control traffic (stop, directory) never waits long behind data.
BATCH_BYTES = 1 << 20
# Pushes up to this size may be written by the pushing thread itself when the link is idle.
DIRECT_BYTES = 64 << 10
# A reply on a link (an acknowledgement or a refusal) is tiny: anything larger is garbage.
REPLY_BYTES = 4096


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
    """One outgoing link to a peer worker; every method runs on the event loop except
    `frame` and `write_direct` (operator threads, see the module doc)."""

    def __init__(self, plane: DataPlane, address: str):
        self.plane = plane
        self.address = address
        # key -> (sender stats, item, bytes, copies, pushed at); FIFO keys are ints, latest=
        # keys tuples
        self.queue: OrderedDict[Any, tuple[ChannelStats, list, int, int, float]] = OrderedDict()
        self.bytes = 0
        self.comm: Any = None
        self.connecting: asyncio.Task | None = None
        self.retry_at = 0.0
        self.inflight: list | None = None  # the batch written and not yet acknowledged
        self.direct: list | None = None  # the batch a thread wrote, not yet acknowledged
        self.direct_at: float | None = None  # when, while its ``sent`` is not counted yet
        self.rest_pending = False  # the loop has yet to write the end of the direct batch
        self.sock: Any = None  # the plain TCP socket threads may write to (None: loop only)
        self._wlock = threading.Lock()  # guards the two slots and comm against thread writes
        self.reader: asyncio.Task | None = None
        self.closed = False
        self.writes = 0
        self._fifo = itertools.count()

    # ------------------------------------------------------------------ queue
    def enqueue(self, stats: ChannelStats, item: list, nbytes: int, copies: int,
                slot: Any = None, pushed_at: float = 0.0) -> None:
        """Queue one wire item for this peer (``copies`` receivers), dropping at the edge."""
        if self.plane.stopped:
            stats.dropped_at_stop += copies  # the stage stopped: data never delays the end
            return
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
            _, (s, _, dropped, n, _) = self.queue.popitem(last=False)
            self.bytes -= dropped
            s.dropped_overflow += n
        self.queue[key] = (stats, item, size, copies, pushed_at or time.time())
        self.bytes += size

    def drop_queued(self) -> None:
        """The stage stopped: drop what waits here (the batch in flight still lands)."""
        self._drop_all("dropped_at_stop")

    def _drop_all(self, field: str) -> None:
        for stats, _, _, copies, _ in self.queue.values():
            setattr(stats, field, getattr(stats, field) + copies)
        self.queue.clear()
        self.bytes = 0

    # ------------------------------------------------------------------ writing
    def flush(self) -> None:
        """Write everything queued now if the link is up and the peer has acknowledged
        the previous batch; otherwise it waits (and conflates) in the queue."""
        if self.closed or not self.queue:
            return
        if self.comm is None:
            if self.connecting is None and asyncio.get_running_loop().time() >= self.retry_at:
                self.connecting = asyncio.ensure_future(self._connect())
            return
        entries = []
        with self._wlock:
            if self.inflight is not None or self.rest_pending:
                return
            taken = 0
            while self.queue and taken < BATCH_BYTES:  # bounded work per handler call on the peer
                _, entry = self.queue.popitem(last=False)
                entries.append(entry)
                taken += entry[2]
            self.inflight = entries
            self.writes += 1
        self.bytes -= taken
        msg = {"batch": [e[1] for e in entries]}  # on the link's stream: no op, no reply flag
        comm = self.comm
        now = time.time()
        for stats, _, _, _, pushed_at in entries:
            stats.queued_hist[_bucket(int((now - pushed_at) * 1e6))] += 1
        try:
            drive(comm.write(msg), lambda exc: self._failed(comm, exc))
        except Exception as exc:  # noqa: BLE001 - counted and logged, the link starts over
            self._failed(comm, exc)

    # ------------------------------------------------------------------ operator threads
    def frame(self, item: list) -> bytes | None:
        """One batch of one item as the bytes distributed's TCP comm would write (any
        thread); None when this link takes no direct writes."""
        if self.sock is None or _add_frames_header is None:
            return None
        msg = {"batch": [item]}
        frames, _, _ = _add_frames_header(list(protocol.dumps(msg)))
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def write_direct(self, entry: tuple, data: bytes) -> bool:
        """Write one batch (``data``, framed by `frame`) from the calling thread if the
        link is idle, without blocking: True if it is taken (counted from here on by the
        loop), False when the link is busy, queued, connecting or loop-only. What the
        socket does not take now the loop writes, before anything else."""
        with self._wlock:  # the loop writes nothing while a thread checks and writes
            if (self.closed or self.queue or self.inflight is not None or self.direct is not None
                    or self.sock is None or self.comm is None):
                return False
            comm = self.comm
            self.direct = [entry]
            self.direct_at = time.time()
            self.writes += 1
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self.plane.aloop.call_soon_threadsafe(self._failed, comm, exc)
                return True
            self.rest_pending = sent < len(data)  # no loop write before the rest
        if sent < len(data):
            self.plane.aloop.call_soon_threadsafe(self._write_rest, comm,
                                                  memoryview(data)[sent:])
        return True

    def _write_rest(self, comm: Any, rest: memoryview) -> None:
        """The part of a direct write the socket did not take (loop; nothing else is
        written before it: see ``rest_pending``)."""
        if self.comm is not comm:
            return
        with self._wlock:
            self.rest_pending = False

        def done(fut: Any) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                self._failed(comm, fut.exception())

        try:
            comm.stream.write(rest).add_done_callback(done)
        except Exception as exc:  # noqa: BLE001 - counted and logged, the link starts over
            self._failed(comm, exc)
            return
        self.flush()  # what queued up behind it

    def settle(self, stats: ChannelStats) -> None:
        """A sender closes (loop): count now the ``sent`` of its direct write still
        unacknowledged, so its final statistics hold it."""
        with self._wlock:
            entries = self.direct if self.direct_at is not None else None
            if not entries or entries[0][0] is not stats:
                return
            self._count_direct(entries, self.direct_at)
            self.direct_at = None

    @staticmethod
    def _count_direct(entries: list, written_at: float) -> None:
        for stats, _, _, copies, pushed_at in entries:
            stats.sent += copies
            stats.direct += 1
            stats.queued_hist[_bucket(int((written_at - pushed_at) * 1e6))] += 1

    @property
    def idle(self) -> bool:
        """No batch written and unacknowledged."""
        return self.inflight is None and self.direct is None

    def _take_acked(self) -> list:
        """An acknowledgement came (loop): it answers the oldest batch written, the direct
        one if any (nothing is written before it); that batch, its ``sent`` counted."""
        with self._wlock:
            if self.direct is not None:
                entries, self.direct = self.direct, None
                written, self.direct_at = self.direct_at, None
            else:
                entries, self.inflight, written = self.inflight or [], None, None
        if written is not None:
            self._count_direct(entries, written)
        return entries

    def _take_inflight(self) -> list:
        """Every batch written and unacknowledged (loop: the connection is given up)."""
        entries = self._take_acked()
        return entries + self._take_acked()

    # ------------------------------------------------------------------ loop
    def _failed(self, comm: Any, exc: BaseException) -> None:
        """The connection broke: the unacknowledged batch counts as dropped (no route)."""
        logger.debug("asip: link to %s broke: %r", self.address, exc)
        if self.comm is comm:
            for stats, _, _, copies, _ in self._take_inflight():
                stats.dropped_no_route += copies
        self._broken(comm)

    async def _read_acks(self, comm: Any) -> None:
        """Each batch is answered once the peer has handled it: then the next may go."""
        try:
            while True:
                try:
                    reply = await read_message(comm, REPLY_BYTES)
                except MessageError as exc:  # garbage from the peer: not an acknowledgement
                    raise OSError(f"unreadable reply: {exc}") from exc
                if self.comm is not comm:
                    return
                if reply is not True:  # the peer has no handler for this stage (any more)
                    logger.debug("asip: %s refused a batch: %r", self.address, reply)
                    for stats, _, _, copies, _ in self._take_inflight():
                        stats.undeliverable += copies
                    self._drop_all("dropped_no_route")
                    self.retry_at = asyncio.get_running_loop().time() + self.plane.settings.reconnect_delay
                    self._broken(comm)
                    return
                self._take_acked()
                self.flush()
        except Exception as exc:  # noqa: BLE001 - closed, aborted or garbage: start over
            if self.comm is comm:
                self._failed(comm, exc)

    def _broken(self, comm: Any) -> None:
        with self._wlock:  # no thread writes to this socket from here on
            if self.comm is comm:
                self.comm = self.sock = None
                self.inflight = self.direct = self.direct_at = None
                self.rest_pending = False
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
        comm.allow_offload = False  # writes then never suspend: see flush()
        try:  # the handshake: the peer's stream handler takes this comm over and says True
            await comm.write({"op": plane.deliver_op, "reply": True})
            reply = await read_message(comm, REPLY_BYTES)
        except asyncio.CancelledError:  # the link closed meanwhile
            comm.abort()
            raise
        except Exception as exc:  # noqa: BLE001 - broken, or garbage: drop, wait, retry
            logger.debug("asip: handshake with %s failed: %r", self.address, exc)
            reply = exc
        self.connecting = None
        if self.closed:
            comm.abort()
            return
        if reply is not True:  # no stream handler for this stage there (any more), or broken
            comm.abort()
            self.retry_at = asyncio.get_running_loop().time() + plane.settings.reconnect_delay
            self._drop_all("dropped_no_route")
            return
        sock = None
        if TCP is not None and type(comm) is TCP and not isinstance(comm.stream, SSLIOStream):
            sock = comm.stream.socket
        with self._wlock:
            self.comm, self.sock = comm, sock
        self.reader = asyncio.ensure_future(self._read_acks(comm))
        self.flush()

    def close(self) -> None:
        """Stop for good: what is still queued counts as no route."""
        self.closed = True
        self._drop_all("dropped_no_route")
        if self.connecting is not None:
            self.connecting.cancel()
        if self.reader is not None:
            self.reader.cancel()
        if self.comm is not None:
            self._broken(self.comm)
