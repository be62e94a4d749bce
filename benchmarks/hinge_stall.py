"""The default hinge fit under load: how often it stops short of its certificate, and its time.

The test's problem (`tests/algorithms/test_cocoa_newton_stall.py`: 1,000 x 20 dense,
``AsipClassifier(loss="hinge", max_time=10)``, auto: the smoothed hinge's Newton on a 2 x 1
cluster) fitted ``--fits`` times while ``--busy`` busy-loop processes compete for the cores.
One JSON line a fit: ``stopped_by_``, wall seconds, Newton rounds, ``mu`` and the last
certified relative gap, the load average.

Run: ``python benchmarks/hinge_stall.py --fits 6 --busy 3``; A/B, arms alternating, each a
fresh process and cluster with its own ``PYTHONPATH`` (run from a neutral cwd such as /tmp):
``python benchmarks/hinge_stall.py --ab OLD_ROOT NEW_ROOT --pairs 8 --fits 6 --busy 3``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import warnings

import numpy as np


def _busy() -> None:
    while True:
        pass


def _problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 20))
    y = np.where(X @ rng.normal(size=20) + 0.3 * rng.normal(size=1000) > 0, 1, 0)
    return X, y


def fits(n_fits: int, n_busy: int, max_time: float) -> None:
    """Fit ``n_fits`` times on a fresh cluster under ``n_busy`` busy loops; a JSON line each."""
    from distributed import Client, LocalCluster

    import asip
    from asip.algorithms import AsipClassifier

    X, y = _problem()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as c:
        c.run(lambda: __import__("asip.algorithms"))
        AsipClassifier(loss="hinge", max_time=max_time).fit(X, y)  # warm: numba, first fit
        busy = [mp.Process(target=_busy, daemon=True) for _ in range(n_busy)]
        for p in busy:
            p.start()
        try:
            for _ in range(n_fits):
                est = AsipClassifier(loss="hinge", max_time=max_time)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit(X, y)
                wall = time.perf_counter() - t0
                lead = est.stage_result_.results[0] or {}
                print(json.dumps({"root": os.path.dirname(os.path.dirname(asip.__file__)),
                                  "stop": est.stopped_by_, "wall": wall,
                                  "rounds": lead.get("rounds"), "mu": lead.get("mu"),
                                  "rel_gap": lead.get("rel_gap"),
                                  "load": os.getloadavg()[0]}), flush=True)
        finally:
            for p in busy:
                p.terminate()


def ab(roots, pairs: int, n_fits: int, n_busy: int, max_time: float) -> None:
    """Arms alternating, ``pairs`` times: each a subprocess with ``PYTHONPATH`` its root."""
    rows = {r: [] for r in roots}
    for k in range(pairs):
        for root in roots:
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--fits", str(n_fits), "--busy",
                 str(n_busy), "--max-time", str(max_time)],
                env={**os.environ, "PYTHONPATH": root}, capture_output=True, text=True)
            got = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            if not got:
                print(out.stderr[-2000:], file=sys.stderr)
            rows[root] += got
            print(f"pair {k} {root}: {[g['stop'] for g in got]} "
                  f"walls {[round(g['wall'], 2) for g in got]}", flush=True)
    for root, got in rows.items():
        walls = [g["wall"] for g in got]
        short = [g for g in got if g["stop"] != "tol"]
        print(f"{root}: {len(short)} of {len(got)} not certified; median wall "
              f"{np.median(walls):.2f} s; median rounds {np.median([g['rounds'] for g in got])}; "
              f"loads {min(g['load'] for g in got):.1f}-{max(g['load'] for g in got):.1f}; "
              f"short: {[(g['stop'], g['rounds'], g['rel_gap']) for g in short]}")
    old, new = ([g["wall"] for g in rows[r]] for r in roots)
    per_pair = [np.median(new[i:i + n_fits]) / np.median(old[i:i + n_fits])
                for i in range(0, min(len(old), len(new)), n_fits)]
    print(f"new/old median wall per pair: {[round(x, 2) for x in per_pair]}, median "
          f"{np.median(per_pair):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", type=int, default=6)
    ap.add_argument("--busy", type=int, default=3)
    ap.add_argument("--max-time", type=float, default=10.0)
    ap.add_argument("--ab", nargs=2, metavar=("OLD_ROOT", "NEW_ROOT"))
    ap.add_argument("--pairs", type=int, default=8)
    args = ap.parse_args()
    if args.ab:
        ab(args.ab, args.pairs, args.fits, args.busy, args.max_time)
    else:
        fits(args.fits, args.busy, args.max_time)


if __name__ == "__main__":
    main()
