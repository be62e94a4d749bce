"""From runs to the issue's numbers: suboptimality, paper ratios, time to target, targets.

Conventions, stated once:

* the "10 s" of the paper ratios is the largest budget <= 10 s of the run
  (the quick profile's largest budget);
* a ratio of suboptimalities clamps both at a floor, `REL_FLOOR` (1e-10) or twice
  the reference's certified relative precision if larger: below it the reference's
  own precision dominates, and ratios would only measure noise. A pair with *both*
  solvers at the floor (both reached f*) carries no ratio: it is counted apart
  (``n_at_floor``) and left out of the geometric mean;
* a family's *best* is its solver with the smallest value (suboptimality at a
  budget, or time to a target); scikit-learn's best is over its candidates;
* time to a target is the first trace time at or below it, from the call;
  asip's side of a time-to-target ratio is its best *asynchronous* solver
  (the ``asip-*`` ones), timed against ``gd``, ``admm``, dask-glm's best and
  scikit-learn's best (one core). The ratio is ``peer time / asip time``:
  above 1, asip is sooner. A solver that never reached the target is
  reported as "not reached (> its horizon)", its budget or last trace point;
  the ratio then is a bound, never a made-up number: ``>=`` (only asip got
  there: ``peer horizon / asip time``) or ``<=`` (only the peer did);
* a matrix run re-run with a longer budget to decide such a bound (``--decide-budget``,
  `asip_bench.decide`; kind `DECIDED`) takes the matrix run's place in the time-to-target
  readings only, labelled "(S s re-run)" wherever its time or horizon is shown.
"""

from __future__ import annotations

import math
from collections import defaultdict

from .config import SOLVER_VARIANTS, is_asynchronous
from .data import PAPER_TASKS
from .records import REL_FLOOR, Run

__all__ = ["COMPARATORS", "DECIDED", "STRAGGLER_COMPARATORS", "TARGETS_TTT", "best_of", "describe",
           "fmt_target", "goal_pairs", "l1_within", "paper_ratios", "rerun_label", "straggler_closeness", "subopt_table", "summarize", "time_to_target",
           "ttt_goals", "ttt_ratio"]

#: the relative suboptimalities whose first crossing is timed (``--ttt-targets`` overrides)
TARGETS_TTT = (1e-3, 1e-6)
#: what asip's best asynchronous solver is timed against, in table order
COMPARATORS = ("gd", "admm", "dask-glm best", "sklearn best")
#: the synchronous baselines; "sync best" is the fastest of them
SYNCHRONOUS = ("gd", "admm", "lbfgs")
#: the straggler tables' columns: the synchronous solvers (the peers do not run there)
STRAGGLER_COMPARATORS = ("gd", "admm", "lbfgs", "sync best")
_L2_TASKS = ("log_loss-l2", "hinge-l2", "log_loss-l2-1/n")
#: the kind of a matrix run re-run with a longer budget to decide a bound (`asip_bench.decide`)
DECIDED = "decided"
#: issue 12's time-to-target goals: (runs, comparator, target, tasks (None: all), least ratio
#: on every pair, least geometric mean (None: no such goal))
TTT_GOALS = (
    ("matrix", "gd", 1e-6, _L2_TASKS, 3.0, 5.0),
    ("matrix", "admm", 1e-6, _L2_TASKS, 3.0, 5.0),
    ("matrix", "dask-glm best", 1e-6, _L2_TASKS, 10.0, None),
    ("straggler", "sync best", 1e-3, None, 3.0, None),
)
#: issue 12's l1 goals: asip's best asynchronous solver within this suboptimality at 5 s
L1_GOALS = {"log_loss-l1": 1e-4, "hinge-l1": 1e-3}
#: issue 12's straggler goal: asip's best async this many times closer to f* at the fault budget
STRAGGLER_CLOSER = 10.0
L1_GOAL_BUDGET = 5.0


def geomean(values: list[float]) -> float:
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else math.nan


def _floor(r: float, precision: float = 0.0) -> float:
    return max(r, REL_FLOOR, 2.0 * precision) if math.isfinite(r) else r


def ratio_budget(budgets: list[float]) -> float:
    under = [b for b in budgets if b <= 10.0]
    return max(under) if under else min(budgets)


