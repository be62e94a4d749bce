"""``lp-hinge``: hinge-l1 as the linear program it is, by row and column generation, certified.

With the l1 penalty the hinge problem is the LP::

    min  sum_i xi_i + alpha n sum_j (w+_j + w-_j)
    s.t. xi_i + y_i (x_i^T (w+ - w-) + b) >= 1,   xi, w+, w- >= 0   (b free)

whose row duals ``s_i in [0, 1]`` are the hinge's dual variables. Its optimum is a
vertex with few nonzero coefficients and few rows on the margin (reuters: 651 of
8,315 and 711 of 7,770), so a *restricted master* over a working set of rows ``R``
and columns ``J`` has the optimum of the whole. Two barrier rounds an iteration
(`_barrier.Barrier`):

A. every partition sends, at the common ``(w, s)``, its hinge sum, its share of the
   pricing vector ``A_k^T (y s)`` (per class with an intercept) and the rows of its
   own that the model violates (``y_i x_i^T w + b < 1``) and the master lacks, the
   most violated first. Summed, the pricing vector gives every column's reduced cost
   ``alpha n - |sum_i s_i y_i x_ij|`` and, scaled into ``||A^T(y s)||_inf <= alpha n``
   (classes balanced when there is an intercept), a dual point: the certified gap
   ``P(w) - D(s)``; the fit stops when ``gap / P(w) <= tol``. Partition 0, the
   *leader*, adds the new rows and the most violated columns to its master and
   re-solves it (`_lp_master.Master`: HiGHS' interior-point method on the master's
   dual form; rows and columns idle for ``drop_after`` solves leave it);
B. the leader sends the master's ``w``, the nonzero ``s_i`` (by global row) and the
   rows that left the master; everyone adopts ``w`` and ``s``, and a partition whose
   row left may send it again when it is violated.

Rows outside ``R`` count as satisfied in the master and columns outside ``J`` as
zero, so the master's ``w`` is no more than a guess until no row and no column is
violated -- then it is the LP's optimum to the IPM's tolerance, and if ``tol`` is not
met yet the master is solved once more with crossover (a vertex: the LP optimum to
HiGHS' tolerances).
The certificate never trusts the master: it is computed from the data at ``w``
and the ``s`` actually used.

A restarted leader starts a new master (the epoch in its messages tells the others
to send their violated rows again); any restarted operator takes ``w`` from its
peers' messages. Scaling: the leader holds ``R``'s rows, the pricing vector is
dense (``d`` floats per partition a round), so this suits problems whose optimum
has at most a few thousand support rows and coefficients.

References
----------
G. B. Dantzig, P. Wolfe, "Decomposition principle for linear programs", 1960 (column
generation). P. S. Bradley, O. L. Mangasarian, "Feature selection via concave
minimization and support vector machines", ICML 1998 (the l1-SVM as an LP).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from . import _kernels as K
from ._barrier import Barrier, barrier_step, latest_model
from ._base import Algorithm, LocalData, Problem, Start, StepOutput
from ._certificate import certified
from ._lp_master import Master, highspy

__all__ = ["ALGORITHM", "LPState", "init", "local_step"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    "tol": 1e-6,  # stop when the certified relative duality gap is below this
    "max_iter": None,  # master solves
    "cols_per_round": 200,  # columns the leader adds per round (most violated first; reuters,
    # IPM master, one process: 200 and 200 certified in 13 rounds, 100 and 100 in 22, 300 and
    # 300 in 13 with a larger master, 2026-11-30)
    "rows_per_round": 200,  # violated rows added per round, over all partitions
    "drop_after": 3,  # master solves a row / column stays idle before it leaves (0: never;
    # reuters: 1 cycles, 2 took 18 rounds, 3 took 13)
    "threads": 1,  # HiGHS threads on the leader
    "resend_after": 0.1,
    "rejoin_wait": 0.5,
    "poll_wait": 0.02,
}

_A, _B = 0, 1


class LPState(NamedTuple):
    problem: Problem
    params: dict
    barrier: Barrier
    rows: sp.csr_matrix  # the partition's rows times y_i (``y_i x_i``)
    cols: sp.csc_matrix  # the same, column-wise (pricing)
    mem: dict  # k, it, w, s, sent, epoch, gap, rel_gap, primal, own, master (leader)


def validate(problem: Problem, params: dict) -> None:
    """Only hinge-l1 with ``alpha > 0`` is a linear program of this form."""
    if problem.loss != K.HINGE or problem.penalty != K.L1:
        raise ValueError("solver 'lp-hinge' supports penalty='l1' with loss='hinge' only (the "
                         "linear program); use 'prox-newton' for the others")
    if not problem.alpha > 0.0:
        raise ValueError(f"solver 'lp-hinge' needs alpha > 0, got {problem.alpha!r}")


def init(problem: Problem, data: LocalData, params: dict) -> LPState:
    validate(problem, params)
    for key in ("cols_per_round", "rows_per_round"):
        if int(params[key]) < 1:
            raise ValueError(f"lp-hinge needs {key} >= 1, got {params[key]!r}")
    if int(params["drop_after"]) < 0:
        raise ValueError(f"lp-hinge needs drop_after >= 0, got {params['drop_after']!r}")
    X = data.X
    mat = (sp.csr_matrix(X, shape=(data.n, problem.n_features)) if isinstance(X, tuple)
           else sp.csr_matrix(X))
    rows = sp.csr_matrix(sp.diags(data.y) @ mat)
    rows.sort_indices()
    offset = int(sum(problem.sizes[: data.index]))
    mem = {"k": 0, "it": 0, "w": np.zeros(problem.p), "s": np.ones(data.n),
           "sent": np.zeros(data.n, dtype=bool), "offset": offset,
           "epoch": 0 if data.incarnation == 0 else -1,  # the leader's master it sends to
           "gap": np.inf, "rel_gap": np.inf, "primal": np.inf, "own": None, "prev_own": None,
           "phase": "run" if data.incarnation == 0 else "rejoin", "started": None,
           "master": None, "added": 0}
    if data.index == 0:  # the leader: its master LP is built in its first reduction
        highspy()  # (a HiGHS model does not pickle; the runtime may copy the state before)
        mem["lead_epoch"] = data.incarnation
    return LPState(problem, params, Barrier(data.index, data.n_partitions), rows, rows.tocsc(),
                   mem)


# ---------------------------------------------------------------------- contributions
def _round_a(state: LPState, data: LocalData) -> dict:
    """Hinge sum, pricing shares and the violated rows the master lacks, at ``(w, s)``."""
    pb, mem, params = state.problem, state.mem, state.params
    w, s = mem["w"], mem["s"]
    m = state.rows @ w[: pb.n_features]
    if pb.fit_intercept:
        m = m + data.y * w[-1]
    out = {"w": w.copy(), "loss": float(np.maximum(1.0 - m, 0.0).sum())}
    pos = data.y > 0
    if pb.fit_intercept:  # per class, so that the reduction can balance them
        out["rp"] = np.asarray(state.cols.T @ np.where(pos, s, 0.0))
        out["rm"] = np.asarray(state.cols.T @ np.where(pos, 0.0, s))
        out["sp"], out["sm"] = float(s[pos].sum()), float(s[~pos].sum())
    else:
        out["rp"] = np.asarray(state.cols.T @ s)
        out["sp"], out["sm"] = float(s.sum()), 0.0
    share = max(1, int(np.ceil(params["rows_per_round"] * data.n / pb.n_total)))
    viol = np.flatnonzero((m < 1.0 - 1e-9) & ~mem["sent"])
    if viol.size:
        viol = viol[np.lexsort((_tie(data, viol), m[viol]))][:share]
        viol.sort()
        sub = state.rows[viol]
        mem["sent"][viol] = True
        out.update(ri=((viol + mem["offset"] + 1) * np.sign(data.y[viol])).astype(np.int64),
                   rptr=sub.indptr.astype(np.int64), rj=sub.indices.astype(np.int64),
                   rv=_column(sub.data))
    return out


def _tie(data: LocalData, idx: np.ndarray) -> np.ndarray:
    """A tie-break among equally violated rows (at ``w = 0`` all are): classes alternate."""
    key = np.empty(idx.size)
    for cls in (True, False):
        sel = (data.y[idx] > 0) == cls
        key[sel] = np.arange(int(sel.sum()))
    return key


def _round_b(state: LPState, data: LocalData) -> dict:
    """The leader's master solution (``w`` and the nonzero ``s`` by global row)."""
    mem = state.mem
    out = {"w": mem["w"].copy()}
    if data.index == 0:
        nz = np.flatnonzero(mem["s_master"] > 0.0)
        out.update(si=mem["s_ids"][nz].astype(np.int64), sv=_column(mem["s_master"][nz]),
                   epoch=int(mem["lead_epoch"]),
                   left=np.asarray(mem.get("left", ()), dtype=np.int64))
    return out


