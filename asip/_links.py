"""Outgoing peer links: one persistent comm per peer worker, owned by the event loop.

Each link is a stream of its own: after a one-message handshake the peer's stream
handler (`DataPlane.handle_stream`) reads it in a loop, and both ends decode it with
msgpack and raw array frames only (`asip._stream`), never distributed's deserializers.

A push reaches the socket in the same event-loop callback that took it from the
operators' outbox when the peer has acknowledged the loop's previous batch (each
asks to be acknowledged at once) and the link's *window* has room: at most
``WINDOW`` batches and about ``BATCH_BYTES`` written and not yet acknowledged.
Otherwise it waits in a queue bounded by ``asip.channel.peer-queue-bytes``, so
under overload the waiting
happens on the sender, where ``latest=`` messages conflate and, past the bound, the
oldest are dropped and counted, instead of in socket buffers where messages only
grow stale. A slow or dead peer costs bounded memory and staleness, and never
blocks an operator. Acknowledgements are cumulative (the receiver answers a count
of batches handled) and, for small direct writes (below), lazy: every
``ACK_EVERY`` batches, ``ACK_DELAY`` s after the last, or at once when a batch asks
(the loop's batches, and a direct write that fills half the window), so a
ping-pong costs neither side's loop an acknowledgement per message; a receiver
whose stage ended answers ``["ended", handled]`` and the rest is counted
``undeliverable``.

Small pushes skip the hop to the event loop: when the link has room (connected, plain
TCP, nothing queued, tornado holding none of the loop's bytes, the window not full)
the pushing operator thread frames the batch and writes it to the socket itself
(`PeerLink.write_direct`, at most ``asip.channel.direct-bytes``; whatever the socket
does not take at once, the loop writes before anything else). The window changes
only under the link's small lock, under which the loop also hands its own writes to
tornado, so thread and loop writes never interleave; the counters are written only
by the loop (a direct write's ``sent`` is counted with its acknowledgement, or when
its sender closes), and a connection is closed only under that lock, so a thread
never writes to a socket being replaced.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Callable

from distributed.comm import connect

# Not public API (distributed 2026.8, tornado 6.6): a TCP comm's tornado IOStream
# (``comm.stream``: its socket, ``writing()``, ``write()``). distributed's public
# ``Comm.write`` is a coroutine of the event loop, and a direct write from the operator
# thread needs the socket, which no public call hands out; without these every write
# goes through the loop (slower, same messages).
try:  # distributed's TCP comm: its plain sockets take writes from operator threads
    from distributed.comm.tcp import TCP
    from tornado.iostream import SSLIOStream
except ImportError:  # pragma: no cover - another distributed: every write goes via the loop
    TCP = SSLIOStream = None

from asip._channel import MESSAGE_OVERHEAD, _bucket
from asip._exceptions import MessageError
from asip._stream import frame, read_message

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
# The window: at most this many batches, and about BATCH_BYTES, written and unacknowledged
# per link. A batch that fills half of it asks for its acknowledgement at once; otherwise
# the receiver acknowledges lazily (cumulatively, every ACK_EVERY batches or ACK_DELAY s
# after the last), so a ping-pong costs neither loop an acknowledgement per message.
WINDOW = 8
ACK_EVERY = 4
ACK_DELAY = 0.002


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


class _OnError:
    """An error callback for `drive` under a lock: errors raised at once are kept for the
    caller (to handle once the lock is released); later ones go to ``handler``."""

    def __init__(self, now: list, handler: Callable[[BaseException], None]):
        self.now, self.handler, self.later = now, handler, False

    def __call__(self, exc: BaseException) -> None:
        if self.later:
            self.handler(exc)
        else:
            self.now.append(exc)


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
        # batches written and not yet acknowledged, oldest first: [entries, written at (a
        # thread's write whose ``sent`` is not counted yet) or None, bytes, by the loop]
        self.unacked: deque[list] = deque()
        self.unacked_bytes = 0
        self.loop_unacked = 0  # of which written by the loop (at most one: see `flush`)
        self.rest_pending = False  # the loop has yet to write the end of a direct batch
        self.sock: Any = None  # the plain TCP socket threads may write to (None: loop only)
        self._wlock = threading.Lock()  # guards the window and comm against thread writes
        self.reader: asyncio.Task | None = None
        self.closed = False
        self.writes = 0
        self._fifo = itertools.count()

    # ------------------------------------------------------------------ queue
    def enqueue(self, stats: ChannelStats, item: list, nbytes: int, copies: int,
                slot: Any = None, pushed_at: float = 0.0) -> None:
        """Queue one wire item for this peer (``copies`` receivers), dropping at the edge."""
        if self.plane.stopped:
            stats.charge(dropped_at_stop=copies)  # the stage stopped: data never delays the end
            return
        if self.closed or (self.comm is None and self.retry_at
                           and asyncio.get_running_loop().time() < self.retry_at):
            stats.dropped_no_route += copies  # peer unreachable a moment ago: don't queue
            return
        key = slot if slot is not None else next(self._fifo)
        old = self.queue.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
            old[0].charge(conflated=old[3])
        size = nbytes + MESSAGE_OVERHEAD
        bound = self.plane.settings.peer_queue_bytes
        while self.queue and self.bytes + size > bound:
            _, (s, _, dropped, n, _) = self.queue.popitem(last=False)
            self.bytes -= dropped
            s.charge(dropped_overflow=n)
        self.queue[key] = (stats, item, size, copies, pushed_at or time.time())
        self.bytes += size

    def drop_queued(self) -> None:
        """The stage stopped: drop what waits here (the batch in flight still lands)."""
        self._drop_all("dropped_at_stop")

    def _drop_all(self, field: str) -> None:
        for stats, _, _, copies, _ in self.queue.values():
            stats.charge(**{field: copies})
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
        comm = self.comm
        errors: list[BaseException] = []
        now_or_later = _OnError(errors, lambda exc: self._failed(comm, exc))
        while self.queue and not errors:
            entries = []
            with self._wlock:  # written under the lock: a thread's write never interleaves
                if self.rest_pending or self.loop_unacked or self._full():
                    return  # one batch of the loop's at a time: under overload pushes
                    # wait (and conflate) here, not in the peer's socket buffers
                taken = 0
                while self.queue and taken < BATCH_BYTES:  # bounded work per batch on the peer
                    _, entry = self.queue.popitem(last=False)
                    entries.append(entry)
                    taken += entry[2]
                self.bytes -= taken
                self.unacked.append([entries, None, taken, True])
                self.unacked_bytes += taken
                self.loop_unacked += 1
                self.writes += 1
                # on the link's stream: no op; "ack": acknowledge at once (the loop's batches
                # always ask, so the next one goes as soon as this one is handled)
                msg = {"batch": [e[1] for e in entries], "ack": True}
                now = time.time()
                for stats, _, _, _, pushed_at in entries:
                    stats.queued_hist[_bucket(int((now - pushed_at) * 1e6))] += 1
                try:
                    drive(comm.write(msg), now_or_later)
                except Exception as exc:  # noqa: BLE001 - counted and logged, the link starts over
                    errors.append(exc)
        now_or_later.later = True
        if errors:
            self._failed(comm, errors[0])

    def _full(self) -> bool:
        """No more writes until an acknowledgement (under the lock)."""
        return len(self.unacked) >= WINDOW or self.unacked_bytes >= BATCH_BYTES

    # ------------------------------------------------------------------ operator threads
    def frame(self, item: list) -> bytes | None:
        """One batch of one item as the bytes distributed's TCP comm would write (any
        thread); None when this link takes no direct writes."""
        if self.sock is None:
            return None
        # asks for its acknowledgement at once when it fills half the window (read unlocked:
        # a hint; an acknowledgement comes anyway every ACK_EVERY batches or ACK_DELAY s)
        return frame({"batch": [item], "ack": len(self.unacked) + 1 >= WINDOW // 2})

    def write_direct(self, entry: tuple, data: bytes) -> bool:
        """Write one batch (``data``, framed by `frame`) from the calling thread if the
        link is idle, without blocking: True if it is taken (counted from here on by the
        loop), False when the link is busy, queued, connecting or loop-only. What the
        socket does not take now the loop writes, before anything else."""
        with self._wlock:  # the loop writes nothing while a thread checks and writes
            comm = self.comm
            if (self.closed or self.queue or self.rest_pending or self.sock is None
                    or comm is None or comm.stream is None or comm.stream.writing()
                    or self._full()):
                return False  # busy: tornado still holds bytes of the loop's, or the window is full
            self.unacked.append([[entry], time.time(), entry[2], False])
            self.unacked_bytes += entry[2]
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
        def done(fut: Any) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                self._failed(comm, fut.exception())

        with self._wlock:  # handed to tornado before any thread may write again
            self.rest_pending = False
            try:
                comm.stream.write(rest).add_done_callback(done)
                error = None
            except Exception as exc:  # noqa: BLE001 - counted and logged, the link starts over
                error = exc
        if error is not None:
            self._failed(comm, error)
            return
        self.flush()  # what queued up behind it

    def settle(self, stats: ChannelStats) -> None:
        """A sender closes (loop): count now the ``sent`` of its direct writes still
        unacknowledged, so its final statistics hold them."""
        with self._wlock:
            for record in self.unacked:
                entries, written = record[0], record[1]
                if written is not None and entries[0][0] is stats:
                    self._count_direct(entries, written)
                    record[1] = None

    @staticmethod
    def _count_direct(entries: list, written_at: float) -> None:
        for stats, _, _, copies, pushed_at in entries:
            stats.sent += copies
            stats.direct += 1
            stats.queued_hist[_bucket(int((written_at - pushed_at) * 1e6))] += 1

    @property
    def idle(self) -> bool:
        """No batch written and unacknowledged."""
        return not self.unacked

    @property
    def direct_unacked(self) -> int:
        """Batches written by operator threads and not yet acknowledged."""
        return sum(1 for r in list(self.unacked) if r[1] is not None)

    def _take_acked(self, n: int = 1) -> list:
        """An acknowledgement of ``n`` batches came (loop): acknowledgements are cumulative,
        for the oldest batches written, in order; their entries, ``sent`` counted."""
        out: list = []
        with self._wlock:
            for _ in range(min(n, len(self.unacked))):
                entries, written, nbytes, by_loop = self.unacked.popleft()
                self.unacked_bytes -= nbytes
                self.loop_unacked -= by_loop
                if written is not None:
                    self._count_direct(entries, written)
                out.extend(entries)
        return out

    def _take_inflight(self) -> list:
        """Every batch written and unacknowledged (loop: the connection is given up)."""
        return self._take_acked(len(self.unacked))

    # ------------------------------------------------------------------ loop
    def _failed(self, comm: Any, exc: BaseException) -> None:
        """The connection broke: what is unacknowledged counts as dropped (no route)."""
        logger.debug("asip: link to %s broke: %r", self.address, exc)
        if self.comm is comm:
            for stats, _, _, copies, _ in self._take_inflight():
                stats.dropped_no_route += copies
        self._broken(comm)

    async def _read_acks(self, comm: Any) -> None:
        """Acknowledgements (cumulative counts of batches handled) free the window; a refusal
        counts what is unacknowledged as undeliverable and the link starts over."""
        try:
            while True:
                try:
                    reply = await read_message(comm, REPLY_BYTES)
                except MessageError as exc:  # garbage from the peer: not an acknowledgement
                    raise OSError(f"unreadable reply: {exc}") from exc
                if self.comm is not comm:
                    return
                if type(reply) is int and reply > 0:  # that many more batches handled
                    self._take_acked(reply)
                    self.flush()
                    continue
                if isinstance(reply, (list, tuple)) and len(reply) == 2 and type(reply[1]) is int:
                    self._take_acked(reply[1])  # handled before the stage ended there
                # the stage ended there (or garbage): what is unacknowledged was refused
                logger.debug("asip: %s refused a batch: %r", self.address, reply)
                for stats, _, _, copies, _ in self._take_inflight():
                    stats.undeliverable += copies
                self._drop_all("dropped_no_route")
                self.retry_at = asyncio.get_running_loop().time() + self.plane.settings.reconnect_delay
                self._broken(comm)
                return
        except Exception as exc:  # noqa: BLE001 - closed, aborted or garbage: start over
            if self.comm is comm:
                self._failed(comm, exc)

    def _broken(self, comm: Any) -> None:
        with self._wlock:  # no thread writes to this socket from here on
            if self.comm is comm:
                self.comm = self.sock = None
                self.unacked.clear()
                self.unacked_bytes = self.loop_unacked = 0
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
