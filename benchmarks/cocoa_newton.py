"""asip-cocoa's Newton local solver as a user sees it: default fits, the crossover against
scikit-learn's one-core lbfgs, and a KillWorker at 30% of the run.

* ``defaults``: ``AsipClassifier().fit(X, y)`` on 1,000 rows (wall time, solver, stop reason),
  and the same with ``solver="asip-cocoa"``.
* ``crossover``: dense synthetic logistic, alpha = 1/n, no intercept: wall time of a
  certified ``fit(tol=1e-3)`` of each ``--solvers`` solver (lbfgs, asip-svrg, asip-cocoa;
  its model checked within 1e-3 of f*, with where the time went) against
  ``LogisticRegression(solver="lbfgs")`` on one core (its model checked too).
* ``kill``: 200k x 100 logistic, alpha = 1e-4: time to 1e-6 fault-free and with
  ``KillWorker(1, at=0.3 * fault-free time)``.
* ``ttt``: dense synthetic logistic (20k and 200k x 100, alpha 1e-4 and 1/n, with the
  default unpenalized intercept): time to 1e-3 and 1e-6 (from the fit's trace) and the wall
  time of the certified ``fit(tol=1e-6)``, asip-cocoa side by side with gd and admm.

Run:  python benchmarks/cocoa_newton.py [--sections defaults ttt crossover kill]
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
                             reference_optimum, relative_suboptimality)


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


def kill(rows, n=200_000, d=100, budget=20.0):
    from asip.faults import KillWorker

    ds = make_logistic(n, d, random_state=1)
    alpha = 1e-4
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    ref = reference_optimum(obj, ds.X, ds.y)
    out = {}
    for label, faults in (("fault-free", ()), ("kill", None)):
        if faults is None:
            at = 0.3 * out["fault-free"]
            faults = (KillWorker(1, at=at),)
            label = f"KillWorker(1, at={at:.2f} s)"
        est = AsipClassifier(alpha=alpha, fit_intercept=False, solver="asip-cocoa", tol=1e-9,
                             max_time=budget, random_state=0, faults=faults)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(ds.X, ds.y)
        t6 = _time_to(est.trace_, ref, 1e-6)
        out[label] = t6 if math.isfinite(t6) else budget
        rows.append(f"kill {n} x {d}: {label}: to 1e-6 {t6:.2f} s, restarts {len(est.restarts_)}")
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
    args = ap.parse_args()
    import os

    import asip

    client = asip.connect(n_workers=2)
    print(f"cluster: {client}; load average {os.getloadavg()}", flush=True)
    rows = []
    for section in args.sections:
        run = {"defaults": defaults, "ttt": ttt, "crossover": crossover, "kill": kill}[section]
        kw = {"solvers": tuple(args.solvers)} if section == "crossover" else {}
        if args.sizes and section in ("ttt", "crossover"):
            kw["sizes"] = tuple(args.sizes)
        run(rows, **kw)
    print(f"load average {os.getloadavg()}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
