"""Diagnose async solvers under the paper's straggler at 16 partitions: time to 1e-3 with and
without the straggler, per-operator passes, trace.

Run: ``python benchmarks/straggler_diag.py --datasets a9a
--solvers asip-cocoa --tasks log_loss-l2-1/n [--partitions 16] [--budget 6] [--params k=v,...]
[--repeat 4]``; with several ``--params`` or ``--repeat``, a closing summary gives per setting the
medians over the repeats (time to 1e-3, median Newton rounds by then) and the load average.

Times to a target are read off ``trace_`` taken as ``asip bench --ttt`` takes it: the model in
every report, one report per 20 ms (`TRACE_CONFIG`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import warnings
from collections import defaultdict

import dask
import numpy as np
from distributed import Client, LocalCluster

import asip
from asip.algorithms import AsipClassifier
from asip.algorithms._reference import reference_optimum
from asip_bench.data import load_dataset, parse_task
from asip_bench.session import TRACE_CONFIG


def ttt(trace, f_star, target):
    for t, f in trace:
        if (f - f_star) / abs(f_star) <= target:
            return t
    return math.inf


def _rounds_at(trace, t):
    """Per partition, the Newton rounds it had reported by stage time ``t`` (empty: none)."""
    last = {}
    for e in trace:
        if e.time <= t and "rounds" in e.metrics:
            last[e.partition] = int(e.metrics["rounds"])
    return sorted(last.values())


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", default="a9a")
    p.add_argument("--solvers", default="asip-cocoa")
    p.add_argument("--tasks", default="log_loss-l2-1/n")
    p.add_argument("--partitions", type=int, default=16)
    p.add_argument("--budget", type=float, default=6.0)
    p.add_argument("--modes", default="straggler,none")
    p.add_argument("--params", action="append", default=None,
                   help="solver_params as k=v,k=v (json values); repeat to compare settings "
                   "side by side (each runs in turn, --repeat times)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each setting, alternated")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    settings = []
    for spec in args.params or [""]:
        params = {}
        for kv in filter(None, spec.split(",")):
            k, v = kv.split("=")
            params[k] = json.loads(v)
        settings.append(params)
    summary = defaultdict(list)  # (dataset, task, solver, mode, params) -> [(t3, rounds)]
    with LocalCluster(n_workers=2, threads_per_worker=math.ceil(args.partitions / 2),
                      dashboard_address=None) as cluster, Client(cluster):
        for spec in args.datasets.split(","):
            data = load_dataset(spec)
            for task in map(parse_task, args.tasks.split(",")):
                obj = task.objective(data.n)
                f_star = reference_optimum(obj, data.X, data.y).f_star
                runs = [(solver, mode, params) for _ in range(args.repeat)
                        for solver in args.solvers.split(",") for mode in args.modes.split(",")
                        for params in settings]
                for solver, mode, params in runs:
                    if True:
                        faults = (asip.faults.Straggler(0),) if mode == "straggler" else ()
                        est = AsipClassifier(loss=task.loss, penalty=task.penalty,
                                             alpha=task.alpha_for(data.n), solver=solver,
                                             fit_intercept=False, max_time=args.budget,
                                             n_partitions=args.partitions, faults=faults,
                                             random_state=0, tol=0.0,
                                             solver_params=params or None)
                        with warnings.catch_warnings(), dask.config.set(TRACE_CONFIG):
                            warnings.simplefilter("ignore")
                            est.fit(data.X, data.y)
                        tr = np.asarray(est.trace_)
                        res = est.stage_result_
                        t3, t6 = ttt(tr, f_star, 1e-3), ttt(tr, f_star, 1e-6)
                        last = (tr[-1, 1] - f_star) / abs(f_star)
                        passes = [int(r.get("t", -1)) if r else None for r in res.results]
                        rs = [(float(r["round_s"]), float(r["round_cpu_s"])) for r in res.results
                              if r and "round_s" in r]
                        if rs:  # Newton rounds: mean wall and thread-CPU seconds
                            print(f"  round wall {np.mean([a for a, _ in rs]) * 1e3:.1f} ms, "
                                  f"cpu {np.mean([b for _, b in rs]) * 1e3:.1f} ms; elapsed "
                                  f"{res.elapsed:.2f} s; stats {res.stats['total'].get('delivered')} "
                                  f"msgs, {res.stats['total'].get('delivered_bytes', 0) / 1e6:.1f} MB")
                        at3 = _rounds_at(res.trace, t3)
                        summary[spec, task.key, solver, mode, json.dumps(params)].append(
                            (t3, float(np.median(at3)) if at3 else math.nan))
                        if at3:
                            print(f"  Newton rounds by 1e-3 (median, min-max over partitions): "
                                  f"{np.median(at3):.0f}, {min(at3)}-{max(at3)}")
                        print(f"{spec} {task.key} {solver} {mode} {params or ''}: 1e-3 at {t3:.2f} s, 1e-6 at "
                              f"{t6:.2f} s, end {last:.1e}; steps {list(res.steps)}; passes {passes}",
                              flush=True)
                        if args.verbose:
                            for t, f in tr[:: max(1, len(tr) // 40)]:
                                print(f"   {t:6.2f} {(f - f_star) / abs(f_star):.2e}")
    print(f"summary (medians over runs; load average {os.getloadavg()}):")
    for (spec, task, solver, mode, params), got in summary.items():
        t3s, rounds = [t for t, _ in got], [r for _, r in got]
        print(f"  {spec} {task} {solver} {mode} {params}: 1e-3 at {np.median(t3s):.2f} s "
              f"({' '.join(f'{t:.2f}' for t in t3s)}), Newton rounds {np.median(rounds):.0f} "
              f"({' '.join(f'{r:.0f}' for r in rounds)})")


if __name__ == "__main__":
    main()
