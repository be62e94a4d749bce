"""Time to 1e-3 and 1e-6 relative suboptimality per solver, side by side in one run.

Each solver fits the same problem through the estimator (one partition per worker
thread, no intercept) with a small ``tol`` so that only the budget ends it; the
time to a target is the first point of ``trace_`` (the stage's clock) whose
relative suboptimality ``(f(w) - f*) / |f*|`` against the certified reference
optimum is at or below it. The ``--base`` solver (default asip-cocoa) also runs once
as a user would, with its certified stop at ``--tol``: the table shows that fit's
wall time and where it ended. Ratios are each other solver's time over the base's;
``>`` marks a solver that never got there within the budget. Fits have no
intercept, like the reference.

Run:  python benchmarks/time_to_target.py --datasets a9a synthetic --budget 10
      python benchmarks/time_to_target.py --base asip-svrg --tasks log_loss-l2@1e-4 \
          log_loss-l2@1/n --solvers asip-svrg asip-cocoa gd admm saga
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np

from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty, load_libsvm,
                             make_logistic, reference_optimum, relative_suboptimality)

#: task -> (loss, alpha); alpha None means 1/n
TASKS = {"log_loss-l2@1e-4": ("log_loss", 1e-4), "log_loss-l2@1/n": ("log_loss", None),
         "hinge-l2@0.1": ("hinge", 0.1), "hinge-l2@1e-4": ("hinge", 1e-4)}
TARGETS = (1e-3, 1e-6)


def load(name: str):
    if name == "synthetic":
        return make_logistic(20_000, 100, random_state=0)
    return load_libsvm(name)


def time_to(trace: np.ndarray, f_star: float, target: float) -> float:
    """First trace time at or below ``target`` relative suboptimality; inf if never."""
    for t, f in trace:
        if math.isfinite(f) and relative_suboptimality(f, f_star) <= target:
            return float(t)
    return math.inf


def fit(X, y, loss, alpha, solver, budget, tol, seed):
    est = AsipClassifier(loss=loss, penalty="l2", alpha=alpha, solver=solver, max_time=budget,
                         tol=tol, random_state=seed, fit_intercept=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # budget-ended ConvergenceWarnings are the point here
        t0 = time.perf_counter()
        est.fit(X, y)
        wall = time.perf_counter() - t0
    return est, wall


def fmt(t: float, budget: float) -> str:
    return f"> {budget:g} s" if not math.isfinite(t) else f"{t:.3g} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["a9a", "synthetic"])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS)[:3], choices=list(TASKS))
    ap.add_argument("--solvers", nargs="+", default=["asip-cocoa", "gd", "admm"])
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per fit")
    ap.add_argument("--tol", type=float, default=1e-6, help="the base solver's certified stop")
    ap.add_argument("--base", default="asip-cocoa", help="the solver the ratios divide by")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import asip

    client = asip.connect()
    print(f"cluster: {client}  ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    rows = []
    for name in args.datasets:
        ds = load(name)
        for task in args.tasks:
            loss, alpha = TASKS[task]
            alpha = 1.0 / ds.X.shape[0] if alpha is None else alpha
            obj = Objective(get_loss(loss), get_penalty("l2", alpha), False)
            ref = reference_optimum(obj, ds.X, ds.y)
            times = {}
            for solver in args.solvers:
                est, _ = fit(ds.X, ds.y, loss, alpha, solver, args.budget, 1e-14, args.seed)
                times[solver] = [time_to(est.trace_, ref.f_star, tg) for tg in TARGETS]
                final = relative_suboptimality(obj.value(est.coef_.ravel(), ds.X, ds.y),
                                               ref.f_star)
                print(f"{name:10s} {task:18s} {solver:11s} "
                      + "  ".join(f"to {tg:.0e}: {fmt(t, args.budget):>9s}"
                                  for tg, t in zip(TARGETS, times[solver]))
                      + f"  final {final:.1e}", flush=True)
            cert = ""
            if args.base in args.solvers:
                est, wall = fit(ds.X, ds.y, loss, alpha, args.base, args.budget, args.tol,
                                args.seed)
                r = relative_suboptimality(obj.value(est.coef_.ravel(), ds.X, ds.y), ref.f_star)
                cert = f"{wall:.2f} s -> {r:.1e} ({est.stopped_by_})"
                print(f"{'':29s} {args.base} tol={args.tol:g}: fit() {cert}", flush=True)
            rows.append((name, task, times, cert))
    print()
    base = args.base
    others = [s for s in args.solvers if s != base]
    head = ["data / task"] + [f"{s} to 1e-3 / 1e-6" for s in args.solvers]
    head += [f"{o}/{base} at 1e-6" for o in others] + [f"{base} fit() with tol={args.tol:g}"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, task, times, cert in rows:
        cells = [f"{name} / {task}"]
        cells += [" / ".join(fmt(t, args.budget) for t in times[s]) for s in args.solvers]
        for o in others:
            a, b = times[o][1], times.get(base, [math.inf, math.inf])[1]
            cells.append("n/a" if not math.isfinite(b) else
                         (f"> {args.budget / b:.3g}x" if not math.isfinite(a) else f"{a / b:.3g}x"))
        cells.append(cert)
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
