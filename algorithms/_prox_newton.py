"""``prox-newton``: distributed proximal Newton (newGLMNET-style) for l1 (and l2) problems, certified.

The l1 solver of choice on one core is liblinear's newGLMNET: a proximal
Newton step whose l1-regularized quadratic model is solved by coordinate
descent. Distributed by rows, each iteration is three all-reduce rounds over
the channel (`_barrier.Barrier`, every operator computes the same numbers):

A. at the common iterate ``w`` each partition sends its loss sums, its share of
   the gradient (``g_k = sum_i a_i x_i`` with the dual point ``a_i = -phi'(m_i)``),
   its Hessian diagonal and the `_certificate.GapParts` side sums. Summed, they
   give the gradient ``G``, the objective and a certified duality gap for free
   (``gap_from_parts``, l1 via scaling the dual into ``||A^T a / n||_inf <= alpha``):
   the fit stops when ``gap / |P(w)| <= tol``;
B. each partition solves, by coordinate descent (`_cd_kernels.cd_subproblem`,
   O(nnz) per pass, glmnet's active set), the model with the *global* gradient
   and its *local* Hessian ``H_k = X_k^T D_k X_k / n_k`` -- a GIANT/DANE-type
   approximation of the global one that needs no d x d matrix on the wire (so
   it works at any d) -- with each diagonal entry raised to at least the global
   one. The partitions' *forward points* (before the soft-threshold) are
   averaged and thresholded once (`_prox_combined`: a coordinate is nonzero only
   if the average says so), falling back to the plain average of the local
   solutions -- always a descent direction of the l1 objective (the predicted
   decrease ``delta = G^T d + alpha(||w + d||_1 - ||w||_1)`` is convex in ``d``)
   -- when that one is not. Once the *working set* (``w``'s nonzeros and the
   zeros whose ``|G_j|`` nearly reaches the l1 weight) has at most
   ``active_max`` coordinates, round B instead all-reduces the exact Hessian on
   it and every operator takes the same full proximal Newton step there
   (quadratic convergence where the averaged local models are linear); the
   coordinates left out sit at 0 with their optimality condition met;
C. each partition evaluates its loss sum at ``w + t d`` for ``t = 1, 1/2, ...``
   in one pass (margins move along ``X d``); the first ``t`` with the Armijo
   decrease ``F(w + t d) <= F(w) + sigma t delta`` on the all-reduced objective
   is taken by everyone.

Hinge is minimized through its ``mu``-smoothed surrogate (`_cd_kernels`), with
``mu`` lowered as the certified gap shrinks (``mu <= kappa * gap``, down to
``mu_min``, `_hinge_smoothing`); the certificate always measures the true hinge
objective. Its dual point is the better of the surrogate's derivative at ``w``
and the Newton model's own duals (`_model_dual`, computed in round C), and the
largest dual value seen is kept. With local Hessians the l1 weight follows glmnet's
regularization path
(``path * alpha_max`` first, ``path`` times less each time a stage's Newton
decrement is small, down to ``alpha``): far from the optimum the supports stay
small, so the working set is small early (the certificate is always for
``alpha``). The
intercept is a coordinate with no l1 term. A restarted operator joins the
lowest round its peers are at, taking the iterate from their messages (in
round B it contributes a zero direction, which keeps the average a descent one).

References
----------
G.-X. Yuan, C.-H. Ho, C.-J. Lin, "An improved GLMNET for L1-regularized logistic
regression", JMLR 2012. S. Wang et al., "GIANT: Globally improved approximate
Newton method for distributed optimization", NeurIPS 2018.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from . import _cd_kernels as C
from . import _compact as CM
from . import _kernels as K
from . import _model_dual as MD
from ._barrier import Barrier, barrier_step, latest_model
from ._base import Algorithm, LocalData, Problem, Start, StepOutput
from ._certificate import GapParts, certificate_parts, certified, gap_from_parts
from ._hinge_smoothing import curvature_floor, next_mu
from ._primal_cert import side_len

__all__ = ["ALGORITHM", "NewtonState", "init", "local_step"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    "tol": 1e-6,  # stop when the certified relative duality gap is below this
    "max_iter": None,  # Newton iterations
    "inner_tol": 1e-6,  # CD stops when a full pass moves by less than this (relative, H-norm)
    "max_pass": 20,  # CD passes per Newton iteration (local models; reuters: 20 beat 10 and 40)
    "sigma": 0.01,  # Armijo constant
    "damping": 1e-8,  # first damping: lam * mean(diag H) added to the model's Hessian diagonal
    "mu0": 2.0,  # hinge: first smoothing (> 1 puts every row of w = 0 on the curved band)
    "mu_min": 1e-7,  # hinge: smallest smoothing
    "kappa": 0.1,  # hinge: mu <= kappa * gap
    "curv_floor": None,  # hinge: off-band rows' curvature as a fraction of their majorizer's
    # (`_cd_kernels.row_curvature`); None: 1 with local Hessians (averaged local models
    # overshoot the kinks), 0 with the full one (exact Newton; the majorizer slows it)
    "mu_shrink": 0.01,  # hinge: mu shrinks by at most this factor per iteration
    "hessian": "auto",  # "full": all-reduce the p x p Hessian; "local": GIANT-type; auto: by p
    "hessian_max": 512,  # "auto" all-reduces the full Hessian up to this many parameters
    "dense_pass": 5000,  # CD passes on the full model (each O(p^2)); ill-conditioned models
    # (a9a's collinear one-hot columns) need thousands for a direction worth its round
    "max_step": None,  # largest line-search step (default 1 with the full Hessian, else 4)
    "path": None,  # l1: start at path * alpha_max, shrink by path per stage down to alpha
    # (glmnet's regularization path: small supports while far away); 0 starts at alpha;
    # None: 0.03 with local Hessians (wide models), 0 with the full one (it slows those)
    "path_tol": 0.05,  # l1: a stage ends when the Newton decrement <= path_tol * objective
    "active_max": 768,  # l1, local Hessians: once the working set (nonzeros and near-violators
    # of the zero coordinates' optimality) is this small, round B all-reduces its exact
    # Hessian instead of local directions (a full Newton step on the working set)
    "active_margin": 0.9,  # zero coordinates with |G_j| >= active_margin * l1 join it
    "combine": "prox",  # local directions: "prox" thresholds the averaged forward points
    # (coordinates the partitions disagree on can stay zero), "average" averages the solutions
    "resend_after": 0.1,
    "rejoin_wait": 0.5,
    "poll_wait": 0.02,
}

_A, _B, _C = 0, 1, 2  # the three rounds of an iteration (k % 3)
N_TRIALS = 12  # line-search steps max_step * (1, 1/2, ...), evaluated in one pass


class NewtonState(NamedTuple):
    problem: Problem
    params: dict
    barrier: Barrier
    csc: tuple  # the partition's rows column-wise: (data, indices, indptr)
    csr: tuple  # and row-wise (for the full Hessian)
    mem: dict  # k, w, mu, m, a, D, G, Hg, dbar, F, delta, gap, rel_gap, primal, own, ...


def init(problem: Problem, data: LocalData, params: dict) -> NewtonState:
    if params["hessian"] not in ("auto", "full", "local"):
        raise ValueError(f"unknown hessian {params['hessian']!r} for solver 'prox-newton'; "
                         "valid ones are ['auto', 'full', 'local']")
    if not 0.0 < params["sigma"] < 1.0:
        raise ValueError(f"prox-newton needs 0 < sigma < 1, got {params['sigma']!r}")
    X = data.X
    if isinstance(X, tuple):
        mat = sp.csr_matrix(X, shape=(data.n, problem.n_features)).tocsc()
    else:
        mat = sp.csc_matrix(X)
    mat.sort_indices()
    csc = (np.ascontiguousarray(mat.data, dtype=np.float64),
           np.ascontiguousarray(mat.indices, dtype=np.int64),
           np.ascontiguousarray(mat.indptr, dtype=np.int64))
    p, n = problem.p, data.n
    mem = {"k": 0, "it": 0, "w": np.zeros(p), "mu": float(params["mu0"]), "m": np.zeros(n),
           "a": np.zeros(n), "D": np.zeros(n), "G": np.zeros(p), "Hg": np.zeros(p),
           "dbar": np.zeros(p), "F": np.inf, "delta": 0.0, "gap": np.inf, "rel_gap": np.inf,
           "primal": np.inf, "own": None, "prev_own": None, "step": 0.0, "passes": 0,
           "lam": float(params["damping"]), "dual_best": -np.inf, "l1": -1.0,
           "full": params["hessian"] == "full" or (params["hessian"] == "auto"
                                                   and p <= params["hessian_max"]),
           "phase": "run" if data.incarnation == 0 else "rejoin", "started": None}
    mem["floor"] = curvature_floor(params["curv_floor"], mem["full"])
    rows = mat.tocsr()
    csr = (np.ascontiguousarray(rows.data, dtype=np.float64),
           np.ascontiguousarray(rows.indices, dtype=np.int64),
           np.ascontiguousarray(rows.indptr, dtype=np.int64))
    return NewtonState(problem, params, Barrier(data.index, data.n_partitions), csc, csr, mem)


def _phase(mem: dict, k: int) -> int:
    """Round ``k``'s place in its iteration: A, B, C (local Hessian) or A, C (full Hessian)."""
    if mem["full"]:
        return _A if k % 2 == 0 else _C
    return k % 3


