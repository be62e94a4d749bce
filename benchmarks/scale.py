"""Scale benchmark: many operators, wide payloads, the built-in fan-outs, nothing lost.

Run:  python benchmarks/scale.py [--quick] [--workers 8] [--operators 64,128] [--dims 1000]
      [--topologies all,ring,gossip] [--duration 30] [--latest]
      python benchmarks/scale.py --wide 1e6 --workers 4 --duration 60   (scheduler memory)
      python benchmarks/scale.py --workers 16 --operators 512 --topologies ring --duration 2 \
          --repeat 3 --profiler both   (the workers' task profiler paused vs kept, alternating)

Every shape runs one stage of ``N`` operators on ``W`` worker processes (operators
oversubscribe the cores: ``oversubscribe=True``); each operator pushes a ``d``-float
vector every step to its fan-out (``all``: every peer; ``ring``: the next partition;
``gossip``: ``k`` random peers) and polls with ``timeout=0.01``. Printed per shape:
launch time, deliveries/s and bytes/s (delivered into mailboxes), message age at poll
p50/p99 (``res.stats``), drops (every ``dropped_*`` counter), results returned and
missing (with why), how many operators heard every peer they should (all-to-all and
ring), the scheduler process's RSS growth over the stage, and hung kills / busy verdicts
(``res.health``). Targets (issue 10): 64 and 128 operators on 8 workers: every result,
zero hung kills, scheduler growth <= 50 MB; 512 operators on 16 workers: launch <= 3 s
and every result.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import subprocess
import sys
import tempfile
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import asip


class Pusher(asip.Operator):
    """Pushes its ``d``-float vector to its fan-out every step; records whom it heard."""

    def __init__(self, d: int, topology: str, k: int = 3, latest: bool = False):
        self.d, self.topology, self.k, self.latest = d, topology, k, latest

    def setup(self, ctx, partition):
        self.v = np.full(self.d, float(ctx.index))
        self.heard: set[int] = set()
        self.steps = 0

    def _fanout(self, ctx):
        if self.topology == "all":
            return None
        if self.topology == "ring":
            return ctx.ring(1)
        return ctx.gossip(self.k)

    def step(self, ctx):
        ctx.push({"v": self.v}, to=self._fanout(ctx), latest=self.latest)
        for msg in ctx.poll(timeout=0.01):
            self.heard.add(msg.sender)
        self.steps += 1

    def result(self, ctx):
        return {"heard": len(self.heard), "steps": self.steps}


def _scheduler_rss(client: Client) -> int:
    def rss(dask_scheduler=None):
        import gc as _gc

        import psutil

        _gc.collect()
        return psutil.Process().memory_info().rss

    return client.run_on_scheduler(rss)


def run_shape(client: Client, n_workers: int, n: int, d: int, topology: str, duration: float,
              latest: bool) -> dict:
    X = da.zeros((n * 4, 2), chunks=(4, 2)).persist()
    client.wait_for_workers(n_workers, timeout=120)
    rss0 = _scheduler_rss(client)
    t0 = time.monotonic()
    res = asip.Stage(Pusher(d, topology, latest=latest), X, client=client, max_time=duration,
                     oversubscribe=True).run()
    wall = time.monotonic() - t0
    rss1 = _scheduler_rss(client)
    tot = res.stats["total"]
    elapsed = max(res.elapsed, 1e-9)
    drops = sum(v for key, v in tot.items() if key.startswith("dropped_") and isinstance(v, int))
    want = {"all": n - 1, "ring": 1}.get(topology)
    heard_all = (sum(1 for r in res.results if r is not None and r["heard"] >= want)
                 if want is not None else None)
    return {
        "W": n_workers, "N": n, "d": d, "topology": topology + ("+latest" if latest else ""),
        "launch_s": res.timings.get("launch", float("nan")), "wall_s": wall,
        "deliveries_per_s": tot["delivered"] / elapsed,
        "MB_per_s": tot["delivered_bytes"] / elapsed / 1e6,
        "age_p50_ms": tot.get("age_p50_ms", float("nan")),
        "age_p99_ms": tot.get("age_p99_ms", float("nan")),
        "drops": drops, "returned": sum(r is not None for r in res.results),
        "missing": res.missing, "heard_all": heard_all,
        "sched_growth_MB": (rss1 - rss0) / 1e6,
        "hung_kills": res.health.get("hung_kills", 0), "busy": sum(res.health.get("busy", {}).values()),
        "restarts": len(res.restarts), "stopped_by": res.stopped_by,
        "phases": {k: v for k, v in res.timings.items()
                   if k in ("install", "submit", "launch") or k.startswith("launch_")},
    }


def _graph_bytes(client: Client) -> int:
    """Pickled bytes of every task spec the scheduler holds now (the graphs it carries)."""
    def graph(dask_scheduler=None):
        import pickle

        return sum(len(pickle.dumps(ts.run_spec)) for ts in dask_scheduler.tasks.values()
                   if ts.run_spec is not None)

    return client.run_on_scheduler(graph)


class _RssSampler:
    """The scheduler's RSS and graph bytes every ``every`` s in a background thread (peaks)."""

    def __init__(self, client: Client, every: float = 2.0):
        import threading

        self.client, self.every, self.peak, self.graph_peak = client, every, 0, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(self.every):
            try:
                self.peak = max(self.peak, _scheduler_rss(self.client))
                self.graph_peak = max(self.graph_peak, _graph_bytes(self.client))
            except Exception:  # the sample is best effort
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


