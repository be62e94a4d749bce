"""Where a stage's launch goes inside distributed: submit → scheduler → worker → task start.

Instruments every process of a 2-worker LocalCluster (wall-clock stamps, one host):
each `BatchedSend.send` (the stream, its ops, and how long the message will wait for the
stream's ``interval`` because a batch went out less than ``interval`` ago), the
scheduler's ``update-graph`` handler (received, done), the worker's ``compute-task``
(received) and ``execute`` (entered), and the task's own first line. Runs a 2-operator
stage that returns at once (``Quick``) and a plain ``client.submit(f, k, workers=[w])``
x 2 + ``gather``, ``--reps`` times back to back (as ``channel.py --fixed``), the two arms
alternating ``--rounds`` times, and prints each milestone's median (min-max) in ms from the
submit (the client's ``update-graph`` put on its stream; the scheduler shares the
client's process in a LocalCluster, so its events are labelled ``client``).

    python benchmarks/launch_timeline.py [--reps 10] [--rounds 2] [--verbose]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from distributed import Client, LocalCluster

import asip


class Quick(asip.Operator):
    """Returns at once: a stage that is all fixed cost."""

    def step(self, ctx):
        return asip.STOP


def _label(msg) -> str:
    """A stream message's op; an asip event's kind too (``event:go``)."""
    if not isinstance(msg, dict):
        return str(msg)[:20]
    op = msg.get("op")
    if op == "event":
        try:
            return f"event:{msg['event'][1][1]}"
        except (KeyError, IndexError, TypeError):
            pass
    return op


def _instrument(dask_worker=None, dask_scheduler=None) -> None:
    """Patch this process: BatchedSend.send, and the server's stream handlers."""
    import distributed
    from distributed.batched import BatchedSend

    if getattr(distributed, "_tl_log", None) is None:
        distributed._tl_log = []
        log = distributed._tl_log
        send = BatchedSend.send

        def logged_send(self, *msgs):
            now = time.time()
            wait = 0.0
            if self.next_deadline is not None:
                from distributed.metrics import time as dtime
                wait = max(0.0, self.next_deadline - dtime())
            ops = [_label(m) for m in msgs]
            log.append((now, "send", f"{self.interval * 1e3:g}ms", ops, wait))
            return send(self, *msgs)

        BatchedSend.send = logged_send
        from distributed import Client as _C
        to_scheduler = _C._send_to_scheduler

        def logged_to_scheduler(self, msg):  # the caller's thread: before the loop hop
            log.append((time.time(), "call", msg.get("op"), None, 0))
            return to_scheduler(self, msg)

        _C._send_to_scheduler = logged_to_scheduler
    log = distributed._tl_log
    server = dask_scheduler or dask_worker  # (run passes the server as both, if asked)
    dask_worker = server if hasattr(server, "execute") else None
    if server is None:
        return
    for op in ("update-graph", "compute-task"):
        handler = server.stream_handlers.get(op)
        if handler is None or getattr(handler, "_tl", False):
            continue

        def wrap(handler=handler, op=op):
            import inspect
            if inspect.iscoroutinefunction(handler):
                async def h(*a, **k):
                    log.append((time.time(), "recv", op, None, 0))
                    try:
                        return await handler(*a, **k)
                    finally:
                        log.append((time.time(), "done", op, None, 0))
            else:
                def h(*a, **k):
                    log.append((time.time(), "recv", op, None, 0))
                    try:
                        return handler(*a, **k)
                    finally:
                        log.append((time.time(), "done", op, None, 0))
            h._tl = True
            return h

        server.stream_handlers[op] = wrap()
    if dask_worker is not None and not getattr(dask_worker.execute, "_tl", False):
        execute = dask_worker.execute

        async def ex(key, **k):
            log.append((time.time(), "execute", str(key), None, 0))
            return await execute(key, **k)

        ex._tl = True
        dask_worker.execute = ex
        import asip._task as T
        if not getattr(T.run_operator, "_tl", False):
            run_operator = T.run_operator

            def run(*a, **k):
                log.append((time.time(), "task", "asip", None, 0))
                return run_operator(*a, **k)

            run._tl = True
            T.run_operator = run


def _fetch(dask_worker=None, dask_scheduler=None):
    import distributed
    log = list(getattr(distributed, "_tl_log", []) or [])
    distributed._tl_log.clear()
    return log


