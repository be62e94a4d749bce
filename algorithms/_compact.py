"""Compact message fields: a vector as its entries that differ from a base the receiver
knows (sparse where that is smaller), a symmetric matrix as its upper triangle.

A barrier solver's reduction must come out bit-for-bit the same on every operator, so
an operator decodes its own contribution from these fields too; decoding is exact
(`vector_of` gives back every sent value, and the base where none was sent).
Wire fields of a vector ``name``: ``name`` (float64, dense) or ``name_idx`` (int32) and
``name_val`` (float64); see `schema_fields`.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["packed_of", "schema_fields", "sym_fields", "sym_of", "vector_fields", "vector_of"]

#: sparse when fewer than this share of the entries differ from the base (int32 index +
#: float64 value: 12 bytes an entry against 8 dense)
SPARSE_BELOW = 0.5


def schema_fields(name: str, size: int | None) -> dict:
    """The optional message fields of a vector ``name`` of length ``size`` (None: any)."""
    return {name: ("float64", (size,)), f"{name}_idx": ("int32", (None,)),
            f"{name}_val": ("float64", (None,))}


def vector_fields(name: str, v: np.ndarray, base: np.ndarray | float = 0.0) -> dict:
    """``v`` as message fields: the entries that differ from ``base``, or all of it."""
    v = np.asarray(v, dtype=np.float64)
    idx = np.flatnonzero(v != base)
    if idx.size >= SPARSE_BELOW * v.size:
        return {name: v.copy()}
    return {f"{name}_idx": idx.astype(np.int32), f"{name}_val": v[idx]}


def vector_of(fields: dict, name: str, size: int,
              base: np.ndarray | float = 0.0) -> np.ndarray | None:
    """The vector `vector_fields` sent (``base`` where no entry was), None if not sent."""
    if name in fields:
        return np.asarray(fields[name], dtype=np.float64)
    if f"{name}_idx" not in fields:
        return None
    out = np.array(np.broadcast_to(base, (size,)), dtype=np.float64)
    out[np.asarray(fields[f"{name}_idx"], dtype=np.int64)] = np.asarray(fields[f"{name}_val"])
    return out


def sym_fields(name: str, H: np.ndarray) -> dict:
    """A symmetric matrix as the fields of its packed upper triangle (sparse where sparse)."""
    return vector_fields(name, H[_triu(H.shape[0])])


def packed_of(fields: dict, name: str, m: int) -> np.ndarray | None:
    """The packed upper triangle of the ``m x m`` matrix `sym_fields` sent (None if not)."""
    return vector_of(fields, name, m * (m + 1) // 2)


def sym_of(packed: np.ndarray, m: int) -> np.ndarray:
    """The symmetric ``m x m`` matrix of a packed upper triangle (sums of them too)."""
    H = np.zeros((m, m))
    iu = _triu(m)
    H[iu] = packed
    H.T[iu] = packed
    return H


@functools.lru_cache(maxsize=8)
def _triu(m: int) -> tuple[np.ndarray, np.ndarray]:
    """The upper triangle's indices of an ``m x m`` matrix, computed once per size: rebuilt
    for every Hessian sent or received they were ~10% of an asip-cocoa Newton round's CPU
    at 16 partitions of a9a."""
    return np.triu_indices(m)
