"""Every numba kernel against a plain-numpy (or scipy) reimplementation, dense and CSR. No cluster."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from distributed.protocol import deserialize, serialize
from _sdca_reference import dual_delta

from asip.algorithms import _kernels as K
from asip.algorithms._objectives import Hinge, Logistic, Squared

MASK = (1 << 64) - 1
LOSS_OBJ = {K.LOGISTIC: Logistic(), K.HINGE: Hinge(), K.SQUARED: Squared()}


class PyRng:
    """The kernels' xorshift64* generator in plain Python integers."""

    def __init__(self, state: np.ndarray):
        self.x = int(state[0])

    def next(self) -> int:
        x = self.x
        x ^= x >> 12
        x ^= (x << 25) & MASK
        x ^= x >> 27
        self.x = x
        return (x * 0x2545F4914F6CDD1D) & MASK

    def randint(self, n: int) -> int:
        return (self.next() >> 11) % n


def make_data(kind: str, loss: int, n=40, d=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.5] = 0.0  # real zeros, so CSR rows differ in length
    X[3] = 0.0  # an empty row
    y = rng.standard_normal(n) if loss == K.SQUARED else np.where(rng.random(n) < 0.5, -1.0, 1.0)
    Xk = K.as_kernel_matrix(sp.csr_matrix(X) if kind == "csr" else X)
    return X, Xk, y


def aug(X, fi):
    return np.hstack([X, np.ones((X.shape[0], 1))]) if fi else X


def dphi(loss, m, y):
    return LOSS_OBJ[loss].deriv(np.asarray(m, dtype=float), np.asarray(y, dtype=float))


KINDS = ["dense", "csr"]
LOSSES = [K.LOGISTIC, K.HINGE, K.SQUARED]


def test_as_kernel_matrix_keeps_sparse_sparse():
    S = sp.random(20, 5, density=0.3, format="coo", random_state=0)
    data, indices, indptr = K.as_kernel_matrix(S)
    assert data.dtype == np.float64 and indices.dtype == np.uint32 and len(indptr) == 21
    assert len(data) == S.nnz
    dense = K.as_kernel_matrix(np.asfortranarray(S.toarray()))
    # a block as an operator gets it: deserialized on a worker, its arrays views of the
    # frames received into uint8 arrays (distributed's TCP comm); scipy's csr_matrix(X)
    # copied those (prune() takes the 8x larger byte count for a bigger array)
    header, frames = serialize((S.tocsr(), np.zeros(20)), serializers=("dask", "pickle"))
    received = [np.frombuffer(memoryview(f).cast("B"), dtype=np.uint8).copy() for f in frames]
    block = deserialize(header, received)[0]
    kernel = K.as_kernel_matrix(block)
    assert np.shares_memory(kernel[0], block.data)  # the nonzeros are used in place
    assert np.shares_memory(kernel[1], block.indices)  # int32 indices too (as uint32)
    assert all(np.array_equal(a, b) for a, b in zip(kernel, (block.data, block.indices,
                                                             block.indptr)))
    assert dense.flags.c_contiguous and dense.dtype == np.float64
    with pytest.raises(ValueError, match="2-D"):
        K.as_kernel_matrix(np.zeros(3))


