"""Where one small fit's wall time goes, phase by phase, side by side for several solvers.

Runs each solver's fit as ``asip bench --ttt`` does (`asip_bench.runner.run_asip`: the
estimator, ``tol=0``, a 20 ms report interval, the live callback) on a fresh 2 x 1 local
cluster, alternating the solvers, and prints per fit: the driver's phases (prepare, data,
install, submit, launch milestones, run, teardown, finish), every operator's setup and
warm-up, its steps (rounds, certificate answers, waits) on the workers' clocks, and three
times to each target: the bench's (the trace, from the ``fit`` call), the operators' own
(their models step by step, from the same call: when the model really got there), and
the lag between them (how late the trace saw it). Medians over ``--repeats``.

Run:  python benchmarks/fit_timeline.py [--pairs ijcnn1:asip-cocoa,gd a9a:asip-svrg,gd]
          [--repeats 5] [--budget 0.4] [--steps] [--json out.json] [--own]
          [--balance inf,1]
      python benchmarks/fit_timeline.py --certified   # wall time of fit() to its own stop
      python benchmarks/fit_timeline.py --pairs synthetic-logistic:20000:asip-cocoa \
          --repeats 30 --spread   # why the same fit's time to 1e-6 spreads

``--certified``: no instrumentation; each solver's ``fit`` with its default ``tol`` (the
certified stop) as a user calls it, timed from the call to its return, alternating (with
``--balance``, also over asip-cocoa's ``CERT_BALANCE`` values, and their paired ratio).

Instrumentation: the workers' ``SolverOperator`` is wrapped (setup, warm-up, step) by
``client.run``; a step's record costs a snapshot of the operator (~10 us at these sizes).

``--spread``: per fit, what may differ between a fast and a slow one up to the operators'
own 1e-6 (rounds each partition ran, the CPU and wall of the first and of all rounds, the
waits between rounds, the workers' GC pauses, the load), then the medians of the fast and
the slow half side by side. Measured 2026-12-02 (synthetic-logistic:20000 and a9a log_loss-l2,
2 x 1 on 2 cores): every fit reached 1e-6 after 2 rounds a partition with the same CPU, no GC;
the spread was the box's spare CPU (one busy process beside the fit: 1.5x the time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TARGETS = (1e-3, 1e-6)


def _instrument(dask_worker=None) -> None:
    """On a worker: wrap SolverOperator's setup, warm-up and step to log wall times."""
    import time as _t

    from asip.algorithms import _operator as O

    cls = O.SolverOperator
    if getattr(cls, "_timeline", None) is not None:
        cls._timeline.clear()
        return
    log: list = []
    cls._timeline = log
    setup, warm, step = cls.setup, cls._warm_up, cls.step

    def _gc(phase, info, started=[0.0]):  # the workers' GC pauses (``--spread``)
        if phase == "start":
            started[0] = _t.time()
        else:
            log.append(("gc", info["generation"], started[0], _t.time()))

    import gc
    gc.callbacks.append(_gc)

    def _setup(self, ctx, partition):
        t0, c0 = _t.time(), _t.thread_time()
        setup(self, ctx, partition)
        log.append(("setup", ctx.index, t0, _t.time(), _t.thread_time() - c0))

    def _warm_up(self):
        t0, c0 = _t.time(), _t.thread_time()
        warm(self)
        log.append(("warm_up", -1, t0, _t.time(), _t.thread_time() - c0))

    def _step(self, ctx):
        t0, e0, c0 = _t.time(), ctx.elapsed, _t.thread_time()
        entry = getattr(ctx, "_last_entry", None)
        state = self._states[0]
        clock = getattr(state, "clock", None)
        before = (clock.get("rounds", (0,))[0], clock.get("answer") is not None) \
            if isinstance(clock, dict) and "rounds" in clock else None
        out = step(self, ctx)
        t1, c1 = _t.time(), _t.thread_time()
        snap = self._algo.snapshot(self._states[0])
        kind = "step"
        if before is not None:
            after = clock.get("rounds", (0,))[0]
            kind = ("round" if after > before[0] else "answer" if before[1] else "wait")
        log.append(("step", ctx.index, t0, t1, e0, kind,
                    {k: (np.array(v) if isinstance(v, np.ndarray) else v)
                     for k, v in snap.items()}, out is not None, c1 - c0,
                    getattr(ctx, "_last_entry", None) is not entry))

    cls.setup, cls._warm_up, cls.step = _setup, _warm_up, _step


