"""The mailbox on its own: drop-oldest bound, schema on queued messages, staleness counters."""

from __future__ import annotations

import threading
import time

import numpy as np

from asip._channel import MESSAGE_OVERHEAD, ChannelStats, Mailbox, MessageSchema
from asip._wire import Message


def message(t: int, w=None, age: float = 0.0) -> Message:
    payload = {"t": t, "w": np.ones(3) if w is None else w}
    return Message(sender=0, incarnation=0, payload=payload, sent_at=time.time() - age, seq=t)


def test_a_full_mailbox_drops_the_oldest_and_counts_it():
    box = Mailbox(3 * (10 + MESSAGE_OVERHEAD), stats=ChannelStats())  # room for 3 such messages
    for t in range(5):
        box.put(message(t), nbytes=10)
    assert [m.payload["t"] for m in box.poll()] == [2, 3, 4]
    assert box.stats.dropped_overflow == 2 and box.stats.delivered == 5
    assert box.poll() == []


def test_a_schema_set_late_also_screens_messages_already_waiting():
    # a restarted operator registers (peers start sending) before its setup calls expect()
    box = Mailbox(1 << 20, stats=ChannelStats())
    box.put(message(1), nbytes=10)
    box.put(message(2, w=np.array([1.0, np.nan, 0.0])), nbytes=10)
    box.put(message(3, w=np.ones(4)), nbytes=10)
    box.set_schema(MessageSchema({"t": int, "w": ("float64", (3,))}))
    box.put(message(4, w=np.array([np.inf, 0.0, 0.0])), nbytes=10)
    box.put(message(5), nbytes=10)
    assert [m.payload["t"] for m in box.poll()] == [1, 5]
    assert box.stats.rejected == 3


def test_poll_measures_how_stale_each_message_is():
    box = Mailbox(1 << 20, stats=ChannelStats())
    box.put(message(1, age=0.5), nbytes=10)
    box.put(message(2, age=0.1), nbytes=10)
    assert box.stats.consumed == 0  # delivered is not consumed: only poll() hands over
    assert len(box.poll()) == 2
    s = box.stats.as_dict()
    assert s["consumed"] == 2
    assert 500_000 <= s["age_us_max"] < 1_500_000
    assert 0.3 <= ChannelStats.mean_age_ms(s) / 1e3 < 1.3
    # totals sum counters but take the max of maxima
    total = ChannelStats.total([s, dict(s, age_us_max=7)])
    assert total["consumed"] == 4 and total["age_us_max"] == s["age_us_max"]
    assert np.isnan(ChannelStats.mean_age_ms(ChannelStats().as_dict()))


def latest(t: int, sender: int = 0, slot: str = "", size: int = 3) -> Message:
    return Message(sender=sender, incarnation=0, payload={"t": t, "w": np.ones(size)},
                   sent_at=time.time(), seq=t, slot=slot)


def test_latest_messages_conflate_per_sender_and_slot_fifo_ones_queue():
    box = Mailbox(1 << 20, stats=ChannelStats())
    box.put(latest(1, sender=0), nbytes=24)
    box.put(message(2), nbytes=24)  # FIFO, from sender 0 too
    box.put(latest(3, sender=1), nbytes=24)
    box.put(latest(4, sender=0), nbytes=24)  # replaces t=1 and moves behind what came since
    box.put(latest(5, sender=0, slot="g"), nbytes=24)  # another slot of sender 0
    box.put(latest(6, sender=1), nbytes=24)
    assert len(box) == 4
    got = box.poll()
    assert [m.payload["t"] for m in got] == [2, 4, 5, 6]
    assert box.stats.conflated == 2 and box.stats.delivered == 6 and box.stats.consumed == 4
    # conservation: every delivered message was consumed or conflated away
    assert box.stats.delivered == box.stats.consumed + box.stats.conflated


def test_the_bound_is_in_bytes_and_always_holds_one_message():
    box = Mailbox(10_000, stats=ChannelStats())
    for t in range(4):
        box.put(message(t), nbytes=2_000)
    assert box.nbytes <= 10_000 and box.stats.dropped_overflow == 0
    box.put(message(9, w=np.ones(2_000)), nbytes=16_000)  # bigger than the whole bound
    assert [m.payload["t"] for m in box.poll()] == [9]
    assert box.stats.dropped_overflow == 4 and box.nbytes == 0


def test_a_poll_after_stop_returns_at_once():
    # the stop may land between the operator's check and its wait: the mailbox itself
    # remembers it, so a later poll(timeout) never sleeps out its timeout
    box = Mailbox(1 << 20, stats=ChannelStats())
    box.wake()
    t = time.monotonic()
    assert box.poll(timeout=3.0) == []
    assert time.monotonic() - t < 1.0


def test_a_stop_wakes_a_waiting_poll():
    box = Mailbox(1 << 20, stats=ChannelStats())
    threading.Timer(0.2, box.wake).start()
    t = time.monotonic()
    assert box.poll(timeout=5.0) == []
    assert time.monotonic() - t < 2.5


def test_the_schema_is_read_under_the_lock():
    # a put racing set_schema must not slip an unscreened message past it: hold the lock,
    # let a put block on it, install a schema, release; the put must see the schema
    box = Mailbox(1 << 20, stats=ChannelStats())
    bad = message(1, w=np.array([np.nan, 0.0, 0.0]))
    putter = threading.Thread(target=box.put, args=(bad, 24))
    with box._cond:
        putter.start()
        time.sleep(0.2)  # the put is now waiting for the lock
        box.schema = MessageSchema({"t": int, "w": ("float64", (3,))})
    putter.join(5)
    assert box.poll() == [] and box.stats.rejected == 1


def test_counters_add_up_with_a_putter_and_a_poller_on_two_threads():
    box = Mailbox(200 * (24 + MESSAGE_OVERHEAD), stats=ChannelStats())
    n = 20_000
    done = threading.Event()
    seen = []

    def poller():
        while not done.is_set():
            seen.extend(box.poll(timeout=0.001))

    th = threading.Thread(target=poller)
    th.start()
    for t in range(n):
        box.put(message(t), nbytes=24)
    done.set()
    th.join(10)
    seen.extend(box.poll())
    s = box.stats
    assert s.delivered == n
    assert s.consumed == len(seen) and s.consumed + s.dropped_overflow == n
    assert sum(s.age_hist) == s.consumed and sum(s.arrival_hist) == n
    ts = [m.payload["t"] for m in seen]
    assert ts == sorted(ts)  # oldest first, nothing reordered


def test_age_percentiles_come_from_histograms_that_sum_across_operators():
    a, b = Mailbox(1 << 20, ChannelStats()), Mailbox(1 << 20, ChannelStats())
    for age in [0.0] * 98 + [2.0, 2.5]:
        a.put(message(0, age=age), nbytes=24)
    for age in [0.0] * 100:
        b.put(message(0, age=age), nbytes=24)
    a.poll(), b.poll()
    sa = a.stats.as_dict()
    assert sa["age_p50_ms"] < 100 and sa["arrival_p50_ms"] < 100
    assert 1_500 <= sa["age_p99_ms"] <= 3_500 and 1_500 <= sa["arrival_p99_ms"] <= 3_500
    total = ChannelStats.total([sa, b.stats.as_dict()])
    assert sum(total["age_hist"]) == 200
    assert total["age_p99_ms"] < 100  # 2 slow messages out of 200: below the p99
    assert np.isnan(ChannelStats().as_dict()["age_p99_ms"])
