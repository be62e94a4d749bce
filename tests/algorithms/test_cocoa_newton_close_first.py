"""asip-cocoa Newton's leader closes a complete certificate round before a due Newton round
(`_cocoa.NEWTON_CLOSE_FIRST`): the certifying close stops the fit without waiting for a round
(which does not change the ``wbar`` it certifies); and a round from the zero model takes no
margin pass (`_newton_loop.start`: its margins are zero)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _sim import Msg, split_rows

from asip.algorithms import Objective, get_loss, get_penalty, make_logistic, reference_optimum
from asip.algorithms import _cocoa, _newton_loop
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._cocoa_newton import LocalNewton
from asip.algorithms._solvers import get_algorithm

N, D, ALPHA = 4000, 20, 0.1


def _lockstep(max_exchanges=20):
    """Parallel lock-step exchanges (each partition steps on the peers' pushes of the
    previous one, as on a cluster) until the leader says done: per exchange, whether the
    leader ran a Newton round and whether it said done; and the certified model's relative
    suboptimality."""
    ds = make_logistic(N, D, random_state=3)
    X = np.ascontiguousarray(ds.X)
    parts = split_rows(X, ds.y, 2)
    problem = make_problem(K.LOGISTIC, K.L2, ALPHA, False, parts)
    algo = get_algorithm("asip-cocoa")
    params = algo.merge({"local_solver": "newton", "tol": 1e-6, "seed": 0})
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    boxes, log = [[], []], []
    for ex in range(1, max_exchanges + 1):
        nxt, done = [[], []], False
        for i in range(2):
            before = states[i].clock.get("rounds", (0,))[0]
            out = algo.local_step(states[i], datas[i], boxes[i], ex * 0.01)
            states[i] = out.state
            if i == 0:
                log.append((states[0].clock.get("rounds", (0,))[0] > before, out.done))
                done = out.done
            for o in out.outbox:
                nxt[1 - i].append(Msg(i, 0, o.payload, time.time()))
        boxes = nxt
        if done:
            break
    obj = Objective(get_loss("log_loss"), get_penalty("l2", ALPHA), False)
    f_star = reference_optimum(obj, ds.X, ds.y).f_star
    w = algo.combine(problem, [algo.snapshot(s) for s in states])
    return log, (obj.value(w, ds.X, ds.y) - f_star) / abs(f_star)


def test_the_certifying_close_does_not_wait_for_a_round():
    log, rel = _lockstep()
    assert log[-1][1], "not certified"
    assert rel <= 1e-6
    ran_round, _ = log[-1]
    assert not ran_round  # closed (and stopped) before the due round


def test_a_close_that_does_not_certify_still_lets_the_round_run(monkeypatch):
    # the earlier closes (gap above tol) come in steps that also ran their round: no round lost
    log, _ = _lockstep()
    assert all(ran for ran, _ in log[:-1])
    # and the same number of exchanges to the certified stop as with the close after the round
    monkeypatch.setattr(_cocoa, "NEWTON_CLOSE_FIRST", 0.0)
    old, rel = _lockstep()
    assert rel <= 1e-6 and old[-1][0]  # the old order: the round ran in the certifying step
    assert len(log) == len(old)


class CountingMargins(LocalNewton):
    """A real `LocalNewton` that counts its margin passes (``X v``)."""

    calls = 0

    def _mv(self, v):
        self.calls += 1
        return super()._mv(v)


@pytest.mark.parametrize("w0", ["zero", "other"])
def test_a_round_from_the_zero_model_takes_no_margin_pass(monkeypatch, w0):
    ds = make_logistic(800, 7, random_state=4)
    args = (np.ascontiguousarray(ds.X), ds.y, K.LOGISTIC, False, 7, 2400, 1e-2, 300, 0)
    start = np.zeros(7) if w0 == "zero" else np.full(7, 0.01)
    ln = CountingMargins(*args)
    v, dual, share, _, _ = ln.solve(start, [], 0.0, 1, 1e-10)
    # one Newton iteration: the step's margins, plus the start's unless it is the zero model
    assert ln.calls == (1 if w0 == "zero" else 2)
    # bit for bit the round that took the start's margins by a pass
    monkeypatch.setattr(_newton_loop, "start", lambda nw, w: (nw._mv(w), False))
    want = LocalNewton(*args).solve(start, [], 0.0, 1, 1e-10)
    for got, ref in zip((v, dual, share), want[:3]):
        np.testing.assert_array_equal(got, ref)
