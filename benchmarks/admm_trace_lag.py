"""asip-admm's trace with the freshest consensus ``z`` (`_asip_admm.combine`) against the
mean of the latest reports (its ``combine`` before 2026-12-01), from the same fits.

Each fit (hinge-l2, alpha 0.1, 2 workers x 1 thread, ``tol=0``, reports every 20 ms with the
model, as ``asip bench --ttt``) keeps its reports; both combines then rebuild the trace
from them (`_model.combined_over_time`), so the two traces are of one run and the load
cannot favour either. Prints per fit the stage time of the first trace point at or below
1e-3 / 1e-6 relative suboptimality, both ways, and medians.

Run: ``python benchmarks/admm_trace_lag.py [--datasets a9a,ijcnn1,synthetic-logistic:20000,reuters]
[--repeats 5] [--budget 0.5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TARGETS = (1e-3, 1e-6)


def mean_combine(problem, snapshots):
    """asip-admm's ``combine`` before the freshest z: the z step on the mean of the reports."""
    from asip.algorithms._asip_admm import z_of_reports
    from asip.algorithms._certificate import certified_model
    model = certified_model(snapshots)
    if model is not None:
        return model
    got = [s for s in snapshots if s is not None and "x" in s]
    return z_of_reports(problem, got) if got else np.zeros(problem.p)


def crossings(algo, problem, trace, objective, X, y, f_star) -> dict:
    """Stage seconds of the first trace point at or below each target."""
    from asip.algorithms._model import combined_over_time
    out = {}
    for t, w in combined_over_time(algo, problem, trace):
        rel = (objective.value(w, X, y) - f_star) / abs(f_star)
        for target in TARGETS:
            if target not in out and rel <= target:
                out[target] = float(t)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="a9a,ijcnn1,synthetic-logistic:20000,reuters")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.5)
    args = ap.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster

    from asip.algorithms import AsipClassifier
    from asip.algorithms import _asip_admm
    from asip.algorithms._base import make_problem
    from asip.algorithms import _kernels as K
    from asip.algorithms._objectives import Objective, get_loss, get_penalty
    from asip.algorithms._reference import reference_optimum
    from asip_bench.data import load_dataset
    from asip_bench.session import TRACE_CONFIG

    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load "
          f"{os.getloadavg()}", flush=True)
    old_algo = _asip_admm.ALGORITHM._replace(combine=mean_combine)
    summary = {}
    with dask.config.set(TRACE_CONFIG), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster, Client(cluster):
        for name in args.datasets.split(","):
            data = load_dataset(name)
            X, y = data.X, data.y
            obj = Objective(get_loss("hinge"), get_penalty("l2", 0.1), False)
            f_star = reference_optimum(obj, X, y).f_star
            for rep in range(args.repeats + 1):  # the first: warm-up (numba, imports)
                est = AsipClassifier(loss="hinge", penalty="l2", alpha=0.1, solver="asip-admm",
                                     fit_intercept=False, max_time=args.budget, n_partitions=2,
                                     random_state=rep, tol=0.0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit(X, y)
                if rep == 0:
                    continue
                res = est.stage_result_
                sizes = [len(r) for r in np.array_split(np.arange(X.shape[0]), 2)]
                parts = [(X[:sizes[0]], y[:sizes[0]]), (X[sizes[0]:], y[sizes[0]:])]
                problem = make_problem(K.HINGE, K.L2, 0.1, False, parts)
                new = crossings(_asip_admm.ALGORITHM, problem, res.trace, obj, X, y, f_star)
                old = crossings(old_algo, problem, res.trace, obj, X, y, f_star)
                row = []
                for tg in TARGETS:
                    a, b = old.get(tg, np.inf), new.get(tg, np.inf)
                    summary.setdefault((name, tg), []).append((a, b))
                    row.append(f"{tg:g}: mean-of-reports {a * 1e3:6.1f} ms  freshest-z "
                               f"{b * 1e3:6.1f} ms")
                print(f"{name:26s} #{rep}  " + "  |  ".join(row), flush=True)
    print("medians (stage ms; ratio = mean-of-reports / freshest-z):")
    for (name, tg), pairs in summary.items():
        a = statistics.median(p[0] for p in pairs)
        b = statistics.median(p[1] for p in pairs)
        print(f"{name:26s} {tg:g}  {a * 1e3:6.1f} -> {b * 1e3:6.1f}  ({a / b:.2f}x)")
    print(f"# load at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
