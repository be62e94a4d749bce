"""A nanny whose worker a real SIGKILL took starts its new process only when the stage ends
(`asip._respawn`), unless no other worker is alive to take the lost operators; the hold is
installed once per cluster and holds nothing between stages."""

from __future__ import annotations

import os
import signal
import time

import dask
import numpy as np
import pytest
from distributed import Client

import asip
from asip._respawn import HOLD_NAME
from asip.faults import KillWorker
from _ready import ready
from conftest import _local_cluster
from runtime_operators import Gossip, StopsEarly
from test_stage import assert_clean

pytestmark = pytest.mark.timeout(240)

KILL_AT = 0.5


def _run_and_count_processes(client, cluster, n_parts: int, hold: str):
    """A stage with partition ``n_parts - 1``'s worker SIGKILLed at `KILL_AT` s; the
    worker processes alive 1.5 s after the kill (the nannies run in this process)."""
    parts = [np.random.default_rng(i).random((200, 3)) for i in range(n_parts)]
    seen = []

    def sample(entries):
        if not seen and max(e.time for e in entries) >= KILL_AT + 1.5:
            seen.append(sum(n.is_alive() for n in cluster.workers.values()))

    with dask.config.set({} if hold is None else {"asip.stage.respawn-hold": hold}):
        res = asip.Stage(Gossip(), parts, client=client, max_time=KILL_AT + 3.0,
                         on_trace=sample, faults=[KillWorker(n_parts - 1, at=KILL_AT)]).run()
    assert [(r.partition, r.incarnation) for r in res.restarts] == [(n_parts - 1, 1)]
    assert seen, "no report came 1.5 s after the kill"
    return res, seen[0]


@pytest.mark.parametrize("hold", ["10s", None])  # None: the default
def test_the_killed_workers_respawn_waits_for_the_stage_end(_fault_cluster, fresh_cluster, hold):
    """The lost operator restarted on the survivor; no new process took a core meanwhile;
    once the stage ended the nanny started it and nothing of the hold is left."""
    client = fresh_cluster
    res, alive = _run_and_count_processes(client, _fault_cluster, 2, hold)
    assert alive == 1, "the nanny respawned its worker while the stage ran"
    assert not [e for e in res.timeline if e.kind == "joined"]
    assert res.stopped_by == "max_time" and not res.missing
    assert res.results[1]["incarnation"] == 1 and res.results[1]["counts"].sum() > 0
    client.wait_for_workers(2, timeout=120)  # the hold ended with the stage
    assert_clean(client)


def test_respawn_hold_0_respawns_at_once(_fault_cluster, fresh_cluster):
    client = fresh_cluster
    _, alive = _run_and_count_processes(client, _fault_cluster, 2, "0")
    assert alive == 2
    client.wait_for_workers(2, timeout=120)
    assert_clean(client)


class _Back(Exception):
    """The restarted operator reported: the stage has shown what it had to."""


def test_the_last_workers_respawn_is_never_held():
    """With no other worker alive, the lost operator can only go to the new process: it
    starts at once, and the operator is back long before the hold (60 s) would end."""
    parts = [np.random.default_rng(0).random((200, 3))]

    def back(entries):
        if any(e.incarnation == 1 for e in entries):
            raise _Back()

    with _local_cluster(1, 1) as cluster, Client(cluster) as client, \
            dask.config.set({"asip.stage.respawn-hold": "60s"}):
        stage = asip.Stage(Gossip(), parts, client=client, max_time=45.0, on_trace=back,
                           faults=[KillWorker(0, at=KILL_AT)])
        with pytest.raises(_Back):
            stage.run()
        assert [(r.partition, r.incarnation) for r in stage.result.restarts] == [(0, 1)]
        assert_clean(client)


def _has_imported(module: str) -> bool:
    """Run on a worker: whether it has imported ``module``."""
    import sys

    return module in sys.modules


@pytest.mark.exclusive  # the restart must land inside the stage's window after the kill
def test_with_respawn_wait_a_killed_stage_returns_with_the_new_process_up_and_warm(
        _fault_cluster, fresh_cluster):
    """With ``asip.stage.respawn-wait`` (the respawn held to the stage's end, then waited
    for): once ``run()`` returns, the killed worker's new process is registered and has
    imported the operator's module, so a next stage never runs beside its start."""
    client = fresh_cluster
    parts = [np.random.default_rng(i).random((200, 3)) for i in range(2)]
    with dask.config.set({"asip.stage.respawn-wait": "60s"}):
        res = asip.Stage(Gossip(), parts, client=client, max_time=KILL_AT + 2.0,
                         faults=[KillWorker(1, at=KILL_AT)]).run()  # the restart in the run
    workers = client.scheduler_info()["workers"]  # no wait_for_workers: as run() left it
    loaded = client.run(_has_imported, Gossip.__module__)
    assert [(r.partition, r.incarnation) for r in res.restarts] == [(1, 1)]
    assert len(workers) == 2, f"the killed worker's new process is not up: {list(workers)}"
    assert all(loaded.values()), f"a worker has not loaded the operator: {loaded}"
    assert res.timings["respawn_wait"] > 0
    assert_clean(client)


