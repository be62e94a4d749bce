"""The paper's matrix and its fault runs: every dataset x task x solver, one at a time.

Each solver runs once per dataset x task for the largest budget; its
suboptimality at the smaller budgets is read from its trace (asip's solvers
do not schedule by ``max_time``, so a shorter run would follow the same
path). Runs are strictly sequential so that no two share the machine. Fault
runs (``Straggler(partition=0, sleep=2.0, every=1.0)``, the paper's setting,
and ``KillOperator(partition=0, at=budget/3)``) use the fault budget.
Every finished run is checkpointed (`Session.on_section_done`); with
``--resume`` the runs of an earlier invocation are kept and not run again
(`Session.previous`), except those that ended in an error.
"""

from __future__ import annotations

import contextlib
import logging
import traceback

import numpy as np

from asip.algorithms import AsipClassifier, AsipRegressor
from asip.faults import KillOperator, Straggler

from . import peers_daskglm, peers_sklearn
from .data import ClusterData, DataUnavailable, Task, compute_reference, load_dataset, parse_task
from .records import Run
from .runner import LiveObjective, run_asip

__all__ = ["Session", "placed", "run_key", "run_matrix", "run_one", "warm_dataset", "warm_up"]

logger = logging.getLogger(__name__)

STRAGGLER_SOLVERS = ("asip-cocoa", "asip-svrg", "asip-sgd", "asip-hogwild", "asip-admm", "gd", "admm", "lbfgs")
KILL_SOLVERS = ("asip-sgd", "asip-hogwild", "asip-admm")


class Session:
    """The state of one benchmark: config, client, display, references, runs and notes."""

    def __init__(self, cfg, client, progress, on_section_done=None):
        self.cfg = cfg
        self.client = client
        self.progress = progress
        self.runs: list[Run] = []
        self.references: dict[str, dict] = {}
        self.notes: list[str] = []
        self.sections: dict[str, dict] = {}
        self.on_section_done = on_section_done or (lambda: None)
        #: runs of an earlier invocation (``--resume``), by `run_key`: reused, not run again
        self.previous: dict[tuple, Run] = {}

    def resumed(self, run: Run) -> Run | None:
        """The earlier run of what ``run`` describes (kept, and counted as done), or None."""
        old = self.previous.get(run_key(run))
        if old is not None:
            self.runs.append(old)
        return old

    @property
    def n_partitions(self) -> int:
        if self.cfg.partitions:
            return self.cfg.partitions
        return max(1, sum(self.client.nthreads().values()))

    def note(self, message: str) -> None:
        """Say it once (printed above the live display, kept for the JSON and the report)."""
        if message not in self.notes:
            self.notes.append(message)
            self.progress.note(message)

    def reference(self, data, task: Task) -> dict | None:
        """``f*`` of ``task`` on ``data`` once per benchmark (None, with a note, if it failed)."""
        key = f"{data.name} / {task.key}"
        if key not in self.references:
            with self.progress.run("f*", key):
                try:
                    self.references[key] = compute_reference(data, task,
                                                              self.cfg.reference_timeout)
                except Exception as exc:
                    self.references[key] = None
                    self.note(f"skipped {key}: no reference optimum ({exc})")
        return self.references[key]

    def guarded(self, run_fn, fallback: Run) -> Run:
        """Run ``run_fn()``; an exception becomes an ``error`` run carrying its message."""
        try:
            run = run_fn()
        except Exception as exc:  # one failing run must not end the benchmark
            logger.debug("run failed:\n%s", traceback.format_exc())
            fallback.status, fallback.note = "error", f"{type(exc).__name__}: {exc}"
            self.note(f"{fallback.dataset} / {fallback.task} / {fallback.solver}: "
                      f"{fallback.note}")
            run = fallback
        self.runs.append(run)
        return run


def run_key(run: Run) -> tuple:
    """What identifies a run across invocations: dataset, task, solver, kind, budget, faults."""
    return (run.dataset, run.task, run.solver, run.kind, float(run.budget), tuple(run.faults))


