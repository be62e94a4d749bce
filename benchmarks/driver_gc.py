"""Small fits against the driver's garbage collector: ``asip.driver.gc-freeze`` on and off.

The embedded cluster of `asip.connect()` runs its scheduler in the driver process, where
a full collection walks every tracked object (the imports' ~240k and more). Each arm runs
in its own process (the freeze is process-global), the arms alternating, each process:
``asip.connect(n_workers=2)`` with the key on or off, a warm-up, then ``--fits`` certified
fits (default ``tol``) of ``--solver`` on ``--data``, each timed from the call to its
return, with every collection of this process inside it (``gc.callbacks``). Prints per
arm: fits, median, p90, longest, fits over 2x the arm's median, full (generation 2)
collections inside fits with their lengths, and the objects the collector tracks.

Run:  python benchmarks/driver_gc.py [--data reuters --solver asip-cocoa]
          [--processes 8 --fits 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ARMS = ("off", "on")


class _GCLog:
    """Every collection of this process: (generation, start, seconds, collected)."""

    def __init__(self) -> None:
        self.events: list = []
        self._start = 0.0

    def __call__(self, phase, info) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.events.append((info["generation"], self._start,
                                time.perf_counter() - self._start, info["collected"]))


def _child(args) -> int:
    """One arm's process: connect, warm up, time the fits; one JSON line on stdout."""
    import gc

    import asip
    from asip.algorithms import AsipClassifier
    from asip_bench.data import load_dataset, parse_task
    from fit_timeline import warm_up_solvers

    task = parse_task(args.task)
    with asip.connect(n_workers=2, dashboard=True, silence_logs=40) as client:
        client.wait_for_workers(2)
        frozen_at_start = gc.get_freeze_count()
        warm_up_solvers([f"{args.data}:{args.solver}"])
        data = load_dataset(args.data)
        log = _GCLog()
        gc.callbacks.append(log)
        fits = []
        loop_start = None
        for rep in range(args.fits + 2):  # the first two are warm-ups, not kept
            est = AsipClassifier(solver=args.solver, loss=task.loss, penalty=task.penalty,
                                 alpha=task.alpha_for(data.n), fit_intercept=False,
                                 n_partitions=2, max_time=10.0)
            if rep == 2:
                loop_start = time.perf_counter()
            t0 = time.perf_counter()
            est.fit(data.X, data.y)
            t1 = time.perf_counter()
            inside = [e for e in log.events if t0 <= e[1] <= t1]
            if rep >= 2:
                fits.append({"wall": t1 - t0, "stopped_by": est.stopped_by_,
                             "full": [(e[1] - t0, e[2]) for e in inside if e[0] == 2],
                             "gc_total": sum(e[2] for e in inside),
                             "collections": len(inside)})
        gc.callbacks.remove(log)
        # the timed loop's full collections, inside fits or not
        every_full = [e[2] for e in log.events if e[0] == 2 and e[1] >= loop_start]
        tracked = len(gc.get_objects())
        out = {"arm": args.child, "fits": fits, "frozen_at_start": frozen_at_start,
               "frozen_at_end": gc.get_freeze_count(), "tracked_at_end": tracked,
               "full_in_loop": every_full, "load": os.getloadavg()}
    out["frozen_after_close"] = gc.get_freeze_count()
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _summary(rows) -> None:
    for arm in ARMS:
        sub = [r for r in rows if r["arm"] == arm]
        if not sub:
            continue
        walls = [1e3 * f["wall"] for r in sub for f in r["fits"]]
        med = statistics.median(walls)
        full = [1e3 * s for r in sub for f in r["fits"] for _, s in f["full"]]
        gct = [1e3 * f["gc_total"] for r in sub for f in r["fits"]]
        p90 = sorted(walls)[int(0.9 * (len(walls) - 1))]
        slow_gc = sum(1e3 * f["wall"] > 2 * med and bool(f["full"])
                      for r in sub for f in r["fits"])
        print(f"{arm:3s}: {len(walls)} fits in {len(sub)} processes; median {med:.1f} ms, "
              f"p90 {p90:.1f}, longest {max(walls):.1f}; over 2x median: "
              f"{sum(w > 2 * med for w in walls)} ({slow_gc} with a full collection inside); "
              f"full collections inside fits: {len(full)}"
              + (f" (median {statistics.median(full):.1f} ms, longest {max(full):.1f})"
                 if full else "")
              + f"; all collections inside a fit: median {statistics.median(gct):.2f} ms, "
              f"longest {max(gct):.1f}; frozen {[r['frozen_at_start'] for r in sub]}, "
              f"tracked at end {[r['tracked_at_end'] for r in sub]}, "
              f"frozen after close {sorted({r['frozen_after_close'] for r in sub})}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="reuters")
    ap.add_argument("--solver", default="asip-cocoa")
    ap.add_argument("--task", default="log_loss-l2")
    ap.add_argument("--processes", type=int, default=8, help="processes in all, arms alternating")
    ap.add_argument("--fits", type=int, default=12, help="timed fits per process")
    ap.add_argument("--json", help="write every process's figures here")
    ap.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows = []
    for i in range(args.processes):
        arm = ARMS[i % 2]
        env = dict(os.environ, DASK_ASIP__DRIVER__GC_FREEZE="true" if arm == "on" else "false")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", arm, "--data", args.data,
               "--solver", args.solver, "--task", args.task, "--fits", str(args.fits)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"process {i} ({arm}) failed, rc {proc.returncode}:\n{proc.stderr[-3000:]}")
            return 1
        row = json.loads(lines[-1][len("RESULT "):])
        rows.append(row)
        walls = [round(1e3 * f["wall"], 1) for f in row["fits"]]
        fulls = [(round(1e3 * a, 1), round(1e3 * s, 1)) for f in row["fits"] for a, s in f["full"]]
        loop = [round(1e3 * s, 1) for s in row["full_in_loop"]]
        print(f"process {i} {arm}: frozen {row['frozen_at_start']}, load {row['load'][0]:.2f}; "
              f"full collections during the timed fits' loop, ms {loop}; "
              f"fits ms {walls}; full collections inside fits (at ms, ms long) {fulls}",
              flush=True)
    print(f"load average at end: {os.getloadavg()}")
    _summary(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