def _plain(k):
    import distributed
    distributed._tl_log.append((time.time(), "task", "plain", None, 0))
    return k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two arms")
    parser.add_argument("--verbose", action="store_true", help="print every run's events")
    args = parser.parse_args()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(_instrument)
        client.run_on_scheduler(_instrument)
        _instrument()
        workers = sorted(client.nthreads())
        blocks = [np.ones((10, 3)), np.ones((10, 3))]
        asip.Stage(Quick, blocks, client=client, max_time=5).run()  # warm
        client.gather([client.submit(_plain, i, workers=[w], pure=False)
                       for i, w in enumerate(workers)])
        rows: dict[str, list[dict]] = {"asip": [], "plain": []}
        for rep in range(args.rounds):
            for arm in ("asip", "plain"):
                _fetch(); client.run(_fetch); client.run_on_scheduler(_fetch)
                for _ in range(args.reps):  # back to back, as benchmarks/channel.py --fixed
                    if arm == "asip":
                        asip.Stage(Quick, blocks, client=client, max_time=5).run()
                    else:
                        client.gather([client.submit(_plain, i, workers=[w], pure=False)
                                       for i, w in enumerate(workers)])
                events = [("client",) + e for e in _fetch()]
                for w, log in client.run(_fetch).items():
                    events += [(f"w{workers.index(w)}",) + e for e in log]
                events.sort(key=lambda e: e[1])
                starts = [e[1] for e in events if e[0] == "client" and e[2] == "send"
                          and "update-graph" in e[4]]
                starts = [t for i, t in enumerate(starts) if i == 0 or t - starts[i - 1] > 0.002]
                for i, t0 in enumerate(starts):
                    end = starts[i + 1] if i + 1 < len(starts) else float("inf")
                    window = [e for e in events if e[1] < end]
                    rows[arm].append(_milestones(window, t0, args.verbose and i < 2))
        for arm, rs in rows.items():
            print(f"\n{arm}: ms from the client's update-graph send, median (min-max) "
                  f"of {len(rs)}")
            for key in rs[0]:
                vals = [r[key] for r in rs if r.get(key) is not None]
                if vals:
                    print(f"  {key:<44}{statistics.median(vals):>8.2f} "
                          f"({min(vals):.2f}-{max(vals):.2f})")


def _milestones(events, t0, verbose) -> dict:
    """Milestones of one launch, from the client's update-graph send at ``t0``."""
    sub = next(e for e in events if e[1] == t0)
    if verbose:
        for e in events:
            if t0 - 0.06 <= e[1] <= t0 + 0.03:
                print(f"  {1e3 * (e[1] - t0):8.2f} {e[0]:<9} {e[2]:<8} {e[3]:<14} "
                      f"{e[4] if e[4] else ''} wait={1e3 * e[5]:.2f}")
        print("  --")

    def first(proc, kind, what=None, after=t0):
        for e in events:
            if e[1] >= after and e[0].startswith(proc) and e[2] == kind and (
                    what is None or e[3] == what or (isinstance(e[4], list) and what in e[4])):
                return e
        return None

    def ms(e):
        return None if e is None else 1e3 * (e[1] - t0)

    call = [e for e in events if e[2] == "call" and e[3] == "update-graph" and e[1] <= t0]
    out = {"driver thread calls submit (-: before)": ms(call[-1]) if call else None}
    prior = [e for e in events if e[0] == "client" and e[2] == "send" and e[3] == "10ms"
             and t0 - 0.01 <= e[1] < t0]
    out["client-stream msgs in the 10 ms before"] = float(len(prior))
    out["update-graph would wait (10 ms interval)"] = 1e3 * sub[5]
    out["scheduler receives update-graph"] = ms(first("client", "recv", "update-graph"))
    out["scheduler done with update-graph"] = ms(first("client", "done", "update-graph"))
    ct = first("client", "send", "compute-task")
    out["scheduler queues compute-task (1st)"] = ms(ct)
    out["  which would wait (5 ms interval)"] = None if ct is None else 1e3 * ct[5]
    out["worker recv compute-task (1st)"] = ms(first("w", "recv", "compute-task"))
    out["worker execute (1st)"] = ms(first("w", "execute"))
    tasks = [e for e in events if e[2] == "task" and e[1] >= t0]
    out["task starts (1st)"] = ms(tasks[0]) if tasks else None
    out["task starts (last)"] = ms(tasks[-1]) if tasks else None
    go = first("client", "send", "event:go")
    out["the driver's go event queued"] = ms(go)
    out["  which would wait (2 ms interval)"] = None if go is None else 1e3 * go[5]
    res = first("client", "send", "event:result")
    out["  a result event would wait (2 ms)"] = None if res is None else 1e3 * res[5]
    return out


if __name__ == "__main__":
    main()
