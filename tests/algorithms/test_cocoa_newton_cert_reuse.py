"""asip-cocoa Newton: a certificate answer at the partition's own round end point (the leader's
at every close) takes the round's margins, duals and gradient instead of two data passes
(`_cocoa.NEWTON_CERT_REUSE`, `LocalNewton.end_point`), and gives the same parts, the same
gaps and the same certified stop as the passes."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import Msg, split_rows

from asip.algorithms import Objective, get_loss, get_penalty, make_logistic, reference_optimum
from asip.algorithms import _certificate, _cocoa
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._certificate import certificate_parts
from asip.algorithms._solvers import get_algorithm

N, D, ALPHA = 3000, 12, 0.1


def _pair(X, y, loss: int, fit_intercept: bool, alpha: float = ALPHA):
    """2 Newton partitions of ``X, y`` (certifying at 1e-6): the algorithm, states and data."""
    parts = split_rows(X, y, 2)
    problem = make_problem(loss, K.L2, alpha, fit_intercept, parts)
    algo = get_algorithm("asip-cocoa")
    params = algo.merge({"local_solver": "newton", "tol": 1e-6, "seed": 0})
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    return algo, [algo.init(problem, d, params) for d in datas], datas


def _partition(kind: str, loss: int, fit_intercept: bool):
    """Partition 0 of 2 after its first Newton round: its state and data."""
    ds = make_logistic(N, D, random_state=5)
    X = np.ascontiguousarray(ds.X) if kind == "dense" else sp.csr_matrix(ds.X)
    y = ds.y if loss == K.LOGISTIC else ds.X[:, 0] + 0.1 * ds.y
    algo, states, datas = _pair(X, y, loss, fit_intercept)
    state = algo.local_step(states[0], datas[0], (), 0.0).state
    assert state.clock["rounds"][0] == 1
    return state, datas[0]


class _Passes:
    """Counts the certificate's data passes: margins ``X w`` and sums ``sum_i a_i x_i``."""

    def __init__(self, monkeypatch):
        self.margins = self.sums = 0
        margins, sums = K.margins_blas, _certificate._weighted_rows

        def count_margins(*a, **k):
            self.margins += 1
            return margins(*a, **k)

        def count_sums(*a, **k):
            self.sums += 1
            return sums(*a, **k)

        monkeypatch.setattr(K, "margins_blas", count_margins)
        monkeypatch.setattr(_certificate, "_weighted_rows", count_sums)


def _assert_same_parts(got, want):
    assert got.n == want.n
    np.testing.assert_allclose(got.loss_sum, want.loss_sum, rtol=1e-12)
    np.testing.assert_allclose(got.conj_sum, want.conj_sum, rtol=1e-12)
    np.testing.assert_allclose(got.g, want.g, rtol=1e-10, atol=1e-12 * np.abs(want.g).max())
    assert (got.side is None) == (want.side is None) and got.balance == want.balance
    if want.side is not None:
        np.testing.assert_allclose(got.side, want.side, rtol=1e-12)
        np.testing.assert_allclose(got.side_g, want.side_g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.SQUARED])
@pytest.mark.parametrize("fit_intercept", [False, True])
def test_parts_at_the_round_end_from_its_kept_sums_take_no_data_pass(monkeypatch, kind, loss,
                                                                     fit_intercept):
    state, data = _partition(kind, loss, fit_intercept)
    wbar = state.w.copy()  # the leader's wbar: its view, the round's end point
    want = certificate_parts(data.X, data.y, wbar, loss, fit_intercept,
                             penalized_intercept=False)
    sums = state.newton.end_point(wbar)  # kept when the leader opens a round at wbar
    state.newton.solve(wbar, [], 1.0, 2, 1e-4)  # the next round (it moves on from wbar)
    passes = _Passes(monkeypatch)
    got = _cocoa._parts(state, data, wbar, sums)
    assert passes.margins == 0
    # an unpenalized intercept's side sum over one class is the one pass left
    assert passes.sums == (1 if fit_intercept else 0)
    _assert_same_parts(got, want)


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_an_answer_elsewhere_takes_its_passes(monkeypatch, kind):
    state, data = _partition(kind, K.LOGISTIC, False)
    wbar = state.w * 0.9  # a peer's point (what every non-leader answers at)
    want = certificate_parts(data.X, data.y, wbar, K.LOGISTIC, False, penalized_intercept=False)
    assert state.newton.end_point(wbar) is None  # not the round's end point: no sums
    passes = _Passes(monkeypatch)
    got = _cocoa._parts(state, data, wbar)
    assert (passes.margins, passes.sums) == (1, 1)
    _assert_same_parts(got, want)


def _lockstep(passes, alpha=1e-3, max_exchanges=40):
    """Parallel lock-step exchanges of 2 partitions until the leader says done: the leader's
    relative gaps as it closed them, its certificate cost (the rounds' floor) after each
    close, its closes that took the margins pass (counted by ``passes``), the certified
    model's relative suboptimality and the leader's certificate book."""
    closes_by_passes = 0
    ds = make_logistic(4000, 20, random_state=3)
    algo, states, datas = _pair(np.ascontiguousarray(ds.X), ds.y, K.LOGISTIC, False, alpha)
    problem = states[0].problem
    boxes, gaps, costs, done = [[], []], [], [], False
    for ex in range(1, max_exchanges + 1):
        nxt = [[], []]
        for i in range(2):
            passes.margins = 0
            out = algo.local_step(states[i], datas[i], boxes[i], ex * 0.01)
            if i == 0:  # a Newton round takes its margins by its own products, not this
                closes_by_passes += passes.margins
            states[i] = out.state
            if i == 0:
                done = out.done
            for o in out.outbox:
                nxt[1 - i].append(Msg(i, 0, o.payload, time.time()))
        rel = algo.snapshot(states[0]).get("rel_gap")
        if rel is not None and (not gaps or gaps[-1] != rel):
            gaps.append(rel)
            costs.append(states[0].cert["cost"])
        boxes = nxt
        if done:
            break
    assert done, "not certified"
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    f_star = reference_optimum(obj, ds.X, ds.y).f_star
    w = algo.combine(problem, [algo.snapshot(s) for s in states])
    rel = (obj.value(w, ds.X, ds.y) - f_star) / abs(f_star)
    return gaps, costs, closes_by_passes, rel, states[0].cert


def test_the_leaders_closes_take_no_passes_and_give_the_same_gaps_and_stop(monkeypatch):
    passes = _Passes(monkeypatch)
    gaps, costs, by_passes, rel, book = _lockstep(passes)
    assert rel <= 1e-6 and gaps[-1] <= 1e-6
    # the first close took the two passes (their CPU: the later rounds' floor, what a peer's
    # answer costs); the later ones took none and set that floor
    assert len(gaps) >= 2 and by_passes == 1
    assert 0.0 < book["answer_cpu"] == costs[-1] and all(c == costs[1] for c in costs[1:])
    monkeypatch.setattr(_cocoa, "NEWTON_CERT_REUSE", 0.0)
    old, _, old_by_passes, old_rel, _ = _lockstep(passes)
    assert old_by_passes == len(old)
    assert len(gaps) == len(old)  # closed as often, certified at the same close
    # each gap as the two passes give it, up to float64 rounding of the primal's terms
    np.testing.assert_allclose(gaps, old, rtol=0, atol=1e-12)
    assert abs(rel - old_rel) <= 1e-12
