"""The driver's side of the directory's events: one topic per client, routed to its runs.

A stage's directory pushes its events (start, restarts, lost and hung operators,
reports) to the driver's client on `EVENT_TOPIC`, each tagged with its run id. The
client subscribes to that topic once, with distributed's public ``subscribe_topic``;
`route` hands each event to the run that `listen` registered for it, and drops the
events of a run that has let go of it (a report already on its way when the run ended).
A topic per run needed distributed's private handler table: ``unsubscribe_topic`` keeps
the handler (distributed 2026.8), and an event for a topic without one logs an error.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable

__all__ = ["EVENT_TOPIC", "forget", "listen", "route"]

#: the topic on which every stage's directory pushes events to its driver's client
EVENT_TOPIC = "asip-events"

_runs: dict[str, Callable[[tuple], None]] = {}  # run id -> its handler (client's loop)
_subscribed: weakref.WeakSet = weakref.WeakSet()  # clients subscribed to EVENT_TOPIC
_lock = threading.Lock()


def route(event: tuple) -> None:
    """On the client's event loop: ``(time, [run id, kind, *fields])`` to its run's handler
    as ``(time, [kind, *fields])``; dropped when that run is over."""
    t, (run_id, *msg) = event
    handler = _runs.get(run_id)
    if handler is not None:
        handler((t, msg))


def listen(client: Any, run_id: str, handler: Callable[[tuple], None]) -> None:
    """Hand run ``run_id``'s events to ``handler`` from now on (any thread). The client's
    handler is in place when this returns, so no event of a run started afterwards is
    missed: the directory sends to the client by its id, whatever the scheduler has heard
    of the subscription yet."""
    with _lock:
        if client not in _subscribed:
            client.subscribe_topic(EVENT_TOPIC, route)
            _subscribed.add(client)
    _runs[run_id] = handler


def forget(run_id: str) -> None:
    """Run ``run_id`` takes no more events (its late ones are dropped); it is not held."""
    _runs.pop(run_id, None)
