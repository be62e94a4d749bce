"""The one definition of each loss (`_losses`) against independent formulas: the notes' conjugate table,
Fenchel-Young, a numerical sup, finite differences for derivative and curvature. No cluster."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from asip.algorithms import _kernels as K
from asip.algorithms import _losses as L
from asip.algorithms._base import Problem
from asip.algorithms._objectives import LOSSES, get_loss

RNG = np.random.default_rng(0)
M = np.concatenate([RNG.standard_normal(50) * 3, [-40.0, -1.0, 0.0, 1.0, 40.0]])
Y_CLS = np.where(RNG.random(M.size) < 0.5, -1.0, 1.0)
Y_REG = RNG.standard_normal(M.size)


def labels(name):
    return Y_REG if name == "squared_error" else Y_CLS


def table_conjugate(name, a, y):
    """``phi*(-a)`` from the table in cocoa-and-certificates.md (b = a y), written independently."""
    b = a * y
    if name == "hinge":
        return np.where((b >= 0) & (b <= 1), -b, np.inf)
    if name == "log_loss":
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = np.nan_to_num(b * np.log(b)) + np.nan_to_num((1 - b) * np.log(1 - b))
        return np.where((b >= 0) & (b <= 1), ent, np.inf)
    return 0.5 * a * a - a * y


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_conjugate_matches_the_table_inside_and_outside_the_domain(name):
    loss = get_loss(name)
    y = labels(name)
    b = np.concatenate([np.linspace(0, 1, 25), [-0.3, 1.2]])
    yy = np.resize(y, b.size)
    a = b * yy  # b = a y
    np.testing.assert_allclose(loss.conjugate(-a, yy), table_conjugate(name, a, yy), rtol=1e-13,
                               atol=1e-15)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_conjugate_is_the_sup_and_fenchel_young_is_tight_at_the_derivative(name):
    loss = get_loss(name)
    y = labels(name)[:12]
    a = loss.dual_clip(-loss.deriv(M[:12], y), y)  # the dual point a primal point gives
    u = -a
    sup = np.array([-minimize_scalar(lambda m, ui=ui, yi=yi: -(ui * m - loss.value(m, yi)),
                                     bounds=(-60, 60), method="bounded",
                                     options={"xatol": 1e-10}).fun for ui, yi in zip(u, y)])
    np.testing.assert_allclose(loss.conjugate(u, y), sup, rtol=1e-6, atol=1e-6)
    # phi(m) + phi*(u) = u m exactly when u = phi'(m)
    np.testing.assert_allclose(loss.value(M[:12], y) + loss.conjugate(u, y), u * M[:12],
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_dual_clip_makes_any_dual_feasible(name):
    loss = get_loss(name)
    y = labels(name)
    a = RNG.standard_normal(M.size) * 3
    c = loss.dual_clip(a, y)
    assert np.all(np.isfinite(loss.conjugate(-c, y)))
    if name == "squared_error":
        np.testing.assert_array_equal(c, a)
    else:
        assert np.all((c * y >= 0) & (c * y <= 1))
        inside = (a * y >= 0) & (a * y <= 1)
        np.testing.assert_array_equal(c[inside], a[inside])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_value_derivative_and_curvature_agree(name):
    loss = get_loss(name)
    y = labels(name)
    m = M[np.abs(1 - y * M) > 1e-3]  # away from the hinge's kink
    ym = y[np.abs(1 - y * M) > 1e-3]
    h = 1e-6
    fd = (loss.value(m + h, ym) - loss.value(m - h, ym)) / (2 * h)
    np.testing.assert_allclose(loss.deriv(m, ym), fd, rtol=1e-6, atol=1e-7)
    if loss.curvature is not None:
        second = (loss.deriv(m + h, ym) - loss.deriv(m - h, ym)) / (2 * h)
        assert np.all(second <= loss.curvature * (1 + 1e-6))
    # the numpy objective, the kernels and the Problem all read the same definitions
    code = L.LOSS_CODES[name]
    assert loss.code == code and loss.curvature == L.CURVATURE[code]
    assert Problem(code, K.L2, 0.1, False, 1, (1,)).curvature == loss.curvature
    Xk = np.ones((1, 1))
    for mi, yi in zip(m[:5], ym[:5]):
        assert K.loss_sum(Xk, np.array([yi]), np.array([mi]), code, False) == loss.value(mi, yi)


def test_logistic_is_finite_at_extreme_margins():
    loss = get_loss("log_loss")
    m = np.array([-800.0, 800.0])
    for yv in (-1.0, 1.0):
        np.testing.assert_allclose(loss.value(m, yv), np.logaddexp(0, -yv * m), rtol=1e-15)
        assert np.all(np.isfinite(loss.deriv(m, yv)))
