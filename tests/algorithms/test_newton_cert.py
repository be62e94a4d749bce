"""The Hessian certificate (`_newton_cert`): a true upper bound on P(w) - P*, and a tight one.

In-process, no cluster. Ground truth: the optimum by exact Newton steps in plain numpy
(to machine precision, d small), checked against `reference_optimum` where it applies.
"""

from __future__ import annotations

import numpy as np
import pytest

from asip.algorithms import _kernels as K
from asip.algorithms import _newton_cert as NC
from asip.algorithms._base import Problem
from asip.algorithms._objectives import Objective, get_loss, get_penalty
from asip.algorithms._reference import reference_optimum


def _setup(loss, fit_intercept, weighted, n=4000, d=8, alpha=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    beta = rng.uniform(-1, 1, d)
    if loss == "log_loss":
        y = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ beta + 0.3))), 1.0, -1.0)
    else:
        y = X @ beta + 0.3 + rng.standard_normal(n)
    sw = rng.uniform(0.2, 3.0, n) if weighted else None
    alpha = 1.0 / n if alpha is None else alpha
    code = K.LOGISTIC if loss == "log_loss" else K.SQUARED
    pb = Problem(code, K.L2, alpha, fit_intercept, d, (n,), 1.0, 1.0)
    return pb, X, y, sw


def _Z(pb, X):
    return np.column_stack([X, np.ones(len(X))]) if pb.fit_intercept else X


def _value_grad_hess(pb, X, y, sw, w):
    """P, its gradient and Hessian in plain numpy (the test's own ground truth)."""
    Z = _Z(pb, X)
    m = Z @ w
    s = np.ones(len(y)) if sw is None else sw
    reg = np.full(pb.p, pb.alpha)
    if pb.fit_intercept:
        reg[-1] = 0.0
    if pb.loss == K.LOGISTIC:
        f = np.logaddexp(0, -y * m)
        sig = 1 / (1 + np.exp(y * m))
        d1, d2 = -y * sig, sig * (1 - sig)
    else:
        f, d1, d2 = 0.5 * (m - y) ** 2, m - y, np.ones_like(m)
    n = len(y)
    P = (s * f).sum() / n + 0.5 * (reg * w * w).sum()
    G = Z.T @ (s * d1) / n + reg * w
    H = (Z.T * (s * d2)) @ Z / n + np.diag(reg)
    return P, G, H


def _optimum(pb, X, y, sw):
    w = np.zeros(pb.p)
    for _ in range(100):
        P, G, H = _value_grad_hess(pb, X, y, sw, w)
        step = np.linalg.solve(H, G)
        w = w - step
        if np.abs(step).max() < 1e-15:
            break
    return w, _value_grad_hess(pb, X, y, sw, w)[0]


def _cert(pb, X, y, sw, w0):
    H = NC.local_hessian(pb, X, y, sw, w0, block=777) / len(y)
    reg = np.full(pb.p, pb.alpha)
    if pb.fit_intercept:
        reg[-1] = 0.0
    r = 0.0 if pb.loss == K.SQUARED else float(np.sqrt((_Z(pb, X) ** 2).sum(1).max()))
    return NC.HessianCert.of(H + np.diag(reg), w0, r)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss", ["log_loss", "squared_error"])
def test_hessian_pass_matches_numpy(loss, fit_intercept, weighted):
    pb, X, y, sw = _setup(loss, fit_intercept, weighted, n=3001)
    w = np.random.default_rng(5).normal(size=pb.p) * 0.3
    want = _value_grad_hess(pb, X, y, sw, w)[2] * len(y)
    want -= np.diag(np.where(np.arange(pb.p) < pb.n_features, pb.alpha, 0.0)) * len(y)
    np.testing.assert_allclose(NC.local_hessian(pb, X, y, sw, w, block=500), want,
                               rtol=1e-10, atol=1e-9)


def test_optimum_agrees_with_the_reference():
    pb, X, y, _ = _setup("log_loss", True, False)
    w, P = _optimum(pb, X, y, None)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", pb.alpha), True)
    ref = reference_optimum(obj, X, y, cache=False)
    assert abs(P - ref.f_star) <= 1e-10 * abs(ref.f_star)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss", ["log_loss", "squared_error"])
@pytest.mark.parametrize("alpha", [None, 1e-2])
def test_bound_is_a_true_upper_bound_and_tight_near_the_optimum(loss, fit_intercept, weighted,
                                                                alpha):
    pb, X, y, sw = _setup(loss, fit_intercept, weighted, alpha=alpha)
    w_star, P_star = _optimum(pb, X, y, sw)
    rng = np.random.default_rng(1)
    certified = 0
    for scale in (1.0, 0.3, 0.1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4):
        for _ in range(3):
            w = w_star + scale * rng.standard_normal(pb.p) / np.sqrt(pb.p)
            P, G, _ = _value_grad_hess(pb, X, y, sw, w)
            cert = _cert(pb, X, y, sw, w)
            b = NC.bound(cert, w, G, P)
            sub = P - P_star
            assert b >= sub, (scale, b, sub)  # a true bound, every time
            if np.isfinite(b):
                certified += 1
                if scale <= 1e-2:  # second order: the bound is about the suboptimality
                    assert b <= 1.5 * sub + 1e-12 * abs(P), (scale, b, sub)
            # the Hessian of a nearby point keeps certifying (shrunk by exp(-R |w - w0|))
            w1 = w_star + 0.5 * (w - w_star)
            P1, G1, _ = _value_grad_hess(pb, X, y, sw, w1)
            assert NC.bound(cert, w1, G1, P1) >= P1 - P_star
    assert certified >= 12  # it applies near the optimum (kappa < 1), not only far off


def test_psi_decreases_and_s_psi_increases_to_one():
    s = np.geomspace(1e-6, 1e3, 400)
    p = np.array([NC.psi(v) for v in s])
    assert p[0] == pytest.approx(0.5, rel=1e-5) and np.all(np.diff(p) < 0)
    sp = s * p
    assert np.all(np.diff(sp) > 0) and sp[-1] < 1.0
    for kappa in (1e-6, 0.1, 0.5, 0.9):
        sb = NC._s_bar(kappa)
        assert sb * NC.psi(sb) >= kappa and sb * NC.psi(sb) <= kappa * (1 + 1e-9)


def test_no_certificate_from_a_singular_hessian():
    H = np.diag([1.0, 1e-12])
    assert NC.HessianCert.of(H, np.zeros(2), 1.0) is None
