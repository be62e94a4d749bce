"""The data plane between two real in-process workers over TCP: routing, multicast,
incarnations, bounds, conflation and the rule that every copy sent is counted once."""

from __future__ import annotations

import asyncio
import time

import msgpack
import numpy as np
import pytest
from distributed import Scheduler, Worker

from asip._dataplane import ChannelSettings, DataPlane
from asip._wire import Limits, encode_message, wire_item

pytestmark = pytest.mark.timeout(60)

LIMITS = Limits(1 << 20, 16, 1024)
RUN = "r1"


def settings(mailbox=1 << 20, peer_queue=1 << 20, outbox=4 << 20, reconnect=0.2) -> ChannelSettings:
    return ChannelSettings(LIMITS, mailbox, peer_queue, 2.0, reconnect, 0.1, outbox)


def with_workers(test, faults=(), protocol="tcp://", **kw):
    """Run ``test(a, b, directory)`` with a data plane on each of two real workers of this
    process (over ``protocol``), with injected ``faults``.

    Partitions 0 and 1 live on worker A, 2 and 3 on worker B (incarnation 0)."""
    net = {"host": "127.0.0.1"} if protocol == "tcp://" else {"protocol": protocol}

    async def main():
        async with Scheduler(dashboard_address=":0", port=0, **net) as s, \
                Worker(s.address, nthreads=1, dashboard=False, **net) as wa, \
                Worker(s.address, nthreads=1, dashboard=False, **net) as wb:
            directory = {0: (wa.address, 0), 1: (wa.address, 0), 2: (wb.address, 0),
                         3: (wb.address, 0)}
            planes = []
            for w in (wa, wb):
                p = DataPlane(w, RUN, 4, settings(**kw), faults, lambda: directory)
                w.handlers[p.deliver_op] = p.handle_stream
                planes.append(p)
            a, b = planes
            for j in (0, 1):
                a.open(j, 0)
            for j in (2, 3):
                b.open(j, 0)
            try:
                await test(a, b, directory)
            finally:
                a.close(), b.close()
    asyncio.run(asyncio.wait_for(main(), 45))


def enc(sender=0, incarnation=0, seq=0, latest=None, **payload):
    return encode_message(payload or {"v": np.ones(3)}, run_id=RUN, sender=sender,
                          incarnation=incarnation, seq=seq, limits=LIMITS, slot=latest)


async def until(cond, timeout=10.0):
    t = time.monotonic()
    while not cond():
        assert time.monotonic() - t < timeout, "timed out"
        await asyncio.sleep(0.01)


def ep(plane, j, inc=0):
    return plane.endpoints[(j, inc)]


def test_multicast_is_encoded_once_and_written_once_per_peer_worker():
    async def test(a, b, directory):
        sender = ep(a, 0)
        a.submit(sender, enc(v=np.arange(3.0)), (1, 2, 3))
        await until(lambda: len(ep(b, 2).mailbox) and len(ep(b, 3).mailbox) and len(ep(a, 1).mailbox))
        link = a.links[b.address]
        assert link.writes == 1  # partitions 2 and 3 share one item on one write
        for plane, j in ((a, 1), (b, 2), (b, 3)):
            (m,) = ep(plane, j).mailbox.poll()
            np.testing.assert_array_equal(m.payload["v"], np.arange(3.0))
        assert sender.stats.sent == 3
        a.submit(sender, enc(seq=1), None)  # everyone else
        await until(lambda: all(len(ep(p, j).mailbox) for p, j in ((a, 1), (b, 2), (b, 3))))
        assert link.writes == 2 and sender.stats.sent == 6
    with_workers(test)