def _column(values: np.ndarray) -> np.ndarray:
    """Floats of any count on the wire: a column with one padding entry, ``(m + 1, 1)``.

    The schema can check its rank and width (a flat or transposed copy is refused), which
    a flat array of any length would not give."""
    return np.append(np.asarray(values, dtype=np.float64), 0.0)[:, None]


def _flat(column) -> np.ndarray:
    """The floats `_column` packed."""
    return np.asarray(column, dtype=np.float64)[:-1, 0]


def _contribution(state: LPState, data: LocalData) -> dict:
    return _round_a(state, data) if state.mem["k"] % 2 == _A else _round_b(state, data)


# ---------------------------------------------------------------------- reductions
def _gather_a(state: LPState, data: LocalData, parts: list) -> bool:
    """Certificate from the sums; the leader grows and re-solves its master. True: certified."""
    pb, mem, params = state.problem, state.mem, state.params
    n, d = pb.n_total, pb.n_features
    w = mem["w"]
    rp = np.sum([np.asarray(c["rp"]) for c in parts], axis=0)
    sp_, sm = sum(float(c["sp"]) for c in parts), sum(float(c["sm"]) for c in parts)
    fp = fm = 1.0
    if pb.fit_intercept:  # the dual needs sum s_i y_i = 0: shrink the larger class
        rm = np.sum([np.asarray(c["rm"]) for c in parts], axis=0)
        if sp_ > sm:
            fp = sm / sp_
        elif sm > sp_:
            fm = sp_ / sm
        r = fp * rp + fm * rm
    else:
        r = rp
    ssum = fp * sp_ + fm * sm
    top = float(np.abs(r).max()) if d else 0.0
    scale = 1.0 if top <= pb.alpha * n else pb.alpha * n / top
    dual = scale * ssum / n
    primal = sum(float(c["loss"]) for c in parts) / n + pb.penalty_value(w)
    mem["primal"], mem["gap"] = primal, max(primal - dual, 0.0)
    mem["rel_gap"] = mem["gap"] / max(abs(primal), 1e-300)
    if certified(mem["rel_gap"], params["tol"]):
        return True
    if data.index != 0:
        return False
    if mem["master"] is None:
        mem["master"] = Master(pb, params["threads"], params["drop_after"])
    master = mem["master"]
    # columns: the most violated reduced costs outside J (fm/fp-balanced duals price them)
    viol = np.flatnonzero((np.abs(r) > pb.alpha * n * (1.0 + 1e-9)) & ~master.in_j)
    if viol.size:
        viol = viol[np.argsort(-np.abs(r[viol]), kind="stable")][: params["cols_per_round"]]
        master.add_columns(np.sort(viol))
    for c in parts:
        if "ri" in c and len(c["ri"]):
            signed = np.asarray(c["ri"], dtype=np.int64)  # (global id + 1) * y_i
            rows = sp.csr_matrix((_flat(c["rv"]), np.asarray(c["rj"]), np.asarray(c["rptr"])),
                                 shape=(signed.size, d))
            master.add_rows(np.abs(signed) - 1, rows, np.sign(signed).astype(np.float64))
    if master.changed or not master.exact:  # nothing new: a vertex (crossover) once
        w_new, ids, s, left = master.solve(exact=not master.changed)
        mem["s_ids"], mem["s_master"], mem["left"] = ids, s, left
        mem["w"] = w_new
    else:
        mem["left"] = np.zeros(0, dtype=np.int64)
    return False


