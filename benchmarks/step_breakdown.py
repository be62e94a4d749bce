"""Where a worker's step goes: the algorithm's CPU, the runtime's CPU, and waiting.

Runs fits as ``asip bench --ttt`` does (`asip_bench.runner.run_asip`, ``tol=0``, a 20 ms
report interval, the live callback) on a fresh 2 x 1 local cluster and, on the workers,
times every ``SolverOperator.step`` (thread CPU and wall) split into: ``local_step`` (the
algorithm; for asip-cocoa also its Newton round, from ``clock["rounds"]``), ``ctx.push``,
``ctx.poll`` (CPU, and wall: the wait), the report path (``_snapshot``, ``_report``,
``_local_objective``, ``ctx.report``) and the rest; plus the operator thread's CPU and
wall between steps (the task's loop), and the worker process's CPU outside the operator
threads (event loop: links, delivery, heartbeats). Prints per-step means for each fit.

Run:  python benchmarks/step_breakdown.py [--pairs ijcnn1:asip-cocoa,gd reuters:asip-svrg,gd]
          [--task log_loss-l2] [--repeats 3] [--budget 0.4] [--malloc 0 "32 MiB"] [--switch 0.005 0.0005]
          [--profile]

``--malloc``: run every fit once per value of ``asip.stage.malloc-mmap-threshold``
(alternating; 0 leaves the nanny's malloc settings alone: `asip._malloc`), side by side;
``--switch``: likewise for the workers' ``sys.setswitchinterval`` (GIL hand-over latency).
Each fit also prints its time to 1e-3 and 1e-6 (from the ``fit`` call, on the trace).

``--profile``: instead, cProfile the operator threads (first repeat) and print their top
functions by own time (cProfile's overhead inflates small calls: read it as a ranking).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PARTS = ("local", "round", "push", "poll_cpu", "report", "snapshot", "objective")


def _instrument(profile: bool = False, dask_worker=None) -> None:
    """On a worker: wrap the operator's step and its parts to time them (idempotent)."""
    import threading
    import time as T

    from asip import _operator as AO
    from asip.algorithms import _operator as O

    cls = O.SolverOperator
    if getattr(cls, "_bd", None) is not None:
        cls._bd.clear()
        cls._bd_profile[0] = profile
        return
    log: list = []
    cls._bd = log
    cls._bd_profile = [profile]
    cls._bd_profilers = []
    tl = threading.local()

    def timed(fn, name):
        def wrapper(*a, **k):
            acc = getattr(tl, "acc", None)
            if acc is None:
                return fn(*a, **k)
            c0 = T.thread_time()
            try:
                return fn(*a, **k)
            finally:
                acc[name] = acc.get(name, 0.0) + T.thread_time() - c0
        return wrapper

    poll = AO.Context.poll

    def _poll(self, timeout=0.0):
        acc = getattr(tl, "acc", None)
        t0, c0 = T.perf_counter(), T.thread_time()
        out = poll(self, timeout)
        if acc is not None:
            acc["poll_cpu"] = acc.get("poll_cpu", 0.0) + T.thread_time() - c0
            acc["poll_wall"] = acc.get("poll_wall", 0.0) + T.perf_counter() - t0
            acc["poll_timeout"] = timeout
        return out

    AO.Context.poll = _poll
    AO.Context.push = timed(AO.Context.push, "push")
    AO.Context.report = timed(AO.Context.report, "report")
    cls._snapshot = timed(cls._snapshot, "snapshot")
    cls._local_objective = timed(cls._local_objective, "objective")
    step = cls.step

    def _step(self, ctx):
        if not getattr(self, "_bd_wrapped", False):
            self._bd_wrapped = True
            self._algo = self._algo._replace(local_step=timed(self._algo.local_step, "local"))
            if cls._bd_profile[0]:
                import cProfile
                self._bd_prof = cProfile.Profile()
                cls._bd_profilers.append(self._bd_prof)
        prof = getattr(self, "_bd_prof", None)
        t0, c0 = T.perf_counter(), T.thread_time()
        gap = None
        if getattr(self, "_bd_end", None) is not None:
            gap = (t0 - self._bd_end[0], c0 - self._bd_end[1])
        clock = getattr(self._states[0], "clock", None)
        r0 = clock.get("rounds", (0, 0.0, 0.0)) if isinstance(clock, dict) else None
        tl.acc = acc = {}
        if prof is not None:
            prof.enable()
        try:
            out = step(self, ctx)
        finally:
            if prof is not None:
                prof.disable()
            tl.acc = None
        t1, c1 = T.perf_counter(), T.thread_time()
        self._bd_end = (t1, c1)
        if r0 is not None:
            r1 = clock.get("rounds", (0, 0.0, 0.0))
            acc["round"] = r1[2] - r0[2]
            acc["is_round"] = r1[0] > r0[0]
            acc["round_idx"] = r1[0]
        acc["cpu"], acc["wall"], acc["gap"] = c1 - c0, t1 - t0, gap
        acc["index"] = ctx.index
        log.append(acc)
        return out

    cls.step = _step