def _mu(pb: Problem, mem: dict) -> float:
    return mem["mu"] if pb.loss == K.HINGE else 0.0


# ---------------------------------------------------------------------- contributions
def _round_a(state: NewtonState, data: LocalData) -> dict:
    """Loss sums, gradient share, Hessian diagonal and gap parts at the common iterate."""
    pb, mem = state.problem, state.mem
    w = mem["w"]
    mem["m"] = np.asarray(K.margins_blas(data.X, w, pb.fit_intercept))
    sloss = C.row_curvature(pb.loss, mem["m"], data.y, _mu(pb, mem), mem["a"], mem["D"],
                            mem["floor"])
    parts = certificate_parts(data.X, data.y, w, pb.loss, pb.fit_intercept, dual=mem["a"])
    out = _fields(mem, n=data.n, sloss=float(sloss), loss=parts.loss_sum, conj=parts.conj_sum,
                  g=parts.g, asum=float(mem["a"].sum()))
    if np.isfinite(mem["dual_best"]):  # peers (a restarted one) learn the best dual seen
        out["dbest"] = float(mem["dual_best"])
    if mem["full"]:
        out.update(CM.sym_fields("hess", _local_hessian(state, mem["D"])))  # upper triangle
    else:
        out["hd"] = _hessian_diagonal(state, mem["D"])
    if parts.side is not None:
        out["side"], out["side_g"] = parts.side, parts.side_g
    return out


