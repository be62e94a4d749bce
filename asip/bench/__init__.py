"""``asip bench``: asip's solvers against the published ASIP results, scikit-learn and dask-glm.

One command runs the paper's matrix (datasets x tasks x solvers, budgets
2/5/10 s), the straggler and kill-one-operator runs, the crossover against
scikit-learn on one core, the fixed cost per fit and the scaling study, on a
local cluster (or ``--scheduler``), then prints tables and writes
``results.json`` (every trace, every number), ``headline.md`` (the targets
and time-to-1e-3 tables in Markdown, with the machine) and PNG plots to
``--out``.

Modules, one job each: `config` (profiles, options), `data` (datasets,
tasks, f*, placement), `runner` (asip via its estimators), `peers_sklearn`,
`peers_daskglm`, `matrix` (the matrix and fault runs), `experiments`
(crossover, fixed cost, scaling), `analysis` (numbers and targets),
`progress` and `report` (rich), `plots` (matplotlib), `output` (JSON).

>>> from asip.bench import main      # doctest: +SKIP
>>> main(["--quick", "--out", "bench-quick"])  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark described by ``argv`` (see ``asip bench --help``); returns 0."""
    import importlib.util

    for needed in ("rich", "matplotlib"):
        if importlib.util.find_spec(needed) is None:
            raise SystemExit(f"asip bench needs {needed}: pip install 'asip[bench]'")
    from .session import run_bench

    return run_bench(argv)
