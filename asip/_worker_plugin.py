"""The channel's worker side: mailboxes, peer links and the stream handler, one plugin per stage.

Only this module knows sockets and the event loop. Operators on the same worker
deliver in memory, straight from the pushing thread. Messages for other workers go
into an outbox that the event loop drains into one persistent distributed comm per
peer worker (connected in the background), one fire-and-forget ``asip_deliver``
handler call per batch, the way the P2P shuffle talks worker to worker. A dead or slow peer never blocks an operator: its queue is
bounded (oldest dropped, counted) and connects time out after
``asip.channel.connect-timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import deque
from typing import Any

from distributed.comm import connect
from distributed.comm.core import CommClosedError
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.utils import sync

from asip._channel import ChannelStats, Mailbox
from asip._directory import op_name
from asip._exceptions import MessageError
from asip.faults import DelayMessages, DropMessages
from asip._wire import Encoded, Limits, decode_message, local_item, wire_item

logger = logging.getLogger(__name__)

__all__ = ["ChannelPlugin", "ChannelSettings", "plugin_name"]


def plugin_name(run_id: str) -> str:
    return f"asip-channel-{run_id}"


class ChannelSettings:
    """The ``asip.channel``/``asip.trace`` settings a stage ships to its workers."""

    def __init__(self, limits: Limits, mailbox_size: int, peer_queue_size: int,
                 connect_timeout: float, reconnect_delay: float, report_interval: float):
        self.limits = limits
        self.mailbox_size = mailbox_size
        self.peer_queue_size = peer_queue_size
        self.connect_timeout = connect_timeout
        self.reconnect_delay = reconnect_delay
        self.report_interval = report_interval


class _MessageFaults:
    """Injected channel faults (DelayMessages, DropMessages) for messages sent by one operator."""

    def __init__(self, faults: tuple, sender: int):
        mine = [f for f in faults if f.applies_to(sender)]
        self.delay = sum(f.ms for f in mine if isinstance(f, DelayMessages)) / 1000.0
        self.drop = max((f.p for f in mine if isinstance(f, DropMessages)), default=0.0)

    def dropped(self) -> bool:
        return self.drop > 0 and random.random() < self.drop


class _PeerLink:
    """One persistent outgoing comm to a peer worker, written from the event loop only."""

    def __init__(self, plugin: ChannelPlugin, address: str):
        self.plugin = plugin
        self.address = address
        self.queue: deque[tuple[int, list]] = deque()
        self.wakeup = asyncio.Event()
        self.closed = False
        self.comm = None
        self.task = asyncio.ensure_future(self._run())

    def enqueue(self, sender: int, item: list) -> None:
        if len(self.queue) >= self.plugin.settings.peer_queue_size:
            old_sender, _ = self.queue.popleft()
            self.plugin.count(old_sender, "dropped_overflow")
        self.queue.append((sender, item))
        self.wakeup.set()

    def _drop_queue(self) -> None:
        while self.queue:
            sender, _ = self.queue.popleft()
            self.plugin.count(sender, "dropped_no_route")

    async def _run(self) -> None:
        plugin = self.plugin
        deliver = op_name("deliver", plugin.run_id)
        while not self.closed:
            try:
                self.comm = await connect(
                    self.address,
                    timeout=plugin.settings.connect_timeout,
                    name="asip-channel",
                    **plugin.worker.connection_args,
                )
            except Exception as exc:  # unreachable or dead peer: drop, wait, retry
                logger.debug("asip: connect to %s failed: %s", self.address, exc)
                self._drop_queue()
                await asyncio.sleep(plugin.settings.reconnect_delay)
                self._drop_queue()
                continue
            try:
                while not self.closed:
                    await self.wakeup.wait()
                    self.wakeup.clear()
                    if not self.queue:
                        continue
                    batch = [item for _, item in self.queue]
                    self.queue.clear()
                    # one fire-and-forget handler call per batch on a persistent comm
                    await self.comm.write({"op": deliver, "reply": False, "batch": batch})
            except (CommClosedError, OSError) as exc:
                logger.debug("asip: link to %s broke: %s", self.address, exc)
                self._drop_queue()
            finally:
                self.comm.abort()

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()
        if self.comm is not None:
            self.comm.abort()
        self.task.cancel()


class ChannelPlugin(WorkerPlugin):
    """Per-stage worker plugin: the push/poll channel between this worker's operators and peers."""

    idempotent = False

    def __init__(self, run_id: str, n_partitions: int, settings: ChannelSettings, faults: tuple):
        self.run_id = run_id
        self.n_partitions = n_partitions
        self.settings = settings
        self.faults = tuple(faults)
        self.name = plugin_name(run_id)

    # ------------------------------------------------------------------ lifecycle (event loop)
    async def setup(self, worker: Any) -> None:
        self.worker = worker
        self.address = worker.address
        self.loop = worker.loop
        self.mailboxes: dict[int, Mailbox] = {}
        self.stats: dict[int, ChannelStats] = {}
        self.message_faults: dict[int, _MessageFaults] = {}
        self.directory: dict[int, tuple[str, int]] = {}
        self.links: dict[str, _PeerLink] = {}
        self.outbox: deque[tuple[str, int, list]] = deque()
        self.reports: deque[list] = deque()
        self.undeliverable = 0
        self.go = threading.Event()
        self.stop = threading.Event()
        self.stop_reason: str | None = None
        self.closed = False
        self._flush_scheduled = False
        self._handlers = {
            op_name("deliver", self.run_id): self._handle_deliver,
            op_name("control", self.run_id): self._handle_control,
        }
        worker.handlers.update(self._handlers)
        self._reporter = asyncio.ensure_future(self._report_loop())

    async def teardown(self, worker: Any) -> None:
        self.closed = True
        self.stop_reason = self.stop_reason or "teardown"
        self.stop.set()
        self.go.set()
        for name in self._handlers:
            worker.handlers.pop(name, None)
        self._reporter.cancel()
        for link in self.links.values():
            link.close()
        for mailbox in list(self.mailboxes.values()):
            mailbox.close()
        self.links.clear()
        self.outbox.clear()

    # ------------------------------------------------------------------ operator-thread API
    def register(self, index: int) -> dict:
        """Open this operator's mailbox, then register it with the directory (one RPC)."""
        stats = ChannelStats()
        self.stats[index] = stats
        self.mailboxes[index] = Mailbox(self.settings.mailbox_size, stats)
        self.message_faults[index] = _MessageFaults(self.faults, index)
        reply = sync(self.loop, self._rpc, "register", index=index, address=self.address)
        self._apply_directory(reply["directory"])
        if reply["stopped"]:
            self._set_stopped(reply["stopped"])
        return reply

    def ready(self, index: int, incarnation: int) -> None:
        """Setup is done: count towards the start barrier."""
        self.loop.add_callback(self._fire, "ready", index=index, incarnation=incarnation)

    def unregister(self, index: int) -> dict[str, int]:
        """Close an operator's mailbox; returns its final channel statistics."""
        mailbox = self.mailboxes.pop(index, None)
        if mailbox is not None:
            mailbox.close()
        self.message_faults.pop(index, None)
        stats = self.stats.pop(index, ChannelStats())
        return stats.as_dict()

    def poll(self, index: int, timeout: float) -> list:
        if self.stop.is_set():
            timeout = 0.0
        return self.mailboxes[index].poll(timeout)

    def report(self, entry: list) -> None:
        """Queue one report ``[elapsed, index, incarnation, packed]`` for the next flush."""
        self.reports.append(entry)

    def push(self, sender: int, encoded: Encoded, to: int | None) -> None:
        """Deliver to local peers now and queue copies for remote peer workers; never blocks."""
        stats = self.stats[sender]
        faults = self.message_faults[sender]
        stats.pushed += 1
        stats.pushed_bytes += encoded.nbytes
        if to is None:
            local = [j for j in list(self.mailboxes) if j != sender]
            remote = {addr for j, (addr, _) in list(self.directory.items())
                      if j != sender and addr != self.address}
        elif to in self.mailboxes:
            local, remote = [to], set()
        elif to in self.directory:
            local, remote = [], {self.directory[to][0]}
        else:
            stats.dropped_no_route += 1
            return
        code = -1 if to is None else to
        for j in local:
            if faults.dropped():
                stats.dropped_injected += 1
                continue
            stats.sent += 1
            if faults.delay:
                self.loop.add_callback(self._later, faults.delay, self._deliver_local, j, encoded)
            else:
                self._deliver_local(j, encoded)
        if not remote:
            return
        item = [code, *wire_item(encoded, self.settings.limits)]
        for addr in remote:
            if faults.dropped():
                stats.dropped_injected += 1
                continue
            stats.sent += 1
            if faults.delay:
                self.loop.add_callback(self._later, faults.delay, self._send_later, addr, sender, item)
            else:
                self.outbox.append((addr, sender, item))
        if self.outbox and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.add_callback(self._flush)

    # ------------------------------------------------------------------ internals
    def count(self, index: int, field: str) -> None:
        stats = self.stats.get(index)
        if stats is not None:
            setattr(stats, field, getattr(stats, field) + 1)

    def _later(self, delay: float, func: Any, *args: Any) -> None:
        asyncio.get_running_loop().call_later(delay, func, *args)

    def _deliver_local(self, index: int, encoded: Encoded) -> None:
        mailbox = self.mailboxes.get(index)
        if mailbox is None:
            self.undeliverable += 1
            return
        message = decode_message(local_item(encoded), run_id=self.run_id,
                                 n_partitions=self.n_partitions, limits=self.settings.limits)
        mailbox.put(message, encoded.nbytes)

    def _send_later(self, addr: str, sender: int, item: list) -> None:
        self.outbox.append((addr, sender, item))
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed:
            self.outbox.clear()
            return
        while self.outbox:
            addr, sender, item = self.outbox.popleft()
            link = self.links.get(addr)
            if link is None or link.closed:
                link = self.links[addr] = _PeerLink(self, addr)
            link.enqueue(sender, item)

    def _handle_deliver(self, batch: Any) -> None:
        """A batch of messages from a peer worker (raw frames arrive as plain memoryviews)."""
        if not isinstance(batch, (list, tuple)):
            self.undeliverable += 1
            return
        for entry in batch:
            self._receive(entry)

    def _receive(self, entry: Any) -> None:
        to = entry[0] if isinstance(entry, (list, tuple)) and entry else None
        if not isinstance(to, int) or to < -1 or to >= self.n_partitions:
            self.undeliverable += 1
            return
        try:
            message = decode_message(entry[1:], run_id=self.run_id,
                                     n_partitions=self.n_partitions, limits=self.settings.limits)
        except MessageError as exc:
            logger.debug("asip: dropped a malformed message: %s", exc)
            targets = [to] if to >= 0 else list(self.mailboxes)
            for j in targets:
                self.count(j, "malformed")
            if not any(j in self.stats for j in targets):
                self.undeliverable += 1
            return
        nbytes = sum(getattr(v, "nbytes", 8) for v in message.payload.values())
        targets = [to] if to >= 0 else [j for j in list(self.mailboxes) if j != message.sender]
        delivered = False
        for j in targets:
            mailbox = self.mailboxes.get(j)
            if mailbox is not None:
                mailbox.put(message, nbytes)
                delivered = True
        if not delivered:
            self.undeliverable += 1

    def _handle_control(self, kind: str, entries: list | None = None,
                        reason: str | None = None) -> None:
        if kind == "directory":
            self._apply_directory(entries or [])
        elif kind == "go":
            self.go.set()
        elif kind == "stop":
            self._set_stopped(reason or "stopped")

    def _set_stopped(self, reason: str) -> None:
        self.stop_reason = reason
        self.stop.set()
        self.go.set()
        for mailbox in list(self.mailboxes.values()):
            mailbox.wake()

    def _apply_directory(self, entries: list) -> None:
        """Merge a directory snapshot; the newest incarnation of each partition wins."""
        directory = dict(self.directory)
        for index, addr, incarnation in entries:
            current = directory.get(index)
            if current is None or current[1] <= incarnation:
                directory[index] = (addr, incarnation)
        self.directory = directory
        self.loop.add_callback(self._prune_links)

    def _prune_links(self) -> None:
        """Close links to workers that no longer host any operator of this stage."""
        in_use = {addr for addr, _ in self.directory.values()}
        for addr in [a for a in self.links if a not in in_use]:
            self.links.pop(addr).close()

    async def _rpc(self, kind: str, **kwargs: Any) -> Any:
        return await getattr(self.worker.scheduler, op_name(kind, self.run_id))(**kwargs)

    async def _fire(self, kind: str, **kwargs: Any) -> None:
        try:
            await self._rpc(kind, **kwargs)
        except Exception:  # the scheduler side may already be gone at teardown
            logger.debug("asip: %s to the scheduler failed", kind, exc_info=True)

    async def _report_loop(self) -> None:
        """A few times a second: beat for the local operators (see `_beat`)."""
        while not self.closed:
            await asyncio.sleep(self.settings.report_interval)
            if self.reports or self.mailboxes:
                await self._beat()

    async def _beat(self) -> None:
        """Send queued reports and a liveness beat for the local operators, and catch up
        on the directory, start and stop (in case a broadcast was missed)."""
        reports = []
        while self.reports:
            reports.append(self.reports.popleft())
        try:
            state = await self._rpc("report", reports=reports, alive=list(self.mailboxes))
        except Exception:  # the scheduler side may already be gone at teardown
            logger.debug("asip: report to the scheduler failed", exc_info=True)
            return
        if not isinstance(state, dict) or self.closed:
            return
        self._apply_directory(state["directory"])
        if state["started"]:
            self.go.set()
        if state["stopped"]:
            self._set_stopped(state["stopped"])

    def flush_reports(self) -> None:
        """From an operator thread that is about to return: deliver its last reports now,
        so they reach the driver before its result does."""
        if self.reports and not self.closed:
            sync(self.loop, self._beat)
