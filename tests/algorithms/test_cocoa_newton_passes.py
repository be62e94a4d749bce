"""`LocalNewton.solve`'s loss passes: a line search's trial point takes the loss value and its
derivative in one pass (`_losses.value_deriv_rows`), so the accepted point's derivative is
not taken again, and a round that starts where the last ended reuses its loss sum."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from asip.algorithms import _losses as L
from asip.algorithms import make_logistic, make_regression
from asip.algorithms import _kernels as K
from asip.algorithms._cocoa_newton import LocalNewton


@pytest.mark.parametrize("loss", [K.LOGISTIC, K.SQUARED, K.HINGE])
def test_value_deriv_rows_is_the_ufuncs_bit_for_bit(loss):
    """At zero, tiny, ordinary, on-band and overflowing margins, for each label."""
    m = np.concatenate([[0.0, -0.0, 1e-300, -1e-300, 800.0, -800.0, 1.0, -1.0, 0.9, 1.1],
                        np.random.default_rng(0).standard_normal(300) * 5])
    for yv in (-1.0, 1.0, 0.3):
        y = np.full(len(m), yv)
        for mu in (1.0, 0.25, 1e-6):
            v, d = np.empty(len(m)), np.empty(len(m))
            L.value_deriv_rows(loss, m, y, mu, v, d)
            if loss == K.HINGE:
                want_v, want_d = L.smooth_value(loss, m, y, mu), L.smooth_deriv(loss, m, y, mu)
            else:
                want_v, want_d = L.loss_value(loss, m, y), L.loss_deriv(loss, m, y)
            np.testing.assert_array_equal(v, want_v)
            np.testing.assert_array_equal(d, want_d)


class Counting(LocalNewton):
    """A real `LocalNewton` that counts its separate value and derivative passes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = {"value": 0, "deriv": 0}

    def _value(self, m):
        self.calls["value"] += 1
        return super()._value(m)

    def deriv(self, m):
        self.calls["deriv"] += 1
        return super().deriv(m)


def _pair(loss, kind):
    n, d = 800, 7
    ds = (make_regression(n, d, random_state=4) if loss == K.SQUARED
          else make_logistic(n, d, random_state=4))
    X = np.asarray(ds.X, dtype=np.float64)
    if kind == "csr":
        S = sp.csr_matrix(np.where(np.random.default_rng(0).random(X.shape) < 0.4, 0.0, X))
        X = (S.data, S.indices, S.indptr)
    args = (X, ds.y, loss, True, d + 1, 3 * n, 1e-2, 300, 0)
    kw = {"mu": 0.5, "floor": 0.3} if loss == K.HINGE else {}
    return LocalNewton(*args, **kw), Counting(*args, **kw)


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.SQUARED, K.HINGE])
def test_rounds_take_no_separate_loss_pass_and_keep_their_iterates(loss, kind):
    plain, counted = _pair(loss, kind)
    p = plain.p
    rng = np.random.default_rng(1)
    w = np.zeros(p)
    for r in range(4):
        peers = [(rng.standard_normal(p) * 0.01, w + rng.standard_normal(p) * 0.1, None, 2.0)]
        a = plain.solve(w, peers, 0.0, 3, 1e-10)
        counted.calls = {"value": 0, "deriv": 0}
        b = counted.solve(w, peers, 0.0, 3, 1e-10)
        for x, z in zip(a, b):
            np.testing.assert_array_equal(x, z)
        # the first solve takes the start's value and derivative; every later one starts
        # where the last ended, and each trial point brings both along
        assert counted.calls == ({"value": 1, "deriv": 1} if r == 0
                                 else {"value": 0, "deriv": 0}), (r, counted.calls)
        w = a[0]
