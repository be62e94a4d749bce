"""asip-cocoa's Newton local solver as a user sees it: default fits, the crossover against
scikit-learn's one-core lbfgs, and a KillWorker at 30% of the run.

* ``defaults``: ``AsipClassifier().fit(X, y)`` on 1,000 rows (wall time, solver, stop reason),
  and the same with ``solver="asip-cocoa"``.
* ``crossover``: dense synthetic logistic, alpha = 1/n, no intercept: wall time of a
  certified ``fit(tol=1e-3)`` of each ``--solvers`` solver (lbfgs, asip-svrg, asip-cocoa;
  its model checked within 1e-3 of f*, with where the time went) against
  ``LogisticRegression(solver="lbfgs")`` on one core (its model checked too).
* ``kill``: issue 12's "KillWorker at 30% of the run: time to 1e-6 within 2x of the
  fault-free run", per problem (``--kill-problems``: dense 500k x 100, sparse 400k x 20k
  with 30 nonzeros a row; logistic, alpha 1e-6, no intercept) and solver
  (``--kill-solvers``: auto, asip-svrg, asip-cocoa, asip-cocoa-sdca) on 2 workers: a warm-up
  fit, ``--repeats`` fault-free fits (median m), then ``--repeats`` fits with
  ``KillWorker(1, at=0.3 m)`` alternating with as many fault-free ones; the ratio of the
  medians, printed only if every kill happened before its fit reached 1e-6, and each kill's
  recovery phase by phase (`asip.StageResult.timeline`: lost, reload, resubmit, restart
  and where, ready, first report; the suboptimality at each). Measured 2026-11-30
  16:35-17:05 UTC (dense, load 11-20; README "Fault injection"): SIGKILL -> lost 0.07-0.41
  s, reload of the 200 MB partition 0.08-1.97 s, resubmit -> restart 0.01-0.06 s, setup
  0-2.4 s, ready -> first report 0.02-0.19 s; the nanny's new process joined 10-12 s after
  the kill. Ratios of medians: asip-cocoa (Newton) 1.14x, asip-svrg 1.16x, auto (lbfgs)
  4.5x (lbfgs's rejoin after the runtime is done, not the runtime); sparse (17:05 UTC, load
  6-8): auto (asip-svrg) 1.63x, the runtime's part 0.18-0.71 s of it.
* ``ttt``: dense synthetic logistic (20k and 200k x 100, alpha 1e-4 and 1/n, with the
  default unpenalized intercept): time to 1e-3 and 1e-6 (from the fit's trace) and the wall
  time of the certified ``fit(tol=1e-6)``, asip-cocoa side by side with gd and admm.

Run:  python benchmarks/cocoa_newton.py [--sections defaults ttt crossover kill] [--threads]
      python benchmarks/cocoa_newton.py --sections kill --kill-problems dense \
          --kill-solvers auto asip-cocoa --repeats 3          # ~10 fits a solver
      python benchmarks/cocoa_newton.py --sections ttt --sizes 20000   # one shape, ~1 min
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import numpy as np

from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty, make_logistic,
                             make_sparse_logistic, reference_optimum, relative_suboptimality)


def _rel(obj, ref, X, y, w):
    return float(relative_suboptimality(obj.value(w, X, y), ref.f_star))


def _time_to(trace, ref, target):
    for t, f in trace:
        if math.isfinite(f) and relative_suboptimality(f, ref.f_star) <= target:
            return float(t)
    return math.inf


def defaults(rows):
    ds = make_logistic(1000, 20, random_state=0)
    for kw in ({}, {"solver": "asip-cocoa"}):
        est = AsipClassifier(**kw)
        t0 = time.perf_counter()
        est.fit(ds.X, ds.y)
        wall = time.perf_counter() - t0
        rows.append(f"defaults {kw or '(auto)'}: {wall:.2f} s, solver_={est.solver_}, "
                    f"stopped_by_={est.stopped_by_}, gap_={est.gap_}")
        print(rows[-1], flush=True)


def crossover(rows, sizes=(20_000, 100_000, 300_000), d=100,
              solvers=("lbfgs", "asip-svrg", "asip-cocoa")):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    for n in sizes:
        ds = make_logistic(n, d, random_state=0)
        alpha = 1.0 / n
        obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
        ref = reference_optimum(obj, ds.X, ds.y)
        with threadpool_limits(1):
            lr = LogisticRegression(C=1.0 / (alpha * n), fit_intercept=False, solver="lbfgs",
                                    max_iter=1000)
            t0 = time.perf_counter()
            lr.fit(ds.X, ds.y)
            wl = time.perf_counter() - t0
        rl = _rel(obj, ref, ds.X, ds.y, lr.coef_.ravel())
        for solver in solvers:
            est = AsipClassifier(alpha=alpha, fit_intercept=False, solver=solver, tol=1e-3,
                                 max_time=30, random_state=0)
            t0 = time.perf_counter()
            est.fit(ds.X, ds.y)
            wall = time.perf_counter() - t0
            r = _rel(obj, ref, ds.X, ds.y, est.coef_.ravel())
            ft, st = est.fit_timings_, est.stage_result_.timings
            data, launch = st.get("data", 0.0), st.get("launch", 0.0)
            rows.append(f"crossover {n} x {d}: {solver} fit(tol=1e-3) {wall:.2f} s -> {r:.1e} "
                        f"({est.stopped_by_}, n_iter_ {est.n_iter_}, relative gap "
                        f"{est.gap_ / max(abs(obj.value(est.coef_.ravel(), ds.X, ds.y)), 1e-300):.1e}"
                        f"; prepare {ft['prepare']:.2f}, data {data:.2f}, launch "
                        f"{launch:.2f}, rounds and teardown {ft['solve'] - data - launch:.2f}, "
                        f"finish {ft['finish']:.2f} s); lbfgs 1 core {wl:.2f} s -> {rl:.1e}; "
                        f"ratio lbfgs/asip {wl / wall:.2f}x; load {os.getloadavg()[0]:.1f}")
            print(rows[-1], flush=True)


KILL_PROBLEMS = {  # name -> (dataset, alpha): a fault-free fit to 1e-6 of a few seconds
    "dense": (lambda: make_logistic(500_000, 100, random_state=1), 1e-6),
    "sparse": (lambda: make_sparse_logistic(400_000, 20_000, nnz_per_row=30, random_state=1),
               1e-6),
}
KILL_SOLVERS = {  # name -> estimator parameters
    "auto": {"solver": "auto"},
    "asip-svrg": {"solver": "asip-svrg"},
    "asip-cocoa": {"solver": "asip-cocoa"},
    "asip-cocoa-sdca": {"solver": "asip-cocoa", "solver_params": {"local_solver": "sdca"}},
}


def _keep_going(seconds, w) -> None:
    """A fit callback that never stops the fit."""


def _subopt_at(trace, ref, t) -> float:
    """The fit's relative suboptimality at stage time ``t`` (its last trace point by then)."""
    f = [float(v) for s, v in trace if s <= t and math.isfinite(v)]
    return float(relative_suboptimality(f[-1], ref.f_star)) if f else math.nan


