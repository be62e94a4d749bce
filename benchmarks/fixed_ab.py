"""A small stage's fixed cost under two dask.config settings, alternating in one cluster.

Each rep runs a 2-operator stage that returns at once (`channel.Quick`, as ``channel.py
--fixed``) with the config as it is (arm A) and with ``--set`` applied (arm B), the order
flipped every other rep (AB BA AB ...), on one warm 2-worker cluster; prints each phase's
median per arm and the median of the paired ratios B / A, with the load average. Arms that
share a cluster share its state: what one arm leaves behind (an installed plugin) the other
finds.

Run:  python benchmarks/fixed_ab.py --set asip.stage.respawn-hold=0 [--reps 80] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import dask
import numpy as np
from distributed import Client, LocalCluster

import asip
from channel import Quick


def _stage_row(client: Client, blocks: list) -> dict:
    t = time.perf_counter()
    res = asip.Stage(Quick, blocks, client=client, max_time=5).run()
    return {**res.timings, "run": res.elapsed, "wall": time.perf_counter() - t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, metavar="KEY=VALUE",
                        help="arm B's dask.config setting (repeat for more)")
    parser.add_argument("--reps", type=int, default=80)
    parser.add_argument("--in-process", action="store_true",
                        help="workers that are threads of this process")
    args = parser.parse_args()
    settings = dict(s.split("=", 1) for s in args.set)
    arms = {"A": {}, "B": settings}
    blocks = [np.ones((10, 3)), np.ones((10, 3))]
    rows: dict[str, list] = {"A": [], "B": []}
    load = os.getloadavg()[0]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=not args.in_process,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        for arm in arms.values():  # warm: imports, connections, each arm's first install
            with dask.config.set(arm):
                _stage_row(client, blocks)
        for rep in range(args.reps):
            for name in ("AB" if rep % 2 == 0 else "BA"):
                with dask.config.set(arms[name]):
                    rows[name].append(_stage_row(client, blocks))
    print(f"B: {settings}; {args.reps} pairs; load average {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; ms, median")
    print(f"  {'phase':<24}{'A':>9}{'B':>9}   paired B/A")
    for key in rows["A"][0]:
        pairs = [(a[key] * 1e3, b[key] * 1e3) for a, b in zip(rows["A"], rows["B"])
                 if key in a and key in b]
        if not pairs:
            continue
        a, b = zip(*pairs)
        ratio = statistics.median(y / x for x, y in pairs if x > 0)
        print(f"  {key:<24}{statistics.median(a):>9.1f}{statistics.median(b):>9.1f}"
              f"   {ratio:.2f}")


if __name__ == "__main__":
    main()