def _gather_b(state: LPState, data: LocalData, parts: list) -> bool:
    """Everyone adopts the leader's ``w`` and its own rows' ``s``."""
    mem, lead = state.mem, parts[0]
    mem["w"] = np.array(lead["w"], dtype=np.float64)
    epoch = int(lead.get("epoch", mem["epoch"]))
    if epoch != mem["epoch"]:  # a new master (a restarted leader): send violated rows again
        mem["sent"][:] = False
        mem["epoch"] = epoch
    if "left" in lead:  # rows that left the master: sent again if they are violated
        ids = np.asarray(lead["left"], dtype=np.int64) - mem["offset"]
        mem["sent"][ids[(ids >= 0) & (ids < data.n)]] = False
    s = np.zeros(data.n)
    if "si" in lead:
        ids = np.asarray(lead["si"], dtype=np.int64) - mem["offset"]
        own = (ids >= 0) & (ids < data.n)
        s[ids[own]] = _flat(lead["sv"])[own]
    mem["s"] = s
    mem["it"] += 1
    max_iter = state.params["max_iter"]
    return max_iter is not None and mem["it"] >= max_iter


def _reduce(state: LPState, data: LocalData, parts: list, k: int) -> bool:
    # the barrier resends this contribution as the previous round's: the rows stay behind
    mem = state.mem
    mem["own"] = {key: v for key, v in mem["own"].items()
                  if key not in ("w", "ri", "rptr", "rj", "rv")}
    if k % 2 == _A:
        return _gather_a(state, data, parts)
    return _gather_b(state, data, parts)


