"""asip-cocoa on hinge-l2 with an `_cocoa` constant at two values, alternating on one 2 x 1
local cluster, ``admm`` (``--peers``) timed in the same run: time to 1e-3 and 1e-6 in the
trace.

The constant is set on the workers (``client.run``) before each fit. Each repeat runs both
arms (ABAB, then BABA) and the peers on every pair, as ``asip bench --ttt`` runs a fit
(`asip_bench.runner.run_asip`: ``tol=0``, the bench's report interval, the live callback; the
first trace time at or below each target, from the ``fit`` call). Prints every fit with the
load average; per arm the medians and the paired ratio new / old (below 1: the new sooner).

Run:  python benchmarks/hinge_layout_ab.py [--knob HINGE_LAYOUT --old 0 --new 1]
          [--pairs a9a ijcnn1 synthetic-logistic:20000 reuters] [--repeats 6] [--budget 0.8]
          [--peers admm asip-admm]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from newton_ab import _set  # noqa: E402

TARGETS = (1e-3, 1e-6)


def _median(values) -> float:
    return statistics.median(values) if values else math.nan


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+",
                    default=["a9a", "ijcnn1", "synthetic-logistic:20000", "reuters"])
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--budget", type=float, default=0.8)
    ap.add_argument("--knob", default="HINGE_LAYOUT", help="an `_cocoa` constant")
    ap.add_argument("--old", type=float, default=0.0, help="its value in the old arm")
    ap.add_argument("--new", type=float, default=1.0, help="... in the new arm")
    ap.add_argument("--peers", nargs="*", default=["admm"],
                    help="other solvers timed in each repeat (e.g. admm asip-admm)")
    args = ap.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster

    from asip_bench.data import ClusterData, compute_reference, load_dataset, parse_task
    from asip_bench.runner import LiveObjective, run_asip
    from asip_bench.session import TRACE_INTERVAL

    arms = {"old": args.old, "new": args.new}
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()}, "
          f"{args.knob} old {args.old:g} new {args.new:g}", flush=True)
    summary = []
    task = parse_task("hinge-l2")
    with dask.config.set({"asip.trace.report-interval": TRACE_INTERVAL}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        for name in args.pairs:
            data = load_dataset(name)
            f_star = float(compute_reference(data, task)["f_star"])
            cdata = ClusterData(client, data, 2)
            for arm in arms:  # compiles, as the bench's warm-up
                client.run(_set, args.knob, arms[arm])
                run_asip(cdata, task, "asip-cocoa", 0.3, tol=0)
            for peer in args.peers:
                run_asip(cdata, task, peer, 0.3, tol=0)
            got = {arm: [] for arm in (*arms, *args.peers)}
            for rep in range(args.repeats):
                order = ("old", "new") if rep % 2 == 0 else ("new", "old")
                for arm in order + tuple(args.peers):
                    solver = arm if arm in args.peers else "asip-cocoa"
                    if arm in arms:
                        client.run(_set, args.knob, arms[arm])
                    live = LiveObjective(data, task, lambda *a: None)
                    run = run_asip(cdata, task, solver, args.budget, live=live, tol=0)
                    run.f_star = f_star
                    times = [run.time_to(t) for t in TARGETS]
                    got[arm].append(times)
                    print(f"{name:26s} {arm:9s} #{rep} 1e-3 {1e3 * times[0]:7.1f} ms  1e-6 "
                          f"{1e3 * times[1]:7.1f} ms | load {os.getloadavg()[0]:.1f}", flush=True)
            for k, target in enumerate(TARGETS):
                old = [r[k] for r in got["old"]]
                new = [r[k] for r in got["new"]]
                ratios = [b / a for a, b in zip(old, new) if math.isfinite(a) and math.isfinite(b)]
                never = sum(not math.isfinite(v) for v in old), sum(not math.isfinite(v) for v in new)
                peers = [_median([r[k] for r in got[p]]) for p in args.peers]
                summary.append((name, target, _median(old), _median(new), peers,
                                _median(ratios), len(ratios), never))
            cdata.close()
    print(f"\n# load average at end: {os.getloadavg()}")
    print("pair                       target   old ms   new ms "
          + " ".join(f"{p + ' ms':>10s}" for p in args.peers)
          + "  paired new/old (n, both finite)  never old/new")
    for name, target, old, new, peers, ratio, n, never in summary:
        print(f"{name:26s} {target:6.0e} {1e3 * old:8.1f} {1e3 * new:8.1f} "
              + " ".join(f"{1e3 * v:10.1f}" for v in peers)
              + f"  {ratio:.2f} ({n})  {never[0]}/{never[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
