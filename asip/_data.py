"""Turn a stage's ``data`` into persisted per-partition futures that Dask can recompute."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
from dask.delayed import Delayed
from distributed import Future, futures_of, wait

from asip._exceptions import AsipError

__all__ = ["Partitions", "partitions_of"]


@dataclass
class Partitions:
    """One list of futures per partition (one future per array of a tuple)."""

    futures: list[list[Future]]
    tuple_data: bool

    @property
    def n(self) -> int:
        return len(self.futures)


def _row_block_keys(array: da.Array) -> list:
    """The key of each row block of a dask array chunked along rows only."""
    keys = array.__dask_keys__()
    out = []
    for row in keys:
        while isinstance(row, list):
            row = row[0]
        out.append(row)
    return out


def _check_array(array: Any, name: str) -> da.Array:
    if not isinstance(array, da.Array):
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


def partitions_of(data: Any, client: Any) -> Partitions:
    """Persist ``data`` on the cluster and return its partitions, in order.

    ``data`` is a dask array, a tuple of dask arrays with identical row chunks, or a
    list of dask delayed objects / futures (one partition each). Persisted blocks are
    recomputed by Dask if a worker dies; scattered futures are not (they are lost).
    """
    if isinstance(data, da.Array):
        arrays, tuple_data = [_check_array(data, "data")], False
    elif isinstance(data, tuple):
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
        tuple_data = True
    elif isinstance(data, list):
        return _partitions_of_list(data, client)
    else:
        raise AsipError(
            f"data is a {type(data).__name__}; expected a dask array, a tuple of dask arrays, "
            "or a list of dask delayed objects or futures"
        )
    persisted = client.persist(arrays)
    by_key = {f.key: f for f in futures_of(persisted)}
    columns = [[by_key[k] for k in _row_block_keys(a)] for a in persisted]
    futures = [list(parts) for parts in zip(*columns)]
    if not futures:
        raise AsipError("data has no rows")
    wait([f for parts in futures for f in parts])
    return Partitions(futures, tuple_data)


def _partitions_of_list(data: list, client: Any) -> Partitions:
    if not data:
        raise AsipError("data is an empty list")
    futures = []
    for i, part in enumerate(data):
        if isinstance(part, Future):
            futures.append(part)
        elif isinstance(part, Delayed):
            futures.append(client.compute(part))
        else:
            raise AsipError(
                f"data[{i}] is a {type(part).__name__}; a list must hold dask delayed objects "
                "or futures"
            )
    wait(futures)
    return Partitions([[f] for f in futures], tuple_data=False)
