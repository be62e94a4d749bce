"""``lbfgs``: synchronous distributed L-BFGS on the all-reduced gradient (smooth losses, l2).

Where the data is big and the loss smooth, a quasi-Newton step on the whole gradient needs
far fewer data passes than local stochastic epochs: at 1M rows x 10^5 features (30 nonzeros
a row, alpha = 1/n) scikit-learn's lbfgs reaches 1e-3 in ~15 sequential gradient passes,
where asip-svrg needs ~10 epochs of random-access steps, each ~4x a gradient pass. Here every
operator evaluates the loss and gradient sums of its rows at the same point and all-reduces
them over the channel (`_barrier`, as ``gd``), so each takes the identical L-BFGS step: the
two-loop direction from the last ``memory`` pairs, a backtracking (Armijo) line search from a
unit step, one round per trial point. A pair with ``s^T y <= 0`` is skipped; a direction that
is not a descent direction restarts the memory.

Stopping: certified, as ``gd``: each round's sums give a duality gap at the evaluated point
for free (`_primal_cert`), and the stage stops when ``gap / |P| <= tol``. A restarted
operator says hello and joins at its peers' round and point with their memory and line
search, from their answers (`_barrier`'s handover: a killed fit takes the fault-free
fit's rounds). Without an answer within ``rejoin_wait`` it joins from a peer's re-push (a
round's first push carries only the gradient sums, `_barrier`'s lean messages) with an
empty memory; its contribution says so (``fresh``), and then every operator clears its
memory and takes that point as the new base, so all keep deciding on the same numbers.

References
----------
J. Nocedal, S. Wright, "Numerical Optimization", 2nd ed., Springer 2006, algorithm 7.4.
"""

from __future__ import annotations

import logging

import numpy as np

from . import _kernels as K
from . import _newton_cert as NC
from . import _primal_cert as C
from . import _weights as W
from ._barrier import Barrier, BarrierState, barrier_step, latest_model
from ._base import Algorithm, LocalData, Problem, Start, StepOutput

__all__ = ["ALGORITHM", "LbfgsState", "two_loop"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    "memory": 10,  # (s, y) pairs kept
    "armijo": 1e-4,  # sufficient decrease: F(x + t d) <= F(x) + armijo t g^T d
    "tol": 1e-6,  # stop when the relative duality gap is below this
    "hessian_cert": "auto",  # also certify by the Hessian (`_newton_cert`): True, False, "auto"
    "cert_every": 5,  # with an intercept: rounds between certificates (each one extra pass)
    "max_iter": None,  # rounds (gradient passes)
    "resend_after": 0.1,
    "rejoin_wait": 0.5,
    "poll_wait": 0.02,
}


#: contribution fields only a restarted operator reads: left out of a round's first push
#: (`_barrier` lean messages; at 10^5 features a push is 0.8 MB instead of 3.2 MB)
REJOIN_ONLY = ("x",)

#: mem: k, own, prev_own, phase, started, point, base, fbase, gbase, d, t, S, Y, fresh; the
#: certificate: best_dual, gap, rel_gap, certified
LbfgsState = BarrierState


def validate(problem: Problem, params: dict) -> None:
    """Raise ValueError for what lbfgs cannot solve (checked on the driver, before launch)."""
    if problem.curvature is None or (problem.penalty != K.L2 and problem.alpha != 0.0):
        raise ValueError("solver 'lbfgs' needs a smooth loss (log_loss or squared_error) and "
                         "the l2 penalty; for hinge use 'asip-cocoa', for l1 'prox-newton'")
    if params["hessian_cert"] not in (True, False, "auto"):
        raise ValueError(f"solver 'lbfgs' needs hessian_cert True, False or 'auto', got "
                         f"{params['hessian_cert']!r}")
    if not int(params["memory"]) >= 1 or not 0.0 < params["armijo"] < 0.5:
        raise ValueError(f"solver 'lbfgs' needs memory >= 1 and 0 < armijo < 0.5, got "
                         f"{params['memory']!r} and {params['armijo']!r}")


def init(problem: Problem, data: LocalData, params: dict) -> LbfgsState:
    validate(problem, params)
    p = problem.p
    mem = {"k": 0, "own": None, "prev_own": None, "started": None,
           "phase": "run" if data.incarnation == 0 else "rejoin",
           "point": np.zeros(p), "base": None, "fbase": 0.0, "gbase": None, "d": None,
           "t": 1.0, "S": [], "Y": [], "fresh": data.incarnation > 0,
           "best_dual": -np.inf, "gap": np.inf, "rel_gap": np.inf, "certified": None,
           "h_ok": NC.usable(problem, isinstance(data.X, np.ndarray))}
    return LbfgsState(problem, params, Barrier(data.index, data.n_partitions), np.zeros(p), mem,
                      C.certifiable(problem, data.sw is not None))