def _index(runs: list[Run], kind: str = "matrix") -> dict:
    out: dict = defaultdict(dict)
    for r in runs:
        if r.kind == kind and r.ok:
            out[(r.dataset, r.task)][r.solver] = r
    return out


def _timed_index(runs: list[Run], kind: str) -> dict:
    """`_index`, with each matrix run's `DECIDED` re-run (if any) in its place."""
    idx = _index(runs, kind)
    if kind == "matrix":
        for key, by_solver in _index(runs, DECIDED).items():
            if key in idx:
                idx[key].update(by_solver)
    return idx


def _rerun(r: Run) -> float | None:
    """The budget of ``r`` if it is a `DECIDED` re-run, else None."""
    return float(r.budget) if r.kind == DECIDED else None


def rerun_label(budget: float | None) -> str:
    """What marks a time read off a `DECIDED` re-run of ``budget`` seconds ("" for none)."""
    return "" if budget is None else f" ({budget:g} s re-run)"


def best_of(runs: dict, family: str, key) -> tuple[str | None, float]:
    """``(solver, value)`` of the family's run with the smallest ``key(run)``."""
    best = (None, math.inf)
    for name, r in runs.items():
        if r.family == family:
            v = key(r)
            if math.isfinite(v) and v < best[1]:
                best = (name, v)
    return best


def subopt_table(runs: list[Run], budgets: list[float]) -> dict:
    """``{budget: {"dataset / task": {solver: rel}}}``, with each peer family's best added."""
    idx = _index(runs)
    out: dict = {}
    for b in budgets:
        rows = {}
        for (ds, task), by_solver in idx.items():
            row = {s: r.rel_at(b) for s, r in by_solver.items() if r.family == "asip"}
            for fam in ("dask-glm", "sklearn"):
                name, v = best_of(by_solver, fam, lambda r, b=b: r.rel_at(b))
                row[f"{fam} best"] = v if name else math.nan
                row[f"{fam} best solver"] = name
            rows[f"{ds} / {task}"] = row
        out[b] = rows
    return out


def _pairwise(idx: dict, a: str, b: str, budget: float, tasks) -> list[dict]:
    pairs = []
    for (ds, task), by_solver in sorted(idx.items()):
        if task not in tasks or a not in by_solver or b not in by_solver:
            continue
        ra, rb = by_solver[a].rel_at(budget), by_solver[b].rel_at(budget)
        prec = max(by_solver[a].f_star_precision, by_solver[b].f_star_precision)
        fa, fb = _floor(ra, prec), _floor(rb, prec)
        at_floor = fa == fb == _floor(0.0, prec)  # both reached f*: no ratio to read
        ratio = fb / fa if math.isfinite(ra) and math.isfinite(rb) and not at_floor else math.nan
        pairs.append({"dataset": ds, "task": task, a: ra, b: rb, "ratio": ratio,
                      "at_floor": at_floor})
    return pairs


def paper_ratios(runs: list[Run], budgets: list[float], fault_budget: float) -> list[dict]:
    """The ASIP paper's three headline ratios, measured here (geometric means over pairs)."""
    bud = ratio_budget(budgets)
    specs = [
        ("ASIP-SGD vs gd", "asip-sgd", "gd", "matrix", bud, 74.0, "74x (average)"),
        ("ASIP-SGD vs gd-mllib (the paper's baseline, step 0.1/sqrt(t))", "asip-sgd", "gd-mllib",
         "matrix", bud, 74.0, "74x (average)"),
        ("ASIP-ADMM vs admm", "asip-admm", "admm", "matrix", bud, 1.2, "1.2x"),
        ("ASIP-ADMM vs admm, straggler", "asip-admm", "admm", "straggler", fault_budget, 10.0,
         ">10x"),
        ("ASIP-SGD vs gd, straggler", "asip-sgd", "gd", "straggler", fault_budget, None, "-"),
    ]
    out = []
    for name, a, b, kind, budget, target, published in specs:
        tasks = PAPER_TASKS if kind == "matrix" else {r.task for r in runs if r.kind == kind}
        pairs = _pairwise(_index(runs, kind), a, b, budget, tasks)
        measured = geomean([p["ratio"] for p in pairs])
        n_floor = sum(p["at_floor"] for p in pairs)
        out.append({"name": name, "budget": budget, "published": published, "target": target,
                    "measured": measured, "pairs": pairs, "n_pairs": len(pairs) - n_floor,
                    "n_at_floor": n_floor, **_verdict(measured, target)})
    return out