@contextlib.contextmanager
def _separate_cluster(n_workers: int):
    """A scheduler in a process of its own (its RSS is then the scheduler's alone, not
    this driver's too, as in a LocalCluster) and ``n_workers`` one-thread worker processes."""
    with tempfile.TemporaryDirectory() as tmp:
        sfile = os.path.join(tmp, "scheduler.json")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                   "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", sfile], **quiet)]
        try:
            deadline = time.monotonic() + 120
            while not os.path.exists(sfile):
                if time.monotonic() > deadline:
                    raise RuntimeError("the scheduler did not start within 120 s")
                time.sleep(0.2)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", sfile,
                 "--nworkers", str(n_workers), "--nthreads", "1", "--no-dashboard"], **quiet))
            with Client(scheduler_file=sfile) as client:
                client.wait_for_workers(n_workers, timeout=300)
                yield client
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()


def run_wide(client: Client, n_rows: int, d: int, nnz: int, duration: float,
             n_partitions: int) -> dict:
    """ASIP-SGD through the estimator on a sparse logistic problem with ``d`` features
    (``nnz`` nonzeros a row): the scheduler's RSS growth over the fit (end and peak)."""
    import scipy.sparse as sp

    from asip.algorithms import AsipClassifier

    rng = np.random.default_rng(0)
    cols = rng.integers(0, d, size=(n_rows, nnz))
    X = sp.csr_matrix((rng.normal(size=n_rows * nnz), cols.ravel(),
                       np.arange(0, n_rows * nnz + 1, nnz)), shape=(n_rows, d))
    w = np.zeros(d)
    w[rng.integers(0, d, size=1000)] = rng.normal(size=1000)
    y = (X @ w + rng.logistic(size=n_rows) > 0).astype(int)
    rss0 = _scheduler_rss(client)
    clf = AsipClassifier(solver="asip-sgd", max_time=duration, n_partitions=n_partitions,
                         random_state=0)
    t0 = time.monotonic()
    with _RssSampler(client) as sampler:
        clf.fit(X, y)
    wall = time.monotonic() - t0
    rss1 = _scheduler_rss(client)
    return {"n": n_rows, "d": d, "nnz": nnz, "wall_s": wall, "solve_s": duration,
            "growth_MB": (rss1 - rss0) / 1e6, "peak_growth_MB": (max(sampler.peak, rss1) - rss0) / 1e6,
            "graph_peak_MB": sampler.graph_peak / 1e6, "data_MB": (X.data.nbytes + X.indices.nbytes
                                                                  + X.indptr.nbytes) / 1e6,
            "accuracy": float(clf.score(X, y)), "missing": clf.stage_result_.missing}


def _row(r: dict) -> str:
    heard = "-" if r["heard_all"] is None else f"{r['heard_all']}/{r['N']}"
    return (f"| {r['W']} | {r['N']} | {r['d']:,} | {r['topology']} | {r['launch_s']:.2f} | "
            f"{r['deliveries_per_s']:,.0f} | {r['MB_per_s']:,.1f} | {r['age_p50_ms']:.0f} / "
            f"{r['age_p99_ms']:.0f} | {r['drops']:,} | {r['returned']}/{r['N']} | {heard} | "
            f"{r['sched_growth_MB']:+.1f} | {r['hung_kills']} / {r['busy']} |")


