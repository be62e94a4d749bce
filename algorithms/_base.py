"""The shape every algorithm has: the problem, the local data, and ``init`` / ``local_step`` / ``combine``.

An algorithm is the math only (in the spirit of optax's ``init``/``update``
pairs): a small named bundle of functions that the generic operator
(`asip.algorithms._operator.SolverOperator`) drives on the asip runtime, which
owns the loop, the messages, the clock and failures::

    state = init(problem, data, params)
    state = resume(state, data, start)                  # optional: warm start (`Start`)
    state, out = local_step(state, data, inbox, now)   # repeated by the runtime
    snapshot(state) -> dict                             # reported and returned
    combine(problem, [snapshot or None per partition]) -> model vector
    schema(problem) -> (required, optional)             # what a peer's message may hold

``local_step`` gets the messages that arrived since the last call (objects with
``sender``, ``incarnation`` and ``payload``; `asip.Message` in production) and
returns a `StepOutput`: what to push, how long the runtime may block on the next
poll (barrier algorithms wait for peers), and whether the algorithm is done.
State is a NamedTuple whose arrays ``local_step`` may update in place (numba
kernels work in place); callers treat the state passed in as consumed.

``schema`` describes the payloads the algorithm pushes -- keys mapped to
``int``/``float``/``bool``/``str`` or ``("float64", shape)`` -- so that the
runtime can reject a message of the wrong shape, dtype or with a NaN/inf
before it reaches ``local_step`` (plain data: algorithms import nothing from
the runtime). ``resume`` starts a fresh state from a saved model: the combined
model and, when the partitioning matches, every partition's last snapshot.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple

import numpy as np

from . import _kernels as K
from ._losses import CURVATURE

__all__ = ["Algorithm", "LocalData", "Outgoing", "Problem", "RowNorms", "Start", "StepOutput",
           "local_data", "make_problem"]

logger = logging.getLogger(__name__)

class Problem(NamedTuple):
    """What is minimized, and how the data is spread (the same for every partition).

    ``f(w) = (1/n_total) sum phi(a_i^T w + b, y_i) + R(w)``; see `_objectives`.
    """

    loss: int  # kernel code, `_kernels.LOGISTIC` / `HINGE` / `SQUARED`
    penalty: int  # `_kernels.L2` / `L1`
    alpha: float
    fit_intercept: bool
    n_features: int
    sizes: tuple[int, ...]  # rows per partition
    sq_mean: float = 1.0  # mean ||a_i||^2 over all rows (no intercept): sets default steps
    sq_max: float = 1.0  # max ||a_i||^2 over all rows

    @property
    def row_scale(self) -> float:
        """Mean ``||[a_i, 1]||^2`` over all rows: the scale step-size defaults are built on."""
        return self.sq_mean + float(self.fit_intercept)

    @property
    def n_total(self) -> int:
        return int(sum(self.sizes))

    @property
    def n_partitions(self) -> int:
        return len(self.sizes)

    @property
    def p(self) -> int:
        """Length of a model vector (coefficients, then the intercept if any)."""
        return self.n_features + int(self.fit_intercept)

    @property
    def curvature(self) -> float | None:
        """Bound on the loss's second derivative in the margin; None for hinge."""
        return CURVATURE[self.loss]

    @property
    def mu(self) -> float:
        """Strong convexity of the penalty (alpha for l2, 0 for l1)."""
        return self.alpha if self.penalty == K.L2 else 0.0

    def penalty_value(self, w: np.ndarray) -> float:
        """``R(w)`` of a model vector (the intercept is never penalized)."""
        coef = np.asarray(w, dtype=np.float64)[: self.n_features]
        if self.penalty == K.L2:
            return 0.5 * self.alpha * float(coef @ coef)
        return self.alpha * float(np.abs(coef).sum())

    def prox(self, w: np.ndarray, step: float) -> np.ndarray:
        """``prox_{step R}`` of a model vector, as a new array (intercept untouched)."""
        out = np.array(w, dtype=np.float64)
        K.prox_inplace(out, self.n_features, self.penalty, self.alpha, step)
        return out