def _set_balance(value: float, dask_worker=None) -> None:
    from asip.algorithms import _cocoa

    _cocoa.CERT_BALANCE = value


def _fetch(dask_worker=None):
    from asip.algorithms import _operator as O

    log = list(getattr(O.SolverOperator, "_timeline", []))
    O.SolverOperator._timeline.clear()
    return log


def _true_crossings(algo, problem_n, logs, objective, X, y, f_star, fit_wall):
    """Times (from the fit call) the combined model of the operators' latest step
    snapshots first reached each target, and the first step's start."""
    steps = sorted((e for e in logs if e[0] == "step"), key=lambda e: e[3])
    latest: dict = {}
    out = {}
    last_w = None
    for e in steps:
        _, index, t0, t1, _, _, snap, _, _, _ = e
        latest[index] = snap
        if len(latest) < problem_n:
            continue
        w = np.asarray(algo.combine(_Problem.last, [latest[i] for i in range(problem_n)]),
                       dtype=np.float64)
        if last_w is not None and np.array_equal(w, last_w):
            continue
        last_w = w
        rel = (objective.value(w, X, y) - f_star) / abs(f_star)
        for target in TARGETS:
            if target not in out and rel <= target:
                out[target] = t1 - fit_wall
        if len(out) == len(TARGETS):
            break
    return out


def _own_and_rounds(logs, objective, X, y, f_star, fit_wall, until):
    """asip-cocoa SDCA: times (from the fit call) the operators' own model, ``sum u_k`` of
    their latest snapshots, first reached each target, and the times the leader closed a
    certificate round (its snapshot's ``primal`` changed) up to ``until`` s."""
    steps = sorted((e for e in logs if e[0] == "step"), key=lambda e: e[3])
    latest: dict = {}
    own, closes, primal = {}, [], None
    for e in steps:
        _, index, t0, t1, _, _, snap, _, _, _ = e
        if t1 - fit_wall > until:
            break
        latest[index] = snap
        if index == 0 and snap.get("primal") is not None and snap["primal"] != primal:
            primal = snap["primal"]
            closes.append(t1 - fit_wall)
        if len(latest) < 2 or len(own) == len(TARGETS) or any(
                "u" not in s or "x" in s for s in latest.values()):
            continue
        w = np.sum([np.asarray(s["u"], dtype=np.float64) for s in latest.values()], axis=0)
        rel = (objective.value(w, X, y) - f_star) / abs(f_star)
        for target in TARGETS:
            if target not in own and rel <= target:
                own[target] = t1 - fit_wall
    return own, closes


class _Problem:
    last = None


