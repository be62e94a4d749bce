"""The data plane's own stream handler: a peer link is read with msgpack and raw array
frames only, so a hostile peer's pickle is refused and counted, never executed."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from distributed import Scheduler, Worker
from distributed.comm import connect
from distributed.protocol import to_serialize
from distributed.protocol.serialize import ToPickle

from asip._dataplane import ChannelSettings, DataPlane
from asip._exceptions import MessageError
from asip._stream import read_message
from asip._wire import Limits, decode_frames, encode_message, wire_item

pytestmark = pytest.mark.timeout(60)

LIMITS = Limits(1 << 20, 16, 1024)
RUN = "s1"


class Evil:
    """Unpickling this creates the file ``path``: proof that a pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def with_plane(test):
    """Run ``await test(plane, comm)``: a data plane on a real worker and a raw comm to it
    that has done the link's handshake (as `asip._links` does)."""
    async def main():
        async with Scheduler(dashboard_address=":0", host="127.0.0.1", port=0) as s, \
                Worker(s.address, nthreads=1, host="127.0.0.1", dashboard=False) as w:
            settings = ChannelSettings(LIMITS, 1 << 20, 1 << 20, 2.0, 0.2, 0.1)
            plane = DataPlane(w, RUN, 4, settings, (), lambda: {2: (w.address, 0)})
            w.handlers[plane.deliver_op] = plane.handle_stream
            plane.open(2, 0)
            comm = await connect(w.address)
            try:
                await comm.write({"op": plane.deliver_op, "reply": True})
                assert await read_message(comm, 4096) is True  # the handshake's answer
                await test(plane, comm)
            finally:
                comm.abort()
                plane.close()
    asyncio.run(asyncio.wait_for(main(), 45))


def good_item(t: int) -> list:
    enc = encode_message({"v": np.arange(3.0), "t": t}, run_id=RUN, sender=0, incarnation=0,
                         seq=t, limits=LIMITS)
    return [[2], *wire_item(enc, LIMITS)]


def test_a_pickle_sent_to_the_data_plane_is_refused_counted_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    async def test(plane, comm):
        # a sub-frame tagged "pickle", then a "__Pickled__" frame, each in its own batch
        await comm.write({"batch": [[[2], to_serialize(Evil(str(marker)))]]},
                         serializers=("pickle",))
        assert await read_message(comm, 4096) == 1  # read whole: counted, acknowledged
        await comm.write({"batch": [ToPickle(Evil(str(marker)))]})
        assert await read_message(comm, 4096) == 1
        await comm.write({"batch": [good_item(7)]})  # the stream still works
        assert await read_message(comm, 4096) == 1  # acknowledged lazily, all the same
        assert not marker.exists()
        assert plane.malformed == 2
        (m,) = plane.endpoints[(2, 0)].mailbox.poll()
        assert m.payload["t"] == 7
    with_plane(test)


def test_a_message_over_the_bound_closes_the_stream_and_is_counted():
    async def test(plane, comm):
        await comm.stream.write(struct.pack("Q", 1 << 40))  # "a terabyte follows"
        with pytest.raises(Exception):
            await read_message(comm, 4096)  # the peer closed the stream, replying nothing
        assert plane.malformed == 1 and not plane.streams
    with_plane(test)


def test_decode_frames_accepts_only_msgpack_and_raw_array_frames():
    from distributed.protocol import dumps

    big = wire_item(encode_message({"v": np.arange(1000.0)}, run_id=RUN, sender=0,
                                   incarnation=0, seq=0, limits=LIMITS), LIMITS)
    msg = decode_frames(dumps({"batch": [[[2], *big]]}))
    assert bytes(msg["batch"][0][2]) == np.arange(1000.0).tobytes()  # a raw frame, intact
    for bad in ({"x": to_serialize(np.ones(3))},  # numpy's own serializer (pickle-5 buffers)
                {"x": ToPickle(1)}):
        with pytest.raises(MessageError, match="refused"):
            decode_frames(dumps(bad))
    for garbage in ([b"\xc1"], [b"\x81\xae__Serialized__\x05"], [b"\x81\xae__Serialized__\x01",
                                                                 b"\xc1"]):
        with pytest.raises(MessageError):
            decode_frames(garbage)