def _hessian_diagonal(state: NewtonState, D: np.ndarray) -> np.ndarray:
    """The diagonal of ``X~_k^T diag(D) X~_k`` (``X~``: with the intercept's ones)."""
    pb = state.problem
    h = np.zeros(pb.p)
    C.csc_sq_rmatvec(*state.csc, D, h)
    if pb.fit_intercept:
        h[-1] = D.sum()
    return h


def _local_hessian(state: NewtonState, D: np.ndarray) -> np.ndarray:
    """``X~_k^T diag(D) X~_k`` as a dense p x p array (``X~``: with the intercept's ones)."""
    pb = state.problem
    H = np.zeros((pb.p, pb.p))
    C.csr_weighted_gram(*state.csr, D, pb.fit_intercept, H)
    return H


def _fields(mem: dict, **extra) -> dict:
    """A round's contribution: the fields every round carries (the iterate, smoothing,
    damping and l1 weight, what a restarted operator adopts) and the round's own."""
    return {"w": mem["w"].copy(), "mu": mem["mu"], "lam": mem["lam"], "l1": mem["l1"], **extra}


def _damping(pb: Problem, mem: dict, lam: float) -> float:
    """A local model's damping: ``lam`` times the mean global Hessian diagonal."""
    scale = float(mem["Hg"][: pb.n_features].mean()) if pb.n_features else 1.0
    return lam * max(scale, 1e-12)


