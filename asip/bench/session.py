"""One ``asip bench`` invocation, start to end: clusters, sections, JSON, plots, tables."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time

from rich.console import Console

from .analysis import summarize, targets
from .config import BenchConfig, config_from_args
from .experiments import run_crossover, run_fixed_cost, run_scaling
from .matrix import Session, run_matrix, warm_up
from .output import machine, write_json
from .plots import write_plots
from .progress import Progress
from .report import print_report

__all__ = ["run_bench"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def cluster(cfg: BenchConfig, threads_per_worker: int | None = None):
    """A client on ``cfg.scheduler``, or on a fresh local process cluster (closed afterwards)."""
    from distributed import Client, LocalCluster

    if cfg.scheduler:
        with Client(cfg.scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=cfg.workers,
                      threads_per_worker=threads_per_worker or cfg.threads_per_worker,
                      processes=True, dashboard_address=None, silence_logs=logging.ERROR) as lc, \
            Client(lc) as client:
        client.wait_for_workers(cfg.workers, timeout=60)
        yield client


def _payload(cfg, session: Session | None, meta: dict, summary: dict | None,
             complete: bool) -> dict:
    return {"complete": complete, "machine": meta, "config": dataclasses.asdict(cfg),
            "references": session.references if session else {},
            "runs": [r.as_dict() for r in session.runs] if session else [],
            "summary": summary or {}, "notes": session.notes if session else []}


def run_bench(argv: list[str] | None = None) -> int:
    cfg = config_from_args(argv)
    for name in ("distributed", "asip"):  # their warnings would break the live display
        logging.getLogger(name).setLevel(logging.ERROR)
    console = Console()
    cfg.out.mkdir(parents=True, exist_ok=True)
    json_path = cfg.out / "results.json"
    meta = machine()
    t0 = time.monotonic()
    console.print(f"[bold]asip bench[/] ({cfg.profile}): {len(cfg.datasets)} datasets, "
                  f"{len(cfg.tasks)} tasks, {len(cfg.solvers)} solvers, budgets "
                  f"{', '.join(f'{b:g}' for b in cfg.budgets)} s, {cfg.workers} workers x "
                  f"{cfg.threads_per_worker} threads; output in {cfg.out}/")
    session = None
    with Progress(console, cfg.progress) as progress:
        def checkpoint():
            write_json(json_path, _payload(cfg, session, meta, None, False))

        with cluster(cfg) as client:
            session = Session(cfg, client, progress, on_section_done=checkpoint)
            if {"matrix", "faults"} & set(cfg.sections):
                warm_up(session)
                run_matrix(session, cfg.sections)
            if "crossover" in cfg.sections:
                session.sections["crossover"] = run_crossover(session)
            if "fixed-cost" in cfg.sections:
                session.sections["fixed_cost"] = run_fixed_cost(session)
        if "scaling" in cfg.sections:
            threads = math.ceil(max(cfg.scaling_partitions) / cfg.workers)
            with cluster(cfg, threads_per_worker=max(threads, cfg.threads_per_worker)) as client:
                scaling = Session(cfg, client, progress, on_section_done=checkpoint)
                scaling.runs, scaling.notes = session.runs, session.notes
                session.sections["scaling"] = run_scaling(scaling)
    summary = summarize(session.runs, cfg.budgets, cfg.fault_budget)
    summary.update(session.sections)
    summary["targets"] = targets(summary)
    meta["loadavg_end"] = machine()["loadavg"]
    meta["seconds"] = time.monotonic() - t0
    summary["plots"] = [str(p) for p in write_plots(session.runs, summary, cfg.budgets,
                                                    cfg.fault_budget, cfg.out)]
    write_json(json_path, _payload(cfg, session, meta, summary, True))
    print_report(console, summary, session.notes)
    console.print(f"wrote {json_path} and {len(summary['plots'])} plots in "
                  f"{meta['seconds']:.0f} s (load average {meta['loadavg']} at start, "
                  f"{meta['loadavg_end']} at end: timings are only as quiet as the machine)")
    return 0
