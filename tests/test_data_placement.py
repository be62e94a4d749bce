"""Placing in-memory blocks on the workers (`asip._data.partitions_of` on a list of blocks).

A block past ``distributed.comm.shard`` goes to its worker in a message of its own, so it
does not arrive in pieces that the worker copies into one more buffer;
the blocks arrive intact whatever their kind, where the plan put them, and released, they
leave the workers and the scheduler.
"""

from __future__ import annotations

import time

import dask
import numpy as np
import pytest
import scipy.sparse as sp
from distributed import Client, LocalCluster

from asip._data import partitions_of


def _memory(reset: bool = False) -> tuple[int, int]:
    """This process's resident memory now and its peak since the last reset (Linux's
    VmRSS and VmHWM; ``reset``: start a new peak here)."""
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    with open("/proc/self/status") as f:
        kb = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    return int(kb["VmRSS"].split()[0]) * 1024, int(kb["VmHWM"].split()[0]) * 1024


def _placed_keys(dask_worker=None) -> list[str]:
    return [str(k) for k in dask_worker.data if str(k).startswith("asip-part-")]


def _wait_gone(client, keys: set, timeout: float = 10.0) -> dict:
    """What of ``keys`` the scheduler and the workers still hold after ``timeout`` at most."""
    deadline = time.monotonic() + timeout
    while True:
        left = {"scheduler": sorted(set(client.run_on_scheduler(
                    lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])) & keys),
                "workers": sorted({k for ks in client.run(_placed_keys).values() for k in ks}
                                  & keys)}
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_blocks_past_the_shard_size_are_held_in_the_memory_they_arrived_in():
    """Two 77 MB blocks to one worker, past distributed's 64 MiB frame shards: the worker's
    memory peaks at what it then holds. (Split, the second block's pieces arrive in buffers
    of their own and are copied into one more: the peak was 77 MB higher.)"""
    rows = 96_000
    X = np.random.default_rng(0).random((rows, 100))  # 76.8 MB
    blocks = [(X, np.arange(float(rows))), (X[::-1].copy(), np.ones(rows))]
    nbytes = sum(a.nbytes for b in blocks for a in b)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster) as client:
        ((rss_before, _),) = client.run(_memory, True).values()
        parts = partitions_of(blocks, client)
        ((rss, peak),) = client.run(_memory).values()
        assert rss - rss_before > 0.9 * nbytes  # what the worker holds now
        assert peak - rss_before < 1.25 * nbytes, (
            f"the worker's memory peaked {(peak - rss_before) / 1e6:.0f} MB above where it "
            f"was, placing {nbytes / 1e6:.0f} MB (holding {(rss - rss_before) / 1e6:.0f} MB "
            "now): a block was copied on arrival")
        for sent, fs in zip(blocks, parts.futures):
            got = fs[0].result()
            assert all(np.array_equal(a, b) for a, b in zip(sent, got))


@pytest.mark.timeout(60)
def test_many_blocks_of_every_kind_arrive_intact_where_the_plan_put_them(client):
    rng = np.random.default_rng(5)
    csr = sp.random(300, 40, density=0.05, format="csr", random_state=1, dtype=np.float64)
    blocks = [
        (rng.random((300, 8)), rng.random(300)),                      # dense float64 and y
        (np.asfortranarray(rng.random((200, 8)).astype(np.float32)),  # Fortran order float32
         rng.integers(0, 2, 200).astype(np.int8)),
        (csr, rng.random(300), None),                                 # CSR, y, no weights
        rng.integers(-5, 5, (150, 3)).astype(np.int32),               # a bare array
        (np.empty((0, 8)), np.empty(0)),                              # no rows
    ] + [(rng.random((20, 8)), rng.random(20)) for _ in range(7)]     # 12 partitions in all
    parts = partitions_of(blocks, client)
    try:
        assert parts.n == len(blocks) and all(f.status == "finished"
                                              for fs in parts.futures for f in fs)
        holders = client.who_has([fs[0] for fs in parts.futures])
        assert [tuple(holders[fs[0].key]) for fs in parts.futures] == [
            (w,) for w in parts.placed]
        for sent, fs in zip(blocks, parts.futures):
            got = fs[0].result()
            sent_t = sent if isinstance(sent, tuple) else (sent,)
            got_t = got if isinstance(got, tuple) else (got,)
            assert type(got) is type(sent) and len(got_t) == len(sent_t)
            for a, b in zip(sent_t, got_t):
                if a is None:
                    assert b is None
                elif sp.issparse(a):
                    assert sp.issparse(b) and b.format == "csr" and (a != b).nnz == 0
                else:
                    assert (b.dtype, b.shape, b.flags.f_contiguous) == (
                        a.dtype, a.shape, a.flags.f_contiguous)
                    assert np.array_equal(a, b)
    finally:
        keys = {fs[0].key for fs in parts.futures}
        for fs in parts.futures:
            fs[0].release()
        del parts, fs
    assert _wait_gone(client, keys) == {"scheduler": [], "workers": []}


