"""ASIP-CoCoA: asynchronous CoCoA+ (SDCA on each partition's duals) with a certified stop.

Each operator owns the duals ``a_i`` of its rows; the model is
``w = sum_k u_k``, ``u_k = (1/(alpha n)) sum_{i in P_k} a_i x_i``. A step runs a time
slice of SDCA coordinate steps (`_sdca_kernels.cocoa_steps`) on the CoCoA+ local
subproblem against the operator's view ``w = u_own + sum_j u_j`` (own changes
counted ``sigma`` times, ``sigma = K`` partitions: the safe "adding" aggregation of
Ma et al. 2015), then pushes its *cumulative* ``u_k`` with a sequence number. A
receiver replaces the sender's last total, so a lost or reordered message costs
nothing and no delta is applied twice. There is no barrier. A step is at most one
pass (``step_time`` s, default 1 ms; hinge `HINGE_STEP_TIME`): short rounds keep the views
fresh. An
operator that has run ``max_ahead`` passes without news from any peer waits for
one (re-pushing its total): further steps against the same stale totals are
block-cyclic ascent, which zig-zags (measured under load, 3,000 x 20
least squares split 7:3: 13.7 s to a 1e-6 gap without the limit, 1.2 s with it). Bounded
staleness (SDCA): every push carries the sender's passes, and an operator more than
``max_lead`` passes past the peers holding half the other rows waits too (`_lead`): the
safety of ``sigma = K`` adding assumes each subproblem is solved against a model a bounded
number of updates old; a straggler holding less than half the rows stalls nobody.
Hinge (``sigma=None``, SDCA not damped): the aggregation adapts to the updates (`_adaptive_sigma`: the
overlap of the own and the peers' latest changes, within [1, K]; 1.6-3x fewer exchanges to
a certified 1e-6 in one process, K = 2-16). Hinge (``shrinking``, default on): the slices
skip rows whose dual is stuck at a bound
(`_sdca_kernels.hinge_steps_shrinking`, liblinear's shrinking; every row comes back
within a few passes); the duals are those of the steps taken, so the certificate is
unchanged.

Certified stop (`_cert_round`). Partition 0 leads: every ``cert_period`` s (SDCA: sooner
where its certificate pass is cheap, `CERT_BALANCE`; Newton: every own round,
`NEWTON_CERT_ROUNDS`; no more often than four times its own certificate pass)
it announces its view as ``wbar`` with a version; every operator answers with its loss sum at exactly that ``wbar`` and
its conjugate sum ``c_k = sum phi_i*(-a_i)`` together with the ``u_k`` of the same
duals. With all answers in, the leader has ``P(wbar)`` and a dual value
``D = -(1/n) sum c_k - (alpha/2) ||sum u_k||^2`` (`_certificate`): ``P(wbar) - D``
bounds ``P(wbar) - P*`` whatever the asynchrony did. With the Newton local solver an
answer pairs ``wbar`` with the duals ``a_i = -phi'(x_i^T wbar)`` it gives for free (and
carries their ``g_k``): the gap then measures ``wbar`` alone, and goes to 0 with it,
however far the iterates are apart. The stage stops when
``(P - D) / |P| <= tol`` and the model is the certified ``wbar``.

Local solvers (``local_solver``). ``"sdca"``: the slices above. ``"newton"`` (smooth
losses, `_cocoa_newton`): a primal method on the same channel -- each round an operator
takes Newton steps on a model of the whole objective, exact on its rows and quadratic on
every peer's around the peer's pushed point ``x_k``, gradient ``-alpha u_k`` and
Hessian; it pushes its new ``u_k = (1/(alpha n)) A_k^T a_k`` with ``a_i = -phi'(x_i^T
x_k)`` (its duals, so the certificate is unchanged), ``x_k`` and, when it moved by 10%
(or every 10 rounds), its Hessian's upper triangle. A round waits for news from every
peer heard from lately (lockstep among the active peers: a silent straggler drops out of the
wait and rejoins it when it speaks; with a fraction ``min_news``, from peers holding that
share of the other rows), or, overdue, from any; peers not heard from are modelled by
rescaling the rows heard from (``missing_peers``). Rounds contract like
Newton's, whatever ``max ||x_i||^2 / (alpha n)`` is (which sets SDCA's rate).
``"newton-cg"`` (smooth losses, `_newton_cg`): the same rounds with no Hessian anywhere --
every peer's curvature stood in by the own, each Newton iteration by conjugate gradients
on Hessian-vector products over the own rows, damped by a proximal term grown from the
stand-in's observed error; ``x_k`` and the certificate's ``g`` go sparse where sparse.
``"auto"`` (default) picks Newton for smooth losses with at most 500 coefficients, dense
or CSR of any density, newton-cg for wider CSR (hinge: `choose_local_solver`); the
estimator decides once from the whole ``X`` (`resolve_local_solver`).
The model is then the iterates, not ``sum u_k``.

Restart: a restarted operator starts from zero duals for its rows; its first push
replaces its old total at the peers (the duals stay feasible, so the gap stays
valid), and it waits up to ``rejoin_wait`` for every peer's total before stepping. A
restarted Newton partition takes the mean of the peers' pushed points as its iterate as
soon as one arrives (`_seed`); until then its snapshot has no iterate (``combine``
averages the peers').

Traffic: totals and the leader's ``wbar`` travel through the sparse exchange
(`_sparse_exchange`): the entries that changed since the previous push, numbered;
a receiver that missed one asks for a full in its next push (an answer that came
with a delta it could not apply is dropped, and the leader re-asks as for a lost
answer). On CSR data a push costs the nonzeros a slice touched, not ``d``. Newton: a
peer out of sync stays in the model at its last consistent total and point (stale, as a
silent one), and a resync full carries its sender's point.

Scope: penalty l2. The intercept (``fit_intercept``): with the Newton local solver it is
unpenalized, scikit-learn's and `Objective`'s problem (each answer then also carries the
per-class sums with which `gap_from_parts` makes the duals satisfy ``sum a_i = 0``); with
SDCA it is a constant feature penalized like the others (liblinear's convention: SDCA's
coordinate steps cannot keep ``sum a_i = 0``), and the objective and certificate include
``(alpha/2) b^2``.

References
----------
C. Ma, V. Smith, M. Jaggi, M. Jordan, P. Richtarik, M. Takac, "Adding vs. averaging in
distributed primal-dual optimization", ICML 2015. S. Shalev-Shwartz, T. Zhang,
"Stochastic dual coordinate ascent methods", JMLR 2013.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import NamedTuple

import numpy as np
from scipy.linalg.blas import dspmv

from . import _cert_round as R
from . import _kernels as K
from ._base import AdaptiveCount, Algorithm, LocalData, Outgoing, Problem, StepOutput
from ._certificate import GapParts, certificate_parts, certified_model, snapshot_fields
from ._compact import packed_of, sym_fields, sym_of, vector_fields, vector_of
from ._compact import schema_fields as compact_fields
from ._hinge_smoothing import curvature_floor, next_mu, smooth_enough, smoothing_bias
from ._cocoa_newton import MAX_SDCA_DAMPING, LocalNewton, choose_local_solver, sdca_damping
from ._primal_cert import side_len
from ._sdca_kernels import (BLOCK_ROWS, cocoa_steps, hinge_steps_blocks, hinge_steps_shrinking,
                            new_shrink_state, shuffled_rows)
from ._sparse_exchange import Exchange, schema_fields

__all__ = ["ALGORITHM", "CocoaState", "combine", "init", "local_step", "resolve_local_solver",
           "snapshot"]

logger = logging.getLogger(__name__)

LEADER = 0
#: a Newton partition re-pushes its Hessian when it moved by this much since the last push
HESSIAN_RTOL = 0.1
#: ... and every this many rounds anyway (a peer that restarted or lost the message)
HESSIAN_EVERY = 10
#: seconds between re-pushes of an operator waiting on `_lead` (its total has not moved)
LEAD_REPUSH = 0.05
#: Newton, ``min_news=None``: a peer silent for this many of the own rounds' wall time (at
#: least `ACTIVE_MIN` s) is not waited for, until it speaks again; twice a waiting peer's
#: re-push period (max(`LEAD_REPUSH`, 2 rounds)), so a live peer is heard twice a window
ACTIVE_ROUNDS = 4.0
ACTIVE_MIN = 0.1
#: Newton: with no peer's total moved, a round anyway after this many active windows
#: (`_newton_due`; at a fixed point it costs a round every 0.4 s at least)
QUIET_WINDOWS = 4.0
#: SDCA's slice on hinge (``step_time=None``): hinge-l2's time to 1e-6 is set by the
#: exchanges, not the passes (synchronous CoCoA+ in one process, 2 partitions: a9a needs
#: 50-72 exchanges for slices of 0.1-0.8 of a pass, synthetic-logistic:20000 86-99 for
#: 0.33 of a pass, each exchange costing the runtime ~0.4 ms); 0.5 ms slices against 1 ms,
#: 10 fits each (2026-11-30 11:01-11:02 UTC, load 2.8-5.7), median time to 1e-6: a9a
#: 0.33 s vs never in 0.4 s for half the fits, synthetic 0.22 vs 0.30 s, ijcnn1 0.12 vs 0.12 s
HINGE_STEP_TIME = 0.0005
#: ... and on the other losses
STEP_TIME = 0.001
#: SDCA on hinge with shrinking: the operator keeps a copy of its rows in one random order
#: and a pass reads it in blocks of consecutive rows (`_sdca_kernels.hinge_steps_blocks`),
#: where a fresh random row order each pass read rows cold (0: that, main's before 2026-12-01)
HINGE_LAYOUT = 1.0
#: ... where the copy is at most this many bytes
LAYOUT_MAX_BYTES = 1 << 30
#: SDCA's certificate rounds early in a run: at stage time ``t`` one every ``CERT_RAMP * t``
#: s at least (and 4x the leader's own certificate pass), up to ``cert_period``. SDCA's model
#: is the best wbar a round evaluated, so a short fit is decided by its first rounds: a
#: fixed 20 ms held reuters hinge-l2 at P(0) until its second round (1e-6) at +30 ms
CERT_RAMP = 0.25
#: ... and at most this many of `_cert_round.balanced_period` (``sqrt(2 c t)``, ``c`` the
#: leader's certificate pass): where a pass is cheap, rounds far more often than
#: ``cert_period``, so the reported model trails the operators' by less (inf: the ramp and
#: ``cert_period`` alone, main's schedule before 2026-12-01)
CERT_BALANCE = 1.0

#: Newton: certificate rounds at most this many of the leader's Newton rounds' wall time
#: apart (and ``cert_period``). Hinge: ``mu`` falls only when the leader closes a
#: certificate (`_hinge_smoothing.next_mu`), so at 20 ms apart the smoothing, not Newton, set
#: the pace (lock-step, 2 partitions, hinge-l2: exchanges to a certified 1e-6 a9a 63 -> 18,
#: ijcnn1 63 -> 14; Newton rounds 59 -> 9 and 7; `benchmarks/hinge_rounds.py`). Smooth
#: losses: Newton converges in a few rounds of a few ms, and 20 ms apart the certified stop
#: trailed it by periods (lock-step, reuters log_loss-l2 alpha 0.1, newton-cg, 2 and 4
#: partitions, `hinge_rounds.py --loss log_loss`: 1e-6 at exchange 3, certified at 22 with
#: 1 ms rounds, 7 with 4 ms; now 1e-6 at 2-3 and certified at 3 either way)
NEWTON_CERT_ROUNDS = 1.0
#: Newton: a due round runs before a certificate answer or close that is owed (they go out
#: with its push); else the certificate work took a step of its own and the round waited
#: a step behind it
NEWTON_ROUND_FIRST = 1.0
#: Newton: `newton_iterations` counts the own Hessian's Gram in a round's cost (0: the peers'
#: models alone, as before 2026-12-01; `benchmarks/newton_ab.py --knob NEWTON_ITER_HESSIAN`)
NEWTON_ITER_HESSIAN = 1.0
#: Newton, smooth losses: the leader's own certificate parts at ``wbar`` (its view, a round's
#: end point when it opened the certificate round) from that round's margins, duals and
#: gradient, kept at the opening (`LocalNewton.end_point`), not two data passes at the close
#: (a round later in lock-step); 0: the passes, as before
NEWTON_CERT_REUSE = 1.0
#: Newton, smooth losses: the leader closes a complete certificate round before a due round
#: (`_close_first`), so a certified ``wbar`` stops the fit without a round's wait; the round
#: then runs and the next certificate round opens at its model, as before (0: after it)
NEWTON_CLOSE_FIRST = 1.0

DEFAULTS = {
    "sigma": None,  # CoCoA+ aggregation: a number, "adaptive" (`_adaptive_sigma`) or None:
    # "adaptive" for hinge where SDCA is not damped (`_adapts`), else the number of
    # partitions (safe adding)
    "step_time": None,  # seconds of SDCA steps per local step (one push each); None:
    # `HINGE_STEP_TIME` for hinge, `STEP_TIME` otherwise
    "cert_period": 0.02,  # seconds between the leader's certificate rounds, at least; and
    # at least 4x the leader's own certificate pass (their cost stays under ~20%)
    "tol": 1e-6,  # stop when the relative duality gap is below this
    "max_iter": None,  # passes over a partition's rows
    "max_ahead": 0.25,  # passes an operator runs on without news from any peer, then it waits
    "max_lead": 1.0,  # SDCA: passes an operator may run past the peers holding half the rows
    "rejoin_wait": 0.3,
    "seed": None,
    "shrinking": True,  # SDCA on hinge: skip rows stuck at a bound (`hinge_steps_shrinking`)
    "local_solver": "auto",  # "sdca", "newton", "newton-cg" (smooth losses) or "auto"
    # (`choose_local_solver`)
    "newton_iter": None,  # Newton iterations per round, at most (one data pass each); None:
    # `newton_iterations` (2, or 4 where a data pass costs less than the Hessians)
    "newton_rtol": 1e-4,  # ...fewer once the Newton decrement fell by this factor
    "hessian_rows": None,  # rows sampled for a Hessian, at most; None: max(2000, 4 p) (dense),
    # and every row at a round's end on smooth partitions whose Gram is at most 1e8 products
    # (dense rows x p^2, CSR the squared row nonzeros: `_cocoa_newton.FULL_GRAM`)
    "min_news": None,  # Newton: a round once every active peer moved (None: lockstep among
    # the peers heard from within `ACTIVE_ROUNDS` rounds, `_newton_due`), or a fraction: once
    # peers with this share of the other rows moved
    "missing_peers": "rescale",  # Newton: peers not heard from are modelled by the rows heard
    # from ("rescale": one fixed point for all) or by each partition itself ("self")
    "mu0": 1.0,  # Newton on hinge: first smoothing width (`_losses.smoothed`)
    "mu_min": 1e-9,  # ... smallest smoothing, and at least tol |P| / 4 (tol = 0: 1e-6): the
    # gap at the surrogate's optimum is below mu / 4 (Newton at a smaller mu is slower)
    "kappa": 0.1,  # ... mu <= kappa * certified gap (`_hinge_smoothing.next_mu`)
    "mu_shrink": 0.1,  # ... mu shrinks by at most this factor per certificate round
    "curv_floor": 0.3,  # ... off-band rows' share of their majorizer's curvature
    # (`curvature_floor`): with 0 a peer's model is linear off the band and a round can run
    # off along it (diverged on label-sorted partitions); 1 (prox-newton's) damps every
    # round: 2 partitions in process, rounds to a certified 1e-6 with 1 / 0.3: skin_nonskin
    # 82 / 34, ijcnn1 19 / 7
}


class CocoaState(NamedTuple):
    """One operator's duals, its share of the model and its view of the whole."""

    dual: np.ndarray  # a_i of the own rows
    order: np.ndarray  # int64 pass order
    cursor: np.ndarray  # int64[2]: position in the pass, rows active (not shrunk)
    rng: np.ndarray
    u: np.ndarray  # own share (1/(alpha n)) A_k^T a
    w: np.ndarray  # working view (own changes scaled by sigma during a step)
    peers: Exchange  # own total out as sparse deltas, peers' totals u_j in
    problem: Problem
    params: dict
    sigma: float
    scale: float  # 1 / (alpha n)
    chunk: AdaptiveCount
    clock: dict  # "steps", "started", "rejoining", answers owed: "answer" (the exchange numbers pushes)
    cert: dict  # the leader's certificate state (see `_certify`)
    newton: LocalNewton | None = None  # the local solver when it is Newton, else SDCA
    shrink: np.ndarray | None = None  # SDCA on hinge with shrinking: `hinge_steps_shrinking`'s
    rows: tuple | None = None  # (X, y, sqn) in one random order and the block order:
    # `HINGE_LAYOUT` (the duals then follow these rows)


