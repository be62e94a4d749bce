"""asip-admm's one-shot start (``oneshot_epochs``) A/B on a 2-worker LocalCluster, arms alternating.

Run: ``python benchmarks/admm_oneshot.py --datasets a9a,ijcnn1,synthetic-logistic:20000
[--task hinge-l2] [--arms 0,4] [--pairs 6] [--budget 0.5]``. Each pair runs every arm in turn
(the order flips every pair): a traced fit (``tol=0``, `TRACE_CONFIG`, as ``asip bench --ttt``:
times to 1e-3 and 1e-6 read off ``trace_``) and a certified one (the default ``tol``, wall
time of ``fit()`` to its own stop). Per dataset: the medians per arm, the median paired ratio
(first arm / each other arm), and the load average beside them.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import warnings

import dask
import numpy as np
from distributed import Client, LocalCluster

from asip.algorithms import AsipClassifier
from asip.algorithms._reference import reference_optimum
from asip_bench.data import load_dataset, parse_task
from asip_bench.session import TRACE_CONFIG
from straggler_diag import ttt


def fit_once(data, task, epochs: int, budget: float, traced: bool):
    """One asip-admm fit with ``oneshot_epochs=epochs``: the estimator and the wall time of ``fit``."""
    est = AsipClassifier(loss=task.loss, penalty=task.penalty, alpha=task.alpha_for(data.n),
                         solver="asip-admm", fit_intercept=False, max_time=budget,
                         n_partitions=2, random_state=0, tol=0.0 if traced else 1e-6,
                         solver_params={"oneshot_epochs": epochs})
    with warnings.catch_warnings(), dask.config.set(TRACE_CONFIG if traced else {}):
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est.fit(data.X, data.y)
        return est, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="a9a,ijcnn1,synthetic-logistic:20000")
    ap.add_argument("--task", default="hinge-l2")
    ap.add_argument("--arms", default="0,4", help="oneshot_epochs values; the first is the old arm")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--budget", type=float, default=0.5)
    args = ap.parse_args(argv)
    arms = [int(a) for a in args.arms.split(",")]
    task = parse_task(args.task)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load "
          f"{os.getloadavg()}", flush=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster):
        for spec in args.datasets.split(","):
            data = load_dataset(spec)
            f_star = reference_optimum(task.objective(data.n), data.X, data.y).f_star
            got = {a: {"1e-3": [], "1e-6": [], "cert": []} for a in arms}
            for k in range(args.pairs):
                for a in (arms if k % 2 == 0 else arms[::-1]):
                    est, _ = fit_once(data, task, a, args.budget, traced=True)
                    tr = np.asarray(est.trace_)
                    got[a]["1e-3"].append(ttt(tr, f_star, 1e-3))
                    got[a]["1e-6"].append(ttt(tr, f_star, 1e-6))
                    _, wall = fit_once(data, task, a, args.budget, traced=False)
                    got[a]["cert"].append(wall)
            print(f"{spec} {task.key} (load {os.getloadavg()[0]:.1f}), medians of {args.pairs}:")
            old = arms[0]
            for a in arms:
                line = f"  oneshot_epochs={a:<3d}"
                for key in ("1e-3", "1e-6", "cert"):
                    line += f" {key} {statistics.median(got[a][key]) * 1e3:7.1f} ms"
                    if a != old:
                        ratios = [o / n for o, n in zip(got[old][key], got[a][key])
                                  if math.isfinite(o) and math.isfinite(n) and n > 0]
                        line += (f" (x{statistics.median(ratios):.2f})" if ratios else " (x-)")
                print(line, flush=True)
            for a in arms:
                print(f"    runs {a}: 1e-6 " + " ".join(f"{v * 1e3:.0f}" for v in got[a]["1e-6"])
                      + " | cert " + " ".join(f"{v * 1e3:.0f}" for v in got[a]["cert"]),
                      flush=True)


if __name__ == "__main__":
    main()