def _fetch(dask_worker=None):
    """The step records since the last fetch, the worker's CPU, and profiles."""
    import pstats
    import io
    import time as T

    from asip.algorithms import _operator as O

    cls = O.SolverOperator
    log = list(cls._bd)
    cls._bd.clear()
    text = ""
    if cls._bd_profilers:
        buf = io.StringIO()
        st = pstats.Stats(cls._bd_profilers[0], stream=buf)
        for p in cls._bd_profilers[1:]:
            st.add(p)
        st.sort_stats("tottime").print_stats(30)
        text = buf.getvalue()
        cls._bd_profilers.clear()
    return {"log": log, "process_cpu": T.process_time(), "profile": text}


def _cpu(dask_worker=None):
    import time as T
    return T.process_time()


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) * 1e3 if xs else float("nan")


def _summarize(name, solver, rep, logs, worker_cpu, variant, run) -> dict:
    steps = [e for e in logs]
    rounds = [e for e in steps if e.get("is_round")]
    op_cpu = sum(e["cpu"] + (e["gap"][1] if e["gap"] else 0.0) for e in steps)
    row = {"name": name, "solver": solver, "rep": rep, "steps": len(steps),
           "rounds": len(rounds), "worker_cpu": worker_cpu, "op_cpu": op_cpu,
           "variant": variant, "ttt_3": run.time_to(1e-3), "ttt_6": run.time_to(1e-6),
           "arrival_p50": (run.stats or {}).get("arrival_p50_ms", float("nan")),
           "age_p50": (run.stats or {}).get("age_p50_ms", float("nan"))}
    row["by_round"] = [1e3 * statistics.median([e["round"] for e in rounds if e["round_idx"] == k])
                       if any(e["round_idx"] == k for e in rounds) else float("nan")
                       for k in range(1, 9)]
    for label, sel in (("all", steps), ("round", rounds)):
        if not sel:
            continue
        r = {k: _mean([e.get(k, 0.0) for e in sel]) for k in PARTS}
        r["cpu"] = _mean([e["cpu"] for e in sel])
        r["wall"] = _mean([e["wall"] for e in sel])
        r["poll_wall"] = _mean([e.get("poll_wall", 0.0) for e in sel])
        r["gap_cpu"] = _mean([e["gap"][1] for e in sel if e["gap"]])
        r["gap_wall"] = _mean([e["gap"][0] for e in sel if e["gap"]])
        accounted = sum(r[k] for k in ("local", "push", "poll_cpu", "report", "snapshot",
                                       "objective"))
        r["other"] = r["cpu"] - accounted
        r["runtime"] = r["cpu"] - r["local"] + r["gap_cpu"]
        row[label] = r
    return row


