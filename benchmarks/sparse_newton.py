"""asip-cocoa's local solvers side by side on sparse data: SDCA vs Newton (vs Newton-CG).

Run: ``python benchmarks/sparse_newton.py --datasets a9a,rare [--partitions 2,4,8,16]
[--alphas 0.1,1e-4,1/n] [--solvers sdca,newton,newton-cg,auto] [--baselines gd,admm]
[--repeat 3] [--budget 2]`` (``--baselines``: other solvers fitted alongside). ``rare``: CSR logistic data with
power-law feature frequencies (`rare_features`), so many features have a few rows and a
partition's Hessian misses the features its peers have. Per setting: time to 1e-3 and 1e-6
(stage time, from the trace) and the certified stop (tol 1e-6; the stage's elapsed), and the
choice "auto" makes; medians over the repeats, with the load average. The trace is taken as
``asip bench --ttt`` takes it: the model in every report, one report per 20 ms
(`TRACE_CONFIG`).
"""

from __future__ import annotations

import argparse
import math
import os
import warnings
from collections import defaultdict

import dask
import numpy as np
import scipy.sparse as sp
from distributed import Client, LocalCluster

from asip.algorithms._datasets import make_power_law_logistic
from asip.algorithms import AsipClassifier, make_sparse_logistic, relative_suboptimality
from asip.algorithms._reference import reference_optimum
from asip.algorithms._objectives import Objective, get_loss, get_penalty
from asip_bench.data import load_dataset
from asip_bench.session import TRACE_CONFIG


def rare_features(n: int = 20_000, d: int = 300, nnz: int = 8, power: float = 1.5,
                  seed: int = 0):
    """CSR rows with ``nnz`` binary entries on power-law columns (the last columns appear in a
    handful of rows); labels from a logistic model (`make_power_law_logistic`)."""
    ds = make_power_law_logistic(n, d, nnz, power, random_state=seed)
    return ds.X, ds.y


#: synthetic sparse logistic shapes by name: (rows, features, seed); 30 nonzeros a row
WIDE = {"wide": (100_000, 1_000_000, 0), "wide-small": (10_000, 100_000, 0),
        "400k": (400_000, 20_000, 1)}


def ttt(trace, f_star, target):
    for t, f in trace:
        if (f - f_star) / abs(f_star) <= target:
            return t
    return math.inf


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="a9a,rare")
    ap.add_argument("--partitions", default="2,4,8,16")
    ap.add_argument("--alphas", default="0.1,1e-4,1/n")
    ap.add_argument("--solvers", default="sdca,newton,auto")  # asip-cocoa's local solvers
    ap.add_argument("--baselines", default="")  # other solvers side by side, e.g. gd,admm
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget", type=float, default=2.0)
    ap.add_argument("--tol", type=float, default=1e-6)  # the certified stop's
    # no model in the reports (wide models: 8 bytes a coefficient every 20 ms); certified only
    ap.add_argument("--no-trace", action="store_true")
    args = ap.parse_args(argv)
    parts = [int(k) for k in args.partitions.split(",")]
    out = defaultdict(list)
    with LocalCluster(n_workers=2, threads_per_worker=max(1, max(parts) // 2),
                      dashboard_address=None) as cluster, Client(cluster):
        for name in args.datasets.split(","):
            if name == "rare":
                X, y = rare_features()
            elif name in WIDE:  # make_sparse_logistic shapes of benchmarks/wide.py, cocoa_newton.py
                n, d, seed = WIDE[name]
                ds = make_sparse_logistic(n, d, nnz_per_row=30, random_state=seed)
                X, y = ds.X, ds.y
            else:
                data = load_dataset(name)
                X, y = data.X, data.y
            nnz = X.nnz / (X.shape[0] * X.shape[1]) if sp.issparse(X) else 1.0
            print(f"{name}: {X.shape}, density {nnz:.3f}", flush=True)
            for a_spec in args.alphas.split(","):
                alpha = 1.0 / X.shape[0] if a_spec == "1/n" else float(a_spec)
                obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
                f_star = reference_optimum(obj, X, y).f_star
                for k in parts:
                    for _ in range(args.repeat):
                        runs = [("asip-cocoa", {"local_solver": s}, s)
                                for s in args.solvers.split(",") if s]
                        runs += [(b, {}, b) for b in args.baselines.split(",") if b]
                        for algo, sp_, solver in runs:
                            est = AsipClassifier(loss="log_loss", penalty="l2", alpha=alpha,
                                                 solver=algo, fit_intercept=False,
                                                 max_time=args.budget, n_partitions=k,
                                                 random_state=0, tol=args.tol,
                                                 solver_params=sp_)
                            cfg = {} if args.no_trace else TRACE_CONFIG
                            with warnings.catch_warnings(), dask.config.set(cfg):
                                warnings.simplefilter("ignore")
                                est.fit(X, y)
                            tr = [] if args.no_trace else np.asarray(est.trace_)
                            res = est.stage_result_
                            stop = res.elapsed if est.stopped_by_ == "tol" else math.inf
                            got = (ttt(tr, f_star, 1e-3), ttt(tr, f_star, 1e-6), stop)
                            rel = float(relative_suboptimality(
                                obj.value(est.coef_.ravel(), X, y), f_star))
                            out[name, a_spec, k, solver].append(got)
                            print(f"  {name} alpha={a_spec} P={k} {solver}: 1e-3 {got[0]:.3f} s, "
                                  f"1e-6 {got[1]:.3f} s, certified {got[2]:.3f} s "
                                  f"({est.stopped_by_}, final {rel:.1e})", flush=True)
    print(f"summary (medians; load average {os.getloadavg()}):")
    print("| set | alpha | P | local solver | 1e-3 s | 1e-6 s | certified s |")
    print("|---|---|---|---|---|---|---|")
    for (name, a_spec, k, solver), got in out.items():
        med = np.median(np.asarray(got), axis=0)
        print(f"| {name} | {a_spec} | {k} | {solver} | {med[0]:.3f} | {med[1]:.3f} | {med[2]:.3f} |")


if __name__ == "__main__":
    main()