def warm_up_solvers(pairs) -> None:
    """The bench's warm-up: a short fit of every solver named in ``pairs``
    (``data:solver,solver``) on dense and CSR data, so no kernel compiles in a timed fit."""
    import scipy.sparse as sp

    from asip.algorithms import AsipClassifier, make_logistic

    ds = make_logistic(2_000, 20, random_state=1)
    solvers = sorted({s for pair in pairs for s in pair.rsplit(":", 1)[1].split(",")})
    for X in (ds.X, sp.csr_matrix(ds.X)):
        for s in solvers:
            AsipClassifier(solver=s, max_time=0.3, alpha=0.1, fit_intercept=False,
                           n_partitions=2).fit(X, ds.y)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["ijcnn1:asip-cocoa,gd", "a9a:asip-svrg,gd"],
                    help="dataset:solver,solver ...")
    ap.add_argument("--task", default="log_loss-l2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.4)
    ap.add_argument("--steps", action="store_true", help="print every operator step of the "
                    "first repeat")
    ap.add_argument("--json", help="write every fit's figures here")
    ap.add_argument("--balance", help="asip-cocoa: `_cocoa.CERT_BALANCE` values (e.g. inf,1), "
                    "each fit alternated over them on the same cluster (solver@value)")
    ap.add_argument("--own", action="store_true", help="asip-cocoa SDCA: also the operators' "
                    "own model's (sum u_k) times and the leader's certificate rounds")
    ap.add_argument("--spread", action="store_true", help="per fit, the rounds, CPU, waits "
                    "and GC to the operators' 1e-6; medians of the fast and the slow half")
    ap.add_argument("--certified", action="store_true", help="time fit() to its certified "
                    "stop instead (default tol), no instrumentation")
    args = ap.parse_args(argv)
    balances = [float(v) for v in args.balance.split(",")] if args.balance else [None]

    import dask
    from distributed import Client, LocalCluster

    import asip.algorithms as A
    from asip.algorithms import AsipClassifier
    from asip_bench.data import ClusterData, compute_reference, load_dataset, parse_task
    from asip_bench.runner import LiveObjective, run_asip
    from asip_bench.session import TRACE_INTERVAL

    task = parse_task(args.task)
    wall_of_fit: list = []
    fit = AsipClassifier.fit

    def timed_fit(self, *a, **k):
        wall_of_fit.append(time.time())
        return fit(self, *a, **k)

    AsipClassifier.fit = timed_fit
    captured: dict = {}
    run_stage = A._fitting.run_stage

    def capture(est, solver, prep, problem, *a, **k):
        captured["problem"] = problem
        return run_stage(est, solver, prep, problem, *a, **k)

    A._fitting.run_stage = capture
    import asip.algorithms._estimators as E
    if hasattr(E, "run_stage"):
        E.run_stage = capture
    records = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with dask.config.set({"asip.trace.report-interval": TRACE_INTERVAL}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        warm_up_solvers(args.pairs)
        if args.certified:
            _certified(args, client, task, balances)
            print(f"load average at end: {os.getloadavg()}")
            return 0
        client.run(_instrument)
        for pair in args.pairs:
            name, names = pair.rsplit(":", 1)
            names = names.split(",")
            data = load_dataset(name)
            ref = compute_reference(data, task)
            f_star = float(ref["f_star"])
            cdata = ClusterData(client, data, 2)
            objective = task.objective(data.n)
            run_asip(cdata, task, names[0], 0.3, tol=0)  # the bench's per-dataset warm-up
            client.run(_fetch)
            arms = [(s, b) for s in names for b in balances]
            for rep in range(args.repeats):
                order = arms if rep % 2 == 0 else arms[::-1]
                for solver, balance in order:
                    if balance is not None:  # asip-cocoa's SDCA cadence, on the workers
                        client.run(_set_balance, balance)
                    live = LiveObjective(data, task, lambda *a: None)
                    wall_of_fit.clear()
                    run = run_asip(cdata, task, solver, args.budget, live=live, tol=0)
                    run.f_star = f_star
                    logs = [e for w in client.run(_fetch).values() for e in w]
                    fit_wall = wall_of_fit[0]
                    algo = A.get_algorithm(solver)
                    _Problem.last = captured["problem"]
                    true = _true_crossings(algo, 2, logs, objective, data.X, data.y, f_star,
                                           fit_wall)
                    rec = _record(name, solver if balance is None else f"{solver}@{balance:g}",
                                  rep, run, logs, fit_wall, true)
                    if args.own:
                        t6 = rec["trace_1e-06"]
                        own, closes = _own_and_rounds(
                            logs, objective, data.X, data.y, f_star, fit_wall,
                            t6 if t6 is not None and math.isfinite(t6) else args.budget)
                        gaps = np.diff(closes)
                        rec.update({f"own_{tg:g}": own.get(tg, math.inf) for tg in TARGETS},
                                   closes=len(closes), close_gap_ms=1e3 * float(
                                       np.median(gaps)) if len(gaps) else math.nan)
                        print(f"  own 1e-3 {_fmt(rec['own_0.001'])} 1e-6 "
                              f"{_fmt(rec['own_1e-06'])} | trace 1e-3 "
                              f"{_fmt(rec['trace_0.001'])} 1e-6 {_fmt(rec['trace_1e-06'])} | "
                              f"rounds closed to trace 1e-6 {len(closes)}, median "
                              f"{rec['close_gap_ms']:.1f} ms apart", flush=True)
                    if args.spread:
                        rec.update(_spread_fields(logs, fit_wall, rec["true_1e-06"]))
                    records.append(rec)
                    _print(rec)
                    if args.steps and rep == 0:
                        _print_steps(logs, fit_wall)
            cdata.close()
    print(f"load average at end: {os.getloadavg()}")
    _summary(records)
    if args.spread:
        _spread_summary(records)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=1, default=float)
    return 0


def _certified(args, client, task, balances) -> None:
    """Wall time of ``fit`` to its certified stop, per solver (and asip-cocoa's
    ``CERT_BALANCE`` value, set on the workers), alternating; medians, and with two
    values the paired ratio (the second's over the first's within each repeat)."""
    from asip.algorithms import AsipClassifier
    from asip_bench.data import ClusterData, compute_reference, load_dataset

    rows = []
    for pair in args.pairs:
        name, names = pair.rsplit(":", 1)
        names = names.split(",")
        data = load_dataset(name)
        f_star = float(compute_reference(data, task)["f_star"])
        cdata = ClusterData(client, data, 2)
        X, y = cdata.asip_input()
        objective = task.objective(data.n)
        arms = [(s, b) for s in names for b in balances]
        times: dict = {arm: [] for arm in arms}
        for rep in range(args.repeats + 1):  # the first round is a warm-up, not kept
            for solver, balance in (arms if rep % 2 == 0 else arms[::-1]):
                if balance is not None:  # asip-cocoa's SDCA cadence, on the workers
                    client.run(_set_balance, balance)
                label = solver if balance is None else f"{solver}@{balance:g}"
                est = AsipClassifier(solver=solver, loss=task.loss, penalty=task.penalty,
                                     alpha=task.alpha_for(data.n), fit_intercept=False,
                                     n_partitions=2, max_time=10.0)
                t0 = time.perf_counter()
                est.fit(X, y)
                wall = time.perf_counter() - t0
                rel = (objective.value(est.coef_.ravel(), data.X, data.y) - f_star) / abs(f_star)
                if rep:
                    times[(solver, balance)].append(wall)
                print(f"{name:7s} {label:10s} #{rep} fit {1e3 * wall:7.1f} ms  "
                      f"{est.stopped_by_} n_iter {est.n_iter_} rel {rel:.1e} timings "
                      f"{ {k: round(1e3 * v, 1) for k, v in est.fit_timings_.items()} }",
                      flush=True)
        for solver, balance in arms:
            label = solver if balance is None else f"{solver}@{balance:g}"
            all_ = times[(solver, balance)]
            rows.append((name, label, statistics.median(all_), all_))
        if len(balances) == 2:
            for solver in names:
                pairs = [b / a for a, b in zip(times[(solver, balances[0])],
                                               times[(solver, balances[1])])]
                print(f"{name:7s} {solver}: paired ratio @{balances[1]:g} / @{balances[0]:g} "
                      f"{statistics.median(pairs):.2f} over {len(pairs)} repeats", flush=True)
        cdata.close()
    print("\nmedian wall time of fit() to its certified stop:")
    for name, solver, med, all_ in rows:
        print(f"  {name:7s} {solver:10s} {1e3 * med:7.1f} ms  "
              f"({', '.join(f'{1e3 * t:.0f}' for t in all_)})")


def _record(name, solver, rep, run, logs, fit_wall, true) -> dict:
    t = run.timings
    setups = [e for e in logs if e[0] == "setup"]
    warms = [e for e in logs if e[0] == "warm_up"]
    steps = [e for e in logs if e[0] == "step"]
    first = min((e[2] for e in steps), default=math.nan) - fit_wall
    kinds: dict = {}
    for e in steps:
        kinds[e[5]] = kinds.get(e[5], 0) + 1
    rounds = [e for e in steps if e[5] == "round"]
    return {
        "dataset": name, "solver": solver, "rep": rep, "fit": run.fit_seconds,
        "before_stage": t.get("before_stage"), "data": t.get("data"),
        "install": t.get("install"), "submit": t.get("submit"), "launch": t.get("launch"),
        "all_registered": t.get("launch_all_registered"), "go": t.get("launch_go"),
        "go_seen": t.get("launch_go_seen"), "teardown": t.get("teardown"),
        "offset": run.offset,
        "setup_max": max((e[3] - e[2] for e in setups), default=math.nan),
        "setup_cpu": max((e[4] for e in setups), default=math.nan),
        "warm_up_max": max((e[3] - e[2] for e in warms), default=math.nan),
        "warm_up_cpu": max((e[4] for e in warms), default=math.nan),
        "worker_go": statistics.median([e[2] - e[4] for e in steps]) - fit_wall
        if steps else math.nan,
        "setup_end": max((e[3] for e in setups), default=math.nan) - fit_wall,
        "first_step": first,
        "steps": kinds,
        "round_ms": [1e3 * (e[3] - e[2]) for e in rounds[:6]],
        "round_cpu_ms": [1e3 * e[8] for e in rounds[:6]],
        "round_at": [e[2] - fit_wall for e in rounds[:6]],
        **{f"trace_{tg:g}": run.time_to(tg) for tg in TARGETS},
        **{f"true_{tg:g}": true.get(tg, math.inf) for tg in TARGETS},
    }


def _spread_fields(logs, fit_wall: float, until: float) -> dict:
    """What one fit did up to ``until`` (s from the fit call; its operators' 1e-6): rounds
    (the first step counted) of the partition that ran most, the first round's wall and CPU
    and all rounds' (the slower partition's), the waits between rounds (summed over the
    partitions), GC pauses on the workers, the load average."""
    steps = sorted((e for e in logs if e[0] == "step" and e[5] in ("step", "round")),
                   key=lambda e: e[2])
    per: dict = {}
    for e in steps:
        if e[3] - fit_wall <= until + 1e-9:
            per.setdefault(e[1], []).append(e)
    gcs = [e for e in logs if e[0] == "gc" and 0.0 <= e[2] - fit_wall <= until]
    return {"rounds": max((len(r) for r in per.values()), default=0),
            "first_wall": max((r[0][3] - r[0][2] for r in per.values()), default=math.nan),
            "first_cpu": max((r[0][8] for r in per.values()), default=math.nan),
            "rounds_wall": max((sum(e[3] - e[2] for e in r) for r in per.values()),
                               default=math.nan),
            "rounds_cpu": max((sum(e[8] for e in r) for r in per.values()), default=math.nan),
            "waits": sum(b[2] - a[3] for r in per.values() for a, b in zip(r, r[1:])),
            "gc_ms": 1e3 * sum(e[3] - e[2] for e in gcs), "load": os.getloadavg()[0]}


def _spread_summary(records) -> None:
    """Per dataset and solver: medians of the fast and the slow half (by the operators'
    time to 1e-6) of every `_spread_fields` figure and the launch phases."""
    keys = [("true_1e-06", 1e3), ("trace_1e-06", 1e3), ("first_step", 1e3), ("launch", 1e3),
            ("rounds", 1.0), ("first_wall", 1e3), ("first_cpu", 1e3), ("rounds_wall", 1e3),
            ("rounds_cpu", 1e3), ("waits", 1e3), ("gc_ms", 1.0), ("load", 1.0)]
    groups: dict = {}
    for r in records:
        groups.setdefault((r["dataset"], r["solver"]), []).append(r)
    print("\nspread: medians of the fast and the slow half (ms; rounds, load as is):")
    print(f"{'':34s}" + "".join(f"{k[:11]:>12s}" for k, _ in keys))
    for (d, s), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["true_1e-06"])
        half = len(rs) // 2
        for label, part in (("fast", rs[:half]), ("slow", rs[half:])):
            row = [statistics.median(r[k] * f for r in part if r[k] is not None)
                   for k, f in keys]
            print(f"{d[:20]:20s} {s[:8]:8s} {label:4s}" + "".join(f"{v:12.1f}" for v in row))


