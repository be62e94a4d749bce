"""The data plane's own stream reader: framed messages off a distributed comm, msgpack only.

A peer link (`asip._links`) is one long-lived comm per peer worker, handed after a
one-message handshake to the receiver's stream handler (`DataPlane.handle_stream`).
Neither side reads it with distributed's ``comm.read``: that decodes frames tagged
``__Pickled__`` or with the ``pickle`` serializer, so a hostile peer could run code.
Here the frames are read as distributed's TCP comm frames them and decoded by
`asip._wire.decode_frames`: msgpack plus raw ``asip-raw`` array frames, anything else
refused (`MessageError`) and counted by the caller.

Over plain TCP the receiver takes the connection away from tornado (`take_socket`)
and reads it with an asyncio transport and a `FrameReader`, so the bytes of an arrival
are parsed, delivered and their receiver woken in the one callback that read them
(tornado's read futures cost a loop iteration each). TLS streams are read with
`read_message`. `frame` writes a message as distributed's TCP comm would.
"""

from __future__ import annotations

import struct
from typing import Any

from asip._exceptions import MessageError
from asip._wire import _packer, decode_frames

from distributed.comm.inproc import InProc

# Not public API (distributed 2026.8, tornado 6.6), and none does the job: a TCP comm's
# tornado IOStream (``comm.stream``, its socket and tornado's private ``_read_buffer_size``),
# ``read_bytes_rw`` and ``unpack_frames``. distributed's public ``Comm.read`` unpickles
# ``__Pickled__`` frames whatever the deserializers, and no public call hands out a comm's
# socket. Another version lacking them: links are refused or read on the slower path.
try:  # distributed's TCP framing (the comm asip's links use over TCP and TLS)
    from distributed.comm.tcp import TCP, read_bytes_rw
    from distributed.protocol.utils import unpack_frames
    from tornado.iostream import SSLIOStream
except ImportError:  # pragma: no cover - another distributed: byte comms are refused below
    TCP = read_bytes_rw = unpack_frames = SSLIOStream = None

__all__ = ["FrameReader", "StreamError", "frame", "read_message", "take_socket"]

_LEN = struct.Struct("Q")
_FRAMING = struct.Struct("QQQ")


class StreamError(Exception):
    """The stream cannot be read on (a frame over the bound, garbled framing): close it."""


def frame(obj: Any) -> bytes:
    """``obj`` (msgpack-able, no `Serialized` parts) as the bytes distributed's TCP comm
    writes for it: one msgpack frame behind its length prelude. ``protocol.dumps`` and
    ``_add_frames_header`` give the same bytes at several times the cost."""
    body = _packer().pack(obj)
    n = len(body)
    return _FRAMING.pack(16 + n, 1, n) + body


def take_socket(comm: Any) -> Any:
    """Take a plain TCP comm's connection away from tornado: a duplicate of its socket,
    for an asyncio transport that reads it in one callback per arrival (no tornado
    buffering, no future, no extra loop iteration), and the comm itself closed (its
    close callbacks and distributed's bookkeeping end there; the connection lives on in
    the duplicate). None when the comm is not plain TCP or tornado already holds bytes
    of it (then it is read with `read_message`)."""
    if TCP is None or type(comm) is not TCP or SSLIOStream is None:
        return None
    stream = comm.stream  # (not public: see the imports)
    if (stream is None or isinstance(stream, SSLIOStream) or stream.closed()
            or getattr(stream, "_read_buffer_size", None) != 0):
        return None
    sock = stream.socket.dup()
    sock.setblocking(False)
    comm.abort()  # tornado lets go of its file descriptor; the connection stays open
    return sock


