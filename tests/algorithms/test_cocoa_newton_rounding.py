"""`LocalNewton.solve` once converged to float64 rounding (asip-cocoa at ``tol=0``): one loss
pass a round, the Newton step taken unchecked (`_newton_loop.ROUNDING`), and the same
iterates as the full search while its decrease shows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from asip.algorithms import _cocoa_newton as CN
from asip.algorithms import _kernels as K
from asip.algorithms import _newton_loop as NL
from asip.algorithms import make_logistic, make_regression


class Counting(CN.LocalNewton):
    """A real `LocalNewton` that counts its line-search trials (a loss pass each)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def value_deriv(self, m):
        self.calls += 1
        return super().value_deriv(m)


def _solver(loss, kind):
    n, d = 600, 6
    ds = (make_regression(n, d, random_state=5) if loss == K.SQUARED
          else make_logistic(n, d, random_state=5))
    X = np.asarray(ds.X, dtype=np.float64)
    if kind == "csr":
        S = sp.csr_matrix(np.where(np.random.default_rng(2).random(X.shape) < 0.4, 0.0, X))
        X = (S.data, S.indices, S.indptr)
    return Counting(X, ds.y, loss, True, d + 1, 3 * n, 1e-3, 300, 0)


def _peers(p):
    rng = np.random.default_rng(7)  # one peer, fixed: the model F_j stays the same
    return [(rng.standard_normal(p) * 0.01, rng.standard_normal(p) * 0.1, None, 2.0)]


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.SQUARED])
def test_converged_round_takes_one_loss_pass_and_stays_put(loss, kind):
    """At ``F_j``'s minimizer (to rounding) a round of 4 iterations takes one loss pass (the
    full search took at least one an iteration, up to ~35 when it ran to ``t < 1e-10``) and
    moves by less than 1e-9 of the iterate."""
    s = _solver(loss, kind)
    peers, w = _peers(s.p), np.zeros(s.p)
    for _ in range(30):
        w = s.solve(w, peers, 0.0, 4, 0.0)[0]
    for _ in range(3):
        s.calls = 0
        v = s.solve(w, peers, 0.0, 4, 0.0)[0]
        assert s.calls == 1
        assert np.linalg.norm(v - w) <= 1e-9 * np.linalg.norm(w)
        w = v


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("loss", [K.LOGISTIC, K.SQUARED, K.HINGE])
def test_iterates_are_the_full_searchs_while_its_decrease_shows(monkeypatch, loss, kind):
    """One Newton iteration a round, round by round from the same start: the same outputs bit
    for bit as with the search always on (``ROUNDING = 0``) while its decrease shows; where
    the step is taken unchecked, the two ends differ by less than 1e-7 of the iterate
    (``F_j`` is flat to float64 rounding within ~sqrt(eps) of its minimizer)."""
    guarded, full = _solver(loss, kind), _solver(loss, kind)
    peers, w = _peers(guarded.p), np.zeros(guarded.p)
    same = 0
    for r in range(25):
        b = guarded.solve(w, peers, 0.0, 1, 0.0)
        monkeypatch.setattr(NL, "ROUNDING", 0.0)
        a = full.solve(w, peers, 0.0, 1, 0.0)
        monkeypatch.undo()
        if same == r and all(np.array_equal(x, z) for x, z in zip(a, b)):
            same += 1
        else:
            assert np.linalg.norm(a[0] - b[0]) <= 1e-7 * np.linalg.norm(a[0]), r
        w = a[0]
        guarded.last = full.last  # both start the next round from the full search's point
    # squared loss on CSR (its exact Hessian): the first step is exact, the next one rounding
    assert same >= (1 if loss == K.SQUARED and kind == "csr" else 2)
