"""Same-process hand-over: a push whose receivers all run in this process skips the event loop.

Workers that are threads of one process (``LocalCluster(processes=False)``: ``inproc://``
addresses) share one event-loop thread with the scheduler, the client and each other.
Through that loop a push costs two callbacks on the sending worker (drain, link write),
a read, a decode and an acknowledgement on the receiving one, all holding the GIL that
the operator threads need (measured: about a sixth of the GIL's busy time in an
asip-cocoa fit on two such workers). So when every receiver of a push is open on a
worker of this process, the pushing thread puts the message into their mailboxes itself
(`hand_over`): decoded once from the push's private array copies (read-only, as on the
loop's path), through `Mailbox.put` (schema, byte bound, conflation, stop: counted there,
under the stats' lock), after the same incarnation check (a zombie sender takes the
loop's path, which counts it). Injected drops (`asip.faults.DropMessages`) apply per
receiver; a push with an injected delay, or with anything of this worker's still waiting
for the loop (outbox, a link's queue or unacknowledged batches), takes the loop's path,
so a push never overtakes an earlier one. The sender's counters (``sent``, ``handed``,
``dropped_injected``, ``undeliverable``, ``queued_hist``), which the loop also writes, are
left with the plane and charged by its loop (`DataPlane.settle_thread_counts`: at the
reports, at the stop and when the sender closes), as a direct write's ``sent`` is.
``asip.channel.in-process-handover: false`` turns this off.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from asip._channel import _bucket
from asip._exceptions import MessageError
from asip._wire import Encoded, decode_message, local_item

if TYPE_CHECKING:
    from asip._dataplane import DataPlane, Endpoint

__all__ = ["hand_over", "register", "unregister"]

# (run id, worker address) -> that worker's data plane, for the workers of this process
_PLANES: dict[tuple[str, str], DataPlane] = {}
_LOCK = threading.Lock()


def register(plane: DataPlane) -> None:
    """Make an in-process worker's plane reachable by its peers' pushing threads."""
    if plane.address.startswith("inproc://"):
        with _LOCK:
            _PLANES[(plane.run_id, plane.address)] = plane


def unregister(plane: DataPlane) -> None:
    with _LOCK:
        if _PLANES.get((plane.run_id, plane.address)) is plane:
            del _PLANES[(plane.run_id, plane.address)]


def hand_over(plane: DataPlane, ep: Endpoint, encoded: Encoded, targets: tuple | None,
              pushed_at: float) -> bool:
    """Put one push into every receiver's mailbox from the calling operator thread (True);
    False when it must take the loop's path (see the module doc)."""
    if (ep.closed or ep.faults.delay or threading.get_ident() == plane._loop_thread
            or (plane.run_id, plane.address) not in _PLANES):
        return False
    receivers = _receivers(plane, ep, targets)
    if receivers is None:
        return False
    with plane._lock:  # nothing of this worker's waits for the loop: it is overtaken by nothing
        if plane._outbox or plane._scheduled or plane._routing or plane.stopped:
            return False
    for host, _ in receivers:
        link = plane.links.get(host.address) if host is not plane else None
        if link is not None and (link.queue or link.unacked or link.rest_pending):
            return False
    try:
        message = decode_message(local_item(encoded), run_id=plane.run_id,
                                 n_partitions=plane.n_partitions, limits=plane.settings.limits)
    except MessageError:
        return False  # the loop's path counts what is wrong with it
    now = time.time()
    injected = lost = 0
    for _, receiver in receivers:
        if ep.faults.dropped():
            injected += 1
        elif not receiver.mailbox.put(message, encoded.nbytes, now):
            lost += 1  # closed since it was looked up
    plane.charge_handed(ep, len(receivers), injected, lost, _bucket(int((now - pushed_at) * 1e6)))
    return True


def _receivers(plane: DataPlane, ep: Endpoint, targets: tuple | None) -> list | None:
    """``(plane, endpoint)`` of every receiver, each open on a worker of this process, or
    None when one is not (another process, unknown, or a zombie sender there)."""
    directory, current = plane._directory(), plane.current
    if targets is None:  # every peer: those open here and those the directory knows
        targets = tuple(sorted((set(current) | set(directory)) - {ep.index}))
    out: list[tuple[Any, Any]] = []
    for j in targets:
        host = plane
        if j not in current:
            entry = directory.get(j)
            if entry is None or entry[0] == plane.address:
                return None
            host = _PLANES.get((plane.run_id, entry[0]))
            if host is None or host.closed:
                return None
        receiver = host.current.get(j)
        sender = host._directory().get(ep.index)
        if receiver is None or sender is not None and sender[1] > ep.incarnation:
            return None
        out.append((host, receiver))
    return out
