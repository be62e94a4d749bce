"""What to run: the profiles and the command-line options that override them.

``--quick`` is what CI runs (< 2 minutes on 2 cores: small synthetic data,
sub-second budgets, every solver once); the default profile is the paper's
matrix (every shared dataset + synthetic, every task, budgets 2/5/10 s);
``--full`` adds the 30 s budget, an l1 fault task, and larger scaling and
crossover sweeps. ``--ttt`` is issue 12's time-to-target matrix (the shared
sets a9a, ijcnn1, reuters, skin_nonskin and synthetic x its five tasks, the
solvers it names and the peers, one 10 s budget; ``--straggler`` adds the
paper's straggler runs); ``--ttt --quick`` is its few-minute smoke version.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path

from asip.algorithms import SOLVERS as ASIP_SOLVERS

from . import peers_daskglm
from .data import TASKS, shared_datasets

__all__ = ["ASIP_NAMES", "SOLVER_VARIANTS", "BenchConfig", "build_parser", "config_from_args", "expand_solvers",
           "is_asynchronous"]

#: asip solvers run with other settings under a name of their own: the ASIP paper's baseline,
#: full-batch GD with MLlib's step 0.1/sqrt(t), beside ``gd``'s principled 1/L step
SOLVER_VARIANTS = {"gd-mllib": ("gd", {"schedule": "invsqrt", "eta0": 0.1}),
                   # asip-cocoa with 5 ms slices and a pass ahead before waiting: does the
                   # runtime's cost per 1 ms slice, not SDCA's passes, set its hinge-l2 time to
                   # 1e-6? (in one process a9a needs ~5-6 passes either way, 2026-11-29)
                   "asip-cocoa-5ms": ("asip-cocoa", {"step_time": 0.005, "max_ahead": 1.0})}
#: the variants the ``asip`` group (and ``all``) runs; the others run only when named
GROUP_VARIANTS = ("gd-mllib",)


def is_asynchronous(solver: str) -> bool:
    """asip's asynchronous solvers are the ``asip-*`` ones (no barrier, no driver loop)."""
    return solver.startswith("asip-")


GROUPS = {
    "asip": tuple(ASIP_SOLVERS) + GROUP_VARIANTS,
    "sklearn": ("sklearn",),
    "dask-glm": tuple(f"dask-glm:{s}" for s in peers_daskglm.SOLVERS),
}
#: every asip name a run can have, in table order: the group's, then the variants run by name
ASIP_NAMES = GROUPS["asip"] + tuple(v for v in SOLVER_VARIANTS if v not in GROUP_VARIANTS)


@dataclass
class BenchConfig:
    """Everything one benchmark run does (see `build_parser` for the meaning of each field)."""

    profile: str = "standard"
    datasets: list = field(default_factory=list)
    tasks: list = field(default_factory=lambda: list(TASKS))
    solvers: list = field(default_factory=list)
    budgets: list = field(default_factory=lambda: [2.0, 5.0, 10.0])
    ttt_targets: list = field(default_factory=lambda: [1e-3, 1e-6])  # timed suboptimalities
    # the asip estimators' tol in the matrix and fault runs: 0 stops no solver before its budget,
    # so every trace covers the budget and a time to target is never cut short by a stop test
    tol: float | None = 0.0
    workers: int = 2
    threads_per_worker: int = 1
    # workers that are threads of the bench's process (as the estimators' own cluster is by
    # default) instead of worker processes
    in_process: bool = False
    partitions: int | None = None
    scheduler: str | None = None
    faults: list = field(default_factory=lambda: ["straggler", "kill"])
    fault_tasks: list = field(default_factory=lambda: ["hinge-l2"])
    fault_budget: float = 10.0
    # partitions of the fault runs (None: the matrix's); more than the cluster's threads runs
    # them on a second cluster with enough threads. The paper's straggler holds 1/16 of the rows
    fault_partitions: int | None = None
    scaling_partitions: list = field(default_factory=lambda: [2, 4, 8, 16])
    scaling_factors: list = field(default_factory=lambda: [1, 2, 4, 8, 16])
    scaling_rows: int = 50_000
    scaling_budget: float = 3.0
    scaling_solvers: list = field(default_factory=lambda: ["asip-sgd", "asip-admm"])
    crossover_sizes: list = field(default_factory=lambda: [10_000, 30_000, 100_000, 300_000,
                                                          1_000_000])
    crossover_task: str = "log_loss-l2"
    crossover_budget: float = 10.0
    crossover_solvers: list = field(default_factory=lambda: ["asip-sgd", "asip-admm", "gd"])
    fixed_cost_repeats: int = 5
    reference_timeout: float | None = 900.0  # seconds per f*; None: in-process, no limit
    sklearn_candidates: int | None = None  # None: all candidates; 1: the best-known one
    out: Path = Path("bench-results")
    from_json: Path | None = None
    progress: bool = True
    seed: int = 0
    sections: list = field(default_factory=lambda: ["matrix", "faults", "crossover",
                                                   "fixed-cost", "scaling"])
    resume: bool = False  # keep the runs already in ``out/results.json``; run only the others
    # seconds of a second run of each baseline whose unreached target leaves a time-to-target
    # goal undecided (`asip_bench.decide`); None: no such runs
    decide_budget: float | None = None

    @property
    def max_budget(self) -> float:
        return max(self.budgets)


