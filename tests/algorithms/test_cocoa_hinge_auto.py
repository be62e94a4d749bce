"""asip-cocoa's "auto" local solver on hinge: the smoothed-hinge Newton solver where SDCA's
steps are damped on small dense data (skin_nonskin), SDCA elsewhere (`choose_local_solver`)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from asip.algorithms import _kernels as K
from asip.algorithms._cocoa_newton import choose_local_solver


def test_auto_picks_newton_for_hinge_only_where_sdca_is_damped_on_small_dense_data():
    """skin_nonskin-like (3 dense features 0-255: damping ~5) gets Newton; a9a, ijcnn1,
    reuters and the synthetic sets at alpha 0.1 (damping < 0.1) keep SDCA; so do sparse and
    wide damped sets (not measured)."""
    assert choose_local_solver("auto", K.HINGE, 3, None, damping=5.0) == "newton"
    assert choose_local_solver("auto", K.HINGE, 100, None, damping=0.1) == "sdca"
    assert choose_local_solver("auto", K.HINGE, 100, None, damping=None) == "sdca"
    assert choose_local_solver("auto", K.HINGE, 501, None, damping=5.0) == "sdca"
    rng = np.random.default_rng(0)
    X = sp.random(200, 40, density=0.2, format="csr", random_state=rng)  # < 25% nonzeros
    kernel = K.as_kernel_matrix(X)
    assert choose_local_solver("auto", K.HINGE, 40, kernel, damping=5.0) == "sdca"
    assert choose_local_solver("auto", K.HINGE, 40, K.as_kernel_matrix(X.toarray()),
                               damping=5.0) == "newton"


def test_hinge_sdca_slices_default_to_half_a_millisecond():
    """``step_time=None``: hinge's SDCA slices are `HINGE_STEP_TIME` (its time to a tight gap
    is set by the exchanges), the other losses' `STEP_TIME`; a given value is kept, a bad
    one refused."""
    import pytest

    from asip.algorithms._base import local_data, make_problem
    from asip.algorithms._cocoa import HINGE_STEP_TIME, STEP_TIME, init, validate
    from asip.algorithms._solvers import get_algorithm

    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 4))
    y = np.sign(X[:, 0] + 0.1)
    algo = get_algorithm("asip-cocoa")
    for loss, want in ((K.HINGE, HINGE_STEP_TIME), (K.LOGISTIC, STEP_TIME)):
        problem = make_problem(loss, K.L2, 0.1, False, [(X, y)])
        for params, slice_s in (({"local_solver": "sdca"}, want),
                                ({"local_solver": "sdca", "step_time": 0.003}, 0.003)):
            state = init(problem, local_data(X, y, problem, 0), algo.merge(params))
            assert state.chunk.target == slice_s
    assert HINGE_STEP_TIME < STEP_TIME
    with pytest.raises(ValueError, match="step_time must be None or a positive number"):
        validate(problem, algo.merge({"step_time": 0}))