HEADER = ("| W | N | d | fan-out | launch s | deliveries/s | MB/s | age p50 / p99 ms | drops | "
          "results | heard all | scheduler MB | hung kills / busy |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def _runs(args) -> list[tuple[str, str]]:
    """(fan-out, profiler mode) for each stage of a shape, ``--repeat`` times; with
    ``--profiler both`` the two modes alternate, and swap order every repeat."""
    modes = ["keep", "pause"] if args.profiler == "both" else [args.profiler]
    out = []
    for k in range(args.repeat):
        for topo in [t for t in args.topologies.split(",") if t]:
            out += [(topo, m) for m in (modes if k % 2 == 0 else modes[::-1])]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 workers, 16 operators, d=1000, 3 s")
    ap.add_argument("--workers", default="8", help="comma list of worker-process counts")
    ap.add_argument("--operators", default="64,128", help="comma list of operator counts")
    ap.add_argument("--dims", default="1000", help="comma list of vector lengths")
    ap.add_argument("--topologies", default="all,ring,gossip")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--latest", action="store_true", help="push with latest=True (conflation)")
    ap.add_argument("--repeat", type=int, default=1, help="run every shape this many times")
    ap.add_argument("--profiler", choices=("pause", "keep", "both"), default="pause",
                    help="asip.stage.pause-worker-profiler on (pause), off (keep), or "
                         "both, alternating on one cluster (side by side)")
    ap.add_argument("--wide", type=float, default=None, metavar="D",
                    help="instead: a --duration s ASIP-SGD fit with D sparse features "
                         "(100k rows, 30 nonzeros a row) on --workers; scheduler memory")
    args = ap.parse_args(argv)
    if args.quick:
        args.workers, args.operators, args.dims, args.duration = "4", "16", "1000", 3.0
        args.topologies = "all,ring"
    ints = lambda s: [int(float(x)) for x in s.split(",") if x]  # noqa: E731
    dask.config.set({"distributed.deploy.lost-worker-timeout": "120s",
                     "asip.gang.start-timeout": "120s"})
    if args.wide is not None:
        w = ints(args.workers)[0]
        dask.config.set({"asip.gang.start-timeout": "600s"})  # numba's first compile, loaded
        with _separate_cluster(w) as client:
            r = run_wide(client, 100_000, int(args.wide), 30, args.duration, n_partitions=w)
        print(f"asip-sgd, {r['n']:,} rows x {r['d']:,} features ({r['nnz']} nonzeros a row), "
              f"{w} workers, {r['solve_s']:g} s: scheduler RSS {r['growth_MB']:+.1f} MB at the "
              f"end, peak {r['peak_growth_MB']:+.1f} MB (the scheduler process alone); "
              f"task graphs on the scheduler peak {r['graph_peak_MB']:.2f} MB for "
              f"{r['data_MB']:.0f} MB of X; fit wall {r['wall_s']:.1f} s, training "
              f"accuracy {r['accuracy']:.3f}, missing {r['missing']}", flush=True)
        return
    print(HEADER, flush=True)
    for w in ints(args.workers):
        with LocalCluster(n_workers=w, threads_per_worker=max(1, max(ints(args.operators)) // w), processes=True,
                          dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
            for n in ints(args.operators):
                for d in ints(args.dims):
                    for topo, mode in _runs(args):
                        try:
                            with dask.config.set({"asip.stage.pause-worker-profiler":
                                                  mode == "pause"}):
                                r = run_shape(client, w, n, d, topo, args.duration, args.latest)
                        except Exception as exc:  # a shape that fails is a row, not the end
                            print(f"| {w} | {n} | {d:,} | {topo} | failed: {exc!r:.200} |", flush=True)
                            continue
                        if args.profiler == "both":
                            r["topology"] += f" (profiler {mode})"
                        print(_row(r), flush=True)
                        print("  launch phases (s from the launch's start): " + ", ".join(
                            f"{k} {v:.2f}" for k, v in r["phases"].items()), flush=True)
                        if r["missing"]:
                            print(f"  missing: {r['missing']}", flush=True)
                        gc.collect()


if __name__ == "__main__":
    main()