def _standard() -> BenchConfig:
    # synthetic logistic stays at 20k rows in the matrix: its hinge-l1 reference is an exact LP
    # (about 2 min at 20k rows, over 10 min at 100k); the studies below scale it to millions.
    # The straggler also runs on l2 problems that do not saturate within 10 s (issue 12: there,
    # time to 1e-3 under the straggler is what tells the solvers apart)
    return BenchConfig(datasets=shared_datasets() + ["synthetic-logistic:20000",
                                                     "synthetic-regression:100000"],
                       solvers=expand_solvers(["all"]),
                       fault_tasks=["hinge-l2", "log_loss-l2-1/n", "log_loss-l2@1e-4"])


def _quick() -> BenchConfig:
    return BenchConfig(
        profile="quick", datasets=["synthetic-logistic:4000", "synthetic-regression:4000"],
        tasks=["log_loss-l2", "hinge-l2", "squared-l1"], solvers=expand_solvers(["all"]),
        budgets=[0.5, 1.0], fault_tasks=["log_loss-l2"], fault_budget=1.0,
        scaling_partitions=[2, 4], scaling_factors=[1, 2], scaling_rows=2_000,
        scaling_budget=0.5, scaling_solvers=["asip-sgd"], crossover_sizes=[1_000, 4_000],
        crossover_budget=1.0, crossover_solvers=["asip-sgd", "asip-admm"],
        fixed_cost_repeats=3, sklearn_candidates=1, reference_timeout=None)


def _full() -> BenchConfig:
    return replace(_standard(), profile="full", budgets=[2.0, 5.0, 10.0, 30.0],
                   fault_tasks=["hinge-l2", "log_loss-l2-1/n", "log_loss-l2@1e-4", "log_loss-l1"],
                   scaling_rows=100_000,
                   crossover_sizes=[10_000, 30_000, 100_000, 300_000, 1_000_000, 2_000_000])


#: issue 12's time-to-target matrix: its datasets, tasks and solvers (targets list)
TTT_DATASETS = ["a9a", "ijcnn1", "reuters", "skin_nonskin", "synthetic-logistic:20000"]
TTT_TASKS = ["log_loss-l2@1e-4", "hinge-l2", "log_loss-l2-1/n", "log_loss-l1", "hinge-l1"]
TTT_SOLVERS = [s for s in ("asip-cocoa", "asip-svrg", "asip-sgd", "asip-admm", "gd", "admm",
                           "saga") if s in ASIP_SOLVERS] + ["sklearn", "dask-glm"]
#: the straggler target's problems: l2 tasks that do not saturate within 10 s
TTT_STRAGGLER_TASKS = ["log_loss-l2-1/n", "log_loss-l2@1e-4"]
#: ... at the paper's share: 16 partitions, the straggler holding 1/16 of the rows (at 2, half
#: the rows wait 2 s and no solver can reach 1e-3 before: `benchmarks/straggler_bound.py`)
TTT_STRAGGLER_PARTITIONS = 16


def _ttt() -> BenchConfig:
    return BenchConfig(profile="ttt", datasets=list(TTT_DATASETS), tasks=list(TTT_TASKS),
                       solvers=expand_solvers(TTT_SOLVERS), budgets=[10.0],
                       sections=["matrix"], faults=["straggler"],
                       fault_tasks=list(TTT_STRAGGLER_TASKS),
                       fault_partitions=TTT_STRAGGLER_PARTITIONS)


def _ttt_quick() -> BenchConfig:
    # a9a subsampled: the shared data path is exercised when the files are there (skipped with
    # a note when not); one scikit-learn candidate and two dask-glm solvers keep it to minutes
    return replace(_ttt(), profile="ttt-quick", fault_partitions=None,
                   datasets=["synthetic-logistic:4000", "a9a:4000"], budgets=[1.0],
                   fault_budget=1.0, sklearn_candidates=1, reference_timeout=None,
                   solvers=expand_solvers(TTT_SOLVERS[:-1] + ["dask-glm:lbfgs",
                                                              "dask-glm:admm"]))


