"""asip-admm and ``admm`` on the 1,000 x 20 dense case at small alpha (Issue 12): the wall time of
a certified ``AsipClassifier.fit`` (default ``tol``), hinge and log_loss, variants alternating.

Run: ``python benchmarks/admm_small.py [--alpha 1e-4] [--losses hinge,log_loss] [--repeats 3]
[--variants 'asip-admm;admm'] [--intercept]``. 2 workers x 1 thread, 2 partitions; the data is
`benchmarks/cold_start.py`'s (``--data make_logistic``: `make_logistic(1000, 20)`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import dask
import numpy as np
from distributed import Client, LocalCluster


def main(argv=None):
    from admm_cluster import parse_variant, timed_fit
    from admm_rounds import cold_start_data
    from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty, make_logistic,
                                 reference_optimum)

    ap = argparse.ArgumentParser()
    ap.add_argument("--alpha", type=float, default=1e-4)
    ap.add_argument("--losses", default="hinge,log_loss")
    ap.add_argument("--variants", default="asip-admm;admm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--intercept", action="store_true")
    ap.add_argument("--data", default="cold_start", help="cold_start (`benchmarks/cold_start.py`'s "
                    "nearly separable 1,000 x 20) or make_logistic (1,000 x 20, seed 0)")
    args = ap.parse_args(argv)
    variants = [parse_variant(v.strip()) for v in args.variants.split(";") if v.strip()]
    if args.data == "cold_start":
        X, y = cold_start_data()
    else:
        ds = make_logistic(1000, 20, random_state=0)
        X, y = ds.X, np.asarray(ds.y, dtype=np.float64)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()}, "
          f"{args.data}, alpha {args.alpha}, intercept {args.intercept}", flush=True)
    rows = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        for loss in args.losses.split(","):
            obj = Objective(get_loss(loss), get_penalty("l2", args.alpha), args.intercept)
            f_star = reference_optimum(obj, X, y).f_star
            for _, solver, params in variants:  # warm-up: numba loads outside the timed fits
                AsipClassifier(loss=loss, solver=solver, max_time=0.3, alpha=args.alpha,
                               fit_intercept=args.intercept, n_partitions=2,
                               solver_params=params or None).fit(X, y)
            for rep in range(args.repeats):
                for label, solver, params in (variants if rep % 2 == 0 else variants[::-1]):
                    est = AsipClassifier(loss=loss, solver=solver, alpha=args.alpha,
                                         fit_intercept=args.intercept, n_partitions=2,
                                         max_time=10.0, solver_params=params or None)
                    wall = timed_fit(est, X, y)
                    w = np.append(est.coef_.ravel(), est.intercept_) if args.intercept \
                        else est.coef_.ravel()
                    rel = (obj.value(w, X, y) - f_star) / abs(f_star)
                    rows.setdefault((loss, label), []).append(wall)
                    print(f"{loss:9s} {label:44s} #{rep} certified fit {1e3 * wall:7.1f} ms "
                          f"(rel {rel:.1e})", flush=True)
    print(f"# medians; load {os.getloadavg()}")
    for (loss, label), vals in rows.items():
        print(f"{loss:9s} {label:44s} certified fit {1e3 * statistics.median(vals):7.1f} ms",
              flush=True)


if __name__ == "__main__":
    with dask.config.set({"distributed.worker.daemon": True}):
        main()
