"""asip-cocoa SDCA's certificate cadence on a local cluster, paired fit by fit: wall time of
``fit`` to its certified stop (default ``tol``) with `_cocoa.CERT_BALANCE` at each value,
alternating the values in one cluster (set on the workers by ``client.run``), so that both
arms see the same load. ``inf`` is the schedule before the balanced period (the ramp and
``cert_period`` alone).

Run:  python benchmarks/cert_cadence_cluster.py [--datasets a9a,ijcnn1] [--task hinge-l2]
          [--balance inf,1] [--repeats 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _set_balance(value: float, dask_worker=None) -> float:
    from asip.algorithms import _cocoa

    _cocoa.CERT_BALANCE = value
    return value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="a9a,ijcnn1,synthetic-logistic:20000,reuters")
    ap.add_argument("--task", default="hinge-l2")
    ap.add_argument("--balance", default="inf,1")
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args(argv)
    values = [float(v) for v in args.balance.split(",")]

    from distributed import Client, LocalCluster

    from asip.algorithms import AsipClassifier
    from asip_bench.data import ClusterData, compute_reference, load_dataset, parse_task

    task = parse_task(args.task)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load "
          f"{os.getloadavg()}", flush=True)
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        for name in args.datasets.split(","):
            data = load_dataset(name)
            f_star = float(compute_reference(data, task)["f_star"])
            cdata = ClusterData(client, data, 2)
            X, y = cdata.asip_input()
            objective = task.objective(data.n)
            times: dict = {v: [] for v in values}
            for rep in range(args.repeats + 1):  # the first round is a warm-up, not kept
                for v in (values if rep % 2 == 0 else values[::-1]):
                    client.run(_set_balance, v)
                    est = AsipClassifier(solver="asip-cocoa", loss=task.loss,
                                         penalty=task.penalty, alpha=task.alpha_for(data.n),
                                         fit_intercept=False, n_partitions=2, max_time=10.0)
                    t0 = time.perf_counter()
                    est.fit(X, y)
                    wall = time.perf_counter() - t0
                    rel = (objective.value(est.coef_.ravel(), data.X, data.y) - f_star) \
                        / abs(f_star)
                    if rep:
                        times[v].append(wall)
                    print(f"{name:10s} balance {v:<4g} #{rep} fit {1e3 * wall:7.1f} ms "
                          f"{est.stopped_by_} n_iter {est.n_iter_} rel {rel:.1e}", flush=True)
            rows.append((name, times))
            cdata.close()
    print(f"# load at end {os.getloadavg()}")
    print("\nmedian wall time of fit() to its certified stop; paired ratio (median of "
          f"{values[-1]:g} / {values[0]:g} within each round):")
    for name, times in rows:
        meds = "  ".join(f"{v:g}: {1e3 * statistics.median(times[v]):6.1f} ms" for v in values)
        pairs = [b / a for a, b in zip(times[values[0]], times[values[-1]])]
        print(f"  {name:26s} {meds}  ratio {statistics.median(pairs):.2f}  "
              + " | ".join(f"{v:g}: " + ",".join(f"{1e3 * t:.0f}" for t in times[v])
                           for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