PROFILES = {"quick": _quick, "standard": _standard, "full": _full, "ttt": _ttt,
            "ttt-quick": _ttt_quick}


def expand_solvers(names: list[str]) -> list[str]:
    """Solver names and groups (``asip``, ``sklearn``, ``dask-glm``, ``all``) to solver names."""
    out: list[str] = []
    for name in names:
        if name == "all":
            group = GROUPS["asip"] + GROUPS["sklearn"] + GROUPS["dask-glm"]
        elif name in GROUPS:
            group = GROUPS[name]
        elif (name in GROUPS["asip"] or name in SOLVER_VARIANTS or name in GROUPS["dask-glm"]
              or name.startswith("sklearn")):
            group = (name,)
        else:
            valid = sorted(set(GROUPS["asip"]) | set(SOLVER_VARIANTS) | set(GROUPS["dask-glm"])
                           | set(GROUPS) | {"all"})
            raise ValueError(f"unknown solver {name!r}; valid names are {valid}")
        out.extend(s for s in group if s not in out)
    return out


def _csv(kind):
    def parse(text: str) -> list:
        return [kind(x) for x in text.replace(",", " ").split() if x]
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asip bench", description="Benchmark asip's solvers against the published ASIP "
        "results, scikit-learn (one core) and dask-glm (same cluster).")
    prof = p.add_mutually_exclusive_group()
    prof.add_argument("--quick", action="store_const", const="quick", dest="profile",
                      help="the CI profile: < 2 minutes, tiny synthetic data")
    prof.add_argument("--full", action="store_const", const="full", dest="profile",
                      help="add the 30 s budget and larger scaling/crossover sweeps")
    p.add_argument("--ttt", action="store_true",
                   help="issue 12's time-to-target matrix (a9a, ijcnn1, reuters, skin_nonskin, "
                   "synthetic x log_loss-l2@1e-4, hinge-l2, log_loss-l2-1/n, log_loss-l1, "
                   "hinge-l1; asip-cocoa, asip-sgd, asip-admm, gd, admm, saga, scikit-learn, "
                   "dask-glm; 10 s); with --quick, its smoke version")
    p.add_argument("--datasets", type=_csv(str), help="name[:rows], comma separated "
                   f"(shared: {', '.join(shared_datasets())}; synthetic-logistic:N, "
                   "synthetic-regression:N)")
    p.add_argument("--tasks", type=_csv(str), help=f"task[@alpha], from {', '.join(TASKS)}")
    p.add_argument("--solvers", type=_csv(str), help="solver names or groups: asip, sklearn, "
                   "dask-glm, all, or single names (asip-sgd, dask-glm:lbfgs, sklearn:lbfgs)")
    p.add_argument("--add-solvers", type=_csv(str), metavar="SOLVERS",
                   help="solver names or groups to run besides the profile's (or --solvers')")
    p.add_argument("--budgets", type=_csv(float), help="seconds, e.g. 2,5,10")
    p.add_argument("--budget", type=float, help="one budget in seconds for the matrix and the "
                   "fault runs (sets --budgets and --fault-budget)")
    p.add_argument("--decide-budget", type=float, metavar="S",
                   help="after the matrix, re-run for S seconds each baseline (gd, admm, "
                   "dask-glm) that reached no target where asip's best asynchronous solver did "
                   "and whose missing time leaves a time-to-target goal undecided; the tables "
                   "and goals read its time, labelled '(S s re-run)'")
    p.add_argument("--ttt-targets", type=_csv(float), help="relative suboptimalities to time "
                   "each solver to (default 1e-3,1e-6)")
    p.add_argument("--tol", type=float, help="tol of asip's estimators in the matrix and fault "
                   "runs (default 0: every solver runs its whole budget; -1: the estimator's "
                   "default, its own stopping test)")
    p.add_argument("--workers", type=int, help="worker processes of the local cluster")
    p.add_argument("--threads-per-worker", type=int)
    p.add_argument("--in-process", action="store_true", default=None,
                   help="workers that are threads of this process, as the estimators' own "
                   "cluster is by default (the kill fault needs worker processes)")
    p.add_argument("--partitions", type=int, help="data partitions (default: worker threads)")
    p.add_argument("--scheduler", help="use this cluster (tcp://host:8786) instead of a local one")
    p.add_argument("--faults", type=_csv(str), help="straggler,kill or none")
    p.add_argument("--straggler", action="store_true",
                   help="also run the paper's straggler (partition 0 sleeps 2 s, re-armed 1 s "
                   "after waking) on the fault tasks: the faults section with --faults straggler")
    p.add_argument("--fault-tasks", type=_csv(str))
    p.add_argument("--fault-budget", type=float)
    p.add_argument("--fault-partitions", type=int,
                   help="data partitions of the fault runs (default: the matrix's; --ttt: 16, "
                   "the paper's share, the straggler holding 1/16 of the rows); more than the "
                   "cluster's threads starts a second cluster for them")
    p.add_argument("--sections", type=_csv(str),
                   help="matrix,faults,crossover,fixed-cost,scaling (default: all)")
    p.add_argument("--scaling-partitions", type=_csv(int))
    p.add_argument("--scaling-factors", type=_csv(int))
    p.add_argument("--scaling-rows", type=int)
    p.add_argument("--crossover-sizes", type=_csv(int))
    p.add_argument("--crossover-task")
    p.add_argument("--reference-timeout", type=float,
                   help="seconds allowed per reference optimum f* (cached once computed)")
    p.add_argument("--out", type=Path, help="output directory (JSON + PNG)")
    p.add_argument("--from-json", type=Path, metavar="RESULTS_JSON",
                   help="only print the tables and redraw the plots of an earlier run")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in OUT/results.json (an interrupted or earlier "
                   "run of the same matrix) and run only the missing ones")
    p.add_argument("--no-progress", action="store_false", dest="progress", default=None,
                   help="no live display")
    p.add_argument("--seed", type=int)
    return p