def test_column_indices_are_unsigned_and_give_the_same_sums():
    """int32 and int64 CSR indices become uint32 (the kernels' fast form), the same pass
    results as signed ones; past 2^32 columns they stay int64."""
    S = sp.random(40, 30, density=0.2, format="csr", random_state=3)
    y = np.where(np.arange(40) % 3 == 0, 1.0, -1.0)
    w = np.linspace(-1, 1, 31)
    out = []
    for dt in (np.int32, np.int64):
        T = S.copy()
        T.indices, T.indptr = T.indices.astype(dt), T.indptr.astype(dt)
        Xk = K.as_kernel_matrix(T)
        assert Xk[1].dtype == np.uint32 and Xk[2].dtype == np.int64
        g = np.zeros(31)
        out.append((K.loss_grad(Xk, y, w, K.LOGISTIC, True, g), g))
    signed = (S.data, S.indices.astype(np.int64), S.indptr.astype(np.int64))
    g = np.zeros(31)
    f = K.loss_grad(signed, y, w, K.LOGISTIC, True, g)
    for f2, g2 in out:
        assert f2 == f and np.array_equal(g2, g)
    assert K.column_indices(np.arange(3, dtype=np.int64), 2**33).dtype == np.int64


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss", LOSSES)
def test_full_passes_match_numpy(kind, fi, loss):
    X, Xk, y = make_data(kind, loss)
    w = np.random.default_rng(1).standard_normal(X.shape[1] + fi)
    A = aug(X, fi)
    m = A @ w
    np.testing.assert_allclose(K.margins(Xk, w, fi), m, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(K.loss_sum(Xk, y, w, loss, fi), LOSS_OBJ[loss].value(m, y).sum(),
                               rtol=1e-12)
    g = np.empty_like(w)
    s = K.loss_grad(Xk, y, w, loss, fi, g)
    np.testing.assert_allclose(s, LOSS_OBJ[loss].value(m, y).sum(), rtol=1e-12)
    np.testing.assert_allclose(g, A.T @ dphi(loss, m, y), rtol=1e-11, atol=1e-12)
    idx = np.array([0, 5, 5, 3, 39], dtype=np.int64)  # repeats count twice
    K.batch_grad(Xk, y, w, idx, loss, fi, g)
    np.testing.assert_allclose(g, A[idx].T @ dphi(loss, m[idx], y[idx]), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(K.row_sqnorms(Xk), (X * X).sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("form", ["C", "F", "csr"])
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("shape", [(40, 7), (3000, 100)])
def test_margins_blas_equal_the_kernel_to_rounding(form, fi, shape):
    """BLAS margins on dense arrays (either order), the kernel's on CSR: the kernel's values
    to 1e-12 of the terms' magnitudes."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal(shape)
    X[rng.random(shape) < 0.3] = 0.0
    w = rng.standard_normal(shape[1] + fi)
    Xk = K.as_kernel_matrix(sp.csr_matrix(X) if form == "csr" else X)
    arg = Xk if form != "F" else np.asfortranarray(X)
    got, ref = K.margins_blas(arg, w, fi), K.margins(Xk, w, fi)
    assert got.shape == ref.shape == (shape[0],) and got.dtype == np.float64
    scale = np.abs(aug(X, fi)) @ np.abs(w)
    assert np.all(np.abs(got - ref) <= 1e-12 * scale)


def test_margins_blas_refuses_bad_input():
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match="float64"):
        K.margins_blas(X.astype(np.float32), np.ones(3), False)
    with pytest.raises(ValueError, match="intercept"):
        K.margins_blas(X, np.ones(3), True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fi", [False, True])
def test_power_sqnorm_matches_spectral_norm(kind, fi):
    X, Xk, _ = make_data(kind, K.SQUARED)
    exact = np.linalg.norm(aug(X, fi), 2) ** 2
    est = K.power_sqnorm(Xk, X.shape[1], fi, 200, K.make_rng(0))
    assert est <= exact * (1 + 1e-9)
    assert est == pytest.approx(exact, rel=1e-3)


def test_logistic_is_stable_at_extreme_margins():
    Xk = np.array([[1.0]])
    for m in (-800.0, 800.0):
        for yv in (-1.0, 1.0):
            s = K.loss_sum(Xk, np.array([yv]), np.array([m]), K.LOGISTIC, False)
            assert np.isfinite(s)
            assert s == pytest.approx(np.logaddexp(0, -yv * m), rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_grad_at_zero_coefficients_skips_nothing(kind, fi, loss):
    """At zero coefficients (a solver's first point) the passes take each margin as the
    intercept without reading ``w``: the same sums, bit for bit, as reading it, weighted too."""
    from asip.algorithms import _weights as W

    X, Xk, y = make_data(kind, loss)
    for b in ([0.0, -0.0, 0.7] if fi else [None]):
        w = np.zeros(X.shape[1] + fi)
        if fi:
            w[-1] = b
        m = aug(X, fi) @ w
        g = np.empty_like(w)
        s = K.loss_grad(Xk, y, w, loss, fi, g)
        np.testing.assert_allclose(s, LOSS_OBJ[loss].value(m, y).sum(), rtol=1e-12)
        np.testing.assert_allclose(g, aug(X, fi).T @ dphi(loss, m, y), rtol=1e-11, atol=1e-12)
        tiny = w.copy()
        tiny[0] = 5e-324  # one coefficient not zero: the margins are read (and equal)
        g2 = np.empty_like(w)
        assert K.loss_grad(Xk, y, tiny, loss, fi, g2) == s
        np.testing.assert_array_equal(g2, g)
        sw = np.linspace(0.5, 1.5, len(y))
        data = type("D", (), {"X": Xk, "y": y, "sw": sw})
        g3 = np.empty_like(w)
        s3 = W.loss_grad(data, w, loss, fi, g3)
        np.testing.assert_allclose(s3, (sw * LOSS_OBJ[loss].value(m, y)).sum(), rtol=1e-12)
        np.testing.assert_allclose(g3, aug(X, fi).T @ (sw * dphi(loss, m, y)), rtol=1e-11,
                                   atol=1e-12)


@pytest.mark.parametrize("loss", [K.LOGISTIC, K.HINGE, K.SQUARED])
def test_value_deriv_is_value_and_deriv_bit_for_bit(loss):
    """The fused pair the gradient passes use equals the two scalar functions exactly, at
    zero, tiny, ordinary and overflowing margins."""
    from asip.algorithms import _losses as L

    ms = np.concatenate([[0.0, -0.0, 1e-300, -1e-300, 800.0, -800.0, 1.0, -1.0],
                         np.random.default_rng(0).standard_normal(200) * 10])
    for m in ms:
        for yv in (-1.0, 1.0, 0.3):
            f, d = L.value_deriv(loss, m, yv)
            assert (f, d) == (L.value(loss, m, yv), L.deriv(loss, m, yv)), (m, yv)


@pytest.mark.parametrize("pen", [K.L2, K.L1])
def test_prox_matches_penalty_objects_and_spares_intercept(pen):
    from asip.algorithms._objectives import L1, L2

    w = np.array([-2.0, -0.05, 0.0, 0.04, 3.0, 7.0])
    out = w.copy()
    K.prox_inplace(out, 5, pen, 0.5, 0.2)
    ref = (L2(0.5) if pen == K.L2 else L1(0.5)).prox(w[:5], 0.2)
    np.testing.assert_allclose(out[:5], ref, rtol=1e-15)
    assert out[5] == 7.0
    if pen == K.L1:  # entries within the threshold are exactly zero, the rest shrink by it
        np.testing.assert_array_equal(out[:5], [-1.9, 0.0, 0.0, 0.0, 2.9])


def test_rng_matches_python_and_is_reproducible():
    a, b = K.make_rng(42), K.make_rng(42)
    assert a[0] == b[0] != K.make_rng(43)[0]
    py = PyRng(a)
    Xk = np.zeros((1000, 1))
    # draw through a kernel: SAGA on zero data consumes exactly one randint per step
    w, mem, gbar = np.zeros(1), np.zeros(1000), np.zeros(1)
    K.saga_steps(Xk, np.ones(1000), K.SQUARED, False, 5, a, w, mem, gbar, 1000.0, 0.1, K.L2, 0.0)
    for _ in range(5):
        py.randint(1000)
    assert int(a[0]) == py.x


def _rda_point(G, t, share, C, T, n_coef, pen, alpha, beta0, gamma, damp, anchor):
    h = (beta0 + gamma * np.sqrt(T)) / T + damp
    g = share * G / t + C - damp * anchor
    x = np.empty_like(g)
    hb = (beta0 + max(gamma, beta0 / 4) * np.sqrt(T)) / T + damp  # the intercept's own weight
    x[n_coef:] = -g[n_coef:] / hb
    if pen == K.L2:
        x[:n_coef] = -g[:n_coef] / (alpha + h)
    else:
        x[:n_coef] = -np.sign(g[:n_coef]) * np.maximum(np.abs(g[:n_coef]) - alpha, 0) / h
    return x


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss,pen", [(K.LOGISTIC, K.L2), (K.HINGE, K.L1), (K.SQUARED, K.L1)])
def test_rda_steps_match_numpy(kind, fi, loss, pen):
    X, Xk, y = make_data(kind, loss)
    A = aug(X, fi)
    p, n, batch, steps = A.shape[1], X.shape[0], 4, 25
    C = np.random.default_rng(2).standard_normal(p) * 0.1
    args = dict(share=0.6, T_peers=17.0, alpha=0.05, beta0=2.0, gamma=0.5 if pen == K.L1 else 0.0,
                damp=0.3)
    anchor = np.random.default_rng(3).standard_normal(p) * 0.1
    rng = K.make_rng(7)
    py = PyRng(rng)
    G, t, x, xsum, wsum = np.zeros(p), np.zeros(1, np.int64), np.zeros(p), np.zeros(p), np.zeros(1)
    K.rda_steps(Xk, y, loss, fi, steps, batch, rng, G, t, args["share"], C, args["T_peers"], pen,
                args["alpha"], args["beta0"], args["gamma"], args["damp"], anchor, x, xsum, wsum)
    G2, x2, xs2, ws2 = np.zeros(p), np.zeros(p), np.zeros(p), 0.0
    for step in range(1, steps + 1):
        idx = [py.randint(n) for _ in range(batch)]
        dv = dphi(loss, A[idx] @ x2, y[idx]) / batch
        G2 += A[idx].T @ dv
        T = step + args["T_peers"]
        x2 = _rda_point(G2, step, args["share"], C, T, X.shape[1], pen, args["alpha"],
                        args["beta0"], args["gamma"], args["damp"], anchor)
        xs2 += T * x2
        ws2 += T
    assert t[0] == steps
    np.testing.assert_allclose(G, G2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x, x2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xsum / wsum[0], xs2 / ws2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss,pen,mu", [(K.LOGISTIC, K.L2, 0.05), (K.SQUARED, K.L1, 0.0)])
def test_sgd_steps_match_numpy(kind, fi, loss, pen, mu):
    from asip.algorithms._objectives import L1, L2

    X, Xk, y = make_data(kind, loss)
    A = aug(X, fi)
    p, n, batch, steps = A.shape[1], X.shape[0], 3, 20
    weight, eta0, tau, T_peers, alpha = 1.3, 0.05, 9.0, 5.0, 0.05
    rng = K.make_rng(3)
    py = PyRng(rng)
    x, S, P, cnt = np.zeros(p), np.zeros(p), np.zeros(1), np.zeros(1, np.int64)
    xsum, wsum = np.zeros(p), np.zeros(1)
    K.sgd_steps(Xk, y, loss, fi, steps, batch, rng, weight, x, S, P, cnt, T_peers, eta0, mu, tau,
                pen, alpha, xsum, wsum)
    penalty = L2(alpha) if pen == K.L2 else L1(alpha)
    x2, S2, P2, xs2, ws2 = np.zeros(p), np.zeros(p), 0.0, np.zeros(p), 0.0
    for c in range(steps):
        T = c + T_peers
        eta = eta0 / (1 + eta0 * mu * T) if mu > 0 else eta0 / np.sqrt(1 + T / tau)
        idx = [py.randint(n) for _ in range(batch)]
        step = A[idx].T @ (dphi(loss, A[idx] @ x2, y[idx]) * eta * weight / batch)
        x2 = x2 - step
        S2 += step
        x2[: X.shape[1]] = penalty.prox(x2[: X.shape[1]], eta)
        P2 += eta
        xs2 += (T + 1) * x2
        ws2 += T + 1
    np.testing.assert_allclose(x, x2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(S, S2, rtol=1e-10, atol=1e-12)
    assert P[0] == pytest.approx(P2, rel=1e-12) and cnt[0] == steps
    np.testing.assert_allclose(xsum / wsum[0], xs2 / ws2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss,pen", [(K.LOGISTIC, K.L1), (K.SQUARED, K.L2), (K.HINGE, K.L2)])
def test_saga_steps_match_numpy(kind, fi, loss, pen):
    from asip.algorithms._objectives import L1, L2

    X, Xk, y = make_data(kind, loss)
    A = aug(X, fi)
    p, n, steps, n_total, step, alpha = A.shape[1], X.shape[0], 60, 100.0, 0.05, 0.02
    rng = K.make_rng(11)
    py = PyRng(rng)
    w, mem = np.zeros(p), np.zeros(n)
    gbar = np.random.default_rng(4).standard_normal(p) * 0.01
    gbar0 = gbar.copy()
    K.saga_steps(Xk, y, loss, fi, steps, rng, w, mem, gbar, n_total, step, pen, alpha)
    penalty = L2(alpha) if pen == K.L2 else L1(alpha)
    w2, mem2, g2 = np.zeros(p), np.zeros(n), gbar0
    for _ in range(steps):
        i = py.randint(n)
        d = float(dphi(loss, A[i] @ w2, y[i]))
        delta = d - mem2[i]
        w2 = w2 - step * (delta * A[i] + g2)
        g2 = g2 + delta * A[i] / n_total
        mem2[i] = d
        w2[: X.shape[1]] = penalty.prox(w2[: X.shape[1]], step)
    np.testing.assert_allclose(w, w2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mem, mem2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gbar, g2, rtol=1e-10, atol=1e-14)


def _sdca_reference(A, y, loss, epochs, py, dual, x, cr, sqn):
    n = A.shape[0]
    order = list(range(n))
    for _ in range(epochs):
        for k in range(n - 1, 0, -1):
            r = py.randint(k + 1)
            order[k], order[r] = order[r], order[k]
        for i in order:
            a = dual[i]
            delta = dual_delta(loss, cr * sqn[i], A[i] @ x, y[i], a)
            dual[i] = a + delta
            x = x + cr * delta * A[i]
    return dual, x


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss", LOSSES)
def test_sdca_steps_match_numpy_and_solve_the_local_problem(kind, fi, loss):
    X, Xk, y = make_data(kind, loss)
    A = aug(X, fi)
    p, n = A.shape[1], X.shape[0]
    c, rho = 1.0 / 100, 0.3
    v = np.random.default_rng(5).standard_normal(p) * 0.2
    sqn = (A * A).sum(axis=1)
    rng = K.make_rng(9)
    py = PyRng(rng)
    dual, x = np.zeros(n), v.copy()
    K.sdca_steps(Xk, y, loss, fi, 2, rng, dual, x, c / rho, sqn)
    dual2, x2 = _sdca_reference(A, y, loss, 2, py, np.zeros(n), v.copy(), c / rho, sqn)
    np.testing.assert_allclose(dual, dual2, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(x, x2, rtol=1e-8, atol=1e-10)
    # x stays tied to the duals: x = v + (c/rho) A^T dual
    np.testing.assert_allclose(x, v + c / rho * A.T @ dual, rtol=1e-10, atol=1e-12)
    # many more epochs solve  min c sum phi(a^T x) + rho/2 ||x - v||^2
    K.sdca_steps(Xk, y, loss, fi, 300, rng, dual, x, c / rho, sqn)
    primal = c * LOSS_OBJ[loss].value(A @ x, y).sum() + 0.5 * rho * np.sum((x - v) ** 2)
    u = -dual  # dual_i = -phi'(m_i) at the optimum
    conj = LOSS_OBJ[loss].conjugate(u, y)
    # D(dual) = -c sum phi*(-dual) - c (A v)^T dual - (rho/2) ||x - v||^2, x = v + (c/rho) A^T dual
    dual_obj = -c * conj.sum() - c * (A @ v) @ dual - 0.5 * rho * np.sum((x - v) ** 2)
    gap = primal - dual_obj
    assert -1e-12 <= gap <= 1e-9 * max(1.0, abs(primal))


@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss,pen,mu,alpha,steps", [
    (K.LOGISTIC, K.L2, 0.05, 0.05, 60), (K.SQUARED, K.L1, 0.0, 0.05, 60),
    (K.HINGE, K.L1, 0.0, 0.5, 200),  # thresholds that zero coordinates between their reads
    (K.SQUARED, K.L2, 0.0, 5.0, 400),  # the l2 scale shrinks 1000-fold many times: rescaled
])
def test_lazy_sgd_steps_equal_the_dense_kernel_on_csr(fi, loss, pen, mu, alpha, steps):
    """O(nnz) steps (scale for l2, just-in-time soft thresholds for l1) give the same iterates,
    totals and iterate average as the O(d) kernel on the same rows and random draws."""
    X, Xk, y = make_data("csr", loss, n=60, d=40, seed=3)
    p, batch = X.shape[1] + fi, 3
    weight, eta0, tau, T_peers = 1.3, 0.5, 9.0, 5.0
    x0 = np.random.default_rng(5).standard_normal(p) * 0.3
    outs = []
    for kernel in (K.sgd_steps, K.sgd_steps_lazy):
        x, S, P, cnt = x0.copy(), np.zeros(p), np.zeros(1), np.zeros(1, np.int64)
        xsum, wsum = np.zeros(p), np.zeros(1)
        kernel(Xk, y, loss, fi, steps, batch, K.make_rng(3), weight, x, S, P, cnt, T_peers,
               eta0, mu, tau, pen, alpha, xsum, wsum)
        outs.append((x, S, P, cnt, xsum / wsum[0]))
    (x, S, P, c, avg), (x2, S2, P2, c2, avg2) = outs
    np.testing.assert_allclose(x2, x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(S2, S, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(avg2, avg, rtol=1e-9, atol=1e-12)
    assert P2[0] == pytest.approx(P[0], rel=1e-14) and c2[0] == c[0] == steps
    if pen == K.L1 and alpha == 0.5:
        assert np.sum(x2 == 0.0) >= 5  # the thresholds did zero coordinates


@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss,pen,damp", [(K.LOGISTIC, K.L2, 0.3), (K.HINGE, K.L1, 0.0),
                                           (K.SQUARED, K.L1, 0.3), (K.LOGISTIC, K.L1, 0.0)])
def test_lazy_rda_steps_equal_the_dense_kernel_on_csr(fi, loss, pen, damp):
    """O(nnz) RDA steps (points computed when read, averages from prefix sums) give the same
    dual, point and iterate average as the O(d) kernel, across two calls (a warm start)."""
    X, Xk, y = make_data("csr", loss, n=60, d=40, seed=4)
    p, batch = X.shape[1] + fi, 3
    C = np.random.default_rng(2).standard_normal(p) * 0.05
    anchor = np.random.default_rng(3).standard_normal(p) * 0.1
    gamma = 0.5 if pen == K.L1 else 0.0
    outs = []
    for kernel in (K.rda_steps, K.rda_steps_lazy):
        G, t, x = np.zeros(p), np.zeros(1, np.int64), np.zeros(p)
        xsum, wsum = np.zeros(p), np.zeros(1)
        rng = K.make_rng(7)
        for steps, share, cc in ((40, 0.6, C), (70, 0.5, 0.5 * C)):
            kernel(Xk, y, loss, fi, steps, batch, rng, G, t, share, cc, 17.0, pen, 0.02, 2.0,
                   gamma, damp, anchor, x, xsum, wsum)
        outs.append((G, t, x, xsum / wsum[0]))
    (G, t, x, avg), (G2, t2, x2, avg2) = outs
    assert t2[0] == t[0] == 110
    np.testing.assert_allclose(G2, G, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x2, x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(avg2, avg, rtol=1e-9, atol=1e-12)
    if pen == K.L1:
        assert np.sum(x2[: X.shape[1]] == 0.0) >= 1


@pytest.mark.parametrize("fi", [False, True])
@pytest.mark.parametrize("loss,pen,alpha", [(K.LOGISTIC, K.L1, 0.02), (K.SQUARED, K.L2, 0.05),
                                            (K.HINGE, K.L1, 0.3), (K.SQUARED, K.L1, 0.5)])
def test_lazy_saga_steps_equal_the_dense_kernel_on_csr(fi, loss, pen, alpha):
    """O(nnz) SAGA steps (missed steps of a coefficient applied in closed form when read) give
    the same model, memory and averaged gradient as the O(d) kernel."""
    X, Xk, y = make_data("csr", loss, n=60, d=40, seed=6)
    p, steps, n_total, step = X.shape[1] + fi, 300, 100.0, 0.05
    w0 = np.random.default_rng(8).standard_normal(p) * 0.3
    g0 = np.random.default_rng(4).standard_normal(p) * 0.5  # large: coefficients cross zero
    outs = []
    for kernel in (K.saga_steps, K.saga_steps_lazy):
        w, mem, gbar = w0.copy(), np.zeros(X.shape[0]), g0.copy()
        kernel(Xk, y, loss, fi, steps, K.make_rng(11), w, mem, gbar, n_total, step, pen, alpha)
        outs.append((w, mem, gbar))
    for lazy, dense in zip(outs[1], outs[0]):
        np.testing.assert_allclose(lazy, dense, rtol=1e-9, atol=1e-12)
    if pen == K.L1:
        assert np.sum(outs[1][0][: X.shape[1]] == 0.0) >= 1


@pytest.mark.parametrize("bad", [-3, 50, 2**31 + 5])
def test_malformed_csr_column_index_is_refused(bad):
    """The kernels index the gradient without bounds checks: an index outside [0, n_cols)
    (negative ones too, which read huge as uint32) is a clear error, never a stray write."""
    X = sp.random(40, 50, density=0.2, format="csr", random_state=0)
    X.indices = X.indices.astype(np.int64)
    X.indices[3] = bad
    with pytest.raises(ValueError, match="outside"):
        K.as_kernel_matrix(X)
