"""The CSR products asip-cocoa's Newton and the certificate answers take outside the kernels
(`_kernels.NOGIL_SPARSE`): the nogil kernels give scipy's sums bit for bit, and no Python of
scipy.sparse runs (its wrappers held the GIL that in-process workers share). No cluster."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from asip.algorithms import _kernels as K
from asip.algorithms import _newton_cg as CG
from asip.algorithms._certificate import certificate_parts
from asip.algorithms._cocoa_newton import LocalNewton

pytestmark = pytest.mark.timeout(180)


def _csr(n=60, d=9, seed=0):
    """A CSR matrix with an empty row and an empty column, and random signs."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.6] = 0.0
    X[5] = 0.0  # an empty row
    X[:, 2] = 0.0  # an empty column
    return sp.csr_matrix(X)


def _newton(X, y, fi, hessian_free=True):
    p = X.shape[1] + int(fi)
    return LocalNewton(K.as_kernel_matrix(X), y, K.LOGISTIC, fi, p, 2 * X.shape[0], 1e-3,
                       2000, 0, hessian_free=hessian_free)


@pytest.mark.parametrize("index", ["int32", "int64", "uint32"])
def test_rmatvec_equals_scipys_transposed_product(index):
    A = _csr()
    d = np.random.default_rng(1).standard_normal(A.shape[0])
    d[7] = 0.0  # a zero weight (the kernel skips its row)
    Xk = (A.data, A.indices.astype(index), A.indptr.astype(np.int64))
    got = K.rmatvec(Xk, d, A.shape[1])
    want = A.T @ d
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.array_equal(got, want)  # the same sums in the same order
    assert got[2] == 0.0  # the empty column
    # dense rows: the same product, to rounding
    np.testing.assert_allclose(K.rmatvec(A.toarray(), d, A.shape[1]), want, rtol=0, atol=1e-12)


def test_rmatvec_of_no_rows_is_zero():
    Xk = (np.zeros(0), np.zeros(0, dtype=np.uint32), np.zeros(1, dtype=np.int64))
    assert np.array_equal(K.rmatvec(Xk, np.zeros(0), 4), np.zeros(4))


@pytest.mark.parametrize("fi", [False, True])
def test_weighted_gram_matvec_is_both_products_in_one_pass(fi):
    """``A^T (d * (A u + b))`` and ``d * (A u + b)`` as scipy's two products give them."""
    A = _csr()
    rng = np.random.default_rng(12)
    u, d = rng.standard_normal(A.shape[1] + int(fi)), rng.random(A.shape[0])
    d[[0, 9]] = 0.0  # rows of no curvature
    r = np.empty(A.shape[0])
    got = K.weighted_gram_matvec(K.as_kernel_matrix(A), d, u, fi, r, A.shape[1])
    want_r = d * (A @ (u[:-1] if fi else u) + (u[-1] if fi else 0.0))
    assert np.array_equal(r, want_r)
    assert np.array_equal(got, A.T @ want_r)


@pytest.mark.parametrize("fi", [False, True])
def test_local_newton_products_and_solve_equal_scipys(fi, monkeypatch):
    """With the knob on and off (scipy's products): the same margins, transposed products,
    preconditioner and Newton-CG iterate, bit for bit."""
    A = _csr(400, 30, seed=2)
    y = np.where(np.random.default_rng(3).random(A.shape[0]) < 0.5, -1.0, 1.0)
    rng = np.random.default_rng(4)
    v, r = rng.standard_normal(A.shape[1] + int(fi)), rng.standard_normal(A.shape[0])
    peers = [(rng.standard_normal(len(v)) * 1e-2, rng.standard_normal(len(v)) * 0.1, None, 1.0)]
    out = {}
    for knob in (1.0, 0.0):
        monkeypatch.setattr(K, "NOGIL_SPARSE", knob)
        nw = _newton(A, y, fi)
        assert (nw.kx is not None) == bool(knob)
        m = nw._mv(v)
        _, diag = CG._curvature(nw, m)
        w, dual, share, *_ = nw.solve(np.zeros(len(v)), peers, 0.0, 3, 1e-8)
        out[knob] = (m, nw._rmv(r), diag, w, dual, share)
    for new, old in zip(out[1.0], out[0.0]):
        assert np.array_equal(new, old)


@pytest.mark.parametrize("fi", [False, True])
def test_certificate_parts_equal_with_and_without_the_kernel(fi, monkeypatch):
    A = _csr(300, 12, seed=5)
    y = np.where(np.random.default_rng(6).random(A.shape[0]) < 0.5, -1.0, 1.0)
    w = np.random.default_rng(7).standard_normal(A.shape[1] + int(fi)) * 0.3
    parts = {}
    for knob in (1.0, 0.0):
        monkeypatch.setattr(K, "NOGIL_SPARSE", knob)
        parts[knob] = certificate_parts(K.as_kernel_matrix(A), y, w, K.LOGISTIC, fi)
    assert np.array_equal(parts[1.0].g, parts[0.0].g)
    if fi:  # the unpenalized intercept's second weighting
        assert np.array_equal(parts[1.0].side_g, parts[0.0].side_g)


def _sparse_calls(fn) -> int:
    """Python functions of ``scipy.sparse`` that ``fn()`` called (counted by a profile hook)."""
    calls = [0]

    def hook(frame, event, arg):
        if event == "call" and "scipy/sparse" in frame.f_code.co_filename.replace("\\", "/"):
            calls[0] += 1

    sys.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls[0]


@pytest.mark.parametrize("fi", [False, True])
def test_csr_newton_round_and_answer_run_no_scipy_python(fi, monkeypatch):
    """A Newton-CG solve and a certificate answer on CSR rows: no Python of scipy.sparse.
    Its products' wrappers (a transposed matrix built and its indices checked at each
    ``A.T @ r``) held the GIL that the operators of in-process workers share: ~a third of
    their GIL time on reuters (py-spy)."""
    A = _csr(400, 30, seed=9)
    y = np.where(np.random.default_rng(10).random(A.shape[0]) < 0.5, -1.0, 1.0)
    w0 = np.random.default_rng(11).standard_normal(A.shape[1] + int(fi)) * 0.1
    peers = [(np.full(len(w0), 1e-3), w0, None, 1.0)]
    counts = {}
    for knob in (1.0, 0.0):
        monkeypatch.setattr(K, "NOGIL_SPARSE", knob)
        nw = _newton(A, y, fi)
        Xk = K.as_kernel_matrix(A)
        certificate_parts(Xk, y, w0, K.LOGISTIC, fi)  # compiled before counting
        counts[knob] = _sparse_calls(lambda: (nw.solve(w0, peers, 0.0, 3, 1e-8),
                                              certificate_parts(Xk, y, w0, K.LOGISTIC, fi)))
    assert counts[1.0] == 0
    assert counts[0.0] > 0  # the hook sees scipy's wrappers where they run
