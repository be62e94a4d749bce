"""The matrix's rows: datasets, tasks, their reference optima, and their place on the cluster.

A *dataset spec* is ``name`` or ``name:rows`` -- a shared LIBSVM set (``a9a``,
``ijcnn1``, ``skin_nonskin``, ``reuters``, ``abalone``; ``:rows`` takes a seeded
subsample) or a synthetic generator (``synthetic-logistic:100000``,
``synthetic-regression:1000000``; n x 100 Gaussian, ten true coefficients
zero, as in the classic Dask async-ADMM demo). A *task spec* is a name from
`TASKS`, optionally ``@alpha`` to override the strength (``squared-l1@0.01``).

Every solver sees the same problem in its natural form: the *canonical* data
(CSR as loaded for LIBSVM sets, dense for synthetic ones) defines the
objective and ``f*``; dense data is scattered once to the cluster as persisted
dask arrays (one row chunk per partition) that asip and dask-glm both use;
sparse data is handed to asip's estimators as CSR (they split it per fit), and
to dask-glm as a dense copy when that fits in memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from asip.algorithms import (
    DataUnavailable,
    Objective,
    get_loss,
    get_penalty,
    load_libsvm,
    make_logistic,
    make_regression,
    reference_optimum,
)
from asip.algorithms._datasets import LIBSVM_SETS

__all__ = [
    "CLASSIFICATION_TASKS",
    "PAPER_TASKS",
    "TASKS",
    "BenchData",
    "ClusterData",
    "DataUnavailable",
    "ReferenceTimeout",
    "Task",
    "compute_reference",
    "load_dataset",
    "parse_task",
    "shared_datasets",
]

logger = logging.getLogger(__name__)

#: dense copies of sparse data for dask-glm are made only up to this many entries (800 MB)
DENSE_LIMIT = 100_000_000
#: sparse sets at least this dense are stored dense (the kernels run faster on them)
DENSIFY_AT = 0.25


@dataclass(frozen=True)
class Task:
    """A loss, a penalty and its strength; ``alpha=None`` means ``1/n`` (the harder l2 problem)."""

    key: str
    loss: str
    penalty: str
    alpha: float | None
    regression: bool = False

    def alpha_for(self, n: int) -> float:
        return 1.0 / n if self.alpha is None else float(self.alpha)

    def objective(self, n: int) -> Objective:
        """asip's one objective for this task on ``n`` rows (no intercept, as in the paper)."""
        return Objective(get_loss(self.loss), get_penalty(self.penalty, self.alpha_for(n)), False)


TASKS: dict[str, Task] = {t.key: t for t in (
    Task("hinge-l2", "hinge", "l2", 0.1),
    Task("log_loss-l1", "log_loss", "l1", 1e-5),
    Task("hinge-l1", "hinge", "l1", 1e-5),
    Task("log_loss-l2", "log_loss", "l2", 0.1),
    Task("log_loss-l2-1/n", "log_loss", "l2", None),
    Task("squared-l1", "squared_error", "l1", 1e-5, regression=True),
)}
#: the four tasks of the ASIP paper (section 5.2): the paper ratios are geometric means over them
PAPER_TASKS = ("hinge-l2", "log_loss-l1", "hinge-l1", "log_loss-l2")
CLASSIFICATION_TASKS = tuple(k for k, t in TASKS.items() if not t.regression)


def parse_task(spec: str) -> Task:
    """``name`` or ``name@alpha``; raises ValueError listing the valid names."""
    name, _, alpha = spec.partition("@")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks are {list(TASKS)}")
    task = TASKS[name]
    if alpha:
        a = float(alpha)
        if not a >= 0:
            raise ValueError(f"task {spec!r}: alpha must be >= 0")
        task = Task(f"{name}@{alpha}", task.loss, task.penalty, a, task.regression)
    return task


def shared_datasets() -> list[str]:
    """The training sets among the shared LIBSVM files (test splits ``*.t`` are held-out halves)."""
    return [name for name in LIBSVM_SETS if not name.endswith(".t")]


@dataclass
class BenchData:
    """A dataset in canonical form; ``X`` is CSR for sparse LIBSVM sets, else a dense array."""

    name: str
    X: np.ndarray | sp.csr_matrix
    y: np.ndarray
    regression: bool
    load_seconds: float = 0.0

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        return int(self.X.shape[1])

    @property
    def sparse(self) -> bool:
        return sp.issparse(self.X)

    def tasks(self, requested: list[Task]) -> list[Task]:
        """The requested tasks that fit this data (regression tasks for regression data)."""
        return [t for t in requested if t.regression == self.regression]


