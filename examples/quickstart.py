"""Quickstart: a custom ASIP operator on an embedded LocalCluster.

Each operator holds one row block of a dask array that stays where it was computed.
Without any barrier, every operator pushes its partial column sums sideways to its
peers and keeps the latest one heard from each; from those it estimates the global
column means. Only the small summaries move, never the data.

Run:  python examples/quickstart.py
"""

from __future__ import annotations

import dask.array as da
import numpy as np

import asip


class GossipMean(asip.Operator):
    """Estimate the column means of the whole array by exchanging partial sums."""

    def setup(self, ctx, partition):
        self.local_sum = partition.sum(axis=0)
        self.local_rows = partition.shape[0]
        self.latest = {ctx.index: (self.local_sum, self.local_rows)}  # latest per partition

    def step(self, ctx):
        ctx.push({"sum": self.local_sum, "rows": self.local_rows})  # to every peer; never blocks
        for msg in ctx.poll(timeout=0.01):  # whatever has arrived (maybe nothing)
            self.latest[msg.sender] = (msg.payload["sum"], msg.payload["rows"])
        ctx.report(heard=len(self.latest))
        if len(self.latest) == ctx.n_partitions and ctx.elapsed > 0.5:
            return asip.STOP  # everyone heard from everyone: stop the whole stage

    def result(self, ctx):
        total = sum(s for s, _ in self.latest.values())
        rows = sum(n for _, n in self.latest.values())
        return {"mean": total / rows, "heard": len(self.latest)}


def main() -> None:
    with asip.connect() as client:  # an embedded LocalCluster: one worker process per core
        n_workers = len(client.nthreads())
        X = da.random.RandomState(0).normal(3.0, 1.0, size=(200_000, 5),
                                            chunks=(200_000 // n_workers, 5))
        print(f"cluster: {n_workers} worker processes; data: {X.shape} in {X.numblocks[0]} "
              "row blocks")
        res = asip.Stage(GossipMean(), X, client=client, max_time=10.0).run()
        truth = X.mean(axis=0).compute()
        for i, r in enumerate(res.results):
            err = np.abs(r["mean"] - truth).max()
            print(f"operator {i}: heard {r['heard']} partitions, max error of its mean {err:.2e}")
        total = res.stats["total"]
        print(f"stopped by: {res.stopped_by} after {res.elapsed:.2f} s "
              f"(launch {res.timings['launch'] * 1e3:.0f} ms); messages pushed "
              f"{total['pushed']}, delivered {total['delivered']}, dropped "
              f"{total['dropped_overflow'] + total['dropped_no_route']}; trace entries "
              f"{len(res.trace)}")


if __name__ == "__main__":
    main()
