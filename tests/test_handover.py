"""Pushes between workers of one process (``inproc://``), put into the receivers' mailboxes by
the pushing thread: copies, order, exact counts, drops, incarnations and bounds kept; not
taken between worker processes, over TCP, or with the knob off."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import asip
from asip._wire import encode_message
from asip.faults import DropMessages
from test_dataplane import LIMITS, RUN, enc, ep, until, with_workers

pytestmark = pytest.mark.timeout(60)


def with_inproc_workers(test, faults=(), **kw):
    """`test_dataplane.with_workers` over ``inproc://``."""
    with_workers(test, faults, protocol="inproc://", **kw)


def test_pushes_between_in_process_workers_are_handed_over_as_ordered_counted_copies():
    async def test(a, b, directory):
        sender = ep(a, 0)
        v = np.zeros(4)

        def pushes():  # the operator thread: FIFO to a peer worker and to its own worker
            for t in range(50):
                v[:] = t
                a.submit(sender, encode_message({"t": t, "v": v}, run_id=RUN, sender=0,
                                                incarnation=0, seq=t, limits=LIMITS), (1, 2, 3))
                v[:] = -1  # the sender reuses its buffer at once
            a.submit(sender, enc(seq=50, t=50), None)  # everyone else

        await asyncio.to_thread(pushes)
        for plane, j in ((a, 1), (b, 2), (b, 3)):
            got = ep(plane, j).mailbox.poll()
            assert [m.payload["t"] for m in got] == list(range(51))  # in order, all there
            assert all((m.payload["v"] == m.payload["t"]).all() for m in got[:50])  # copies
            assert not got[0].payload["v"].flags.writeable
            assert ep(plane, j).stats.delivered == 51
        assert not a.links and not b.links and not a._outbox  # no event-loop hop, no link
        assert sender.stats.sent == 0  # the sender's side is charged by its loop ...
        stats = a.close_endpoint(sender)  # ... at the latest when it closes
        assert stats["handed"] == 51 and stats["sent"] == 3 * 51 and stats["direct"] == 0
        assert sum(stats["queued_hist"]) == 51
    with_inproc_workers(test)


def test_handed_over_pushes_keep_drops_incarnations_bounds_and_conflation():
    async def test(a, b, directory):
        sender = ep(a, 1)  # DropMessages(p=1) is for partition 0 only
        await asyncio.to_thread(a.submit, ep(a, 0), enc(seq=0), (2,))
        a.settle_thread_counts()
        assert ep(a, 0).stats.dropped_injected == 1 and ep(a, 0).stats.sent == 1
        for t in range(5):  # latest=: one message waits per sender and slot
            await asyncio.to_thread(a.submit, sender, enc(sender=1, seq=t, t=t, latest=""), (3,))
        (m,) = ep(b, 3).mailbox.poll()
        assert m.payload["t"] == 4 and ep(b, 3).stats.conflated == 4
        big = {"v": np.zeros(8000)}  # 64 kB: the receiver's 100 kB mailbox holds one
        for t in range(3):
            await asyncio.to_thread(a.submit, sender, encode_message(
                big, run_id=RUN, sender=1, incarnation=0, seq=10 + t, limits=LIMITS), (2,))
        assert ep(b, 2).stats.dropped_overflow == 2 and len(ep(b, 2).mailbox) == 1
        directory[1] = (a.address, 1)  # the directory knows a newer incarnation of partition 1:
        await asyncio.to_thread(a.submit, sender, enc(sender=1, seq=20), (2,))  # a zombie
        await until(lambda: ep(b, 2).stats.zombie == 1)  # rejected (on the loop's path)
        a.settle_thread_counts()
        assert sender.stats.handed == 5 + 3 and sender.stats.sent == 5 + 3 + 1
    with_inproc_workers(test, faults=(DropMessages(p=1.0, partition=0),), mailbox=100_000)


def test_no_handover_over_tcp_nor_with_the_knob_off():
    async def tcp(a, b, directory):
        await asyncio.to_thread(a.submit, ep(a, 0), enc(), (2,))
        await until(lambda: ep(b, 2).stats.delivered == 1)
        a.settle_thread_counts()
        assert ep(a, 0).stats.handed == 0 and a.links  # through the loop's link

    async def off(a, b, directory):
        a.settings.handover = False
        await asyncio.to_thread(a.submit, ep(a, 0), enc(), (2,))
        await until(lambda: ep(b, 2).stats.delivered == 1)
        a.settle_thread_counts()
        assert ep(a, 0).stats.handed == 0 and a.links

    with_workers(tcp)
    with_inproc_workers(off)


class _PingPong(asip.Operator):
    """Partition 0 pings partition 1, which answers; 40 round trips."""

    def setup(self, ctx, partition):
        self.trips = 0

    def step(self, ctx):
        if ctx.index == 0:
            ctx.push({"v": np.ones(10)}, to=1)
            while not ctx.poll(timeout=1.0):
                if ctx.stopping:
                    return asip.STOP
            self.trips += 1
            return asip.STOP if self.trips >= 40 else None
        for _ in ctx.poll(timeout=0.5):
            ctx.push({"v": np.ones(10)}, to=0)

    def result(self, ctx):
        return self.trips


@pytest.fixture(scope="module")
def inproc_client():
    with asip.connect(n_workers=2, processes=False, dashboard=False, silence_logs=40,
                      set_as_default=False) as c:
        yield c


def test_a_stage_on_in_process_workers_hands_its_pushes_over(inproc_client):
    X = [np.zeros((2, 2)), np.zeros((2, 2))]
    res = asip.Stage(_PingPong(), X, client=inproc_client, max_time=20).run()
    assert res.results[0] == 40
    total = res.stats["total"]
    assert total["handed"] >= 79 and total["direct"] == 0  # the last answer may be late
    assert total["sent"] == total["handed"] and total["delivered"] + total["dropped_at_stop"] \
        + total["undeliverable"] == total["sent"]


def test_a_stage_on_worker_processes_never_hands_over(client):
    X = [client.submit(np.zeros, (2, 2), pure=False) for _ in range(2)]
    res = asip.Stage(_PingPong(), X, client=client, max_time=20).run()
    assert res.results[0] == 40
    total = res.stats["total"]
    assert total["handed"] == 0 and total["delivered"] >= 79
