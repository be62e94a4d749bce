"""One ``asip bench`` invocation, start to end: clusters, sections, JSON, plots, tables."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
import time

from rich.console import Console

from .analysis import fmt_target, summarize, targets
from .config import BenchConfig, config_from_args
from .experiments import run_crossover, run_fixed_cost, run_scaling
from .decide import run_decided
from .matrix import Session, run_matrix, warm_up
from .output import machine, write_json, write_markdown
from .plots import write_plots
from .progress import Progress
from .report import print_report

__all__ = ["run_bench"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def cluster(cfg: BenchConfig, threads_per_worker: int | None = None):
    """A client on ``cfg.scheduler``, or on a fresh local cluster (closed afterwards): worker
    processes, or with ``cfg.in_process`` workers that are threads of this process."""
    from distributed import Client, LocalCluster

    from asip import _driver_gc
    from asip._config import flag

    if cfg.scheduler:
        with Client(cfg.scheduler) as client:
            yield client
        return
    # a nanny's environment: worker processes only
    env = {} if cfg.in_process else {"env": {"PYTHONWARNINGS": "ignore"}}
    with LocalCluster(n_workers=cfg.workers,
                      threads_per_worker=threads_per_worker or cfg.threads_per_worker,
                      processes=not cfg.in_process, dashboard_address=":0",
                      # injected kills log "Compute Failed" errors; the runs record failures
                      silence_logs=logging.CRITICAL, **env) as lc, \
            Client(lc) as client:
        client.wait_for_workers(cfg.workers, timeout=60)
        # the scheduler lives in this process, as `asip.connect()`'s does: the same gc policy
        held = flag("driver.gc-freeze") and _driver_gc.freeze()
        try:
            yield client
        finally:
            if held:
                _driver_gc.release()


def _record(run, ttt_targets) -> dict:
    """A run for the JSON, with its time to each target (null: not reached)."""
    return {**run.as_dict(), "time_to": {fmt_target(t): run.time_to(t) for t in ttt_targets}}


def _payload(cfg, session: Session | None, meta: dict, summary: dict | None,
             complete: bool) -> dict:
    return {"complete": complete, "machine": meta, "config": dataclasses.asdict(cfg),
            "references": session.references if session else {},
            "runs": [_record(r, cfg.ttt_targets) for r in session.runs] if session else [],
            "summary": summary or (dict(session.sections) if session else {}),
            "notes": session.notes if session else []}


def _finish(console, cfg, runs, sections, notes) -> dict:
    """Summary, plots, JSON and tables from finished runs."""
    summary = summarize(runs, cfg.budgets, cfg.fault_budget, cfg.ttt_targets)
    summary.update(sections)
    summary["targets"] = targets(summary)
    summary["plots"] = [str(p) for p in write_plots(runs, summary, cfg.budgets,
                                                    cfg.fault_budget, cfg.out)]
    print_report(console, summary, notes)
    return summary


def load_runs(path) -> tuple[dict, list]:
    """``(payload, runs)`` of a ``results.json``: the runs as `Run` objects again."""
    import json

    from .records import Run

    payload = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(Run)}
    runs = [Run(**{k: v for k, v in r.items() if k in names}) for r in payload["runs"]]
    return payload, runs


def resumable(path) -> tuple[dict, dict]:
    """``(runs by run_key, references)`` worth keeping from an earlier ``results.json``.

    Runs that ended in an error are dropped (run again); so are references that failed.
    """
    from .matrix import run_key

    if not path.exists():
        return {}, {}
    payload, runs = load_runs(path)
    keep = {run_key(r): r for r in runs if r.status != "error"}
    refs = {k: v for k, v in payload.get("references", {}).items() if v}
    return keep, refs


def replot(console, cfg: BenchConfig, path) -> int:
    """Tables and plots again from a ``results.json`` (``--from-json``); runs nothing."""
    payload, runs = load_runs(path)
    refs = payload.get("references", {})
    for r in runs:  # JSON written before runs carried it: take it from the references
        if not r.f_star_precision:
            r.f_star_precision = float(refs.get(f"{r.dataset} / {r.task}", {}).get(
                "relative_precision", 0.0))
    saved = payload.get("config", {})
    cfg.budgets = saved.get("budgets", cfg.budgets)
    cfg.fault_budget = saved.get("fault_budget", cfg.fault_budget)
    cfg.ttt_targets = saved.get("ttt_targets", cfg.ttt_targets)
    sections = {k: v for k, v in payload.get("summary", {}).items()
                if k in ("crossover", "fixed_cost", "scaling")}
    summary = _finish(console, cfg, runs, sections, payload.get("notes", []))
    write_markdown(cfg.out / "headline.md", summary, payload.get("machine", {}),
                   saved.get("profile", cfg.profile))
    return 0


@contextlib.contextmanager
def _quiet_logs(names=("distributed", "asip")):
    """Their warnings would break the live display; restored afterwards."""
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


# Time to a target is read off each solver's trace: asip's runs report every 20 ms here
# (the library default is 100 ms), so the reading is not rounded up by a coarse trace.
TRACE_INTERVAL = "20ms"
#: the trace as `asip bench --ttt` takes it, for scripts that fit without its live callback:
#: the model in every report (by default a report carries it only while it fits
#: ``asip.trace.model-bytes``, 64 KiB: reuters' 8,315 features left one point, the final
#: model, and every target read as reached at the end of the budget) and the 20 ms interval
TRACE_CONFIG = {"asip.trace.model-bytes": 2**62, "asip.trace.report-interval": TRACE_INTERVAL}


def run_bench(argv: list[str] | None = None) -> int:
    import dask

    cfg = config_from_args(argv)
    command = " ".join(["asip bench", *(sys.argv[1:] if argv is None else argv)])
    with _quiet_logs(), dask.config.set({"asip.trace.report-interval": TRACE_INTERVAL}):
        return _run(cfg, command)


def _run(cfg: BenchConfig, command: str = "asip bench") -> int:
    console = Console()
    if not console.is_terminal:  # logs and CI: wide enough for the tables
        console = Console(width=160)
    if cfg.from_json is not None:
        return replot(console, cfg, cfg.from_json)
    cfg.out.mkdir(parents=True, exist_ok=True)
    json_path = cfg.out / "results.json"
    meta = machine()
    meta["command"] = command
    meta["workers_kind"] = "in-process" if cfg.in_process else "processes"
    t0 = time.monotonic()
    console.print(f"[bold]asip bench[/] ({cfg.profile}): {len(cfg.datasets)} datasets, "
                  f"{len(cfg.tasks)} tasks, {len(cfg.solvers)} solvers, budgets "
                  f"{', '.join(f'{b:g}' for b in cfg.budgets)} s, {cfg.workers} workers x "
                  f"{cfg.threads_per_worker} threads"
                  f"{' in this process' if cfg.in_process else ''}; output in {cfg.out}/")
    state: dict = {"session": None, "previous": ({}, {})}
    if cfg.resume:
        state["previous"] = resumable(json_path)
        console.print(f"--resume: keeping {len(state['previous'][0])} runs of {json_path}")

    def checkpoint():
        session = state["session"]
        write_json(json_path, _payload(cfg, session, meta, None, False))
        if session is not None and session.runs:  # the tables so far, readable while it runs
            try:
                partial = summarize(session.runs, cfg.budgets, cfg.fault_budget,
                                    cfg.ttt_targets)
                partial["targets"] = targets(partial)
                write_markdown(cfg.out / "headline.md", partial, {**meta, "partial": True},
                               cfg.profile)
            except Exception as exc:  # a table must not end the benchmark
                logger.warning("headline.md not written: %s", exc)

    try:
        session = _sections(cfg, console, state, checkpoint)
    except KeyboardInterrupt:
        checkpoint()
        console.print(f"[red]interrupted[/]: what was measured so far is in {json_path}")
        return 130
    meta["loadavg_end"] = machine()["loadavg"]
    meta["seconds"] = time.monotonic() - t0
    summary = _finish(console, cfg, session.runs, session.sections, session.notes)
    write_json(json_path, _payload(cfg, session, meta, summary, True))
    write_markdown(cfg.out / "headline.md", summary, meta, cfg.profile)
    console.print(f"wrote {json_path}, headline.md and {len(summary['plots'])} plots in "
                  f"{meta['seconds']:.0f} s (load average {meta['loadavg']} at start, "
                  f"{meta['loadavg_end']} at end: timings are only as quiet as the machine)")
    return 0


def _faults_apart(cfg: BenchConfig, n_partitions: int) -> bool:
    """Whether the fault runs take another partition count than the matrix (`fault_partitions`):
    then they run on a cluster of their own (with a thread for every partition)."""
    return ("faults" in cfg.sections and bool(cfg.faults) and cfg.fault_partitions is not None
            and cfg.fault_partitions != n_partitions and not cfg.scheduler)


def _sections(cfg: BenchConfig, console, state: dict, checkpoint) -> Session:
    """Every requested section, each on the cluster it needs."""
    with Progress(console, cfg.progress) as progress:
        with cluster(cfg) as client:
            session = state["session"] = Session(cfg, client, progress,
                                                 on_section_done=checkpoint)
            session.previous, references = state["previous"]
            session.references.update(references)
            apart = _faults_apart(cfg, session.n_partitions)
            sparse = any(not d.startswith("synthetic") for d in cfg.datasets)
            here = [s for s in cfg.sections if not (apart and s == "faults")]
            if {"matrix", "faults"} & set(here):
                warm_up(session, sparse=sparse)
                run_matrix(session, here)
            if cfg.decide_budget and "matrix" in here:
                run_decided(session)
            if "crossover" in cfg.sections:
                session.sections["crossover"] = run_crossover(session)
            if "fixed-cost" in cfg.sections:
                session.sections["fixed_cost"] = run_fixed_cost(session)
            threads = math.ceil(max(cfg.scaling_partitions) / cfg.workers)
            scaled = "scaling" in cfg.sections and threads <= cfg.threads_per_worker
            if scaled:  # the cluster already holds every partition: no second cluster to start
                session.sections["scaling"] = run_scaling(session)
        if apart:  # the fault runs at their own partition count, on a cluster that holds them
            parts = cfg.fault_partitions
            with cluster(cfg, threads_per_worker=max(cfg.threads_per_worker,
                                                     math.ceil(parts / cfg.workers))) as client:
                faults = Session(dataclasses.replace(cfg, partitions=parts), client, progress,
                                 on_section_done=checkpoint)
                faults.runs, faults.notes, faults.references, faults.previous = (
                    session.runs, session.notes, session.references, session.previous)
                warm_up(faults, sparse=sparse)
                run_matrix(faults, ["faults"])
        if "scaling" in cfg.sections and not scaled:
            with cluster(cfg, threads_per_worker=threads) as client:
                scaling = Session(cfg, client, progress, on_section_done=checkpoint)
                scaling.runs, scaling.notes = session.runs, session.notes
                session.sections["scaling"] = run_scaling(scaling)
    return session
