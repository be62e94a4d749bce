"""Turn a stage's ``data`` into per-partition futures on the workers, reloadable after a loss.

Dask collections are persisted (Dask recomputes a lost block from its graph). In-memory
blocks (numpy / scipy.sparse, or tuples of them) are scattered straight to the workers,
never through the scheduler nor embedded in a task graph, and re-scattered from the
driver's copy when the worker holding one dies; their numpy arrays arrive aligned, in the
memory they arrived in (`asip._aligned`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
from dask.delayed import Delayed
from dask.sizeof import sizeof
from dask.utils import parse_bytes
from distributed import Future, futures_of, wait

from asip._aligned import shipped
from asip._exceptions import AsipError

__all__ = ["Partitions", "count_partitions", "partitions_of"]

logger = logging.getLogger(__name__)


@dataclass
class Partitions:
    """One list of futures per partition (one future per array of a tuple).

    ``sources`` holds the driver's copy of in-memory partitions (None for Dask data,
    which Dask recomputes itself): `reload` scatters a lost one again.
    """

    futures: list[list[Future]]
    tuple_data: bool
    sources: list | None = None
    prefix: str = ""
    reloads: list[int] = field(default_factory=list)  # partitions scattered again
    placed: list[str] | None = None  # the worker each in-memory block was scattered to
    nthreads: dict | None = None  # the cluster's threads when they were scattered

    @property
    def n(self) -> int:
        return len(self.futures)

    def lost(self, index: int, client: Any) -> bool:
        """Whether an in-memory partition is gone from every worker (False for Dask data)."""
        if self.sources is None:
            return False
        # the scheduler tells this client at once when a key's last copy is gone ("lost"),
        # before it cancels the operator task that needed it: no round trip needed here
        return any(f.status != "finished" for f in self.futures[index])

    def reload(self, index: int, client: Any, worker: str | None = None) -> None:
        """Scatter in-memory partition ``index`` again from the driver's copy (to
        ``worker``, or wherever the scheduler says), straight to the worker."""
        if self.sources is None:
            raise AsipError(f"partition {index} is Dask data: Dask recomputes it, asip cannot")
        self.reloads.append(index)
        key = f"{self.prefix}-{index}-r{self.reloads.count(index)}"
        old = self.futures[index]
        to = worker or client.scheduler.address  # the scheduler's scheme is the workers'
        self.futures[index] = [_scatter(client, {key: shipped(self.sources[index], to)},
                                        worker)[key]]
        for f in old:
            f.release()


def _is_dask_array(value: Any) -> bool:
    """A dask array (dask.array only if already imported: the scheduler imports asip too,
    and dask.array pulls in numba and scipy, about 80 MB there)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(value, da.Array)


def _row_block_keys(array: Any) -> list:
    """The key of each row block of a dask array chunked along rows only."""
    keys = array.__dask_keys__()
    out = []
    for row in keys:
        while isinstance(row, list):
            row = row[0]
        out.append(row)
    return out


def _check_array(array: Any, name: str) -> Any:
    if not _is_dask_array(array):
        raise AsipError(f"{name} is a {type(array).__name__}; expected a dask array")
    if array.ndim == 0:
        raise AsipError(f"{name} is 0-dimensional; a stage needs arrays with rows")
    if any(len(c) != 1 for c in array.chunks[1:]):
        raise AsipError(
            f"{name} is chunked along columns ({array.numblocks} blocks); asip partitions by "
            f"rows only: rechunk with {name}.rechunk({{1: -1}}) first"
        )
    if any(isinstance(c, float) for c in array.chunks[0]) or any(
        c != c for c in array.chunks[0]
    ):
        raise AsipError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    return array


def _arrays_of(data: Any) -> list | None:
    """The dask arrays of ``data`` (checked), or None for a list; AsipError if neither."""
    if _is_dask_array(data):
        return [_check_array(data, "data")]
    if isinstance(data, tuple):
        if not data:
            raise AsipError("data is an empty tuple")
        arrays = [_check_array(a, f"data[{i}]") for i, a in enumerate(data)]
        rows = arrays[0].chunks[0]
        for i, a in enumerate(arrays[1:], start=1):
            if a.chunks[0] != rows:
                raise AsipError(
                    f"data[{i}] has row chunks {a.chunks[0]} but data[0] has {rows}: the arrays "
                    "of a tuple must be chunked identically along rows"
                )
        return arrays
    if isinstance(data, list):
        return None
    raise AsipError(
        f"data is a {type(data).__name__}; expected a dask array, a tuple of dask arrays, "
        "or a list of dask delayed objects or futures"
    )


def count_partitions(data: Any) -> int:
    """How many partitions ``data`` makes, checked as `partitions_of` checks it, without
    touching the cluster (the stage installs its plugins while the data goes out)."""
    arrays = _arrays_of(data)
    if arrays is None:
        _check_list(data)
        return len(data)
    if not arrays[0].numblocks[0]:
        raise AsipError("data has no rows")
    return arrays[0].numblocks[0]


def partitions_of(data: Any, client: Any) -> Partitions:
    """Persist ``data`` on the cluster and return its partitions, in order.

    ``data`` is a dask array, a tuple of dask arrays with identical row chunks, or a
    list of partitions: dask delayed objects / futures, or in-memory blocks (numpy
    arrays, scipy.sparse matrices, or tuples of them). Persisted blocks are recomputed
    by Dask if a worker dies; in-memory blocks are scattered to the workers directly
    (never through the scheduler) and scattered again if lost; futures the caller
    scattered are not (they are lost).
    """
    arrays = _arrays_of(data)
    if arrays is None:
        return _partitions_of_list(data, client)
    tuple_data = isinstance(data, tuple)
    persisted = client.persist(arrays)
    by_key = {f.key: f for f in futures_of(persisted)}
    columns = [[by_key[k] for k in _row_block_keys(a)] for a in persisted]
    futures = [list(parts) for parts in zip(*columns)]
    if not futures:
        raise AsipError("data has no rows")
    wait([f for parts in futures for f in parts])
    return Partitions(futures, tuple_data)