class RowNorms:
    """``||[a_i, 1]||^2`` of a partition's rows, computed on first use and kept.

    Only some solvers read them (SDCA-type steps, ADMM's local solver): a gradient solver
    such as lbfgs never does, and the pass cost each operator's setup ~25 ms at 500k rows
    x 30 nonzeros. Shared by the copies `LocalData._replace` makes; one that replaces ``X``
    passes ``norms=data.norms.of(X)``.
    """

    __slots__ = ("_X", "_offset", "_value")

    def __init__(self, X, offset: float, value: np.ndarray | None = None):
        self._X, self._offset, self._value = X, float(offset), value

    def of(self, X) -> "RowNorms":
        """The same, for another kernel matrix ``X`` (``_replace(X=..., norms=...)``)."""
        return RowNorms(X, self._offset)

    def get(self) -> np.ndarray:
        if self._value is None:
            self._value = K.row_sqnorms(self._X) + self._offset
        return self._value


class LocalData(NamedTuple):
    """One partition, ready for kernels, plus who holds it."""

    X: Any  # kernel matrix: dense float64 array or CSR triple
    y: np.ndarray
    n: int
    norms: RowNorms  # ``sqn``, on first use
    index: int
    n_partitions: int
    incarnation: int
    sw: np.ndarray | None = None  # per-row weights (mean 1 over all rows), None: unweighted

    @property
    def sqn(self) -> np.ndarray:
        """``||[a_i, 1]||^2`` per row (the 1 only with an intercept), computed once."""
        return self.norms.get()

    def first_row(self) -> "LocalData":
        """This partition cut to its first row, same dtypes and layout: what a solver's
        `warm_up` runs its kernels on (numba specializes on those, not on the row count)."""
        X = self.X
        if isinstance(X, tuple):  # CSR (data, indices, indptr): the row's entries alone
            lo, hi = int(X[2][0]), int(X[2][1])
            head = (X[0][lo:hi], X[1][lo:hi], X[2][:2] - lo)
        else:
            head = X[:1]
        return self._replace(X=head, y=self.y[:1], n=1, norms=self.norms.of(head),
                             sw=None if self.sw is None else self.sw[:1])


def make_problem(loss: int, penalty: int, alpha: float, fit_intercept: bool, parts) -> Problem:
    """A `Problem` for row blocks ``parts = [(X_block, y_block), ...]`` held in memory."""
    sizes = tuple(int(Xb.shape[0]) for Xb, _ in parts)
    sq = [np.asarray(K.row_sqnorms(K.as_kernel_matrix(Xb))) for Xb, _ in parts]
    allsq = np.concatenate(sq) if sq else np.zeros(1)
    return Problem(loss, penalty, float(alpha), bool(fit_intercept), int(parts[0][0].shape[1]),
                   sizes, float(allsq.mean()), float(allsq.max()))


def local_data(X, y, problem: Problem, index: int = 0, incarnation: int = 0,
               sw=None) -> LocalData:
    """Wrap a partition ``(X_block, y_block)`` (and its row weights ``sw``) for the kernels."""
    Xk = K.as_kernel_matrix(X)
    yk = np.ascontiguousarray(np.asarray(y, dtype=np.float64).ravel())
    n = K.n_rows(Xk)
    if n != len(yk):
        raise ValueError(f"partition {index}: X has {n} rows but y has {len(yk)}")
    if n == 0:
        raise ValueError(f"partition {index} is empty; every partition needs at least one row")
    norms = RowNorms(Xk, 1.0 if problem.fit_intercept else 0.0)  # computed if a solver asks
    if sw is not None:
        sw = np.ascontiguousarray(np.asarray(sw, dtype=np.float64).ravel())
        if len(sw) != n:
            raise ValueError(f"partition {index}: X has {n} rows but sample_weight has {len(sw)}")
    return LocalData(Xk, yk, n, norms, index, problem.n_partitions, incarnation, sw)


class Outgoing(NamedTuple):
    """A payload to push: to every peer (``to=None``) or to one partition."""

    payload: dict
    to: int | None = None


class StepOutput(NamedTuple):
    """What one ``local_step`` hands back to the operator."""

    state: Any
    outbox: tuple[Outgoing, ...] = ()
    wait: float = 0.0  # the next poll may block this long waiting for a message
    done: bool = False  # converged or out of iterations: stop the stage


