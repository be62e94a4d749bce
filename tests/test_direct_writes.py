"""Small pushes written to an idle peer link by the pushing thread itself (no hop to the
event loop), between two real in-process workers over TCP: order per sender, exact
counts, and the races with the loop (a connection that breaks after the claim, a sender
that closes before the acknowledgement)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from test_dataplane import enc, ep, until, with_workers

pytestmark = pytest.mark.timeout(60)


async def link_up(a, b):
    """Push once through the loop so the link to ``b`` connects; return it."""
    a.submit(ep(a, 0), enc(seq=0, t=-1), (2,))
    await until(lambda: ep(b, 2).stats.delivered == 1)
    ep(b, 2).mailbox.poll()
    link = a.links[b.address]
    await until(lambda: link.idle and link.sock is not None)
    return link


def test_pushes_from_a_thread_go_direct_when_idle_and_keep_their_order():
    async def test(a, b, directory):
        sender, receiver = ep(a, 0), ep(b, 2)
        link = await link_up(a, b)
        # one at a time from a thread, each after the last was acknowledged: all direct
        for t in range(5):
            await asyncio.to_thread(a.submit, sender, enc(seq=1 + t, t=t), (2,))
            await until(lambda: link.idle)
        assert sender.stats.direct == 5 and link.writes == 6
        assert [m.payload["t"] for m in receiver.mailbox.poll()] == list(range(5))
        # a burst: the first goes direct, the rest wait for the loop behind it, in order
        n = 300

        def burst():
            for t in range(n):
                a.submit(sender, enc(seq=10 + t, t=t, v=np.full(50, t)), (2, 3))

        await asyncio.to_thread(burst)
        await until(lambda: ep(b, 3).stats.delivered == n and receiver.stats.delivered == n + 6)
        for j in (2, 3):
            got = ep(b, j).mailbox.poll()
            assert [m.payload["t"] for m in got] == list(range(n))
            assert all(m.payload["v"][0] == m.payload["t"] for m in got)
        await until(lambda: link.idle)
        s = sender.stats
        assert s.direct > 5 and s.sent == 1 + 5 + 2 * n
        assert sum(s.queued_hist) == 1 + 5 + n  # each item's time in the sender's queues
    with_workers(test)


def test_no_direct_writes_with_direct_bytes_zero_nor_for_local_or_mixed_receivers():
    async def test(a, b, directory):
        sender = ep(a, 0)
        link = await link_up(a, b)
        for targets in ((1,), (1, 2)):  # a local receiver: the loop delivers
            await asyncio.to_thread(a.submit, sender, enc(seq=1), targets)
            await until(lambda: link.idle and not a._outbox and not a._routing)
        a.settings.direct_bytes = 0
        await asyncio.to_thread(a.submit, sender, enc(seq=2), (2,))
        await until(lambda: ep(b, 2).stats.delivered == 3 and ep(a, 1).stats.delivered == 2)
        assert sender.stats.direct == 0 and sender.stats.sent == 5
    with_workers(test)


def test_a_socket_error_on_a_direct_write_counts_the_batch_and_the_loop_starts_over():
    class Reset:
        def send(self, data):
            raise ConnectionResetError("reset")

    async def test(a, b, directory):
        sender = ep(a, 0)
        link = await link_up(a, b)
        link.sock = Reset()
        await asyncio.to_thread(a.submit, sender, enc(seq=1), (2,))
        await until(lambda: sender.stats.dropped_no_route == 1)
        assert sender.stats.sent == 2 and link.comm is None and link.idle
        await asyncio.to_thread(a.submit, sender, enc(seq=2, t=2), (2,))  # reconnects
        await until(lambda: ep(b, 2).stats.delivered == 2)
        assert [m.payload["t"] for m in ep(b, 2).mailbox.poll()] == [2]
    with_workers(test)


def test_a_sender_closing_before_the_acknowledgement_counts_its_direct_write():
    class Mute:
        def send(self, data):
            return len(data)  # taken, never arrives: no acknowledgement comes

    async def test(a, b, directory):
        sender = ep(a, 0)
        link = await link_up(a, b)
        link.sock = Mute()
        await asyncio.to_thread(a.submit, sender, enc(seq=1), (2,))
        assert link.direct_unacked == 1
        stats = a.close_endpoint(sender)
        assert stats["sent"] == 2 and stats["direct"] == 1
        link._take_acked()  # the acknowledgement would come later: not counted twice
        assert sender.stats.sent == 2
    with_workers(test)


def test_a_push_never_overtakes_one_still_waiting_for_the_loop():
    async def test(a, b, directory):
        sender = ep(a, 0)
        link = await link_up(a, b)
        a.submit(sender, enc(seq=1, t=0), (2,))  # on the loop: waits in the outbox
        # another thread pushes before the loop gets a turn (join blocks the loop)
        th = threading.Thread(target=a.submit, args=(sender, enc(seq=2, t=1), (2,)))
        th.start()
        th.join()
        assert sender.stats.direct == 0 and len(a._outbox) == 2
        await until(lambda: ep(b, 2).stats.delivered == 3 and link.idle)
        assert [m.payload["t"] for m in ep(b, 2).mailbox.poll()] == [0, 1]
    with_workers(test)


def test_what_the_socket_does_not_take_at_once_is_written_by_the_loop_intact():
    class Short:
        """The socket takes 10 bytes of a write, then nothing (as if its buffer were full)."""

        def __init__(self, sock):
            self.sock, self.calls = sock, 0

        def send(self, data):
            self.calls += 1
            if self.calls > 1:
                raise BlockingIOError
            return self.sock.send(bytes(data[:10]))

    async def test(a, b, directory):
        sender = ep(a, 0)
        link = await link_up(a, b)
        link.sock = short = Short(link.sock)
        await asyncio.to_thread(a.submit, sender, enc(seq=1, t=1, v=np.arange(100.0)), (2,))
        link.sock = short.sock
        await asyncio.to_thread(a.submit, sender, enc(seq=2, t=2), (2,))  # blocked: no write
        await until(lambda: ep(b, 2).stats.delivered == 3 and link.idle)
        got = ep(b, 2).mailbox.poll()
        assert [m.payload["t"] for m in got] == [1, 2] and short.calls == 1
        np.testing.assert_array_equal(got[0].payload["v"], np.arange(100.0))
        assert sender.stats.direct >= 1 and sender.stats.sent == 3
    with_workers(test)


def test_a_push_to_every_peer_goes_direct_only_when_they_all_are_on_one_peer_worker():
    async def test(a, b, directory):
        sender = ep(a, 0)
        link = await link_up(a, b)
        a.close_endpoint(ep(a, 1))  # partition 1 left this worker: every peer is on b
        await asyncio.to_thread(a.submit, sender, enc(seq=1, t=1), None)
        await until(lambda: ep(b, 3).stats.delivered == 1 and link.idle)
        assert sender.stats.direct == 1 and sender.stats.sent == 3
        a.open(1, 0)  # a peer here again: the loop delivers it, and to b in the same drain
        await asyncio.to_thread(a.submit, sender, enc(seq=2, t=2), None)
        await until(lambda: ep(a, 1).stats.delivered == 1 and ep(b, 3).stats.delivered == 2)
        assert sender.stats.direct == 1
        for j in (2, 3):
            assert [m.payload["t"] for m in ep(b, j).mailbox.poll()] == [1, 2]
    with_workers(test)


def test_a_burst_goes_direct_up_to_the_window_and_the_rest_waits_for_acknowledgements():
    from asip._links import WINDOW

    class Mute:
        def send(self, data):
            return len(data)  # taken but never arrives: its acknowledgement never comes

    async def test(a, b, directory):
        sender = ep(a, 0)
        link = await link_up(a, b)
        real, link.sock = link.sock, Mute()
        n = WINDOW + 4

        def burst():
            for t in range(n):
                a.submit(sender, enc(seq=1 + t, t=t), (2,))

        await asyncio.to_thread(burst)
        # no acknowledgement needed for the next direct write, up to the window (these go
        # into the void, so none comes); then the rest waits, queued in order, bounded
        await until(lambda: len(link.queue) == n - WINDOW)
        assert link.direct_unacked == WINDOW and sender.stats.direct == 0
        assert not link.idle and ep(b, 2).stats.delivered == 1  # 1: link_up's
        link.sock = real
        link._take_acked(WINDOW)  # as if they were acknowledged: the rest goes at once
        assert sender.stats.direct == WINDOW and sender.stats.sent == 1 + n  # queued: at routing
        link.flush()
        await until(lambda: ep(b, 2).stats.delivered == 1 + n - WINDOW and link.idle)
        assert [m.payload["t"] for m in ep(b, 2).mailbox.poll()] == list(range(WINDOW, n))
    with_workers(test)


def test_acknowledgements_are_lazy_cumulative_and_count_every_copy_once(monkeypatch):
    from asip import _dataplane

    async def test(a, b, directory):
        sender = ep(a, 0)
        link = await link_up(a, b)
        monkeypatch.setattr(_dataplane, "ACK_DELAY", 30.0)  # no timer: ACK_EVERY or asking only
        acks: list[int] = []
        take = link._take_acked
        link._take_acked = lambda n=1: acks.append(n) or take(n)
        for t in range(3):  # one at a time, each delivered before the next: no ack needed
            await asyncio.to_thread(a.submit, sender, enc(seq=1 + t, t=t), (2,))
            await until(lambda: ep(b, 2).stats.delivered == 2 + t)
        assert link.direct_unacked == 3 and acks == [] and sender.stats.direct == 0
        await asyncio.to_thread(a.submit, sender, enc(seq=4, t=3), (2,))  # the window half full
        await until(lambda: link.idle)
        assert acks == [4]  # one cumulative acknowledgement for the four batches
        assert sender.stats.direct == 4 and sender.stats.sent == 5
        assert [m.payload["t"] for m in ep(b, 2).mailbox.poll()] == [0, 1, 2, 3]
    with_workers(test)
