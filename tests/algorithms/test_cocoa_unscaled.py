"""asip-cocoa (SDCA) on unscaled, label-sorted rows like skin_nonskin's (features 0-255, so
``||x_i||^2`` up to ~2e5; the positives first): each partition's share ``u_k`` is then
~100x the model and the shares cancel, so ``sum u_k`` of shares a few steps apart is far
off; the model while none is certified is the leader's evaluated ``wbar`` of least
objective. In one process (`_sim`), on a simulated clock: deterministic."""

from __future__ import annotations

import numpy as np
from _sim import simulate

from asip.algorithms import Objective, get_loss, get_penalty, reference_optimum
from asip.algorithms import _kernels as K
from asip.algorithms._base import make_problem

ALPHA = 0.1


def _skin_like(n=5000, seed=3):
    """Integer features 0-255, labels from a noisy plane, sorted by label (positives first)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, 3)).astype(np.float64)
    y = np.where(X @ np.array([-1.0, -0.8, 1.5]) + 40 * rng.normal(size=n) > 0, 1.0, -1.0)
    order = np.argsort(-y, kind="stable")
    return X[order], y[order]


def _primal(X, y, w):
    return float(np.mean(np.maximum(0.0, 1.0 - y * (X @ w))) + 0.5 * ALPHA * w @ w)


def test_uncertified_model_is_the_best_evaluated_wbar_on_label_sorted_unscaled_rows():
    X, y = _skin_like()
    n = X.shape[0]
    parts = [(X[: n // 2], y[: n // 2]), (X[n // 2:], y[n // 2:])]
    problem = make_problem(K.HINGE, K.L2, ALPHA, False, parts)
    w, snaps, rounds, done = simulate("asip-cocoa", problem, parts,
                                      {"tol": 0.0, "seed": 0, "cert_period": 0.0,
                                       "local_solver": "sdca"},
                                      max_time=np.inf, max_rounds=400, chunk=250,
                                      round_time=0.001)
    assert not done
    ref = reference_optimum(Objective(get_loss("hinge"), get_penalty("l2", ALPHA), False), X, y,
                            cache=False)
    lead = snaps[0]
    np.testing.assert_array_equal(w, lead["best"])
    # the shares are ~35x the model and cancel: their sum (the model before) was at 1.26x f*
    shares = np.sum([s["u"] for s in snaps], axis=0)
    assert np.abs(lead["u"]).max() > 10 * np.abs(ref.w).max()
    f, f_shares = _primal(X, y, w), _primal(X, y, shares)
    assert f <= f_shares
    assert (f - ref.f_star) / ref.f_star <= 0.1, (f, f_shares, ref.f_star)