def _kill_timeline(est, ref, partition, at) -> tuple[list[str], float | None]:
    """The kill's recovery, phase by phase, from the stage's timeline and trace; and the
    stage time the worker was lost (None: no loss seen)."""
    res = est.stage_result_
    events = [e for e in res.timeline if e.partition in (partition, None)]
    old = [e.time for e in res.trace if e.partition == partition and e.incarnation == 0]
    new = [e.time for e in res.trace if e.partition == partition and e.incarnation >= 1]
    lost = next((e.time for e in events if e.kind == "lost"), None)
    lines = [f"      kill due {at:.2f} s; last report of incarnation 0 at "
             f"{max(old) if old else math.nan:.2f} s (subopt {_subopt_at(est.trace_, ref, at):.1e}"
             " at the kill)"]
    for e in events:
        where = f" on {e.worker}" if e.worker else ""
        took = f", took {e.seconds:.2f} s" if e.seconds is not None else ""
        lines.append(f"      {e.time:6.2f} s  {e.kind:<8} {e.detail}{where}{took}  "
                     f"(subopt {_subopt_at(est.trace_, ref, e.time):.1e})")
    if new:
        lines.append(f"      {min(new):6.2f} s  rejoined (first report of the new incarnation; "
                     f"subopt {_subopt_at(est.trace_, ref, min(new)):.1e})")
    return lines, lost


