"""A certified lbfgs ``fit(tol=1e-3)`` on numpy/scipy input against the same fit on a dask
array already persisted on the workers, and the input checks of another tree's
``algorithms/_inputs.py`` against this tree's, alternating in one cluster.

The ``sklearn`` section's problem of ``benchmarks/wide.py`` (1M rows x 10^5 features, 30
nonzeros a row, alpha = 1/n; ``--quick``: 10x fewer rows and features) on 2 workers that are
threads of this process (``wide.py --threads``, the estimators' default). Arms: ``numpy``
(this tree), ``numpy-old`` (with ``--old TREE``: the estimator's ``prepare`` taken from
``TREE/algorithms/_inputs.py``, the rest of the fit this tree's) and ``persisted``. Each round
runs every arm once, the order rotated and reversed every other round. Per arm: medians of
the fit's wall time and of its phases (``prepare``: the input checks; ``data``, ``launch``,
``run``: the stage's); paired ratios of the wall and prepare times against ``numpy``.
``--prepare-only``: ``prepare`` alone, old against new (``--old`` needed), no cluster, with
the process's CPU time beside the wall time (the CPU time is what a loaded machine moves
least). ``--verbose``: a line for every fit.

Run:  python benchmarks/numpy_input.py [--old /tmp/main-tree] [--rounds 8] [--quick] [--verbose]
      python benchmarks/numpy_input.py --old /tmp/main-tree --prepare-only [--rounds 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wide import _dask_warm_up, _fit, _persisted  # noqa: E402

PHASES = ("wall", "prepare", "data", "launch", "run")


def _load(tree: str):
    """``TREE/algorithms/_inputs.py`` as a module of this tree's package (its relative
    imports resolve here), under a name of its own, from a copy in a temporary folder: numba
    caches its kernels beside the source, naming the module (``TREE`` stays usable)."""
    name = "asip.algorithms._inputs_ab_old"
    path = os.path.join(tempfile.mkdtemp(prefix="asip-ab-"), "_inputs_ab_old.py")
    shutil.copyfile(os.path.join(tree, "algorithms", "_inputs.py"), path)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _order(arms: list, i: int) -> list:
    """Round ``i``'s order: rotated by ``i``, reversed every other round."""
    order = arms[i % len(arms):] + arms[:i % len(arms)]
    return order[::-1] if i % 2 else order


def _ratios(res: dict, base: str, other: str, key: str) -> str:
    r = [o[key] / n[key] for o, n in zip(res[other], res[base]) if n[key] > 0]
    if not r:
        return "-"
    return f"{statistics.median(r):.2f} ({min(r):.2f}..{max(r):.2f})"


def prepare_only(args, data, old) -> None:
    from asip.algorithms import AsipClassifier
    from asip.algorithms import _inputs as new

    X, y = data
    est = AsipClassifier(solver="lbfgs", n_partitions=2)
    arms = {"numpy-old": old.prepare, "numpy": new.prepare}
    for fn in arms.values():
        fn(est, X, y, None, None)
    res: dict = {a: [] for a in arms}
    for i in range(args.rounds):
        for a in _order(list(arms), i):
            t0, c0 = time.perf_counter(), time.process_time()
            arms[a](est, X, y, None, None)
            res[a].append({"prepare": time.perf_counter() - t0, "cpu": time.process_time() - c0})
    print(f"\n## prepare alone, {len(y):,} rows ({args.rounds} rounds, load "
          f"{os.getloadavg()[0]:.1f}; cpu: this process's CPU time, all its threads)\n")
    print("| arm | median ms | min ms | paired / new | cpu median ms | paired cpu / new |\n"
          "|---|---|---|---|---|---|")
    for a in arms:
        v = [r["prepare"] * 1e3 for r in res[a]]
        print(f"| {a} | {statistics.median(v):.1f} | {min(v):.1f} | "
              f"{_ratios(res, 'numpy', a, 'prepare')} | "
              f"{statistics.median(r['cpu'] * 1e3 for r in res[a]):.1f} | "
              f"{_ratios(res, 'numpy', a, 'cpu')} |")


def fits(args, ds, old) -> None:
    from distributed import Client, LocalCluster

    from asip.algorithms import _estimators
    from asip.algorithms import _inputs as new

    alpha = 1.0 / len(ds.y)
    arms = ["numpy"] + (["numpy-old"] if old is not None else []) + ["persisted"]
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40, processes=False, memory_limit=0) as cluster, \
            Client(cluster):

        def one(arm, X, y) -> dict:
            _estimators.prepare = old.prepare if arm == "numpy-old" else new.prepare
            clf, wall = _fit(X, y, "lbfgs", alpha, 120.0, tol=1e-3)
            res = clf.stage_result_
            return {"wall": wall, "prepare": clf.fit_timings_["prepare"],
                    "data": res.timings.get("data", 0.0),
                    "launch": res.timings.get("launch", 0.0), "run": res.elapsed}

        for arm in arms[:-1]:  # not timed: the first fits load the kernels
            one(arm, ds.X, ds.y)
        Xp, yp, _ = _persisted(ds, 2)
        _dask_warm_up(ds, alpha)
        one("persisted", Xp, yp)
        load0 = os.getloadavg()[0]
        res: dict = {a: [] for a in arms}
        for i in range(args.rounds):
            for a in _order(arms, i):
                res[a].append(one(a, Xp, yp) if a == "persisted" else one(a, ds.X, ds.y))
                if args.verbose:
                    print(f"round {i} {a}: " + ", ".join(f"{p} {res[a][-1][p]:.3f}"
                                                         for p in PHASES), flush=True)
        _estimators.prepare = new.prepare
    print(f"\n## lbfgs fit(tol=1e-3), {ds.X.shape[0]:,} x {ds.X.shape[1]:,}, 2 threads "
          f"({args.rounds} rounds, load {load0:.1f} -> {os.getloadavg()[0]:.1f})\n")
    print("| arm | " + " | ".join(f"{p} s" for p in PHASES)
          + " | paired wall / numpy's | paired prepare / numpy's |")
    print("|---|" + "---|" * (len(PHASES) + 2))
    for a in arms:
        med = [statistics.median(r[p] for r in res[a]) for p in PHASES]
        print(f"| {a} | " + " | ".join(f"{m:.3f}" for m in med)
              + f" | {_ratios(res, 'numpy', a, 'wall')} | {_ratios(res, 'numpy', a, 'prepare')} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", help="another tree: its algorithms/_inputs.py is the old arm")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="10x smaller shapes")
    ap.add_argument("--prepare-only", action="store_true", help="prepare alone, no cluster")
    ap.add_argument("--verbose", action="store_true", help="a line for every fit")
    args = ap.parse_args(argv)
    if args.prepare_only and not args.old:
        ap.error("--prepare-only compares two trees: give --old")
    from asip.algorithms import make_sparse_logistic

    n, d = (100_000, 10_000) if args.quick else (1_000_000, 100_000)
    ds = make_sparse_logistic(n, d, nnz_per_row=30, random_state=1)
    old = _load(args.old) if args.old else None
    print(f"# benchmarks/numpy_input.py; load average "
          f"{' '.join('%.1f' % v for v in os.getloadavg())}")
    if args.prepare_only:
        prepare_only(args, (ds.X, ds.y), old)
    else:
        fits(args, ds, old)


if __name__ == "__main__":
    main()