def validate(problem: Problem, params: dict) -> None:
    """Raise ValueError for what asip-cocoa cannot solve (checked on the driver, before launch)."""
    if problem.penalty != K.L2:
        raise ValueError("solver 'asip-cocoa' supports penalty='l2' only (its dual needs a "
                         "strongly convex penalty); for l1 use 'saga', 'gd' or 'asip-admm'")
    if not problem.alpha > 0:
        raise ValueError(f"solver 'asip-cocoa' needs alpha > 0, got {problem.alpha}")
    if params["sigma"] is not None and params["sigma"] != "adaptive" and not (
            isinstance(params["sigma"], (int, float)) and not isinstance(params["sigma"], bool)
            and params["sigma"] > 0):
        raise ValueError(f"sigma must be positive, 'adaptive' or None (adaptive for hinge, the "
                         f"number of partitions otherwise), got {params['sigma']!r}")
    choose_local_solver(params["local_solver"], problem.loss, problem.p, None)
    st = params["step_time"]
    if st is not None and (isinstance(st, bool) or not isinstance(st, (int, float))
                           or not st > 0):
        raise ValueError(f"step_time must be None or a positive number of seconds, got {st!r}")
    if not isinstance(params["shrinking"], (bool, np.bool_)):
        raise ValueError(f"shrinking must be True or False, got {params['shrinking']!r}")
    lead = params["max_lead"]
    if isinstance(lead, bool) or not isinstance(lead, (int, float)) or not lead > 0:
        raise ValueError(f"max_lead must be a positive number of passes (inf: no bound), got "
                         f"{lead!r}")
    news = params["min_news"]
    if news is not None and (isinstance(news, bool) or not isinstance(news, (int, float))
                             or not 0 <= news <= 1):
        raise ValueError(f"min_news must be None (every active peer) or a fraction of the "
                         f"other rows in [0, 1], got {news!r}")
    if params["missing_peers"] not in ("rescale", "self"):
        raise ValueError(f"missing_peers must be 'rescale' or 'self', got "
                         f"{params['missing_peers']!r}")
    for key in ("mu0", "mu_min", "kappa", "mu_shrink"):
        val = params[key]
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not val > 0 \
                or key == "mu_shrink" and not val <= 1:
            raise ValueError(f"{key} must be a positive number{' <= 1' * (key == 'mu_shrink')}, "
                             f"got {val!r}")
    curvature_floor(params["curv_floor"], False)
    for key in ("newton_iter", "hessian_rows"):
        if params[key] is None:
            continue
        if not (isinstance(params[key], (int, np.integer)) and params[key] >= 1):
            raise ValueError(f"{key} must be a positive integer, got {params[key]!r}")