def warm_up(session: Session, solvers: list[str] | None = None, sparse: bool = True) -> None:
    """Load the asip solvers' kernels in the workers once (dense, and CSR if ``sparse``)."""
    import scipy.sparse as sp

    from asip.algorithms import SOLVERS, make_logistic

    from .config import SOLVER_VARIANTS

    asip_solvers = []  # a variant warms up its base solver's kernels
    for s in solvers or session.cfg.solvers:
        base = SOLVER_VARIANTS.get(s, (s,))[0]
        if base in SOLVERS and base not in asip_solvers:
            asip_solvers.append(base)
    ds = make_logistic(2_000, 20, random_state=1)
    kinds = (ds.X, sp.csr_matrix(ds.X)) if sparse else (ds.X,)
    with session.progress.run("warm-up", f"{len(asip_solvers)} solvers"):
        for X in kinds:
            for solver in asip_solvers:
                for loss, penalty in _classification_losses(session):
                    try:
                        AsipClassifier(solver=solver, loss=loss, penalty=penalty, max_time=0.3,
                                       alpha=0.1, fit_intercept=False,
                                       n_partitions=session.n_partitions).fit(X, ds.y)
                    except Exception as exc:  # a solver that refuses the loss
                        logger.debug("warm-up of %s (%s-%s) failed: %s", solver, loss,
                                     penalty, exc)


def _classification_losses(session: Session) -> list[tuple[str, str]]:
    """The (loss, penalty) pairs of the session's classification tasks, log_loss-l2 first:
    each loss has kernels of its own (a cold numba cache once charged the first hinge fit on
    dense and on CSR data 0.7 s: a9a and ijcnn1 hinge-l2 at 0.78-0.88 s, not 0.1-0.2 s)."""
    pairs = [("log_loss", "l2")]
    for spec in session.cfg.tasks or ():
        task = parse_task(spec)
        if not task.regression and (task.loss, task.penalty) not in pairs:
            pairs.append((task.loss, task.penalty))
    return pairs


def warm_dataset(session: Session, cdata: ClusterData) -> None:
    """One short untimed fit on this dataset's own input (persisted dask arrays or CSR).

    The first fit on a dataset can pay one-time costs before its stage, which would be
    charged to whichever solver the matrix runs first (2026-11-29, loaded machine: 16 s on
    skin_nonskin and 14.6 s on synthetic 20k x 100 inside asip-cocoa's timed run, 13.7-18.4 s
    as this warm-up, 2.4 s in a fresh process; 0.5 s on ijcnn1; 0.1-0.3 s for later fits).
    """
    from asip.algorithms import SOLVERS

    solver = next((s for s in session.cfg.solvers if s in SOLVERS), None)
    if solver is None:
        return
    Est = AsipRegressor if cdata.data.regression else AsipClassifier
    X, y = cdata.asip_input()
    with session.progress.run("warm-up", f"{cdata.data.name} ({solver})"):
        try:
            Est(solver=solver, max_time=0.3, alpha=0.1, fit_intercept=False,
                n_partitions=cdata.n_partitions).fit(X, y)
        except Exception as exc:  # a solver that refuses the data is timed (and noted) later
            logger.debug("warm-up of %s on %s failed: %s", solver, cdata.data.name, exc)


def _solver_jobs(session: Session, task: Task) -> list[tuple[str, str]]:
    """``(family, name)`` for every requested solver on ``task``."""
    jobs = []
    for s in session.cfg.solvers:
        if s == "sklearn":
            jobs += [("sklearn", c) for c in peers_sklearn.candidates_for(
                task, session.cfg.sklearn_candidates)]
        elif s.startswith("sklearn:"):
            name = s.split(":", 1)[1]
            if name in peers_sklearn.candidates_for(task):
                jobs.append(("sklearn", name))
        elif s.startswith("dask-glm:"):
            jobs.append(("dask-glm", s.split(":", 1)[1]))
        else:
            jobs.append(("asip", s))
    return jobs


