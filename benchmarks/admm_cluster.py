"""asip-admm variants and ``admm`` side by side on one cluster: time to 1e-3 / 1e-6 from the
``fit`` call (the bench's clock: `asip_bench.runner.run_asip`, ``tol=0``) and the wall time
of a certified ``fit`` (default ``tol``), alternating the variants' order every repeat.

Run: ``python benchmarks/admm_cluster.py --datasets a9a,ijcnn1,synthetic-logistic:20000
--tasks hinge-l2 --variants 'asip-admm;admm;asip-admm relaxation=1.0' --repeats 3``. A variant
is a solver then ``key=value`` params (Python literals). 2 workers x 1 thread, 2 partitions.
The trace is the bench's (`asip_bench.session.TRACE_CONFIG`: a model in every report).
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import time
import warnings

import dask
from distributed import Client, LocalCluster


def parse_variant(spec: str) -> tuple[str, str, dict]:
    words = spec.split()
    params = {}
    for kv in words[1:]:
        k, _, v = kv.partition("=")
        params[k] = ast.literal_eval(v)
    return spec, words[0], params


def timed_fit(est, X, y) -> float:
    """Wall seconds of ``est.fit(X, y)`` (to its certified stop, or its cap), warnings off."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - t0


def crossing(trace, f_star, target):
    for t, f in trace:
        if (f - f_star) / abs(f_star) <= target:
            return t
    return float("nan")


def main(argv=None):
    from asip.algorithms import AsipClassifier, make_logistic
    from asip_bench.data import ClusterData, compute_reference, load_dataset, parse_task
    from asip_bench.runner import run_asip
    from asip_bench.session import TRACE_CONFIG

    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="a9a,ijcnn1,synthetic-logistic:20000")
    ap.add_argument("--tasks", default="hinge-l2")
    ap.add_argument("--variants", default="asip-admm;admm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--no-certified", action="store_true")
    args = ap.parse_args(argv)
    variants = [parse_variant(v.strip()) for v in args.variants.split(";") if v.strip()]
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()}",
          flush=True)
    rows = {}
    # the trace as `asip bench --ttt` takes it: without TRACE_CONFIG reuters' reports carry no
    # model and every target reads as reached at the end of the budget
    with dask.config.set(TRACE_CONFIG), LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True,
            dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        ds = make_logistic(2_000, 20, random_state=1)
        for _, solver, params in variants:  # numba compiles outside the timed fits
            AsipClassifier(solver=solver, max_time=0.3, alpha=0.1, fit_intercept=False,
                           n_partitions=2, solver_params=params or None).fit(ds.X, ds.y)
        for name in args.datasets.split(","):
            data = load_dataset(name)
            cdata = ClusterData(client, data, 2)
            X, y = cdata.asip_input()
            for tname in args.tasks.split(","):
                task = parse_task(tname)
                f_star = float(compute_reference(data, task)["f_star"])
                objective = task.objective(data.n)
                run_asip(cdata, task, variants[0][1], 0.3, tol=0)  # the bench's warm-up
                for rep in range(args.repeats):
                    order = variants if rep % 2 == 0 else variants[::-1]
                    for label, solver, params in order:
                        run = run_asip(cdata, task, solver, args.budget, tol=0,
                                       solver_params=params or None)
                        t3, t6 = (crossing(run.trace, f_star, t) for t in (1e-3, 1e-6))
                        wall, rel = float("nan"), float("nan")
                        if not args.no_certified:
                            est = AsipClassifier(loss=task.loss, penalty=task.penalty,
                                                 alpha=task.alpha_for(data.n), solver=solver,
                                                 fit_intercept=False, n_partitions=2,
                                                 max_time=10.0, solver_params=params or None)
                            wall = timed_fit(est, X, y)
                            rel = (objective.value(est.coef_.ravel(), data.X, data.y)
                                   - f_star) / abs(f_star)
                        rows.setdefault((name, tname, label), []).append((t3, t6, wall))
                        print(f"{name:24s} {tname:12s} {label:40s} #{rep} 1e-3 {1e3 * t3:7.1f} ms"
                              f"  1e-6 {1e3 * t6:7.1f} ms  certified fit {1e3 * wall:7.1f} ms"
                              f" (rel {rel:.1e})", flush=True)
            cdata.close()
    print(f"# medians; load {os.getloadavg()}")
    for (name, tname, label), vals in rows.items():
        med = [statistics.median(v[i] for v in vals) for i in range(3)]
        print(f"{name:24s} {tname:12s} {label:40s} 1e-3 {1e3 * med[0]:7.1f}  1e-6 "
              f"{1e3 * med[1]:7.1f}  certified fit {1e3 * med[2]:7.1f} ms", flush=True)


if __name__ == "__main__":
    with dask.config.set({"distributed.worker.daemon": True}):
        main()
