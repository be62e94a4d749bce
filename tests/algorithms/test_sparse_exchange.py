"""The sparse exchange (`_sparse_exchange`): deltas ∝ changed entries, exact totals through drops."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from asip.algorithms._sparse_exchange import Publisher, Subscriber, schema_fields


def _msg(sender, payload, incarnation=0):
    return SimpleNamespace(sender=sender, incarnation=incarnation, payload=payload)


def _nbytes(payload):
    return sum(v.nbytes for v in payload.values() if isinstance(v, np.ndarray))


def test_deltas_carry_only_changed_entries_and_fall_back_to_dense():
    d = 10_000
    pub, sub = Publisher("u", d), Subscriber("u", d)
    v = np.zeros(d)
    first = pub.publish(v, now=0.0, t=0)
    assert first["u_full"] and len(first["u_idx"]) == 0  # an all-zero full is empty
    assert sub.absorb(_msg(1, first))
    v[[3, 70, 9_000]] = [1.0, -2.0, 0.5]
    delta = pub.publish(v, now=0.01, t=1)
    assert sorted(delta["u_idx"].tolist()) == [3, 70, 9_000] and "u_full" not in delta
    assert _nbytes(delta) == 3 * (4 + 8)  # int32 index + float64 value per entry
    assert sub.absorb(_msg(1, delta)) and np.array_equal(sub.vecs[1], v)
    v[: d // 2] += 1.0  # a change to half the entries: dense
    dense = pub.publish(v, now=0.02, t=2)
    assert dense["u"].shape == (d,) and "u_idx" not in dense
    assert sub.absorb(_msg(1, dense)) and np.array_equal(sub.vecs[1], v)
    assert pub.counts["delta"] == 1 and pub.counts["dense_full"] == 1


def test_a_gap_is_detected_and_one_resync_restores_the_exact_total():
    d = 1_000
    pub, sub = Publisher("G", d, full_every=None), Subscriber("G", d, retry=0.05)
    rng = np.random.default_rng(0)
    v = np.zeros(d)
    assert sub.absorb(_msg(2, pub.publish(v, 0.0, t=0)))
    for k in range(1, 6):
        v[rng.integers(0, d, 5)] += rng.standard_normal(5)
        pl = pub.publish(v, 0.01 * k, t=k)
        if k == 3:
            continue  # dropped
        assert sub.absorb(_msg(2, pl)) == (k < 3)
    assert not sub.in_sync(2) and sub.counts["gaps"] == 1
    want = sub.want_field(now=0.1)
    assert want["G_want"].tolist() == [2]
    assert sub.want_field(now=0.12) == {}  # asked already: retried only after `retry`
    pub.note_requests(want, sender=5, me=2)
    [(to, fields)] = pub.resyncs()
    assert to == 5 and fields["t"] == 5  # the scalars of the state it describes
    assert sub.absorb(_msg(2, fields)) and np.array_equal(sub.vecs[2], v)
    v[7] += 1.0
    assert sub.absorb(_msg(2, pub.publish(v, 0.2, t=6))) and np.array_equal(sub.vecs[2], v)
    assert pub.resyncs() == []


def test_random_drops_and_duplicates_never_leave_a_wrong_total():
    """Simulated lossy FIFO link: whenever the receiver says in sync, it holds the truth."""
    d = 500
    rng = np.random.default_rng(1)
    pub, sub = Publisher("u", d, full_every=0.5), Subscriber("u", d, retry=0.03)
    v = np.zeros(d)
    history = {}
    in_sync_steps = 0
    for k in range(400):
        now = 0.01 * k
        v[rng.integers(0, d, 3)] += rng.standard_normal(3)
        pl = pub.publish(v, now, t=k)
        history[pl["u_seq"]] = v.copy()
        for to, fields in pub.resyncs():
            if rng.uniform() > 0.3:
                sub.absorb(_msg(0, fields))
        if rng.uniform() > 0.3:  # 30% of pushes lost
            sub.absorb(_msg(0, pl))
            if rng.uniform() < 0.1:
                assert not sub.absorb(_msg(0, pl))  # a duplicate is ignored
        if sub.in_sync(0):
            in_sync_steps += 1
            assert np.array_equal(sub.vecs[0], history[sub.at[0][1]])
        pub.note_requests(sub.want_field(now), sender=1, me=0)
    assert in_sync_steps > 150


def test_a_restarted_sender_is_taken_from_its_new_full_and_old_messages_are_ignored():
    d = 100
    sub = Subscriber("u", d)
    old = Publisher("u", d)
    v = np.arange(d, dtype=float)
    sub.absorb(_msg(1, old.publish(v, 0.0), incarnation=0))
    stale = old.publish(v + 1, 0.01)
    new = Publisher("u", d)
    assert sub.absorb(_msg(1, new.publish(np.zeros(d), 0.02), incarnation=1))
    assert not sub.absorb(_msg(1, stale, incarnation=0))
    assert not sub.vecs[1].any()


def test_malformed_messages_are_refused_and_trigger_a_resync():
    d = 10
    pub, sub = Publisher("u", d), Subscriber("u", d)
    assert sub.absorb(_msg(1, pub.publish(np.ones(d), 0.0)))
    bad = {"u_seq": 2, "u_idx": np.array([3, 99], dtype=np.int32), "u_val": np.ones(2)}
    assert not sub.absorb(_msg(1, bad)) and sub.counts["malformed"] == 1
    assert sub.wants(0.5) == [1]
    assert np.array_equal(sub.vecs[1], np.ones(d))  # left as it was


def test_wrong_shape_and_schema_fields():
    with pytest.raises(ValueError, match="expected"):
        Publisher("u", 5).publish(np.zeros(4), 0.0)
    f = schema_fields("u", 7)
    assert f["u"] == ("float64", (7,)) and f["u_idx"] == ("int32", (None,))


def test_exchange_pairs_a_publisher_and_a_subscriber_and_answers_requests():
    from asip.algorithms._sparse_exchange import Exchange

    d = 50
    a, b = Exchange("u", d, me=0, full_every=None), Exchange("u", d, me=1, full_every=None)
    v = np.zeros(d)
    a.fields(v, 0.0)  # seq 1 (a full) is lost
    v[4] = 2.0
    assert not b.absorb(_msg(0, a.fields(v, 0.01)))  # a delta without its base: out of sync
    assert len(b) == 0
    ask = b.fields(np.zeros(d), 0.02)  # b's own push carries the request
    assert ask["u_want"].tolist() == [0]
    a.absorb(_msg(1, ask))
    [(to, fields)] = a.resyncs()
    assert to == 1 and b.absorb(_msg(0, fields)) and len(b) == 1
    assert np.array_equal(b.vector(0), v) and b.counts() == {"gaps": 0, "resyncs": 0}
    assert a.counts()["resyncs"] == 1 and np.array_equal(a.vector(1), np.zeros(d))