def _distributed_bytes(msg) -> bytes:
    """What distributed's TCP comm writes for ``msg``."""
    from distributed.comm.tcp import _add_frames_header
    from distributed.protocol import dumps

    frames, _, _ = _add_frames_header(list(dumps(msg)))
    return b"".join(bytes(f) for f in frames)


def test_frame_writes_the_bytes_distributeds_comm_writes():
    from asip._stream import frame

    for obj in (True, 7, ["ended", 3], {"batch": [good_item(1)], "ack": False}):
        assert frame(obj) == _distributed_bytes(obj)


def test_the_frame_reader_parses_distributeds_framing_however_the_bytes_arrive():
    from asip._stream import FrameReader

    big = [[2], *wire_item(encode_message({"v": np.arange(10000.0)}, run_id=RUN, sender=0,
                                          incarnation=0, seq=0, limits=LIMITS), LIMITS)]
    msgs = [{"batch": [good_item(1)], "ack": True}, 5, {"batch": [big]}, ["ended", 2]]
    data = b"".join(_distributed_bytes(m) for m in msgs)  # the big one is multi-frame
    for chunk in (1, 7, 4096, len(data)):
        reader, got = FrameReader(1 << 20), []
        for i in range(0, len(data), chunk):
            for frames in reader.feed(data[i:i + chunk]):
                assert all(f.obj is not reader.buf for f in frames)  # its own bytes
                got.append(decode_frames(frames))
        assert reader.error is None and reader.n == 0 and reader.big is None
        assert got[1] == 5 and got[3] == ("ended", 2) and got[0]["ack"] is True
        assert bytes(got[2]["batch"][0][2]) == np.arange(10000.0).tobytes()  # > CHUNK
        assert decode_frames([memoryview(_distributed_bytes(msgs[0]))[24:]]) == got[0]


def test_the_frame_reader_stops_at_an_oversized_or_garbled_message_after_the_good_ones():
    from asip._stream import FrameReader

    good = _distributed_bytes(7)
    for bad in (struct.pack("Q", 1 << 40),  # over the bound: known from 8 bytes
                struct.pack("QQ", 16, 1 << 50),  # more frames than the head can hold
                struct.pack("QQQ", 16, 1, 1 << 30)):  # a frame over the bound
        reader = FrameReader(1 << 20)
        (frames,) = reader.feed(good + bad + good)
        assert decode_frames(frames) == 7
        assert reader.error is not None
        assert reader.feed(good) == []  # nothing more is read off a broken stream


def test_a_plain_tcp_link_is_read_by_a_transport_that_delivers_in_the_reading_callback():
    from asip._dataplane import _LinkProtocol
    from asip._stream import frame

    async def test(plane, comm):
        (link,) = plane.streams
        assert isinstance(link, _LinkProtocol)  # tornado let go of the socket
        # the bytes of two batches in one arrival: both delivered, receivers woken, before
        # the callback returns (no loop iteration in between)
        link.data_received(frame({"batch": [good_item(1)]}) + frame({"batch": [good_item(2)]}))
        assert [m.payload["t"] for m in plane.endpoints[(2, 0)].mailbox.poll()] == [1, 2]
        await comm.write({"batch": [good_item(3)], "ack": True})  # and off the real socket
        acked = 0
        while acked < 3:  # cumulative: the first two maybe on their own (ACK_DELAY)
            acked += await read_message(comm, 4096)
        assert acked == 3
        assert [m.payload["t"] for m in plane.endpoints[(2, 0)].mailbox.poll()] == [3]
    with_plane(test)


def test_the_frame_reader_takes_a_message_of_many_frames():
    from asip._stream import FrameReader

    frames = [b"\x07"] + [bytes([i % 251]) * (i % 3) for i in range(1, 12000)]
    n = len(frames)
    body = struct.pack(f"{n + 1}Q", n, *map(len, frames)) + b"".join(frames)
    data = struct.pack("Q", len(body)) + body  # a prelude of 96 KB: over the shared buffer
    reader = FrameReader(1 << 20)
    got = [f for i in range(0, len(data), 5000) for f in reader.feed(data[i:i + 5000])]
    assert reader.error is None and len(got) == 1 and decode_frames(got[0]) == 7
    assert [bytes(f) for f in got[0]] == frames
