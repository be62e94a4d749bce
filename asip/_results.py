"""Operator results on their way to the driver: any msgpack-able value, numpy arrays included.

``result()`` may return what the README promises: numbers, strings, lists, nested dicts
and numeric numpy arrays (any shape). Arrays travel as a msgpack extension (dtype, shape,
raw bytes); nothing is ever pickled, and anything else is refused with the path to it.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from asip._exceptions import MessageError

__all__ = ["pack_result", "unpack_result"]

_ARRAY = 42  # msgpack extension code of a numpy array
_KINDS = "biufc"  # bool, ints, floats, complex: never object or structured


def _check(value: Any, path: str) -> Any:
    """``value`` with numpy scalars made plain and tuples made lists; MessageError if it can't travel."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
            raise MessageError(f"result{path}: int {value} does not fit in 64 bits")
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _KINDS or value.dtype.fields is not None:
            raise MessageError(f"result{path}: arrays must be numeric, got dtype {value.dtype}")
        return value
    if isinstance(value, np.generic):
        return _check(value.item(), path)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise MessageError(f"result{path}: dict keys must be str or int, got {key!r}")
            out[key] = _check(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_check(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise MessageError(
        f"result{path}: {type(value).__name__} is not msgpack-able (use numbers, str, bytes, "
        "lists, dicts and numeric numpy arrays)")


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        head = msgpack.packb([a.dtype.str, list(a.shape)])
        return msgpack.ExtType(_ARRAY, head + a.tobytes())
    raise TypeError(f"cannot pack {type(value).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != _ARRAY:
        return msgpack.ExtType(code, data)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    dtype_str, shape = unpacker.unpack()
    dtype = np.dtype(dtype_str)
    if dtype.kind not in _KINDS or dtype.fields is not None:
        raise MessageError(f"result array of dtype {dtype} refused")
    body = data[unpacker.tell():]
    return np.frombuffer(body, dtype=dtype).reshape(shape).copy()


def pack_result(value: Any) -> bytes:
    """msgpack bytes of an operator's result; raises `MessageError` naming what can't travel."""
    return msgpack.packb(_check(value, ""), default=_default, use_bin_type=True)


def unpack_result(data: bytes) -> Any:
    """The value `pack_result` packed (arrays come back as writable numpy arrays)."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
