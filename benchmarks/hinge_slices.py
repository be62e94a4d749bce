"""Where asip-cocoa's hinge-l2 fit spends its time to 1e-6, per `_cocoa` knob value: SDCA
slices, their kernel time and steps, and the pushes made news-bound (``max_ahead`` reached).

Alternates the knob (default ``HINGE_LAYOUT`` 0 / 1) on one 2 x 1 local cluster, fits run as
in `hinge_layout_ab.py` (``asip bench --ttt``'s `run_asip`, ``tol=0``). On the workers the
hinge kernels and ``_message`` are wrapped (``client.run``) to record each slice's start,
duration, steps and each push's ``ahead >= max_ahead * n``; per fit, each operator's records
up to the trace's time to 1e-6 (from its first slice) are summed. Prints every fit with the
load average and per arm the medians: an exchange-bound fit has kernel ms << span ms.

Run:  python benchmarks/hinge_slices.py [--pairs reuters a9a] [--repeats 5] [--budget 1.0]
          [--knob HINGE_LAYOUT --old 0 --new 1]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from newton_ab import _set  # noqa: E402

KERNELS = {"hinge_steps_blocks": 7, "hinge_steps_shrinking": 6}  # name: cursor's position


def _install(dask_worker=None) -> None:
    """On a worker: wrap the hinge kernels and ``_message`` to record into ``_cocoa._REC``
    (kernel: ``(start, seconds, steps)``; push: ``(None, at, news_bound)``)."""
    import time

    from asip.algorithms import _cocoa as C

    rec = C.__dict__.setdefault("_REC", [])
    for name in KERNELS:
        kernel = getattr(C, name)
        if hasattr(kernel, "wrapped"):
            continue

        def timed(*args, _kernel=kernel):
            t0 = time.perf_counter()
            _kernel(*args)
            rec.append((t0, time.perf_counter() - t0, int(args[3])))
        timed.wrapped = kernel
        setattr(C, name, timed)
    if not hasattr(C._message, "wrapped"):
        message = C._message

        def counted(state, data, now, _message=message):
            bound = state.clock["ahead"] >= state.params["max_ahead"] * data.n
            rec.append((None, time.perf_counter(), bool(bound)))
            return _message(state, data, now)
        counted.wrapped = message
        C._message = counted


def _take(dask_worker=None) -> list:
    """On a worker: the records since the last call (and forget them)."""
    from asip.algorithms import _cocoa as C

    rec = C.__dict__.setdefault("_REC", [])
    out = list(rec)
    rec.clear()
    return out


def _operator_figures(rec: list, window: float) -> dict | None:
    """One operator's slices, kernel ms, steps, span ms, pushes and news-bound pushes within
    ``window`` s of its first slice (None: it ran none)."""
    slices = [r for r in rec if r[0] is not None]
    if not slices:
        return None
    s0 = slices[0][0]
    slices = [r for r in slices if r[0] - s0 <= window]
    pushes = [r for r in rec if r[0] is None and s0 <= r[1] <= s0 + window]
    return {"slices": len(slices), "kernel_ms": 1e3 * sum(r[1] for r in slices),
            "steps": sum(r[2] for r in slices),
            "span_ms": 1e3 * (slices[-1][0] + slices[-1][1] - s0),
            "pushes": len(pushes), "bound": sum(r[2] for r in pushes)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["reuters"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--knob", default="HINGE_LAYOUT", help="an `_cocoa` constant")
    ap.add_argument("--old", type=float, default=0.0)
    ap.add_argument("--new", type=float, default=1.0)
    args = ap.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster

    from asip_bench.data import ClusterData, compute_reference, load_dataset, parse_task
    from asip_bench.runner import LiveObjective, run_asip
    from asip_bench.session import TRACE_INTERVAL

    arms = {"old": args.old, "new": args.new}
    task = parse_task("hinge-l2")
    keys = ("slices", "kernel_ms", "span_ms", "steps", "pushes", "bound")
    with dask.config.set({"asip.trace.report-interval": TRACE_INTERVAL}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        client.run(_install)
        for name in args.pairs:
            data = load_dataset(name)
            f_star = float(compute_reference(data, task)["f_star"])
            cdata = ClusterData(client, data, 2)
            for arm in arms:  # compiles
                client.run(_set, args.knob, arms[arm])
                run_asip(cdata, task, "asip-cocoa", 0.3, tol=0)
            client.run(_take)
            got = {arm: [] for arm in arms}
            for rep in range(args.repeats):
                for arm in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                    client.run(_set, args.knob, arms[arm])
                    live = LiveObjective(data, task, lambda *a: None)
                    run = run_asip(cdata, task, "asip-cocoa", args.budget, live=live, tol=0)
                    run.f_star = f_star
                    t6 = run.time_to(1e-6)
                    window = t6 if math.isfinite(t6) else args.budget
                    ops = [f for f in (_operator_figures(r, window)
                                       for r in client.run(_take).values()) if f]
                    row = {k: statistics.mean(f[k] for f in ops) for k in keys} if ops else {}
                    got[arm].append((t6, row))
                    print(f"{name:14s} {arm} #{rep} 1e-6 {1e3 * t6:7.1f} ms | per operator "
                          + " ".join(f"{k} {row.get(k, math.nan):.0f}" for k in keys)
                          + f" | load {os.getloadavg()[0]:.1f}", flush=True)
            for arm, fits in got.items():
                med = {k: statistics.median(r.get(k, math.nan) for _, r in fits) for k in keys}
                print(f"# {name} {arm} ({args.knob} {arms[arm]:g}): median 1e-6 "
                      f"{1e3 * statistics.median(t for t, _ in fits):.1f} ms, "
                      + ", ".join(f"{k} {v:.0f}" for k, v in med.items()), flush=True)
            cdata.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
