"""The closing tables (rich): suboptimality, ratios, time to target, faults, channel, targets."""

from __future__ import annotations

import math
from collections import defaultdict

from rich.console import Console
from rich.table import Table

from .analysis import COMPARATORS, STRAGGLER_COMPARATORS, describe, fmt_target, rerun_label
from .config import ASIP_NAMES
from .progress import fmt_rel

__all__ = ["print_report"]


def _t(seconds: float) -> str:
    return "-" if not math.isfinite(seconds) else f"{seconds:.3g}s"


def subopt_tables(console: Console, subopt: dict) -> None:
    for budget, rows in subopt.items():
        if not rows:
            continue
        present = [s for s in ASIP_NAMES if any(s in r for r in rows.values())]
        table = Table(title=f"relative suboptimality at {budget:g} s", title_justify="left")
        table.add_column("dataset / task")
        for s in present + ["dask-glm best", "sklearn best"]:
            table.add_column(s.replace("asip-", "asip-\n").replace(" best", "\nbest"),
                             justify="right")
        for key, row in rows.items():
            vals = [row.get(s, math.nan) for s in present + ["dask-glm best", "sklearn best"]]
            finite = [v for v in vals if math.isfinite(v)]
            low = min(finite) if finite else None
            cells = [(f"[bold green]{fmt_rel(v)}[/]" if v == low else fmt_rel(v)) for v in vals]
            table.add_row(key, *cells)
        console.print(table)


def ratio_table(console: Console, ratios: list[dict]) -> None:
    if not any(r["n_pairs"] for r in ratios):
        return
    table = Table(title="the ASIP paper's ratios, measured here (suboptimality of the baseline / "
                  "of the ASIP solver)", title_justify="left")
    for col in ("ratio", "budget", "pairs", "measured (geo. mean)", "published", "verdict"):
        table.add_column(col)
    for r in ratios:
        m = r["measured"]
        pairs = str(r["n_pairs"]) + (f" (+{r['n_at_floor']} both at f*)"
                                     if r.get("n_at_floor") else "")
        table.add_row(r["name"], f"{r['budget']:g} s", pairs,
                      f"{m:.3g}x" if math.isfinite(m) else "-", r["published"], _verdict(r))
    console.print(table)


def _verdict(r: dict) -> str:
    if r.get("met") is None:
        short = r.get("shortfall")  # an undecided target says why
        return short if isinstance(short, str) else "-"
    if r["met"]:
        return "[green]met[/]"
    short = r.get("shortfall")
    if isinstance(short, (int, float)):
        short = f"{short:.3g}x short" if math.isfinite(short) else "not reached"
    return f"[red]missed[/] ({short})" if short else "[red]missed[/]"


def ttt_solver_table(console: Console, rows: list[dict]) -> None:
    """Every solver's time to each target (from the call; "> t": not reached by t)."""
    if not rows:
        return
    names = [s for s in ASIP_NAMES if any(s in r["solvers"] for r in rows)]
    table = Table(title="time to relative suboptimality, per solver (from the call; '> t': not "
                  "reached within t)", title_justify="left")
    table.add_column("dataset / task")
    table.add_column("target")
    for s in names + ["dask-glm best", "sklearn best"]:
        table.add_column(s.replace("asip-", "asip-\n").replace(" best", "\nbest"),
                         justify="right")
    for row in rows:
        for target, cell in row["targets"].items():
            def t(name):
                r = row["solvers"].get(name)
                if r is None:
                    return "-"
                s = r["times"].get(target)
                return (f"{s:.3g}s" if s is not None else f"> {r['horizon']:.3g}s") + \
                    rerun_label(r.get("rerun"))

            def best(key):
                c = cell[key]
                return "-" if not c["ran"] else (f"{c['seconds']:.3g}s" if c["reached"]
                                                 else f"> {c['horizon']:.3g}s") + \
                    rerun_label(c.get("rerun"))

            table.add_row(f"{row['dataset']} / {row['task']}", fmt_target(target),
                          *[t(n) for n in names], best("dask-glm best"), best("sklearn best"))
    console.print(table)


def ttt_table(console: Console, rows: list[dict], where: str = "",
              columns: tuple = COMPARATORS) -> None:
    """asip's best asynchronous solver against ``columns`` (gd, admm and the peers' best; under
    the straggler the synchronous solvers and their best), time to target."""
    if not rows:
        return
    table = Table(title=f"time to target{where}: asip's best asynchronous solver vs the others "
                  "(ratio = their time / asip's, > 1: asip sooner; >= / <=: a bound, one side "
                  "never got there)", title_justify="left")
    for col in ("dataset / task", "target", "asip async best") + tuple(
            "sklearn best (1 core)" if k == "sklearn best" else k for k in columns):
        table.add_column(col)
    for row in rows:
        for target, c in row["targets"].items():
            if not c["certified"]:
                table.add_row(f"{row['dataset']} / {row['task']}", fmt_target(target),
                              f"f* certified only to {row['f_star_precision']:.1e}",
                              *[""] * len(columns))
                continue
            peers = [describe(c[k], c["ratios"][k], name=k.endswith("best")) for k in columns]
            table.add_row(f"{row['dataset']} / {row['task']}", fmt_target(target),
                          describe(c["async"]), *peers)
    console.print(table)


