"""Where a channel one-way trip spends its time: stamps along one 100-float ping-pong.

Run:  python benchmarks/channel_hops.py [--iterations 300] [--size 100]

Two worker processes x 1 thread, the ping-pong of ``benchmarks/channel.py``. On both
workers the channel's functions are wrapped (instrumentation only, in this script) to
stamp ``time.perf_counter_ns`` (CLOCK_MONOTONIC: one clock for every process on the
host) at: ``push`` (operator thread calls ``ctx.push``), ``sent`` (the socket took the
bytes, direct write), ``woke`` (the receiving event loop's selector returned with
events), ``read`` (the stream reader has the decoded message), ``put`` (in the
mailbox), ``notify`` (the waiting operator thread is signalled), ``wait`` (its
condition wait returned) and ``polled`` (``poll`` returns). One message is in flight
at a time, so the stamps of both processes merge into one ordered sequence; it prints
the median and p90 of every hop, in µs, and the median one-way total.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from distributed import Client, LocalCluster

import asip

HOPS = ("push", "sent", "woke", "read", "put", "notify", "wait", "polled")


class PingPong(asip.Operator):
    def __init__(self, size: int, iterations: int):
        self.size, self.iterations = size, iterations

    def setup(self, ctx, partition):
        self.payload = {"v": np.ones(self.size)}
        self.n = 0

    def step(self, ctx):
        if ctx.index == 0:
            ctx.push(self.payload, to=1)
            while not ctx.poll(timeout=1.0):
                if ctx.stopping:
                    return asip.STOP
            self.n += 1
            if self.n >= self.iterations:
                return asip.STOP
        else:
            for _ in ctx.poll(timeout=0.5):
                ctx.push(self.payload, to=0)


def _instrument(dask_worker):
    """Wrap the channel's functions on this worker to stamp each hop (idempotent)."""
    import functools
    import threading

    from asip import _channel, _dataplane, _links, _operator

    if getattr(_channel, "_HOPS", None) is not None:
        _channel._HOPS.clear()
        return
    log: list = []
    _channel._HOPS = log
    stamp = time.perf_counter_ns

    def wrap(owner, name, before=None, after=None):
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            if before:
                log.append((before, stamp()))
            out = fn(*args, **kwargs)
            if after:
                log.append((after, stamp()))
            return out

        setattr(owner, name, inner)

    wrap(_operator.Context, "push", before="push")
    wrap(_links.PeerLink, "write_direct", after="sent")
    wrap(_dataplane.DataPlane, "handle_deliver", before="read", after="put")
    wrap(_channel.Mailbox, "notify", before="notify")
    wrap(_channel.Mailbox, "poll", after="polled")

    # the condition wait inside poll: stamp when it returns
    cond_cls = type(threading.Condition(threading.Lock()))
    orig_wait = cond_cls.wait

    def wait(self, timeout=None):
        out = orig_wait(self, timeout)
        if out:
            log.append(("wait", stamp()))
        return out

    cond_cls.wait = wait

    # the loop's selector: stamp when it returns with events
    selector = dask_worker.loop.asyncio_loop._selector
    orig_select = selector.select

    def select(timeout=None):
        events = orig_select(timeout)
        if events:
            log.append(("woke", stamp()))
        return events

    selector.select = select


def _collect(dask_worker):
    from asip import _channel

    return list(_channel._HOPS)


def analyse(logs: dict[str, list]) -> None:
    merged = sorted((t, ev, w) for w, log in logs.items() for ev, t in log)
    # walk one-way trips: push on one worker ... polled (non-empty) on the other
    trips, cur, last = [], None, 0
    for t, ev, w in merged:
        if ev == "push":
            cur, last = {"push": (t, w)}, 0
        elif cur is not None:
            sender = cur["push"][1]
            if ev == "sent" and w == sender and last == 0:
                cur["sent"], last = (t, w), 1
            elif w != sender and last >= 1 and HOPS.index(ev) > last:
                cur[ev] = (t, w)
                if ev != "woke":  # the loop may wake for other events first: keep the last
                    last = HOPS.index(ev)
                if ev == "polled":
                    if "put" in cur:
                        trips.append(cur)
                    cur = None
    print(f"{len(trips)} one-way trips with every stamp")
    prev = "push"
    rows = []
    for ev in HOPS[1:]:
        ds = [(c[ev][0] - c[prev][0]) / 1e3 for c in trips if ev in c and prev in c]
        if not ds:
            continue
        rows.append((f"{prev} -> {ev}", np.median(ds), np.percentile(ds, 90), len(ds)))
        prev = ev
    for name, med, p90, n in rows:
        print(f"  {name:<20} median {med:8.1f} us   p90 {p90:8.1f} us   (n={n})")
    total = [(c["polled"][0] - c["push"][0]) / 1e3 for c in trips]
    print(f"  {'push -> polled':<20} median {np.median(total):8.1f} us   "
          f"p90 {np.percentile(total, 90):8.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        a, b = sorted(client.nthreads())
        X = [client.submit(np.zeros, (1, 1), workers=[w], pure=False) for w in (a, b)]
        asip.Stage(PingPong(args.size, 20), X, client=client, max_time=60).run()  # warm
        client.run(_instrument)
        client.run(_instrument)  # clears the warm-up's stamps
        res = asip.Stage(PingPong(args.size, args.iterations), X, client=client,
                         max_time=120).run()
        logs = client.run(_collect)
        print(f"{args.size} floats, {args.iterations} round trips, stopped by {res.stopped_by}; "
              f"direct {res.stats['total']['direct']} of {res.stats['total']['sent']}")
        analyse(logs)


if __name__ == "__main__":
    main()
