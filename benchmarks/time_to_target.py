"""Issue 12's time-to-target matrix in one command: ``asip bench --ttt`` with its options.

Datasets a9a, ijcnn1, reuters, skin_nonskin (the shared LIBSVM files; a missing
one is skipped with a note) and synthetic logistic (20,000 x 100) x the tasks
log_loss-l2 (alpha 1e-4), hinge-l2 (0.1), log_loss-l2 (alpha 1/n), log_loss-l1
and hinge-l1 (1e-5), for asip-cocoa, asip-svrg, asip-sgd, asip-admm, gd, admm, saga (plus
any solver named by ``--solvers``), scikit-learn's candidates on one core and
dask-glm's solvers on the same cluster. It prints, and writes to ``--out`` as
it goes (``results.json`` and ``headline.md`` after every run), each solver's
time to 1e-3 and 1e-6 and the issue's ratios: asip's best asynchronous solver
against ``gd``, ``admm`` (every pair and the geometric mean) and dask-glm's
best. A solver that errors is recorded with its error, not fatal; ``--resume``
keeps the runs already in ``--out`` and runs only the rest. ``--straggler``
adds the paper's straggler (partition 0 sleeps 2 s, re-armed 1 s after
waking) on log_loss-l2 with alpha 1/n and 1e-4, at the paper's share (16
partitions on a cluster of their own, ``--fault-partitions``), timed against
``gd``, ``admm``, ``lbfgs`` and the fastest of them.

Run:  python benchmarks/time_to_target.py --out bench-ttt [--straggler] [--resume]
      python benchmarks/time_to_target.py --quick --out bench-ttt-quick   # a few minutes

Any other ``asip bench`` option is passed through (``--datasets``, ``--tasks``,
``--workers``, ``--ttt-targets``, ``--no-progress``...; see ``asip bench --help``).
"""

from __future__ import annotations

import argparse
import sys


#: the names this script took before it ran through ``asip bench``
SHORT_NAMES = {"synthetic": "synthetic-logistic:20000", "log_loss-l2@1/n": "log_loss-l2-1/n",
               "hinge-l2@0.1": "hinge-l2"}


def build_argv(argv: list[str] | None = None) -> list[str]:
    """The ``asip bench`` arguments this command stands for."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=True)
    ap.add_argument("--quick", action="store_true", help="the smoke version (1 s budgets, "
                    "4,000 rows of synthetic data and of a9a)")
    ap.add_argument("--budget", type=float, help="seconds per fit (default 10; quick 1)")
    ap.add_argument("--solvers", nargs="+", default=[],
                    help="more solvers to run besides the default set (asip names, sklearn:NAME, "
                    "dask-glm:NAME)")
    ap.add_argument("--straggler", action="store_true", help="add the straggler runs")
    ap.add_argument("--base", help="an asip solver to make sure runs (the ratios are taken "
                    "against asip's best asynchronous solver, whichever it is)")
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --out")
    ap.add_argument("--out", default="bench-ttt", help="output directory (default bench-ttt)")
    ap.add_argument("--datasets", nargs="+", help="a subset, e.g. a9a synthetic (asip bench "
                    "names, or 'synthetic' for the matrix's synthetic-logistic:20000)")
    ap.add_argument("--tasks", nargs="+", help="a subset, e.g. log_loss-l2@1e-4 hinge-l2")
    args, rest = ap.parse_known_args(argv)
    out = ["--ttt", "--out", args.out, *rest]
    if args.datasets:
        out += ["--datasets", ",".join(SHORT_NAMES.get(d, d) for d in args.datasets)]
    if args.tasks:
        out += ["--tasks", ",".join(SHORT_NAMES.get(t, t) for t in args.tasks)]
    if args.quick:
        out.append("--quick")
    if args.budget is not None:
        out += ["--budget", str(args.budget)]
    extra = args.solvers + ([args.base] if args.base else [])
    if extra:
        out += ["--add-solvers", ",".join(extra)]
    if args.straggler:
        out.append("--straggler")
    if args.resume:
        out.append("--resume")
    return out


def main(argv: list[str] | None = None) -> int:
    from asip_bench import main as bench

    return bench(build_argv(argv))


if __name__ == "__main__":
    sys.exit(main())
