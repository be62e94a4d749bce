"""A certified asip-cocoa ``fit()``'s wall time with ``trace_`` evaluated in the fit (old:
``asip.driver.lazy-trace: false``) and when first read (new), alternating in one 2 x 1
cluster of worker processes, the order flipped every other pair (AB BA: this machine runs
a pair's second arm slower).

Per pair of data set and alpha: medians of each arm's fit wall time, the paired ratios
new / old (median, min..max), and what reading ``trace_`` after the new arm's fit costs
(the pass the fit no longer takes). Dense sets go in as persisted dask arrays (their trace
pass is a dask compute on the cluster), sparse ones as CSR in memory (`ClusterData`).

Run:  python benchmarks/lazy_trace_ab.py [--pairs synthetic-logistic:20000@1/n a9a@1/n
          ijcnn1@0.1 reuters@0.1] [--repeats 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import dask

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from newton_ab import _task  # noqa: E402

ARMS = {"old": False, "new": True}  # asip.driver.lazy-trace


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["synthetic-logistic:20000@1/n", "a9a@1/n",
                                                    "ijcnn1@0.1", "reuters@0.1"])
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args(argv)

    from distributed import Client, LocalCluster

    from asip.algorithms import AsipClassifier
    from asip_bench.data import ClusterData, load_dataset, parse_task

    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()}",
          flush=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        for spec in args.pairs:
            name, key = _task(spec)
            task, data = parse_task(key), load_dataset(name)
            cdata = ClusterData(client, data, 2)
            X, y = cdata.asip_input()
            wall = {arm: [] for arm in ARMS}
            read: list = []
            for rep in range(args.repeats + 1):  # the first pair: a warm-up, not counted
                for arm in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                    est = AsipClassifier(solver="asip-cocoa", loss=task.loss,
                                         penalty=task.penalty, alpha=task.alpha_for(data.n),
                                         fit_intercept=False, n_partitions=2, max_time=10.0)
                    with dask.config.set({"asip.driver.lazy-trace": ARMS[arm]}):
                        t0 = time.perf_counter()
                        est.fit(X, y)
                        t1 = time.perf_counter()
                        est.trace_
                        t2 = time.perf_counter()
                    if est.stopped_by_ != "tol":
                        print(f"{spec} {arm} #{rep}: stopped by {est.stopped_by_}", flush=True)
                    if rep:
                        wall[arm].append(1e3 * (t1 - t0))
                        if arm == "new":
                            read.append(1e3 * (t2 - t1))
                if rep:
                    print(f"{spec} #{rep} old {wall['old'][-1]:.1f} new {wall['new'][-1]:.1f} ms "
                          f"| load {os.getloadavg()[0]:.1f}", flush=True)
            ratios = [n / o for o, n in zip(wall["old"], wall["new"])]
            med = {arm: statistics.median(v) for arm, v in wall.items()}
            print(f"{spec}: fit old {med['old']:.1f} new {med['new']:.1f} ms, new/old "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}..{max(ratios):.2f}) "
                  f"n={len(ratios)}; trace_ read after the new fit {statistics.median(read):.1f} "
                  f"ms | load {os.getloadavg()}", flush=True)
            cdata.close()
    print(f"# load at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
