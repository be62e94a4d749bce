"""Channel benchmark: asip push→poll against a bare persistent distributed comm, side by side.

Run:  python benchmarks/channel.py [--iterations 500] [--rounds 1] [--quick]
      python benchmarks/channel.py --fixed 20 [--in-process]   (only: a small stage's fixed
      cost by phase; --in-process: on 2 workers that are threads of this process)

Prints one-way latency (p50, p99; half the ping-pong round trip) and messages/s for
100-float and 100k-float payloads between two worker processes, next to the floor
measured in the same run between the same two workers: a persistent distributed comm
from a task thread to a handler that echoes on the peer's event loop. Also: launch
time of an 8-operator gang on a warm cluster, the fixed cost per stage (wall time
minus ``max_time``), and how soon a restarted operator is back and pushing after its
worker is SIGKILLed. The ping-pong runs twice: as configured (small pushes written by
the operator thread itself, ``asip.channel.direct-bytes``) and with every push through
the worker's event loop (``direct-bytes: 0``), side by side. Targets (issue 2): p50
≤ 1.5x floor, ≥ 40k small msg/s, launch ≤ 0.2 s, back ≤ 2 s after a kill.
"""

from __future__ import annotations

import argparse
import statistics
import time

import dask
import numpy as np
from distributed import Client, LocalCluster, get_worker
from distributed.comm import connect
from distributed.utils import sync

import asip
from asip.faults import KillWorker


# --------------------------------------------------------------------------- asip side
class PingPong(asip.Operator):
    """Partition 0 pings partition 1, which answers each ping; 0 records round trips."""

    def __init__(self, size: int, iterations: int):
        self.size = size
        self.iterations = iterations

    def setup(self, ctx, partition):
        self.payload = {"v": np.ones(self.size)}
        self.rtts: list[float] = []

    def step(self, ctx):
        if ctx.index == 0:
            t = time.perf_counter()
            ctx.push(self.payload, to=1)
            while not ctx.poll(timeout=1.0):
                if ctx.stopping:
                    return asip.STOP
            self.rtts.append(time.perf_counter() - t)
            if len(self.rtts) >= self.iterations:
                return asip.STOP
        else:
            for _ in ctx.poll(timeout=0.5):
                ctx.push(self.payload, to=0)

    def result(self, ctx):
        return {"rtts": np.array(self.rtts)}


class Flood(asip.Operator):
    """Partition 0 pushes as fast as it can for ``seconds``; partition 1 counts arrivals."""

    def __init__(self, size: int, seconds: float):
        self.size = size
        self.seconds = seconds

    def setup(self, ctx, partition):
        self.payload = {"v": np.ones(self.size)}
        self.received = 0
        self.first = self.last = None

    def step(self, ctx):
        if ctx.index == 0:
            if ctx.elapsed < self.seconds:
                for _ in range(100):
                    ctx.push(self.payload, to=1)
            else:
                time.sleep(0.01)
        else:
            got = ctx.poll(timeout=0.05)
            if got:
                now = time.perf_counter()
                self.first = self.first or now
                self.last = now
                self.received += len(got)

    def result(self, ctx):
        span = (self.last - self.first) if self.first and self.last else 0.0
        return {"received": self.received, "span": span}


class Beacon(asip.Operator):
    """Everyone pushes every 5 ms; partition 0 notes when it first hears incarnation 1 of 1."""

    def setup(self, ctx, partition):
        self.back_at = -1.0

    def step(self, ctx):
        ctx.push({"t": ctx.elapsed})
        for msg in ctx.poll(timeout=0.005):
            if msg.sender == 1 and msg.incarnation == 1 and self.back_at < 0:
                self.back_at = ctx.elapsed

    def result(self, ctx):
        return {"back_at": self.back_at}


class Quick(asip.Operator):
    """Returns at once: a stage that is all fixed cost."""

    def step(self, ctx):
        return asip.STOP

    def result(self, ctx):
        return {"ok": 1}


def fixed_cost(client: Client, reps: int) -> None:
    """A 2-operator stage on 2 in-memory blocks that returns at once, ``reps`` times on a
    warm cluster: median (min) ms of each phase in ``res.timings`` and of the wall time."""
    blocks = [np.ones((10, 3)), np.ones((10, 3))]
    asip.Stage(Quick, blocks, client=client, max_time=5).run()  # warm: imports, connections
    rows = []
    for _ in range(reps):
        t = time.perf_counter()
        res = asip.Stage(Quick, blocks, client=client, max_time=5).run()
        rows.append({**res.timings, "run": res.elapsed, "wall": time.perf_counter() - t})
    print(f"\nfixed cost of a 2-operator stage that returns at once ({reps} runs; ms, median "
          "(min); data and install run side by side from the stage's start, submit/launch "
          "from when both are done (the launch's start), launch_* milestones from it too, "
          "run = the gang's start to the last result, teardown after it)")
    for key in rows[0]:
        vals = [r[key] * 1e3 for r in rows if key in r]
        print(f"  {key:<24}{statistics.median(vals):>9.1f} ({min(vals):.1f})")


