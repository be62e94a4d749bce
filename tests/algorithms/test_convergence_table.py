"""The shared table: every solver x every task, on real and synthetic data, on the 2-worker cluster.

Each cell fits the estimator with a small budget (iterations for the driver-side
ADMMs; seconds for the others, then on until the model stays within half the bound,
capped at 30 s: how far a fixed number of seconds gets is the machine's load) and
checks the relative suboptimality ``(f(w) - f*) / |f*|`` against the certified
scipy/scikit-learn optimum (`asip.algorithms.reference_optimum`). Bounds are stated per solver,
task and data kind (real, synthetic): tight for the deterministic baselines on
well-conditioned problems, looser for the stochastic and asynchronous solvers
and for the l1 problems on real data (a9a and abalone are ill-conditioned).
Each bound is also checked to be far below the suboptimality of ``w = 0``, so
no cell can pass by doing nothing.

Real data: a 4,000-row subsample of a9a (classification) and abalone
(regression), skipped with the reason if ``../shared/data`` is missing;
synthetic: 4,000 x 50 dense logistic / least-squares data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _problems import TASKS, dataset, rel_subopt
from _until_bound import UntilBound
from _warm import warm_up

from asip.algorithms import SOLVERS, AsipClassifier, AsipRegressor

#: seconds; 1.0 for the others. averaging stops by itself once every local solve has
#: converged, so its budget is only a cap (the driver-side ADMMs: `ITERATIONS`).
#: saga's 1 s ended at 1.15e-5 against its 1e-5 real-data bound in one CI run (O(nnz) kernels
#: since 2026-11-29): 1.5 s keeps that cell off the wall-clock edge.
#: The certified solvers (admm, asip-svrg, prox-newton) return when certified, so a larger cap
#: costs little; it covers the numba compilation their first cell pays on a fresh clone's
#: workers (asip-svrg's first cell ended at 4e-2 after 8 rounds in 1 s in CI, 1e-9 warm;
#: prox-newton's first cell did 1 iteration in 3 s in CI, 11 iterations to 7e-14 warm;
#: admm's first cell did 5 iterations in 2.5 s and gd 147 rounds in 1 s of a CI run at load
#: ~10, both short of their certificates; quiet, they certify in 11 and 199).
#: solvers whose ``tol`` is a certified relative duality gap: each cell asks for half its bound
#: (gap/|P| <= bound/2 implies a relative suboptimality below the bound), so a cell ends as
#: soon as its check can pass instead of at tol=1e-6 or the cap (prox-newton's hinge cells
#: ran their full 10 s); the check against the reference optimum is the same
CERTIFIED = {"admm", "asip-admm", "asip-cocoa", "asip-svrg", "gd", "lbfgs", "prox-newton"}
BUDGET = {"averaging": 3.0, "saga": 1.5, "admm": 4.0, "asip-admm": 4.0, "gd": 2.0, "asip-svrg": 5.0, "prox-newton": 10.0}
#: the driver-side ADMMs' budget is in iterations (completed local solves), not seconds: with
#: 3 s they did 7-42 iterations at a load average of 12-17 and missed 9 of 10 bounds by up to
#: 45x; 150 iterations meet every bound with a margin of 2.3x (admm-async) and 3.7x (batched)
#: or more at any load (about 3 s on a quiet machine, as the old budget). ``MAX_TIME_CAP`` only
#: ends a hung run.
ITERATIONS = {"admm-async": 150, "admm-async-batched": 150}
MAX_TIME_CAP = 60.0
#: solvers with neither a certificate nor a round budget, whose 1 s missed the bound under
#: load (asip-admm's cells: 3.4e-3 against 1e-3 on log_loss-l1/synthetic, 2.8e-3 against
#: 1e-3 on hinge-l2/synthetic at load averages of 15; asip-hogwild's log_loss-l2/synthetic
#: 1.4e-3 against 1e-3 in a full run at load 12; asip-sgd is the same kind; saga stops by
#: its own tol): their fit runs its 1 s, then on until
#: the driver's model (`callback`) has stayed within half the bound for ``_until_bound.HOLD``
#: seconds (the known optimum makes that checkable here, as `tol` = half the bound does for
#: the certified solvers; a model that merely touched the bound early under load was 2-9x
#: off it a few ms later); ``UNTIL_BOUND_CAP`` seconds only end a fit that never gets there
UNTIL_BOUND = {"asip-hogwild", "asip-sgd"}  # asip-admm: certified since 2026-11-30
#: every other time-budgeted cell (the certified solvers, saga, averaging) runs the same way:
#: its ``BUDGET``, then on until within half the bound (or certified), as a fixed budget
#: missed the bound under load (gd's squared-l2/real cell: 8.2e-3 against 1e-3 after 89
#: rounds in 2 s at a load average of 13-16, 2026-12-01); a cell that passed at its budget
#: stops there as before
UNTIL_BOUND_CAP = 30.0


#: (real, synthetic) bound per solver and task:
#:            log_loss-l2     log_loss-l1     hinge-l2        squared-l2      squared-l1
BOUNDS = {
    "gd":                 [(1e-3, 1e-6), (5e-2, 1e-6), (5e-3, 1e-3), (1e-3, 1e-6), (1e-1, 1e-6)],
    "admm":               [(1e-4, 1e-6), (5e-2, 1e-3), (1e-2, 1e-4), (1e-6, 1e-6), (5e-2, 1e-6)],
    "saga":               [(1e-5, 1e-8), (1e-4, 1e-8), (2e-1, 5e-2), (1e-5, 1e-8), (1e-4, 1e-8)],
    "asip-sgd":           [(1e-3, 1e-3), (5e-2, 5e-3), (2e-2, 2e-2), (2e-3, 1e-1), (1e-1, 2e-2)],
    "asip-hogwild":       [(1e-2, 1e-3), (2e-2, 5e-3), (1e-2, 1e-2), (2e-3, 1e-2), (5e-2, 1e-2)],
    "asip-admm":          [(1e-3, 1e-4), (5e-2, 1e-3), (1e-2, 1e-3), (5e-3, 1e-4), (2e-1, 1e-4)],
    "averaging":          [(1e-3, 1e-3), (1e-1, 2e-3), (2e-2, 2e-2), (1e-4, 2e-3), (1e-2, 5e-3)],
    "admm-async":         [(1e-2, 1e-2), (1e-1, 1e-2), (5e-2, 1e-2), (1e-2, 1e-2), (2e-1, 1e-2)],
    "admm-async-batched": [(1e-2, 1e-2), (1e-1, 1e-2), (5e-2, 1e-2), (1e-2, 1e-2), (2e-1, 1e-2)],
    # l2 only: an l1 fit must be refused with a clear error (None)
    "asip-cocoa":         [(1e-4, 1e-4), None,         (5e-3, 5e-3), (1e-4, 1e-3), None],
    # smooth losses only: hinge is refused (None); certified stop at tol 1e-6
    "asip-svrg":          [(1e-4, 1e-6), (1e-3, 1e-4), None,         (1e-6, 1e-6), (1e-3, 1e-3)],
    # distributed L-BFGS: smooth losses with l2 only, certified stop
    "lbfgs":              [(1e-6, 1e-6), None,         None,         (1e-6, 1e-6), None],
    # distributed proximal Newton (built for l1), certified stop at tol 1e-6
    "prox-newton":        [(1e-4, 1e-6), (1e-3, 1e-6), (1e-2, 1e-3), (1e-6, 1e-6), (1e-3, 1e-6)],
    # hinge-l1 only (the LP), which the table has no column for: every task is refused
    "lp-hinge":           [None,         None,         None,         None,         None],
}
TASK_ORDER = list(TASKS)


def test_table_covers_every_solver():
    assert set(BOUNDS) == set(SOLVERS)


def _warm_cells(solvers=SOLVERS):
    """The cells the table fits for ``solvers``, with a tiny budget: each solver's kernels on
    each matrix type run once (certified solvers stop at their first loose certificate)."""
    for kind in ("real", "synthetic"):
        for task in TASK_ORDER:
            try:
                ds = dataset(kind, task)
            except pytest.skip.Exception:  # no shared data: its cells skip by themselves
                continue
            for solver in solvers:
                if BOUNDS[solver][TASK_ORDER.index(task)] is None:
                    continue
                budget = ({"max_iter": 2, "max_time": MAX_TIME_CAP} if solver in ITERATIONS
                          else {"max_time": 1.0, "tol": 0.5} if solver in CERTIFIED
                          else {"max_time": 0.05})
                yield (solver, *TASKS[task], ds.X, ds.y, budget)


@pytest.fixture
def warm_client(client, solver):
    """The shared cluster's client, once every worker has run the kernels of every cell of
    ``solver`` (all warm after the test below; a ``-k`` selection warms what it runs): a
    cell's budget is for converging, not for the first compile (or cache load) of its
    kernels, which at a load of 10 took seconds of the first real-data cells' 1-4 s budgets."""
    warm_up(client, _warm_cells([solver]))
    return client


