"""Where a numpy-input fit's launch goes at 1M x 10^5 (2 workers x 1 thread).

Prints, for a fit from numpy/scipy input and one from a persisted dask array: the launch
phases (``StageResult.timings``), where each scattered block lives (``who_has``) vs where
its operator ran, the bytes each worker fetched from a peer during the fit, and the
operator's ``setup`` pieces timed on the worker holding partition 0.

    python benchmarks/launch.py [--rows 1000000] [--cols 100000]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def _incoming(dask_worker=None):
    return sum(e.get("total", 0) for e in dask_worker.transfer_incoming_log)


def _instrument(dask_worker=None):
    """Wrap the operator's setup pieces on this worker to record their seconds."""
    import asip.algorithms._base as B
    import asip.algorithms._kernels as K
    import asip.algorithms._lbfgs as L
    import asip.algorithms._operator as O

    log = dask_worker._asip_launch_log = []
    if getattr(O, "_instrumented", False):
        return
    O._instrumented = True

    def timed(mod, name, label):
        fn = getattr(mod, name)

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dask_worker._asip_launch_log.append((label, time.perf_counter() - t))
        setattr(mod, name, wrapper)
    timed(O.SolverOperator, "setup", "setup")
    timed(O, "local_data", "local_data")
    timed(K, "as_kernel_matrix", "as_kernel_matrix")
    timed(K, "row_sqnorms", "row_sqnorms")
    timed(O.SolverOperator, "_warm_up", "warm_up")
    timed(L.ALGORITHM, "init", "init") if False else None


def _launch_log(dask_worker=None):
    return list(getattr(dask_worker, "_asip_launch_log", []))


def _setup_pieces(key, dask_worker=None):
    """Time local_data / init / warm_up on the block the worker holds under ``key``."""
    from asip.algorithms._base import local_data
    from asip.algorithms._kernels import as_kernel_matrix
    from asip.algorithms._lbfgs import ALGORITHM, init, warm_up  # noqa: F401
    from asip.algorithms._estimators import AsipClassifier  # noqa: F401

    X, y = dask_worker.data[key][:2]
    out = {"indices": str(X.indices.dtype), "indptr": str(X.indptr.dtype),
           "writeable": bool(X.data.flags.writeable)}
    t = time.perf_counter()
    as_kernel_matrix(X)
    out["as_kernel_matrix"] = time.perf_counter() - t
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=100_000)
    args = ap.parse_args(argv)
    from distributed import Client, LocalCluster

    from asip.algorithms import AsipClassifier, make_sparse_logistic

    print(f"# load average {' '.join('%.1f' % v for v in os.getloadavg())}")
    t0 = time.perf_counter()
    ds = make_sparse_logistic(args.rows, args.cols, nnz_per_row=30, random_state=1)
    print(f"data {time.perf_counter() - t0:.1f} s")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        def fit(X, y, label):
            before = client.run(_incoming)
            client.run(_instrument)
            clf = AsipClassifier(solver="lbfgs", alpha=1.0 / args.rows, max_time=60, tol=1e-3,
                                 fit_intercept=False, random_state=0)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(X, y)
            wall = time.perf_counter() - t
            after = client.run(_incoming)
            tm = clf.stage_result_.timings
            fetched = {w[-5:]: after[w] - before[w] for w in after}
            print(f"{label}: wall {wall:.2f}, data {tm.get('data', 0):.2f}, launch "
                  f"{tm.get('launch', 0):.2f} (first register {tm.get('launch_first_register', 0):.3f}, "
                  f"all registered {tm.get('launch_all_registered', 0):.3f}, go "
                  f"{tm.get('launch_go', 0):.3f}); bytes fetched from peers {fetched}")
            for w, log in client.run(_launch_log).items():
                print(f"   worker {w[-5:]}: " + ", ".join(f"{k} {v:.3f}" for k, v in log))
            return clf
        fit(ds.X, ds.y, "numpy, cold")
        fit(ds.X, ds.y, "numpy, warm")
        fit(ds.X, ds.y, "numpy, warm again")


if __name__ == "__main__":
    main()
