"""A dense in-process fit after the user limited BLAS in the main thread: the stage's hold of
the pools at one thread (``asip.stage.single-thread-blas``) on against off, in one cluster.

threadpoolctl 3.8 lets only the thread that last set OpenBLAS's pool size set it again; before
``asip._blas`` freed that control, a user's ``threadpool_limits`` made the hold a silent no-op,
which is the "off" arm here. ``asip.connect(n_workers=2, processes=False)``; the user's
``threadpool_limits(limits=--user-threads)`` (default: one per core; 0: none) stays open
around every fit; each fit is ``AsipClassifier(solver=--solver, alpha=1/n, fit_intercept=False,
tol=1e-3)`` on dense synthetic logistic ``--rows`` x ``--cols``, as a user times it, after
one warm-up fit per arm; the arms alternate (on off, off on, ...) ``--pairs`` times. Prints
every pair, the medians, the median of the paired ratios (off / on: above 1, the hold is
sooner) and the load average. ``--arms on`` times the hold alone (for an A/B of two code
versions, one process each).

Run:  python benchmarks/blas_hold.py --pairs 6
"""

from __future__ import annotations

import argparse
import math
import os
import statistics

import dask

import asip
from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic, reference_optimum,
                             relative_suboptimality)
from inproc import _load, _timed_fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--solver", default="asip-cocoa")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--user-threads", type=int, default=os.cpu_count(),
                        help="the user's BLAS limit around the fits (0: none)")
    parser.add_argument("--arms", nargs="+", choices=("on", "off"), default=["on", "off"])
    args = parser.parse_args()

    from threadpoolctl import threadpool_info, threadpool_limits

    ds = make_logistic(args.rows, args.cols, random_state=0)
    alpha = 1.0 / args.rows
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    f_star = reference_optimum(obj, ds.X, ds.y).f_star

    def measure(client, arm: str) -> float:
        with dask.config.set({"asip.stage.single-thread-blas": arm == "on"}):
            wall, est = _timed_fit(client, ds.X, ds.y, alpha=alpha, fit_intercept=False,
                                   solver=args.solver, tol=1e-3, max_time=60)
        rel = relative_suboptimality(obj.value(est.coef_.ravel(), ds.X, ds.y), f_star)
        return wall if rel <= 1e-3 else math.inf

    label = f"{args.solver} fit(tol=1e-3) on dense {args.rows:,} x {args.cols}"
    with asip.connect(n_workers=2, processes=False, dashboard=False, silence_logs=40,
                      set_as_default=False) as client, \
            threadpool_limits(limits=args.user_threads or None, user_api="blas"):
        pools = sorted(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        print(f"{label}; the user's BLAS limit {args.user_threads or 'none'} (pools {pools}); "
              f"load {_load()}", flush=True)
        for arm in args.arms:  # warm-up: compiled kernels, imports
            measure(client, arm)
        times: dict[str, list] = {arm: [] for arm in args.arms}
        for k in range(args.pairs):
            for arm in args.arms if k % 2 == 0 else args.arms[::-1]:
                times[arm].append(measure(client, arm))
            print(f"  pair {k}: " + ", ".join(f"hold {arm} {times[arm][-1]:.3f} s"
                                              for arm in args.arms) + f"; load {_load()}",
                  flush=True)
    med = {arm: statistics.median(times[arm]) for arm in args.arms}
    line = ", ".join(f"hold {arm} {med[arm]:.3f} s" for arm in args.arms)
    if len(args.arms) == 2:
        ratios = [off / on for on, off in zip(times["on"], times["off"])]
        line += (f"; paired ratio off/on median {statistics.median(ratios):.2f}x "
                 f"(range {min(ratios):.2f}-{max(ratios):.2f}, n={args.pairs})")
    print(f"{label}: median {line}; load {_load()}", flush=True)


if __name__ == "__main__":
    main()
