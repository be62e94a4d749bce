"""Scattered numpy blocks that arrive aligned, without a copy (`shipped`).

A worker reads a message's first large array into the buffer that also holds the
message's header, at whatever offset the header ends: 7 times in 8 the array is not
8-byte aligned, and numpy then cannot hand it to BLAS. asip-cocoa's certificate
pass (``a @ X`` on a worker's 200 MB block) took 0.3-2.0 s in 7 of 12 fits at load
7-11 (aligned: 0.03-0.24 s; 9 ms for the product alone, idle): its operator pushed
nothing meanwhile and its peers' messages waited in its mailbox, the "no message for
0.65 s" early in dense fits. `shipped` wraps each array of a block in `Aligned`,
which travels as the array behind a small pad frame; on arrival the array's bytes
are moved back into the pad, in place, onto a `ALIGN`-byte boundary, and the worker
holds a plain numpy array in the memory it arrived in.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from dask.sizeof import sizeof
from distributed.protocol import dask_deserialize, dask_serialize
from distributed.protocol.numpy import deserialize_numpy_ndarray, serialize_numpy_ndarray

__all__ = ["ALIGN", "Aligned", "shipped"]

ALIGN = 64  # bytes: a cache line, more than any dtype (and BLAS's SIMD loads) asks for
_PAD = b"\0" * ALIGN


class Aligned:
    """A numpy array to send to a worker: it arrives as a plain array on an `ALIGN`-byte
    boundary (see the module doc)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array

    def __repr__(self) -> str:
        return f"<Aligned {self.array.dtype} {self.array.shape}>"


@sizeof.register(Aligned)
def _sizeof(block: Aligned) -> int:
    return sizeof(block.array)


@dask_serialize.register(Aligned)
def _serialize(block: Aligned) -> tuple[dict, list]:
    header, frames = serialize_numpy_ndarray(block.array)
    if header.get("pickle") or len(frames) != 1:  # object dtypes: numpy's own way
        return {"plain": True, **header}, frames
    return header, [_PAD, *frames]  # the pad goes just before the array in the buffer


@dask_deserialize.register(Aligned)
def _deserialize(header: dict, frames: list) -> np.ndarray:
    if header.get("plain"):
        return deserialize_numpy_ndarray(header, frames)
    pad, data = frames
    return deserialize_numpy_ndarray(header, [_move_into_pad(pad, data)])


def _move_into_pad(pad: Any, data: Any) -> Any:
    """``data``'s bytes on an `ALIGN`-byte boundary: moved (memmove, in place) back into
    ``pad`` when the two lie next to each other in one writeable buffer (as the first
    array of a message arrives), else ``data`` as it is (already aligned when it was read
    into a buffer of its own). The result is a view of the buffer: it keeps it alive."""
    try:
        parent = np.frombuffer(pad.obj, dtype=np.uint8)
        p = np.frombuffer(pad, dtype=np.uint8)
        d = np.frombuffer(data, dtype=np.uint8)
    except (AttributeError, TypeError, ValueError):
        return data
    start = d.ctypes.data
    shift = start % ALIGN
    begin = start - shift - parent.ctypes.data  # the aligned start, as an offset in parent
    if (not shift or not d.size or p.size < shift or not parent.flags.writeable
            or p.ctypes.data + p.size != start or begin < 0
            or begin + shift + d.size > parent.size):
        return data
    ctypes.memmove(start - shift, start, d.size)
    return parent[begin:begin + d.size]


def shipped(value: Any, address: str) -> Any:
    """A block as `asip._data` scatters it to the worker at ``address``: each numpy array
    (of a tuple) in `Aligned`; as it is when nothing is serialized on the way (``inproc://``
    passes the objects themselves, and the worker would keep the wrapper)."""
    if address.startswith("inproc"):
        return value
    if isinstance(value, tuple):
        return tuple(shipped(v, address) for v in value)
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        return Aligned(value)
    return value