def _is_block(value: Any) -> bool:
    """An in-memory block: a numpy array or scipy.sparse matrix, or a tuple of them."""
    if isinstance(value, tuple):
        return bool(value) and all(v is None or _is_block(v) for v in value)
    # scipy only if already imported (a scipy matrix implies it; see _is_dask_array)
    sparse = sys.modules.get("scipy.sparse")
    return isinstance(value, np.ndarray) or (sparse is not None and sparse.issparse(value))


def _scatter(client: Any, data: dict, worker: str | None) -> dict:
    """Scatter ``{key: value}`` from this process straight to ``worker`` (the scheduler
    learns only keys and sizes); through the scheduler if the workers can't be reached
    from here (a client outside the cluster's network)."""
    workers = None if worker is None else [worker]
    try:
        return client.scatter(data, workers=workers, direct=True, hash=False)
    except (OSError, TimeoutError) as exc:
        logger.warning("asip: can't reach the workers from this process (%s); sending the "
                       "data through the scheduler", exc)
        return client.scatter(data, workers=workers, direct=False, hash=False)


def _scatter_all(client: Any, by_worker: dict[str, dict]) -> tuple[dict, list[str]]:
    """Scatter each worker's ``{key: value}`` straight to it, all at once (one after the
    other, each costs three round trips); a block past ``distributed.comm.shard`` (64 MiB)
    goes in a message of its own: a worker reads a message's first array into one buffer
    but a later array past the shard size in pieces, copied once more on arrival (a
    worker given two 77 MB blocks in one message peaked 77 MB above what it then held).
    The futures, and the workers that could not be reached from this process."""
    shard = parse_bytes(dask.config.get("distributed.comm.shard"))
    sends = []
    for addr, chunk in by_worker.items():
        small = {k: v for k, v in chunk.items() if sizeof(v) < shard}
        sends += [(addr, {k: v}) for k, v in chunk.items() if k not in small]
        if small:  # blocks below a frame's size: one message for all of them
            sends.append((addr, small))

    async def scatter() -> list:  # on the client's loop: scatter hands back coroutines
        return await asyncio.gather(
            *(client.scatter(block, workers=[addr], direct=True, hash=False, asynchronous=True)
              for addr, block in sends),
            return_exceptions=True)

    futures: dict = {}
    failed: list[str] = []
    for (addr, _), result in zip(sends, client.sync(scatter)):
        if isinstance(result, (OSError, TimeoutError)):
            if addr not in failed:
                failed.append(addr)
        elif isinstance(result, BaseException):
            raise result
        else:
            futures.update(result)
    return futures, failed


def _worker_slots(nthreads: dict[str, int], n: int) -> list[str]:
    """A worker per partition: contiguous runs of partitions, in proportion to threads."""
    slots = [addr for addr, k in sorted(nthreads.items()) for _ in range(max(k, 1))]
    if not slots:
        raise AsipError("the cluster has no workers to hold the data")
    return [slots[i * len(slots) // n] for i in range(n)]


def _partitions_in_memory(data: list, client: Any) -> Partitions:
    """Scatter in-memory partitions straight to the workers, balanced by threads."""
    prefix = f"asip-part-{uuid.uuid4().hex[:12]}"
    by_worker: dict[str, dict] = {}
    nthreads = client.nthreads()
    slots = _worker_slots(nthreads, len(data))
    for i, (addr, part) in enumerate(zip(slots, data)):
        by_worker.setdefault(addr, {})[f"{prefix}-{i}-r0"] = shipped(part, addr)
    futures, failed = _scatter_all(client, by_worker)
    for addr in failed:  # unreachable from here: through the scheduler, with a warning
        futures.update(_scatter(client, by_worker[addr], addr))
    return Partitions([[futures[f"{prefix}-{i}-r0"]] for i in range(len(data))],
                      tuple_data=False, sources=list(data), prefix=prefix, placed=slots,
                      nthreads=nthreads)


def _check_list(data: list) -> bool:
    """Check a list of partitions; True if it holds in-memory blocks (AsipError if mixed)."""
    if not data:
        raise AsipError("data is an empty list")
    blocks = [_is_block(part) for part in data]
    if all(blocks):
        return True
    if blocks[0]:  # in-memory blocks, and something else
        i = blocks.index(False)
        raise AsipError(f"data[{i}] is a {type(data[i]).__name__}; data[0] is an in-memory "
                        "block, so every element must be one (numpy arrays, scipy.sparse "
                        "matrices, or tuples of them)")
    for i, part in enumerate(data):
        if not isinstance(part, (Future, Delayed)):
            raise AsipError(
                f"data[{i}] is a {type(part).__name__}; a list must hold dask delayed objects "
                "or futures, or only in-memory blocks (numpy arrays, scipy.sparse matrices, "
                "or tuples of them)"
            )
    return False


def _partitions_of_list(data: list, client: Any) -> Partitions:
    if _check_list(data):
        return _partitions_in_memory(data, client)
    futures = [part if isinstance(part, Future) else client.compute(part) for part in data]
    wait(futures)
    return Partitions([[f] for f in futures], tuple_data=False)