def _print(row) -> None:
    print(f"{row['name']:7s} {row['task']} {row['solver']:10s} #{row['rep']} malloc {row['variant']} | to 1e-3 "
          f"{1e3 * row['ttt_3']:.1f} ms, 1e-6 {1e3 * row['ttt_6']:.1f} ms | message arrival p50 "
          f"{row['arrival_p50']:.2f} ms, age at poll p50 {row['age_p50']:.2f} ms | {row['steps']} steps "
          f"({row['rounds']} rounds); CPU ms: workers {1e3 * row['worker_cpu']:.1f}, "
          f"operator threads {1e3 * row['op_cpu']:.1f} "
          f"(other threads {1e3 * (row['worker_cpu'] - row['op_cpu']):.1f})"
          + (f"; Newton round CPU by index {[round(x, 2) for x in row['by_round']]}"
             if row["rounds"] else ""))
    for label in ("all", "round"):
        r = row.get(label)
        if r is None:
            continue
        print(f"   per {label:5s} step (ms): cpu {r['cpu']:.3f} = local_step {r['local']:.3f}"
              + (f" (round {r['round']:.3f})" if label == "round" else "")
              + f" + push {r['push']:.3f} + poll {r['poll_cpu']:.3f} + report {r['report']:.3f}"
              f" + snapshot {r['snapshot']:.3f} + objective {r['objective']:.3f} + other "
              f"{r['other']:.3f} | wall {r['wall']:.3f} (poll wait {r['poll_wall']:.3f}) | "
              f"between steps cpu {r['gap_cpu']:.3f} wall {r['gap_wall']:.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["ijcnn1:asip-cocoa,gd", "reuters:asip-svrg,gd"],
                    help="dataset:solver[,solver] ...")
    ap.add_argument("--task", default="log_loss-l2", help="task[@alpha] (default log_loss-l2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.4)
    ap.add_argument("--malloc", nargs="+", default=[None],
                    help="values of asip.stage.malloc-mmap-threshold to alternate")
    ap.add_argument("--switch", nargs="+", type=float, default=[None],
                    help="sys.setswitchinterval values (s) to alternate on the workers")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    import dask
    from distributed import Client, LocalCluster

    from asip_bench.data import ClusterData, compute_reference, load_dataset, parse_task
    from asip_bench.runner import LiveObjective, run_asip
    from asip_bench.session import TRACE_INTERVAL
    from fit_timeline import warm_up_solvers

    task = parse_task(args.task)
    # the task changes a step's cost several-fold (asip-admm on a9a: logistic SDCA's Newton
    # root vs hinge's closed form), so every line names it
    print(f"task {task.key} | load average at start: {os.getloadavg()}", flush=True)
    rows = []
    with dask.config.set({"asip.trace.report-interval": TRACE_INTERVAL}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        warm_up_solvers(args.pairs)
        client.run(_instrument, False)
        for pair in args.pairs:
            name, names = pair.rsplit(":", 1)
            data = load_dataset(name)
            f_star = float(compute_reference(data, task)["f_star"])
            cdata = ClusterData(client, data, 2)
            run_asip(cdata, task, names.split(",")[0], 0.3, tol=0)  # per-dataset warm-up
            client.run(_fetch)
            for rep in range(args.repeats):
                variants = [(m, sw) for m in args.malloc for sw in args.switch]
                variants = variants if rep % 2 == 0 else variants[::-1]
                for solver, variant in [(s, v) for s in names.split(",") for v in variants]:
                    profile = args.profile and rep == 0
                    client.run(_instrument, profile)
                    cpu0 = sum(client.run(_cpu).values())
                    live = LiveObjective(data, task, lambda *a: None)
                    mval, switch = variant
                    variant = mval if switch is None else f"{mval}/{switch:g}"
                    if switch is not None:
                        client.run(sys.setswitchinterval, switch)
                    conf = {} if mval is None else {"asip.stage.malloc-mmap-threshold": mval}
                    with dask.config.set(conf):
                        run = run_asip(cdata, task, solver, args.budget, live=live, tol=0)
                    run.f_star = f_star
                    got = client.run(_fetch)
                    cpu1 = sum(g["process_cpu"] for g in got.values())
                    logs = [e for g in got.values() for e in g["log"]]
                    row = _summarize(name, solver, rep, logs, cpu1 - cpu0, variant, run)
                    row["task"] = task.key
                    rows.append(row)
                    _print(row)
                    if profile:
                        for addr, g in got.items():
                            print(f"--- cProfile of the operator thread on {addr}")
                            print(g["profile"])
            cdata.close()
    print(f"load average at end: {os.getloadavg()}")
    _medians(rows)
    return 0


def _medians(rows) -> None:
    """Median per (dataset, solver, malloc value) over the repeats."""
    print(f"\nmedians (ms), task {rows[0]['task'] if rows else '?'}: dataset solver malloc | to 1e-3, 1e-6 | per step cpu, local_step, "
          "runtime (operator thread) | per round cpu, round | worker CPU per step | Newton round "
          "CPU by index 1-8 | arrival p50, age p50")
    keys = sorted({(r["name"], r["solver"], str(r["variant"])) for r in rows})
    for key in keys:
        sel = [r for r in rows if (r["name"], r["solver"], str(r["variant"])) == key]

        def med(f):
            xs = [f(r) for r in sel]
            xs = [x for x in xs if x == x]
            return statistics.median(xs) if xs else float("nan")

        print(f"  {key[0]:7s} {key[1]:10s} {key[2]:>7s} | {1e3 * med(lambda r: r['ttt_3']):6.1f} "
              f"{1e3 * med(lambda r: r['ttt_6']):6.1f} | {med(lambda r: r['all']['cpu']):.3f} "
              f"{med(lambda r: r['all']['local']):.3f} {med(lambda r: r['all']['runtime']):.3f} | "
              f"{med(lambda r: r['round']['cpu'] if 'round' in r else float('nan')):.3f} "
              f"{med(lambda r: r['round']['round'] if 'round' in r else float('nan')):.3f} | "
              f"{med(lambda r: 1e3 * r['worker_cpu'] / max(r['steps'], 1)):.3f} | "
              f"{[round(med(lambda r: r['by_round'][k]), 2) for k in range(8)]} | "
              f"{med(lambda r: r['arrival_p50']):.2f} {med(lambda r: r['age_p50']):.2f}")


if __name__ == "__main__":
    sys.exit(main())