def test_a_zombie_incarnation_is_rejected_and_counted():
    async def test(a, b, directory):
        zombie, new = ep(a, 0), a.open(0, 1)
        directory[0] = (a.address, 1)  # the directory knows incarnation 1
        a.submit(zombie, enc(incarnation=0), (2, 1))
        a.submit(new, enc(incarnation=1, seq=1), (2,))
        await until(lambda: ep(b, 2).stats.zombie + ep(b, 2).stats.delivered == 2)
        assert ep(b, 2).stats.zombie == 1 and ep(a, 1).stats.zombie == 1
        (m,) = ep(b, 2).mailbox.poll()
        assert m.incarnation == 1
    with_workers(test)


def test_two_incarnations_on_one_worker_keep_their_own_mailboxes():
    async def test(a, b, directory):
        old, new = ep(b, 3), b.open(3, 1)
        directory[3] = (b.address, 1)
        a.submit(ep(a, 0), enc(), (3,))
        await until(lambda: len(new.mailbox))
        assert len(old.mailbox) == 0  # messages go to the newest incarnation
        old_stats = b.close_endpoint(old)  # the old one finishing must not close the new one
        assert not new.mailbox.closed and b.current[3] is new
        assert len(new.mailbox.poll()) == 1 and old_stats["delivered"] == 0
    with_workers(test)


def test_a_batch_lost_on_a_broken_link_is_counted_and_the_link_comes_back():
    async def test(a, b, directory):
        sender = ep(a, 0)
        a.submit(sender, enc(), (2,))
        await until(lambda: ep(b, 2).stats.delivered == 1)
        link = a.links[b.address]
        await until(lambda: link.idle)  # acknowledged
        link.comm.abort()  # the connection breaks under the link ...
        a.submit(sender, enc(seq=1), (2,))
        a._drain()  # ... before the link noticed: this write fails
        assert sender.stats.dropped_no_route == 1
        a.submit(sender, enc(seq=2), (2,))  # a new connection
        await until(lambda: ep(b, 2).stats.delivered == 2)
        assert sender.stats.sent == 3
        await until(lambda: link.idle)
        link.comm.abort()  # noticed by the link this time: the next push reconnects
        await asyncio.sleep(0.05)
        a.submit(sender, enc(seq=3), (2,))
        await until(lambda: ep(b, 2).stats.delivered == 3)
        assert sender.stats.dropped_no_route == 1
    with_workers(test)


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("not today")


def test_a_write_that_fails_unexpectedly_is_counted_and_the_link_keeps_working():
    async def test(a, b, directory):
        sender = ep(a, 0)
        a.submit(sender, enc(), (2,))
        await until(lambda: ep(b, 2).stats.delivered == 1)
        link = a.links[b.address]
        await until(lambda: link.idle)  # acknowledged: the next batch goes at once
        link.enqueue(sender.stats, [[2], Unpicklable()], 10, 1)  # serializing it raises
        link.flush()
        assert sender.stats.dropped_no_route == 1
        a.submit(sender, enc(seq=1), (2,))
        await until(lambda: ep(b, 2).stats.delivered == 2)
    with_workers(test)


def test_a_hostile_item_never_costs_the_rest_of_its_batch():
    async def test(a, b, directory):
        good = wire_item(enc(), LIMITS)
        dims65 = msgpack.packb([2, RUN, 0, 0, 0, 0.0, {}, [["a", "<f8", [1] * 65]], None])
        huge = msgpack.packb([2, RUN, 0, 0, 0, 0.0, {}, [["a", "<f8", [1 << 62, 1 << 40, 0]]], None])
        b.handle_deliver([[2, dims65, b"\x00" * 8], [2, huge, b""], "junk", [[2, 99], *good],
                          [[2, 3], *good]])
        assert len(ep(b, 2).mailbox.poll()) == 1 and len(ep(b, 3).mailbox.poll()) == 1
        assert ep(b, 2).stats.malformed == 2 and b.malformed == 2
        b.handle_deliver("not a list")
        stats = b.close_endpoint(ep(b, 3))  # worker-level drops go to whoever leaves next
        assert stats["malformed"] == 3
    with_workers(test)