class Idle(asip.Operator):
    def step(self, ctx):
        time.sleep(0.005)


# --------------------------------------------------------------------------- the floor
def _install_echo(dask_worker):
    def echo(payload=None):
        return payload

    dask_worker.handlers["bench_echo"] = echo


def _install_thread_echo(dask_worker):
    """An echo answered by a thread, as an operator answers: the peer's loop hands each
    request to the thread and the thread hands the answer back (loop -> thread -> loop)."""
    import asyncio
    import queue
    import threading

    requests: queue.SimpleQueue = queue.SimpleQueue()

    def serve():
        while True:
            aloop, fut, payload = requests.get()
            aloop.call_soon_threadsafe(fut.set_result, payload)

    threading.Thread(target=serve, daemon=True, name="bench-echo").start()

    async def echo_thread(payload=None):
        aloop = asyncio.get_running_loop()
        fut = aloop.create_future()
        requests.put((aloop, fut, payload))
        return await fut

    dask_worker.handlers["bench_echo_thread"] = echo_thread


async def _round_trip(peer: str, payload: bytes, op: str = "bench_echo",
                      _comms: dict = {}) -> float:
    """One request/echo on a persistent comm kept open across calls."""
    comm = _comms.get(peer)
    if comm is None or comm.closed():
        comm = _comms[peer] = await connect(peer, **get_worker().connection_args)
    t = time.perf_counter()
    await comm.write({"op": op, "payload": payload, "reply": True})
    await comm.read()
    return time.perf_counter() - t


def _floor_pingpong(peer: str, size: int, iterations: int, op: str = "bench_echo") -> list[float]:
    """From a task thread, like an operator: one thread -> event loop hop per round trip
    (``op="bench_echo_thread"``: the peer answers from a thread too, as an operator does)."""
    worker = get_worker()
    payload = np.ones(size).tobytes()
    return [sync(worker.loop, _round_trip, peer, payload, op) for _ in range(iterations)]


def _floor_flood(peer: str, size: int, seconds: float) -> float:
    """Messages/s one way over a bare persistent comm, 100 per fire-and-forget handler call."""
    worker = get_worker()
    payload = np.ones(size).tobytes()

    async def run():
        comm = await connect(peer, **worker.connection_args)
        n, t0 = 0, time.perf_counter()
        try:
            while time.perf_counter() - t0 < seconds:
                await comm.write({"op": "bench_sink", "batch": [payload] * 100, "reply": False})
                n += 100
            await comm.write({"op": "bench_echo", "payload": b"", "reply": True})
            await comm.read()  # everything written before it has been handled
        finally:
            comm.abort()
        return n / (time.perf_counter() - t0)

    return sync(worker.loop, run)


def _install_sink(dask_worker):
    def sink(batch=None):
        return None

    dask_worker.handlers["bench_sink"] = sink


