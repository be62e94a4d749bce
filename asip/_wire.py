"""The channel's wire format: msgpack headers plus raw array buffers, validated both ways.

Only this module knows bytes. A message travels as a list ``[header, buf0, buf1, ...]``:
``header`` is msgpack bytes (envelope, scalar values, array descriptions) and each
``buf`` is the raw C-ordered bytes of one array, inline ``bytes`` when small or a
separate distributed frame (serializer family ``asip-raw``) when large, so it is
zero-copy on the socket. Nothing here ever unpickles: a receiver that gets anything
else counts and drops it.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, NamedTuple

import msgpack
import numpy as np
from distributed.protocol.serialize import Serialized, register_serialization_family

from asip._exceptions import MessageError

__all__ = [
    "Limits",
    "Message",
    "check_payload",
    "decode_frames",
    "decode_message",
    "decode_targets",
    "encode_message",
    "pack_payload",
    "unpack_payload",
]

WIRE_VERSION = 2
_MAX_NDIM = 32  # numpy allows 64; nothing a solver sends needs more
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what msgpack can carry
_ALLOWED_KINDS = "biufc"  # bool, signed/unsigned int, float, complex: never object/structured
_SCALAR_TYPES = (bool, int, float, str)
_RAW_FRAME_HEADER = {"serializer": "asip-raw"}


def _raw_dumps(x: Any) -> tuple[dict, list]:
    return dict(_RAW_FRAME_HEADER), [memoryview(x).cast("B")]


def _raw_loads(header: dict, frames: list) -> memoryview:
    """Raw array bytes stay raw bytes: this family never interprets, let alone unpickles."""
    if len(frames) == 1:
        return memoryview(frames[0]).cast("B")
    return memoryview(b"".join(bytes(f) for f in frames))


# Large array buffers travel as distributed frames tagged "asip-raw"; receivers turn
# them back into plain memoryviews with no other deserializer involved.
register_serialization_family("asip-raw", _raw_dumps, _raw_loads)


class Limits(NamedTuple):
    """Size limits a payload must respect (from ``asip.channel.*``)."""

    max_bytes: int
    max_keys: int
    inline_bytes: int


class Message(NamedTuple):
    """One received message: who sent it, which incarnation, what, and when (sender's clock).

    ``slot`` is the conflation slot of a ``push(..., latest=...)`` (None for FIFO messages).
    """

    sender: int
    incarnation: int
    payload: dict[str, Any]
    sent_at: float
    seq: int
    slot: str | None = None


class Encoded(NamedTuple):
    """A validated message ready for delivery: msgpack header and private array copies."""

    header: bytes
    buffers: list[np.ndarray]
    nbytes: int
    slot: str | None = None


_local = threading.local()


def _packer() -> msgpack.Packer:
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(autoreset=True, use_bin_type=True)
    return packer


def check_payload(payload: Any, limits: Limits) -> tuple[dict, list, list[np.ndarray], int]:
    """Validate a payload and split it into scalars, array descriptions and array copies.

    Raises `MessageError` naming the offending key: payloads are flat
    ``dict[str, ndarray | int | float | str | bool]`` with numeric arrays only.
    Arrays are copied, so the caller may change them right after ``push``.
    """
    if not isinstance(payload, dict):
        raise MessageError(f"payload must be a dict, got {type(payload).__name__}")
    if len(payload) > limits.max_keys:
        raise MessageError(
            f"payload has {len(payload)} keys; the limit is {limits.max_keys} (asip.channel.max-keys)"
        )
    scalars: dict[str, Any] = {}
    arrays: list[list] = []
    buffers: list[np.ndarray] = []
    nbytes = 0
    for key, value in payload.items():
        if not isinstance(key, str):
            raise MessageError(f"payload keys must be str, got {key!r} ({type(key).__name__})")
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in _ALLOWED_KINDS or value.dtype.fields is not None:
                raise MessageError(
                    f"payload[{key!r}] has dtype {value.dtype}; only numeric (bool/int/uint/"
                    "float/complex) arrays can travel"
                )
            array = np.array(value, order="C", copy=True)
            arrays.append([key, array.dtype.str, list(array.shape)])
            buffers.append(array)
            nbytes += array.nbytes
        elif isinstance(value, np.generic) and value.dtype.kind in _ALLOWED_KINDS[:-1]:
            scalars[key] = value.item()
        elif isinstance(value, _SCALAR_TYPES):
            if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
                raise MessageError(
                    f"payload[{key!r}] = {value} does not fit in 64 bits; send it as a float or str"
                )
            scalars[key] = value
            nbytes += len(value) if isinstance(value, str) else 8
        else:
            raise MessageError(
                f"payload[{key!r}] is a {type(value).__name__}; values must be numeric "
                "ndarrays, int, float, str or bool (no nesting, no objects)"
            )
        if nbytes > limits.max_bytes:
            raise MessageError(
                f"payload is over {limits.max_bytes} bytes (asip.channel.max-message-bytes)"
            )
    return scalars, arrays, buffers, nbytes


def encode_message(
    payload: dict, *, run_id: str, sender: int, incarnation: int, seq: int, limits: Limits,
    slot: str | None = None,
) -> Encoded:
    """Validate and encode one message from ``sender``; raises `MessageError` if it can't travel.

    ``slot`` (a str) makes it a conflating message: receivers keep only the newest
    message per sender and slot.
    """
    scalars, arrays, buffers, nbytes = check_payload(payload, limits)
    header = _packer().pack(
        [WIRE_VERSION, run_id, sender, incarnation, seq, time.time(), scalars, arrays, slot]
    )
    return Encoded(header, buffers, nbytes + len(header), slot)


def wire_item(encoded: Encoded, limits: Limits) -> list:
    """The object handed to distributed's comm: small buffers inline, large ones as frames."""
    item: list = [encoded.header]
    for array in encoded.buffers:
        view = memoryview(array).cast("B") if array.nbytes else b""
        if array.nbytes <= limits.inline_bytes:
            item.append(bytes(view))
        else:
            item.append(Serialized(dict(_RAW_FRAME_HEADER), [view]))
    return item


def decode_frames(frames: list) -> Any:
    """One message as distributed's protocol frames it (``protocol.dumps``), decoded with
    msgpack and raw ``asip-raw`` frames only (the data plane's receive path).

    Raises `MessageError` for anything else: a sub-frame tagged ``__Pickled__``, another
    serializer (``pickle``, ``dask``, ...), compression, offsets out of range, garbage.
    Nothing is ever unpickled or handed to another deserializer.
    """
    n_frames = len(frames)

    def hook(obj: dict) -> Any:
        if "__Pickled__" in obj:
            raise MessageError("refused a pickled frame: the channel carries msgpack only")
        offset = obj.get("__Serialized__")
        if offset is None:
            return obj
        if type(offset) is not int or not 0 < offset < n_frames:
            raise MessageError(f"sub-frame offset {offset!r} out of range")
        try:
            sub = msgpack.unpackb(frames[offset], raw=False, strict_map_key=True,
                                  max_array_len=16, max_map_len=8)
        except Exception as exc:  # msgpack raises several types for garbage
            raise MessageError(f"sub-frame header is not valid msgpack: {exc}") from exc
        if not isinstance(sub, dict) or sub.get("serializer") != "asip-raw":
            tag = sub.get("serializer") if isinstance(sub, dict) else sub
            raise MessageError(f"refused a frame tagged {tag!r}: only asip-raw is accepted")
        if any(c is not None for c in sub.get("compression") or ()):
            raise MessageError("refused a compressed frame")
        n = sub.get("num-sub-frames")
        if type(n) is not int or not 0 < n <= n_frames - offset - 1:
            raise MessageError(f"sub-frame count {n!r} out of range")
        return _raw_loads(sub, frames[offset + 1:offset + 1 + n])

    try:
        return msgpack.unpackb(frames[0], object_hook=hook, use_list=False, raw=False,
                               strict_map_key=False)
    except MessageError:
        raise
    except Exception as exc:  # msgpack raises several types for garbage
        raise MessageError(f"a message that is not valid msgpack: {exc}") from exc


def local_item(encoded: Encoded) -> list:
    """The same item for delivery inside one process (buffers already private copies)."""
    return [encoded.header, *(memoryview(a).cast("B") if a.nbytes else b"" for a in encoded.buffers)]


def _buffer(part: Any) -> memoryview:
    if isinstance(part, (bytes, bytearray, memoryview)):
        return memoryview(part).cast("B") if isinstance(part, memoryview) else memoryview(part)
    if isinstance(part, Serialized) and part.header.get("serializer") == "asip-raw":
        return _raw_loads(part.header, part.frames)
    raise MessageError(f"array buffer is a {type(part).__name__}, not raw bytes")


def _unpack_header(header: Any, limits: Limits) -> list:
    if not isinstance(header, (bytes, bytearray, memoryview)):
        raise MessageError(f"message header is a {type(header).__name__}, not msgpack bytes")
    if len(header) > limits.max_bytes:
        raise MessageError("message header is over the size limit")
    try:
        fields = msgpack.unpackb(
            header,
            raw=False,
            strict_map_key=True,
            max_array_len=max(limits.max_keys * 4, 64),
            max_map_len=limits.max_keys,
        )
    except Exception as exc:  # msgpack raises several types for garbage
        raise MessageError(f"message header is not valid msgpack: {exc}") from exc
    if not isinstance(fields, list) or len(fields) != 9 or fields[0] != WIRE_VERSION:
        raise MessageError("message header has the wrong shape or wire version")
    return fields


_DTYPES: dict[str, np.dtype] = {}  # dtype strings already checked: decoding is per message


def _dtype(key: str, dtype_str: Any) -> np.dtype:
    dtype = _DTYPES.get(dtype_str) if isinstance(dtype_str, str) else None
    if dtype is not None:
        return dtype
    try:
        dtype = np.dtype(dtype_str) if isinstance(dtype_str, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None:
        raise MessageError(f"array {key!r} has a dtype that can't travel: {str(dtype_str)[:40]!r}")
    if dtype.subdtype is not None:
        raise MessageError(f"array {key!r} has a sub-array dtype")
    if len(_DTYPES) < 256:
        _DTYPES[dtype_str] = dtype
    return dtype


def _array_from(desc: Any, part: Any) -> tuple[str, np.ndarray]:
    if not (isinstance(desc, list) and len(desc) == 3 and isinstance(desc[0], str)):
        raise MessageError("array description is malformed")
    key, dtype_str, shape = desc
    dtype = _dtype(key, dtype_str)
    if not (isinstance(shape, list) and len(shape) <= _MAX_NDIM
            and all(isinstance(s, int) and 0 <= s <= _INT_MAX for s in shape)):
        raise MessageError(f"array {key!r} has a malformed shape {str(shape)[:80]}")
    buf = _buffer(part)
    expected = math.prod(shape) * dtype.itemsize
    if buf.nbytes != expected:
        raise MessageError(
            f"array {key!r}: {buf.nbytes} bytes for shape {shape} of {dtype} ({expected} expected)"
        )
    try:
        array = np.frombuffer(buf, dtype=dtype).reshape(shape)
    except ValueError as exc:  # e.g. a zero-size shape whose other dims overflow
        raise MessageError(f"array {key!r} has an impossible shape: {exc}") from exc
    array.flags.writeable = False
    return key, array


def decode_message(item: Any, *, run_id: str, n_partitions: int, limits: Limits) -> Message:
    """Decode and validate one received item; raises `MessageError` for anything malformed."""
    if not isinstance(item, (list, tuple)) or not item:
        raise MessageError(f"message is a {type(item).__name__}, not a [header, buffers...] list")
    fields = _unpack_header(item[0], limits)
    _, msg_run, sender, incarnation, seq, sent_at, scalars, arrays, slot = fields
    if msg_run != run_id:
        raise MessageError(f"message from another run ({msg_run!r}), expected {run_id!r}")
    if not (isinstance(sender, int) and 0 <= sender < n_partitions):
        raise MessageError(f"message from unknown sender {sender!r}")
    if not (isinstance(incarnation, int) and incarnation >= 0 and isinstance(seq, int)):
        raise MessageError("message has a malformed incarnation or sequence number")
    if not isinstance(sent_at, (int, float)) or not isinstance(scalars, dict):
        raise MessageError("message has a malformed timestamp or scalar section")
    if slot is not None and not isinstance(slot, str):
        raise MessageError("message has a malformed conflation slot")
    if not isinstance(arrays, list) or len(arrays) != len(item) - 1:
        raise MessageError("message has a different number of array descriptions and buffers")
    payload: dict[str, Any] = {}
    for key, value in scalars.items():
        if not isinstance(key, str) or not isinstance(value, _SCALAR_TYPES):
            raise MessageError(f"scalar {key!r} has a type that can't travel")
        payload[key] = value
    total = len(item[0])
    for desc, part in zip(arrays, item[1:]):
        key, array = _array_from(desc, part)
        total += array.nbytes
        if total > limits.max_bytes:
            raise MessageError("message is over the size limit (asip.channel.max-message-bytes)")
        payload[key] = array
    return Message(sender, incarnation, payload, float(sent_at), seq, slot)


def decode_targets(code: Any, n_partitions: int) -> list[int] | None:
    """The receivers a wire item names: None for "every local operator but the sender"
    (code -1), else a list of partitions. Raises `MessageError` for anything else."""
    if isinstance(code, int) and not isinstance(code, bool):
        if code == -1:
            return None
        code = [code]
    if not isinstance(code, (list, tuple)) or not code or len(code) > n_partitions:
        raise MessageError(f"message has malformed receivers {str(code)[:80]}")
    for j in code:
        if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < n_partitions:
            raise MessageError(f"message names an unknown receiver {str(j)[:40]}")
    return list(code)


def pack_payload(payload: dict, limits: Limits) -> bytes:
    """A self-contained msgpack encoding of a payload (results and reports to the driver)."""
    scalars, arrays, buffers, _ = check_payload(payload, limits)
    return msgpack.packb(
        [scalars, arrays, [memoryview(b).cast("B") if b.nbytes else b"" for b in buffers]],
        use_bin_type=True,
    )


def unpack_payload(data: bytes) -> dict[str, Any]:
    """Inverse of `pack_payload`; arrays come back writeable."""
    try:
        scalars, arrays, buffers = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise MessageError(f"payload is not valid msgpack: {exc}") from exc
    if len(arrays) != len(buffers):
        raise MessageError("payload has a different number of array descriptions and buffers")
    out = dict(scalars)
    for desc, buf in zip(arrays, buffers):
        key, array = _array_from(desc, buf)
        out[key] = array.copy()
    return out