def _fmt(v, scale=1e3):
    return "  -  " if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else f"{scale * v:6.1f}"


def _print(r: dict) -> None:
    print(f"{r['dataset']:7s} {r['solver']:10s} #{r['rep']} fit {_fmt(r['fit'])} ms | before "
          f"{_fmt(r['before_stage'])} data {_fmt(r['data'])} launch {_fmt(r['launch'])} "
          f"(registered {_fmt(r['all_registered'])} setup {_fmt(r['setup_max'])} warm "
          f"{_fmt(r['warm_up_max'])} go {_fmt(r['go'])} seen {_fmt(r['go_seen'])}) | "
          f"first step {_fmt(r['first_step'])} | 1e-6 trace {_fmt(r['trace_1e-06'])} true "
          f"{_fmt(r['true_1e-06'])} | 1e-3 trace {_fmt(r['trace_0.001'])} true "
          f"{_fmt(r['true_0.001'])} | teardown {_fmt(r['teardown'])} | {r['steps']} rounds at "
          f"{[round(1e3 * x, 1) for x in r['round_at']]} ms "
          f"{[round(x, 1) for x in r['round_ms']]} cpu {[round(x, 1) for x in r['round_cpu_ms']]} "
          f"| worker go {_fmt(r['worker_go'])} setup cpu {_fmt(r['setup_cpu'])}", flush=True)


