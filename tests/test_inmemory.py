"""In-memory partitions: straight to the workers, not through the scheduler; reloaded after a loss.

A list of numpy / scipy.sparse blocks (what the estimators make of an in-memory ``X``) is
scattered from the driver to the workers directly; the scheduler sees keys and sizes only.
The task graphs it holds stay small however big the data, and a partition lost with its
worker is scattered again from the driver's copy for the restarted operator.
"""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

import asip
from asip._data import count_partitions, partitions_of
from asip._task import OperatorSpec
from asip.faults import KillWorker
from _imports import modules_loaded_by
from runtime_operators import Gossip
from test_stage import assert_clean


def graph_bytes(dask_scheduler) -> dict:
    """Pickled bytes of the stage's tasks on the scheduler (its graph: keys ``asip-*``; other
    tests' leftovers on the shared cluster may not pickle), and the data it was told of."""
    return {"graph": sum(len(pickle.dumps(ts.run_spec)) for ts in dask_scheduler.tasks.values()
                         if ts.run_spec is not None and str(ts.key).startswith("asip-")),
            "data": sum(ts.nbytes for ts in dask_scheduler.tasks.values()
                        if str(ts.key).startswith("asip-part-") and ts.who_has)}


@pytest.mark.timeout(120)
def test_fifty_megabytes_in_memory_leave_the_scheduler_graph_under_one_megabyte(client):
    rng = np.random.default_rng(0)
    parts = [(rng.random((1600, 1000)), np.arange(1600.0)) for _ in range(4)]  # 51 MB
    assert sum(x.nbytes for x, _ in parts) > 50e6
    seen = []

    def measure(entries):
        if not seen:
            seen.append(client.run_on_scheduler(graph_bytes))

    res = asip.Stage(Gossip(), parts, client=client, max_time=1.0, oversubscribe=True,
                     on_trace=measure).run()
    assert res.stopped_by == "max_time" and not res.missing
    assert res.health["data_reloads"] == []
    assert [r["first_value"] for r in res.results] == [float(x[0, 0]) for x, _ in parts]
    assert [r["rows"] for r in res.results] == [1600] * 4
    assert seen, "no trace arrived while the stage ran"
    # the stage's whole graph (operator tasks and data) while it runs, vs the data held
    assert seen[0]["graph"] < 1e6, seen
    assert seen[0]["data"] > 50e6, seen  # the data is there, on the workers
    assert_clean(client)


@pytest.mark.timeout(60)
def test_in_memory_partitions_spread_over_workers_by_threads(client):
    rng = np.random.default_rng(1)
    blocks = [sp.random(50, 20, density=0.1, format="csr", random_state=i) for i in range(4)]
    parts = partitions_of([(b, rng.random(50)) for b in blocks], client)
    try:
        holders = client.who_has([f for p in parts.futures for f in p])
        where = [holders[p[0].key] for p in parts.futures]
        assert all(len(w) == 1 for w in where)
        assert [w[0] for w in where] == sorted(w[0] for w in where)  # contiguous runs
        assert len({w[0] for w in where}) == 2  # both workers, two partitions each
        x0 = parts.futures[0][0].result()[0]
        assert sp.issparse(x0) and (x0 != blocks[0]).nnz == 0
    finally:
        for p in parts.futures:
            p[0].release()


def test_a_list_mixing_blocks_and_other_things_is_a_clear_error():
    with pytest.raises(asip.AsipError, match=r"data\[1\] is a str.*every element must be one"):
        partitions_of([np.zeros((2, 2)), "x"], None)
    with pytest.raises(asip.AsipError, match=r"data\[1\] is a ndarray.*delayed objects"):
        partitions_of([__import__("dask").delayed(1), np.zeros((2, 2))], None)


@pytest.mark.timeout(180)
def test_count_partitions_checks_the_data_without_a_cluster():
    assert count_partitions([np.zeros((2, 2))] * 3) == 3
    assert count_partitions(da.zeros((10, 3), chunks=(4, 3))) == 3
    assert count_partitions((da.zeros((10, 3), chunks=(5, 3)), da.zeros(10, chunks=5))) == 2
    with pytest.raises(asip.AsipError, match=r"data\[1\] is a str.*every element must be one"):
        count_partitions([np.zeros((2, 2)), "x"])
    with pytest.raises(asip.AsipError, match="chunked along columns"):
        count_partitions(da.zeros((10, 4), chunks=(5, 2)))
    with pytest.raises(asip.AsipError, match="empty list"):
        count_partitions([])