def test_a_flood_is_dropped_at_the_edges_within_byte_bounds_and_every_copy_is_counted():
    async def test(a, b, directory):
        sender, receiver = ep(a, 0), ep(b, 2)
        big = np.ones(1000)
        for t in range(400):  # 3.2 MB pushed before the event loop gets a turn
            a.submit(sender, enc(seq=t, v=big, t=t), (2,))
        assert a._outbox_bytes <= 1 << 20
        await asyncio.sleep(0)
        await until(lambda: sender.stats.sent == 400 and not a.links[b.address].queue)
        await asyncio.sleep(0.3)
        s, r = sender.stats, receiver.stats
        assert s.dropped_overflow > 0  # the outbox bound
        assert receiver.mailbox.nbytes <= 100_000
        assert r.dropped_overflow > 0  # the mailbox bound
        assert s.sent == r.delivered + s.dropped_overflow + s.dropped_no_route + s.conflated
        got = receiver.mailbox.poll()
        assert r.delivered == len(got) + r.dropped_overflow
        ts = [m.payload["t"] for m in got]
        assert ts == sorted(ts) and ts[-1] == 399  # the newest survive
    with_workers(test, mailbox=100_000, peer_queue=200_000, outbox=1 << 20)


def test_latest_messages_conflate_in_queues_and_mailboxes():
    async def test(a, b, directory):
        sender, receiver = ep(a, 0), ep(b, 2)
        for t in range(200):
            a.submit(sender, enc(seq=t, latest="w", v=np.ones(1000), t=t), (2,))
            a.submit(sender, enc(seq=t, latest="g", v=np.ones(10), t=-t), (2,))
        await until(lambda: sender.stats.sent == 400 and not a.links[b.address].queue)
        await asyncio.sleep(0.3)
        s, r = sender.stats, receiver.stats
        got = receiver.mailbox.poll()
        assert sorted(m.payload["t"] for m in got) == [-199, 199]  # one per slot: the newest
        assert r.dropped_overflow == 0
        assert s.sent == r.delivered + s.dropped_overflow + s.conflated
        assert r.delivered == len(got) + r.conflated
    with_workers(test, mailbox=1 << 20, peer_queue=1 << 20, outbox=1 << 20)


def test_a_batch_sent_to_a_worker_without_the_stage_is_counted_not_lost():
    async def test(a, b, directory):
        sender = ep(a, 0)
        a.submit(sender, enc(), (2,))
        await until(lambda: ep(b, 2).stats.delivered == 1)
        del b.worker.handlers[b.deliver_op]  # the stage already ended on that worker
        a.submit(sender, enc(seq=1), (2, 3))
        await until(lambda: sender.stats.undeliverable == 2)
        a.submit(sender, enc(seq=2), (2,))  # within the reconnect delay: dropped at the edge
        a._drain()
        assert sender.stats.dropped_no_route == 1 and sender.stats.sent == 4
    with_workers(test, reconnect=30.0)


def test_batches_are_bounded_so_the_receivers_loop_is_never_held_long():
    from asip._links import BATCH_BYTES

    async def test(a, b, directory):
        sender = ep(a, 0)
        n = 3 * BATCH_BYTES // 8_000 + 10
        for t in range(n):  # FIFO, about 3 batches' worth
            a.submit(sender, enc(seq=t, v=np.ones(1000), t=t), (2,))
        await until(lambda: ep(b, 2).stats.delivered == n)
        assert a.links[b.address].writes >= 3
        ts = [m.payload["t"] for m in ep(b, 2).mailbox.poll()]
        assert ts == list(range(n))  # in order, nothing lost
    with_workers(test, mailbox=64 << 20, peer_queue=16 << 20, outbox=16 << 20)


