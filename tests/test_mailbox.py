"""The mailbox on its own: drop-oldest bound, schema on queued messages, staleness counters."""

from __future__ import annotations

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