def _h_base(pb: Problem, mem: dict, lam: float) -> np.ndarray:
    """A local model's Hessian diagonal where its own is at most the global one: the global
    one, damped (`_damping`; the receivers know it, so only the rest travels)."""
    return mem["Hg"] + _damping(pb, mem, lam)


def _round_b(state: NewtonState, data: LocalData) -> dict:
    """This partition's solution of the model (global gradient, local Hessian), or its
    Hessian on the working set; only what the reduction reads, compact (`_compact`)."""
    pb, mem, params = state.problem, state.mem, state.params
    if mem.pop("zero_dir", False):  # rejoined in this round: no local model, no move
        return _fields(mem, **CM.vector_fields("dk", np.zeros(pb.p)))
    S = mem.get("S")
    if S is not None:  # the working set is small: its exact Hessian, no local direction
        return _fields(mem, S=S, GS=mem["G"][S], **CM.sym_fields("hs", _working_hessian(state, S)))
    Dk = mem["D"] / data.n
    hk = _hessian_diagonal(state, Dk)
    base = _h_base(pb, mem, mem["lam"])
    H = np.maximum(hk + _damping(pb, mem, mem["lam"]), base)  # local, at least the global
    extra = H - hk
    l1 = mem["l1"] if pb.penalty == K.L1 else 0.0
    if pb.penalty == K.L2:  # the l2 penalty's Hessian is exact: alpha on every coefficient
        extra[: pb.n_features] += pb.alpha
    q = np.zeros(data.n)
    delta = np.zeros(pb.p)
    mem["passes"] = int(C.cd_subproblem(*state.csc, pb.fit_intercept, Dk, mem["G"], extra,
                                        mem["w"], l1, params["max_pass"], params["inner_tol"],
                                        delta, q))
    out = _fields(mem, **CM.vector_fields("dk", delta))
    if params["combine"] == "prox" and l1 > 0.0:
        u = np.empty(pb.p)
        C.forward_point(*state.csc, pb.fit_intercept, Dk, mem["G"], extra, H, mem["w"], delta,
                        q, u)
        out.update(hu=H * u, **CM.vector_fields("hh", H, base))
    return out


def _round_c(state: NewtonState, data: LocalData) -> dict:
    """The surrogate's loss sum at every line-search trial ``w + t dbar``."""
    pb, mem = state.problem, state.mem
    q = np.zeros(data.n)
    b = mem["dbar"][-1] if pb.fit_intercept else 0.0
    C.csc_matvec(*state.csc, mem["dbar"], b, q)
    ts = np.zeros(N_TRIALS)
    C.trial_losses(pb.loss, mem["m"], q, data.y, _mu(pb, mem), _steps(state), ts)
    dual = MD.model_dual(pb.loss, mem["a"], mem["D"], q, data.y)  # the model's own duals
    return _fields(mem, dbar=mem["dbar"].copy(), ts=ts, F=float(mem["F"]),
                   delta=float(mem["delta"]),
                   **MD.model_dual_fields(data.X, data.y, mem["w"], pb.loss, pb.fit_intercept,
                                          dual))


def _steps(state: NewtonState) -> np.ndarray:
    """The line-search trials, largest first."""
    top = state.params["max_step"]
    top = (1.0 if state.mem["full"] else 4.0) if top is None else float(top)
    return top * 0.5 ** np.arange(N_TRIALS, dtype=np.float64)


def _contribution(state: NewtonState, data: LocalData) -> dict:
    ph = _phase(state.mem, state.mem["k"])
    if ph == _A:
        return _round_a(state, data)
    if ph == _B:
        return _round_b(state, data)
    return _round_c(state, data)


# ---------------------------------------------------------------------- reductions
def _reg(state: NewtonState, w: np.ndarray) -> float:
    """The penalty the Newton steps minimize: l1 at the path's current weight."""
    pb = state.problem
    if pb.penalty == K.L1:
        return state.mem["l1"] * float(np.abs(w[: pb.n_features]).sum())
    return pb.penalty_value(w)