def two_loop(g: np.ndarray, S: list, Y: list) -> np.ndarray:
    """``-H g`` for the L-BFGS inverse-Hessian estimate ``H`` of the pairs ``(S, Y)``, oldest
    first (``H_0 = s^T y / y^T y`` of the newest pair; the identity without pairs)."""
    q = g.copy()
    rhos = [1.0 / float(s @ y) for s, y in zip(S, Y)]
    alphas = []
    for s, y, rho in zip(reversed(S), reversed(Y), reversed(rhos)):
        a = rho * float(s @ q)
        q -= a * y
        alphas.append(a)
    if S:
        q *= float(S[-1] @ Y[-1]) / float(Y[-1] @ Y[-1])
    for s, y, rho, a in zip(S, Y, rhos, reversed(alphas)):
        b = rho * float(y @ q)
        q += (a - b) * s
    return -q


def _contribution(state: LbfgsState, data: LocalData) -> dict:
    pb, mem = state.problem, state.mem
    f = W.loss_grad(data, mem["point"], pb.loss, pb.fit_intercept, state.grad)  # row weights
    out = {"g": state.grad.copy(), "f": float(f), "x": mem["point"].copy(),
           "fresh": bool(mem["fresh"]), "nmem": len(mem["S"])}
    # the intercept's certificate sums, every cert_every rounds
    out.update(C.round_side(pb, data, mem["point"], state.certify, mem["k"],
                            state.params["cert_every"]))
    out.update(NC.contribution(pb, data, mem, mem["point"]))  # when asked: the Hessian
    mem["fresh"] = False
    return out


def _adopt(state: LbfgsState, data: LocalData, k: int, fields: dict) -> bool:
    """A restarted operator takes a peer's round and point, and the memory and line search
    every operator holds alike when the peer handed them over (`_handover`: then no
    operator restarts its memory); else an empty memory, which every operator then
    starts afresh. False while the peer's message lacks its point (a lean push: its
    re-push will carry it)."""
    if "x" not in fields:
        return False
    mem = state.mem
    mem["k"] = k
    mem["point"] = np.array(fields["x"], dtype=np.float64)
    h = fields.get("handover")
    if h is None or "base" not in h:
        mem["base"], mem["S"], mem["Y"], mem["fresh"] = None, [], [], True
        return True
    vec = {key: np.array(h[key], dtype=np.float64) for key in ("base", "gbase", "d")}
    mem.update(vec, fbase=float(h["fbase"]), t=float(h["t"]), fresh=False,
               S=[np.array(s, dtype=np.float64) for s in h["S"]],
               Y=[np.array(y, dtype=np.float64) for y in h["Y"]])
    return True


def _handover(state: LbfgsState) -> dict:
    """What a restarted peer needs to take the next step with everyone else: the L-BFGS
    memory and line search (the same on every operator). Nothing before the first step."""
    mem, p = state.mem, state.problem.p
    if mem["base"] is None:
        return {}
    pairs = {key: np.array(mem[key], dtype=np.float64).reshape(len(mem[key]), p)
             for key in ("S", "Y")}
    return dict(pairs, base=mem["base"], gbase=mem["gbase"], d=mem["d"],
                fbase=float(mem["fbase"]), t=float(mem["t"]))


def warm_up(state: LbfgsState, data: LocalData) -> None:
    """Load (or compile) a round's kernels on the partition's first row, before the gang
    starts (the default warm-up, a first `local_step`, is a whole gradient pass): the
    gradient, the intercept's certificate sums and, where the Hessian certificate may be
    asked for, the local Hessian -- on a fresh install the certificate's kernels compiled
    inside the run (1.3 s a worker at load 11, in a 1.8 s fit)."""
    one = data.first_row()
    trial = state._replace(grad=np.zeros_like(state.grad),
                           mem=dict(state.mem, k=0, want_h=state.mem["h_ok"]))
    _contribution(trial, one)


def local_step(state: LbfgsState, data: LocalData, inbox, now: float) -> StepOutput:
    """Wait for round ``k``'s contributions; when all are in, step and push round ``k+1``'s."""
    return barrier_step(state, data, inbox, now, contribute=_contribution, reduce=_reduce,
                        adopt=_adopt, lean=REJOIN_ONLY, schema=schema, handover=_handover)