def test_the_stop_drops_queued_data_at_once_and_counts_every_copy():
    async def test(a, b, directory):
        sender, local = ep(a, 0), ep(a, 1)
        for t in range(50):
            a.submit(sender, enc(seq=t, v=np.ones(1000), t=t), (1, 2))
        await asyncio.sleep(0)  # routed: delivered locally, queued on the link while it connects
        link = a.links[b.address]
        assert len(link.queue) == 50 and local.stats.delivered == 50
        a.stop()
        a.submit(sender, enc(seq=50), (2,))  # after the stop: dropped before any work
        stats = a.close_endpoint(sender)  # never waits for the link
        assert not link.queue and not a._outbox
        assert stats["sent"] == 101 and stats["dropped_at_stop"] == 51
        assert local.mailbox.put(local.mailbox.poll()[0], 10) and local.stats.dropped_at_stop == 1
        await asyncio.sleep(0.3)
        assert ep(b, 2).stats.delivered == 0
    with_workers(test)


def test_arrivals_after_the_stop_are_counted_and_never_decoded():
    async def test(a, b, directory):
        sender = ep(a, 0)
        b.stop()
        for t in range(5):
            a.submit(sender, enc(seq=t), (2, 3))
        a.submit(sender, enc(seq=5), None)  # everyone: 1 locally, 2 and 3 on b
        await until(lambda: ep(b, 2).stats.dropped_at_stop == 6 and ep(b, 3).stats.dropped_at_stop == 6)
        assert not len(ep(b, 2).mailbox) and not len(ep(b, 3).mailbox)
        assert ep(b, 2).mailbox.poll(timeout=5.0) == []  # at once: the stage stopped
        b.handle_deliver([[[2], b"garbage"]])  # not decoded after the stop: counted, not malformed
        assert ep(b, 2).stats.dropped_at_stop == 7 and b.malformed == 0
        assert sender.stats.sent == 13
    with_workers(test)


def test_a_push_yields_to_a_lagging_event_loop_but_never_for_long(monkeypatch):
    import threading

    from asip import _dataplane
    from asip._dataplane import YIELD_MAX

    monkeypatch.setattr(_dataplane, "YIELD_OPERATORS", 2)  # as if many shared the worker

    async def test(a, b, directory):
        sender = ep(a, 0)
        took: list[float] = []

        def pusher():
            a.submit(sender, enc(seq=0), (1,))  # asks the loop for a drain
            time.sleep(0.05)  # the loop is now > 5 ms late with it
            t = time.monotonic()
            a.submit(sender, enc(seq=1), (1,))
            took.append(time.monotonic() - t)

        thread = threading.Thread(target=pusher)
        thread.start()
        time.sleep(1.0)  # this event loop is stuck for a second
        await until(lambda: not thread.is_alive())
        assert sender.stats.yielded == 1
        assert YIELD_MAX <= took[0] < 0.5  # waited for the loop, but only so long
        await until(lambda: ep(a, 1).stats.delivered == 2)  # nothing lost
    with_workers(test)


def test_a_batch_wakes_each_receiver_once_after_it_is_all_in():
    async def test(a, b, directory):
        wakes = {2: 0, 3: 0}
        for j in wakes:
            cond = ep(b, j).mailbox._cond
            notify = cond.notify_all

            def counted(j=j, notify=notify):
                wakes[j] += 1
                notify()

            cond.notify_all = counted
        good = wire_item(enc(), LIMITS)
        b.handle_deliver([[[2, 3], *good] for _ in range(5)])
        # nobody is woken before the handler returns (distributed writes the acknowledgement
        # then), and then each receiver once for the whole batch, not once per message:
        # woken operator threads would contend with the loop for the GIL
        assert wakes == {2: 0, 3: 0}
        await asyncio.sleep(0)
        assert wakes == {2: 1, 3: 1}
        assert len(ep(b, 2).mailbox.poll()) == 5 and len(ep(b, 3).mailbox.poll()) == 5
    with_workers(test)
