"""asip.connect()'s embedded cluster freezes the driver's garbage collector (asip.driver.gc-freeze).

Real LocalClusters (one worker process each); the freeze is process-global, so every test
checks it against the count before it and leaves the collector as it found it.
"""

from __future__ import annotations

import gc
import weakref

import dask
import pytest
from distributed import Client, LocalCluster

import asip
from asip import _driver_gc

pytestmark = pytest.mark.timeout(120)

OPTIONS = {"n_workers": 1, "dashboard": False, "silence_logs": 40}


class _Node:
    """A cycle's member the collector tracks and a weakref can watch."""

    def __init__(self) -> None:
        self.me = self


def _tracked(obj) -> bool:
    """Whether a collection of generations 0-2 walks ``obj`` (frozen objects are in none)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
def collector():
    """asip's holders before the test (an embedded client the process kept, e.g. a fit's
    default one, holds one); the test leaves them as it found them. An application's own
    freeze would make the checks meaningless: none may be left from elsewhere."""
    held = _driver_gc.holders()
    assert held or not gc.get_freeze_count(), "objects frozen outside asip"
    yield held
    assert _driver_gc.holders() == held
    if not held:
        gc.unfreeze()


def test_embedded_cluster_freezes_until_its_client_closes(collector):
    alive = [_Node()]  # alive at connect: frozen
    cycle = _Node()  # alive at connect, garbage (a cycle) during the cluster's life
    dead = weakref.ref(cycle)
    assert _tracked(alive)
    with asip.connect(**OPTIONS) as client:
        assert client.status == "running"
        assert isinstance(client, Client)
        assert repr(client).startswith("<Client: ") and client.id.startswith("Client-")
        assert gc.get_freeze_count() > 10_000  # the imports' objects, at least
        assert _driver_gc.holders() == collector + 1
        assert not _tracked(alive)
        del cycle
        gc.collect()
        assert dead() is not None  # frozen: a full collection does not walk it
    assert _driver_gc.holders() == collector
    if collector:  # another embedded client still runs: still frozen
        assert not _tracked(alive)
        return
    assert gc.get_freeze_count() == 0  # the close unfroze them
    assert _tracked(alive)
    gc.collect()
    assert dead() is None  # back in the oldest generation: collected as before


def test_last_of_two_embedded_clients_unfreezes(collector):
    first = asip.connect(**OPTIONS)
    try:
        between = [_Node()]  # alive at the second connect only
        assert _tracked(between)
        with asip.connect(**OPTIONS):
            assert _driver_gc.holders() == collector + 2
            assert not _tracked(between)  # the second connect froze what came since
        assert _driver_gc.holders() == collector + 1
        assert not _tracked(between)  # the first cluster still runs: still frozen
    finally:
        first.close()
    assert _driver_gc.holders() == collector
    assert _tracked(between) == (collector == 0)


@pytest.mark.parametrize("off", [False, "false"], ids=["config", "env-string"])
def test_config_off_leaves_the_collector_alone(collector, off):
    later = [_Node()]  # alive at connect
    with dask.config.set({"asip.driver.gc-freeze": off}), asip.connect(**OPTIONS) as client:
        assert client.status == "running"
        assert _driver_gc.holders() == collector
        assert _tracked(later)  # not frozen


def test_scheduler_address_is_not_frozen(collector):
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster:
        later = [_Node()]  # alive at connect
        with asip.connect(cluster.scheduler_address, dashboard=False) as client:
            assert client.status == "running"
            assert _driver_gc.holders() == collector
            assert _tracked(later)  # not frozen


def test_an_applications_own_freeze_is_left_alone(collector):
    if collector:
        pytest.skip("an embedded client of this process holds asip's freeze")
    gc.collect()
    gc.freeze()  # the application's own policy (e.g. before forking workers of its own)
    assert gc.get_freeze_count() > 0
    later = [_Node()]  # alive at connect, not frozen by the application
    with asip.connect(**OPTIONS):
        assert _driver_gc.holders() == 0
        assert _tracked(later)  # nothing more frozen
    assert gc.get_freeze_count() > 0  # the close does not unfreeze the application's objects