@pytest.mark.timeout(600)
def test_warm_up_runs_every_cell_once_per_worker_process(client):
    """The warm-up, first, under a timeout of its own (cold, on a fresh clone's empty numba
    cache at a high load, it is minutes of compiling): the cells' 90 s are theirs."""
    warm_up(client, _warm_cells())
    assert warm_up(client, _warm_cells()) == 0  # the same workers: not warmed again


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["real", "synthetic"])
@pytest.mark.parametrize("task", TASK_ORDER)
@pytest.mark.parametrize("solver", SOLVERS)
def test_solver_reaches_bound(warm_client, solver, task, kind):
    ds = dataset(kind, task)
    loss, penalty, alpha = TASKS[task]
    Est = AsipRegressor if loss == "squared_error" else AsipClassifier
    bounds = BOUNDS[solver][TASK_ORDER.index(task)]
    tol = {"tol": bounds[0 if kind == "real" else 1] / 2} if solver in CERTIFIED and bounds else {}
    budget = ({"max_iter": ITERATIONS[solver], "max_time": MAX_TIME_CAP} if solver in ITERATIONS
              else {"max_time": UNTIL_BOUND_CAP} if bounds
              else {"max_time": BUDGET.get(solver, 1.0)})
    if solver not in ITERATIONS and bounds:
        bound = bounds[0 if kind == "real" else 1]
        budget["callback"] = UntilBound(lambda w: rel_subopt(kind, task, w), bound,
                                        BUDGET.get(solver, 1.0))
    est = Est(loss=loss, penalty=penalty, alpha=alpha, solver=solver, random_state=0,
              fit_intercept=False, **budget, **tol)  # the reference has no intercept
    if bounds is None:  # a task the solver does not take: refused before anything runs
        with pytest.raises(ValueError, match=f"solver '{solver}' (supports penalty=|needs a)"):
            est.fit(ds.X, ds.y)
        return
    bound = bounds[0 if kind == "real" else 1]
    r0 = rel_subopt(kind, task, np.zeros(ds.X.shape[1]))
    assert bound <= r0 / 4, "the bound must be well below doing nothing"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the budget, by design
        est.fit(ds.X, ds.y)
    r = rel_subopt(kind, task, est.coef_)
    print(f"{solver} {task} {kind}: relative suboptimality {r:.2e} (bound {bound:.0e}, "
          f"stopped by {est.stopped_by_}, n_iter {est.n_iter_})")
    assert r <= bound, f"{solver} on {task}/{kind}: relative suboptimality {r:.2e} > {bound:.0e}"
    if solver in ITERATIONS:  # the whole budget ran, not a cap
        assert est.n_iter_ == ITERATIONS[solver], (est.n_iter_, est.stopped_by_)
    if solver in UNTIL_BOUND:  # stopped at the bound, not by the cap
        assert est.stopped_by_ == "callback", est.stopped_by_
    # runtime solvers expose their stage; the Dask as_completed baselines have none
    assert (est.stage_result_ is None) == solver.startswith("admm-async")
    assert sum(est.fit_timings_.values()) > 0
    # the trace was evaluated on the same objective and ends near the final model's value
    assert est.trace_.shape[1] == 2 and len(est.trace_) >= 1
    assert np.all(np.diff(est.trace_[:, 0]) >= 0)