def _print_steps(logs, fit_wall) -> None:
    for e in sorted(logs, key=lambda e: e[2]):
        if e[0] == "step" and e[5] == "wait":
            continue
        extra = ""
        if e[0] == "step":
            snap = e[6]
            extra = f"{e[5]:6s} " + " ".join(
                f"{k}={snap[k]:.3g}" for k in ("rel_gap", "gap", "k", "rounds", "t", "anchors",
                                                "best_ver", "h")
                if k in snap and np.isscalar(snap[k]))
            extra += f" cpu {1e3 * e[8]:.2f} ms" + (" REPORTED" if e[9] else "") + (
                " STOP" if e[7] else "")
        print(f"    {e[0]:8s} p{e[1]} {1e3 * (e[2] - fit_wall):7.1f} -> "
              f"{1e3 * (e[3] - fit_wall):7.1f} ms  {extra}")


def _summary(records) -> None:
    keys = ["fit", "before_stage", "data", "launch", "all_registered", "go", "go_seen",
            "setup_max", "setup_cpu", "warm_up_max", "warm_up_cpu", "worker_go", "first_step", "true_0.001", "trace_0.001",
            "true_1e-06", "trace_1e-06", "teardown"]
    groups: dict = {}
    for r in records:
        groups.setdefault((r["dataset"], r["solver"]), []).append(r)
    print("\nmedians (ms):")
    print(f"{'dataset':8s}{'solver':11s}" + "".join(f"{k[:10]:>11s}" for k in keys))
    for (d, s), rs in groups.items():
        row = []
        for k in keys:
            vals = [r[k] for r in rs if r[k] is not None]
            row.append(statistics.median(vals) if vals else math.nan)
        print(f"{d:8s}{s:11s}" + "".join(f"{_fmt(v):>11s}" for v in row))


if __name__ == "__main__":
    sys.exit(main())