def test_a_killed_worker_s_in_memory_partition_is_scattered_again(fresh_cluster):
    client = fresh_cluster
    rng = np.random.default_rng(7)
    parts = [rng.random((200, 3)) for _ in range(2)]
    res = asip.Stage(Gossip(), parts, client=client, max_time=4.0,
                     faults=[KillWorker(partition=1, at=1.0)]).run()
    assert res.stopped_by == "max_time" and not res.missing
    assert [(r.partition, r.incarnation) for r in res.restarts] == [(1, 1)]
    assert "lost" in res.restarts[0].cause
    assert res.results[1]["incarnation"] == 1 and res.health["data_reloads"] == [1]
    assert [r["first_value"] for r in res.results] == [float(p[0, 0]) for p in parts]
    assert res.results[1]["counts"].sum() > 0  # the restarted operator rejoined
    client.wait_for_workers(2, timeout=30)
    assert_clean(client)


def test_import_asip_leaves_numba_scipy_and_dask_array_out():
    """The scheduler imports asip (its directory plugin, the operator task's function):
    dask.array would pull numba and scipy into it (about 80 MB)."""
    assert modules_loaded_by("import asip", ("numba", "scipy", "sklearn", "dask.array",
                                             "asip.algorithms")) == []


def test_the_operator_travels_pickled_and_each_incarnation_gets_its_own_copy():
    spec = OperatorSpec("r", 2, Gossip(payload_size=3), False, 1.0, None, (), None, "p").ship()
    assert isinstance(spec.operator, bytes)  # the scheduler holds bytes, imports nothing
    a, b = spec.new_operator(), spec.new_operator()
    assert isinstance(a, Gossip) and a.payload_size == 3 and a is not b
    assert spec.ship() is spec


@pytest.mark.timeout(60)
def test_a_callers_futures_survive_the_stage_for_the_next_one(client):
    X = [client.submit(np.zeros, (1, 1), pure=False) for _ in range(2)]
    for _ in range(2):
        res = asip.Stage(Gossip(), X, client=client, max_time=0.3).run()
        assert not res.missing and all(f.status == "finished" for f in X)


def _fetched_keys(dask_worker) -> list:
    """Every key this worker fetched from a peer (distributed's incoming transfer log)."""
    return [str(k) for entry in dask_worker.transfer_incoming_log for k in entry["keys"]]


def _part_holders(dask_scheduler) -> dict:
    """In-memory blocks' keys on the scheduler -> the workers holding them."""
    return {str(k): sorted(ws.address for ws in ts.who_has)
            for k, ts in dask_scheduler.tasks.items() if str(k).startswith("asip-part-")}


@pytest.mark.timeout(60)
def test_each_operator_runs_on_the_worker_its_in_memory_block_was_scattered_to(client):
    """Data stays in place: every operator task runs where its block lives (who_has while
    the stage runs), the two blocks sit on different workers, and no worker fetches a block
    from a peer (a misplaced operator would pull its 8 MB before its setup)."""
    rng = np.random.default_rng(3)
    parts = [(rng.random((1000, 1000)), np.arange(1000.0)) for _ in range(2)]  # 8 MB each
    before = client.run(_fetched_keys)
    seen = []

    def where(entries):
        if not seen:  # the blocks' holders while the operators run on them
            seen.append(client.run_on_scheduler(_part_holders))

    res = asip.Stage(Gossip(), parts, client=client, max_time=0.5, on_trace=where).run()
    assert res.stopped_by == "max_time" and not res.missing
    assert seen, "no trace arrived while the stage ran"
    holders = {int(k.rsplit("-", 2)[1]): tuple(w) for k, w in seen[0].items()}
    assert sorted(holders) == [0, 1], seen  # partitions 0 and 1, one key each
    ran = [r["worker"] for r in res.results]
    assert [holders[i] for i in range(2)] == [(w,) for w in ran], (holders, ran)  # one copy, there
    assert len(set(ran)) == 2  # one block (and its operator) per worker
    after = client.run(_fetched_keys)
    moved = [k for w in after for k in after[w][len(before[w]):] if k.startswith("asip-part-")]
    assert moved == [], f"blocks were transferred between workers: {moved}"
    assert_clean(client)