def _damping(problem: Problem, params: dict) -> float:
    """SDCA's damping on this problem (`sdca_damping`; sigma' as `init` sets it)."""
    sigma = params.get("sigma")
    sigma = problem.n_partitions if sigma in (None, "adaptive") else sigma
    return sdca_damping(sigma, problem.row_scale, problem.alpha, problem.n_total)


def resolve_local_solver(params: dict, problem: Problem, X, sparse: bool) -> dict:
    """``params`` with ``local_solver="auto"`` replaced by the choice for the whole ``X`` (on
    the driver, so that every partition runs the same one; `choose_local_solver`). A sparse
    dask array, whose density is not known without a pass, counts as below
    `MIN_NEWTON_DENSITY` (which only hinge's choice reads)."""
    if params.get("local_solver") != "auto":
        return params
    import scipy.sparse as sp

    kernel = None  # dense
    if sparse and sp.issparse(X):
        X = sp.csr_matrix(X)
        kernel = (X.data, X.indices, X.indptr)
    elif sparse:  # density unknown: as if below MIN_NEWTON_DENSITY
        kernel = (np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(2, dtype=np.int64))
    choice = choose_local_solver("auto", problem.loss, problem.p, kernel,
                                 _damping(problem, params))
    return {**params, "local_solver": choice}


def _step_time(problem: Problem, params: dict) -> float:
    """An SDCA slice's seconds: ``step_time``, or for None `HINGE_STEP_TIME` on hinge (its
    time to a tight gap is set by the exchanges) and `STEP_TIME` otherwise."""
    if params["step_time"] is not None:
        return float(params["step_time"])
    return HINGE_STEP_TIME if problem.loss == K.HINGE else STEP_TIME


def init(problem: Problem, data: LocalData, params: dict) -> CocoaState:
    """Zero duals (so ``u = 0``), a fresh pass order."""
    validate(problem, params)
    p = problem.p
    sigma = params["sigma"]
    sigma = float(problem.n_partitions if sigma in (None, "adaptive") else sigma)
    seed = params["seed"]
    seed = None if seed is None else seed * 1_000_003 + data.index * 7919 + data.incarnation
    newton = None
    choice = choose_local_solver(params["local_solver"], problem.loss, p, data.X,
                                 _damping(problem, params))
    if choice in ("newton", "newton-cg"):
        newton = LocalNewton.for_partition(problem, _aligned(data.X), data.y, params, seed,
                                           hessian_free=choice == "newton-cg")
    shrink = (new_shrink_state() if newton is None and problem.loss == K.HINGE
              and params["shrinking"] else None)
    return CocoaState(
        dual=np.zeros(data.n), order=np.arange(data.n, dtype=np.int64),
        cursor=np.array([0, data.n, 0], dtype=np.int64), rng=K.make_rng(seed), u=np.zeros(p), w=np.zeros(p),
        peers=Exchange("u", p, data.index, keep_total=True), problem=problem, params=params, sigma=sigma,
        scale=1.0 / (problem.alpha * problem.n_total),
        chunk=AdaptiveCount(_step_time(problem, params)),
        clock={"steps": 0, "started": None, "answer": None, "answered": None,
               "ahead": 0, "news": set(), "hess": {}, "points": {}, "peer_passes": {},
               "half_passes": None, "adapts": _adapts(problem, params),  # fixed for the fit
               "rejoining": data.incarnation > 0 and data.n_partitions > 1,
               # a restarted Newton partition's zero iterate is no model yet (`_seed`)
               "bare": newton is not None and data.incarnation > 0 and data.n_partitions > 1},
        cert=R.new_book(x=Exchange("wbar", p, data.index), bias={}),
        newton=newton,
        shrink=shrink,
        rows=_shuffled(data, seed) if shrink is not None and HINGE_LAYOUT
        and _nbytes(data.X) <= LAYOUT_MAX_BYTES else None,
    )


