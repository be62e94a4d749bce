"""asip-cocoa (SDCA) early in a run: its model is the best wbar a certificate round evaluated,
so the first rounds decide a short fit. The first round opens at a view with every peer's
total in it (not the leader's first slice alone), and the rounds come back to back early
(`_cocoa.CERT_RAMP`), up to ``cert_period``; where a round is cheap, far more often
(`_cert_round.balanced_period`)."""

from __future__ import annotations

import numpy as np
from _sim import Msg

from asip.algorithms import _cert_round as R
from asip.algorithms import _cocoa as C
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._solvers import get_algorithm


def _two_partitions(seed=0, n=600, d=20):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sign(X @ rng.normal(size=d) + 0.3 * rng.normal(size=n))
    parts = [(X[:n // 2], y[:n // 2]), (X[n // 2:], y[n // 2:])]
    problem = make_problem(K.HINGE, K.L2, 0.1, False, parts)
    algo = get_algorithm("asip-cocoa")
    params = algo.merge({"local_solver": "sdca", "seed": 1})
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    return algo, [algo.init(problem, dt, params) for dt in datas], datas


def _step(algo, states, datas, i, inbox, now):
    out = algo.local_step(states[i], datas[i], inbox, now)
    states[i] = out.state
    return [Msg(i, 0, o.payload, 0.0) for o in out.outbox]


def test_first_round_opens_once_every_peer_total_is_in():
    algo, states, datas = _two_partitions()
    to_peer = _step(algo, states, datas, 0, [], 0.001)  # the leader's first slice
    assert all("ver" not in m.payload for m in to_peer), "opened at the leader's view alone"
    to_leader = _step(algo, states, datas, 1, to_peer, 0.002)
    out = _step(algo, states, datas, 0, to_leader, 0.003)
    assert any("ver" in m.payload for m in out)  # now with the peer's total in the view
    wbar = states[0].cert["wbar"]
    np.testing.assert_allclose(wbar, states[0].u + states[1].u)


def test_first_round_does_not_wait_past_cert_period_for_a_silent_peer():
    algo, states, datas = _two_partitions()
    _step(algo, states, datas, 0, [], 0.001)
    _step(algo, states, datas, 0, [], 0.001 + C.DEFAULTS["cert_period"])
    assert states[0].cert["wbar"] is not None  # a round is open, at the leader's view


class _PassClock:
    """`_cert_round`'s `time`: each stopwatch read ``cost`` s after the last (a certificate
    pass, read twice, costs ``cost``)."""

    def __init__(self, cost):
        self.t, self.cost = 0.0, cost

    def perf_counter(self):
        self.t += self.cost
        return self.t


#: a certificate pass of 300 rows, pinned: the schedule's checks read the pass cost, which a
#: stopwatch stretches at random under load (a preempted pass of 2.7 ms failed the first test)
CHEAP_PASS = 1e-5


def _lock_step(algo, states, datas, steps):
    """``steps`` steps of each partition in turn, 1 ms apart: (stage time, leader's pass cost)
    at each round the leader opened."""
    now, opened = 0.0, []
    inbox = {0: [], 1: []}
    for k in range(steps):
        now += 0.001
        for i in (0, 1):
            ver = states[0].cert["ver"]
            msgs = _step(algo, states, datas, i, inbox[i], now)
            inbox[i] = []
            inbox[1 - i].extend(msgs)
            if states[0].cert["ver"] != ver:
                opened.append((now, states[0].cert["cost"]))
    return opened


def test_rounds_come_back_to_back_early(monkeypatch):
    monkeypatch.setattr(R, "time", _PassClock(CHEAP_PASS))
    algo, states, datas = _two_partitions()
    opened = _lock_step(algo, states, datas, 60)
    # fixed cert_period (20 ms): 3 rounds in 60 ms; ramped: a round every few steps early
    assert len(opened) >= 6, opened
    assert all(b - a >= min(C.DEFAULTS["cert_period"], C.CERT_RAMP * b,
                            R.balanced_period(cost, b)) - 1e-12
               for (a, _), (b, cost) in zip(opened, opened[1:]))
    assert np.isfinite(states[0].cert["gap"])


def test_cheap_rounds_come_more_often_than_cert_period(monkeypatch):
    """Past the ramp, a pass of microseconds (300 rows) spaces the rounds by
    `_cert_round.balanced_period` (~1 ms here), not ``cert_period`` (20 ms: at most 6 rounds
    in 100 ms): the reported model, the last round's best, trails the operators' less."""
    monkeypatch.setattr(R, "time", _PassClock(CHEAP_PASS))
    algo, states, datas = _two_partitions()
    opened = [t for t, _ in _lock_step(algo, states, datas, 200) if t > 0.1]
    assert len(opened) >= 20, opened
    assert np.isfinite(states[0].cert["gap"])


def test_expensive_rounds_stay_apart(monkeypatch):
    """A pass of 3.2 ms (skin_nonskin's): rounds stay at least `COST_PERIODS` passes apart
    and, past the ramp, at ``cert_period``'s pace (certificates under ~20% of the time)."""
    monkeypatch.setattr(R, "time", _PassClock(0.0032))
    algo, states, datas = _two_partitions()
    opened = _lock_step(algo, states, datas, 200)
    gaps = [b - a for (a, _), (b, _) in zip(opened, opened[1:])]
    assert len(gaps) >= 3 and min(gaps) >= R.COST_PERIODS * 0.0032 - 1e-12, opened
    assert sum(t > 0.1 for t, _ in opened) <= 6, opened


def test_short_rounds_ask_a_silent_peer_again_no_sooner(monkeypatch):
    """Rounds `balanced_period` apart do not make an unanswered round overdue sooner: a
    peer starved past ~0.1 s (a loaded machine) is asked anew only after `OVERDUE_PERIODS`
    of the ramped period, as before (else each starved answer would be thrown away)."""
    monkeypatch.setattr(R, "time", _PassClock(CHEAP_PASS))
    algo, states, datas = _two_partitions()
    _lock_step(algo, states, datas, 120)  # past the ramp: a round every ~1 ms
    ver, now = states[0].cert["ver"], 0.120
    while states[0].cert["ver"] == ver:  # the leader alone: the peer falls silent
        now += 0.001
        _step(algo, states, datas, 0, [], now)
    opened = states[0].cert["at"]
    ver, t = states[0].cert["ver"], opened
    while states[0].cert["ver"] == ver and t < opened + 1.0:
        t += 0.001
        _step(algo, states, datas, 0, [], t)
    period = min(C.DEFAULTS["cert_period"], C.CERT_RAMP * opened)
    assert t - opened >= R.OVERDUE_PERIODS * period + R.OVERDUE_SLACK - 1e-9, (opened, t)
