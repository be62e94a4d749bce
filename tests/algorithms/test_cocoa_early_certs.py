"""asip-cocoa (SDCA) early in a run: its model is the best wbar a certificate round evaluated,
so the first rounds decide a short fit. The first round opens at a view with every peer's
total in it (not the leader's first slice alone), and the rounds come back to back early
(`_cocoa.CERT_RAMP`), up to ``cert_period``."""

from __future__ import annotations

import numpy as np
from _sim import Msg

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


def test_rounds_come_back_to_back_early():
    algo, states, datas = _two_partitions()
    now, opened = 0.0, []
    inbox = {0: [], 1: []}
    for k in range(60):  # 1 ms a step each: rounds open as soon as the last one closes
        now += 0.001
        for i in (0, 1):
            ver = states[0].cert["ver"]
            msgs = _step(algo, states, datas, i, inbox[i], now)
            inbox[i] = []
            inbox[1 - i].extend(msgs)
            if states[0].cert["ver"] != ver:
                opened.append(now)
    # fixed cert_period (20 ms): 3 rounds in 60 ms; ramped: a round every few steps early
    assert len(opened) >= 6, opened
    assert all(b - a >= min(C.DEFAULTS["cert_period"], C.CERT_RAMP * b) - 1e-12
               for a, b in zip(opened, opened[1:]))
    assert np.isfinite(states[0].cert["gap"])