class Start(NamedTuple):
    """Where a warm-started fit begins: a saved model and the snapshots it was combined from."""

    w: np.ndarray  # the combined model vector (length ``problem.p``)
    snapshots: tuple | None = None  # per partition (snapshot dict or None), if the count matches

    def own(self, index: int) -> dict | None:
        """Partition ``index``'s saved snapshot, if there is one."""
        if self.snapshots is None or not 0 <= index < len(self.snapshots):
            return None
        return self.snapshots[index]

    def total(self, key: str) -> int:
        """Sum of an integer counter (e.g. steps ``"t"``) over the saved snapshots."""
        return int(sum(int(s[key]) for s in self.snapshots or () if s is not None and key in s))


class Algorithm(NamedTuple):
    """A solver as a bundle of pure functions (see the module docstring)."""

    name: str
    init: Callable[..., Any]
    local_step: Callable[..., StepOutput]
    snapshot: Callable[[Any], dict]
    combine: Callable[[Problem, list], np.ndarray]
    defaults: dict  # hyperparameters and their defaults
    deterministic: bool = False  # same result for the same data and seed (barrier solvers)
    uses_tol: bool = False  # honours the estimator's ``tol`` as a stopping test
    schema: Callable[[Problem], tuple[dict, dict]] | None = None  # message fields (see above)
    resume: Callable[[Any, LocalData, Start], Any] | None = None  # warm start from a `Start`
    validate: Callable[[Problem, dict], None] | None = None  # raises ValueError, on the driver
    sample_weight: bool = False  # reads ``LocalData.sw`` (per-row weights in the loss sum)
    # loads the kernels before the gang starts; None: a first local_step on a copy of the state
    warm_up: Callable[[Any, LocalData], None] | None = None

    def merge(self, params: dict | None) -> dict:
        """The defaults updated by ``params``; raises ValueError naming unknown keys."""
        return merge_params(self.name, self.defaults, params)


def merge_params(algo_name: str, defaults: dict, params: dict | None) -> dict:
    """``defaults`` updated by ``params``; raises ValueError naming unknown keys."""
    params = dict(params or {})
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)} for solver {algo_name!r}; "
            f"valid ones are {sorted(defaults)}"
        )
    out = dict(defaults)
    out.update(params)
    return out


def mean_of(snapshots: list, key: str) -> np.ndarray | None:
    """Mean of ``snapshot[key]`` over the partitions that returned one."""
    vals = [np.asarray(s[key], dtype=np.float64) for s in snapshots if s is not None and key in s]
    if not vals:
        return None
    return np.mean(vals, axis=0)


def resume_average(xsum: np.ndarray, wsum: np.ndarray, own: dict | None, w0: np.ndarray,
                   weight: float) -> None:
    """Restart an iterate average ``xsum / wsum`` at the saved one (``own["w"]``, else ``w0``)."""
    avg = own.get("w") if own is not None else None
    avg = w0 if avg is None or np.shape(avg) != w0.shape else np.asarray(avg, dtype=np.float64)
    xsum[:] = weight * avg
    wsum[0] = weight


def slice_target(step_time: float, data: "LocalData", p: int) -> float:
    """The time slice of a stochastic ``local_step``: ``step_time``, longer for wide sparse data.

    On CSR data the steps cost O(nnz) but each kernel call makes the model
    current once, O(p): the slice is at least ``2e-8 * p`` s (20 ms at
    ``p = 10^6``) so that this once-per-call cost stays a small share.
    """
    if isinstance(data.X, tuple):
        return max(float(step_time), 2e-8 * p)
    return float(step_time)


def latest_of(snapshots: list, clock: str) -> dict | None:
    """The snapshot with the largest ``clock`` (e.g. iteration counter)."""
    best = None
    for s in snapshots:
        if s is not None and clock in s and (best is None or s[clock] > best[clock]):
            best = s
    return best


class AdaptiveCount:
    """How many inner iterations fit in a time slice: doubled/halved towards ``target`` s.

    Keeps each ``local_step`` short (the runtime checks stop flags and carries out
    faults between steps) without a per-iteration Python round trip.
    """

    __slots__ = ("count", "target")

    def __init__(self, target: float, start: int = 16):
        self.target = target
        self.count = start

    def update(self, elapsed: float) -> None:
        if elapsed < 0.5 * self.target and self.count < 1 << 22:
            self.count *= 2
        elif elapsed > 2.0 * self.target and self.count > 1:
            self.count //= 2