def _adopt(state: LPState, data: LocalData, k: int, fields: dict) -> None:
    """A restarted operator joins its peers' lowest round with the iterate they sent."""
    mem = state.mem
    mem["k"], mem["it"] = k, k // 2
    if "w" in fields:
        mem["w"] = np.array(fields["w"], dtype=np.float64)
    mem["s"] = np.zeros(data.n)  # its duals are lost: a weaker, still valid, dual point
    if k % 2 == _B and data.index == 0:  # the leader has no solution to send: keep w
        mem["s_ids"], mem["s_master"] = np.zeros(0, dtype=np.int64), np.zeros(0)
        mem["left"] = np.zeros(0, dtype=np.int64)


def local_step(state: LPState, data: LocalData, inbox, now: float) -> StepOutput:
    """Wait for this round's contributions; when all are in, reduce and push the next round's."""
    return barrier_step(state, data, inbox, now, contribute=_contribution, reduce=_reduce,
                        adopt=_adopt)


# ---------------------------------------------------------------------- the rest
def schema(problem: Problem) -> tuple[dict, dict]:
    """Barrier messages: round A's sums and rows, round B's master solution."""
    p, d = problem.p, problem.n_features
    fields = {"w": ("float64", (p,)), "loss": float, "rp": ("float64", (d,)),
              "rm": ("float64", (d,)), "sp": float, "sm": float, "ri": ("int64", (None,)),
              "rptr": ("int64", (None,)), "rj": ("int64", (None,)), "rv": ("float64", (None, 1)),
              "si": ("int64", (None,)), "sv": ("float64", (None, 1)), "epoch": int,
              "left": ("int64", (None,))}
    required = {"k": int, "has_prev": bool}
    optional = {f"{pre}_{key}": v for key, v in fields.items() for pre in ("c", "p")}
    return required, optional


def resume(state: LPState, data: LocalData, start: Start) -> LPState:
    """Start at the saved model (its duals are unknown: all rows count as violated)."""
    state.mem["w"] = np.array(start.w, dtype=np.float64)
    return state


def snapshot(state: LPState) -> dict:
    """The current iterate (the certified one once the fit stopped on ``tol``) and its gap."""
    mem = state.mem
    master = mem["master"]
    return {"w": mem["w"].copy(), "k": int(mem["k"]), "n_iter": int(mem["it"]),
            "gap": float(mem["gap"]), "rel_gap": float(mem["rel_gap"]),
            "primal": float(mem["primal"]),
            "lp_iters": 0 if master is None else int(master.iters),
            "lp_left": 0 if master is None else int(master.dropped_r.sum()
                                                    + master.dropped_j.sum()),
            "lp_exact": master is not None and bool(master.exact)}


ALGORITHM = Algorithm("lp-hinge", init, local_step, snapshot, latest_model, DEFAULTS,
                      deterministic=True, uses_tol=True, schema=schema, resume=resume,
                      validate=validate)