def _verdict(measured: float, target: float | None, higher_is_better: bool = True) -> dict:
    if target is None or not math.isfinite(measured):
        return {"met": None, "shortfall": None}
    met = measured >= target if higher_is_better else measured <= target
    shortfall = (target / measured if higher_is_better else measured / target) if not met else None
    return {"met": met, "shortfall": shortfall}


def _stopped_early(r: Run) -> bool:
    """Did the solver stop itself (a stopping test, STOP, convergence) before its budget?"""
    return r.extra.get("stopped_by") not in (None, "max_time", "budget")


def _horizon(r: Run) -> float:
    """How long ``r`` was watched: a target it never reached takes longer than this.

    The budget, or the last trace point if later; for a run that stopped itself
    early, its last trace point (it was not watched beyond).
    """
    times = [float(t) for t, _ in r.trace]
    if _stopped_early(r) and times:
        return max(times)
    return max([r.budget] + times)


def _reading(members: list[Run], target: float) -> dict:
    """The fastest of ``members`` to ``target``, or, if none got there, a lower bound on it.

    ``{"ran", "solver", "seconds", "reached", "horizon", "stopped", "rerun"}``:
    ``seconds`` is the first trace time at or below the target (None if
    never); ``horizon`` the time by which none of them had reached it (the
    shortest `_horizon`), the lower bound a not-reached time carries;
    ``stopped`` whether that run stopped itself there; ``rerun`` the budget of the
    run read if it is a `DECIDED` re-run, else None.
    """
    if not members:
        return {"ran": False, "solver": None, "seconds": None, "reached": False, "horizon": None,
                "stopped": False, "rerun": None}
    best = min(members, key=lambda r: (r.time_to(target), r.solver))
    t = best.time_to(target)
    if math.isfinite(t):
        return {"ran": True, "solver": best.solver, "seconds": t, "reached": True,
                "horizon": _horizon(best), "stopped": False, "rerun": _rerun(best)}
    first = min(members, key=_horizon)
    return {"ran": True, "solver": None, "seconds": None, "reached": False,
            "horizon": _horizon(first), "stopped": _stopped_early(first), "rerun": _rerun(first)}


def ttt_ratio(peer: dict, asip: dict) -> dict:
    """``peer time / asip time`` (> 1: asip sooner) from two `_reading` results.

    ``bound`` says what the value is: ``"="`` both reached the target;
    ``">="`` only asip did (the peer's time is past its horizon, so the ratio
    is at least this); ``"<="`` only the peer did (at most this); None when
    neither did or the peer did not run (``value`` nan).
    """
    if not peer["ran"] or not asip["ran"]:
        return {"value": math.nan, "bound": None}
    if asip["reached"] and peer["reached"]:
        return {"value": peer["seconds"] / asip["seconds"], "bound": "="}
    if asip["reached"]:
        return {"value": peer["horizon"] / asip["seconds"], "bound": ">="}
    if peer["reached"]:
        return {"value": peer["seconds"] / asip["horizon"], "bound": "<="}
    return {"value": math.nan, "bound": None}


def describe(reading: dict, ratio: dict | None = None, name: bool = True) -> str:
    """One time-to-target cell as text: ``0.31 s (saga), 6.0x`` or ``not reached (> 10 s)``."""
    if not reading["ran"]:
        return "n/a"
    if reading["reached"]:
        text = f"{reading['seconds']:.3g} s" + (f" ({reading['solver']})" if name else "")
    elif reading.get("stopped"):
        text = f"not reached (stopped at {reading['horizon']:.3g} s)"
    else:
        text = f"not reached (> {reading['horizon']:.3g} s)"
    text += rerun_label(reading.get("rerun"))
    if ratio is not None and ratio["bound"] is not None:
        text += f", {_fmt_bound(ratio['value'], ratio['bound'])}"
    return text


