"""Fault benchmark: every fault x solver -> final suboptimality with and without it, rejoin, drops.

Run:  python benchmarks/faults.py [--budget 5] [--quick] [--data a9a|synthetic]
          [--solvers asip-sgd ...] [--faults none Straggler ...] [--solver-param KEY=VALUE]

On a LocalCluster of ``--workers`` processes x ``--threads`` threads (default
2 x 2, ``--partitions`` 4: two operators per process), each solver (ASIP-SGD,
ASIP-ADMM, and the barrier baselines gd and admm) fits l2 logistic regression
for ``--budget`` seconds, once without a fault and once with each of:

* ``KillOperator`` / ``KillWorker`` / ``HangWorker`` on partition 1 at 30% of the
  budget (a raise in the operator; SIGKILL of its worker process, which takes
  the other operator there and the data it held; SIGSTOP of that process,
  noticed by the stage's peer-silence timeout, ``--silence``);
* ``Straggler(partition=0, sleep=2.0, every=1.0)``, the ASIP paper's setting;
* ``DropMessages(0.2)`` and ``DelayMessages(50 ms)`` on every message.

Columns: relative suboptimality ``(f(w) - f*)/|f*|`` against the certified
optimum without and with the fault and their ratio; restarts; "rejoin", the
seconds from the fault until every restarted partition reported again; the
messages the channel dropped (no route, overflow, injected). Then the straggler
table the ASIP paper reports: barrier / asynchronous suboptimality at 5 s and
10 s (``--straggler-times``), from one run each, read off the trace.

Each cell is the median of ``--repeats`` fits (3): on a shared 2-core machine
single fits of the same configuration differ by up to 10x. Runs directly on
`asip.Stage` with the estimators' `SolverOperator`, so that the restarts,
per-incarnation trace and channel statistics are at hand. About 90 x budget
seconds plus 4 x the last straggler time (10 minutes by default); ``--quick``
is one 2 s fit per cell on an 8,000-row subsample (about 2 minutes).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import dask
import numpy as np
from distributed import Client, LocalCluster

import asip
from asip.algorithms import (DataUnavailable, Objective, SolverOperator, get_algorithm, get_loss,
                             get_penalty, load_libsvm, make_logistic, reference_optimum,
                             relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._base import make_problem
from asip.algorithms._model import combined_over_time as _combined_over_time
from asip.faults import (DelayMessages, DropMessages, HangWorker, KillOperator, KillWorker,
                         Straggler)

SOLVERS = ["asip-sgd", "asip-admm", "gd", "admm"]
#: fault name -> faults for a budget of b seconds
FAULTS = {
    "none": lambda b: (),
    "KillOperator": lambda b: (KillOperator(partition=1, at=0.3 * b),),
    "KillWorker": lambda b: (KillWorker(partition=1, at=0.3 * b),),
    "HangWorker": lambda b: (HangWorker(partition=1, at=0.3 * b),),
    "Straggler": lambda b: (Straggler(partition=0, sleep=2.0, every=1.0),),
    "DropMessages(0.2)": lambda b: (DropMessages(0.2),),
    "DelayMessages(50ms)": lambda b: (DelayMessages(50.0),),
}
#: paired barrier baseline for each asynchronous solver (the straggler table)
PAIRS = [("asip-admm", "admm"), ("asip-sgd", "gd")]


def load(name: str, n_samples: int | None):
    if name == "a9a":
        try:
            return load_libsvm("a9a", n_samples=n_samples)
        except DataUnavailable as exc:
            print(f"(a9a not available, using synthetic data: {exc})")
    return make_logistic(n_samples or 20_000, 100, random_state=0)


def run_one(client, solver, problem, parts, faults, budget, n_workers, overrides=None):
    client.wait_for_workers(n_workers, timeout=120)
    algo = get_algorithm(solver)
    params = {"seed": 0} if "seed" in algo.defaults else {}
    params.update({k: v for k, v in (overrides or {}).items() if k in algo.defaults})
    if algo.uses_tol:
        params["tol"] = 0.0  # the barrier solvers run the whole budget, through the fault
    data = [dask.delayed(tuple)([Xb, yb]) for Xb, yb in parts]
    n_threads = sum(client.nthreads().values())
    stage = asip.Stage(SolverOperator(solver, problem, params), data, client=client,
                       max_time=budget, faults=faults, max_restarts=5,
                       oversubscribe=len(parts) > n_threads)
    t0 = time.monotonic()
    res = stage.run()
    return res, algo.combine(problem, res.results), time.monotonic() - t0


def rejoin_time(res, faults) -> float | None:
    """Seconds from the kill/hang until every restarted partition reported again (inf: never)."""
    kills = [f for f in faults if isinstance(f, (KillOperator, KillWorker, HangWorker))]
    if not kills:
        return None
    if not res.restarts:
        return math.inf  # nothing came back before the budget ran out
    back = []
    for p in {r.partition for r in res.restarts}:
        times = [e.time for e in res.trace if e.partition == p and e.incarnation >= 1]
        if not times:
            return math.inf  # restarted, but never reported before the end
        back.append(min(times))
    return max(back) - kills[0].at


def dropped(res) -> int:
    t = res.stats["total"]
    return t["dropped_no_route"] + t["dropped_overflow"] + t["dropped_injected"]


def fmt(x, spec=".1e", none="-") -> str:
    if x is None:
        return none
    if isinstance(x, float) and math.isinf(x):
        return "never"
    return format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per fit")
    parser.add_argument("--data", default="a9a", help="a9a (if present) or synthetic")
    parser.add_argument("--n-samples", type=int, default=None, help="row subsample")
    parser.add_argument("--alpha", type=float, default=1e-3, help="l2 regularization")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--solvers", nargs="+", default=SOLVERS)
    parser.add_argument("--faults", nargs="+", default=list(FAULTS))
    parser.add_argument("--straggler-times", nargs="+", type=float, default=[5.0, 10.0])
    parser.add_argument("--silence", default="1s", help="asip.stage.peer-silence-timeout")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fits per cell; the table shows the median one")
    parser.add_argument("--quick", action="store_true", help="2 s budget, 8,000 rows")
    parser.add_argument("--solver-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a solver parameter (a number), for the solvers that have it")
    args = parser.parse_args()
    overrides = {}
    for item in args.solver_param:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--solver-param takes KEY=VALUE, got {item!r}")
        try:
            overrides[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            parser.error(f"--solver-param {key}: {value!r} is not a number")
    if args.quick:
        args.budget, args.n_samples, args.repeats = 2.0, args.n_samples or 8000, 1
        args.straggler_times = [2.5, 5.0]

    ds = load(args.data, args.n_samples)
    objective = Objective(get_loss("log_loss"), get_penalty("l2", args.alpha))
    f_star = reference_optimum(objective, ds.X, ds.y).f_star
    bounds = np.linspace(0, ds.X.shape[0], args.partitions + 1).astype(int)
    parts = [(ds.X[a:b], ds.y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    problem = make_problem(K.LOGISTIC, K.L2, args.alpha, False, parts)

    def rel(w) -> float:
        return float(relative_suboptimality(objective.value(w, ds.X, ds.y), f_star))

    config = {"distributed.deploy.lost-worker-timeout": "1h",  # repeated kills: keep nannies
              "asip.stage.peer-silence-timeout": args.silence}
    with warnings.catch_warnings(), dask.config.set(config), \
            LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                         processes=True, dashboard_address=None, silence_logs=50) as cluster, \
            Client(cluster) as client:
        warnings.simplefilter("ignore")
        print(f"{ds.name}: {ds.X.shape[0]} x {ds.X.shape[1]}, l2 alpha={args.alpha:g}, "
              f"{args.partitions} partitions on {args.workers} workers x {args.threads} "
              f"threads, {args.budget:g} s per fit, faults at {0.3 * args.budget:.2g} s")
        for solver in args.solvers:  # warm-up: worker imports and JIT caches, not in any cell
            run_one(client, solver, problem, parts, (), 0.5, args.workers)
        rows = []
        base: dict[str, float] = {}
        for fault in args.faults:
            for solver in args.solvers:
                faults = FAULTS[fault](args.budget)
                runs = []
                for _ in range(args.repeats):
                    try:
                        res, w, wall = run_one(client, solver, problem, parts, faults,
                                               args.budget, args.workers, overrides)
                    except asip.AsipError as exc:
                        print(f"  {fault:<20}{solver:<10} {type(exc).__name__}: {exc}")
                        continue
                    runs.append((rel(w), res))
                    print(f"  {fault:<20}{solver:<10} {runs[-1][0]:.2e}  ({wall:.1f} s, "
                          f"stopped by {res.stopped_by})", flush=True)
                if not runs:
                    rows.append((fault, solver, base.get(solver), None, "error", None, None, 0))
                    continue
                runs.sort(key=lambda x: x[0])
                r, res = runs[(len(runs) - 1) // 2]  # the median run (the lower one of two)
                if fault == "none":
                    base[solver] = r
                missing = sum(x is None for x in res.results)
                rows.append((fault, solver, base.get(solver), r, len(res.restarts),
                             rejoin_time(res, faults), dropped(res), missing))

        print(f"\n{'fault':<21}{'solver':<11}{'no fault':>10}{'fault':>10}{'ratio':>10}"
              f"{'restarts':>10}{'rejoin s':>10}{'dropped':>9}")
        for fault, solver, r0, r, restarts, rejoin, drops, missing in rows:
            ratio = fmt(r / r0 if r is not None and r0 else None, ".3g")
            note = f"  ({missing} partition(s) returned nothing)" if missing else ""
            print(f"{fault:<21}{solver:<11}{fmt(r0):>10}{fmt(r):>10}{ratio:>10}"
                  f"{restarts!s:>10}{fmt(rejoin, '.2f'):>10}{fmt(drops, 'd'):>9}{note}")

        # the ASIP paper's straggler comparison, read off one long run per solver
        t_end = max(args.straggler_times)
        at: dict[str, list] = {}
        for solver in sorted({s for pair in PAIRS for s in pair} & set(args.solvers)):
            res, w, _ = run_one(client, solver, problem, parts, FAULTS["Straggler"](t_end),
                                t_end, args.workers, overrides)
            over_time = _combined_over_time(get_algorithm(solver), problem, res.trace)
            over_time.append((res.elapsed, w))
            at[solver] = [rel(next(w for t, w in reversed(over_time) if t <= limit))
                          for limit in args.straggler_times]
        print("\nStraggler(partition=0, sleep=2 s, every=1 s): barrier / asynchronous "
              "suboptimality (the paper: > 10x for ADMM)")
        for fast, slow in PAIRS:
            if fast in at and slow in at:
                cells = "  ".join(f"at {t:g} s: {at[slow][k]:.1e} / {at[fast][k]:.1e} = "
                                  f"{at[slow][k] / at[fast][k]:.1f}x"
                                  for k, t in enumerate(args.straggler_times))
                print(f"  {slow} / {fast}: {cells}")


if __name__ == "__main__":
    main()