def _shuffled(data: LocalData, seed) -> tuple:
    """`HINGE_LAYOUT`'s rows ``(X, y, sqn)`` in one random order, and the blocks' order."""
    blocks = np.arange(-(-data.n // BLOCK_ROWS), dtype=np.int64)
    return (*shuffled_rows(data.X, data.y, data.sqn, seed), blocks)


def _nbytes(X) -> int:
    """A kernel matrix's bytes."""
    return sum(a.nbytes for a in X) if isinstance(X, tuple) else X.nbytes


def _rows(state: CocoaState, data: LocalData) -> tuple:
    """The rows SDCA steps on and its duals follow: the shuffled copy, else the partition's."""
    return state.rows[:3] if state.rows is not None else (data.X, data.y, data.sqn)


#: rows a Newton warm-up steps on: numba compiles for the data's types, not its size
WARM_UP_ROWS = 64


def _aligned(X):
    """Dense ``X`` aligned (copied once if not): Newton's products go to BLAS through numpy,
    which takes aligned arrays only. A block a worker received often is not (distributed
    reads a message's first array at whatever offset of a shared buffer its header ends):
    in an operator on ijcnn1's 25,000 x 22, ``X @ v`` took 1.1 ms instead of 0.18 and
    ``X.T @ r`` 1.5 ms instead of 0.075 -- a Newton round's CPU about doubled. CSR goes to
    scipy's own loops (and numba's kernels run as fast either way): left as is."""
    if isinstance(X, tuple) or X.flags.aligned:
        return X
    return X.copy()


def warm_up(state: CocoaState, data: LocalData) -> None:
    """Compile (or load from numba's cache) a step's kernels before the gang's clock starts.

    SDCA: one throw-away slice on a copy of the state, and a certificate answer on the
    partition's first `WARM_UP_ROWS` rows. Newton: one throw-away round and
    certificate answer on the partition's first `WARM_UP_ROWS` rows -- the operator's
    default, a round on a copy of the state, made a whole round's data passes and Hessian
    before every start (ijcnn1, 25,000 rows a partition: 7 ms of CPU in each worker
    before the gang could start; the first real round does the same work again)."""
    pb, rows = state.problem, min(data.n, WARM_UP_ROWS)
    if isinstance(data.X, tuple):  # CSR: the first rows' slices (same dtypes and layout)
        values, indices, indptr = data.X
        end = int(indptr[rows])
        X = (values[:end], indices[:end], indptr[:rows + 1])
    else:
        X = data.X[:rows]
    y = data.y[:rows]
    if state.newton is None:
        trial = copy.deepcopy(state._replace(rows=None))
        if state.rows is not None:  # read-only rows shared, not copied (O(nnz))
            trial = trial._replace(rows=(*state.rows[:3], state.rows[3].copy()))
        local_step(trial, data, (), 0.0)
        # and the certificate answer's kernels (their first call cost 4-7 ms in the run)
        g = trial.u[:pb.p - int(pb.fit_intercept)] * (pb.alpha * pb.n_total)
        certificate_parts(X, y, trial.w, pb.loss, pb.fit_intercept, trial.dual[:rows],
                          penalized_intercept=True, g=g)
        return
    newton = LocalNewton.for_partition(pb, X, y, state.params, 0,
                                       hessian_free=state.newton.hessian_free)
    w = np.zeros(pb.p)
    newton.solve(w, [], 0.0, 1, state.params["newton_rtol"], state.params["missing_peers"])
    certificate_parts(X, y, w, pb.loss, pb.fit_intercept, penalized_intercept=False)


def _absorb(state: CocoaState, data: LocalData, inbox) -> None:
    """Keep every peer's latest total; note certificate requests and answers."""
    cert, clock = state.cert, state.clock
    if inbox and state.newton is None:
        clock["ahead"] = 0
    for msg in inbox:
        pl = msg.payload
        # the sender's u_j as of this push; the exchange keeps the peers' sum in step
        current = state.peers.absorb(msg)
        moved = state.peers.sub.moved
        if "pc" in pl:  # the sender's passes (SDCA): how far it got, for `_lead`
            known = clock["peer_passes"].get(msg.sender)
            if known is None or (msg.incarnation, float(pl["pc"])) > known:
                clock["peer_passes"][msg.sender] = (msg.incarnation, float(pl["pc"]))
                clock["half_passes"] = None  # `_lead` recomputes its median once
        if state.newton is not None and "mu" in pl and state.newton.set_mu(float(pl["mu"])):
            # hinge: the smallest smoothing heard; a lowered mu is news (a new surrogate to
            # solve): the leader lowers it at a certificate, and when both partitions had
            # converged at the old mu nobody's total moves, so no round would ever start
            clock["news"].add(msg.sender)
        if state.newton is not None and current:
            if moved:
                # Newton: news is a peer's moved total, not a waiting peer's re-push (a round
                # against the same peers again would only re-solve the same model)
                clock["news"].add(msg.sender)
            x = _vector_field(pl, "x", state.problem.p)  # sparse where sparse (wide models)
            if x is not None:  # local_solver="newton": the point u was taken at
                old = clock["points"].get(msg.sender)
                if state.newton.hinge and (old is None or not np.array_equal(old[1], x)):
                    # hinge: a moved point is news even when its total is not (every row
                    # of a one-class partition past the band: u stays at sum_i y_i x_i)
                    clock["news"].add(msg.sender)
                clock["points"][msg.sender] = (msg.incarnation, np.array(x))
            else:  # a resync full carries no point: this u and the old point don't match
                clock["points"].pop(msg.sender, None)
        packed = packed_of(pl, "H", state.problem.p)
        if packed is not None:  # ... and the sender's loss Hessian, when it sent one; kept
            # packed: a round sums the peers' packed triangles and unpacks the sum once
            clock["hess"][msg.sender] = (msg.incarnation, np.ascontiguousarray(packed))
        if cert["x"].absorb(msg) and msg.sender == LEADER:  # a certificate round: answer at it
            req = (msg.incarnation, int(pl["ver"]))
            if clock["answered"] is None or req > clock["answered"]:
                clock["answered"] = req
                clock["answer"] = (req, cert["x"].vector(LEADER).copy())
        if (current or "cg" in pl or "cg_idx" in pl) and "lsum" in pl and data.index == LEADER \
                and R.accept(cert, msg.sender, (int(pl["linc"]), int(pl["lver"])),
                             data.incarnation, _parts_of(state, msg.sender, pl)) and "hb" in pl:
            cert["bias"][msg.sender] = float(pl["hb"])  # hinge Newton: its smoothing's part
    if clock["bare"] and clock["points"]:
        _seed(state)


def _seed(state: CocoaState) -> None:
    """A restarted Newton partition starts its iterate where the peers are (the mean of
    their pushed points), as soon as one arrives: its zero iterate, averaged into the
    reported model (`combine`) or pushed as its point, dragged the run back (measured: a
    kill at 1.4e-3 suboptimality, the new incarnation's first report at 4.7e-2)."""
    state.w[:] = np.mean([x for _, x in state.clock["points"].values()], axis=0)
    state.clock["bare"] = False


def _vector_field(pl: dict, name: str, size: int) -> np.ndarray | None:
    """A peer's vector sent by `vector_fields` (dense, or sparse where sparse); None when
    absent or malformed (an index out of range, index and value lengths that differ)."""
    idx, val = pl.get(f"{name}_idx"), pl.get(f"{name}_val")
    if name not in pl and idx is not None and (
            np.shape(idx) != np.shape(val) or len(idx) and not 0 <= np.min(idx) <= np.max(
                idx) < size):
        return None
    out = vector_of(pl, name, size)
    return out if out is None or np.shape(out) == (size,) else None


def _view(state: CocoaState) -> np.ndarray:
    """``u_own + sum_j u_j``: the model of the latest duals known here (Newton: the own
    iterate)."""
    if state.newton is not None:
        return state.w.copy()
    return state.u + state.peers.sub.total


def local_step(state: CocoaState, data: LocalData, inbox, now: float) -> StepOutput:
    """Absorb totals, run a slice of SDCA steps, push the new total (and certificate parts)."""
    _absorb(state, data, inbox)
    clock, params, pb = state.clock, state.params, state.problem
    if state.newton is not None:  # when each peer last spoke: `_newton_due`'s wait set
        heard = clock.setdefault("heard", {})
        for msg in inbox:
            heard[msg.sender] = now
    if clock["started"] is None:
        clock["started"] = now
    if clock["rejoining"]:
        if len(state.peers) < data.n_partitions - 1 and now - clock["started"] < params[
                "rejoin_wait"]:
            # restarted: announce the zero total (peers drop the old one) and wait for theirs
            return StepOutput(state, (_message(state, data, now), *_resyncs(state)), wait=0.02)
        clock["rejoining"] = False
    if _close_first(state, data, now):
        return StepOutput(state, (_message(state, data, now), *_resyncs(state)), done=True)
    if state.newton is not None and data.n_partitions > 1 and (
            clock["answer"] is not None and data.index != LEADER
            or data.index == LEADER and R.complete(state.cert, data.n_partitions)) and not (
            NEWTON_ROUND_FIRST and _newton_due(state, data, now)):
        # certificate work now when no round is due (one is: the round first, the answer or
        # the close goes out with its push, `NEWTON_ROUND_FIRST`): an answer goes out, or
        # the leader closes its round -- the certified model lags the iterates by a message
        out = _message(state, data, now)
        done = data.index == LEADER and _certify(state, data, out.payload, now, reopen=False)
        return StepOutput(state, (out, *_resyncs(state)), done=done)
    wait = 0.0
    if data.n_partitions > 1 and (
            state.newton is None and clock["ahead"] < params["max_ahead"] * data.n
            and _lead(state, data) >= params["max_lead"]
            or state.newton is not None and not _newton_due(state, data, now)):
        # SDCA far ahead of the slow half (bounded staleness, `_lead`): wait for its passes;
        # Newton: a round once every active peer moved since the last one (`_newton_due`: a
        # round on part of the news re-solves nearly the same model: measured a9a, 16
        # partitions, 11-20 such rounds to 1e-3 where lockstep rounds take 5-7), sooner if
        # one falls silent. The news is coming, so a waiting operator re-pushes only every
        # LEAD_REPUSH s: every 5 ms from each waiting operator to every peer flooded the
        # slow half's event loop (measured: 16 partitions, the slow worker's steps fell 3x)
        # Newton: every 2 rounds' wall time at least (16 partitions on 2 workers: a round
        # waits ~0.1 s for its news, and 3 re-pushes a round to 15 peers were ~40% of the
        # messages), the leader too unless a certificate round opens
        repush = LEAD_REPUSH if state.newton is None else max(LEAD_REPUSH,
                                                              2.0 * clock.get("round", 0.0))
        if clock["answer"] is None and now - clock.get("pushed", -np.inf) < repush and (
                data.index != LEADER
                or state.newton is not None and not _cert_opens(state, now)):
            return StepOutput(state, _resyncs(state), wait=0.005)
        wait = 0.005
    elif data.n_partitions > 1 and clock["ahead"] >= params["max_ahead"] * data.n:
        # far ahead of the news: more steps against the same stale totals only polish this
        # block (block-cyclic ascent, which zig-zags); wait for a peer instead -- on a loaded
        # machine that also hands the core to it. The total goes out again all the same: a
        # peer in the same spot (its news lost) must not wait for us forever
        wait = 0.005
    elif state.newton is not None:
        before, t0, c0 = state.newton.passes, time.perf_counter(), time.thread_time()
        _newton_round(state, data)
        took = time.perf_counter() - t0
        # a peer's round takes about as long: its certificate answer may take that long too
        clock["round"] = max(took, 0.5 * clock.get("round", 0.0))
        # totals of wall and CPU seconds in rounds (CPU << wall: the thread was starved)
        clock["rounds"] = [a + b for a, b in zip(clock.get("rounds", (0, 0.0, 0.0)),
                                                 (1, took, time.thread_time() - c0))]
        clock["steps"] += max(int(round((state.newton.passes - before) * data.n)), 1)
        clock["news"].clear()
        clock["round_at"] = now
    else:
        np.add(state.u, state.peers.sub.total, out=state.w)  # the view, O(d)
        n_steps = min(state.chunk.count, data.n)  # at most one pass between pushes: fresh views
        adaptive = clock["adapts"]
        sigma = _adaptive_sigma(state) if adaptive else state.sigma
        u0 = state.u.copy() if adaptive else None
        t0 = time.perf_counter()
        if state.rows is not None:
            X, y, sqn, blocks = state.rows
            hinge_steps_blocks(X, y, pb.fit_intercept, n_steps, state.rng, state.order, blocks,
                               state.cursor, state.dual, sqn, state.scale, sigma, state.w,
                               state.u, state.shrink)
        elif state.shrink is not None:
            hinge_steps_shrinking(data.X, data.y, pb.fit_intercept, n_steps, state.rng,
                                  state.order, state.cursor, state.dual, data.sqn, state.scale,
                                  sigma, state.w, state.u, state.shrink)
        else:
            cocoa_steps(data.X, data.y, pb.loss, pb.fit_intercept, n_steps, state.rng,
                        state.order, state.cursor, state.dual, data.sqn, state.scale,
                        sigma, state.w, state.u)
        if u0 is not None:
            clock["own_delta"] = np.subtract(state.u, u0, out=u0)
        state.chunk.update(time.perf_counter() - t0)
        clock["steps"] += n_steps
        clock["ahead"] += n_steps
    out = _message(state, data, now)
    clock["pushed"] = now
    done = False
    if data.index == LEADER:
        done = _certify(state, data, out.payload, now)
    mi = params["max_iter"]
    if mi is not None and clock["steps"] >= mi * data.n:
        done = True
    return StepOutput(state, (out, *_resyncs(state)), wait=wait, done=done)


def _close_first(state: CocoaState, data: LocalData, now: float) -> bool:
    """Newton on a smooth loss, the leader with every answer in and a round due: close the
    certificate round now (`NEWTON_CLOSE_FIRST`), not after the round; True when that
    certified. The round, and the opening of the next certificate round at its model, follow
    as before; only the close moved (the round does not change ``wbar``). A round first made
    the certified stop wait for it: in a lock-step fit (`benchmarks/newton_exchanges.py`) the
    close that certifies comes in a step whose round is due (every peer moved)."""
    if not (NEWTON_CLOSE_FIRST and data.index == LEADER and state.newton is not None
            and not state.newton.hinge and data.n_partitions > 1
            and R.complete(state.cert, data.n_partitions) and _newton_due(state, data, now)):
        return False
    return _certify(state, data, {}, now, reopen=False)


def _adapts(problem: Problem, params: dict) -> bool:
    """Whether SDCA's aggregation adapts (`_adaptive_sigma`): ``sigma="adaptive"``, or None on
    hinge where SDCA is not damped (`sdca_damping` at most `MAX_SDCA_DAMPING`: measured
    there; on a damped, label-sorted skin_nonskin-like set, where SDCA crawls either way and
    "auto" takes Newton, the best evaluated model after 400 exchanges was at 0.12 of f* above
    it against 0.07, though the gap was smaller); other losses keep ``sigma' = K`` unless
    asked."""
    if params["sigma"] == "adaptive":
        return True
    return (params["sigma"] is None and problem.loss == K.HINGE
            and _damping(problem, params) <= MAX_SDCA_DAMPING)


def _adaptive_sigma(state: CocoaState) -> float:
    """``sigma="adaptive"``: the aggregation the latest updates needed, within [1, K].

    CoCoA+'s safe ``sigma' = K`` bounds ``||sum_k d_k||^2 / sum_k ||d_k||^2`` over every
    possible update ``d_k`` of the partitions' shares; the realized updates often overlap
    far less (near the optimum they even cancel). With ``d`` the own last slice's change of
    ``u`` and ``D`` the peers' change of their total since, ``||d + D||^2 / (||d||^2 +
    ||D||^2 / (K - 1))`` bounds that ratio for the realized updates (``sum_j ||d_j||^2 >=
    ||D||^2 / (K - 1)``; exact at K = 2, K when all move alike); the largest of the last
    three is used. In one process (`_sim`, 2 partitions, slices of 0.4 / 0.2 of a pass):
    exchanges to a certified 1e-6 gap on hinge-l2, a9a 22-26 / 34-39 instead of 22-54 /
    42-50, synthetic-logistic:20000 38-42 / 68-74 instead of 65-82 / 112-128."""
    clock, total = state.clock, state.peers.sub.total
    prev, own = clock.get("peers_before"), clock.get("own_delta")
    clock["peers_before"] = total.copy()
    if prev is None or own is None:
        return state.sigma
    d = total - prev
    den = float(own @ own) + float(d @ d) / max(state.sigma - 1.0, 1.0)
    if den > 0.0:
        s = own + d
        ratios = clock.setdefault("ratios", [])
        ratios.append(float(s @ s) / den)
        del ratios[:-3]
        clock["sigma"] = min(max(max(ratios), 1.0), state.sigma)
    return clock.get("sigma", state.sigma)


def _newton_due(state: CocoaState, data: LocalData, now: float) -> bool:
    """Whether a Newton round is due: the first, or every *active* peer (heard from within
    `ACTIVE_ROUNDS` of its own rounds' wall time, at least `ACTIVE_MIN` s) pushed a moved
    total since the last round -- lockstep among the peers that speak: a silent straggler
    drops out of the wait set and rejoins it when it speaks again. With a fraction
    ``min_news``: once peers holding that share of the other rows moved. Either way, once any
    moved and the round is overdue (``min_news``: 4x its own round, at least 20 ms; None:
    twice the active window -- a peer that speaks without moving stalls nobody). With no
    news at all, a round anyway `QUIET_WINDOWS` active windows after the last: were every
    partition waiting on the others (a lost push, a fixed point short of ``tol``), the fit
    would otherwise sit idle until ``max_time``."""
    clock = state.clock
    if "round_at" not in clock:
        return True
    own_round, news = clock.get("round", 0.0), clock["news"]
    window = max(ACTIVE_MIN, ACTIVE_ROUNDS * own_round)
    if not news:
        return now - clock["round_at"] >= QUIET_WINDOWS * window
    if state.params["min_news"] is None:
        if all(k in news for k, t in clock.get("heard", {}).items()
               if now - t <= window and k != data.index):
            return True
        return now - clock["round_at"] >= 2.0 * window
    sizes = state.problem.sizes
    rows = sum(sizes[k] for k in news)
    if rows >= state.params["min_news"] * (state.problem.n_total - data.n):
        return True
    return now - clock["round_at"] >= max(0.02, 4.0 * own_round)


def _lead(state: CocoaState, data: LocalData) -> float:
    """Passes this operator is ahead of the peers holding half the other rows (their
    row-weighted median pass count as last heard; 0 for one not heard from).

    Bounded staleness for SDCA: CoCoA+'s ``sigma = K`` adding is safe when each
    subproblem is solved against a model at most a bounded number of local updates old;
    an operator that ran many passes while half the rows' duals barely moved adds up
    updates computed against views the slow half never saw (measured at 16 partitions
    on 2 unevenly loaded workers: 5-19 passes on one, ~95 on the other, the model at
    6-18x the optimum). The slowest operator never waits, and one straggler holding
    less than half the rows stalls nobody."""
    clock = state.clock
    if clock["half_passes"] is None:  # news of a peer's passes since: sort once, not per step
        clock["half_passes"] = _half_rows_passes(clock["peer_passes"], state.problem.sizes,
                                                 data.index)
    if clock["half_passes"] is None:
        return 0.0
    return clock["steps"] / max(data.n, 1) - clock["half_passes"]


def _half_rows_passes(known: dict, sizes, own: int) -> float | None:
    """The pass count the peers holding half the other rows reached (row-weighted median
    of their passes as last heard, 0 for one not heard from); None without peers' rows."""
    peers = sorted((known.get(j, (0, 0.0))[1], sizes[j]) for j in range(len(sizes))
                   if j != own)
    half, rows = 0.5 * sum(r for _, r in peers), 0
    for passes, r in reversed(peers):  # from the furthest: the pass count half the rows reached
        rows += r
        if rows >= half:
            return passes
    return None


def _newton_round(state: CocoaState, data: LocalData) -> None:
    """``local_solver="newton"``: Newton on this partition's model of the objective (see
    `_cocoa_newton`) from the own iterate, each peer at its latest pushed point and with its
    pushed Hessian (its rows' curvature: heterogeneous partitions stay stable). The peers
    with pushed Hessians go in as one term: their packed triangles summed and unpacked
    once, ``sum H_k w_k`` by packed products (BLAS ``dspmv``), not a p x p matrix each."""
    pb, params, clock = state.problem, state.params, state.clock
    nj = float(data.n)
    peers, c_missing, points = [], 0.0, []
    S_packed, Sb, G, c_known = None, np.zeros(pb.p), np.zeros(pb.p), 0.0
    for k, size in enumerate(pb.sizes):
        if k == data.index:
            continue
        point = clock["points"].get(k)
        if point is None or k not in state.peers.sub.vecs:
            c_missing += size / nj  # not heard from, or no point yet
            continue
        # a peer out of sync (a lost delta) keeps its last consistent total and point (both
        # change only with a message applied whole): stale, as a silent peer's, not missing
        # -- missing, its rows left the model (rescaled: the optimum on the rows heard
        # from), so each lost message threw the rounds toward another fixed point
        hess = clock["hess"].get(k)
        g_k = -pb.alpha * state.peers.vector(k)
        if hess is not None and hess[0] == point[0]:
            S_packed = hess[1].copy() if S_packed is None else np.add(S_packed, hess[1],
                                                                        out=S_packed)
            Sb = dspmv(pb.p, 1.0, hess[1], point[1], beta=1.0, y=Sb, lower=1, overwrite_y=1)
            G += g_k
            c_known += size / nj
        else:  # no Hessian of this point yet: modelled by this partition's own
            peers.append((g_k, point[1], None, size / nj))
        points.append(point[1])
    if S_packed is not None:
        peers.append((G, None, (sym_of(S_packed, pb.p), Sb), c_known))
    if not clock.get("point") and points:
        # this incarnation's first round (a restart): start where the peers are
        state.w[:] = np.mean(points, axis=0)
        clock["bare"] = False
    if "iters" not in clock:
        nnz = len(data.X[0]) if isinstance(data.X, tuple) else data.n * pb.p
        clock["iters"] = newton_iterations(params["newton_iter"], pb.n_partitions - 1, pb.p, nnz,
                                           state.newton.hessian_products())
    v, dual, g, H, new = state.newton.solve(state.w, peers, c_missing, clock["iters"],
                                            params["newton_rtol"], params["missing_peers"])
    state.w[:] = v
    state.dual[:] = dual
    state.u[:] = g * state.scale
    clock["point"] = True
    if H is not None and _hessian_due(clock, H):  # newton-cg: no Hessian, nothing pushed
        clock["H"] = H  # pushed with the round's total (not with a waiting re-push)


def _hessian_due(clock: dict, H: np.ndarray) -> bool:
    """Whether this round's Hessian goes out: the first, one that moved by `HESSIAN_RTOL`
    since the last pushed (Frobenius), and every `HESSIAN_EVERY` rounds (a restarted peer's
    copy). Peers model this partition with a stale Hessian in between, which moves its
    rounds' steps, not the fixed point (the gradients are exact); pushing every round's
    p x p Hessian was most of the traffic (a9a, 16 partitions: ~90 KB of ~93 KB a message)."""
    sent = clock.get("H_sent")
    clock["since_H"] = clock.get("since_H", 0) + 1
    if sent is not None and clock["since_H"] < HESSIAN_EVERY and (
            np.linalg.norm(H - sent) <= HESSIAN_RTOL * np.linalg.norm(sent)):
        return False
    clock["H_sent"], clock["since_H"] = H, 0
    return True


def newton_iterations(newton_iter, n_peers: int, p: int, nnz: int, hessian: float = 0.0) -> int:
    """Newton iterations per round: ``newton_iter``, or for None 2 -- and 4 where a data
    pass (``nnz`` entries of the partition) costs less than assembling the peers' models
    (``n_peers`` p x p Hessians) and the own Hessian (``hessian`` products: its Gram,
    `LocalNewton.hessian_products`). Then a round's cost is its Hessians and messages, not
    its passes, and two more iterations on the own rows save rounds (lockstep, a9a at 16
    partitions under the straggler: 1e-3 after 5 rounds instead of 7 at alpha 1/n, 6 at
    1e-4, for the same CPU); on large partitions (20k x 100 at 2 partitions, a sampled
    Hessian) they were a third more work for as many rounds (2026-11-29). Counting the own
    Gram (2026-12-01, parallel lock-step, 2 partitions, `benchmarks/newton_exchanges.py`;
    the loop stops early once the decrement fell by ``newton_rtol``): a9a 1/n 9 -> 6
    exchanges to 1e-6 (passes 23.5 -> 21.5), at 0.1 and 4 partitions 3 -> 2; ijcnn1 1/n 5 ->
    4 (passes 13.6 -> 14.6 / 17.6); synthetic-logistic:20000 and the others at 0.1 as many
    exchanges, at most 2 passes more."""
    if newton_iter is not None:
        return int(newton_iter)
    return 4 if nnz <= n_peers * p * p + NEWTON_ITER_HESSIAN * hessian else 2


def _resyncs(state: CocoaState) -> tuple[Outgoing, ...]:
    """Fulls of the own total (and, from the leader, of ``wbar``) for peers that asked.
    Newton: the own total's carry its point (``w`` is the last push's: a round always
    pushes), or the peer, holding a total with no point, drops this partition from its
    model until the next push (under 30% drops that was most rounds: newton-cg never
    certified)."""
    point = vector_fields("x", state.w) if state.clock.get("point") else {}
    return (*(Outgoing({**fields, **point}, to=to) for to, fields in state.peers.resyncs()),
            *(Outgoing(fields, to=to) for to, fields in state.cert["x"].resyncs()))


def _message(state: CocoaState, data: LocalData, now: float) -> Outgoing:
    """The own total; with a certificate answer owed, also this partition's `GapParts`: the
    loss sum at the asked model and the dual sums of the duals ``u`` comes from (two passes,
    so only then)."""
    clock = state.clock
    extra = {} if state.newton is not None else {"pc": clock["steps"] / max(data.n, 1)}
    payload = state.peers.fields(state.u, now, **extra)
    payload.update(state.cert["x"].sub.want_field(now))
    if clock.get("point"):  # Newton: u is -grad L_k / alpha at this point
        payload.update(vector_fields("x", state.w))  # sparse where sparse (wide models)
    if state.newton is not None and state.newton.hinge:  # the smoothing it is heading to
        payload["mu"] = state.newton.mu
    if clock.get("H") is not None:
        payload.update(sym_fields("H", clock["H"]))  # its packed upper triangle
        clock["H"] = None
    if clock["answer"] is not None and data.index != LEADER:
        (inc, ver), wbar = clock["answer"]
        clock["answer"] = None
        parts = _parts(state, data, wbar)
        payload.update(linc=inc, lver=ver, c=parts.conj_sum, lsum=parts.loss_sum)
        if state.newton is not None:
            payload.update(vector_fields("cg", parts.g))
            if state.newton.hinge:  # the smoothing's part of the gap (`_smooth_enough`)
                payload["hb"] = state.clock["bias"]
        if parts.side is not None:  # an unpenalized intercept: the sums that balance the duals
            payload.update(side=parts.side, sg=parts.side_g)
    return Outgoing(payload)


def _parts(state: CocoaState, data: LocalData, wbar: np.ndarray, sums=None) -> GapParts:
    """This partition's `GapParts` at ``wbar`` and its current duals (Newton: the duals of
    ``wbar``, whose ``g`` then travels with the answer; ``sums``: ``wbar``'s margins, duals
    and ``g`` as a round kept them, `LocalNewton.end_point`: no data pass). The intercept,
    if any: unpenalized with the Newton local solver (the parts then carry the per-class sums
    that make the duals feasible, `gap_from_parts`), a penalized constant feature with SDCA."""
    pb = state.problem
    # Newton: the duals -phi'(x_i^T wbar) that wbar itself gives (free with its margins): the
    # gap then measures wbar alone, not how far the peers' iterates are from it
    if state.newton is not None and state.newton.hinge:
        # hinge: the smoothed duals -phi_mu'(x_i^T wbar), feasible hinge duals that go to the
        # optimal ones with mu (the subgradient's jump at the kink would not); the gap is
        # the true hinge gap of wbar
        m = K.margins_blas(K.as_kernel_matrix(data.X) if not isinstance(data.X, tuple)
                           else data.X, np.ascontiguousarray(wbar, dtype=np.float64),
                           pb.fit_intercept)
        dual = -state.newton.deriv(m)
        # the smoothing's part of this gap (`_smooth_enough`): answered with the parts
        state.clock["bias"] = smoothing_bias(m, data.y, state.newton.mu)
        return certificate_parts(data.X, data.y, wbar, pb.loss, pb.fit_intercept, dual,
                                 penalized_intercept=False)
    if state.newton is not None:
        if sums is not None:  # the leader's, at the round end point it opened wbar at
            m, dual, g = sums
            return certificate_parts(data.X, data.y, wbar, pb.loss, pb.fit_intercept, dual,
                                     penalized_intercept=False, g=g, margins=m)
        return certificate_parts(data.X, data.y, wbar, pb.loss, pb.fit_intercept,
                                 penalized_intercept=False)
    # SDCA: sum_i a_i x_i is alpha n u, kept by the steps -- one pass (the margins), not two
    g = state.u[:pb.p - int(pb.fit_intercept)] * (pb.alpha * pb.n_total)
    X, y, _ = _rows(state, data)  # the rows the duals follow
    return certificate_parts(X, y, wbar, pb.loss, pb.fit_intercept, state.dual,
                             penalized_intercept=True, g=g)


def _penalized_intercept(state: CocoaState) -> bool:
    """SDCA's intercept is a penalized constant feature (its duals have no ``sum a_i = 0``
    step); Newton's is unpenalized (scikit-learn's and `Objective`'s problem)."""
    return state.newton is None


def _parts_of(state: CocoaState, sender: int, pl: dict) -> GapParts | None:
    """A peer's answer as `GapParts` (its ``g`` is ``alpha n`` times its pushed total); None
    when an unpenalized intercept's side sums are missing or misshapen."""
    pb = state.problem
    if state.newton is not None:  # the answer's own g (its duals are wbar's)
        g = _vector_field(pl, "cg", pb.p - int(pb.fit_intercept))
        if g is None or np.shape(g) != (pb.p - int(pb.fit_intercept),):
            return None
        g = np.asarray(g, dtype=np.float64)
    else:
        g = state.peers.vector(sender) * (pb.alpha * pb.n_total)
    parts = GapParts(pb.sizes[sender], float(pl["lsum"]), float(pl["c"]), g)
    if not pb.fit_intercept or _penalized_intercept(state):
        return parts
    side, side_g = pl.get("side"), pl.get("sg")
    n_side = 2 if pb.loss == K.SQUARED else 3
    if side is None or side_g is None or np.shape(side) != (n_side,) \
            or np.shape(side_g) != (pb.p - 1,):
        return None
    return parts._replace(side=np.asarray(side, dtype=np.float64),
                          side_g=np.asarray(side_g, dtype=np.float64),
                          balance="mean" if pb.loss == K.SQUARED else "classes")


def _certify(state: CocoaState, data: LocalData, payload: dict, now: float,
             reopen: bool = True) -> bool:
    """The leader's round: close the open certificate, open a new one (unless not
    ``reopen``: its model has not moved since); True when certified."""
    cert, params = state.cert, state.params
    wbar = cert["wbar"]
    if R.complete(cert, data.n_partitions):
        # the own parts from the sums kept at wbar's opening (`NEWTON_CERT_REUSE`) once a
        # close timed the two passes: then ``cost``, the rounds' floor, is what an answer's
        # passes cost (their CPU, measured once: a wall time taken in a load spike would
        # hold the floor up for the whole fit), not the kept sums' few vector operations
        sums = cert.pop("kept", None)
        sums = sums if "answer_cpu" in cert and NEWTON_CERT_REUSE else None
        c0 = time.thread_time()
        closed = R.close(cert, state.problem, lambda w: _parts(state, data, w, sums),
                         params["tol"])
        if sums is not None:
            cert["cost"] = cert["answer_cpu"]
        elif state.newton is not None:
            cert["answer_cpu"] = time.thread_time() - c0
        if closed:
            return True
        primal = cert["primal"]
        if state.newton is None and primal < cert.get("best_primal", np.inf):
            cert.update(best_primal=primal, best=wbar)  # the model while none is certified
        target = (params["tol"] or 1e-6) * abs(primal)
        floor = max(params["mu_min"], 0.25 * target)
        if state.newton is not None and state.newton.hinge and not _smooth_enough(
                state, target) and state.newton.set_mu(
                next_mu(state.newton.mu, cert["gap"], {**params, "mu_min": floor})):
            payload["mu"] = state.newton.mu  # the leader lowers mu; it travels in every push
    if reopen and _cert_opens(state, now):
        ver = R.open_round(cert, _view(state), now, bias={})
        if state.newton is not None and NEWTON_CERT_REUSE:  # at a round's end point: its
            cert["kept"] = state.newton.end_point(cert["wbar"])  # sums (n + n + p floats)
        payload.update(cert["x"].pub.publish(cert["wbar"], now, ver=ver))
    return False


def _smooth_enough(state: CocoaState, target: float) -> bool:
    """Hinge Newton, at a closed certificate: whether the smoothing's own part of its gap
    (every partition's `smoothing_bias` at ``wbar``, summed, over ``n``) is small against
    the ``target`` gap (`smooth_enough`): then ``mu`` stays, and Newton reaches the target on
    this surrogate (lowering ``mu`` with the gap, ``kappa``, drove it to widths where its
    rounds stalled: lock-step on synthetic-logistic:20000, hinge-l2, 2 partitions)."""
    cert = state.cert
    biases = [state.clock.get("bias")] + [cert["bias"].get(k) for k in cert["answers"]]
    if any(b is None for b in biases):
        return False
    return smooth_enough(sum(biases) / state.problem.n_total, target)


def _cert_opens(state: CocoaState, now: float) -> bool:
    """Whether the leader opens a certificate round now: ``cert_period`` (and 4x its own
    certificate pass) since the last, which was closed -- or whose answers are overdue (one
    was lost: ask again, not before a peer's Newton round could have ended). SDCA: the
    period ramps up to ``cert_period`` (`CERT_RAMP`), is at most ``sqrt(2 c t)`` for a pass of
    ``c`` s (`CERT_BALANCE`, `_cert_round.balanced_period`), and near ``tol`` the gaps' trend
    times the rounds (`_cert_round.due_by_trend`). Newton: at most one of its own rounds'
    wall time apart (`NEWTON_CERT_ROUNDS`). The first round waits for every peer's total
    (or ``cert_period``): its model was the leader's own first slice or round alone (Newton:
    answering it cost each peer a round, lock-step reuters above: certified at exchange 4).
    Not on hinge Newton, whose ``mu`` falls only at a certificate (lock-step a9a, 2 and 4
    partitions: certified at 23 exchanges with the wait, 16-18 without)."""
    cert, params = state.cert, state.params
    period = params["cert_period"]
    hinge = state.newton is not None and state.newton.hinge
    if cert["ver"] == 0 and not hinge and len(state.peers) < state.problem.n_partitions - 1 \
            and now - state.clock["started"] < period:
        return False  # the first round: at a view with every peer's total in it
    slack = 3.0 * state.clock.get("round", 0.0)
    if state.newton is None:  # SDCA: the model is the best wbar a round evaluated, so it
        # trails the operators' by the rounds' spacing: as often as their cost allows
        ramped = min(period, CERT_RAMP * now)
        period = min(ramped, CERT_BALANCE * R.balanced_period(cert["cost"], now))
        # ... but an answer is no sooner overdue (lost) than at the ramped period: on a
        # loaded machine a starved peer's answer must not be asked anew, and again
        slack += R.OVERDUE_PERIODS * (ramped - period)
    else:  # one a Newton round (`NEWTON_CERT_ROUNDS`); hinge: mu falls only at a certificate
        period = min(period, NEWTON_CERT_ROUNDS * state.clock.get("round", period))
    # SDCA: sooner when the gaps' trend meets tol (`_cert_round.due_by_trend`); not Newton,
    # whose model moves once a round (a round between two of its own re-certifies one model)
    return R.opens(cert, now, period, slack=slack,
                   tol=params["tol"] if state.newton is None else 0.0)


def schema(problem: Problem) -> tuple[dict, dict]:
    """A total ``u`` (sparse-exchange fields); the leader adds ``(wbar, ver)``, answers
    ``(c, linc, lver, lsum)`` (Newton: also ``cg``, the ``g`` of the duals at ``wbar``; with
    an unpenalized intercept also ``side, sg``, see `_certificate.GapParts`); Newton pushes add the point ``x`` and
    the Hessian as its packed upper triangle ``H`` (or ``H_idx``, ``H_val``)."""
    return ({}, {**schema_fields("u", problem.p), **schema_fields("wbar", problem.p),
                 "ver": int, "pc": float, "c": float, "linc": int, "lver": int, "lsum": float,
                 "side": ("float64", (side_len(problem),)),
                 "sg": ("float64", (problem.n_features,)),
                 **compact_fields("cg", problem.n_features),
                 **compact_fields("x", problem.p), "mu": float, "hb": float,
                 **compact_fields("H", problem.p * (problem.p + 1) // 2)})


def snapshot(state: CocoaState) -> dict:
    """Own total, view and passes ``t`` (Newton: also the iterate ``x``, its ``rounds`` and
    their mean wall and thread-CPU seconds ``round_s``, ``round_cpu_s``); the leader adds the
    latest gap and the certified model."""
    passes = int(state.clock["steps"] // max(len(state.dual), 1))
    snap = {"u": state.u.copy(), "w": _view(state), "t": passes}
    if state.newton is not None:
        if not state.clock["bare"]:  # a restarted iterate before `_seed`: no model yet
            snap["x"] = state.w.copy()
        count, wall, cpu = state.clock.get("rounds", (0, 0.0, 0.0))
        snap.update(rounds=int(count), round_s=wall / max(count, 1), round_cpu_s=cpu / max(count, 1))
        if state.newton.hinge:
            snap["mu"] = state.newton.mu
    elif state.cert.get("best") is not None:  # SDCA's leader: its best evaluated wbar
        snap["best"] = np.array(state.cert["best"], dtype=np.float64)
    snap.update(snapshot_fields(state.cert))
    return snap


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    """The certified model if there is one, else (Newton) the mean of the iterates, else (SDCA)
    the leader's evaluated ``wbar`` of least objective, else ``sum_k u_k`` (else the mean of
    the views)."""
    model = certified_model(snapshots)
    if model is not None:
        return model
    points = [np.asarray(s["x"], dtype=np.float64) for s in snapshots if s is not None and "x" in s]
    if points:  # local_solver="newton": the iterates, not sum u_k, are the models
        return np.mean(points, axis=0)
    for s in snapshots:
        if s is not None and "best" in s:
            # SDCA: the leader's wbar with the least P(wbar) yet, not sum u_k: the u_k of
            # snapshots taken at different times can be far apart when they are large and
            # cancel (label-sorted rows: each partition's u_k ~100x the model on skin_nonskin)
            return np.asarray(s["best"], dtype=np.float64)
    if snapshots and all(s is not None and "u" in s for s in snapshots):
        return np.sum([np.asarray(s["u"], dtype=np.float64) for s in snapshots], axis=0)
    views = [np.asarray(s["w"], dtype=np.float64) for s in snapshots if s is not None and "w" in s]
    return np.mean(views, axis=0) if views else np.zeros(problem.p)


ALGORITHM = Algorithm("asip-cocoa", init, local_step, snapshot, combine, DEFAULTS,
                      uses_tol=True, schema=schema, validate=validate, warm_up=warm_up)
