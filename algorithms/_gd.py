"""``gd``: synchronous full-batch (proximal) gradient descent, one all-reduce per step.

The baseline the ASIP paper compares against (MLlib's full-batch gradient
descent), written as it should be: every operator evaluates the loss and
gradient sums of its rows at the same point and all-reduces them over the
channel (`_barrier.Barrier`: push, wait for all ``N``, reduce in partition
order), so each operator takes the identical step

* smooth losses (logistic, squared): ``w+ = prox_{R/L}(w - grad f(w) / L)``
  with ``L`` found by backtracking on the all-reduced objective (Beck &
  Teboulle 2009): a trial point is accepted when the data term satisfies
  ``f(w+) <= f(w) + grad f(w)^T (w+ - w) + (L/2) ||w+ - w||^2``; otherwise
  ``L`` doubles and the trial is made again from ``w``; after an accepted step
  ``L`` shrinks by ``shrink`` so the step follows the local curvature (often
  far below the global bound). The test costs nothing extra: the round that
  evaluates the trial point's gradient evaluates its loss too. ``L`` starts at
  ``curvature * mean ||[a_i, 1]||^2 (+ alpha for l2)``, an upper bound known
  without a data pass (no power iteration in setup);
* hinge: the proximal subgradient method with ``eta_k = R0 / (G sqrt(k+1))``,
  ``G = sqrt(mean ||[a_i, 1]||^2)`` bounding the subgradient norm and
  ``R0 = sqrt(2 / alpha)`` bounding ``||w*||`` for l2 (``f(w*) <= f(0) = 1``),
  1 for l1; the output is the best iterate seen (the reduction gives every
  operator the objective value at ``w_k`` for free).

``schedule="invsqrt"`` replaces the backtracking step of the smooth losses by
MLlib's ``eta0 / sqrt(k + 1)`` (``eta0`` = 0.1 in the ASIP paper's harness): the
baseline exactly as the paper ran it, for reproducing its comparisons. It is
far slower on these problems; the default is the honest baseline.

Every contribution carries, besides the sums, the state the trial point was
made from (``base``, its gradient ``gbase`` and loss ``fbase``, and ``L``), so
that every operator -- a restarted one included -- takes the same decision.
Stopping: ``max_iter`` rounds, or when certified: the round's all-reduced loss
and gradient sums give a duality gap at the evaluated point for free
(`_primal_cert`: the dual point ``a_i = -phi'(m_i)``, Fenchel-Young for its
conjugate sum), and the stage stops when ``gap / |P| <= tol`` -- so
``stopped_by_ == "tol"`` means certified and ``gap_`` is reported. With an
intercept the dual needs per-class sums (one extra margin and row pass), so
that certificate is taken every ``cert_every`` rounds. Where no certificate
exists (weighted least squares with an intercept) the test is the old one: the
gradient-mapping norm ``L ||w+ - w||`` at an accepted point below ``tol`` times
its first value. Every operator decides on the same numbers, so all stop at
the same round. A restarted operator joins at the lowest round a peer is at, with the
state that peer sent.

References
----------
A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for
linear inverse problems", SIAM J. Imaging Sciences 2009 (backtracking, sec. 3).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from . import _kernels as K
from . import _primal_cert as C
from . import _weights as W
from ._barrier import Barrier, BarrierState, barrier_step, latest_model
from ._base import Algorithm, LocalData, Problem, Start, StepOutput

__all__ = ["ALGORITHM", "GDState", "init", "local_step", "warm_up"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    "schedule": "constant",  # "constant": backtracking 1/L (smooth losses); "invsqrt": eta0/sqrt(k+1)
    "eta0": 0.1,
    "L0": None,  # first curvature guess; default the bound curvature * mean ||[a_i, 1]||^2
    "shrink": 0.7,  # L *= shrink after an accepted step (1.0: L never decreases)
    "tol": 1e-6,  # stop when the relative duality gap is below this
    "cert_every": 5,  # with an intercept: rounds between certificates (each one extra pass)
    "max_iter": None,
    "resend_after": 0.1,
    "rejoin_wait": 0.5,
    "poll_wait": 0.02,
}


#: mem: k, base, gbase, fbase, L, point, own, prev_own, best_f, best_w, gm0, phase, started,
#: and the certificate: best_dual, gap, rel_gap, certified
GDState = BarrierState


def init(problem: Problem, data: LocalData, params: dict) -> GDState:
    if params["schedule"] not in ("constant", "invsqrt"):
        raise ValueError(f"unknown schedule {params['schedule']!r} for solver 'gd'; valid "
                         "schedules are ['constant', 'invsqrt']")
    if not 0.0 < params["shrink"] <= 1.0:
        raise ValueError(f"shrink must be in (0, 1] for solver 'gd', got {params['shrink']!r}")
    p = problem.p
    mem = {"k": 0, "base": np.zeros(p), "gbase": np.zeros(p), "fbase": 0.0, "L": 0.0,
           "point": np.zeros(p), "own": None, "prev_own": None, "best_f": np.inf,
           "best_w": np.zeros(p), "gm0": None,
           "phase": "run" if data.incarnation == 0 else "rejoin", "started": None,
           "best_dual": -np.inf, "gap": np.inf, "rel_gap": np.inf, "certified": None}
    return GDState(problem, params, Barrier(data.index, data.n_partitions), np.zeros(p), mem,
                   C.certifiable(problem, data.sw is not None))


def _first_L(pb: Problem, params: dict) -> float:
    if params["L0"] is not None:
        return float(params["L0"])
    return max(pb.curvature * pb.row_scale + pb.mu, 1e-12)


def _trial(pb: Problem, base: np.ndarray, gbase: np.ndarray, L: float) -> np.ndarray:
    """The point the state ``(base, gbase, L)`` evaluates next (``L = 0``: ``base`` itself)."""
    if L == 0.0:
        return base.copy()
    return pb.prox(base - gbase / L, 1.0 / L)


def _contribution(state: GDState, data: LocalData) -> dict:
    pb, mem = state.problem, state.mem
    f = W.loss_grad(data, mem["point"], pb.loss, pb.fit_intercept, state.grad)  # row weights
    out = {"g": state.grad.copy(), "f": float(f), "base": mem["base"].copy(),
           "gbase": mem["gbase"].copy(), "fbase": float(mem["fbase"]), "L": float(mem["L"])}
    # the intercept's certificate sums, every cert_every rounds
    out.update(C.round_side(pb, data, mem["point"], state.certify, mem["k"],
                            state.params["cert_every"]))
    return out


def _adopt(state: GDState, data: LocalData, k: int, fields: dict) -> None:
    """A restarted operator takes a peer's round and the state its trial point came from."""
    mem = state.mem
    mem["k"] = k
    for key in ("base", "gbase"):
        mem[key] = np.array(fields[key], dtype=np.float64)
    mem["fbase"], mem["L"] = float(fields["fbase"]), float(fields["L"])
    mem["point"] = _trial(state.problem, mem["base"], mem["gbase"], mem["L"])