def fault_table(console: Console, faults: list[dict]) -> None:
    if not faults:
        return
    table = Table(title="fault runs: relative suboptimality at the budget, with and without "
                  "the fault", title_justify="left")
    for col in ("dataset / task", "solver", "fault", "budget", "with fault", "without",
                "restarts"):
        table.add_column(col)
    for f in faults:
        table.add_row(f"{f['dataset']} / {f['task']}", f["solver"], f["kind"], f"{f['budget']:g}s",
                      fmt_rel(f["rel"]), fmt_rel(f["rel_without"]), str(f["restarts"]))
    console.print(table)


def channel_table(console: Console, channel: list[dict]) -> None:
    if not channel:
        return
    agg: dict = defaultdict(lambda: defaultdict(float))
    for c in channel:
        a = agg[(c["solver"], c["kind"])]
        a["runs"] += 1
        for k in ("messages", "bytes", "drops", "malformed", "rejected", "msgs_per_s", "restarts",
                  "consumed", "age_us_total"):
            a[k] += c.get(k, 0)
        a["age_max_ms"] = max(a["age_max_ms"], c.get("age_max_ms", 0.0))
    table = Table(title="channel statistics, summed over runs (per run in the JSON)",
                  title_justify="left")
    for col in ("solver", "runs", "kind", "messages", "MB", "drops", "malformed+rejected",
                "mean msgs/s", "age mean/max ms", "restarts"):
        table.add_column(col, justify="right")
    for (solver, kind), a in sorted(agg.items()):
        table.add_row(solver, str(int(a["runs"])), kind, f"{int(a['messages']):,}",
                      f"{a['bytes'] / 1e6:.1f}", f"{int(a['drops']):,}",
                      f"{int(a['malformed'] + a['rejected'])}",
                      f"{a['msgs_per_s'] / a['runs']:,.0f}", _fmt_age(a), str(int(a["restarts"])))
    console.print(table)


def _fmt_age(a: dict) -> str:
    """Staleness: mean and max age of a message when its receiver polled it."""
    if not a["consumed"]:
        return "-"
    return f"{a['age_us_total'] / a['consumed'] / 1e3:.2f} / {a['age_max_ms']:.1f}"


def scaling_table(console: Console, scaling: dict | None) -> None:
    if not scaling or not scaling.get("rows"):
        return
    table = Table(title=f"scaling ({scaling['task']}, {scaling['threads']} worker threads on "
                  f"{scaling['cores']} cores)", title_justify="left")
    for col in ("solver", "rows", "partitions", "passes", "s / pass", "msgs/s", "MB/s"):
        table.add_column(col, justify="right")
    for r in scaling["rows"]:
        passes = r["passes"]
        table.add_row(r["solver"], f"{r['n']:,} ({r['factor']}x)", str(r["partitions"]),
                      f"{passes:.2f}" if passes else "-", _t(r["seconds_per_pass"]),
                      f"{r['msgs_per_s']:,.0f}" if math.isfinite(r["msgs_per_s"]) else "-",
                      f"{r['bytes_per_s'] / 1e6:.2f}" if math.isfinite(r["bytes_per_s"]) else "-")
    console.print(table)


def crossover_table(console: Console, cross: dict | None) -> None:
    if not cross or not cross.get("rows"):
        return
    table = Table(title=f"crossover: time to {cross['target']:g} on synthetic logistic "
                  f"({cross['task']}), asip on the cluster vs scikit-learn on one core",
                  title_justify="left")
    for col in ("rows", "asip best", "sklearn best", "sklearn / asip"):
        table.add_column(col, justify="right")
    for r in cross["rows"]:
        table.add_row(f"{r['n']:,}", f"{_t(r['asip_seconds'])} {r['asip_solver'] or ''}",
                      f"{_t(r['sklearn_seconds'])} {r['sklearn_solver'] or ''}",
                      f"{r['speedup']:.3g}x" if math.isfinite(r["speedup"]) else "-")
    console.print(table)


def fixed_cost_table(console: Console, fixed: dict | None) -> None:
    if not fixed or not fixed.get("median"):
        return
    m = fixed["median"]
    table = Table(title="fixed cost per fit on a warm cluster (median)", title_justify="left")
    for col in ("launch", "teardown", "launch + teardown", "data", "checks before stage",
                "whole fit (1 gd round)"):
        table.add_column(col, justify="right")
    table.add_row(_t(m["launch"]), _t(m["teardown"]), _t(fixed["launch_plus_teardown"]),
                  _t(m["data"]), _t(m["before_stage"]), _t(m["fit_wall"]))
    console.print(table)


def targets_table(console: Console, targets: list[dict]) -> None:
    if not targets:
        return
    table = Table(title="targets", title_justify="left")
    for col in ("target", "wanted", "measured", "verdict"):
        table.add_column(col)
    for t in targets:
        table.add_row(t["name"], t["target"], t["measured"], _verdict(t))
    console.print(table)


def print_report(console: Console, summary: dict, notes: list[str]) -> None:
    subopt_tables(console, summary.get("subopt", {}))
    ttt_solver_table(console, summary.get("time_to_target", []))
    ttt_table(console, summary.get("time_to_target", []))
    ttt_table(console, summary.get("time_to_target_straggler", []), " under the straggler",
              STRAGGLER_COMPARATORS)
    ratio_table(console, summary.get("paper_ratios", []))
    fault_table(console, summary.get("faults", []))
    channel_table(console, summary.get("channel", []))
    crossover_table(console, summary.get("crossover"))
    fixed_cost_table(console, summary.get("fixed_cost"))
    scaling_table(console, summary.get("scaling"))
    targets_table(console, summary.get("targets", []))
    for note in notes:
        console.print(f"[yellow]note[/]: {note}")
