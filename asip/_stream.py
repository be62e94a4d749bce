"""The data plane's own stream reader: framed messages off a distributed comm, msgpack only.

A peer link (`asip._links`) is one long-lived comm per peer worker, handed after a
one-message handshake to the receiver's stream handler (`DataPlane.handle_stream`),
which reads it in a loop. Neither side reads it with distributed's ``comm.read``:
that decodes frames tagged ``__Pickled__`` or with the ``pickle`` serializer, so a
hostile peer could run code. Here the frames are read as distributed's TCP comm
frames them and decoded by `asip._wire.decode_frames`: msgpack plus raw ``asip-raw``
array frames, anything else refused (`MessageError`) and counted by the caller.
"""

from __future__ import annotations

import struct
from typing import Any

from asip._exceptions import MessageError
from asip._wire import decode_frames

from distributed.comm.inproc import InProc

try:  # distributed's TCP framing (the comm asip's links use over TCP and TLS)
    from distributed.comm.tcp import TCP, read_bytes_rw
    from distributed.protocol.utils import unpack_frames
except ImportError:  # pragma: no cover - another distributed: byte comms are refused below
    TCP = read_bytes_rw = unpack_frames = None

__all__ = ["StreamError", "read_message"]

_LEN = struct.Struct("Q")


class StreamError(Exception):
    """The stream cannot be read on (a frame over the bound, garbled framing): close it."""


async def read_message(comm: Any, max_bytes: int) -> Any:
    """One message from ``comm``, decoded with msgpack and raw array frames only.

    Raises `MessageError` for a message that was read whole but is refused (pickle,
    another serializer, garbage: the stream goes on), `StreamError` when the stream
    cannot be read on (framing over ``max_bytes`` in all), or distributed's
    ``CommClosedError``.
    """
    if isinstance(comm, InProc):
        # in-process comms hand Python objects over without bytes: nothing to unpickle
        return await comm.read(deserializers=())
    if TCP is None or not isinstance(comm, TCP):
        # distributed's comm.read would unpickle ``__Pickled__`` frames whatever the
        # deserializers: a comm whose frames asip cannot read itself is not read at all
        comm.abort()
        raise StreamError(f"cannot read a {type(comm).__name__} comm with msgpack only "
                          "(asip reads distributed's TCP/TLS framing itself)")
    stream = comm.stream
    if stream is None:
        from distributed.comm.core import CommClosedError

        raise CommClosedError("stream closed")
    try:
        (nbytes,) = _LEN.unpack(await stream.read_bytes(_LEN.size))
        if nbytes > max_bytes:
            raise StreamError(f"a message of {nbytes} bytes is over the bound of {max_bytes}")
        head = await read_bytes_rw(stream, nbytes)
        try:
            frames, missing = unpack_frames(head, partial=True)
        except Exception as exc:  # noqa: BLE001 - garbled framing: the stream is lost
            raise StreamError(f"garbled frames: {exc}") from exc
        total = nbytes + sum(missing)
        if total > max_bytes:
            raise StreamError(f"a message of {total} bytes is over the bound of {max_bytes}")
        for n in missing:
            frames.append(await read_bytes_rw(stream, n))
    except StreamError:
        comm.abort()
        raise
    except Exception as exc:  # noqa: BLE001 - as distributed does: the stream is closed
        from distributed.comm.core import CommClosedError

        comm.abort()
        raise CommClosedError(f"reading the asip stream failed: {exc!r}") from exc
    if not frames:
        raise MessageError("a message without frames")
    return decode_frames(frames)
