"""``--decide-budget S``: re-run the baselines whose unreached target leaves a goal undecided.

A time-to-target goal of `analysis.TTT_GOALS` on the matrix (asip's best asynchronous solver
against ``gd``, ``admm`` or dask-glm's best) reads a pair as a lower bound (``>=``) when asip
reached the target and the baseline did not within its budget. Such a pair leaves the goal's
"every pair" verdict undecided while its bound is below the goal's least ratio, and the
geometric mean's while the mean's bound is below the least mean. `undecided` lists the
baseline runs those verdicts depend on; `run_decided` runs each once more for ``S`` seconds
(kind `analysis.DECIDED`, resumable like any run), and the time-to-target tables and goals
then read the re-run in the matrix run's place, labelled "(S s re-run)". The straggler goal
is not decided this way (its runs belong to the fault section).
"""

from __future__ import annotations

from .analysis import DECIDED, TTT_GOALS, geomean, goal_pairs, time_to_target
from .data import parse_task

__all__ = ["run_decided", "undecided"]


def undecided(runs: list, ttt_targets, budget: float) -> list[tuple[str, str, str, str]]:
    """``(dataset, task, family, solver)`` of every matrix baseline run whose unreached target
    leaves a matrix goal undecided, with a budget below ``budget``; in the matrix's order."""
    summary = {"time_to_target": time_to_target(runs, ttt_targets)}
    wanted: list = []
    for kind, comparator, target, tasks, least, least_mean in TTT_GOALS:
        if kind != "matrix":
            continue
        pairs, _ = goal_pairs(summary, kind, comparator, target, tasks)
        mean_open = least_mean is not None and not geomean(
            [r["value"] for _, r in pairs]) >= least_mean
        for row, ratio in pairs:
            if ratio["bound"] != ">=" or (ratio["value"] >= least and not mean_open):
                continue
            for solver, v in row["solvers"].items():
                member = (solver == comparator if comparator != "dask-glm best"
                          else v["family"] == "dask-glm")
                cell = (row["dataset"], row["task"], v["family"], solver)
                if member and v["budget"] < budget and cell not in wanted:
                    wanted.append(cell)
    return wanted


def run_decided(session) -> list:
    """Re-run `undecided`'s runs for ``cfg.decide_budget`` seconds on the session's cluster;
    returns the new runs (also in ``session.runs``)."""
    from .matrix import placed, run_one, warm_dataset

    cfg = session.cfg
    cells = undecided(session.runs, cfg.ttt_targets, cfg.decide_budget)
    if cells:
        session.note(f"--decide-budget {cfg.decide_budget:g}: re-running {len(cells)} baseline "
                     "runs that reached no target where asip did: " + ", ".join(
                         f"{d} / {t} / {s}" for d, t, _, s in cells))
    done = []
    for spec in dict.fromkeys(d for d, *_ in cells):
        with placed(session, spec) as cdata:
            if cdata is None:
                continue
            warm_dataset(session, cdata)
            for _, task_key, family, solver in (c for c in cells if c[0] == spec):
                task = parse_task(task_key)
                ref = session.reference(cdata.data, task)
                if ref is None:
                    continue
                name = solver.split(":", 1)[1] if family != "asip" else solver
                done.append(run_one(session, cdata, task, family, name, cfg.decide_budget, ref,
                                    kind=DECIDED))
    return done