def load_dataset(spec: str, seed: int = 0) -> BenchData:
    """Load ``name[:rows]``; `DataUnavailable` for a missing shared file, ValueError if unknown."""
    name, _, rows = spec.partition(":")
    n = int(float(rows)) if rows else None
    t0 = time.perf_counter()
    if name in ("synthetic-logistic", "synthetic-regression"):
        make = make_logistic if name == "synthetic-logistic" else make_regression
        ds = make(n_samples=n or 100_000, random_state=seed)
        X, y, regression = ds.X, ds.y, name == "synthetic-regression"
    elif name in LIBSVM_SETS:
        ds = load_libsvm(name, n_samples=n, random_state=seed)
        X, y, regression = ds.X, ds.y, ds.task == "regression"
        density = X.nnz / max(X.shape[0] * X.shape[1], 1)
        if density >= DENSIFY_AT:
            X = X.toarray()
    else:
        raise ValueError(f"unknown dataset {name!r}; valid: {sorted(LIBSVM_SETS)} or "
                         "synthetic-logistic[:rows] / synthetic-regression[:rows]")
    return BenchData(spec, X, np.asarray(y, dtype=np.float64), regression,
                     time.perf_counter() - t0)


class ReferenceTimeout(TimeoutError):
    """The reference optimum took longer than the allowed time (its process was ended)."""


def _reference_child(conn, objective, X, y) -> None:
    try:
        ref = reference_optimum(objective, X, y)
        conn.send(("ok", ref))
    except BaseException as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def compute_reference(data: BenchData, task: Task, timeout: float | None = None) -> dict:
    """``f*`` of ``task`` on ``data`` (`asip.algorithms.reference_optimum`, cached on disk).

    With ``timeout`` the solve runs in a child process that is ended after
    ``timeout`` seconds (`ReferenceTimeout`): an exact LP or dual QP on a large
    set can take far longer than the benchmark itself.
    """
    t0 = time.perf_counter()
    objective = task.objective(data.n)
    if timeout is None:
        ref = reference_optimum(objective, data.X, data.y)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_reference_child, args=(child, objective, data.X, data.y),
                           daemon=True)
        proc.start()
        child.close()
        try:
            if not parent.poll(timeout):
                raise ReferenceTimeout(f"f* of {data.name} / {task.key} took over {timeout:g} s")
            status, ref = parent.recv()
        finally:
            if proc.is_alive():
                proc.terminate()
            proc.join()
        if status != "ok":
            raise RuntimeError(f"f* of {data.name} / {task.key} failed: {ref}")
    return {"f_star": float(ref.f_star), "gap": float(ref.gap), "method": ref.method,
            "relative_precision": float(ref.relative_precision),
            "seconds": time.perf_counter() - t0}


class ClusterData:
    """One dataset placed on the cluster once, in the forms the solvers take.

    ``asip_input()`` is what asip's estimators get; ``dask_glm_input()`` is the
    dense dask array pair dask-glm needs (labels in {0, 1} for logistic), or
    None with a reason in ``dask_glm_note``. Futures are released by `close`.
    """

    def __init__(self, client, data: BenchData, n_partitions: int):
        self.client = client
        self.data = data
        self.n_partitions = max(1, min(n_partitions, data.n))
        self._dense = None
        self._labels01 = None
        self.dask_glm_note = ""

    def _scatter(self, arr: np.ndarray):
        import dask
        import dask.array as da
        from distributed import wait

        bounds = np.linspace(0, arr.shape[0], self.n_partitions + 1).astype(int)
        blocks = [arr[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        futures = self.client.scatter(blocks)
        parts = [da.from_delayed(dask.delayed(f), shape=blk.shape, dtype=arr.dtype)
                 for f, blk in zip(futures, blocks)]
        out = self.client.persist(da.concatenate(parts, axis=0))
        wait(out)
        return out

    def _dense_pair(self):
        if self._dense is None:
            X = self.data.X.toarray() if self.data.sparse else self.data.X
            self._dense = (self._scatter(np.ascontiguousarray(X, dtype=np.float64)),
                           self._scatter(self.data.y))
        return self._dense

    def asip_input(self):
        """``(X, y)``: CSR in memory for sparse data, persisted dask arrays for dense data."""
        if self.data.sparse:
            return self.data.X, self.data.y
        return self._dense_pair()

    def dask_glm_input(self, task: Task):
        """Dense dask ``(X, y)`` for dask-glm (y in {0, 1} for logistic), or None (see the note)."""
        if self.data.sparse and self.data.n * self.data.d > DENSE_LIMIT:
            self.dask_glm_note = (f"dask-glm needs dense input; a dense copy of {self.data.name} "
                                  f"would hold {self.data.n * self.data.d:.2e} entries")
            return None
        X, y = self._dense_pair()
        if task.loss == "log_loss":
            if self._labels01 is None:
                self._labels01 = self._scatter((self.data.y > 0).astype(np.float64))
            return X, self._labels01
        return X, y

    def close(self) -> None:
        self._dense = self._labels01 = None
