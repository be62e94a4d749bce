"""``results.json`` (machine, config, references, every run and trace, summary), headline.md.

Written after every dataset and study (``complete: false``) and once more at
the end, atomically, so an interrupted benchmark keeps what it measured.
Non-finite floats become ``null`` (strict JSON); dict keys become strings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from .analysis import COMPARATORS, STRAGGLER_COMPARATORS, describe, fmt_target, rerun_label

__all__ = ["machine", "write_json", "write_markdown"]


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _clean(obj.as_dict() if hasattr(obj, "as_dict") else dataclasses.asdict(obj))
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def machine() -> dict:
    """Where the numbers come from (load averages say how quiet the machine was)."""
    import dask
    import distributed
    import sklearn

    try:
        import dask_glm

        dglm = getattr(dask_glm, "__version__", "installed")
    except ImportError:
        dglm = None
    import asip

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "versions": {"asip": asip.__version__, "dask": dask.__version__,
                         "distributed": distributed.__version__, "numpy": np.__version__,
                         "scikit-learn": sklearn.__version__, "dask-glm": dglm},
            "loadavg": load, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(_clean(payload), fh, indent=1, allow_nan=False)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def _fmt(v, spec: str = ".2g") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def write_markdown(path: Path, summary: dict, meta: dict, profile: str) -> Path:
    """``headline.md``: the headline tables in Markdown, with the machine, for the README."""
    v = meta.get("versions", {})
    command = meta.get("command") or f"asip bench{'' if profile == 'standard' else ' --' + profile}"
    lines = [f"Measured with `{command}` on "
             f"{meta.get('platform')} ({meta.get('cpu_count')} cores; load average "
             f"{_fmt((meta.get('loadavg') or [None])[0], '.1f')} at start), {meta.get('time')}; "
             f"asip {v.get('asip')}, dask {v.get('dask')}, scikit-learn {v.get('scikit-learn')}, "
             f"dask-glm {v.get('dask-glm')}.", "",
             "| target | wanted | measured | verdict |", "|---|---|---|---|"]
    for t in summary.get("targets", []):
        verdict = (t["shortfall"] or "-") if t["met"] is None else (
            "met" if t["met"] else f"missed ({t['shortfall'] or '?'})")
        lines.append(f"| {t['name']} | {t['target']} | {t['measured']} | {verdict} |")
    lines += _ratio_rows(summary.get("time_to_target", []))
    if summary.get("time_to_target_straggler"):
        lines += ["", "Under the paper's straggler (partition 0 sleeps 2 s, re-armed 1 s after "
                  "waking):"] + _ratio_rows(summary["time_to_target_straggler"],
                                            STRAGGLER_COMPARATORS)
    lines += _solver_rows(summary.get("time_to_target", []))
    if meta.get("partial"):
        lines += ["", "(partial: the benchmark is still running or was interrupted; "
                  "`--resume` continues it)"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ratio_rows(rows: list[dict], columns: tuple = COMPARATORS) -> list[str]:
    """asip's best asynchronous solver against each comparator (``columns``), per dataset /
    task / target."""
    heads = [_HEADS.get(k, k) for k in columns]
    lines = ["", "| dataset / task | target | asip async best | " + " | ".join(heads) + " |",
             "|---|---|---|" + "---|" * len(heads)]
    for row in rows:
        for target, c in row["targets"].items():
            if not c["certified"]:
                lines.append(f"| {row['dataset']} / {row['task']} | {fmt_target(target)} | f* "
                             f"certified only to {row['f_star_precision']:.1e} |"
                             + " |" * len(heads))
                continue
            cells = [describe(c[k], c["ratios"][k], name=k.endswith("best")) for k in columns]
            lines.append(f"| {row['dataset']} / {row['task']} | {fmt_target(target)} | "
                         f"{describe(c['async'])} | " + " | ".join(cells) + " |")
    return lines


_HEADS = {"sklearn best": "sklearn best (1 core)"}


def _solver_rows(rows: list[dict]) -> list[str]:
    """Every asip solver's own time to each target ("> t": not reached within t)."""
    names = sorted({s for row in rows for s, v in row["solvers"].items()
                    if v["family"] == "asip"})
    if not names:
        return []
    lines = ["", "Time to target per asip solver (from the `fit` call; `> t`: not reached "
             "within t):", "", "| dataset / task | target | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for row in rows:
        for target in row["targets"]:
            cells = []
            for name in names:
                v = row["solvers"].get(name)
                t = None if v is None else v["times"].get(target)
                cells.append("-" if v is None else (f"{t:.3g} s" if t is not None
                                                    else f"> {v['horizon']:.3g} s")
                             + rerun_label(v.get("rerun")))
            lines.append(f"| {row['dataset']} / {row['task']} | {fmt_target(target)} | "
                         + " | ".join(cells) + " |")
    return lines
