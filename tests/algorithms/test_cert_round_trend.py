"""The leader's certificate rounds near the end (`_cert_round.due_by_trend`): once the gap is
within `NEAR` of ``tol``, the next round opens when the gaps' trend says it meets ``tol``,
not a whole ``cert_period`` after the last (a model that met ``tol`` just after a round
waited up to a period); never sooner than 4x the leader's own certificate pass; every
certified gap is still one round's, at one model."""

from __future__ import annotations

import numpy as np
import pytest
from _sim import simulate

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, reference_optimum,
                             relative_suboptimality)
from asip.algorithms import _cert_round as R
from asip.algorithms import _cocoa
from asip.algorithms import _kernels as K
from asip.algorithms._base import make_problem
from asip.algorithms._certificate import certificate_parts

PERIOD = 0.02
TOL = 1e-6


def _closed(trend, cost=0.0):
    """A book whose last two closed rounds opened and measured ``trend`` ((at, rel_gap))."""
    book = R.new_book()
    book.update(trend=list(trend), at=trend[-1][0], cost=cost)
    return book


def test_a_falling_gap_opens_the_next_round_when_its_line_meets_tol():
    # 1e-4 -> 1e-5 in 10 ms: 1e-6 another 10 ms on, half a period
    book = _closed([(0.0, 1e-4), (0.01, 1e-5)])
    assert np.isclose(R.due_by_trend(book, TOL, PERIOD), 0.01)
    assert not R.opens(book, 0.0195, PERIOD, tol=TOL)
    assert R.opens(book, 0.0205, PERIOD, tol=TOL)
    assert not R.opens(book, 0.0205, PERIOD)  # no tol: the period, as before


def test_a_plateau_near_tol_retries_at_twice_the_last_interval():
    book = _closed([(0.0, 2e-6), (0.004, 3e-6)])  # the model moved back
    assert np.isclose(R.due_by_trend(book, TOL, PERIOD), 0.008)


def test_far_from_tol_or_without_a_trend_the_period_stays():
    assert R.due_by_trend(_closed([(0.0, 1e-2), (0.01, 1e-3)]), TOL, PERIOD) == PERIOD  # > NEAR tol
    assert R.due_by_trend(_closed([(0.01, 1e-5)]), TOL, PERIOD) == PERIOD  # one round only
    assert R.due_by_trend(_closed([(0.0, np.inf), (0.01, 1e-5)]), TOL, PERIOD) == PERIOD
    assert R.due_by_trend(_closed([(0.0, 1e-4), (0.01, 1e-5)]), 0.0, PERIOD) == PERIOD  # tol=0
    # a slow fall: the line meets tol after the period, which caps it
    assert R.due_by_trend(_closed([(0.0, 1.1e-5), (0.01, 1e-5)]), TOL, PERIOD) == PERIOD


def test_the_cost_floor_holds_under_the_trend():
    book = _closed([(0.0, 1e-4), (0.01, 1e-5)], cost=0.004)  # 4 x 4 ms > the 10 ms the line says
    assert np.isclose(R.due_by_trend(book, TOL, PERIOD), R.COST_PERIODS * 0.004)
    assert not R.opens(book, 0.01 + 0.015, PERIOD, tol=TOL)
    assert R.opens(book, 0.01 + 0.0165, PERIOD, tol=TOL)


def test_an_open_round_is_not_reopened_sooner_by_the_trend():
    book = _closed([(0.0, 1e-4), (0.01, 1e-5)])
    R.open_round(book, np.zeros(3), 0.02)
    # open: only an overdue one is asked again, on the period (a lost answer), trend or not
    assert not R.opens(book, 0.02 + 0.011, PERIOD, tol=TOL)
    assert R.opens(book, 0.02 + R.OVERDUE_PERIODS * PERIOD + R.OVERDUE_SLACK, PERIOD, tol=TOL)


def test_close_keeps_the_last_two_rounds_gaps_at_their_opening_times():
    ds = make_logistic(400, 5, random_state=0)
    parts = [(ds.X[:200], ds.y[:200]), (ds.X[200:], ds.y[200:])]
    problem = make_problem(K.LOGISTIC, K.L2, 0.1, False, parts)
    book = R.new_book()
    for at, scale in ((0.01, 0.0), (0.03, 0.5), (0.05, 0.9)):
        w = scale * np.ones(5)
        R.open_round(book, w, at)
        peer = certificate_parts(*parts[1], w, K.LOGISTIC, False)
        assert R.accept(book, 1, (0, book["ver"]), 0, peer)
        R.close(book, problem, lambda v: certificate_parts(*parts[0], v, K.LOGISTIC, False), 0.0)
    assert [t for t, _ in book["trend"]] == [0.03, 0.05]
    assert book["trend"][-1][1] == book["rel_gap"]


#: (solver, loss, solver params): asip-admm on hinge, asip-cocoa's SDCA on log_loss
CASES = {"asip-admm": ("hinge", {}), "asip-cocoa": ("log_loss", {"local_solver": "sdca"})}


def _rounds(solver, seed):
    """``solver`` in lock-step, 1 ms a round (simulated clock), cert_period 20 ms: rounds to
    the certified stop; the certified model is within its gap of the optimum."""
    loss, extra = CASES[solver]
    ds = make_logistic(2000, 20, random_state=seed)
    parts = [(ds.X[:1000], ds.y[:1000]), (ds.X[1000:], ds.y[1000:])]
    problem = make_problem(K.HINGE if loss == "hinge" else K.LOGISTIC, K.L2, 1e-2, False, parts)
    obj = Objective(get_loss(loss), get_penalty("l2", 1e-2), False)
    ref = reference_optimum(obj, ds.X, ds.y)
    w, snaps, rounds, done = simulate(solver, problem, parts, {"tol": TOL, "seed": 0, **extra},
                                      max_time=10.0, round_time=0.001)
    assert done
    r = float(relative_suboptimality(obj.value(w, ds.X, ds.y), ref.f_star))
    assert r <= snaps[0]["rel_gap"] + ref.relative_precision + 1e-12
    return rounds


@pytest.mark.parametrize("solver", sorted(CASES))
def test_certifies_sooner_once_near_tol(monkeypatch, solver):
    """Summed over seeds, the trend's timing certifies in fewer rounds than the fixed
    period (the same runs with `due_by_trend` returning the period). asip-cocoa: the period
    without `_cocoa.CERT_BALANCE`, which on the simulated clock (a pass costs 0 s) is 0: rounds
    back to back, as soon as the last closes (the same rounds as the trend's, 233 over the
    seeds)."""
    monkeypatch.setattr(_cocoa, "CERT_BALANCE", np.inf)
    trend = [_rounds(solver, seed) for seed in range(3)]
    monkeypatch.setattr(R, "due_by_trend", lambda book, tol, period: period)
    fixed = [_rounds(solver, seed) for seed in range(3)]
    assert sum(trend) < sum(fixed), (trend, fixed)
