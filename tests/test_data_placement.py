"""Placing in-memory blocks on the workers (`asip._data.partitions_of` on a list of blocks).

Each worker's blocks go out in one message, every array as one frame, so no block past
``distributed.comm.shard`` arrives in pieces that the worker copies into one more buffer;
the blocks arrive intact whatever their kind, where the plan put them, and released, they
leave the workers and the scheduler.
"""

from __future__ import annotations

import time

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


def _misaligned(keys, dask_worker=None) -> list:
    """The placed arrays on this worker not aligned to 16 bytes: (key, which, address % 16)."""
    out = []
    for key in keys:
        if key not in dask_worker.data:
            continue
        value = dask_worker.data[key]
        for i, part in enumerate(value if isinstance(value, tuple) else (value,)):
            arrays = ([part.data, part.indices, part.indptr] if sp.issparse(part)
                      else [part] if isinstance(part, np.ndarray) else [])
            out += [(key, i, a.ctypes.data % 16) for a in arrays
                    if a.size and (a.ctypes.data % 16 or not a.flags.aligned)]
    return out


@pytest.mark.timeout(60)
def test_every_placed_array_is_aligned_for_blas(client):
    """A worker reads a message's first array into the buffer of its small frames, at the
    offset their sizes make: unpadded, often not a multiple of 8, and numpy then multiplies
    without BLAS. Shapes and kinds vary the frames' sizes; 1-3 blocks per worker; and a
    block scattered again, as after a loss."""
    rng = np.random.default_rng(11)
    for rows in (3001, 4096, 5003, 7777):
        blocks = [(rng.random((rows + k, 30 + k)), rng.random(rows + k)) for k in range(3)]
        blocks.append((sp.random(rows, 500, density=0.02, format="csr", random_state=rows),
                       rng.random(rows)))
        blocks.append(rng.random((rows, 17)).astype(np.float32))
        parts = partitions_of(blocks[: 2 + rows % 4], client)
        try:
            keys = [fs[0].key for fs in parts.futures]
            bad = client.run(_misaligned, keys)
            assert not any(bad.values()), bad
            for fs, sent in zip(parts.futures, blocks):
                got = fs[0].result()
                x, x_sent = (got[0], sent[0]) if isinstance(sent, tuple) else (got, sent)
                assert (x != x_sent).nnz == 0 if sp.issparse(x) else np.array_equal(x, x_sent)
            parts.reload(0, client, parts.placed[0])  # as after a loss: aligned again
            assert parts.futures[0][0].key.endswith("-0-r1")
            bad = client.run(_misaligned, [parts.futures[0][0].key])
            assert not any(bad.values()), bad
            assert np.array_equal(parts.futures[0][0].result()[0], blocks[0][0])
        finally:
            for fs in parts.futures:
                fs[0].release()