def time_to_target(runs: list[Run], ttt_targets=TARGETS_TTT, kind: str = "matrix") -> list[dict]:
    """Per dataset x task: every solver's time to each target, and asip's ratios to its peers.

    ``solvers`` holds each solver's first time at or below each target (None:
    not reached by its ``horizon``). Under ``targets[target]`` are the
    readings of asip's best *asynchronous* solver (``async``), of ``gd``,
    ``admm``, ``lbfgs`` and the fastest of them (``sync best``), and of dask-glm's and
    scikit-learn's best, and under ``ratios`` each one's `ttt_ratio` to asip's; a matrix
    run's `DECIDED` re-run is read in its place. A target below the reference's certified precision is not read
    (``certified: False``, no ratios). ``kind`` picks the runs: the fault-free
    matrix, or the ``straggler`` or ``kill`` runs.
    """
    rows = []
    for (ds, task), by_solver in sorted(_timed_index(runs, kind).items()):
        precision = max((r.f_star_precision for r in by_solver.values()), default=0.0)
        solvers = {}
        for name, r in sorted(by_solver.items()):
            times = {}
            for target in ttt_targets:
                t = r.time_to(target)
                times[target] = t if math.isfinite(t) else None
            solvers[name] = {"family": r.family, "budget": r.budget, "horizon": _horizon(r),
                             "times": times, "rerun": _rerun(r)}
        row = {"dataset": ds, "task": task, "f_star_precision": precision, "solvers": solvers,
               "targets": {}}
        groups = {
            "async": [r for s, r in by_solver.items() if r.family == "asip" and is_asynchronous(s)],
            "gd": [r for s, r in by_solver.items() if s == "gd"],
            "admm": [r for s, r in by_solver.items() if s == "admm"],
            "lbfgs": [r for s, r in by_solver.items() if s == "lbfgs"],
            "sync best": [r for s, r in by_solver.items() if s in SYNCHRONOUS],
            "dask-glm best": [r for r in by_solver.values() if r.family == "dask-glm"],
            "sklearn best": [r for r in by_solver.values() if r.family == "sklearn"],
        }
        for target in ttt_targets:
            cell = {name: _reading(members, target) for name, members in groups.items()}
            cell["certified"] = precision < target
            cell["ratios"] = {c: (ttt_ratio(cell[c], cell["async"]) if cell["certified"]
                                  else {"value": math.nan, "bound": None})
                              for c in COMPARATORS + ("lbfgs", "sync best")}
            row["targets"][target] = cell
        rows.append(row)
    return rows


def solver_accuracy(runs: list[Run], budgets: list[float], task: str = "log_loss-l2",
                    bound: float = 1e-3) -> list[dict]:
    """Issue 3's check: every solver except averaging within ``bound`` on ``task`` at 10 s.

    Variants (the paper's MLlib GD) are baselines run for comparison, not solvers we ship.
    """
    bud = ratio_budget(budgets)
    out = []
    for (ds, t), by_solver in sorted(_index(runs).items()):
        if t != task or ds.startswith("synthetic"):
            continue
        for s, r in sorted(by_solver.items()):
            if r.family == "asip" and s != "averaging" and s not in SOLVER_VARIANTS:
                rel = r.rel_at(bud)
                out.append({"dataset": ds, "solver": s, "rel": rel,
                            **_verdict(rel, bound, higher_is_better=False)})
    return out


def channel_summary(runs: list[Run]) -> list[dict]:
    """Channel statistics of every stage run (the JSON keeps them per run too)."""
    out = []
    for r in runs:
        if r.family != "asip" or not r.stats:
            continue
        s = r.stats
        elapsed = r.timings.get("elapsed") or r.budget or 1.0
        drops = s.get("dropped_no_route", 0) + s.get("dropped_overflow", 0) + s.get(
            "dropped_injected", 0)
        out.append({"dataset": r.dataset, "task": r.task, "solver": r.solver, "kind": r.kind,
                    "messages": s.get("delivered", 0), "sent": s.get("sent", 0),
                    "bytes": s.get("delivered_bytes", 0), "drops": drops,
                    "malformed": s.get("malformed", 0), "rejected": s.get("rejected", 0),
                    "msgs_per_s": s.get("delivered", 0) / elapsed, "restarts": r.restarts,
                    "consumed": s.get("consumed", 0), "age_us_total": s.get("age_us_total", 0),
                    "age_max_ms": s.get("age_us_max", 0) / 1e3})
    return out