def _path_factor(state: NewtonState) -> float:
    f = state.params["path"]
    if f is None:
        return 0.0 if state.mem["full"] else 0.03
    return float(f)


def _path_start(state: NewtonState, G: np.ndarray) -> None:
    """The l1 path's first weight (in the first round A): ``path * alpha_max`` at ``w``
    (``||G||_inf``, the smallest weight that keeps 0 optimal), at least ``alpha``."""
    pb, mem = state.problem, state.mem
    if pb.penalty == K.L1 and mem["l1"] < 0.0:
        top = float(np.abs(G[: pb.n_features]).max()) if pb.n_features else 0.0
        mem["l1"] = max(pb.alpha, _path_factor(state) * top)


def _path_next(state: NewtonState, F: float, delta: float) -> None:
    """The next stage (``path`` times less l1) once this one's Newton decrement is small
    or its line search stalled.

    Decided in round C from its first contribution's ``F`` and ``delta``, which every
    operator (a rejoined one too) reads the same."""
    pb, mem, params = state.problem, state.mem, state.params
    if pb.penalty == K.L1 and mem["l1"] > pb.alpha and (
            -delta <= params["path_tol"] * abs(F) or mem["step"] == 0.0):
        mem["l1"] = max(pb.alpha, _path_factor(state) * mem["l1"])
        mem["lam"] = min(mem["lam"], float(params["damping"]))  # a new problem: undamped


def _gather_a(state: NewtonState, parts: list) -> bool:
    """Gradient, Hessian diagonal, objective and certificate; True when certified."""
    pb, mem, params = state.problem, state.mem, state.params
    n = pb.n_total
    w = mem["w"]
    g = np.sum([c["g"] for c in parts], axis=0)
    G = np.zeros(pb.p)
    G[: pb.n_features] = -g / n
    if pb.fit_intercept:
        G[-1] = -sum(float(c["asum"]) for c in parts) / n
    if pb.penalty == K.L2:
        G[: pb.n_features] += pb.alpha * w[: pb.n_features]
    mem["G"] = G
    _path_start(state, G)
    mem["F"] = sum(float(c["sloss"]) for c in parts) / n + _reg(state, w)
    gparts = [GapParts(int(c["n"]), float(c["loss"]), float(c["conj"]), np.asarray(c["g"]),
                       None if "side" not in c else np.asarray(c["side"]),
                       None if "side_g" not in c else np.asarray(c["side_g"]),
                       None if "side" not in c else _balance(pb))
              for c in parts]
    primal, dual, _ = gap_from_parts(gparts, w, pb.alpha, pb.penalty)
    mem["dual_best"] = MD.best(mem["dual_best"], dual, *(c.get("dbest") for c in parts))
    mem["primal"], mem["gap"] = primal, max(primal - mem["dual_best"], 0.0)
    mem["rel_gap"] = mem["gap"] / max(abs(primal), 1e-300)
    if mem["full"]:  # every operator solves the same model: no round B
        _full_direction(state, parts)
    else:
        mem["Hg"] = np.sum([c["hd"] for c in parts], axis=0) / n
        mem["S"] = _working_set(state)
    if pb.loss == K.HINGE:  # the next iteration's smoothing follows the certified gap
        mem["mu_next"] = next_mu(mem["mu"], mem["gap"], params)
    return certified(mem["rel_gap"], params["tol"])


def _working_set(state: NewtonState) -> np.ndarray | None:
    """The coordinates a full Newton step over the working set moves (None: too many).

    The nonzeros of ``w`` and the zero coordinates whose optimality ``|G_j| <= l1`` is
    nearly violated (``active_margin``), the intercept last; every other coordinate
    stays at 0, where its optimality condition holds with room to spare.
    """
    pb, mem, params = state.problem, state.mem, state.params
    if pb.penalty != K.L1 or not params["active_max"]:
        return None
    d = pb.n_features
    w, G = mem["w"], mem["G"]
    S = np.flatnonzero((w[:d] != 0.0) | (np.abs(G[:d]) >= params["active_margin"] * mem["l1"]))
    if pb.fit_intercept:
        S = np.append(S, d)
    return S.astype(np.int64) if S.size <= params["active_max"] else None


