"""``asip bench``: asip's solvers against the published ASIP results, scikit-learn and dask-glm.

The one home of asip's benchmark code. It lives in ``benchmarks/asip_bench``
and installs as the top-level package ``asip_bench`` beside ``asip``, so the
runtime package carries no benchmark code; its dependencies (matplotlib,
rich, dask-glm) are the ``bench`` extra: ``pip install 'asip[bench]'``.

One command runs the paper's matrix (datasets x tasks x solvers, budgets
2/5/10 s), the straggler and kill-one-operator runs, the crossover against
scikit-learn on one core, the fixed cost per fit and the scaling study, on a
local cluster (or ``--scheduler``), then prints tables and writes
``results.json`` (every trace, every number), ``headline.md`` (the targets
and time-to-target tables in Markdown, with the machine) and PNG plots to
``--out``.

Modules, one job each: `config` (profiles, options), `data` (datasets,
tasks, f*, placement), `runner` (asip via its estimators), `peers_sklearn`,
`peers_daskglm`, `matrix` (the matrix and fault runs), `experiments`
(crossover, fixed cost, scaling), `analysis` (numbers and targets),
`progress` and `report` (rich), `plots` (matplotlib), `output` (JSON).

>>> from asip_bench import main      # doctest: +SKIP
>>> main(["--quick", "--out", "bench-quick"])  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["REQUIRED", "main", "missing_dependencies"]

#: modules ``asip bench`` cannot run without (dask-glm is optional: its runs are skipped)
REQUIRED = ("rich", "matplotlib")


def missing_dependencies() -> list[str]:
    """The modules of `REQUIRED` that are not installed."""
    import importlib.util

    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark described by ``argv`` (see ``asip bench --help``); returns 0."""
    missing = missing_dependencies()
    if missing:
        raise SystemExit(f"asip bench needs {', '.join(missing)}, which are not installed: "
                         "pip install 'asip[bench]'")
    from .session import run_bench

    return run_bench(argv)