def test_a_stage_beside_a_held_respawn_ends_without_a_nanny_error(_fault_cluster, fresh_cluster,
                                                                 caplog):
    """The next stage starts while the killed worker's new process is still starting (the
    hold released at the first stage's end): its hold reaches only the nanny with a live
    worker; removing it at its end from the other, whose worker joined meanwhile, is no
    error (distributed logged 'Nanny plugin ... failed to teardown' with a KeyError)."""
    client = fresh_cluster
    parts = [np.random.default_rng(i).random((200, 3)) for i in range(2)]
    with dask.config.set({"asip.stage.respawn-hold": "10s"}):
        asip.Stage(Gossip(), parts, client=client, max_time=KILL_AT + 0.5,
                   faults=[KillWorker(1, at=KILL_AT)]).run()
        alive = sum(n.is_alive() for n in _fault_cluster.workers.values())

        def back(entries):
            if len(client.scheduler_info()["workers"]) == 2:
                raise _Back()

        with caplog.at_level("ERROR", logger="distributed.nanny"), pytest.raises(_Back):
            asip.Stage(Gossip(), parts, client=client, max_time=60.0, on_trace=back,
                       oversubscribe=True).run()
    assert alive == 1, "the killed worker was back before the next stage: nothing tested"
    assert not [r for r in caplog.records if "teardown" in r.getMessage()]
    assert_clean(client)


def _holds_on_nannies(cluster, timeout: float = 10.0) -> list:
    """Every nanny's installed hold, once each has one (the stage does not wait for it)."""
    deadline = time.monotonic() + timeout
    while True:
        holds = [n.plugins.get(HOLD_NAME) for n in cluster.workers.values()]
        if all(holds) or time.monotonic() > deadline:
            return holds
        time.sleep(0.05)


def _quick_stage(client) -> None:
    parts = [np.ones((10, 3)), np.ones((10, 3))]
    asip.Stage(StopsEarly(after=0.0), parts, client=client, max_time=5.0).run()


def test_the_hold_is_installed_once_and_stays_between_stages(_fault_cluster, fresh_cluster):
    """A stage's hold is not installed on the nannies and removed again each stage (two
    broadcasts to every nanny, ~2 ms of a small stage): the first stage installs it, later
    ones, from this client or another, find it there."""
    client = fresh_cluster
    _quick_stage(client)
    first = _holds_on_nannies(_fault_cluster)
    assert all(first), f"no respawn hold on a nanny after a stage: {first}"
    _quick_stage(client)
    with Client(_fault_cluster) as other:
        _quick_stage(other)
    assert _holds_on_nannies(_fault_cluster) == first, "the hold was installed again"
    assert [p for p in client.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.nanny_plugins)) if "asip" in p] == [HOLD_NAME]
    assert_clean(client)


def test_a_nanny_whose_worker_was_down_at_the_first_stage_gets_the_hold_later():
    """distributed's nanny plugins reach the nannies of live workers: one whose worker was
    being respawned when the first stage installed the hold gets it at a later stage."""
    with _local_cluster(2, 1) as cluster, Client(cluster) as client, \
            dask.config.set({"asip.stage.respawn-hold": "10s"}):
        ready(client, 2, timeout=120)
        victim = sorted(client.scheduler_info()["workers"])[1]
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        while victim in client.scheduler_info()["workers"]:
            time.sleep(0.01)
        asip.Stage(StopsEarly(after=0.0), [np.ones((10, 3))], client=client,
                   max_time=5.0).run()
        holds = [n.plugins.get(HOLD_NAME) for n in cluster.workers.values()]
        assert sum(h is not None for h in holds) == 1, f"not one nanny down: {holds}"
        ready(client, 2, timeout=120)
        _quick_stage(client)
        assert all(_holds_on_nannies(cluster)), "the respawned worker's nanny has no hold"


def test_a_hold_installed_before_a_restart_still_holds(_fault_cluster, fresh_cluster):
    """The hold stays on the nannies through ``client.restart()`` (new worker processes)
    and holds the next stage's killed worker's respawn without being installed again."""
    client = fresh_cluster
    _quick_stage(client)
    installed = _holds_on_nannies(_fault_cluster)
    client.restart()
    ready(client, 2, timeout=120)
    res, alive = _run_and_count_processes(client, _fault_cluster, 2, "10s")
    assert alive == 1, "the nanny respawned its worker while the stage ran"
    assert res.stopped_by == "max_time" and not res.missing
    assert _holds_on_nannies(_fault_cluster) == installed and all(installed)
    client.wait_for_workers(2, timeout=120)  # the hold ended with the stage
    assert_clean(client)


def test_between_stages_a_killed_worker_respawns_at_once(_fault_cluster, fresh_cluster):
    """The hold left on the nannies holds only while a stage runs: a worker killed after a
    stage with a 60 s hold is back well before that."""
    client = fresh_cluster
    with dask.config.set({"asip.stage.respawn-hold": "60s"}):
        _quick_stage(client)
    assert all(_holds_on_nannies(_fault_cluster)), "no respawn hold on the nannies"
    victim = sorted(client.scheduler_info()["workers"])[0]
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 45.0
    while time.monotonic() < deadline:
        workers = client.scheduler_info()["workers"]
        if len(workers) == 2 and victim not in workers:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the killed worker was not respawned within 45 s (the hold is 60 s)")
    ready(client, 2, timeout=120)
    assert_clean(client)