def warm_up(state: GDState, data: LocalData) -> None:
    """Load (or compile) a round's kernels on the partition's first row, before the gang
    starts: the contribution (gradient, the intercept's certificate sums) and the reduce's
    proximal step, which the operator's default warm-up (a first `local_step`, a whole
    gradient pass) never reached -- it waits for the peers: on a fresh install
    `_kernels.prox_inplace` compiled in the first run (0.22-0.24 s a worker at load 6.6)."""
    one = data.first_row()
    _contribution(state._replace(grad=np.zeros_like(state.grad), mem=dict(state.mem, k=0)), one)
    p = state.problem.p
    _trial(state.problem, np.zeros(p), np.zeros(p), 1.0)


def local_step(state: GDState, data: LocalData, inbox, now: float) -> StepOutput:
    """Wait for round ``k``'s contributions; when all are in, step and push round ``k+1``'s."""
    return barrier_step(state, data, inbox, now, contribute=_contribution, reduce=_reduce,
                        adopt=_adopt, schema=schema)


def _reduce(state: GDState, data: LocalData, parts: list, k: int) -> bool:
    """Round ``k``'s step from all contributions (the same on every operator); True stops."""
    mem, params, pb = state.mem, state.params, state.problem
    n = pb.n_total
    G = np.sum([c["g"] for c in parts], axis=0) / n
    Fs = sum(float(c["f"]) for c in parts) / n
    x = mem["point"]
    F = Fs + pb.penalty_value(x)
    if F < mem["best_f"]:
        mem["best_f"], mem["best_w"] = F, x.copy()
    done = C.certify_round(state, parts, x)
    if params["schedule"] == "constant" and pb.curvature is not None:
        L = mem["L"]
        d = x - mem["base"]
        bound = mem["fbase"] + float(mem["gbase"] @ d) + 0.5 * L * float(d @ d)
        if L == 0.0 or Fs <= bound + 1e-12 * abs(mem["fbase"]):
            mem["base"], mem["gbase"], mem["fbase"] = x, G, Fs
            L = _first_L(pb, params) if L == 0.0 else L * params["shrink"]
            accepted = True
        else:
            L, accepted = 2.0 * L, False
        mem["L"] = L
        new = _trial(pb, mem["base"], mem["gbase"], L)
        if accepted and not state.certify:  # no certificate: the gradient-mapping test
            gm = L * float(np.linalg.norm(new - mem["base"]))
            if mem["gm0"] is None:
                mem["gm0"] = max(gm, 1e-300)
            done = gm <= params["tol"] * mem["gm0"]
    else:
        if params["schedule"] == "invsqrt":
            eta = params["eta0"] / math.sqrt(k + 1.0)
        else:
            r0 = math.sqrt(2.0 / pb.alpha) if (pb.penalty == K.L2 and pb.alpha > 0) else 1.0
            eta = r0 / (max(math.sqrt(pb.row_scale), 1e-12) * math.sqrt(k + 1.0))
        new = pb.prox(x - eta * G, eta)
        mem["base"] = new  # no line search: the state is the point itself (L = 0)
    if params["max_iter"] is not None and k + 1 >= params["max_iter"]:
        done = True
    mem["point"] = new
    return done