def _working_hessian(state: NewtonState, S: np.ndarray) -> np.ndarray:
    """This partition's ``X~_S^T diag(D) X~_S`` (unscaled) over the working set ``S``."""
    pb, mem = state.problem, state.mem
    H = np.zeros((S.size, S.size))
    C.csr_weighted_gram(*_working_rows(state, S), mem["D"], pb.fit_intercept, H)
    return H


def _working_rows(state: NewtonState, S: np.ndarray) -> tuple:
    """This partition's rows on the working set's columns (CSR, `csr_weighted_gram`'s
    dtypes), sliced once per working set: it changes rarely, its Hessian is taken every
    iteration (reuters log_loss-l1: 14 sets in 182 Hessians)."""
    cached = state.mem.get("ws_rows")
    if cached is not None and np.array_equal(cached[0], S):
        return cached[1]
    pb = state.problem
    cols = S[S < pb.n_features]
    data, indices, indptr = state.csc
    Xs = sp.csc_matrix((data, indices, indptr),
                       shape=(state.mem["D"].shape[0], pb.n_features))[:, cols].tocsr()
    rows = (np.ascontiguousarray(Xs.data, dtype=np.float64),
            np.ascontiguousarray(Xs.indices, dtype=np.int64),
            np.ascontiguousarray(Xs.indptr, dtype=np.int64))
    state.mem["ws_rows"] = (S.copy(), rows)
    return rows


def _working_direction(state: NewtonState, parts: list) -> np.ndarray | None:
    """The proximal Newton direction over the working set, by CD on its all-reduced Hessian."""
    pb, mem, params = state.problem, state.mem, state.params
    have = [c for c in parts if "S" in c]
    if not have:
        return None
    S, GS = np.asarray(have[0]["S"], dtype=np.int64), np.asarray(have[0]["GS"])
    H = CM.sym_of(np.sum([CM.packed_of(c, "hs", S.size) for c in have], axis=0), S.size)
    H /= pb.n_total
    scale = float(np.mean(np.diag(H))) if S.size else 1.0
    n_coef = int(np.count_nonzero(S < pb.n_features))
    dS = np.zeros(S.size)
    mem["passes"] = int(C.cd_dense(H, GS, mem["w"][S], n_coef, mem["l1"],
                                   mem["lam"] * max(scale, 1e-12),
                                   min(params["dense_pass"], 10 * params["max_pass"]), 1e-10,
                                   dS))
    d = np.zeros(pb.p)
    d[S] = dS
    return d


def _full_direction(state: NewtonState, parts: list) -> None:
    """The proximal Newton direction of the global model, by CD on the all-reduced Hessian."""
    pb, mem, params = state.problem, state.mem, state.params
    H = CM.sym_of(np.sum([CM.packed_of(c, "hess", pb.p) for c in parts], axis=0), pb.p)
    H /= pb.n_total
    l1 = mem["l1"] if pb.penalty == K.L1 else 0.0
    if pb.penalty == K.L2:
        H[np.arange(pb.n_features), np.arange(pb.n_features)] += pb.alpha
    scale = float(np.mean(np.diag(H))) if pb.p else 1.0
    d = np.zeros(pb.p)
    mem["passes"] = int(C.cd_dense(H, mem["G"], mem["w"], pb.n_features, l1,
                                   mem["lam"] * max(scale, 1e-12), params["dense_pass"],
                                   1e-14, d))
    _set_direction(state, d)


def _gather_b(state: NewtonState, parts: list) -> None:
    """The averaged direction and its predicted decrease."""
    pb, mem = state.problem, state.mem
    d = _working_direction(state, parts)
    if d is not None:
        _set_direction(state, d)
        return
    d = np.zeros(pb.p)
    for j, c in enumerate(parts):
        dk = CM.vector_of(c, "dk", pb.p)
        if dk is not None:
            d += (pb.sizes[j] / pb.n_total) * dk
    if all("hu" in c for c in parts):
        forward = [{"hu": c["hu"], "hh": CM.vector_of(c, "hh", pb.p, _h_base(pb, mem, c["lam"]))}
                   for c in parts]
        z = _prox_combined(pb, forward, mem["l1"])
        _set_direction(state, z - mem["w"])
        if mem["delta"] < 0.0:
            return
    _set_direction(state, d)