def run_one(session: Session, cdata: ClusterData, task: Task, family: str, name: str,
            budget: float, ref: dict, kind: str = "matrix", faults=()) -> Run:
    data = cdata.data
    label = f"{data.name} / {task.key} / {name if family != 'dask-glm' else 'dask-glm:' + name}"
    if faults:
        label += f" [{kind}]"
    f_star = ref["f_star"]
    solver = name if family == "asip" else f"{family}:{name}"
    fallback = Run(data.name, task.key, solver, family, kind=kind, budget=budget, f_star=f_star,
                   n_rows=data.n, faults=[repr(f) for f in faults])
    done = session.resumed(fallback)
    if done is not None:
        session.progress.note(f"{label}: kept from the earlier run ({done.status})")
        return done
    with session.progress.run(kind, label, budget, f_star) as job:
        live = LiveObjective(data, task, job.report)
        if family == "asip":
            fn = lambda: run_asip(cdata, task, name, budget, faults=faults, live=live,  # noqa: E731
                                  seed=session.cfg.seed, kind=kind, tol=session.cfg.tol)
        elif family == "sklearn":
            fn = lambda: peers_sklearn.run_sklearn(data, task, name, budget, f_star,  # noqa: E731
                                                   live=live, kind=kind)
        else:
            fn = lambda: peers_daskglm.run_dask_glm(cdata, task, name, budget, f_star,  # noqa: E731
                                                    live=live, kind=kind)
        run = session.guarded(fn, fallback)
        run.f_star = f_star
        run.f_star_precision = float(ref.get("relative_precision", 0.0))
        if run.trace:  # the display ends on the exact final value
            job.report(min(f for _, f in run.trace) if run.independent else run.trace[-1][1])
    if run.status == "skipped":
        session.note(f"{label}: skipped ({run.note})")
    elif family != "asip" and run.note:
        session.note(f"{task.key} / {solver}: {run.note}")
    session.on_section_done()  # results.json and headline.md after every run: resumable
    return run


def run_matrix(session: Session, sections: list[str]) -> None:
    """Every dataset x task x solver (``"matrix"``) and the fault runs (``"faults"``)."""
    cfg = session.cfg
    tasks = [parse_task(t) for t in cfg.tasks]
    fault_tasks = [parse_task(t) for t in cfg.fault_tasks]
    for spec in cfg.datasets:
        with placed(session, spec) as cdata:
            if cdata is None:
                continue
            data = cdata.data
            if "matrix" in sections or "faults" in sections:
                warm_dataset(session, cdata)
            if "matrix" in sections:
                for task in data.tasks(tasks):
                    ref = session.reference(data, task)
                    if ref is None:
                        continue
                    for family, name in _solver_jobs(session, task):
                        run_one(session, cdata, task, family, name, cfg.max_budget, ref)
                    session.on_section_done()
            if "faults" in sections and cfg.faults:
                for task in data.tasks(fault_tasks):
                    _fault_runs(session, cdata, task)
                session.on_section_done()


@contextlib.contextmanager
def placed(session: Session, spec: str):
    """Dataset ``spec`` loaded and placed on the cluster (released afterwards); None, with a
    note, when its shared file is missing."""
    try:
        with session.progress.run("data", f"load {spec}"):
            data = load_dataset(spec, session.cfg.seed)
    except DataUnavailable as exc:
        session.note(f"skipped dataset {spec}: {exc}")
        yield None
        return
    cdata = ClusterData(session.client, data, session.n_partitions)
    try:
        yield cdata
    finally:
        cdata.close()


def _fault_runs(session: Session, cdata: ClusterData, task: Task) -> None:
    cfg = session.cfg
    ref = session.reference(cdata.data, task)
    if ref is None:
        return
    budget = cfg.fault_budget
    for kind in cfg.faults:
        names = STRAGGLER_SOLVERS if kind == "straggler" else KILL_SOLVERS
        faults = ((Straggler(partition=0, sleep=2.0, every=1.0),) if kind == "straggler"
                  else (KillOperator(partition=0, at=float(np.round(budget / 3, 3))),))
        for name in names:
            if name in cfg.solvers:
                run_one(session, cdata, task, "asip", name, budget, ref, kind=kind, faults=faults)