def schema(problem: Problem) -> tuple[dict, dict]:
    """Barrier messages: this round's and the last round's contributions (`_contribution`)."""
    vec = ("float64", (problem.p,))
    fields = {"g": vec, "f": float, "base": vec, "gbase": vec, "fbase": float, "L": float}
    if problem.fit_intercept:
        fields.update(cert=bool, side=("float64", (C.side_len(problem),)),
                      side_g=("float64", (problem.n_features,)))
    return Barrier.schema(fields)


def resume(state: GDState, data: LocalData, start: Start) -> GDState:
    """Start the iteration at the saved model."""
    w = np.array(start.w, dtype=np.float64)
    state.mem["base"], state.mem["point"] = w, w.copy()
    return state


def snapshot(state: GDState) -> dict:
    """The certified point, else the last accepted one (smooth losses: monotone) or the best
    one seen (hinge); with the latest duality gap once there is one."""
    mem, pb = state.mem, state.problem
    if mem["certified"] is not None:
        w = mem["certified"]
    elif state.params["schedule"] == "constant" and pb.curvature is not None:
        w = mem["base"]
    elif np.isfinite(mem["best_f"]):
        w = mem["best_w"]
    else:
        w = mem["point"]
    snap = {"w": w.copy(), "k": int(mem["k"])}
    if np.isfinite(mem["gap"]) and np.array_equal(mem.get("gap_w"), w):  # the gap of this model
        snap.update(gap=float(mem["gap"]), rel_gap=float(mem["rel_gap"]))
    return snap


ALGORITHM = Algorithm("gd", init, local_step, snapshot, latest_model, DEFAULTS,
                      deterministic=True, uses_tol=True, schema=schema, resume=resume,
                      sample_weight=True, warm_up=warm_up)
