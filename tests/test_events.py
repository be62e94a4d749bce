"""The directory's events reach the driver through distributed's public topic subscription:
from an operator's first step, once per client, and nothing of a finished run is kept."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

import asip
from runtime_operators import Gossip
from test_stage import assert_clean

pytestmark = pytest.mark.timeout(120)

EVENT_TOPIC = "asip-events"  # asip._events.EVENT_TOPIC (imported late: this ran on main too)


def blocks(n=2):
    return [np.full((4, 2), float(i)) for i in range(n)]


def asip_topics(client) -> set:
    return {t for t in client._event_handlers if t.startswith("asip")}


def test_a_fresh_clients_first_stage_hears_every_operators_first_step(client):
    """The client subscribes as the first stage starts: the start event and the report of
    each operator's one step (sent before the subscription could have reached the
    scheduler) all arrive."""
    assert asip_topics(client) == set()
    res = asip.Stage(Gossip(), blocks(), client=client, max_time=60.0, max_steps=1).run()
    assert sorted((e.partition, e.metrics["steps"]) for e in res.trace) == [(0, 1), (1, 1)]
    assert "launch_go_heard" in res.timings and res.steps == [1, 1]
    assert_clean(client)


def test_a_client_subscribes_once_and_holds_nothing_of_finished_runs(client):
    """Three stages: one asip topic on the client (a topic per run grew the client's
    handlers, each entry kept 10 s), and no run's handler is held once it returned."""
    for _ in range(3):
        res = asip.Stage(Gossip(), blocks(), client=client, max_time=60.0, max_steps=2).run()
        assert {e.partition for e in res.trace} == {0, 1}
    assert asip_topics(client) == {EVENT_TOPIC}
    from asip import _events

    assert _events._runs == {}
    assert_clean(client)


def test_a_late_event_of_a_finished_run_is_dropped_quietly(client, caplog):
    """A report already on its way when its run ended reaches the client after the run let
    go: dropped, with no error from distributed ("No event handler known ...")."""
    asip.Stage(Gossip(), blocks(), client=client, max_time=60.0, max_steps=2).run()
    late = (time.time(), ["0123456789ab", "report", 0, 0, b""])
    with caplog.at_level(logging.INFO, logger="distributed"):
        client.sync(client._handle_event, EVENT_TOPIC, late)
        client.sync(client._handle_event, EVENT_TOPIC, late)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert asip_topics(client) == {EVENT_TOPIC}


def test_route_hands_a_runs_events_to_its_handler_without_the_run_id():
    from asip import _events

    assert _events.EVENT_TOPIC == EVENT_TOPIC
    got = []
    _events._runs["r1"] = got.append
    try:
        _events.route((1.5, ["r1", "go", 3]))
        _events.route((2.0, ["r2", "go", 4]))  # no such run: dropped
    finally:
        _events.forget("r1")
    assert got == [(1.5, ["go", 3])] and "r1" not in _events._runs
