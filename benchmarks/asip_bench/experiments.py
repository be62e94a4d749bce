"""The three studies beside the matrix: crossover against one core, fixed cost per fit, scaling.

* **crossover** -- on synthetic logistic data (n x 100) of growing n, asip's best
  solver on the cluster against scikit-learn's best on one core: time to 1e-3
  relative suboptimality (from fit call). The crossover is the smallest n
  from which asip is faster at that n and every larger n measured.
* **fixed cost** -- what a fit costs beyond solving, on a warm cluster: gang
  launch and teardown of a one-round ``gd`` fit (`StageResult.timings`), the
  median of a few repeats, and the whole ``fit`` wall time.
* **scaling** -- the same problem on 2, 4, 8, 16 partitions (a cluster with
  enough threads per worker to hold them: oversubscribed when partitions
  exceed cores) and 1x-16x the rows: time per data pass and messages per
  second, so the cost growth is visible.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings

from asip.algorithms import AsipClassifier, make_logistic

from . import peers_sklearn
from .data import BenchData, ClusterData, load_dataset, parse_task
from .matrix import Session, run_one, warm_up
from .runner import run_asip

__all__ = ["run_crossover", "run_fixed_cost", "run_scaling"]

CROSSOVER_TARGET = 1e-3
CROSSOVER_MAX_N = 1_000_000
FIXED_COST_TARGET = 0.3


def run_crossover(session: Session) -> dict:
    cfg = session.cfg
    task = parse_task(cfg.crossover_task)
    warm_up(session, cfg.crossover_solvers, sparse=False)  # timed like sklearn: kernels loaded
    rows = []
    for n in cfg.crossover_sizes:
        with session.progress.run("crossover", f"make synthetic-logistic:{n}"):
            data = load_dataset(f"synthetic-logistic:{n}", cfg.seed)
        ref = session.reference(data, task)
        if ref is None:
            continue
        cdata = ClusterData(session.client, data, session.n_partitions)
        try:
            asip_runs = [run_one(session, cdata, task, "asip", s, cfg.crossover_budget, ref,
                                 kind="crossover") for s in cfg.crossover_solvers]
            sk_runs = [run_one(session, cdata, task, "sklearn", c, cfg.crossover_budget, ref,
                               kind="crossover")
                       for c in peers_sklearn.candidates_for(task, cfg.sklearn_candidates)]
        finally:
            cdata.close()
        a = min(((r.time_to(CROSSOVER_TARGET), r.solver) for r in asip_runs if r.ok),
                default=(math.inf, None))
        s = min(((r.time_to(CROSSOVER_TARGET), r.solver) for r in sk_runs if r.ok),
                default=(math.inf, None))
        rows.append({"n": n, "asip_seconds": a[0], "asip_solver": a[1], "sklearn_seconds": s[0],
                     "sklearn_solver": s[1], "asip_faster": a[0] < s[0],
                     "speedup": s[0] / a[0] if math.isfinite(a[0]) and a[0] > 0 else math.nan})
        session.on_section_done()
    crossover = None
    for row in reversed(rows):
        if not row["asip_faster"]:
            break
        crossover = row["n"]
    out = {"task": task.key, "target": CROSSOVER_TARGET, "rows": rows, "crossover_n": crossover,
           "target_n": CROSSOVER_MAX_N}
    out["met"] = crossover is not None and crossover <= CROSSOVER_MAX_N
    if not out["met"] and rows:
        last = rows[-1]
        out["shortfall"] = (f"at n={last['n']:,} asip needs {last['asip_seconds']:.3g} s, "
                            f"scikit-learn {last['sklearn_seconds']:.3g} s "
                            f"({last['asip_seconds'] / last['sklearn_seconds']:.2g}x slower)"
                            if math.isfinite(last["sklearn_seconds"]) else "no sklearn time")
    return out


def run_fixed_cost(session: Session) -> dict:
    cfg = session.cfg
    ds = make_logistic(2_000, 20, random_state=2)
    data = BenchData("synthetic-logistic:2000x20", ds.X, ds.y, False)
    cdata = ClusterData(session.client, data, session.n_partitions)
    samples = []
    try:
        X, y = cdata.asip_input()
        for i in range(cfg.fixed_cost_repeats):
            with session.progress.run("fixed", f"one-round gd fit #{i + 1}"), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                est = AsipClassifier(solver="gd", max_iter=1, max_time=10.0, alpha=0.1,
                                     fit_intercept=False,
                                     n_partitions=cdata.n_partitions).fit(X, y)
                wall = time.perf_counter() - t0
            res = est.stage_result_
            samples.append({"launch": res.timings.get("launch", math.nan),
                            "teardown": res.timings.get("teardown", math.nan),
                            "data": res.timings.get("data", math.nan),
                            "stage_elapsed": res.elapsed, "fit_wall": wall,
                            "before_stage": est.fit_timings_["prepare"]})
    finally:
        cdata.close()
    med = {k: statistics.median(s[k] for s in samples) for k in samples[0]} if samples else {}
    fixed = med.get("launch", math.nan) + med.get("teardown", math.nan)
    out = {"samples": samples, "median": med, "launch_plus_teardown": fixed,
           "target": FIXED_COST_TARGET, "met": fixed < FIXED_COST_TARGET}
    if not out["met"]:
        out["shortfall"] = fixed / FIXED_COST_TARGET
    session.on_section_done()
    return out


def run_scaling(session: Session) -> dict:
    """Scaling runs on ``session.client`` (which must hold max(partitions) threads)."""
    cfg = session.cfg
    task = parse_task("log_loss-l2")
    threads = sum(session.client.nthreads().values())
    rows = []
    warm_up(session, cfg.scaling_solvers, sparse=False)
    for factor in cfg.scaling_factors:
        n = cfg.scaling_rows * factor
        with session.progress.run("scaling", f"make synthetic-logistic:{n}"):
            data = load_dataset(f"synthetic-logistic:{n}", cfg.seed)
        for parts in cfg.scaling_partitions:
            if parts > threads:
                session.note(f"scaling: {parts} partitions need {parts} worker threads, the "
                             f"cluster has {threads}; skipped")
                continue
            cdata = ClusterData(session.client, data, parts)
            try:
                for solver in cfg.scaling_solvers:
                    label = f"{data.name} / {parts} partitions / {solver}"
                    with session.progress.run("scaling", label, cfg.scaling_budget):
                        run = session.guarded(
                            lambda: run_asip(cdata, task, solver, cfg.scaling_budget,  # noqa: B023
                                             seed=cfg.seed, kind="scaling"),
                            _fallback(data, task, solver, parts))
                    rows.append(_scaling_row(run, factor, parts, n))
            finally:
                cdata.close()
        session.on_section_done()
    return {"task": task.key, "rows": rows, "cores": _cores(), "threads": threads}


def _fallback(data, task, solver, parts):
    from .records import Run

    return Run(data.name, task.key, solver, "asip", kind="scaling", n_rows=data.n,
               n_partitions=parts)


def _scaling_row(run, factor: int, parts: int, n: int) -> dict:
    elapsed = run.timings.get("elapsed", math.nan)
    passes = run.extra.get("data_passes")
    msgs = run.stats.get("delivered", 0)
    return {"solver": run.solver, "factor": factor, "partitions": parts, "n": n,
            "elapsed": elapsed, "passes": passes,
            "seconds_per_pass": elapsed / passes if passes else math.nan,
            "msgs_per_s": msgs / elapsed if elapsed else math.nan,
            "bytes_per_s": run.stats.get("delivered_bytes", 0) / elapsed if elapsed else math.nan,
            "launch": run.timings.get("launch", math.nan), "status": run.status}


def _cores() -> int:
    import os

    return os.cpu_count() or 1
