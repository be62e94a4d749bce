"""Where message age accumulates: all-to-all pushes on many operators, per hop.

Run:  python benchmarks/message_age.py [--workers 8] [--operators 64,128] [--d 1000]
      [--duration 10] [--fifo]

Each operator pushes a ``d``-float vector to every peer every step (``latest=True``
unless ``--fifo``) and polls with ``timeout=0.01``, as in ``benchmarks/scale.py``.
Printed per shape, from ``res.stats`` (p50 / p99, ms): *queued*, push until the
sender's event loop wrote it to the peer worker's connection (outbox + link queue);
*arrival*, push until it reached the receiver's mailbox (adds the wire and the
receiver's loop); *age*, push until the receiver polled it (adds the mailbox wait).
Also deliveries/s, steps/s, results returned, the time from ``max_time`` to the
stage's end, and what was dropped at the stop. Targets (issue 10): age p99 <= 500 ms
at 64 and 128 operators on 8 workers with conflation; every result back.
"""

from __future__ import annotations

import argparse
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import asip


class AllToAll(asip.Operator):
    """Pushes its ``d``-float vector to every peer every step; records whom it heard."""

    def __init__(self, d: int, latest: bool):
        self.d, self.latest = d, latest

    def setup(self, ctx, partition):
        self.v = np.full(self.d, float(ctx.index))
        self.heard: set[int] = set()

    def step(self, ctx):
        ctx.push({"v": self.v}, latest=self.latest)
        for msg in ctx.poll(timeout=0.01):
            self.heard.add(msg.sender)

    def result(self, ctx):
        return {"heard": len(self.heard)}


def run_shape(client: Client, n: int, d: int, duration: float, latest: bool) -> dict:
    X = da.zeros((n * 4, 2), chunks=(4, 2)).persist()
    t0 = time.monotonic()
    res = asip.Stage(AllToAll(d, latest), X, client=client, max_time=duration,
                     oversubscribe=True).run()
    wall = time.monotonic() - t0
    tot = res.stats["total"]
    return {
        "N": n, "tot": tot, "elapsed": res.elapsed, "wall": wall, "launch": res.timings.get("launch"),
        "returned": sum(r is not None for r in res.results),
        "heard_all": sum(1 for r in res.results if r is not None and r["heard"] >= n - 1),
        "missing": res.missing,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--operators", default="64,128")
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--fifo", action="store_true", help="plain FIFO pushes (no conflation)")
    args = ap.parse_args(argv)
    ns = [int(x) for x in args.operators.split(",") if x]
    dask.config.set({"distributed.deploy.lost-worker-timeout": "120s",
                     "asip.gang.start-timeout": "120s"})
    print("| W | N | mode | queued p50/p99 ms | arrival p50/p99 ms | age p50/p99 ms | "
          "deliveries/s | steps/s | results | heard all | stop→end s | dropped at stop | yielded |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with LocalCluster(n_workers=args.workers, threads_per_worker=max(1, max(ns) // args.workers),
                      processes=True, dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(args.workers, timeout=120)
        for n in ns:
            r = run_shape(client, n, args.d, args.duration, not args.fifo)
            t = r["tot"]
            el = max(r["elapsed"], 1e-9)
            print(f"| {args.workers} | {n} | {'fifo' if args.fifo else 'latest'} | "
                  f"{t.get('queued_p50_ms', float('nan')):.0f} / {t.get('queued_p99_ms', float('nan')):.0f} | "
                  f"{t['arrival_p50_ms']:.0f} / {t['arrival_p99_ms']:.0f} | "
                  f"{t['age_p50_ms']:.0f} / {t['age_p99_ms']:.0f} | {t['delivered'] / el:,.0f} | "
                  f"{t['steps'] / el:,.0f} | {r['returned']}/{n} | {r['heard_all']}/{n} | "
                  f"{r['elapsed'] - args.duration:.1f} | {t.get('dropped_at_stop', 0):,} | {t.get('yielded', 0):,} |", flush=True)
            if r["missing"]:
                print(f"  missing: {r['missing']}", flush=True)


if __name__ == "__main__":
    main()
