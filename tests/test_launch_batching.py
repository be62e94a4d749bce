"""A gang's launch does not wait for distributed's stream batching (`asip._batched`)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from distributed.batched import BatchedSend
from distributed.comm import connect, listen
from distributed.comm.core import CommClosedError

import asip
from asip import _batched
from asip._batched import flush, flush_client
from asip.faults import KillOperator

pytestmark = pytest.mark.timeout(120)

SLOW = 8.0  # s: a batching interval no launch waits for once flushed


class Steps(asip.Operator):
    """Steps every 10 ms until the stage ends, or (``stop_after_restart``) until a restarted
    incarnation has taken its first step: a test then waits for the restart, not a budget."""

    def __init__(self, stop_after_restart: bool = False):
        self.stop_after_restart = stop_after_restart

    def step(self, ctx):
        if self.stop_after_restart and ctx.incarnation > 0:
            return asip.STOP
        time.sleep(0.01)
        return None

    def result(self, ctx):
        return {"index": ctx.index}


class Quick(asip.Operator):
    def step(self, ctx):
        return asip.STOP

    def result(self, ctx):
        return {"index": ctx.index}


async def _stream_pair(interval: str):
    """A BatchedSend on a real TCP comm, and a queue of the messages the other end read."""
    got: asyncio.Queue = asyncio.Queue()

    async def handle(comm):
        while True:
            try:
                for msg in await comm.read():
                    got.put_nowait(msg)
            except CommClosedError:
                return

    listener = listen("tcp://127.0.0.1:0", handle)
    await listener.start()
    comm = await connect(listener.contact_address)
    stream = BatchedSend(interval=interval)
    stream.start(comm)
    return listener, stream, got


def test_flush_sends_a_message_waiting_for_the_interval_at_once_and_in_order():
    async def main():
        listener, stream, got = await _stream_pair(f"{SLOW}s")
        try:
            stream.send("a")  # the first batch goes at once; the next waits SLOW s
            assert await asyncio.wait_for(got.get(), SLOW / 2) == "a"
            stream.send("b", "c")
            await asyncio.sleep(0.05)
            assert got.empty(), "the interval should hold the second batch"
            assert flush(stream) is True
            assert [await asyncio.wait_for(got.get(), SLOW / 2) for _ in "bc"] == ["b", "c"]
            assert flush(stream) is False  # nothing waiting
        finally:
            stream.abort()
            listener.stop()

    asyncio.run(main())


def test_flush_leaves_a_stream_without_batchedsends_private_state_alone():
    """Another distributed's BatchedSend (its private attributes renamed): no flush, no
    error; the messages go at the interval as without asip."""
    stream = BatchedSend(interval="10ms")
    stream.buffer.append("waiting")
    stream.next_deadline = 1e18
    del stream.next_deadline
    assert flush(stream) is False
    assert stream.buffer == ["waiting"]
    assert flush(None) is False
    assert flush_client(object()) is False  # a client without a scheduler stream


def _wake(stream) -> None:
    """Forget the stream's pending deadline (a test's 8 s must not outlive it)."""
    stream.next_deadline = None
    stream.waker.set()


def _set_worker_streams(interval, dask_scheduler=None):
    """Set the scheduler's streams to its workers to ``interval`` s; the old intervals."""
    old = {}
    for addr, stream in dask_scheduler.stream_comms.items():
        old[addr], stream.interval = stream.interval, interval
        _wake(stream)
    return old


def _restore_worker_streams(old, dask_scheduler=None):
    for addr, interval in old.items():
        if addr in dask_scheduler.stream_comms:
            dask_scheduler.stream_comms[addr].interval = interval
            _wake(dask_scheduler.stream_comms[addr])


def _set_client_stream(client, interval):
    stream = client.scheduler_comm
    old, stream.interval = stream.interval, interval
    client.loop.add_callback(_wake, stream)
    return old


@pytest.mark.parametrize("stream", ["client", "workers"])
def test_a_gang_launched_right_after_other_traffic_does_not_wait_for_the_batch_interval(
        client, stream):
    """With the client's stream (or the scheduler's to its workers) batching every 8 s,
    and a task just sent on it, the gang still starts at once: its ``update-graph`` (its
    ``compute-task``) is flushed, not held for the rest of the interval."""
    blocks = [np.ones((4, 2)), np.ones((4, 2))]
    asip.Stage(Quick, blocks, client=client, max_time=5).run()  # warm: imports, connections
    workers = sorted(client.nthreads())
    if stream == "client":
        old = _set_client_stream(client, SLOW)
    else:
        old = client.run_on_scheduler(_set_worker_streams, SLOW)
    try:
        # traffic just before the stage, on every slowed stream: the stage's messages come
        # less than the interval after a batch (or behind one still waiting for it)
        before = [client.submit(int, i, workers=[w], pure=False) for i, w in enumerate(workers)]
        res = asip.Stage(Quick, blocks, client=client, max_time=5).run()
        assert client.gather(before) == [0, 1]  # flushed with the stage's messages
    finally:
        if stream == "client":
            _set_client_stream(client, old)
        else:
            client.run_on_scheduler(_restore_worker_streams, old)
    assert [r["index"] for r in res.results] == [0, 1]
    # held for the interval, the first task would start about SLOW s after the launch began
    assert res.timings["launch_first_task"] < SLOW / 2, res.timings


def test_a_gang_launches_when_the_streams_cannot_be_flushed(client, monkeypatch):
    """The fallback: BatchedSend without the private state `_batched` relies on (simulated
    by asking for one more attribute, which no stream has): the stage runs as before."""
    monkeypatch.setattr(_batched, "_ATTRIBUTES", _batched._ATTRIBUTES + ("no_such_state",))
    res = asip.Stage(Quick, [np.ones((4, 2)), np.ones((4, 2))], client=client,
                     max_time=5).run()
    assert [r["index"] for r in res.results] == [0, 1]
    assert not res.missing


def test_a_restart_does_not_wait_for_the_client_streams_interval(client):
    """A crashed operator's new task goes to the scheduler at once: with the client's stream
    batching every 8 s (and the launch's graph sent on it moments before) the restart is
    ready well within the interval of its resubmit; held for the interval, it would not be.
    The restarted operator ends the stage (at 3 s, a stage at a load of 20 ended 0.9 s after
    a restart that the news of the failure had delayed 1.7 s)."""
    blocks = [np.ones((4, 2)), np.ones((4, 2))]
    asip.Stage(Quick, blocks, client=client, max_time=5).run()  # warm: imports, connections
    old = _set_client_stream(client, SLOW)
    try:
        res = asip.Stage(Steps(stop_after_restart=True), blocks, client=client, max_time=60.0,
                         faults=[KillOperator(partition=1, at=0.3)]).run()
    finally:
        _set_client_stream(client, old)
    assert res.stopped_by == "STOP from partition 1", res.stopped_by
    assert [(r.partition, r.incarnation) for r in res.restarts] == [(1, 1)]
    kinds = {e.kind: e.time for e in res.timeline if e.partition == 1}
    assert "resubmit" in kinds and "ready" in kinds, res.timeline
    assert kinds["ready"] - kinds["resubmit"] < SLOW / 4, res.timeline
