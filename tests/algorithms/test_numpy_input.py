"""Input checks of a fit on numpy / scipy.sparse input: one read of X for its finiteness and
row norms (scikit-learn's errors kept), and the same `Problem` as a dask array of the same
row blocks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.utils.validation as skv

from asip.algorithms import AsipClassifier, AsipRegressor
from asip.algorithms import _inputs as I


def _sparse_problem(n=3000, d=50, seed=3):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.1, format="csr", random_state=seed)
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    return X, y


@pytest.mark.parametrize("sparse", [True, False])
def test_x_is_read_once_for_finiteness_and_keeps_sklearns_errors(monkeypatch, sparse):
    """scikit-learn's own finiteness pass over X is left out (the row-norm pass tells), and
    a NaN or inf in X still raises scikit-learn's very error; an overflowing square of finite
    entries is still the overflow error."""
    X, y = _sparse_problem(300, 20)
    X = X if sparse else X.toarray()
    seen: list = []
    real = skv._assert_all_finite

    def spy(A, *args, **kwargs):
        seen.append(kwargs.get("input_name", ""))
        return real(A, *args, **kwargs)

    monkeypatch.setattr(skv, "_assert_all_finite", spy)
    est = AsipClassifier(n_partitions=2)
    prep = I.prepare(est, X, y, None, None)
    assert "X" not in seen, seen  # y's own check stays
    sq = np.asarray((X.multiply(X) if sparse else X * X).sum(axis=1)).ravel()
    np.testing.assert_allclose([prep.sq_mean, prep.sq_max], [sq.mean(), sq.max()], rtol=1e-13)
    for bad in (np.nan, np.inf, -np.inf):
        Xb = X.copy()
        (Xb.data if sparse else Xb.reshape(-1))[5] = bad
        with pytest.raises(ValueError) as sk_error:
            real(Xb.data if sparse else Xb, estimator_name="AsipClassifier", input_name="X")
        with pytest.raises(ValueError) as ours:
            I.prepare(AsipClassifier(n_partitions=2), Xb, y, None, None)
        assert str(ours.value) == str(sk_error.value)
    Xb = X.copy()
    (Xb.data if sparse else Xb.reshape(-1))[5] = 1e200  # finite, but its square is not
    with pytest.raises(ValueError, match="overflow"):
        I.prepare(AsipRegressor(n_partitions=2), Xb, y, None, None)


@pytest.mark.timeout(60)
def test_numpy_and_dask_input_of_the_same_row_blocks_give_the_same_problem(client):
    """The row-norm sum adds the row blocks' sums, as the checks of a dask array of the same
    blocks do: the same step sizes whichever way the data came."""
    import dask.array as da

    X, y = _sparse_problem()
    Xd = da.from_array(X.toarray(), chunks=(1000, X.shape[1])).map_blocks(
        sp.csr_matrix, meta=sp.csr_matrix((0, X.shape[1])))
    yd = da.from_array(y, chunks=1000)
    mem = I.prepare(AsipClassifier(n_partitions=3), X, y, None, client)
    dsk = I.prepare(AsipClassifier(), Xd, yd, None, client)
    assert mem.sizes == dsk.sizes == (1000, 1000, 1000)
    assert (mem.sq_mean, mem.sq_max) == (dsk.sq_mean, dsk.sq_max)
    # the blocks are the caller's nonzeros, not copies, and the caller's matrix is unchanged
    assert all(np.shares_memory(blk[0].data, X.data) for blk in mem.data)
    assert all(np.shares_memory(blk[0].indices, X.indices) for blk in mem.data)
    np.testing.assert_array_equal(mem.y, y)
