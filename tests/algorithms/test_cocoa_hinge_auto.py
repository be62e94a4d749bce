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