def summarize(runs: list[Run], budgets: list[float], fault_budget: float,
              ttt_targets=TARGETS_TTT) -> dict:
    return {
        "subopt": subopt_table(runs, budgets),
        "paper_ratios": paper_ratios(runs, budgets, fault_budget),
        "time_to_target": time_to_target(runs, ttt_targets),
        "time_to_target_straggler": time_to_target(runs, ttt_targets, "straggler"),
        "l1_at_5s": l1_within(runs),
        "straggler_closeness": straggler_closeness(runs, fault_budget),
        "solver_accuracy": solver_accuracy(runs, budgets),
        "channel": channel_summary(runs),
        "faults": fault_summary(runs),
    }


def fault_summary(runs: list[Run]) -> list[dict]:
    """Each fault run next to the same solver's fault-free run, at the fault run's budget."""
    clean = _index(runs)
    out = []
    for r in runs:
        if r.kind not in ("straggler", "kill"):
            continue
        base = clean.get((r.dataset, r.task), {}).get(r.solver)
        out.append({"dataset": r.dataset, "task": r.task, "solver": r.solver, "kind": r.kind,
                    "budget": r.budget, "rel": r.rel_at(r.budget) if r.ok else math.nan,
                    "rel_without": base.rel_at(r.budget) if base is not None else math.nan,
                    "restarts": r.restarts, "status": r.status})
    return out


def targets(summary: dict) -> list[dict]:
    """The issue's targets, each with its measurement and, where missed, by how much."""
    out = []
    for pr in summary.get("paper_ratios", []):
        if pr["target"] is None or not pr["n_pairs"]:
            continue
        floor = f"; {pr['n_at_floor']} more with both at f*" if pr.get("n_at_floor") else ""
        plural = "pair" if pr["n_pairs"] == 1 else "pairs"
        out.append(_target(f"{pr['name']} (geo. mean, {pr['n_pairs']} {plural}{floor}, "
                           f"{pr['budget']:g} s)",
                           f">= {pr['target']:g}x", pr["measured"], pr["met"],
                           pr["shortfall"], "x"))
    out.extend(ttt_goals(summary))
    close = [p for p in summary.get("straggler_closeness", []) if math.isfinite(p["ratio"])]
    if close:
        mean = geomean([p["ratio"] for p in close])
        worst = min(close, key=lambda p: p["ratio"])
        out.append(_target(f"asip async best vs sync best under the straggler, suboptimality "
                           f"at {worst['budget']:g} s (geo. mean, {_n_pairs(len(close))}; worst "
                           f"{worst['dataset']} / {worst['task']}: {worst['ratio']:.3g}x)",
                           f">= {STRAGGLER_CLOSER:g}x", mean, mean >= STRAGGLER_CLOSER,
                           STRAGGLER_CLOSER / mean if mean > 0 else math.inf, "x"))
    for task, bound in L1_GOALS.items():
        cells = [c for c in summary.get("l1_at_5s", []) if c["task"] == task]
        if cells:
            worst = max(cells, key=lambda c: _nan_last(c["rel"]))
            met = all(math.isfinite(c["rel"]) and c["rel"] <= bound for c in cells)
            out.append(_target(f"asip async best on {task} at {L1_GOAL_BUDGET:g} s (worst of "
                               f"{len(cells)}: {worst['dataset']}, {worst['solver']})",
                               f"<= {fmt_target(bound)}", worst["rel"], met,
                               None if met else worst["rel"] / bound, ""))
    acc = summary.get("solver_accuracy", [])
    if acc:
        bad = [a for a in acc if a["met"] is False or not math.isfinite(a["rel"])]
        out.append({"name": "every solver but averaging within 1e-3 on log_loss-l2 (real data)",
                    "target": "all", "measured": f"{len(acc) - len(bad)}/{len(acc)}",
                    "met": not bad, "shortfall": ", ".join(
                        f"{a['dataset']}/{a['solver']} {a['rel']:.1e}" for a in bad) or None})
    cross = summary.get("crossover")
    if cross:
        n = cross.get("crossover_n")
        out.append({"name": f"crossover vs scikit-learn one core ({cross['task']}, 1e-3)",
                    "target": f"<= {cross['target_n']:,} rows",
                    "measured": f"{n:,} rows" if n else "not reached",
                    "met": cross["met"], "shortfall": cross.get("shortfall")})
    fixed = summary.get("fixed_cost")
    if fixed:
        out.append(_target("fixed cost per fit (launch + teardown, warm)",
                           f"< {fixed['target']:g} s", fixed["launch_plus_teardown"],
                           fixed["met"], fixed.get("shortfall"), " s"))
    return out


