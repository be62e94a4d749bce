"""asip-cocoa (Newton) with an `_cocoa` or `_cocoa_newton` constant at two values, alternating
on one 2 x 1 local cluster: time to 1e-6 in the trace and fit() to its certified stop.

The constant is set on the workers (``client.run``) before each fit. Each repeat runs both
arms (ABAB, then BABA) on every pair: the trace's fit as ``asip bench --ttt`` runs it
(`asip_bench.runner.run_asip`: ``tol=0``, the bench's report interval, the live callback; its
first time at or below 1e-6 relative suboptimality, from the ``fit`` call), then ``fit`` with
the default ``tol`` timed from the call to its return. Prints every fit, the load average, per
arm the medians and the paired ratio new / old (below 1: the new value sooner). A knob of the
certified stop alone leaves the ``tol=0`` fit as it was: its ratio shows the run's noise.

Run:  python benchmarks/newton_ab.py --knob NEWTON_CLOSE_FIRST --old 0 --new 1
          [--pairs synthetic-logistic:20000@1/n ijcnn1@0.1] [--repeats 6]
      python benchmarks/newton_ab.py --knob CSR_END_HESSIAN,NEWTON_ITER_HESSIAN  # two at once
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TARGET = 1e-6


def _set(name: str, value: float, dask_worker=None) -> None:
    """On a worker: the `_cocoa` (or else `_cocoa_newton`) constant ``name`` to ``value``."""
    from asip.algorithms import _cocoa, _cocoa_newton

    setattr(_cocoa if hasattr(_cocoa, name) else _cocoa_newton, name, value)


def _task(spec: str):
    """``dataset@alpha`` (``1/n`` or a number) -> (dataset, asip_bench task key)."""
    name, _, alpha = spec.partition("@")
    return name, "log_loss-l2-1/n" if alpha == "1/n" else f"log_loss-l2@{alpha or '0.1'}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["synthetic-logistic:20000@1/n",
                                                    "synthetic-logistic:20000@0.1",
                                                    "ijcnn1@0.1", "ijcnn1@1/n", "a9a@0.1"])
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--budget", type=float, default=0.4)
    ap.add_argument("--knob", default="NEWTON_CLOSE_FIRST",
                    help="an `_cocoa` or `_cocoa_newton` constant (several: comma-separated, "
                         "each set to the arm's value)")
    ap.add_argument("--old", type=float, default=0.0, help="its value in the old arm")
    ap.add_argument("--new", type=float, default=1.0, help="... in the new arm")
    args = ap.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster

    from asip.algorithms import AsipClassifier
    from asip_bench.data import ClusterData, compute_reference, load_dataset, parse_task
    from asip_bench.runner import LiveObjective, run_asip
    from asip_bench.session import TRACE_INTERVAL

    arms = {"old": args.old, "new": args.new}
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()}, "
          f"{args.knob} old {args.old:g} new {args.new:g}", flush=True)
    summary = []
    with dask.config.set({"asip.trace.report-interval": TRACE_INTERVAL}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        for spec in args.pairs:
            name, key = _task(spec)
            task, data = parse_task(key), load_dataset(name)
            f_star = float(compute_reference(data, task)["f_star"])
            cdata = ClusterData(client, data, 2)
            X, y = cdata.asip_input()
            run_asip(cdata, task, "asip-cocoa", 0.3, tol=0)  # compiles, as the bench's warm-up
            got = {arm: {"trace": [], "cert": []} for arm in arms}
            for rep in range(args.repeats):
                for arm in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                    for knob in args.knob.split(","):
                        client.run(_set, knob, arms[arm])
                    live = LiveObjective(data, task, lambda *a: None)
                    run = run_asip(cdata, task, "asip-cocoa", args.budget, live=live, tol=0)
                    run.f_star = f_star
                    t6 = run.time_to(TARGET)
                    est = AsipClassifier(solver="asip-cocoa", loss=task.loss,
                                         penalty=task.penalty, alpha=task.alpha_for(data.n),
                                         fit_intercept=False, n_partitions=2, max_time=10.0)
                    t0 = time.perf_counter()
                    est.fit(X, y)
                    wall = time.perf_counter() - t0
                    rel = (task.objective(data.n).value(est.coef_.ravel(), data.X, data.y)
                           - f_star) / abs(f_star)
                    got[arm]["trace"].append(t6)
                    got[arm]["cert"].append(wall)
                    print(f"{spec:30s} {arm} #{rep} 1e-6 trace {1e3 * t6:6.1f} ms | certified "
                          f"fit {1e3 * wall:6.1f} ms rel {rel:.1e} {est.stopped_by_} | load "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
            for what in ("trace", "cert"):
                old, new = got["old"][what], got["new"][what]
                ratios = [b / a for a, b in zip(old, new) if math.isfinite(a) and math.isfinite(b)]
                summary.append((spec, what, statistics.median(old), statistics.median(new),
                                statistics.median(ratios) if ratios else math.nan, len(ratios)))
            cdata.close()
    print(f"\n# load average at end: {os.getloadavg()}")
    print("pair                           what   old ms   new ms  paired new/old (n)")
    for spec, what, old, new, ratio, n in summary:
        print(f"{spec:30s} {what:5s} {1e3 * old:8.1f} {1e3 * new:8.1f}  {ratio:.2f} ({n})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