def kill(rows, problems=("dense", "sparse"), solvers=("auto", "asip-svrg", "asip-cocoa-sdca"),
         repeats=3, budget=20.0):
    """Time to 1e-6 fault-free and with ``KillWorker(1)`` at 30% of the fault-free median.

    Per problem x solver, after one warm-up fit: ``repeats`` fault-free fits (their
    median m sets the kill at 0.3 m), then ``repeats`` fits with the kill alternating
    with ``repeats`` more fault-free ones. The ratio of medians (kill / fault-free, all
    fault-free fits) is reported only if every kill fired before its fit reached 1e-6.
    """
    from distributed import default_client

    from asip.faults import KillWorker

    client = default_client()
    n_workers = len(client.nthreads())
    for problem in problems:
        make, alpha = KILL_PROBLEMS[problem]
        ds = make()
        obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
        ref = reference_optimum(obj, ds.X, ds.y)
        shape = f"{problem} {ds.X.shape[0]} x {ds.X.shape[1]} alpha {alpha:g}"
        for solver in solvers:
            def fit(faults):
                client.wait_for_workers(n_workers, timeout=120)  # the killed one is back
                # a callback makes every report carry its model, so the trace has the
                # objective over time even past asip.trace.model-bytes (the sparse shape)
                est = AsipClassifier(alpha=alpha, fit_intercept=False, tol=1e-7, max_time=budget,
                                     random_state=0, faults=faults, callback=_keep_going,
                                     **KILL_SOLVERS[solver])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit(ds.X, ds.y)
                return est, _time_to(est.trace_, ref, 1e-6)

            fit(())  # warm-up: worker imports, numba caches
            free = [fit(())[1] for _ in range(repeats)]
            m = float(np.median(free))
            if not math.isfinite(m):
                rows.append(f"kill {shape}: {solver}: fault-free fits never reached 1e-6 in "
                            f"{budget:g} s ({free}); no kill run")
                print(rows[-1], flush=True)
                continue
            at = 0.3 * m
            killed, honest = [], True
            for _ in range(repeats):
                est, t6 = fit((KillWorker(1, at=at),))
                lines, lost = _kill_timeline(est, ref, 1, at)
                fired = lost is not None and len(est.restarts_) >= 1 and lost <= t6
                honest &= fired
                killed.append(t6)
                print(f"  {shape} {est.solver_}: kill at {at:.2f} s -> to 1e-6 {t6:.2f} s, "
                      f"restarts {len(est.restarts_)}, load {os.getloadavg()[0]:.1f}"
                      + ("" if fired else "  (the kill did NOT happen before 1e-6)"), flush=True)
                print("\n".join(lines), flush=True)
                free.append(fit(())[1])
            mk, mf = float(np.median(killed)), float(np.median(free))
            ratio = f"{mk / mf:.2f}x" if honest else "no ratio: a kill came after 1e-6"
            rows.append(f"kill {shape}: {solver} ({est.solver_}): to 1e-6 fault-free "
                        f"median {mf:.2f} s ({', '.join(f'{t:.2f}' for t in free)}), with "
                        f"KillWorker(1, at={at:.2f} s) median {mk:.2f} s "
                        f"({', '.join(f'{t:.2f}' for t in killed)}): {ratio}; "
                        f"load {os.getloadavg()[0]:.1f}")
            print(rows[-1], flush=True)


def ttt(rows, sizes=(20_000, 200_000), d=100, budget=15.0,
        solvers=("asip-cocoa", "gd", "admm")):
    for n in sizes:
        ds = make_logistic(n, d, random_state=0)
        for alpha in (1e-4, 1.0 / n):
            obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), True)
            ref = reference_optimum(obj, ds.X, ds.y)
            times = {}
            for solver in solvers:
                est = AsipClassifier(alpha=alpha, solver=solver, tol=1e-6, max_time=budget,
                                     random_state=0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    est.fit(ds.X, ds.y)
                    wall = time.perf_counter() - t0
                w = np.append(est.coef_.ravel(), est.intercept_)
                t3, t6 = (_time_to(est.trace_, ref, tgt) for tgt in (1e-3, 1e-6))
                times[solver] = t6
                rows.append(f"ttt {n} x {d} alpha {alpha:.1e}: {solver:10s} to 1e-3 {t3:.2f} s, "
                            f"to 1e-6 {t6:.2f} s; fit(tol=1e-6) {wall:.2f} s "
                            f"({est.stopped_by_}, ends {_rel(obj, ref, ds.X, ds.y, w):.1e})")
                print(rows[-1], flush=True)
            base = times.get("asip-cocoa", math.inf)
            rows.append(f"ttt {n} x {d} alpha {alpha:.1e}: to 1e-6, "
                        + ", ".join(f"{s} / asip-cocoa {times[s] / base:.2f}x"
                                    for s in solvers if s != "asip-cocoa"))
            print(rows[-1], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", nargs="+", default=["defaults", "ttt", "crossover", "kill"])
    ap.add_argument("--sizes", nargs="+", type=int, help="rows of the ttt/crossover shapes")
    ap.add_argument("--solvers", nargs="+", default=["lbfgs", "asip-svrg", "asip-cocoa"],
                    help="asip solvers of the crossover section")
    ap.add_argument("--kill-problems", nargs="+", default=list(KILL_PROBLEMS),
                    choices=list(KILL_PROBLEMS))
    ap.add_argument("--kill-solvers", nargs="+", default=["auto", "asip-svrg", "asip-cocoa-sdca"],
                    choices=list(KILL_SOLVERS))
    ap.add_argument("--repeats", type=int, default=3, help="fits per kill-section cell")
    ap.add_argument("--threads", action="store_true",
                    help="workers as threads of this process (asip.connect(processes=False): "
                         "in-memory data stays in place; no kill section)")
    args = ap.parse_args()
    import os

    import asip

    if "kill" in args.sections:  # keep the killed worker's nanny (distributed closes it if
        import dask  # its process is not back within 15 s, which happens on a loaded machine)

        dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"})
    client = asip.connect(n_workers=2, processes=not args.threads)
    print(f"cluster: {client}; load average {os.getloadavg()}", flush=True)
    rows = []
    for section in args.sections:
        run = {"defaults": defaults, "ttt": ttt, "crossover": crossover, "kill": kill}[section]
        kw = {"solvers": tuple(args.solvers)} if section == "crossover" else {}
        if args.sizes and section in ("ttt", "crossover"):
            kw["sizes"] = tuple(args.sizes)
        if section == "kill":
            kw = {"problems": tuple(args.kill_problems), "solvers": tuple(args.kill_solvers),
                  "repeats": args.repeats}
        run(rows, **kw)
    print(f"load average {os.getloadavg()}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