def _reduce(state: LbfgsState, data: LocalData, parts: list, k: int) -> bool:
    """Round ``k``: accept or shorten the trial step, then the next trial point (the same on
    every operator); True stops."""
    mem, params, pb = state.mem, state.params, state.problem
    n = pb.n_total
    x = mem["point"]
    G = np.sum([c["g"] for c in parts], axis=0) / n
    G[: pb.n_features] += pb.alpha * x[: pb.n_features]  # the l2 term (intercept free)
    F = sum(float(c["f"]) for c in parts) / n + pb.penalty_value(x)
    done = C.certify_round(state, parts, x)
    if mem.get("gap_w") is x:  # the objective where the gap was taken: the model's own value
        mem["gap_primal"] = F
    done = done or NC.certify(state, parts, x, G, F)  # the Hessian's bound, when tighter
    restart = any(c["fresh"] for c in parts) or len({int(c["nmem"]) for c in parts}) > 1
    if restart:
        mem["S"], mem["Y"] = [], []
    if mem["base"] is None or restart:
        accept = True
    else:
        accept = F <= mem["fbase"] + params["armijo"] * mem["t"] * float(mem["gbase"] @ mem["d"])
    if accept:
        if mem["base"] is not None and not restart:
            s, y = x - mem["base"], G - mem["gbase"]
            if float(s @ y) > 1e-12 * float(s @ s):
                mem["S"].append(s)
                mem["Y"].append(y)
                if len(mem["S"]) > int(params["memory"]):
                    del mem["S"][0], mem["Y"][0]
        mem["base"], mem["fbase"], mem["gbase"] = x, F, G
        d = two_loop(G, mem["S"], mem["Y"])
        if not float(G @ d) < 0.0:  # not a descent direction: forget the pairs
            mem["S"], mem["Y"] = [], []
            d = -G
        mem["d"] = d
        mem["t"] = 1.0 if mem["S"] else 1.0 / max(float(np.linalg.norm(G)), 1e-300)
    else:
        mem["t"] *= 0.5
        if mem["t"] < 1e-20:  # the line search found nothing: steepest descent, fresh memory
            mem["S"], mem["Y"] = [], []
            mem["d"] = -mem["gbase"]
            mem["t"] = 1.0 / max(float(np.linalg.norm(mem["gbase"])), 1e-300)
    mem["point"] = mem["base"] + mem["t"] * mem["d"]
    NC.plan(state, parts, F, k)
    if params["max_iter"] is not None and k + 1 >= params["max_iter"]:
        done = True
    return done


def schema(problem: Problem) -> tuple[dict, dict]:
    """Barrier messages: this round's and the last round's contributions (`_contribution`)."""
    vec = ("float64", (problem.p,))
    fields = {"g": vec, "f": float, "x": vec, "fresh": bool, "nmem": int}
    if problem.fit_intercept:
        fields.update(cert=bool, side=("float64", (C.side_len(problem),)),
                      side_g=("float64", (problem.n_features,)))
    fields.update(NC.fields_schema(problem))
    pairs = ("float64", (None, problem.p))
    handover = {"S": pairs, "Y": pairs, "base": vec, "gbase": vec, "d": vec, "fbase": float,
                "t": float}
    return Barrier.schema(fields, optional=REJOIN_ONLY + NC.FIELDS, handover=handover)


def resume(state: LbfgsState, data: LocalData, start: Start) -> LbfgsState:
    """Start the iteration at the saved model."""
    state.mem["point"] = np.array(start.w, dtype=np.float64)
    return state


def snapshot(state: LbfgsState) -> dict:
    """The certified point, else the last accepted one; with its duality gap and objective
    value (``objective_w``) once known."""
    mem = state.mem
    w = mem["certified"] if mem["certified"] is not None else (
        mem["base"] if mem["base"] is not None else mem["point"])
    snap = {"w": w.copy(), "k": int(mem["k"])}
    if np.isfinite(mem["gap"]) and np.array_equal(mem.get("gap_w"), w):
        snap.update(gap=float(mem["gap"]), rel_gap=float(mem["rel_gap"]))
        if "gap_primal" in mem:  # the objective at w: the fit's trace needs no pass for it
            snap["objective_w"] = float(mem["gap_primal"])
    return snap


ALGORITHM = Algorithm("lbfgs", init, local_step, snapshot, latest_model, DEFAULTS,
                      deterministic=True, uses_tol=True, schema=schema, resume=resume,
                      validate=validate, sample_weight=True, warm_up=warm_up)