def config_from_args(argv: list[str] | None = None) -> BenchConfig:
    args = build_parser().parse_args(argv)
    profile = args.profile or "standard"
    if args.ttt:
        if profile == "full":
            raise SystemExit("asip bench: --ttt takes --quick, not --full")
        profile = "ttt-quick" if profile == "quick" else "ttt"
    cfg = PROFILES[profile]()
    if args.budget is not None:
        cfg.budgets, cfg.fault_budget = [args.budget], args.budget
    for key in ("datasets", "tasks", "budgets", "ttt_targets", "tol", "workers",
                "threads_per_worker", "in_process", "partitions", "scheduler", "fault_tasks", "fault_budget",
                "fault_partitions",
                "sections", "scaling_partitions", "scaling_factors", "scaling_rows",
                "crossover_sizes", "crossover_task", "out", "progress", "seed", "from_json",
                "reference_timeout", "resume", "decide_budget"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    if args.solvers is not None:
        cfg.solvers = expand_solvers(args.solvers)
    if args.add_solvers:
        cfg.solvers = expand_solvers(cfg.solvers + args.add_solvers)
    if args.straggler:
        cfg.faults = ["straggler"]
        if "faults" not in cfg.sections:
            cfg.sections = cfg.sections + ["faults"]
    if args.faults is not None:
        cfg.faults = [f for f in args.faults if f != "none"]
        bad = set(cfg.faults) - {"straggler", "kill"}
        if bad:
            raise SystemExit(f"asip bench: unknown faults {sorted(bad)}; use straggler, kill, none")
    if (cfg.in_process and "kill" in cfg.faults and "faults" in cfg.sections
            and not cfg.scheduler):
        raise SystemExit("asip bench: --in-process cannot run the kill fault (it kills a worker "
                         "process); add --faults straggler or --sections matrix")
    bad = set(cfg.sections) - {"matrix", "faults", "crossover", "fixed-cost", "scaling"}
    if bad:
        raise SystemExit(f"asip bench: unknown sections {sorted(bad)}")
    if not cfg.budgets or min(cfg.budgets) <= 0:
        raise SystemExit("asip bench: budgets must be positive seconds")
    cfg.budgets = sorted(cfg.budgets)
    if cfg.decide_budget is not None and not cfg.decide_budget > cfg.max_budget:
        raise SystemExit("asip bench: --decide-budget must be longer than the matrix's budget "
                         f"({cfg.max_budget:g} s)")
    if cfg.tol is not None and cfg.tol < 0:
        cfg.tol = None  # the estimators' default
    if not cfg.ttt_targets or not all(0 < t < 1 for t in cfg.ttt_targets):
        raise SystemExit("asip bench: --ttt-targets must be relative suboptimalities in (0, 1)")
    cfg.ttt_targets = sorted(cfg.ttt_targets, reverse=True)
    return cfg
