"""The shared echo/rejoin protocol (`_rejoin.PeerStates`) on hand-made messages. No cluster."""

from __future__ import annotations

import numpy as np
from _sim import Msg

from asip.algorithms._rejoin import PeerStates


def state_msg(sender, incarnation, k, x, echo=False, sent_at=0.0):
    payload = {"x": np.full(2, float(x)), "k": k}
    if echo:
        payload["echo"] = True
    return Msg(sender, incarnation, payload, sent_at)


def test_keeps_the_latest_state_per_peer_and_ignores_stale_ones():
    table = PeerStates(("x",), "k", expecting=False)
    echoes, own = table.absorb([state_msg(1, 0, 5, 5.0), state_msg(1, 0, 3, 3.0),
                                state_msg(2, 0, 1, 1.0), Msg(2, 0, {"other": 1}, 0.0)])
    assert echoes == () and own is None
    assert {s: (p.clock, p.state["x"][0]) for s, p in table.peers.items()} == {1: (5, 5.0),
                                                                                 2: (1, 1.0)}
    assert table.ready(3) and not table.ready(4)


def test_a_restarted_peer_gets_its_old_state_echoed_and_the_old_one_stays_in_use():
    table = PeerStates(("x",), "k", expecting=False)
    table.absorb([state_msg(1, 0, 7, 7.0)])
    echoes, _ = table.absorb([state_msg(1, 1, 0, 0.0)])  # incarnation 1 announces itself
    assert len(echoes) == 1 and echoes[0].to == 1
    assert echoes[0].payload["echo"] is True and echoes[0].payload["k"] == 7
    np.testing.assert_array_equal(echoes[0].payload["x"], [7.0, 7.0])
    assert table.peers[1].clock == 7  # still the old state
    table.absorb([state_msg(1, 1, 8, 8.0)])  # once it has moved past, its new state counts
    assert (table.peers[1].incarnation, table.peers[1].clock) == (1, 8)


def test_a_restarted_operator_recovers_its_own_state_once():
    table = PeerStates(("x",), "k", expecting=True)
    assert not table.ready(2)
    table.absorb([state_msg(1, 0, 4, 4.0)])
    assert not table.ready(2)  # a peer's state, but not yet our echo
    _, own = table.absorb([state_msg(1, 0, 9, 9.0, echo=True)])
    assert own["k"] == 9 and own["x"][0] == 9.0 and table.ready(2)
    _, again = table.absorb([state_msg(1, 0, 10, 10.0, echo=True)])
    assert again is None  # only the first echo
    late = PeerStates(("x",), "k", expecting=True)
    late.stop_expecting()
    assert late.absorb([state_msg(1, 0, 9, 9.0, echo=True)])[1] is None