def _alignment(keys: list, dask_worker=None) -> dict:
    """The address modulo 8 (what numpy needs for BLAS) of each array of each block held
    here under ``keys``."""
    out = {}
    for key, value in dask_worker.data.items():
        if str(key) in keys:
            arrays = value if isinstance(value, tuple) else (value,)
            out[str(key)] = [a.ctypes.data % 8 for a in arrays if isinstance(a, np.ndarray)]
    return out


@pytest.mark.timeout(60)
def test_dense_blocks_arrive_aligned_for_blas(client):
    """A message's first array lands in the buffer holding the message's header, at whatever
    offset that ends (distributed): unaligned, numpy's ``a @ X`` skips BLAS (a 200 MB
    partition's certificate pass took 0.05-0.5 s instead of 9 ms, and the operator pushed
    nothing meanwhile). Every array of every block arrives aligned, as a
    plain numpy array in the memory it arrived in, its values intact -- first in a message
    or not, past the frame shard size or not, any dtype and order."""
    rng = np.random.default_rng(7)
    blocks = [(rng.random((rows, 9)), rng.random(rows)) for rows in (5, 1001, 2003, 40_000)]
    blocks += [np.asfortranarray(rng.random((3001, 5)).astype(np.float32)),
               (rng.integers(0, 9, (777, 3)).astype(np.int16), rng.random(777)),
               (sp.random(400, 30, density=0.1, format="csr", random_state=2), rng.random(400))]
    with dask.config.set({"distributed.comm.shard": "256 KiB"}):  # the 2.9 MB block: sharded
        parts = partitions_of(blocks, client)
    try:
        keys = [fs[0].key for fs in parts.futures]
        held = {}
        for found in client.run(_alignment, keys).values():
            held.update(found)
        assert sorted(held) == sorted(keys)
        assert {k: v for k, v in held.items() if any(v)} == {}, "unaligned arrays on a worker"
        for sent, fs in zip(blocks, parts.futures):
            got = fs[0].result()
            sent_t = sent if isinstance(sent, tuple) else (sent,)
            got_t = got if isinstance(got, tuple) else (got,)
            assert type(got) is type(sent)
            for a, b in zip(sent_t, got_t):
                if sp.issparse(a):
                    assert (a != b).nnz == 0
                else:
                    assert type(b) is np.ndarray and b.dtype == a.dtype
                    assert b.flags.f_contiguous == a.flags.f_contiguous
                    assert np.array_equal(a, b)
    finally:
        for fs in parts.futures:
            fs[0].release()


@pytest.mark.timeout(60)
def test_driver_solvers_blocks_arrive_aligned_too(client):
    """The driver-side baselines (``admm-async*``) place their in-memory blocks as a stage
    does, aligned: a plain ``client.scatter`` of the same blocks lands first arrays off the
    8-byte boundary, and the baseline's ``a @ X`` would run without BLAS against asip's."""
    from asip.algorithms._fitting import driver_blocks

    rng = np.random.default_rng(3)
    blocks = [(rng.random((rows, 9)), rng.random(rows)) for rows in (1001, 2003, 5, 40_000)]
    plain = client.scatter(blocks, direct=True, hash=False)
    ours = driver_blocks(blocks, client)
    try:
        assert len(ours) == len(blocks)
        held = {}
        for found in client.run(_alignment, [f.key for f in plain + ours]).values():
            held.update(found)
        assert any(any(held[f.key]) for f in plain), "the plain scatter came aligned: no test"
        assert {f.key: held[f.key] for f in ours if any(held[f.key])} == {}
        for sent, f in zip(blocks, ours):
            got = f.result()
            assert all(np.array_equal(a, b) for a, b in zip(sent, got))
    finally:
        for f in plain + ours:
            f.release()


@pytest.mark.timeout(60)
def test_blocks_stay_plain_arrays_in_a_threads_only_cluster():
    """``inproc://`` passes the objects themselves, unserialized: the workers hold the plain
    arrays (never the wrapper that aligns them over TCP), placed and reloaded."""
    blocks = [(np.ones((100, 3)), np.ones(100)), np.zeros((50, 2))]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0", silence_logs=40) as cluster, \
            Client(cluster) as client:
        parts = partitions_of(blocks, client)
        parts.reload(0, client)
        keys = {fs[0].key for fs in parts.futures}  # the reloaded block's, and the other's
        held = {}
        for found in client.run(lambda dask_worker: {
                k: [type(a) for a in (v if isinstance(v, tuple) else (v,))]
                for k, v in dask_worker.data.items()}).values():
            held.update(found)
        assert keys <= held.keys()
        assert all(t is np.ndarray for k in keys for t in held[k]), held