def _prox_combined(pb: Problem, parts: list, l1: float) -> np.ndarray:
    """The minimizer of the partitions' separable models ``sum_k n_k/n H_k/2 (z - u_k)^2 + l1 |z|``.

    The soft-threshold of the ``H``-weighted average forward point: a coordinate is
    nonzero only if the average says so, not if any one partition does.
    """
    num, den = np.zeros(pb.p), np.zeros(pb.p)
    for j, c in enumerate(parts):
        f = pb.sizes[j] / pb.n_total
        num += f * np.asarray(c["hu"])
        den += f * np.asarray(c["hh"])
    safe = np.where(den > 0.0, den, 1.0)
    u = num / safe
    z = u.copy()
    k = pb.n_features
    thr = l1 / safe[:k]
    z[:k] = np.sign(u[:k]) * np.maximum(np.abs(u[:k]) - thr, 0.0)
    return z


def _set_direction(state: NewtonState, d: np.ndarray) -> None:
    """The round's direction and its predicted decrease ``delta``."""
    pb, mem = state.problem, state.mem
    mem["dbar"] = d
    w = mem["w"]
    mem["delta"] = float(mem["G"] @ d)  # for l2, G holds the penalty's gradient already
    if pb.penalty == K.L1:
        mem["delta"] += _reg(state, w + d) - _reg(state, w)


def _balance(pb: Problem) -> str | None:
    """How `_certificate` makes the duals meet the intercept's constraint (None: no intercept)."""
    if not pb.fit_intercept:
        return None
    return "mean" if pb.loss == K.SQUARED else "classes"


def _gather_c(state: NewtonState, parts: list, ref: dict) -> None:
    """The first trial step with the Armijo decrease; the iterate moves there."""
    pb, mem, params = state.problem, state.mem, state.params
    ts = np.sum([np.asarray(c["ts"]) for c in parts], axis=0) / pb.n_total
    F, delta, d = float(ref["F"]), float(ref["delta"]), np.asarray(ref["dbar"])
    w = mem["w"]
    step, best = 0.0, np.inf
    for t, loss in zip(_steps(state), ts):  # the lowest trial with the Armijo decrease
        Ft = loss + _reg(state, w + t * d)
        if Ft <= F + params["sigma"] * t * delta and Ft < best:
            step, best = float(t), Ft
    mem["step"] = step
    mem["dual_best"] = MD.best(mem["dual_best"], MD.model_dual_value(
        parts, w, pb.alpha, pb.penalty, _balance(pb)))
    if step > 0.0:
        mem["w"] = w + step * d
    # Levenberg-Marquardt-style damping of this operator's own model (it need not match its
    # peers': any average of the local solutions is a descent direction)
    if step >= 1.0:
        mem["lam"] = max(mem["lam"] * 0.1, 1e-12)
    elif step < 0.25:
        mem["lam"] = min(mem["lam"] * (10.0 if step > 0.0 else 1000.0), 1e12)
    mem["mu"] = mem.pop("mu_next", mem["mu"])
    _path_next(state, F, delta)
    mem["it"] += 1


# ---------------------------------------------------------------------- the step
def _adopt(state: NewtonState, data: LocalData, k: int, fields: dict) -> None:
    """A restarted operator joins its peers' lowest round ``k`` with the iterate they sent."""
    mem = state.mem
    ph = _phase(mem, k)
    mem["k"], mem["it"] = k, k // (2 if mem["full"] else 3)
    mem["w"], mem["mu"] = np.array(fields["w"], dtype=np.float64), float(fields["mu"])
    mem["lam"] = float(fields.get("lam", mem["lam"]))
    mem["l1"] = float(fields.get("l1", mem["l1"]))
    if ph == _C:  # the trial losses need the margins at w
        mem["m"] = np.asarray(K.margins_blas(data.X, mem["w"], state.problem.fit_intercept))
        mem["dbar"] = np.array(fields["dbar"], dtype=np.float64)
        mem["F"], mem["delta"] = float(fields["F"]), float(fields["delta"])
    if ph == _B:  # no local model without round A's sums: a zero direction
        mem["zero_dir"] = True


