"""The echo/rejoin protocol the asynchronous solvers share: latest state per peer, lost state back.

Asynchronous operators push their *state* (not increments) with a clock that
only grows -- ASIP-SGD its dual ``(gbar, t)``, ASIP-ADMM its ``(x, y, k)`` -- so
a receiver keeps only the latest per sender, ordered by ``(incarnation,
clock)``; a dropped message is replaced by the next and a late one is ignored.

A restarted operator (incarnation > 0) has lost its state, but its peers still
hold the last one they heard. The protocol, written once here:

1. the restarted operator announces itself with ``clock = 0``;
2. a peer that knew an older incarnation with a larger clock keeps using that
   old state and *echoes* it back to the sender (``echo=True``);
3. the restarted operator takes the first echo as its own lost state
   (`PeerStates.absorb` returns it once, while `expecting` it) and waits --
   up to the solver's ``rejoin_wait`` -- until it has that echo and a state
   from every peer (`PeerStates.ready`) before it takes a step. A solver may go on
   expecting after that wait (asip-admm does): an echo that comes later means a peer still
   uses the old state and ignores the new incarnation's clock below it.

A solver supplies the state's field names, its clock key, and what to do with
the recovered state; `PeerStates` does the ordering, the echoes and the
bookkeeping. Only the operator's own thread touches it.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np

from ._base import Outgoing

__all__ = ["Peer", "PeerStates"]

logger = logging.getLogger(__name__)


class Peer(NamedTuple):
    """The latest state heard from one peer."""

    incarnation: int
    clock: int
    state: dict  # the state's fields (arrays copied out of the message)
    latency: float  # seconds from the peer's push to its arrival here, clamped to [0, 10]


class PeerStates:
    """Latest state per peer, echoes owed to restarted peers, and this operator's echoed state.

    Parameters
    ----------
    fields : tuple of str
        The payload keys that make up a state (what is stored and echoed).
    clock : str
        The payload key of the state's clock (an int that grows; 0 announces a restart).
    expecting : bool
        Whether this operator restarted and waits for its own state to be echoed.
    """

    def __init__(self, fields: tuple[str, ...], clock: str, expecting: bool):
        self.fields = tuple(fields)
        self.clock = clock
        self.expecting = bool(expecting)
        self.recovered = False
        self.peers: dict[int, Peer] = {}

    def __len__(self) -> int:
        return len(self.peers)

    def values(self):
        return self.peers.values()

    def absorb(self, inbox) -> tuple[tuple[Outgoing, ...], dict | None]:
        """Take in messages; returns ``(echoes owed to restarted peers, own echoed state or None)``."""
        echoes, own = [], None
        wall = time.time()
        for msg in inbox:
            pl = msg.payload
            if self.clock not in pl or any(f not in pl for f in self.fields):
                continue
            clock = int(pl[self.clock])
            if pl.get("echo"):  # our own state from before our restart, as a peer last saw it
                if self.expecting and not self.recovered and clock > 0:
                    self.recovered = True
                    own = {f: _copy(pl[f]) for f in self.fields}
                    own[self.clock] = clock
                continue
            old = self.peers.get(msg.sender)
            if old is not None and msg.incarnation > old.incarnation and clock < old.clock:
                # a restarted peer without its state yet: keep using the old one and send it back
                payload = dict(old.state)
                payload.update({self.clock: old.clock, "echo": True})
                echoes.append(Outgoing(payload, to=msg.sender))
                continue
            if clock > 0 and (old is None or (msg.incarnation, clock) >= (old.incarnation,
                                                                          old.clock)):
                latency = min(max(wall - float(getattr(msg, "sent_at", wall)), 0.0), 10.0)
                self.peers[msg.sender] = Peer(msg.incarnation, clock,
                                              {f: _copy(pl[f]) for f in self.fields}, latency)
        return tuple(echoes), own

    def ready(self, n_partitions: int) -> bool:
        """Whether a restarted operator has its echo and a state from every peer."""
        return (self.recovered or not self.expecting) and len(self.peers) >= n_partitions - 1

    def stop_expecting(self) -> None:
        """No echo is wanted any more (the operator went on without one)."""
        self.expecting = False


def _copy(v):
    return np.array(v, dtype=np.float64) if isinstance(v, (np.ndarray, list)) else v