def _target(name, target, measured, met, shortfall, unit) -> dict:
    if isinstance(measured, float):
        text = f"{measured:.3g}{unit}" if math.isfinite(measured) else "-"
    else:
        text = str(measured)
    short = None
    if met is False and shortfall is not None:
        short = (f"{shortfall:.3g}x short" if math.isfinite(shortfall) else "not reached")
    return {"name": name, "target": target, "measured": text, "met": met, "shortfall": short}


def fmt_target(x: float) -> str:
    """A relative suboptimality as people write it: ``1e-3``, ``5e-4``, ``2.5e-6``."""
    mantissa, exponent = f"{float(x):.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _fmt_bound(value: float, bound: str | None) -> str:
    prefix = {">=": ">= ", "<=": "<= "}.get(bound, "")
    return f"{prefix}{value:.3g}x"


def _pair_verdict(value: float, bound: str, least: float) -> bool | None:
    """Is ``ratio >= least``: True, False, or None when the bound cannot tell."""
    if value >= least and bound in ("=", ">="):
        return True
    if value < least and bound in ("=", "<="):
        return False
    return None


def _cell(row: dict, target: float) -> dict | None:
    """A row's cell for ``target`` (JSON keys are strings: ``--from-json`` re-reads them)."""
    for key, cell in row["targets"].items():
        if math.isclose(float(key), target):
            return cell
    return None


def ttt_goals(summary: dict) -> list[dict]:
    """Issue 12's time-to-target goals (`TTT_GOALS`), bounds kept: unknown stays unknown.

    For each goal: "every pair >= k x" (met only if every pair is, missed if
    any pair certainly is not, else undecided) and, where set, the geometric
    mean (a bound when any pair is one). A pair where neither side reached the
    target is counted apart.
    """
    out = []
    for kind, comparator, target, tasks, least, least_mean in TTT_GOALS:
        pairs, neither = goal_pairs(summary, kind, comparator, target, tasks)
        if not pairs:
            continue
        where = " under the straggler" if kind == "straggler" else ""
        reruns = {_cell(row, target)[comparator].get("rerun") for row, _ in pairs} - {None}
        name = (f"asip async best vs {comparator}{where}, time to {fmt_target(target)}"
                + "".join(rerun_label(b) for b in sorted(reruns)))
        apart = f"; {neither} more where neither reached it" if neither else ""
        verdicts = [_pair_verdict(r["value"], r["bound"], least) for _, r in pairs]
        failing = [p for p, v in zip(pairs, verdicts) if v is False]
        worst_row, worst = min(failing or pairs, key=lambda p: p[1]["value"])
        met = False if failing else (True if all(verdicts) else None)
        undecided = verdicts.count(None)
        out.append({
            "name": f"{name}, every pair ({_n_pairs(len(pairs))}{apart}; worst "
                    f"{worst_row['dataset']} / {worst_row['task']})",
            "target": f">= {least:g}x", "measured": _fmt_bound(worst["value"], worst["bound"]),
            "met": met, "shortfall": (f"undecided: {undecided} of {len(pairs)} pairs only "
                                      "bounded" if met is None else _shortfall(met, worst, least))})
        if least_mean is None:
            continue
        bounds = {r["bound"] for _, r in pairs}
        mean_kind = "=" if bounds == {"="} else (">=" if "<=" not in bounds else
                                                 ("<=" if ">=" not in bounds else None))
        mean = geomean([r["value"] for _, r in pairs])
        mean_ratio = {"value": mean, "bound": mean_kind}
        mean_met = _pair_verdict(mean, mean_kind, least_mean) if mean_kind else None
        out.append({
            "name": f"{name}, geo. mean ({_n_pairs(len(pairs))})",
            "target": f">= {least_mean:g}x",
            "measured": (_fmt_bound(mean, mean_kind) if mean_kind
                         else f"{mean:.3g}x (mixed bounds)"),
            "met": mean_met, "shortfall": _shortfall(mean_met, mean_ratio, least_mean)})
    return out