def local_step(state: NewtonState, data: LocalData, inbox, now: float) -> StepOutput:
    """Wait for this round's contributions; when all are in, reduce and push the next round's."""
    return barrier_step(state, data, inbox, now, contribute=_contribution, reduce=_reduce,
                        adopt=_adopt)


def _reduce(state: NewtonState, data: LocalData, parts: list, k: int) -> bool:
    """Round ``k``'s reduction (A: gradient and certificate, B: direction, C: step); True stops."""
    mem, params = state.mem, state.params
    ph = _phase(mem, k)
    done = False
    # the barrier resends this contribution as the previous round's in the next message,
    # where only a late peer's reduction reads it: the iterate (for a restarted operator
    # to adopt, which reads current ones only) stays behind
    mem["own"] = {key: v for key, v in mem["own"].items() if key != "w"}
    if ph == _A:
        done = _gather_a(state, parts)
    elif ph == _B:
        _gather_b(state, parts)
    else:
        _gather_c(state, parts, parts[0])
        if params["max_iter"] is not None and mem["it"] >= params["max_iter"]:
            done = True
        elif mem["step"] == 0.0 and mem["lam"] >= 1e12:  # no decrease even fully damped
            # (a stall in an l1 path stage moved on to the next one instead, undamped)
            logger.info("prox-newton: line search found no decrease at iteration %d (rel gap "
                        "%.3g); stopping", mem["it"], mem["rel_gap"])
            done = True
    return done


# ---------------------------------------------------------------------- the rest
def schema(problem: Problem) -> tuple[dict, dict]:
    """Barrier messages whose fields depend on the round (the iterate and round always there)."""
    p, d = problem.p, problem.n_features
    fields = {"w": ("float64", (p,)), "mu": float, "n": int, "sloss": float, "loss": float,
              "conj": float, "g": ("float64", (d,)), "asum": float, "hd": ("float64", (p,)),
              "side": ("float64", (side_len(problem),)), "side_g": ("float64", (d,)),
              "hu": ("float64", (p,)), **CM.schema_fields("dk", p), **CM.schema_fields("hh", p),
              "S": ("int64", (None,)), "GS": ("float64", (None,)), **CM.schema_fields("hs", None),
              "lam": float, "l1": float, **CM.schema_fields("hess", p * (p + 1) // 2), "dbar": ("float64", (p,)),
              "ts": ("float64", (N_TRIALS,)),
              "F": float, "delta": float, "dbest": float, **MD.schema_fields(problem)}
    always = ("w", "mu", "lam", "l1")  # every round's contribution carries these
    required = {"k": int, "has_prev": bool, **{f"c_{key}": fields[key] for key in always}}
    optional = {f"{pre}_{key}": v for key, v in fields.items() for pre in ("c", "p")
                if f"{pre}_{key}" not in required}
    return required, optional


def resume(state: NewtonState, data: LocalData, start: Start) -> NewtonState:
    """Start the iteration at the saved model."""
    state.mem["w"] = np.array(start.w, dtype=np.float64)
    return state


def snapshot(state: NewtonState) -> dict:
    """The current iterate (the certified one once the fit stopped on ``tol``) and its gap."""
    mem = state.mem
    return {"w": mem["w"].copy(), "k": int(mem["k"]), "n_iter": int(mem["it"]),
            "gap": float(mem["gap"]), "rel_gap": float(mem["rel_gap"]),
            "primal": float(mem["primal"]), "step": float(mem["step"]),
            "passes": int(mem["passes"])}


ALGORITHM = Algorithm("prox-newton", init, local_step, snapshot, latest_model, DEFAULTS,
                      deterministic=True, uses_tol=True, schema=schema, resume=resume)
