"""Shared fixtures: real LocalClusters with worker processes and nannies; shared data."""

from __future__ import annotations

import dask
import pytest
from _ready import ready
from distributed import Client, LocalCluster

from asip.testing import TEST_CONFIG


@pytest.fixture(scope="session")
def a9a_8000():
    """a9a's first 8,000 rows (the shared LIBSVM data); skips, saying why, without it."""
    from asip.algorithms import DataUnavailable, load_libsvm

    try:
        return load_libsvm("a9a", n_samples=8000)
    except DataUnavailable as exc:
        pytest.skip(f"shared LIBSVM data not available: {exc}")


# A LocalCluster closes a nanny for good when no worker of its name is back this long after
# *any* removal of it (distributed's default 15 s). Fault tests kill workers repeatedly on 2
# loaded cores, where one restart can take that long, and the fault cluster below lives the
# whole session, so a timer from an early kill must never fire during a later test's restart:
# keep the nanny, since the nanny restarts the worker.
# The gang's start timeout is the one `asip.testing` gives its users' CI (120 s, not 30 s): a
# fresh worker's first fit loads its kernels in the operators' setup, and at a load of 22 the
# first fit of test_report_ramp was still in setup after 30 s (GangSchedulingError, 1 of 3 runs).
dask.config.set({"distributed.deploy.lost-worker-timeout": "1h",
                 "asip.gang.start-timeout": TEST_CONFIG["asip.gang.start-timeout"]})


def _local_cluster(n_workers: int, threads_per_worker: int) -> LocalCluster:
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,  # nannies by default: a killed worker is restarted
        dashboard_address=None,
        silence_logs=40,
    )


@pytest.fixture(scope="session")
def cluster_2x1():
    """Two worker processes with one thread each: the project's reference machine."""
    with _local_cluster(2, 1) as cluster:
        yield cluster


@pytest.fixture
def client(cluster_2x1):
    """A client on the shared 2x1 cluster, once both workers are back (after a kill or a
    restart) and have loaded asip."""
    with Client(cluster_2x1) as c:
        yield ready(c, 2, timeout=30)


@pytest.fixture(scope="session")
def _fault_cluster():
    with _local_cluster(2, 1) as cluster:
        yield cluster


@pytest.fixture
def fresh_cluster(_fault_cluster):
    """A client on a 2x1 cluster apart from the shared one, for tests that kill processes or
    change cluster state: one cluster for the session (a cluster start costs seconds; it was
    one per module), and a new client per test, once both workers are back (restarted by
    their nannies after a kill) and have loaded asip."""
    with Client(_fault_cluster) as c:
        yield ready(c, 2, timeout=120)
