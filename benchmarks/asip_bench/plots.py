"""PNG plots (matplotlib, Agg): relative suboptimality vs wall time, one panel per dataset x task.

asip's solvers are solid lines, dask-glm's dashed, scikit-learn's dotted with
markers (each marker one independent fit; the line is the best so far); in
the fault plots the line style is the fault (none solid, straggler dashed,
kill dotted). A solver has the same color in every figure.
Values at or below zero (within f*'s precision) are drawn at `REL_FLOOR`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

from .records import REL_FLOOR, Run

__all__ = ["write_plots"]

_STYLE = {"asip": "-", "dask-glm": "--", "sklearn": ":"}
_FAULT_STYLE = {"matrix": "-", "straggler": "--", "kill": ":"}
_COLORS: dict = {}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _curve(run: Run) -> tuple[list[float], list[float]]:
    pts = sorted(run.rel_trace())
    xs, ys, best = [], [], math.inf
    for t, r in pts:
        if not math.isfinite(r):
            continue
        if run.independent:
            best = min(best, r)
            r = best
        xs.append(t)
        ys.append(max(r, REL_FLOOR))
    return xs, ys


def _color(label: str):
    """The same color for the same label in every panel and figure."""
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab20").colors
    if label not in _COLORS:
        _COLORS[label] = colors[len(_COLORS) % len(colors)]
    return _COLORS[label]


def _family_style(run: Run) -> tuple[str, str, str]:
    """(label, color key, line style): color by solver, line style by family."""
    return run.solver, run.solver, _STYLE.get(run.family, "-")


def _fault_style(run: Run) -> tuple[str, str, str]:
    """Color by solver, line style by fault."""
    kind = "no fault" if run.kind == "matrix" else run.kind
    return f"{run.solver} [{kind}]", run.solver, _FAULT_STYLE.get(run.kind, "-")


def _panel(ax, runs: list[Run], budgets: list[float], title: str, style=_family_style) -> None:
    for run in sorted(runs, key=lambda r: (r.family, r.solver, r.kind)):
        xs, ys = _curve(run)
        if not xs:
            continue
        label, key, ls = style(run)
        ax.plot(xs, ys, ls, color=_color(key), marker="." if run.independent else None, lw=1.4,
                label=label)
    for b in budgets:
        ax.axvline(b, color="0.85", lw=0.8, zorder=0)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("seconds from the call")
    ax.set_ylabel("(f - f*) / |f*|")
    ax.grid(True, which="major", alpha=0.3)


def _grid(n: int):
    import matplotlib.pyplot as plt

    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols + 2.2, 3.8 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _by_dataset(runs: list[Run]) -> dict:
    by_ds: dict = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by_ds[r.dataset][r.task].append(r)
    return by_ds


def _figures(groups: dict, budgets: list[float], out: Path, prefix: str, style=_family_style,
             xmax: float | None = None) -> list[Path]:
    paths = []
    for ds, tasks in groups.items():
        fig, axes = _grid(len(tasks))
        for ax, (task, rs) in zip(axes, sorted(tasks.items())):
            _panel(ax, rs, budgets, f"{ds} / {task}", style)
            if xmax is not None:
                ax.set_xlim(0, xmax)
        handles: dict = {}
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), fontsize=7, loc="outside right upper")
        paths.append(_save(fig, out / f"{prefix}-{_safe(ds)}.png"))
    return paths


def plot_matrix(runs: list[Run], budgets: list[float], out: Path) -> list[Path]:
    """One PNG per dataset, one panel per task: every solver of the matrix."""
    return _figures(_by_dataset([r for r in runs if r.kind == "matrix" and r.ok]), budgets, out,
                    "subopt")


def plot_faults(runs: list[Run], budget: float, out: Path) -> list[Path]:
    """Fault runs next to the same solvers' fault-free runs, up to the fault budget."""
    faulty = [r for r in runs if r.kind in ("straggler", "kill") and r.ok]
    keys = {(r.dataset, r.task, r.solver) for r in faulty}
    clean = [r for r in runs if r.kind == "matrix" and r.ok and (r.dataset, r.task, r.solver)
             in keys]
    return _figures(_by_dataset(faulty + clean), [budget], out, "faults",
                    style=_fault_style, xmax=budget * 1.05)


def plot_scaling(scaling: dict | None, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    if not scaling or not scaling.get("rows"):
        return []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    groups: dict = defaultdict(list)
    for r in scaling["rows"]:
        groups[(r["solver"], r["partitions"])].append(r)
    for (solver, parts), rows in sorted(groups.items()):
        rows.sort(key=lambda r: r["n"])
        a1.plot([r["n"] for r in rows], [r["seconds_per_pass"] for r in rows], marker="o",
                label=f"{solver}, {parts} partitions")
        a2.plot([r["n"] for r in rows], [r["msgs_per_s"] for r in rows], marker="o",
                label=f"{solver}, {parts} partitions")
    for ax, ylabel in ((a1, "seconds per data pass"), (a2, "messages / s")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    a1.legend(fontsize=7)
    return [_save(fig, out / "scaling.png")]


def plot_crossover(cross: dict | None, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    if not cross or not cross.get("rows"):
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = cross["rows"]
    for key, label in (("asip_seconds", "asip best (cluster)"),
                       ("sklearn_seconds", "scikit-learn best (1 core)")):
        pts = [(r["n"], r[key]) for r in rows if math.isfinite(r[key])]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows (x 100 features)")
    ax.set_ylabel(f"seconds to {cross['target']:g}")
    ax.set_title(f"crossover, {cross['task']}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return [_save(fig, out / "crossover.png")]


def write_plots(runs: list[Run], summary: dict, budgets: list[float], fault_budget: float,
                out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    paths = plot_matrix(runs, budgets, out)
    paths += plot_faults(runs, fault_budget, out)
    paths += plot_scaling(summary.get("scaling"), out)
    paths += plot_crossover(summary.get("crossover"), out)
    return paths
