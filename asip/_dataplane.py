"""The channel's data plane on one worker: endpoints, the operators' outbox, delivery.

One owner: the worker's event loop owns every piece of state here (endpoints,
links, counters). Operator threads touch only this: they append pushes to one
locked outbox (`DataPlane.submit`, which wakes the loop once per burst), poll
their own `Mailbox` under its lock, and bump their own sender counters
(``pushed``, ``refused``) that nothing else writes; a push to workers of this process
they put into the receivers' mailboxes themselves, leaving its sender counts (under
the outbox's lock) for the loop (`asip._handover`). The loop drains the outbox in
one callback: it delivers same-worker copies straight into mailboxes and hands
one item per peer *worker* (multicast: encoded once, receivers listed) to that
peer's `PeerLink`, which writes it in the same callback unless the link's window of
unacknowledged batches is full. A small push to partitions on one peer worker skips
the loop when nothing of its worker's waits before it (`DataPlane._direct`): the
pushing thread writes it to the link's socket itself (see `asip._links`); a push whose
receivers all run on workers of this very process (in-process workers) is put into their
mailboxes by the pushing thread (`asip._handover`). Incoming
links are read by `DataPlane.handle_stream`, msgpack and raw array frames only; over
plain TCP by an asyncio transport (`_LinkProtocol`) that delivers, acknowledges and
wakes the receivers in the callback that read the bytes.
Modelled on distributed's P2P shuffle, where one event loop owns the buffers.

Once the stage stops (`DataPlane.stop`: the stop from the driver, or a local
operator reaching ``max_time`` or returning STOP) data never delays the end: what
waits in the outbox and the peer links is dropped (``dropped_at_stop``), later
pushes and arrivals likewise, without decoding them, and mailboxes accept nothing
more; so an operator's close, its result and its final report never wait behind
queued data.

Every copy a push sends ends up counted exactly once: delivered, conflated,
rejected, zombie, undeliverable or dropped (see `ChannelStats`); the exceptions
are batches whose acknowledgement is lost with their connection (counted dropped,
perhaps delivered), copies that arrive after every receiver on their worker has
closed, and whatever is still queued when the sender closes before the stop
(routed after its final statistics were taken).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import random
import threading
import time
from collections import OrderedDict, defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
from asip._channel import MESSAGE_OVERHEAD, ChannelStats, Mailbox, _bucket
from asip._directory import op_name
from asip._handover import hand_over, register, unregister
from asip._exceptions import MessageError
from asip._links import ACK_DELAY, ACK_EVERY, BATCH_BYTES, DIRECT_BYTES, PeerLink, drive
from asip._stream import FrameReader, StreamError, frame, read_message, take_socket
from asip._wire import (Encoded, Limits, decode_frames, decode_message, decode_targets,
                        local_item, wire_item)
from asip.faults import DelayMessages, DropMessages

logger = logging.getLogger(__name__)

__all__ = ["ChannelSettings", "DataPlane", "Endpoint"]

DRAIN_BYTES = 4 << 20  # pushes routed per event-loop callback, at most about this much
# With at least YIELD_OPERATORS operators on a worker, a push finding the event loop this far
# behind (its outbox callback waiting longer) yields the GIL to it, for at most YIELD_MAX: many
# busy operator threads otherwise starve the one thread that moves their messages, and
# messages age in the queues (issue 10). One or two operators leave the loop its share.
YIELD_OPERATORS = 4
YIELD_AFTER = 0.005
YIELD_MAX = 0.05


@contextmanager
def _wake_after() -> Iterator[set[Mailbox]]:
    """A set to collect mailboxes filled with ``notify=False``; each is woken once at the
    end (one wake-up per batch: woken operator threads don't take the GIL mid-batch)."""
    woken: set[Mailbox] = set()
    try:
        yield woken
    finally:
        for mailbox in woken:
            mailbox.notify()


class ChannelSettings:
    """The ``asip.channel``/``asip.trace`` settings a stage ships to its workers."""

    def __init__(self, limits: Limits, mailbox_bytes: int, peer_queue_bytes: int,
                 connect_timeout: float, reconnect_delay: float, report_interval: float,
                 outbox_bytes: int | None = None, direct_bytes: int = DIRECT_BYTES,
                 handover: bool = True):
        self.limits = limits
        self.mailbox_bytes = mailbox_bytes
        self.peer_queue_bytes = peer_queue_bytes
        self.outbox_bytes = outbox_bytes if outbox_bytes is not None else 4 * peer_queue_bytes
        self.direct_bytes = direct_bytes  # pushes up to this size may skip the loop (0: none)
        self.handover = handover  # pushes to workers of this process skip the loop (`_handover`)
        self.connect_timeout = connect_timeout
        self.reconnect_delay = reconnect_delay
        self.report_interval = report_interval

    @classmethod
    def from_config(cls) -> ChannelSettings:
        """Read ``asip.channel.*`` and ``asip.trace.report-interval`` from dask.config."""
        from asip import _config

        limits = Limits(_config.nbytes("channel.max-message-bytes"),
                        _config.integer("channel.max-keys"), _config.nbytes("channel.inline-bytes"))
        return cls(limits, _config.nbytes("channel.mailbox-bytes"),
                   _config.nbytes("channel.peer-queue-bytes"),
                   _config.seconds("channel.connect-timeout"),
                   _config.seconds("channel.reconnect-delay"),
                   _config.seconds("trace.report-interval"),
                   _config.nbytes("channel.outbox-bytes"),
                   _config.nbytes("channel.direct-bytes"),
                   _config.flag("channel.in-process-handover"))


class _MessageFaults:
    """Injected channel faults (DelayMessages, DropMessages) for messages sent by one operator."""

    def __init__(self, faults: tuple, sender: int):
        mine = [f for f in faults if f.applies_to(sender)]
        self.delay = sum(f.ms for f in mine if isinstance(f, DelayMessages)) / 1000.0
        self.drop = max((f.p for f in mine if isinstance(f, DropMessages)), default=0.0)

    def dropped(self) -> bool:
        return self.drop > 0 and random.random() < self.drop


class Endpoint:
    """One operator incarnation's end of the channel: its mailbox, stats and faults."""

    def __init__(self, index: int, incarnation: int, settings: ChannelSettings, faults: tuple):
        self.index = index
        self.incarnation = incarnation
        self.stats = ChannelStats()
        self.mailbox = Mailbox(settings.mailbox_bytes, self.stats)
        self.faults = _MessageFaults(faults, index)
        self.closed = False

    def __repr__(self) -> str:
        return f"<Endpoint {self.index}/{self.incarnation}>"


class DataPlane:
    """Endpoints, outbox and peer links of one stage on one worker (see the module doc)."""

    def __init__(self, worker: Any, run_id: str, n_partitions: int, settings: ChannelSettings,
                 faults: tuple, directory: Any):
        self.worker = worker
        self.address = worker.address
        self.loop = worker.loop
        self.aloop = asyncio.get_running_loop()
        self.run_id = run_id
        self.n_partitions = n_partitions
        self.settings = settings
        self.faults = tuple(faults)
        self._directory = directory  # () -> {partition: (address, incarnation)}
        self.deliver_op = op_name("deliver", run_id)
        # loop-owned
        self.endpoints: dict[tuple[int, int], Endpoint] = {}
        self.current: dict[int, Endpoint] = {}  # partition -> newest incarnation open here
        self.links: dict[str, PeerLink] = {}
        self.streams: set = set()  # incoming peer links being read (`handle_stream`)
        self.undeliverable = 0
        self.malformed = 0
        self.late = 0  # copies that arrived after the stop for receivers already closed here
        self.stopped = False
        self.closed = False
        # the one hand-over point from operator threads
        self._lock = threading.Lock()
        # key -> (endpoint, encoded, targets, wire parts, pushed at); latest= pushes conflate
        # on (endpoint, slot, targets)
        self._outbox: OrderedDict[Any, tuple] = OrderedDict()
        self._outbox_bytes = 0
        # per sender, pushes dropped before routing: [overflow, conflated, at stop]
        self._outbox_dropped: dict[Endpoint, list[int]] = defaultdict(lambda: [0, 0, 0])
        self._fifo = itertools.count()
        self._scheduled = False
        self._routing = False  # a _drain is routing what it took from the outbox
        self._loop_thread = threading.get_ident()  # pushes made on the loop take the loop path
        self._requested_at = 0.0  # when the pending _drain was asked for (monotonic)
        self._drained = threading.Event()  # set when a _drain starts: pushers waiting go on
        # per sender, pushes handed over by its thread (`_handover`), not yet charged by the loop:
        # [copies sent, dropped injected, undeliverable, pushes, {queued-age bucket: count}]
        self._handed: dict[Endpoint, list] = {}
        register(self)

    # ------------------------------------------------------------------ endpoints (loop)
    def open(self, index: int, incarnation: int) -> Endpoint:
        """Open the endpoint of incarnation ``incarnation`` of partition ``index`` (loop only)."""
        ep = Endpoint(index, incarnation, self.settings, self.faults)
        if self.stopped or self.closed:
            ep.mailbox.wake()
        self.endpoints[(index, incarnation)] = ep
        cur = self.current.get(index)
        if cur is None or cur.incarnation <= incarnation:
            self.current[index] = ep
        return ep

    async def aopen(self, index: int, incarnation: int) -> Endpoint:
        return self.open(index, incarnation)

    def close_endpoint(self, ep: Endpoint) -> dict[str, Any]:
        """Close an endpoint (loop only); its final stats. Before the stop its queued
        pushes are routed first (peers still running may wait for them); after the stop
        they were dropped already, so closing never waits behind data."""
        if self.stopped:
            self._drop_queued()
        else:
            self._route_from(ep)
        self.settle_thread_counts()
        for link in self.links.values():
            link.settle(ep.stats)
        ep.closed = True
        ep.mailbox.close()
        self.endpoints.pop((ep.index, ep.incarnation), None)
        if self.current.get(ep.index) is ep:
            del self.current[ep.index]
            older = [e for (i, _), e in self.endpoints.items() if i == ep.index]
            if older:
                self.current[ep.index] = max(older, key=lambda e: e.incarnation)
        # drops of messages whose receiver had left this worker: charged to whoever leaves next
        ep.stats.undeliverable += self.undeliverable
        ep.stats.malformed += self.malformed
        ep.stats.charge(dropped_at_stop=self.late)
        self.undeliverable = self.malformed = self.late = 0
        return ep.mailbox.snapshot()

    async def aclose_endpoint(self, ep: Endpoint) -> dict[str, Any]:
        return self.close_endpoint(ep)

    def close_from_thread(self, ep: Endpoint, timeout: float = 3.0) -> dict[str, Any]:
        """`close_endpoint` from an operator thread; never waits longer than ``timeout``
        (timed on this thread, so a starved event loop cannot stretch it)."""
        done: concurrent.futures.Future = concurrent.futures.Future()

        def close() -> None:
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(self.close_endpoint(ep))
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                    done.set_exception(exc)

        try:
            self.aloop.call_soon_threadsafe(close)
            return done.result(timeout)
        except Exception:  # noqa: BLE001 - loop gone or stuck: close here, keep the counts
            if not done.cancel():  # it is running on the loop right now: it ends soon
                try:
                    return done.result(timeout)
                except Exception:  # noqa: BLE001
                    pass
            logger.warning("asip: closing %r off the event loop", ep, exc_info=True)
            ep.closed = True
            ep.mailbox.close()
            return ep.mailbox.snapshot()

    def alive(self) -> list[int]:
        """Partitions with an open endpoint on this worker."""
        return list(self.current)

    def stop(self) -> None:
        """The stage stops (thread-safe): every poll returns at once from now on, mailboxes
        accept nothing more, and queued data is dropped (counted as ``dropped_at_stop``)."""
        first = not self.stopped
        self.stopped = True
        try:
            endpoints = list(self.endpoints.values())
        except RuntimeError:  # the loop changed them under an operator thread: let it do this
            endpoints = []
            first = True
        for ep in endpoints:
            ep.mailbox.wake()
        self._drained.set()  # no pusher waits for the loop any more
        if first:
            try:
                self.aloop.call_soon_threadsafe(self._stop_on_loop)
            except RuntimeError:  # the loop is closed: nothing left to drop
                pass

    def _stop_on_loop(self) -> None:
        for ep in list(self.endpoints.values()):
            ep.mailbox.wake()
        self._drop_queued()

    def close(self) -> None:
        """Teardown (loop only): close links and mailboxes, forget queued pushes."""
        self.closed = True
        unregister(self)
        self.stop()
        for link in self.links.values():
            link.close()
        self.links.clear()
        for ep in list(self.endpoints.values()):
            ep.mailbox.close()
        with self._lock:
            self._outbox.clear()
            self._outbox_bytes = 0

    # ------------------------------------------------------------------ operator threads
    def submit(self, ep: Endpoint, encoded: Encoded, targets: tuple | None) -> None:
        """Hand a push to the event loop (any thread), or straight to its receivers'
        mailboxes when they all run in this process (`asip._handover`); never blocks on
        the network.

        The outbox is bounded by ``asip.channel.outbox-bytes``: past it the oldest
        pushes are dropped and counted against their senders. After the stop a push
        is dropped here (``dropped_at_stop``), before it costs any work. When the event
        loop lags (its last wake-up waited over ``YIELD_AFTER``) and at least
        ``YIELD_OPERATORS`` operators share this worker, the pushing thread waits for
        it, at most ``YIELD_MAX`` (counted as ``yielded``).
        """
        if self.stopped:
            with self._lock:
                self._outbox_dropped[ep][2] += 1
            return
        now = time.time()
        if self.settings.handover and hand_over(self, ep, encoded, targets, now):
            return
        parts = wire_item(encoded, self.settings.limits)  # here, off the event loop
        if self._direct(ep, encoded, targets, parts, now):
            return
        size = encoded.nbytes + MESSAGE_OVERHEAD
        key = next(self._fifo) if encoded.slot is None else (ep, encoded.slot, targets)
        with self._lock:
            old = self._outbox.pop(key, None)
            if old is not None:  # a newer latest= push replaces one the loop has not taken yet
                self._outbox_bytes -= old[1].nbytes + MESSAGE_OVERHEAD
                self._outbox_dropped[ep][1] += 1
            self._outbox[key] = (ep, encoded, targets, parts, now)
            self._outbox_bytes += size
            while self._outbox_bytes > self.settings.outbox_bytes and len(self._outbox) > 1:
                _, (old_ep, old_enc, *_) = self._outbox.popitem(last=False)
                self._outbox_bytes -= old_enc.nbytes + MESSAGE_OVERHEAD
                self._outbox_dropped[old_ep][0] += 1
            wake = not self._scheduled
            if wake:
                self._scheduled = True
                self._requested_at = time.monotonic()
                self._drained.clear()
            behind = not wake and time.monotonic() - self._requested_at > YIELD_AFTER
        if wake:
            self.aloop.call_soon_threadsafe(self._drain)
        elif behind and not self.stopped and len(self.current) >= YIELD_OPERATORS:
            ep.stats.yielded += 1  # let the loop run instead of queueing more for it
            self._drained.wait(YIELD_MAX)

    def _direct(self, ep: Endpoint, encoded: Encoded, targets: tuple | None, parts: list,
                now: float) -> bool:
        """Write a small push to the socket from the pushing thread (True) when all its
        receivers (``None``: every peer) are on one peer worker whose link is idle and
        nothing pushed on this worker waits for the loop (so it overtakes nothing); else
        False: the loop path."""
        if (encoded.nbytes > self.settings.direct_bytes or ep.faults.delay or ep.faults.drop
                or ep.closed or threading.get_ident() == self._loop_thread):
            return False
        directory, current, addr = self._directory(), self.current, None
        if targets is None:  # every peer, as `_route` resolves it: none here, all on one worker
            if len(current) > (ep.index in current):
                return False
            receivers = []
            for j, (where, _) in directory.items():
                if j == ep.index or where == self.address:
                    continue
                if addr is not None and where != addr:
                    return False
                addr = where
                receivers.append(j)
            targets = tuple(receivers)
        else:
            for j in targets:
                entry = directory.get(j)
                if (j in current or entry is None or entry[0] == self.address
                        or (addr is not None and entry[0] != addr)):
                    return False
                addr = entry[0]
        link = self.links.get(addr)
        if link is None or link.sock is None or not all(type(p) is bytes for p in parts):
            return False
        item = [list(targets), *parts]
        try:
            data = link.frame(item)
        except Exception:  # noqa: BLE001 - the loop path reports what is wrong with it
            return False
        if data is None:
            return False
        with self._lock:  # nothing of this worker's waits before it for the loop
            if self._outbox or self._scheduled or self._routing or self.stopped:
                return False
            return link.write_direct((ep.stats, item, encoded.nbytes + MESSAGE_OVERHEAD,
                                      len(targets), now), data)

    # ------------------------------------------------------------------ event loop
    def _drain(self, limit: int = DRAIN_BYTES) -> None:
        """Take the oldest pushes from the outbox (about ``limit`` bytes): deliver
        locally, hand the rest to peer links; come back soon for what is left, so one
        callback never holds the event loop long."""
        with self._lock:
            items, taken = [], 0
            while self._outbox and taken < limit:
                _, item = self._outbox.popitem(last=False)
                items.append(item)
                taken += item[1].nbytes + MESSAGE_OVERHEAD
            self._outbox_bytes -= taken
            dropped, self._outbox_dropped = self._outbox_dropped, defaultdict(lambda: [0, 0, 0])
            more = bool(self._outbox)
            self._scheduled = more
            self._routing = bool(items)
            self._requested_at = time.monotonic()
        self._drained.set()  # pushers waiting for the loop go on
        if more:
            self._drained.clear()
            self.aloop.call_soon(self._drain)
        try:
            self._route_items(items, dropped)
        finally:
            if items:
                with self._lock:
                    self._routing = False

    def _route_items(self, items: list, dropped: dict) -> None:
        self._count_drops(dropped)
        if not items or self.closed:
            return
        if self.stopped:  # taken just before the stop: dropped all the same
            self._count_drops(_at_stop(items))
            return
        touched: set[PeerLink] = set()
        with _wake_after() as woken:  # local receivers: woken once, after the whole drain
            for ep, encoded, targets, parts, pushed_at in items:
                try:
                    self._route(ep, encoded, targets, parts, touched, pushed_at, woken)
                except Exception:  # noqa: BLE001 - never lose the rest of the outbox
                    logger.exception("asip: routing a message from partition %d failed",
                                     ep.index)
            for link in touched:
                link.flush()

    @staticmethod
    def _count_drops(dropped: dict[Endpoint, list[int]]) -> None:
        """Charge pushes dropped before routing: each counts once, whatever its fan-out."""
        for ep, (overflow, conflated, at_stop) in dropped.items():
            ep.stats.sent += overflow + conflated + at_stop
            ep.stats.charge(dropped_overflow=overflow, conflated=conflated,
                            dropped_at_stop=at_stop)

    def settle_thread_counts(self) -> None:
        """Charge what operator threads left for the loop to count (loop only): pushes
        dropped before routing, and the sender's side of the pushes they handed over."""
        with self._lock:
            dropped, self._outbox_dropped = self._outbox_dropped, defaultdict(lambda: [0, 0, 0])
            handed, self._handed = self._handed, {}
        self._count_drops(dropped)
        for ep, (sent, injected, lost, pushes, queued) in handed.items():
            stats = ep.stats
            stats.sent += sent
            stats.handed += pushes
            stats.dropped_injected += injected
            stats.undeliverable += lost
            for bucket, n in queued.items():
                stats.queued_hist[bucket] += n

    def charge_handed(self, ep: Endpoint, sent: int, injected: int, lost: int,
                      queued_bucket: int) -> None:
        """Leave the sender's counts of one handed-over push for the loop (any thread)."""
        with self._lock:
            counts = self._handed.get(ep)
            if counts is None:
                counts = self._handed[ep] = [0, 0, 0, 0, {}]
            counts[0] += sent
            counts[1] += injected
            counts[2] += lost
            counts[3] += 1
            counts[4][queued_bucket] = counts[4].get(queued_bucket, 0) + 1

    def _drop_queued(self) -> None:
        """After the stop (loop): drop what waits in the outbox and in every peer link."""
        with self._lock:
            items = list(self._outbox.values())
            self._outbox.clear()
            self._outbox_bytes = 0
        self._count_drops(_at_stop(items))
        self.settle_thread_counts()
        for link in self.links.values():
            link.drop_queued()

    def _route_from(self, ep: Endpoint) -> None:
        """Route now what ``ep`` still has in the outbox (loop; it is about to close)."""
        with self._lock:
            keys = [k for k, item in self._outbox.items() if item[0] is ep]
            items = [self._outbox.pop(k) for k in keys]
            self._outbox_bytes -= sum(item[1].nbytes + MESSAGE_OVERHEAD for item in items)
        touched: set[PeerLink] = set()
        for _, encoded, targets, parts, pushed_at in items:
            try:
                self._route(ep, encoded, targets, parts, touched, pushed_at)
            except Exception:  # noqa: BLE001 - never lose the rest
                logger.exception("asip: routing a message from partition %d failed", ep.index)
        for link in touched:
            link.flush()

    def _route(self, ep: Endpoint, encoded: Encoded, targets: tuple | None, parts: list,
               touched: set[PeerLink], pushed_at: float, woken: set | None = None) -> None:
        stats = ep.stats
        directory = self._directory()
        current, me, index = self.current, self.address, ep.index
        local: list[int] = []
        remote: dict[str, list[int]] = {}
        if targets is None:  # every peer the directory knows
            local = [j for j in current if j != index]
            for j, (addr, _) in directory.items():
                if j != index and addr != me and j not in current:
                    remote.setdefault(addr, []).append(j)
        else:
            for j in targets:
                if j in current:
                    local.append(j)
                else:
                    entry = directory.get(j)
                    if entry is not None and entry[0] != me:
                        remote.setdefault(entry[0], []).append(j)
                    else:
                        stats.sent += 1
                        stats.dropped_no_route += 1
        faults = ep.faults
        if local:
            message = decode_message(local_item(encoded), run_id=self.run_id,
                                     n_partitions=self.n_partitions, limits=self.settings.limits)
            now = time.time()
            stats.queued_hist[_bucket(int((now - pushed_at) * 1e6))] += 1
            for j in local:
                stats.sent += 1
                if faults.dropped():
                    stats.dropped_injected += 1
                elif faults.delay:
                    self.aloop.call_later(faults.delay, self._deliver_delayed, j, message,
                                          encoded.nbytes)
                else:
                    self._deliver(j, message, encoded.nbytes, now, woken=woken)
        if not remote:
            return
        for addr, receivers in remote.items():
            stats.sent += len(receivers)
            if faults.dropped():
                stats.dropped_injected += len(receivers)
                continue
            item = [receivers, *parts]
            slot = None if encoded.slot is None else (ep.index, encoded.slot, tuple(receivers))
            if faults.delay:
                self.aloop.call_later(faults.delay, self._send_delayed, addr, stats, item,
                                      encoded.nbytes, len(receivers), slot, pushed_at)
                continue
            link = self._link(addr)
            link.enqueue(stats, item, encoded.nbytes, len(receivers), slot, pushed_at)
            touched.add(link)

    def _link(self, addr: str) -> PeerLink:
        link = self.links.get(addr)
        if link is None or link.closed:
            link = self.links[addr] = PeerLink(self, addr)
        return link

    def _send_delayed(self, addr: str, stats: ChannelStats, item: list, nbytes: int,
                      copies: int, slot: Any, pushed_at: float) -> None:
        if self.closed:
            return
        link = self._link(addr)
        link.enqueue(stats, item, nbytes, copies, slot, pushed_at)
        link.flush()

    def _deliver_delayed(self, j: int, message: Any, nbytes: int) -> None:
        if not self.closed:
            self._deliver(j, message, nbytes, time.time())

    def _deliver(self, j: int, message: Any, nbytes: int, now: float,
                 directory: dict | None = None, woken: set | None = None) -> None:
        """Put one message into partition ``j``'s current mailbox, or count why not.
        ``woken``: collect the mailbox to wake once the whole batch is in (else now)."""
        ep = self.current.get(j)
        if ep is None:
            self.undeliverable += 1
            return
        entry = (self._directory() if directory is None else directory).get(message.sender)
        if entry is not None and entry[1] > message.incarnation:
            ep.stats.zombie += 1  # the directory already knows a newer incarnation
            return
        if not ep.mailbox.put(message, nbytes, now, notify=woken is None):
            self.undeliverable += 1
        elif woken is not None:
            woken.add(ep.mailbox)

    def prune_links(self) -> None:
        """Close links to workers that no longer host any operator of this stage (loop)."""
        in_use = {addr for addr, _ in self._directory().values()}
        for addr in [a for a in self.links if a not in in_use]:
            self.links.pop(addr).close()

    # ------------------------------------------------------------------ receiving
    async def handle_stream(self, comm: Any, **_: Any) -> Any:
        """A peer worker's link (the handler for ``deliver_op``; see `asip._links`): this
        comm is read here, in a loop, until it closes. Acknowledgements are cumulative
        (the number of batches handled since the last one) and lazy: at once when a
        batch asks (its sender's window is half full), else every ``ACK_EVERY`` batches
        or ``ACK_DELAY`` s after the last, after the receivers were woken. Once this
        stage's handler is gone from the worker the next batch is answered
        ``["ended", handled]`` (the sender counts the rest as undeliverable) and the
        stream ends.

        Decoding is msgpack and raw array frames only (`asip._stream`): a message
        carrying anything else (a pickle, another serializer) is counted as
        ``malformed`` and never interpreted; a message over the size bound closes the
        stream."""
        from distributed.core import Status

        bound = 2 * self.settings.limits.max_bytes + 2 * BATCH_BYTES
        peer = comm.peer_address
        sock = take_socket(comm)
        if sock is not None:  # plain TCP: read by an asyncio transport, see _LinkProtocol
            await self._serve_link(sock, peer, bound)
            return Status.dont_reply
        self.streams.add(comm)
        acks = _Acks(lambda obj: drive(comm.write(obj), lambda exc: comm.abort()), self.aloop)
        try:
            comm.allow_offload = False  # replies never suspend on the offload thread
            await comm.write(True)  # the handshake's answer: this stage is here
            while True:
                try:
                    msg = await read_message(comm, bound)
                except MessageError as exc:
                    logger.warning("asip: refused a message from %s: %s", peer, exc)
                    self.malformed += 1
                    acks.handled(now=True)  # read whole: the stream goes on
                    continue
                woken: set[Mailbox] = set()
                if not self._on_link_message(msg, acks, woken):
                    await comm.write(["ended", acks.take()])  # the stage ended here
                    break
                _notify(woken)  # in this callback: no loop iteration before the wake-up
        except StreamError as exc:
            logger.warning("asip: closed a stream from %s: %s", peer, exc)
            self.malformed += 1
        except Exception:  # noqa: BLE001 - closed or aborted by either side
            logger.debug("asip: stream from %s ended", peer, exc_info=True)
        finally:
            acks.cancel()
            self.streams.discard(comm)
            comm.abort()
        return Status.dont_reply

    async def _serve_link(self, sock: Any, peer: str, bound: int) -> None:
        """Read an incoming link's socket with an asyncio transport until it closes."""
        link = _LinkProtocol(self, peer, bound)
        self.streams.add(link)
        try:
            await self.aloop.connect_accepted_socket(lambda: link, sock)
        except Exception:  # noqa: BLE001 - the connection is gone already
            logger.debug("asip: stream from %s ended", peer, exc_info=True)
            self.streams.discard(link)
            sock.close()
            return
        try:
            link.write(True)  # the handshake's answer: this stage is here
            await link.done
        finally:
            if not link.done.done():  # the worker closes: cancelled
                link.transport.abort()

    def _on_link_message(self, msg: Any, acks: _Acks, woken: set[Mailbox]) -> bool:
        """One message read off an incoming link: deliver its batch and acknowledge it
        (now when it asks, else lazily); its receivers' mailboxes go to ``woken``, which
        the caller wakes in the same callback once everything it read is in (one wake-up
        per read, not per batch: woken operator threads don't take the GIL from the loop
        mid-read, and the acknowledgements are written before them). False once this
        stage's handler is gone from the worker: the caller answers ``["ended",
        acks.take()]`` and ends the stream."""
        if self.closed or self.worker.handlers.get(self.deliver_op) != self.handle_stream:
            return False
        batch = msg.get("batch") if isinstance(msg, dict) else None
        self.handle_deliver(batch, woken)
        acks.handled(now=isinstance(msg, dict) and msg.get("ack") is True)
        return True

    def handle_deliver(self, batch: Any, woken: set[Mailbox] | None = None) -> bool:
        """A batch of wire items from a peer worker (raw frames arrive as memoryviews).

        ``woken``: collect the receivers' mailboxes, for the caller to wake once it has
        acknowledged the batch (`handle_stream`: in the same callback); without it they
        are woken in the loop's next iteration. The True it returns is the sender's
        acknowledgement (see `asip._links`)."""
        if not isinstance(batch, (list, tuple)):
            self.malformed += 1
            return True
        if self.stopped:  # count the copies by their receivers; never decode the payloads
            self._drop_arrivals(batch)
            return True
        now = time.time()
        directory = self._directory()
        later = woken is None
        if woken is None:
            woken = set()
        for entry in batch:
            try:
                self._receive(entry, now, directory, woken)
            except Exception:  # noqa: BLE001 - one bad item never costs the rest
                logger.debug("asip: dropped an item that failed on receipt", exc_info=True)
                self.malformed += 1
        if woken and later:  # each receiver once, after the whole batch and the reply
            self.aloop.call_soon(_notify, woken)
        return True

    def _drop_arrivals(self, batch: list | tuple) -> None:
        for entry in batch:
            try:
                targets = decode_targets(entry[0], self.n_partitions)
            except Exception:  # noqa: BLE001 - garbage after the stop is still garbage
                self.malformed += 1
                continue
            receivers = (list(self.current.values()) if targets is None
                         else [self.current.get(j) for j in targets])
            for ep in receivers:
                if ep is None:
                    self.late += 1
                else:
                    ep.stats.charge(dropped_at_stop=1)

    def _receive(self, entry: Any, now: float, directory: dict, woken: set) -> None:
        if not isinstance(entry, (list, tuple)) or len(entry) < 2:
            self.malformed += 1
            return
        try:
            targets = decode_targets(entry[0], self.n_partitions)
        except MessageError as exc:
            logger.debug("asip: dropped a malformed message: %s", exc)
            self.malformed += 1
            return
        try:
            message = decode_message(entry[1:], run_id=self.run_id,
                                     n_partitions=self.n_partitions, limits=self.settings.limits)
        except MessageError as exc:
            logger.debug("asip: dropped a malformed message: %s", exc)
            eps = [self.current.get(j) for j in (targets or [])]
            for ep in eps:
                if ep is not None:
                    ep.stats.malformed += 1
            if not any(eps):
                self.malformed += 1
            return
        nbytes = len(entry[1])
        for v in message.payload.values():
            nbytes += v.nbytes if isinstance(v, np.ndarray) else 8
        if targets is None:
            targets = [j for j in self.current if j != message.sender]
        for j in targets:
            self._deliver(j, message, nbytes, now, directory, woken)


class _LinkProtocol(asyncio.BufferedProtocol):
    """An incoming peer link over plain TCP, read by an asyncio transport (the socket
    taken from tornado by `asip._stream.take_socket`): the bytes of each arrival are
    parsed (`FrameReader`), decoded (msgpack and raw frames only), delivered and their
    receivers woken in the one callback that read them, with no future or extra loop
    iteration between the socket and the operator thread's wake-up."""

    def __init__(self, plane: DataPlane, peer: str, bound: int):
        self.plane, self.peer = plane, peer
        self.reader = FrameReader(bound)
        self.acks = _Acks(self.write, plane.aloop)
        self.transport: asyncio.Transport | None = None
        self.done = plane.aloop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def write(self, obj: Any) -> None:
        self.transport.write(frame(obj))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.handle(self.reader.updated(nbytes))

    def data_received(self, data: bytes) -> None:
        """Bytes read elsewhere (tests)."""
        self.handle(self.reader.feed(data))

    def handle(self, messages: list) -> None:
        """The messages one read completed: delivered, acknowledged, then the receivers
        woken, all before this callback returns."""
        plane = self.plane
        with _wake_after() as woken:
            for frames in messages:
                try:
                    msg = decode_frames(frames)
                except MessageError as exc:
                    logger.warning("asip: refused a message from %s: %s", self.peer, exc)
                    plane.malformed += 1
                    self.acks.handled(now=True)  # read whole: the stream goes on
                    continue
                if not plane._on_link_message(msg, self.acks, woken):
                    self.write(["ended", self.acks.take()])  # the stage ended here
                    self.transport.close()  # once that is written
                    return
        if self.reader.error is not None:
            logger.warning("asip: closed a stream from %s: %s", self.peer, self.reader.error)
            plane.malformed += 1
            self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.acks.cancel()
        self.plane.streams.discard(self)
        if not self.done.done():
            self.done.set_result(None)


class _Acks:
    """The receiving end's lazy, cumulative acknowledgements on one stream (loop only);
    ``write`` sends one reply on it."""

    def __init__(self, write: Callable[[Any], None], aloop: asyncio.AbstractEventLoop):
        self.write, self.aloop = write, aloop
        self.pending = 0  # batches handled and not yet acknowledged
        self.timer: asyncio.TimerHandle | None = None

    def handled(self, now: bool) -> None:
        """One more batch handled: acknowledge now when it asks (before `handle_stream`
        wakes the receivers, so woken operator threads don't hold up the sender's next
        batch), soon when ``ACK_EVERY`` are due (after the wake-up), or ``ACK_DELAY`` s
        after the last."""
        self.pending += 1
        if now:
            self.send()
        elif self.pending >= ACK_EVERY:
            self.aloop.call_soon(self.send)
        elif self.timer is None:
            self.timer = self.aloop.call_later(ACK_DELAY, self.send)

    def send(self) -> None:
        self.cancel()
        if not self.pending:
            return
        n, self.pending = self.pending, 0
        self.write(n)

    def take(self) -> int:
        """The batches handled and not yet acknowledged, now taken (for the last reply)."""
        self.cancel()
        n, self.pending = self.pending, 0
        return n

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _notify(mailboxes: set[Mailbox]) -> None:
    for mailbox in mailboxes:
        mailbox.notify()


def _at_stop(items: list) -> dict[Endpoint, list[int]]:
    """Outbox items dropped at the stop, as per-sender ``[overflow, conflated, at stop]``."""
    dropped: dict[Endpoint, list[int]] = defaultdict(lambda: [0, 0, 0])
    for item in items:
        dropped[item[0]][2] += 1
    return dropped
