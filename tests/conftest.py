"""Shared fixtures: real LocalClusters with worker processes and nannies; shared data."""

from __future__ import annotations

import dask
import pytest
from distributed import Client, LocalCluster

@pytest.fixture(scope="session")
def a9a_8000():
    """a9a's first 8,000 rows (the shared LIBSVM data); skips, saying why, without it."""
    from asip.algorithms import DataUnavailable, load_libsvm

    try:
        return load_libsvm("a9a", n_samples=8000)
    except DataUnavailable as exc:
        pytest.skip(f"shared LIBSVM data not available: {exc}")


# A LocalCluster closes a nanny for good when its worker is gone for this long under its
# name (distributed's default 15 s). Fault tests kill workers repeatedly on 2 loaded cores,
# where one restart can take that long: keep the nanny, since the nanny restarts it.
dask.config.set({"distributed.deploy.lost-worker-timeout": "120s"})


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
    """A client on the shared 2x1 cluster; waits until both workers are back after kills."""
    with Client(cluster_2x1) as c:
        c.wait_for_workers(2, timeout=30)
        yield c


@pytest.fixture(scope="module")
def _module_cluster():
    with _local_cluster(2, 1) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def fresh_cluster(_module_cluster):
    """A 2x1 cluster apart from the shared one, for tests that kill processes or change
    cluster state: one per test module (a cluster start costs seconds), with both workers
    back (restarted by their nannies after a kill) before each test."""
    _module_cluster.wait_for_workers(2, timeout=120)
    yield _module_cluster
