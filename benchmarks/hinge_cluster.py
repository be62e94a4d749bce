"""hinge-l2 on a 2-worker LocalCluster: asip-cocoa's local solvers side by side with admm.

Run: ``python benchmarks/hinge_cluster.py --datasets a9a,ijcnn1 --settings
'asip-cocoa:local_solver="sdca";asip-cocoa:local_solver="newton";admm' [--partitions 2]
[--repeat 3] [--budget 1.5]``. A setting is ``solver[:k=v,...]`` (json values); the settings
run in turn, ``--repeat`` times. Per setting the medians of the times to 1e-3 and 1e-6 (stage
time, read off ``trace_`` as ``asip bench --ttt`` takes it, `TRACE_CONFIG`), the runs, and
the load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from collections import defaultdict

import dask
import numpy as np
from distributed import Client, LocalCluster

from asip.algorithms import AsipClassifier
from asip.algorithms._reference import reference_optimum
from asip_bench.data import load_dataset, parse_task
from asip_bench.session import TRACE_CONFIG
from straggler_diag import ttt


def parse_setting(spec: str):
    solver, _, rest = spec.partition(":")
    params = {}
    for kv in filter(None, rest.split(",")):
        k, v = kv.split("=")
        params[k] = json.loads(v)
    return solver, params


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="a9a,ijcnn1")
    ap.add_argument("--settings", default='asip-cocoa:local_solver="sdca";'
                    'asip-cocoa:local_solver="newton";admm')
    ap.add_argument("--task", default="hinge-l2")
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget", type=float, default=1.5)
    args = ap.parse_args(argv)
    settings = [s.strip() for s in args.settings.split(";") if s.strip()]
    task = parse_task(args.task)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load "
          f"{os.getloadavg()}", flush=True)
    with LocalCluster(n_workers=2, threads_per_worker=math.ceil(args.partitions / 2),
                      dashboard_address=None) as cluster, Client(cluster):
        for spec in args.datasets.split(","):
            data = load_dataset(spec)
            obj = task.objective(data.n)
            f_star = reference_optimum(obj, data.X, data.y).f_star
            got = defaultdict(list)
            for _ in range(args.repeat):
                for setting in settings:
                    solver, params = parse_setting(setting)
                    est = AsipClassifier(loss=task.loss, penalty=task.penalty,
                                         alpha=task.alpha_for(data.n), solver=solver,
                                         fit_intercept=False, max_time=args.budget,
                                         n_partitions=args.partitions, random_state=0, tol=0.0,
                                         solver_params=params or None)
                    with warnings.catch_warnings(), dask.config.set(TRACE_CONFIG):
                        warnings.simplefilter("ignore")
                        est.fit(data.X, data.y)
                    tr = np.asarray(est.trace_)
                    got[setting].append((ttt(tr, f_star, 1e-3), ttt(tr, f_star, 1e-6)))
            print(f"{spec} {task.key} K={args.partitions} (load {os.getloadavg()[0]:.1f}):")
            for setting, runs in got.items():
                t3 = np.median([a for a, _ in runs])
                t6 = np.median([b for _, b in runs])
                print(f"  {setting:45s} 1e-3 {t3:.3f} s  1e-6 {t6:.3f} s   runs "
                      + " ".join(f"{a:.3f}/{b:.3f}" for a, b in runs), flush=True)


if __name__ == "__main__":
    main()