class FrameReader:
    """Distributed's TCP framing, parsed incrementally as the bytes arrive, for an asyncio
    ``BufferedProtocol``: the socket is read straight into `get_buffer`, and `updated`
    returns the frames of each message completed (memoryviews of that message's own
    bytes: a small message is copied out of the shared buffer, a large one is read into
    a buffer of its exact size, so nothing received is copied twice and nothing queued
    pins more memory than its message). A message over ``max_bytes`` in all, or garbled
    framing, sets ``error`` (a `StreamError`: the stream cannot be read on) after the
    messages completed before it."""

    CHUNK = 64 << 10  # the shared buffer: small messages, and the start of large ones

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.buf = bytearray(self.CHUNK)
        self.n = 0  # bytes of ``buf`` filled
        self.big: bytearray | None = None  # a message larger than ``buf``, being read
        self.big_n = 0
        self.error: StreamError | None = None

    def get_buffer(self) -> memoryview:
        """Where the next read goes (never empty)."""
        if self.big is not None:
            return memoryview(self.big)[self.big_n:]
        return memoryview(self.buf)[self.n:] if self.error is None else memoryview(self.buf)

    def updated(self, nbytes: int) -> list[list[memoryview]]:
        """``nbytes`` more were read into `get_buffer`: the messages now complete."""
        out: list[list[memoryview]] = []
        if self.error is not None:
            return out
        if self.big is not None:
            self.big_n += nbytes
            if self.big_n == len(self.big):
                out.append(_frames(self.big))
                self.big = None
            return out
        self.n += nbytes
        try:
            self._parse(out)
        except StreamError as exc:
            self.error, self.n = exc, 0
        return out

    def feed(self, data: bytes) -> list[list[memoryview]]:
        """`updated` for bytes read elsewhere (tests, other transports)."""
        out: list[list[memoryview]] = []
        view = memoryview(data)
        while len(view) and self.error is None:
            room = self.get_buffer()
            k = min(len(room), len(view))
            room[:k] = view[:k]
            out.extend(self.updated(k))
            view = view[k:]
        return out

    def _parse(self, out: list) -> None:
        buf, start, end = self.buf, 0, self.n
        while end - start >= 8:
            (head,) = _LEN.unpack_from(buf, start)
            if head > self.max_bytes:
                raise StreamError(f"a message of {head} bytes is over the bound of "
                                  f"{self.max_bytes}")
            if end - start < 16:
                break
            (n_frames,) = _LEN.unpack_from(buf, start + 8)
            if not 0 < n_frames <= head // 8 - 1:
                raise StreamError(f"garbled frames: {n_frames} frames in {head} bytes")
            prelude = 8 * (1 + n_frames)
            if end - start < 8 + prelude:
                if 8 + prelude > len(buf):  # a prelude of thousands of frames: more room
                    self.buf = bytearray(8 + prelude)
                    self.buf[:end - start] = buf[start:end]
                    self.n = end - start
                    return
                break
            total = 8 + prelude + sum(struct.unpack_from(f"{n_frames}Q", buf, start + 16))
            if total > self.max_bytes:
                raise StreamError(f"a message of {total} bytes is over the bound of "
                                  f"{self.max_bytes}")
            if head > total - 8:
                raise StreamError("garbled frames: the head is longer than the message")
            if total > len(buf):  # read the rest straight into a buffer of its own
                self.big = bytearray(total)
                self.big[:end - start] = buf[start:end]
                self.big_n, self.n = end - start, 0
                return
            if end - start < total:
                break
            out.append(_frames(bytes(memoryview(buf)[start:start + total])))
            start += total
        if start:  # the partial message to the front (the same size: never a resize)
            buf[:end - start] = buf[start:end]
        self.n = end - start
        if self.n == 0 and len(buf) > self.CHUNK:  # back to the usual size
            self.buf = bytearray(self.CHUNK)


def _frames(message: Any) -> list[memoryview]:
    """The frames of one whole message in distributed's TCP framing (checked by the
    caller): distributed's own `unpack_frames` past the message's length prelude."""
    return unpack_frames(memoryview(message)[_LEN.size:])


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
