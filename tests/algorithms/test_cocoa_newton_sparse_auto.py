"""asip-cocoa's "auto" local solver on sparse, low-dimensional smooth problems: Newton.

Every partition pushes its Hessian, so a partition blind to its peers' rare features is so
for one round only; Newton reached 1e-6 and the certified stop sooner than SDCA on a9a and
a power-law synthetic at 2-16 partitions (`choose_local_solver`). Here: the choice, and a
certified fit on the real cluster with features so rare that a partition lacks some.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from asip.algorithms._datasets import make_power_law_logistic
from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty, reference_optimum,
                             relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._cocoa_newton import choose_local_solver

pytestmark = pytest.mark.timeout(120)


def _rare(n=4000, d=200, nnz=6, seed=0):
    """Binary CSR rows on power-law columns (the last in a handful of rows), logistic labels."""
    ds = make_power_law_logistic(n, d, nnz, 1.5, random_state=seed)
    return ds.X, ds.y


def test_auto_picks_newton_on_sparse_smooth_data_of_any_density():
    """a9a's shape (124 coefficients, 11% nonzeros, damping 0.07 at alpha 0.1) takes Newton
    for the smooth losses; hinge on sparse data keeps SDCA; wide CSR takes the Hessian-free
    Newton (`_newton_cg`)."""
    X = sp.random(400, 123, density=0.11, format="csr", random_state=0)
    kernel = K.as_kernel_matrix(X)
    for loss in (K.LOGISTIC, K.SQUARED):
        assert choose_local_solver("auto", loss, 124, kernel, damping=0.07) == "newton"
        assert choose_local_solver("auto", loss, 124, kernel, damping=None) == "newton"
        assert choose_local_solver("auto", loss, 501, kernel, damping=0.07) == "newton-cg"
    very_sparse = K.as_kernel_matrix(sp.random(400, 300, density=0.01, format="csr",
                                               random_state=1))
    assert choose_local_solver("auto", K.LOGISTIC, 300, very_sparse) == "newton"
    assert choose_local_solver("auto", K.HINGE, 124, kernel, damping=0.07) == "sdca"
    assert choose_local_solver("auto", K.HINGE, 124, kernel, damping=5.0) == "sdca"


def test_auto_newton_certifies_rare_feature_data_on_the_cluster(client):
    """Two partitions of power-law sparse data (each lacks features its peer has):
    "auto" runs Newton rounds and stops certified at the reference optimum."""
    X, y = _rare()
    counts = [np.bincount(X[a:a + 2000].indices, minlength=X.shape[1]) for a in (0, 2000)]
    for own, peer in (counts, counts[::-1]):  # each partition lacks features its peer has
        assert ((own == 0) & (peer > 0)).any()
    alpha = 0.1
    est = AsipClassifier(loss="log_loss", penalty="l2", alpha=alpha, solver="asip-cocoa",
                         fit_intercept=False, tol=1e-6, max_time=30.0, n_partitions=2,
                         random_state=0).fit(X, y)
    assert est.stopped_by_ == "tol"
    res = est.stage_result_.results
    assert all(r is not None and "round_s" in r for r in res), "not the Newton local solver"
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    ref = reference_optimum(obj, X, y)
    r = float(relative_suboptimality(obj.value(est.coef_.ravel(), X, y), ref.f_star))
    assert r <= max(res[0]["rel_gap"], 0.0) + ref.relative_precision + 1e-12
    assert r <= 1e-6 + ref.relative_precision