# --------------------------------------------------------------------------- driver
def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--flood-seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the 100-float ping-pongs and floors, alternating, and "
                             "pool the samples (steadier figures on a busy machine)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke)")
    parser.add_argument("--fixed", type=int, default=0, metavar="REPS",
                        help="only: the fixed cost of a 2-operator stage, phase by phase")
    parser.add_argument("--in-process", action="store_true",
                        help="with --fixed: workers that are threads of this process")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.flood_seconds = 100, 0.5
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=not args.in_process,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        if args.fixed:
            fixed_cost(client, args.fixed)
            return
        a, b = sorted(client.nthreads())
        client.run(_install_echo)
        client.run(_install_sink)
        client.run(_install_thread_echo)
        # partition 0 lives on worker a, partition 1 on worker b: operators follow their data
        X = [client.submit(np.zeros, (1, 1), workers=[w], allow_other_workers=True, pure=False)
             for w in (a, b)]
        rows, loop_rows = [], []
        for size, label in ((100, "100 floats"), (100_000, "100k floats")):
            iters = args.iterations if size == 100 else max(args.iterations // 5, 20)
            samples: dict[str, list] = {"asip": [], "loop": [], "floor": [], "thread": []}
            n_direct = n_sent = 0
            # rounds alternate the four measurements, so a burst of load hits them alike
            for _ in range(args.rounds if size == 100 else 1):
                for direct in ((True, False) if size == 100 else (True,)):
                    cfg = {} if direct else {"asip.channel.direct-bytes": 0}
                    with dask.config.set(cfg):
                        res = asip.Stage(PingPong(size, iters), X, client=client,
                                         max_time=120).run()
                    if res.results[0] is None or not len(res.results[0]["rtts"]):
                        raise RuntimeError(f"ping-pong ({label}) measured nothing: stopped by "
                                           f"{res.stopped_by}, restarts {res.restarts}, "
                                           f"stats {res.stats['total']}")
                    samples["asip" if direct else "loop"].append(res.results[0]["rtts"] / 2)
                    if direct:
                        n_direct += res.stats["total"]["direct"]
                        n_sent += res.stats["total"]["sent"]
                for key, op in (("floor", "bench_echo"), ("thread", "bench_echo_thread")):
                    samples[key].append(np.array(client.submit(
                        _floor_pingpong, b, size, iters, op, workers=[a], pure=False).result()) / 2)
            asip_ow, floor_ow, thread_ow = (np.concatenate(samples[k])
                                            for k in ("asip", "floor", "thread"))
            loop_ow = np.concatenate(samples["loop"]) if samples["loop"] else None
            res = asip.Stage(Flood(size, args.flood_seconds), X, client=client,
                             max_time=args.flood_seconds + 1.0).run()
            r1 = res.results[1]
            asip_rate = r1["received"] / r1["span"] if r1["span"] else 0.0
            drops = res.stats["total"]["dropped_overflow"]
            floor_rate = client.submit(_floor_flood, b, size, args.flood_seconds, workers=[a],
                                       pure=False).result()
            rows.append((label, pct(asip_ow, 50), pct(asip_ow, 99), pct(floor_ow, 50),
                         pct(floor_ow, 99), asip_rate, floor_rate, drops, pct(thread_ow, 50)))
            if loop_ow is not None:
                loop_rows.append((label, pct(loop_ow, 50), pct(loop_ow, 99), pct(floor_ow, 50),
                                  n_direct, n_sent))
        print(f"\nasip channel vs bare persistent distributed comm, {a} <-> {b} "
              f"(2 worker processes x 1 thread)")
        print(f"{'payload':<12}{'asip p50':>10}{'asip p99':>10}{'floor p50':>11}{'floor p99':>11}"
              f"{'p50 ratio':>11}{'asip msg/s':>12}{'floor msg/s':>13}{'drops':>8}"
              f"{'thread floor p50':>18}{'ratio':>8}")
        for label, ap50, ap99, fp50, fp99, ar, fr, drops, tp50 in rows:
            print(f"{label:<12}{ap50:>9.3f}m{ap99:>9.3f}m{fp50:>10.3f}m{fp99:>10.3f}m"
                  f"{ap50 / fp50:>10.2f}x{ar:>12,.0f}{fr:>13,.0f}{drops:>8}"
                  f"{tp50:>17.3f}m{ap50 / tp50:>7.2f}x")
        print("(one-way latency in ms = half the ping-pong round trip; target p50 <= 1.5x "
              "floor, >= 40,000 small msg/s; the thread floor's echo is answered by a thread "
              "on the peer, as an operator answers: the same two thread hops as asip)")
        for label, lp50, lp99, fp50, n_direct, n_sent in loop_rows:
            print(f"{label}, every push through the event loop (direct-bytes 0): p50 "
                  f"{lp50:.3f} ms, p99 {lp99:.3f} ms, {lp50 / fp50:.2f}x floor; as configured, "
                  f"{n_direct} of {n_sent} copies were written by the operator thread")

        X8 = [client.submit(np.zeros, (1, 1), pure=False) for _ in range(8)]
        launches, fixed = [], []
        for _ in range(5):
            t = time.perf_counter()
            res = asip.Stage(Idle, X8, client=client, max_time=0.2, oversubscribe=True).run()
            fixed.append(time.perf_counter() - t - 0.2)
            launches.append(res.timings["launch"])
        print(f"\n8-operator gang on a warm cluster: launch (submit -> all started) median "
              f"{statistics.median(launches):.3f} s, fixed cost per stage (wall - max_time) "
              f"median {statistics.median(fixed):.3f} s (target launch <= 0.2 s)")

        kill_at = 1.0
        res = asip.Stage(Beacon, X, client=client, max_time=4.0,
                         faults=[KillWorker(partition=1, at=kill_at)]).run()
        restart = res.restarts[0] if res.restarts else None
        back = res.results[0]["back_at"]
        print(f"restart after SIGKILL of the worker at {kill_at:.1f} s: re-registered after "
              f"{(restart.time - kill_at) if restart else float('nan'):.3f} s, peer hears it "
              f"again after {back - kill_at:.3f} s (target <= 2 s)")
        client.wait_for_workers(2)


if __name__ == "__main__":
    main()