def goal_pairs(summary: dict, kind: str, comparator: str, target: float,
               tasks) -> tuple[list, int]:
    """A `TTT_GOALS` goal's pairs: ``([(row, ratio), ...], pairs where neither side reached
    the target)``, over the rows of its ``kind`` whose task is one of ``tasks`` (None: all)."""
    rows = summary.get("time_to_target" if kind == "matrix" else f"time_to_target_{kind}", [])
    pairs, neither = [], 0
    for row in rows:
        cell = _cell(row, target)
        # a task at another strength (``log_loss-l2@1e-4``) counts as its kind
        if cell is None or (tasks is not None and row["task"].split("@")[0] not in tasks):
            continue
        if not cell[comparator]["ran"] or not cell["async"]["ran"] or not cell["certified"]:
            continue
        ratio = cell["ratios"][comparator]
        if ratio["bound"] is None:
            neither += 1
        else:
            pairs.append((row, ratio))
    return pairs, neither


def straggler_closeness(runs: list[Run], budget: float) -> list[dict]:
    """Issue 12's straggler goal: how much closer to f* asip's best async solver is at ``budget``.

    Per dataset x task of the straggler runs: the best asynchronous and the best
    synchronous (`SYNCHRONOUS`) suboptimality at ``budget``, floored as in
    `paper_ratios`, and ``ratio`` = sync / async (nan when both are at the floor).
    """
    out = []
    for (ds, task), by_solver in sorted(_index(runs, "straggler").items()):
        asyncs = [r for s, r in by_solver.items() if r.family == "asip" and is_asynchronous(s)]
        syncs = [r for s, r in by_solver.items() if s in SYNCHRONOUS]
        if not asyncs or not syncs:
            continue
        prec = max(r.f_star_precision for r in asyncs + syncs)
        a = min((_floor(r.rel_at(budget), prec), r.solver) for r in asyncs)
        b = min((_floor(r.rel_at(budget), prec), r.solver) for r in syncs)
        both_floor = a[0] == b[0] == _floor(0.0, prec)
        ratio = b[0] / a[0] if math.isfinite(a[0]) and math.isfinite(b[0]) and not both_floor \
            else math.nan
        out.append({"dataset": ds, "task": task, "budget": budget, "async": a[0],
                    "async_solver": a[1], "sync": b[0], "sync_solver": b[1], "ratio": ratio})
    return out


def l1_within(runs: list[Run], budget: float = L1_GOAL_BUDGET) -> list[dict]:
    """Issue 12's l1 goals on real data: asip's best asynchronous solver's suboptimality at 5 s."""
    out = []
    for (ds, task), by_solver in sorted(_index(runs).items()):
        if task not in L1_GOALS or ds.startswith("synthetic"):
            continue
        asyncs = [r for s, r in by_solver.items() if r.family == "asip" and is_asynchronous(s)]
        if not asyncs or max(_horizon(r) for r in asyncs) < budget:
            continue
        best = min(asyncs, key=lambda r: (_nan_last(r.rel_at(budget)), r.solver))
        out.append({"dataset": ds, "task": task, "solver": best.solver, "budget": budget,
                    "rel": best.rel_at(budget), "bound": L1_GOALS[task]})
    return out


def _nan_last(v: float) -> float:
    return v if math.isfinite(v) else math.inf


def _n_pairs(n: int) -> str:
    return f"{n} pair" if n == 1 else f"{n} pairs"


def _shortfall(met: bool | None, ratio: dict, least: float) -> str | None:
    if met is None:
        return (f"undecided: {_fmt_bound(ratio['value'], ratio['bound'])} is only a bound"
                if ratio["bound"] != "=" else None)
    if met:
        return None
    if not ratio["value"] > 0:
        return "not reached"
    at_least = ">= " if ratio["bound"] == "<=" else ""  # the ratio is at most this: short by more
    return f"{at_least}{least / ratio['value']:.3g}x short"
