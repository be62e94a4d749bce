"""The fixed costs of a big asip-svrg fit, in one process: input preparation slices CSR rows
without copying them and takes row norms from the nonzeros; the operator's warm-up loads the
epoch kernel with one step (not a whole epoch); the snapshot says where an operator's time
went."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import split_rows

from asip.algorithms import _asip_svrg as S
from asip.algorithms import _kernels as K
from asip.algorithms import make_sparse_logistic
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._inputs import csr_row_sqnorms, row_block


def _csr_with_empty_rows():
    X = sp.random(60, 25, density=0.1, format="csr", random_state=3).tolil()
    X[0] = 0
    X[7] = 0
    X[59] = 0
    return sp.csr_matrix(X)


def test_csr_row_sqnorms_match_scipy_with_empty_rows():
    X = _csr_with_empty_rows()
    want = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    np.testing.assert_allclose(csr_row_sqnorms(X), want, rtol=1e-14, atol=0)
    assert csr_row_sqnorms(sp.csr_matrix((4, 3))).tolist() == [0.0] * 4


@pytest.mark.parametrize("a, b", [(0, 60), (3, 17), (58, 60), (0, 1), (7, 8)])
def test_row_block_equals_scipy_slice_and_shares_the_nonzeros(a, b):
    X = _csr_with_empty_rows()
    block = row_block(X, a, b)
    assert block.shape == (b - a, 25)
    assert (block != X[a:b]).nnz == 0
    if block.nnz:
        assert np.shares_memory(block.data, X.data)  # a view: no copy of the nonzeros


def _svrg_state():
    ds = make_sparse_logistic(400, 300, nnz_per_row=5, random_state=1)
    parts = split_rows(ds.X, ds.y, 2)
    pb = make_problem(K.LOGISTIC, K.L2, 1e-3, False, parts)
    data = local_data(*parts[0], pb, 0)
    return S.ALGORITHM.init(pb, data, S.ALGORITHM.merge({"tol": 0.0})), data


def test_warm_up_loads_the_epoch_kernel_and_changes_nothing():
    state, data = _svrg_state()
    w, rng, mem = state.w.copy(), state.rng.copy(), state.clock["act"]["mem"].copy()
    S.ALGORITHM.warm_up(state, data)
    assert S.svrg_steps_scaled.signatures  # loaded from numba's cache or compiled
    np.testing.assert_array_equal(state.w, w)
    np.testing.assert_array_equal(state.rng, rng)
    np.testing.assert_array_equal(state.clock["act"]["mem"], mem)
    assert state.clock["epochs"] == 0.0 and "stepped" not in state.clock


def test_snapshot_says_where_the_time_went():
    state, data = _svrg_state()
    state.clock["ahead"] = -1e9  # never wait for news (no peers talk here)
    for _ in range(3):
        S.ALGORITHM.local_step(state, data, [], 0.0)
    snap = S.ALGORITHM.snapshot(state)
    for key in ("seconds_anchor", "seconds_average", "seconds_epoch", "seconds_epoch_cpu"):
        assert snap[key] >= 0.0, key
    assert snap["seconds_epoch"] > 0.0 and snap["t"] == 3


def test_an_anchor_from_a_message_runs_the_kernels_compiled_for_the_own_one():
    """An anchor that arrives in a message is a read-only array (msgpack's buffer), a type of
    its own to numba: moving to it must not make the anchor pass compile a second time."""
    state, data = _svrg_state()
    a = np.full(state.problem.p, 0.01)
    received = a.copy()
    received.flags.writeable = False  # as the channel's decoder delivers arrays
    S._anchor(state, data, 1, received)
    # anchor_pass(X, y, sw, a, ...): the anchor is its fourth argument
    readonly = [sig for sig in S.anchor_pass.signatures if not sig[3].mutable]
    assert not readonly, f"anchor_pass compiled for read-only arrays: {readonly}"
    np.testing.assert_array_equal(state.clock["anchor"], a)
    assert state.clock["anchor"].flags.writeable
